"""The step-through explorer of one shifted Swin window-attention layer (lesson 08), driven headlessly."""

import io
import statistics

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from PIL import Image

from minattn.explore.swin_steps import STEPS, swin_steps_explorer, trace_window_attention
from minattn.swin import shifted_window_attention

# Unequal along every axis, none a multiple of its window, so padding and wrap-around show everywhere.
GRID, WINDOW, SHIFT = (3, 6, 7), (2, 4, 3), (1, 2, 1)
PADDED = (4, 8, 9)
N_WINDOWS, N = 2 * 2 * 3, 2 * 4 * 3


@pytest.fixture(scope="module")
def explorer():
    return swin_steps_explorer(GRID, WINDOW, SHIFT, step="input")


def _go(explorer, **values):
    with explorer.hold():
        for name, value in values.items():
            explorer.controls[name].value = value
    assert explorer.state["error"] is None, explorer.state["error"]
    return explorer.state


def _number(coords, grid=GRID):
    """Row-major index of a token on the unpadded grid, -1 for a padding position."""
    if any(c >= g for c, g in zip(coords, grid)):
        return -1
    return (coords[0] * grid[1] + coords[1]) * grid[2] + coords[2]


def _region(position, length, window, shift):
    """Which of the three strips of an axis a rolled position lies in (0 when the axis does not shift)."""
    if not shift:
        return 0
    return 0 if position < length - window else 1 if position < length - shift else 2


def test_the_trace_is_the_blocks_own_computation():
    for shift in (SHIFT, 0):
        trace = trace_window_attention(GRID, WINDOW, shift, channels=6, heads=3, seed=1)
        expected = shifted_window_attention(trace.x, trace.attn, shift)
        torch.testing.assert_close(trace.output, expected, atol=1e-6, rtol=1e-5)
        assert trace.windows.shape == (N_WINDOWS, N, 6) and trace.output.shape == (1, *GRID, 6)
        weights = trace.weights
        torch.testing.assert_close(weights.sum(-1), torch.ones(N_WINDOWS, N))
        assert (weights[~trace.mask] == 0).all() and (weights[trace.mask] > 0).all()


