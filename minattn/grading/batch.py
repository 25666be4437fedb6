"""The instructors' batch grader: run every submission in a fresh kernel and collect the check results.

    minattn-grade submissions/*.ipynb --out grades.csv [--json feedback.json] [--gradebook lms.csv]
                  [--gradebook-id-column NAME] [--timeout-cell 60] [--solutions solutions/]
                  [--cwd DIR] [--jobs N] [--keep-executed DIR]
    python -m minattn.grading.batch ...     # the same without the console script

How a submission is graded
--------------------------
1. It is read as notebook JSON.
2. Its *reference* is the solution notebook it derives from (``--solutions``): the one whose file
   name the submission's name or folder contains, else the one sharing most nbgrader ``grade_id``s
   with it (with a single solution notebook: that one). The reference's graded cells (nbgrader
   ``grade: true``, i.e. the check cells) are the exercises: their ``grade_id`` names the exercise and
   their ``points`` are what it is worth. Their source in the submission is reset to the exercise
   version (as nbgrader does for locked cells), so editing a check cell or its points changes
   nothing. Without ``--solutions`` the submission's own graded cells and points are used, and a
   deleted check cell cannot be noticed.

   A file that is not a valid notebook (truncated, half merged, not JSON) still gets its reference:
   by its name as above, else by the ``grade_id``s that can still be read in its text. It then has a
   row per exercise of that lesson with status ``invalid notebook`` and 0 points, and the lesson's
   max points in its ``TOTAL`` row. Only with no reference at all (nothing matches, or no
   ``--solutions``) is it a single ``TOTAL`` row with max points 0.
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
                         cell with no ``check`` call passes when it runs
                         without an exception (nbgrader's rule)
   failed / error /      the first check result that did not pass (0 points); ``error`` also
   not attempted         when the check cell itself raised (e.g. ``NameError`` because the
                         answer cell crashed) or produced no result
   timeout               a cell of the block ran past the time limit (0 points)
   cell deleted          the check cell's ``grade_id`` is missing from the submission (0)
   error                 the kernel died before or while the block ran (0)
   invalid notebook      the file is not a notebook (0; see step 2)
   not graded            the run was interrupted before this submission was graded (0)
   ====================  ==================================================================

   Points are all-or-nothing per check cell. Feedback names earlier cells of the block that raised.
   When an earlier cell's failure explains what went wrong, it comes first, on the line the CSV
   keeps: ``error: cell 2 raised ModuleNotFoundError: No module named 'x'; the check then failed
   with NameError: name 'check' is not defined.`` For a ``NameError`` that is the first failed cell
   (anywhere before) whose source mentions the name, so a failed import cell is named in every
   check cell it broke; otherwise the first failed cell of the block (``...; the check then
   reported: ...`` before a check result that did not pass).

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
The learner is the submission's file stem without its lesson's name (``submissions/alice.ipynb`` and
``submissions/alice-03-softmax.ipynb`` -> ``alice``). When nothing but the lesson's name is left
(``submitted/alice/03-softmax.ipynb``, nbgrader's ``submitted/alice/03-softmax/03-softmax.ipynb``),
it is the nearest folder not named after the lesson. So one learner's submissions of several lessons
share a name, and a row of the gradebook.

Progress
--------
On a terminal (stderr) a tqdm bar shows the run. When stdout is not a terminal (a log file, a CI job,
a pipe), one line per submission is printed there as it is done, flushed at once::

    [3/40] alice 03-voxels-to-tokens: 9/11 points
    [4/40] bob 03-voxels-to-tokens: invalid notebook, 0/11 points

Output
------
A CSV with one row per learner and exercise plus a ``TOTAL`` row per learner, columns
:data:`CSV_COLUMNS` (``feedback`` holds the first line), optionally a JSON file with the full
feedback of every check, and optionally a gradebook (below). Each is written at the end of the run
to a temporary file in the target folder and moved into place with ``os.replace``: a run stopped
while writing leaves any earlier file untouched.

Every cell of the CSV and the gradebook that a spreadsheet would take for a formula (one starting
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, also after leading spaces) is written
with a ``'`` in front, as OWASP advises against CSV injection: a learner named ``=1+2`` is ``'=1+2``
there. The JSON keeps the raw values.

Gradebook (``--gradebook FILE``)
--------------------------------
A wide CSV to import into an LMS (Canvas: Grades > Import; Moodle: Grades > Import > CSV file):
plain comma-separated UTF-8 (no byte-order mark), one header row, then one row per learner, in the
order the learners first appear:

- first column: the learner (as in the long CSV), headed ``Student`` (:data:`GRADEBOOK_ID_COLUMN`;
  ``--gradebook-id-column`` names it otherwise, e.g. ``SIS Login ID`` for Canvas to match learners
  on their login, or whatever column Moodle is told to map to a user field);
- one column per exercise, headed ``NN-lesson: grade_id (max P)`` (e.g. ``03-voxels-to-tokens:
  tokens (max 1)``), lessons in name order and exercises in notebook order, only for lessons that
  were submitted. A cell holds the points as a plain number (``2``, ``0.5``); it is empty where the
  learner has no submission of that lesson, or it was not graded (an LMS must not import a 0 there);
- last column ``Total``: the sum of the row, empty while a submission of the learner is not graded
  or matched no lesson (its points are still to come).

A learner with several submissions of one lesson gets the last one given (the CLI says so on
stderr); the long CSV and the JSON keep all of them. An LMS makes a new assignment of a column it
does not know, the Total too: skip that column in its import preview if the LMS computes its own.

Interrupts
----------
Ctrl-C (``KeyboardInterrupt``), and SIGTERM in the CLI, stop the run without losing the grades
already finished: the running kernels are killed, the outputs are written as usual (atomically) with
what was graded so far, every submission not yet graded gets ``not graded`` rows (0 points, the max
points of its lesson where it is known), and ``minattn-grade`` exits with status 130 after one line
on stderr saying how many were graded and that the output is partial. :func:`grade_submissions`
raises :class:`GradingInterrupted` (a ``KeyboardInterrupt``) after writing.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import signal
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    import nbformat
except ModuleNotFoundError:  # the `grading` extra is missing: the module still imports so that main() can say so
    nbformat = None

from .generate import (
    SolutionError,
    atomic_write_text,
    calls_check_function,
    make_exercise,
    read_notebook,
    require_modules,
)

#: MIME type under which the hidden first cell makes every CheckResult publish itself.
RECORD_MIME = "application/vnd.minattn.check-result+json"
#: ``ename`` of the reply nbclient hands back for an interrupted cell.
TIMEOUT_ENAME = "MinattnCellTimeout"
CSV_COLUMNS = ("learner", "notebook", "exercise", "status", "points", "max_points", "feedback")
TOTAL = "TOTAL"
#: Status of a submission that is not a notebook (and of each of its lesson's exercises).
INVALID = "invalid notebook"
#: Status of a submission an interrupted run did not get to (and of each of its lesson's exercises).
NOT_GRADED = "not graded"
#: Default header of the gradebook's first column (the learner); ``--gradebook-id-column`` changes it.
GRADEBOOK_ID_COLUMN = "Student"
#: Header of the gradebook's last column.
GRADEBOOK_TOTAL = "Total"
#: Exit status of an interrupted run (128 + SIGINT, what a shell reports for Ctrl-C).
EXIT_INTERRUPTED = 130

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
    error_status: str = INVALID
    notes: list[str] = field(default_factory=list)
    max_total: float = 0.0

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self) -> float:
        return sum(e.max_points for e in self.exercises) if self.exercises else self.max_total


class GradingInterrupted(KeyboardInterrupt):
    """Raised by :func:`grade_submissions` on an interrupt, after it wrote the partial output.

    A ``KeyboardInterrupt``, so code that does not know it still stops as on Ctrl-C. ``grades`` holds every
    submission in the order given: those graded before the interrupt, the rest as ``not graded``.
    """

    def __init__(self, grades: list[SubmissionGrade], graded: int):
        super().__init__(f"interrupted after grading {graded} of {len(grades)} submission(s)")
        self.grades = grades
        self.graded = graded


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


def _match(path: Path, nb, references: list[Reference], ids=None) -> Reference | None:
    """The reference of submission ``path``: by file or folder name, else by shared ``grade_id``s.

    ``ids`` are the ``grade_id``s to compare when ``nb`` is None (what could be read of a broken file).
    """
    if not references:
        return None
    by_length = sorted(references, key=lambda r: -len(r.name))
    for text in (path.stem, path.parent.name):
        for reference in by_length:
            if reference.name in text:
                return reference
    if nb is not None:
        ids = {_nbgrader(c).get("grade_id") for c in nb.cells} - {None}
    if ids:
        overlap = [(len(ids & r.grade_ids), r) for r in references]
        best = max(n for n, _ in overlap)
        winners = [r for n, r in overlap if n == best]
        if best > 0 and len(winners) == 1:
            return winners[0]
    return references[0] if len(references) == 1 else None


_GRADE_ID = re.compile(r'"grade_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


def readable_grade_ids(path) -> set[str]:
    """The nbgrader ``grade_id``s that can still be read in a file that is not a valid notebook.

    A truncated or half-merged notebook keeps most of its cells' metadata as text; a regular
    expression finds it where a JSON parser stops at the first fault.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return set()
    ids = set()
    for found in _GRADE_ID.finditer(text):
        try:
            ids.add(json.loads(f'"{found.group(1)}"'))
        except json.JSONDecodeError:
            pass
    return ids


