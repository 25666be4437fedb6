"""Instant feedback for the exercise notebooks.

    from minattn.grading import check, check_value

    check("softmax", softmax)            # a function, against minattn's reference
    check_value("tokens_32x64x64", 131072)  # a number, against the course's answer

Both return a :class:`CheckResult` that shows as a coloured panel in Jupyter
and as plain text when printed. They never raise because of the learner's
code: exceptions, wrong shapes, in-place changes and endless loops (under a
time limit, see :mod:`minattn.grading.runner`) all become feedback, with the
likely bug named where it is a known one (:mod:`minattn.grading.bugs`). An
unknown ``name`` is the notebook author's slip and raises ``ValueError``.

Modules: ``result`` (CheckResult), ``runner`` (time-limited calls, short
tracebacks), ``cases`` (test inputs per function), ``compare`` (output vs
expected), ``bugs`` (wrong variants), ``diagnose`` (matching them),
``units`` (unit slips in numbers), ``check`` and ``values`` (the two entry
points).
"""

from .check import check, known_names
from .result import CheckResult
from .values import ANSWERS, check_value

__all__ = ["ANSWERS", "CheckResult", "check", "check_value", "known_names"]
