"""Attention as a fusion engine (lesson 11): the weights cross-attention computes per patient, cross-attention
from MultiHeadAttention's own weights, the finding's effect and its interaction with age, and the best
position-blind prediction, with their hidden cases, bugs and ruled-out calls, and the lesson's concept
questions."""

from __future__ import annotations

import inspect
import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from einops import rearrange

from ...apps import fusion
from ...multihead import MultiHeadAttention, merge_heads, split_heads
from ..exercise import (
    F32,
    F64,
    Bug,
    Case,
    ChoiceExercise,
    FunctionExercise,
    RuledOut,
    SameWeights,
    ValueExercise,
    WrongAnswer,
    case_dtype,
    graders_own,
    randn,
)

# ----------------------------------------------------------------------------- weights per patient


def _heads() -> int:
    return inspect.signature(fusion.CrossAttentionFusion).parameters["heads"].default


def _queries() -> int:
    return len(fusion.CLINICAL_TOKENS)


def _keys() -> int:
    return fusion.GRID * fusion.GRID


WEIGHTS_PER_PATIENT = ValueExercise(
    "cross_attention_weights_per_patient",
    "attention weights the clinical -> image cross-attention computes for one patient",
    lambda: _heads() * _queries() * _keys(),
    unit="weights",
    rel_tol=0,
    integer=True,
    wrong=(
        WrongAnswer(
            "one_head",
            lambda: _queries() * _keys(),
            "that is one head's weights (queries x keys); each of the 2 heads computes its own.",
        ),
        WrongAnswer(
            "self_attention",
            lambda: _heads() * _keys() ** 2,
            "that is self-attention among the 36 image tokens; here only the 4 clinical tokens ask, so there are "
            "4 query rows, not 36.",
        ),
        WrongAnswer(
            "all_tokens",
            lambda: _heads() * (_queries() + _keys()) ** 2,
            "that is self-attention over all 40 tokens together; in cross-attention the 4 clinical queries attend "
            "to the 36 image keys only.",
        ),
        WrongAnswer(
            "no_keys",
            lambda: _heads() * _queries(),
            "that counts one weight per head and query; every query has a weight for each of the 36 image keys.",
        ),
        WrongAnswer(
            "one_query",
            lambda: _heads() * _keys(),
            "that is one clinical query's weights; all 4 clinical tokens ask.",
        ),
    ),
)


# ----------------------------------------------------------------------------- cross_attention


def cross_attention(queries: torch.Tensor, context: torch.Tensor, mha: MultiHeadAttention):
    """The reference: what ``mha(queries, context, context, return_weights=True)`` returns."""
    with torch.no_grad():
        return mha(queries, context, context, return_weights=True)


class CaseMultiHeadAttention(SameWeights, MultiHeadAttention):
    """A :class:`minattn.MultiHeadAttention` of a hidden case, described in one line in the feedback."""

    def _get_name(self):
        return "MultiHeadAttention"

    def __repr__(self):
        dtype = str(self.in_proj_weight.dtype).replace("torch.", "")
        return (
            f"MultiHeadAttention(dim={self.dim}, num_heads={self.num_heads}, "
            f"qkv_bias={self.in_proj_bias is not None}) in {dtype} on {self.in_proj_weight.device}"
        )


