"""Recognising the likely bug behind a failed case.

First the exercise's own bugs (each topic module in
:mod:`minattn.grading.topics` lists them): the learner's output is compared
with what each deliberately wrong variant returns on the same input.
A variant that gives the right answer on this input is skipped, since it
cannot explain the failure. If no known bug matches, generic patterns are
tried: the input returned unchanged, the right numbers in the wrong shape or
in the wrong places, and, for numbers with a unit, a unit slip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .compare import as_number, outputs_match
from .exercise import Bug, Case, FunctionExercise
from .units import explain_ratio


@dataclass(frozen=True)
class Diagnosis:
    """A recognised bug: a short key and the sentence (with a hint) for the learner."""

    key: str
    text: str


def clone(value):
    """A deep copy of the tensors in ``value`` (tuples, lists and dicts followed), everything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, tuple):
        return tuple(clone(v) for v in value)
    if isinstance(value, list):
        return [clone(v) for v in value]
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    return value


def _tolerance_dtype(expected):
    if isinstance(expected, torch.Tensor):
        return expected.dtype if expected.is_floating_point() else None
    if isinstance(expected, (tuple, list)) and expected and isinstance(expected[0], torch.Tensor):
        return expected[0].dtype
    return None


def match_bug(bug: Bug, case: Case, got, expected) -> dict | None:
    """The detail dict if ``got`` shows ``bug`` on ``case``, else None. Never raises."""
    if bug.predicate is not None:
        try:
            return bug.predicate(case, got, expected)
        except Exception:  # noqa: BLE001 - a diagnosis must never break a check
            return None
    dtype = _tolerance_dtype(expected)
    fresh = Case(case.label, clone(case.args), clone(case.kwargs), case.droppable, case.tags)
    try:
        for output, detail in bug.variants(fresh):
            if outputs_match(output, expected, dtype):
                continue  # this variant is right on this input: it cannot explain the failure
            if outputs_match(got, output, dtype):
                return detail
    except Exception:  # noqa: BLE001 - a variant that fails on this input simply does not match
        return None
    return None


def diagnose(
    spec: FunctionExercise, case: Case, got, expected, mismatch_kind: str = "values", limit: int = 2
) -> list[Diagnosis]:
    """Likely bugs behind ``got`` (the learner's output) differing from ``expected`` on ``case``.

    ``mismatch_kind`` is the :class:`~minattn.grading.compare.Mismatch` kind;
    the generic patterns are about values, so they are not tried when only the
    dtype, device or type is wrong (the mismatch message says all there is).
    """
    found = []
    if mismatch_kind in ("type", "length"):
        return found  # not the kind of object asked for: the mismatch message says all there is
    for bug in spec.bugs:
        detail = match_bug(bug, case, got, expected)
        if detail is not None:
            found.append(Diagnosis(bug.key, bug.explain(detail)))
            if len(found) >= limit:
                break
    if found or mismatch_kind in ("device", "dtype"):
        return found
    return generic(spec, case, got, expected)


def generic(spec: FunctionExercise, case: Case, got, expected) -> list[Diagnosis]:
    """Patterns that hint at a kind of mistake when no known bug matches."""
    if spec.output == "number":
        value, answer = as_number(got), as_number(expected)
        if value is None or answer is None or spec.unit is None:
            return []
        slip = explain_ratio(value, answer, spec.unit)
        if slip:
            key, sentence = slip
            return [Diagnosis(f"factor:{key}", f"Your number is off by a telltale factor: {sentence}.")]
        return []
    if not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor) or got.device.type == "meta":
        return []
    try:
        return _generic_tensor(case, got, expected)
    except Exception:  # noqa: BLE001 - best effort
        return []


def _generic_tensor(case: Case, got: torch.Tensor, expected: torch.Tensor) -> list[Diagnosis]:
    dtype = expected.dtype if expected.is_floating_point() else None
    for i, arg in enumerate(case.args):
        is_candidate = isinstance(arg, torch.Tensor) and arg.shape == got.shape
        if is_candidate and not outputs_match(arg, expected, dtype) and outputs_match(got, arg, dtype):
            return [
                Diagnosis(
                    "returned_input",
                    f"your function returned its input (argument {i + 1}) unchanged.\n"
                    "  Hint: check that you return the new tensor you computed, not the argument.",
                )
            ]
    g = got.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if g.numel() != e.numel():
        return []
    if g.shape != e.shape and outputs_match(g.reshape(e.shape), e, dtype):
        return [
            Diagnosis(
                "wrong_shape_right_values",
                f"your output holds the right numbers in the right order, but its shape is {tuple(g.shape)} instead "
                f"of {tuple(e.shape)}.\n  Hint: reshape (or view) the result to {tuple(e.shape)}.",
            )
        ]
    if outputs_match(g.flatten().sort().values, e.flatten().sort().values, dtype):
        return [
            Diagnosis(
                "right_values_wrong_places",
                "your output holds exactly the right numbers, but in the wrong places: an axis is permuted or "
                "transposed, or a reshape regrouped axes that needed a permute first.\n"
                "  Hint: write down the axis order you have after each step, and compare it with the docstring's.",
            )
        ]
    return []
