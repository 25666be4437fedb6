"""Grading a value exercise: a number (or a tuple or dict of numbers) the learner computed.

The right answer is computed by the exercise (:class:`~minattn.grading.exercise.ValueExercise`)
from the package, so it is never typed into a notebook and cannot drift from
the code. The feedback shows the learner's own value, names a known slip when
the value is one (the exercise's :class:`~minattn.grading.exercise.WrongAnswer`
list, then a unit slip where the answer has a unit), and otherwise says how far
off it is without giving the answer away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .compare import as_number
from .exercise import ValueExercise
from .result import CheckResult
from .units import explain_ratio


def format_number(x) -> str:
    """An int with thousands separators, a float with 6 significant digits."""
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e18):
        return f"{int(x):,}"
    return f"{x:.6g}"


def _scalar(value):
    """``value`` as a Python number, or None (numpy scalars and one-element arrays included)."""
    number = as_number(value)
    if number is None and hasattr(value, "item") and getattr(value, "size", None) == 1:
        try:
            number = as_number(value.item())
        except (TypeError, ValueError):
            return None
    return number


def _not_a_number(value) -> str:
    kind = type(value).__name__
    shape = getattr(value, "shape", None)
    if shape is not None and tuple(shape) != ():
        return f"your answer is a {kind} of shape {tuple(shape)}; the answer is one number (use .item() for a tensor)."
    if callable(value):
        return f"your answer is a {kind}; check() needs the number you computed, not a function."
    if isinstance(value, str):
        return f"your answer is text: {value!r}. Write the number alone, e.g. 64, not '64 GiB'."
    return f"your answer should be a number; it is a {kind}: {value!r}."


def _close(number: float, expected: float, exercise: ValueExercise) -> bool:
    if exercise.rel_tol == 0 and exercise.abs_tol == 0:
        return number == expected
    return math.isclose(number, expected, rel_tol=exercise.rel_tol, abs_tol=exercise.abs_tol)


def _how_far(number: float, expected: float) -> str | None:
    """How ``number`` differs from ``expected``, without saying what ``expected`` is."""
    if expected == 0:
        return None
    if number == 0:
        return "It is 0, and the answer is not."
    ratio = number / expected
    if ratio < 0:
        return "Its sign is wrong."
    if ratio < 1:
        return f"It is about {100 * (1 - ratio):.3g}% too small."
    if ratio < 2:
        return f"It is about {100 * (ratio - 1):.3g}% too large."
    return f"It is about {ratio:.3g} times too large."


def _compare_one(exercise: ValueExercise, value, expected, where: str = "") -> tuple[str, str] | None:
    """``(status, problem)`` for one number of the answer, or None when it is right."""
    number = _scalar(value)
    label = f"{where}: " if where else ""
    if number is None:
        return "failed", label + _not_a_number(value)
    if not math.isfinite(number):
        return "failed", f"{label}your answer is {number}; it should be a finite number."
    if exercise.integer and float(number) != int(number):
        return "failed", f"{label}your answer is {format_number(number)}; a count is a whole number."
    if _close(number, expected, exercise):
        return None
    return "failed", f"{label}your answer is {format_number(number)}."


def _parts(exercise: ValueExercise, value, expected):
    """Pairs ``(where, learner's part, expected part)``, or a problem with the answer's structure."""
    if isinstance(expected, Mapping):
        if not isinstance(value, Mapping):
            return None, f"your answer should be a dict with keys {sorted(expected)}; it is a {type(value).__name__}."
        missing = [k for k in expected if k not in value]
        extra = [k for k in value if k not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"it has no entry for {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"it has unexpected keys {', '.join(map(repr, extra))}")
            return None, "your dict does not hold the answer's keys: " + "; ".join(parts) + "."
        return [(f"entry {k!r}", value[k], expected[k]) for k in expected], None
    if isinstance(expected, Sequence):
        if (
            isinstance(value, (str, bytes))
            or not isinstance(value, (Sequence, Mapping))
            and not hasattr(value, "__len__")
        ):
            return None, f"your answer should hold {len(expected)} numbers; it is a {type(value).__name__}."
        try:
            items = [value[i] for i in range(len(value))]
        except Exception:  # noqa: BLE001 - an odd container
            return None, f"your answer should be a list or tuple of {len(expected)} numbers."
        if len(items) != len(expected):
            return None, f"your answer should hold {len(expected)} numbers; it holds {len(items)}."
        return [(f"number {i + 1}", v, e) for i, (v, e) in enumerate(zip(items, expected))], None
    return [("", value, expected)], None


def grade_value(exercise: ValueExercise, value) -> CheckResult:
    """Grade the learner's ``value`` for ``exercise`` (see :func:`minattn.grading.check`)."""
    name, question = exercise.name, f" ({exercise.question})"
    if value is None or value is Ellipsis:
        return CheckResult(name, "not attempted", f"Not attempted yet: put your answer in place of None{question}.")
    expected = exercise.answer()
    parts, problem = _parts(exercise, value, expected)
    if problem:
        return CheckResult(name, "failed", f"Not quite{question}: {problem}")
    for where, got, want in parts:
        outcome = _compare_one(exercise, got, want, where)
        if outcome is None:
            continue
        status, text = outcome
        lines = [f"Not quite{question}: {text}"]
        diagnoses = ()
        number = _scalar(got)
        slip = _known_slip(exercise, value, number, want) if number is not None and math.isfinite(number) else None
        if slip:
            key, sentence = slip
            lines.append(f"Likely slip: {sentence}")
            diagnoses = (key,)
        elif number is not None and math.isfinite(number):
            far = _how_far(number, want)
            if far:
                lines.append(far)
            lines.append("  Hint: redo the computation step by step and write down what each number counts.")
        return CheckResult(name, status, "\n".join(lines), diagnoses=diagnoses)
    unit = f" {exercise.unit}" if exercise.unit else ""
    shown = format_number(_scalar(value)) + unit if len(parts) == 1 and not parts[0][0] else "all parts right"
    return CheckResult(name, "passed", f"Correct: {shown}{question}.")


def _known_slip(exercise: ValueExercise, value, number: float, expected: float):
    """``(key, sentence)`` of the exercise's wrong answer that ``value`` equals, else a unit slip, else None."""
    for wrong in exercise.wrong:
        try:
            candidate = wrong.value()
        except Exception:  # noqa: BLE001 - a slip that cannot be computed does not match
            continue
        if _same(value, candidate, exercise):
            return wrong.key, wrong.text
    slip = explain_ratio(number, expected, exercise.unit, max(exercise.rel_tol, 1e-9))
    if slip:
        key, sentence = slip
        return f"factor:{key}", sentence + "."
    return None


def _same(value, candidate, exercise: ValueExercise) -> bool:
    if isinstance(candidate, Mapping) or (isinstance(candidate, Sequence) and not isinstance(candidate, str)):
        parts, problem = _parts(exercise, value, candidate)
        return problem is None and all(_compare_one(exercise, g, w) is None for _, g, w in parts)
    number = _scalar(value)
    return number is not None and math.isfinite(number) and _close(number, float(candidate), exercise)
