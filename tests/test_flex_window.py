"""Shifted-window attention as one FlexAttention call equals the windowed path and MONAI's blocks.

Most cases run FlexAttention eagerly (exact, quick to start); a few compile it,
since every new grid shape costs a compilation of several seconds on a CPU.
"""

import dataclasses

import pytest
import torch
from monai.networks.nets import swin_unetr as monai_swin
from torch.nn.attention.flex_attention import create_block_mask

import minattn
from minattn.flex_window import (
    BLOCK_SIZE,
    computed_block_fraction,
    flex_window_attention,
    plan_for,
    tile_kinds,
    window_block_mask,
    window_mask_mod,
)
from minattn.interop import from_monai
from minattn.windows import WindowLayout

# The grids of the from_monai tests (tests/test_interop_monai.py), with window 4:
# divisible, padding, and windows larger than the input along D, along H, along all axes.
SHAPES = {
    "divisible": (8, 8, 8),
    "padding": (7, 9, 10),
    "window > input along D": (2, 8, 9),
    "window > input along H": (8, 3, 8),
    "window > input everywhere": (3, 2, 3),
}
TOLERANCE = 1e-5  # float32, largest absolute difference


def _randomise(module):
    # Default init leaves biases at zero and the bias table tiny; random weights make every term count.
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return module.eval()


def _monai_layer(window, dim=12, heads=3):
    layer = monai_swin.BasicLayer(
        dim=dim, depth=2, num_heads=heads, window_size=window, drop_path=[0.0, 0.0], qkv_bias=True, downsample=None
    )
    return _randomise(layer)


def _run_as(converted, backend, x):
    minattn.set_attention_backend(converted.module, backend)
    out = converted(x)
    return out, [block.last_backend for block in converted.module.blocks]


