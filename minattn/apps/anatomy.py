"""Brain-tissue segmentation data from one real template: the MNI152 T1 and its tissue maps.

nilearn's wheel ships the MNI152 T1 template together with grey- and white-matter probability maps and a
brain mask, so a segmentation task on real anatomy needs no download. The template is skull-stripped,
so there is no scalp or skull to label; the four classes are

    0 background     outside the brain mask
    1 grey matter    inside the mask, where grey matter is the most probable tissue
    2 white matter   inside the mask, where white matter is the most probable tissue
    3 csf / other    inside the mask, where neither is: mostly cerebrospinal fluid (ventricles, sulci)

One volume must give both the training and the test data, so it is cut in two along ``H`` (front to
back): :func:`front_back` tests on the front of the brain (the frontal lobes) and trains on the rest,
with a gap of 16 mm between them so that no test voxel has a training voxel as a near neighbour. The
obvious cut, left hemisphere against right (:func:`hemispheres`), is a leak: nilearn's template is the
*symmetric* MNI152, so the mirrored right hemisphere is a copy of the left one, voxel for voxel, and a
model tested on it is tested on its training data. Random crops with flips, intensity and contrast
jitter and a small affine change (:func:`augmentation`) make one part of one brain enough to train on.
Every crop is drawn from a generator seeded with ``(seed, epoch, index)`` only, so the same sample is
the same crop however many processes share the work.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..data import load_mni152

__all__ = [
    "CLASS_NAMES",
    "Hemispheres",
    "Split",
    "augmentation",
    "front_back",
    "hemispheres",
    "sample_crop",
    "tissue_labels",
]

CLASS_NAMES = ("background", "grey matter", "white matter", "csf / other")


def _canonical(array) -> torch.Tensor:
    """nilearn's ``(x, y, z)`` RAS+ array -> the course's ``(D, H, W)``, as :func:`~minattn.data.load_mni152` does."""
    return torch.from_numpy(array.copy()).permute(2, 1, 0).flip(0, 1).contiguous()


@functools.lru_cache(maxsize=2)
def _tissue_maps(resolution: int) -> tuple:
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_template, load_mni152_wm_template

    return tuple(
        _canonical(load(resolution=resolution).get_fdata(dtype="float32"))
        for load in (load_mni152_gm_template, load_mni152_wm_template, load_mni152_brain_mask)
    )


def tissue_labels(resolution: int = 2) -> torch.Tensor:
    """The four-class label volume of the MNI152 template (classes in :data:`CLASS_NAMES`).

    Args:
        resolution: voxel size in mm, 1 or 2.

    Returns:
        long tensor ``(D, H, W)`` (``(95, 117, 99)`` at 2 mm) in the course's axis order, values 0..3.
    """
    if resolution not in (1, 2):
        raise ValueError(f"resolution must be 1 or 2 (mm); received {resolution!r}")
    grey, white, mask = _tissue_maps(resolution)
    rest = (1 - grey - white).clamp(min=0)
    tissue = torch.stack([grey, white, rest]).argmax(0) + 1  # 1 grey, 2 white, 3 csf / other
    return torch.where(mask > 0.5, tissue, torch.zeros_like(tissue))


@dataclass(frozen=True)
class Split:
    """The template cut into a training part and a test part that share no voxel.

    Attributes:
        train_image: float ``(D, Ht, Wt)`` T1 to train on, in [0, 1].
        train_labels: long ``(D, Ht, Wt)``.
        test_image: float ``(D, Hs, Ws)`` T1 to test on.
        test_labels: long ``(D, Hs, Ws)``.
    """

    train_image: torch.Tensor
    train_labels: torch.Tensor
    test_image: torch.Tensor
    test_labels: torch.Tensor


@dataclass(frozen=True)
class Hemispheres(Split):
    """A :class:`Split` at the midline: the left hemisphere and the mirrored right one.

    ``midline`` is the ``W`` index of the midline voxel column, in neither half.
    """

    midline: int


def front_back(resolution: int = 2, test_share: float = 0.37, gap_mm: int = 16) -> Split:
    """Test on the front of the brain, train on the back, with a gap between them.

    ``H`` runs from the front of the head to the back. The first ``round(test_share * H)`` rows along
    ``H`` are the test part, the next ``gap_mm`` millimetres belong to neither, the rest is the training
    part: at 2 mm, test ``(95, 43, 99)`` (the frontal lobes), gap 8 rows, train ``(95, 66, 99)``.
    Every tissue class is in both parts (grey matter 7 % of the test part, 15 % of the training part;
    csf / other 1.0 % and 2.1 %).

    Args:
        resolution: voxel size in mm, 1 or 2.
        test_share: the share of ``H`` to test on, in (0, 1).
        gap_mm: the distance between the two parts, in mm.

    Returns:
        :class:`Split`.
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must lie in (0, 1); received {test_share!r}")
    image = load_mni152(resolution)
    labels = tissue_labels(resolution)
    test_rows = round(test_share * image.shape[1])
    train_from = test_rows + -(-int(gap_mm) // resolution)
    if image.shape[1] - train_from < 32 or test_rows < 1:
        raise ValueError(
            f"test_share {test_share} and gap_mm {gap_mm} leave {image.shape[1] - train_from} rows to train on "
            f"and {test_rows} to test on; need at least 32 and 1"
        )
    return Split(
        train_image=image[:, train_from:].contiguous(),
        train_labels=labels[:, train_from:].contiguous(),
        test_image=image[:, :test_rows].contiguous(),
        test_labels=labels[:, :test_rows].contiguous(),
    )


def hemispheres(resolution: int = 2) -> Hemispheres:
    """The left hemisphere and the mirrored right one; no voxel is in both, yet they are the same.

    Not a fair test (see the module's docstring): the template is symmetric, so the mirrored right
    half equals the left one. Lesson 15 uses it to show the leak; training uses :func:`front_back`.

    ``W`` runs from the subject's left to right, and the template's midline (x = 0 mm) is the column
    ``W // 2``. It is left out, so the halves are ``[:midline]`` and ``[midline + 1:]`` flipped;
    at 2 mm each half is ``(95, 117, 49)``.

    Args:
        resolution: voxel size in mm, 1 or 2.

    Returns:
        :class:`Hemispheres`.
    """
    image = load_mni152(resolution)
    labels = tissue_labels(resolution)
    midline = image.shape[-1] // 2
    return Hemispheres(
        train_image=image[..., :midline].contiguous(),
        train_labels=labels[..., :midline].contiguous(),
        test_image=image[..., midline + 1 :].flip(-1).contiguous(),
        test_labels=labels[..., midline + 1 :].flip(-1).contiguous(),
        midline=midline,
    )


def augmentation(crop: tuple, positive_share: float | None = None):
    """MONAI dictionary transforms for keys ``image`` and ``label`` (each ``(1, D, H, W)``).

    A random crop of size ``crop`` (with ``positive_share``: centred on a voxel of a non-zero label that
    share of the time, on a background voxel otherwise, for small targets), flips along ``H`` and ``W``, a
    small affine change (rotation up to about 6 degrees, scaling by up to 8 %, a few voxels of shift; the
    labels resampled with nearest neighbour), then intensity scaling, shift and a gamma (contrast) change
    on the image only.

    Args:
        crop: ``(d, h, w)`` crop size; multiples of 32 for :class:`~minattn.SwinUNETR`.

    Returns:
        a ``monai.transforms.Compose``; seed it with ``set_random_state`` before each sample.
    """
    from monai import transforms as mt  # a course extra

    crop = tuple(int(c) for c in crop)
    if len(crop) != 3 or any(c < 1 for c in crop):
        raise ValueError(f"crop must be three positive sizes (d, h, w); received {crop!r}")
    keys = ("image", "label")
    if positive_share is None:
        cropper = mt.RandSpatialCropd(keys, roi_size=crop, random_size=False)
    else:
        share = float(positive_share)
        cropper = mt.RandCropByPosNegLabeld(keys, "label", crop, pos=share, neg=1 - share, num_samples=1)
    return mt.Compose(
        [
            cropper,
            mt.RandFlipd(keys, prob=0.5, spatial_axis=1),
            mt.RandFlipd(keys, prob=0.5, spatial_axis=2),
            mt.RandAffined(
                keys,
                prob=0.5,
                rotate_range=(0.1, 0.1, 0.1),
                scale_range=(0.08, 0.08, 0.08),
                translate_range=(2, 2, 2),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            mt.RandScaleIntensityd("image", factors=0.1, prob=0.8),
            mt.RandShiftIntensityd("image", offsets=0.05, prob=0.8),
            mt.RandAdjustContrastd("image", gamma=(0.8, 1.25), prob=0.5),
        ]
    )


def sample_crop(transform, image: torch.Tensor, labels: torch.Tensor, seed: int, epoch: int, index: int) -> tuple:
    """One augmented crop, the same for the same ``(seed, epoch, index)`` whoever draws it.

    Args:
        transform: from :func:`augmentation`.
        image: float ``(D, H, W)``.
        labels: long ``(D, H, W)``.
        seed, epoch, index: what the crop's random state is derived from.

    Returns:
        ``(image, labels)``: float ``(1, d, h, w)`` and long ``(1, d, h, w)`` tensors.
    """
    if image.shape != labels.shape or image.dim() != 3:
        raise ValueError(
            f"image and labels must both be (D, H, W); received {tuple(image.shape)}, {tuple(labels.shape)}"
        )
    state = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) * 10_007 + int(index))
    transform.set_random_state(seed=int(torch.randint(2**31 - 1, (1,), generator=state)))
    out = transform({"image": image[None], "label": labels[None].float()})
    crop_image = torch.as_tensor(out["image"]).float()
    crop_labels = torch.as_tensor(out["label"]).round().long()
    return crop_image.as_subclass(torch.Tensor), crop_labels.as_subclass(torch.Tensor)
