"""Learners' answers to the attention exercises (exercises 00, 01 and 02), right and wrong, with their verdicts."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from learners import Attempt, assert_verdict

import minattn
from minattn.grading.topics import attention as topic

# ----------------------------------------------------------------------------- 00: a dot product by hand

Q_DOT, K_DOT = (2.0, -1.0, 3.0), (1.0, 4.0, 2.0)

DOT = [
    Attempt("dot_product_by_hand", "worked out on paper", 2 * 1 + (-1) * 4 + 3 * 2, "right"),
    Attempt(
        "dot_product_by_hand", "torch.dot, a 0-dim tensor", torch.dot(torch.tensor(Q_DOT), torch.tensor(K_DOT)), "right"
    ),
    Attempt("dot_product_by_hand", "numpy float", np.dot(Q_DOT, K_DOT), "right"),
    Attempt("dot_product_by_hand", "minus sign dropped", 2 * 1 + 1 * 4 + 3 * 2, "bug", names="sign_dropped"),
    Attempt(
        "dot_product_by_hand", "pairs added, not multiplied", (2 + 1) + (-1 + 4) + (3 + 2), "bug", names="added_pairs"
    ),
    Attempt("dot_product_by_hand", "q . q", 2 * 2 + 1 + 3 * 3, "bug", names="one_vector_squared"),
    Attempt("dot_product_by_hand", "a guess", 5, "hard-coded"),
    Attempt("dot_product_by_hand", "the products, not their sum", [2.0, -4.0, 6.0], "wrong type"),
]

# ----------------------------------------------------------------------------- 01: the score matrix


def scores_einsum(Q, K):
    return torch.einsum("id,jd->ij", Q, K)


def scores_loops(Q, K):
    rows = [torch.stack([torch.dot(q, k) for k in K]) for q in Q]
    return torch.stack(rows)


def scores_numpy(Q, K):
    s = Q.detach().cpu().numpy() @ K.detach().cpu().numpy().T
    return torch.from_numpy(s).to(Q.device, Q.dtype)


def scores_float64_inside(Q, K):
    return (Q.double() @ K.double().T).to(Q.dtype)


WORKED_SCORES = torch.tensor([[4.0, 0.0, 2.8], [0.0, 4.0, 2.8]], dtype=torch.float64)

SCORES = [
    Attempt("score_matrix", "einsum", scores_einsum, "right"),
    Attempt("score_matrix", "loops over queries and keys", scores_loops, "right"),
    Attempt("score_matrix", "numpy round trip", scores_numpy, "right"),
    Attempt("score_matrix", "float64 inside, cast back", scores_float64_inside, "right"),
    Attempt("score_matrix", "K @ Q.T", lambda Q, K: K @ Q.T, "bug", names="scores_transposed"),
    Attempt(
        "score_matrix", "already scaled", lambda Q, K: Q @ K.T / math.sqrt(Q.shape[-1]), "bug", names="scores_scaled"
    ),
    Attempt(
        "score_matrix", "softmax weights", lambda Q, K: torch.softmax(Q @ K.T, dim=-1), "bug", names="scores_softmaxed"
    ),
    Attempt("score_matrix", "elementwise product", lambda Q, K: (Q * K).sum(-1), "bug"),
    Attempt(
        "score_matrix",
        "the worked example's matrix typed in",
        lambda Q, K: WORKED_SCORES.to(Q.device, Q.dtype),
        "hard-coded",
    ),
    Attempt("score_matrix", "the grader's reference", topic.score_matrix, "shortcut", "ruled_out", "score_matrix"),
    Attempt("score_matrix", "returns a numpy array", lambda Q, K: (Q @ K.T).cpu().numpy(), "wrong type"),
]

# ----------------------------------------------------------------------------- 01: weights of the worked example

K_WORKED = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.4, 1.4]], dtype=torch.float64)
Q_WORKED, V_WORKED = K_WORKED[:2].clone(), torch.eye(3, dtype=torch.float64)


def by_hand_weight(scores, column):
    exps = [math.exp(s / math.sqrt(2)) for s in scores]
    return exps[column] / sum(exps)


WEIGHT = [
    Attempt("weight_q1_v3", "three significant figures", 0.288, "right"),
    Attempt("weight_q1_v3", "math.exp by hand", by_hand_weight([4.0, 0.0, 2.8], 2), "right"),
    Attempt(
        "weight_q1_v3", "torch, a 0-dim tensor", torch.softmax(Q_WORKED @ K_WORKED.T / math.sqrt(2), -1)[0, 2], "right"
    ),
    Attempt("weight_q1_v3", "no scaling", math.exp(2.8) / (math.exp(4) + 1 + math.exp(2.8)), "bug", names="no_scaling"),
    Attempt(
        "weight_q1_v3", "k3 = (1, 1), not the lesson's", by_hand_weight([4.0, 0.0, 2.0], 2), "bug", names="k3_is_1_1"
    ),
    Attempt("weight_q1_v3", "weight on v1", 0.672, "bug", names="weight_on_v1"),
    Attempt(
        "weight_q1_v3", "divided by d_k", math.exp(1.4) / (math.exp(2) + 1 + math.exp(1.4)), "bug", names="divided_by_d"
    ),
    Attempt("weight_q1_v3", "scores normalised without exp", 2.8 / 6.8, "bug", names="no_exp"),
    Attempt("weight_q1_v3", "one third typed in", 1 / 3, "hard-coded"),
    Attempt("weight_q1_v3", "the whole weight row", [0.672, 0.040, 0.288], "wrong type"),
]

# ----------------------------------------------------------------------------- 01: attention(q, k, v)


def attention_matmul(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


def attention_einsum(q, k, v):
    scores = torch.einsum("...id,...jd->...ij", q, k) * q.shape[-1] ** -0.5
    return torch.einsum("...ij,...jd->...id", minattn.softmax(scores), v)


def attention_float64(q, k, v):
    q64, k64, v64 = q.double(), k.double(), v.double()
    weights = F.softmax(q64 @ k64.mT / math.sqrt(q.shape[-1]), dim=-1)
    return (weights @ v64).to(q.dtype)


def attention_unscaled(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


def attention_over_d(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1], dim=-1) @ v


def attention_query_axis(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-2) @ v


def attention_naive_exp(q, k, v):
    e = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
    return e / e.sum(-1, keepdim=True) @ v


def attention_weights_only(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)


def attention_zeros(q, k, v):
    return torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)


PLAIN = [
    Attempt("attention", "matmul and torch.softmax", attention_matmul, "right"),
    Attempt("attention", "einsum and minattn.softmax", attention_einsum, "right"),
    Attempt("attention", "float64 inside, F.softmax", attention_float64, "right"),
    Attempt("attention", "not scaled", attention_unscaled, "bug", names="no_scaling"),
    Attempt("attention", "divided by d_k", attention_over_d, "bug", names="scale_1_over_d"),
    Attempt("attention", "softmax over the queries", attention_query_axis, "bug", names="softmax_wrong_axis"),
    Attempt("attention", "exp without the max", attention_naive_exp, "bug", names="no_max_subtraction"),
    Attempt("attention", "returns the weights", attention_weights_only, "bug", names="returned_weights"),
    Attempt("attention", "zeros of the right shape", attention_zeros, "hard-coded"),
    Attempt(
        "attention",
        "minattn's own",
        lambda q, k, v: minattn.scaled_dot_product_attention(q, k, v),
        "shortcut",
        "ruled_out",
        "minattn.scaled_dot_product_attention",
    ),
    Attempt(
        "attention",
        "PyTorch's fused kernel",
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
        "shortcut",
        "ruled_out",
        "torch.nn.functional.scaled_dot_product_attention",
    ),
    Attempt("attention", "minattn.attention", minattn.attention, "shortcut", "ruled_out", "minattn.attention"),
]

# ----------------------------------------------------------------------------- 01: a louder landmark

LANDMARK = [
    Attempt("louder_landmark_c", "solved on paper", 2, "right"),
    Attempt(
        "louder_landmark_c", "q1 . k1 / q1 . (1, 1), a tensor", (Q_WORKED[0] @ K_WORKED[0]) / Q_WORKED[0].sum(), "right"
    ),
    Attempt("louder_landmark_c", "a float", 2.0, "right"),
    Attempt("louder_landmark_c", "the lesson's k3", 1.4, "bug", names="lesson_k3"),
    Attempt("louder_landmark_c", "q1 . (c, c) taken as c", 4, "bug", names="forgot_two_entries"),
    Attempt("louder_landmark_c", "a guess", 1, "hard-coded"),
    Attempt("louder_landmark_c", "with its unit-like text", "c = 2", "wrong type"),
]

# ----------------------------------------------------------------------------- 02: the variance experiment


def variance_sum_var(q, k):
    return (q * k).sum(dim=-1).var()


def variance_einsum(q, k):
    dots = torch.einsum("nd,nd->n", q, k)
    return ((dots - dots.mean()) ** 2).sum() / (dots.shape[0] - 1)


def variance_numpy(q, k):
    dots = (q.detach().cpu().numpy() * k.detach().cpu().numpy()).sum(axis=-1)
    return torch.tensor(np.var(dots, ddof=1), dtype=q.dtype, device=q.device)


def variance_float64_inside(q, k):
    return torch.diagonal(q.double() @ k.double().T).var().to(q.dtype)


VARIANCE = [
    Attempt("dot_product_variance", "sum then .var()", variance_sum_var, "right"),
    Attempt("dot_product_variance", "einsum and the formula", variance_einsum, "right"),
    Attempt("dot_product_variance", "numpy round trip, ddof=1", variance_numpy, "right"),
    Attempt("dot_product_variance", "diagonal of q k^T in float64", variance_float64_inside, "right"),
    Attempt(
        "dot_product_variance",
        "np.var's default ddof=0",
        lambda q, k: torch.tensor(np.var((q * k).sum(-1).cpu().numpy()), dtype=q.dtype, device=q.device),
        "bug",
        names="population_variance",
    ),
    Attempt(
        "dot_product_variance", "products not summed", lambda q, k: (q * k).var(), "bug", names="products_not_summed"
    ),
    Attempt("dot_product_variance", "mean, not sum", lambda q, k: (q * k).mean(-1).var(), "bug", names="mean_not_sum"),
    Attempt(
        "dot_product_variance", "standard deviation", lambda q, k: (q * k).sum(-1).std(), "bug", names="std_not_var"
    ),
    Attempt(
        "dot_product_variance", "every query with every key", lambda q, k: (q @ k.T).var(), "bug", names="all_pairs"
    ),
    Attempt(
        "dot_product_variance",
        "the theory's d_k typed in",
        lambda q, k: torch.tensor(float(q.shape[-1]), dtype=q.dtype, device=q.device),
        "hard-coded",
    ),
    Attempt("dot_product_variance", "returns a Python float", lambda q, k: (q * k).sum(-1).var().item(), "wrong type"),
    Attempt(
        "dot_product_variance",
        "the grader's reference",
        topic.dot_product_variance,
        "shortcut",
        "ruled_out",
        "dot_product_variance",
    ),
]

PREDICTED = [
    Attempt("predicted_variance_dk64", "64", 64, "right"),
    Attempt("predicted_variance_dk64", "64 terms of variance 1 * 1", 64 * 1.0 * 1.0, "right"),
    Attempt("predicted_variance_dk64", "standard deviation", 8, "bug", names="standard_deviation"),
    Attempt("predicted_variance_dk64", "after the scaling", 1, "bug", names="after_scaling"),
    Attempt("predicted_variance_dk64", "d_k squared", 4096, "bug", names="squared"),
    Attempt("predicted_variance_dk64", "the measured 63.4 typed in", 63.4, "hard-coded"),
]

# ----------------------------------------------------------------------------- 02: scaled dot-product attention


def guarded_softmax(scores):
    m = scores.amax(dim=-1, keepdim=True)
    e = torch.exp(scores - torch.where(torch.isfinite(m), m, torch.zeros_like(m)))
    total = e.sum(dim=-1, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))


def sdpa_masked_fill(q, k, v, mask=None, bias=None, scale=None, return_weights=False):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = guarded_softmax(scores)
    out = weights @ v
    return (out, weights) if return_weights else out


def sdpa_einsum_where(q, k, v, mask=None, bias=None, scale=None, return_weights=False):
    if scale is None:
        scale = q.shape[-1] ** -0.5
    scores = torch.einsum("...qd,...kd->...qk", q, k) * scale
    scores = scores + (0.0 if bias is None else bias)
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device))
    weights = minattn.softmax(scores, dim=-1)
    out = torch.einsum("...qk,...kd->...qd", weights, v)
    return (out, weights) if return_weights else out


def sdpa_torch_softmax_nan_to_num(q, k, v, mask=None, bias=None, scale=None, return_weights=False):
    q64, k64, v64 = q.double(), k.double(), v.double()
    scores = q64 @ k64.transpose(-2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if bias is not None:
        scores = scores + bias.double()
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # a query with nothing allowed: zeros
    out = (weights @ v64).to(q.dtype)
    weights = weights.to(q.dtype)
    return (out, weights) if return_weights else out


def sdpa_variant(**changes):
    """A learner's attention with one slip; ``changes`` says which."""

    def fn(q, k, v, mask=None, bias=None, scale=None, return_weights=False):
        if scale is None or changes.get("ignore_scale"):
            scale = 1.0 / math.sqrt(q.shape[-1])
        raw = q @ k.transpose(-2, -1)
        if bias is not None and changes.get("bias_first"):
            scores = (raw + bias) * scale
        else:
            scores = raw * scale + (0.0 if bias is None else bias)
        if mask is not None:
            keep = mask if not changes.get("invert") else ~mask
            fill = changes.get("fill", float("-inf"))
            scores = scores.masked_fill(~keep, fill)
        weights = torch.softmax(scores, dim=-1) if changes.get("torch_softmax") else guarded_softmax(scores)
        out = weights @ v
        if return_weights:
            return (weights, out) if changes.get("swap") else (out, weights)
        return out

    return fn


