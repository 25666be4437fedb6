"""Scaled dot-product attention (exercises 00-02): references, hidden cases, learners' bugs, ruled-out calls.

The exercises, in the order the notebooks ask them:

* 00 ``dot_product_by_hand`` (value): lesson 00's dot product q . k, worked out on paper.
* 01 ``score_matrix`` (function): the raw scores ``Q K^T``.
* 01 ``weight_q1_v3`` (value): the weight q1 gives to v3 in lesson 01's worked example.
* 01 ``attention`` (function): ``softmax(q k^T / sqrt(d_k)) v``, three arguments only.
* 01 ``louder_landmark_c`` (value): the length of k3 at which q1 weighs v1 and v3 equally.
* 02 ``dot_product_variance`` (function): the sample variance of row-wise dot products.
* 02 ``predicted_variance_dk64`` (value): var(q . k) predicted for d_k = 64.
* 02 ``scaled_dot_product_attention`` (function): the full contract, mask, bias, scale, weights.
* 02 ``masked_weight_q1_v3`` (value): the worked example with k1 hidden from q1.

Concept questions (multiple choice, :data:`CONCEPT_EXERCISES`): lesson 00's ``concept_longer_key``,
``concept_twice_the_tokens`` and ``concept_red_panel``; lesson 01's ``concept_weights_add_up``,
``concept_attention_shapes``, ``concept_louder_value`` and ``concept_shuffled_tokens``. Lesson 02's are in
:mod:`minattn.grading.topics.softmax`.

Every value's answer is computed here from the examples' vectors, never typed in a notebook.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..._dispatch import attention as fused_attention
from ...attention import scaled_dot_product_attention
from ...efficient import memory_efficient_attention
from ...multihead import MultiHeadAttention
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
    arange,
    case_dtype,
    graders_own,
    randn,
    random_mask,
)
from .softmax import overflow

# ----------------------------------------------------------------------------- the course's examples

#: Lesson 00, exercise 0.1: the two vectors whose dot product is worked out on paper.
DOT_EXAMPLE = ((2.0, -1.0, 3.0), (1.0, 4.0, 2.0))

#: Lesson 01's worked example (course/01-queries-keys-values.ipynb): k1 = (2, 0), k2 = (0, 2) and the
#: landmark k3 = (1.4, 1.4), as similar to q1 = k1 as to q2 = k2; the values are one-hot.
WORKED_KEYS = ((2.0, 0.0), (0.0, 2.0), (1.4, 1.4))

#: Lesson 02, exercise 2.9: the worked example with q1 forbidden to look at k1.
WORKED_MASK = ((False, True, True), (True, True, True))


def worked_example(dtype=F64, device="cpu", keys=WORKED_KEYS):
    """Lesson 01's ``(Q, K, V)``: Q ``(2, 2)`` with q1 = k1 and q2 = k2, K ``(3, 2)``, V the identity ``(3, 3)``."""
    device = torch.device(device)
    k = torch.tensor(keys, dtype=F64)
    q = k[:2].clone()
    v = torch.eye(len(keys), dtype=F64)
    return tuple(t.to(device, case_dtype(dtype, device)) for t in (q, k, v))


def _dot_example(transform=lambda q, k: (q, k)) -> float:
    q, k = transform(*(torch.tensor(t, dtype=F64) for t in DOT_EXAMPLE))
    return float(torch.dot(q, k))


def _worked_weight(query=0, key=2, keys=WORKED_KEYS, **kwargs) -> float:
    """Weight that ``query`` gives to ``key``'s value in the worked example (minattn's attention, float64)."""
    q, k, v = worked_example(keys=keys)
    weights = scaled_dot_product_attention(q, k, v, return_weights=True, **kwargs)[1]
    return float(weights[query, key])


def _score_share(query=0, key=2) -> float:
    """A slip: ``query``'s raw score for ``key`` divided by the sum of its scores (no exp, no scaling)."""
    q, k, _ = worked_example()
    scores = q @ k.T
    return float(scores[query, key] / scores[query].sum())


def _worked_mask() -> torch.Tensor:
    return torch.tensor(WORKED_MASK)


def _equal_weight_c() -> float:
    """The c with q1 . (c, c) = q1 . k1: then k3 = c (1, 1) scores, and so weighs, like k1 for q1."""
    q, k, _ = worked_example()
    return float(torch.dot(q[0], k[0]) / torch.dot(q[0], torch.ones(2, dtype=F64)))


def _predicted_variance(d_k=64, var_q=1.0, var_k=1.0) -> float:
    """var(q . k) for independent entries of mean 0: d_k independent products, each of variance var_q * var_k."""
    return d_k * var_q * var_k


# ----------------------------------------------------------------------------- references


def score_matrix(Q, K):
    """The raw scores ``Q K^T``: ``Q (Nq, d_k)`` and ``K (Nk, d_k)`` give ``(Nq, Nk)``, entry (i, j) = q_i . k_j."""
    return Q @ K.transpose(-2, -1)


def plain_attention(q, k, v):
    """Lesson 01's ``attention(q, k, v)``: ``softmax(q k^T / sqrt(d_k)) v`` (no mask, bias or scale)."""
    return scaled_dot_product_attention(q, k, v)


