"""Learners' answers to the exercises of lesson 11 (attention as a fusion engine), right and wrong, with the verdict
each must get."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from learners import Attempt, assert_verdict

import minattn
from minattn.apps import fusion

# ----------------------------------------------------------------------------- weights per patient

COUNT_ATTEMPTS = [
    Attempt("cross_attention_weights_per_patient", "heads x queries x keys", 2 * 4 * 36, "right"),
    Attempt("cross_attention_weights_per_patient", "as a float", 288.0, "right"),
    Attempt("cross_attention_weights_per_patient", "one head", 4 * 36, "bug", names="one_head"),
    Attempt("cross_attention_weights_per_patient", "self-attention's count", 2 * 36**2, "bug", names="self_attention"),
    Attempt("cross_attention_weights_per_patient", "all 40 tokens together", 2 * 40**2, "bug", names="all_tokens"),
    Attempt("cross_attention_weights_per_patient", "a round guess", 300, "hard-coded"),
]


# ----------------------------------------------------------------------------- cross_attention


def _bias(mha):
    C = mha.dim
    b = mha.in_proj_bias
    return torch.zeros(3 * C, dtype=mha.in_proj_weight.dtype, device=mha.in_proj_weight.device) if b is None else b


def cross_solution(queries, context, mha):
    C, h = mha.dim, mha.num_heads
    W, b = mha.in_proj_weight, _bias(mha)
    q = queries @ W[:C].T + b[:C]
    k = context @ W[C : 2 * C].T + b[C : 2 * C]
    v = context @ W[2 * C :].T + b[2 * C :]
    q, k, v = (minattn.split_heads(t, h) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(C // h), dim=-1)
    return mha.out_proj(minattn.merge_heads(weights @ v)), weights


def cross_einsum(queries, context, mha):
    C, h = mha.dim, mha.num_heads
    Wq, Wk, Wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = _bias(mha).chunk(3)
    q = rearrange(torch.einsum("bnc,dc->bnd", queries, Wq) + bq, "b n (h d) -> b h n d", h=h)
    k = rearrange(torch.einsum("bnc,dc->bnd", context, Wk) + bk, "b n (h d) -> b h n d", h=h)
    v = rearrange(torch.einsum("bnc,dc->bnd", context, Wv) + bv, "b n (h d) -> b h n d", h=h)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * (C // h) ** -0.5
    e = torch.exp(scores - scores.amax(-1, keepdim=True))
    weights = e / e.sum(-1, keepdim=True)
    out = rearrange(torch.einsum("bhqk,bhkd->bhqd", weights, v), "b h n d -> b n (h d)")
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias), weights


def cross_float64(queries, context, mha):
    dtype = queries.dtype
    C, h = mha.dim, mha.num_heads
    W, b = mha.in_proj_weight.double(), _bias(mha).double()
    q = F.linear(queries.double(), W[:C], b[:C])
    k = F.linear(context.double(), W[C : 2 * C], b[C : 2 * C])
    v = F.linear(context.double(), W[2 * C :], b[2 * C :])
    q, k, v = (t.view(t.shape[0], t.shape[1], h, C // h).transpose(1, 2) for t in (q, k, v))
    out, weights = minattn.scaled_dot_product_attention(q, k, v, return_weights=True)
    out = out.transpose(1, 2).reshape(out.shape[0], -1, C)
    out = F.linear(out, mha.out_proj.weight.double(), mha.out_proj.bias.double())
    return out.to(dtype), weights.to(dtype)


def learner_cross(
    queries, context, mha, swap=False, scale_dim=None, out_proj=True, interleave=False, softmax_dim=-1, bias=True
):
    """A learner's cross-attention, with one of the slips switched on."""
    C, h = mha.dim, mha.num_heads
    W = mha.in_proj_weight
    b = _bias(mha) if bias else torch.zeros_like(_bias(mha))
    k_rows, v_rows = (slice(2 * C, 3 * C), slice(C, 2 * C)) if swap else (slice(C, 2 * C), slice(2 * C, 3 * C))
    q = queries @ W[:C].T + b[:C]
    k = context @ W[k_rows].T + b[k_rows]
    v = context @ W[v_rows].T + b[v_rows]
    pattern = "b n (d h) -> b h n d" if interleave else "b n (h d) -> b h n d"
    q, k, v = (rearrange(t, pattern, h=h) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // h if scale_dim is None else scale_dim(mha))
    weights = torch.softmax(scores, dim=softmax_dim)
    out = rearrange(weights @ v, "b h n d -> b n (d h)" if interleave else "b h n d -> b n (h d)")
    return (mha.out_proj(out) if out_proj else out), weights


def cross_variant(**slip):
    return lambda queries, context, mha: learner_cross(queries, context, mha, **slip)


def bias_assumed(queries, context, mha):
    C, h = mha.dim, mha.num_heads
    W, b = mha.in_proj_weight, mha.in_proj_bias  # None for qkv_bias=False: b[:C] raises
    q, k, v = queries @ W[:C].T + b[:C], context @ W[C : 2 * C].T + b[C : 2 * C], context @ W[2 * C :].T + b[2 * C :]
    q, k, v = (minattn.split_heads(t, h) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(C // h), dim=-1)
    return mha.out_proj(minattn.merge_heads(weights @ v)), weights


def calls_mha(queries, context, mha):
    return mha(queries, context, context, return_weights=True)


def torch_mha(queries, context, mha):
    C, h = mha.dim, mha.num_heads
    layer = torch.nn.MultiheadAttention(C, h, batch_first=True, dtype=queries.dtype, device=queries.device)
    with torch.no_grad():
        layer.in_proj_weight.copy_(mha.in_proj_weight)
        layer.in_proj_bias.copy_(_bias(mha))
        layer.out_proj.weight.copy_(mha.out_proj.weight)
        layer.out_proj.bias.copy_(mha.out_proj.bias)
    out, weights = layer(queries, context, context, average_attn_weights=False)
    return out, weights


def zeros_of_the_right_shapes(queries, context, mha):
    B, n_q, _ = queries.shape
    n_k = context.shape[1]
    weights = torch.full((B, mha.num_heads, n_q, n_k), 1.0 / n_k, dtype=queries.dtype, device=queries.device)
    return torch.zeros_like(queries), weights


CROSS_ATTEMPTS = [
    Attempt("cross_attention", "row blocks, split_heads, softmax", cross_solution, "right"),
    Attempt("cross_attention", "chunk, einsum and einops", cross_einsum, "right"),
    Attempt("cross_attention", "float64 inside, view/transpose, minattn's attention", cross_float64, "right"),
    Attempt("cross_attention", "keys and values swapped", cross_variant(swap=True), "bug", names="keys_values_swapped"),
    Attempt(
        "cross_attention",
        "scaled by sqrt(C)",
        cross_variant(scale_dim=lambda mha: mha.dim),
        "bug",
        names="scaled_by_model_width",
    ),
    Attempt("cross_attention", "no output projection", cross_variant(out_proj=False), "bug", names="no_out_proj"),
    Attempt("cross_attention", "heads interleaved", cross_variant(interleave=True), "bug", names="heads_interleaved"),
    Attempt(
        "cross_attention",
        "softmax over the queries",
        cross_variant(softmax_dim=-2),
        "bug",
        names="softmax_over_queries",
    ),
    Attempt("cross_attention", "biases left out", cross_variant(bias=False), "bug", names="no_projection_bias"),
    Attempt("cross_attention", "in_proj_bias assumed present", bias_assumed, "bug", status="error"),
    Attempt("cross_attention", "calls mha itself", calls_mha, "shortcut", "ruled_out", "MultiHeadAttention"),
    Attempt(
        "cross_attention",
        "torch's MultiheadAttention with mha's weights",
        torch_mha,
        "shortcut",
        "ruled_out",
        "torch.nn.MultiheadAttention",
    ),
    Attempt("cross_attention", "zeros and uniform weights", zeros_of_the_right_shapes, "hard-coded"),
]


# ----------------------------------------------------------------------------- finding_effect and interaction


def effect_solution(outcome, finding, group):
    return outcome[group & finding].mean() - outcome[group & ~finding].mean()


def effect_counts(outcome, finding, group):
    with_f, without = (group & finding), (group & ~finding)
    rate = lambda m: (outcome * m).sum() / m.sum()
    return rate(with_f) - rate(without)


def effect_numpy(outcome, finding, group):
    o, f, g = outcome.cpu().numpy(), finding.cpu().numpy(), group.cpu().numpy()
    return torch.tensor(o[g & f].mean() - o[g & ~f].mean(), dtype=outcome.dtype, device=outcome.device)


def effect_ignores_group(outcome, finding, group):
    return outcome[finding].mean() - outcome[~finding].mean()


def effect_reversed(outcome, finding, group):
    return outcome[group & ~finding].mean() - outcome[group & finding].mean()


def effect_ratio(outcome, finding, group):
    return outcome[group & finding].mean() / outcome[group & ~finding].mean()


def effect_float(outcome, finding, group):
    return effect_solution(outcome, finding, group).item()


def checker_effect(outcome, finding, group):
    from minattn.grading.topics.fusion import finding_effect

    return finding_effect(outcome, finding, group)


EFFECT_ATTEMPTS = [
    Attempt("finding_effect", "masks and .mean()", effect_solution, "right"),
    Attempt("finding_effect", "sums over counts", effect_counts, "right"),
    Attempt("finding_effect", "numpy round trip", effect_numpy, "right"),
    Attempt("finding_effect", "group ignored", effect_ignores_group, "bug", names="group_ignored"),
    Attempt("finding_effect", "without minus with", effect_reversed, "bug", names="reversed"),
    Attempt("finding_effect", "relative risk", effect_ratio, "bug", names="ratio"),
    Attempt("finding_effect", ".item() at the end", effect_float, "wrong type"),
    Attempt("finding_effect", "the checker's own function", checker_effect, "shortcut", "ruled_out"),
    Attempt(
        "finding_effect",
        "the printed 0.907 typed in",
        lambda outcome, finding, group: torch.tensor(0.907, dtype=outcome.dtype, device=outcome.device),
        "hard-coded",
    ),
]


def interaction_solution(outcome, finding, age, threshold=60.0):
    older = age >= threshold
    return effect_solution(outcome, finding, older) - effect_solution(outcome, finding, ~older)


def interaction_table(outcome, finding, age, threshold=60.0):
    # the 2 x 2 table of rates, then the difference of its differences
    older = age >= threshold
    rates = torch.stack([torch.stack([outcome[g & f].mean() for f in (finding, ~finding)]) for g in (older, ~older)])
    return (rates[0, 0] - rates[0, 1]) - (rates[1, 0] - rates[1, 1])


def interaction_strict(outcome, finding, age, threshold=60.0):
    return interaction_solution(outcome, finding, age, threshold + 1e-9)


def interaction_fixed_60(outcome, finding, age, threshold=60.0):
    return interaction_solution(outcome, finding, age, 60.0)


def interaction_reversed(outcome, finding, age, threshold=60.0):
    return -interaction_solution(outcome, finding, age, threshold)


def interaction_sum(outcome, finding, age, threshold=60.0):
    older = age >= threshold
    return effect_solution(outcome, finding, older) + effect_solution(outcome, finding, ~older)


def checker_interaction(outcome, finding, age, threshold=60.0):
    from minattn.grading.topics.fusion import interaction

    return interaction(outcome, finding, age, threshold)


INTERACTION_ATTEMPTS = [
    Attempt("interaction", "two calls of my finding_effect", interaction_solution, "right"),
    Attempt("interaction", "a 2 x 2 table of rates", interaction_table, "right"),
    Attempt("interaction", "age > threshold", interaction_strict, "bug", names="strict_threshold"),
    Attempt("interaction", "60 whatever the threshold", interaction_fixed_60, "bug", names="threshold_ignored"),
    Attempt("interaction", "younger minus older", interaction_reversed, "bug", names="reversed"),
    Attempt("interaction", "the effects added", interaction_sum, "bug", names="sum_of_effects"),
    Attempt(
        "interaction",
        "no threshold parameter",
        lambda outcome, finding, age: interaction_solution(outcome, finding, age),
        "bug",
        names="missing_parameter",
    ),
    Attempt("interaction", "the checker's own function", checker_interaction, "shortcut", "ruled_out"),
]


# ----------------------------------------------------------------------------- the position-blind prediction


def blind_solution(age, lesions):
    p_finding = lesions.sum(dim=1).to(age.dtype) / lesions.shape[1]
    return torch.where(age >= 60, 0.05 + 0.9 * p_finding, torch.full_like(age, 0.3))


def blind_float32_mean(age, lesions):
    # the share of regions with a lesion, in float32; torch.where promotes to age's dtype
    p = 0.05 + 0.9 * lesions.float().mean(dim=1)
    return torch.where(age >= 60, p, torch.full_like(age, 0.3))


def blind_numpy(age, lesions):
    a, k = age.cpu().numpy(), lesions.cpu().numpy()
    p = np.where(a >= 60, 0.05 + 0.9 * k.sum(axis=1) / 4, 0.3)
    return torch.from_numpy(p).to(device=age.device, dtype=age.dtype)


def blind_strict(age, lesions):
    p = 0.05 + 0.9 * lesions.sum(1).to(age.dtype) / 4
    return torch.where(age > 60, p, torch.full_like(age, 0.3))


def blind_no_flips(age, lesions):
    return torch.where(age >= 60, lesions.sum(1).to(age.dtype) / 4, torch.full_like(age, 0.3))


def blind_any(age, lesions):
    return torch.where(age >= 60, 0.05 + 0.9 * lesions.any(1).to(age.dtype), torch.full_like(age, 0.3))


def blind_ignores_age(age, lesions):
    return 0.05 + 0.9 * lesions.sum(1).to(age.dtype) / 4


def blind_float32(age, lesions):
    return blind_solution(age, lesions).float()


def package_blind(age, lesions):
    return fusion.reference_probabilities(SimpleNamespace(age=age, lesions=lesions), "age+count").to(age.dtype)


BLIND_ATTEMPTS = [
    Attempt("position_blind_probability", "count / 4 and torch.where", blind_solution, "right"),
    Attempt("position_blind_probability", "mean of the lesion flags in float32", blind_float32_mean, "right"),
    Attempt("position_blind_probability", "numpy round trip", blind_numpy, "right"),
    Attempt("position_blind_probability", "age > 60", blind_strict, "bug", names="strict_threshold"),
    Attempt("position_blind_probability", "flips left out", blind_no_flips, "bug", names="flips_ignored"),
    Attempt("position_blind_probability", "any lesion as the finding", blind_any, "bug", names="any_lesion"),
    Attempt("position_blind_probability", "same rule under 60", blind_ignores_age, "bug", names="age_ignored"),
    Attempt("position_blind_probability", "always float32", blind_float32, "wrong type", says="dtype"),
    Attempt(
        "position_blind_probability",
        "fusion.reference_probabilities",
        package_blind,
        "shortcut",
        "ruled_out",
        "reference_probabilities",
    ),
    Attempt(
        "position_blind_probability", "0.3 for everyone", lambda age, lesions: torch.full_like(age, 0.3), "hard-coded"
    ),
]

ATTEMPTS = COUNT_ATTEMPTS + CROSS_ATTEMPTS + EFFECT_ATTEMPTS + INTERACTION_ATTEMPTS + BLIND_ATTEMPTS


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)