def test_the_trace_leaves_the_global_random_state_alone():
    state = torch.random.get_rng_state()
    first = trace_window_attention(GRID, WINDOW, SHIFT, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = trace_window_attention(GRID, WINDOW, SHIFT, seed=3)
    assert torch.equal(first.output, again.output)
    assert not torch.equal(first.output, trace_window_attention(GRID, WINDOW, SHIFT, seed=4).output)


def test_shape_at_every_step(explorer):
    expected = {
        "input": (1, *GRID, 8),
        "pad": (1, *PADDED, 8),
        "roll": (1, *PADDED, 8),
        "partition": (N_WINDOWS, N, 8),
        "mask": (N_WINDOWS, N, N),
        "attend": (N_WINDOWS, N, 8),
        "reverse": (1, *PADDED, 8),
        "roll back": (1, *PADDED, 8),
        "crop": (1, *GRID, 8),
    }
    for step in STEPS:
        state = _go(explorer, step=step, shifted=True)
        assert state["step"] == step and state["shape"] == expected[step]
        assert f"{step}" in state["text"]
    assert _go(explorer, step="mask", shifted=False)["shape"] is None  # a regular block has no mask
    _go(explorer, shifted=True)


def test_rolled_steps_show_the_token_from_shift_further_on(explorer):
    for step in ("roll", "partition", "mask", "attend", "reverse"):
        for d in (0, 3):
            state = _go(explorer, step=step, slice=d)
            expected = [
                [_number([(p + s) % length for p, s, length in zip((d, h, w), SHIFT, PADDED)]) for w in range(9)]
                for h in range(8)
            ]
            np.testing.assert_array_equal(state["numbers"], expected)
    for step in ("pad", "roll back"):
        state = _go(explorer, step=step, slice=1)
        np.testing.assert_array_equal(state["numbers"], [[_number((1, h, w)) for w in range(9)] for h in range(8)])
        assert state["padding"].sum() == 8 * 9 - 6 * 7


def test_window_contents_and_mask_match_the_geometry(explorer):
    windows_per_axis = [p // w for p, w in zip(PADDED, WINDOW)]
    for window in (0, 5, N_WINDOWS - 1):
        state = _go(explorer, step="mask", window=window)
        origin = [i * w for i, w in zip(np.unravel_index(window, windows_per_axis), WINDOW)]
        slots = [tuple(o + c for o, c in zip(origin, offset)) for offset in np.ndindex(*WINDOW)]  # rolled positions
        tokens = [tuple((p + s) % length for p, s, length in zip(pos, SHIFT, PADDED)) for pos in slots]
        assert state["window_tokens"] == tokens
        regions = [
            tuple(_region(p, length, w, s) for p, length, w, s in zip(pos, PADDED, WINDOW, SHIFT)) for pos in slots
        ]
        expected = np.array([[a == b for b in regions] for a in regions])
        np.testing.assert_array_equal(state["mask"], expected)
        np.testing.assert_array_equal(state["matrix"], expected)
        assert (state["weights"][~expected] == 0).all()
    assert state["mask"].sum() < N * N  # the last window mixes regions: some pairs are forbidden


def test_outlined_cells_are_the_picked_window(explorer):
    last = N_WINDOWS - 1  # the far corner: rolled positions d 2-3, h 4-7, w 6-8
    state = _go(explorer, step="partition", window=last, slice=2)
    assert {(h, w) for h, w in zip(*np.nonzero(state["in_window"]))} == {
        (h, w) for h in range(4, 8) for w in range(6, 9)
    }
    assert not _go(explorer, slice=0)["in_window"].any()  # not in this slice of the rolled grid
    state = _go(explorer, step="crop", slice=0)
    # In its own positions the far-corner window wraps round to the first slice, rows and column.
    assert {(h, w) for h, w in zip(*np.nonzero(state["in_window"]))} == {(0, 0), (1, 0)}
    expected = {(h, w) for d, h, w in state["window_tokens"] if d == 0 and h < GRID[1] and w < GRID[2]}
    assert expected == {(0, 0), (1, 0)}


def test_a_regular_block_neither_rolls_nor_masks(explorer):
    pad = _go(explorer, shifted=False, step="pad", slice=2)["numbers"].copy()
    state = _go(explorer, step="roll")
    np.testing.assert_array_equal(state["numbers"], pad)
    assert _go(explorer, step="mask")["mask"].all()
    assert "needs no mask" in explorer.state["text"]
    _go(explorer, shifted=True)


def test_buttons_step_through_and_stop_at_the_ends(explorer):
    _go(explorer, step="input")
    visited = [explorer.state["step"]]
    for _ in range(len(STEPS) + 2):
        explorer.click("next")
        visited.append(explorer.state["step"])
    assert visited[: len(STEPS)] == list(STEPS) and visited[-1] == "crop"
    explorer.click("back")
    assert explorer.state["step"] == "roll back"


def test_unpadded_steps_clamp_a_padding_slice_with_a_note(explorer):
    state = _go(explorer, step="pad", slice=3)  # the last slice is padding only
    assert state["slice"] == 3 and state["padding"].all()
    state = _go(explorer, step="crop")
    assert state["slice"] == GRID[0] - 1 and "padding" in state["note"]
    assert _go(explorer, slice=0)["note"] == ""


def test_it_draws_in_place_and_quickly(explorer):
    assert isinstance(explorer, widgets.VBox)
    figure, axes = explorer.figure, list(explorer.figure.axes)
    artists = [list(ax.get_children()) for ax in axes]
    _go(explorer, step="input", slice=0)
    pngs = {explorer.png()}
    times = []
    for step in STEPS[1:]:
        _go(explorer, step=step)
        times.append(explorer.last_update_s)
        pngs.add(explorer.png())
    assert len(pngs) == len(STEPS)  # every step draws something else
    width, height = Image.open(io.BytesIO(explorer.png())).size
    assert width > 600 and height > 200
    assert explorer.figure is figure and list(figure.axes) == axes
    assert [list(ax.get_children()) for ax in axes] == artists
    assert statistics.median(times) < 0.5  # loose for a busy CI machine; about 50-70 ms measured


def test_bad_values_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="step must be one of"):
        swin_steps_explorer(step="shift")
    with pytest.raises(ValueError, match="3D token grid"):
        trace_window_attention((6, 7), 4, 2)
    with pytest.raises(ValueError):
        trace_window_attention(GRID, WINDOW, (2, 2, 1))  # a shift as large as the window