def learner_name(path: Path, notebook: str) -> str:
    """The learner a submission is from: its file stem without the lesson's name, or a folder's name.

    ``alice.ipynb`` and ``alice-03-softmax.ipynb`` -> ``alice``; when nothing but the lesson's name is
    left (``alice/03-softmax.ipynb``, nbgrader's ``alice/03-softmax/03-softmax.ipynb``), the nearest
    folder not named after the lesson.
    """
    path = Path(path)
    stem = path.stem
    if not notebook or notebook not in stem:
        return stem
    rest = stem.replace(notebook, "", 1).strip(" -_.")
    if rest:
        return rest
    for folder in path.parents:
        if not folder.name:
            break
        if notebook not in folder.name:
            return folder.name
    return stem


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


#: The kernel managers of the kernels running now (all threads), so that an interrupt can stop them.
_LIVE_KERNELS: set = set()
_LIVE_KERNELS_LOCK = threading.Lock()


def _kill_kernel(km) -> None:
    """Kill the kernel process of ``km`` at once, with its process group, if it still runs."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    if process is None or process.poll() is not None:
        return
    try:
        # jupyter_client starts each kernel in a session of its own: the group also holds the
        # processes the learner's code started (e.g. data loader workers).
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
            return
    except (AttributeError, OSError):  # no process groups (Windows), or it just ended
        pass
    with contextlib.suppress(OSError):
        process.kill()


def kill_running_kernels() -> None:
    """Kill every kernel this process is running submissions in (what an interrupt does first)."""
    with _LIVE_KERNELS_LOCK:
        managers = list(_LIVE_KERNELS)
    for km in managers:
        _kill_kernel(km)


def execute(nb, cwd, timeout_cell: float, kernel_name: str = "python3", stop=None) -> Execution:
    """Run every code cell of ``nb`` in a fresh kernel; never raises for the learner's code.

    ``stop`` (a ``threading.Event``): once set, no further cell starts. A ``KeyboardInterrupt``
    passes through, and the kernel is killed on the way out whatever stopped the run.
    """
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
    # The manager is made here, not inside setup_kernel, so that it is known (to the finally below and to
    # kill_running_kernels) even when an interrupt lands while the kernel starts.
    km = client.create_kernel_manager()
    with _LIVE_KERNELS_LOCK:
        _LIVE_KERNELS.add(km)
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
                if stop is not None and stop.is_set():
                    result.fatal = "the run was stopped"
                    break
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
    finally:
        _kill_kernel(km)  # nbclient shut it down already, unless an interrupt cut that short
        with _LIVE_KERNELS_LOCK:
            _LIVE_KERNELS.discard(km)
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


def _source(execution: Execution, index: int) -> str:
    return execution.executed.cells[index + 1].source if execution.executed is not None else ""


def _what_went_wrong(index: int, execution: Execution) -> str:
    run = execution.runs[index]
    if run.timed_out:
        return f"{_cell_label(index)} ran longer than the {execution.timeout_cell:g} s limit and was interrupted"
    return f"{_cell_label(index)} raised {run.error[0]}: {run.error[1]}".rstrip(": ")


def _cause(index: int, block: list[int], execution: Execution, error=None) -> int | None:
    """The earlier cell whose failure most likely explains what went wrong in the check cell at ``index``.

    A ``NameError`` (``error``, as ``(ename, evalue)``) is explained by the first failed cell before it
    that mentions the name, wherever it is: an import cell that raised ``ModuleNotFoundError`` before
    ``from minattn.grading import check`` explains every check cell's "name 'check' is not defined".
    Otherwise the first failed cell of the exercise's own block, if any.
    """
    runs = execution.runs
    failed = [i for i in sorted(runs) if i < index and (runs[i].error or runs[i].timed_out)]
    if error is not None and error[0] == "NameError":
        named = re.search(r"name '([^']+)' is not defined", error[1])
        if named:
            mention = re.compile(rf"(?<!\.)\b{re.escape(named.group(1))}\b")
            for i in failed:
                # a cell that raised this same NameError is another victim, not the cause
                if runs[i].error != tuple(error) and mention.search(_source(execution, i)):
                    return i
    in_block = [i for i in failed if i in block]
    return in_block[0] if in_block else None


def _score_block(grade_id, max_points, index, block, execution: Execution) -> ExerciseGrade:
    runs = execution.runs
    check_run = runs[index]
    records = check_run.records
    checks = list(records)

    def context(skip=None) -> str:  # the block's other failed cells, after the feedback (skip: named already)
        errors = [_what_went_wrong(i, execution) for i in block if i not in (index, skip) and runs[i].error]
        return "".join(f"\nEarlier in this exercise, {e}." for e in errors)

    timed_out = [i for i in block if runs[i].timed_out]
    if timed_out:
        first = timed_out[0]
        text = (
            f"timeout: {_cell_label(first)} ran longer than the {execution.timeout_cell:g} s limit and was "
            "interrupted (an endless loop, or far too slow)."
        )
        if records:
            text += "\nThe check then reported:\n" + "\n".join(f"[{r['status']}] {r['feedback']}" for r in records)
        return ExerciseGrade(grade_id, "timeout", 0, max_points, text + context(), checks)
    if not check_run.ran:
        if execution.fatal and execution.fatal_cell is not None and execution.fatal_cell in block:
            why = f"{execution.fatal[0].upper()}{execution.fatal[1:]} in {_cell_label(execution.fatal_cell)}."
        elif execution.fatal:
            why = f"Not run, because {execution.fatal}" + (
                f" in {_cell_label(execution.fatal_cell)}." if execution.fatal_cell is not None else "."
            )
        else:
            why = "The check cell did not run."
        return ExerciseGrade(grade_id, "error", 0, max_points, why + context(), checks)
    if records:
        failing = [r for r in records if r.get("status") != "passed"]
        if not failing:
            text = "\n".join(r.get("feedback", "") for r in records)
            return ExerciseGrade(grade_id, "passed", max_points, max_points, text, checks)
        shown = failing[0]
        text = shown.get("feedback", "")
        cause = _cause(index, block, execution)
        if cause is not None:  # on the first line, which is all the CSV keeps
            text = f"{_what_went_wrong(cause, execution)}; the check then reported: {text}"
        if len(records) > 1:
            text += f"\n({len(failing)} of {len(records)} checks in this cell did not pass.)"
        return ExerciseGrade(grade_id, shown.get("status", "error"), 0, max_points, text + context(cause), checks)
    if check_run.error:
        ename, evalue = check_run.error
        raised = f"{ename}: {evalue}".rstrip(": ")
        cause = _cause(index, block, execution, check_run.error)
        if cause is not None:  # the cause first: the CSV keeps only the first line
            text = f"error: {_what_went_wrong(cause, execution)}; the check then failed with {raised}."
        else:
            text = f"The check cell raised {raised}"
            if ename == "NameError":
                text += " (did the cell defining it fail, or was it not run?)"
            text += "."
        return ExerciseGrade(grade_id, "error", 0, max_points, text + context(cause), checks)
    if calls_check_function(_source(execution, index)):
        return ExerciseGrade(
            grade_id,
            "error",
            0,
            max_points,
            "The check cell produced no check result (was `check` redefined?)." + context(),
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


@dataclass
class _Identity:
    """What a submission is, found without running it."""

    nb: object  # the notebook, or None when the file is not one
    problem: str | None  # why it is not one
    reference: Reference | None
    learner: str
    notebook: str


def _identify(path: Path, references: list[Reference] | None) -> _Identity:
    """Read ``path`` and find its reference (by name, by its cells, or by what can be read of a broken file)."""
    nb, problem = _read_submission(path)
    ids = readable_grade_ids(path) if nb is None and references else None
    reference = _match(path, nb, references or [], ids)
    notebook = reference.name if reference else ""
    return _Identity(nb, problem, reference, learner_name(path, notebook) if reference else path.stem, notebook)


def _placeholders(reference: Reference, status: str, text: str) -> list[ExerciseGrade]:
    """One 0-point row per exercise of ``reference``, so an ungradable submission still shows its lesson."""
    return [ExerciseGrade(c.grade_id, status, 0, c.points, text) for c in reference.grade_cells]


def _unknown(path: Path, references: list[Reference]) -> SubmissionGrade:
    names = ", ".join(r.name for r in references)
    return SubmissionGrade(
        path.stem,
        "",
        str(path),
        error=f"matches none of the solution notebooks ({names}): name the file after one, or check its cells",
        error_status="unknown notebook",
    )


def grade_notebook(
    path,
    references: list[Reference] | None = None,
    timeout_cell: float = 60,
    cwd=None,
    kernel_name: str = "python3",
    solutions_dir=None,
    keep_executed=None,
    stop=None,
) -> SubmissionGrade:
    """Grade one submission (see the module's docstring); never raises for the learner's notebook.

    ``stop``: a ``threading.Event`` that ends the run early once set (see :func:`execute`).
    """
    path = Path(path)
    found = _identify(path, references)
    nb, reference, learner, notebook = found.nb, found.reference, found.learner, found.notebook
    if nb is None:
        error = f"not a valid notebook, so nothing could be graded: {found.problem}"
        if reference is None:  # unreadable and unnamed: still one clear row for the learner
            return SubmissionGrade(learner, "", str(path), error=error)
        exercises = _placeholders(reference, INVALID, f"{INVALID}: {found.problem}")
        return SubmissionGrade(learner, notebook, str(path), exercises, error=error, max_total=reference.max_points)
    if references and reference is None:
        return _unknown(path, references)
    if reference is None:
        reference = reference_from(nb, "")
    sources = {c.grade_id: c.source for c in reference.grade_cells}
    for cell in nb.cells:
        grade_id = _nbgrader(cell).get("grade_id")
        if cell.cell_type == "code" and grade_id in sources:
            cell.source = sources[grade_id]  # a locked check cell: as in the exercise
    run_dir = Path(cwd) if cwd is not None else default_cwd(path, solutions_dir)
    execution = execute(nb, run_dir, timeout_cell, kernel_name, stop=stop)
    exercises, notes = _score(reference, nb, execution)
    grade = SubmissionGrade(learner, notebook, str(path), exercises, notes=notes, max_total=reference.max_points)
    if keep_executed is not None and execution.executed is not None:
        target = Path(keep_executed) / f"{learner}{'-' + notebook if notebook and notebook != learner else ''}.ipynb"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atomic_write_text(target, nbformat.writes(execution.executed) + "\n")
    return grade


def not_graded(path, references: list[Reference] | None = None) -> SubmissionGrade:
    """The grade of a submission an interrupted run did not get to: 0 of its lesson's points, status ``not graded``.

    Its lesson is found as for grading (the file is read, nothing runs), so the rows and max points are
    those a finished run would have shown.
    """
    path = Path(path)
    error = f"{NOT_GRADED}: the run was interrupted before this submission was graded"
    try:
        found = _identify(path, references)
    except Exception:  # noqa: BLE001 - an unreadable file is still a row
        found = _Identity(None, None, None, path.stem, "")
    reference = found.reference
    if reference is None and found.nb is not None and not references:
        reference = reference_from(found.nb, "")
    if reference is None:
        return SubmissionGrade(found.learner, "", str(path), error=error, error_status=NOT_GRADED)
    return SubmissionGrade(
        found.learner,
        found.notebook,
        str(path),
        _placeholders(reference, NOT_GRADED, error),
        error=error,
        error_status=NOT_GRADED,
        max_total=reference.max_points,
    )


def _is_terminal(stream) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def progress_line(done: int, total: int, grade: SubmissionGrade) -> str:
    """The line printed off a terminal when a submission is done: ``[3/40] alice 03-softmax: 9/11 points``."""
    what = f"{grade.learner} {grade.notebook}" if grade.notebook else grade.learner
    status = f"{grade.error_status}, " if grade.error is not None else ""
    return f"[{done}/{total}] {what}: {status}{_number(grade.points)}/{_number(grade.max_points)} points"


@contextlib.contextmanager
def _interrupts_held():
    """Ignore SIGINT and SIGTERM for a moment (in the main thread): a second Ctrl-C, pressed while the
    partial output of the first is being written, must not lose it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, signal.SIG_IGN)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def write_outputs(grades: list[SubmissionGrade], out=None, json_out=None, gradebook=None, id_column=None) -> None:
    """Write each output that has a path (CSV, JSON, gradebook), each atomically."""
    if out is not None:
        write_csv(out, grades)
    if json_out is not None:
        write_json(json_out, grades)
    if gradebook is not None:
        write_gradebook(gradebook, grades, id_column or GRADEBOOK_ID_COLUMN)


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
    progress: bool | str | None = None,
    gradebook=None,
    gradebook_id_column: str = GRADEBOOK_ID_COLUMN,
) -> list[SubmissionGrade]:
    """Grade every notebook in ``paths``; write the CSV (``out``), JSON (``json_out``) and gradebook if given.

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
        progress: None: a tqdm bar where tqdm shows one (stderr is a terminal), and a
            :func:`progress_line` on stdout per finished submission when stdout is not a terminal;
            True: the bar only; ``"lines"``: the lines only; False: neither.
        gradebook: wide CSV path (one row per learner, one column per exercise; see the module's docstring).
        gradebook_id_column: the header of the gradebook's learner column.

    Raises:
        GradingInterrupted: on ``KeyboardInterrupt`` (Ctrl-C; the CLI turns SIGTERM into one too), after
            the running kernels were killed and the outputs were written with what was graded so far
            and the other submissions as ``not graded``.
    """
    from tqdm.auto import tqdm

    paths = list(dict.fromkeys(Path(p) for p in paths))
    references = load_references(solutions) if solutions is not None else None
    if solutions is not None and not references:
        raise ValueError(f"{solutions}: no solution notebooks (*.ipynb) there")
    # None leaves the bar to tqdm, as before: shown where its stream (stderr) is a terminal.
    hide_bar = None if progress is None else progress is not True
    show_lines = progress == "lines" or (progress is None and not _is_terminal(sys.stdout))
    stop = threading.Event()

    def one(path):
        if stop.is_set():  # interrupted before this one started: it stays "not graded"
            return None
        try:
            grade = grade_notebook(path, references, timeout_cell, cwd, kernel_name, solutions, keep_executed, stop)
        except Exception as exc:  # noqa: BLE001 - a grader bug on one submission must not stop the batch
            grade = SubmissionGrade(
                path.stem,
                "",
                str(path),
                error=f"the grader failed on this submission: {type(exc).__name__}: {exc}",
                error_status="grader error",
            )
        # Stopped meanwhile: the kernel was killed under it (stop is set before any kill), so this is no grade.
        return None if stop.is_set() else grade

    bar = tqdm(total=len(paths), desc="grading", unit="notebook", disable=hide_bar)
    results: list[SubmissionGrade | None] = [None] * len(paths)
    done = 0

    def finished(i, grade):
        nonlocal done
        if grade is None:
            return
        results[i] = grade
        done += 1
        bar.update()
        if show_lines:
            print(progress_line(done, len(paths), grade), flush=True)

    try:
        try:
            if jobs <= 1:
                for i, path in enumerate(paths):
                    bar.set_postfix_str(path.name)
                    finished(i, one(path))
            else:
                pool = ThreadPoolExecutor(max_workers=jobs)
                futures = {}
                try:
                    futures = {pool.submit(one, path): i for i, path in enumerate(paths)}
                    for future in as_completed(futures):
                        finished(futures[future], future.result())
                except BaseException:
                    # Stop the workers before the pool waits for them: no new submission starts, and the
                    # running ones end as soon as their kernels are gone (their grades are dropped).
                    stop.set()
                    kill_running_kernels()
                    raise
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
                    for future, i in futures.items():  # graded before the interrupt, not yet collected
                        if results[i] is None and future.done() and not future.cancelled() and not future.exception():
                            finished(i, future.result())
        finally:
            bar.close()
    except KeyboardInterrupt:
        stop.set()
        kill_running_kernels()
        with _interrupts_held():
            grades = [r if r is not None else not_graded(p, references) for r, p in zip(results, paths)]
            write_outputs(grades, out, json_out, gradebook, gradebook_id_column)
        raise GradingInterrupted(grades, done) from None
    grades = [r for r in results if r is not None]
    write_outputs(grades, out, json_out, gradebook, gradebook_id_column)
    return grades