def sdpa_renamed_inverted(q, k, v, attn_mask=None, bias=None, scale=None, return_weights=False):
    """attn_mask: True = blocked, as some libraries have it."""
    mask = None if attn_mask is None else ~attn_mask
    return sdpa_masked_fill(q, k, v, mask, bias, scale, return_weights)


def sdpa_no_options(q, k, v):
    return sdpa_masked_fill(q, k, v)


def sdpa_only_mask(q, k, v, mask=None):
    return sdpa_masked_fill(q, k, v, mask)


def sdpa_no_return_weights(q, k, v, mask=None, bias=None, scale=None):
    return sdpa_masked_fill(q, k, v, mask, bias, scale)


def sdpa_zeros(q, k, v, mask=None, bias=None, scale=None, return_weights=False):
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
    return (out, torch.zeros(*q.shape[:-1], k.shape[-2], dtype=q.dtype, device=q.device)) if return_weights else out


def sdpa_pytorch(q, k, v, mask=None, bias=None, scale=None, return_weights=False):
    attn_mask = bias if mask is None else (mask if bias is None else bias.masked_fill(~mask, float("-inf")))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)


SDPA = "scaled_dot_product_attention"

FULL = [
    Attempt(SDPA, "masked_fill and a guarded softmax", sdpa_masked_fill, "right"),
    Attempt(SDPA, "einsum, torch.where and minattn.softmax", sdpa_einsum_where, "right"),
    Attempt(SDPA, "float64 inside, torch.softmax then nan_to_num", sdpa_torch_softmax_nan_to_num, "right"),
    Attempt(
        SDPA, "no mask, bias, scale or return_weights", sdpa_no_options, "bug", names="missing_parameter", says="`mask`"
    ),
    Attempt(SDPA, "only a mask", sdpa_only_mask, "bug", names="missing_parameter", says="`bias`"),
    Attempt(
        SDPA, "no return_weights", sdpa_no_return_weights, "bug", names="missing_parameter", says="`return_weights`"
    ),
    Attempt(
        SDPA,
        "mask renamed attn_mask and inverted",
        sdpa_renamed_inverted,
        "bug",
        names="missing_parameter",
        says="`mask`",
    ),
    Attempt(SDPA, "mask inverted", sdpa_variant(invert=True), "bug", names="mask_inverted"),
    Attempt(
        SDPA,
        "torch.softmax: NaN for a query with no key",
        sdpa_variant(torch_softmax=True),
        "bug",
        names="masked_row_nan",
    ),
    Attempt(SDPA, "blocked scores filled with -1e9", sdpa_variant(fill=-1e9), "bug", names="masked_row_uniform"),
    Attempt(SDPA, "blocked scores set to 0", sdpa_variant(fill=0.0), "bug", names="mask_zero"),
    Attempt(SDPA, "bias added before scaling", sdpa_variant(bias_first=True), "bug", names="bias_scaled"),
    Attempt(SDPA, "scale argument ignored", sdpa_variant(ignore_scale=True), "bug", names="scale_ignored"),
    Attempt(SDPA, "(weights, out) returned", sdpa_variant(swap=True), "bug", names="weights_swapped"),
    Attempt(SDPA, "zeros of the right shapes", sdpa_zeros, "hard-coded"),
    Attempt(
        SDPA,
        "minattn's own, aliased",
        minattn.scaled_dot_product_attention,
        "shortcut",
        "ruled_out",
        "minattn.scaled_dot_product_attention",
    ),
    Attempt(
        SDPA, "PyTorch's", sdpa_pytorch, "shortcut", "ruled_out", "torch.nn.functional.scaled_dot_product_attention"
    ),
    Attempt(
        SDPA,
        "minattn.memory_efficient_attention",
        lambda q, k, v, mask=None, bias=None, scale=None, return_weights=False: minattn.memory_efficient_attention(
            q, k, v, mask=mask, bias=bias, scale=scale
        ),
        "shortcut",
        "ruled_out",
        "minattn.memory_efficient_attention",
    ),
    Attempt(
        SDPA,
        "returns a numpy array",
        lambda q, k, v, mask=None, bias=None, scale=None, return_weights=False: sdpa_masked_fill(q, k, v).cpu().numpy(),
        "wrong type",
    ),
]

