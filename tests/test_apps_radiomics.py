"""Handcrafted radiomic features (minattn.apps.radiomics) on cases whose answers can be written down."""

import itertools
import math

import pytest
import torch

from minattn.apps import radiomics as rf


def _features(fn, *args, **kwargs):
    names, values = fn(*args, **kwargs)
    assert len(names) == values.shape[-1] and values.dtype == torch.float64
    return dict(zip(names, values.tolist()))


# Shape ----------------------------------------------------------------------------------------


def test_box_shape_with_unequal_sizes_and_spacing():
    mask = torch.zeros(7, 9, 11, dtype=torch.bool)
    mask[1:6, 2:3, 4:7] = True  # 5 x 1 x 3 voxels, off-centre in a volume of unequal sides
    f = _features(rf.shape_features, mask, spacing=(2.0, 0.5, 1.5))
    assert f["voxels"] == 15
    assert f["volume"] == pytest.approx(15 * 2.0 * 0.5 * 1.5)
    # Faces facing d: 2 x (1 x 3) of 0.5 x 1.5; facing h: 2 x (5 x 3) of 2 x 1.5; facing w: 2 x (5 x 1) of 2 x 0.5.
    assert f["surface"] == pytest.approx(2 * 3 * 0.75 + 2 * 15 * 3.0 + 2 * 5 * 1.0)
    assert f["surface_to_volume"] == pytest.approx(f["surface"] / f["volume"])
    assert (f["extent_d"], f["extent_h"], f["extent_w"]) == pytest.approx((10.0, 0.5, 4.5))
    # A solid box of sides a, b, c: J / V = (a^2 + b^2 + c^2) / 12.
    radius = (3 * f["volume"] / (4 * math.pi)) ** (1 / 3)
    assert f["compactness"] == pytest.approx(0.6 * radius**2 / ((10.0**2 + 0.5**2 + 4.5**2) / 12))


def test_cube_surface_is_exact_and_its_compactness_known():
    mask = torch.zeros(8, 10, 12, dtype=torch.bool)
    mask[2:7, 3:8, 4:9] = True
    f = _features(rf.shape_features, mask)
    assert f["voxels"] == 125 and f["surface"] == 150 and f["surface_to_volume"] == pytest.approx(1.2)
    assert f["compactness"] == pytest.approx(2.4 * (3 / (4 * math.pi)) ** (2 / 3))  # 0.924


def test_sphere_volume_and_compactness():
    r = 12.0
    d, h, w = torch.meshgrid(
        torch.arange(30.0) - 14.6, torch.arange(32.0) - 15.8, torch.arange(34.0) - 16.9, indexing="ij"
    )
    mask = d**2 + h**2 + w**2 <= r**2
    f = _features(rf.shape_features, mask)
    assert f["volume"] == pytest.approx(4 / 3 * math.pi * r**3, rel=0.02)
    assert f["compactness"] == pytest.approx(1.0, abs=0.01)  # a ball: 1, whatever the staircase
    assert 1.3 < f["surface"] / (4 * math.pi * r**2) < 1.6  # face counting overestimates a curved surface
    assert (f["extent_d"], f["extent_h"], f["extent_w"]) == (24, 24, 24)  # centres off the grid: 24 of 25 rows fit
    flat = mask.clone()
    flat[:14] = False
    flat[15:] = False  # one slice of the ball: a disc, far from compact
    assert _features(rf.shape_features, flat)["compactness"] < 0.5


# First order ----------------------------------------------------------------------------------


def test_first_order_of_four_values():
    image = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (1, 2, 2)
    f = _features(rf.first_order_features, image, torch.ones(1, 2, 2, dtype=torch.bool), bins=4)
    assert f["mean"] == pytest.approx(2.5) and f["sd"] == pytest.approx(math.sqrt(1.25))
    assert f["skewness"] == pytest.approx(0.0, abs=1e-12)
    assert f["kurtosis"] == pytest.approx(2.5625 / 1.5625 - 3)  # m4 / m2^2 - 3
    assert f["entropy"] == pytest.approx(2.0)  # four equally full bins
    assert (f["p10"], f["p50"], f["p90"]) == pytest.approx((1.3, 2.5, 3.7))