def dot_product_variance(q, k):
    """Sample variance (n - 1 in the denominator) of the n dot products ``q[i] . k[i]``.

    ``q`` and ``k`` are ``(n, d_k)``; the result is a 0-dim tensor of their dtype.
    """
    return (q * k).sum(dim=-1).var()


# ----------------------------------------------------------------------------- cases


def score_matrix_cases(device):
    g = torch.Generator().manual_seed(11)
    q, k, _ = worked_example(F64, device)
    return [
        Case("lesson 01's worked example: 2 queries, 3 keys, d_k = 2 (float64)", (q, k)),
        Case("Nq=5, Nk=3, d_k=4 (float64)", (randn(g, (5, 4), F64, device), randn(g, (3, 4), F64, device))),
        Case(
            "Nq=3, Nk=6, d_k=7, queries of size ~2.5 and keys of size ~0.4 (float32)",
            (randn(g, (3, 7), F32, device, 2.5), randn(g, (6, 7), F32, device, 0.4)),
        ),
        Case(
            "one query against 4 keys, d_k=2 (float32)", (randn(g, (1, 2), F32, device), randn(g, (4, 2), F32, device))
        ),
        Case(
            "4 queries against one key, d_k=3, entries 0, 1, 2, ... (float64)",
            (arange((4, 3), F64, device), arange((1, 3), F64, device) - 1.0),
        ),
    ]


def dot_product_variance_cases(device):
    g = torch.Generator().manual_seed(12)

    def pair(n, d, dtype, q_scale=1.0, k_scale=1.0):
        return randn(g, (n, d), dtype, device, q_scale), randn(g, (n, d), dtype, device, k_scale)

    fixed_q = arange((4, 3), F64, device) / 5.0
    fixed_k = torch.tensor([[1.0, -2.0, 0.5], [3.0, 1.0, -1.0], [0.0, 2.0, 2.0], [-1.0, -1.0, 4.0]], dtype=F64)
    return [
        Case("4 fixed pairs, d_k=3 (float64)", (fixed_q, fixed_k.to(device, case_dtype(F64, device)))),
        Case("n=50 pairs, d_k=4, standard normal entries (float64)", pair(50, 4, F64)),
        Case("n=7 pairs, d_k=3 (float32)", pair(7, 3, F32)),
        Case("n=200 pairs, d_k=16, queries of size ~3, keys of size ~0.5 (float64)", pair(200, 16, F64, 3.0, 0.5)),
        Case("n=9 pairs, d_k=40: more dimensions than pairs (float32)", pair(9, 40, F32, 0.7, 1.8)),
    ]


def _qkv(g, device, batch, n_q, n_k, d_k, d_v, dtype, scale=1.0):
    return (
        randn(g, (*batch, n_q, d_k), dtype, device, scale),
        randn(g, (*batch, n_k, d_k), dtype, device, scale),
        randn(g, (*batch, n_k, d_v), dtype, device),
    )


HEADS = frozenset({"heads"})
LARGE = frozenset({"large"})


def plain_attention_cases(device):
    g = torch.Generator().manual_seed(2)
    return [
        Case("lesson 01's worked example: q1 = k1, q2 = k2, k3 = (1.4, 1.4) (float64)", worked_example(F64, device)),
        Case("no batch axes, Nq=5, Nk=7, d_k=8, d_v=6 (float64)", _qkv(g, device, (), 5, 7, 8, 6, F64)),
        Case(
            "batch and head axes (B=2, h=3), Nq=5, Nk=7, d_k=4, d_v=6 (float32)",
            _qkv(g, device, (2, 3), 5, 7, 4, 6, F32),
            tags=HEADS,
        ),
        Case(
            "self-attention shape with axes (1, 2, 3), N=6, d_k=d_v=5 (float64)",
            _qkv(g, device, (1, 2, 3), 6, 6, 5, 5, F64),
            tags=HEADS,
        ),
        Case("one query, Nk=9, d_k=3, d_v=2 (float32)", _qkv(g, device, (), 1, 9, 3, 2, F32)),
        Case("large scores, q and k of size ~30 (float32)", _qkv(g, device, (2,), 4, 6, 8, 3, F32, 30.0), tags=LARGE),
    ]


