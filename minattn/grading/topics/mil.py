"""Attention-based multiple-instance learning (lesson 10): an AUC by hand, the AUC by ranks, gated attention
pooling and the heaviest-tile hit rate, with their hidden cases, bugs and ruled-out calls, and the lesson's concept
questions.

The AUC and the hit rate are numbers computed from float tensors; the grader compares numbers with a
relative tolerance of 1e-9. So every hidden case has a number of (positive, negative) pairs, or of positive
bags, that is a power of two: the answer is then exact in float32 too, and a learner who computes in float32
is not told off for rounding.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...apps import mil
from ...metrics import roc_auc
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

# ----------------------------------------------------------------------------- the AUC of six tiles, by hand

SIX_WEIGHTS = (0.05, 0.30, 0.05, 0.45, 0.05, 0.10)
SIX_NODULES = (False, True, False, False, True, True)


def _six_auc() -> float:
    return roc_auc(torch.tensor(SIX_WEIGHTS, dtype=F64), torch.tensor(SIX_NODULES))


def _six_pairs(tie: float) -> float:
    pos = [w for w, y in zip(SIX_WEIGHTS, SIX_NODULES) if y]
    neg = [w for w, y in zip(SIX_WEIGHTS, SIX_NODULES) if not y]
    wins = sum(1.0 if p > n else tie if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


AUC_BY_HAND = ValueExercise(
    "auc_six_tiles",
    "AUC of the six tiles' attention weights against their nodule labels",
    _six_auc,
    unit=None,
    rel_tol=1e-3,
    wrong=(
        WrongAnswer(
            "ties_as_zero",
            lambda: _six_pairs(0.0),
            "either the ties were counted as 0 (a tie counts one half), or the comparison was turned around "
            "(count the pairs in which the nodule tile has the larger weight).",
        ),
        WrongAnswer(
            "ties_as_one",
            lambda: _six_pairs(1.0),
            "the tied pairs (0.05 against 0.05) were counted as wins; a tie counts one half.",
        ),
        WrongAnswer(
            "all_pairs",
            lambda: _six_pairs(0.5) * 9 / 15,
            "you divided by all 15 pairs of the six tiles; only the 3 x 3 = 9 (nodule, ordinary) pairs count.",
        ),
        WrongAnswer(
            "per_tile",
            lambda: _six_pairs(0.5) * 9 / 6,
            "you divided by the 6 tiles; divide by the number of (nodule, ordinary) pairs, 3 x 3 = 9.",
        ),
        WrongAnswer(
            "chance",
            lambda: 0.5,
            "0.5 is what weights that know nothing give on average; count the pairs of this bag.",
        ),
    ),
)


# ----------------------------------------------------------------------------- AUC by ranks


def auc_by_ranks(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The reference: minattn's rank-based AUC (ties share their average rank)."""
    return roc_auc(scores, labels)


def _labels(g, n_pos: int, n_neg: int, device) -> torch.Tensor:
    labels = torch.zeros(n_pos + n_neg, dtype=torch.bool)
    labels[torch.randperm(n_pos + n_neg, generator=g)[:n_pos]] = True
    return labels.to(device)


def _on(x: torch.Tensor, dtype, device) -> torch.Tensor:
    return x.to(device=device, dtype=case_dtype(dtype, device))


def auc_cases(device):
    g = torch.Generator().manual_seed(10)
    fixed_scores = torch.tensor([0.2, 0.9, 0.4, 0.7, 0.1, 0.5, 0.3, 0.8, 0.6, 0.05], dtype=F64)
    fixed_labels = torch.zeros(10, dtype=torch.bool)
    fixed_labels[[3, 5]] = True
    return [
        Case("10 scores, 2 positives (float64)", (_on(fixed_scores, F64, device), fixed_labels.to(device))),
        Case("12 random scores, 4 positives (float64)", (randn(g, (12,), F64, device), _labels(g, 4, 8, device))),
        Case(
            "20 random scores of size ~5, 16 positives (float32)",
            (randn(g, (20,), F32, device, 5.0), _labels(g, 16, 4, device)),
        ),
        Case("33 random scores, 1 positive (float64)", (randn(g, (33,), F64, device), _labels(g, 1, 32, device))),
        Case(
            "24 random scores, all negative numbers, 8 positives (float32)",
            (_on(-torch.rand(24, generator=g, dtype=F64) * 100 - 1, F32, device), _labels(g, 8, 16, device)),
        ),
    ]


