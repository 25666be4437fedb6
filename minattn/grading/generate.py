"""Make the learners' exercise notebooks from the solution notebooks (nbgrader conventions).

    python -m minattn.grading.generate            # write exercises/NN-slug.ipynb from solutions/NN-slug.ipynb
    python -m minattn.grading.generate --check    # only compare; exit 1 when stale, missing or leaking

Conventions of a solution notebook (``solutions/NN-slug.ipynb``):

* A *solution region* is the lines strictly between a line ``### BEGIN SOLUTION`` and a line
  ``### END SOLUTION`` (the marker lines may be indented; nothing else may stand on them). Regions
  do not nest and do not span cells.
* In a code cell the learner's version replaces each region (markers included) by a stub at the
  indentation of the ``### BEGIN SOLUTION`` line:

  - inside a function body: ``# YOUR CODE HERE`` then ``raise NotImplementedError()``
    (``check`` reports such a function as "not attempted");
  - at top level (indentation 0): ``# YOUR CODE HERE`` only, so Run All still works; initialise the
    answer *before* the region (``tokens = None``), which ``check`` reports as "not attempted";
  - inside another indented block that runs at once (a ``for``/``if``/``with``/``class`` body at top
    level): ``# YOUR CODE HERE`` then ``pass``, again so that Run All works.

* In a markdown cell (a written answer, graded by hand under nbgrader) the region becomes ``YOUR ANSWER HERE``.
* A cell holding a region carries ``{"nbgrader": {"grade": false, "grade_id": "<unique id>",
  "locked": false, "schema_version": 3, "solution": true, "task": false}}``; a check cell (one calling
  ``check(...)``, the call being its last expression) carries ``{"nbgrader":
  {"grade": true, "grade_id": "<id>", "locked": true, "points": <int>, "schema_version": 3,
  "solution": false, "task": false}}``. ``grade_id`` is made of letters, digits, ``-`` and ``_`` and
  is unique in the notebook (better: in the course).
* Everything else is copied one-to-one: cells, their ids and metadata, notebook metadata. Outputs and
  execution counts are cleared, and so are saved widget states (``metadata.widgets``) and cell
  timing metadata (``metadata.execution``), which could reveal results.

The exercise is written with :func:`nbformat.writes` (format 4, sorted keys, one-space indent) plus a
trailing newline, so generating twice gives identical bytes and ``--check`` can compare bytes.
Cells without an id in a format-4.5 notebook get a deterministic id (``cell-<index>``) instead of
nbformat's random one.

Problems that stop a notebook from being generated: unbalanced or malformed markers, a region in a
cell without the nbgrader solution metadata, a ``solution: true`` cell without a region (nbgrader
would blank the whole cell), a graded cell without points, a check call outside a graded cell,
duplicate ``grade_id``, a generated code cell that no longer parses, and a solution line leaking
into the exercise (:func:`leaked_solution_lines`).
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import json
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

try:
    import nbformat
except ModuleNotFoundError:  # the `grading` extra is missing: the module still imports so that main() can say so
    nbformat = None

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_STUB = "# YOUR CODE HERE"
RAISE_STUB = "raise NotImplementedError()"
PASS_STUB = "pass"
MARKDOWN_STUB = "YOUR ANSWER HERE"
CHECK_FUNCTIONS = frozenset({"check"})
STUB_LINES = frozenset({CODE_STUB, RAISE_STUB, PASS_STUB, MARKDOWN_STUB})

#: Lines too common to count as a leaked solution even when they only occur inside a region.
TRIVIAL_LINES = frozenset(
    {"pass", "return", "continue", "break", "else:", "try:", "finally:", "return None", "...", "else", "end"}
)

_GRADE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_CHECK_CALL = re.compile(r"(?<![\w])check\s*\(")
_DEF_CHECK = re.compile(r"\bdef\s+check\s*\(")
_PUNCTUATION_ONLY = re.compile(r"^[\W_]*$")


#: How to install what the instructors' commands need (pyproject.toml's `grading` extra).
GRADING_INSTALL = "pip install 'minattn[grading]'"


def require_modules(command: str, modules) -> None:
    """Stop ``command`` with one line naming the missing ``modules`` and how to install them (no traceback).

    Args:
        command: the console script's name, e.g. ``"minattn-grade"``.
        modules: top-level module names the command imports, e.g. ``("nbformat", "nbclient")``.
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        names = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
        sys.exit(f"{command} needs {names}, which {sys.executable} cannot import: {GRADING_INSTALL}")