def attention_cases(device):
    g = torch.Generator().manual_seed(1)

    def qkv(*args, **kwargs):
        return _qkv(g, device, *args, **kwargs)

    one_blocked = random_mask(g, (2, 1, 4, 6), device)
    one_blocked[1, 0, 3, :] = False  # batch item 1's last query may look at nothing
    return [
        Case("lesson 01's worked example: q1 = k1, q2 = k2, k3 = (1.4, 1.4) (float64)", worked_example(F64, device)),
        Case("random, no batch axes, Nq=5, Nk=7, d_k=8, d_v=6 (float64)", qkv((), 5, 7, 8, 6, F64)),
        Case(
            "batch and head axes (B=2, h=3), Nq=5, Nk=7, d_k=4, d_v=6 (float32)",
            qkv((2, 3), 5, 7, 4, 6, F32),
            tags=HEADS,
        ),
        Case(
            "self-attention shape with axes (1, 2, 3), N=6, d_k=d_v=5 (float64)",
            qkv((1, 2, 3), 6, 6, 5, 5, F64),
            tags=HEADS,
        ),
        Case(
            "boolean mask (5, 7), True = may attend, batch and heads (2, 3) (float64)",
            qkv((2, 3), 5, 7, 4, 6, F64),
            {"mask": random_mask(g, (5, 7), device)},
            tags=HEADS,
        ),
        Case(
            "boolean mask per batch item (2, 1, 6, 6), broadcast over heads (float32)",
            qkv((2, 3), 6, 6, 4, 3, F32),
            {"mask": random_mask(g, (2, 1, 6, 6), device)},
            tags=HEADS,
        ),
        Case(
            "additive bias (3, 5, 7), one per head (float64)",
            qkv((2, 3), 5, 7, 4, 6, F64),
            {"bias": randn(g, (3, 5, 7), F64, device, 2.0)},
            tags=HEADS,
        ),
        Case("explicit scale=0.3 (float64)", qkv((2,), 5, 7, 4, 6, F64), {"scale": 0.3}),
        Case(
            "return_weights=True gives (out, weights) (float64)", qkv((2,), 5, 7, 4, 6, F64), {"return_weights": True}
        ),
        Case("large scores, q and k of size ~30 (float32)", qkv((2,), 4, 6, 8, 3, F32, 30.0), tags=LARGE),
        Case(
            "query 2 may attend to no key (its mask row is all False): its output must be zeros (float64)",
            qkv((2, 3), 5, 7, 4, 6, F64),
            {"mask": random_mask(g, (5, 7), device, blocked_rows=(2,))},
            tags=HEADS,
        ),
        Case(
            "queries 0 and 4 may attend to nothing, with bias and return_weights=True: zero weights and output "
            "(float32)",
            qkv((3,), 5, 6, 4, 2, F32),
            {
                "mask": random_mask(g, (5, 6), device, blocked_rows=(0, 4)),
                "bias": randn(g, (5, 6), F32, device),
                "return_weights": True,
            },
        ),
        Case(
            "mask (2, 1, 4, 6) whose last query of batch item 1 may attend to nothing, bias (float32)",
            qkv((2, 3), 4, 6, 5, 7, F32),
            {"mask": one_blocked, "bias": randn(g, (3, 4, 6), F32, device)},
            tags=HEADS,
        ),
    ]


# ----------------------------------------------------------------------------- attention


