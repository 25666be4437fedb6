"""Softmax as a Boltzmann distribution, and attention as a modern Hopfield network.

Statistical physics weights a state ``i`` of energy ``E_i`` at inverse
temperature ``beta`` by ``p_i = exp(-beta E_i) / Z``: the softmax of
``-beta E``. Give each stored pattern ``x_i`` the energy ``E_i = -x_i . xi``
(a state ``xi`` sits low in energy next to patterns it resembles) and the
Boltzmann weights are ``softmax(beta X xi)``.

A modern Hopfield network (Ramsauer et al. 2020, "Hopfield networks is all
you need") stores patterns as the rows of ``X`` ``(N, d)`` and updates a
state by averaging the patterns under those weights::

    xi_new = X^T softmax(beta X xi)        (the paper writes X with patterns as columns)

This is one attention step: query = the state, keys = values = the stored
patterns, scale = ``beta``. A transformer's ``1 / sqrt(d_k)`` is one
particular inverse temperature. The update never increases the energy

    E(xi) = -lse(beta, X xi) + xi . xi / 2 + log(N) / beta + M^2 / 2,
    lse(beta, z) = log(sum_i exp(beta z_i)) / beta,  M = max_i ||x_i||,

so repeating it settles into a minimum. Large ``beta``: the minimum sits on
one stored pattern, reached from a corrupted query in about one step.
Small ``beta``: the weights spread over many patterns and the state settles
on their average (a metastable state); ``beta -> 0`` gives the mean of all.

Shapes: patterns ``(N, d)`` (one per row, as keys are in attention); states
``(..., d)``, any leading axes (a batch of queries is ``(M, d)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._validate import check_int
from ..attention import scaled_dot_product_attention
from ..softmax import softmax

__all__ = [
    "Retrieval",
    "boltzmann",
    "corrupt",
    "ct_patterns",
    "effective_number",
    "hopfield_energy",
    "hopfield_update",
    "hopfield_update_attention",
    "overlap",
    "pattern_energies",
    "retrieval_sweep",
    "retrieve",
]


def _check(state: torch.Tensor, patterns: torch.Tensor) -> None:
    if not isinstance(patterns, torch.Tensor) or patterns.ndim != 2 or not patterns.is_floating_point():
        raise ValueError(
            "patterns must be a floating-point tensor (N, d), one stored pattern per row; "
            f"received {getattr(patterns, 'dtype', type(patterns).__name__)} {tuple(getattr(patterns, 'shape', ()))}"
        )
    if not isinstance(state, torch.Tensor) or state.ndim < 1 or state.shape[-1] != patterns.shape[1]:
        raise ValueError(
            f"state must have shape (..., d) with d = {patterns.shape[1]} (the patterns' width); "
            f"received {tuple(getattr(state, 'shape', ()))}"
        )
    if state.dtype != patterns.dtype or state.device != patterns.device:
        raise ValueError(
            f"state and patterns must share dtype and device; received {state.dtype} on {state.device} "
            f"and {patterns.dtype} on {patterns.device}"
        )


def _check_beta(beta) -> float:
    b = float(beta)
    if not (b > 0 and math.isfinite(b)):
        raise ValueError(f"beta (inverse temperature) must be a positive finite number; received {beta!r}")
    return b


# -- the Boltzmann view ------------------------------------------------------------------------


def boltzmann(energies: torch.Tensor, beta: float, dim: int = -1) -> torch.Tensor:
    """Boltzmann probabilities ``p_i = exp(-beta E_i) / sum_j exp(-beta E_j)`` = ``softmax(-beta E)``.

    Args:
        energies: any shape; the states are along ``dim``.
        beta: inverse temperature > 0 (large: the lowest energy takes all; small: uniform).

    Returns:
        Same shape, summing to 1 along ``dim``.
    """
    return softmax(-_check_beta(beta) * energies, dim=dim)


def pattern_energies(state: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Energy of ``state`` next to each stored pattern, ``E_i = -x_i . xi``: ``(..., d)`` -> ``(..., N)``."""
    _check(state, patterns)
    return -(state @ patterns.T)


# -- the Hopfield network ----------------------------------------------------------------------


def hopfield_update(state: torch.Tensor, patterns: torch.Tensor, beta: float, return_weights: bool = False):
    """One update of a modern Hopfield network: ``xi_new = softmax(beta xi X^T) X`` (rows).

    Written out: the Boltzmann weights of the pattern energies, then the
    weighted average of the patterns. Equal to
    ``scaled_dot_product_attention(xi, X, X, scale=beta)``.

    Args:
        state: ``(..., d)``.
        patterns: ``(N, d)``.
        beta: inverse temperature > 0.
        return_weights: also return the weights ``(..., N)``.

    Returns:
        The new state ``(..., d)``, or ``(state, weights)``.
    """
    weights = boltzmann(pattern_energies(state, patterns), beta)  # (..., N)
    new = weights @ patterns  # (..., d)
    return (new, weights) if return_weights else new


