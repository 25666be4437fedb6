"""Patchify, unpatchify and the patch embedding against Conv3d."""

import pytest
import torch
from einops import rearrange
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import minattn
from minattn import cost


def test_patchify_layout_is_channel_major_conv_kernel_order(device):
    x = torch.arange(2 * 3 * 4 * 6 * 2, dtype=torch.float32, device=device).reshape(2, 3, 4, 6, 2)
    tokens = minattn.patchify(x, (2, 3, 1))
    assert tokens.shape == (2, 2 * 2 * 2, 3 * 6)
    expected = rearrange(x, "b c (d p) (h q) (w r) -> b (d h w) (c p q r)", p=2, q=3, r=1)
    assert torch.equal(tokens, expected)
    # token 1 is patch (d=0, h=0, w=1); its first entries are channel 0's voxels
    assert torch.equal(tokens[0, 1, :6], x[0, 0, 0:2, 0:3, 1].flatten())


@given(
    grid=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    patch=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    channels=st.integers(1, 3),
)
def test_round_trip_for_every_divisible_shape(grid, patch, channels):
    x = torch.randn(2, channels, *(g * p for g, p in zip(grid, patch)))
    tokens = minattn.patchify(x, patch)
    assert tokens.shape == (2, grid[0] * grid[1] * grid[2], channels * patch[0] * patch[1] * patch[2])
    assert torch.equal(minattn.unpatchify(tokens, patch, grid), x)


def test_two_dimensional_images(device):
    x = torch.randn(1, 2, 6, 4, device=device)
    tokens = minattn.patchify(x, 2)
    assert tokens.shape == (1, 6, 8)
    assert torch.equal(minattn.unpatchify(tokens, 2, (3, 2)), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_patch_embed_equals_conv3d_with_copied_weights(device, dtype):
    conv = nn.Conv3d(2, 16, kernel_size=(2, 4, 4), stride=(2, 4, 4)).to(device, dtype)
    embed = minattn.PatchEmbed.from_conv(conv)
    x = torch.randn(3, 2, 4, 8, 12, device=device, dtype=dtype)
    expected = rearrange(conv(x), "b e d h w -> b (d h w) e")
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(embed(x), expected, atol=tol, rtol=0)
    torch.testing.assert_close(embed(x, as_grid=True), rearrange(conv(x), "b e d h w -> b d h w e"), atol=tol, rtol=0)
    torch.testing.assert_close(embed.conv_weight(), conv.weight)


def test_patch_embed_copied_into_conv_gives_the_same_tokens():
    embed = minattn.PatchEmbed(4, 1, 8)
    conv = nn.Conv3d(1, 8, 4, 4)
    with torch.no_grad():
        conv.weight.copy_(embed.conv_weight())
        conv.bias.copy_(embed.proj.bias)
    x = torch.randn(1, 1, 8, 8, 8)
    torch.testing.assert_close(embed(x), rearrange(conv(x), "b e d h w -> b (d h w) e"), atol=1e-5, rtol=0)


@pytest.mark.parametrize("patch, channels, embed", [(8, 1, 128), ((2, 4, 4), 3, 48), (16, 4, 768), ((4, 4), 3, 96)])
def test_parameter_count_matches_cost(patch, channels, embed):
    module = minattn.PatchEmbed(patch, channels, embed)
    assert sum(p.numel() for p in module.parameters()) == cost.patch_embed_params(patch, channels, embed)


def test_seed_patch_embedding_has_65664_parameters():
    module = minattn.PatchEmbed(8, 1, 128)
    assert sum(p.numel() for p in module.parameters()) == 65_664
    assert minattn.patchify(torch.zeros(1, 1, 8, 8, 8), 8).shape[-1] == 512


def test_bad_input_names_the_shapes():
    with pytest.raises(ValueError, match=r"not divisible by the patch size \(8, 8, 8\)"):
        minattn.patchify(torch.zeros(1, 1, 10, 8, 8), 8)
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        minattn.patchify(torch.zeros(8, 8, 8), 2)
    with pytest.raises(ValueError, match="positive"):
        minattn.patchify(torch.zeros(1, 1, 8, 8, 8), 0)
    with pytest.raises(ValueError, match="3 entries"):
        minattn.patchify(torch.zeros(1, 1, 8, 8, 8), (2, 2))
    with pytest.raises(ValueError, match="holds 8 patches"):
        minattn.unpatchify(torch.zeros(1, 7, 8), 2, (2, 2, 2))
    with pytest.raises(ValueError, match="4 channels"):
        minattn.PatchEmbed(2, 4, 8)(torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="kernel_size == stride"):
        minattn.PatchEmbed.from_conv(nn.Conv3d(1, 4, 3, 1))


def test_numpy_integer_sizes_are_accepted():
    import numpy as np

    x = torch.randn(1, 1, 4, 4, 4)
    assert torch.equal(minattn.patchify(x, np.int64(2)), minattn.patchify(x, 2))
    assert torch.equal(minattn.patchify(x, np.array([2, 2, 4])), minattn.patchify(x, (2, 2, 4)))