def _naive_softmax(scores, dim=-1):
    """A stable softmax without the guard: a row of only -inf gives NaN (-inf - -inf, then 0 / 0)."""
    e = torch.exp(scores - scores.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def _unstable_softmax(scores, dim=-1):
    e = torch.exp(scores)
    return e / e.sum(dim=dim, keepdim=True)


def _explicit_attention(
    q,
    k,
    v,
    mask=None,
    bias=None,
    scale=None,
    return_weights=False,
    softmax_dim=-1,
    mask_mode="inf",
    bias_before_scale=False,
    transpose=False,
    softmax_fn=softmax,
):
    """Attention with switches that reproduce common mistakes."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    raw = (k @ q.transpose(-2, -1)) if transpose else (q @ k.transpose(-2, -1))
    if bias is not None and bias_before_scale:
        scores = (raw + bias) * scale
    else:
        scores = raw * scale + (bias if bias is not None else 0.0)
    if mask is not None and mask_mode == "inf":
        scores = torch.where(mask, scores, float("-inf"))
    elif mask is not None and mask_mode == "zero":
        scores = torch.where(mask, scores, torch.zeros_like(scores))
    elif mask is not None and mask_mode == "finite":
        scores = torch.where(mask, scores, torch.full_like(scores, -1e9))
    weights = softmax_fn(scores, dim=softmax_dim)
    if mask is not None and mask_mode == "after":
        weights = weights * mask
    out = weights @ v
    return (out, weights) if return_weights else out


def _sdpa(case: Case, **override):
    return scaled_dot_product_attention(*case.args, **{**case.kwargs, **override})


def _no_explicit_scale(case: Case) -> bool:
    return case.kwargs.get("scale") is None


def _attn_no_scale(case):
    if _no_explicit_scale(case):
        yield _sdpa(case, scale=1.0), {}


def _attn_scale_1_over_d(case):
    if _no_explicit_scale(case):
        d = case.args[0].shape[-1]
        yield _sdpa(case, scale=1.0 / d), {"d": d}


def _attn_scale_model_width(case):
    q = case.args[0]
    if _no_explicit_scale(case) and "heads" in case.tags and q.ndim >= 3:
        heads, d = q.shape[-3], q.shape[-1]
        yield _sdpa(case, scale=1.0 / math.sqrt(heads * d)), {"c": heads * d, "h": heads, "d": d}


def _attn_scale_value_width(case):
    q, v = case.args[0], case.args[2]
    if _no_explicit_scale(case) and v.shape[-1] != q.shape[-1]:
        yield _sdpa(case, scale=1.0 / math.sqrt(v.shape[-1])), {"dv": v.shape[-1], "d": q.shape[-1]}


def _attn_scale_ignored(case):
    if not _no_explicit_scale(case):
        yield _sdpa(case, scale=None), {"scale": case.kwargs["scale"]}


def _attn_variant(**switches):
    def variants(case):
        yield _explicit_attention(*case.args, **{**case.kwargs, **switches}), {}

    return variants


def _attn_transposed(case):
    q, k = case.args[:2]
    if q.shape[-2] == k.shape[-2]:
        yield _explicit_attention(*case.args, **case.kwargs, transpose=True), {}


def _attn_mask(mode):
    def variants(case):
        if case.kwargs.get("mask") is not None:
            if mode == "inverted":
                yield _sdpa(case, mask=~case.kwargs["mask"]), {}
            elif mode == "ignored":
                yield _sdpa(case, mask=None), {}
            else:
                yield _explicit_attention(*case.args, **case.kwargs, mask_mode=mode), {}

    return variants


def _blocked_rows(case: Case) -> int:
    """How many (query, batch item) rows of the case's mask allow no key at all."""
    mask = case.kwargs.get("mask")
    if mask is None:
        return 0
    return int((~mask).all(dim=-1).sum())


def _attn_blocked_row_nan(case):
    if _blocked_rows(case):
        yield _explicit_attention(*case.args, **case.kwargs, softmax_fn=_naive_softmax), {}


def _attn_blocked_row_uniform(case):
    if _blocked_rows(case):
        yield _explicit_attention(*case.args, **case.kwargs, mask_mode="finite"), {}


def _attn_bias(mode):
    def variants(case):
        if case.kwargs.get("bias") is not None:
            if mode == "ignored":
                yield _sdpa(case, bias=None), {}
            else:
                yield _explicit_attention(*case.args, **case.kwargs, bias_before_scale=True), {}

    return variants


def _attn_weights_swapped(case):
    if case.kwargs.get("return_weights"):
        out, weights = _sdpa(case)
        yield (weights, out), {}


def _attn_weights_only(case):
    if not case.kwargs.get("return_weights"):
        yield _sdpa(case, return_weights=True)[1], {}


def _attn_overflow_example(case):
    """What attention with an unstable softmax (exp without subtracting the max) returns on large scores."""
    if "large" in case.tags:
        return _explicit_attention(*case.args, **case.kwargs, softmax_fn=_unstable_softmax)
    return None


NO_MAX_SUBTRACTION = Bug(
    "no_max_subtraction",
    "the softmax overflowed: with scores as large as these your output has inf or NaN where the right answer is "
    "finite. The softmax does not subtract the row maximum before exp.",
    "use a stable softmax (subtract scores.amax(dim=-1, keepdim=True) before exp), e.g. minattn.softmax.",
    predicate=overflow,
    example=_attn_overflow_example,
)

SCALE_BUGS = [
    Bug(
        "scale_model_width",
        "the scores are scaled by 1/sqrt({c}), the model width C = h * d = {h} * {d}, instead of the head width: "
        "with head axes each dot product sums only d_k = {d} terms.",
        "scale by 1 / math.sqrt(q.shape[-1]), the last axis of q (the head's dimension), never by C.",
        _attn_scale_model_width,
    ),
    Bug(
        "no_scaling",
        "the scores are not scaled: you computed softmax(q k^T) v instead of softmax(q k^T / sqrt(d_k)) v.",
        "multiply the scores by 1 / math.sqrt(d_k) with d_k = q.shape[-1] (or by scale when it is given).",
        _attn_no_scale,
    ),
    Bug(
        "scale_1_over_d",
        "the scores are divided by d_k = {d} instead of sqrt(d_k) (scaled by 1/d instead of 1/sqrt(d)).",
        "divide by math.sqrt(d_k): the variance of q.k grows like d_k, so its standard deviation grows like sqrt(d_k).",
        _attn_scale_1_over_d,
    ),
    Bug(
        "scale_value_width",
        "the scores are scaled with the value width d_v = {dv} instead of the key width d_k = {d}.",
        "use d_k = q.shape[-1] (= k.shape[-1]); v's last axis does not enter the scores.",
        _attn_scale_value_width,
    ),
]

SHAPE_BUGS = [
    Bug(
        "softmax_wrong_axis",
        "the softmax runs over the queries (dim=-2) instead of the keys (dim=-1): each query's weights must sum to 1.",
        "take the softmax over the last axis of the scores, softmax(scores, dim=-1).",
        _attn_variant(softmax_dim=-2),
    ),
    Bug(
        "scores_transposed",
        "the score matrix is transposed (k q^T instead of q k^T): row i must hold query i's similarity to every key.",
        "scores = q @ k.transpose(-2, -1), shape (..., Nq, Nk).",
        _attn_transposed,
    ),
]

RETURNED_WEIGHTS = Bug(
    "returned_weights",
    "you returned the attention weights, not the output: the weights must still multiply the values.",
    "out = weights @ v, shape (..., Nq, d_v).",
    _attn_weights_only,
)

ATTENTION_BUGS = [
    NO_MAX_SUBTRACTION,
    *SCALE_BUGS,
    Bug(
        "scale_ignored",
        "your function ignores the scale argument (scale={scale} was given) and uses 1/sqrt(d_k) anyway.",
        "use the default only when scale is None: scale = 1 / math.sqrt(d_k) if scale is None else scale.",
        _attn_scale_ignored,
    ),
    Bug(
        "mask_inverted",
        "the mask is inverted: your code blocked the positions where mask is True. Here True means 'may attend' "
        "(as in torch.nn.functional.scaled_dot_product_attention).",
        "keep scores where mask is True: torch.where(mask, scores, float('-inf')), "
        "or scores.masked_fill(~mask, float('-inf')).",
        _attn_mask("inverted"),
    ),
    Bug(
        "mask_ignored",
        "the mask is ignored: blocked keys still receive weight.",
        "before the softmax set the scores of blocked pairs to -inf: torch.where(mask, scores, float('-inf')).",
        _attn_mask("ignored"),
    ),
    Bug(
        "mask_zero",
        "blocked scores were set to 0 instead of -inf; exp(0) = 1, so blocked keys still get weight.",
        "fill blocked scores with float('-inf'), whose exp is exactly 0.",
        _attn_mask("zero"),
    ),
    Bug(
        "mask_after_softmax",
        "the mask was applied after the softmax (weights * mask), so the remaining weights no longer sum to 1.",
        "mask the scores before the softmax (with -inf), so the softmax renormalises over the allowed keys.",
        _attn_mask("after"),
    ),
    Bug(
        "masked_row_nan",
        "a query that may attend to no key (its mask row is all False) got NaN: all its scores are -inf, so the "
        "softmax computes -inf - (-inf) = NaN or 0 / 0. The contract gives such a query zero weights and a zero "
        "output.",
        "use a softmax that returns zeros for a row of only -inf (minattn.softmax does; so does yours from exercise "
        "2.2 if it replaces a -inf maximum by 0 and divides by the sum only where it is > 0), or zero those rows "
        "afterwards: torch.nan_to_num(weights, nan=0.0).",
        _attn_blocked_row_nan,
    ),
    Bug(
        "masked_row_uniform",
        "a query that may attend to no key (its mask row is all False) got equal weights on every key: blocked "
        "scores were filled with a large finite number (such as -1e9 or torch.finfo(dtype).min), so a row with "
        "nothing allowed has all scores equal. The contract gives such a query zero weights and a zero output.",
        "fill blocked scores with float('-inf') and use a softmax that returns zeros for a row of only -inf "
        "(minattn.softmax does).",
        _attn_blocked_row_uniform,
    ),
    Bug(
        "bias_ignored",
        "the bias argument is ignored.",
        "add it to the scaled scores, before masking and softmax: scores = q @ k.transpose(-2, -1) * scale + bias.",
        _attn_bias("ignored"),
    ),
    Bug(
        "bias_scaled",
        "the bias was added before scaling, so it was scaled too: (q k^T + bias) * scale.",
        "scale first, then add the bias: scores = q @ k.transpose(-2, -1) * scale + bias.",
        _attn_bias("before_scale"),
    ),
    *SHAPE_BUGS,
    Bug(
        "weights_swapped",
        "with return_weights=True you returned (weights, out) instead of (out, weights).",
        "return out first: return (out, weights) if return_weights else out.",
        _attn_weights_swapped,
    ),
    RETURNED_WEIGHTS,
]

PLAIN_ATTENTION_BUGS = [NO_MAX_SUBTRACTION, *SCALE_BUGS, *SHAPE_BUGS, RETURNED_WEIGHTS]


# ----------------------------------------------------------------------------- score matrix, variance


def _scores_transposed(case):
    Q, K = case.args
    yield K @ Q.transpose(-2, -1), {}


def _scores_scaled(case):
    Q, K = case.args
    yield (Q @ K.transpose(-2, -1)) / math.sqrt(Q.shape[-1]), {"d": Q.shape[-1]}


def _scores_softmaxed(case):
    Q, K = case.args
    yield softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), dim=-1), {}
    yield softmax(Q @ K.transpose(-2, -1), dim=-1), {}


