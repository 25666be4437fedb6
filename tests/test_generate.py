"""The exercise generator: solution notebooks (nbgrader markers) -> learners' exercise notebooks."""

import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from minattn.grading.generate import (
    SolutionError,
    generate,
    leaked_solution_lines,
    main,
    make_exercise,
    read_notebook,
    render,
    validate_solution,
)


def solution_meta(grade_id):
    return {
        "nbgrader": {
            "grade": False,
            "grade_id": grade_id,
            "locked": False,
            "schema_version": 3,
            "solution": True,
            "task": False,
        }
    }


def check_meta(grade_id, points=1):
    return {
        "nbgrader": {
            "grade": True,
            "grade_id": grade_id,
            "locked": True,
            "points": points,
            "schema_version": 3,
            "solution": False,
            "task": False,
        }
    }


SOFTMAX_SOLUTION = """\
def softmax(x, dim=-1):
    \"\"\"Softmax along dim.\"\"\"
    ### BEGIN SOLUTION
    shifted = x - x.amax(dim=dim, keepdim=True)
    e = shifted.exp()
    return e / e.sum(dim=dim, keepdim=True)
    ### END SOLUTION"""

TOKENS_SOLUTION = """\
tokens = None
### BEGIN SOLUTION
tokens = 32 * 64 * 64
### END SOLUTION
print(tokens)"""