def _mha(g, dim, heads, dtype, device, qkv_bias=True) -> MultiHeadAttention:
    """A MultiHeadAttention with seeded weights and non-zero biases (built without touching the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        mha = CaseMultiHeadAttention(dim, heads, qkv_bias=qkv_bias).to(F64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.randn(3 * dim, dim, generator=g, dtype=F64) / math.sqrt(dim) * 1.5)
        if qkv_bias:
            mha.in_proj_bias.copy_(torch.randn(3 * dim, generator=g, dtype=F64) * 0.5)
        mha.out_proj.weight.copy_(torch.randn(dim, dim, generator=g, dtype=F64) / math.sqrt(dim))
        mha.out_proj.bias.copy_(torch.randn(dim, generator=g, dtype=F64) * 0.5)
    mha.requires_grad_(False)
    return mha.to(device=device, dtype=case_dtype(dtype, device))


def cross_attention_cases(device):
    g = torch.Generator().manual_seed(14)

    def case(label, b, n_q, n_k, dim, heads, dtype, qkv_bias=True):
        queries = randn(g, (b, n_q, dim), dtype, device)
        context = randn(g, (b, n_k, dim), dtype, device, 1.3)
        return Case(label, (queries, context, _mha(g, dim, heads, dtype, device, qkv_bias)))

    return [
        case("B=1, 2 queries, 3 context tokens, C=4, 1 head (float64)", 1, 2, 3, 4, 1, F64),
        case("B=2, 4 queries, 7 context tokens, C=12, 3 heads (float64)", 2, 4, 7, 12, 3, F64),
        case("B=3, 5 queries, 6 context tokens, C=8, 2 heads (float32)", 3, 5, 6, 8, 2, F32),
        case("B=2, 1 query, 9 context tokens, C=6, 2 heads (float32)", 2, 1, 9, 6, 2, F32),
        case("B=1, 6 queries, 2 context tokens, C=10, 5 heads (float64)", 1, 6, 2, 10, 5, F64),
        case(
            "B=2, 3 queries, 5 context tokens, C=8, 4 heads, no q/k/v biases (in_proj_bias None) (float64)",
            2,
            3,
            5,
            8,
            4,
            F64,
            False,
        ),
    ]


def _explicit_cross(
    queries,
    context,
    mha,
    *,
    kv_swapped=False,
    kv_source=None,
    scale_dim=None,
    out_proj=True,
    interleaved=False,
    softmax_dim=-1,
    bias=True,
):
    """Cross-attention with switches that reproduce the learners' mistakes."""
    C, h = mha.dim, mha.num_heads
    W = mha.in_proj_weight
    b = (
        mha.in_proj_bias
        if (bias and mha.in_proj_bias is not None)
        else torch.zeros(3 * C, dtype=W.dtype, device=W.device)
    )
    source = context if kv_source is None else kv_source
    k_rows, v_rows = (slice(2 * C, 3 * C), slice(C, 2 * C)) if kv_swapped else (slice(C, 2 * C), slice(2 * C, 3 * C))
    q = F.linear(queries, W[:C], b[:C])
    k = F.linear(source, W[k_rows], b[k_rows])
    v = F.linear(source, W[v_rows], b[v_rows])
    if interleaved:
        q, k, v = (rearrange(t, "b n (d h) -> b h n d", h=h) for t in (q, k, v))
    else:
        q, k, v = (split_heads(t, h) for t in (q, k, v))
    scale = 1.0 / math.sqrt(C // h if scale_dim is None else scale_dim)
    weights = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=softmax_dim)
    heads_out = weights @ v
    merged = rearrange(heads_out, "b h n d -> b n (d h)") if interleaved else merge_heads(heads_out)
    out = mha.out_proj(merged) if out_proj else merged
    return out, weights


def _cross_variant(**switches):
    def variants(case):
        queries, context, mha = case.args
        with torch.no_grad():
            if switches.get("kv_source") == "queries":
                output = _explicit_cross(queries, context, mha, kv_source=queries)
            elif switches.get("scale_dim") == "C":
                output = _explicit_cross(queries, context, mha, scale_dim=mha.dim)
            elif switches.get("scale_dim") == "none":
                output = _explicit_cross(queries, context, mha, scale_dim=1)
            else:
                output = _explicit_cross(queries, context, mha, **switches)
        yield output, {}

    return variants


