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
    tagged = [cell for cell in code if "nbval-check-output" in cell.metadata.get("tags", [])]
    assert tagged, "key figures are checked by nbval: tag their cells nbval-check-output"
    marked = [i for i, cell in enumerate(nb.cells) if re.search(r"#\s*NBVAL_", cell.source)]
    assert not marked, f"nbval markers belong in cell tags, not in the source the learner reads: cells {marked}"


def _check_cells(notebook):
    nb = nbformat.read(notebook, as_version=4)
    return [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade") and c.cell_type == "code"]


@pytest.mark.parametrize("exercise", sorted((ROOT / "exercises").glob("*.ipynb")), ids=lambda p: p.stem)
def test_check_cells_show_no_answer(exercise):
    """A check cell is one call, check("name", answer): no expected value, formula or reference computation."""
    import ast

    from minattn.grading import known_names

    for cell in _check_cells(exercise):
        tree = ast.parse(cell.source)
        assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), cell.source
        call = tree.body[0].value
        assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == "check", cell.source
        assert not call.keywords and len(call.args) == 2, cell.source
        name, answer = call.args
        assert isinstance(name, ast.Constant) and name.value in known_names(), cell.source
        assert isinstance(answer, ast.Name), f"the answer is the learner's own variable or function: {cell.source}"


def test_every_exercise_is_used_by_a_notebook():
    import ast

    from minattn.grading import known_names

    used = set()
    for exercise in (ROOT / "exercises").glob("*.ipynb"):
        for cell in _check_cells(exercise):
            used.add(ast.parse(cell.source).body[0].value.args[0].value)
    assert used == set(known_names())
