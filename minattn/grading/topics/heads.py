"""Heads (lesson 06): split and merge heads, counting parameters, the entropy of attention weights.

Function exercises: ``split_heads``, ``merge_heads``, ``count_parameters`` and ``entropy``, graded on
hidden inputs. Value exercises: ``mha_params_c96`` (the parameter count by formula) and
``temperature_entropies`` (one row of scores at a sharp and a soft temperature), whose answers are
computed here from the package. Concept questions (multiple choice, :data:`CONCEPT_EXERCISES`):
``concept_head_feature_block``, ``concept_one_to_eight_heads``, ``concept_entropy_of_masked_row`` and
``concept_soften_a_head``.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from ...multihead import MultiHeadAttention, merge_heads, split_heads
from ...patches import PatchEmbed
from ...window_attention import WindowAttention
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
    randn,
)

# ----------------------------------------------------------------------------- split and merge heads


def split_heads_cases(device):
    g = torch.Generator().manual_seed(5)
    return [
        Case("arange (1, 2, 6), 2 heads: small enough by hand (float64)", (arange((1, 2, 6), F64, device), 2)),
        Case("arange (2, 3, 20): B=2, N=3, 4 heads of 5 features (float64)", (arange((2, 3, 20), F64, device), 4)),
        Case("random (2, 5, 12): 3 heads of 4 features (float64)", (randn(g, (2, 5, 12), F64, device), 3)),
        Case("random (3, 7, 8): 4 heads of 2 features (float32)", (randn(g, (3, 7, 8), F32, device), 4)),
        Case("random (4, 3, 10): 5 heads of 2 features (float32)", (randn(g, (4, 3, 10), F32, device), 5)),
        Case("random (2, 5, 7): a single head of 7 features (float64)", (randn(g, (2, 5, 7), F64, device), 1)),
        Case("random (3, 2, 24): 6 heads of 4 features (float32)", (randn(g, (3, 2, 24), F32, device), 6)),
    ]


def merge_heads_cases(device):
    g = torch.Generator().manual_seed(6)
    return [
        Case("arange (1, 2, 3, 2): 2 heads of 3 tokens, by hand (float64)", (arange((1, 2, 3, 2), F64, device),)),
        Case("arange (2, 4, 3, 5): B=2, 4 heads, N=3, d=5 (float64)", (arange((2, 4, 3, 5), F64, device),)),
        Case("random (2, 3, 5, 4) (float64)", (randn(g, (2, 3, 5, 4), F64, device),)),
        Case("random (3, 4, 7, 2) (float32)", (randn(g, (3, 4, 7, 2), F32, device),)),
        Case("random (4, 2, 3, 5) (float32)", (randn(g, (4, 2, 3, 5), F32, device),)),
        Case("random (3, 1, 4, 6): a single head (float64)", (randn(g, (3, 1, 4, 6), F64, device),)),
        Case("random (2, 6, 3, 4) (float32)", (randn(g, (2, 6, 3, 4), F32, device),)),
    ]


def _split_variants(kind):
    def variants(case):
        x, h = case.args
        b, n, c = x.shape
        if kind == "interleaved":
            yield rearrange(x, "b n (d h) -> b h n d", h=h), {}
        elif kind == "no_transpose":
            yield rearrange(x, "b n (h d) -> b n h d", h=h), {}
        else:
            yield x.reshape(b, h, n, c // h), {}

    return variants


def _merge_variants(kind):
    def variants(case):
        (x,) = case.args
        b, h, n, d = x.shape
        if kind == "interleaved":
            yield rearrange(x, "b h n d -> b n (d h)"), {}
        else:
            yield x.reshape(b, n, h * d), {}

    return variants


SPLIT_BUGS = [
    Bug(
        "heads_interleaved",
        "the heads are interleaved: head i took features i, i+h, i+2h, ... instead of the contiguous block "
        "i*d to (i+1)*d (the features were split as (d h) instead of (h d)).",
        "x.view(B, N, h, C // h).transpose(1, 2), or rearrange(x, 'b n (h d) -> b h n d', h=h).",
        _split_variants("interleaved"),
    ),
    Bug(
        "heads_not_transposed",
        "the head axis was not moved in front of the tokens: the output is (B, N, h, d) instead of (B, h, N, d).",
        "after x.view(B, N, h, d), call .transpose(1, 2).",
        _split_variants("no_transpose"),
    ),
    Bug(
        "reshape_without_transpose",
        "x was reshaped straight to (B, h, N, d) without a transpose, which mixes tokens and features.",
        "view as (B, N, h, d) first, then .transpose(1, 2).",
        _split_variants("plain"),
    ),
]

MERGE_BUGS = [
    Bug(
        "heads_interleaved",
        "the heads are interleaved in the output features ((d h) instead of (h d)): head i must fill the contiguous "
        "block i*d to (i+1)*d.",
        "x.transpose(1, 2).reshape(B, N, h * d), or rearrange(x, 'b h n d -> b n (h d)').",
        _merge_variants("interleaved"),
    ),
    Bug(
        "reshape_without_transpose",
        "x was reshaped straight to (B, N, h*d) without moving the heads next to the features first, "
        "which mixes tokens of different heads.",
        "x.transpose(1, 2) first (giving (B, N, h, d)), then .reshape(B, N, h * d).",
        _merge_variants("plain"),
    ),
]


# ----------------------------------------------------------------------------- counting parameters


def count_parameters(module: nn.Module) -> int:
    """The number of numbers ``module`` learns: the elements of all its parameters (submodules included)."""
    return sum(p.numel() for p in module.parameters())


def named(module: nn.Module, text: str) -> nn.Module:
    """``module``, shown in feedback as ``text`` (one line) instead of PyTorch's multi-line repr.

    Its class becomes a subclass of its own class that only changes ``__repr__``: every method, the ones a
    ruled-out call catches included, stays the same code.
    """
    cls = type(module)
    module.__class__ = type(cls.__name__, (cls,), {"__repr__": lambda self: text, "__module__": cls.__module__})
    return module


def seeded_build(seed: int, make):
    """``make()`` with the global RNG seeded and restored, so building hidden modules never moves the learner's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