CROSS_BUGS = [
    Bug(
        "keys_values_swapped",
        "keys and values were taken from the wrong rows of in_proj_weight: rows C:2C project the keys, rows 2C:3C "
        "the values.",
        "k = context @ W[C:2C].T + b[C:2C] and v = context @ W[2C:3C].T + b[2C:3C].",
        _cross_variant(kv_swapped=True),
    ),
    Bug(
        "keys_from_queries",
        "keys and values were computed from the queries (self-attention); in cross-attention they come from the "
        "context.",
        "project `context`, not `queries`, with rows C:2C (keys) and 2C:3C (values).",
        _cross_variant(kv_source="queries"),
    ),
    Bug(
        "scaled_by_model_width",
        "the scores were divided by sqrt(C), the model width; each head scales by the square root of its own "
        "width, sqrt(C / h).",
        "scale = 1 / math.sqrt(mha.dim // mha.num_heads) (or mha.head_dim).",
        _cross_variant(scale_dim="C"),
    ),
    Bug(
        "not_scaled",
        "the scores q k^T were not scaled by 1 / sqrt(C / h).",
        "scores = q @ k.transpose(-2, -1) / math.sqrt(mha.dim // mha.num_heads).",
        _cross_variant(scale_dim="none"),
    ),
    Bug(
        "no_out_proj",
        "the merged heads were returned without the output projection mha.out_proj.",
        "out = mha.out_proj(merge_heads(weights @ v)).",
        _cross_variant(out_proj=False),
    ),
    Bug(
        "heads_interleaved",
        "the heads were split as (d h) instead of (h d): head i must take the contiguous features i*C/h to (i+1)*C/h.",
        "minattn.split_heads(t, h), or rearrange(t, 'b n (h d) -> b h n d', h=h), and merge the same way.",
        _cross_variant(interleaved=True),
    ),
    Bug(
        "softmax_over_queries",
        "the softmax ran over the queries (dim=-2); each query's weights over the context tokens must sum to 1.",
        "torch.softmax(scores, dim=-1): the last axis of (B, h, Nq, Nk) holds the keys.",
        _cross_variant(softmax_dim=-2),
    ),
    Bug(
        "no_projection_bias",
        "the projection biases mha.in_proj_bias were left out.",
        "add b[:C], b[C:2C] and b[2C:] after the matrix products (when mha.in_proj_bias is not None).",
        _cross_variant(bias=False),
    ),
]

CROSS_RULED_OUT = (
    RuledOut("minattn.MultiHeadAttention (calling mha itself)", (MultiHeadAttention,)),
    RuledOut("torch.nn.MultiheadAttention", (torch.nn.MultiheadAttention, F.multi_head_attention_forward)),
    RuledOut(
        "MONAI's CrossAttentionBlock / SABlock",
        ("monai.networks.blocks:CrossAttentionBlock", "monai.networks.blocks:SABlock"),
    ),
)


# ----------------------------------------------------------------------------- the finding's effect


