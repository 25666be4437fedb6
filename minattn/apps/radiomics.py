"""Handcrafted radiomic features of a segmented lesion: shape, first-order statistics and texture.

Radiomics turns a lesion into a row of numbers a statistician can use: how big and how round it is
(**shape**, from the mask alone), how bright and how spread its voxels are (**first order**, from the
histogram of the voxels inside the mask) and how the brightness changes from a voxel to its
neighbour (**texture**, from a grey-level co-occurrence matrix, GLCM).

These are teaching versions written from their definitions. Clinical studies use the standardised
definitions of the Image Biomarker Standardisation Initiative (IBSI) and a reference implementation
such as pyradiomics, which add resampling, discretisation rules and many more features; the numbers
here are close in spirit, not interchangeable with theirs.

Every function takes an image ``(D, H, W)`` (float) and a mask ``(D, H, W)`` (bool) of the same
shape, or a batch of lesions ``(B, D, H, W)`` each (one lesion per row, computed together, which is
much faster than a loop); a 2D slice is a volume with ``D = 1``. Each returns ``(names, values)``: a
tuple of feature names and a float64 tensor ``(F,)``, or ``(B, F)`` for a batch, on the image's
device. Standardising the features (they live on very different scales) is left to the caller:
:func:`standardise` does it with the training set's statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "DIRECTIONS",
    "FIRST_ORDER",
    "SHAPE",
    "TEXTURE",
    "first_order_features",
    "glcm",
    "quantise",
    "radiomic_features",
    "shape_features",
    "standardise",
    "texture_features",
]

SHAPE = ("voxels", "volume", "surface", "surface_to_volume", "compactness", "extent_d", "extent_h", "extent_w")
FIRST_ORDER = ("mean", "sd", "skewness", "kurtosis", "entropy", "p10", "p50", "p90")
TEXTURE = ("contrast", "homogeneity", "energy", "correlation")

# The 13 neighbour offsets (d, h, w) at distance 1 in 3D: of the 26 neighbours, one of each opposite pair
# (the GLCM is made symmetric, so the other half would count every pair twice).
DIRECTIONS = (
    (0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 1, -1),
    (1, 0, 0), (1, 0, 1), (1, 0, -1), (1, 1, 0), (1, -1, 0),
    (1, 1, 1), (1, 1, -1), (1, -1, 1), (1, -1, -1),
)  # fmt: skip


def _as_batch(mask: torch.Tensor, image: torch.Tensor | None = None):
    """Check the inputs and give them a batch axis: ``(B, D, H, W)`` each, and whether one lesion came in."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool tensor (D, H, W) or (B, D, H, W), True inside the lesion; received "
            f"{getattr(mask, 'dtype', type(mask).__name__)}"
        )
    if mask.ndim not in (3, 4):
        raise ValueError(
            f"mask must have shape (D, H, W) or (B, D, H, W) (a 2D slice is (1, H, W)); received {tuple(mask.shape)}"
        )
    if image is not None:
        if not isinstance(image, torch.Tensor) or not image.is_floating_point():
            raise ValueError(f"image must be a float tensor; received {getattr(image, 'dtype', type(image))}")
        if image.shape != mask.shape:
            raise ValueError(
                f"image and mask must have the same shape; received {tuple(image.shape)} and {tuple(mask.shape)}"
            )
    single = mask.ndim == 3
    if single:
        mask = mask[None]
        image = None if image is None else image[None]
    empty = (~mask.flatten(1).any(1)).nonzero().flatten().tolist()
    if empty:
        which = "" if single else f" (lesions {empty[:5]}{' ...' if len(empty) > 5 else ''})"
        raise ValueError(f"mask is empty{which}: a radiomic feature needs at least one voxel inside the lesion")
    # Cut to the bounding box of all the masks: no feature looks outside it, and it is much faster.
    box = [slice(int(a), int(b) + 1) for a, b in zip(mask.nonzero()[:, 1:].amin(0), mask.nonzero()[:, 1:].amax(0))]
    mask = mask[(slice(None), *box)]
    image = None if image is None else image[(slice(None), *box)].to(torch.float64)
    return mask, image, single


