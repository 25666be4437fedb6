"""Receptive fields through stacked (shifted) window layers, checked against brute force."""

import itertools
import math

import pytest
import torch

from minattn.receptive_field import layers_to_cover, propagate, receptive_field, receptive_field_growth
from minattn.windows import effective_window_and_shift


def _brute_adjacency(grid, window, shift):
    """(T, T) bool over real tokens: i may attend to j, from coordinates alone (no package code)."""
    window, shift = effective_window_and_shift(grid, window, shift)
    padded = [-(-g // w) * w for g, w in zip(grid, window)]
    coords = list(itertools.product(*[range(g) for g in grid]))

    def key(c):
        out = []
        for x, w, s, length in zip(c, window, shift, padded):
            r = (x - s) % length  # position after rolling by -s
            region = 0 if r < length - w else (1 if r < length - s else 2)
            out.append((r // w, region if s else 0))
        return tuple(out)

    keys = [key(c) for c in coords]
    return torch.tensor([[a == b for b in keys] for a in keys]), coords


def _brute_field(grid, window, token, layers, shifted):
    regular, coords = _brute_adjacency(grid, window, (0,) * len(grid))
    moved, _ = _brute_adjacency(grid, window, tuple(w // 2 for w in window)) if shifted else (regular, None)
    reach = torch.tensor([c == tuple(token) for c in coords])
    for layer in range(layers, 0, -1):  # backwards from the token: layer L first
        adjacency = moved if layer % 2 == 0 else regular
        reach = (adjacency.T.float() @ reach.float()) > 0
    return reach.reshape(grid)


def _window_of(grid, window, token):
    field = torch.zeros(grid, dtype=torch.bool)
    index = tuple(slice(t // w * w, t // w * w + w) for t, w in zip(token, window))
    field[index] = True
    return field


@pytest.mark.parametrize(
    "grid, window, token",
    [
        ((8, 8), (4, 4), (5, 2)),
        ((10, 7), (4, 3), (9, 6)),
        ((4, 6, 6), (2, 3, 3), (1, 2, 4)),
        ((5, 6, 7), (2, 4, 4), (4, 5, 0)),
    ],
)
def test_matches_brute_force_in_2d_and_3d_with_padding(grid, window, token):
    for shifted in (True, False):
        growth = receptive_field_growth(grid, window, token, 6, shifted=shifted)
        for layers in range(7):
            field = receptive_field(grid, window, token, layers, shifted=shifted)
            assert torch.equal(field, _brute_field(grid, window, token, layers, shifted)), (shifted, layers)
            assert torch.equal(growth[layers], field)


def test_zero_layers_is_the_token_and_one_layer_is_its_window():
    grid, window, token = (4, 8, 8), (2, 4, 4), (3, 5, 2)
    zero = receptive_field(grid, window, token, 0)
    assert zero.sum() == 1 and zero[token]
    for shifted in (True, False):
        assert torch.equal(receptive_field(grid, window, token, 1, shifted=shifted), _window_of(grid, window, token))


def test_without_shift_the_field_never_leaves_the_window():
    grid, window, token = (16, 16), (4, 4), (6, 9)
    for layers in range(1, 9):
        assert torch.equal(receptive_field(grid, window, token, layers, shifted=False), _window_of(grid, window, token))
    assert layers_to_cover(grid, window, token, shifted=False) is None


def test_with_shift_the_field_grows_monotonically_until_it_covers_the_grid():
    grid, window, token = (16, 16), (4, 4), (6, 9)
    sizes = [int(f.sum()) for f in receptive_field_growth(grid, window, token, 12)]
    assert sizes[2] > sizes[1] == 16
    assert all(b >= a for a, b in zip(sizes, sizes[1:]))
    cover = layers_to_cover(grid, window, token)
    assert sizes[cover] == 256 and sizes[cover - 1] < 256
    assert receptive_field(grid, window, token, cover).all()


def test_growth_is_linear_in_the_grid_side_not_exponential():
    # From a corner, each layer adds about half a window per side: doubling the grid doubles the depth.
    depths = [layers_to_cover((side, side), 4, (0, 0)) for side in (16, 32, 64)]
    assert depths == [7, 15, 31]
    assert [layers_to_cover((side, side), 4, (side // 2, side // 2)) for side in (16, 32, 64)] == [4, 8, 16]


def test_worst_token_needs_the_most_layers():
    grid, window = (8, 8), (4, 4)
    worst = layers_to_cover(grid, window)
    each = [layers_to_cover(grid, window, t) for t in itertools.product(range(8), range(8))]
    assert worst == max(each)
    assert layers_to_cover((2, 2), (4, 4)) == 1  # a window larger than the grid covers it at once


def test_propagate_handles_several_sets_at_once():
    grid = (6, 6)
    sets = torch.zeros(*grid, 2, dtype=torch.bool)
    sets[0, 0, 0] = True
    sets[5, 5, 1] = True
    out = propagate(sets, (3, 3), [(1, 1), (0, 0)])  # layer 2 (shifted) first, going backwards
    assert torch.equal(out[..., 0], receptive_field(grid, (3, 3), (0, 0), 2))
    assert torch.equal(out[..., 1], receptive_field(grid, (3, 3), (5, 5), 2))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="inside the grid"):
        receptive_field((4, 4), 2, (4, 0), 1)
    with pytest.raises(ValueError, match="non-negative"):
        receptive_field((4, 4), 2, (0, 0), -1)
    with pytest.raises(ValueError, match="grid_shape"):
        receptive_field((4,), 2, (0,), 1)


def test_runs_on_the_device(device):
    field = receptive_field((4, 8, 8), (2, 4, 4), (1, 2, 3), 3, device=device)
    assert field.device.type == device.type
    assert torch.equal(field.cpu(), receptive_field((4, 8, 8), (2, 4, 4), (1, 2, 3), 3))
    assert math.prod(field.shape) == 256
