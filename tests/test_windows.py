"""Window partition, cyclic shift and the shifted-window mask."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minattn
from minattn.windows import region_ids

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