def test_skewness_sign_and_masked_voxels_ignored():
    image = torch.tensor([[[0.0, 0.0, 0.0, 10.0, 99.0]]])
    mask = torch.tensor([[[True, True, True, True, False]]])  # 99 is outside: ignored
    f = _features(rf.first_order_features, image, mask)
    assert f["mean"] == pytest.approx(2.5) and f["skewness"] > 1  # one high value: right tail


def test_constant_lesion():
    image = torch.full((3, 4, 5), 7.0)
    mask = torch.zeros(3, 4, 5, dtype=torch.bool)
    mask[1:, 1:3, :4] = True
    first = _features(rf.first_order_features, image, mask)
    assert first == pytest.approx(
        {"mean": 7, "sd": 0, "skewness": 0, "kurtosis": 0, "entropy": 0, "p10": 7, "p50": 7, "p90": 7}
    )
    P = rf.glcm(image, mask, levels=4)
    assert P[0, 0] == 1 and P.sum() == 1  # one grey level: every pair is (1, 1)
    texture = _features(rf.texture_features, image, mask, levels=4)
    assert texture == pytest.approx({"contrast": 0, "homogeneity": 1, "energy": 1, "correlation": 1})


# Texture --------------------------------------------------------------------------------------


def test_alternating_row_has_perfect_negative_correlation():
    image = torch.tensor([[[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]]])  # (1, 1, 6): only the w direction has pairs
    mask = torch.ones_like(image, dtype=torch.bool)
    assert torch.equal(rf.glcm(image, mask, levels=2), torch.tensor([[0.0, 0.5], [0.5, 0.0]], dtype=torch.float64))
    f = _features(rf.texture_features, image, mask, levels=2)
    assert f == pytest.approx({"contrast": 1, "homogeneity": 0.5, "energy": 0.5, "correlation": -1})


def _pairs(shape, offset):
    return math.prod(n - abs(o) for n, o in zip(shape, offset))


def test_checkerboard_glcm_written_down():
    shape = (3, 4, 5)
    d, h, w = torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij")
    parity = (d + h + w) % 2
    image = parity.double() * 10.0  # two levels, 0 and 10
    mask = torch.ones(shape, dtype=torch.bool)
    # Stepping along one axis (3 directions) or along three (4) changes the parity; along two (6), it does not.
    changes = [o for o in rf.DIRECTIONS if sum(map(abs, o)) % 2 == 1]
    keeps = [o for o in rf.DIRECTIONS if sum(map(abs, o)) % 2 == 0]
    assert (len(changes), len(keeps)) == (7, 6)
    n_diff = sum(_pairs(shape, o) for o in changes)
    n_same = sum(_pairs(shape, o) for o in keeps)
    # Same-level pairs split into (1, 1) and (2, 2) by the parity of the first voxel, counted here directly.
    even_pairs = sum(int(((parity[a] == 0) & (parity[b] == 0)).sum()) for o in keeps for a, b in [_slices(shape, o)])
    total = 2 * (n_diff + n_same)
    expected = (
        torch.tensor([[2 * even_pairs, n_diff], [n_diff, 2 * (n_same - even_pairs)]], dtype=torch.float64) / total
    )
    P = rf.glcm(image, mask, levels=2)
    assert torch.allclose(P, expected)
    f = _features(rf.texture_features, image, mask, levels=2)
    assert f["contrast"] == pytest.approx(n_diff / (n_diff + n_same))
    assert f["homogeneity"] == pytest.approx((n_same + n_diff / 2) / (n_diff + n_same))
    assert f["energy"] == pytest.approx(float((expected**2).sum()))


def _slices(shape, offset):
    """Index tuples of the voxels ``v`` and ``v + offset`` of every pair inside a box of ``shape``."""
    first = tuple(slice(max(0, -o), n - max(0, o)) for n, o in zip(shape, offset))
    second = tuple(slice(max(0, o), n - max(0, -o)) for n, o in zip(shape, offset))
    return first, second


