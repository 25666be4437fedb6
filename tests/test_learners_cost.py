"""Learners' answers to the cost exercises (exercises 03 and 04, and lesson 00's attention_scores), with verdicts."""

import math

import numpy as np
import pytest
import torch
from learners import Attempt, assert_verdict

import minattn
from minattn import cost
from minattn.grading import check

N_MAP = 32 * 64 * 64  # the 32 x 64 x 64 feature map's tokens
GIB = 2**30


def triple(size):
    return (size,) * 3 if isinstance(size, int) else tuple(size)


# ----------------------------------------------------------------------------- patch_embed_params


def params_prod(patch, in_channels, embed_dim):
    return embed_dim * (math.prod(triple(patch)) * in_channels + 1)


def params_weights_plus_biases(patch, in_channels, embed_dim):
    pd, ph, pw = triple(patch)
    weights = in_channels * pd * ph * pw * embed_dim
    return weights + embed_dim


def params_numpy(patch, in_channels, embed_dim):
    return int(embed_dim * (np.prod(np.array(triple(patch))) * in_channels + 1))


def params_cube_of_int(patch, in_channels, embed_dim):
    return embed_dim * (patch**3 * in_channels + 1)  # breaks on a (pd, ph, pw) patch


def params_conv(patch, in_channels, embed_dim):
    p = triple(patch)
    conv = torch.nn.Conv3d(in_channels, embed_dim, p, stride=p, device="meta")
    return sum(t.numel() for t in conv.parameters())


def params_linear(patch, in_channels, embed_dim):
    layer = torch.nn.Linear(math.prod(triple(patch)) * in_channels, embed_dim, device="meta")
    return sum(t.numel() for t in layer.parameters())


def params_patch_embed(patch, in_channels, embed_dim):
    return sum(t.numel() for t in minattn.PatchEmbed(triple(patch), in_channels, embed_dim).parameters())


# ----------------------------------------------------------------------------- attention_matrix_bytes


def bytes_element_size(tokens, dtype=torch.float32, heads=1, batch=1):
    return batch * heads * tokens**2 * torch.empty((), dtype=dtype).element_size()


def bytes_itemsize(tokens, dtype=torch.float32, heads=1, batch=1):
    return tokens * tokens * dtype.itemsize * heads * batch


def bytes_meta_tensor(tokens, dtype=torch.float32, heads=1, batch=1):
    return torch.empty((batch, heads, tokens, tokens), dtype=dtype, device="meta").nbytes


