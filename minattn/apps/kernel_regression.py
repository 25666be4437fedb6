"""Nadaraya-Watson kernel regression is attention.

Kernel regression predicts at a point ``x`` a weighted average of training
targets, the weights being a kernel of the distance to each training input::

    f(x) = sum_i K(x, x_i) y_i / sum_j K(x, x_j),    K(x, x_i) = exp(-||x - x_i||^2 / (2 h^2))

The normalised weights ``K(x, x_i) / sum_j K(x, x_j)`` are exactly
``softmax_i(-||x - x_i||^2 / (2 h^2))``: a softmax over negative squared
distances. So f is one attention step with

    queries = the points where we predict (``x``),
    keys    = the training inputs (``x_i``),
    values  = the training targets (``y_i``),
    temperature = the bandwidth: logits are divided by ``2 h^2``.

Expanding ``-||q - k||^2 = 2 q.k - ||q||^2 - ||k||^2`` turns the logits into
a dot product plus terms; ``-||q||^2`` is the same for every key of a query
and cancels in the softmax, ``-||k||^2`` is a per-key bias. Hence
:func:`nadaraya_watson_attention` calls :func:`minattn.scaled_dot_product_attention`
with ``scale = 1 / h^2`` and ``bias = -||k||^2 / (2 h^2)``.

The module also holds a small medical data set (an intensity profile along a
line through a real CT slice, plus simulated noise) and the held-out error
against the bandwidth that picks ``h``.

Shapes: inputs are ``(N,)`` for 1-D data or ``(N, d)``; targets ``(N,)`` or
``(N, c)``; a prediction has the targets' trailing shape, ``(M,)`` or ``(M, c)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..attention import scaled_dot_product_attention
from ..softmax import softmax

__all__ = [
    "CTProfile",
    "best_bandwidth",
    "ct_profile",
    "gaussian_kernel",
    "heldout_errors",
    "leave_one_out_errors",
    "nadaraya_watson",
    "nadaraya_watson_attention",
    "nadaraya_watson_weights",
    "softmax_weights",
    "squared_distances",
]


# -- inputs ------------------------------------------------------------------------------------


def _as_points(x: torch.Tensor, name: str) -> torch.Tensor:
    """``(N,)`` -> ``(N, 1)``; ``(N, d)`` unchanged; anything else a ValueError."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; received {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point; received dtype {x.dtype}")
    if x.ndim == 1:
        return x[:, None]
    if x.ndim == 2:
        return x
    raise ValueError(f"{name} must have shape (N,) or (N, d); received shape {tuple(x.shape)}")


def _check_bandwidth(bandwidth) -> float:
    h = float(bandwidth)
    if not (h > 0 and math.isfinite(h)):
        raise ValueError(f"bandwidth must be a positive finite number; received {bandwidth!r}")
    return h


def _pair(x_query: torch.Tensor, x_train: torch.Tensor):
    q, k = _as_points(x_query, "x_query"), _as_points(x_train, "x_train")
    if q.shape[1] != k.shape[1]:
        raise ValueError(
            f"x_query and x_train must have the same number of features d; received {tuple(x_query.shape)} "
            f"and {tuple(x_train.shape)}"
        )
    if q.dtype != k.dtype or q.device != k.device:
        raise ValueError(
            f"x_query and x_train must share dtype and device; received {q.dtype} on {q.device} "
            f"and {k.dtype} on {k.device}"
        )
    return q, k


def _targets(y_train: torch.Tensor, n_train: int, like: torch.Tensor):
    """``(N,)`` or ``(N, c)`` -> ``(N, c)`` plus whether to squeeze the result back to 1-D."""
    if not isinstance(y_train, torch.Tensor) or y_train.ndim not in (1, 2) or y_train.shape[0] != n_train:
        raise ValueError(
            f"y_train must have shape ({n_train},) or ({n_train}, c), one target per training input; "
            f"received {getattr(y_train, 'shape', type(y_train).__name__)}"
        )
    if y_train.dtype != like.dtype or y_train.device != like.device:
        raise ValueError(
            f"y_train must have the inputs' dtype and device ({like.dtype} on {like.device}); "
            f"received {y_train.dtype} on {y_train.device}"
        )
    return (y_train[:, None], True) if y_train.ndim == 1 else (y_train, False)


