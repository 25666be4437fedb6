"""How well a binary classifier scores: the metrics the applications report.

- :func:`roc_auc`: the area under the ROC curve, from ranks (no curve is drawn);
- :func:`binary_accuracy`: the share of cases on the right side of a probability threshold.

Both take tensors or plain sequences on any device and return a Python float.
"""

from __future__ import annotations

import torch

__all__ = ["binary_accuracy", "mean_sd", "roc_auc"]


def _flat_pair(scores, labels, scores_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``scores`` as float64 and ``labels`` as bool, both flat on the CPU; their lengths must agree."""
    scores = torch.as_tensor(scores).detach().reshape(-1).double().cpu()
    labels = torch.as_tensor(labels).detach().reshape(-1).cpu()
    if scores.shape != labels.shape:
        raise ValueError(
            f"{scores_name} and labels must have the same length; received {scores.numel()} and {labels.numel()}"
        )
    return scores, labels.bool()


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve, by ranks (the Mann-Whitney U statistic).

    AUC is the probability that a randomly chosen positive scores higher than
    a randomly chosen negative (ties count one half). Sorting all scores once
    and summing the ranks of the positives gives it without a ROC curve::

        AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos * n_neg)

    where ``R_pos`` is the sum of the positives' ranks (1-based, tied scores
    share their average rank). Scores that are all equal give 0.5.

    Args:
        scores: ``(N,)`` any real numbers; larger means "more positive".
        labels: ``(N,)`` booleans or 0/1.

    Returns:
        A float in [0, 1]: 1 = every positive above every negative, 0.5 = chance.

    Raises:
        ValueError: if the lengths differ or one class is missing (the AUC is then undefined).
    """
    scores, labels = _flat_pair(scores, labels, "scores")
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; received {n_pos} positives and {n_neg} negatives")
    order = torch.argsort(scores, stable=True)
    positions = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    # Tied scores share their average rank: group equal values, average the positions of each group.
    _, group, counts = torch.unique_consecutive(scores[order], return_inverse=True, return_counts=True)
    rank_sum = torch.zeros(counts.numel(), dtype=torch.float64).index_add_(0, group, positions)
    ranks = torch.empty_like(scores)
    ranks[order] = (rank_sum / counts)[group]
    u = float(ranks[labels].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def binary_accuracy(probabilities, labels, threshold: float = 0.5) -> float:
    """Share of cases classified right when "positive" means a probability above ``threshold``.

    Args:
        probabilities: ``(N,)`` predicted probabilities of the positive class.
        labels: ``(N,)`` booleans or 0/1.
        threshold: a case is called positive when its probability is strictly greater.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: if the lengths differ or there are no cases.
    """
    probabilities, labels = _flat_pair(probabilities, labels, "probabilities")
    if labels.numel() == 0:
        raise ValueError("accuracy needs at least one case; received none")
    return float(((probabilities > threshold) == labels).double().mean())


def mean_sd(values, digits: int = 3) -> str:
    """``"mean ± sd"`` of repeated runs (sample standard deviation, n - 1), rounded to ``digits`` places.

    Args:
        values: a sequence of numbers, e.g. one metric over several seeds (at least two).
    """
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    if values.numel() < 2:
        raise ValueError(f"mean_sd needs at least two values to give a spread; received {values.tolist()}")
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"