# ----------------------------------------------------------------------------- output


def _number(x: float):
    return int(x) if float(x).is_integer() else round(float(x), 4)


#: What a spreadsheet takes a cell starting with for a formula (OWASP's list: = + - @, tab, carriage return).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """``value`` as a CSV cell a spreadsheet shows as text: a string that could start a formula gets a ``'``.

    OWASP's advice against CSV (formula) injection: ``=1+2``, ``+``, ``-``, ``@``, a tab or a carriage
    return first (also after leading spaces, which some programs skip) becomes ``'=1+2``; numbers and
    other strings are left as they are.
    """
    if isinstance(value, str) and (value.startswith(_FORMULA_START) or value.lstrip().startswith(_FORMULA_START)):
        return "'" + value
    return value


def csv_rows(grades: list[SubmissionGrade]) -> list[dict]:
    """The CSV rows (dicts keyed by :data:`CSV_COLUMNS`; raw values, escaped only when written)."""
    rows = []
    for g in grades:
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
        writer.writerow({k: csv_safe(v) for k, v in row.items()})


def write_csv(path, grades: list[SubmissionGrade]) -> None:
    """Write the CSV atomically (a temporary file in the same folder, then ``os.replace``)."""
    buffer = io.StringIO()
    _write_csv_rows(buffer, csv_rows(grades))
    atomic_write_text(path, buffer.getvalue())


def gradebook_column(notebook: str, exercise: str, max_points: float) -> str:
    """A gradebook column's header: ``03-voxels-to-tokens: tokens (max 1)``."""
    return f"{notebook + ': ' if notebook else ''}{exercise} (max {_number(max_points)})"


