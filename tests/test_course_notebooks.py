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
    assert not problems, "exercises/ is stale; run `python -m minattn.grading.generate`:\n" + "\n".join(
        map(str, problems)
    )


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


GLOSSARY = ROOT / "course" / "glossary.md"
OPENING = re.compile(
    r"^\*\*Prerequisites:\*\* .+ · \*\*Time:\*\* about \d+ min · \*\*Difficulty:\*\* (introductory|intermediate|advanced)$",
    re.MULTILINE,
)
STARS = ("★☆☆", "★★☆", "★★★")


def _markdown(notebook) -> str:
    return "\n".join(c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "markdown")


def test_glossary_defines_terms_and_lists_every_cited_reference():
    text = GLOSSARY.read_text(encoding="utf-8")
    glossary, references = text.split("\n## References\n")
    terms = re.findall(r"^\*\*(.+?)\*\* \(lessons? (\d\d)\)\. (\S.*)$", glossary, re.MULTILINE)
    assert len(terms) >= 20 and all(definition.strip() for _, _, definition in terms)
    assert {"Token", "Patch", "Window", "Region", "Shift", "Head", "Bias table", "Rollout", "Bag"} <= {
        t for t, _, _ in terms
    }
    for term, lesson, _ in terms:
        assert any((ROOT / "course").glob(f"{lesson}-*.ipynb")), f"{term}: no lesson {lesson}"
    listed = re.findall(r'^- <a id="([a-z]+\d{4})"></a>([^()]+?)\((\d{4})\)\.\s', references, re.MULTILINE)
    keys = {key for key, _, _ in listed}
    assert len(keys) == len(listed) >= 11
    assert all(key.endswith(year) for key, _, year in listed)  # the key names the year the entry gives
    cited = set()
    for lesson in LESSONS:
        for key in re.findall(r"\]\(glossary\.md#([^)]+)\)", _markdown(lesson)):
            assert key in keys, f"{lesson.name} cites {key}, which the reference list lacks"
            cited.add(key)
    assert cited == keys, f"listed but cited nowhere: {sorted(keys - cited)}"


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_opens_with_prerequisites_time_and_difficulty(lesson):
    first = nbformat.read(lesson, as_version=4).cells[0].source
    assert OPENING.search(first), f"{lesson.name}: the opening line is missing or differs in format"


@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_every_exercise_heading_marks_its_difficulty(folder):
    for notebook in sorted((ROOT / folder).glob("[0-9][0-9]-*.ipynb")):
        text = _markdown(notebook)
        headings = re.findall(r"^### (?:Exercise|Concept check) .*$", text, re.MULTILINE)
        assert headings, notebook.name
        for heading in headings:
            mark = re.search(r"\((\d) points?\) · Difficulty: (\S+)$", heading)
            assert mark and mark.group(2) in STARS, f"{notebook.name}: {heading}"
        assert "**Difficulty.**" in text and all(stars in text for stars in STARS)  # the legend explains the marks