SCORE_MATRIX_BUGS = [
    Bug(
        "scores_transposed",
        "your matrix is transposed (K Q^T, shape (Nk, Nq)): row i must hold query i's dot products with every key.",
        "S = Q @ K.T, shape (Nq, Nk): (Nq, d_k) @ (d_k, Nk).",
        _scores_transposed,
    ),
    Bug(
        "scores_scaled",
        "your scores are divided by sqrt(d_k) = sqrt({d}); this exercise asks for the raw dot products q_i . k_j.",
        "leave the scaling out here: S = Q @ K.T. The division by sqrt(d_k) is the next step.",
        _scores_scaled,
    ),
    Bug(
        "scores_softmaxed",
        "you returned softmax weights (each row sums to 1), not the raw dot products.",
        "return S = Q @ K.T itself; the softmax comes later.",
        _scores_softmaxed,
    ),
]


def _var_variant(fn):
    def variants(case):
        q, k = case.args
        yield fn(q, k), {"n": q.shape[0], "d": q.shape[-1]}

    return variants


def _population_variance(case):
    q, k = case.args
    yield (q * k).sum(dim=-1).var(correction=0), {"n": q.shape[0], "n_1": q.shape[0] - 1}


DOT_VARIANCE_BUGS = [
    Bug(
        "population_variance",
        "you divided by n = {n} instead of n - 1 = {n_1}: that is the population variance, not the sample variance "
        "that torch's .var() computes.",
        "use .var() (its default divides by n - 1); in NumPy that is np.var(x, ddof=1).",
        _population_variance,
    ),
    Bug(
        "products_not_summed",
        "you took the variance of all n * d_k single products q[i, j] * k[i, j], not of the n dot products.",
        "sum the products of each pair first: dots = (q * k).sum(dim=-1), shape (n,); then dots.var().",
        _var_variant(lambda q, k: (q * k).var()),
    ),
    Bug(
        "mean_not_sum",
        "you averaged the d_k = {d} products of each pair instead of summing them (a mean, not a dot product), "
        "which divides the variance by d_k^2.",
        "a dot product is a sum: (q * k).sum(dim=-1), not .mean(dim=-1).",
        _var_variant(lambda q, k: (q * k).mean(dim=-1).var()),
    ),
    Bug(
        "scaled_dots",
        "you divided the dot products by sqrt(d_k) = sqrt({d}) before taking the variance; this function measures "
        "the unscaled q . k.",
        "leave the scaling out: (q * k).sum(dim=-1).var().",
        _var_variant(lambda q, k: ((q * k).sum(dim=-1) / math.sqrt(q.shape[-1])).var()),
    ),
    Bug(
        "std_not_var",
        "you returned the standard deviation, not the variance.",
        "use .var(), not .std() (the variance is the standard deviation squared).",
        _var_variant(lambda q, k: (q * k).sum(dim=-1).std()),
    ),
    Bug(
        "all_pairs",
        "you took the variance of every query against every key (q @ k.T, n x n dot products), not of the n pairs "
        "q[i] . k[i].",
        "pair row i of q with row i of k only: (q * k).sum(dim=-1).",
        _var_variant(lambda q, k: (q @ k.transpose(-2, -1)).var()),
    ),
]