def _spacing(spacing) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing) if isinstance(spacing, Sequence) else ()
    if len(values) != 3 or not all(s > 0 for s in values):
        raise ValueError(f"spacing must be three positive voxel sizes (d, h, w); received {spacing!r}")
    return values


def _out(values: list[torch.Tensor], single: bool) -> torch.Tensor:
    """Stack per-lesion ``(B,)`` features into ``(B, F)``, or ``(F,)`` for one lesion."""
    out = torch.stack([v.to(torch.float64) for v in values], dim=1)
    return out[0] if single else out


# -- Shape ----------------------------------------------------------------------------------


def shape_features(mask: torch.Tensor, spacing: Sequence[float] = (1.0, 1.0, 1.0)):
    """Size and form of the lesion, from the mask alone.

    - ``voxels``: how many voxels the mask holds; ``volume``: that times the voxel's volume;
    - ``surface``: the area of the voxel faces between the lesion and the outside (face counting).
      Exact for a box; a curved surface is drawn as a staircase, so a large sphere's area comes out
      about 1.5 times too big (IBSI and pyradiomics mesh the surface with marching cubes instead);
    - ``surface_to_volume``: their ratio (small lesions and ragged ones have more surface per volume);
    - ``compactness``: ``(3/5) r^2 V / J`` with ``J`` the lesion's second moment about its centroid
      (each voxel a solid box) and ``r`` the radius of the ball of the same volume: 1 for a ball,
      ``(3/5) (3/(4 pi))^(2/3) * 4 = 0.924`` for a cube, lower for elongated or flat shapes. Built
      from moments rather than the surface, it does not suffer from the staircase;
    - ``extent_d``, ``extent_h``, ``extent_w``: the bounding box's length along each axis.

    Args:
        mask: ``(D, H, W)`` or ``(B, D, H, W)`` bool, True inside the lesion.
        spacing: the voxel's size along (d, h, w), e.g. in mm; lengths, areas and volumes are in
            these units.

    Returns:
        ``(names, values)``: :data:`SHAPE` and float64 ``(8,)`` (or ``(B, 8)``).
    """
    mask, _, single = _as_batch(mask)
    step = _spacing(spacing)
    voxel_volume = step[0] * step[1] * step[2]
    m = mask.to(torch.float64)
    voxels = m.sum((1, 2, 3))
    volume = voxels * voxel_volume
    # A face is on the surface when the voxels on its two sides differ; pad so the border counts.
    padded = torch.nn.functional.pad(m, (1, 1, 1, 1, 1, 1))
    surface = sum((padded.diff(dim=axis + 1) != 0).sum((1, 2, 3)) * (voxel_volume / step[axis]) for axis in range(3))
    # Second moment of solid voxels about the centroid: per axis, the centres' variance plus a box's own a^2 / 12.
    spread = torch.zeros_like(volume)
    extents = []
    for axis, size in enumerate(mask.shape[1:]):
        shape = [1, 1, 1, 1]
        shape[axis + 1] = size
        x = (torch.arange(size, dtype=torch.float64, device=mask.device) * step[axis]).reshape(shape)
        mean = (m * x).sum((1, 2, 3)) / voxels
        spread = spread + (m * x**2).sum((1, 2, 3)) / voxels - mean**2 + step[axis] ** 2 / 12
        present = mask.any(dim=[d for d in (1, 2, 3) if d != axis + 1])  # (B, size): a slice holds lesion
        first = present.to(torch.int8).argmax(1)
        last = size - 1 - present.flip(1).to(torch.int8).argmax(1)
        extents.append((last - first + 1) * step[axis])
    ball_radius = (3 * volume / (4 * math.pi)) ** (1 / 3)
    compactness = 0.6 * ball_radius**2 / spread
    values = [voxels, volume, surface, surface / volume, compactness, *extents]
    return SHAPE, _out(values, single)


