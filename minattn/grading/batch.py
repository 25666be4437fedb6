"""The instructors' batch grader: run every submission in a fresh kernel and collect the check results.

    minattn-grade submissions/*.ipynb --out grades.csv [--json feedback.json] [--timeout-cell 60]
                  [--solutions solutions/] [--cwd DIR] [--jobs N] [--keep-executed DIR]
    python -m minattn.grading.batch ...     # the same without the console script

How a submission is graded
--------------------------
1. It is read as notebook JSON; a file that is not one gives its learner a single row with status
   ``invalid notebook`` and 0 points.
2. Its *reference* is the solution notebook it derives from (``--solutions``): the one whose file
   name the submission's name or folder contains, else the one sharing most nbgrader ``grade_id``s
   with it (with a single solution notebook: that one). The reference's graded cells (nbgrader
   ``grade: true``, i.e. the check cells) are the exercises: their ``grade_id`` names the exercise and
   their ``points`` are what it is worth. Their source in the submission is reset to the exercise
   version (as nbgrader does for locked cells), so editing a check cell or its points changes
   nothing. Without ``--solutions`` the submission's own graded cells and points are used, and a
   deleted check cell cannot be noticed.
3. It runs top to bottom in its own fresh kernel (nbclient, ``allow_errors=True``: a cell that
   raises does not stop the others). A cell running longer than ``--timeout-cell`` seconds is
   interrupted and the run goes on. A hidden first cell makes every :class:`CheckResult` created in
   the kernel publish itself as a display output of MIME type :data:`RECORD_MIME`, so the grader knows
   which cell produced which result.
4. Each exercise is scored from the cells of its *block*: the code cells after the previous check
   cell up to and including its own check cell.

   ====================  ==================================================================
   status                when
   ====================  ==================================================================
   passed                every check result of the check cell passed (full points); a check
                         cell with no ``check``/``check_value`` call passes when it runs
                         without an exception (nbgrader's rule)
   failed / error /      the first check result that did not pass (0 points); ``error`` also
   not attempted         when the check cell itself raised (e.g. ``NameError`` because the
                         answer cell crashed) or produced no result
   timeout               a cell of the block ran past the time limit (0 points)
   cell deleted          the check cell's ``grade_id`` is missing from the submission (0)
   error                 the kernel died before or while the block ran (0)
   ====================  ==================================================================

   Points are all-or-nothing per check cell. Feedback names earlier cells of the block that raised.

Working directory
-----------------
Learners run the exercises from the course's ``exercises/`` folder, so relative paths in the
notebooks are relative to it. The kernel therefore starts in the ``exercises`` folder beside the
``--solutions`` folder when there is one, else in the submission's own folder; ``--cwd`` overrides
both. The folder holding the ``minattn`` package the grader imported is put first on the kernel's
``PYTHONPATH``, so the learners' code imports the same package. The kernel is ``python3`` (the
grader's own Python) unless ``--kernel`` names another. Submissions can write files into that
folder; the grader is not a sandbox, so run untrusted notebooks in a container.

Learner names
-------------
The learner is the submission's file stem (``submissions/alice.ipynb`` -> ``alice``), except when the
stem is the notebook's own name (``submitted/alice/03-softmax.ipynb``), where the folder name is used.

Output
------
A CSV with one row per learner and exercise plus a ``TOTAL`` row per learner, columns
:data:`CSV_COLUMNS` (``feedback`` holds the first line), and optionally a JSON file with the full
feedback of every check. Both are written at the end of the run to a temporary file in the target
folder and moved into place with ``os.replace``: an interrupted run leaves any earlier file untouched.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from .generate import SolutionError, atomic_write_text, calls_check_function, make_exercise, read_notebook

#: MIME type under which the hidden first cell makes every CheckResult publish itself.
RECORD_MIME = "application/vnd.minattn.check-result+json"
#: ``ename`` of the reply nbclient hands back for an interrupted cell.
TIMEOUT_ENAME = "MinattnCellTimeout"
CSV_COLUMNS = ("learner", "notebook", "exercise", "status", "points", "max_points", "feedback")
TOTAL = "TOTAL"

SETUP_SOURCE = f"""\
# minattn batch grading: record every CheckResult as a display output (added by the grader)
def _minattn_grading_setup():
    import IPython.display
    from minattn.grading import result

    cls = result.CheckResult
    if getattr(cls, "_minattn_recording", False):
        return
    original = cls.__post_init__

    def __post_init__(self):
        original(self)
        try:
            record = {{
                "name": str(self.name),
                "status": str(self.status),
                "feedback": str(self.feedback),
                "case": None if self.case is None else str(self.case),
                "diagnoses": [str(d) for d in self.diagnoses],
            }}
            IPython.display.publish_display_data({{{RECORD_MIME!r}: record}})
        except Exception:
            pass

    cls.__post_init__ = __post_init__
    cls._minattn_recording = True


