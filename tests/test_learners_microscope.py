"""Learners' answers to the exercises of lesson 09 (attention as a microscope), right and wrong, with the verdict
each must get."""

import math

import numpy as np
import pytest
import torch
from learners import Attempt, assert_verdict

from minattn.apps import microscope as ms
from minattn.data import lesion_mask

# ----------------------------------------------------------------------------- values

MASK = lesion_mask((32, 32, 32), (16, 16, 16), 4)
A1 = torch.tensor([[0.6, 0.4], [0.2, 0.8]])
A2 = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
T1, T2 = (A1 + torch.eye(2)) / 2, (A2 + torch.eye(2)) / 2
IDS = ms.window_token_ids((8, 8, 8), 4, 2)[0]

VALUE_ATTEMPTS = [
    Attempt("lesion_chance_share", "mask.float().mean().item()", MASK.float().mean().item(), "right"),
    Attempt("lesion_chance_share", "a 0-d float64 tensor", MASK.double().mean(), "right"),
    Attempt("lesion_chance_share", "voxels counted, as a fraction", 257 / 32768, "right"),
    Attempt(
        "lesion_chance_share",
        "the ball's volume formula",
        4 / 3 * math.pi * 4**3 / 32**3,
        "bug",
        names="sphere_formula",
    ),
    Attempt("lesion_chance_share", "a 9^3 cube", 9**3 / 32**3, "bug", names="cube"),
    Attempt("lesion_chance_share", "a percentage", 100 * 257 / 32768, "bug", names="percent"),
    Attempt("lesion_chance_share", "the voxel count", int(MASK.sum()), "bug", names="voxel_count"),
    Attempt("lesion_chance_share", "rounded and typed in", 0.0078, "hard-coded"),
    Attempt("rollout_two_layers_r10", "(T2 @ T1)[1, 0]", (T2 @ T1)[1, 0].item(), "right"),
    Attempt("rollout_two_layers_r10", "numpy, by hand", float(np.array([0.5, 0.5]) @ np.array([0.8, 0.1])), "right"),
    Attempt("rollout_two_layers_r10", "layers in the wrong order", (T1 @ T2)[1, 0].item(), "bug", names="wrong_order"),
    Attempt("rollout_two_layers_r10", "no residual", (A2 @ A1)[1, 0].item(), "bug", names="no_residual"),
    Attempt("rollout_two_layers_r10", "R[0, 1] instead", (T2 @ T1)[0, 1].item(), "bug", names="transposed"),
    Attempt(
        "rollout_two_layers_r10",
        "A + I not renormalised",
        ((A2 + torch.eye(2)) @ (A1 + torch.eye(2)))[1, 0].item(),
        "bug",
        names="not_renormalised",
    ),
    Attempt("rollout_two_layers_r10", "a guess", 0.5, "hard-coded"),
    Attempt("shifted_corner_slot", "from window_token_ids", int((IDS[7] == 0).nonzero()[0]), "right"),
    Attempt("shifted_corner_slot", "by the rule", sum(((0 - 2) % 8 % 4) * s for s in (16, 4, 1)), "right"),
    Attempt("shifted_corner_slot", "as a float", 42.0, "right"),
    Attempt("shifted_corner_slot", "forgot the roll", 0, "bug", names="no_roll"),
    Attempt("shifted_corner_slot", "counted from 1", 43, "bug", names="one_based"),
    Attempt("shifted_corner_slot", "the grid's strides", 2 * 64 + 2 * 8 + 2, "bug", names="grid_strides"),
    Attempt("shifted_corner_slot", "the window's coordinates", 21, "bug", names="window_coordinates"),
    Attempt("shifted_corner_slot", "a non-integer", 42.5, "wrong type"),
]


# ----------------------------------------------------------------------------- lesion_ratio


def ratio_flatten(maps, masks):
    maps, masks = maps.flatten(1), masks.flatten(1)
    return ((maps * masks).sum(1) / maps.sum(1)) / masks.to(maps.dtype).mean(1)


