"""Learners' answers to the exercises of lesson 10 (attention-based MIL), right and wrong, with the verdict each
must get."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from learners import Attempt, assert_verdict
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from minattn.apps import mil

# ----------------------------------------------------------------------------- the AUC of six tiles

HAND_ATTEMPTS = [
    Attempt("auc_six_tiles", "5 / 9", 5 / 9, "right"),
    Attempt("auc_six_tiles", "rounded to 4 digits", 0.5556, "right"),
    Attempt(
        "auc_six_tiles",
        "with mil.roc_auc",
        mil.roc_auc(torch.tensor([0.05, 0.30, 0.05, 0.45, 0.05, 0.10]), torch.tensor([0, 1, 0, 0, 1, 1])),
        "right",
    ),
    Attempt("auc_six_tiles", "ties counted as 0", 4 / 9, "bug", names="ties_as_zero"),
    Attempt("auc_six_tiles", "ties counted as 1", 6 / 9, "bug", names="ties_as_one"),
    Attempt("auc_six_tiles", "divided by all 15 pairs", 5 / 15, "bug", names="all_pairs"),
    Attempt("auc_six_tiles", "chance", 0.5, "hard-coded", names="chance"),
    Attempt("auc_six_tiles", "a percentage", 55.6, "hard-coded"),
]


# ----------------------------------------------------------------------------- AUC by ranks


def ranks_unique(scores, labels):
    scores = scores.double()
    _, group, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    counts = counts.double()
    below = torch.cumsum(counts, 0) - counts
    ranks = (below + (counts + 1) / 2)[group]
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ranks_pairwise_float32(scores, labels):
    # every (positive, negative) pair at once, in float32; a tie counts one half
    diff = scores[labels][:, None].float() - scores[~labels][None, :].float()
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item()


def ranks_numpy(scores, labels):
    s = scores.detach().cpu().numpy()
    y = labels.cpu().numpy()
    less = (s[None, :] < s[:, None]).sum(1)
    equal = (s[None, :] == s[:, None]).sum(1)
    ranks = less + (equal + 1) / 2
    n_pos, n_neg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ranks_argsort_scatter(scores, labels):
    n = scores.numel()
    order = torch.argsort(scores)
    ranks = torch.empty(n, dtype=torch.float32, device=scores.device)
    ranks[order] = torch.arange(1, n + 1, dtype=torch.float32, device=scores.device)
    # average the ranks of equal scores
    values, group = torch.unique(scores, return_inverse=True)
    sums = torch.zeros(len(values), device=scores.device).index_add_(0, group, ranks)
    counts = torch.zeros(len(values), device=scores.device).index_add_(0, group, torch.ones_like(ranks))
    ranks = (sums / counts)[group]
    n_pos = labels.sum()
    n_neg = n - n_pos
    return (ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def ranks_ordinal(scores, labels):
    n = scores.numel()
    ranks = torch.empty(n, dtype=torch.float64, device=scores.device)
    ranks[torch.argsort(scores, stable=True)] = torch.arange(1, n + 1, dtype=torch.float64, device=scores.device)
    n_pos = int(labels.sum())
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos)))


def ranks_from_zero(scores, labels):
    n = scores.numel()
    ranks = torch.empty(n, dtype=torch.float64, device=scores.device)
    ranks[torch.argsort(scores)] = torch.arange(n, dtype=torch.float64, device=scores.device)
    n_pos = int(labels.sum())
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos)))


def descending(scores, labels):
    return ranks_unique(-scores, labels)


def no_subtraction(scores, labels):
    scores = scores.double()
    ranks = (scores[None, :] < scores[:, None]).sum(1) + ((scores[None, :] == scores[:, None]).sum(1) + 1) / 2
    n_pos = int(labels.sum())
    return float(ranks[labels].sum() / (n_pos * (labels.numel() - n_pos)))


def ties_as_zero(scores, labels):
    diff = scores[labels][:, None] - scores[~labels][None, :]
    return (diff > 0).double().mean().item()


def ties_as_one(scores, labels):
    diff = scores[labels][:, None] - scores[~labels][None, :]
    return (diff >= 0).double().mean().item()


def sklearn_auc(scores, labels):
    return float(roc_auc_score(labels.cpu().numpy(), scores.cpu().numpy()))


def scipy_ranks(scores, labels):
    ranks = torch.from_numpy(rankdata(scores.cpu().numpy()))
    n_pos = int(labels.sum())
    return float((ranks[labels.cpu()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (labels.numel() - n_pos)))


RANK_ATTEMPTS = [
    Attempt("auc_by_ranks", "torch.unique groups, float64", ranks_unique, "right"),
    Attempt("auc_by_ranks", "all pairs at once, float32", ranks_pairwise_float32, "right"),
    Attempt("auc_by_ranks", "numpy round trip", ranks_numpy, "right"),
    Attempt("auc_by_ranks", "argsort, scatter, index_add, a 0-d tensor back", ranks_argsort_scatter, "right"),
    Attempt("auc_by_ranks", "ranks from 0", ranks_from_zero, "bug", names="ranks_from_zero"),
    Attempt("auc_by_ranks", "ranked from the highest", descending, "bug", names="reversed"),
    Attempt("auc_by_ranks", "rank sum not corrected", no_subtraction, "bug", names="no_subtraction"),
    Attempt(
        "auc_by_ranks",
        "mil.roc_auc",
        lambda scores, labels: mil.roc_auc(scores, labels),
        "shortcut",
        "ruled_out",
        "roc_auc",
    ),
    Attempt("auc_by_ranks", "sklearn's roc_auc_score", sklearn_auc, "shortcut", "ruled_out", "sklearn"),
    Attempt("auc_by_ranks", "scipy's rankdata", scipy_ranks, "shortcut", "ruled_out", "rankdata"),
    Attempt("auc_by_ranks", "0.5 whatever the scores", lambda scores, labels: 0.5, "hard-coded"),
    Attempt("auc_by_ranks", "no labels parameter", lambda scores: 0.5, "bug", names="missing_parameter"),
    Attempt("auc_by_ranks_ties", "torch.unique groups, float64", ranks_unique, "right"),
    Attempt("auc_by_ranks_ties", "all pairs at once, ties one half", ranks_pairwise_float32, "right"),
    Attempt("auc_by_ranks_ties", "argsort, scatter, index_add", ranks_argsort_scatter, "right"),
    Attempt("auc_by_ranks_ties", "ordinal ranks, ties not averaged", ranks_ordinal, "bug", names="ties_not_averaged"),
    Attempt("auc_by_ranks_ties", "ties count 0", ties_as_zero, "bug", names="ties_counted_as_zero"),
    Attempt("auc_by_ranks_ties", "ties count 1", ties_as_one, "bug", names="ties_counted_as_one"),
    Attempt("auc_by_ranks_ties", "sklearn's roc_auc_score", sklearn_auc, "shortcut", "ruled_out", "sklearn"),
    Attempt("auc_by_ranks_ties", "the printed 0.4707 typed in", lambda scores, labels: 0.470667, "hard-coded"),
]


# ----------------------------------------------------------------------------- gated attention pooling


def gated_solution(h, V, U, w):
    scores = w(torch.tanh(V(h)) * torch.sigmoid(U(h))).squeeze(-1)
    a = torch.softmax(scores, dim=1)
    return (a[..., None] * h).sum(dim=1), a


def gated_explicit(h, V, U, w):
    # the layers' weights by hand, an explicit softmax, einsum for z
    hidden = torch.tanh(h @ V.weight.T + V.bias) * torch.sigmoid(F.linear(h, U.weight, U.bias))
    scores = (hidden @ w.weight.T)[..., 0]
    e = torch.exp(scores - scores.amax(dim=1, keepdim=True))
    a = e / e.sum(dim=1, keepdim=True)
    return torch.einsum("bk,bkm->bm", a, h), a


def gated_float64(h, V, U, w):
    h64 = h.double()
    hidden = torch.tanh(F.linear(h64, V.weight.double(), V.bias.double())) * torch.sigmoid(
        F.linear(h64, U.weight.double(), U.bias.double())
    )
    a = torch.softmax(F.linear(hidden, w.weight.double()).squeeze(-1), dim=-1)
    return (a.unsqueeze(1) @ h64).squeeze(1).to(h.dtype), a.to(h.dtype)


def no_gate(h, V, U, w):
    a = torch.softmax(w(torch.tanh(V(h))).squeeze(-1), dim=1)
    return (a[..., None] * h).sum(1), a


def swapped(h, V, U, w):
    a = torch.softmax(w(torch.sigmoid(V(h)) * torch.tanh(U(h))).squeeze(-1), dim=1)
    return (a[..., None] * h).sum(1), a


def softmax_over_bags(h, V, U, w):
    a = torch.softmax(w(torch.tanh(V(h)) * torch.sigmoid(U(h))).squeeze(-1), dim=0)
    return (a[..., None] * h).sum(1), a


def mean_z(h, V, U, w):
    _, a = gated_solution(h, V, U, w)
    return h.mean(dim=1), a


def keeps_last_axis(h, V, U, w):
    z, a = gated_solution(h, V, U, w)
    return z, a[..., None]


def package_pool(h, V, U, w):
    pool = mil.AttentionPool(h.shape[-1], V.out_features, gated=True).to(h.dtype)
    pool.V, pool.U, pool.w = V, U, w
    return pool(h)


def package_scores(h, V, U, w):
    holder = type("Holder", (), {"V": V, "U": U, "w": w, "gated": True})()
    a = torch.softmax(mil.AttentionPool.scores(holder, h), dim=1)
    return (a[..., None] * h).sum(1), a


def uniform(h, V, U, w):
    a = torch.full(h.shape[:2], 1.0 / h.shape[1], dtype=h.dtype, device=h.device)
    return h.mean(dim=1), a


GATED_ATTEMPTS = [
    Attempt("gated_attention_pool", "layers called, torch.softmax, weighted sum", gated_solution, "right"),
    Attempt("gated_attention_pool", "weights by hand, explicit softmax, einsum", gated_explicit, "right"),
    Attempt("gated_attention_pool", "float64 inside, cast back", gated_float64, "right"),
    Attempt("gated_attention_pool", "no gate", no_gate, "bug", names="no_gate"),
    Attempt("gated_attention_pool", "tanh and sigmoid swapped", swapped, "bug", names="tanh_and_sigmoid_swapped"),
    Attempt("gated_attention_pool", "softmax over the bags", softmax_over_bags, "bug", names="softmax_over_bags"),
    Attempt("gated_attention_pool", "z the plain mean", mean_z, "bug", names="z_not_weighted"),
    Attempt("gated_attention_pool", "weights of shape (B, K, 1)", keeps_last_axis, "wrong type", says="shape"),
    Attempt(
        "gated_attention_pool",
        "only the weights returned",
        lambda h, V, U, w: gated_solution(h, V, U, w)[1],
        "wrong type",
    ),
    Attempt(
        "gated_attention_pool",
        "mil.AttentionPool holding the layers",
        package_pool,
        "shortcut",
        "ruled_out",
        "AttentionPool",
    ),
    Attempt(
        "gated_attention_pool",
        "AttentionPool.scores borrowed",
        package_scores,
        "shortcut",
        "ruled_out",
        "AttentionPool",
    ),
    Attempt("gated_attention_pool", "uniform weights", uniform, "hard-coded"),
]


# ----------------------------------------------------------------------------- the heaviest tile


def hit_solution(weights, tile_labels):
    heaviest = weights.argmax(dim=1)
    hits = tile_labels[torch.arange(weights.shape[0], device=weights.device), heaviest]
    return float(hits[tile_labels.any(dim=1)].float().mean())


def hit_gather(weights, tile_labels):
    heaviest = weights.argmax(dim=1, keepdim=True)
    hits = tile_labels.gather(1, heaviest).squeeze(1)
    positive = tile_labels.any(dim=1)
    return (hits & positive).sum() / positive.sum()  # a 0-d tensor


def hit_loop(weights, tile_labels):
    hits = bags = 0
    for w, y in zip(weights.tolist(), tile_labels.tolist()):
        if any(y):
            bags += 1
            hits += y[w.index(max(w))]
    return hits / bags


def hit_numpy(weights, tile_labels):
    w, y = weights.cpu().numpy(), tile_labels.cpu().numpy()
    hits = y[np.arange(len(w)), w.argmax(axis=1)]
    return float(hits[y.any(axis=1)].mean())


def hit_all_bags(weights, tile_labels):
    heaviest = weights.argmax(dim=1)
    return float(tile_labels[torch.arange(weights.shape[0]), heaviest].double().mean())


def hit_argmin(weights, tile_labels):
    return hit_solution(-weights, tile_labels)


def hit_count(weights, tile_labels):
    heaviest = weights.argmax(dim=1)
    hits = tile_labels[torch.arange(weights.shape[0]), heaviest]
    return int(hits[tile_labels.any(dim=1)].sum())


def hit_per_nodule(weights, tile_labels):
    heaviest = weights.argmax(dim=1)
    hits = tile_labels[torch.arange(weights.shape[0]), heaviest]
    return float(hits.sum() / tile_labels.sum())


def hit_last_tie(weights, tile_labels):
    heaviest = weights.shape[1] - 1 - weights.flip(1).argmax(dim=1)
    hits = tile_labels[torch.arange(weights.shape[0]), heaviest]
    return float(hits[tile_labels.any(dim=1)].double().mean())


def checker_reference(weights, tile_labels):
    from minattn.grading.topics.mil import top_tile_hit_rate

    return top_tile_hit_rate(weights, tile_labels)


HIT_ATTEMPTS = [
    Attempt("top_tile_hit_rate", "argmax and indexing", hit_solution, "right"),
    Attempt("top_tile_hit_rate", "gather, a 0-d tensor back", hit_gather, "right"),
    Attempt("top_tile_hit_rate", "a loop over the bags", hit_loop, "right"),
    Attempt("top_tile_hit_rate", "numpy round trip", hit_numpy, "right"),
    Attempt("top_tile_hit_rate", "averaged over all bags", hit_all_bags, "bug", names="all_bags"),
    Attempt("top_tile_hit_rate", "the lightest tile", hit_argmin, "bug", names="lightest_tile"),
    Attempt("top_tile_hit_rate", "the number of hits", hit_count, "bug", names="hit_count"),
    Attempt("top_tile_hit_rate", "divided by the nodule tiles", hit_per_nodule, "bug", names="divided_by_nodules"),
    Attempt("top_tile_hit_rate", "ties go to the last tile", hit_last_tie, "bug", names="ties_to_last_tile"),
    Attempt("top_tile_hit_rate", "the checker's own function", checker_reference, "shortcut", "ruled_out"),
    Attempt(
        "top_tile_hit_rate", "the trained model's 0.915 typed in", lambda weights, tile_labels: 0.915, "hard-coded"
    ),
]

ATTEMPTS = HAND_ATTEMPTS + RANK_ATTEMPTS + GATED_ATTEMPTS + HIT_ATTEMPTS


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)