def finding_effect(outcome: torch.Tensor, finding: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Outcome rate with the finding minus without it, among the patients of ``group``; 0-d, outcome's dtype."""
    return outcome[group & finding].mean() - outcome[group & ~finding].mean()


def interaction(
    outcome: torch.Tensor, finding: torch.Tensor, age: torch.Tensor, threshold: float = fusion.AGE_THRESHOLD
):
    """The finding's effect from ``threshold`` on minus its effect below: a difference of differences."""
    older = age >= threshold
    return finding_effect(outcome, finding, older) - finding_effect(outcome, finding, ~older)


def _patients(g, n, dtype, device, threshold=fusion.AGE_THRESHOLD, at_threshold=2):
    """Ages (some exactly at the threshold), findings and outcomes; every (age group, finding) cell is filled."""
    age = 30.0 + 60.0 * torch.rand(n, generator=g, dtype=F64)
    age = age.round(decimals=1)
    age[:at_threshold] = threshold
    age[at_threshold : at_threshold + 2] = threshold - 0.5  # at least two younger patients
    finding = torch.rand(n, generator=g) < 0.5
    finding[0], finding[1] = True, False  # the older group has both kinds
    finding[at_threshold], finding[at_threshold + 1] = True, False  # and so has the younger one
    p = torch.where(age >= threshold, 0.1 + 0.8 * finding.to(F64), torch.full((n,), 0.3, dtype=F64))
    outcome = (torch.rand(n, generator=g, dtype=F64) < p).to(F64)
    # make the threshold patients matter: one with the finding has the outcome, one without has not
    outcome[0], outcome[1] = 1.0, 0.0
    outcome[at_threshold], outcome[at_threshold + 1] = 0.0, 1.0
    return (
        outcome.to(device=device, dtype=case_dtype(dtype, device)),
        finding.to(device),
        age.to(device=device, dtype=case_dtype(dtype, device)),
    )


def finding_effect_cases(device):
    g = torch.Generator().manual_seed(15)
    fixed_outcome = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=F64)
    fixed_finding = torch.tensor([1, 1, 0, 1, 0, 1, 0, 0], dtype=torch.bool)
    fixed_group = torch.tensor([1, 1, 1, 0, 1, 1, 0, 1], dtype=torch.bool)
    cases = [
        Case(
            "8 patients, 6 in the group (float64)",
            (fixed_outcome.to(device, case_dtype(F64, device)), fixed_finding.to(device), fixed_group.to(device)),
        )
    ]
    for label, n, dtype in (
        ("13 patients (float64)", 13, F64),
        ("21 patients (float32)", 21, F32),
        ("30 patients (float64)", 30, F64),
    ):
        outcome, finding, age = _patients(g, n, dtype, device)
        cases.append(Case(f"{label}, group = age >= 60", (outcome, finding, age >= fusion.AGE_THRESHOLD)))
    outcome, finding, age = _patients(g, 17, F32, device)
    cases.append(Case("17 patients (float32), group = age < 60", (outcome, finding, age < fusion.AGE_THRESHOLD)))
    return cases


def interaction_cases(device):
    g = torch.Generator().manual_seed(16)
    cases = []
    for label, n, dtype, threshold in (
        ("12 patients, two aged exactly 60 (float64)", 12, F64, None),
        ("19 patients, two aged exactly 60 (float32)", 19, F32, None),
        ("25 patients, threshold=50.5, two aged exactly 50.5 (float64)", 25, F64, 50.5),
        ("16 patients, threshold=70, two aged exactly 70 (float32)", 16, F32, 70.0),
    ):
        outcome, finding, age = _patients(g, n, dtype, device, threshold or fusion.AGE_THRESHOLD)
        kwargs = {} if threshold is None else {"threshold": threshold}
        cases.append(Case(label, (outcome, finding, age), kwargs))
    return cases


def _effect_variant(kind: str):
    def variants(case):
        outcome, finding, group = (t.detach().cpu() for t in case.args)
        o = outcome.to(F64)
        if kind == "ignores_group":
            value = o[finding].mean() - o[~finding].mean()
        elif kind == "reversed":
            value = o[group & ~finding].mean() - o[group & finding].mean()
        elif kind == "ratio":
            value = o[group & finding].mean() / o[group & ~finding].mean()
        elif kind == "group_once":
            value = o[group & finding].mean() - o[~finding].mean()
        else:  # rates over the whole group
            value = (o * (group & finding)).sum() / group.sum() - (o * (group & ~finding)).sum() / group.sum()
        yield value.to(outcome.dtype), {}

    return variants


EFFECT_BUGS = [
    Bug(
        "group_ignored",
        "the group was ignored: your rates are over all patients.",
        "select with both masks: outcome[group & finding].mean() - outcome[group & ~finding].mean().",
        _effect_variant("ignores_group"),
    ),
    Bug(
        "reversed",
        "the difference is the wrong way round: rate with the finding minus rate without it.",
        "outcome[group & finding].mean() - outcome[group & ~finding].mean().",
        _effect_variant("reversed"),
    ),
    Bug(
        "ratio",
        "you divided the two rates (a relative risk); the effect here is their difference.",
        "outcome[group & finding].mean() - outcome[group & ~finding].mean().",
        _effect_variant("ratio"),
    ),
    Bug(
        "group_applied_once",
        "the group was applied to the patients with the finding only; those without it must come from the group too.",
        "outcome[group & ~finding].mean() for the second rate.",
        _effect_variant("group_once"),
    ),
    Bug(
        "rates_over_whole_group",
        "each count of outcomes was divided by the size of the whole group; a rate divides by the size of its own "
        "subgroup (group & finding, or group & ~finding).",
        "take .mean() of the outcomes of each subgroup.",
        _effect_variant("whole_group"),
    ),
]