def gradebook_table(grades: list[SubmissionGrade], id_column: str = GRADEBOOK_ID_COLUMN):
    """The gradebook as ``(header, rows, duplicates)``; rows are lists of raw values (None: empty cell).

    ``duplicates`` lists ``(learner, notebook)`` pairs graded more than once; the gradebook keeps the
    last of them (the order given), the long CSV and the JSON keep all.
    """
    columns: dict[tuple[str, str], str] = {}  # (notebook, exercise) -> header
    for g in sorted(grades, key=lambda g: g.notebook):  # lessons in name order, exercises in notebook order
        for e in g.exercises:
            columns.setdefault((g.notebook, e.exercise), gradebook_column(g.notebook, e.exercise, e.max_points))
    cells: dict[str, dict[tuple[str, str], float | None]] = {}
    final: dict[str, bool] = {}  # False: a submission of the learner has no points yet, so no Total
    seen, duplicates = set(), []
    for g in grades:
        learner_cells = cells.setdefault(g.learner, {})
        final.setdefault(g.learner, True)
        if g.error is not None and (g.error_status == NOT_GRADED or not g.exercises):
            final[g.learner] = False  # not graded yet, or its lesson is unknown: the total would be too low
        if g.exercises:
            if (g.learner, g.notebook) in seen:
                duplicates.append((g.learner, g.notebook))
            seen.add((g.learner, g.notebook))
        for e in g.exercises:
            learner_cells[(g.notebook, e.exercise)] = None if e.status == NOT_GRADED else _number(e.points)
    header = [id_column, *columns.values(), GRADEBOOK_TOTAL]
    rows = []
    for learner, learner_cells in cells.items():
        values = [learner_cells.get(key) for key in columns]
        numbers = [v for v in values if v is not None]
        total = _number(sum(numbers)) if final[learner] and numbers else None
        rows.append([learner, *values, total])
    return header, rows, duplicates


