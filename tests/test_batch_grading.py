"""The instructors' batch grader, on a tiny course: one solution notebook and eight submissions."""

import csv
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from minattn.grading import batch
from minattn.grading.generate import generate, read_notebook


def meta(grade_id, points=None):
    graded = points is not None
    nbgrader = {
        "grade": graded,
        "grade_id": grade_id,
        "locked": graded,
        "schema_version": 3,
        "solution": not graded,
        "task": False,
    }
    if graded:
        nbgrader["points"] = points
    return {"nbgrader": nbgrader}


SOFTMAX = """\
def softmax(x, dim=-1):
    ### BEGIN SOLUTION
    shifted = x - x.amax(dim=dim, keepdim=True).nan_to_num(neginf=0.0)
    e = shifted.exp()
    total = e.sum(dim=dim, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))
    ### END SOLUTION"""


def solution_notebook():
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [
        new_markdown_cell("# 01 · Tiny"),
        new_code_cell("import torch\nfrom minattn.grading import check"),
        new_code_cell(SOFTMAX, metadata=meta("softmax-answer")),
        new_code_cell('check("softmax", softmax)', metadata=meta("softmax", 2)),
        new_code_cell(
            "tokens = None\n### BEGIN SOLUTION\ntokens = 32 * 64 * 64\n### END SOLUTION", metadata=meta("tokens-answer")
        ),
        new_code_cell('check("tokens_32x64x64", tokens)', metadata=meta("tokens", 1)),
        new_code_cell(
            "scores = None\n### BEGIN SOLUTION\nscores = 131072 ** 2\n### END SOLUTION", metadata=meta("scores-answer")
        ),
        new_code_cell('check("scores_32x64x64", scores)', metadata=meta("scores", 1)),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    return nb


def by_id(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    solutions, submissions = root / "solutions", root / "submissions"
    solutions.mkdir()
    submissions.mkdir()
    solution = solution_notebook()
    nbformat.write(solution, solutions / "01-tiny.ipynb")
    assert generate(solutions, root / "exercises") == []
    exercise = read_notebook(root / "exercises" / "01-tiny.ipynb")

    def submit(name, nb):
        nbformat.write(nb, submissions / f"{name}.ipynb")
        return submissions / f"{name}.ipynb"

    paths = {"alice": submit("alice", solution)}  # all correct
    bob = read_notebook(solutions / "01-tiny.ipynb")  # tokens wrong (bytes, not tokens); edits the check cell
    by_id(bob, "tokens-answer").source = "tokens = 32 * 64 * 64 * 4"
    by_id(bob, "tokens").source = 'check("tokens_32x64x64", 131072)'
    by_id(bob, "tokens").metadata["nbgrader"]["points"] = 100
    paths["bob"] = submit("bob", bob)
    carol = read_notebook(root / "exercises" / "01-tiny.ipynb")  # crashes before defining softmax
    by_id(carol, "softmax-answer").source = "1 / 0\n" + SOFTMAX
    by_id(carol, "scores-answer").source = "scores = 131072 * 2"
    paths["carol"] = submit("carol", carol)
    dave = read_notebook(solutions / "01-tiny.ipynb")  # hangs in the tokens answer
    by_id(dave, "tokens-answer").source = "tokens = None\nwhile True:\n    pass"
    paths["dave"] = submit("dave", dave)
    erin = read_notebook(solutions / "01-tiny.ipynb")  # deletes the scores check, then kills the kernel
    by_id(erin, "tokens-answer").source = "import os\nos._exit(1)"
    erin.cells = [c for c in erin.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "scores"]
    paths["erin"] = submit("erin", erin)
    (submissions / "frank.ipynb").write_text('{"cells": [', encoding="utf-8")  # not JSON
    paths["frank"] = submissions / "frank.ipynb"
    gina = read_notebook(solutions / "01-tiny.ipynb")  # the first cell fails at import, before `check` exists
    gina.cells[1].source = "import torch\nimport minattn_helpers_gina\nfrom minattn.grading import check"
    paths["gina"] = submit("gina", gina)
    formula = read_notebook(solutions / "01-tiny.ipynb")  # a name a spreadsheet would run as a formula
    by_id(formula, "tokens-answer").source = "tokens = 32 * 64 * 64 * 4"
    paths["=1+2"] = submit("=1+2", formula)
    assert exercise.cells  # the exercise exists beside the solutions: the kernels start there
    return root, solutions, paths


LEARNERS = ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "=1+2")


@pytest.fixture(scope="module")
def graded(course):
    root, solutions, paths = course
    out, feedback = root / "grades.csv", root / "feedback.json"
    grades = batch.grade_submissions(
        [paths[n] for n in LEARNERS],
        out=out,
        json_out=feedback,
        # Long enough for a correct cell that imports torch while the browser test loads both cores
        # (5 s was once too short in CI); dave's endless loop still hits it.
        timeout_cell=30,
        solutions=solutions,
        jobs=2,
    )
    return grades, out, feedback


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def table(rows):
    return {(r["learner"], r["exercise"]): (r["status"], r["points"], r["max_points"]) for r in rows}


def test_csv_rows_points_and_statuses(graded):
    _, out, _ = graded
    rows = read_rows(out)
    assert list(rows[0]) == list(batch.CSV_COLUMNS)
    assert all(r["notebook"] == "01-tiny" for r in rows)
    assert table(rows) == {
        ("alice", "softmax"): ("passed", "2", "2"),
        ("alice", "tokens"): ("passed", "1", "1"),
        ("alice", "scores"): ("passed", "1", "1"),
        ("alice", "TOTAL"): ("3/3 passed", "4", "4"),
        # the edited check cell and points are reset to the exercise's
        ("bob", "softmax"): ("passed", "2", "2"),
        ("bob", "tokens"): ("failed", "0", "1"),
        ("bob", "scores"): ("passed", "1", "1"),
        ("bob", "TOTAL"): ("2/3 passed", "3", "4"),
        ("carol", "softmax"): ("error", "0", "2"),
        ("carol", "tokens"): ("not attempted", "0", "1"),
        ("carol", "scores"): ("failed", "0", "1"),
        ("carol", "TOTAL"): ("0/3 passed", "0", "4"),
        ("dave", "softmax"): ("passed", "2", "2"),
        ("dave", "tokens"): ("timeout", "0", "1"),
        ("dave", "scores"): ("passed", "1", "1"),
        ("dave", "TOTAL"): ("2/3 passed", "3", "4"),
        ("erin", "softmax"): ("passed", "2", "2"),
        ("erin", "tokens"): ("error", "0", "1"),
        ("erin", "scores"): ("cell deleted", "0", "1"),
        ("erin", "TOTAL"): ("1/3 passed", "2", "4"),
        # not a notebook, but named after none: the only solution is its lesson, with a row per exercise
        ("frank", "softmax"): ("invalid notebook", "0", "2"),
        ("frank", "tokens"): ("invalid notebook", "0", "1"),
        ("frank", "scores"): ("invalid notebook", "0", "1"),
        ("frank", "TOTAL"): ("invalid notebook", "0", "4"),
        ("gina", "softmax"): ("error", "0", "2"),
        ("gina", "tokens"): ("error", "0", "1"),
        ("gina", "scores"): ("error", "0", "1"),
        ("gina", "TOTAL"): ("0/3 passed", "0", "4"),
        ("'=1+2", "softmax"): ("passed", "2", "2"),
        ("'=1+2", "tokens"): ("failed", "0", "1"),
        ("'=1+2", "scores"): ("passed", "1", "1"),
        ("'=1+2", "TOTAL"): ("2/3 passed", "3", "4"),
    }
    totals = [r["learner"] for r in rows if r["exercise"] == "TOTAL"]
    assert totals == ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "'=1+2"]
    feedback = {(r["learner"], r["exercise"]): r["feedback"] for r in rows}
    assert feedback[("alice", "softmax")].startswith("All ") and "passed" in feedback[("alice", "softmax")]
    assert feedback[("bob", "tokens")].startswith("Not quite (tokens of a 32 x 64 x 64 feature map, one per voxel): your answer is 524,288")
    # the cause first: the crash in the answer cell, then what the check cell saw
    assert feedback[("carol", "softmax")] == (
        "error: cell 3 raised ZeroDivisionError: division by zero; "
        "the check then failed with NameError: name 'softmax' is not defined."
    )
    assert feedback[("carol", "tokens")].startswith("Not attempted yet")
    assert feedback[("dave", "tokens")].startswith("timeout: cell 5 ran longer than the 30 s limit")
    assert feedback[("erin", "tokens")].startswith("The kernel died")
    assert feedback[("erin", "TOTAL")].startswith("the kernel died") and "in cell 5" in feedback[("erin", "TOTAL")]
    assert feedback[("erin", "scores")].startswith("cell deleted")
    assert feedback[("frank", "TOTAL")].startswith("not a valid notebook")
    assert feedback[("frank", "tokens")].startswith("invalid notebook: not valid notebook JSON")
    assert all("\n" not in text for text in feedback.values())


