"""Attention as a microscope (lesson 09): the chance share of a lesion, rollout and the shifted corner by hand,
the lesion attention ratio learners write, with its hidden cases, bugs and ruled-out calls, and the lesson's
concept questions."""

from __future__ import annotations

import math

import torch

from ...apps import microscope as ms
from ...data import lesion_mask
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
    case_dtype,
)

# ----------------------------------------------------------------------------- value exercises

_SHAPE, _CENTRE, _RADIUS = (32, 32, 32), (16, 16, 16), 4


def _share(radius=_RADIUS) -> float:
    mask = lesion_mask(_SHAPE, _CENTRE, radius)
    return int(mask.sum()) / mask.numel()


def _layers() -> list[torch.Tensor]:
    a1 = torch.tensor([[0.6, 0.4], [0.2, 0.8]], dtype=F64)
    a2 = torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=F64)
    return [a1, a2]


def _renormalised(a: torch.Tensor) -> torch.Tensor:
    a = a + torch.eye(a.shape[-1], dtype=a.dtype)
    return a / a.sum(-1, keepdim=True)


def _rollout_entry() -> float:
    return float(ms.attention_rollout(_layers())[1, 0])


def _corner_slot() -> int:
    ids, _, _, _ = ms.window_token_ids((8, 8, 8), 4, 2)
    return int((ids[7] == 0).nonzero()[0])


def _wrong_rollout(kind: str) -> float:
    a1, a2 = _layers()
    if kind == "order":
        return float((_renormalised(a1) @ _renormalised(a2))[1, 0])
    if kind == "no_residual":
        return float((a2 @ a1)[1, 0])
    if kind == "transposed":
        return float(ms.attention_rollout(_layers())[0, 1])
    eye = torch.eye(2, dtype=F64)
    return float(((a2 + eye) @ (a1 + eye))[1, 0])


VALUES = [
    ValueExercise(
        "lesion_chance_share",
        "share of a 32^3 volume filled by a radius-4 lesion mask",
        _share,
        unit=None,
        rel_tol=1e-6,
        wrong=(
            WrongAnswer(
                "sphere_formula",
                lambda: 4 / 3 * math.pi * _RADIUS**3 / math.prod(_SHAPE),
                "that is the volume of the continuous ball, (4/3) pi r^3, over 32^3; the mask is made of whole voxels. "
                "Count the True voxels of lesion_mask((32, 32, 32), (16, 16, 16), 4) instead.",
            ),
            WrongAnswer(
                "cube",
                lambda: (2 * _RADIUS + 1) ** 3 / math.prod(_SHAPE),
                "that is a cube of side 2r + 1 = 9 voxels; the lesion is a ball, which fills about half of its "
                "bounding cube. Count the True voxels of the mask.",
            ),
            WrongAnswer(
                "cube_2r",
                lambda: (2 * _RADIUS) ** 3 / math.prod(_SHAPE),
                "that is a cube of side 2r = 8 voxels; the lesion is a ball. Count the True voxels of the mask.",
            ),
            WrongAnswer(
                "percent",
                lambda: 100 * _share(),
                "that is a percentage; the question asks for a fraction (0.01 for 1 %): divide by 100.",
            ),
            WrongAnswer(
                "voxel_count",
                lambda: int(lesion_mask(_SHAPE, _CENTRE, _RADIUS).sum()),
                "that is the number of lesion voxels; divide it by the number of voxels in the volume.",
            ),
            WrongAnswer(
                "diameter_as_radius",
                lambda: _share(_RADIUS / 2),
                "that is the share of a ball of radius 2: the radius is 4 voxels (the diameter is 8).",
            ),
            WrongAnswer(
                "outside",
                lambda: 1 - _share(),
                "that is the share of the voxels outside the lesion; the question asks for the share inside.",
            ),
        ),
    ),
    ValueExercise(
        "rollout_two_layers_r10",
        "R[1, 0] of the rollout of the two layers A1 then A2",
        _rollout_entry,
        unit=None,
        rel_tol=1e-6,
        wrong=(
            WrongAnswer(
                "wrong_order",
                lambda: _wrong_rollout("order"),
                "the layers are chained in the wrong order: the later layer multiplies from the left, "
                "R = Ã2 @ Ã1, not Ã1 @ Ã2.",
            ),
            WrongAnswer(
                "no_residual",
                lambda: _wrong_rollout("no_residual"),
                "the residual was left out: rollout adds the identity to each layer and renormalises the rows, "
                "Ã = (A + I) / rowsum(A + I), before multiplying.",
            ),
            WrongAnswer(
                "transposed",
                lambda: _wrong_rollout("transposed"),
                "that is R[0, 1] (output token 0 from input token 1); the question asks for row 1, column 0.",
            ),
            WrongAnswer(
                "not_renormalised",
                lambda: _wrong_rollout("not_renormalised"),
                "A + I was not renormalised: its rows sum to 2, so divide each layer by 2 before multiplying "
                "(a share can never exceed 1).",
            ),
        ),
    ),
    ValueExercise(
        "shifted_corner_slot",
        "slot of window 7 holding token (0, 0, 0) in the shifted block",
        _corner_slot,
        unit=None,
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "one_based",
                lambda: _corner_slot() + 1,
                "slots are numbered from 0, not 1.",
            ),
            WrongAnswer(
                "rolled_grid_index",
                lambda: 6 * 64 + 6 * 8 + 6,
                "that is the token's flat index on the rolled 8^3 grid, position (6, 6, 6); the slot is its position "
                "inside its window, (6 mod 4, 6 mod 4, 6 mod 4), numbered row-major over the 4^3 window.",
            ),
            WrongAnswer(
                "grid_strides",
                lambda: 2 * 64 + 2 * 8 + 2,
                "the position inside the window, (2, 2, 2), was flattened with the grid's strides (64, 8, 1); "
                "inside a 4^3 window the strides are (16, 4, 1).",
            ),
            WrongAnswer(
                "window_coordinates",
                lambda: 1 * 16 + 1 * 4 + 1,
                "that flattens (1, 1, 1), the window's coordinates (6 // 4 per axis); the slot comes from the "
                "remainders, 6 mod 4 = 2 per axis.",
            ),
            WrongAnswer(
                "no_roll",
                lambda: 0,
                "without the roll the corner token would sit in slot 0 of window 0; the shifted block rolls the grid "
                "by -2 first, so the token moves to position (0 - 2) mod 8 = 6 along each axis.",
            ),
            WrongAnswer(
                "last_slot",
                lambda: 4**3 - 1,
                "that is the window's last slot, (3, 3, 3); the rolled position 6 is not at the end of its window: "
                "6 mod 4 = 2 along each axis.",
            ),
            WrongAnswer(
                "window_number",
                lambda: 7,
                "7 is the window's number; the question asks for the slot inside window 7.",
            ),
        ),
    ),
]


