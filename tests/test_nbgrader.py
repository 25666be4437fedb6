"""The real nbgrader on the solution notebooks, with the commands the README gives.

Every lesson: ``minattn-nbgrader-course`` sets up one course directory with all of them and nbgrader
releases each (``generate_assignment``); every release must hold the lesson's checks locked and
unchanged, with their points, and no line of a solution.

One lesson, the whole cycle (nbgrader's cost is its notebook runs, so it runs once, not per lesson;
every solution and every blank exercise is also run under nbval): three learners submit (the untouched
release; every answer right; every answer right but one left blank and one wrong), ``nbgrader
autograde`` grades them, ``nbgrader export`` writes the scores and ``nbgrader generate_feedback`` the
feedback pages. The untouched release scores 0, with every check reporting "not attempted"; the right
answers score every automatically graded point; the third learner scores exactly the points of the
blank and the wrong exercise fewer, and that learner's feedback page shows both checks' own feedback.
"""

from __future__ import annotations

import ast
import copy
import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p.stem for p in (ROOT / "solutions").glob("*.ipynb"))
BIN = Path(sys.executable).parent


def environment() -> dict:
    """This environment's bin/ first on PATH (nbgrader runs ``alembic`` from there), as an activated venv has it."""
    env = dict(os.environ, PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    env.pop("NBGRADER_EXECUTION", None)
    return env


def nbgrader(course: Path, *args: str, timeout: float = 1500) -> str:
    """Run an nbgrader command in ``course`` as the README does; fail with its output if it fails."""
    result = subprocess.run(
        [str(BIN / "nbgrader"), *args], cwd=course, env=environment(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"nbgrader {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result.stdout + result.stderr


def grade_cells(nb) -> list:
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]


def answer_name(check_cell) -> str:
    """The learner's variable or function a check cell grades: check("name", ANSWER)."""
    return ast.parse(check_cell.source).body[0].value.args[1].id


def solution_cells(nb) -> dict:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}


def blocks(nb) -> list[tuple[object, list[str]]]:
    """Each check cell of ``nb`` with the grade_ids of the answer cells before it (since the previous check)."""
    out, pending = [], []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            pending.append(meta["grade_id"])
        if meta.get("grade") and cell.cell_type == "code":
            out.append((cell, pending))
            pending = []
    return out


def independent_answers(release, source) -> tuple[str, str]:
    """Two checks (grade_ids) whose answers no later cell uses, so leaving one blank or wrong costs only its points.

    A later exercise may call an earlier one's function (lesson 08's block calls the window attention of 8.1);
    blanking that one would cost both, which is right for a learner but not what this test measures.
    """
    found = []
    cells = release.cells
    for check_cell, ids in blocks(release):
        if not ids:
            continue
        name = answer_name(check_cell)
        later = cells[cells.index(check_cell) + 1 :]
        solved = solution_cells(source)
        used_later = any(
            re.search(rf"\b{re.escape(name)}\b", solved.get(c.metadata.get("nbgrader", {}).get("grade_id"), c).source)
            for c in later
            if c.cell_type == "code" and c not in grade_cells(release)
        )
        if not used_later:
            found.append(check_cell.metadata["nbgrader"]["grade_id"])
    assert found, "no exercise stands alone"
    return found[0], found[-1]


def submission(release, source, blank: str | None = None, wrong: str | None = None):
    """The release with every answer cell taken from the solution, except the answers of check ``blank``
    (left as released) and of check ``wrong`` (solved, then the answer replaced by a wrong one)."""
    nb = copy.deepcopy(release)
    solved = solution_cells(source)
    by_check = {c.metadata["nbgrader"]["grade_id"]: (c, ids) for c, ids in blocks(release)}
    keep_blank = set(by_check[blank][1]) if blank else set()
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id not in keep_blank:
            cell.source = solved[grade_id].source
    if wrong:
        check_cell, ids = by_check[wrong]
        last = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == ids[-1])
        last.source += f"\n{answer_name(check_cell)} = 'a wrong answer'"
    return nb


def scores(course: Path) -> dict[str, tuple[float, float]]:
    with open(course / "grades.csv", newline="") as f:
        return {row["student_id"]: (float(row["raw_score"]), float(row["max_score"])) for row in csv.DictReader(f)}


