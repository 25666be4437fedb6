"""Learners' answers to the patch exercises (exercises 03: patchify, unpatchify, embed_with_linear), with verdicts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from learners import Attempt, assert_verdict

import minattn
from minattn.grading import check
from minattn.patches import patchify as aliased_patchify


def triple(size):
    return (size,) * 3 if isinstance(size, int) else tuple(size)


# ----------------------------------------------------------------------------- patchify


def patchify_view_permute(x, patch_size):
    pd, ph, pw = triple(patch_size)
    b, c, d, h, w = x.shape
    x = x.view(b, c, d // pd, pd, h // ph, ph, w // pw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(b, -1, c * pd * ph * pw)


def patchify_einops(x, patch_size):
    pd, ph, pw = triple(patch_size)
    return rearrange(x, "b c (d p) (h q) (w r) -> b (d h w) (c p q r)", p=pd, q=ph, r=pw)


def patchify_loops(x, patch_size):
    pd, ph, pw = triple(patch_size)
    b, c, d, h, w = x.shape
    tokens = []
    for i in range(d // pd):
        for j in range(h // ph):
            for k in range(w // pw):
                block = x[:, :, i * pd : (i + 1) * pd, j * ph : (j + 1) * ph, k * pw : (k + 1) * pw]
                tokens.append(block.reshape(b, -1))
    return torch.stack(tokens, dim=1)


def patchify_unfold(x, patch_size):
    pd, ph, pw = triple(patch_size)
    b, c = x.shape[:2]
    blocks = x.unfold(2, pd, pd).unfold(3, ph, ph).unfold(4, pw, pw)  # (B, C, gd, gh, gw, pd, ph, pw)
    return blocks.permute(0, 2, 3, 4, 1, 5, 6, 7).reshape(b, -1, c * pd * ph * pw)


def patchify_numpy(x, patch_size):
    pd, ph, pw = triple(patch_size)
    a = x.detach().cpu().numpy()
    b, c, d, h, w = a.shape
    a = a.reshape(b, c, d // pd, pd, h // ph, ph, w // pw, pw).transpose(0, 2, 4, 6, 1, 3, 5, 7)
    return torch.from_numpy(np.ascontiguousarray(a).reshape(b, -1, c * pd * ph * pw)).to(x.device)


def patchify_same_grid_count(x, patch_size):
    pd, ph, pw = triple(patch_size)
    b, c, d, h, w = x.shape
    g = d // pd  # one axis's count used for all three
    x = x.reshape(b, c, g, pd, g, ph, g, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(b, g**3, c * pd * ph * pw)


def patchify_channels_last(x, patch_size):
    pd, ph, pw = triple(patch_size)
    return rearrange(x, "b c (d p) (h q) (w r) -> b (d h w) (p q r c)", p=pd, q=ph, r=pw)


def patchify_w_slowest(x, patch_size):
    pd, ph, pw = triple(patch_size)
    return rearrange(x, "b c (d p) (h q) (w r) -> b (w h d) (c p q r)", p=pd, q=ph, r=pw)


def patchify_voxels_reversed(x, patch_size):
    pd, ph, pw = triple(patch_size)
    return rearrange(x, "b c (d p) (h q) (w r) -> b (d h w) (c r q p)", p=pd, q=ph, r=pw)


def patchify_strided(x, patch_size):
    pd, ph, pw = triple(patch_size)
    return rearrange(x, "b c (p d) (q h) (r w) -> b (d h w) (c p q r)", p=pd, q=ph, r=pw)


def patchify_plain_reshape(x, patch_size):
    pd, ph, pw = triple(patch_size)
    b, c, d, h, w = x.shape
    return x.reshape(b, (d // pd) * (h // ph) * (w // pw), c * pd * ph * pw)


def patchify_zeros(x, patch_size):
    pd, ph, pw = triple(patch_size)
    b, c, d, h, w = x.shape
    return torch.zeros(b, (d // pd) * (h // ph) * (w // pw), c * pd * ph * pw, dtype=x.dtype, device=x.device)


def patchify_float32(x, patch_size):
    return patchify_einops(x, patch_size).float()


def patchify_via_patch_embed(x, patch_size):
    embed = minattn.PatchEmbed(triple(patch_size), x.shape[1], 4).to(x.device, x.dtype)
    return patchify_einops(x, patch_size) + 0 * embed.proj.bias.sum()


# ----------------------------------------------------------------------------- unpatchify


def unpatchify_view_permute(tokens, patch_size, grid):
    pd, ph, pw = triple(patch_size)
    gd, gh, gw = grid
    b = tokens.shape[0]
    c = tokens.shape[2] // (pd * ph * pw)
    x = tokens.view(b, gd, gh, gw, c, pd, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(b, c, gd * pd, gh * ph, gw * pw)


def unpatchify_einops(tokens, patch_size, grid):
    pd, ph, pw = triple(patch_size)
    gd, gh, gw = grid
    return rearrange(tokens, "b (d h w) (c p q r) -> b c (d p) (h q) (w r)", d=gd, h=gh, w=gw, p=pd, q=ph, r=pw)


def unpatchify_loops(tokens, patch_size, grid):
    pd, ph, pw = triple(patch_size)
    gd, gh, gw = grid
    b = tokens.shape[0]
    c = tokens.shape[2] // (pd * ph * pw)
    out = tokens.new_zeros(b, c, gd * pd, gh * ph, gw * pw)
    n = 0
    for i in range(gd):
        for j in range(gh):
            for k in range(gw):
                out[:, :, i * pd : (i + 1) * pd, j * ph : (j + 1) * ph, k * pw : (k + 1) * pw] = tokens[:, n].reshape(
                    b, c, pd, ph, pw
                )
                n += 1
    return out


def unpatchify_cube_root(tokens, patch_size, grid):
    pd, ph, pw = triple(patch_size)
    g = round(tokens.shape[1] ** (1 / 3))  # assumes as many patches along every axis
    b = tokens.shape[0]
    c = tokens.shape[2] // (pd * ph * pw)
    x = tokens.reshape(b, g, g, g, c, pd, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(b, c, g * pd, g * ph, g * pw)


def unpatchify_channels_last(tokens, patch_size, grid):
    pd, ph, pw = triple(patch_size)
    gd, gh, gw = grid
    return rearrange(tokens, "b (d h w) (p q r c) -> b c (d p) (h q) (w r)", d=gd, h=gh, w=gw, p=pd, q=ph, r=pw)


def unpatchify_h_slowest(tokens, patch_size, grid):
    pd, ph, pw = triple(patch_size)
    gd, gh, gw = grid
    return rearrange(tokens, "b (h d w) (c p q r) -> b c (d p) (h q) (w r)", d=gd, h=gh, w=gw, p=pd, q=ph, r=pw)


def unpatchify_strided(tokens, patch_size, grid):
    pd, ph, pw = triple(patch_size)
    gd, gh, gw = grid
    return rearrange(tokens, "b (d h w) (c p q r) -> b c (p d) (q h) (r w)", d=gd, h=gh, w=gw, p=pd, q=ph, r=pw)


def unpatchify_plain_reshape(tokens, patch_size, grid):
    pd, ph, pw = triple(patch_size)
    gd, gh, gw = grid
    c = tokens.shape[2] // (pd * ph * pw)
    return tokens.reshape(tokens.shape[0], c, gd * pd, gh * ph, gw * pw)


def unpatchify_zeros(tokens, patch_size, grid):
    pd, ph, pw = triple(patch_size)
    gd, gh, gw = grid
    c = tokens.shape[2] // (pd * ph * pw)
    return tokens.new_zeros(tokens.shape[0], c, gd * pd, gh * ph, gw * pw)


# ----------------------------------------------------------------------------- embed_with_linear


def embed_matmul(x, weight, bias):
    e = weight.shape[0]
    out = minattn.patchify(x, tuple(weight.shape[2:])) @ weight.reshape(e, -1).T
    return out if bias is None else out + bias


def embed_einsum(x, weight, bias):
    pd, ph, pw = weight.shape[2:]
    tokens = rearrange(x, "b c (d p) (h q) (w r) -> b (d h w) (c p q r)", p=pd, q=ph, r=pw)
    out = torch.einsum("bnk,ek->bne", tokens, weight.flatten(1))
    if bias is not None:
        out = out + repeat(bias, "e -> b n e", b=out.shape[0], n=out.shape[1])
    return out


def embed_linear_float64(x, weight, bias):
    tokens = patchify_unfold(x.double(), tuple(weight.shape[2:]))
    out = F.linear(tokens, weight.double().flatten(1), None if bias is None else bias.double())
    return out.to(x.dtype)


def embed_no_bias(x, weight, bias):
    return minattn.patchify(x, tuple(weight.shape[2:])) @ weight.reshape(weight.shape[0], -1).T


def embed_bias_always(x, weight, bias):
    return minattn.patchify(x, tuple(weight.shape[2:])) @ weight.reshape(weight.shape[0], -1).T + bias


def embed_channels_last_tokens(x, weight, bias):
    tokens = patchify_channels_last(x, tuple(weight.shape[2:]))
    out = tokens @ weight.reshape(weight.shape[0], -1).T
    return out if bias is None else out + bias


def embed_kernel_channels_last(x, weight, bias):
    matrix = weight.permute(0, 2, 3, 4, 1).reshape(weight.shape[0], -1)
    out = minattn.patchify(x, tuple(weight.shape[2:])) @ matrix.T
    return out if bias is None else out + bias


def embed_reshape_not_transpose(x, weight, bias):
    out = minattn.patchify(x, tuple(weight.shape[2:])) @ weight.reshape(-1, weight.shape[0])
    return out if bias is None else out + bias


def embed_features_first(x, weight, bias):
    return embed_matmul(x, weight, bias).transpose(1, 2)


def embed_conv3d(x, weight, bias):
    return F.conv3d(x, weight, bias, stride=tuple(weight.shape[2:])).flatten(2).transpose(1, 2)


def embed_conv_layer(x, weight, bias):
    e, c = weight.shape[:2]
    patch = tuple(weight.shape[2:])
    conv = torch.nn.Conv3d(c, e, patch, stride=patch, bias=bias is not None, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
        return conv(x).flatten(2).transpose(1, 2)


def embed_patch_embed(x, weight, bias):
    e, c = weight.shape[:2]
    embed = minattn.PatchEmbed(tuple(weight.shape[2:]), c, e).to(x.device, x.dtype)
    with torch.no_grad():
        embed.proj.weight.copy_(weight.reshape(e, -1))
        embed.proj.bias.copy_(torch.zeros(e) if bias is None else bias)
        return embed(x)


def embed_zeros(x, weight, bias):
    n = x.shape[2:].numel() // weight.shape[2:].numel()
    return torch.zeros(x.shape[0], n, weight.shape[0], dtype=x.dtype, device=x.device)


ATTEMPTS = [
    # patchify
    Attempt("patchify", "view, permute, reshape", patchify_view_permute, "right"),
    Attempt("patchify", "einops rearrange", patchify_einops, "right"),
    Attempt("patchify", "loops over the patch grid", patchify_loops, "right"),
    Attempt("patchify", "Tensor.unfold", patchify_unfold, "right"),
    Attempt("patchify", "numpy round trip", patchify_numpy, "right"),
    Attempt("patchify", "one axis's patch count for all three", patchify_same_grid_count, "bug", status="error"),
    Attempt("patchify", "channels last inside a token", patchify_channels_last, "bug", "channels_last_in_patch"),
    Attempt("patchify", "patches ordered (w, h, d)", patchify_w_slowest, "bug", "patch_order"),
    Attempt("patchify", "voxels ordered (c, r, q, p)", patchify_voxels_reversed, "bug", "voxel_order"),
    Attempt("patchify", "each axis split as (voxels, patches)", patchify_strided, "bug", "strided_patches"),
    Attempt("patchify", "reshape without permute", patchify_plain_reshape, "bug", "reshape_without_permute"),
    Attempt("patchify", "always float32", patchify_float32, "bug"),
    Attempt("patchify", "minattn.patchify", minattn.patchify, "shortcut", "ruled_out", "minattn.patchify"),
    Attempt("patchify", "minattn's own, aliased", lambda x, p: aliased_patchify(x, p), "shortcut", "ruled_out"),
    Attempt("patchify", "builds a minattn.PatchEmbed", patchify_via_patch_embed, "shortcut", "ruled_out",
            "minattn.PatchEmbed"),
    Attempt("patchify", "zeros of the right shape", patchify_zeros, "hard-coded"),
    Attempt("patchify", "returns a numpy array", lambda x, p: patchify_einops(x, p).cpu().numpy(), "wrong type"),
    # unpatchify
    Attempt("unpatchify", "view, permute, reshape", unpatchify_view_permute, "right"),
    Attempt("unpatchify", "einops rearrange", unpatchify_einops, "right"),
    Attempt("unpatchify", "loops writing each patch", unpatchify_loops, "right"),
    Attempt("unpatchify", "grid from the cube root of N", unpatchify_cube_root, "bug", status="error"),
    Attempt("unpatchify", "channels last inside a token", unpatchify_channels_last, "bug", "channels_last_in_patch"),
    Attempt("unpatchify", "patches ordered (h, d, w)", unpatchify_h_slowest, "bug", "patch_order"),
    Attempt("unpatchify", "each axis split as (voxels, patches)", unpatchify_strided, "bug", "strided_patches"),
    Attempt("unpatchify", "reshape without permute", unpatchify_plain_reshape, "bug", "reshape_without_permute"),
    Attempt("unpatchify", "minattn.unpatchify", minattn.unpatchify, "shortcut", "ruled_out", "minattn.unpatchify"),
    Attempt("unpatchify", "zeros of the right shape", unpatchify_zeros, "hard-coded"),
    # embed_with_linear
    Attempt("embed_with_linear", "patchify @ W.T + b", embed_matmul, "right"),
    Attempt("embed_with_linear", "einops and einsum", embed_einsum, "right"),
    Attempt("embed_with_linear", "F.linear in float64, cast back", embed_linear_float64, "right"),
    Attempt("embed_with_linear", "bias left out", embed_no_bias, "bug", "no_bias"),
    Attempt("embed_with_linear", "bias added even when None", embed_bias_always, "bug", status="error"),
    Attempt("embed_with_linear", "tokens channels last", embed_channels_last_tokens, "bug", "flatten_order_mismatch"),
    Attempt("embed_with_linear", "kernel permuted channels last", embed_kernel_channels_last, "bug",
            "flatten_order_mismatch"),
    Attempt("embed_with_linear", "weight reshaped to (K, E)", embed_reshape_not_transpose, "bug",
            "weight_reshaped_not_transposed"),
    Attempt("embed_with_linear", "features before tokens (B, E, N)", embed_features_first, "bug",
            "right_values_wrong_places"),
    Attempt("embed_with_linear", "F.conv3d", embed_conv3d, "shortcut", "ruled_out", "conv3d"),
    Attempt("embed_with_linear", "a Conv3d layer with the weights", embed_conv_layer, "shortcut", "ruled_out",
            "torch.nn.Conv3d"),
    Attempt("embed_with_linear", "minattn.PatchEmbed", embed_patch_embed, "shortcut", "ruled_out",
            "minattn.PatchEmbed"),
    Attempt("embed_with_linear", "zeros of the right shape", embed_zeros, "hard-coded"),
    Attempt("embed_with_linear", "no bias parameter", lambda x, weight: embed_matmul(x, weight, None), "bug",
            "missing_parameter"),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)


@pytest.mark.parametrize(
    "name, fn",
    [("patchify", patchify_same_grid_count), ("unpatchify", unpatchify_cube_root)],
)
def test_one_count_for_every_axis_fails_on_the_first_case(name, fn):
    """Every hidden case has a different number of patches along D, H and W, the first one included."""
    result = check(name, fn)
    assert result.status == "error"
    assert "case 1 of" in result.feedback


def test_embed_reference_is_the_convolution():
    """The hidden reference of embed_with_linear equals what a strided Conv3d computes, on every hidden case."""
    from minattn.grading.check import get_exercise

    exercise = get_exercise("embed_with_linear")
    for case in exercise.cases(torch.device("cpu")):
        x, weight, bias = case.args
        conv = F.conv3d(
            x.double(), weight.double(), None if bias is None else bias.double(), stride=tuple(weight.shape[2:])
        )
        expected = conv.flatten(2).transpose(1, 2)
        got = exercise.reference(x, weight, bias)
        assert got.dtype == x.dtype and got.shape == expected.shape
        torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)
