"""Instant feedback for the exercise notebooks.

    from minattn.grading import check

    check("softmax", softmax)                 # a function, run on hidden inputs against minattn's reference
    check("tokens_32x64x64", tokens)          # a number, against the answer the package computes
    check("softmax_shift_constant", choice)   # a concept question, answered with an option letter

``check`` returns a :class:`CheckResult` that shows as a coloured panel in
Jupyter and as plain text when printed. It never raises because of the
learner's code: exceptions, wrong types and shapes, in-place changes, calls
the exercise rules out and endless loops (under a time limit, see
:mod:`minattn.grading.runner`) all become feedback, with the likely bug named
where it is a known one. An unknown ``name`` is the notebook author's slip and
raises ``ValueError``; under nbgrader a check that does not pass raises
:class:`CheckFailed` (see :mod:`minattn.grading.check`).

Modules: ``exercise`` (what an exercise is), ``topics`` (one module per topic:
its references, hidden cases, known bugs, units and ruled-out calls),
``check`` (the entry point), ``functions``, ``values`` and ``choices`` (grading
each kind of answer), ``compare`` (output against expected), ``diagnose``
(recognising bugs), ``units`` (unit slips), ``shortcuts`` (catching ruled-out
calls), ``runner`` (time-limited calls, short tracebacks), ``result``
(CheckResult); ``generate``, ``batch`` and ``nbgrader_course`` (the
instructors' commands).
"""

from .check import CheckFailed, check, known_names
from .exercise import ChoiceExercise, FunctionExercise, ValueExercise
from .result import CheckResult

__all__ = ["CheckFailed", "CheckResult", "ChoiceExercise", "FunctionExercise", "ValueExercise", "check", "known_names"]