# ----------------------------------------------------------------------------- ruled out

_FLEX = "torch.nn.attention.flex_attention:flex_attention"

RULED_OUT = (
    RuledOut("minattn.scaled_dot_product_attention", (scaled_dot_product_attention,)),
    RuledOut("minattn.attention", (fused_attention,)),
    RuledOut("minattn.memory_efficient_attention", (memory_efficient_attention,)),
    RuledOut("minattn.MultiHeadAttention", (MultiHeadAttention,)),
    RuledOut("torch.nn.functional.scaled_dot_product_attention", (F.scaled_dot_product_attention,)),
    RuledOut("torch.nn.MultiheadAttention", (torch.nn.MultiheadAttention, F.multi_head_attention_forward)),
    RuledOut("torch.nn.attention.flex_attention", (_FLEX,)),
)

#: Calling the grader's own reference would hand the learner the answer.
SCORE_MATRIX_RULED_OUT = (graders_own(score_matrix),)
DOT_VARIANCE_RULED_OUT = (graders_own(dot_product_variance),)

ATTENTION_BLOCKS = (
    "matrix products (@, torch.matmul or torch.einsum), torch.where or masked_fill, and a softmax "
    "(your own, minattn.softmax or torch.softmax)"
)

# ----------------------------------------------------------------------------- concept questions (00, 01)