def auc_ties_cases(device):
    g = torch.Generator().manual_seed(11)
    integers = torch.randint(0, 5, (24,), generator=g).to(F64)
    rounded = (torch.rand(12, generator=g, dtype=F64) * 3).round() / 10
    crossed = torch.tensor([1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 1.0, 4.0, 2.0, 3.0] * 2, dtype=F64)
    crossed_labels = torch.tensor([1, 1, 0, 1, 1, 0, 1, 1, 1, 1] * 2, dtype=torch.bool)
    return [
        Case(
            "12 scores with only 4 distinct values, 4 positives (float64)",
            (_on(rounded, F64, device), _labels(g, 4, 8, device)),
        ),
        Case("24 integer scores 0..4, 8 positives (float32)", (_on(integers, F32, device), _labels(g, 8, 16, device))),
        Case(
            "10 equal scores, 2 positives: AUC 0.5 (float64)",
            (_on(torch.full((10,), 0.3, dtype=F64), F64, device), _labels(g, 2, 8, device)),
        ),
        Case(
            "20 scores, ties across the classes, 16 positives (float64)",
            (_on(crossed, F64, device), crossed_labels.to(device)),
        ),
        Case(
            "18 scores without ties, 2 positives (float32)", (randn(g, (18,), F32, device), _labels(g, 2, 16, device))
        ),
    ]


def _average_ranks(scores: torch.Tensor) -> torch.Tensor:
    s = scores.detach().cpu().to(F64)
    below = (s[None, :] < s[:, None]).sum(1).to(F64)
    equal = (s[None, :] == s[:, None]).sum(1).to(F64)
    return below + (equal + 1) / 2


def _counts(labels):
    n_pos = int(labels.sum())
    return n_pos, labels.numel() - n_pos


def _rank_variant(formula):
    """A wrong AUC: ``formula(R_pos, n_pos, n_neg)`` from the right (average) ranks."""

    def variants(case):
        scores, labels = case.args
        labels = labels.cpu()
        n_pos, n_neg = _counts(labels)
        yield float(formula(float(_average_ranks(scores)[labels].sum()), n_pos, n_neg)), {}

    return variants


def _pairwise(tie: float):
    def variants(case):
        scores, labels = case.args
        s, y = scores.detach().cpu().to(F64), labels.cpu()
        diff = s[y][:, None] - s[~y][None, :]
        yield float(((diff > 0).to(F64) + tie * (diff == 0).to(F64)).mean()), {}

    return variants


def _ordinal(case):
    scores, labels = case.args
    s, y = scores.detach().cpu().to(F64), labels.cpu()
    n_pos, n_neg = _counts(y)
    n = s.numel()
    for order in (torch.argsort(s, stable=True), n - 1 - torch.argsort(s.flip(0), stable=True)):
        ranks = torch.empty(n, dtype=F64)
        ranks[order] = torch.arange(1, n + 1, dtype=F64)
        yield float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)), {}