class SolutionError(ValueError):
    """A solution notebook breaks the conventions; ``problems`` lists what is wrong."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# ----------------------------------------------------------------------------- regions


def _lines(source) -> list[str]:
    if isinstance(source, list):  # a notebook dict not passed through nbformat
        source = "".join(source)
    return source.split("\n")


def _is_marker(line: str) -> str | None:
    stripped = line.strip()
    if stripped == BEGIN:
        return "begin"
    if stripped == END:
        return "end"
    return None


def _looks_like_marker(line: str) -> bool:
    upper = line.upper()
    return "BEGIN SOLUTION" in upper or "END SOLUTION" in upper


def _scan(lines: list[str]) -> tuple[list[tuple[int, int]], list[str]]:
    """The regions of one cell as (begin, end) line indices of the markers, and the problems found."""
    regions, problems = [], []
    start = None
    for i, line in enumerate(lines):
        kind = _is_marker(line)
        if kind is None:
            if _looks_like_marker(line):
                problems.append(
                    f"line {i + 1} looks like a marker but is not exactly {BEGIN!r} or {END!r}: {line.strip()!r}"
                )
            continue
        if kind == "begin":
            if start is not None:
                problems.append(f"line {i + 1}: {BEGIN!r} inside the region opened on line {start + 1} (no nesting)")
                continue
            start = i
        else:
            if start is None:
                problems.append(f"line {i + 1}: {END!r} without a {BEGIN!r} before it")
                continue
            regions.append((start, i))
            start = None
    if start is not None:
        problems.append(f"line {start + 1}: {BEGIN!r} is never closed by {END!r} in this cell")
    return regions, problems


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _function_lines(source: str) -> list[tuple[int, int]] | None:
    """1-based (first, last) line ranges of every function in ``source``; None if it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    return [
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def _code_stub(lines: list[str], begin: int, functions) -> list[str]:
    indent = _indent(lines[begin])
    if not indent:
        return [CODE_STUB]
    if functions is None:  # IPython syntax (magics): assume the convention's function body
        in_function = True
    else:
        line_no = begin + 1
        in_function = any(first < line_no <= last for first, last in functions)
    return [indent + CODE_STUB, indent + (RAISE_STUB if in_function else PASS_STUB)]


def _clear_regions(cell) -> list[str]:
    lines = _lines(cell.source)
    regions, _ = _scan(lines)
    if not regions:
        return lines
    functions = _function_lines(cell.source) if cell.cell_type == "code" else None
    out, last = [], 0
    for begin, end in regions:
        out.extend(lines[last:begin])
        if cell.cell_type == "code":
            out.extend(_code_stub(lines, begin, functions))
        else:
            out.append(_indent(lines[begin]) + MARKDOWN_STUB)
        last = end + 1
    out.extend(lines[last:])
    return out


def _split_regions(nb) -> tuple[list[str], list[str]]:
    """Stripped non-blank lines strictly inside regions, and every other stripped line of ``nb``."""
    inside, outside = [], []
    for cell in nb.cells:
        lines = _lines(cell.source)
        regions, _ = _scan(lines)
        in_region = set()
        for begin, end in regions:
            in_region.update(range(begin + 1, end))
        for i, line in enumerate(lines):
            stripped = line.strip()
            if not stripped:
                continue
            (inside if i in in_region else outside).append(stripped)
    return inside, outside


# ----------------------------------------------------------------------------- validation


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def _where(index: int, cell) -> str:
    cell_id = cell.get("id")
    return f"cell {index + 1}" + (f" (id {cell_id})" if cell_id else "")


def validate_solution(nb) -> list[str]:
    """Everything in solution notebook ``nb`` that breaks the conventions (an empty list if nothing)."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        where = _where(index, cell)
        lines = _lines(cell.source)
        regions, marker_problems = _scan(lines)
        problems += [f"{where}: {p}" for p in marker_problems]
        meta = _nbgrader(cell)
        if cell.cell_type == "raw" and (regions or marker_problems):
            problems.append(f"{where}: solution markers are only allowed in code and markdown cells")
        if regions or marker_problems:
            if meta.get("solution") is not True or not meta.get("grade_id"):
                problems.append(
                    f"{where}: has a solution region but no nbgrader metadata "
                    '{"nbgrader": {"solution": true, "grade": false, "grade_id": "...", "locked": false, ...}}'
                )
        elif meta.get("solution") is True:
            problems.append(
                f"{where}: is marked nbgrader solution: true but has no {BEGIN!r} region "
                "(nbgrader would blank the whole cell; add the markers or drop the metadata)"
            )
        if meta:
            grade_id = meta.get("grade_id")
            if not isinstance(grade_id, str) or not _GRADE_ID.match(grade_id):
                problems.append(f"{where}: nbgrader grade_id {grade_id!r} must be letters, digits, '-' and '_'")
            elif grade_id in seen:
                problems.append(f"{where}: duplicate grade_id {grade_id!r} (also cell {seen[grade_id] + 1})")
            else:
                seen[grade_id] = index
            if meta.get("grade") is True:
                points = meta.get("points")
                if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
                    problems.append(f"{where}: graded cell needs nbgrader points (a number >= 0), has {points!r}")
        if cell.cell_type == "code":
            source = "\n".join(lines)
            calls_check = calls_check_function(source)
            if calls_check and meta.get("grade") is not True:
                problems.append(
                    f"{where}: calls check(...) but is not a graded cell "
                    '(add {"nbgrader": {"grade": true, "grade_id": "...", "points": N, "locked": true, ...}})'
                )
            if regions and not marker_problems and _function_lines(source) is not None:
                exercise_source = "\n".join(_clear_regions(cell))
                if _function_lines(exercise_source) is None:
                    problems.append(f"{where}: the learner's version of this cell would not parse as Python")
    return problems


def calls_check_function(source: str) -> bool:
    """True if code ``source`` calls ``check(...)`` (comments and strings aside)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax: a plain text search
        return _CHECK_CALL.search(_DEF_CHECK.sub("", source)) is not None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in CHECK_FUNCTIONS:
                return True
    return False


# ----------------------------------------------------------------------------- the exercise


def make_exercise(notebook):
    """The learner's version of solution ``notebook`` (a new NotebookNode; the argument is not changed).

    Raises:
        SolutionError: when the notebook breaks the conventions (see :func:`validate_solution`).
    """
    problems = validate_solution(notebook)
    if problems:
        raise SolutionError(problems)
    nb = copy.deepcopy(notebook)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.source = "\n".join(_clear_regions(cell))
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def leaked_solution_lines(solution_nb, exercise_nb) -> list[str]:
    """Solution lines that appear in the exercise notebook.

    A line counts when it stands strictly between the markers of a region in ``solution_nb``, is not
    blank, trivial (``pass``, ``return``, ...), a stub line or made of punctuation only (``)``, ``]]``),
    and does not also occur outside every region of the solution (a shared ``def f(x):`` header, a
    ``tokens = None`` initialisation). Such a line leaks when it appears, stripped, in any cell of
    ``exercise_nb``. Returned in solution order, without repeats.
    """
    inside, outside = _split_regions(solution_nb)
    shared = set(outside)
    exercise_lines = {line.strip() for cell in exercise_nb.cells for line in _lines(cell.source)}
    leaked, seen = [], set()
    for line in inside:
        if line in seen or line in shared or line in STUB_LINES or line in TRIVIAL_LINES:
            continue
        if len(line) < 4 or _PUNCTUATION_ONLY.match(line) or _is_marker(line):
            continue
        seen.add(line)
        if line in exercise_lines:
            leaked.append(line)
    return leaked


# ----------------------------------------------------------------------------- files


def _deterministic_ids(data: dict) -> None:
    """Give cells of a format-4.5+ notebook dict without (or with a repeated) id a fixed one.

    nbformat would pick random ids, and the exercise would change on every run.
    """
    if data.get("nbformat") != 4 or data.get("nbformat_minor", 0) < 5:
        return
    cells = data.get("cells", [])
    used = {c.get("id") for c in cells if isinstance(c, dict) and c.get("id")}
    seen: set[str] = set()
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            continue
        cell_id = cell.get("id")
        if isinstance(cell_id, str) and cell_id and cell_id not in seen:
            seen.add(cell_id)
            continue
        new, n = f"cell-{index}", 0
        while new in used or new in seen:
            n += 1
            new = f"cell-{index}-{n}"
        cell["id"] = new
        seen.add(new)
        used.add(new)


def read_notebook(path) -> nbformat.NotebookNode:
    """Read a notebook as format 4, with deterministic cell ids. Raises ValueError if it is not one."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid notebook JSON: {exc}") from None
    if not isinstance(data, dict) or ("cells" not in data and "worksheets" not in data):
        raise ValueError("not a notebook: the JSON has no cells")
    if not isinstance(data.get("cells", []), list):
        raise ValueError("not a notebook: its cells are not a list")
    _deterministic_ids(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return nbformat.reads(json.dumps(data), as_version=4)
        except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds
            raise ValueError(f"not a valid notebook: {exc}") from None


def render(nb) -> str:
    """The exact text an exercise notebook is written as (format 4, sorted keys, trailing newline)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _first_difference(existing: str, expected: str) -> str:
    try:
        old, new = json.loads(existing), json.loads(expected)
    except json.JSONDecodeError:
        return "it is not valid notebook JSON"
    old_cells, new_cells = old.get("cells", []), new.get("cells", [])
    for index, (a, b) in enumerate(zip(old_cells, new_cells)):
        if a != b:
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            return f"cell {index + 1} differs ({', '.join(keys)})"
    if len(old_cells) != len(new_cells):
        return f"it has {len(old_cells)} cells, the solution gives {len(new_cells)}"
    keys = sorted(k for k in set(old) | set(new) if k != "cells" and old.get(k) != new.get(k))
    return f"notebook {', '.join(keys)} differ" if keys else "formatting differs (not written by this tool)"


def generate(solutions_dir="solutions", exercises_dir="exercises", check: bool = False) -> list[str]:
    """Write (or with ``check=True`` only compare) every exercise notebook from its solution.

    Returns the problems found, one sentence each (an empty list when all is well). A solution with
    problems is not written. In check mode an exercise is a problem when it is missing, differs in
    any byte from what its solution generates, leaks solution lines, or has no solution.
    """
    solutions_dir, exercises_dir = Path(solutions_dir), Path(exercises_dir)
    if not solutions_dir.is_dir():
        return [f"{solutions_dir}: no such folder of solution notebooks"]
    problems: list[str] = []
    solutions = sorted(solutions_dir.glob("*.ipynb"))
    for solution_path in solutions:
        target = exercises_dir / solution_path.name
        try:
            solution = read_notebook(solution_path)
            exercise = make_exercise(solution)
        except SolutionError as exc:
            problems += [f"{solution_path}: {p}" for p in exc.problems]
            continue
        except (OSError, ValueError) as exc:
            problems.append(f"{solution_path}: {exc}")
            continue
        leaked = leaked_solution_lines(solution, exercise)
        if leaked:  # cannot happen by construction; a safety net
            problems.append(f"{solution_path}: the generated exercise would leak {leaked!r}")
            continue
        text = render(exercise)
        existing = target.read_text(encoding="utf-8") if target.is_file() else None
        if not check:
            if existing != text:
                atomic_write_text(target, text)
            continue
        if existing is None:
            problems.append(f"{target}: missing (generate it from {solution_path})")
            continue
        if existing != text:
            problems.append(
                f"{target}: stale, {_first_difference(existing, text)} from what {solution_path} generates"
            )
        try:
            current = read_notebook(target)
        except (OSError, ValueError):
            continue  # already reported as stale
        leaked = leaked_solution_lines(solution, current)
        if leaked:
            shown = "; ".join(repr(line) for line in leaked[:5]) + (" ..." if len(leaked) > 5 else "")
            problems.append(f"{target}: leaks {len(leaked)} solution line(s) of {solution_path}: {shown}")
    names = {p.name for p in solutions}
    if exercises_dir.is_dir():
        for orphan in sorted(exercises_dir.glob("*.ipynb")):
            if orphan.name not in names:
                problems.append(f"{orphan}: has no solution {solutions_dir / orphan.name} (remove it or add one)")
    return problems


def main(argv=None) -> int:
    """``minattn-exercises [--check]``: exit 0 when all is well, 1 with the list of problems otherwise."""
    require_modules("minattn-exercises", ["nbformat"])
    parser = argparse.ArgumentParser(
        prog="minattn-exercises",
        description="Generate exercises/NN-slug.ipynb from solutions/NN-slug.ipynb (nbgrader markers).",
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale, missing or leaking")
    parser.add_argument("--solutions", default="solutions", help="folder of solution notebooks (default: solutions)")
    parser.add_argument("--exercises", default="exercises", help="folder of exercise notebooks (default: exercises)")
    args = parser.parse_args(argv)
    problems = generate(args.solutions, args.exercises, check=args.check)
    count = len(list(Path(args.solutions).glob("*.ipynb"))) if Path(args.solutions).is_dir() else 0
    if problems:
        what = "exercise notebooks are not up to date" if args.check else "some exercise notebooks were not written"
        print(f"{len(problems)} problem(s): {what}:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        if args.check:
            print("Fix any solution problems above, then regenerate: python -m minattn.grading.generate", file=sys.stderr)
        return 1
    verb = "up to date" if args.check else "written"
    print(f"{count} exercise notebook(s) {verb} in {args.exercises}/ (from {args.solutions}/).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
