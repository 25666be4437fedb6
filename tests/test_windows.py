"""Window partition, cyclic shift and the shifted-window mask."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minattn
from minattn.receptive_field import receptive_field
from minattn.windows import (
    WindowLayout,
    cyclic_shift,
    pad_to_windows,
    region_ids,
    shifted_window_mask,
    swin_shifts,
    window_partition,
)

sizes = st.integers(1, 3)


@given(grid=st.tuples(sizes, sizes, sizes), window=st.tuples(sizes, sizes, sizes), batch=st.integers(1, 2))
def test_partition_reverse_round_trip(grid, window, batch):
    spatial = tuple(g * w for g, w in zip(grid, window))
    x = torch.randn(batch, *spatial, 3)
    windows = minattn.window_partition(x, window)
    assert windows.shape == (batch * grid[0] * grid[1] * grid[2], window[0] * window[1] * window[2], 3)
    assert torch.equal(minattn.window_reverse(windows, window, spatial), x)


def test_partition_order_matches_the_reference_view_permute(device):
    x = torch.randn(2, 4, 6, 8, 3, device=device)
    w = (2, 3, 4)
    reference = (
        x.view(2, 2, 2, 2, 3, 2, 4, 3).permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, 2 * 3 * 4, 3)
    )
    assert torch.equal(minattn.window_partition(x, w), reference)
    # window 1 of volume 0 is at (d=0, h=0, w=1): W varies fastest
    assert torch.equal(minattn.window_partition(x, w)[1, 0], x[0, 0, 0, 4])


def test_two_dimensional_partition(device):
    x = torch.randn(1, 4, 6, 2, device=device)
    windows = minattn.window_partition(x, 2)
    assert windows.shape == (6, 4, 2)
    assert torch.equal(minattn.window_reverse(windows, 2, (4, 6)), x)


@given(shift=st.tuples(st.integers(-5, 5), st.integers(-5, 5), st.integers(-5, 5)))
def test_shift_then_unshift_is_identity(shift):
    x = torch.randn(2, 3, 4, 5, 2)
    assert torch.equal(minattn.cyclic_shift(minattn.cyclic_shift(x, shift), tuple(-s for s in shift)), x)


def test_shift_moves_tokens_towards_the_origin(device):
    x = torch.arange(8, device=device).reshape(1, 8, 1, 1, 1)
    shifted = minattn.cyclic_shift(x, (3, 0, 0))
    # token at d = 3 moves to d = 0; the first three wrap to the end
    assert shifted.flatten().tolist() == [3, 4, 5, 6, 7, 0, 1, 2]
    torch.testing.assert_close(shifted, torch.roll(x, shifts=(-3, 0, 0), dims=(1, 2, 3)))


def test_region_ids_along_one_axis():
    labels = region_ids((8,), (4,), (2,))
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    assert region_ids((8,), (4,), (0,)).tolist() == [0] * 8


def test_mask_is_all_true_without_shift_and_symmetric_with_it():
    assert minattn.shifted_window_mask((4, 4, 4), 2, 0).all()
    mask = minattn.shifted_window_mask((8, 8, 8), 4, 2)
    assert mask.shape == (8, 64, 64) and mask.dtype == torch.bool
    assert torch.equal(mask, mask.transpose(1, 2))
    assert mask.diagonal(dim1=1, dim2=2).all()  # every token may attend to itself
    # only the windows touching the far edge mix regions: window 0 is untouched
    assert mask[0].all()
    assert not mask[-1].all()


def test_mask_matches_monai_compute_mask(device):
    from monai.networks.nets.swin_unetr import compute_mask

    for dims, window, shift in [((8, 8, 8), (4, 4, 4), (2, 2, 2)), ((6, 8, 4), (3, 4, 2), (1, 2, 1)), ((8, 4), (4, 2), (2, 1))]:
        monai_mask = compute_mask(list(dims), window, shift, torch.device(device))
        assert torch.equal(minattn.shifted_window_mask(dims, window, shift, device=device), monai_mask == 0)


def test_effective_window_shrinks_to_small_axes():
    window, shift = minattn.effective_window_and_shift((2, 9, 7), (4, 4, 7), (2, 2, 3))
    assert window == (2, 4, 7) and shift == (0, 2, 0)


def test_padding_to_windows():
    x = torch.randn(1, 5, 6, 7, 2)
    padded = minattn.pad_to_windows(x, 4)
    assert padded.shape == (1, 8, 8, 8, 2)
    assert torch.equal(padded[:, :5, :6, :7], x) and padded[:, 5:].abs().sum() == 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: minattn.window_partition(torch.zeros(1, 5, 4, 4, 2), 4), r"not divisible by the window size \(4, 4, 4\)"),
        (lambda: minattn.window_partition(torch.zeros(5, 4, 4), 2), r"\(B, D, H, W, C\)"),
        (lambda: minattn.window_partition(torch.zeros(1, 4, 4, 4, 2), -2), "positive"),
        (lambda: minattn.window_reverse(torch.zeros(3, 8, 2), 2, (4, 4, 4)), "8 windows per volume"),
        (lambda: minattn.shifted_window_mask((8, 8, 8), 4, 4), "smaller than the window"),
        (lambda: minattn.shifted_window_mask((6, 8, 8), 4, 2), "padded grid"),
        (lambda: minattn.cyclic_shift(torch.zeros(1, 4, 4, 4, 2), (1, 1)), "one per spatial axis"),
    ],
)
def test_bad_input_raises_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------ WindowLayout: the geometry written once


@pytest.mark.parametrize(
    "grid, window, shift", [((5, 6, 7), 4, 2), ((2, 9, 7), (4, 4, 7), (2, 2, 3)), ((6, 5), (4, 3), (2, 1))]
)
def test_layout_partition_is_pad_roll_partition_and_reverse_undoes_it(grid, window, shift):
    layout = WindowLayout(grid, window, shift)
    x = torch.randn(2, *grid, 3)
    expected = window_partition(cyclic_shift(pad_to_windows(x, layout.window), layout.shift), layout.window)
    assert torch.equal(layout.partition(x), expected)
    assert layout.partition(x).shape == (2 * layout.num_windows, layout.tokens_per_window, 3)
    assert torch.equal(layout.reverse(layout.partition(x)), x)
    # token_ids names the padded-grid token in every slot: partitioning an id grid gives the same
    ids = torch.arange(math.prod(layout.padded)).reshape(layout.padded)
    real = layout.real()
    assert int(real.sum()) == math.prod(grid) and real[tuple(slice(0, g) for g in grid)].all()
    slots = layout.partition(ids[tuple(slice(0, g) for g in grid)][None, ..., None].float() + 1)[..., 0]
    token_ids = layout.token_ids()
    assert torch.equal(torch.where(slots > 0, token_ids, -1), torch.where(slots > 0, slots.long() - 1, -1))
    assert torch.equal(real.flatten()[token_ids], slots > 0)  # padding slots hold padding tokens


def test_layout_applies_the_effective_window_and_shift():
    layout = WindowLayout((2, 9, 7), (4, 4, 7), (2, 2, 3))
    assert (layout.window, layout.shift, layout.padded) == ((2, 4, 7), (0, 2, 0), (2, 12, 7))
    assert layout.shifted and layout.mask().shape == (3, 56, 56)
    regular = WindowLayout((2, 9, 7), (4, 4, 7))
    assert not regular.shifted and regular.mask() is None
    assert WindowLayout((3, 3, 3), 4, 2).shift == (0, 0, 0)  # one window covers the grid: nothing to shift
    assert torch.equal(layout.mask(), shifted_window_mask((2, 12, 7), (2, 4, 7), (0, 2, 0)))


def test_layout_rejects_bad_input():
    with pytest.raises(ValueError, match="shift"):
        WindowLayout((8, 8, 8), 4, 4)
    with pytest.raises(ValueError, match=r"grid must be \(D, H, W\) or \(H, W\)"):
        WindowLayout((8,), 4, 0)
    layout = WindowLayout((5, 6, 7), 4, 2)
    with pytest.raises(ValueError, match=r"layout's grid \(5, 6, 7\)"):
        layout.partition(torch.zeros(1, 5, 6, 8, 3))


def test_swin_shifts_alternate_regular_and_half_windows():
    assert swin_shifts(7, 3) == [(0, 0, 0), (3, 3, 3), (0, 0, 0)]
    assert swin_shifts((4, 5), 2) == [(0, 0), (2, 2)]
    assert swin_shifts(7, 2, shifted=False) == [(0, 0, 0)] * 2
    assert swin_shifts(7, 0) == []
    with pytest.raises(ValueError, match="depth"):
        swin_shifts(7, -1)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_model_and_receptive_field_go_through_the_same_layout(depth):
    """Which input tokens a stage's output token depends on (by autograd) is the receptive field's set."""
    grid, window, token = (7, 10, 13), (2, 4, 3), (3, 1, 5)
    torch.manual_seed(depth)
    stage = minattn.SwinStage(8, depth=depth, num_heads=2, window_size=window).double()
    assert [block.shift_size for block in stage.blocks] == swin_shifts(window, depth)
    x = torch.randn(1, *grid, 8, dtype=torch.float64, requires_grad=True)
    stage(x)[(0, *token)].sum().backward()
    depends = x.grad[0].abs().sum(-1) > 0
    assert torch.equal(depends, receptive_field(grid, window, token, depth))
    assert depends.sum() < math.prod(grid)  # the field has not covered the grid: a real comparison