def make_solution():
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [
        new_markdown_cell("# Tiny exercise"),
        new_code_cell("from minattn.grading import check"),
        new_code_cell(SOFTMAX_SOLUTION, metadata=solution_meta("softmax-answer")),
        new_code_cell('check("softmax", softmax)', metadata=check_meta("softmax-check", 2)),
        new_code_cell(TOKENS_SOLUTION, metadata=solution_meta("tokens-answer")),
        new_code_cell('check("tokens_32x64x64", tokens)', metadata=check_meta("tokens-check")),
        new_markdown_cell(
            "**Explain** why the maximum is subtracted.\n\n### BEGIN SOLUTION\n"
            "Because exp overflows for large scores; the shift cancels in the ratio.\n### END SOLUTION",
            metadata=solution_meta("explain-shift"),
        ),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    nb.cells[2].outputs = []
    nb.cells[4].execution_count = 7
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", name="stdout", text="131072\n")]
    return nb


def write_course(tmp_path, nb=None):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    nbformat.write(nb if nb is not None else make_solution(), solutions / "01-tiny.ipynb")
    return solutions, exercises


def test_regions_become_stubs_at_their_indentation():
    exercise = make_exercise(make_solution())
    assert exercise.cells[2].source == (
        "def softmax(x, dim=-1):\n"
        '    """Softmax along dim."""\n'
        "    # YOUR CODE HERE\n"
        "    raise NotImplementedError()"
    )
    assert exercise.cells[4].source == "tokens = None\n# YOUR CODE HERE\nprint(tokens)"
    assert exercise.cells[4].outputs == [] and exercise.cells[4].execution_count is None
    assert exercise.cells[6].source == "**Explain** why the maximum is subtracted.\n\nYOUR ANSWER HERE"
    # everything else one-to-one, metadata and ids kept
    assert exercise.cells[3].source == 'check("softmax", softmax)'
    assert [c.id for c in exercise.cells] == [f"c{i}" for i in range(7)]
    assert exercise.cells[3].metadata == check_meta("softmax-check", 2)
    assert exercise.cells[6].metadata == solution_meta("explain-shift")


def test_make_exercise_leaves_its_argument_alone():
    solution = make_solution()
    before = render(solution)
    make_exercise(solution)
    assert render(solution) == before


def test_indented_block_that_runs_at_once_gets_pass_and_tabs_are_kept():
    source = "total = 0\nfor i in range(3):\n    ### BEGIN SOLUTION\n    total += i\n    ### END SOLUTION\n"
    source += "class A:\n\tdef f(self):\n\t\t### BEGIN SOLUTION\n\t\treturn 1\n\t\t### END SOLUTION"
    nb = new_notebook(cells=[new_code_cell(source, metadata=solution_meta("loop"))])
    out = make_exercise(nb).cells[0].source
    assert "for i in range(3):\n    # YOUR CODE HERE\n    pass\n" in out
    assert "\tdef f(self):\n\t\t# YOUR CODE HERE\n\t\traise NotImplementedError()" in out
    exec(compile(out, "<exercise>", "exec"), {})  # Run All works: nothing raises at definition time


def test_run_all_of_a_generated_exercise_works_and_reports_not_attempted(tmp_path):
    from nbclient import NotebookClient

    solutions, exercises = write_course(tmp_path)
    assert generate(solutions, exercises) == []
    nb = nbformat.read(exercises / "01-tiny.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", shutdown_kernel="immediate").execute()  # no error
    graded = [cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade")]
    shown = [cell.outputs[-1]["data"]["text/plain"] for cell in graded]
    assert len(shown) == 2
    assert all("status='not attempted'" in text for text in shown), shown


def test_regenerating_gives_identical_bytes_and_check_passes(tmp_path):
    solutions, exercises = write_course(tmp_path)
    assert generate(solutions, exercises) == []
    first = (exercises / "01-tiny.ipynb").read_bytes()
    assert first.endswith(b"}\n") and b'"nbformat": 4' in first
    assert generate(solutions, exercises) == []
    assert (exercises / "01-tiny.ipynb").read_bytes() == first
    assert generate(solutions, exercises, check=True) == []
    assert main(["--check", "--solutions", str(solutions), "--exercises", str(exercises)]) == 0


def test_missing_ids_get_deterministic_ones(tmp_path):
    solutions, exercises = write_course(tmp_path)
    path = solutions / "01-tiny.ipynb"
    path.write_text(path.read_text().replace('"id": "c2",', ""))
    assert generate(solutions, exercises) == []
    first = (exercises / "01-tiny.ipynb").read_bytes()
    assert b'"id": "cell-2"' in first
    assert generate(solutions, exercises) == [] and (exercises / "01-tiny.ipynb").read_bytes() == first


def test_check_detects_a_stale_exercise_and_a_leaked_line(tmp_path, capsys):
    solutions, exercises = write_course(tmp_path)
    assert generate(solutions, exercises) == []
    # the solution changes: the exercise is stale
    solution = read_notebook(solutions / "01-tiny.ipynb")
    solution.cells[0].source = "# Tiny exercise, revised"
    nbformat.write(solution, solutions / "01-tiny.ipynb")
    problems = generate(solutions, exercises, check=True)
    assert len(problems) == 1 and "stale" in problems[0] and "cell 1 differs (source)" in problems[0]
    # someone hand-edits the exercise and pastes a solution line in
    assert generate(solutions, exercises) == []
    exercise = read_notebook(exercises / "01-tiny.ipynb")
    exercise.cells[2].source = exercise.cells[2].source.replace(
        "    # YOUR CODE HERE", "    e = shifted.exp()\n    # YOUR CODE HERE"
    )
    nbformat.write(exercise, exercises / "01-tiny.ipynb")
    problems = generate(solutions, exercises, check=True)
    assert any("stale" in p for p in problems)
    assert any("leaks 1 solution line" in p and "'e = shifted.exp()'" in p for p in problems)
    # the CLI: exit 1 and a clear list on stderr
    result = subprocess.run(
        [sys.executable, "-m", "minattn.grading.generate", "--check", "--solutions", str(solutions),
         "--exercises", str(exercises)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "leaks 1 solution line" in result.stderr and "stale" in result.stderr
    # a missing exercise and an orphan exercise are reported too
    (exercises / "01-tiny.ipynb").rename(exercises / "02-orphan.ipynb")
    problems = generate(solutions, exercises, check=True)
    assert any("01-tiny.ipynb: missing" in p for p in problems)
    assert any("02-orphan.ipynb: has no solution" in p for p in problems)


def test_leak_detection_ignores_lines_shared_with_the_rest_of_the_solution():
    nb = new_notebook(
        cells=[
            new_code_cell(
                "def f(x):\n    ### BEGIN SOLUTION\n    def f(x):\n        return x * 2\n"
                "    tokens = None\n    )\n    pass\n    ### END SOLUTION",
                metadata=solution_meta("f"),
            ),
            new_code_cell(
                "tokens = None\n### BEGIN SOLUTION\ntokens = 131072\n### END SOLUTION", metadata=solution_meta("t")
            ),
        ]
    )
    exercise = make_exercise(nb)
    assert leaked_solution_lines(nb, exercise) == []
    exercise.cells[0].source += "\n    return x * 2\n    )\n    pass"
    exercise.cells[1].source += "\ntokens = 131072"
    assert leaked_solution_lines(nb, exercise) == ["return x * 2", "tokens = 131072"]


def test_markdown_model_answers_count_as_leaks():
    solution = make_solution()
    exercise = make_exercise(solution)
    answer = solution.cells[6].source.replace("### BEGIN SOLUTION\n", "").replace("\n### END SOLUTION", "")
    exercise.cells[6].source = answer
    assert leaked_solution_lines(solution, exercise) == [
        "Because exp overflows for large scores; the shift cancels in the ratio."
    ]


@pytest.mark.parametrize(
    "source, message",
    [
        ("x = 1\n### BEGIN SOLUTION\nx = 2", "never closed"),
        ("x = 1\n### END SOLUTION", "without a '### BEGIN SOLUTION'"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx=1\n### END SOLUTION", "no nesting"),
        ("## BEGIN SOLUTION\nx = 2\n## END SOLUTION", "looks like a marker"),
    ],
)
def test_unbalanced_or_malformed_markers_are_errors(source, message):
    nb = new_notebook(cells=[new_code_cell(source, metadata=solution_meta("a"))])
    problems = validate_solution(nb)
    assert any(message in p for p in problems), problems
    with pytest.raises(SolutionError):
        make_exercise(nb)


def test_metadata_problems_are_errors(tmp_path):
    nb = new_notebook(
        cells=[
            new_code_cell("x = None\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION"),  # no metadata
            new_code_cell("y = 1", metadata=solution_meta("dup")),  # solution without region
            new_code_cell('check("tokens_32x64x64", x)', metadata=check_meta("dup")),  # duplicate id
            new_code_cell('check("tokens_32x64x64", x)'),  # check outside a graded cell
            new_code_cell("# check(...) is called below\nz = 1"),  # a comment is not a call
        ]
    )
    problems = validate_solution(nb)
    assert any(p.startswith("cell 1") and "no nbgrader metadata" in p for p in problems)
    assert any(p.startswith("cell 2") and "has no '### BEGIN SOLUTION' region" in p for p in problems)
    assert any(p.startswith("cell 3") and "duplicate grade_id 'dup'" in p for p in problems)
    assert any(p.startswith("cell 4") and "not a graded cell" in p for p in problems)
    assert not any(p.startswith("cell 5") for p in problems)
    # generate reports them per file and writes nothing
    solutions, exercises = write_course(tmp_path, nb)
    problems = generate(solutions, exercises)
    assert problems and all(p.startswith(str(solutions / "01-tiny.ipynb")) for p in problems)
    assert not (exercises / "01-tiny.ipynb").exists()