def hopfield_update_attention(state: torch.Tensor, patterns: torch.Tensor, beta: float) -> torch.Tensor:
    """The same update through :func:`minattn.scaled_dot_product_attention` (keys = values = patterns)."""
    _check(state, patterns)
    beta = _check_beta(beta)
    q = state.reshape(-1, state.shape[-1])  # (M, d): every leading axis becomes a query
    out = scaled_dot_product_attention(q, patterns, patterns, scale=beta)
    return out.reshape(state.shape)


def hopfield_energy(state: torch.Tensor, patterns: torch.Tensor, beta: float) -> torch.Tensor:
    """Ramsauer et al.'s energy, ``(..., d)`` -> ``(...,)``.

    ``E = -lse(beta, X xi) + xi.xi / 2 + log(N) / beta + M^2 / 2``. The last
    two terms are constants that make ``E >= 0``; the first two compete: the
    log-sum-exp pulls the state towards patterns, the square keeps it bounded.
    """
    _check(state, patterns)
    beta = _check_beta(beta)
    n = patterns.shape[0]
    big_m = patterns.norm(dim=1).max()
    lse = torch.logsumexp(beta * (state @ patterns.T), dim=-1) / beta
    return -lse + 0.5 * (state * state).sum(-1) + math.log(n) / beta + 0.5 * big_m**2


@dataclass
class Retrieval:
    """What :func:`retrieve` found.

    Attributes:
        state: ``(..., d)`` the final states.
        steps: int64 ``(...)``: updates each state needed until one more
            moves it by less than ``tol`` (so an already-fixed state needs 0,
            one-step retrieval 1); ``max_steps`` where it never settled.
        converged: bool ``(...)``.
        weights: ``(..., N)`` the last update's weights over the stored patterns.
        energies: ``(T + 1, ...)`` the energy before the first and after every update.
    """

    state: torch.Tensor
    steps: torch.Tensor
    converged: torch.Tensor
    weights: torch.Tensor
    energies: torch.Tensor


def retrieve(
    state: torch.Tensor, patterns: torch.Tensor, beta: float, max_steps: int = 100, tol: float = 1e-6
) -> Retrieval:
    """Update until the states stop moving (``||xi_new - xi|| < tol``) or ``max_steps``.

    Args:
        state: the query (corrupted or partial pattern) ``(..., d)``.
        patterns: stored patterns ``(N, d)``.
        beta: inverse temperature > 0.
        max_steps: the most updates, >= 1.
        tol: convergence threshold on the Euclidean step length.

    Returns:
        A :class:`Retrieval`.
    """
    _check(state, patterns)
    beta = _check_beta(beta)
    check_int(max_steps, "max_steps", minimum=1)
    lead = state.shape[:-1]
    steps = torch.full(lead, max_steps, dtype=torch.long, device=state.device)
    settled = torch.zeros(lead, dtype=torch.bool, device=state.device)
    energies = [hopfield_energy(state, patterns, beta)]
    weights = None
    for t in range(max_steps):
        new, weights = hopfield_update(state, patterns, beta, return_weights=True)
        moved = (new - state).norm(dim=-1)
        # a state that this update barely moved was already settled after t updates
        just = ~settled & (moved < tol)
        steps = torch.where(just, torch.full_like(steps, t), steps)
        settled = settled | just
        state = new
        energies.append(hopfield_energy(state, patterns, beta))
        if bool(settled.all()):
            break
    return Retrieval(state, steps, settled, weights, torch.stack(energies))


# -- measuring retrieval -----------------------------------------------------------------------


def overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity along the last axis (1: same direction), broadcasting ``(..., d)``."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(torch.finfo(a.dtype).tiny)


def effective_number(weights: torch.Tensor) -> torch.Tensor:
    """``exp(entropy)`` of weights along the last axis: 1 for one pattern, N for a uniform average."""
    p = weights.clamp_min(0)
    logp = torch.where(p > 0, torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)), torch.zeros_like(p))
    return torch.exp(-(p * logp).sum(-1))