def nbgrader_grades_the_lesson(lesson, tmp_path):
    course = tmp_path / "course"
    made = subprocess.run(
        [str(BIN / "minattn-nbgrader-course"), str(course), "--solutions", str(ROOT / "solutions"), "--lesson", lesson],
        capture_output=True,
        text=True,
        check=True,
    )
    assert lesson in made.stdout
    nbgrader(course, "generate_assignment", lesson, "--force")
    release = nbformat.read(course / "release" / lesson / f"{lesson}.ipynb", as_version=4)
    source = nbformat.read(course / "source" / lesson / f"{lesson}.ipynb", as_version=4)
    checks = blocks(release)
    assert checks, "a lesson without checks"
    points = {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"]) for c, _ in checks}
    blank, wrong = independent_answers(release, source)
    learners = {
        "untouched": copy.deepcopy(release),
        "right": submission(release, source),
        "partial": submission(release, source, blank=blank, wrong=wrong if wrong != blank else None),
    }
    for student, nb in learners.items():
        folder = course / "submitted" / student / lesson
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{lesson}.ipynb")
    nbgrader(course, "autograde", lesson, "--force")
    nbgrader(course, "export")
    got = scores(course)
    auto_points = sum(points.values())
    missing = points[blank] + (points[wrong] if wrong != blank else 0)
    assert got["untouched"][0] == 0, got
    assert got["right"][0] == auto_points, got
    assert got["partial"][0] == auto_points - missing, got
    untouched = nbformat.read(course / "autograded" / "untouched" / lesson / f"{lesson}.ipynb", as_version=4)
    for cell in grade_cells(untouched):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert errors and errors[0].ename == "CheckFailed" and "[NOT ATTEMPTED]" in errors[0].evalue, cell.source
    nbgrader(course, "generate_feedback", lesson, "--force")
    page = (course / "feedback" / "partial" / lesson / f"{lesson}.html").read_text(encoding="utf-8")
    assert "Not attempted yet" in page  # the blank exercise's own feedback
    if wrong != blank:
        assert "[FAILED]" in page or "[ERROR]" in page  # and the wrong one's
    shutil.rmtree(course, ignore_errors=True)


#: The lesson that goes through the whole cycle: window attention, with an exercise that calls an earlier one.
FULL_CYCLE_LESSON = "08-swin-block"

GENERATE_EVERY_LESSON = """
import sys
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

config = Config()
exec(open("nbgrader_config.py").read(), {"get_config": lambda: config})
api = NbGraderAPI(coursedir=CourseDirectory(config=config, root="."), config=config)
for lesson in sys.argv[1:]:
    result = api.generate_assignment(lesson, force=True)
    if not result["success"]:
        sys.exit(" ".join([lesson, str(result["error"]), str(result["log"])]))
"""


def test_nbgrader_releases_every_lesson_with_its_checks_locked_and_its_solutions_gone(tmp_path):
    course = tmp_path / "course"
    command = [str(BIN / "minattn-nbgrader-course"), str(course), "--solutions", str(ROOT / "solutions")]
    subprocess.run(command, check=True, capture_output=True)
    # nbgrader's own API, one process for all lessons (the CLI would start Python once per lesson).
    made = subprocess.run(
        [sys.executable, "-c", GENERATE_EVERY_LESSON, *LESSONS],
        cwd=course,
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr[-4000:]
    for lesson in LESSONS:
        release = nbformat.read(course / "release" / lesson / f"{lesson}.ipynb", as_version=4)
        source = nbformat.read(ROOT / "solutions" / f"{lesson}.ipynb", as_version=4)
        checks, sources = grade_cells(release), {c.metadata["nbgrader"]["grade_id"]: c for c in grade_cells(source)}
        assert checks and len(checks) == len(sources), lesson
        for cell in checks:
            meta = cell.metadata["nbgrader"]
            assert meta["locked"] and meta["points"] > 0, (lesson, meta)
            assert cell.source == sources[meta["grade_id"]].source, (lesson, meta["grade_id"])
        answers = [c for c in release.cells if c.metadata.get("nbgrader", {}).get("solution")]
        solved = solution_cells(source)
        assert answers and len(answers) == len(solved), lesson
        for cell in answers:
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            leaked = solution_lines(solved[grade_id].source) & {line.strip() for line in cell.source.splitlines()}
            assert not leaked, (lesson, grade_id, leaked)
            assert ("YOUR CODE HERE" if cell.cell_type == "code" else "YOUR ANSWER HERE") in cell.source, cell.source


def solution_lines(source: str) -> set[str]:
    """The stripped lines between the BEGIN and END SOLUTION markers that appear nowhere else in the cell."""
    inside, outside, in_solution = set(), set(), False
    for line in (raw.strip() for raw in source.splitlines()):
        if "BEGIN SOLUTION" in line or "END SOLUTION" in line:
            in_solution = "BEGIN SOLUTION" in line
            continue
        (inside if in_solution else outside).add(line)
    return {line for line in inside - outside if line}


class TestFullCycle:
    def test_nbgrader_grades_three_learners(self, tmp_path):
        nbgrader_grades_the_lesson(FULL_CYCLE_LESSON, tmp_path)


class TestValidate:
    """``nbgrader validate``, which learners run before submitting: a solution passes, a blank exercise does not."""

    def test_a_solution_passes_and_a_blank_exercise_fails(self, tmp_path):
        lesson = "01-queries-keys-values"
        for folder, expected in (("solutions", "Success! Your notebook passes all the tests."), ("exercises", None)):
            out = nbgrader(tmp_path, "validate", str(ROOT / folder / f"{lesson}.ipynb"))
            if expected:
                assert expected in out, out[-2000:]
            else:
                assert "VALIDATION FAILED ON" in out and "CheckFailed" in out and "Not attempted yet" in out, out[
                    -2000:
                ]