@pytest.mark.parametrize("shape", SHAPES)
def test_monai_basic_layer_as_one_flex_attention(device, shape):
    # Block 0 uses regular windows, block 1 shifted ones (or none where the window covers the grid).
    layer = _monai_layer((4, 4, 4)).to(device)
    converted = from_monai(layer)
    x = torch.randn(2, 12, *SHAPES[shape], device=device)
    with torch.no_grad():
        expected = layer(x)
        windows, _ = _run_as(converted, "windows", x)
        flex, routes = _run_as(converted, "flex-eager", x)
    assert routes == ["flex-eager", "flex-eager"]
    torch.testing.assert_close(flex, expected, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(flex, windows, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    "window, grid",
    [
        ((4, 5, 6), (8, 4, 4)),  # SwinUNETR's stage 3 with window (4, 5, 6): D keeps its shift, H and W shrink
        ((2, 4, 3), (5, 9, 7)),  # anisotropic window and shift, padding along every axis
        ((4, 4), (9, 6)),  # 2D
        ((5, 3), (9, 6)),  # 2D, anisotropic
    ],
)
def test_monai_anisotropic_and_2d_windows(window, grid):
    layer = _monai_layer(window, dim=8, heads=2)
    converted = from_monai(layer)
    x = torch.randn(2, 8, *grid)
    with torch.no_grad():
        flex, routes = _run_as(converted, "flex-eager", x)
        expected = layer(x)
    assert routes == ["flex-eager", "flex-eager"]
    torch.testing.assert_close(flex, expected, atol=TOLERANCE, rtol=0)


def test_compiled_flex_equals_monai_with_padding():
    # One compiled grid: both blocks share it (same sequence length, same mask rule), so it compiles once.
    layer = _monai_layer((4, 4, 4))
    converted = from_monai(layer)
    x = torch.randn(2, 12, *SHAPES["padding"])
    with torch.no_grad():
        flex, routes = _run_as(converted, "flex-compiled", x)
        expected = layer(x)
    assert routes == ["flex-compiled", "flex-compiled"]
    torch.testing.assert_close(flex, expected, atol=TOLERANCE, rtol=0)


def test_monai_block_with_its_own_mask(device):
    # MONAI hands its block an additive -100 mask; the flex route sees it is the layout's own and uses the regions.
    block = monai_swin.SwinTransformerBlock(dim=16, num_heads=4, window_size=(4, 4, 4), shift_size=(2, 2, 2))
    block = _randomise(block).to(device)
    converted = from_monai(block)
    converted.module.attention_backend = "flex-eager"
    x = torch.randn(2, 7, 8, 6, 16, device=device)
    mask = monai_swin.compute_mask([8, 8, 8], (4, 4, 4), (2, 2, 2), torch.device(device))
    with torch.no_grad():
        torch.testing.assert_close(converted(x, mask), block(x, mask), atol=TOLERANCE, rtol=0)
    assert converted.module.last_backend == "flex-eager"


def test_any_other_mask_is_honoured():
    attn = _randomise(minattn.WindowAttention(8, 4, 2))
    layout = WindowLayout((8, 8, 8), 4, 2)
    mask = torch.rand(layout.num_windows, 64, 64) < 0.5
    mask |= torch.eye(64, dtype=torch.bool)  # every query keeps a key
    x = torch.randn(2, 8, 8, 8, 8)
    with torch.no_grad():
        out, route = flex_window_attention(x, attn, 2, mask=mask, compiled=False)
        expected = minattn.shifted_window_attention(x, attn, 2, mask=mask)
    assert route == "flex-eager"
    torch.testing.assert_close(out, expected, atol=TOLERANCE, rtol=0)


def test_geometric_shrunk_windows_equal_the_windowed_path():
    # minattn's own modules index the bias by true offsets where H shrinks; MONAI's conversion does not.
    stage = _randomise(minattn.SwinStage(8, depth=2, num_heads=2, window_size=4))
    x = torch.randn(1, 8, 3, 9, 8)
    with torch.no_grad():
        expected = stage(x)
        minattn.set_attention_backend(stage, "flex-eager")
        torch.testing.assert_close(stage(x), expected, atol=TOLERANCE, rtol=0)


def test_gradients_equal_the_windowed_path(device):
    # FlexAttention has a backward pass on CUDA; on the CPU (torch 2.13) it has none, and the
    # layer says it took the windowed path.
    torch.manual_seed(1)
    windows = _randomise(minattn.SwinBlock(12, 3, window_size=4, shift_size=2)).to(device).train()
    flex = minattn.SwinBlock(12, 3, window_size=4, shift_size=2, attention_backend="flex").to(device).train()
    flex.load_state_dict(windows.state_dict())
    x = torch.randn(2, 7, 9, 10, 12, device=device)
    grads = []
    for block in (windows, flex):
        x_ = x.clone().requires_grad_()
        (block(x_) ** 2).sum().backward()
        grads.append([x_.grad, block.attn.position_bias.table.grad, block.attn.qkv.weight.grad])
    assert flex.last_backend == ("windows" if device.type == "cpu" else "flex-compiled")
    for got, expected in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_recording_weights_takes_the_windowed_path():
    block = minattn.SwinBlock(8, 2, window_size=4, shift_size=2, attention_backend="flex-eager").eval()
    block.attn.record_weights = True
    with torch.no_grad():
        block(torch.randn(1, 8, 8, 8, 8))
    assert block.last_backend == "windows"
    assert block.attn.last_weights.shape == (8, 2, 64, 64)


def test_default_path_is_unchanged_and_reported():
    block = minattn.SwinBlock(8, 2, window_size=4, shift_size=2).eval()
    assert block.attention_backend == "windows"
    with torch.no_grad():
        block(torch.randn(1, 5, 6, 7, 8))
    assert block.last_backend == "windows"


def test_backend_option_reaches_every_block_of_swin_unetr():
    model = minattn.SwinUNETR(2, 3, feature_size=12, spatial_dims=2, attention_backend="flex-eager")
    blocks = [m for m in model.modules() if isinstance(m, minattn.SwinBlock)]
    assert len(blocks) == 8 and {b.attention_backend for b in blocks} == {"flex-eager"}
    minattn.set_attention_backend(model, "windows")
    assert {b.attention_backend for b in blocks} == {"windows"}
    with pytest.raises(ValueError, match="attention_backend must be one of"):
        minattn.set_attention_backend(model, "dense")
    with pytest.raises(ValueError, match="attention_backend must be one of"):
        minattn.SwinBlock(8, 2, window_size=4, shift_size=0, attention_backend="triton")


def _tiles(allowed: torch.Tensor, block: int = BLOCK_SIZE) -> torch.Tensor:
    """Which ``block x block`` tiles of a dense ``(L, L)`` mask hold any allowed pair."""
    length = allowed.shape[0]
    tiles = -(-length // block)
    padded = torch.zeros(tiles * block, tiles * block, dtype=torch.bool)
    padded[:length, :length] = allowed
    return padded.reshape(tiles, block, tiles, block).any(-1).any(1)


def test_block_mask_is_sparse_because_windows_are_contiguous():
    layout = WindowLayout((8, 8, 8), 4, 2)  # 8 windows of 64 tokens, one tile each
    assert BLOCK_SIZE == 64
    fraction = computed_block_fraction(plan_for(layout).block_mask)
    assert fraction == pytest.approx(8 / 64)  # only the diagonal tiles
    window_order = torch.arange(512) // 64, plan_for(layout).region
    # The same rule with the tokens in the grid's own row-major order touches three times as many tiles.
    order = layout.token_ids().reshape(-1)
    row_major = [torch.empty_like(labels) for labels in window_order]
    for labels, ordered in zip(row_major, window_order):
        labels[order] = ordered
    fractions = []
    for window_of, region_of in (window_order, row_major):
        allowed = (window_of[:, None] == window_of[None]) & (region_of[:, None] == region_of[None])
        fractions.append(_tiles(allowed).float().mean().item())
    assert fractions[0] == pytest.approx(fraction)
    assert fractions[1] == pytest.approx(24 / 64)


@pytest.mark.parametrize("grid, window, shift", [((7, 9, 10), 4, 2), ((16, 16, 16), 7, 3), ((9, 6), (5, 3), (2, 1))])
def test_block_mask_from_geometry_equals_flex_attentions_own(grid, window, shift):
    # Our tiles come from window and region labels; create_block_mask evaluates the rule on every pair.
    layout = WindowLayout(grid, window, shift)
    plan = plan_for(layout)
    length = plan.length
    mask_mod = window_mask_mod(layout.tokens_per_window, plan.region)
    reference = create_block_mask(mask_mod, None, None, length, length, BLOCK_SIZE=BLOCK_SIZE)
    ours = plan.block_mask
    assert torch.equal(ours.to_dense(), reference.to_dense())
    assert torch.equal(ours.full_kv_num_blocks, reference.full_kv_num_blocks)
    full_ours = ours.full_kv_indices[..., : int(ours.full_kv_num_blocks.max())]
    full_reference = reference.full_kv_indices[..., : int(reference.full_kv_num_blocks.max())]
    assert torch.equal(full_ours.sort(-1).values, full_reference.sort(-1).values)
    kinds = tile_kinds(ours)  # what the lesson draws: 0 skipped, 1 partial, 2 full
    assert torch.equal(kinds > 0, reference.to_dense()[0, 0].bool())
    assert int((kinds == 2).sum()) == int(reference.full_kv_num_blocks.sum())


def test_a_wrong_region_label_breaks_equality():
    # The comparisons above are not vacuous: mislabel one strip of regions and the output changes.
    attn = _randomise(minattn.WindowAttention(8, 4, 2))
    x = torch.randn(1, 8, 8, 8, 8)
    layout = WindowLayout((8, 8, 8), 4, 2)
    plan = plan_for(layout)
    with torch.no_grad():
        expected = minattn.shifted_window_attention(x, attn, 2)
        right, _ = flex_window_attention(x, attn, 2, compiled=False, plan=plan)
        wrong_region = plan.region.clone()
        wrong_region[-64:] = 0  # the last window mixes all its regions
        wrong_mask = window_block_mask(layout, "cpu", wrong_region)
        wrong = dataclasses.replace(plan, region=wrong_region, block_mask=wrong_mask)
        mislabelled, _ = flex_window_attention(x, attn, 2, compiled=False, plan=wrong)
    torch.testing.assert_close(right, expected, atol=TOLERANCE, rtol=0)
    assert (mislabelled - expected).abs().max() > 1e-2


def test_eager_route_respects_the_memory_budget():
    attn = minattn.WindowAttention(8, 4, 2).eval()
    with torch.no_grad(), minattn.memory_budget(1024), pytest.raises(minattn.AttentionMemoryError, match="uncompiled"):
        flex_window_attention(torch.randn(1, 8, 8, 8, 8), attn, 2, compiled=False)


def test_rejects_a_grid_of_the_wrong_rank_or_width():
    attn = minattn.WindowAttention(8, 4, 2)
    with pytest.raises(ValueError, match="3 spatial axes and 8 channels"):
        flex_window_attention(torch.randn(1, 8, 8, 6), attn, 0)