def bytes_finfo(tokens, dtype=torch.float32, heads=1, batch=1):
    return batch * heads * tokens**2 * (torch.finfo(dtype).bits // 8)


def bytes_fixed_4(tokens, dtype=torch.float32, heads=1, batch=1):
    return batch * heads * tokens**2 * 4


def bytes_bits(tokens, dtype=torch.float32, heads=1, batch=1):
    return batch * heads * tokens**2 * torch.finfo(dtype).bits


def bytes_entries(tokens, dtype=torch.float32, heads=1, batch=1):
    return batch * heads * tokens**2


def bytes_gib(tokens, dtype=torch.float32, heads=1, batch=1):
    return bytes_element_size(tokens, dtype, heads, batch) / GIB


def bytes_gb(tokens, dtype=torch.float32, heads=1, batch=1):
    return bytes_element_size(tokens, dtype, heads, batch) / 1e9


def bytes_not_squared(tokens, dtype=torch.float32, heads=1, batch=1):
    return batch * heads * tokens * torch.empty((), dtype=dtype).element_size()


def bytes_no_heads(tokens, dtype=torch.float32, heads=1, batch=1):
    return batch * tokens**2 * torch.empty((), dtype=dtype).element_size()


def bytes_no_batch(tokens, dtype=torch.float32, heads=1, batch=1):
    return heads * tokens**2 * torch.empty((), dtype=dtype).element_size()


def bytes_no_heads_parameter(tokens, dtype=torch.float32, batch=1):
    return batch * tokens**2 * torch.empty((), dtype=dtype).element_size()


def bytes_dtype_required(tokens, dtype, heads=1, batch=1):
    return bytes_element_size(tokens, dtype, heads, batch)


# ----------------------------------------------------------------------------- windowed_attention_scores


def windows_ceil(shape, window):
    wd, wh, ww = triple(window)
    d, h, w = shape
    n = math.ceil(d / wd) * math.ceil(h / wh) * math.ceil(w / ww)
    return n * (wd * wh * ww) ** 2


def windows_loops(shape, window):
    total = 0
    sizes = triple(window)
    per_window = math.prod(sizes) ** 2
    counts = []
    for size, w in zip(shape, sizes):
        count, covered = 0, 0
        while covered < size:
            covered += w
            count += 1
        counts.append(count)
    for _ in range(math.prod(counts)):
        total += per_window
    return total


def windows_numpy(shape, window):
    s, w = np.array(shape), np.array(triple(window))
    return int(np.prod(-(-s // w)) * np.prod(w) ** 2)


def windows_floor(shape, window):
    wd, wh, ww = triple(window)
    d, h, w = shape
    return (d // wd) * (h // wh) * (w // ww) * (wd * wh * ww) ** 2


def windows_plus_one(shape, window):
    wd, wh, ww = triple(window)
    d, h, w = shape
    return (d // wd + 1) * (h // wh + 1) * (w // ww + 1) * (wd * wh * ww) ** 2


def windows_global(shape, window):
    return math.prod(shape) ** 2


def windows_one(shape, window):
    return math.prod(triple(window)) ** 2


def windows_tokens(shape, window):
    wd, wh, ww = triple(window)
    return math.prod(-(-s // w) for s, w in zip(shape, (wd, wh, ww))) * wd * wh * ww


def windows_int_only(shape, window):
    n = math.prod(-(-s // window) for s in shape)  # breaks on a (wd, wh, ww) window
    return n * (window**3) ** 2


def windows_bytes(shape, window):
    return 4 * windows_ceil(shape, window)


# ----------------------------------------------------------------------------- attention_scores


def scores_pairs(tokens):
    return math.comb(tokens, 2) * 2 + tokens


def scores_float(tokens):
    return float(tokens) ** 2


ATTEMPTS = [
    # patch_embed_params (exercise 3.6)
    Attempt("patch_embed_params", "math.prod", params_prod, "right"),
    Attempt("patch_embed_params", "weights plus biases", params_weights_plus_biases, "right"),
    Attempt("patch_embed_params", "numpy prod", params_numpy, "right"),
    Attempt("patch_embed_params", "no bias", lambda p, c, e: e * math.prod(triple(p)) * c, "bug", "no_bias"),
    Attempt("patch_embed_params", "one bias", lambda p, c, e: e * math.prod(triple(p)) * c + 1, "bug", "one_bias"),
    Attempt("patch_embed_params", "channels left out", lambda p, c, e: e * (math.prod(triple(p)) + 1), "bug",
            "no_channels"),
    Attempt("patch_embed_params", "bias per channel", lambda p, c, e: e * c * (math.prod(triple(p)) + 1), "bug",
            "bias_per_channel"),
    Attempt("patch_embed_params", "2D patch area", lambda p, c, e: e * (triple(p)[0] * triple(p)[1] * c + 1), "bug",
            "patch_area"),
    Attempt("patch_embed_params", "patch ** 3 on an int only", params_cube_of_int, "bug", status="error"),
    Attempt("patch_embed_params", "minattn.cost", cost.patch_embed_params, "shortcut", "ruled_out",
            "minattn.cost.patch_embed_params"),
    Attempt("patch_embed_params", "counts a Conv3d's parameters", params_conv, "shortcut", "ruled_out",
            "torch.nn.Conv3d"),
    Attempt("patch_embed_params", "counts a Linear's parameters", params_linear, "shortcut", "ruled_out",
            "torch.nn.Linear"),
    Attempt("patch_embed_params", "counts a PatchEmbed's parameters", params_patch_embed, "shortcut", "ruled_out",
            "minattn.PatchEmbed"),
    Attempt("patch_embed_params", "the course's 65,664 typed in", lambda p, c, e: 65664, "hard-coded"),
    Attempt("patch_embed_params", "returns text", lambda p, c, e: f"{params_prod(p, c, e):,}", "wrong type"),
    # attention_scores (lesson 00)
    Attempt("attention_scores", "tokens * tokens", lambda tokens: tokens * tokens, "right"),
    Attempt("attention_scores", "ordered pairs plus self pairs", scores_pairs, "right"),
    Attempt("attention_scores", "a float square", scores_float, "right"),
    Attempt("attention_scores", "N, not squared", lambda tokens: tokens, "bug", "not_squared"),
    Attempt("attention_scores", "each pair once", lambda tokens: tokens * (tokens + 1) // 2, "bug", "half_pairs"),
    Attempt("attention_scores", "no self pairs", lambda tokens: tokens * (tokens - 1), "bug", "no_self_pairs"),
    Attempt("attention_scores", "twice N", lambda tokens: 2 * tokens, "bug"),
    Attempt("attention_scores", "minattn.cost", cost.attention_scores, "shortcut", "ruled_out",
            "minattn.cost.attention_scores"),
    Attempt("attention_scores", "131,072^2 typed in", lambda tokens: 17_179_869_184, "hard-coded"),
    Attempt("attention_scores", "returns text", lambda tokens: str(tokens**2), "wrong type"),
    # attention_matrix_bytes (exercise 4.4)
    Attempt("attention_matrix_bytes", "element_size", bytes_element_size, "right"),
    Attempt("attention_matrix_bytes", "dtype.itemsize", bytes_itemsize, "right"),
    Attempt("attention_matrix_bytes", "nbytes of a meta tensor", bytes_meta_tensor, "right"),
    Attempt("attention_matrix_bytes", "finfo bits // 8", bytes_finfo, "right"),
    Attempt("attention_matrix_bytes", "always 4 bytes", bytes_fixed_4, "bug", "fixed_4_bytes"),
    Attempt("attention_matrix_bytes", "bits, not bytes", bytes_bits, "bug", "counted_bits"),
    Attempt("attention_matrix_bytes", "entries, not bytes", bytes_entries, "bug", "counted_entries"),
    Attempt("attention_matrix_bytes", "returns GiB", bytes_gib, "bug", "returned_gib"),
    Attempt("attention_matrix_bytes", "returns GB", bytes_gb, "bug", "factor:decimal_3", "GB"),
    Attempt("attention_matrix_bytes", "tokens not squared", bytes_not_squared, "bug", "not_squared"),
    Attempt("attention_matrix_bytes", "heads ignored", bytes_no_heads, "bug", "heads_ignored"),
    Attempt("attention_matrix_bytes", "batch ignored", bytes_no_batch, "bug", "batch_ignored"),
    Attempt("attention_matrix_bytes", "no heads parameter", bytes_no_heads_parameter, "bug", "missing_parameter",
            "heads"),
    Attempt("attention_matrix_bytes", "dtype without its default", bytes_dtype_required, "bug", "missing_parameter"),
    Attempt("attention_matrix_bytes", "minattn.cost", cost.attention_matrix_bytes, "shortcut", "ruled_out",
            "minattn.cost.attention_matrix_bytes"),
    Attempt("attention_matrix_bytes", "64 GiB in bytes typed in", lambda tokens, dtype=None, heads=1, batch=1: 64 * GIB,
            "hard-coded"),
    # windowed_attention_scores (exercise 4.6)
    Attempt("windowed_attention_scores", "math.ceil", windows_ceil, "right"),
    Attempt("windowed_attention_scores", "loops counting windows", windows_loops, "right"),
    Attempt("windowed_attention_scores", "numpy ceil division", windows_numpy, "right"),
    Attempt("windowed_attention_scores", "floor division", windows_floor, "bug", "no_padding"),
    Attempt("windowed_attention_scores", "size // window + 1", windows_plus_one, "bug", "one_extra_window"),
    Attempt("windowed_attention_scores", "global N^2", windows_global, "bug", "global_scores"),
    Attempt("windowed_attention_scores", "one window only", windows_one, "bug", "one_window"),
    Attempt("windowed_attention_scores", "tokens, not scores", windows_tokens, "bug", "window_not_squared"),
    Attempt("windowed_attention_scores", "an int window only", windows_int_only, "bug", status="error"),
    Attempt("windowed_attention_scores", "minattn.cost", cost.windowed_attention_scores, "shortcut", "ruled_out",
            "minattn.cost.windowed_attention_scores"),
    Attempt("windowed_attention_scores", "via long_range.hierarchical_cost",
            lambda shape, window: minattn.apps.long_range.hierarchical_cost(shape, window, 1), "shortcut",
            "ruled_out"),
    Attempt("windowed_attention_scores", "the 128^3 figure typed in", lambda shape, window: 1_073_741_824,
            "hard-coded"),
    # value exercises of lesson 03
    Attempt("tokens_256x256x96_p8", "32 * 32 * 12", (256 // 8) * (256 // 8) * (96 // 8), "right"),
    Attempt("tokens_256x256x96_p8", "numpy int64 from a division", np.int64(256 * 256 * 96 / 8**3), "right"),
    Attempt("tokens_256x256x96_p8", "voxels", 256 * 256 * 96, "bug", "voxels"),
    Attempt("tokens_256x256x96_p8", "8 x 8 patches", 256 * 256 * 96 // 64, "bug", "square_patches"),
    Attempt("tokens_256x256x96_p8", "a 256^3 volume", (256 // 8) ** 3, "bug", "cube_volume"),
    Attempt("tokens_256x256x96_p8", "sides added", 32 + 32 + 12, "bug", "added_axes"),
    Attempt("tokens_256x256x96_p8", "lesson 04's 131,072 typed in", 131072, "hard-coded"),
    Attempt("tokens_256x256x96_p8", "text", "12,288 tokens", "wrong type"),
    Attempt("patch_numbers_p8_c1", "8 ** 3", 8**3, "right"),
    Attempt("patch_numbers_p8_c1", "a float", 512.0, "right"),
    Attempt("patch_numbers_p8_c1", "8 x 8", 64, "bug", "square_patch"),
    Attempt("patch_numbers_p8_c1", "8 + 8 + 8", 24, "bug", "added_sides"),
    Attempt("patch_numbers_p8_c1", "with the bias", 513, "bug", "counted_bias"),
    Attempt("patch_numbers_p8_c1", "the token count typed in", 12288, "hard-coded"),
    Attempt("patch_embed_params_p8_c1_e128", "E (p^3 C + 1)", 128 * (8**3 * 1 + 1), "right"),
    Attempt("patch_embed_params_p8_c1_e128", "a tensor's item", torch.tensor(65664).item(), "right"),
    Attempt("patch_embed_params_p8_c1_e128", "no bias", 128 * 512, "bug", "no_bias"),
    Attempt("patch_embed_params_p8_c1_e128", "one bias", 128 * 512 + 1, "bug", "one_bias"),
    Attempt("patch_embed_params_p8_c1_e128", "2D patch", 128 * (64 + 1), "bug", "patch_area"),
    Attempt("patch_embed_params_p8_c1_e128", "the patch length typed in", 512, "hard-coded"),
    # value exercises of lesson 04
    Attempt("tokens_32x64x64", "32 * 64 * 64", 32 * 64 * 64, "right"),
    Attempt("tokens_32x64x64", "2 ** 17 as a float", 2.0**17, "right"),
    Attempt("tokens_32x64x64", "one slice", 64 * 64, "bug", "one_slice"),
    Attempt("tokens_32x64x64", "sides added", 32 + 64 + 64, "bug", "added_sides"),
    Attempt("tokens_32x64x64", "64^3", 64**3, "bug", "cube_64"),
    Attempt("tokens_32x64x64", "N^2", N_MAP**2, "bug", "factor:squared"),
    Attempt("tokens_32x64x64", "lesson 03's 12,288 typed in", 12288, "hard-coded"),
    Attempt("scores_32x64x64", "N ** 2", N_MAP**2, "right"),
    Attempt("scores_32x64x64", "a float", 1.7179869184e10, "right"),
    Attempt("scores_32x64x64", "N", N_MAP, "bug", "factor:not_squared"),
    Attempt("scores_32x64x64", "half", N_MAP**2 // 2, "bug", "half_pairs"),
    Attempt("scores_32x64x64", "triangle", N_MAP * (N_MAP + 1) // 2, "bug", "upper_triangle"),
    Attempt("scores_32x64x64", "no diagonal", N_MAP * (N_MAP - 1), "bug", "no_self_pairs"),
    Attempt("scores_32x64x64", "bytes", 4 * N_MAP**2, "bug", "float32_bytes"),
    Attempt("scores_32x64x64", "'over 17 billion' typed in", 17e9, "hard-coded"),
    Attempt("score_matrix_gib_fp32_32x64x64", "4 N^2 / 2^30", 4 * N_MAP**2 / 2**30, "right"),
    Attempt("score_matrix_gib_fp32_32x64x64", "an int", 64, "right"),
    Attempt("score_matrix_gib_fp32_32x64x64", "bytes", 4 * N_MAP**2, "bug", "factor:binary_3", "bytes"),
    Attempt("score_matrix_gib_fp32_32x64x64", "GB", 4 * N_MAP**2 / 1e9, "bug", "factor:si_vs_binary_3", "GB"),
    Attempt("score_matrix_gib_fp32_32x64x64", "entries in GiB", N_MAP**2 / 2**30, "bug",
            "factor:entries_vs_bytes"),
    Attempt("score_matrix_gib_fp32_32x64x64", "float16", 2 * N_MAP**2 / 2**30, "bug", "factor:fp16_vs_fp32"),
    Attempt("score_matrix_gib_fp32_32x64x64", "not squared", 4 * N_MAP / 2**30, "bug", "not_squared"),
    Attempt("score_matrix_gib_fp32_32x64x64", "the fp16 figure typed in", 32, "hard-coded"),
    Attempt("attention_tflops_32x64x64_d32", "4 N^2 d / 1e12", 4 * N_MAP**2 * 32 / 1e12, "right"),
    Attempt("attention_tflops_32x64x64_d32", "rounded to 2.2", 2.2, "right"),
    Attempt("attention_tflops_32x64x64_d32", "only QK^T", 2 * N_MAP**2 * 32 / 1e12, "bug",
            "one_product_or_one_flop", "QK^T"),
    Attempt("attention_tflops_32x64x64_d32", "N^2 d", N_MAP**2 * 32 / 1e12, "bug", "one_product_one_flop"),
    Attempt("attention_tflops_32x64x64_d32", "not squared", 4 * N_MAP * 32 / 1e12, "bug", "not_squared"),
    Attempt("attention_tflops_32x64x64_d32", "divided by 2^40", 4 * N_MAP**2 * 32 / 2**40, "bug", "binary_tera"),
    Attempt("attention_tflops_32x64x64_d32", "FLOPs, not TFLOPs", 4 * N_MAP**2 * 32, "bug", "factor:decimal_4",
            "TFLOPs"),
    Attempt("attention_tflops_32x64x64_d32", "the 128-wide figure typed in", 8.8, "hard-coded"),
    Attempt("window_saving_128_w8", "global // windowed", (128**3) ** 2 // ((128 // 8) ** 3 * (8**3) ** 2), "right"),
    Attempt("window_saving_128_w8", "N / 512 as a float", 128**3 / 512, "right"),
    Attempt("window_saving_128_w8", "inverted", 1 / 4096, "bug", "inverted"),
    Attempt("window_saving_128_w8", "windowed counted as N", 128**3, "bug", "window_not_squared"),
    Attempt("window_saving_128_w8", "a window of 8 tokens", 128**3 // 8, "bug", "window_of_8_tokens"),
    Attempt("window_saving_128_w8", "one axis", 16, "bug", "one_axis"),
    Attempt("window_saving_128_w8", "the 64^3 ratio printed below typed in", 512, "hard-coded"),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)


@pytest.mark.parametrize(
    "name, fn",
    [
        ("windowed_attention_scores", windows_bytes),
        ("windowed_attention_scores", lambda shape, window: windows_ceil(shape, window) * 8),
        ("attention_scores", lambda tokens: 4 * tokens**2),
        ("attention_scores", lambda tokens: tokens**2 / 1e9),
        ("patch_embed_params", lambda p, c, e: 4 * params_prod(p, c, e)),
    ],
)
def test_counts_get_no_byte_or_flop_talk(name, fn):
    """Scores and parameters are counts: a factor 4, 8 or 1e9 off is not explained as bytes, bits or GB."""
    result = check(name, fn)
    assert result.status == "failed"
    text = result.feedback.lower()
    for word in ("byte", "bits", "gib", " gb", "flop", "float32", "float16"):
        assert word not in text, result.feedback


@pytest.mark.parametrize(
    "name, value",
    [
        ("tokens_32x64x64", 4 * N_MAP),
        ("scores_32x64x64", 8 * N_MAP**2),
        ("window_saving_128_w8", 4096 * 1000),
        ("window_saving_128_w8", 2 * 4096),
        ("patch_numbers_p8_c1", 4 * 512),
    ],
)
def test_values_without_bytes_get_no_byte_talk(name, value):
    result = check(name, value)
    assert result.status == "failed"
    text = result.feedback.lower()
    for word in ("byte", "bits", "gib", " gb", "flop", "float32", "float16"):
        assert word not in text, result.feedback
    assert str(check(name, None).status) == "not attempted"


def test_value_feedback_shows_the_learners_number_not_the_answer():
    result = check("score_matrix_gib_fp32_32x64x64", 48)
    assert "your answer is 48." in result.feedback
    assert "64 GiB" not in result.feedback and "is 64" not in result.feedback
    result = check("attention_matrix_bytes", bytes_no_heads)
    assert result.status == "failed" and "heads_ignored" in result.diagnoses