def test_json_has_the_full_feedback(graded):
    grades, _, feedback = graded
    data = json.loads(feedback.read_text(encoding="utf-8"))
    learners = {s["learner"]: s for s in data["submissions"]}
    assert set(learners) == set(LEARNERS)  # raw names: "=1+2" is escaped in the CSV only
    carol = {e["exercise"]: e for e in learners["carol"]["exercises"]}
    assert "ZeroDivisionError" in carol["softmax"]["feedback"]  # the earlier crash is named
    bob = {e["exercise"]: e for e in learners["bob"]["exercises"]}
    assert bob["tokens"]["checks"][0]["name"] == "tokens_32x64x64"
    assert "4 times too large" in bob["tokens"]["feedback"]  # more than the CSV's first line
    assert learners["frank"]["error"] and learners["frank"]["status"] == "invalid notebook"
    assert [(e["exercise"], e["status"], e["max_points"]) for e in learners["frank"]["exercises"]] == [
        ("softmax", "invalid notebook", 2),
        ("tokens", "invalid notebook", 1),
        ("scores", "invalid notebook", 1),
    ]
    assert learners["frank"]["points"] == 0 and learners["frank"]["max_points"] == 4
    assert learners["alice"]["points"] == 4 and learners["alice"]["max_points"] == 4
    assert [g.learner for g in grades] == list(LEARNERS)