_minattn_grading_setup()
del _minattn_grading_setup
"""


# ----------------------------------------------------------------------------- results


@dataclass
class ExerciseGrade:
    """The grade of one exercise (one check cell) of one submission."""

    exercise: str
    status: str
    points: float
    max_points: float
    feedback: str
    checks: list[dict] = field(default_factory=list)

    @property
    def first_line(self) -> str:
        return self.feedback.strip().splitlines()[0] if self.feedback.strip() else ""


@dataclass
class SubmissionGrade:
    """The grades of one submitted notebook."""

    learner: str
    notebook: str
    path: str
    exercises: list[ExerciseGrade] = field(default_factory=list)
    error: str | None = None  # set when the submission could not be graded at all
    error_status: str = "invalid notebook"
    notes: list[str] = field(default_factory=list)
    max_total: float = 0.0

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self) -> float:
        return sum(e.max_points for e in self.exercises) if self.exercises else self.max_total


# ----------------------------------------------------------------------------- references


@dataclass
class GradeCell:
    grade_id: str
    points: float
    source: str


@dataclass
class Reference:
    """What a submission is graded against: its exercises (check cells) and their points."""

    name: str
    grade_cells: list[GradeCell]
    grade_ids: frozenset[str]

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.grade_cells)


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def _points(meta: dict) -> float:
    points = meta.get("points", 0)
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
        return 0.0
    return points


def reference_from(nb, name: str) -> Reference:
    """The reference given by notebook ``nb`` (a solution's exercise version, or a submission itself)."""
    cells, ids = [], set()
    for cell in nb.cells:
        meta = _nbgrader(cell)
        grade_id = meta.get("grade_id")
        if not isinstance(grade_id, str) or not grade_id:
            continue
        ids.add(grade_id)
        if meta.get("grade") is True and cell.cell_type == "code" and grade_id not in {c.grade_id for c in cells}:
            cells.append(GradeCell(grade_id, _points(meta), cell.source))
    return Reference(name, cells, frozenset(ids))


def load_references(solutions_dir) -> list[Reference]:
    """The references of every ``*.ipynb`` in ``solutions_dir`` (raises SolutionError/ValueError on a bad one)."""
    references = []
    for path in sorted(Path(solutions_dir).glob("*.ipynb")):
        try:
            exercise = make_exercise(read_notebook(path))
        except SolutionError as exc:
            raise SolutionError([f"{path}: {p}" for p in exc.problems]) from None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        references.append(reference_from(exercise, path.stem))
    return references


def _match(path: Path, nb, references: list[Reference]) -> Reference | None:
    if not references:
        return None
    by_length = sorted(references, key=lambda r: -len(r.name))
    for text in (path.stem, path.parent.name):
        for reference in by_length:
            if reference.name in text:
                return reference
    if nb is not None:
        ids = {_nbgrader(c).get("grade_id") for c in nb.cells} - {None}
        overlap = [(len(ids & r.grade_ids), r) for r in references]
        best = max(n for n, _ in overlap)
        winners = [r for n, r in overlap if n == best]
        if best > 0 and len(winners) == 1:
            return winners[0]
    return references[0] if len(references) == 1 else None


def learner_name(path: Path, notebook: str) -> str:
    """The file stem, or the folder name when the stem is the notebook's own name."""
    path = Path(path)
    if notebook and path.stem == notebook and path.parent.name:
        return path.parent.name
    return path.stem


# ----------------------------------------------------------------------------- execution


@dataclass
class CellRun:
    """What happened when one cell of the submission ran."""

    ran: bool = False
    error: tuple[str, str] | None = None  # (ename, evalue)
    timed_out: bool = False
    records: list[dict] = field(default_factory=list)


@dataclass
class Execution:
    runs: dict[int, CellRun]
    fatal: str | None = None  # why the run stopped early (kernel died / did not start)
    fatal_cell: int | None = None
    executed: object = None  # the executed copy (with the setup cell first)
    timeout_cell: float = 0.0


def _kernel_env() -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("MPLBACKEND", "Agg")
    env["MINATTN_BATCH_GRADING"] = "1"
    env.pop("JPY_PARENT_PID", None)
    return env


def _records(cell) -> list[dict]:
    found = []
    for output in cell.get("outputs", []):
        data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
        record = data.get(RECORD_MIME)
        if isinstance(record, str):
            try:
                record = json.loads(record)
            except json.JSONDecodeError:
                record = None
        if isinstance(record, dict) and "status" in record:
            found.append(record)
    return found


def execute(nb, cwd, timeout_cell: float, kernel_name: str = "python3") -> Execution:
    """Run every code cell of ``nb`` in a fresh kernel; never raises for the learner's code."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    executed = nbformat.from_dict(json.loads(json.dumps(nb)))  # a copy the client may fill
    executed.cells.insert(0, nbformat.v4.new_code_cell(SETUP_SOURCE))
    replies: dict[int, dict] = {}

    def on_executed(cell, cell_index, execute_reply):
        replies[cell_index] = execute_reply or {}

    client = NotebookClient(
        executed,
        timeout=max(1, int(round(timeout_cell))),
        kernel_name=kernel_name,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": TIMEOUT_ENAME,
            "evalue": f"the cell ran longer than {timeout_cell:g} s and was interrupted",
            "traceback": [],
        },
        resources={"metadata": {"path": str(cwd)}},
        record_timing=False,
        shutdown_kernel="immediate",
        startup_timeout=120,
        iopub_timeout=5,
        on_cell_executed=on_executed,
    )
    runs = {i: CellRun() for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    result = Execution(runs, executed=executed, timeout_cell=timeout_cell)
    current = None
    try:
        with client.setup_kernel(env=_kernel_env()):
            client.execute_cell(executed.cells[0], 0, store_history=False)
            content = replies.get(0, {}).get("content", {})
            if content.get("status") != "ok":
                result.fatal = (
                    "the grader could not set up the kernel: "
                    f"{content.get('ename', '?')}: {content.get('evalue', '')} (is minattn installed?)"
                )
                return result
            for index in sorted(runs):
                current = index
                cell = executed.cells[index + 1]
                if not cell.source.strip():
                    runs[index].ran = True
                    continue
                client.execute_cell(cell, index + 1)
                run = runs[index]
                run.ran = True
                content = replies.get(index + 1, {}).get("content", {})
                if content.get("status") == "error":
                    if content.get("ename") == TIMEOUT_ENAME:
                        run.timed_out = True
                    else:
                        run.error = (str(content.get("ename", "Error")), str(content.get("evalue", "")))
                run.records = _records(cell)
            current = None
    except DeadKernelError:
        result.fatal = "the kernel died (out of memory, or the code ended the Python process)"
        result.fatal_cell = current
    except Exception as exc:  # noqa: BLE001 - one submission must not stop the batch
        result.fatal = f"the grader could not run the notebook: {type(exc).__name__}: {exc}"
        result.fatal_cell = current
    return result


# ----------------------------------------------------------------------------- scoring


def _cell_label(index: int) -> str:
    return f"cell {index + 1}"


def _score(reference: Reference, nb, execution: Execution) -> tuple[list[ExerciseGrade], list[str]]:
    position = {}  # grade_id -> index of its (last) cell in the submission
    reference_ids = {c.grade_id for c in reference.grade_cells}
    for index, cell in enumerate(nb.cells):
        grade_id = _nbgrader(cell).get("grade_id")
        if cell.cell_type == "code" and grade_id in reference_ids:
            position[grade_id] = index
    check_positions = sorted(position.values())
    notes = []
    grades = []
    for grade_cell in reference.grade_cells:
        grade_id, max_points = grade_cell.grade_id, grade_cell.points
        if grade_id not in position:
            grades.append(
                ExerciseGrade(
                    grade_id,
                    "cell deleted",
                    0,
                    max_points,
                    f"cell deleted: the check cell {grade_id!r} is missing from the submission, so it could "
                    "not be graded.",
                )
            )
            continue
        index = position[grade_id]
        earlier = [p for p in check_positions if p < index]
        block = [i for i in sorted(execution.runs) if (earlier[-1] if earlier else -1) < i <= index]
        grades.append(_score_block(grade_id, max_points, index, block, execution))
    after = [i for i in execution.runs if check_positions and i > check_positions[-1]]
    if not check_positions:
        after = list(execution.runs)
    for i in after:
        run = execution.runs[i]
        if run.timed_out:
            notes.append(f"{_cell_label(i)} (after the last check) ran past the time limit and was interrupted")
    if execution.fatal:
        where = f" in {_cell_label(execution.fatal_cell)}" if execution.fatal_cell is not None else ""
        notes.insert(0, f"{execution.fatal}{where}")
    return grades, notes


def _score_block(grade_id, max_points, index, block, execution: Execution) -> ExerciseGrade:
    runs = execution.runs
    check_run = runs[index]
    records = check_run.records
    checks = list(records)
    earlier_errors = [
        f"{_cell_label(i)} raised {runs[i].error[0]}: {runs[i].error[1]}".rstrip(": ")
        for i in block
        if i != index and runs[i].error
    ]
    context = "".join(f"\nEarlier in this exercise, {e}." for e in earlier_errors)
    timed_out = [i for i in block if runs[i].timed_out]
    if timed_out:
        first = timed_out[0]
        text = (
            f"timeout: {_cell_label(first)} ran longer than the {execution.timeout_cell:g} s limit and was "
            "interrupted (an endless loop, or far too slow)."
        )
        if records:
            text += "\nThe check then reported:\n" + "\n".join(f"[{r['status']}] {r['feedback']}" for r in records)
        return ExerciseGrade(grade_id, "timeout", 0, max_points, text + context, checks)
    if not check_run.ran:
        if execution.fatal and execution.fatal_cell is not None and execution.fatal_cell in block:
            why = f"{execution.fatal[0].upper()}{execution.fatal[1:]} in {_cell_label(execution.fatal_cell)}."
        elif execution.fatal:
            why = f"Not run, because {execution.fatal}" + (
                f" in {_cell_label(execution.fatal_cell)}." if execution.fatal_cell is not None else "."
            )
        else:
            why = "The check cell did not run."
        return ExerciseGrade(grade_id, "error", 0, max_points, why + context, checks)
    if records:
        failing = [r for r in records if r.get("status") != "passed"]
        if not failing:
            text = "\n".join(r.get("feedback", "") for r in records)
            return ExerciseGrade(grade_id, "passed", max_points, max_points, text, checks)
        shown = failing[0]
        text = shown.get("feedback", "")
        if len(records) > 1:
            text += f"\n({len(failing)} of {len(records)} checks in this cell did not pass.)"
        return ExerciseGrade(grade_id, shown.get("status", "error"), 0, max_points, text + context, checks)
    if check_run.error:
        ename, evalue = check_run.error
        text = f"The check cell raised {ename}: {evalue}".rstrip(": ")
        if ename == "NameError":
            text += " (did the cell defining it fail, or was it not run?)"
        return ExerciseGrade(grade_id, "error", 0, max_points, text + "." + context, checks)
    source = execution.executed.cells[index + 1].source if execution.executed is not None else ""
    if calls_check_function(source):
        return ExerciseGrade(
            grade_id,
            "error",
            0,
            max_points,
            "The check cell produced no check result (was `check` redefined?)." + context,
            checks,
        )
    return ExerciseGrade(grade_id, "passed", max_points, max_points, "The cell ran without an error.", checks)


# ----------------------------------------------------------------------------- one submission


def _read_submission(path: Path):
    try:
        return read_notebook(path), None
    except Exception as exc:  # noqa: BLE001 - whatever is wrong, the learner gets one error row
        return None, str(exc) or type(exc).__name__


def default_cwd(path: Path, solutions_dir) -> Path:
    """The ``exercises`` folder beside ``solutions_dir`` if there is one, else the submission's folder."""
    if solutions_dir is not None:
        exercises = Path(solutions_dir).resolve().parent / "exercises"
        if exercises.is_dir():
            return exercises
    return Path(path).resolve().parent


def grade_notebook(
    path,
    references: list[Reference] | None = None,
    timeout_cell: float = 60,
    cwd=None,
    kernel_name: str = "python3",
    solutions_dir=None,
    keep_executed=None,
) -> SubmissionGrade:
    """Grade one submission (see the module's docstring); never raises for the learner's notebook."""
    path = Path(path)
    nb, problem = _read_submission(path)
    reference = _match(path, nb, references or [])
    if nb is None and reference is None:  # unreadable and unnamed: still one clear row for the learner
        return SubmissionGrade(path.stem, "", str(path), error=f"not a valid notebook, so nothing could be graded: {problem}")
    if references and reference is None:
        names = ", ".join(r.name for r in references)
        return SubmissionGrade(
            path.stem,
            "",
            str(path),
            error=f"matches none of the solution notebooks ({names}): name the file after one, or check its cells",
            error_status="unknown notebook",
        )
    notebook = reference.name if reference else ""
    learner = learner_name(path, notebook)
    if nb is None:
        return SubmissionGrade(
            learner,
            notebook,
            str(path),
            error=f"not a valid notebook, so nothing could be graded: {problem}",
            max_total=reference.max_points if reference else 0.0,
        )
    if reference is None:
        reference = reference_from(nb, "")
    sources = {c.grade_id: c.source for c in reference.grade_cells}
    for cell in nb.cells:
        grade_id = _nbgrader(cell).get("grade_id")
        if cell.cell_type == "code" and grade_id in sources:
            cell.source = sources[grade_id]  # a locked check cell: as in the exercise
    run_dir = Path(cwd) if cwd is not None else default_cwd(path, solutions_dir)
    execution = execute(nb, run_dir, timeout_cell, kernel_name)
    exercises, notes = _score(reference, nb, execution)
    grade = SubmissionGrade(learner, notebook, str(path), exercises, notes=notes, max_total=reference.max_points)
    if keep_executed is not None and execution.executed is not None:
        target = Path(keep_executed) / f"{learner}{'-' + notebook if notebook and notebook != learner else ''}.ipynb"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atomic_write_text(target, nbformat.writes(execution.executed) + "\n")
    return grade


def grade_submissions(
    paths,
    out=None,
    json_out=None,
    timeout_cell: float = 60,
    solutions=None,
    cwd=None,
    kernel_name: str = "python3",
    jobs: int = 1,
    keep_executed=None,
    progress: bool | None = None,
) -> list[SubmissionGrade]:
    """Grade every notebook in ``paths``; write the CSV (``out``) and JSON (``json_out``) if given.

    Args:
        paths: submission notebooks, graded (and reported) in this order.
        out: CSV path (one row per learner and exercise, plus a TOTAL row per learner).
        json_out: JSON path with the full feedback of every check.
        timeout_cell: seconds a cell may run before it is interrupted.
        solutions: folder of solution notebooks (the references; see the module's docstring).
        cwd: the kernels' working directory (default: see :func:`default_cwd`).
        kernel_name: the Jupyter kernel to run the notebooks with.
        jobs: how many submissions run at once (each in its own kernel).
        keep_executed: a folder to save each executed notebook in (for looking into a grade).
        progress: show a tqdm bar (None: only on a terminal).
    """
    from tqdm.auto import tqdm

    paths = list(dict.fromkeys(Path(p) for p in paths))
    references = load_references(solutions) if solutions is not None else None
    if solutions is not None and not references:
        raise ValueError(f"{solutions}: no solution notebooks (*.ipynb) there")

    def one(path):
        try:
            return grade_notebook(path, references, timeout_cell, cwd, kernel_name, solutions, keep_executed)
        except Exception as exc:  # noqa: BLE001 - a grader bug on one submission must not stop the batch
            return SubmissionGrade(
                path.stem,
                "",
                str(path),
                error=f"the grader failed on this submission: {type(exc).__name__}: {exc}",
                error_status="grader error",
            )

    bar = tqdm(total=len(paths), desc="grading", unit="notebook", disable=None if progress is None else not progress)
    results: list[SubmissionGrade | None] = [None] * len(paths)
    try:
        if jobs <= 1:
            for i, path in enumerate(paths):
                bar.set_postfix_str(path.name)
                results[i] = one(path)
                bar.update()
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = {pool.submit(one, path): i for i, path in enumerate(paths)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update()
    finally:
        bar.close()
    grades = [r for r in results if r is not None]
    if out is not None:
        write_csv(out, grades)
    if json_out is not None:
        write_json(json_out, grades)
    return grades


# ----------------------------------------------------------------------------- output


def _number(x: float):
    return int(x) if float(x).is_integer() else round(float(x), 4)


def csv_rows(grades: list[SubmissionGrade]) -> list[dict]:
    """The CSV rows (dicts keyed by :data:`CSV_COLUMNS`)."""
    rows = []
    for g in grades:
        if g.error is not None:
            rows.append(
                dict(
                    learner=g.learner,
                    notebook=g.notebook,
                    exercise=TOTAL,
                    status=g.error_status,
                    points=0,
                    max_points=_number(g.max_points),
                    feedback=g.error,
                )
            )
            continue
        for e in g.exercises:
            rows.append(
                dict(
                    learner=g.learner,
                    notebook=g.notebook,
                    exercise=e.exercise,
                    status=e.status,
                    points=_number(e.points),
                    max_points=_number(e.max_points),
                    feedback=e.first_line,
                )
            )
        passed = sum(e.status == "passed" for e in g.exercises)
        rows.append(
            dict(
                learner=g.learner,
                notebook=g.notebook,
                exercise=TOTAL,
                status=f"{passed}/{len(g.exercises)} passed",
                points=_number(g.points),
                max_points=_number(g.max_points),
                feedback="; ".join(g.notes),
            )
        )
    return rows


def _write_csv_rows(f, rows: list[dict]) -> None:
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)


def write_csv(path, grades: list[SubmissionGrade]) -> None:
    """Write the CSV atomically (a temporary file in the same folder, then ``os.replace``)."""
    buffer = io.StringIO()
    _write_csv_rows(buffer, csv_rows(grades))
    atomic_write_text(path, buffer.getvalue())


def to_json(grades: list[SubmissionGrade]) -> dict:
    """Everything the run found, for the JSON file."""
    learners = []
    for g in grades:
        item = {
            "learner": g.learner,
            "notebook": g.notebook,
            "file": g.path,
            "points": _number(g.points),
            "max_points": _number(g.max_points),
            "error": g.error,
            "status": g.error_status if g.error is not None else "graded",
            "notes": g.notes,
            "exercises": [
                {**asdict(e), "points": _number(e.points), "max_points": _number(e.max_points)} for e in g.exercises
            ],
        }
        learners.append(item)
    return {"columns": list(CSV_COLUMNS), "submissions": learners}


def write_json(path, grades: list[SubmissionGrade]) -> None:
    """Write the JSON atomically."""
    atomic_write_text(path, json.dumps(to_json(grades), indent=1, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    """``minattn-grade``: exit 0 when every submission was graded (whatever the grades), 2 on a usage error."""
    parser = argparse.ArgumentParser(
        prog="minattn-grade",
        description="Grade submitted exercise notebooks: each runs in a fresh kernel; the check results "
        "become a CSV (one row per learner and exercise, plus a TOTAL row) and optionally a JSON file.",
    )
    parser.add_argument("submissions", nargs="+", help="submitted notebooks (e.g. submissions/*.ipynb)")
    parser.add_argument("--out", required=True, help="CSV file to write (replaced atomically)")
    parser.add_argument("--json", dest="json_out", help="JSON file with the full feedback (replaced atomically)")
    parser.add_argument("--timeout-cell", type=float, default=60, help="seconds a cell may run (default 60)")
    parser.add_argument("--solutions", help="folder of solution notebooks: exercises, points, deleted cells")
    parser.add_argument("--cwd", help="working directory of the kernels (default: exercises/ beside --solutions)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once (default 1)")
    parser.add_argument("--keep-executed", help="folder to save the executed notebooks in")
    args = parser.parse_args(argv)
    if args.timeout_cell <= 0:
        parser.error("--timeout-cell must be positive")
    missing = [p for p in args.submissions if not Path(p).is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    if args.solutions is None:
        print(
            "note: without --solutions the submissions' own check cells and points are used, "
            "and deleted check cells cannot be noticed",
            file=sys.stderr,
        )
    try:
        grades = grade_submissions(
            args.submissions,
            out=args.out,
            json_out=args.json_out,
            timeout_cell=args.timeout_cell,
            solutions=args.solutions,
            cwd=args.cwd,
            kernel_name=args.kernel,
            jobs=max(1, args.jobs),
            keep_executed=args.keep_executed,
        )
    except (SolutionError, ValueError) as exc:
        print(f"minattn-grade: cannot grade against the solutions:\n{exc}", file=sys.stderr)
        return 2
    total = sum(g.points for g in grades)
    print(
        f"graded {len(grades)} submission(s), {sum(g.error is not None for g in grades)} unreadable; "
        f"{_number(total)} points in all; wrote {args.out}" + (f" and {args.json_out}" if args.json_out else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
