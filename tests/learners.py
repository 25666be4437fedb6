"""Learners, simulated: the answers learners write to each graded exercise, and the verdict each must get.

Every ``tests/test_learners_<topic>.py`` lists :class:`Attempt` objects in ``ATTEMPTS`` and runs them with
:func:`assert_verdict`. Wrong answers are the mistakes learners make (a known bug, a shortcut that calls
the very function the exercise asks for, a typed-in or hard-coded answer, a wrong type or shape); right
answers are written differently from the solution (einsum instead of matmul, a numpy round trip, float64
inside, einops instead of permute). ``test_learners_cover_every_exercise`` (in test_grading.py) holds each
exercise to at least three wrong and two right attempts.

    python tests/learners.py     # the figures: answers tried, wrong ones rejected and named, right ones accepted
"""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minattn.grading import check

KINDS = ("right", "bug", "shortcut", "hard-coded", "wrong type")


@dataclass(frozen=True)
class Attempt:
    """One learner's answer to one exercise.

    Attributes:
        exercise: the name passed to ``check``.
        label: what the learner did, in a few words (the test id).
        answer: the learner's function or value.
        kind: ``"right"`` (must pass) or the kind of mistake: ``"bug"``, ``"shortcut"`` (calls what the
            exercise asks to build), ``"hard-coded"`` (a typed-in or fixed answer), ``"wrong type"``.
        names: for a mistake, a diagnosis key the check must report (``"wrong_axis"``, ``"ruled_out"``,
            ``"missing_parameter"``); None where no named bug applies.
        says: text the feedback must contain (e.g. the name of a ruled-out call).
        status: the status a mistake must get; ``"failed"`` unless the mistake raises (``"error"``).
    """

    exercise: str
    label: str
    answer: Any
    kind: str
    names: str | None = None
    says: str | None = None
    status: str = "failed"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")

    @property
    def right(self) -> bool:
        return self.kind == "right"

    @property
    def id(self) -> str:
        return f"{self.exercise}: {self.kind}: {self.label}"


def assert_verdict(attempt: Attempt, timeout: float = 20.0):
    """Run ``check`` on the attempt and assert the verdict it must get; return the result."""
    result = check(attempt.exercise, attempt.answer, timeout=timeout)
    if attempt.right:
        assert result.status == "passed", f"a right answer was rejected:\n{result}"
        assert not result.diagnoses, result
        return result
    assert result.status == attempt.status, f"expected {attempt.status}, got:\n{result}"
    if attempt.names is not None:
        assert attempt.names in result.diagnoses, f"expected the diagnosis {attempt.names!r}, got:\n{result}"
    if attempt.says is not None:
        assert attempt.says in result.feedback, f"expected the feedback to say {attempt.says!r}, got:\n{result}"
    return result


def learner_modules() -> list:
    """Every ``tests/test_learners_*.py`` module, imported from its file."""
    modules = []
    for path in sorted(Path(__file__).parent.glob("test_learners_*.py")):
        name = f"_learners_{path.stem}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        modules.append(module)
    return modules


def all_attempts() -> list[Attempt]:
    return [a for module in learner_modules() for a in module.ATTEMPTS]


def report() -> str:
    """Run every attempt; the figures for the closing note of a change to the checks."""
    attempts = all_attempts()
    start = time.perf_counter()
    wrong = rejected = named = right = accepted = 0
    misjudged = []
    for attempt in attempts:
        result = check(attempt.exercise, attempt.answer, timeout=20.0)
        if attempt.right:
            right += 1
            accepted += result.status == "passed"
        else:
            wrong += 1
            rejected += result.status != "passed"
            named += attempt.names is not None and attempt.names in result.diagnoses
        try:
            assert_verdict(attempt)
        except AssertionError:
            misjudged.append(attempt.id)
    seconds = time.perf_counter() - start
    exercises = len({a.exercise for a in attempts})
    lines = [
        f"{len(attempts)} answers to {exercises} exercises in {seconds:.1f} s",
        f"wrong answers: {wrong}, rejected: {rejected}, rejected with the named bug or shortcut: {named}",
        f"right answers: {right}, accepted: {accepted}",
        f"verdicts other than the expected one: {len(misjudged)}",
    ]
    lines += [f"  {m}" for m in misjudged]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