# -- the kernel-sum view -----------------------------------------------------------------------


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All squared Euclidean distances ``||a_i - b_j||^2``.

    Args:
        a: ``(M,)`` or ``(M, d)``.
        b: ``(N,)`` or ``(N, d)``.

    Returns:
        ``(M, N)``, computed from the differences (no cancellation).
    """
    a, b = _pair(a, b)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def gaussian_kernel(x_query: torch.Tensor, x_train: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Gaussian kernel ``K(x, x_i) = exp(-||x - x_i||^2 / (2 h^2))``, shape ``(M, N)``.

    No normalising constant: it cancels in the Nadaraya-Watson ratio.
    """
    h = _check_bandwidth(bandwidth)
    return torch.exp(-squared_distances(x_query, x_train) / (2 * h * h))


def nadaraya_watson_weights(x_query: torch.Tensor, x_train: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """The kernel-sum weights ``K(x, x_i) / sum_j K(x, x_j)``, shape ``(M, N)``, rows summing to 1.

    Taken literally, as a statistics textbook writes it. For a query farther
    than about ``38 h`` (float64) from every training input every kernel value
    underflows to 0 and the row is 0 / 0 = NaN; the softmax form of
    :func:`nadaraya_watson_attention` subtracts the row maximum first and does not.
    """
    kernel = gaussian_kernel(x_query, x_train, bandwidth)
    return kernel / kernel.sum(dim=1, keepdim=True)


def nadaraya_watson(x_query: torch.Tensor, x_train: torch.Tensor, y_train: torch.Tensor, bandwidth: float):
    """Nadaraya-Watson estimate ``f(x) = sum_i K(x, x_i) y_i / sum_j K(x, x_j)`` (kernel sums).

    Args:
        x_query: where to predict, ``(M,)`` or ``(M, d)``.
        x_train: training inputs, ``(N,)`` or ``(N, d)``.
        y_train: training targets, ``(N,)`` or ``(N, c)``.
        bandwidth: the Gaussian kernel's width ``h`` > 0, in the inputs' units.

    Returns:
        ``(M,)`` or ``(M, c)``, matching ``y_train``.
    """
    weights = nadaraya_watson_weights(x_query, x_train, bandwidth)
    y, squeeze = _targets(y_train, weights.shape[1], weights)
    out = weights @ y
    return out[:, 0] if squeeze else out


# -- the attention view ------------------------------------------------------------------------


def nadaraya_watson_attention(
    x_query: torch.Tensor,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    bandwidth: float,
    method: str = "expansion",
    return_weights: bool = False,
):
    """Nadaraya-Watson regression computed by :func:`minattn.scaled_dot_product_attention`.

    Queries are ``x_query``, keys ``x_train``, values ``y_train``; the logits
    must be ``-||q - k||^2 / (2 h^2)``. Two ways to get them:

    - ``method="expansion"``: ``-||q - k||^2 = 2 q.k - ||q||^2 - ||k||^2``.
      With ``scale = 1 / h^2`` the dot product gives ``q.k / h^2``; the key
      term is an additive ``bias = -||k||^2 / (2 h^2)``, one per key; the
      query term is the same for every key of a query and cancels in the
      softmax, so it is left out. This is ordinary dot-product attention.
    - ``method="bias"``: ``scale = 0`` and the whole ``-||q - k||^2 / (2 h^2)``
      passed as the bias: attention driven by a distance instead of a dot product.

    Both centre the inputs on the training mean first: distances do not change
    under a translation, but ``||q||^2`` and ``||k||^2`` shrink, so the
    expansion loses fewer digits to cancellation.

    Args:
        x_query: ``(M,)`` or ``(M, d)``.
        x_train: ``(N,)`` or ``(N, d)``.
        y_train: ``(N,)`` or ``(N, c)``.
        bandwidth: ``h`` > 0; ``2 h^2`` plays the role of the softmax temperature.
        method: ``"expansion"`` or ``"bias"``.
        return_weights: also return the ``(M, N)`` attention weights.

    Returns:
        The estimate, ``(M,)`` or ``(M, c)`` like ``y_train``; with
        ``return_weights`` the pair ``(estimate, weights)``.
    """
    h = _check_bandwidth(bandwidth)
    q, k = _pair(x_query, x_train)
    v, squeeze = _targets(y_train, k.shape[0], k)
    centre = k.mean(dim=0, keepdim=True)
    q, k = q - centre, k - centre
    if method == "expansion":
        bias = -(k * k).sum(-1)[None, :] / (2 * h * h)  # (1, N): the -||k||^2 term, broadcast over queries
        scale = 1.0 / (h * h)  # 2 q.k / (2 h^2)
    elif method == "bias":
        bias = -((q[:, None, :] - k[None, :, :]) ** 2).sum(-1) / (2 * h * h)  # (M, N)
        scale = 0.0
    else:
        raise ValueError(f"method must be 'expansion' or 'bias'; received {method!r}")
    out, weights = scaled_dot_product_attention(q, k, v, bias=bias, scale=scale, return_weights=True)
    out = out[:, 0] if squeeze else out
    return (out, weights) if return_weights else out


def softmax_weights(x_query: torch.Tensor, x_train: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``softmax(-||x - x_i||^2 / (2 h^2))`` over the training points: ``(M, N)``.

    Equal to :func:`nadaraya_watson_weights` wherever that one is defined, and
    finite everywhere (the softmax subtracts each row's maximum).
    """
    h = _check_bandwidth(bandwidth)
    return softmax(-squared_distances(x_query, x_train) / (2 * h * h), dim=-1)


# -- choosing the bandwidth --------------------------------------------------------------------


def heldout_errors(
    bandwidths,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
) -> torch.Tensor:
    """Root-mean-square error on held-out points for each bandwidth.

    Args:
        bandwidths: a sequence (or 1-D tensor) of ``h`` values.
        x_train, y_train: the fitting data, ``(N,)``/``(N, d)`` and ``(N,)``/``(N, c)``.
        x_val, y_val: held-out data of the same kinds, ``M`` points.

    Returns:
        float64 CPU tensor ``(len(bandwidths),)``: RMSE of the attention-form
        estimate at ``x_val`` against ``y_val``.
    """
    values = [float(h) for h in (bandwidths.tolist() if isinstance(bandwidths, torch.Tensor) else bandwidths)]
    if not values:
        raise ValueError("bandwidths must hold at least one value; received an empty sequence")
    errors = []
    for h in values:
        pred = nadaraya_watson_attention(x_val, x_train, y_train, h)
        if pred.shape != y_val.shape:
            raise ValueError(f"y_val must have shape {tuple(pred.shape)}; received {tuple(y_val.shape)}")
        errors.append(float(((pred - y_val) ** 2).mean().sqrt()))
    return torch.tensor(errors, dtype=torch.float64)


def leave_one_out_errors(bandwidths, x_train: torch.Tensor, y_train: torch.Tensor) -> torch.Tensor:
    """Leave-one-out RMSE for each bandwidth, all points at once, with an attention mask.

    Predicting training point ``i`` from all the others is self-attention over
    the training set with the diagonal masked out (query ``i`` may not attend
    to key ``i``): one masked attention call replaces ``N`` refits. Useful when
    there is no clean held-out set; on noisy targets its RMSE includes the noise.

    Args:
        bandwidths: a sequence (or 1-D tensor) of ``h`` values.
        x_train: ``(N,)`` or ``(N, d)``, N >= 2.
        y_train: ``(N,)`` or ``(N, c)``.

    Returns:
        float64 CPU tensor ``(len(bandwidths),)``.
    """
    values = [float(h) for h in (bandwidths.tolist() if isinstance(bandwidths, torch.Tensor) else bandwidths)]
    if not values:
        raise ValueError("bandwidths must hold at least one value; received an empty sequence")
    k = _as_points(x_train, "x_train")
    if k.shape[0] < 2:
        raise ValueError(f"leave-one-out needs at least 2 training points; received {k.shape[0]}")
    v, _ = _targets(y_train, k.shape[0], k)
    k = k - k.mean(dim=0, keepdim=True)
    others = ~torch.eye(k.shape[0], dtype=torch.bool, device=k.device)  # (N, N): everything but oneself
    errors = []
    for h in values:
        h = _check_bandwidth(h)
        bias = -(k * k).sum(-1)[None, :] / (2 * h * h)
        pred = scaled_dot_product_attention(k, k, v, mask=others, bias=bias, scale=1.0 / (h * h))
        errors.append(float(((pred - v) ** 2).mean().sqrt()))
    return torch.tensor(errors, dtype=torch.float64)


def best_bandwidth(bandwidths, errors: torch.Tensor) -> float:
    """The bandwidth with the smallest error (the first one on a tie)."""
    values = bandwidths.tolist() if isinstance(bandwidths, torch.Tensor) else list(bandwidths)
    if len(values) != len(errors):
        raise ValueError(f"need one error per bandwidth; received {len(values)} bandwidths and {len(errors)} errors")
    return float(values[int(torch.as_tensor(errors).argmin())])


# -- a medical data set ------------------------------------------------------------------------

#: Pixel spacing of pydicom's CT_small.dcm, in mm (its PixelSpacing tag).
CT_PIXEL_MM = 0.661468


@dataclass(frozen=True)
class CTProfile:
    """A CT intensity profile, sparsely sampled with noise, and its held-out reference (float64, mm and HU).

    Attributes:
        x: ``(L,)`` position of every pixel along the line, mm.
        truth: ``(L,)`` the reference profile (the stored slice, averaged over the line's width), HU.
        x_train, y_train: ``(n_train,)`` sampled positions and their noisy HU: what the fit sees.
        x_val, y_val: ``(L - n_train,)`` the other positions and the reference there: what it is scored on.
    """

    x: torch.Tensor
    truth: torch.Tensor
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def ct_profile(row: int = 40, width: int = 5, n_train: int = 96, noise_hu: float = 200.0, seed: int = 0) -> CTProfile:
    """Hounsfield units along a line through the real CT slice, sampled sparsely with added noise.

    A simulation study in one function: the stored slice plays the full-dose
    reference; the "scan" we fit sees only ``n_train`` of the line's pixels,
    each with Gaussian noise of ``noise_hu`` (the quantum noise of a low-dose
    acquisition). Held-out pixels are scored against the reference.

    The default line, rows 38 to 42 of :func:`minattn.data.load_ct_slice`
    averaged (a line-profile tool of width 5), crosses lung (about -800 HU),
    a thoracic vertebral body (bone, 200-450 HU) and lung again: flat
    stretches with two sharp edges, the shape that makes the bandwidth
    choice visible.

    Args:
        row: centre row of the line, 0 to 127.
        width: rows averaged into the reference, centred on ``row`` (odd, >= 1).
        n_train: pixels drawn (without replacement) as noisy training samples; the rest are held out.
        noise_hu: standard deviation of the noise added to every training sample.
        seed: seeds the draw and the noise.

    Returns:
        A :class:`CTProfile`; positions in mm, sorted.
    """
    from ..data import load_ct_slice

    ct = load_ct_slice().double()
    if isinstance(width, bool) or not isinstance(width, int) or width < 1 or width % 2 == 0:
        raise ValueError(f"width must be an odd positive int; received {width!r}")
    half = width // 2
    if isinstance(row, bool) or not isinstance(row, int) or not half <= row < ct.shape[0] - half:
        last = ct.shape[0] - 1 - half
        raise ValueError(f"row must be an int in [{half}, {last}] for width {width}; received {row!r}")
    length = ct.shape[1]
    if isinstance(n_train, bool) or not isinstance(n_train, int) or not 2 <= n_train < length:
        raise ValueError(f"n_train must be an int in [2, {length - 1}]; received {n_train!r}")
    g = torch.Generator().manual_seed(int(seed))
    truth = ct[row - half : row + half + 1].mean(0)
    x = torch.arange(length, dtype=torch.float64) * CT_PIXEL_MM
    order = torch.randperm(length, generator=g)
    train, val = order[:n_train].sort().values, order[n_train:].sort().values
    noisy = truth[train] + float(noise_hu) * torch.randn(n_train, generator=g, dtype=torch.float64)
    return CTProfile(x, truth, x[train], noisy, x[val], truth[val])
