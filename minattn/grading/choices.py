"""Grading a concept question: the option letter(s) the learner picked.

The learner answers with a letter (``"b"``), or with several letters when the
question says that more than one option is right (``"ac"``, ``["a", "c"]`` or
``{"a", "c"}``); case and spaces do not matter. A wrong pick is answered with
the misconception behind the option chosen, never with the right letter.
"""

from __future__ import annotations

from .exercise import ChoiceExercise
from .result import CheckResult


def _letters(value) -> frozenset | None:
    """The letters in ``value`` (a string or a collection of one-letter strings), or None if it is neither."""
    if isinstance(value, str):
        items = [ch for ch in value.replace(",", " ").replace(" ", "")]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        return None
    if not all(isinstance(item, str) and len(item.strip()) == 1 for item in items):
        return None
    return frozenset(item.strip().lower() for item in items)


def grade_choice(exercise: ChoiceExercise, value) -> CheckResult:
    """Grade the learner's pick for ``exercise`` (see :func:`minattn.grading.check`)."""
    name, question = exercise.name, f" ({exercise.question})"
    if value is None or value is Ellipsis:
        return CheckResult(
            name, "not attempted", f"Not attempted yet: put the letter of your choice in place of None{question}."
        )
    letters = _letters(value)
    known = ", ".join(f'"{k}"' for k in exercise.options)
    several = len(exercise.right) > 1
    if not letters:
        return CheckResult(
            name,
            "failed",
            f"Your answer should be {'letters' if several else 'one letter'}, one of {known}; it is {value!r}.",
        )
    unknown = sorted(letters - set(exercise.options))
    if unknown:
        return CheckResult(name, "failed", f"There is no option {', '.join(map(repr, unknown))}: choose from {known}.")
    if letters == exercise.right:
        chosen = ", ".join(f"({k}) {exercise.options[k]}" for k in sorted(letters))
        return CheckResult(name, "passed", f"Correct{question}: {chosen}")
    if not several and len(letters) > 1:
        return CheckResult(name, "failed", f"Pick one option{question}; you gave {len(letters)}.")
    lines = [f"Not quite{question}."]
    for key in sorted(letters - exercise.right):
        reason = exercise.why.get(key, "this option is not right.")
        lines.append(f"You chose ({key}) {exercise.options[key]}: {reason}")
    missing = len(exercise.right - letters)
    if several and missing:
        lines.append(f"{missing} right option{'s are' if missing > 1 else ' is'} missing from your answer.")
    return CheckResult(
        name, "failed", "\n".join(lines), diagnoses=tuple(f"chose_{k}" for k in sorted(letters - exercise.right))
    )
