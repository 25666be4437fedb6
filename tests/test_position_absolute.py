"""Sine-cosine absolute position codes."""

import math

import pytest
import torch
from monai.networks.blocks.pos_embed_utils import build_sincos_position_embedding

from minattn.position import sincos_position_embedding


def test_shape_order_and_values_by_the_formula():
    grid, dim = (2, 3, 5), 12  # F = 2 frequencies per axis
    codes = sincos_position_embedding(grid, dim)
    assert codes.shape == (30, 12) and codes.dtype == torch.get_default_dtype()
    omega = [1.0, 10000.0**-0.5]
    d, h, w = 1, 2, 3
    row = codes[(d * 3 + h) * 5 + w]  # row-major: W fastest
    expected = []
    for coordinate in (d, h, w):
        expected += [math.sin(coordinate * o) for o in omega] + [math.cos(coordinate * o) for o in omega]
    torch.testing.assert_close(row, torch.tensor(expected))


@pytest.mark.filterwarnings("ignore:torch.meshgrid")  # inside MONAI
@pytest.mark.parametrize("grid", [(3, 4, 5), (4, 6)])
def test_equals_monai_with_its_axis_blocks_reordered(grid):
    dim = 24
    ours = sincos_position_embedding(grid, dim)
    monai = build_sincos_position_embedding(list(grid), dim, spatial_dims=len(grid)).detach()[0]
    blocks = ours.reshape(ours.shape[0], len(grid), -1)  # (N, axes, 2F)
    order = [1, 0, 2] if len(grid) == 3 else [1, 0]  # MONAI puts axis 1 first
    torch.testing.assert_close(blocks[:, order].reshape(ours.shape), monai)


def test_dot_product_depends_only_on_the_offset():
    grid = (5, 6, 7)
    codes = sincos_position_embedding(grid, 36, dtype=torch.float64)
    coords = torch.stack(torch.meshgrid(*(torch.arange(s) for s in grid), indexing="ij"), -1).reshape(-1, 3)
    flat = {tuple(c.tolist()): i for i, c in enumerate(coords)}
    offset = (1, -2, 3)
    pairs = [(flat[a], flat[b]) for a in flat if (b := tuple(x + o for x, o in zip(a, offset))) in flat]
    dots = torch.stack([codes[i] @ codes[j] for i, j in pairs])
    assert len(pairs) > 10 and torch.allclose(dots, dots[0].expand_as(dots))
    assert not torch.allclose(codes[0] @ codes[flat[(0, 0, 1)]], codes[0] @ codes[flat[(0, 0, 3)]])


def test_int_grid_dtype_and_bad_input():
    assert sincos_position_embedding(2, 6, dtype=torch.float64).shape == (8, 6)
    assert sincos_position_embedding(2, 6, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="multiple of 2 \\* 3"):
        sincos_position_embedding((2, 3, 4), 8)
    with pytest.raises(ValueError, match="grid"):
        sincos_position_embedding((2, 0, 4), 6)
    with pytest.raises(ValueError, match="temperature"):
        sincos_position_embedding((2, 3), 8, temperature=0.5)