RANK_BUGS = [
    Bug(
        "ranks_from_zero",
        "the ranks start at 0; the formula needs ranks from 1 (lowest) to n.",
        "add 1 to 0-based positions, or use torch.arange(1, n + 1) for the ranks.",
        _rank_variant(lambda r, p, q: (r - p - p * (p + 1) / 2) / (p * q)),
    ),
    Bug(
        "reversed",
        "your AUC is 1 minus the right one: the ranks go from the highest score down, or the negatives' ranks "
        "were summed.",
        "rank from the lowest score (rank 1) up, and sum the ranks of the positives (labels True).",
        _rank_variant(lambda r, p, q: 1 - (r - p * (p + 1) / 2) / (p * q)),
    ),
    Bug(
        "no_subtraction",
        "n+(n+ + 1)/2 was not subtracted from the positives' rank sum (that term is the rank sum the positives "
        "would have if they were all at the bottom).",
        "AUC = (R+ - n+(n+ + 1)/2) / (n+ n-).",
        _rank_variant(lambda r, p, q: r / (p * q)),
    ),
    Bug(
        "wrong_subtraction",
        "n+(n+ - 1)/2 was subtracted instead of n+(n+ + 1)/2.",
        "AUC = (R+ - n+(n+ + 1)/2) / (n+ n-).",
        _rank_variant(lambda r, p, q: (r - p * (p - 1) / 2) / (p * q)),
    ),
    Bug(
        "divided_by_all_pairs",
        "the count was divided by all pairs of scores, n(n - 1)/2, instead of the n+ n- (positive, negative) pairs.",
        "AUC = (R+ - n+(n+ + 1)/2) / (n+ n-).",
        _rank_variant(lambda r, p, q: (r - p * (p + 1) / 2) / ((p + q) * (p + q - 1) / 2)),
    ),
]

TIE_BUGS = [
    Bug(
        "ties_counted_as_zero",
        "a tie between a positive and a negative counts 0 in your AUC; it must count one half.",
        "give tied scores the average of their ranks (a group of equal scores at positions b+1..b+c all get "
        "b + (c + 1)/2).",
        _pairwise(0.0),
    ),
    Bug(
        "ties_counted_as_one",
        "a tie between a positive and a negative counts 1 in your AUC; it must count one half.",
        "give tied scores the average of their ranks (a group of equal scores at positions b+1..b+c all get "
        "b + (c + 1)/2).",
        _pairwise(1.0),
    ),
    Bug(
        "ties_not_averaged",
        "tied scores got different ranks (the order argsort happened to give them); tied scores must share "
        "their average rank.",
        "group equal scores, e.g. torch.unique(scores, return_inverse=True, return_counts=True), and give every "
        "score of a group the mean of the group's ranks.",
        _ordinal,
    ),
]

AUC_RULED_OUT = (
    RuledOut("minattn.metrics.roc_auc", (roc_auc, mil.within_bag_auc, mil.evaluate)),
    RuledOut(
        "sklearn.metrics.roc_auc_score", ("sklearn.metrics:roc_auc_score", "sklearn.metrics._ranking:roc_auc_score")
    ),
    RuledOut(
        "torchmetrics' AUROC",
        (
            "torchmetrics.functional:auroc",
            "torchmetrics.functional.classification:binary_auroc",
            "torchmetrics:AUROC",
            "torchmetrics.classification:BinaryAUROC",
        ),
    ),
    RuledOut("scipy.stats.rankdata / mannwhitneyu", ("scipy.stats:rankdata", "scipy.stats:mannwhitneyu")),
)
_AUC_BLOCKS = "torch.argsort, torch.unique (return_inverse, return_counts), torch.cumsum and sums"


# ----------------------------------------------------------------------------- gated attention pooling


def gated_attention_pool(h: torch.Tensor, V: nn.Linear, U: nn.Linear, w: nn.Linear):
    """The reference: minattn's gated AttentionPool, holding the learner's layers."""
    with torch.random.fork_rng(devices=[]):  # building the pool must not move the notebook's random state
        pool = mil.AttentionPool(h.shape[-1], V.out_features, gated=True)
    pool.V, pool.U, pool.w = V, U, w
    with torch.no_grad():
        return pool(h)


class CaseLinear(SameWeights, nn.Linear):
    """An ``nn.Linear`` of a hidden case (shown to the learner as a Linear)."""

    def _get_name(self):
        return "Linear"


def _linear(g, in_features, out_features, dtype, device, bias=True, scale=1.0) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        layer = CaseLinear(in_features, out_features, bias=bias, dtype=F64)
    with torch.no_grad():
        layer.weight.copy_(
            torch.randn(out_features, in_features, generator=g, dtype=F64) * scale / math.sqrt(in_features)
        )
        if bias:
            layer.bias.copy_(torch.randn(out_features, generator=g, dtype=F64) * 0.5)
    layer.requires_grad_(False)
    return layer.to(device=device, dtype=case_dtype(dtype, device))