_COUNT_MODULES: dict = {}


def _count_modules(device) -> list:
    key = str(device)
    if key not in _COUNT_MODULES:
        specs = [
            ("MultiHeadAttention(dim=12, num_heads=3)", lambda: MultiHeadAttention(12, 3)),
            (
                "MultiHeadAttention(dim=20, num_heads=4, qkv_bias=False)",
                lambda: MultiHeadAttention(20, 4, qkv_bias=False),
            ),
            ("nn.Linear(7, 5)", lambda: nn.Linear(7, 5)),
            ("nn.Linear(9, 4, bias=False)", lambda: nn.Linear(9, 4, bias=False)),
            (
                "nn.Sequential(LayerNorm(6), Linear(6, 11), GELU(), Linear(11, 6)): nested submodules",
                lambda: nn.Sequential(nn.LayerNorm(6), nn.Linear(6, 11), nn.GELU(), nn.Linear(11, 6)),
            ),
            (
                "nn.Sequential(Conv3d(2, 4, kernel 3), BatchNorm3d(4)): BatchNorm also holds buffers (running "
                "statistics), which are not parameters",
                lambda: nn.Sequential(nn.Conv3d(2, 4, 3), nn.BatchNorm3d(4)),
            ),
            (
                "minattn.WindowAttention(dim=8, window (2, 3, 1), 2 heads): a bias table and an index buffer",
                lambda: WindowAttention(8, (2, 3, 1), 2),
            ),
            ("minattn.PatchEmbed(patch (2, 4, 2), 3 channels, E=5)", lambda: PatchEmbed((2, 4, 2), 3, 5)),
            ("nn.GELU(): a module with no parameters", lambda: nn.GELU()),
        ]
        _COUNT_MODULES[key] = [
            (label, named(seeded_build(50 + i, make).to(device), label.split(":")[0]))
            for i, (label, make) in enumerate(specs)
        ]
    return _COUNT_MODULES[key]


def count_parameters_cases(device):
    # The same module objects every time (they are built once per device): building them is the slow part,
    # and a module's identity is how a test's fake learner recognises its input.
    return [Case(label, (module,)) for label, module in _count_modules(device)]


def _count_variant(count):
    def variants(case):
        (module,) = case.args
        yield count(module), {}

    return variants