MASKED_SCORE = 2.8 / math.sqrt(2)

MASKED = [
    Attempt("masked_weight_q1_v3", "three significant figures", 0.879, "right"),
    Attempt(
        "masked_weight_q1_v3", "softmax over k2 and k3", math.exp(MASKED_SCORE) / (1 + math.exp(MASKED_SCORE)), "right"
    ),
    Attempt(
        "masked_weight_q1_v3",
        "minattn with the mask, a tensor",
        minattn.scaled_dot_product_attention(
            Q_WORKED,
            K_WORKED,
            V_WORKED,
            mask=torch.tensor([[False, True, True], [True, True, True]]),
            return_weights=True,
        )[1][0, 2],
        "right",
    ),
    Attempt("masked_weight_q1_v3", "mask forgotten", 0.288, "bug", names="mask_not_applied"),
    Attempt(
        "masked_weight_q1_v3",
        "k1's score set to 0",
        math.exp(MASKED_SCORE) / (2 + math.exp(MASKED_SCORE)),
        "bug",
        names="mask_zero",
    ),
    Attempt("masked_weight_q1_v3", "not scaled", math.exp(2.8) / (1 + math.exp(2.8)), "bug", names="no_scaling"),
    Attempt("masked_weight_q1_v3", "k3 = (1, 1), not the lesson's", 0.804, "hard-coded"),
]

