"""Data for the lessons that needs no internet.

Three sources, all of which work on a machine that has never been online:

- :func:`phantom`: a procedural torso in Hounsfield units (air, fat, soft
  tissue, lungs, heart, liver, kidneys, spine, ribs) with synthetic lesions
  and their label mask; any shape, deterministic for a seed.
- :func:`load_mni152`: the MNI152 T1 brain template that ships inside the
  nilearn wheel (2 mm, 99 x 117 x 95 voxels), as a ``(D, H, W)`` tensor.
- :func:`load_ct_slice`: a real 128 x 128 CT slice that ships inside the
  pydicom wheel, in Hounsfield units.

:func:`insert_lesion` adds a spherical or ellipsoidal lesion to any 2D or 3D
image (a primary tumour, then a distant metastasis on real anatomy), and
:func:`scale_hu` turns Hounsfield units into the small numbers a network reads.

Axis order everywhere is ``(D, H, W)`` with ``volume[d]`` one axial slice:
``D`` from the head end (index 0) towards the feet, ``H`` from the front
(anterior, index 0) to the back, so ``imshow(volume[d])`` draws the front up.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._validate import check_int

__all__ = [
    "AIR_HU",
    "Lesion",
    "insert_lesion",
    "lesion_mask",
    "load_ct_slice",
    "load_mni152",
    "phantom",
    "random_lesions",
    "scale_hu",
]

AIR_HU = -1000.0

# Tissue intensities in Hounsfield units, typical values for non-contrast CT.
_FAT, _SOFT, _LUNG, _BLOOD, _LIVER, _KIDNEY, _BONE, _MARROW = -100.0, 40.0, -850.0, 45.0, 60.0, 30.0, 700.0, 250.0


@dataclass(frozen=True)
class Lesion:
    """A synthetic lesion: an ellipsoid added to an image.

    Attributes:
        centre: voxel coordinates, one float per axis (``(d, h, w)`` or ``(h, w)``).
        radius: one float (a sphere) or one per axis (an axis-aligned ellipsoid), in voxels.
        contrast: added to the image inside the lesion, in the image's units
            (HU for CT; positive = brighter, i.e. hyperdense / enhancing).
    """

    centre: tuple[float, ...]
    radius: float | tuple[float, ...]
    contrast: float


def _radii(radius, ndim: int) -> tuple[float, ...]:
    if isinstance(radius, (int, float)) and not isinstance(radius, bool):
        radii = (float(radius),) * ndim
    else:
        radii = tuple(float(r) for r in radius)
    if len(radii) != ndim or any(not r > 0 for r in radii):
        raise ValueError(f"radius must be a positive number or {ndim} positive numbers; received {radius!r}")
    return radii


def lesion_mask(shape: Sequence[int], centre: Sequence[float], radius, device=None) -> torch.Tensor:
    """Boolean mask of an ellipsoid inside a grid.

    Args:
        shape: the grid ``(D, H, W)`` or ``(H, W)``.
        centre: voxel coordinates of the centre, one per axis (fractional allowed).
        radius: one radius or one per axis, in voxels.

    Returns:
        bool tensor of ``shape``: True where ``sum(((x - centre) / radius)^2) <= 1``.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    centre = tuple(float(c) for c in centre)
    if len(centre) != ndim:
        raise ValueError(f"centre needs {ndim} coordinates for a grid of shape {shape}; received {centre}")
    radii = _radii(radius, ndim)
    inside = torch.zeros(shape, device=device)
    for axis, (n, c, r) in enumerate(zip(shape, centre, radii)):
        view = [1] * ndim
        view[axis] = n
        inside = inside + ((torch.arange(n, device=device, dtype=torch.float32) - c) / r).view(view) ** 2
    return inside <= 1.0