CONCEPT_EXERCISES = [
    # Lesson 00, after exercise 0.1.
    ChoiceExercise(
        "concept_longer_key",
        "what doubling every entry of k does to q . k",
        {
            "a": "q . k' = q . k: k' points the same way as k, and a dot product only measures direction",
            "b": "q . k' = 2 (q . k): every product q_i k_i doubles, so their sum doubles",
            "c": "q . k' = 4 (q . k): doubling a vector multiplies its dot products by 2^2",
            "d": "it depends on which vector is doubled: (2q) . k and q . (2k) are different numbers",
        },
        "b",
        why={
            "a": "that describes the angle between the vectors (the cosine), not the dot product, which also grows "
            "with the lengths of the vectors.",
            "c": "a factor 4 would need both vectors doubled; here q stays as it is.",
            "d": "each product q_i k_i is a product of two numbers, and it does not matter which of the two factors "
            "is doubled.",
        },
    ),
    # Lesson 00, after exercise 0.2.
    ChoiceExercise(
        "concept_twice_the_tokens",
        "how the number of global self-attention scores grows when there are twice as many tokens",
        {
            "a": "2-fold: one new score for each new token",
            "b": "4-fold: every query scores every key, and the queries and the keys both double",
            "c": "8-fold: the tokens come from a 3D volume, so everything grows as a cube",
            "d": "not at all: the number of scores depends on the length of each token's vector, not on the number "
            "of tokens",
        },
        "b",
        why={
            "a": "a new token brings a new query, scored against every key, and a new key, scored by every query: "
            "count the query-key pairs.",
            "c": "8-fold is what doubling every side of a 3D grid does to the number of tokens; here the number of "
            "tokens itself doubles, and the scores count query-key pairs.",
            "d": "a score is one number per query-key pair, whatever the length of the vectors: the length changes "
            "the work per score, not how many scores there are.",
        },
    ),
    # Lesson 00, after "Reading a panel".
    ChoiceExercise(
        "concept_red_panel",
        "why a function that is right for 7 tokens can still get a red panel",
        {
            "a": "the check also runs the function on inputs you did not try, and on one of them it disagrees with "
            "minattn's reference; the panel names that input",
            "b": "the check compares with an answer typed into the notebook, and that answer has a typo",
            "c": "a check stays red until every cell of the notebook has been run, including the cells below it",
            "d": "red means not attempted: the panel turns green once the cell is run a second time",
        },
        "a",
        why={
            "b": "no answer is typed into a notebook: the check computes the right result with minattn's own "
            "reference, for every input it tries.",
            "c": "a check judges only the answer it is handed when it runs; the cells below it play no part.",
            "d": "not attempted is the grey panel; running the same code again gives the same verdict.",
        },
    ),
    # Lesson 01, after exercise 1.2.
    ChoiceExercise(
        "concept_weights_add_up",
        "what the worked example's weights add up to (two are right)",
        {
            "a": "each query's weights add up to 1 (a row of the weight matrix)",
            "b": "the weights that all the queries give one value add up to 1 (a column of the weight matrix)",
            "c": "q2 gives v3 exactly the same weight as q1 does",
            "d": "q2 gives v3 less weight than q1 does, because q1 already took part of v3",
        },
        frozenset({"a", "c"}),
        why={
            "b": "the softmax runs along one query's scores and shares that query's attention among the keys; "
            "nothing makes different queries share out a value between them.",
            "d": "values are not used up: each query reads every value with weights set by its own scores alone, "
            "whatever the other queries do.",
        },
    ),
    # Lesson 01, after exercise 1.3.
    ChoiceExercise(
        "concept_attention_shapes",
        "the shapes of the weights and the output for 5 queries, 7 keys, d_k = 16, d_v = 32",
        {
            "a": "weights (5, 7), output (5, 32)",
            "b": "weights (7, 5), output (7, 32)",
            "c": "weights (5, 7), output (5, 16)",
            "d": "weights (5, 16), output (5, 32)",
        },
        "a",
        why={
            "b": "a row of the weight matrix belongs to one query and holds its weights on the keys, and each query "
            "gets one output row.",
            "c": "an output is a blend of values, so its length is the values' length d_v; d_k is only the length of "
            "the vectors compared in the scores.",
            "d": "d_k is summed away inside each dot product q_i . k_j: the weights hold one number per query-key "
            "pair.",
        },
    ),
    # Lesson 01, after exercise 1.4.
    ChoiceExercise(
        "concept_louder_value",
        "what replacing v3 by 10 v3 changes in the worked example",
        {
            "a": "q1 gives v3 more weight, since v3 now carries more",
            "b": "the weights stay the same, and the third entry of each output becomes 10 times larger",
            "c": "nothing: the weights are the same, so the outputs are the same",
            "d": "the third entry of each output grows and the other two shrink, so that each output still sums to 1",
        },
        "b",
        why={
            "a": "the weights come from the scores, and the scores from the queries and the keys alone: a value "
            "takes no part in any score.",
            "c": "an output is the weighted sum of the values: the weights are the same, but one of the vectors they "
            "multiply has changed.",
            "d": "it is the weights that sum to 1, not the entries of an output; with one-hot values the two "
            "coincide, but a value of length 10 breaks that.",
        },
    ),
    # Lesson 01, after concept 1.c.
    ChoiceExercise(
        "concept_shuffled_tokens",
        "what shuffling does to softmax(Q K^T / sqrt(d_k)) V (two are right)",
        {
            "a": "shuffling the keys and the values with the same shuffle (each key keeps its value) leaves every "
            "query's output unchanged",
            "b": "shuffling the queries shuffles the rows of the output in the same way, and changes nothing else",
            "c": "shuffling the keys alone, with the values left in place, leaves every output unchanged",
            "d": "in self-attention, where the queries, keys and values all come from the same tokens, shuffling "
            "the tokens leaves every output row where it was: attention is permutation-invariant",
        },
        frozenset({"a", "b"}),
        why={
            "c": "the weight of key j multiplies value j: move the keys alone and their weights meet other tokens' "
            "values.",
            "d": "each output row belongs to its query, and the queries were shuffled too, so the output rows move "
            "with them. Self-attention is permutation-equivariant (shuffled tokens give the same outputs, "
            "shuffled the same way), not permutation-invariant, whatever some texts say; lesson 07 shows it.",
        },
    ),
]

# ----------------------------------------------------------------------------- the exercises

