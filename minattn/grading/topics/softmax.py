"""Softmax (exercises 02): the reference, its hidden cases, the bugs learners write and the calls it rules out.

Exercises: ``softmax`` (function), ``shifted_logits_top_weight`` and ``saturated_slope_p0999`` (values,
computed here), and lesson 02's concept questions (:data:`CONCEPT_EXERCISES`, multiple choice):
``concept_shifted_scores``, ``concept_variance_of_entries``, ``concept_temperature_below_one``,
``concept_mask_minus_inf`` and ``concept_fully_masked_row``. The contract of ``softmax(x, dim=-1)``: x's shape, dtype and device; every slice along
``dim`` sums to 1, except a slice whose entries are all ``-inf`` (nothing allowed), which gives zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...softmax import softmax
from ..exercise import (
    F32,
    F64,
    Bug,
    Case,
    ChoiceExercise,
    FunctionExercise,
    RuledOut,
    ValueExercise,
    WrongAnswer,
    case_dtype,
    randn,
)

# ----------------------------------------------------------------------------- cases


def softmax_cases(device):
    g = torch.Generator().manual_seed(0)
    fixed = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-1.0, 5.0, 2.0]], dtype=F64).to(
        device, case_dtype(F64, device)
    )
    with_inf = randn(g, (4, 6), F64, device)
    for row, col in ((0, 1), (1, 0), (1, 5), (2, 2), (3, 3), (3, 4)):
        with_inf[row, col] = float("-inf")
    all_inf_row = randn(g, (4, 5), F32, device, 3.0)
    all_inf_row[2, :] = float("-inf")
    all_inf_row[0, 3] = float("-inf")
    all_inf_column = randn(g, (3, 6), F64, device)
    all_inf_column[:, 4] = float("-inf")
    all_inf_column[1, 0] = float("-inf")
    return [
        Case("fixed 3x3 logits (float64), dim=-1", (fixed, -1)),
        Case("random logits (float64) with batch axes, dim=-1", (randn(g, (2, 3, 5, 7), F64, device), -1)),
        Case("random logits (float32), dim=1, not the last axis", (randn(g, (3, 4, 6), F32, device), 1)),
        Case("random logits (float64), dim=0", (randn(g, (4, 5), F64, device), 0)),
        Case("logits with -inf entries (masked positions, float64), dim=-1", (with_inf, -1)),
        Case(
            "large logits of size ~1e4 (float32), dim=-1",
            (randn(g, (3, 5), F32, device, 1e4), -1),
            tags=frozenset({"large"}),
        ),
        Case(
            "large logits of size ~1e4 (float64), dim=2",
            (randn(g, (2, 4, 3), F64, device, 1e4), 2),
            tags=frozenset({"large"}),
        ),
        # Last, so that a learner whose softmax also fails earlier is told about that first.
        Case("row 2 is all -inf (nothing allowed): it must give zeros, not NaN (float32), dim=-1", (all_inf_row, -1)),
        Case("column 4 is all -inf along dim=0: it must give zeros, not NaN (float64), dim=0", (all_inf_column, 0)),
    ]


# ----------------------------------------------------------------------------- softmax


def overflow(case: Case, got, expected) -> dict | None:
    """inf/NaN in the output where the reference is finite, on logits too large for exp."""
    tensors = [t for t in case.args if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if "large" not in case.tags or not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor):
        return None
    if got.shape != expected.shape or got.device.type == "meta":
        return None
    if not (~torch.isfinite(got.detach().cpu()) & torch.isfinite(expected.detach().cpu())).any():
        return None
    size = max(float(t[torch.isfinite(t)].abs().max()) for t in tensors)
    return {"size": f"{size:.3g}"}


def _softmax_wrong_axis(case):
    x, dim = case.args
    for axis in range(x.ndim):
        if axis != dim % x.ndim:
            yield softmax(x, axis), {"axis": axis, "dim": dim}


def _softmax_sum_all(case):
    x, dim = case.args
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    yield e / e.sum(), {"dim": dim}


def _softmax_no_keepdim(case):
    x, dim = case.args
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    yield e / e.sum(dim=dim), {"dim": dim}
    e = torch.exp(x - x.amax(dim=dim))
    yield e / e.sum(dim=dim, keepdim=True), {"dim": dim}


def _softmax_no_normalise(case):
    x, dim = case.args
    yield torch.exp(x - x.amax(dim=dim, keepdim=True)), {}


def _softmax_no_exp(case):
    x, dim = case.args
    yield x / x.sum(dim=dim, keepdim=True), {}


def _all_inf_slices(x, dim) -> bool:
    return bool((x == float("-inf")).all(dim=dim).any())


def _softmax_all_inf_nan(case):
    x, dim = case.args
    if _all_inf_slices(x, dim):
        e = torch.exp(x - x.amax(dim=dim, keepdim=True))
        yield e / e.sum(dim=dim, keepdim=True), {}


def _softmax_all_inf_uniform(case):
    x, dim = case.args
    if _all_inf_slices(x, dim):
        finite = torch.where(x == float("-inf"), torch.full_like(x, torch.finfo(x.dtype).min), x)
        yield softmax(finite, dim), {}


def _overflow_example(case):
    """What the textbook formula exp(x) / sum(exp(x)) returns on a case with huge logits."""
    x, dim = case.args
    if "large" in case.tags:
        e = torch.exp(x)
        return e / e.sum(dim=dim, keepdim=True)
    return None


SOFTMAX_BUGS = [
    Bug(
        "no_max_subtraction",
        "exp overflowed: on logits as large as {size} your output has inf or NaN where the right answer is finite. "
        "The row maximum was not subtracted before exp (exp(1e4) is inf in every float type, and inf / inf is NaN).",
        "subtract the maximum along dim first: x = x - x.amax(dim=dim, keepdim=True). The factor exp(-max) cancels "
        "between numerator and denominator, so the result is the same, but every exponent is now <= 0.",
        predicate=overflow,
        example=_overflow_example,
    ),
    Bug(
        "wrong_axis",
        "the softmax is normalised over axis {axis} instead of dim={dim} (it sums to 1 along the wrong axis).",
        "pass dim to every reduction: x.amax(dim=dim, keepdim=True) and exps.sum(dim=dim, keepdim=True), never a "
        "fixed axis such as -1 or 1.",
        _softmax_wrong_axis,
    ),
    Bug(
        "sum_over_everything",
        "the exponentials are divided by the sum over the whole tensor, not by the sum along dim={dim}.",
        "sum along dim only: exps.sum(dim=dim, keepdim=True).",
        _softmax_sum_all,
    ),
    Bug(
        "missing_keepdim",
        "a reduction along dim={dim} lost its axis (keepdim=False), so it broadcast against the wrong axis: "
        "a row was shifted or divided by another row's max or sum.",
        "keep the reduced axis: x.amax(dim=dim, keepdim=True) and .sum(dim=dim, keepdim=True).",
        _softmax_no_keepdim,
    ),
    Bug(
        "not_normalised",
        "the exponentials are never divided by their sum, so the weights do not add up to 1.",
        "divide by the sum along dim: exps / exps.sum(dim=dim, keepdim=True).",
        _softmax_no_normalise,
    ),
    Bug(
        "no_exp",
        "the logits are divided by their sum without taking exp first (that is not a softmax, and it can be negative).",
        "exponentiate first: exps = torch.exp(x - x.amax(dim=dim, keepdim=True)), then normalise.",
        _softmax_no_exp,
    ),
    Bug(
        "all_inf_nan",
        "a slice whose entries are all -inf (nothing allowed) gave NaN: its maximum is -inf, and -inf - (-inf) is "
        "NaN (or every exp is 0 and 0 / 0 is NaN). Such a slice must give all zeros.",
        "replace a maximum that is not finite by 0 before subtracting it "
        "(torch.where(torch.isfinite(m), m, torch.zeros_like(m))), and divide only where the sum is > 0 "
        "(torch.where(total > 0, total, torch.ones_like(total))).",
        _softmax_all_inf_nan,
    ),
    Bug(
        "all_inf_uniform",
        "a slice whose entries are all -inf (nothing allowed) got equal weights: the -inf entries were replaced by a "
        "large finite number, so they all became equal. Such a slice must give all zeros.",
        "keep the -inf entries (exp(-inf) is exactly 0); only the maximum needs a guard: replace a -inf maximum by 0, "
        "and divide only where the sum is > 0.",
        _softmax_all_inf_uniform,
    ),
]


RULED_OUT = (
    RuledOut("minattn.softmax", (softmax,)),
    RuledOut(
        "torch.softmax / torch.log_softmax / torch.special.softmax",
        (torch.softmax, torch.special.softmax, torch.log_softmax, torch.special.log_softmax),
    ),
    RuledOut(
        "torch.nn.functional.softmax / log_softmax / nn.Softmax",
        (F.softmax, F.log_softmax, torch.nn.Softmax, torch.nn.LogSoftmax),
    ),
    RuledOut("Tensor.softmax / Tensor.log_softmax", tensor_methods=("softmax", "log_softmax")),
)

# ----------------------------------------------------------------------------- values

SHIFTED_LOGITS = (1000.0, 1001.0, 1002.0)
SATURATED_P = 0.999


def _shifted_weights() -> torch.Tensor:
    return softmax(torch.tensor(SHIFTED_LOGITS, dtype=F64))


def _slope(p: float) -> float:
    """d softmax_i / d z_i = p (1 - p)."""
    return p * (1.0 - p)


# ----------------------------------------------------------------------------- concept questions (02)

CONCEPT_EXERCISES = [
    # After exercise 2.3.
    ChoiceExercise(
        "concept_shifted_scores",
        "which changes of a score matrix leave every softmax weight unchanged (two are right)",
        {
            "a": "adding the same number to every score of a row",
            "b": "multiplying every score of a row by the same positive number",
            "c": "adding a different number to each row (one number per query)",
            "d": "adding the same number to every score of one column (every query's score for one key)",
        },
        frozenset({"a", "c"}),
        why={
            "b": "a common factor does not cancel in the softmax: it stretches or shrinks the differences between "
            "the scores, and the differences set the weights (a temperature works this way).",
            "d": "that raises one key's score in every row while the other scores stay put, so in every row that "
            "key's weight grows and the others shrink.",
        },
    ),
    # After exercise 2.5.
    ChoiceExercise(
        "concept_variance_of_entries",
        "var(q . k / sqrt(d_k)) for d_k = 256, query entries of variance 4 and key entries of variance 1",
        {
            "a": "1: dividing by sqrt(d_k) always brings the variance back to 1",
            "b": "4: the scaling undoes the growth with d_k, not the variance of the entries",
            "c": "1,024: the sum of 256 products of variance 4",
            "d": "2: the square root of the product of the two variances",
        },
        "b",
        why={
            "a": "the scaling removes the growth with d_k only; the variance 1 it gives assumes entries of "
            "variance 1, and here each product q_i k_i has another variance.",
            "c": "that is the variance of q . k before the division; the question asks about the scaled score.",
            "d": "a square root turns a variance into a standard deviation; the variance of a product of "
            "independent factors of mean 0 is E[q_i^2] E[k_i^2], with no square root.",
        },
    ),
    # After exercise 2.6.
    ChoiceExercise(
        "concept_temperature_below_one",
        "what a temperature T = 0.25 in softmax(s / T) does to one query's weights, compared with T = 1",
        {
            "a": "they get sharper: the best-matching key takes more weight and the row moves towards one-hot, "
            "where the softmax's slopes vanish",
            "b": "they get flatter, closer to equal weights: a low temperature calms the softmax down",
            "c": "nothing: dividing every score by the same number is like subtracting the maximum, which the "
            "softmax ignores",
            "d": "they get sharper, and the order of the keys can change: the key that was second may come first",
        },
        "a",
        why={
            "b": "dividing by a number below 1 multiplies every score by 1 / T = 4, which pulls the scores further "
            "apart.",
            "c": "a constant subtracted from every score cancels in the softmax; a division does not, because it "
            "changes the differences between the scores.",
            "d": "dividing by a positive number keeps the order of the scores, and the softmax keeps the order of "
            "its inputs: the key with the largest score still has the largest weight.",
        },
    ),
    # After exercise 2.8.
    ChoiceExercise(
        "concept_mask_minus_inf",
        "why a blocked score is set to -inf and not to 0",
        {
            "a": "a score of 0 still gives e^0 = 1, a real share of the weight; e^-inf = 0 gives the blocked key "
            "exactly zero weight, and the allowed keys' weights still sum to 1",
            "b": "0 would work just as well: a score of 0 means 'unrelated', and an unrelated key gets weight 0",
            "c": "-inf gives the blocked key a negative weight, which subtracts its value from the output",
            "d": "only for speed: the softmax skips -inf entries, and 0 would give the same weights",
        },
        "a",
        why={
            "b": "a score of 0 is an ordinary score: in lesson 01's worked example q1 . k2 = 0, and k2 still got "
            "about 4% of q1's weight.",
            "c": "the softmax's weights are exponentials divided by a positive sum, so none of them is ever negative.",
            "d": "the softmax exponentiates every entry, -inf included, and a score of 0 does not give the weight "
            "that a score of -inf gives.",
        },
    ),
    # After exercise 2.9.
    ChoiceExercise(
        "concept_fully_masked_row",
        "what a query whose keys are all blocked gets without the softmax's guards (two are right)",
        {
            "a": "with blocked scores filled with -1e9 instead of -inf, it gets equal weights 1 / Nk, all on keys it "
            "was forbidden to read",
            "b": "with blocked scores filled with -1e9 instead of -inf, it gets zero weights, just as with -inf",
            "c": "with -inf and the textbook softmax exp(x - max) / sum, without the guards, its weights are NaN",
            "d": "with -inf and the textbook softmax exp(x - max) / sum, without the guards, its weights are 0, "
            "since exp(-inf) = 0",
        },
        frozenset({"a", "c"}),
        why={
            "b": "-1e9 is an ordinary finite number: work out what is left of each score of that row once the "
            "row's maximum has been subtracted.",
            "d": "look at the maximum of that row first, and at what x - max is when both are -inf; then at the sum "
            "the weights are divided by.",
        },
    ),
]


EXERCISES = [
    FunctionExercise(
        "softmax",
        softmax,
        softmax_cases,
        "tensor",
        "softmax(x, dim=-1)",
        bugs=tuple(SOFTMAX_BUGS),
        ruled_out=RULED_OUT,
        building_blocks="torch.exp, amax and sum along dim (and torch.where for the guards)",
    ),
    ValueExercise(
        "shifted_logits_top_weight",
        "the largest weight of softmax([1000, 1001, 1002])",
        lambda: float(_shifted_weights().max()),
        rel_tol=5e-3,
        wrong=(
            WrongAnswer(
                "uniform",
                lambda: 1.0 / len(SHIFTED_LOGITS),
                "the weights are not equal: subtracting 1000 from every logit changes nothing, so this is "
                "softmax([0, 1, 2]), and the logits still differ by 1.",
            ),
            WrongAnswer(
                "one_hot",
                lambda: 1.0,
                "large logits do not make the softmax one-hot by themselves: only the differences between the "
                "logits count, and here they are 1 and 2.",
            ),
            WrongAnswer(
                "smallest_weight",
                lambda: float(_shifted_weights().min()),
                "that is the smallest weight (of the logit 1000); the question asks for the largest.",
            ),
            WrongAnswer(
                "middle_weight",
                lambda: float(_shifted_weights().median()),
                "that is the middle weight (of the logit 1001); the question asks for the largest.",
            ),
        ),
    ),
    ValueExercise(
        "saturated_slope_p0999",
        "the slope p (1 - p) of a softmax weight p = 0.999",
        lambda: _slope(SATURATED_P),
        rel_tol=1e-4,
        wrong=(
            WrongAnswer(
                "slope_at_half",
                lambda: _slope(0.5),
                "that is the slope at p = 0.5; the question asks for p = 0.999.",
            ),
            WrongAnswer(
                "one_minus_p",
                lambda: 1.0 - SATURATED_P,
                "that is 1 - p alone (or a rounded answer); multiply it by p: p (1 - p).",
            ),
            WrongAnswer("p_itself", lambda: SATURATED_P, "that is p itself; the slope is p (1 - p)."),
        ),
    ),
    *CONCEPT_EXERCISES,
]