def gated_pool_cases(device):
    g = torch.Generator().manual_seed(12)

    def case(label, b, k, m, l, dtype, scale=1.0):
        h = randn(g, (b, k, m), dtype, device)
        V = _linear(g, m, l, dtype, device, scale=scale)
        U = _linear(g, m, l, dtype, device, scale=scale)
        w = _linear(g, l, 1, dtype, device, bias=False, scale=3.0 * scale)
        return Case(label, (h, V, U, w))

    return [
        case("1 bag of 3 tiles, M=2 features, L=2 (float64)", 1, 3, 2, 2, F64),
        case("2 bags of 5 tiles, M=4, L=3 (float64)", 2, 5, 4, 3, F64),
        case("3 bags of 7 tiles, M=6, L=5 (float32)", 3, 7, 6, 5, F32),
        case("4 bags of 2 tiles, M=3, L=8 (float32)", 4, 2, 3, 8, F32),
        case("2 bags of 9 tiles, M=5, L=4, sharp weights (float64)", 2, 9, 5, 4, F64, scale=3.0),
        case("3 bags of 1 tile each, M=4, L=2 (float32)", 3, 1, 4, 2, F32),
    ]


def _pool_variant(kind: str):
    def variants(case):
        h, V, U, w = case.args
        with torch.no_grad():
            tanh, gate = torch.tanh(V(h)), torch.sigmoid(U(h))
            hidden = {
                "no_gate": tanh,
                "tanh_gate": tanh * torch.tanh(U(h)),
                "swapped": torch.sigmoid(V(h)) * torch.tanh(U(h)),
                "added": tanh + gate,
            }.get(kind, tanh * gate)
            scores = w(hidden).squeeze(-1)
            if kind == "softmax_over_bags":
                a = torch.softmax(scores, dim=0)
            elif kind == "no_softmax":
                a = scores
            else:
                a = torch.softmax(scores, dim=1)
            z = h.mean(dim=1) if kind == "mean_z" else torch.einsum("bk,bkm->bm", a, h)
        yield (z, a), {}

    return variants


GATED_BUGS = [
    Bug(
        "no_gate",
        "the sigmoid gate is missing: your weights are those of plain attention pooling, softmax(w^T tanh(V h)).",
        "multiply elementwise by the gate before w: w(torch.tanh(V(h)) * torch.sigmoid(U(h))).",
        _pool_variant("no_gate"),
    ),
    Bug(
        "gate_not_sigmoid",
        "the gate U h went through tanh instead of a sigmoid (a gate lies between 0 and 1).",
        "w(torch.tanh(V(h)) * torch.sigmoid(U(h))).",
        _pool_variant("tanh_gate"),
    ),
    Bug(
        "tanh_and_sigmoid_swapped",
        "tanh and sigmoid are swapped: tanh goes with V, the sigmoid gate with U.",
        "w(torch.tanh(V(h)) * torch.sigmoid(U(h))).",
        _pool_variant("swapped"),
    ),
    Bug(
        "gate_added",
        "the gate was added to tanh(V h); it multiplies it, elementwise.",
        "w(torch.tanh(V(h)) * torch.sigmoid(U(h))).",
        _pool_variant("added"),
    ),
    Bug(
        "softmax_over_bags",
        "the softmax ran over the bags (dim=0), not over the tiles of each bag: a bag's weights must sum to 1.",
        "scores have shape (B, K): torch.softmax(scores, dim=1).",
        _pool_variant("softmax_over_bags"),
    ),
    Bug(
        "no_softmax",
        "the scores were used as weights without a softmax over the bag's tiles, so they do not sum to 1.",
        "a = torch.softmax(scores, dim=1), then z = sum_k a_k h_k.",
        _pool_variant("no_softmax"),
    ),
    Bug(
        "z_not_weighted",
        "z is the plain mean of the tiles; it must be the weighted sum with your weights a.",
        "z = (a[..., None] * h).sum(dim=1), or torch.einsum('bk,bkm->bm', a, h).",
        _pool_variant("mean_z"),
    ),
]

