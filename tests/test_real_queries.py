"""Attention over a grid from its own queries only gives the windowed route's numbers, in inference and training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import minattn._real_queries as real_queries
from minattn import WindowAttention, shifted_window_attention
from minattn.windows import WindowLayout, shifted_window_mask

# (grid, window, shift): unequal sizes on every axis; padding on some axes only, on all, on none;
# windows that shrink to the grid (and lose their shift there); 2D.
LAYOUTS = {
    "padding on every axis, shifted": ((7, 9, 10), (4, 3, 5), (2, 1, 2)),
    "padding on every axis, regular": ((7, 9, 10), (4, 3, 5), (0, 0, 0)),
    "padding on H only, shifted": ((8, 7, 10), (4, 3, 5), (2, 1, 2)),
    "no padding, shifted": ((8, 6, 10), (4, 3, 5), (2, 1, 2)),
    "window shrinks along D": ((2, 7, 9), (4, 3, 4), (2, 1, 2)),
    "window shrinks everywhere": ((3, 2, 3), (4, 4, 4), (2, 2, 2)),
    "2D, padded": ((9, 11), (4, 3), (2, 1)),
}


def layer(window, dim=12, heads=3, seed=0):
    """A WindowAttention with every weight random (default init leaves biases at zero), in float64."""
    torch.manual_seed(seed)
    attn = WindowAttention(dim, window, heads).double().eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.5)
    return attn


def windowed(x, attn, shift, mask=None):
    """The windowed route of the lessons: pad, roll, partition, explicit attention, undo."""
    attn.fused = False
    try:
        return shifted_window_attention(x, attn, shift, mask)
    finally:
        attn.fused = True


@pytest.mark.parametrize("name", LAYOUTS)
def test_equals_the_windowed_route(name, device):
    grid, window, shift = LAYOUTS[name]
    attn = layer(window).to(device)
    x = torch.randn(2, *grid, 12, dtype=torch.float64, device=device)
    layout = WindowLayout(grid, window, shift)
    with torch.no_grad():
        got = attn.attend_grid(x, layout, layout.mask(device))
        assert got is not None
        torch.testing.assert_close(got, windowed(x, attn, shift), rtol=0, atol=1e-12)
        # and it is the route shifted_window_attention takes in inference
        torch.testing.assert_close(shifted_window_attention(x, attn, shift), got, rtol=0, atol=0)


@pytest.mark.parametrize("name", LAYOUTS)
def test_computes_exactly_the_grids_own_queries(name, monkeypatch):
    grid, window, shift = LAYOUTS[name]
    attn = layer(window)
    queries, sdpa = [], F.scaled_dot_product_attention

    def counting_sdpa(q, k, v, **kwargs):
        queries.append(q.shape[0] * q.shape[2])  # windows x queries per window, per head
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(real_queries.F, "scaled_dot_product_attention", counting_sdpa)
    with torch.no_grad():
        shifted_window_attention(torch.randn(2, *grid, 12, dtype=torch.float64), attn, shift)
    layout = WindowLayout(grid, window, shift)
    assert sum(queries) == 2 * math.prod(grid)
    assert math.prod(layout.padded) > math.prod(grid) or name.startswith(("no padding", "window shrinks every"))


@pytest.mark.parametrize("name", ["padding on every axis, shifted", "2D, padded"])
def test_plan_orders_every_padded_token_once_and_restores_the_grid(name):
    grid, window, shift = LAYOUTS[name]
    layout = WindowLayout(grid, window, shift)
    plan = real_queries.real_query_plan(layout)
    tokens = math.prod(grid)
    assert plan.order.numel() == layout.num_windows * layout.tokens_per_window
    assert (plan.order == tokens).sum() == math.prod(layout.padded) - tokens  # the zero row, once per padded slot
    assert torch.equal(plan.order[plan.order < tokens][plan.restore], torch.arange(tokens))
    # In every group, the real tokens come first and the padding after.
    for group in plan.groups:
        rows = plan.order[group.start * layout.tokens_per_window : group.stop * layout.tokens_per_window]
        rows = rows.reshape(group.stop - group.start, layout.tokens_per_window)
        assert (rows[:, : group.real] < tokens).all() and (rows[:, group.real :] == tokens).all()


def test_monai_mask_for_a_larger_grid_is_honoured():
    # MONAI's block takes the mask of its caller's padded grid; a shifted mask of the padded grid is the same mask.
    grid, window, shift = (7, 8, 6), (4, 4, 4), (2, 2, 2)
    attn = layer(window)
    x = torch.randn(2, *grid, 12, dtype=torch.float64)
    mask = shifted_window_mask((8, 8, 8), window, shift)
    with torch.no_grad():
        torch.testing.assert_close(
            shifted_window_attention(x, attn, shift, mask), windowed(x, attn, shift, mask), rtol=0, atol=1e-12
        )


def test_a_mask_that_leaves_a_real_query_no_key_takes_the_explicit_path():
    grid, window, shift = (7, 9, 10), (4, 3, 5), (2, 1, 2)
    layout = WindowLayout(grid, window, shift)
    attn = layer(window)
    mask = layout.mask().clone()
    mask[0, 0] = False  # slot 0 of window 0 is a real token (no window starts with padding)
    x = torch.randn(1, *grid, 12, dtype=torch.float64)
    with torch.no_grad():
        assert attn.attend_grid(x, layout, mask) is None
        out = shifted_window_attention(x, attn, shift, mask)
        torch.testing.assert_close(out, windowed(x, attn, shift, mask), rtol=0, atol=1e-12)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", LAYOUTS)
def test_training_gradients_equal_the_windowed_route(name, monkeypatch):
    grid, window, shift = LAYOUTS[name]
    ours, reference = layer(window), layer(window)
    x = torch.randn(2, *grid, 12, dtype=torch.float64)
    upstream = torch.randn(2, *grid, 12, dtype=torch.float64)
    queries, chunked = [], real_queries.chunked_window_attention

    def counting_chunked(q, *args):
        queries.append(q.shape[0] * q.shape[1] * q.shape[3])  # volumes x windows x queries per window
        return chunked(q, *args)

    monkeypatch.setattr(real_queries, "chunked_window_attention", counting_chunked)
    grads = []
    for module, route in ((ours, shifted_window_attention), (reference, windowed)):
        xi = x.clone().requires_grad_(True)
        (route(xi, module, shift) * upstream).sum().backward()
        grads.append([xi.grad] + [p.grad for p in module.parameters()])
    assert sum(queries) == 2 * math.prod(grid)  # the route ran, on the real queries only
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_not_taken_where_weights_are_recorded_hooks_wait_or_in_training_off_the_cpu():
    grid, window, shift = LAYOUTS["padding on every axis, shifted"]
    layout = WindowLayout(grid, window, shift)
    attn = layer(window)
    x = torch.randn(1, *grid, 12, dtype=torch.float64)
    with torch.no_grad():
        attn.record_weights = True
        assert attn.attend_grid(x, layout, layout.mask()) is None
        attn.record_weights, attn.fused = False, False
        assert attn.attend_grid(x, layout, layout.mask()) is None
    attn.fused = True
    assert attn.attend_grid(x, layout, layout.mask()) is not None  # training on the CPU
    for register in (attn.register_forward_hook, attn.register_forward_pre_hook):
        handle = register(lambda *args: None)
        assert attn.attend_grid(x, layout, layout.mask()) is None  # hooks expect calls on windows
        handle.remove()
    assert attn.attend_grid(x, layout, layout.mask()) is not None
    route = real_queries.RealQueryAttention()
    assert route.applies(x.to("meta"), training=False) and not route.applies(x.to("meta"), training=True)


def test_cache_follows_the_table_and_the_mask_changed_in_place():
    grid, window, shift = LAYOUTS["padding on every axis, shifted"]
    layout = WindowLayout(grid, window, shift)
    attn = layer(window)
    x = torch.randn(1, *grid, 12, dtype=torch.float64)
    mask = layout.mask().clone()
    with torch.no_grad():
        first = attn.attend_grid(x, layout, mask)
        attn.position_bias.table.mul_(-2.0)  # an optimiser step changes the table in place
        after_table = attn.attend_grid(x, layout, mask)
        assert not torch.allclose(first, after_table)
        torch.testing.assert_close(after_table, windowed(x, attn, shift, mask), rtol=0, atol=1e-12)
        mask[3, :, 1] = False  # a key forbidden in window 3, in place
        mask[3, 1, 1] = True
        got = attn.attend_grid(x, layout, mask)
        torch.testing.assert_close(got, windowed(x, attn, shift, mask), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lower_precision_matches_the_windowed_fused_route(dtype):
    grid, window, shift = LAYOUTS["padding on every axis, shifted"]
    layout = WindowLayout(grid, window, shift)
    attn = layer(window).to(dtype)
    x = torch.randn(2, *grid, 12, dtype=dtype)
    with torch.no_grad():
        got = attn.attend_grid(x, layout, layout.mask())
        reference = layout.reverse(attn(layout.partition(x), mask=layout.mask(), window_size=layout.window))
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got, reference, rtol=tolerance, atol=tolerance)


def test_rejects_a_grid_channels_or_mask_that_do_not_fit_the_layout():
    grid, window, shift = LAYOUTS["padding on every axis, shifted"]
    layout = WindowLayout(grid, window, shift)
    attn = layer(window)
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"grid \(7, 9, 10\)"):
            attn.attend_grid(torch.randn(1, 7, 10, 9, 12, dtype=torch.float64), layout)
        with pytest.raises(ValueError, match="12 channels"):
            attn.attend_grid(torch.randn(1, *grid, 8, dtype=torch.float64), layout)
        with pytest.raises(ValueError, match="mask must have shape"):
            attn.attend_grid(torch.randn(1, *grid, 12, dtype=torch.float64), layout, layout.mask()[:, :5, :5])


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_under_autocast_matches_the_windowed_route(training):
    # Under CPU autocast the projections run in bfloat16 while x stays float32.
    grid, window, shift = LAYOUTS["padding on every axis, shifted"]
    attn = layer(window).float()
    x = torch.randn(2, *grid, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.set_grad_enabled(training):
        got = shifted_window_attention(x, attn, shift)
        attn._grid_route.applies = lambda *args: False  # the windowed fused route, same autocast
        reference = shifted_window_attention(x, attn, shift)
    assert got.dtype == reference.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), reference.float(), rtol=3e-2, atol=3e-2)


def test_a_forward_hook_on_the_attention_sees_the_windows_and_the_same_output():
    grid, window, shift = LAYOUTS["padding on every axis, shifted"]
    attn = layer(window)
    x = torch.randn(2, *grid, 12, dtype=torch.float64)
    seen = []
    with torch.no_grad():
        plain = shifted_window_attention(x, attn, shift)
        handle = attn.register_forward_hook(lambda module, args, output: seen.append(args[0].shape))
        hooked = shifted_window_attention(x, attn, shift)
        handle.remove()
    layout = WindowLayout(grid, window, shift)
    assert seen == [(2 * layout.num_windows, layout.tokens_per_window, 12)]
    torch.testing.assert_close(hooked, plain, rtol=0, atol=1e-12)
