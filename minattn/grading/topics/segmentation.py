"""SwinUNETR, the capstone (lesson 15): the encoder's shapes and forward, Dice per class, the hemisphere split.

Function exercises: ``swin_unetr_shapes(image_size, feature_size)`` (the shapes of the five hidden
states, by arithmetic), ``dice_per_class(prediction, labels, num_classes)`` (MONAI's ``DiceMetric``
without the background, from two label volumes), ``mirror_split(volume, midline)`` (the halves either
side of the midline, the second mirrored) and ``encoder_forward(encoder, x)`` (what
``minattn.SwinEncoder`` returns, written from its parts). Value exercises: ``bottleneck_tokens_96`` and
``dice_csf_by_hand``, whose answers are computed here with the references above. Concept questions
(:data:`CONCEPT_EXERCISES`): ``concept_dice_and_cross_entropy``, ``concept_held_out_region``,
``concept_symmetric_template`` and ``concept_sliding_window``.

Hidden images and volumes have a different extent along every axis; the encoder cases include grids
that turn odd before a merge (so the merge pads), patch norm on and off, depths of 1 and 2 blocks and
float32 and float64. The hidden encoders are built once per device and dtype with their own seed, with
LayerNorms and bias tables moved far from their initial values, so that a skipped norm shows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from ..._validate import ceil_div
from ...apps import anatomy, segmentation
from ...swin_unetr import NUM_STAGES, PATCH_SIZE, SwinEncoder, SwinUNETR
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
    graders_own,
)
from .heads import named, seeded_build
from .swin import _randomise

# ----------------------------------------------------------------------------- references


def swin_unetr_shapes(image_size, feature_size):
    """The shapes ``(C, D, H, W)`` of the five hidden states ``SwinEncoder`` returns for one image.

    Args:
        image_size: ``(D, H, W)`` of the image, each extent even.
        feature_size: channels F after the patch embedding.

    Returns:
        a list of five tuples ``(C, D, H, W)``: the patch embedding's grid (each extent halved, F
        channels), then one per stage, whose patch merging halves the grid (an odd extent is padded by
        one token first, so it rounds up) and doubles the channels.
    """
    grid = tuple(ceil_div(int(s), PATCH_SIZE) for s in image_size)
    shapes = [(int(feature_size), *grid)]
    for stage in range(1, NUM_STAGES + 1):
        grid = tuple(ceil_div(g, 2) for g in grid)
        shapes.append((int(feature_size) * 2**stage, *grid))
    return shapes


def dice_per_class(prediction, labels, num_classes):
    """Dice of every class but the background (class 0), as MONAI's ``DiceMetric(include_background=False)``.

    Args:
        prediction: long tensor of class indices, any shape (a ``(D, H, W)`` volume).
        labels: long tensor of the ground truth's class indices, the same shape.
        num_classes: the number of classes, background included.

    Returns:
        float32 ``(num_classes - 1,)`` on the inputs' device: ``2 |P & G| / (|P| + |G|)`` for classes 1, 2, ...;
        NaN for a class the ground truth lacks (MONAI's default ``ignore_empty=True``: its Dice is undefined, and
        ``nanmean`` over volumes then leaves it out), whatever the prediction holds.
    """
    classes = torch.arange(1, num_classes, device=labels.device)
    predicted = prediction.reshape(1, -1) == classes[:, None]  # (num_classes - 1, voxels)
    truth = labels.reshape(1, -1) == classes[:, None]
    overlap = (predicted & truth).sum(1).float()
    in_truth = truth.sum(1).float()
    dice = 2 * overlap / (predicted.sum(1).float() + in_truth)
    return torch.where(in_truth > 0, dice, torch.full_like(dice, math.nan))


def mirror_split(volume, midline):
    """``volume[..., :midline]`` and ``volume[..., midline + 1:]`` flipped along the last axis (W).

    As :func:`minattn.apps.anatomy.hemispheres` cuts the template: the midline column is in neither half,
    and the second half is mirrored so that it looks like the first. Returns views of ``volume``.
    """
    return volume[..., :midline], volume[..., midline + 1 :].flip(-1)


def encoder_forward(encoder: SwinEncoder, x: torch.Tensor) -> list:
    """What ``encoder(x)`` returns for a ``minattn.SwinEncoder`` (without v2 convolutions).

    Args:
        encoder: a ``SwinEncoder`` whose parts are used (``patch_embed``, ``patch_norm``, ``stages``).
        x: ``(B, C_in, D, H, W)``, extents even.

    Returns:
        a list of five channels-first maps, each LayerNorm-ed over its channels without learned parameters.
    """
    return encoder(x)


# ----------------------------------------------------------------------------- shapes: cases and bugs


def shapes_cases(device):
    return [
        Case("SwinUNETR's paper configuration: a 96 x 96 x 96 crop, F = 48", ((96, 96, 96), 48)),
        Case("a 64 x 128 x 96 image, F = 24 (MONAI's default)", ((64, 128, 96), 24)),
        Case("a 32 x 64 x 160 image, F = 12", ((32, 64, 160), 12)),
        Case("a 128 x 96 x 64 image, F = 36", ((128, 96, 64), 36)),
        Case("a 48 x 80 x 112 image, F = 16: grids turn odd, and a merge rounds up", ((48, 80, 112), 16)),
        Case("a 40 x 56 x 24 image, F = 6: odd grids along every axis", ((40, 56, 24), 6)),
    ]


def _shapes(image_size, feature_size, *, patch=True, merge=True, ceil=True, channels="doubling", order="cdhw"):
    """The shapes written out, each switch one learner's slip (the defaults give the right answer)."""
    halve = (lambda s: ceil_div(s, 2)) if ceil else (lambda s: s // 2)
    grid = tuple(halve(s) if patch else s for s in image_size)
    shapes = []
    for level in range(NUM_STAGES + 1):
        if level and merge:
            grid = tuple(halve(g) for g in grid)
        width = {"doubling": feature_size * 2**level, "same": feature_size, "ahead": feature_size * 2 ** (level + 1)}
        c = width[channels]
        shapes.append((c, *grid) if order == "cdhw" else (*grid, c))
    return shapes


def _shapes_variant(**switches):
    def variants(case):
        yield _shapes(*case.args, **switches), {}

    return variants


SHAPES_BUGS = [
    Bug(
        "patch_embedding_not_halving",
        "your grids are twice too large along every axis: the patch embedding already halves the image (2 x 2 x 2 "
        "patches), so hidden state 0 is on a grid of D/2 x H/2 x W/2, and the four merges halve it further.",
        "start from tuple(s // 2 for s in image_size) with feature_size channels.",
        _shapes_variant(patch=False),
    ),
    Bug(
        "grid_not_merged",
        "your stages keep the grid of the patch embedding: each stage ends in patch merging, which halves the grid "
        "along every axis.",
        "halve the grid once per stage, after hidden state 0.",
        _shapes_variant(merge=False),
    ),
    Bug(
        "merge_rounds_down",
        "an odd grid was halved rounding down: patch merging pads an odd extent by one token first, so the merged "
        "extent rounds up (5 tokens give 3).",
        "ceil division: -(-g // 2), or math.ceil(g / 2).",
        _shapes_variant(ceil=False),
    ),
    Bug(
        "channels_not_doubled",
        "every hidden state has feature_size channels: patch merging projects the 8C features of a 2 x 2 x 2 group "
        "to 2C, so the channels double at every stage.",
        "hidden state i has feature_size * 2**i channels.",
        _shapes_variant(channels="same"),
    ),
    Bug(
        "channels_one_stage_ahead",
        "your channels are doubled once too often: hidden state 0 comes straight from the patch embedding, with "
        "feature_size channels; only the merges double them.",
        "hidden state i has feature_size * 2**i channels, i = 0 for the patch embedding.",
        _shapes_variant(channels="ahead"),
    ),
    Bug(
        "channels_last",
        "your shapes are channels-last (D, H, W, C): the encoder returns channels-first maps, (C, D, H, W) without "
        "the batch axis.",
        "put the channels first in each tuple.",
        _shapes_variant(order="dhwc"),
    ),
]


# ----------------------------------------------------------------------------- Dice: cases and bugs


def _labels(g, shape, shares, device):
    """Seeded labels 0, 1, ... with roughly the given shares (a few voxels of each listed class at least)."""
    u = torch.rand(shape, generator=g)
    edges = torch.tensor(shares, dtype=torch.float64).cumsum(0)[:-1]
    return torch.bucketize(u.double(), edges).to(device)


def _corrupt(g, labels, fraction, num_classes, device):
    """``labels`` with about ``fraction`` of the voxels set to a random class: a network's imperfect prediction."""
    cpu = labels.cpu()
    flip = torch.rand(cpu.shape, generator=g) < fraction
    noise = torch.randint(num_classes, cpu.shape, generator=g)
    return torch.where(flip, noise, cpu).to(device)


def dice_cases(device):
    g = torch.Generator().manual_seed(151)

    def pair(shape, shares, fraction):
        labels = _labels(g, shape, shares, device)
        return _corrupt(g, labels, fraction, len(shares), device), labels

    # Class 3 absent from both, class 4 absent from the labels but predicted in a few voxels.
    labels_c = _labels(g, (5, 8, 6), (0.4, 0.3, 0.3), device)
    prediction_c = labels_c.clone()
    prediction_c[0, :3, 1] = 4
    prediction_c[4, 7, :2] = 2
    # Class 2 in the labels but never predicted.
    labels_d = _labels(g, (7, 6, 9), (0.5, 0.35, 0.15), device)
    prediction_d = torch.where(labels_d == 2, torch.zeros_like(labels_d), labels_d)
    prediction_d[3, 2:4, 5] = 1
    perfect = _labels(g, (3, 4, 5), (0.4, 0.2, 0.2, 0.2), device)
    return [
        Case("a perfect prediction: 4 classes, (3, 4, 5)", (perfect.clone(), perfect, 4)),
        Case(
            "4 classes, (6, 5, 7), about 20 % of the voxels mislabelled",
            (*pair((6, 5, 7), (0.5, 0.2, 0.2, 0.1), 0.2), 4),
        ),
        Case(
            "5 classes, (5, 8, 6): class 3 absent from both volumes, class 4 predicted but absent from the labels",
            (prediction_c, labels_c, 5),
        ),
        Case("3 classes, (7, 6, 9): class 2 in the labels but never predicted", (prediction_d, labels_d, 3)),
        Case(
            "4 classes as the lesson's tissues, (9, 10, 4), the last one rare (about 2 %), 10 % mislabelled",
            (*pair((9, 10, 4), (0.78, 0.12, 0.08, 0.02), 0.1), 4),
        ),
        Case("6 classes, (4, 7, 5), 30 % mislabelled", (*pair((4, 7, 5), (0.3, 0.2, 0.2, 0.1, 0.1, 0.1), 0.3), 6)),
    ]


def _dice(prediction, labels, num_classes, *, classes="foreground", kind="dice", empty="nan", swap=False, reduce=False):
    """Dice written out, each switch one learner's slip (the defaults give the right answer)."""
    if swap:
        prediction, labels = labels, prediction
    scored = {"foreground": range(1, num_classes), "all": range(num_classes), "but_last": range(num_classes - 1)}
    out = []
    for c in scored[classes]:
        p, t = prediction == c, labels == c
        both, n_p, n_t = (p & t).sum().item(), p.sum().item(), t.sum().item()
        if n_t == 0 and empty != "naive":
            value = {"nan": math.nan, "zero": 0.0, "scored": 1.0 if n_p == 0 else 0.0}[empty]
        elif kind == "iou":
            value = both / (n_p + n_t - both) if n_p + n_t - both else math.nan
        else:
            factor = 2 if kind == "dice" else 1
            value = factor * both / (n_p + n_t) if n_p + n_t else math.nan
        out.append(value)
    result = torch.tensor(out, dtype=torch.float32, device=labels.device)
    return result.nanmean() if reduce else result


def _dice_variant(**switches):
    def variants(case):
        yield _dice(*case.args, **switches), {}

    return variants


DICE_BUGS = [
    Bug(
        "background_included",
        "your output includes the background (class 0): DiceMetric(include_background=False) scores classes 1 to "
        "num_classes - 1 only, so the output has num_classes - 1 entries.",
        "loop over range(1, num_classes), or drop the first entry.",
        _dice_variant(classes="all"),
    ),
    Bug(
        "last_class_dropped",
        "your output scores classes 0 to num_classes - 2: the background was kept and the last class left out; "
        "entry i is the Dice of class i + 1.",
        "loop over range(1, num_classes).",
        _dice_variant(classes="but_last"),
    ),
    Bug(
        "averaged_over_classes",
        "you returned one number, the mean over the classes: the exercise asks for the Dice of every class, "
        "a tensor of num_classes - 1 entries (the mean hides the rare class).",
        "return the per-class tensor; leave the averaging to whoever reads it.",
        _dice_variant(reduce=True),
    ),
    Bug(
        "iou_not_dice",
        "that is the intersection over the union (the Jaccard index), |P & G| / |P | G|: Dice counts the overlap "
        "twice over the sum of the two sizes.",
        "dice = 2 * overlap / (predicted + truth), the sizes counted separately.",
        _dice_variant(kind="iou"),
    ),
    Bug(
        "no_factor_two",
        "the factor 2 is missing: Dice = 2 |P & G| / (|P| + |G|), so a perfect prediction scores 1, not 0.5.",
        "multiply the overlap by 2.",
        _dice_variant(kind="half"),
    ),
    Bug(
        "nan_only_when_both_absent",
        "a class the ground truth lacks got 0 where the prediction has it: MONAI (ignore_empty=True) gives NaN "
        "whenever the ground truth lacks the class, whatever was predicted; your 2 * overlap / total gives NaN only "
        "when both volumes lack it.",
        "torch.where(truth_count > 0, dice, float('nan')).",
        _dice_variant(empty="naive"),
    ),
    Bug(
        "absent_class_zero",
        "a class the ground truth lacks scored 0: its Dice is undefined, and MONAI returns NaN so that nanmean "
        "over volumes leaves it out.",
        "torch.where(truth_count > 0, dice, float('nan')).",
        _dice_variant(empty="zero"),
    ),
    Bug(
        "absent_class_scored",
        "a class the ground truth lacks was scored (1 where the prediction lacks it too, 0 where it does not), as "
        "DiceMetric(ignore_empty=False) does; the default, ignore_empty=True, which the exercise follows, gives NaN.",
        "torch.where(truth_count > 0, dice, float('nan')).",
        _dice_variant(empty="scored"),
    ),
    Bug(
        "arguments_swapped",
        "prediction and labels were swapped: Dice's formula is symmetric, but NaN marks a class missing from the "
        "ground truth (labels), not from the prediction.",
        "count the class in labels to decide on NaN.",
        _dice_variant(swap=True),
    ),
]


# ----------------------------------------------------------------------------- mirror split: cases and bugs


def mirror_cases(device):
    g = torch.Generator().manual_seed(152)

    def values(shape, dtype):
        return torch.randn(shape, generator=g, dtype=F64).to(device=device, dtype=case_dtype(dtype, device))

    def labels(shape):
        return torch.randint(4, shape, generator=g).to(device)

    return [
        Case(
            "arange (3, 4, 7), midline 3: halves of 3 columns (float64)",
            (torch.arange(84, dtype=F64).reshape(3, 4, 7).to(device=device, dtype=case_dtype(F64, device)), 3),
        ),
        Case("label volume (5, 6, 9), midline 4 (long)", (labels((5, 6, 9)), 4)),
        Case("image (4, 7, 11), midline 5 (float32)", (values((4, 7, 11), F32), 5)),
        Case("image (6, 5, 10), midline 4: unequal halves of 4 and 5 columns (float64)", (values((6, 5, 10), F64), 4)),
        Case("two channels (2, 4, 6, 9), midline 4 (float32)", (values((2, 4, 6, 9), F32), 4)),
        Case("label volume (7, 3, 13), midline 7: unequal halves of 7 and 5 columns (long)", (labels((7, 3, 13)), 7)),
    ]


def _mirror_variant(fn):
    def variants(case):
        volume, midline = case.args
        yield fn(volume, midline), {}

    return variants


MIRROR_BUGS = [
    Bug(
        "midline_in_left",
        "the midline column is in the first half: it belongs to neither hemisphere, so the first half is "
        "volume[..., :midline].",
        "volume[..., :midline] and volume[..., midline + 1:].flip(-1).",
        _mirror_variant(lambda v, m: (v[..., : m + 1], v[..., m + 1 :].flip(-1))),
    ),
    Bug(
        "midline_in_right",
        "the midline column is in the second half: it belongs to neither, so the second half starts at midline + 1.",
        "volume[..., midline + 1:].flip(-1).",
        _mirror_variant(lambda v, m: (v[..., :m], v[..., m:].flip(-1))),
    ),
    Bug(
        "not_mirrored",
        "the second half is not mirrored: flipped along W, its columns run from the outer edge to the midline, as "
        "the first half's do, so that the two halves look alike.",
        "volume[..., midline + 1:].flip(-1).",
        _mirror_variant(lambda v, m: (v[..., :m], v[..., m + 1 :])),
    ),
    Bug(
        "flipped_wrong_axis",
        "the second half was flipped along another axis: left and right differ along the last axis, W, so the "
        "mirror flips that one.",
        "flip(-1) (the last axis), not flip(0) or flip(-2).",
        lambda case: (
            (fn(*case.args), {})
            for fn in (
                lambda v, m: (v[..., :m], v[..., m + 1 :].flip(-2)),
                lambda v, m: (v[..., :m], v[..., m + 1 :].flip(0)),
            )
        ),
    ),
    Bug(
        "split_wrong_axis",
        "the volume was cut along another axis: the course's axes are (D, H, W) and the hemispheres lie either side "
        "of the midline along W, the last axis.",
        "slice and flip the last axis: volume[..., :midline] and volume[..., midline + 1:].flip(-1).",
        lambda case: (
            (fn(*case.args), {})
            for fn in (
                lambda v, m: (v[:m], v[m + 1 :].flip(0)),
                lambda v, m: (v[..., :m, :], v[..., m + 1 :, :].flip(-2)),
            )
        ),
    ),
    Bug(
        "both_mirrored",
        "the first half was flipped too: only the second half is mirrored, so that both look like the first.",
        "return volume[..., :midline] as it is.",
        _mirror_variant(lambda v, m: (v[..., :m].flip(-1), v[..., m + 1 :].flip(-1))),
    ),
    Bug(
        "halves_swapped",
        "the halves are swapped: return the first half (columns before the midline) first, then the mirrored second.",
        "return left, right in that order.",
        _mirror_variant(lambda v, m: (v[..., m + 1 :].flip(-1), v[..., :m])),
    ),
    Bug(
        "midline_ignored",
        "the cut is at W // 2 instead of at the midline you were given: the midline of a volume need not be its "
        "middle column (a scan is rarely centred).",
        "use the midline argument.",
        _mirror_variant(lambda v, m: (v[..., : v.shape[-1] // 2], v[..., v.shape[-1] // 2 + 1 :].flip(-1))),
    ),
]


# ----------------------------------------------------------------------------- encoder: hidden modules, cases, bugs

_ENCODERS: dict = {}


def _encoder(seed: int, device, dtype, **config):
    """A hidden SwinEncoder (no v2 convolutions), built once per (seed, device, dtype)."""
    dtype = case_dtype(dtype, device)
    key = (seed, str(device), dtype)
    if key not in _ENCODERS:
        module = seeded_build(seed, lambda: SwinEncoder(**config))
        text = (
            f"SwinEncoder(in_channels={config['in_channels']}, feature_size={config['feature_size']}, "
            f"depths={config['depths']}, num_heads={config['num_heads']}, window_size={config['window_size']}, "
            f"patch_norm={config.get('patch_norm', False)})"
        )
        # Inference only: no autograd graphs, so the hidden cases stay quick.
        module = _randomise(module, seed).to(device=device, dtype=dtype).eval().requires_grad_(False)
        _ENCODERS[key] = named(module, text)
    return _ENCODERS[key]


def encoder_cases(device):
    g = torch.Generator().manual_seed(153)

    def image(shape, dtype):
        return torch.randn(shape, generator=g, dtype=F64).to(device=device, dtype=case_dtype(dtype, device))

    def enc(seed, dtype, **config):
        return _encoder(seed, device, dtype, **config)

    return [
        Case(
            "F = 6, one block per stage, window (2, 3, 2), no patch norm; image (2, 1, 32, 48, 64) (float64)",
            (
                enc(
                    21,
                    F64,
                    in_channels=1,
                    feature_size=6,
                    depths=(1, 1, 1, 1),
                    num_heads=(1, 2, 3, 4),
                    window_size=(2, 3, 2),
                ),
                image((2, 1, 32, 48, 64), F64),
            ),
        ),
        Case(
            "F = 8, depths (2, 2, 1, 1), window 4, patch norm; 2 channels, image (1, 2, 64, 32, 48) (float32)",
            (
                enc(
                    22,
                    F32,
                    in_channels=2,
                    feature_size=8,
                    depths=(2, 2, 1, 1),
                    num_heads=(2, 2, 4, 8),
                    window_size=4,
                    patch_norm=True,
                ),
                image((1, 2, 64, 32, 48), F32),
            ),
        ),
        Case(
            "F = 6, depths (2, 1, 2, 1), window (3, 2, 2), patch norm; image (2, 1, 48, 32, 40): grids turn odd "
            "before a merge (float64)",
            (
                enc(
                    23,
                    F64,
                    in_channels=1,
                    feature_size=6,
                    depths=(2, 1, 2, 1),
                    num_heads=(1, 1, 2, 2),
                    window_size=(3, 2, 2),
                    patch_norm=True,
                ),
                image((2, 1, 48, 32, 40), F64),
            ),
        ),
        Case(
            "F = 12, depths (2, 2, 2, 2), heads (3, 6, 12, 24), window 7 as in SwinUNETR; image (1, 1, 32, 48, 24) "
            "(float32)",
            (
                enc(
                    24,
                    F32,
                    in_channels=1,
                    feature_size=12,
                    depths=(2, 2, 2, 2),
                    num_heads=(3, 6, 12, 24),
                    window_size=7,
                ),
                image((1, 1, 32, 48, 24), F32),
            ),
        ),
        Case(
            "F = 4, depths (1, 2, 1, 2), window (2, 2, 3), patch norm; 3 channels, image (3, 3, 32, 40, 24) (float32)",
            (
                enc(
                    25,
                    F32,
                    in_channels=3,
                    feature_size=4,
                    depths=(1, 2, 1, 2),
                    num_heads=(1, 2, 2, 4),
                    window_size=(2, 2, 3),
                    patch_norm=True,
                ),
                image((3, 3, 32, 40, 24), F32),
            ),
        ),
        Case(
            "F = 10, depths (1, 1, 2, 1), window (4, 3, 2), no patch norm; image (1, 1, 96, 64, 32) (float64)",
            (
                enc(
                    26,
                    F64,
                    in_channels=1,
                    feature_size=10,
                    depths=(1, 1, 2, 1),
                    num_heads=(2, 5, 5, 10),
                    window_size=(4, 3, 2),
                ),
                image((1, 1, 96, 64, 32), F64),
            ),
        ),
    ]


def _encode(encoder, x, *, norm="channels", patch_norm=True, feed="raw", layout="first", after_merge=True):
    """The encoder written out, each switch one learner's slip (the defaults give the right answer)."""
    h = encoder.patch_embed(x, as_grid=True)  # (B, D, H, W, F)
    if patch_norm and encoder.patch_norm is not None:
        h = encoder.patch_norm(h)
    hidden = [h]
    for stage in encoder.stages:
        if feed == "normalised":
            h = F.layer_norm(h, h.shape[-1:])
        if after_merge:
            h = stage(h)
            hidden.append(h)
        else:
            for block in stage.blocks:
                h = block(h)
            hidden.append(h)
            h = stage.downsample(h)
    out = []
    for h in hidden:
        if norm == "channels":
            h = F.layer_norm(h, h.shape[-1:])
        elif norm == "whole":
            h = F.layer_norm(h, h.shape[1:])
        first = rearrange(h, "b d h w c -> b c d h w")
        if norm == "w_axis":
            first = F.layer_norm(first, first.shape[-1:])
        out.append(first if layout == "first" else h)
    return out


def _encode_variant(**switches):
    def variants(case):
        yield _encode(*case.args, **switches), {}

    return variants


ENCODER_BUGS = [
    Bug(
        "not_normalised",
        "the hidden states are not normalised: SwinEncoder LayerNorms each map over its channels (no learned "
        "weight or bias) before the decoder sees it.",
        "F.layer_norm(h, h.shape[-1:]) on each channels-last map, then move the channels first.",
        _encode_variant(norm="none"),
    ),
    Bug(
        "normalised_over_w",
        "each map was normalised over its last axis after moving the channels first, which is W: the LayerNorm runs "
        "over the channels.",
        "normalise while the map is channels-last, F.layer_norm(h, h.shape[-1:]), then rearrange it.",
        _encode_variant(norm="w_axis"),
    ),
    Bug(
        "normalised_whole_map",
        "each map was normalised over all of (D, H, W, C) at once: the LayerNorm normalises every token over its own "
        "channels.",
        "F.layer_norm(h, h.shape[-1:]) on the channels-last map.",
        _encode_variant(norm="whole"),
    ),
    Bug(
        "patch_norm_skipped",
        "encoder.patch_norm was skipped: when the encoder has one (patch_norm=True), it normalises the tokens right "
        "after the patch embedding, before hidden state 0 is taken and before stage 1.",
        "if encoder.patch_norm is not None: h = encoder.patch_norm(h).",
        _encode_variant(patch_norm=False),
    ),
    Bug(
        "normalised_stage_input",
        "the normalised map went on into the next stage: the normalisation is for the maps handed to the decoder "
        "only; each stage takes the previous stage's raw output.",
        "keep two variables: h for the stages, and F.layer_norm(h, ...) appended to the list.",
        _encode_variant(feed="normalised"),
    ),
    Bug(
        "hidden_before_merging",
        "your hidden states 1 to 4 were taken after the stage's blocks but before its patch merging: a stage "
        "ends with the merge, and hidden state i is the output of stage i, on a grid half the size.",
        "h = stage(h) (blocks, then merging), then append h.",
        _encode_variant(after_merge=False),
    ),
    Bug(
        "channels_last",
        "your maps are channels-last (B, D, H, W, C): SwinEncoder returns them channels-first, (B, C, D, H, W), as "
        "the decoder's convolutions take them.",
        "rearrange(h, 'b d h w c -> b c d h w') after the normalisation.",
        _encode_variant(layout="last"),
    ),
]


# ----------------------------------------------------------------------------- values


def _bottleneck(side: int = 96, feature_size: int = 48, level: int = NUM_STAGES):
    """The grid and channels of hidden state ``level`` for a ``side``^3 image."""
    c, *grid = swin_unetr_shapes((side, side, side), feature_size)[level]
    return c, tuple(grid)


def _tokens(level: int = NUM_STAGES) -> int:
    return math.prod(_bottleneck(level=level)[1])


# The lesson's example of Dice by hand: 1,000 csf voxels in the ground truth, 800 predicted, 600 of them right.
_TRUE_CSF, _PREDICTED_CSF, _RIGHT_CSF, _CSF = 1000, 800, 600, 3


def _csf_volumes() -> tuple:
    """A line of voxels with that overlap: the ground truth and the prediction (class 0 elsewhere)."""
    total = _TRUE_CSF + _PREDICTED_CSF - _RIGHT_CSF
    labels = torch.zeros(total + 100, dtype=torch.long)
    prediction = torch.zeros_like(labels)
    labels[:_TRUE_CSF] = _CSF
    prediction[_TRUE_CSF - _RIGHT_CSF : total] = _CSF
    return prediction, labels


def _csf(kind: str = "dice") -> float:
    prediction, labels = _csf_volumes()
    return float(_dice(prediction, labels, _CSF + 1, kind=kind)[_CSF - 1])


# ----------------------------------------------------------------------------- concept questions

CONCEPT_EXERCISES = [
    # After exercise 15.4 (Dice by hand).
    ChoiceExercise(
        "concept_dice_and_cross_entropy",
        "why the training loss is Dice loss plus cross-entropy (MONAI's DiceCELoss) when csf / other is about 1.6 % "
        "of the training voxels",
        {
            "a": "cross-entropy is a mean over voxels, so a class with 1.6 % of them moves it little and can be "
            "neglected cheaply; the Dice loss is a mean over classes, so each tissue weighs the same however small; "
            "cross-entropy gives every voxel a steady gradient, which Dice alone lacks early on and in crops that "
            "miss a class",
            "b": "cross-entropy works for two classes only; the Dice loss extends it to the four tissue classes",
            "c": "the Dice loss speeds up each step, and cross-entropy makes the training deterministic",
            "d": "the test score is Dice, so the Dice loss does all the learning; cross-entropy only keeps the weights "
            "small, as weight decay would",
        },
        "a",
        why={
            "b": "cross-entropy takes any number of classes: a softmax over the four logits of each voxel and the "
            "log-probability of its label.",
            "c": "both are a few sums over the voxels of a batch, cheap next to the network, and neither has anything "
            "random in it.",
            "d": "cross-entropy is a data term like the Dice loss: it pulls each voxel's probabilities towards its "
            "label. Weight decay looks at the weights only, never at the data.",
        },
    ),
    # After exercise 15.5 (mirror_split).
    ChoiceExercise(
        "concept_held_out_region",
        "why the network is scored on a separate part of the brain rather than on voxels drawn at random from the "
        "same brain",
        {
            "a": "neighbouring voxels are nearly copies of each other, and every training crop shows the network a "
            "voxel's surroundings: test voxels drawn at random would lie inside what it trained on, and the score "
            "would reward memory rather than generalisation",
            "b": "a random draw could miss the rare csf class, so its Dice could not be computed",
            "c": "the network predicts whole crops, so single voxels cannot be scored",
            "d": "the held-out part is the harder one, which makes its score a conservative estimate",
        },
        "a",
        why={
            "b": "a random tenth of the template's million voxels still holds well over a thousand csf voxels, in "
            "proportion; the class balance is not what goes wrong.",
            "c": "the network predicts every voxel of its input, and any subset of the predicted voxels can be "
            "scored; what matters is which voxels it saw while training.",
            "d": "nothing says the held-out part is harder; the reason is which voxels the network saw while "
            "training, not how hard they are.",
        },
    ),
    # After the check of the two halves of the template.
    ChoiceExercise(
        "concept_symmetric_template",
        "what a test on the mirrored right half would measure, given that it equals the left half",
        {
            "a": "the template is symmetric (built from brains and their mirror images), so the test half would be "
            "the training half again: its Dice would measure how well the network fits the anatomy it trained on, "
            "not how it does on anatomy it has never seen; a real test needs another brain or another region",
            "b": "nothing: a network trained on small augmented crops never sees the whole, unchanged hemisphere, "
            "so the test would still be fair",
            "c": "the mirroring made the halves equal: scoring the right half without the flip would be a fair test",
            "d": "the tissue labels must be wrong: real brains are never symmetric, so equal halves reveal a bug in "
            "the labelling",
        },
        "a",
        why={
            "b": "the crops together cover every voxel of that half, many times over; augmentation changes a voxel's "
            "brightness and position a little, while another brain's anatomy differs far more.",
            "c": "without the flip it is the same anatomy seen in a mirror, and random flips along W are among the "
            "training augmentations: the network sees that too.",
            "d": "the labels come from the template's own tissue maps, which are symmetric because the template is; "
            "they are right, only identical on both sides.",
        },
    ),
    # After exercise 15.6 (encoder_forward).
    ChoiceExercise(
        "concept_sliding_window",
        "why the test part, the front of the brain (95 x 43 x 99 voxels), is predicted with sliding_window_inference",
        {
            "a": "the network takes extents that are multiples of 32 and was trained on crops of one size: crops of "
            "that size, overlapping by a quarter, cover the whole test part (padded where it is thinner than a crop), "
            "and where they overlap their "
            "predictions are averaged",
            "b": "the Swin blocks' attention windows have to slide over the volume, and this function moves them",
            "c": "it is test-time augmentation: each crop is flipped and jittered, and the predictions are averaged",
            "d": "without it the prediction would change from run to run; the fixed grid of crops makes it "
            "deterministic",
        },
        "a",
        why={
            "b": "the attention windows live inside every Swin block and are fixed by the model; this function moves "
            "crops of the image through the whole network.",
            "c": "the crops are cut from the image as it is, at fixed steps: no flip, no change of intensity. The only "
            "averaging is over crops that overlap.",
            "d": "a network in eval mode gives the same prediction for the same input; nothing random happens at "
            "test time.",
        },
    ),
]


# ----------------------------------------------------------------------------- the exercises

_ENCODER_RULES = (
    RuledOut(
        "minattn.SwinEncoder's own forward (encoder(x), encoder.forward) and SwinUNETR's", (SwinEncoder, SwinUNETR)
    ),
    RuledOut(
        "MONAI's SwinTransformer / SwinUNETR",
        ("monai.networks.nets.swin_unetr:SwinTransformer", "monai.networks.nets.swin_unetr:SwinUNETR"),
    ),
)

EXERCISES = [
    FunctionExercise(
        "swin_unetr_shapes",
        swin_unetr_shapes,
        shapes_cases,
        "number",
        "swin_unetr_shapes(image_size, feature_size)",
        bugs=tuple(SHAPES_BUGS),
        ruled_out=(graders_own(swin_unetr_shapes), *_ENCODER_RULES),
        building_blocks="integer arithmetic: a 2 x 2 x 2 patch, then four merges that halve the grid (rounding up)",
    ),
    FunctionExercise(
        "dice_per_class",
        dice_per_class,
        dice_cases,
        "tensor",
        "dice_per_class(prediction, labels, num_classes)",
        bugs=tuple(DICE_BUGS),
        ruled_out=(
            graders_own(dice_per_class),
            RuledOut("minattn.apps.segmentation.evaluate", (segmentation.evaluate,)),
            RuledOut(
                "MONAI's Dice (DiceMetric, compute_dice, DiceHelper, DiceLoss, DiceCELoss)",
                (
                    "monai.metrics.meandice:DiceMetric",
                    "monai.metrics.meandice:compute_dice",
                    "monai.metrics.meandice:DiceHelper",
                    "monai.losses.dice:DiceLoss",
                    "monai.losses.dice:DiceCELoss",
                ),
            ),
        ),
        building_blocks="comparisons (prediction == c), sums and torch.where",
    ),
    FunctionExercise(
        "mirror_split",
        mirror_split,
        mirror_cases,
        "tensor",
        "mirror_split(volume, midline)",
        bugs=tuple(MIRROR_BUGS),
        ruled_out=(
            graders_own(mirror_split),
            RuledOut("minattn.apps.anatomy.hemispheres", (anatomy.hemispheres,)),
        ),
        building_blocks="slicing (volume[..., a:b]) and flip",
    ),
    FunctionExercise(
        "encoder_forward",
        encoder_forward,
        encoder_cases,
        "tensor",
        "encoder_forward(encoder, x)",
        bugs=tuple(ENCODER_BUGS),
        ruled_out=_ENCODER_RULES,
        building_blocks=(
            "encoder.patch_embed(x, as_grid=True), encoder.patch_norm, the stages in encoder.stages, F.layer_norm and "
            "einops.rearrange"
        ),
    ),
    ValueExercise(
        "bottleneck_tokens_96",
        "tokens at SwinUNETR's bottleneck (hidden state 4) for a 96 x 96 x 96 crop",
        _tokens,
        unit="tokens",
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "one_halving_short",
                lambda: _tokens(NUM_STAGES - 1),
                "that is hidden state 3's grid, 6 x 6 x 6: the image is halved five times on the way down, once by "
                "the 2 x 2 x 2 patches and once by each of the four merges.",
            ),
            WrongAnswer(
                "patch_only",
                lambda: _tokens(0),
                "that is the grid after the patch embedding only; the four stages each halve it again.",
            ),
            WrongAnswer(
                "voxels_over_32",
                lambda: 96**3 // 2 ** (NUM_STAGES + 1),
                "the voxel count was divided by 32; each of the three axes shrinks 32 times, so the count falls 32^3 "
                "times.",
            ),
            WrongAnswer(
                "one_axis",
                lambda: _bottleneck()[1][0],
                "that is the grid along one axis; the bottleneck is a cube of tokens.",
            ),
            WrongAnswer(
                "counted_numbers",
                lambda: _tokens() * _bottleneck()[0],
                "that counts numbers (tokens x 768 channels); the question asks for tokens.",
            ),
        ),
    ),
    ValueExercise(
        "dice_csf_by_hand",
        "Dice of csf when the truth has 1,000 csf voxels and 600 of the 800 predicted ones are right",
        _csf,
        wrong=(
            WrongAnswer(
                "iou",
                lambda: _csf("iou"),
                "that is the intersection over the union, 600 / 1,200 (the Jaccard index); Dice is twice the overlap "
                "over the sum of the two sizes.",
            ),
            WrongAnswer(
                "no_factor_two",
                lambda: _csf("half"),
                "the factor 2 is missing: a perfect prediction would score 0.5.",
            ),
            WrongAnswer(
                "recall",
                lambda: _RIGHT_CSF / _TRUE_CSF,
                "that is the share of the true csf that was found (the sensitivity, or recall); Dice also counts the "
                "200 voxels wrongly called csf.",
            ),
            WrongAnswer(
                "precision",
                lambda: _RIGHT_CSF / _PREDICTED_CSF,
                "that is the share of the predicted csf that is right (the precision); Dice also counts the 400 csf "
                "voxels that were missed.",
            ),
            WrongAnswer(
                "percent",
                lambda: 100 * _csf(),
                "that is a percentage; give Dice as a fraction between 0 and 1.",
            ),
        ),
    ),
    *CONCEPT_EXERCISES,
]