GATED_RULED_OUT = (
    RuledOut(
        "minattn.apps.mil.AttentionPool",
        (mil.AttentionPool, mil.AttentionPool.scores, mil.MILModel, mil.MILModel.attention_scores),
    ),
    RuledOut("MONAI's MILModel", ("monai.networks.nets:MILModel",)),
)


# ----------------------------------------------------------------------------- the heaviest tile


def top_tile_hit_rate(weights: torch.Tensor, tile_labels: torch.Tensor) -> float:
    """Among the bags holding a nodule, the fraction whose heaviest tile (first on a tie) holds one."""
    heaviest = weights.argmax(dim=1)  # ties go to the first tile, as in mil.evaluate
    hits = tile_labels[torch.arange(weights.shape[0], device=weights.device), heaviest]
    positive = tile_labels.any(dim=1)
    return float(hits[positive].to(F64).mean())


def _bags(g, n_bags, n_tiles, n_positive, device, max_nodules=3):
    labels = torch.zeros(n_bags, n_tiles, dtype=torch.bool)
    for b in torch.randperm(n_bags, generator=g)[:n_positive].tolist():
        count = int(torch.randint(1, min(max_nodules, n_tiles) + 1, (1,), generator=g))
        labels[b, torch.randperm(n_tiles, generator=g)[:count]] = True
    return labels.to(device)


def _weights(g, labels, dtype, device, boost=1.5):
    """Softmax weights that favour the nodule tiles, but not always enough for the heaviest to be one."""
    logits = torch.randn(labels.shape, generator=g, dtype=F64) + boost * labels.cpu().to(F64)
    return torch.softmax(logits, dim=1).to(device=device, dtype=case_dtype(dtype, device))