def test_glcm_matches_a_slow_count_on_a_random_lesion():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(4, 5, 6, generator=g)
    mask = torch.rand(4, 5, 6, generator=g) < 0.6
    levels = 5
    grey = rf.quantise(image[mask], levels, (0.0, 1.0))
    level = torch.full(mask.shape, -1, dtype=torch.long)
    level[mask] = grey
    counts = torch.zeros(levels, levels, dtype=torch.float64)
    for v in itertools.product(*(range(n) for n in mask.shape)):
        for o in rf.DIRECTIONS:
            u = tuple(a + b for a, b in zip(v, o))
            if all(0 <= a < n for a, n in zip(u, mask.shape)) and mask[v] and mask[u]:
                counts[level[v], level[u]] += 1
                counts[level[u], level[v]] += 1
    assert torch.allclose(rf.glcm(image, mask, levels, value_range=(0.0, 1.0)), counts / counts.sum())


def test_one_slice_uses_the_in_plane_directions_only():
    image = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # (1, 2, 2): a 2 x 2 checkerboard
    P = rf.glcm(image, torch.ones(1, 2, 2, dtype=torch.bool), levels=2)
    # In-plane pairs: 2 along h and 2 along w (levels differ), 1 on each diagonal: (1, 1) on one, (2, 2) on the
    # other. Each pair counts both ways: 8 entries off the diagonal, 2 + 2 on it.
    expected = torch.tensor([[2.0, 4.0], [4.0, 2.0]], dtype=torch.float64) / 12
    assert torch.allclose(P, expected)


# Batches, dtypes, errors ----------------------------------------------------------------------


def test_a_batch_equals_one_lesion_at_a_time_and_dtypes_agree():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 2, 9, 7, generator=g)
    masks = torch.zeros(3, 2, 9, 7, dtype=torch.bool)
    masks[0, :, 1:4, 2:6] = True
    masks[1, 1, 3:9, 0:2] = True
    masks[2, 0, 0:2, 0:7] = True
    names, batch = rf.radiomic_features(images, masks, spacing=(3.0, 1.0, 0.5), value_range=(-3, 3), prefix="a ")
    assert batch.shape == (3, 20) and names[8] == "a mean" and names[0] == "voxels"
    for k in range(3):
        _, one = rf.radiomic_features(images[k], masks[k], spacing=(3.0, 1.0, 0.5), value_range=(-3, 3))
        assert torch.allclose(batch[k], one)
        _, single = rf.radiomic_features(images[k].float(), masks[k], spacing=(3.0, 1.0, 0.5), value_range=(-3, 3))
        assert torch.allclose(single, one, atol=1e-5)


def test_clear_errors():
    image, mask = torch.zeros(2, 3, 4), torch.zeros(2, 3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="mask is empty"):
        rf.first_order_features(image, mask)
    mask[0, 0, 0] = True
    with pytest.raises(ValueError, match="must be a bool tensor"):
        rf.shape_features(mask.to(torch.uint8))
    with pytest.raises(ValueError, match=r"same shape; received \(2, 3, 5\) and \(2, 3, 4\)"):
        rf.radiomic_features(torch.zeros(2, 3, 5), mask)
    with pytest.raises(ValueError, match=r"shape \(D, H, W\) or \(B, D, H, W\)"):
        rf.shape_features(mask[0])
    with pytest.raises(ValueError, match="no two neighbouring voxels"):
        rf.glcm(image, mask)  # a single voxel
    with pytest.raises(ValueError, match="spacing must be"):
        rf.shape_features(mask, spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="value_range must be"):
        rf.first_order_features(image, mask, value_range=(1.0, 1.0))
    batch = torch.zeros(4, 2, 3, 4, dtype=torch.bool)
    batch[[0, 2]] = True
    with pytest.raises(ValueError, match=r"lesions \[1, 3\]"):
        rf.shape_features(batch)


def test_standardise_uses_the_training_statistics():
    train = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    test = torch.tensor([[5.0, 6.0]])
    train_z, test_z = rf.standardise(train, test)
    assert torch.allclose(train_z, torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    assert torch.allclose(test_z, torch.tensor([[3.0, 1.0]]))  # the constant feature is only centred
    with pytest.raises(ValueError, match=r"set 1 must have shape \(n, 2\)"):
        rf.standardise(train, test[:, :1])