# ----------------------------------------------------------------------------- lesion_ratio


def lesion_ratio(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The reference: minattn's own ratio, per volume, in the maps' dtype and on their device."""
    return ms.lesion_attention_ratio(maps, masks).per_volume.to(device=maps.device, dtype=maps.dtype)


def _ball_masks(shape, lesions, device) -> torch.Tensor:
    """Masks ``(B, D, H, W)``: one ball (or ellipsoid) per volume, ``lesions`` = [(centre, radius), ...]."""
    return torch.stack([lesion_mask(shape, centre, radius) for centre, radius in lesions]).to(device)


def _lumpy(g, shape, dtype, device, scale=1.0, power=4) -> torch.Tensor:
    """A non-negative, uneven map that does not sum to 1."""
    x = torch.rand(shape, generator=g, dtype=F64) ** power * scale
    return x.to(device=device, dtype=case_dtype(dtype, device))


def lesion_ratio_cases(device):
    g = torch.Generator().manual_seed(9)
    fixed_map = torch.arange(1.0, 61.0, dtype=F64).reshape(1, 3, 4, 5).to(device, case_dtype(F64, device))
    fixed_mask = torch.zeros(1, 3, 4, 5, dtype=torch.bool)
    fixed_mask[0, 1, 2, 1:4] = True
    fixed_mask[0, 2, 3, 4] = True

    two = _lumpy(g, (2, 6, 5, 4), F64, device, scale=7.3)
    two_masks = _ball_masks((6, 5, 4), [((2, 2, 1), 1.5), ((4, 1, 2), 2.2)], device)
    two = torch.where(two_masks, two * 3, two)

    three = _lumpy(g, (3, 8, 6, 7), F32, device, scale=0.01)
    three_masks = _ball_masks((8, 6, 7), [((3, 2, 3), 2.0), ((5, 4, 2), 1.2), ((1, 3, 5), 2.6)], device)

    inside_only = torch.zeros(1, 5, 7, 3, dtype=F64)
    inside_mask = _ball_masks((5, 7, 3), [((2, 4, 1), 1.6)], "cpu")
    inside_only[inside_mask] = torch.rand(int(inside_mask.sum()), generator=g, dtype=F64) + 0.5
    inside_only = inside_only.to(device, case_dtype(F64, device))

    flat = torch.full((2, 4, 7, 6), 0.25, dtype=F64).to(device, case_dtype(F32, device))
    flat_masks = _ball_masks((4, 7, 6), [((1, 3, 2), 1.8), ((2, 5, 4), 1.1)], device)

    four = _lumpy(g, (4, 5, 9, 6), F64, device, scale=40.0, power=2)
    four_masks = _ball_masks(
        (5, 9, 6), [((2, 4, 3), 2.0), ((1, 2, 1), 1.0), ((3, 6, 4), 2.5), ((2, 8, 5), 1.4)], device
    )
    four = torch.where(four_masks, four * 0.2, four)  # less mass inside: ratios below 1

    return [
        Case(
            "one 3 x 4 x 5 volume, map 1..60 (sums to 1830), 4 lesion voxels (float64)",
            (fixed_map, fixed_mask.to(device)),
        ),
        Case("2 volumes of 6 x 5 x 4, lumpy maps, 3x more mass in the lesions (float64)", (two, two_masks)),
        Case(
            "3 volumes of 8 x 6 x 7, small maps (total mass ~0.7), lesions of different sizes (float32)",
            (three, three_masks),
        ),
        Case("1 volume of 5 x 7 x 3, all the mass inside the lesion (float64)", (inside_only, inside_mask.to(device))),
        Case("2 volumes of 4 x 7 x 6, a flat map (ratio 1) (float32)", (flat, flat_masks)),
        Case("4 volumes of 5 x 9 x 6, less mass inside than outside (float64)", (four, four_masks)),
    ]


def _ratio_variant(formula):
    """A wrong ratio per volume: ``formula(maps, masks)`` on (B, V) flattened maps and float masks."""

    def variants(case):
        maps, masks = case.args
        flat_maps = maps.flatten(1).to(F64)
        flat_masks = masks.flatten(1).to(F64)
        yield formula(flat_maps, flat_masks).to(maps.dtype), {}

    return variants


def _share_inside(m, k):
    return (m * k).sum(1) / m.sum(1)


def _pooled_variants(case):
    maps, masks = case.args
    m, k = maps.to(F64), masks.to(F64)
    pooled = ((m * k).sum() / m.sum()) / k.mean()
    yield pooled.to(maps.dtype), {}
    yield pooled.expand(maps.shape[0]).to(maps.dtype), {}


LESION_RATIO_BUGS = [
    Bug(
        "mass_not_normalised",
        "the mass inside the lesion was not divided by the map's total mass, so the answer depends on how the map is "
        "scaled (these maps do not sum to 1).",
        "share inside = (map * mask).sum() / map.sum() per volume, then divide by the lesion's share of the voxels.",
        _ratio_variant(lambda m, k: (m * k).sum(1) / k.mean(1)),
    ),
    Bug(
        "no_chance",
        "you returned the share of the mass inside the lesion without dividing it by chance, the lesion's share of "
        "the voxels.",
        "ratio = share inside / mask.mean() (the fraction of the volume's voxels in the lesion).",
        _ratio_variant(_share_inside),
    ),
    Bug(
        "inverted",
        "the ratio is upside down: chance divided by the share inside.",
        "ratio = (share of the mass inside) / (share of the voxels inside).",
        _ratio_variant(lambda m, k: k.mean(1) / _share_inside(m, k)),
    ),
    Bug(
        "divided_by_voxel_count",
        "the share inside was divided by the number of lesion voxels, not by their fraction of the volume.",
        "divide by mask.mean() per volume (lesion voxels / all voxels), not by mask.sum().",
        _ratio_variant(lambda m, k: _share_inside(m, k) / k.sum(1)),
    ),
    Bug(
        "batch_chance",
        "chance was taken over the whole batch (all volumes' voxels together); each volume has its own lesion, so "
        "its own chance share.",
        "reduce over the voxel axes of each volume only, e.g. masks.flatten(1).float().mean(1).",
        _ratio_variant(lambda m, k: _share_inside(m, k) / k.mean()),
    ),
    Bug(
        "pooled_over_batch",
        "the batch was pooled into one ratio; the function returns one ratio per volume, shape (B,).",
        "flatten each volume (maps.flatten(1)) and sum along dim=1, so every volume keeps its own numbers.",
        _pooled_variants,
    ),
]

LESION_RATIO_RULED_OUT = (RuledOut("minattn.apps.microscope.lesion_attention_ratio", (ms.lesion_attention_ratio,)),)

# ----------------------------------------------------------------------------- concept questions

CONCEPTS = [
    ChoiceExercise(
        "concept_lesion_radius_chance",
        "the chance share of a lesion of radius 8 instead of 4",
        {
            "a": "about twice as large: the share grows in proportion to the radius",
            "b": "about four times as large: the share grows with the lesion's cross-section, r^2",
            "c": "about eight times as large: the share grows with the lesion's volume, r^3",
            "d": "unchanged: a map that ignores the lesion puts the same share into any lesion",
        },
        "c",
        why={
            "a": "the chance share is a count of voxels divided by the volume's voxels, and a ball's voxel count does "
            "not grow like a length. Ask how the mask grows along each axis of the volume.",
            "b": "that is how one slice through the lesion grows; the mask is a ball in 3D, and it grows along the "
            "third axis too.",
            "d": "a lesion-blind map gets a *ratio* (share inside / chance share) near 1 for every lesion; the share "
            "it puts inside is the lesion's fraction of the voxels, which depends on the lesion's size.",
        },
    ),
    ChoiceExercise(
        "concept_rollout_identity",
        "why rollout adds the identity to each layer's attention",
        {
            "a": "so that every layer's matrix is invertible and the product of the layers never vanishes",
            "b": "because the block's residual connection carries each token's own content past the attention, so "
            "part of every output token is the token itself",
            "c": "so that the rows of each layer's matrix sum to 1",
            "d": "to remove the attention each token pays to itself",
        },
        "b",
        why={
            "a": "invertibility plays no part in rollout: it only multiplies the layers' matrices, and nothing is "
            "inverted.",
            "c": "the rows of an attention matrix already sum to 1 (a softmax over the keys); adding I makes them sum "
            "to 2, which is why rollout renormalises the rows afterwards.",
            "d": "adding I raises the diagonal, the share each token draws from itself; it removes nothing.",
        },
    ),
    ChoiceExercise(
        "concept_shifted_corner_keys",
        "which keys the corner token may reach in the shifted block",
        {
            "a": "all 64 tokens of window 7, the window it lands in",
            "b": "the 8 tokens at grid positions 0 or 1 along every axis",
            "c": "the 64 tokens at grid positions 6, 7, 0 or 1 along every axis, its neighbours across the "
            "wrap-around",
            "d": "only itself, because it wrapped around the volume",
        },
        "b",
        why={
            "a": "window 7 holds tokens from both sides of the wrap-around, and the mask forbids pairs from "
            "different regions of the rolled grid: the window is not what decides.",
            "c": "positions 6 and 7 lie at the far side of the volume; the roll puts them next to the corner only by "
            "wrapping around, and keeping such pairs apart is what the mask is for.",
            "d": "the mask only forbids pairs from different regions of the rolled grid; the corner token is not "
            "alone in its region.",
        },
    ),
    ChoiceExercise(
        "concept_lesion_ratio_changes",
        "which changes alter a volume's lesion attention ratio (two are right)",
        {
            "a": "multiplying that volume's map by 10",
            "b": "moving some of the map's mass from voxels outside the lesion to voxels inside it",
            "c": "marking more voxels as lesion (growing the mask) where the map holds no mass",
            "d": "adding other volumes, with larger lesions, to the batch",
        },
        frozenset({"b", "c"}),
        why={
            "a": "the mass inside the lesion is divided by the map's own total, so a factor common to the whole map "
            "cancels.",
            "d": "each volume's chance share is its own lesion's fraction of its own voxels; the other volumes of "
            "the batch do not enter it.",
        },
    ),
    ChoiceExercise(
        "concept_untrained_control",
        "why the trained model's ratios are compared with an untrained twin's",
        {
            "a": "an untrained model's maps are uniform, so its ratio is exactly 1 and confirms the formula",
            "b": "it measures the same ratio, the same way, on the same volumes, for a model that learned nothing: a "
            "trained ratio far above it comes from training, not from the architecture or the way maps are made",
            "c": "an untrained model's attention ignores the lesion completely, so its ratio is 0: the lowest value "
            "possible",
            "d": "without the control, the maps of the trained model would not sum to 1",
        },
        "b",
        why={
            "a": "its maps are not uniform: random weights make each query favour some keys, and the windows and the "
            "shift mask limit what each query reaches; its ratios spread around 0.96 in the lesson, not exactly 1.",
            "c": "ignoring the lesion does not put zero mass in it: a map blind to the lesion puts about the lesion's "
            "share of the voxels inside, a ratio near 1.",
            "d": "every map is normalised on its own (the ratio divides by each map's total); the control plays no "
            "part in that.",
        },
    ),
]

EXERCISES = [
    *VALUES,
    FunctionExercise(
        "lesion_ratio",
        lesion_ratio,
        lesion_ratio_cases,
        "tensor",
        "lesion_ratio(maps, masks)",
        bugs=tuple(LESION_RATIO_BUGS),
        ruled_out=LESION_RATIO_RULED_OUT,
        building_blocks="sums and means over each volume's voxels",
    ),
    *CONCEPTS,
]