ATTEMPTS = [*DOT, *SCORES, *WEIGHT, *PLAIN, *LANDMARK, *VARIANCE, *PREDICTED, *FULL, *MASKED]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)


def test_the_worked_example_is_the_lessons():
    """The grader's worked example is lesson 01's (k3 = (1.4, 1.4)), the one the exercises print."""
    q, k, v = topic.worked_example()
    assert torch.equal(k, K_WORKED) and torch.equal(q, Q_WORKED) and torch.equal(v, V_WORKED)
    assert topic.DOT_EXAMPLE == (Q_DOT, K_DOT)


def test_a_query_with_no_allowed_key_gets_zeros_in_every_full_case():
    """The hidden cases hold queries whose keys are all masked, and the reference gives them zeros."""
    blocked = 0
    for case in topic.attention_cases(torch.device("cpu")):
        mask = case.kwargs.get("mask")
        if mask is None:
            continue
        rows = (~mask).all(dim=-1)
        if rows.any():
            blocked += 1
            out = minattn.scaled_dot_product_attention(*case.args, **{**case.kwargs, "return_weights": True})
            for t in out:
                assert torch.isfinite(t).all()
                assert (
                    t.expand(*torch.broadcast_shapes(t.shape[:-1], rows.shape), t.shape[-1])[
                        rows.expand(torch.broadcast_shapes(t.shape[:-1], rows.shape))
                    ]
                    == 0
                ).all()
    assert blocked >= 3
