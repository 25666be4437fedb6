"""Lesson 14: the long-range case, flat and hierarchical, against brute force on tiny grids."""

import itertools
import math

import pytest
import torch

from minattn import cost
from minattn.apps import long_range as lr
from minattn.receptive_field import receptive_field

# Brute force ------------------------------------------------------------------------------------
# Written from the definition of Swin's geometry, not from the package's masks: pad each axis to a
# multiple of the window, roll by -shift on the padded axis, cut into windows; along an axis the
# rolled positions fall in three regions [0, P-w), [P-w, P-s), [P-s, P). Two tokens may attend to
# each other iff they share a window and a region along every axis. A window at least as large as
# the grid shrinks to it and its shift becomes 0.


def _tokens(grid):
    return list(itertools.product(*(range(g) for g in grid)))


def _axis_label(x, length, w, s):
    if length <= w:
        w, s = length, 0
    padded = -(-length // w) * w
    p = (x - s) % padded
    region = 0 if p < padded - w else (1 if p < padded - s else 2)
    return p // w, region if s else 0


def _allowed(grid, window, shift):
    """Bool (N, N): may token i attend to token j in this layer? Tokens in row-major order."""
    tokens = _tokens(grid)
    labels = [tuple(_axis_label(x, g, w, s) for x, g, w, s in zip(t, grid, window, shift)) for t in tokens]
    n = len(tokens)
    return torch.tensor([[labels[i] == labels[j] for j in range(n)] for i in range(n)])


def _merge_reads(fine):
    """Bool (Nc, Nf): coarse token c reads fine token f iff f // 2 == c."""
    coarse = tuple(-(-g // 2) for g in fine)
    ct, ft = _tokens(coarse), _tokens(fine)
    return torch.tensor([[tuple(x // 2 for x in f) == c for f in ft] for c in ct])


def _back(reach, matrix):
    """Tokens that some member of ``reach`` reads: reach (N_out,) -> (N_in,)."""
    return (reach.float() @ matrix.float()) > 0


def _brute_hierarchical(grid, window, token, blocks, per_stage, shifted=True):
    nd = len(grid)
    window = (window,) * nd if isinstance(window, int) else tuple(window)
    grids = [tuple(grid)]
    steps = []  # (kind, matrix) in forward order
    for b in range(blocks):
        stage = b // per_stage
        while len(grids) <= stage:
            steps.append(("merge", _merge_reads(grids[-1])))
            grids.append(tuple(-(-g // 2) for g in grids[-1]))
        index = b - stage * per_stage
        shift = tuple(w // 2 for w in window) if shifted and index % 2 == 1 else (0,) * nd
        steps.append(("attend", _allowed(grids[stage], window, shift)))
    top = grids[-1]
    coarse = tuple(t >> (len(grids) - 1) for t in token)
    reach = torch.tensor([t == coarse for t in _tokens(top)])
    for _, matrix in reversed(steps):
        reach = _back(reach, matrix)
    return reach.reshape(grid)


# Patch merging ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fine", [(4, 6), (5, 3), (3, 4, 5), (2, 2, 2), (1, 3, 2)])
def test_coarse_to_fine_and_fine_to_coarse_against_brute_force(fine):
    coarse = lr.merged_grid(fine)
    assert coarse == tuple(math.ceil(g / 2) for g in fine)
    g = torch.Generator().manual_seed(len(fine) * 10 + sum(fine))
    field_c = torch.rand(coarse, generator=g) < 0.3
    expanded = lr.coarse_to_fine(field_c, fine)
    assert expanded.shape == fine and expanded.dtype == torch.bool
    for f in _tokens(fine):
        assert bool(expanded[f]) == bool(field_c[tuple(x // 2 for x in f)])
    field_f = torch.rand(fine, generator=g) < 0.2
    merged = lr.fine_to_coarse(field_f)
    assert merged.shape == coarse
    for c in _tokens(coarse):
        block = [f for f in _tokens(fine) if tuple(x // 2 for x in f) == c]
        assert bool(merged[c]) == any(bool(field_f[f]) for f in block)
    # the two are adjoint: a coarse set reads a fine token iff the fine token merges into the set
    assert torch.equal(lr.fine_to_coarse(lr.coarse_to_fine(field_c, fine)), field_c)


def test_merged_token_and_stage_grids():
    assert lr.merged_token((5, 0, 7)) == (2, 0, 3)
    assert lr.stage_grids((23, 29, 24), 4) == [(23, 29, 24), (12, 15, 12), (6, 8, 6), (3, 4, 3)]


def test_coarse_to_fine_rejects_the_wrong_grid():
    with pytest.raises(ValueError, match=r"merged grid \(2, 3\)"):
        lr.coarse_to_fine(torch.zeros(3, 3, dtype=torch.bool), (4, 6))


# Flat stacks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid, window", [((12, 12), 4), ((4, 10, 9), (2, 4, 3)), ((7, 13), 5)])
@pytest.mark.parametrize("shifted", [True, False])
def test_layers_to_link_is_the_first_depth_whose_field_holds_the_target(grid, window, shifted):
    source = tuple(g // 3 for g in grid)
    for target in [tuple(g - 1 for g in grid), tuple(0 for _ in grid), tuple(g // 2 for g in grid)]:
        expected = None
        # without shifting the field stops growing after one layer; with it, two layers per window suffice
        for layers in range(0, 2 * max(grid) + 4 if shifted else 4):
            if bool(receptive_field(grid, window, source, layers, shifted=shifted)[target]):
                expected = layers
                break
        assert lr.layers_to_link(grid, window, source, target, shifted=shifted) == expected


def test_flat_layers_against_brute_force_masks():
    grid, window = (6, 9), (3, 3)
    for source, target in [((0, 0), (5, 8)), ((2, 4), (3, 0)), ((1, 1), (1, 2))]:
        reach = torch.tensor([t == source for t in _tokens(grid)])
        for layers in range(1, 12):
            # backwards from the source: layers L, L-1, ..., 1; odd layers regular, even ones shifted
            shifts = [(1, 1) if n % 2 == 0 else (0, 0) for n in range(layers, 0, -1)]
            r = reach
            for s in shifts:
                r = _back(r, _allowed(grid, window, s))
            if bool(r.reshape(grid)[target]):
                break
        assert lr.layers_to_link(grid, window, source, target) == layers


def test_regular_windows_never_link_different_windows_and_global_links_in_one():
    assert lr.layers_to_link((14, 14, 14), 7, (1, 1, 1), (12, 12, 12), shifted=False) is None
    assert lr.layers_to_link((14, 14, 14), 7, (1, 1, 1), (5, 5, 5), shifted=False) == 1  # same window
    assert lr.layers_to_link((14, 14, 14), 14, (1, 1, 1), (12, 12, 12)) == 1  # one window = global attention
    assert lr.layers_to_link((14, 14, 14), 7, (3, 3, 3), (3, 3, 3)) == 0


def test_flat_depth_grows_linearly_with_distance():
    grid = (7, 7, 112)
    layers = [lr.layers_to_link(grid, 7, (3, 3, 3), (3, 3, 3 + d)) for d in (14, 28, 56)]
    assert layers == [4, 8, 16]  # twice the distance, twice the layers: two layers per window


def test_a_field_is_a_box_so_the_depth_is_the_largest_per_axis_depth():
    """Each layer's mask is a product over axes; so are merges: 3D answers are maxima of 1-D ones."""
    grid, window, source, target = (9, 12, 10), 3, (1, 2, 8), (7, 11, 0)
    field = receptive_field(grid, window, source, 3)
    idx = field.nonzero()
    lo, hi = idx.min(0).values, idx.max(0).values
    box = torch.zeros(grid, dtype=torch.bool)
    box[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = True
    assert torch.equal(field, box)
    for flat_or_hier in (lr.layers_to_link, lr.hierarchical_layers_to_link):
        per_axis = []
        for axis in range(3):
            line, s, t = [1, 1, 1], [0, 0, 0], [0, 0, 0]
            line[axis], s[axis], t[axis] = grid[axis], source[axis], target[axis]
            per_axis.append(flat_or_hier(tuple(line), window, tuple(s), tuple(t)))
        assert flat_or_hier(grid, window, source, target) == max(per_axis)


# Hierarchical Swin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "grid, window, token, per_stage",
    [((9, 11), 3, (4, 7), 2), ((6, 7, 5), 2, (5, 6, 0), 2), ((10, 6), (4, 2), (9, 5), 3), ((5, 8, 7), 3, (2, 3, 4), 1)],
)
def test_hierarchical_field_against_brute_force(grid, window, token, per_stage):
    for blocks in range(0, 3 * per_stage + 2):
        field = lr.hierarchical_receptive_field(grid, window, token, blocks, per_stage)
        assert torch.equal(field, _brute_hierarchical(grid, window, token, blocks, per_stage)), blocks


def test_hierarchical_field_within_the_first_stage_is_the_flat_field():
    grid, window, token = (8, 10, 9), 3, (3, 4, 5)
    for blocks in range(0, 5):
        flat = receptive_field(grid, window, token, blocks, shifted=True)
        assert torch.equal(lr.hierarchical_receptive_field(grid, window, token, blocks, blocks_per_stage=10), flat)
    two = lr.hierarchical_receptive_field(grid, window, token, 2, blocks_per_stage=2)
    assert torch.equal(two, receptive_field(grid, window, token, 2))


def test_hierarchical_layers_to_link_against_brute_force():
    grid, window = (12, 13), 3
    for source, target in [((0, 0), (11, 12)), ((5, 6), (6, 7)), ((2, 10), (9, 1))]:
        expected = next(
            b for b in range(0, 20) if bool(_brute_hierarchical(grid, window, source, b, 2)[target])
        )
        assert lr.hierarchical_layers_to_link(grid, window, source, target) == expected


def test_hierarchical_depth_grows_with_the_log_of_the_distance():
    grid = (7, 7, 112)
    blocks = [lr.hierarchical_layers_to_link(grid, 7, (3, 3, 3), (3, 3, 3 + d)) for d in (14, 28, 56, 104)]
    assert blocks == [3, 5, 7, 9]  # two more blocks (one more stage) per doubling


def test_hierarchical_cost():
    grid = (23, 29, 24)
    # stage 0 twice on 23 x 29 x 24 (padded to 28 x 35 x 28), stage 1 twice on 12 x 15 x 12 (padded to 14 x 21 x 14)
    fine = 4 * 5 * 4 * 343**2
    coarse = 2 * 3 * 2 * 343**2
    assert lr.hierarchical_cost(grid, 7, 4) == 2 * fine + 2 * coarse
    assert lr.hierarchical_cost(grid, 7, 1) == cost.windowed_attention_scores(grid, 7)
    # stage 3 on 3 x 4 x 3: the 7^3 window shrinks to the grid, i.e. global attention there
    assert lr.hierarchical_cost(grid, 7, 8) - lr.hierarchical_cost(grid, 7, 7) == cost.attention_scores(36)
    assert lr.hierarchical_cost(grid, 7, 0) == 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: lr.layers_to_link((4, 4), 2, (0, 0), (4, 0)), "target"),
        (lambda: lr.layers_to_link((4, 4, 4, 4), 2, (0, 0), (1, 0)), "grid_shape"),
        (lambda: lr.hierarchical_receptive_field((4, 4), 2, (0, 0), -1), "blocks"),
        (lambda: lr.hierarchical_receptive_field((4, 4), 2, (0, 0), 2, blocks_per_stage=0), "blocks_per_stage"),
        (lambda: lr.fine_to_coarse(torch.zeros(4, dtype=torch.bool)), "field"),
    ],
)
def test_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