def ratio_of_means(maps, masks):
    # mean inside / mean over the volume: the same ratio, written differently
    out = []
    for m, k in zip(maps, masks):
        out.append(m[k].mean() / m.mean())
    return torch.stack(out)


def ratio_numpy(maps, masks):
    m = maps.detach().cpu().numpy().reshape(maps.shape[0], -1).astype(np.float64)
    k = masks.cpu().numpy().reshape(masks.shape[0], -1)
    ratio = (np.where(k, m, 0.0).sum(1) / m.sum(1)) / k.mean(1)
    return torch.from_numpy(ratio).to(device=maps.device, dtype=maps.dtype)


def ratio_einsum(maps, masks):
    m = maps.double().flatten(1)
    k = masks.double().flatten(1)
    inside = torch.einsum("bv,bv->b", m, k)
    return (inside * k.shape[1] / (m.sum(1) * k.sum(1))).to(maps.dtype)


def not_normalised(maps, masks):
    maps, masks = maps.flatten(1), masks.flatten(1)
    return (maps * masks).sum(1) / masks.to(maps.dtype).mean(1)


def no_chance(maps, masks):
    maps, masks = maps.flatten(1), masks.flatten(1)
    return (maps * masks).sum(1) / maps.sum(1)


def batch_chance(maps, masks):
    m, k = maps.flatten(1), masks.flatten(1)
    return ((m * k).sum(1) / m.sum(1)) / masks.to(maps.dtype).mean()


def pooled(maps, masks):
    return ((maps * masks).sum() / maps.sum()) / masks.to(maps.dtype).mean()


def inverted(maps, masks):
    return 1 / ratio_flatten(maps, masks)


def chance_in_float32(maps, masks):
    m, k = maps.flatten(1), masks.flatten(1)
    return (((m * k).sum(1) / m.sum(1)) / k.float().mean(1)).float()


def normalises_in_place(maps, masks):
    maps /= maps.sum(dim=(1, 2, 3), keepdim=True)
    return ratio_flatten(maps, masks)


def as_python_floats(maps, masks):
    return ratio_flatten(maps, masks).tolist()


def package_ratio(maps, masks):
    return ms.lesion_attention_ratio(maps, masks).per_volume.to(maps.device, maps.dtype)


def always_chance(maps, masks):
    return torch.ones(maps.shape[0], dtype=maps.dtype, device=maps.device)


RATIO_ATTEMPTS = [
    Attempt("lesion_ratio", "flatten, sums and means", ratio_flatten, "right"),
    Attempt("lesion_ratio", "mean inside / mean of the volume, per volume", ratio_of_means, "right"),
    Attempt("lesion_ratio", "numpy round trip", ratio_numpy, "right"),
    Attempt("lesion_ratio", "einsum in float64, cast back", ratio_einsum, "right"),
    Attempt("lesion_ratio", "mass not divided by the total", not_normalised, "bug", names="mass_not_normalised"),
    Attempt("lesion_ratio", "share inside, not divided by chance", no_chance, "bug", names="no_chance"),
    Attempt("lesion_ratio", "chance over the whole batch", batch_chance, "bug", names="batch_chance"),
    Attempt("lesion_ratio", "one ratio for the whole batch", pooled, "bug", names="pooled_over_batch"),
    Attempt("lesion_ratio", "upside down", inverted, "bug", names="inverted"),
    Attempt("lesion_ratio", "normalises the maps in place", normalises_in_place, "bug", names="modified_input"),
    Attempt("lesion_ratio", "float32 whatever the maps' dtype", chance_in_float32, "wrong type", says="dtype"),
    Attempt("lesion_ratio", "a list of floats", as_python_floats, "wrong type"),
    Attempt(
        "lesion_ratio", "ms.lesion_attention_ratio", package_ratio, "shortcut", "ruled_out", "lesion_attention_ratio"
    ),
    Attempt("lesion_ratio", "1 for every volume", always_chance, "hard-coded"),
]

ATTEMPTS = VALUE_ATTEMPTS + RATIO_ATTEMPTS


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)
