"""Learners' answers to the SwinUNETR capstone's exercises (exercises 15), right and wrong, with their verdicts.

Also: the grader's references agree with what they stand for (MONAI's DiceMetric, the package's encoder and
its hidden states, MONAI's SwinTransformer, anatomy.hemispheres), so a learner who matches them matches those.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from learners import Attempt, assert_verdict
from monai.metrics import DiceMetric

import minattn
from minattn.apps import anatomy
from minattn.grading.topics import segmentation as topic

# ----------------------------------------------------------------------------- swin_unetr_shapes


def shapes_loop(image_size, feature_size):
    """The solution's way: halve step by step, rounding up."""
    grid = [-(-s // 2) for s in image_size]
    shapes = [(feature_size, *grid)]
    for stage in range(1, 5):
        grid = [-(-g // 2) for g in grid]
        shapes.append((feature_size * 2**stage, *grid))
    return shapes


def shapes_closed_form(image_size, feature_size):
    """Each level straight from the image: ceil(s / 2**(level + 1)), as a tuple of torch.Size."""
    return tuple(
        torch.Size([feature_size * 2**level, *(math.ceil(s / 2 ** (level + 1)) for s in image_size)])
        for level in range(5)
    )


def shapes_numpy(image_size, feature_size):
    """numpy integers, a list of lists."""
    sizes = np.array(image_size)
    return [[np.int64(feature_size * 2**k), *np.ceil(sizes / 2 ** (k + 1)).astype(np.int64)] for k in range(5)]


def shapes_floor(image_size, feature_size):
    return [(feature_size * 2**k, *(s // 2 ** (k + 1) for s in image_size)) for k in range(5)]


def shapes_no_patch(image_size, feature_size):
    return [(feature_size * 2**k, *(-(-s // 2**k) for s in image_size)) for k in range(5)]


def shapes_not_merged(image_size, feature_size):
    return [(feature_size * 2**k, *(s // 2 for s in image_size)) for k in range(5)]


def shapes_same_channels(image_size, feature_size):
    return [(feature_size, *shape[1:]) for shape in shapes_loop(image_size, feature_size)]


def shapes_channels_ahead(image_size, feature_size):
    return [(2 * shape[0], *shape[1:]) for shape in shapes_loop(image_size, feature_size)]


def shapes_channels_last(image_size, feature_size):
    return [(*shape[1:], shape[0]) for shape in shapes_loop(image_size, feature_size)]


def shapes_four_stages_only(image_size, feature_size):
    return shapes_loop(image_size, feature_size)[1:]


def shapes_hard_coded(image_size, feature_size):
    return [(48, 48, 48, 48), (96, 24, 24, 24), (192, 12, 12, 12), (384, 6, 6, 6), (768, 3, 3, 3)]


def shapes_by_running_the_encoder(image_size, feature_size):
    encoder = minattn.SwinEncoder(1, feature_size, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2)
    with torch.no_grad():
        return [tuple(h.shape[1:]) for h in encoder(torch.zeros(1, 1, *image_size))]


def shapes_graders_own(image_size, feature_size):
    return topic.swin_unetr_shapes(image_size, feature_size)


# ----------------------------------------------------------------------------- dice_per_class


def dice_one_hot(prediction, labels, num_classes):
    """One-hot volumes, sums over the voxels, NaN where the ground truth lacks the class."""
    p = F.one_hot(prediction.reshape(-1), num_classes)[:, 1:].float()
    t = F.one_hot(labels.reshape(-1), num_classes)[:, 1:].float()
    dice = 2 * (p * t).sum(0) / (p.sum(0) + t.sum(0))
    return torch.where(t.sum(0) > 0, dice, torch.nan)


def dice_loop(prediction, labels, num_classes):
    """A loop over the classes, float64 inside, cast to float32 at the end."""
    out = []
    for c in range(1, num_classes):
        p, t = prediction == c, labels == c
        n_t = t.sum().double()
        out.append(2 * (p & t).sum().double() / (p.sum() + n_t) if n_t > 0 else torch.tensor(math.nan))
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in out]).float().to(labels.device)


def dice_bincount(prediction, labels, num_classes):
    """Counts with bincount: the overlap is where both agree on the class."""
    p = prediction.reshape(-1)
    t = labels.reshape(-1)
    n_p = torch.bincount(p, minlength=num_classes)
    n_t = torch.bincount(t, minlength=num_classes)
    both = torch.bincount(t[p == t], minlength=num_classes)
    dice = (2 * both / (n_p + n_t)).float()
    return torch.where(n_t > 0, dice, torch.full_like(dice, float("nan")))[1:]


def _dice_core(prediction, labels, num_classes, classes, empty="nan", kind="dice"):
    out = []
    for c in classes:
        p, t = (prediction == c).sum().item(), (labels == c).sum().item()
        both = ((prediction == c) & (labels == c)).sum().item()
        if t == 0 and empty != "naive":
            out.append({"nan": math.nan, "zero": 0.0, "scored": float(p == 0)}[empty])
        elif kind == "iou":
            out.append(both / (p + t - both))
        else:
            out.append((2 if kind == "dice" else 1) * both / (p + t) if p + t else math.nan)
    return torch.tensor(out, dtype=torch.float32, device=labels.device)


def dice_with_background(prediction, labels, num_classes):
    return _dice_core(prediction, labels, num_classes, range(num_classes))


def dice_last_dropped(prediction, labels, num_classes):
    return _dice_core(prediction, labels, num_classes, range(num_classes - 1))


def dice_mean(prediction, labels, num_classes):
    return dice_one_hot(prediction, labels, num_classes).nanmean()


def dice_iou(prediction, labels, num_classes):
    return _dice_core(prediction, labels, num_classes, range(1, num_classes), kind="iou")


def dice_no_two(prediction, labels, num_classes):
    return _dice_core(prediction, labels, num_classes, range(1, num_classes), kind="half")


def dice_naive_division(prediction, labels, num_classes):
    """2 * overlap / total, no thought for empty classes: NaN (0 / 0) only when both lack the class."""
    p = F.one_hot(prediction.reshape(-1), num_classes)[:, 1:].float()
    t = F.one_hot(labels.reshape(-1), num_classes)[:, 1:].float()
    return 2 * (p * t).sum(0) / (p.sum(0) + t.sum(0))


def dice_empty_zero(prediction, labels, num_classes):
    return _dice_core(prediction, labels, num_classes, range(1, num_classes), empty="zero")


def dice_smoothed(prediction, labels, num_classes):
    """A smoothing term, as in a Dice loss: 1 where both lack the class, about 0 where only the prediction has it."""
    p = F.one_hot(prediction.reshape(-1), num_classes)[:, 1:].float()
    t = F.one_hot(labels.reshape(-1), num_classes)[:, 1:].float()
    return (2 * (p * t).sum(0) + 1e-6) / (p.sum(0) + t.sum(0) + 1e-6)


def dice_swapped(prediction, labels, num_classes):
    return dice_one_hot(labels, prediction, num_classes)


def dice_ones(prediction, labels, num_classes):
    return torch.ones(num_classes - 1, device=labels.device)


def dice_list(prediction, labels, num_classes):
    return dice_one_hot(prediction, labels, num_classes).tolist()


def dice_monai(prediction, labels, num_classes):
    metric = DiceMetric(include_background=False)
    p = F.one_hot(prediction, num_classes).movedim(-1, 0)[None].float()
    t = F.one_hot(labels, num_classes).movedim(-1, 0)[None].float()
    return metric(p, t)[0]


def dice_through_evaluate(prediction, labels, num_classes):
    """The training module's evaluate, with a 'model' that returns the prediction as logits."""
    from minattn.apps import segmentation

    class Echo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return F.one_hot(x[:, 0].long(), num_classes).movedim(-1, 1).float()

    return segmentation.evaluate(Echo(), prediction.float(), labels, tuple(labels.shape))


def dice_graders_own(prediction, labels, num_classes):
    return topic.dice_per_class(prediction, labels, num_classes)


# ----------------------------------------------------------------------------- mirror_split


def mirror_slices(volume, midline):
    left = volume[..., :midline]
    right = volume[..., midline + 1 :]
    return left, torch.flip(right, dims=(-1,))


def mirror_index_select(volume, midline):
    """Columns picked by index: the second half read from the outer edge inwards."""
    w = volume.shape[-1]
    left = torch.arange(midline, device=volume.device)
    right = torch.arange(w - 1, midline, -1, device=volume.device)
    return volume.index_select(-1, left), volume.index_select(-1, right)


def mirror_numpy(volume, midline):
    """A numpy round trip, back to the input's dtype and device."""
    array = volume.cpu().numpy()
    halves = array[..., :midline], np.flip(array[..., midline + 1 :], axis=-1)
    return tuple(torch.from_numpy(h.copy()).to(volume.device) for h in halves)


def mirror_midline_left(volume, midline):
    return volume[..., : midline + 1], volume[..., midline + 1 :].flip(-1)


def mirror_midline_right(volume, midline):
    return volume[..., :midline], volume[..., midline:].flip(-1)


def mirror_not_flipped(volume, midline):
    return volume[..., :midline], volume[..., midline + 1 :]


def mirror_flip_h(volume, midline):
    return volume[..., :midline], volume[..., midline + 1 :].flip(-2)


def mirror_split_d(volume, midline):
    return volume[:midline], volume[midline + 1 :].flip(0)


def mirror_both(volume, midline):
    return volume[..., :midline].flip(-1), volume[..., midline + 1 :].flip(-1)


def mirror_swapped(volume, midline):
    return volume[..., midline + 1 :].flip(-1), volume[..., :midline]


def mirror_middle(volume, midline):
    w = volume.shape[-1]
    return volume[..., : w // 2], volume[..., w // 2 + 1 :].flip(-1)


def mirror_identity(volume, midline):
    return volume, volume


def mirror_hemispheres(volume, midline):
    halves = anatomy.hemispheres()
    return halves.train_image, halves.test_image


def mirror_graders_own(volume, midline):
    return topic.mirror_split(volume, midline)


# ----------------------------------------------------------------------------- encoder_forward


def encoder_solution(encoder, x):
    h = encoder.patch_embed(x, as_grid=True)
    if encoder.patch_norm is not None:
        h = encoder.patch_norm(h)
    hidden = [h]
    for stage in encoder.stages:
        h = stage(h)
        hidden.append(h)
    return [rearrange(F.layer_norm(h, h.shape[-1:]), "b d h w c -> b c d h w") for h in hidden]


def encoder_by_hand(encoder, x):
    """Blocks and merging called one by one, the LayerNorm written with mean and variance, permute."""
    h = encoder.patch_embed(x, as_grid=True)
    if encoder.patch_norm is not None:
        h = encoder.patch_norm(h)
    hidden = [h]
    for stage in encoder.stages:
        for block in stage.blocks:
            h = block(h)
        h = stage.downsample(h)
        hidden.append(h)
    out = []
    for h in hidden:
        mean = h.mean(-1, keepdim=True)
        var = h.var(-1, unbiased=False, keepdim=True)
        out.append(((h - mean) / torch.sqrt(var + 1e-5)).permute(0, 4, 1, 2, 3))
    return out


def encoder_conv_then_grid(encoder, x):
    """The patch embedding's convolution by hand (Conv3d with stride = kernel), then channels-last."""
    conv_weight = encoder.patch_embed.conv_weight()
    bias = encoder.patch_embed.proj.bias
    h = F.conv3d(x, conv_weight, bias, stride=2).movedim(1, -1)
    if encoder.patch_norm is not None:
        h = encoder.patch_norm(h)
    hidden = [h]
    for stage in encoder.stages:
        hidden.append(stage(hidden[-1]))
    return [F.layer_norm(h, h.shape[-1:]).movedim(-1, 1) for h in hidden]


def _hidden(encoder, x, patch_norm=True, before_merge=False, feed_normalised=False):
    h = encoder.patch_embed(x, as_grid=True)
    if patch_norm and encoder.patch_norm is not None:
        h = encoder.patch_norm(h)
    hidden = [h]
    for stage in encoder.stages:
        if feed_normalised:
            h = F.layer_norm(h, h.shape[-1:])
        if before_merge:
            for block in stage.blocks:
                h = block(h)
            hidden.append(h)
            h = stage.downsample(h)
        else:
            h = stage(h)
            hidden.append(h)
    return hidden


def encoder_not_normalised(encoder, x):
    return [h.movedim(-1, 1) for h in _hidden(encoder, x)]


def encoder_normalised_over_w(encoder, x):
    maps = [h.movedim(-1, 1) for h in _hidden(encoder, x)]
    return [F.layer_norm(m, m.shape[-1:]) for m in maps]


def encoder_normalised_whole(encoder, x):
    return [F.layer_norm(h, h.shape[1:]).movedim(-1, 1) for h in _hidden(encoder, x)]


def encoder_no_patch_norm(encoder, x):
    return [F.layer_norm(h, h.shape[-1:]).movedim(-1, 1) for h in _hidden(encoder, x, patch_norm=False)]


def encoder_feeds_normalised(encoder, x):
    return [F.layer_norm(h, h.shape[-1:]).movedim(-1, 1) for h in _hidden(encoder, x, feed_normalised=True)]


def encoder_before_merge(encoder, x):
    return [F.layer_norm(h, h.shape[-1:]).movedim(-1, 1) for h in _hidden(encoder, x, before_merge=True)]


def encoder_channels_last(encoder, x):
    return [F.layer_norm(h, h.shape[-1:]) for h in _hidden(encoder, x)]


def encoder_without_hidden_0(encoder, x):
    return encoder_solution(encoder, x)[1:]


def encoder_last_map_only(encoder, x):
    return encoder_solution(encoder, x)[-1]


def encoder_package(encoder, x):
    return encoder(x)


def encoder_package_forward(encoder, x):
    return encoder.forward(x, normalize=True)


# ----------------------------------------------------------------------------- the attempts

ATTEMPTS = [
    # swin_unetr_shapes
    Attempt("swin_unetr_shapes", "halve step by step, rounding up", shapes_loop, "right"),
    Attempt("swin_unetr_shapes", "closed form with math.ceil, torch.Size", shapes_closed_form, "right"),
    Attempt("swin_unetr_shapes", "numpy integers in lists", shapes_numpy, "right"),
    Attempt("swin_unetr_shapes", "floor division", shapes_floor, "bug", names="merge_rounds_down"),
    Attempt("swin_unetr_shapes", "patch embedding not halving", shapes_no_patch, "bug", "patch_embedding_not_halving"),
    Attempt("swin_unetr_shapes", "stages keep the grid", shapes_not_merged, "bug", names="grid_not_merged"),
    Attempt("swin_unetr_shapes", "channels stay F", shapes_same_channels, "bug", names="channels_not_doubled"),
    Attempt(
        "swin_unetr_shapes",
        "channels doubled at the embedding",
        shapes_channels_ahead,
        "bug",
        names="channels_one_stage_ahead",
    ),
    Attempt("swin_unetr_shapes", "(D, H, W, C)", shapes_channels_last, "bug", names="channels_last"),
    Attempt(
        "swin_unetr_shapes",
        "four states, hidden 0 left out",
        shapes_four_stages_only,
        "bug",
        says="expected a tuple of 5 results, got 4",
    ),
    Attempt("swin_unetr_shapes", "the paper's table typed in", shapes_hard_coded, "hard-coded"),
    Attempt(
        "swin_unetr_shapes",
        "runs a SwinEncoder on zeros",
        shapes_by_running_the_encoder,
        "shortcut",
        "ruled_out",
        "minattn.SwinEncoder",
    ),
    Attempt("swin_unetr_shapes", "the grader's reference", shapes_graders_own, "shortcut", "ruled_out"),
    # dice_per_class
    Attempt("dice_per_class", "one-hot sums, torch.where", dice_one_hot, "right"),
    Attempt("dice_per_class", "a loop over classes, float64 inside", dice_loop, "right"),
    Attempt("dice_per_class", "bincount", dice_bincount, "right"),
    Attempt("dice_per_class", "background kept", dice_with_background, "bug", names="background_included"),
    Attempt("dice_per_class", "classes 0 to C - 2", dice_last_dropped, "bug", names="last_class_dropped"),
    Attempt("dice_per_class", "the mean over classes", dice_mean, "bug", names="averaged_over_classes"),
    Attempt("dice_per_class", "intersection over union", dice_iou, "bug", names="iou_not_dice"),
    Attempt("dice_per_class", "no factor 2", dice_no_two, "bug", names="no_factor_two"),
    Attempt(
        "dice_per_class", "plain 2 * overlap / total", dice_naive_division, "bug", names="nan_only_when_both_absent"
    ),
    Attempt("dice_per_class", "0 for an absent class", dice_empty_zero, "bug", names="absent_class_zero"),
    Attempt("dice_per_class", "smoothed like a Dice loss", dice_smoothed, "bug", names="absent_class_scored"),
    Attempt("dice_per_class", "arguments swapped", dice_swapped, "bug", names="arguments_swapped"),
    Attempt("dice_per_class", "all ones", dice_ones, "hard-coded"),
    Attempt("dice_per_class", "a list of floats", dice_list, "wrong type", says="it should return a torch.Tensor"),
    Attempt("dice_per_class", "MONAI's DiceMetric", dice_monai, "shortcut", "ruled_out", "MONAI's Dice"),
    Attempt(
        "dice_per_class",
        "segmentation.evaluate with an echo model",
        dice_through_evaluate,
        "shortcut",
        "ruled_out",
        "minattn.apps.segmentation.evaluate",
    ),
    Attempt("dice_per_class", "the grader's reference", dice_graders_own, "shortcut", "ruled_out"),
    # mirror_split
    Attempt("mirror_split", "slices and torch.flip", mirror_slices, "right"),
    Attempt("mirror_split", "index_select with reversed indices", mirror_index_select, "right"),
    Attempt("mirror_split", "numpy round trip", mirror_numpy, "right"),
    Attempt("mirror_split", "midline in the left half", mirror_midline_left, "bug", names="midline_in_left"),
    Attempt("mirror_split", "midline in the right half", mirror_midline_right, "bug", names="midline_in_right"),
    Attempt("mirror_split", "not mirrored", mirror_not_flipped, "bug", names="not_mirrored"),
    Attempt("mirror_split", "flipped along H", mirror_flip_h, "bug", names="flipped_wrong_axis"),
    Attempt("mirror_split", "cut along D", mirror_split_d, "bug", names="split_wrong_axis"),
    Attempt("mirror_split", "both halves flipped", mirror_both, "bug", names="both_mirrored"),
    Attempt("mirror_split", "halves swapped", mirror_swapped, "bug", names="halves_swapped"),
    Attempt("mirror_split", "cut at W // 2", mirror_middle, "bug", names="midline_ignored"),
    Attempt("mirror_split", "the volume twice", mirror_identity, "hard-coded"),
    Attempt(
        "mirror_split",
        "anatomy.hemispheres()",
        mirror_hemispheres,
        "shortcut",
        "ruled_out",
        "minattn.apps.anatomy.hemispheres",
    ),
    Attempt("mirror_split", "the grader's reference", mirror_graders_own, "shortcut", "ruled_out"),
    # encoder_forward
    Attempt("encoder_forward", "stages, F.layer_norm, einops", encoder_solution, "right"),
    Attempt("encoder_forward", "blocks and merging one by one, LayerNorm by hand", encoder_by_hand, "right"),
    Attempt("encoder_forward", "the patch convolution by hand, movedim", encoder_conv_then_grid, "right"),
    Attempt("encoder_forward", "not normalised", encoder_not_normalised, "bug", names="not_normalised"),
    Attempt("encoder_forward", "normalised over W", encoder_normalised_over_w, "bug", names="normalised_over_w"),
    Attempt(
        "encoder_forward",
        "normalised over the whole map",
        encoder_normalised_whole,
        "bug",
        names="normalised_whole_map",
    ),
    Attempt("encoder_forward", "patch norm skipped", encoder_no_patch_norm, "bug", names="patch_norm_skipped"),
    Attempt(
        "encoder_forward", "normalised maps fed on", encoder_feeds_normalised, "bug", names="normalised_stage_input"
    ),
    Attempt("encoder_forward", "states before merging", encoder_before_merge, "bug", names="hidden_before_merging"),
    Attempt("encoder_forward", "channels-last maps", encoder_channels_last, "bug", names="channels_last"),
    Attempt(
        "encoder_forward",
        "hidden state 0 left out",
        encoder_without_hidden_0,
        "bug",
        says="expected a tuple of 5 results, got 4",
    ),
    Attempt(
        "encoder_forward",
        "the bottleneck only",
        encoder_last_map_only,
        "wrong type",
        says="it should return a tuple of 5 results",
    ),
    Attempt("encoder_forward", "encoder(x)", encoder_package, "shortcut", "ruled_out", "minattn.SwinEncoder"),
    Attempt("encoder_forward", "encoder.forward(x)", encoder_package_forward, "shortcut", "ruled_out"),
    # bottleneck_tokens_96
    Attempt("bottleneck_tokens_96", "96 / 32 per axis, cubed", (96 // 32) ** 3, "right"),
    Attempt("bottleneck_tokens_96", "as a float", 96**3 / 32**3, "right"),
    Attempt("bottleneck_tokens_96", "from a shapes table", math.prod(shapes_loop((96, 96, 96), 48)[-1][1:]), "right"),
    Attempt("bottleneck_tokens_96", "6^3", 6**3, "bug", names="one_halving_short"),
    Attempt("bottleneck_tokens_96", "48^3", 48**3, "bug", names="patch_only"),
    Attempt("bottleneck_tokens_96", "voxels / 32", 96**3 // 32, "bug", names="voxels_over_32"),
    Attempt("bottleneck_tokens_96", "one axis", 3, "bug", names="one_axis"),
    Attempt("bottleneck_tokens_96", "tokens x channels", 27 * 768, "bug", names="counted_numbers"),
    Attempt("bottleneck_tokens_96", "a guess", 64, "hard-coded"),
    # dice_csf_by_hand
    Attempt("dice_csf_by_hand", "2 * 600 / (1000 + 800)", 2 * 600 / (1000 + 800), "right"),
    Attempt("dice_csf_by_hand", "rounded to 0.667", 0.667, "right"),
    Attempt("dice_csf_by_hand", "a numpy float32", np.float32(2 / 3), "right"),
    Attempt("dice_csf_by_hand", "600 / 1200", 600 / 1200, "bug", names="iou"),
    Attempt("dice_csf_by_hand", "600 / 1800", 600 / 1800, "bug", names="no_factor_two"),
    Attempt("dice_csf_by_hand", "600 / 1000", 0.6, "bug", names="recall"),
    Attempt("dice_csf_by_hand", "600 / 800", 0.75, "bug", names="precision"),
    Attempt("dice_csf_by_hand", "in percent", 66.67, "bug", names="percent"),
    Attempt("dice_csf_by_hand", "a guess", 0.7, "hard-coded"),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt, timeout=30.0)


# ----------------------------------------------------------------------------- the references are what they stand for


def test_shapes_reference_is_the_encoders_and_monais():
    from monai.networks.nets.swin_unetr import SwinTransformer

    for image, feature_size in [((64, 96, 32), 12), ((48, 80, 112), 6), ((40, 56, 24), 6)]:
        expected = topic.swin_unetr_shapes(image, feature_size)
        ours = minattn.SwinEncoder(1, feature_size, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=3)
        theirs = SwinTransformer(1, feature_size, (3, 3, 3), (2, 2, 2), (1, 1, 1, 1), (1, 1, 1, 1))
        x = torch.zeros(1, 1, *image)
        with torch.no_grad():
            assert [tuple(h.shape[1:]) for h in ours(x)] == expected
            assert [tuple(h.shape[1:]) for h in theirs(x)] == expected


def test_shapes_of_the_paper_configuration():
    assert topic.swin_unetr_shapes((96, 96, 96), 48) == [
        (48, 48, 48, 48),
        (96, 24, 24, 24),
        (192, 12, 12, 12),
        (384, 6, 6, 6),
        (768, 3, 3, 3),
    ]


def test_dice_reference_equals_monais_dice_metric_on_every_hidden_case():
    for case in topic.dice_cases(torch.device("cpu")):
        prediction, labels, num_classes = case.args
        ours = topic.dice_per_class(prediction, labels, num_classes)
        metric = DiceMetric(include_background=False)
        one_hot = [F.one_hot(v, num_classes).movedim(-1, 0)[None].float() for v in (prediction, labels)]
        theirs = metric(*one_hot)[0]
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, theirs, equal_nan=True, msg=case.label)
    absent = [c for c in topic.dice_cases(torch.device("cpu")) if "absent" in c.label]
    assert absent and torch.isnan(topic.dice_per_class(*absent[0].args)).sum() == 2  # classes 3 and 4


def test_mirror_split_reference_cuts_the_template_as_hemispheres_does():
    halves = anatomy.hemispheres()
    image, labels = minattn.data.load_mni152(), anatomy.tissue_labels()
    for volume, train, test in (
        (image, halves.train_image, halves.test_image),
        (labels, halves.train_labels, halves.test_labels),
    ):
        left, right = topic.mirror_split(volume, halves.midline)
        assert torch.equal(left, train) and torch.equal(right, test)


def test_every_hidden_encoder_case_differs_from_each_bug_somewhere():
    """Each bug of encoder_forward shows on a hidden case (patch norm on and off, odd grids before a merge)."""
    cases = topic.encoder_cases(torch.device("cpu"))
    assert any(c.args[0].patch_norm is not None for c in cases) and any(c.args[0].patch_norm is None for c in cases)
    for bug in topic.ENCODER_BUGS:
        shown = False
        for case in cases:
            expected = topic.encoder_forward(*case.args)
            ((output, _),) = bug.variants(case)
            shown |= any(o.shape != e.shape or not torch.allclose(o, e, atol=1e-4) for o, e in zip(output, expected))
        assert shown, bug.key
