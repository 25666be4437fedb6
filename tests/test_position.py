"""The relative position index and bias."""

import itertools

import pytest
import torch

import minattn
from minattn.position import monai_sliced_index


@pytest.mark.parametrize("window", [(2, 3, 4), (3, 3, 3), (1, 2, 2), (3, 5), 2])
def test_index_covers_the_whole_table(window):
    index = minattn.relative_position_index(window)
    w = (window,) * 3 if isinstance(window, int) else window
    table_size = 1
    for side in w:
        table_size *= 2 * side - 1
    n = 1
    for side in w:
        n *= side
    assert index.shape == (n, n) and index.dtype == torch.long
    assert index.min() == 0 and index.max() == table_size - 1
    assert set(index.unique().tolist()) == set(range(table_size))


def test_index_depends_only_on_query_minus_key():
    window = (2, 3, 4)
    coords = list(itertools.product(*(range(s) for s in window)))
    index = minattn.relative_position_index(window)
    seen = {}
    for i, qi in enumerate(coords):
        for j, kj in enumerate(coords):
            offset = tuple(a - b for a, b in zip(qi, kj))
            assert seen.setdefault(offset, index[i, j].item()) == index[i, j].item()
    assert len(set(seen.values())) == len(seen)  # distinct offsets, distinct rows
    # the documented flattening: d * (2Wh-1)(2Ww-1) + h * (2Ww-1) + w, after adding W - 1
    d, h, w = (1, -2, 3)
    assert seen[(d, h, w)] == (d + 1) * 5 * 7 + (h + 2) * 7 + (w + 3)


def test_index_matches_monai():
    from monai.networks.nets.swin_unetr import WindowAttention

    for window in [(2, 3, 4), (7, 7, 7), (4, 6)]:
        monai = WindowAttention(dim=8, num_heads=2, window_size=window)
        assert torch.equal(minattn.relative_position_index(window), monai.relative_position_index)


def test_shrunk_window_index_is_the_true_geometry_and_monai_is_not():
    full, small = (4, 4, 4), (4, 2, 4)
    geometric = minattn.relative_position_index(small, table_window_size=full)
    n = 4 * 2 * 4
    monai = monai_sliced_index(n, full)
    small_coords = list(itertools.product(range(4), range(2), range(4)))
    full_index = minattn.relative_position_index(full)
    full_coords = list(itertools.product(range(4), range(4), range(4)))
    for i, j in [(0, 5), (3, 17), (31, 2)]:
        true_row = full_index[full_coords.index(small_coords[i]), full_coords.index(small_coords[j])]
        assert geometric[i, j] == true_row
    assert not torch.equal(geometric, monai)
    # when only D shrinks, the first n tokens of the full window are the small window: both agree
    assert torch.equal(minattn.relative_position_index((2, 4, 4), table_window_size=full), monai_sliced_index(32, full))


def test_bias_depends_only_on_offset(device):
    module = minattn.RelativePositionBias((2, 3, 3), num_heads=4).to(device)
    assert module.table.shape == (3 * 5 * 5, 4)
    bias = module()
    assert bias.shape == (4, 18, 18)
    index = module.index
    for head in range(4):
        for row in range(index.max().item() + 1):
            values = bias[head][index == row]
            assert torch.all(values == values[0])
    assert 0.005 < module.table.std().item() < 0.03  # initialised with std 0.02


def test_bias_trains_through_the_table():
    module = minattn.RelativePositionBias(2, 1)
    module().sum().backward()
    assert module.table.grad is not None and module.table.grad.abs().sum() > 0


def test_bad_input():
    with pytest.raises(ValueError, match="positive"):
        minattn.RelativePositionBias((2, 0, 2), 2)
    with pytest.raises(ValueError, match="num_heads"):
        minattn.RelativePositionBias(2, 0)
    with pytest.raises(ValueError, match="larger than the table"):
        minattn.relative_position_index((4, 4, 4), table_window_size=(2, 4, 4))