def insert_lesion(volume: torch.Tensor, centre: Sequence[float], radius, contrast: float):
    """Add an ellipsoidal lesion to a copy of an image.

    Args:
        volume: ``(D, H, W)`` or ``(H, W)`` image, float (left unchanged).
        centre: voxel coordinates of the lesion centre, one per axis.
        radius: one radius or one per axis, in voxels.
        contrast: added inside the lesion, in the image's units (HU for
            :func:`load_ct_slice` and :func:`phantom`, [0, 1] units for
            :func:`load_mni152`).

    Returns:
        ``(new_volume, mask)``: the image with ``contrast`` added inside the
        ellipsoid (same shape, dtype and device) and the boolean mask of the
        lesion (same shape). A lesion that lies partly outside the image is
        cut at the border; one entirely outside gives an all-False mask.
    """
    if not isinstance(volume, torch.Tensor) or volume.ndim not in (2, 3) or not volume.is_floating_point():
        raise ValueError(
            f"volume must be a float tensor (D, H, W) or (H, W); received {getattr(volume, 'shape', type(volume))}"
        )
    mask = lesion_mask(volume.shape, centre, radius, device=volume.device)
    new = volume + mask.to(volume.dtype) * float(contrast)
    return new, mask


def random_lesions(
    n: int,
    shape: Sequence[int],
    radius_range: tuple[float, float] = (2.0, 5.0),
    contrast_range: tuple[float, float] = (40.0, 120.0),
    generator: torch.Generator | None = None,
    inside: torch.Tensor | None = None,
) -> list[Lesion]:
    """Draw ``n`` random spherical lesions.

    Args:
        n: number of lesions.
        shape: the grid ``(D, H, W)`` (or ``(H, W)``) they go into.
        radius_range: ``(low, high)`` radius in voxels, drawn uniformly.
        contrast_range: ``(low, high)`` contrast, drawn uniformly (negative
            values make hypodense lesions).
        generator: a seeded ``torch.Generator`` for reproducible draws.
        inside: optional bool tensor of ``shape``; centres are drawn only among
            its True voxels (e.g. the body, so lesions do not float in air).

    Returns:
        A list of :class:`Lesion`, centres at voxel positions.
    """
    check_int(n, "n", minimum=0)
    shape = tuple(int(s) for s in shape)
    (r_lo, r_hi), (c_lo, c_hi) = radius_range, contrast_range
    if not 0 < r_lo <= r_hi:
        raise ValueError(f"radius_range must be (low, high) with 0 < low <= high; received {radius_range}")
    if c_lo > c_hi:
        raise ValueError(f"contrast_range must be (low, high) with low <= high; received {contrast_range}")
    if inside is None:
        candidates = None
    else:
        if tuple(inside.shape) != shape or inside.dtype != torch.bool:
            raise ValueError(
                f"inside must be a bool tensor of shape {shape}; received {inside.dtype} {tuple(inside.shape)}"
            )
        candidates = inside.reshape(-1).nonzero().squeeze(1).cpu()
        if candidates.numel() == 0:
            raise ValueError("inside has no True voxel to place a lesion in")
    lesions = []
    for _ in range(n):
        if candidates is None:
            centre = tuple(float(torch.randint(0, s, (1,), generator=generator)) for s in shape)
        else:
            flat = int(candidates[torch.randint(0, candidates.numel(), (1,), generator=generator)])
            centre = tuple(float(c) for c in _unravel(flat, shape))
        radius = r_lo + (r_hi - r_lo) * float(torch.rand((), generator=generator))
        contrast = c_lo + (c_hi - c_lo) * float(torch.rand((), generator=generator))
        lesions.append(Lesion(centre, radius, contrast))
    return lesions


def _unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    coords = []
    for s in reversed(shape):
        coords.append(flat % s)
        flat //= s
    return tuple(reversed(coords))


def _normalised_coords(shape: tuple[int, int, int]):
    """Coordinates in [-1, 1] along each axis, as broadcastable (D,1,1), (1,H,1), (1,1,W) tensors."""
    axes = []
    for axis, n in enumerate(shape):
        c = torch.linspace(-1.0, 1.0, n) if n > 1 else torch.zeros(1)
        view = [1, 1, 1]
        view[axis] = n
        axes.append(c.view(view))
    return axes


def _ellipsoid(coords, centre, semi_axes) -> torch.Tensor:
    d, h, w = coords
    (cd, ch, cw), (ad, ah, aw) = centre, semi_axes
    return ((d - cd) / ad) ** 2 + ((h - ch) / ah) ** 2 + ((w - cw) / aw) ** 2 <= 1.0


