"""``check(name, answer)``: the one entry point of every exercise's check cell.

The exercise ``name`` is looked up in the registry of topic modules
(:mod:`minattn.grading.topics`); a function exercise grades the learner's
function on hidden inputs (:mod:`minattn.grading.functions`), a value exercise
grades the learner's number (:mod:`minattn.grading.values`), a concept
question the option letters picked (:mod:`minattn.grading.choices`). Whatever the
learner's code does, ``check`` returns a :class:`CheckResult`; only an unknown
``name``, the notebook author's slip, raises.

Under nbgrader (``nbgrader autograde`` and ``nbgrader validate`` set
``NBGRADER_EXECUTION`` in the kernel) a check that does not pass raises an
``AssertionError`` carrying its feedback instead: nbgrader gives a grade cell
0 points only when it raises (or writes to stderr), and shows the message in
its feedback. A passing check writes nothing to stderr under nbgrader either;
in a kernel it shows its panel as display data and returns None, because
nbgrader reads a grade cell's *result* as partial credit when it is a number
and warns about anything else.
"""

from __future__ import annotations

import difflib
import os

from .choices import grade_choice
from .exercise import ChoiceExercise, FunctionExercise, ValueExercise
from .functions import grade_function
from .result import CheckResult
from .topics import EXERCISES
from .values import grade_value

#: Values of ``NBGRADER_EXECUTION`` under which a check that does not pass raises.
NBGRADER_MODES = frozenset({"autograde", "validate"})


class CheckFailed(AssertionError):
    """A check that did not pass, raised under nbgrader; its message is the learner's feedback."""

    def __init__(self, result: CheckResult):
        self.result = result
        super().__init__(str(result))


def known_names() -> tuple[str, ...]:
    """Names that :func:`check` accepts."""
    return tuple(EXERCISES)


def get_exercise(name: str) -> FunctionExercise | ValueExercise | ChoiceExercise:
    """The exercise called ``name``; a ``ValueError`` listing the known names otherwise."""
    if isinstance(name, str) and name in EXERCISES:
        return EXERCISES[name]
    close = difflib.get_close_matches(str(name), EXERCISES, n=1)
    suggestion = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"check() knows no exercise named {name!r}.{suggestion} Known names: {', '.join(EXERCISES)}.")


def check(name: str, answer, timeout: float = 10.0, device=None) -> CheckResult:
    """Check the learner's ``answer`` to exercise ``name``.

    Args:
        name: the exercise, e.g. ``"softmax"`` (a function exercise) or
            ``"tokens_256x256x96_p8"`` (a value exercise); see :func:`known_names`.
        answer: the learner's function (without calling it) or value. ``None``,
            or a function whose body still raises the template's
            ``NotImplementedError``, gives status ``"not attempted"``.
        timeout: seconds for a function exercise's cases all together. A
            function still running then is reported as ``"timeout"``; the
            grader tries to stop it and otherwise abandons its daemon thread
            (see :mod:`minattn.grading.runner`).
        device: where a function exercise's inputs live; defaults to
            ``"cuda"`` when available, else ``"cpu"``.

    Returns:
        A :class:`CheckResult`. Every exception of the learner's code (and of
        the grader itself) is caught and reported there; a ``KeyboardInterrupt``
        passes.

    Raises:
        ValueError: for an unknown ``name``. That is the notebook author's
            mistake, not the learner's, so it fails loudly (listing the known
            names) rather than showing up as a learner's failed check.
        CheckFailed: (an ``AssertionError``) under nbgrader's autograde or
            validate only, for a check that did not pass.
    """
    exercise = get_exercise(name)
    try:
        if isinstance(exercise, FunctionExercise):
            result = grade_function(exercise, answer, timeout, device)
        elif isinstance(exercise, ChoiceExercise):
            result = grade_choice(exercise, answer)
        else:
            result = grade_value(exercise, answer)
    except Exception as exc:  # noqa: BLE001 - the grader must never break a notebook
        result = CheckResult(
            name,
            "error",
            f"The grader itself failed ({type(exc).__name__}: {exc}). This is not a problem with your code; "
            "please tell the course authors.",
        )
    if os.environ.get("NBGRADER_EXECUTION") not in NBGRADER_MODES:
        return result
    if not result.passed:
        raise CheckFailed(result)
    return _display_for_nbgrader(result)


def _display_for_nbgrader(result: CheckResult) -> CheckResult | None:
    """In an IPython kernel: show the panel as display data and return None; elsewhere return ``result``."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return result
    if get_ipython() is None:
        return result
    display(result)
    return None
