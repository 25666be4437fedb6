"""Lesson 09, attention as a microscope: data, window weights on the grid, rollout, training, explorer."""

import itertools
import math
import statistics

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import minattn  # noqa: E402
from minattn.apps import microscope as ms  # noqa: E402
from minattn.swin import shifted_window_attention  # noqa: E402

# ----------------------------------------------------------------------------------- the data


def test_dataset_is_deterministic_with_the_documented_shapes():
    a = ms.make_lesion_volumes(12, seed=3)
    b = ms.make_lesion_volumes(12, seed=3)
    c = ms.make_lesion_volumes(12, seed=4)
    assert a.volumes.shape == (12, 1, 32, 32, 32) and a.volumes.dtype == torch.float32
    assert a.labels.shape == (12,) and a.masks.shape == (12, 32, 32, 32) and a.masks.dtype == torch.bool
    assert torch.equal(a.volumes, b.volumes) and torch.equal(a.masks, b.masks) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.volumes, c.volumes)
    assert torch.equal(a.labels.bool(), a.masks.flatten(1).any(1))  # label = a lesion is there
    assert a.volumes.min() >= -1 and a.volumes.max() <= 1
    assert len(a.lesions) == 12 and all((les is None) == (y == 0) for les, y in zip(a.lesions, a.labels))


def test_lesions_vary_and_lie_in_soft_tissue():
    data = ms.make_lesion_volumes(80, seed=0, noise_hu=0.0)
    lesions = [les for les in data.lesions if les is not None]
    assert 25 < len(lesions) < 55
    radii = [les["radius"] for les in lesions]
    contrasts = [les["contrast"] for les in lesions]
    assert min(radii) >= 3.0 and max(radii) <= 5.5 and max(radii) - min(radii) > 1.5
    assert min(contrasts) >= 100 and max(contrasts) <= 200 and max(contrasts) - min(contrasts) > 50
    centres = torch.tensor([les["centre"] for les in lesions], dtype=torch.float32)
    assert centres.std(0).min() > 2  # positions spread along every axis
    for i in torch.nonzero(data.labels)[:, 0].tolist():
        inside = data.volumes[i, 0][data.masks[i]]
        # soft tissue (25-65 HU) plus >= 100 HU of contrast, in the (HU - 40) / 200 window
        assert (inside >= ms.hu_to_input(torch.tensor(120.0))).float().mean() >= 0.85


def test_dataset_device_dtype_and_bad_arguments():
    data = ms.make_lesion_volumes(3, seed=0, shape=(16, 16, 24), dtype=torch.float64)
    assert data.volumes.shape == (3, 1, 16, 16, 24) and data.volumes.dtype == torch.float64
    assert len(data.subset([0, 2])) == 2 and len(data.subset(slice(0, 1))) == 1
    with pytest.raises(ValueError, match="lesion_fraction"):
        ms.make_lesion_volumes(2, lesion_fraction=1.5)
    with pytest.raises(ValueError, match="radius_range"):
        ms.make_lesion_volumes(2, radius_range=(3.0, 1.0))
    with pytest.raises(ValueError, match="n must"):
        ms.make_lesion_volumes(-1)


# ------------------------------------------------------------------- window weights on the grid