COUNT_BUGS = [
    Bug(
        "counted_tensors",
        "you counted parameter tensors (a weight matrix counts 1), not the numbers they hold.",
        "add up p.numel() for every p in module.parameters(): a (C, C) weight holds C * C numbers.",
        _count_variant(lambda m: len(list(m.parameters()))),
    ),
    Bug(
        "first_axis_only",
        "you counted only the first axis of each parameter (len(p) or p.shape[0]), not all its elements.",
        "p.numel() is the product of all of p's sizes.",
        _count_variant(lambda m: sum(p.shape[0] for p in m.parameters() if p.ndim)),
    ),
    Bug(
        "no_biases",
        "the biases were left out: every bias number is a learned parameter too.",
        "count every tensor in module.parameters(), weights and biases alike.",
        _count_variant(lambda m: sum(p.numel() for n, p in m.named_parameters() if not n.endswith("bias"))),
    ),
    Bug(
        "counted_buffers",
        "buffers were counted as parameters (e.g. BatchNorm's running mean and variance from state_dict()): they are "
        "stored with the module but not learned.",
        "iterate over module.parameters(), not module.state_dict().",
        _count_variant(lambda m: sum(t.numel() for t in m.state_dict().values())),
    ),
    Bug(
        "not_recursive",
        "only the module's own parameters were counted, not those of its submodules (its Linear and LayerNorm "
        "layers).",
        "module.parameters() already walks every submodule; do not pass recurse=False.",
        _count_variant(lambda m: sum(p.numel() for p in m.parameters(recurse=False))),
    ),
]