EXERCISES = [
    ValueExercise(
        "dot_product_by_hand",
        "the dot product of q = (2, -1, 3) and k = (1, 4, 2)",
        _dot_example,
        rel_tol=1e-9,
        wrong=(
            WrongAnswer(
                "sign_dropped",
                lambda: _dot_example(lambda q, k: (q.abs(), k.abs())),
                "the minus sign of q's second entry was dropped: (-1) * 4 is -4, not +4.",
            ),
            WrongAnswer(
                "added_pairs",
                lambda: float((torch.tensor(DOT_EXAMPLE[0]) + torch.tensor(DOT_EXAMPLE[1])).sum()),
                "you added the entries pairwise; a dot product multiplies them pairwise, then adds the products.",
            ),
            WrongAnswer(
                "one_vector_squared",
                lambda: _dot_example(lambda q, k: (q, q)),
                "that is q . q (q with itself); the question asks for q . k.",
            ),
        ),
    ),
    FunctionExercise(
        "score_matrix",
        score_matrix,
        score_matrix_cases,
        "tensor",
        "score_matrix(Q, K) with Q (Nq, d_k), K (Nk, d_k) -> (Nq, Nk)",
        bugs=tuple(SCORE_MATRIX_BUGS),
        ruled_out=SCORE_MATRIX_RULED_OUT,
        building_blocks="one matrix product (@) and a transpose (.T)",
    ),
    ValueExercise(
        "weight_q1_v3",
        "the weight q1 gives to v3 in lesson 01's worked example",
        _worked_weight,
        rel_tol=5e-3,
        wrong=(
            WrongAnswer(
                "no_scaling",
                lambda: _worked_weight(scale=1.0),
                "the scores were not divided by sqrt(d_k) = sqrt(2) before the softmax.",
            ),
            WrongAnswer(
                "divided_by_d",
                lambda: _worked_weight(scale=0.5),
                "the scores were divided by d_k = 2 instead of sqrt(d_k).",
            ),
            WrongAnswer(
                "weight_on_v1",
                lambda: _worked_weight(key=0),
                "that is q1's weight on its own value v1; the question asks for v3 (the third column).",
            ),
            WrongAnswer(
                "k3_is_1_1",
                lambda: _worked_weight(keys=((2.0, 0.0), (0.0, 2.0), (1.0, 1.0))),
                "that weight belongs to k3 = (1, 1); lesson 01's landmark is k3 = (1.4, 1.4).",
            ),
            WrongAnswer(
                "no_exp",
                _score_share,
                "the scores were divided by their sum without exp; the softmax exponentiates first.",
            ),
        ),
    ),
    FunctionExercise(
        "attention",
        plain_attention,
        plain_attention_cases,
        "tensor",
        "attention(q, k, v) with q (..., Nq, d_k), k (..., Nk, d_k), v (..., Nk, d_v) -> (..., Nq, d_v)",
        bugs=tuple(PLAIN_ATTENTION_BUGS),
        ruled_out=RULED_OUT,
        building_blocks=ATTENTION_BLOCKS,
    ),
    ValueExercise(
        "louder_landmark_c",
        "the c for which k3 = c (1, 1) gets the same weight from q1 as k1",
        _equal_weight_c,
        rel_tol=1e-3,
        wrong=(
            WrongAnswer(
                "lesson_k3",
                lambda: WORKED_KEYS[2][0],
                "that is the lesson's landmark, k3 = 1.4 (1, 1), where q1 still prefers v1. Equal weights need "
                "equal scores: solve q1 . k1 = q1 . (c, c).",
            ),
            WrongAnswer(
                "forgot_two_entries",
                lambda: _equal_weight_c() * 2,
                "q1 . (c, c) adds two products, 2 * c + 0 * c = 2c, not c.",
            ),
        ),
    ),
    FunctionExercise(
        "dot_product_variance",
        dot_product_variance,
        dot_product_variance_cases,
        "tensor",
        "dot_product_variance(q, k) with q, k (n, d_k) -> a 0-dim tensor",
        bugs=tuple(DOT_VARIANCE_BUGS),
        ruled_out=DOT_VARIANCE_RULED_OUT,
        building_blocks="an elementwise product, .sum(dim=-1) and .var()",
    ),
    ValueExercise(
        "predicted_variance_dk64",
        "the variance of q . k predicted for d_k = 64",
        _predicted_variance,
        rel_tol=1e-3,
        wrong=(
            WrongAnswer(
                "standard_deviation",
                lambda: math.sqrt(_predicted_variance()),
                "that is the standard deviation, sqrt(variance); the question asks for the variance.",
            ),
            WrongAnswer(
                "after_scaling",
                lambda: _predicted_variance() / 64,
                "that is the variance of q . k / sqrt(d_k), after the scaling; the question asks for q . k itself.",
            ),
            WrongAnswer(
                "squared",
                lambda: _predicted_variance() * 64,
                "variances of independent terms add: d_k terms of variance 1 give d_k, not d_k^2.",
            ),
        ),
    ),
    FunctionExercise(
        "scaled_dot_product_attention",
        scaled_dot_product_attention,
        attention_cases,
        "tensor",
        "scaled_dot_product_attention(q, k, v, mask=None, bias=None, scale=None, return_weights=False)",
        bugs=tuple(ATTENTION_BUGS),
        ruled_out=RULED_OUT,
        building_blocks=ATTENTION_BLOCKS,
    ),
    ValueExercise(
        "masked_weight_q1_v3",
        "the weight q1 gives to v3 in lesson 01's worked example when q1 may not look at k1",
        lambda: _worked_weight(mask=_worked_mask()),
        rel_tol=5e-3,
        wrong=(
            WrongAnswer(
                "mask_not_applied",
                lambda: _worked_weight(),
                "that is the weight without the mask (or with the weights masked after the softmax, which does not "
                "renormalise them): k1's score must become -inf before the softmax.",
            ),
            WrongAnswer(
                "mask_zero",
                lambda: _worked_weight(
                    bias=torch.tensor([[-4.0 / math.sqrt(2), 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
                ),
                "k1's score was set to 0 instead of -inf: exp(0) = 1, so k1 still takes weight.",
            ),
            WrongAnswer(
                "no_scaling",
                lambda: _worked_weight(mask=_worked_mask(), scale=1.0),
                "the scores were not divided by sqrt(d_k) = sqrt(2) before the softmax.",
            ),
        ),
    ),
    *CONCEPT_EXERCISES,
]