def brute_force_grid(weights, spatial, window_size, shift_size):
    """Place window weights on the grid from each token's coordinates alone (no roll, no partition).

    Token p of the grid sits, after the roll by -shift, at (p - shift) mod padded; its window is
    that position // window (numbered row-major, D slowest) and its slot that position % window.
    """
    window, shift = minattn.effective_window_and_shift(spatial, window_size, shift_size)
    padded = [math.ceil(s / w) * w for s, w in zip(spatial, window)]
    per_axis = [p // w for p, w in zip(padded, window)]
    num_windows, n = math.prod(per_axis), math.prod(window)
    batch, heads = weights.shape[0] // num_windows, weights.shape[1]
    grouped = weights.reshape(batch, num_windows, heads, n, n)

    def place(p):
        rolled = [(c - s) % size for c, s, size in zip(p, shift, padded)]
        w = [c // k for c, k in zip(rolled, window)]
        slot = [c % k for c, k in zip(rolled, window)]
        return (w[0] * per_axis[1] + w[1]) * per_axis[2] + w[2], (slot[0] * window[1] + slot[1]) * window[2] + slot[2]

    places = [place(p) for p in itertools.product(*(range(s) for s in spatial))]
    out = torch.zeros(batch, heads, len(places), len(places), dtype=weights.dtype)
    for i, (wi, si) in enumerate(places):
        for j, (wj, sj) in enumerate(places):
            if wi == wj:
                out[:, :, i, j] = grouped[:, wi, :, si, sj]
    return out


@pytest.mark.parametrize(
    "spatial, window, shift",
    [
        ((4, 4, 4), 2, 1),  # divisible, shifted
        ((4, 4, 4), 2, 0),  # regular windows: block diagonal after reordering
        ((3, 5, 6), (2, 4, 4), (1, 2, 2)),  # padding, shifted
        ((2, 6, 7), 4, 2),  # D smaller than the window: it shrinks and is not shifted
    ],
)
def test_window_weights_to_grid_equals_brute_force(spatial, window, shift):
    win, _ = minattn.effective_window_and_shift(spatial, window, shift)
    padded = [math.ceil(s / w) * w for s, w in zip(spatial, win)]
    num_windows = math.prod(p // w for p, w in zip(padded, win))
    n = math.prod(win)
    weights = torch.randn(2 * num_windows, 3, n, n, dtype=torch.float64)
    torch.testing.assert_close(
        ms.window_weights_to_grid(weights, spatial, window, shift), brute_force_grid(weights, spatial, window, shift)
    )


def test_uniform_weights_spread_over_exactly_the_allowed_partners():
    """Uniform weights inside every (masked) window: a token's row is 1/|partners| on its partners."""
    spatial, window, shift = (4, 8, 8), 4, 2
    # D is no longer than the window, so the layer does not shift along D: the effective shift is (0, 2, 2)
    assert minattn.effective_window_and_shift(spatial, window, shift)[1] == (0, 2, 2)
    mask = minattn.shifted_window_mask(spatial, window, (0, 2, 2))  # (nW, n, n), the rolled grid
    weights = (mask / mask.sum(-1, keepdim=True))[:, None].double()  # (nW, 1, n, n): the uniform attention
    full = ms.window_weights_to_grid(weights, spatial, window, shift)[0, 0]
    coords = torch.tensor(list(itertools.product(*(range(s) for s in spatial))))
    shifted = (coords - torch.tensor([0, 2, 2])) % torch.tensor(spatial)  # D = window: no shift along D
    same_window = ((shifted[:, None] // 4) == (shifted[None] // 4)).all(-1)
    size = torch.tensor(spatial)
    region = (shifted >= size - 4).long() + (shifted >= size - torch.tensor([0, 2, 2])).long() * (
        torch.tensor([0, 2, 2]) > 0
    )
    partners = same_window & (region[:, None] == region[None]).all(-1)
    expected = partners.double() / partners.sum(-1, keepdim=True)
    torch.testing.assert_close(full, expected)
    torch.testing.assert_close(full.sum(-1), torch.ones(len(coords), dtype=torch.float64))


@pytest.mark.parametrize("spatial, shift", [((5, 6, 7), 2), ((8, 8, 8), 2), ((8, 8, 8), 0)])
def test_grid_matrix_reproduces_shifted_window_attention(spatial, shift):
    """(N, N) weights @ values over the padded grid, then the output projection = the real layer."""
    torch.manual_seed(0)
    attn = minattn.WindowAttention(8, 4, 2).double()
    with torch.no_grad():
        attn.position_bias.table.normal_(0, 0.5)
    x = torch.randn(2, *spatial, 8, dtype=torch.float64)
    attn.record_weights = True
    out = shifted_window_attention(x, attn, shift)
    full = ms.window_weights_to_grid(attn.last_weights, spatial, 4, shift, keep_padding=True)  # (2, 2, Np, Np)
    padded = minattn.pad_to_windows(x, 4)
    grid = padded.shape[1:-1]
    v = attn.qkv(padded.reshape(2, -1, 8))[..., 16:].reshape(2, -1, 2, 4).transpose(1, 2)  # (B, heads, Np, 4)
    y = attn.proj((full @ v).transpose(1, 2).reshape(2, -1, 8)).reshape(2, *grid, 8)
    torch.testing.assert_close(y[:, : spatial[0], : spatial[1], : spatial[2]], out, atol=1e-12, rtol=0)
    # forgetting the roll of a shifted layer puts the weights in the wrong places
    if shift:
        wrong = ms.window_weights_to_grid(attn.last_weights, spatial, 4, 0, keep_padding=True)
        assert not torch.allclose(wrong @ v, full @ v)


def test_window_weights_to_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B \* nW, heads, 64, 64\)"):
        ms.window_weights_to_grid(torch.zeros(8, 2, 8, 8), (8, 8, 8), 4, 0)
    with pytest.raises(ValueError, match="not a multiple"):
        ms.window_weights_to_grid(torch.zeros(7, 2, 64, 64), (8, 8, 8), 4, 0)


# ------------------------------------------------------------------------------- rollout and maps


def test_rollout_of_two_hand_made_layers():
    a1 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    a2 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    # by hand: (A + I) / 2 gives [[.75, .25], [0, 1]] and [[1, 0], [.25, .75]];
    # rollout = layer 2 @ layer 1 = [[.75, .25], [.1875, .8125]]
    expected = torch.tensor([[0.75, 0.25], [0.1875, 0.8125]])
    torch.testing.assert_close(ms.attention_rollout([a1, a2]), expected)
    torch.testing.assert_close(ms.attention_rollout(torch.stack([a1, a2])), expected)
    torch.testing.assert_close(ms.attention_rollout([a1, a2], add_residual=False), a2 @ a1)
    # a batch of layers: (L, B, N, N)
    batch = torch.stack([torch.stack([a1, a2]), torch.stack([a2, a1])])
    torch.testing.assert_close(ms.attention_rollout(batch)[0], expected)
    with pytest.raises(ValueError, match="at least one layer"):
        ms.attention_rollout([])


def test_rollout_renormalises_rows_that_lost_mass_to_padding():
    a = torch.tensor([[0.2, 0.2], [0.5, 0.5]])  # query 0 gave 0.6 of its attention to padding
    torch.testing.assert_close(ms.attention_rollout([a]), torch.tensor([[1.2 / 1.4, 0.2 / 1.4], [0.25, 0.75]]))


def test_received_attention_and_voxel_maps_keep_the_mass():
    a = torch.softmax(torch.randn(3, 8, 8), -1)
    received = ms.received_attention(a)
    torch.testing.assert_close(received.sum(-1), torch.ones(3))
    torch.testing.assert_close(received, a.mean(-2))
    voxels = ms.token_map_to_voxels(received.reshape(3, 2, 2, 2), (2, 3, 4))
    assert voxels.shape == (3, 4, 6, 8)
    torch.testing.assert_close(voxels.sum((1, 2, 3)), torch.ones(3))
    assert torch.all(voxels[:, :2, :3, :4] == received[:, 0, None, None, None] / 24)


def test_lesion_attention_ratio_by_hand():
    masks = torch.zeros(3, 4, 4, 4, dtype=torch.bool)
    masks[0, :2, :2, :2] = True  # 8 of 64 voxels: chance share 1/8
    masks[1, 0, 0, :2] = True  # 2 of 64: chance share 1/32
    maps = torch.ones(3, 4, 4, 4)
    maps[1] = 0
    maps[1, 0, 0, 0] = 1.0  # all the mass on one lesion voxel: share 1, ratio 32
    report = ms.lesion_attention_ratio(maps, masks)  # volume 2 has no lesion: skipped
    torch.testing.assert_close(report.per_volume, torch.tensor([1.0, 32.0]))
    assert report.mean == pytest.approx(16.5) and report.share_above_one == pytest.approx(0.5)
    assert "16.50" in str(report)
    with pytest.raises(ValueError, match="same shape"):
        ms.lesion_attention_ratio(maps, masks[:, 0])
    with pytest.raises(ValueError, match="no volume holds a lesion"):
        ms.lesion_attention_ratio(maps[2:], masks[2:])


def test_classifier_shapes_seed_and_errors():
    a, b = ms.SwinClassifier(seed=3), ms.SwinClassifier(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    state = torch.random.get_rng_state()
    ms.SwinClassifier(seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # the global random state is left alone
    x = torch.randn(2, 1, 32, 32, 32)
    assert a(x).shape == (2,)
    assert a.token_grid((32, 32, 32)) == (8, 8, 8)
    assert ms.layer_names(a) == ["block 1 (regular)", "block 2 (shifted)"]
    matrices = ms.attention_matrices(a, x)
    assert matrices.shape == (2, 2, 512, 512)
    torch.testing.assert_close(matrices.sum(-1), torch.ones(2, 2, 512))
    assert all(not block.attn.record_weights for block in a.blocks)  # recording is switched off again
    maps = ms.attention_maps(a, x)
    assert list(maps) == ["block 1 (regular)", "block 2 (shifted)", "rollout"]
    assert all(m.shape == (2, 32, 32, 32) for m in maps.values())
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
        a(torch.randn(2, 32, 32, 32))
    with pytest.raises(ValueError, match="pool"):
        ms.SwinClassifier(pool="sum")


def test_float64_model():
    model = ms.SwinClassifier(seed=0).double()
    x = ms.make_lesion_volumes(2, seed=0, dtype=torch.float64).volumes
    maps = ms.attention_maps(model, x)
    assert maps["rollout"].dtype == torch.float64


# ------------------------------------------------------------------------ one training run, reused


@pytest.fixture(scope="module")
def trained():
    # the lesson's run: the same seeds give the same model on the same machine
    train_set = ms.make_lesion_volumes(3072, seed=1)
    test_set = ms.make_lesion_volumes(256, seed=2)
    model = ms.SwinClassifier(seed=0)
    result = ms.train(model, train_set, epochs=3, batch_size=8, seed=0, progress=False)
    return model, test_set, result


def test_training_reaches_95_percent_held_out(trained):
    model, test_set, result = trained
    print(f"\ntrained {result.steps} steps in {result.seconds:.1f} s")
    assert result.steps == 3 * 3072 // 8
    assert sum(result.losses[-40:]) / 40 < 0.3
    assert ms.accuracy(model, test_set) >= 0.95


def test_attention_falls_on_the_lesion_far_more_than_chance(trained):
    model, test_set, _ = trained
    maps = ms.attention_maps(model, test_set.volumes)
    rollout = ms.lesion_attention_ratio(maps["rollout"], test_set.masks)
    first = ms.lesion_attention_ratio(maps["block 1 (regular)"], test_set.masks)
    print(f"\nrollout: {rollout}\nblock 1: {first}")
    assert rollout.mean > 3.0 and rollout.median > 3.0 and rollout.share_above_one > 0.9
    assert first.mean > 3.0
    # the control: the same architecture untrained is blind to the lesion
    untrained = ms.lesion_attention_ratio(ms.attention_maps(ms.SwinClassifier(seed=0), test_set.volumes)["rollout"], test_set.masks)
    assert 0.7 < untrained.mean < 1.3


# --------------------------------------------------------------------------------------- explorer


def test_explorer_driven_headlessly(trained):
    import base64

    from minattn.explore.attention_maps import attention_map_explorer, outline_segments

    model, test_set, _ = trained
    data = test_set.subset(slice(0, 6))
    explorer = attention_map_explorer(model, data)
    assert explorer.state["error"] is None, explorer.state["error"]
    first = explorer.state["volume"]
    assert bool(data.labels[first])  # starts on a volume with a lesion, sliced through it
    assert explorer.state["mask"].any() and explorer.state["outline_segments"] > 0
    assert explorer.state["ratio"] > 1
    times = []
    for name, values in [
        ("slice", [0, 10, 31]),
        ("layer", ["block 1 (regular)", "block 2 (shifted)", "rollout"]),
        ("view", ["H", "W", "D"]),
        ("volume", list(range(6))),
        ("opacity", [0.2, 0.9]),
    ]:
        for value in values:
            explorer.controls[name].value = value
            assert explorer.state["error"] is None, explorer.state["error"]
            times.append(explorer.last_update_s)
            assert explorer.state["map"].shape == explorer.state["image"].shape
    assert statistics.median(times) < 0.5  # loose on a shared machine: ~50 ms measured
    assert explorer.png()[:4] == b"\x89PNG"
    source = f'src="data:image/png;base64,{base64.b64encode(explorer.png()).decode()}"'
    assert source in explorer.picture.value  # the page shows what was drawn
    explorer.controls["volume"].value = int(torch.nonzero(data.labels == 0)[0])
    assert explorer.state["ratio"] is None and "no lesion" in explorer.state["text"]
    with pytest.raises(ValueError, match="layer must be one of"):
        attention_map_explorer(model, data, layer="block 9")
    with pytest.raises(ValueError, match="volumes must be"):
        attention_map_explorer(model, data.volumes[0])
    assert outline_segments(torch.zeros(3, 3, dtype=torch.bool).numpy()) == []
    square = torch.zeros(3, 3, dtype=torch.bool)
    square[1, 1] = True
    assert len(outline_segments(square.numpy())) == 4