def write_gradebook(path, grades: list[SubmissionGrade], id_column: str = GRADEBOOK_ID_COLUMN) -> None:
    """Write the gradebook (see the module's docstring) atomically."""
    header, rows, _ = gradebook_table(grades, id_column)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_safe(h) for h in header])
    for row in rows:
        writer.writerow(["" if v is None else csv_safe(v) for v in row])
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


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    """``minattn-grade``: exit 0 when every submission was graded (whatever the grades), 2 on a usage error,
    130 when interrupted (Ctrl-C or SIGTERM; the output then holds what was graded so far)."""
    # ipykernel is the kernel the submissions run in; tqdm draws the progress bar.
    require_modules("minattn-grade", ["nbformat", "nbclient", "ipykernel", "tqdm"])
    parser = argparse.ArgumentParser(
        prog="minattn-grade",
        description="Grade submitted exercise notebooks: each runs in a fresh kernel; the check results "
        "become a CSV (one row per learner and exercise, plus a TOTAL row), optionally a JSON file and a "
        "gradebook (one row per learner) to import into an LMS.",
    )
    parser.add_argument("submissions", nargs="+", help="submitted notebooks (e.g. submissions/*.ipynb)")
    parser.add_argument("--out", required=True, help="CSV file to write (replaced atomically)")
    parser.add_argument("--json", dest="json_out", help="JSON file with the full feedback (replaced atomically)")
    parser.add_argument(
        "--gradebook",
        help="wide CSV to write for an LMS (Canvas, Moodle): one row per learner, one column per exercise, a Total",
    )
    parser.add_argument(
        "--gradebook-id-column",
        default=GRADEBOOK_ID_COLUMN,
        help=f"header of the gradebook's learner column (default {GRADEBOOK_ID_COLUMN!r})",
    )
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
    files = [f for f in (args.out, args.json_out, args.gradebook) if f]
    written = " and ".join([", ".join(files[:-1]), files[-1]] if len(files) > 1 else files)
    # SIGTERM (a batch system's or a container's stop) ends the run the way Ctrl-C does.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
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
            gradebook=args.gradebook,
            gradebook_id_column=args.gradebook_id_column,
        )
    except (SolutionError, ValueError) as exc:
        print(f"minattn-grade: cannot grade against the solutions:\n{exc}", file=sys.stderr)
        return 2
    except GradingInterrupted as stopped:
        left = len(stopped.grades) - stopped.graded
        print(
            f"minattn-grade: interrupted: graded {stopped.graded} of {len(stopped.grades)} submission(s); "
            f'the output is partial, the other {left} marked "{NOT_GRADED}" in {written}',
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # before the grading began, or a second one while the output was written
        print("minattn-grade: interrupted; output not written (an earlier file is left as it was)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if args.gradebook:
        for learner, notebook in gradebook_table(grades)[2]:
            print(
                f"note: {learner} has several submissions of {notebook or 'one notebook'}; the gradebook "
                "takes the last one given, the CSV shows all",
                file=sys.stderr,
            )
    total = sum(g.points for g in grades)
    print(
        f"graded {len(grades)} submission(s), {sum(g.error is not None for g in grades)} unreadable; "
        f"{_number(total)} points in all; wrote {written}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