# ----------------------------------------------------------------------------- entropy


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Entropy ``-sum p ln p`` in nats of the distributions along ``dim``; ``0 ln 0`` counts as 0.

    ``p``: probabilities of any shape (each slice along ``dim`` sums to 1). Returns a tensor of
    ``p``'s shape without the axis ``dim``, in ``p``'s dtype.
    """
    return torch.special.entr(p).sum(dim)


def _distributions(g, shape, dim, dtype, device, zeros=0.3, scale=1.5, one_hot=0):
    """Random probability distributions along ``dim``, some entries exactly 0, the first ``one_hot`` slices one-hot."""
    logits = torch.randn(shape, generator=g, dtype=F64) * scale
    p = torch.softmax(logits, dim=dim)
    drop = torch.rand(shape, generator=g) < zeros
    keep = p.argmax(dim=dim, keepdim=True)
    drop.scatter_(dim, keep, False)  # every distribution keeps at least one entry
    p = p.masked_fill(drop, 0.0)
    p = p / p.sum(dim=dim, keepdim=True)
    if one_hot:
        q = p.movedim(dim, -1).reshape(-1, shape[dim])
        for row in range(one_hot):
            q[row] = 0.0
            q[row, row % shape[dim]] = 1.0
        p = q.reshape(*[s for i, s in enumerate(shape) if i != dim % len(shape)], shape[dim]).movedim(-1, dim)
    return p.contiguous().to(device=device, dtype=case_dtype(dtype, device))


def entropy_cases(device):
    # A guard inside the log, `torch.log(p + eps)`, is off by at most eps per entry. Along `dim` every
    # float64 case has at most 9 entries and, one-hot rows aside, an entropy above 0.1 nats, so guards
    # up to eps = 1e-8 stay within the float64 tolerance (rtol 1e-6, atol 1e-8); the peaked rows, with
    # entropies near 0, are float32, whose tolerance is wider.
    g = torch.Generator().manual_seed(61)
    fixed = torch.tensor(
        [[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1]], dtype=F64
    ).to(device, case_dtype(F64, device))
    return [
        Case("by hand: uniform, one-hot, two halves, 0.7 / 0.1 / 0.1 / 0.1 (float64), dim=-1", (fixed, -1)),
        Case(
            "random (3, 5, 7) with zeros and one-hot rows (float64), dim=-1",
            (_distributions(g, (3, 5, 7), -1, F64, device, one_hot=2), -1),
        ),
        Case(
            "random (6, 4) with zeros (float32), dim=0: not the last axis",
            (_distributions(g, (6, 4), 0, F32, device), 0),
        ),
        Case(
            "random (2, 5, 3, 4) with zeros (float64), dim=1",
            (_distributions(g, (2, 5, 3, 4), 1, F64, device, one_hot=1), 1),
        ),
        Case("random (3, 8, 5) with zeros (float32), dim=-2", (_distributions(g, (3, 8, 5), -2, F32, device), -2)),
        Case(
            "peaked distributions (4, 9), some weights below 1e-5 (float32), dim=-1",
            (_distributions(g, (4, 9), -1, F32, device, zeros=0.2, scale=6.0), -1),
        ),
        Case(
            "random (2, 3, 6) without zeros (float32), dim=2",
            (_distributions(g, (2, 3, 6), 2, F32, device, zeros=0.0), 2),
        ),
    ]


def _entropy_log_base(case):
    p, dim = case.args
    h = entropy(p, dim)
    yield h / math.log(2), {"base": "2", "fn": "torch.log2", "unit": "bits"}
    yield h / math.log(10), {"base": "10", "fn": "torch.log10", "unit": "decimal digits (bans)"}


def _entropy_nan(case):
    p, dim = case.args
    yield -(p * torch.log(p)).sum(dim), {}


_GUARDS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)


def _entropy_large_guard(case):
    p, dim = case.args
    for eps in _GUARDS:
        yield -(p * torch.log(p + eps)).sum(dim), {"eps": f"{eps:g}", "how": f"torch.log(p + {eps:g})"}
        yield -(p * torch.log(p.clamp_min(eps))).sum(dim), {"eps": f"{eps:g}", "how": f"p.clamp_min({eps:g})"}


def _entropy_wrong_axis(case):
    p, dim = case.args
    for axis in range(p.ndim):
        if axis != dim % p.ndim:
            yield entropy(p, axis), {"axis": axis, "dim": dim}


ENTROPY_BUGS = [
    Bug(
        "log_base",
        "your entropy is in base {base} ({unit}): it looks like {fn} was used. The exercise asks for nats, the "
        "natural logarithm.",
        "use torch.log (natural log), or torch.special.xlogy(p, p), which computes p * ln p.",
        _entropy_log_base,
    ),
    Bug(
        "missing_minus",
        "your entropies have the wrong sign: sum p ln p is <= 0 because every ln p <= 0; the entropy is its negative.",
        "return -(sum of p * ln p) along dim.",
        lambda case: iter([(-entropy(*case.args), {})]),
    ),
    Bug(
        "zero_gives_nan",
        "entries equal to 0 gave NaN: 0 * ln 0 is 0 * (-inf) = NaN in floating point, but its limit, which the "
        "entropy uses, is 0.",
        "torch.special.xlogy(p, p) computes p * ln p with 0 for p = 0; or torch.where(p > 0, p * torch.log(p), 0.0).",
        _entropy_nan,
    ),
    Bug(
        "log_guard_too_large",
        "the guard inside the log, {how}, is large enough to change the entropies by more than the check's "
        "tolerance (each entry moves by up to about {eps} nats).",
        "use torch.special.xlogy(p, p), torch.where(p > 0, ...), or a guard of 1e-9 or smaller.",
        _entropy_large_guard,
    ),
    Bug(
        "wrong_axis",
        "the sum ran over axis {axis} instead of dim={dim}.",
        "pass dim to the sum: (...).sum(dim=dim), never a fixed axis such as -1.",
        _entropy_wrong_axis,
    ),
    Bug(
        "kept_dim",
        "the summed axis was kept (keepdim=True): one entropy per distribution means the axis dim disappears.",
        "sum with keepdim=False (the default).",
        lambda case: iter([(entropy(*case.args).unsqueeze(case.args[1] % case.args[0].ndim), {})]),
    ),
    Bug(
        "mean_not_sum",
        "you averaged p ln p over the axis instead of summing it.",
        "H(p) = -sum_j p_j ln p_j: .sum(dim), not .mean(dim).",
        lambda case: iter([(entropy(*case.args) / case.args[0].shape[case.args[1]], {})]),
    ),
    Bug(
        "not_summed",
        "you returned -p ln p for every entry; the entropy adds them up along dim, one number per distribution.",
        "finish with .sum(dim).",
        lambda case: iter([(-torch.special.xlogy(case.args[0], case.args[0]), {})]),
    ),
]


# ----------------------------------------------------------------------------- values

# One query's scores against 8 keys, as the exercise notebook defines `scores_row`.
SCORES_ROW = (3.0, 2.5, 0.5, 0.0, -0.5, -1.0, 1.0, 2.0)
SHARP, SOFT = 0.25, 4.0


def _row_entropy(temperature: float) -> float:
    scores = torch.tensor(SCORES_ROW, dtype=F64)
    return float(entropy(torch.softmax(scores / temperature, dim=-1)))


def _temperature_entropies() -> tuple[float, float]:
    return _row_entropy(SHARP), _row_entropy(SOFT)


def _mha_params(dim: int, heads: int, **kwargs) -> int:
    return count_parameters(seeded_build(0, lambda: MultiHeadAttention(dim, heads, **kwargs)))


def _linear_params(c: int) -> int:
    return count_parameters(seeded_build(0, lambda: nn.Linear(c, c)))


# ----------------------------------------------------------------------------- concept questions

CONCEPT_EXERCISES = [
    # After exercise 6.2.
    ChoiceExercise(
        "concept_head_feature_block",
        "which of the C = 20 query features of a token head 2 of 4 works on (heads numbered from 0)",
        {
            "a": "features 10 to 14: the third block of C / h = 5 consecutive features",
            "b": "features 2, 6, 10, 14 and 18: every fourth feature, starting at the head's own number",
            "c": "all 20 features: each head projects the whole token with its own C x C matrix",
            "d": "features 8 to 11: the third block of h = 4 consecutive features",
        },
        "a",
        why={
            "b": "that interleaves the heads, as if the features were laid out (d, h) with the head varying fastest; "
            "split_heads views the last axis as (h, C / h), the head varying slowest.",
            "c": "the heads share the layer's projections: the C projected features are divided among the heads, "
            "which is why the parameter count does not depend on h.",
            "d": "a block holds the head's width, C / h features, not h of them: work out how wide each of 4 heads of "
            "a 20-wide model is.",
        },
    ),
    # After exercise 6.5.
    ChoiceExercise(
        "concept_one_to_eight_heads",
        "what changes when a layer with C = 96 goes from 1 head to 8 on the same tokens (two are right)",
        {
            "a": "the number of learned parameters: every head needs its own query, key and value projections",
            "b": "the number of N x N score matrices: one per head, so eight instead of one",
            "c": "the factor that multiplies the dot products: 1 / sqrt(12) for each head instead of 1 / sqrt(96)",
            "d": "the width of each token's output: the eight heads' outputs are laid side by side, 8 x 96 = 768 "
            "features",
        },
        frozenset({"b", "c"}),
        why={
            "a": "the heads bring no projections of their own: they cut the same four C x C projections (and their "
            "biases) into blocks, which is what exercise 6.4 counted.",
            "d": "each head works on C / h features, not on C, so the heads' outputs side by side are as wide as the "
            "model; the output projection is C x C whatever h is.",
        },
    ),
    # After exercise 6.6.
    ChoiceExercise(
        "concept_entropy_of_masked_row",
        "the entropy of one query's weights over 64 keys when a mask allows 8 of them, all 8 with equal scores",
        {
            "a": "ln 8, about 2.08 nats: the weights are uniform over the 8 allowed keys, and the blocked keys add "
            "nothing",
            "b": "ln 64, about 4.16 nats: the entropy of a row is set by how many keys it has",
            "c": "8 ln 8, about 16.6 nats: each of the 8 allowed keys adds ln 8",
            "d": "0 nats: a mask makes the attention sharp",
        },
        "a",
        why={
            "b": "ln 64 is the entropy of weights spread equally over all 64 keys; a blocked key gets weight 0, and a "
            "weight of 0 adds 0 ln 0 = 0 to the sum.",
            "c": "each key adds -p ln p, its weight times the logarithm, not the logarithm alone.",
            "d": "an entropy of 0 means that all the weight sits on one key; here the mask leaves several keys "
            "with equal weights.",
        },
    ),
    # After the two-head layer that follows exercise 6.7.
    ChoiceExercise(
        "concept_soften_a_head",
        "which changes also make head 1 of the 2-head layer (C = 16) soft, as multiplying its query weights by 1/4 "
        "does (two are right)",
        {
            "a": "multiplying head 1's key weights, rows 24:32 of in_proj_weight, by 1/4 instead",
            "b": "multiplying head 1's value weights, rows 40:48 of in_proj_weight, by 1/4 instead",
            "c": "multiplying head 1's query weights and its key weights each by 1/2",
            "d": "multiplying columns 8:16 of the output projection's weight, which read head 1's output, by 1/4",
        },
        frozenset({"a", "c"}),
        why={
            "b": "the values do not enter the scores: scaling them scales what head 1 returns, while its weights, "
            "which only the queries and keys set, stay as they were.",
            "d": "the output projection acts after the softmax: it rescales head 1's share of the output, not how "
            "head 1 spreads its weights over the keys.",
        },
    ),
]


# ----------------------------------------------------------------------------- the exercises

_BLOCKS = "reshape/view and transpose, or einops.rearrange"

EXERCISES = [
    FunctionExercise(
        "split_heads",
        split_heads,
        split_heads_cases,
        "tensor",
        "split_heads(x, num_heads)",
        bugs=tuple(SPLIT_BUGS),
        ruled_out=(RuledOut("minattn.split_heads", (split_heads, MultiHeadAttention)),),
        building_blocks=_BLOCKS,
    ),
    FunctionExercise(
        "merge_heads",
        merge_heads,
        merge_heads_cases,
        "tensor",
        "merge_heads(x)",
        bugs=tuple(MERGE_BUGS),
        ruled_out=(RuledOut("minattn.merge_heads", (merge_heads, MultiHeadAttention)),),
        building_blocks=_BLOCKS,
    ),
    FunctionExercise(
        "count_parameters",
        count_parameters,
        count_parameters_cases,
        "number",
        "count_parameters(module)",
        bugs=tuple(COUNT_BUGS),
        ruled_out=(
            RuledOut(
                "minattn's own parameter counters",
                (count_parameters, "minattn.apps.fusion:count_parameters"),
            ),
        ),
        building_blocks="module.parameters() and p.numel()",
    ),
    ValueExercise(
        "mha_params_c96",
        "parameters of a multi-head attention layer with C = 96",
        lambda: _mha_params(96, 3),
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "no_biases",
                lambda: _mha_params(96, 3, qkv_bias=False) - 96,
                "that counts the four C x C weight matrices only; each projection also has a bias of C numbers.",
            ),
            WrongAnswer(
                "no_output_projection",
                lambda: _mha_params(96, 3) - _linear_params(96),
                "that counts the query, key and value projections only; the output projection is a fourth "
                "C x C weight with its bias.",
            ),
            WrongAnswer(
                "one_projection",
                lambda: _linear_params(96),
                "that is one C x C projection with its bias; the layer has four (query, key, value, output).",
            ),
            WrongAnswer(
                "c128",
                lambda: _mha_params(128, 1),
                "that is the count for C = 128; this question asks for C = 96.",
            ),
        ),
    ),
    FunctionExercise(
        "entropy",
        entropy,
        entropy_cases,
        "tensor",
        "entropy(p, dim=-1)",
        bugs=tuple(ENTROPY_BUGS),
        ruled_out=(
            RuledOut(
                "minattn's own entropy (apps.hopfield.effective_number)",
                (entropy, "minattn.apps.hopfield:effective_number"),
            ),
            RuledOut("torch.distributions.Categorical.entropy", (torch.distributions.Categorical.entropy,)),
            RuledOut("scipy.stats.entropy", ("scipy.stats:entropy",)),
        ),
        building_blocks="torch.log (or torch.special.xlogy), torch.where and a sum along dim",
    ),
    ValueExercise(
        "temperature_entropies",
        "(H_sharp, H_soft) in nats for scores_row at T = 0.25 and T = 4",
        _temperature_entropies,
        rel_tol=1e-4,
        abs_tol=1e-6,
        wrong=(
            WrongAnswer(
                "swapped",
                lambda: _temperature_entropies()[::-1],
                "the two are swapped: the sharp head has the low temperature, T = 0.25, and its scores are divided "
                "by T (made 4 times larger), which gives the lower entropy.",
            ),
            WrongAnswer(
                "log_base",
                lambda: tuple(h / math.log(2) for h in _temperature_entropies()),
                "these are in bits (log base 2); the exercise asks for nats, the natural logarithm.",
            ),
            WrongAnswer(
                "missing_minus",
                lambda: tuple(-h for h in _temperature_entropies()),
                "the signs are wrong: an entropy is -sum p ln p, never negative.",
            ),
            WrongAnswer(
                "no_temperature",
                lambda: (_row_entropy(1.0), _row_entropy(1.0)),
                "both are the entropy at T = 1: divide the scores by the temperature before the softmax.",
            ),
        ),
    ),
    *CONCEPT_EXERCISES,
]
