"""The committed notebooks: exercises generated from the solutions, links that resolve, seeded lessons."""

import re
from pathlib import Path

import nbformat
import pytest

from minattn.grading.generate import generate, leaked_solution_lines

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "course").glob("[0-9][0-9]-*.ipynb"))


def test_committed_exercises_are_what_the_generator_writes():
    problems = generate(ROOT / "solutions", ROOT / "exercises", check=True)
    assert not problems, "exercises/ is stale; run `python -m minattn.grading.generate`:\n" + "\n".join(map(str, problems))


@pytest.mark.parametrize("solution", sorted((ROOT / "solutions").glob("*.ipynb")), ids=lambda p: p.stem)
def test_no_solution_line_appears_in_an_exercise(solution):
    exercise = ROOT / "exercises" / solution.name
    leaked = leaked_solution_lines(nbformat.read(solution, as_version=4), nbformat.read(exercise, as_version=4))
    assert not leaked


def test_every_lesson_has_an_exercise_and_a_solution():
    assert len(LESSONS) >= 9
    for lesson in LESSONS:
        assert (ROOT / "exercises" / lesson.name).exists(), lesson.name
        assert (ROOT / "solutions" / lesson.name).exists(), lesson.name


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_structure_and_links(lesson):
    nb = nbformat.read(lesson, as_version=4)
    text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    assert "Learning goals" in text or lesson.stem.startswith("00"), "each lesson states its learning goals"
    assert "## Summary" in text
    for target in re.findall(r"\]\(([^)#]+\.ipynb)\)", text):
        assert (lesson.parent / target).resolve().exists(), f"{lesson.name} links to missing {target}"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.get("outputs") is not None for cell in code)
    assert any(cell.source.startswith("# NBVAL_CHECK_OUTPUT") for cell in code), "key figures are checked by nbval"


def test_solutions_pass_every_check_and_untouched_exercises_report_not_attempted():
    """Grade the course's own notebooks with the batch grader: the strongest end-to-end check of both."""
    from minattn.grading import batch

    solutions = sorted((ROOT / "solutions").glob("*.ipynb"))
    exercises = sorted((ROOT / "exercises").glob("*.ipynb"))
    grades = batch.grade_submissions(
        solutions + exercises, timeout_cell=120, solutions=ROOT / "solutions", jobs=2, progress=False
    )
    assert len(grades) == len(solutions) + len(exercises)
    assert sum(len(g.exercises) for g in grades[: len(solutions)]) >= 30
    for grade in grades:
        assert grade.error is None, (grade.path, grade.error)
        expected = "passed" if "solutions" in grade.path else "not attempted"
        wrong = [(e.exercise, e.status, e.first_line) for e in grade.exercises if e.status != expected]
        assert not wrong, (grade.path, wrong)