# -- First order ----------------------------------------------------------------------------


def quantise(values: torch.Tensor, levels: int, value_range: tuple[float, float] | None = None) -> torch.Tensor:
    """Grey levels ``0 .. levels - 1`` in equal-width bins of ``value_range`` (default: the values' min, max).

    Values outside the range go to the first or last bin. With a range of width 0 (a constant lesion
    and no range given) every value is level 0.

    Shapes: any -> the same shape, long.
    """
    low, high = _range(values, value_range)
    return _bin(values.to(torch.float64), levels, torch.tensor(low), torch.tensor(high))


def _range(values: torch.Tensor, value_range) -> tuple[float, float]:
    if value_range is None:
        return float(values.min()), float(values.max())
    low, high = (float(v) for v in value_range)
    if not low < high:
        raise ValueError(f"value_range must be (low, high) with low < high; received {value_range!r}")
    return low, high


def _bin(x: torch.Tensor, levels: int, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Equal-width bins of ``[low, high]`` (broadcast against ``x``); level 0 where the range is empty."""
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive integer; received {levels!r}")
    width = (high - low).to(x)
    scaled = torch.where(width > 0, (x - low.to(x)) / torch.where(width > 0, width, 1.0) * levels, 0.0)
    return scaled.floor().long().clamp(0, levels - 1)


def _grey(image: torch.Tensor, mask: torch.Tensor, levels: int, value_range) -> torch.Tensor:
    """``(B, D, H, W)`` grey levels of the voxels inside each mask, -1 outside; each lesion its own range by default."""
    if value_range is None:
        low = image.masked_fill(~mask, math.inf).amin((1, 2, 3)).reshape(-1, 1, 1, 1)
        high = image.masked_fill(~mask, -math.inf).amax((1, 2, 3)).reshape(-1, 1, 1, 1)
    else:
        low, high = (torch.tensor(v, dtype=torch.float64) for v in _range(image, value_range))
    return torch.where(mask, _bin(image, levels, low, high), -1)


def first_order_features(
    image: torch.Tensor, mask: torch.Tensor, bins: int = 16, value_range: tuple[float, float] | None = None
):
    """Statistics of the voxel values inside the mask, ignoring where the voxels are.

    ``mean``; ``sd`` (population, divided by n); ``skewness`` ``m3 / m2^1.5`` and excess ``kurtosis``
    ``m4 / m2^2 - 3`` from the central moments ``mk`` (both 0 for a constant lesion); ``entropy``, in
    bits, of a histogram with ``bins`` equal bins over ``value_range`` (give a fixed range to compare
    lesions: by default each lesion's own min and max); the 10th, 50th and 90th percentiles
    ``p10, p50, p90`` (linear interpolation).

    Args:
        image: ``(D, H, W)`` or ``(B, D, H, W)`` float; mask: the same shape, bool, not empty.
        bins: histogram bins for the entropy; value_range: ``(low, high)`` of the histogram.

    Returns:
        ``(names, values)``: :data:`FIRST_ORDER` and float64 ``(8,)`` (or ``(B, 8)``).
    """
    mask, image, single = _as_batch(mask, image)
    m = mask.to(torch.float64)
    n = m.sum((1, 2, 3))

    def average(x):  # (B, D, H, W) -> (B,): the mean over each lesion's voxels
        return (x * m).sum((1, 2, 3)) / n

    mean = average(image)
    centred = (image - mean.reshape(-1, 1, 1, 1)) * m
    m2, m3, m4 = average(centred**2), average(centred**3), average(centred**4)
    flat = m2 <= 1e-24 * mean.abs().clamp(min=1.0) ** 2  # a constant lesion, up to rounding
    safe = torch.where(flat, 1.0, m2)
    skewness = torch.where(flat, 0.0, m3 / safe**1.5)
    kurtosis = torch.where(flat, 0.0, m4 / safe**2 - 3)
    grey = _grey(image, mask, bins, value_range).flatten(1)  # (B, voxels)
    B = grey.shape[0]
    slot = (torch.arange(B, device=grey.device)[:, None] * bins + grey)[grey >= 0]
    p = torch.bincount(slot, minlength=B * bins).reshape(B, bins).to(torch.float64) / n[:, None]
    entropy = -(p * torch.log2(torch.where(p > 0, p, 1.0))).sum(1)
    q = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, device=image.device)
    percentiles = torch.nanquantile(image.masked_fill(~mask, math.nan).flatten(1), q, dim=1)  # (3, B)
    values = [mean, m2.sqrt(), skewness, kurtosis, entropy + 0.0, *percentiles]
    return FIRST_ORDER, _out(values, single)


# -- Texture --------------------------------------------------------------------------------


def glcm(
    image: torch.Tensor, mask: torch.Tensor, levels: int = 8, value_range: tuple[float, float] | None = None
) -> torch.Tensor:
    """The grey-level co-occurrence matrix of the lesion: how often level ``i`` sits next to level ``j``.

    The voxels inside the mask are quantised to ``levels`` grey levels of equal width over
    ``value_range`` (by default the lesion's own min and max). Every pair of voxels, both inside the
    mask, that are neighbours along one of the 13 :data:`DIRECTIONS` at distance 1 is counted once
    as ``(i, j)`` and once as ``(j, i)`` (so the matrix is symmetric), the 13 directions are added
    into one matrix, and the matrix is divided by its sum. (IBSI calls this aggregation "merged";
    averaging per-direction features is another of its options.) In a one-slice volume only the 4
    in-plane directions have pairs.

    Returns:
        ``(levels, levels)`` (or ``(B, levels, levels)``) float64, symmetric, summing to 1.

    Raises:
        ValueError: if no two voxels of a mask are neighbours (a single voxel has no texture).
    """
    mask, image, single = _as_batch(mask, image)
    grey = _grey(image, mask, levels, value_range)  # (B, D, H, W), -1 outside the mask
    B, D, H, W = grey.shape
    lesion = torch.arange(B, device=grey.device).reshape(B, 1, 1, 1)
    counts = torch.zeros(B * levels * levels, dtype=torch.float64, device=grey.device)
    for od, oh, ow in DIRECTIONS:
        if od >= D or abs(oh) >= H or abs(ow) >= W:
            continue  # no pair fits along this direction
        # Pairs (v, v + offset): 'a' the voxels whose neighbour at +offset exists, 'b' those neighbours.
        a = grey[:, : D - od, max(0, -oh) : H - max(0, oh), max(0, -ow) : W - max(0, ow)]
        b = grey[:, od:, max(0, oh) : H - max(0, -oh), max(0, ow) : W - max(0, -ow)]
        both = (a >= 0) & (b >= 0)
        base = (lesion * levels * levels).expand_as(a)[both]
        i, j = a[both], b[both]
        counts += torch.bincount(base + i * levels + j, minlength=B * levels * levels).to(torch.float64)
        counts += torch.bincount(base + j * levels + i, minlength=B * levels * levels).to(torch.float64)
    counts = counts.reshape(B, levels, levels)
    total = counts.sum((1, 2))
    lonely = (total == 0).nonzero().flatten().tolist()
    if lonely:
        which = "" if single else f" (lesions {lonely[:5]}{' ...' if len(lonely) > 5 else ''})"
        raise ValueError(f"the mask has no two neighbouring voxels{which}, so it has no texture (GLCM) to measure")
    P = counts / total.reshape(B, 1, 1)
    return P[0] if single else P


def texture_features(
    image: torch.Tensor, mask: torch.Tensor, levels: int = 8, value_range: tuple[float, float] | None = None
):
    """Haralick-style features of the lesion's GLCM ``P`` (:func:`glcm`), grey levels ``i, j = 1..levels``.

    - ``contrast`` ``sum (i - j)^2 P``: large when neighbours differ a lot;
    - ``homogeneity`` ``sum P / (1 + |i - j|)``: 1 when every neighbour has the same level;
    - ``energy`` ``sum P^2``: 1 for a single repeated pair, small for varied texture;
    - ``correlation`` ``sum (i - mu)(j - mu) P / sigma^2``: +1 when neighbours rise and fall together,
      -1 when they alternate; defined as 1 for a lesion of one grey level (sigma = 0), as pyradiomics does.

    Returns:
        ``(names, values)``: :data:`TEXTURE` and float64 ``(4,)`` (or ``(B, 4)``).
    """
    P = glcm(image, mask, levels, value_range)
    single = P.ndim == 2
    P = P[None] if single else P
    level = torch.arange(1, levels + 1, dtype=torch.float64, device=P.device)
    i, j = level[:, None], level[None, :]
    contrast = ((i - j) ** 2 * P).sum((1, 2))
    homogeneity = (P / (1 + (i - j).abs())).sum((1, 2))
    energy = (P**2).sum((1, 2))
    mu = (i * P).sum((1, 2)).reshape(-1, 1, 1)  # the same for rows and columns: P is symmetric
    variance = ((i - mu) ** 2 * P).sum((1, 2))
    covariance = ((i - mu) * (j - mu) * P).sum((1, 2))
    flat = variance <= 1e-12
    correlation = torch.where(flat, 1.0, covariance / torch.where(flat, 1.0, variance))
    return TEXTURE, _out([contrast, homogeneity, energy, correlation], single)


# -- All together ---------------------------------------------------------------------------


def radiomic_features(
    image: torch.Tensor,
    mask: torch.Tensor,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    bins: int = 16,
    levels: int = 8,
    value_range: tuple[float, float] | None = None,
    prefix: str = "",
):
    """Shape, first-order and texture features of a lesion (or a batch of lesions), in that order.

    Args:
        image: ``(D, H, W)`` or ``(B, D, H, W)`` float; mask: the same shape, bool, no mask empty.
        spacing: voxel size (d, h, w) for the shape features.
        bins, levels: histogram bins (entropy) and GLCM grey levels; value_range: the fixed
            ``(low, high)`` both use (pass one to compare lesions with each other).
        prefix: put before every first-order and texture name (e.g. ``"arterial "`` when the same
            mask is measured on several images); shape names are left as they are.

    Returns:
        ``(names, values)``: 20 names and float64 ``(20,)`` (or ``(B, 20)``).
    """
    shape_names, shape = shape_features(mask, spacing)
    first_names, first = first_order_features(image, mask, bins, value_range)
    texture_names, texture = texture_features(image, mask, levels, value_range)
    names = shape_names + tuple(prefix + n for n in first_names + texture_names)
    return names, torch.cat([shape, first, texture], dim=-1)


def standardise(train: torch.Tensor, *others: torch.Tensor, eps: float = 1e-8):
    """Centre and scale features with the training set's mean and sd, ``(n, F)`` each.

    Using the training statistics for every set keeps the held-out data unseen. A feature that is
    constant on the training set (sd 0) is only centred.

    Returns:
        A tuple ``(train, *others)``, standardised, each the shape it came in.
    """
    if train.ndim != 2:
        raise ValueError(f"train must have shape (n, F); received {tuple(train.shape)}")
    mean, sd = train.mean(0), train.std(0, unbiased=False)
    sd = torch.where(sd > eps, sd, torch.ones_like(sd))
    for k, x in enumerate(others):
        if x.ndim != 2 or x.shape[1] != train.shape[1]:
            raise ValueError(f"set {k + 1} must have shape (n, {train.shape[1]}); received {tuple(x.shape)}")
    return tuple((x - mean) / sd for x in (train, *others))