def phantom(
    shape: Sequence[int] = (64, 64, 64),
    lesions: int | Sequence[Lesion] = 2,
    seed: int = 0,
    noise_hu: float = 10.0,
):
    """A procedural CT-like torso with lesions, in Hounsfield units.

    The anatomy is a set of ellipsoids on normalised coordinates, so it looks
    the same at any resolution: air (-1000 HU) around a body of fat
    (-100 HU) and soft tissue (40 HU), two lungs (-850 HU) in the upper half,
    a heart (45 HU), a liver (60 HU) and two kidneys (30 HU) lower down, a
    spine (bone 700 HU with marrow 250 HU) at the back and ribs around the
    chest. Gaussian noise of ``noise_hu`` mimics CT noise.

    Orientation: ``D`` runs from the head end (index 0, the lung apices) to
    the feet, ``H`` from the front (anterior, index 0) to the back, ``W``
    across the body; ``volume[d]`` is one axial slice.

    Args:
        shape: ``(D, H, W)``, each at least 8.
        lesions: an int ``n`` for ``n`` random lesions inside the body (drawn
            from ``seed`` with :func:`random_lesions`: radius 4-9 % of the
            smallest side, contrast +60 to +120 HU), or a sequence of
            :class:`Lesion` in voxel coordinates.
        seed: seeds the noise and the random lesions; the same seed gives the
            same volume bit for bit.
        noise_hu: standard deviation of the added noise (0 for none).

    Returns:
        ``(volume, labels)``: ``volume`` float32 ``(D, H, W)`` in HU;
        ``labels`` int64 ``(D, H, W)``: 0 outside lesions, ``i`` inside
        lesion ``i`` (1-based, a later lesion wins where two overlap).
        ``labels > 0`` is the lesion mask.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or any(s < 8 for s in shape):
        raise ValueError(f"shape must be (D, H, W) with every side >= 8; received {shape}")
    generator = torch.Generator().manual_seed(int(seed))
    coords = _normalised_coords(shape)
    d, h, w = coords
    vol = torch.full(shape, AIR_HU)

    body = _ellipsoid(coords, (0.0, 0.0, 0.0), (1.6, 0.62, 0.88))  # nearly a cylinder along D
    inner = _ellipsoid(coords, (0.0, 0.0, 0.0), (1.5, 0.55, 0.8))
    vol[body] = _FAT
    vol[inner] = _SOFT
    # Ribs: a thin shell just inside the body wall, cut into bands along D, upper (chest) half only.
    shell = _ellipsoid(coords, (0.0, 0.0, 0.0), (1.5, 0.53, 0.78)) & ~_ellipsoid(
        coords, (0.0, 0.0, 0.0), (1.5, 0.47, 0.71)
    )
    bands = (torch.cos(d * 9 * math.pi) > 0.3) & (d < 0.15)
    vol[shell & bands] = _BONE
    lungs = torch.zeros(shape, dtype=torch.bool)
    for side in (-1.0, 1.0):
        lungs |= _ellipsoid(coords, (-0.4, -0.02, 0.38 * side), (0.5, 0.36, 0.27))
    vol[lungs] = _LUNG
    vol[_ellipsoid(coords, (-0.2, -0.18, 0.08), (0.22, 0.2, 0.2))] = _BLOOD
    vol[_ellipsoid(coords, (0.35, -0.05, -0.32), (0.28, 0.33, 0.33))] = _LIVER
    for side in (-1.0, 1.0):
        vol[_ellipsoid(coords, (0.55, 0.25, 0.33 * side), (0.18, 0.12, 0.09))] = _KIDNEY
    spine = ((h - 0.38) / 0.11) ** 2 + (w / 0.11) ** 2 <= 1.0
    canal = ((h - 0.38) / 0.05) ** 2 + (w / 0.05) ** 2 <= 1.0
    spine = spine.expand(shape)
    vol[spine] = _BONE
    vol[canal.expand(shape) & spine] = _MARROW

    if isinstance(lesions, int) and not isinstance(lesions, bool):
        smallest = min(shape)
        # Centres in soft tissue, away from the body wall, the spine and the lungs.
        allowed = _ellipsoid(coords, (0.0, 0.0, 0.0), (1.2, 0.4, 0.6)) & ~spine & ~lungs
        lesions = random_lesions(
            lesions,
            shape,
            radius_range=(max(1.0, 0.04 * smallest), max(1.5, 0.09 * smallest)),
            contrast_range=(60.0, 120.0),
            generator=generator,
            inside=allowed,
        )
    labels = torch.zeros(shape, dtype=torch.long)
    for i, lesion in enumerate(lesions, start=1):
        vol, mask = insert_lesion(vol, lesion.centre, lesion.radius, lesion.contrast)
        labels[mask] = i
    if noise_hu:
        vol = vol + noise_hu * torch.randn(shape, generator=generator)
    return vol.float(), labels


# Real data ------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _mni152_array(resolution: int):
    from nilearn.datasets import load_mni152_template  # imported here: nilearn is a course extra, slow to import

    img = load_mni152_template(resolution=resolution)
    return img.get_fdata(dtype="float32"), tuple(img.affine.tolist())


def load_mni152(resolution: int = 2, canonical: bool = True) -> torch.Tensor:
    """The MNI152 T1 brain template (skull-stripped) from the nilearn wheel, no download.

    nilearn ships the 1 mm template inside its package and resamples it;
    ``resolution=2`` gives 99 x 117 x 95 voxels of 2 mm. Nothing is fetched
    from the internet (``tests/test_data.py`` checks this with sockets disabled).

    Args:
        resolution: voxel size in mm (1 or 2; 2 is quick and small).
        canonical: True (default) returns ``(D, H, W)`` in the course's axis
            order; False returns nilearn's array order unchanged.

    Returns:
        float32 tensor, min-max normalised to [0, 1].

        - ``canonical=True``: shape ``(95, 117, 99)`` at 2 mm. ``D`` = axial
          slice, from the top of the head (superior, index 0) down;
          ``H`` from the front (anterior, index 0) to the back; ``W`` from the
          subject's left to right. ``volume[d]`` is an axial slice that
          ``imshow`` draws nose up with the subject's left on the viewer's left
          (neurological convention).
        - ``canonical=False``: nilearn's ``(x, y, z)`` = ``(99, 117, 95)``,
          RAS+: ``x`` left -> right, ``y`` posterior -> anterior, ``z``
          inferior -> superior.
    """
    if resolution not in (1, 2):
        raise ValueError(f"resolution must be 1 or 2 (mm); received {resolution!r}")
    data, _ = _mni152_array(resolution)
    vol = torch.from_numpy(data.copy())
    lo, hi = vol.min(), vol.max()
    vol = (vol - lo) / (hi - lo)
    if canonical:
        # (x: L->R, y: P->A, z: I->S) -> (z: S->I, y: A->P, x: L->R)
        vol = vol.permute(2, 1, 0).flip(0, 1).contiguous()
    return vol


@functools.lru_cache(maxsize=1)
def _ct_small():
    import pydicom  # course extra
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    if path is None:
        raise FileNotFoundError("pydicom's test file CT_small.dcm is missing from this pydicom installation")
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.astype("float32")
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    return pixels * slope + intercept


def load_ct_slice() -> torch.Tensor:
    """A real CT slice from the pydicom wheel (``CT_small.dcm``), in Hounsfield units.

    The stored integers are converted with the DICOM rescale,
    ``HU = pixel * RescaleSlope + RescaleIntercept`` (slope 1, intercept
    -1024 in this file). No download.

    Returns:
        float32 tensor ``(128, 128)`` = ``(H, W)``, rows top to bottom as
        stored in the file; values about -900 to 1200 HU.
    """
    return torch.from_numpy(_ct_small().copy())


def scale_hu(hu: torch.Tensor, scale: float, centre: float = 0.0, clip: tuple[float, float] | None = None):
    """Hounsfield units to network inputs: clip, subtract ``centre``, divide by ``scale``.

    CT values span thousands of HU; a network trains best on numbers of order one. A radiologist's
    display window (level L, width W) is the case ``centre = L, scale = W / 2, clip = (L - W/2, L + W/2)``,
    which maps the window onto [-1, 1] and everything outside it to -1 or +1.

    Args:
        hu: a tensor of any shape, in HU.
        scale: how many HU make one unit of the result.
        centre: the HU value that becomes 0.
        clip: ``(low, high)`` in HU: values outside are set to the nearer bound first; None: no clipping.

    Returns:
        ``(clip(hu) - centre) / scale``, same shape, dtype and device as ``hu``.
    """
    if not scale > 0:
        raise ValueError(f"scale must be a positive number of HU per unit; received {scale!r}")
    if clip is not None:
        low, high = clip
        if not low <= high:
            raise ValueError(f"clip must be (low, high) with low <= high, in HU; received {clip!r}")
        hu = hu.clamp(low, high)
    return (hu - centre) / scale
