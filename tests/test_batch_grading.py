"""The instructors' batch grader, on a tiny course: one solution notebook and six submissions."""

import csv
import json
import os
import subprocess
import sys

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
    shifted = x - x.amax(dim=dim, keepdim=True)
    e = shifted.exp()
    return e / e.sum(dim=dim, keepdim=True)
    ### END SOLUTION"""


def solution_notebook():
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [
        new_markdown_cell("# 01 · Tiny"),
        new_code_cell("from minattn.grading import check, check_value"),
        new_code_cell(SOFTMAX, metadata=meta("softmax-answer")),
        new_code_cell('check("softmax", softmax)', metadata=meta("softmax", 2)),
        new_code_cell(
            "tokens = None\n### BEGIN SOLUTION\ntokens = 32 * 64 * 64\n### END SOLUTION", metadata=meta("tokens-answer")
        ),
        new_code_cell('check_value("tokens_32x64x64", tokens)', metadata=meta("tokens", 1)),
        new_code_cell(
            "scores = None\n### BEGIN SOLUTION\nscores = 131072 ** 2\n### END SOLUTION", metadata=meta("scores-answer")
        ),
        new_code_cell('check_value("scores_32x64x64", scores)', metadata=meta("scores", 1)),
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
    by_id(bob, "tokens").source = 'check_value("tokens_32x64x64", 131072)'
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
    assert exercise.cells  # the exercise exists beside the solutions: the kernels start there
    return root, solutions, paths


@pytest.fixture(scope="module")
def graded(course):
    root, solutions, paths = course
    out, feedback = root / "grades.csv", root / "feedback.json"
    grades = batch.grade_submissions(
        [paths[n] for n in ("alice", "bob", "carol", "dave", "erin", "frank")],
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
        ("frank", "TOTAL"): ("invalid notebook", "0", "4"),
    }
    totals = [r["learner"] for r in rows if r["exercise"] == "TOTAL"]
    assert totals == ["alice", "bob", "carol", "dave", "erin", "frank"]
    feedback = {(r["learner"], r["exercise"]): r["feedback"] for r in rows}
    assert feedback[("alice", "softmax")].startswith("All ") and "passed" in feedback[("alice", "softmax")]
    assert feedback[("bob", "tokens")].startswith("Not quite: your answer is 524,288")
    assert feedback[("carol", "softmax")].startswith("The check cell raised NameError: name 'softmax' is not defined")
    assert feedback[("carol", "tokens")].startswith("Not attempted yet")
    assert feedback[("dave", "tokens")].startswith("timeout: cell 5 ran longer than the 30 s limit")
    assert feedback[("erin", "tokens")].startswith("The kernel died")
    assert feedback[("erin", "TOTAL")].startswith("the kernel died") and "in cell 5" in feedback[("erin", "TOTAL")]
    assert feedback[("erin", "scores")].startswith("cell deleted")
    assert feedback[("frank", "TOTAL")].startswith("not a valid notebook")
    assert all("\n" not in text for text in feedback.values())


def test_json_has_the_full_feedback(graded):
    grades, _, feedback = graded
    data = json.loads(feedback.read_text(encoding="utf-8"))
    learners = {s["learner"]: s for s in data["submissions"]}
    assert set(learners) == {"alice", "bob", "carol", "dave", "erin", "frank"}
    carol = {e["exercise"]: e for e in learners["carol"]["exercises"]}
    assert "ZeroDivisionError" in carol["softmax"]["feedback"]  # the earlier crash is named
    bob = {e["exercise"]: e for e in learners["bob"]["exercises"]}
    assert bob["tokens"]["checks"][0]["name"] == "tokens_32x64x64"
    assert "Likely slip" in bob["tokens"]["feedback"]  # more than the CSV's first line
    assert learners["frank"]["error"] and learners["frank"]["exercises"] == []
    assert learners["alice"]["points"] == 4 and learners["alice"]["max_points"] == 4
    assert [g.learner for g in grades] == ["alice", "bob", "carol", "dave", "erin", "frank"]


def test_cli_run(course, tmp_path):
    root, solutions, paths = course
    out, feedback = tmp_path / "grades.csv", tmp_path / "feedback.json"
    result = subprocess.run(
        [sys.executable, "-m", "minattn.grading.batch", str(paths["bob"]), str(paths["frank"]), "--out", str(out),
         "--json", str(feedback), "--timeout-cell", "30", "--solutions", str(solutions),
         "--keep-executed", str(tmp_path / "executed")],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stderr
    assert "graded 2 submission(s), 1 unreadable" in result.stdout
    assert table(read_rows(out)) == {
        ("bob", "softmax"): ("passed", "2", "2"),
        ("bob", "tokens"): ("failed", "0", "1"),
        ("bob", "scores"): ("passed", "1", "1"),
        ("bob", "TOTAL"): ("2/3 passed", "3", "4"),
        ("frank", "TOTAL"): ("invalid notebook", "0", "4"),
    }
    assert json.loads(feedback.read_text())["submissions"][0]["learner"] == "bob"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["executed", "feedback.json", "grades.csv"]  # no temp files
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
