"""Cost: the calculators learners write (parameters, scores, bytes), the numbers they compute, slips and units.

Units decide which slips the feedback may name (see :mod:`minattn.grading.units`): bytes and GiB get the
byte slips (GiB vs GB, bits, entries), TFLOPs the FLOP slips; scores, tokens and parameters are counts,
where only a forgotten or extra square is looked for; a ratio has no unit and no unit slip. Slips that
no unit rule explains (only QK^T counted, the square forgotten) are named by the exercises'
:class:`~minattn.grading.exercise.WrongAnswer` lists and the function exercises' bugs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ... import cost
from ...memory import GIB
from ...patches import PatchEmbed, patchify
from ...sizes import as_triple
from ..exercise import (
    Bug,
    Case,
    ChoiceExercise,
    FunctionExercise,
    RuledOut,
    ValueExercise,
    WrongAnswer,
    number_variant,
)

# ----------------------------------------------------------------------------- cases


def patch_embed_params_cases(device):
    return [
        Case("8 x 8 x 8 patches, 1 channel, E=128 (the course's example)", (8, 1, 128)),
        Case("patch (2, 4, 8), 3 channels, E=96", ((2, 4, 8), 3, 96)),
        Case("16^3 patches, 4 channels, E=768", (16, 4, 768)),
        Case("patch (4, 4, 2), 2 channels, E=48", ((4, 4, 2), 2, 48)),
        Case("patch (3, 5, 2), 5 channels, E=7", ((3, 5, 2), 5, 7)),
        Case("patch (1, 6, 3), 2 channels, E=10", ((1, 6, 3), 2, 10)),
    ]


def attention_scores_cases(device):
    return [
        Case("N = 12,288 tokens", (12288,)),
        Case("N = 131,072 tokens (a 32 x 64 x 64 feature map)", (131072,)),
        Case("N = 7 tokens", (7,)),
        Case("N = 1 token", (1,)),
    ]


def attention_matrix_bytes_cases(device):
    return [
        Case("N = 131,072 tokens, the default dtype (float32), 1 head, batch 1", (131072,)),
        Case("N = 4,096 tokens, float16", (4096, torch.float16)),
        Case("N = 1,000 tokens, float64", (1000, torch.float64)),
        Case("N = 512 tokens, float32, 8 heads, batch 2", (512, torch.float32), {"heads": 8, "batch": 2}),
        Case("N = 300 tokens, bfloat16, 3 heads", (300, torch.bfloat16), {"heads": 3}),
        Case("N = 343 tokens, float64, 6 heads, batch 5", (343, torch.float64), {"heads": 6, "batch": 5}),
        Case("N = 729 tokens, dtype=float16 and batch 3 by keyword", (729,), {"dtype": torch.float16, "batch": 3}),
    ]


def windowed_attention_scores_cases(device):
    return [
        Case("token grid 128^3, window 8", ((128, 128, 128), 8)),
        Case("token grid (32, 64, 48), window (4, 8, 6)", ((32, 64, 48), (4, 8, 6))),
        Case("token grid (6, 9, 12), window (2, 3, 4)", ((6, 9, 12), (2, 3, 4))),
        Case("token grid (10, 20, 30), window 7: padded up to whole windows on every axis", ((10, 20, 30), 7)),
        Case("token grid (13, 8, 21), window (4, 8, 5): padded along D and W", ((13, 8, 21), (4, 8, 5))),
        Case("token grid (5, 17, 9), window (5, 4, 2): padded along H and W", ((5, 17, 9), (5, 4, 2))),
    ]


# ----------------------------------------------------------------------------- cost calculators


def _patch_volume(patch):
    return math.prod(as_triple(patch))


def _patch_area(patch, c, e):
    p = as_triple(patch)
    return e * (p[0] * p[1] * c + 1)


def _bytes_args(tokens, dtype=torch.float32, heads=1, batch=1):
    return tokens, torch.empty((), dtype=dtype).element_size(), heads, batch


def _bytes_variant(formula):
    """A wrong byte count: ``formula(tokens, bytes per entry, heads, batch)``."""

    def variants(case):
        yield formula(*_bytes_args(*case.args, **case.kwargs)), {}

    return variants


def _windows_variant(formula, count=None):
    """A wrong windowed score count: ``formula(number of windows, tokens per window)``.

    ``count(size, window)`` gives the windows along one axis (ceil division unless told otherwise).
    """
    count = count or (lambda s, w: -(-s // w))

    def variants(case):
        shape, window = case.args
        w = as_triple(window)
        yield formula(math.prod(count(s, x) for s, x in zip(shape, w)), math.prod(w)), {}

    return variants


PATCH_PARAM_BUGS = [
    Bug(
        "no_bias",
        "the biases are missing: each of the E output features has its own bias.",
        "parameters = E * (pd*ph*pw * C + 1): a weight per input number and output feature, plus E biases.",
        number_variant(lambda p, c, e: e * _patch_volume(p) * c),
    ),
    Bug(
        "one_bias",
        "only one bias was counted; there is one bias per output feature, E of them.",
        "parameters = E * pd*ph*pw * C + E = E * (pd*ph*pw * C + 1).",
        number_variant(lambda p, c, e: e * _patch_volume(p) * c + 1),
    ),
    Bug(
        "no_channels",
        "the input channels were left out: a patch flattens to pd*ph*pw * C numbers, not pd*ph*pw.",
        "parameters = E * (pd*ph*pw * C + 1).",
        number_variant(lambda p, c, e: e * (_patch_volume(p) + 1)),
    ),
    Bug(
        "bias_per_channel",
        "a bias was counted per channel and feature (E * C of them); there is one bias per output feature, E.",
        "parameters = E * (pd*ph*pw * C + 1): the + 1 is inside the bracket, the channels multiply pd*ph*pw only.",
        number_variant(lambda p, c, e: e * c * (_patch_volume(p) + 1)),
    ),
    Bug(
        "patch_area",
        "the patch's area pd*ph (a 2D patch) was used instead of its volume pd*ph*pw.",
        "a 3D patch holds pd * ph * pw voxels per channel.",
        number_variant(_patch_area),
    ),
]

SCORES_BUGS = [
    Bug(
        "not_squared",
        "you returned N; there is one score per query-key pair, N * N of them.",
        "return tokens ** 2.",
        number_variant(lambda n: n),
    ),
    Bug(
        "half_pairs",
        "each pair was counted once, but scores are not symmetric (q_i . k_j differs from q_j . k_i): "
        "all N^2 are needed.",
        "return tokens ** 2.",
        lambda case: iter([(case.args[0] * (case.args[0] + 1) // 2, {}), (case.args[0] ** 2 // 2, {})]),
    ),
    Bug(
        "no_self_pairs",
        "the pairs of a token with itself were left out; attention includes them: N^2, not N(N-1).",
        "return tokens ** 2.",
        number_variant(lambda n: n * (n - 1)),
    ),
]

_ELEMENT_SIZE = "torch.empty((), dtype=dtype).element_size()"

BYTES_BUGS = [
    Bug(
        "counted_entries",
        "you counted entries, not bytes: each entry takes the dtype's size "
        "(4 bytes in float32, 2 in float16 and bfloat16, 8 in float64).",
        f"multiply by {_ELEMENT_SIZE}.",
        _bytes_variant(lambda n, s, h, b: n * n * h * b),
    ),
    Bug(
        "counted_bits",
        "you counted bits; a byte has 8 bits, and the function returns bytes.",
        f"use the element size in bytes: {_ELEMENT_SIZE} (not torch.finfo(dtype).bits).",
        _bytes_variant(lambda n, s, h, b: n * n * h * b * s * 8),
    ),
    Bug(
        "fixed_4_bytes",
        "you always used 4 bytes per entry; the size depends on dtype (float16 and bfloat16: 2, float64: 8).",
        f"bytes per entry = {_ELEMENT_SIZE}.",
        _bytes_variant(lambda n, s, h, b: n * n * h * b * 4),
    ),
    Bug(
        "returned_gib",
        "you returned GiB; this function returns bytes.",
        "do not divide by 1024**3.",
        number_variant(lambda *a, **k: cost.attention_matrix_bytes(*a, **k) / 1024**3),
    ),
    Bug(
        "not_squared",
        "the token count was not squared: a score matrix is N x N, one entry per query-key pair.",
        "bytes = batch * heads * tokens**2 * element size.",
        _bytes_variant(lambda n, s, h, b: n * h * b * s),
    ),
    Bug(
        "heads_ignored",
        "heads were ignored: every head has its own N x N score matrix.",
        "multiply by heads (and by batch).",
        _bytes_variant(lambda n, s, h, b: n * n * b * s),
    ),
    Bug(
        "batch_ignored",
        "batch was ignored: every item of the batch has its own score matrices.",
        "multiply by batch (and by heads).",
        _bytes_variant(lambda n, s, h, b: n * n * h * s),
    ),
]

_WINDOW_FORMULA = "scores = number of windows * (tokens per window)^2, with windows per axis = -(-size // window)."

WINDOW_SCORES_BUGS = [
    Bug(
        "no_padding",
        "the windows were counted with floor division; a grid that the window does not divide is padded up to whole "
        "windows, so count them with ceil.",
        "windows per axis = -(-size // window) (ceil division), or math.ceil(size / window).",
        _windows_variant(lambda n, v: n * v * v, count=lambda s, w: s // w),
    ),
    Bug(
        "one_extra_window",
        "you added one window per axis even where the window divides the axis exactly (size // window + 1), which "
        "counts a window of padding only.",
        "ceil division adds a window only when there is a remainder: -(-size // window).",
        _windows_variant(lambda n, v: n * v * v, count=lambda s, w: s // w + 1),
    ),
    Bug(
        "global_scores",
        "you counted global attention, N^2; with windows each token only sees its own window's tokens.",
        _WINDOW_FORMULA,
        number_variant(lambda shape, window: math.prod(shape) ** 2),
    ),
    Bug(
        "one_window",
        "you counted the scores of a single window; multiply by the number of windows.",
        _WINDOW_FORMULA,
        _windows_variant(lambda n, v: v * v),
    ),
    Bug(
        "window_not_squared",
        "you counted tokens (windows * tokens per window), not scores: a window of n tokens has n^2 scores.",
        _WINDOW_FORMULA,
        _windows_variant(lambda n, v: n * v),
    ),
]


def _ruled_out(fn) -> tuple:
    return (RuledOut(f"minattn.cost.{fn.__name__}", (fn,)),)


# ----------------------------------------------------------------------------- the numbers of lessons 03 and 04


def _tokens_32x64x64() -> int:
    return cost.num_tokens((32, 64, 64))


def _gib_32x64x64(**kwargs) -> float:
    return cost.attention_matrix_bytes(_tokens_32x64x64(), **kwargs) / GIB


def _tflops(products: int = 2, flops_per_multiply_add: int = 2, squared: bool = True) -> float:
    """Tera-FLOPs of one d = 32 head on the 32 x 64 x 64 map, with the slips a learner can make."""
    n = _tokens_32x64x64()
    return products * (n * n if squared else n) * 32 * flops_per_multiply_add / 1e12


_N_128 = 128**3


TOKEN_EXERCISES = [
    ValueExercise(
        "tokens_256x256x96_p8",
        "tokens from a 256 x 256 x 96 CT cut into 8 x 8 x 8 patches",
        lambda: cost.num_tokens((256, 256, 96), 8),
        unit="tokens",
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "voxels",
                lambda: cost.num_tokens((256, 256, 96)),
                "that is the number of voxels; a token is a whole 8 x 8 x 8 patch, so divide each side by 8 first.",
            ),
            WrongAnswer(
                "square_patches",
                lambda: cost.num_tokens((256, 256, 96)) // 8**2,
                "that divides by 8 x 8 = 64, the size of a 2D patch; a 3D patch holds 8 x 8 x 8 = 512 voxels.",
            ),
            WrongAnswer(
                "cube_volume",
                lambda: cost.num_tokens((256, 256, 256), 8),
                "that is a 256^3 volume; this CT has only 96 slices: 96 / 8 = 12 patches along the depth.",
            ),
            WrongAnswer(
                "added_axes",
                lambda: 256 // 8 + 256 // 8 + 96 // 8,
                "you added the patches per axis; the grid has (256/8) x (256/8) x (96/8) patches: multiply.",
            ),
        ),
    ),
    ValueExercise(
        "patch_numbers_p8_c1",
        "numbers in one flattened 8 x 8 x 8 one-channel patch",
        lambda: patchify(torch.zeros(1, 1, 8, 8, 8), 8).shape[-1],
        unit="numbers",
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "square_patch",
                lambda: 8 * 8,
                "that is an 8 x 8 square; the patch is a cube, 8 x 8 x 8 voxels of one channel.",
            ),
            WrongAnswer(
                "added_sides",
                lambda: 8 + 8 + 8,
                "you added the sides; the patch holds 8 x 8 x 8 voxels: multiply.",
            ),
            WrongAnswer(
                "counted_bias",
                lambda: 8**3 + 1,
                "the + 1 is the bias of each projected feature; it belongs to the projection, not to the token.",
            ),
        ),
    ),
    ValueExercise(
        "patch_embed_params_p8_c1_e128",
        "parameters projecting 8^3 one-channel patches to E = 128",
        lambda: cost.patch_embed_params(8, 1, 128),
        unit="parameters",
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "no_bias",
                lambda: 128 * 8**3,
                "that counts the weights only; each of the E = 128 outputs also has a bias: E (p^3 C + 1).",
            ),
            WrongAnswer(
                "one_bias",
                lambda: 128 * 8**3 + 1,
                "that counts one bias; there is one per output feature, E = 128 of them: E (p^3 C + 1).",
            ),
            WrongAnswer(
                "patch_area",
                lambda: cost.patch_embed_params((8, 8, 1), 1, 128),
                "that uses a 2D patch of 8 x 8 = 64 numbers; a 3D patch flattens to 8^3 = 512: E (p^3 C + 1).",
            ),
        ),
    ),
]

N2_EXERCISES = [
    ValueExercise(
        "tokens_32x64x64",
        "tokens of a 32 x 64 x 64 feature map, one per voxel",
        _tokens_32x64x64,
        unit="tokens",
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "one_slice",
                lambda: cost.num_tokens((64, 64)),
                "that is one 64 x 64 slice; the map has 32 of them.",
            ),
            WrongAnswer(
                "added_sides",
                lambda: 32 + 64 + 64,
                "you added the sides; every voxel of the map is a token: multiply them.",
            ),
            WrongAnswer(
                "cube_64",
                lambda: cost.num_tokens((64, 64, 64)),
                "that is a 64^3 map; this one is only 32 deep.",
            ),
        ),
    ),
    ValueExercise(
        "scores_32x64x64",
        "entries of the global score matrix of a 32 x 64 x 64 map",
        lambda: cost.attention_scores(_tokens_32x64x64()),
        unit="scores",
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "half_pairs",
                lambda: cost.attention_scores(_tokens_32x64x64()) // 2,
                "that counts each pair once; the score of query i with key j differs from that of query j with key "
                "i, so all N x N entries are computed.",
            ),
            WrongAnswer(
                "upper_triangle",
                lambda: _tokens_32x64x64() * (_tokens_32x64x64() + 1) // 2,
                "that counts each pair once (a triangle of the matrix); all N x N entries are computed.",
            ),
            WrongAnswer(
                "no_self_pairs",
                lambda: _tokens_32x64x64() * (_tokens_32x64x64() - 1),
                "that leaves out each token's score with itself; the matrix is N x N, its diagonal included.",
            ),
            WrongAnswer(
                "float32_bytes",
                lambda: cost.attention_matrix_bytes(_tokens_32x64x64(), torch.float32),
                "that is 4 N^2, the bytes the matrix takes in float32; the question counts its entries.",
            ),
        ),
    ),
    ValueExercise(
        "score_matrix_gib_fp32_32x64x64",
        "GiB of the float32 score matrix of a 32 x 64 x 64 map",
        _gib_32x64x64,
        unit="GiB",
        wrong=(
            WrongAnswer(
                "not_squared",
                lambda: 4 * _tokens_32x64x64() / GIB,
                "that is 4 N bytes in GiB: the matrix is N x N, so square the token count first.",
            ),
        ),
    ),
    ValueExercise(
        "attention_tflops_32x64x64_d32",
        "tera-FLOPs of QK^T and AV for one head of width 32 on a 32 x 64 x 64 map",
        lambda: cost.attention_flops(_tokens_32x64x64(), 32) / 1e12,
        unit="TFLOPs",
        wrong=(
            WrongAnswer(
                "one_product_or_one_flop",
                lambda: _tflops(products=1),
                "that is half the answer, 2 N^2 d: either only QK^T was counted (multiplying the weights by V costs "
                "as much again), or a multiply-add was counted as 1 FLOP instead of 2.",
            ),
            WrongAnswer(
                "one_product_one_flop",
                lambda: _tflops(products=1, flops_per_multiply_add=1),
                "that is N^2 d, a quarter of the answer: count both products (QK^T and the weights times V) and 2 "
                "FLOPs per multiply-add, 4 N^2 d.",
            ),
            WrongAnswer(
                "not_squared",
                lambda: _tflops(squared=False),
                "that is 4 N d: each product makes N^2 outputs, so square the token count.",
            ),
            WrongAnswer(
                "binary_tera",
                lambda: cost.attention_flops(_tokens_32x64x64(), 32) / 2**40,
                "you divided by 2^40; a tera-FLOP is 10^12 FLOPs (decimal), not 2^40.",
            ),
        ),
    ),
    ValueExercise(
        "window_saving_128_w8",
        "how many times fewer scores 8^3 windows need than global attention on 128^3 tokens",
        lambda: (
            cost.attention_scores(cost.num_tokens((128, 128, 128)))
            // cost.windowed_attention_scores((128, 128, 128), 8)
        ),
        unit=None,
        rel_tol=1e-6,
        wrong=(
            WrongAnswer(
                "inverted",
                lambda: cost.windowed_attention_scores((128, 128, 128), 8) / cost.attention_scores(_N_128),
                "that is windowed / global, the fraction windows keep; the question asks how many times fewer: "
                "global / windowed.",
            ),
            WrongAnswer(
                "window_not_squared",
                lambda: cost.attention_scores(_N_128) // _N_128,
                "the windowed cost was counted as N tokens; each window of 512 tokens has 512^2 scores, so the "
                "windowed total is (number of windows) x 512^2.",
            ),
            WrongAnswer(
                "window_of_8_tokens",
                lambda: cost.attention_scores(_N_128) // (_N_128 // 8 * 8**2),
                "that takes a window of 8 tokens; an 8 x 8 x 8 window holds 512 tokens.",
            ),
            WrongAnswer(
                "one_axis",
                lambda: 128 // 8,
                "that is the saving along one axis only: the windows tile all three axes.",
            ),
        ),
    ),
]


# ----------------------------------------------------------------------------- concept questions of lesson 04

CONCEPT_EXERCISES = [
    ChoiceExercise(
        "concept_score_matrix_on_80gb",
        "one training step of explicit attention on the 32 x 64 x 64 map on an 80 GB GPU",
        {
            "a": "it fits with room to spare: 64 is less than 80",
            "b": "not even the score matrix fits: 64 GiB is more than 80 GB",
            "c": "the score matrix alone would fit, but the softmax weights are a second matrix of the same size and "
            "the backward pass keeps them: the step does not fit",
            "d": "it fits easily: only Q, K and V are stored, 131,072 x 32 numbers each (16 MiB), and each score is "
            "used as soon as it is computed",
        },
        "c",
        why={
            "a": "the score matrix is not the only N x N tensor of a training step: count what the softmax produces "
            "and what the backward pass must keep.",
            "b": "a GiB (2^30 bytes) is only about 7% more than a GB (10^9 bytes): convert before you compare.",
            "d": "that describes a tiled computation; explicit attention computes QK^T as one tensor, the whole "
            "N x N matrix, which is why minattn's guard refuses to run it.",
        },
    ),
    ChoiceExercise(
        "concept_tiled_attention_exact",
        "why memory_efficient_attention agrees with the explicit path without storing the score matrix",
        {
            "a": "it keeps only the largest scores of each block, which carry nearly all of the softmax weight",
            "b": "it applies a softmax to each block of keys on its own and averages the blocks' outputs",
            "c": "it computes every score, one block at a time, and keeps a running maximum, normaliser and "
            "weighted sum of the values, rescaling the old sums whenever the maximum grows; dividing at the end "
            "gives exactly the softmax-weighted sum",
            "d": "it works in float64, whose extra precision makes up for the scores it does not keep",
        },
        "c",
        why={
            "a": "no score is left out: an approximation that dropped scores could not agree to 1e-12, and when the "
            "scores are nearly equal every one of them carries weight.",
            "b": "each block's softmax divides by that block's own sum of exponentials; a plain average weighs every "
            "block the same however large its scores are, which is not one softmax over all the keys.",
            "d": "float64 was only the lesson's way to test the agreement tightly; the method agrees in float32 too, "
            "up to rounding, and no precision can make up for numbers that were never used.",
        },
    ),
    ChoiceExercise(
        "concept_what_grows_with_n2",
        "what grows with N^2 and what with the head width d, for one head over N tokens (two are right)",
        {
            "a": "the score matrix takes 4 N^2 bytes in float32, whatever d is",
            "b": "the FLOPs of QK^T and of the weights times V grow like N^2 and in proportion to d",
            "c": "doubling the head width d doubles the memory of the score matrix",
            "d": "with memory_efficient_attention the time grows only linearly in N, because it handles one block "
            "of keys at a time",
        },
        frozenset({"a", "b"}),
        why={
            "c": "each score is one number, however long the two vectors of its dot product are.",
            "d": "working in blocks changes what is stored at once, not what is computed: every query still meets "
            "every key.",
        },
    ),
    ChoiceExercise(
        "concept_heads_split_cost",
        "8 heads of width 16 instead of one head of width 128 (explicit attention, float32)",
        {
            "a": "8 times the FLOPs and 8 times the score memory: each head is a full attention",
            "b": "the same FLOPs and the same score memory: splitting C into heads changes nothing",
            "c": "the same FLOPs, but 8 times the score memory: each head has its own N x N matrix",
            "d": "8 times fewer FLOPs and the same score memory: each head works on 16 numbers instead of 128",
        },
        "c",
        why={
            "a": "each head's dot products are only 16 numbers long: add up the multiply-adds of all eight heads "
            "and compare.",
            "b": "count the score matrices: how many N x N matrices does a layer with 8 heads hold at once?",
            "d": "each head is narrower, but there are 8 of them: add up the multiply-adds of all heads.",
        },
    ),
]


EXERCISES = [
    FunctionExercise(
        "patch_embed_params",
        cost.patch_embed_params,
        patch_embed_params_cases,
        "number",
        "patch_embed_params(patch, in_channels, embed_dim)",
        bugs=tuple(PATCH_PARAM_BUGS),
        ruled_out=(
            *_ruled_out(cost.patch_embed_params),
            RuledOut("minattn.PatchEmbed", (PatchEmbed,)),
            RuledOut("torch.nn.Conv3d / torch.nn.Linear (counting a layer's parameters)", (nn.Conv3d, nn.Linear)),
        ),
        unit="parameters",
        building_blocks="the formula E (pd ph pw C + 1) in plain arithmetic",
    ),
    FunctionExercise(
        "attention_scores",
        cost.attention_scores,
        attention_scores_cases,
        "number",
        "attention_scores(tokens)",
        bugs=tuple(SCORES_BUGS),
        ruled_out=_ruled_out(cost.attention_scores),
        unit="scores",
        building_blocks="plain arithmetic",
    ),
    FunctionExercise(
        "attention_matrix_bytes",
        cost.attention_matrix_bytes,
        attention_matrix_bytes_cases,
        "number",
        "attention_matrix_bytes(tokens, dtype=torch.float32, heads=1, batch=1)",
        bugs=tuple(BYTES_BUGS),
        ruled_out=_ruled_out(cost.attention_matrix_bytes),
        unit="bytes",
        building_blocks="plain arithmetic and the dtype's element size",
    ),
    FunctionExercise(
        "windowed_attention_scores",
        cost.windowed_attention_scores,
        windowed_attention_scores_cases,
        "number",
        "windowed_attention_scores(shape, window)",
        bugs=tuple(WINDOW_SCORES_BUGS),
        ruled_out=_ruled_out(cost.windowed_attention_scores),
        unit="scores",
        building_blocks="plain arithmetic (ceil division per axis)",
    ),
    *TOKEN_EXERCISES,
    *N2_EXERCISES,
    *CONCEPT_EXERCISES,
]