def test_cli_run(course, tmp_path):
    root, solutions, paths = course
    out, feedback, gradebook = tmp_path / "grades.csv", tmp_path / "feedback.json", tmp_path / "gradebook.csv"
    result = subprocess.run(
        [sys.executable, "-m", "minattn.grading.batch", str(paths["bob"]), str(paths["frank"]), "--out", str(out),
         "--json", str(feedback), "--timeout-cell", "30", "--solutions", str(solutions),
         "--keep-executed", str(tmp_path / "executed"), "--gradebook", str(gradebook)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stderr
    # stdout is a pipe, not a terminal: one line per submission as it is done, then the summary
    assert result.stdout.splitlines() == [
        "[1/2] bob 01-tiny: 3/4 points",
        "[2/2] frank 01-tiny: invalid notebook, 0/4 points",
        f"graded 2 submission(s), 1 unreadable; 3 points in all; wrote {out}, {feedback} and {gradebook}",
    ]
    assert table(read_rows(out)) == {
        ("bob", "softmax"): ("passed", "2", "2"),
        ("bob", "tokens"): ("failed", "0", "1"),
        ("bob", "scores"): ("passed", "1", "1"),
        ("bob", "TOTAL"): ("2/3 passed", "3", "4"),
        ("frank", "softmax"): ("invalid notebook", "0", "2"),
        ("frank", "tokens"): ("invalid notebook", "0", "1"),
        ("frank", "scores"): ("invalid notebook", "0", "1"),
        ("frank", "TOTAL"): ("invalid notebook", "0", "4"),
    }
    assert read_rows(gradebook) == [
        {"Student": "bob", "01-tiny: softmax (max 2)": "2", "01-tiny: tokens (max 1)": "0",
         "01-tiny: scores (max 1)": "1", "Total": "3"},
        {"Student": "frank", "01-tiny: softmax (max 2)": "0", "01-tiny: tokens (max 1)": "0",
         "01-tiny: scores (max 1)": "0", "Total": "0"},
    ]
    assert json.loads(feedback.read_text())["submissions"][0]["learner"] == "bob"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["executed", "feedback.json", "gradebook.csv", "grades.csv"]  # no temp files
    executed = nbformat.read(tmp_path / "executed" / "bob-01-tiny.ipynb", as_version=4)
    assert "record every CheckResult" in executed.cells[0].source  # the grader's hidden first cell
    assert any(o.get("data", {}).get(batch.RECORD_MIME) for c in executed.cells[1:] for o in c.get("outputs", []))
    bad = subprocess.run(
        [sys.executable, "-m", "minattn.grading.batch", str(tmp_path / "nobody.ipynb"), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no such file" in bad.stderr


def test_an_interrupted_write_leaves_the_old_csv_untouched(graded, tmp_path, monkeypatch):
    grades, _, _ = graded
    out = tmp_path / "grades.csv"
    out.write_text("the previous grades\n", encoding="utf-8")

    def half_then_fail(f, rows):
        f.write("learner,notebook,exer")
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "_write_csv_rows", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        batch.write_csv(out, grades)
    assert out.read_text(encoding="utf-8") == "the previous grades\n"
    monkeypatch.undo()

    calls = []

    def failing_replace(src, dst):
        calls.append(src)
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        batch.write_json(tmp_path / "feedback.json", grades)
    monkeypatch.undo()
    assert calls and not (tmp_path / "feedback.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grades.csv"]  # the temp file was removed


def test_learner_names_and_matching(tmp_path):
    reference = batch.Reference("03-softmax", [], frozenset({"a", "b"}))
    other = batch.Reference("04-windows", [], frozenset({"c"}))
    assert batch.learner_name(tmp_path / "alice" / "03-softmax.ipynb", "03-softmax") == "alice"
    assert batch.learner_name(tmp_path / "alice.ipynb", "03-softmax") == "alice"
    assert batch.learner_name(tmp_path / "alice-03-softmax.ipynb", "03-softmax") == "alice"
    assert batch.learner_name(tmp_path / "alice" / "03-softmax" / "03-softmax.ipynb", "03-softmax") == "alice"
    assert batch.learner_name(tmp_path / "03-softmax" / "alice.ipynb", "03-softmax") == "alice"
    nb = new_notebook(cells=[new_code_cell("x", metadata=meta("c", 1))])
    assert batch._match(tmp_path / "bob.ipynb", nb, [reference, other]) is other  # by grade_id
    assert batch._match(tmp_path / "bob_03-softmax.ipynb", nb, [reference, other]) is reference  # by name
    assert batch._match(tmp_path / "bob.ipynb", None, [reference, other]) is None


def test_invalid_json_with_an_unrecognisable_name_is_still_an_invalid_notebook(tmp_path):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    for name in ("01-a", "02-b"):  # two references, so the name alone cannot pick one
        nb = new_notebook(cells=[new_code_cell("x = 1", metadata=meta(f"{name}-x", points=1))])
        (solutions / f"{name}.ipynb").write_text(nbformat.writes(nb))
    broken = tmp_path / "zoe.ipynb"
    broken.write_text('{"cells": [')
    (grade,) = batch.grade_submissions([broken], solutions=solutions, progress=False)
    assert grade.error_status == "invalid notebook" and "not a valid notebook" in grade.error
    assert grade.learner == "zoe"


# ----------------------------------------------------------------------------- losing nothing


def test_an_import_failure_is_named_in_every_row_it_explains(graded):
    _, out, feedback = graded
    rows = {r["exercise"]: r["feedback"] for r in read_rows(out) if r["learner"] == "gina"}
    cause = (
        "error: cell 2 raised ModuleNotFoundError: No module named 'minattn_helpers_gina'; "
        "the check then failed with NameError: name 'check' is not defined."
    )
    # the first check cell's block holds the import cell, the other two do not: all three name it
    assert rows == {"softmax": cause, "tokens": cause, "scores": cause, "TOTAL": ""}
    learners = {s["learner"]: s for s in json.loads(feedback.read_text(encoding="utf-8"))["submissions"]}
    assert all(e["feedback"] == cause for e in learners["gina"]["exercises"])


def test_formula_names_are_escaped_in_the_csv_and_raw_in_the_json(graded):
    _, out, feedback = graded
    text = out.read_text(encoding="utf-8")
    assert "\n'=1+2,01-tiny,softmax,passed,2,2," in text and "\n=1+2" not in text
    names = [s["learner"] for s in json.loads(feedback.read_text(encoding="utf-8"))["submissions"]]
    assert "=1+2" in names
    for dangerous in ("=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "  =1+2"):
        assert batch.csv_safe(dangerous) == "'" + dangerous
    for harmless in ("alice", "O'Brien", "a=b", "", 3, 0.5):
        assert batch.csv_safe(harmless) == harmless


def test_the_gradebook_of_the_course_reads_back(graded, tmp_path):
    grades, _, _ = graded
    path = tmp_path / "gradebook.csv"
    batch.write_gradebook(path, grades)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == [
        "Student", "01-tiny: softmax (max 2)", "01-tiny: tokens (max 1)", "01-tiny: scores (max 1)", "Total"
    ]
    points = {r["Student"]: [r[c] for c in reader.fieldnames[1:]] for r in rows}
    assert points == {
        "alice": ["2", "1", "1", "4"],
        "bob": ["2", "0", "1", "3"],
        "carol": ["0", "0", "0", "0"],
        "dave": ["2", "0", "1", "3"],
        "erin": ["2", "0", "0", "2"],
        "frank": ["0", "0", "0", "0"],
        "gina": ["0", "0", "0", "0"],
        "'=1+2": ["2", "0", "1", "3"],  # escaped, so a spreadsheet shows the name
    }
    assert [r["Student"] for r in rows] == ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "'=1+2"]


def lesson_grade(learner, notebook, points, status="passed", error=None, error_status="invalid notebook"):
    """A SubmissionGrade with exercises ``{grade_id: (points, max_points)}``."""
    exercises = [batch.ExerciseGrade(g, status, p, m, "") for g, (p, m) in points.items()]
    path = f"{learner}.ipynb"
    return batch.SubmissionGrade(learner, notebook, path, exercises, error=error, error_status=error_status)


def test_the_gradebook_has_one_row_per_learner_and_a_column_per_exercise(tmp_path):
    grades = [
        lesson_grade("alice", "02-b", {"b-x": (3, 3)}),
        lesson_grade("alice", "01-a", {"a-x": (1, 1), "a-y": (0.5, 2)}),
        lesson_grade("bob", "02-b", {"b-x": (0, 3)}),
        lesson_grade("@carol", "01-a", {"a-x": (0, 1), "a-y": (0, 2)}, "not graded", "not graded", "not graded"),
        batch.SubmissionGrade("-dave", "", "-dave.ipynb", error="matches none", error_status="unknown notebook"),
    ]
    path = tmp_path / "lms.csv"
    batch.write_gradebook(path, grades, id_column="SIS Login ID")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = {r["SIS Login ID"]: r for r in reader}
    # lessons in name order, then a Total; plain numbers; empty where there is no grade
    assert reader.fieldnames == ["SIS Login ID", "01-a: a-x (max 1)", "01-a: a-y (max 2)", "02-b: b-x (max 3)", "Total"]
    assert list(rows) == ["alice", "bob", "'@carol", "'-dave"]
    assert rows["alice"] == {"SIS Login ID": "alice", "01-a: a-x (max 1)": "1", "01-a: a-y (max 2)": "0.5",
                             "02-b: b-x (max 3)": "3", "Total": "4.5"}
    assert [rows["bob"][c] for c in reader.fieldnames[1:]] == ["", "", "0", "0"]
    # not graded yet, or no known lesson: no points and no Total (an LMS must not import a 0)
    assert [rows["'@carol"][c] for c in reader.fieldnames[1:]] == ["", "", "", ""]
    assert [rows["'-dave"][c] for c in reader.fieldnames[1:]] == ["", "", "", ""]
    assert path.read_text(encoding="utf-8").splitlines()[1] == "alice,1,0.5,3,4.5"
    twice = grades + [lesson_grade("bob", "02-b", {"b-x": (3, 3)})]
    _, table_rows, duplicates = batch.gradebook_table(twice)
    assert duplicates == [("bob", "02-b")] and table_rows[1] == ["bob", None, None, 3, 3]  # the last one wins


def test_an_invalid_notebook_keeps_its_lesson(tmp_path):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    lessons = {"01-a": {"a-x": 1, "a-y": 2}, "02-b": {"b-x": 3}}
    for name, cells in lessons.items():
        nb = new_notebook(cells=[new_code_cell(f"x = {p}", metadata=meta(g, points=p)) for g, p in cells.items()])
        (solutions / f"{name}.ipynb").write_text(nbformat.writes(nb))
    whole = (solutions / "01-a.ipynb").read_text()
    submissions = tmp_path / "submissions"
    (submissions / "02-b").mkdir(parents=True)
    broken = {
        "alice": submissions / "alice-02-b.ipynb",  # the lesson from the file name
        "bob": submissions / "02-b" / "bob.ipynb",  # from the folder name
        "carol": submissions / "carol.ipynb",  # from the cells that can still be read
        "zoe": submissions / "zoe.ipynb",  # from nothing: one row, as before
    }
    broken["alice"].write_text('{"cells": [')
    broken["bob"].write_text('{"cells": [')
    broken["carol"].write_text(whole[: whole.index('"a-y"') + 2])
    broken["zoe"].write_text('{"cells": [')
    out = tmp_path / "grades.csv"
    grades = batch.grade_submissions(list(broken.values()), out=out, solutions=solutions, progress=False)
    rows = {
        (r["learner"], r["exercise"]): (r["notebook"], r["status"], r["points"], r["max_points"])
        for r in read_rows(out)
    }
    invalid = "invalid notebook"
    assert rows == {
        ("alice", "b-x"): ("02-b", invalid, "0", "3"),
        ("alice", "TOTAL"): ("02-b", invalid, "0", "3"),
        ("bob", "b-x"): ("02-b", invalid, "0", "3"),
        ("bob", "TOTAL"): ("02-b", invalid, "0", "3"),
        ("carol", "a-x"): ("01-a", invalid, "0", "1"),
        ("carol", "a-y"): ("01-a", invalid, "0", "2"),
        ("carol", "TOTAL"): ("01-a", invalid, "0", "3"),
        ("zoe", "TOTAL"): ("", invalid, "0", "0"),
    }
    assert [g.max_points for g in grades] == [3, 3, 3, 0]
    assert batch.readable_grade_ids(broken["carol"]) == {"a-x"}


def test_the_cell_that_explains_a_check_cells_error_comes_first():
    nb = new_notebook(cells=[
        new_code_cell('check("warm-up", 1)'),  # cell 1: raised the same NameError, a victim too
        new_code_cell("import torch\nfrom minattn.grading import check"),  # cell 2: the cause
        new_code_cell('check("a", x)', metadata=meta("a", 1)),  # cell 3
        new_code_cell("y = None\n1 / 0"),  # cell 4
        new_code_cell('check("b", y)', metadata=meta("b", 2)),  # cell 5: a result that did not pass
    ])
    executed = nbformat.from_dict(json.loads(json.dumps(nb)))
    executed.cells.insert(0, new_code_cell(batch.SETUP_SOURCE))
    name_error = ("NameError", "name 'check' is not defined")
    runs = {
        0: batch.CellRun(ran=True, error=name_error),
        1: batch.CellRun(ran=True, error=("ModuleNotFoundError", "No module named 'torch'")),
        2: batch.CellRun(ran=True, error=name_error),
        3: batch.CellRun(ran=True, error=("ZeroDivisionError", "division by zero")),
        4: batch.CellRun(ran=True, records=[{"status": "not attempted", "feedback": "Not attempted yet.\nMore."}]),
    }
    execution = batch.Execution(runs, executed=executed, timeout_cell=10)
    grades, _ = batch._score(batch.reference_from(nb, "x"), nb, execution)
    assert [(g.status, g.feedback) for g in grades] == [
        (
            "error",
            (
                "error: cell 2 raised ModuleNotFoundError: No module named 'torch'; "
                "the check then failed with NameError: name 'check' is not defined.\n"
                "Earlier in this exercise, cell 1 raised NameError: name 'check' is not defined."
            ),
        ),
        (
            "not attempted",  # the cause named once, on the first line
            "cell 4 raised ZeroDivisionError: division by zero; the check then reported: Not attempted yet.\nMore.",
        ),
    ]


# ----------------------------------------------------------------------------- interrupts


def hanging_submission(solutions, path, pid_file):
    """A correct submission whose tokens cell writes its kernel's PID to ``pid_file``, then sleeps 10 minutes."""
    nb = read_notebook(solutions / "01-tiny.ipynb")
    by_id(nb, "tokens-answer").source = (
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\ntokens = 32 * 64 * 64"
    )
    nbformat.write(nb, path)
    return path


#: ``python -m minattn.grading.batch``, except that SIGINT raises KeyboardInterrupt as on a terminal: a test
#: runner may ignore SIGINT, and a child process inherits that.
GRADE_AS_ON_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('minattn.grading.batch', run_name='__main__')"
)


def start_grading(args, stderr):
    """``minattn-grade args`` in a subprocess; its stdout lines come in a queue, so a test can wait with a timeout."""
    proc = subprocess.Popen(
        [sys.executable, "-c", GRADE_AS_ON_A_TERMINAL, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stdout], daemon=True).start()
    return proc, lines


def gone(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie whose parent (the grader) exited is gone too, whoever reaps it
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_until(condition, seconds, proc=None):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        assert proc is None or proc.poll() is None, "the grader ended early"
        time.sleep(0.2)


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_ctrl_c_writes_what_was_graded_and_marks_the_rest(course, tmp_path):
    _, solutions, paths = course
    pid_file = tmp_path / "hal.pid"
    hal = hanging_submission(solutions, tmp_path / "hal.ipynb", pid_file)
    target = tmp_path / "out"
    target.mkdir()
    out, feedback, gradebook = target / "grades.csv", target / "feedback.json", target / "gradebook.csv"
    out.write_text("the previous grades\n", encoding="utf-8")
    with open(tmp_path / "stderr", "w") as stderr:
        proc, lines = start_grading(
            [paths["alice"], hal, paths["frank"], "--out", out, "--json", feedback, "--gradebook", gradebook,
             "--solutions", solutions, "--timeout-cell", "900"],
            stderr,
        )
        try:
            assert lines.get(timeout=240) == "[1/3] alice 01-tiny: 4/4 points"
            wait_until(pid_file.exists, 240, proc)  # hal's kernel is in its sleep
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    time.sleep(0.2)
    assert lines.empty()  # no progress line for the submissions not graded
    message = (
        "minattn-grade: interrupted: graded 1 of 3 submission(s); the output is partial, "
        f'the other 2 marked "not graded" in {out}, {feedback} and {gradebook}'
    )
    errors = (tmp_path / "stderr").read_text()
    assert errors.splitlines()[-1] == message and "Traceback" not in errors
    rows = read_rows(out)
    assert table(rows) == {
        ("alice", "softmax"): ("passed", "2", "2"),
        ("alice", "tokens"): ("passed", "1", "1"),
        ("alice", "scores"): ("passed", "1", "1"),
        ("alice", "TOTAL"): ("3/3 passed", "4", "4"),
        **{("hal", e): ("not graded", "0", m) for e, m in (("softmax", "2"), ("tokens", "1"), ("scores", "1"))},
        ("hal", "TOTAL"): ("not graded", "0", "4"),
        **{("frank", e): ("not graded", "0", m) for e, m in (("softmax", "2"), ("tokens", "1"), ("scores", "1"))},
        ("frank", "TOTAL"): ("not graded", "0", "4"),
    }
    statuses = [(s["learner"], s["status"]) for s in json.loads(feedback.read_text())["submissions"]]
    assert statuses == [("alice", "graded"), ("hal", "not graded"), ("frank", "not graded")]
    assert [list(r.values()) for r in read_rows(gradebook)] == [
        ["alice", "2", "1", "1", "4"],
        ["hal", "", "", "", ""],
        ["frank", "", "", "", ""],
    ]
    assert sorted(p.name for p in target.iterdir()) == ["feedback.json", "gradebook.csv", "grades.csv"]
    wait_until(lambda: gone(int(pid_file.read_text())), 10)  # the sleeping kernel did not outlive the grader


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_sigterm_while_a_kernel_starts_stops_like_ctrl_c(course, tmp_path):
    psutil = pytest.importorskip("psutil")
    _, solutions, paths = course
    hal = hanging_submission(solutions, tmp_path / "hal.ipynb", tmp_path / "hal.pid")
    out = tmp_path / "grades.csv"
    with open(tmp_path / "stderr", "w") as stderr:
        proc, lines = start_grading(
            [paths["frank"], hal, "--out", out, "--solutions", solutions, "--timeout-cell", "900"], stderr
        )
        try:
            assert lines.get(timeout=240) == "[1/2] frank 01-tiny: invalid notebook, 0/4 points"
            time.sleep(1)  # hal's kernel is starting
            kernels = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    errors = (tmp_path / "stderr").read_text()
    assert errors.splitlines()[-1] == (
        "minattn-grade: interrupted: graded 1 of 2 submission(s); the output is partial, "
        f'the other 1 marked "not graded" in {out}'
    )
    assert {(r["learner"], r["exercise"]): r["status"] for r in read_rows(out) if r["exercise"] == "TOTAL"} == {
        ("frank", "TOTAL"): "invalid notebook",
        ("hal", "TOTAL"): "not graded",
    }
    wait_until(lambda: all(gone(k.pid) for k in kernels), 10)