def hit_rate_cases(device):
    g = torch.Generator().manual_seed(13)
    fixed_w = torch.tensor(
        [
            [0.1, 0.6, 0.2, 0.1],
            [0.5, 0.2, 0.2, 0.1],
            [0.25, 0.25, 0.4, 0.1],
            [0.1, 0.1, 0.1, 0.7],
            [0.3, 0.3, 0.2, 0.2],
        ],
        dtype=F64,
    )
    fixed_l = torch.tensor([[0, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    cases = [Case("5 bags of 4 tiles, 4 with a nodule (float64)", (_on(fixed_w, F64, device), fixed_l.to(device)))]
    for label, b, k, p, dtype in (
        ("11 bags of 7 tiles, 8 with a nodule (float64)", 11, 7, 8, F64),
        ("6 bags of 16 tiles, 4 with a nodule (float32)", 6, 16, 4, F32),
        ("20 bags of 3 tiles, 16 with a nodule (float64)", 20, 3, 16, F64),
    ):
        labels = _bags(g, b, k, p, device)
        cases.append(Case(label, (_weights(g, labels, dtype, device), labels)))
    labels = _bags(g, 9, 5, 8, device)
    cases.append(
        Case(
            "9 bags of 5 tiles, equal weights (mean pooling: ties go to the first tile), 8 with a nodule (float32)",
            (_on(torch.full((9, 5), 0.2, dtype=F64), F32, device), labels),
        )
    )
    labels = _bags(g, 10, 6, 8, device)
    tied = _weights(g, labels, F64, device).cpu()
    top2 = tied.topk(2, dim=1).indices
    for b in range(0, 10, 2):  # the two heaviest tiles of every other bag share the same weight
        tied[b, top2[b]] = tied[b, top2[b]].mean()
    cases.append(
        Case(
            "10 bags of 6 tiles, two heaviest tiles tied in 5 bags, 8 with a nodule (float64)",
            (_on(tied, F64, device), labels),
        )
    )
    return cases


def _hit_variant(kind: str):
    def variants(case):
        weights, labels = case.args
        w, y = weights.detach().cpu().to(F64), labels.cpu()
        n = w.shape[0]
        if kind == "argmin":
            pick = w.argmin(dim=1)
        elif kind == "ties_last":
            pick = (w.shape[1] - 1) - w.flip(1).argmax(dim=1)
        else:
            pick = w.argmax(dim=1)
        hits = y[torch.arange(n), pick]
        positive = y.any(dim=1)
        if kind == "all_bags":
            yield float(hits.to(F64).mean()), {}
        elif kind == "count":
            yield int(hits[positive].sum()), {}
        elif kind == "per_nodule":
            yield float(hits.sum() / y.sum()), {}
        else:
            yield float(hits[positive].to(F64).mean()), {}

    return variants


HIT_BUGS = [
    Bug(
        "all_bags",
        "you averaged over all bags; the question is about the bags that hold a nodule (a negative bag's heaviest "
        "tile can never hit one).",
        "keep the bags with a nodule, positive = tile_labels.any(dim=1), and average the hits over them.",
        _hit_variant("all_bags"),
    ),
    Bug(
        "lightest_tile",
        "you took each bag's lightest tile (argmin); the heaviest is the largest weight, argmax.",
        "heaviest = weights.argmax(dim=1).",
        _hit_variant("argmin"),
    ),
    Bug(
        "hit_count",
        "you returned the number of hits; the question asks for a fraction of the bags with a nodule.",
        "divide by the number of bags with a nodule (or take the mean of the hits over them).",
        _hit_variant("count"),
    ),
    Bug(
        "divided_by_nodules",
        "the hits were divided by the number of nodule tiles; divide by the number of bags with a nodule (a bag "
        "can hold several).",
        "positive = tile_labels.any(dim=1); rate = hits[positive].float().mean().",
        _hit_variant("per_nodule"),
    ),
    Bug(
        "ties_to_last_tile",
        "where several tiles share the largest weight you took the last one; the exercise takes the first, as "
        "argmax does.",
        "weights.argmax(dim=1) returns the first of tied maxima.",
        _hit_variant("ties_last"),
    ),
]

HIT_RULED_OUT = (
    RuledOut("minattn.apps.mil.evaluate", (mil.evaluate,)),
    graders_own(top_tile_hit_rate),
)


# ----------------------------------------------------------------------------- concept questions

CONCEPTS = [
    ChoiceExercise(
        "concept_auc_rescaled_scores",
        "the AUC after multiplying the weights by 10 and taking their logarithm",
        {
            "a": "it stays the same",
            "b": "it grows: the gaps between nodule and ordinary tiles become larger",
            "c": "it becomes 1 minus the old AUC, because the logarithms of weights below 1 are negative",
            "d": "it cannot be computed any more: an AUC needs scores between 0 and 1",
        },
        "a",
        why={
            "b": "the AUC counts the (nodule, ordinary) pairs in which the nodule tile scores higher; how far apart "
            "two scores are does not enter it.",
            "c": "a negative score is still a score, and the sign plays no part: a logarithm keeps a larger weight "
            "larger, so no pair changes sides.",
            "d": "any real numbers can serve as scores (minattn's roc_auc takes any reals); the AUC is a probability, "
            "the scores need not be.",
        },
    ),
    ChoiceExercise(
        "concept_auc_constant_scores",
        "the tile AUC of mean pooling's weights, 1/K for every tile",
        {
            "a": "0: no nodule tile scores higher than any ordinary tile",
            "b": "0.5: every (nodule, ordinary) pair is a tie, and a tie counts one half",
            "c": "1: no ordinary tile scores higher than any nodule tile",
            "d": "it depends on how many nodule tiles the bags hold",
        },
        "b",
        why={
            "a": "a tie is not a loss for the nodule tile: tied scores share their average rank.",
            "c": "a tie is not a win for the nodule tile either: tied scores share their average rank.",
            "d": "the count is divided by the number of (nodule, ordinary) pairs, n+ n-, so the number of nodule "
            "tiles cancels when every pair is scored alike.",
        },
    ),
    ChoiceExercise(
        "concept_pool_shuffled_tiles",
        "what shuffling a bag's tiles does to z and a",
        {
            "a": "both stay exactly the same, entry by entry",
            "b": "z stays the same; a is shuffled like the tiles, each weight staying with its tile",
            "c": "both change: each weight depends on its tile's position in the bag",
            "d": "a stays the same, entry by entry; z changes, because the weighted sum runs in a new order",
        },
        "b",
        why={
            "a": "a holds one weight per slot of the bag; after the shuffle, ask which tile sits in slot k and where "
            "its weight went.",
            "c": "nothing in w^T tanh(V h_k) looks at k, the tile's place in the bag: attention pooling has no "
            "position code.",
            "d": "a sum does not depend on the order of its terms, and each a_k comes from its own tile's score and "
            "the bag's softmax total.",
        },
    ),
    ChoiceExercise(
        "concept_gate_purpose",
        "what the sigmoid gate of gated attention pooling adds",
        {
            "a": "it makes the weights of a bag sum to 1",
            "b": "it lets each hidden unit of the score be switched on or off per tile, which tanh alone, nearly "
            "linear near zero, cannot do",
            "c": "it makes the bag vector independent of the order of the tiles",
            "d": "it needs fewer parameters than plain attention pooling",
        },
        "b",
        why={
            "a": "the softmax over the tiles does that, with or without a gate.",
            "c": "plain attention pooling is already independent of the order of the tiles; the gate changes nothing "
            "there.",
            "d": "the gate adds a second layer U, as large as V: in the lesson the gated model has 1617 parameters, "
            "plain attention 1089.",
        },
    ),
    ChoiceExercise(
        "concept_mil_weights",
        "what the attention weights of attention-MIL are (two are right)",
        {
            "a": "the weights of a bag sum to 1, whether or not the bag holds a nodule",
            "b": "a tile's weight is the probability that the tile holds a nodule",
            "c": "a tile's weight depends on the other tiles of its bag",
            "d": "in a negative bag every weight is close to 0",
        },
        frozenset({"a", "c"}),
        why={
            "b": "the model never saw a tile label, and nothing calibrates a weight against one: a weight is a "
            "tile's share of the bag vector. A per-tile probability comes from the classifier applied to each "
            "tile's own features (model.instance_scores).",
            "d": "the weights come out of a softmax over the bag's tiles, which cannot make all of them small at "
            "once.",
        },
    ),
]

EXERCISES = [
    AUC_BY_HAND,
    FunctionExercise(
        "auc_by_ranks",
        auc_by_ranks,
        auc_cases,
        "number",
        "auc_by_ranks(scores, labels)",
        bugs=tuple(RANK_BUGS),
        ruled_out=AUC_RULED_OUT,
        building_blocks=_AUC_BLOCKS,
    ),
    FunctionExercise(
        "auc_by_ranks_ties",
        auc_by_ranks,
        auc_ties_cases,
        "number",
        "auc_by_ranks(scores, labels)",
        bugs=tuple(TIE_BUGS + RANK_BUGS),
        ruled_out=AUC_RULED_OUT,
        building_blocks=_AUC_BLOCKS,
    ),
    FunctionExercise(
        "gated_attention_pool",
        gated_attention_pool,
        gated_pool_cases,
        "tensor",
        "gated_attention_pool(h, V, U, w)",
        bugs=tuple(GATED_BUGS),
        ruled_out=GATED_RULED_OUT,
        building_blocks="the layers V, U and w, torch.tanh, torch.sigmoid, a softmax and a weighted sum",
    ),
    FunctionExercise(
        "top_tile_hit_rate",
        top_tile_hit_rate,
        hit_rate_cases,
        "number",
        "top_tile_hit_rate(weights, tile_labels)",
        bugs=tuple(HIT_BUGS),
        ruled_out=HIT_RULED_OUT,
        building_blocks="argmax, indexing and a mean",
    ),
    *CONCEPTS,
]