def _interaction_variant(kind: str):
    def variants(case):
        outcome, finding, age = (t.detach().cpu() for t in case.args)
        threshold = case.kwargs.get("threshold", fusion.AGE_THRESHOLD)
        o = outcome.to(F64)
        if kind == "fixed_60":
            threshold = fusion.AGE_THRESHOLD
        older = age > threshold if kind == "strict" else age >= threshold
        effect_older = o[older & finding].mean() - o[older & ~finding].mean()
        effect_younger = o[~older & finding].mean() - o[~older & ~finding].mean()
        value = {
            "reversed": effect_younger - effect_older,
            "sum": effect_older + effect_younger,
            "older_only": effect_older,
        }.get(kind, effect_older - effect_younger)
        yield value.to(outcome.dtype), {}

    return variants


INTERACTION_BUGS = [
    Bug(
        "strict_threshold",
        "patients aged exactly the threshold were put in the younger group; 'from 60 on' means age >= threshold.",
        "older = age >= threshold.",
        _interaction_variant("strict"),
    ),
    Bug(
        "threshold_ignored",
        "the threshold parameter was ignored (60 was used whatever was passed).",
        "older = age >= threshold, with threshold the function's parameter.",
        _interaction_variant("fixed_60"),
    ),
    Bug(
        "reversed",
        "you returned the younger group's effect minus the older group's; the interaction is older minus younger.",
        "finding_effect(..., older) - finding_effect(..., ~older).",
        _interaction_variant("reversed"),
    ),
    Bug(
        "sum_of_effects",
        "the two effects were added; the interaction is their difference.",
        "effect among the older patients minus effect among the younger ones.",
        _interaction_variant("sum"),
    ),
    Bug(
        "older_only",
        "you returned the effect among the older patients only; subtract the effect among the younger ones.",
        "finding_effect(..., older) - finding_effect(..., ~older).",
        _interaction_variant("older_only"),
    ),
]

_CHECKER_REFERENCES = graders_own(finding_effect, interaction)


# ----------------------------------------------------------------------------- the position-blind prediction


def position_blind_probability(age: torch.Tensor, lesions: torch.Tensor) -> torch.Tensor:
    """The reference: minattn's best probability from age and the lesion count, in age's dtype."""
    cohort = SimpleNamespace(age=age, lesions=lesions)
    return fusion.reference_probabilities(cohort, "age+count").to(age.dtype)