def retrieval_sweep(
    queries: torch.Tensor,
    patterns: torch.Tensor,
    targets: torch.Tensor,
    betas,
    max_steps: int = 100,
    tol: float = 1e-6,
) -> dict:
    """Retrieve every query at every beta and summarise.

    Args:
        queries: ``(M, d)`` corrupted queries.
        patterns: ``(N, d)`` stored patterns.
        targets: int64 ``(M,)``, the index of the pattern each query came from.
        betas: a sequence of inverse temperatures.

    Returns:
        dict of float64 CPU tensors ``(len(betas),)``: ``beta``; ``accuracy``
        (fraction whose final state is closest, by dot product, to its own
        pattern); ``overlap`` (mean cosine with its own pattern);
        ``effective_patterns`` (mean ``exp(entropy)`` of the final weights);
        ``steps`` (median updates to settle); ``converged`` (fraction settled).
    """
    _check(queries, patterns)
    if queries.ndim != 2 or targets.shape != (queries.shape[0],):
        raise ValueError(
            f"queries must be (M, d) and targets (M,); received {tuple(queries.shape)} and {tuple(targets.shape)}"
        )
    rows = {k: [] for k in ("beta", "accuracy", "overlap", "effective_patterns", "steps", "converged")}
    own = patterns[targets]  # (M, d)
    for beta in betas:
        r = retrieve(queries, patterns, beta, max_steps=max_steps, tol=tol)
        closest = (r.state @ patterns.T).argmax(-1)
        rows["beta"].append(float(beta))
        rows["accuracy"].append(float((closest == targets).double().mean()))
        rows["overlap"].append(float(overlap(r.state, own).double().mean()))
        rows["effective_patterns"].append(float(effective_number(r.weights).double().mean()))
        rows["steps"].append(float(r.steps.double().median()))
        rows["converged"].append(float(r.converged.double().mean()))
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in rows.items()}


# -- data: CT patches as stored patterns -------------------------------------------------------


def ct_patterns(patch: int = 16, image: torch.Tensor | None = None, dtype=torch.float64) -> torch.Tensor:
    """Non-overlapping square patches of a CT slice as unit-norm, zero-mean patterns.

    Each patch of :func:`minattn.data.load_ct_slice` (128 x 128 HU) is
    flattened row-major, its mean is subtracted and it is scaled to norm 1,
    so that ``x_i . x_j`` is the correlation of two patches and the energy
    scale is the same for bone and lung. Patches are numbered row-major.

    Args:
        patch: side in pixels; must divide the image (16 gives 64 patterns of 256 numbers).
        image: optional ``(H, W)`` image instead of the CT slice.
        dtype: floating dtype of the result.

    Returns:
        ``(N, patch * patch)``, ``N = (H / patch) (W / patch)``.
    """
    from ..patches import patchify

    if image is None:
        from ..data import load_ct_slice

        image = load_ct_slice()
    if not isinstance(image, torch.Tensor) or image.ndim != 2:
        raise ValueError(f"image must be a 2D tensor (H, W); received {getattr(image, 'shape', type(image))}")
    x = patchify(image.to(dtype)[None, None], patch)[0]  # (N, p*p)
    x = x - x.mean(dim=1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("a patch is constant, so it has no direction to store; use another image or patch size")
    return x / norm


def corrupt(patterns: torch.Tensor, kind: str = "noise", level: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Corrupted copies of patterns to retrieve from.

    Args:
        patterns: ``(N, d)`` with ``d = p * p`` for ``kind="mask"``.
        kind: ``"noise"`` adds Gaussian noise of total norm about ``level``
            (per entry ``level / sqrt(d)``; for unit-norm patterns ``level`` is
            the noise-to-signal ratio); ``"mask"`` zeroes the bottom ``level``
            fraction of each square patch's rows (0.5: the lower half is missing).
        level: see ``kind``.
        seed: seeds the noise.

    Returns:
        ``(N, d)``.
    """
    if not isinstance(patterns, torch.Tensor) or patterns.ndim != 2:
        raise ValueError(f"patterns must be (N, d); received {getattr(patterns, 'shape', type(patterns))}")
    n, d = patterns.shape
    if kind == "noise":
        g = torch.Generator().manual_seed(int(seed))
        noise = torch.randn((n, d), generator=g, dtype=torch.float64).to(patterns)
        return patterns + float(level) / math.sqrt(d) * noise
    if kind == "mask":
        side = math.isqrt(d)
        if side * side != d:
            raise ValueError(f"kind='mask' needs square patches, d = p * p; received d = {d}")
        if not 0.0 <= float(level) <= 1.0:
            raise ValueError(f"level is the masked fraction of rows, in [0, 1]; received {level!r}")
        keep = torch.ones(side, side, dtype=patterns.dtype, device=patterns.device)
        keep[side - int(round(float(level) * side)) :] = 0
        return patterns * keep.reshape(1, d)
    raise ValueError(f"kind must be 'noise' or 'mask'; received {kind!r}")
