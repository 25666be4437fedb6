"""Lesion segmentation data: bright lesions in procedural CT phantoms and in the real MNI152 template.

Two classes, ``0`` not lesion and ``1`` lesion, on two kinds of volume:

- phantoms: :func:`minattn.data.phantom` torsos with lesions in their soft tissue (+60 to +120 HU),
  shown through a soft-tissue window (level 40 HU, width 400 HU) that :func:`~minattn.data.scale_hu`
  maps onto [0, 1]. Each seed also draws the phantom's shape, every side between 64 and 96 voxels;
  the anatomy is drawn on normalised coordinates, so another shape stretches the organs differently;
- the template: the MNI152 T1 (in [0, 1]) with spherical lesions inserted by
  :func:`~minattn.data.insert_lesion` at random places inside the brain, 3 to 8 mm in radius and
  brighter than any tissue (+0.25 to +0.45), like lesions that take up a contrast agent.

Seeds ``0, 1, 2, ...`` make the training volumes and seeds from :data:`TEST_SEED` on the test volumes,
so no test volume shares its lesions (or, for a phantom, its noise and shape) with a training one. The
template's anatomy is the same in both: its test measures finding lesions at new places in a known brain.
:func:`sample_crop` draws a training crop from the pool: the volume and the crop both follow from
``(seed, epoch, index)`` only, so several processes that share the work draw the same crops as one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import insert_lesion, load_mni152, phantom, random_lesions, scale_hu
from . import anatomy

__all__ = ["CLASS_NAMES", "TEST_SEED", "Pool", "augmentation", "lesion_pool", "sample_crop", "template_with_lesions"]

CLASS_NAMES = ("background", "lesion")
TEST_SEED = 1000  # seeds below it make training volumes, seeds from it on make test volumes

# The soft-tissue window of CT: level 40 HU, width 400 HU, onto [0, 1].
_WINDOW_LOW, _WINDOW_WIDTH = -160.0, 400.0


@dataclass(frozen=True)
class Pool:
    """Volumes to train on and volumes to test on, each with its lesion labels.

    Attributes:
        train_images: float ``(D, H, W)`` tensors, about [0, 1] (shapes differ between volumes).
        train_labels: long ``(D, H, W)`` tensors, 0 not lesion, 1 lesion; one per image.
        test_images: float ``(D, H, W)`` tensors.
        test_labels: long ``(D, H, W)`` tensors.
        train_names, test_names: what each volume is, e.g. ``"phantom seed 1000"``.
    """

    train_images: list
    train_labels: list
    test_images: list
    test_labels: list
    train_names: list
    test_names: list


def _phantom(seed: int, lesions: int) -> tuple:
    """One phantom of a seeded shape, windowed onto [0, 1], with its 0/1 lesion labels."""
    shape = tuple(int(s) for s in torch.randint(64, 97, (3,), generator=torch.Generator().manual_seed(seed)))
    hu, labels = phantom(shape, lesions=lesions, seed=seed)
    image = scale_hu(hu, _WINDOW_WIDTH, _WINDOW_LOW, clip=(_WINDOW_LOW, _WINDOW_LOW + _WINDOW_WIDTH))
    return image, (labels > 0).long()


def template_with_lesions(seed: int, lesions: int = 3, resolution: int = 2) -> tuple:
    """The MNI152 T1 with ``lesions`` bright spheres inside the brain, placed by ``seed``.

    Centres lie at least one largest radius inside the brain mask, so every lesion is whole and in
    the brain.

    Args:
        seed: seeds the lesions' centres, radii (3 to 8 mm) and contrasts (+0.25 to +0.45).
        lesions: how many, at least 1.
        resolution: voxel size in mm, 1 or 2.

    Returns:
        ``(image, labels)``: float ``(D, H, W)`` (``(95, 117, 99)`` at 2 mm) and long ``(D, H, W)``,
        1 inside a lesion and 0 elsewhere.
    """
    if isinstance(lesions, bool) or not isinstance(lesions, int) or lesions < 1:
        raise ValueError(f"lesions must be an int of at least 1; received {lesions!r}")
    image = load_mni152(resolution)
    radii = (3.0 / resolution, 8.0 / resolution)
    brain = (anatomy.tissue_labels(resolution) > 0).float()
    # erode the mask by the largest radius: a voxel stays if no voxel outside the brain is that close
    reach = 2 * int(radii[1] + 1) + 1
    outside = torch.nn.functional.max_pool3d((1 - brain)[None, None], reach, stride=1, padding=reach // 2)[0, 0]
    generator = torch.Generator().manual_seed(int(seed))
    drawn = random_lesions(lesions, image.shape, radii, (0.25, 0.45), generator=generator, inside=outside == 0)
    labels = torch.zeros(image.shape, dtype=torch.long)
    for lesion in drawn:
        image, mask = insert_lesion(image, lesion.centre, lesion.radius, lesion.contrast)
        labels[mask] = 1
    return image, labels


def lesion_pool(
    train_phantoms: int = 4,
    train_templates: int = 2,
    test_phantoms: int = 2,
    test_templates: int = 1,
    lesions: int = 3,
    resolution: int = 2,
) -> Pool:
    """Training and test volumes for lesion segmentation (see the module's docstring).

    Training: phantoms of seeds ``0 .. train_phantoms - 1`` and template copies of seeds
    ``0 .. train_templates - 1``. Test: phantoms of seeds ``TEST_SEED .. TEST_SEED + test_phantoms - 1``
    and template copies of seeds from ``TEST_SEED`` on. Phantoms come first in each list.

    Args:
        train_phantoms, train_templates: how many of each to train on (together at least 1).
        test_phantoms, test_templates: how many of each to test on (together at least 1).
        lesions: lesions per volume, at least 1.
        resolution: the template's voxel size in mm, 1 or 2.

    Returns:
        :class:`Pool`.
    """
    counts = {
        "train_phantoms": train_phantoms,
        "train_templates": train_templates,
        "test_phantoms": test_phantoms,
        "test_templates": test_templates,
    }
    for name, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= TEST_SEED:
            raise ValueError(f"{name} must be an int from 0 to {TEST_SEED}; received {n!r}")
    if train_phantoms + train_templates < 1 or test_phantoms + test_templates < 1:
        raise ValueError(f"need at least one volume to train on and one to test on; received {counts}")
    if isinstance(lesions, bool) or not isinstance(lesions, int) or lesions < 1:
        raise ValueError(f"lesions must be an int of at least 1; received {lesions!r}")
    parts = {}
    for part, first, n_phantoms, n_templates in (
        ("train", 0, train_phantoms, train_templates),
        ("test", TEST_SEED, test_phantoms, test_templates),
    ):
        volumes = [(*_phantom(first + i, lesions), f"phantom seed {first + i}") for i in range(n_phantoms)]
        volumes += [
            (*template_with_lesions(first + i, lesions, resolution), f"template seed {first + i}")
            for i in range(n_templates)
        ]
        images, labels, names = (list(column) for column in zip(*volumes))
        parts.update({f"{part}_images": images, f"{part}_labels": labels, f"{part}_names": names})
    return Pool(**parts)


def augmentation(crop: tuple):
    """MONAI dictionary transforms for keys ``image`` and ``label`` (each ``(1, D, H, W)``).

    Like :func:`~minattn.apps.anatomy.augmentation`, except the crop: lesions fill a few thousandths
    of a volume, so half the crops are centred on a lesion voxel and half on a background voxel
    (``RandCropByPosNegLabeld``), else most crops would hold no lesion to learn from.

    Args:
        crop: ``(d, h, w)`` crop size; multiples of 32 for :class:`~minattn.SwinUNETR`.

    Returns:
        a ``monai.transforms.Compose`` that returns a list of one sample; use it through :func:`sample_crop`.
    """
    # half the crops centred on a lesion voxel (RandCropByPosNegLabeld returns a list of one sample)
    return anatomy.augmentation(crop, positive_share=0.5)


def sample_crop(transform, images: list, labels: list, seed: int, epoch: int, index: int) -> tuple:
    """One augmented crop from one volume of a pool, both picked by ``(seed, epoch, index)`` alone.

    Args:
        transform: from :func:`augmentation`.
        images: float ``(D, H, W)`` tensors, e.g. :attr:`Pool.train_images`.
        labels: long ``(D, H, W)`` tensors, one per image, values 0 and 1.
        seed, epoch, index: what the volume and the crop are derived from.

    Returns:
        ``(image, labels)``: float ``(1, d, h, w)`` and long ``(1, d, h, w)`` tensors.
    """
    if len(images) != len(labels) or not images:
        raise ValueError(f"need one label volume per image, at least one; received {len(images)} and {len(labels)}")
    state = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) * 10_007 + int(index))
    which = int(torch.randint(len(images), (1,), generator=state))
    image, label = images[which], labels[which]
    if image.shape != label.shape or image.dim() != 3:
        raise ValueError(
            f"volume {which}: image and labels must both be (D, H, W); "
            f"received {tuple(image.shape)}, {tuple(label.shape)}"
        )
    transform.set_random_state(seed=int(torch.randint(2**31 - 1, (1,), generator=state)))
    out = transform({"image": image[None], "label": label[None].float()})
    out = out[0] if isinstance(out, list) else out
    crop_image = torch.as_tensor(out["image"]).float()
    crop_labels = torch.as_tensor(out["label"]).round().long()
    return crop_image.as_subclass(torch.Tensor), crop_labels.as_subclass(torch.Tensor)