def position_blind_cases(device):
    g = torch.Generator().manual_seed(17)
    fixed_age = torch.tensor([30.0, 59.9, 60.0, 61.0, 75.5, 89.0], dtype=F64)
    fixed_lesions = torch.tensor(
        [[1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 0], [1, 0, 1, 0]], dtype=torch.bool
    )
    cases = [
        Case(
            "6 patients aged 30 to 89 (one exactly 60), 0 to 4 lesions (float64)",
            (fixed_age.to(device, case_dtype(F64, device)), fixed_lesions.to(device)),
        )
    ]
    for label, n, dtype in (
        ("9 patients (float32)", 9, F32),
        ("15 patients, three aged exactly 60 (float64)", 15, F64),
        ("4 patients (float32)", 4, F32),
        ("23 patients (float64)", 23, F64),
    ):
        age = (30.0 + 60.0 * torch.rand(n, generator=g, dtype=F64)).round(decimals=1)
        age[: min(3, n // 4)] = fusion.AGE_THRESHOLD
        lesions = torch.rand(n, len(fusion.REGIONS), generator=g) < 0.5
        cases.append(Case(label, (age.to(device, case_dtype(dtype, device)), lesions.to(device))))
    return cases


def _blind_variant(kind: str):
    def variants(case):
        age, lesions = (t.detach().cpu() for t in case.args)
        a = age.to(F64)
        count = lesions.sum(1).to(F64)
        p_finding = count / lesions.shape[1]
        older = a > fusion.AGE_THRESHOLD if kind == "strict" else a >= fusion.AGE_THRESHOLD
        p_older = {
            "no_flips": p_finding,
            "any_lesion": 0.05 + 0.9 * (count > 0).to(F64),
            "flip_half": 0.95 * p_finding,
            "count": 0.05 + 0.9 * count,
        }.get(kind, 0.05 + 0.9 * p_finding)
        young = p_older if kind == "ignores_age" else torch.full_like(a, 0.3)
        yield torch.where(older, p_older, young).to(age.dtype), {}

    return variants


BLIND_BUGS = [
    Bug(
        "strict_threshold",
        "patients aged exactly 60 got the younger patients' 0.3; the rule applies from 60 on (age >= 60).",
        "older = age >= 60.",
        _blind_variant("strict"),
    ),
    Bug(
        "flips_ignored",
        "the 5 % flipped labels were left out: from 60 on P = 0.05 + 0.9 P(finding), not P(finding).",
        "P = 0.05 + 0.9 * count / 4 for patients from 60 on.",
        _blind_variant("no_flips"),
    ),
    Bug(
        "flips_half_counted",
        "only half of the flips was counted: (1 - 0.05) P(finding) forgets the patients without the finding whose "
        "label flipped to 1.",
        "P = 0.95 P(finding) + 0.05 (1 - P(finding)) = 0.05 + 0.9 P(finding).",
        _blind_variant("flip_half"),
    ),
    Bug(
        "any_lesion",
        "you used 'any lesion' as the finding; the exam points to one of the 4 regions at random, so the chance "
        "that it holds a lesion is count / 4.",
        "P(finding) = lesions.sum(dim=1) / 4.",
        _blind_variant("any_lesion"),
    ),
    Bug(
        "count_not_divided",
        "the lesion count was used as a probability; P(finding) is the count divided by the 4 regions.",
        "P(finding) = lesions.sum(dim=1) / 4.",
        _blind_variant("count"),
    ),
    Bug(
        "age_ignored",
        "the patients under 60 got the same formula as the older ones; under 60 the outcome is a coin with "
        "P = 0.3, whatever the image shows.",
        "torch.where(age >= 60, 0.05 + 0.9 * count / 4, 0.3).",
        _blind_variant("ignores_age"),
    ),
]


# ----------------------------------------------------------------------------- concept questions

CONCEPTS = [
    ChoiceExercise(
        "concept_cross_attention_scaling",
        "how the clinical -> image weights grow with 144 image tokens instead of 36",
        {
            "a": "4 times: one weight per head, clinical query and image token, and only the image tokens grew",
            "b": "16 times: attention weights grow with the square of the number of tokens",
            "c": "2 times: the side of the patch grid doubled",
            "d": "not at all: the number of weights is set by the 4 clinical queries",
        },
        "a",
        why={
            "b": "that is true of self-attention, where the image tokens are both the queries and the keys; here the "
            "queries are the clinical tokens, and their number did not change.",
            "c": "the grid doubled along both axes of the slice, so the number of image tokens more than doubled.",
            "d": "each clinical query has one weight for every image token it reads, so the number of keys counts "
            "too.",
        },
    ),
    ChoiceExercise(
        "concept_cross_attention_shapes",
        "the output and the weights of clinical tokens querying image tokens (two are right)",
        {
            "a": "the output has shape (2, 4, 32): one updated token per clinical query",
            "b": "the output has shape (2, 36, 32): one updated token per image token",
            "c": "for each head and clinical query, the weights sum to 1 over the 36 image tokens",
            "d": "for each head and image token, the weights sum to 1 over the 4 clinical queries",
        },
        frozenset({"a", "c"}),
        why={
            "b": "that is the reverse direction, in which the image tokens ask the questions: an attention output "
            "has one row per query.",
            "d": "the softmax normalises each query's row of scores, not each key's column.",
        },
    ),
    ChoiceExercise(
        "concept_interaction_meaning",
        "what the interaction between the finding and age means",
        {
            "a": "the finding raises the outcome rate by the same amount at every age, and age adds its own amount",
            "b": "the finding's effect on the outcome depends on age: large from 60 on, none below",
            "c": "older patients have more lesions, so age and the finding go together",
            "d": "the finding alone predicts the outcome, so age can be left out",
        },
        "b",
        why={
            "a": "that is an additive model, the opposite of an interaction: the finding's effect would then be the "
            "same in both age groups, and their difference 0.",
            "c": "in this cohort lesions are drawn independently of age; two inputs going together is a correlation, "
            "not an interaction.",
            "d": "under 60 a coin of probability 0.3 decides the outcome without looking at the image, so a model "
            "needs age to know when the finding matters.",
        },
    ),
    ChoiceExercise(
        "concept_why_cross_attention_wins",
        "why cross-attention fusion beats late fusion on this cohort",
        {
            "a": "late fusion cannot represent the task: a mean over the image tokens loses where each lesion is",
            "b": "the clinical queries can select the image tokens of the region the exam points to, so 'look where "
            "the exam points' is one step for cross-attention: an inductive bias that suits this task",
            "c": "cross-attention is the more expressive fusion, so it is the better choice for every radiomics "
            "outcome",
            "d": "the cross-attention model has more parameters and was trained for more steps",
        },
        "b",
        why={
            "a": "its token MLP sees each patch with its position code before the mean, so it could build one "
            "'lesion in region r' feature per region; at this budget it does not find that solution, which is not "
            "the same as being unable to represent it.",
            "c": "for an outcome driven by total tumour burden plus age, late fusion would be as good and simpler: "
            "the gain depends on the task.",
            "d": "the two were sized to about the same number of parameters (17,697 for late fusion, 17,505 for "
            "cross-attention) and trained with the same data order, optimiser and 720 steps.",
        },
    ),
]

EXERCISES = [
    WEIGHTS_PER_PATIENT,
    FunctionExercise(
        "cross_attention",
        cross_attention,
        cross_attention_cases,
        "tensor",
        "cross_attention(queries, context, mha)",
        bugs=tuple(CROSS_BUGS),
        ruled_out=CROSS_RULED_OUT,
        building_blocks="mha.in_proj_weight, mha.in_proj_bias, minattn.split_heads / merge_heads, a softmax and "
        "mha.out_proj",
    ),
    FunctionExercise(
        "finding_effect",
        finding_effect,
        finding_effect_cases,
        "tensor",
        "finding_effect(outcome, finding, group)",
        bugs=tuple(EFFECT_BUGS),
        ruled_out=(_CHECKER_REFERENCES,),
        building_blocks="boolean masks (&, ~) and .mean()",
    ),
    FunctionExercise(
        "interaction",
        interaction,
        interaction_cases,
        "tensor",
        "interaction(outcome, finding, age, threshold=60.0)",
        bugs=tuple(INTERACTION_BUGS),
        ruled_out=(_CHECKER_REFERENCES,),
        building_blocks="your finding_effect and boolean masks",
    ),
    FunctionExercise(
        "position_blind_probability",
        position_blind_probability,
        position_blind_cases,
        "tensor",
        "position_blind_probability(age, lesions)",
        bugs=tuple(BLIND_BUGS),
        ruled_out=(RuledOut("minattn.apps.fusion.reference_probabilities", (fusion.reference_probabilities,)),),
        building_blocks="lesions.sum, torch.where and the generator's rules",
    ),
    *CONCEPTS,
]
