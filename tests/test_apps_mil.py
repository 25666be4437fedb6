"""Attention-based multiple-instance learning (minattn.apps.mil) and its explorer."""

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minattn.apps import mil  # noqa: E402
from minattn.explore.mil import mil_explorer  # noqa: E402

# Pooling ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gated", [False, True])
def test_attention_weights_sum_to_one_and_follow_the_formula(gated):
    torch.manual_seed(0)
    pool = mil.AttentionPool(dim=8, hidden=5, gated=gated)
    h = torch.randn(3, 7, 8)
    z, a = pool(h)
    assert z.shape == (3, 8) and a.shape == (3, 7)
    assert torch.allclose(a.sum(1), torch.ones(3)) and bool((a >= 0).all())
    hidden = torch.tanh(h @ pool.V.weight.T + pool.V.bias)
    if gated:
        hidden = hidden * torch.sigmoid(h @ pool.U.weight.T + pool.U.bias)
    expected = torch.softmax((hidden @ pool.w.weight.T).squeeze(-1), dim=1)
    assert torch.allclose(a, expected, atol=1e-6)
    assert torch.allclose(z, (expected[..., None] * h).sum(1), atol=1e-6)


@pytest.mark.parametrize("pooling", mil.POOLINGS)
def test_bag_output_is_permutation_invariant(pooling):
    torch.manual_seed(1)
    model = mil.MILModel(pooling).double().eval()
    features = torch.randn(4, 16, len(mil.FEATURE_NAMES), dtype=torch.float64)
    logits, weights = model(features)
    assert logits.dtype == torch.float64 and weights.shape == (4, 16)
    assert torch.allclose(weights.sum(1), torch.ones(4, dtype=torch.float64))
    perm = torch.randperm(16)
    logits_p, weights_p = model(features[:, perm])
    assert torch.allclose(logits_p, logits, atol=1e-12)
    assert torch.allclose(weights_p, weights[:, perm], atol=1e-12)  # the weights travel with their instances


@pytest.mark.parametrize("pooling", mil.POOLINGS)
def test_padded_instances_are_ignored(pooling):
    torch.manual_seed(2)
    pool = mil.make_pool(pooling, 6)
    h = torch.randn(1, 5, 6)
    padded = torch.cat([h, 100 * torch.randn(1, 3, 6)], dim=1)  # 3 slots of garbage
    mask = torch.tensor([[True] * 5 + [False] * 3])
    z, a = pool(h)
    z_pad, a_pad = pool(padded, mask)
    assert torch.allclose(z_pad, z, atol=1e-6)
    assert torch.allclose(a_pad[:, :5], a, atol=1e-6) and bool((a_pad[:, 5:] == 0).all())


def test_pooling_errors_name_the_shapes():
    pool = mil.AttentionPool(8)
    with pytest.raises(ValueError, match=r"\(B, K, 8\).*\(3, 8\)"):
        pool(torch.randn(3, 8))
    with pytest.raises(ValueError, match="mask must be bool"):
        pool(torch.randn(2, 4, 8), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one real instance"):
        pool(torch.randn(1, 4, 8), torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="pooling must be one of"):
        mil.make_pool("median", 8)
    with pytest.raises(ValueError, match="no attention scores"):
        mil.MILModel("mean").attention_scores(torch.randn(1, 4, len(mil.FEATURE_NAMES)))


# Data ------------------------------------------------------------------------------------------


def test_bags_are_seeded_and_consistent():
    a, b = mil.make_bags(20, seed=3), mil.make_bags(20, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.instance_labels, b.instance_labels)
    assert not torch.equal(a.images, mil.make_bags(20, seed=4).images)
    assert a.images.shape == (20, 1, 64, 64) and a.instances.shape == (20, 16, 1, 16, 16)
    assert a.features.shape == (20, 16, len(mil.FEATURE_NAMES))
    assert torch.equal(a.bag_labels.bool(), a.instance_labels.any(1))  # the MIL assumption
    # The tiles are the image, row-major.
    assert torch.equal(a.instances[:, 5, 0], a.images[:, 0, 16:32, 16:32])
    # Every nodule lies wholly inside the tile it labels.
    for i in range(20):
        for row, col, radius in a.nodules[i][~torch.isnan(a.nodules[i, :, 0])].tolist():
            tile = int(row) // 16 * 4 + int(col) // 16
            assert a.instance_labels[i, tile]
            assert int((row - radius) // 16) == int((row + radius) // 16) == int(row) // 16
            assert int((col - radius) // 16) == int((col + radius) // 16) == int(col) // 16
        assert int(a.instance_labels[i].sum()) == int((~torch.isnan(a.nodules[i, :, 0])).sum())


def test_tile_image_rejects_bad_shapes():
    with pytest.raises(ValueError, match="multiples of tile=16"):
        mil.tile_image(torch.zeros(1, 1, 40, 64), 16)


# Training --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    train, test = mil.make_bags(400, seed=0), mil.make_bags(200, seed=1)
    models = {p: mil.train_mil(train, p, progress=False)[0] for p in mil.POOLINGS}
    return models, test, {p: mil.evaluate(m, test) for p, m in models.items()}


# Measured with these seeds (train 400 bags seed 0, test 200 bags seed 1, 30 epochs):
#   attention: bag accuracy 0.94, bag AUC 0.955, instance AUC within bags 0.90, top tile hit 0.94
#   gated:     0.95, 0.952, 0.87, 0.92;  mean: 0.875, 0.948;  max: 0.895, 0.946.
@pytest.mark.parametrize("pooling", ["attention", "gated"])
def test_attention_mil_learns_bags_and_finds_the_nodules(trained, pooling):
    result = trained[2][pooling]
    assert result["bag_accuracy"] >= 0.88
    assert result["bag_auc"] >= 0.92
    assert result["instance_auc_within"] >= 0.8  # never shown a tile label
    assert result["top_tile_hit"] >= 0.85
    assert result["instance_auc"] >= 0.7


def test_baselines_learn_too(trained):
    results = trained[2]
    for pooling in ("mean", "max"):
        assert results[pooling]["bag_accuracy"] >= 0.8 and results[pooling]["bag_auc"] >= 0.9
    assert results["mean"]["instance_auc"] == 0.5  # equal weights say nothing about the tiles


def test_training_is_deterministic():
    bags = mil.make_bags(40, seed=5)
    a, _ = mil.train_mil(bags, "gated", epochs=2, progress=False, seed=7)
    b, _ = mil.train_mil(bags, "gated", epochs=2, progress=False, seed=7)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


# Explorer --------------------------------------------------------------------------------------


def test_explorer_shows_the_weights_of_the_chosen_model(trained, two_threads):
    models, test, results = trained
    threads = torch.get_num_threads()
    explorer = mil_explorer({"plain": models["attention"], "gated": models["gated"]}, test.subset(slice(0, 24)))
    assert isinstance(explorer, widgets.VBox) and explorer.state["error"] is None
    figure, axes = explorer.figure, list(explorer.figure.axes)
    first = explorer.png()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    for bag in (0, 3, 7):
        explorer.controls["bag"].value = bag
        assert explorer.state["error"] is None, explorer.state["error"]
        weights = torch.as_tensor(explorer.state["weights"])
        assert torch.allclose(weights, results["attention"]["weights"][bag])
        assert float(weights.sum()) == pytest.approx(1.0, abs=1e-5)
    explorer.controls["pooling"].value = "gated"
    assert torch.allclose(torch.as_tensor(explorer.state["weights"]), results["gated"]["weights"][7])
    explorer.controls["truth"].value = False
    assert not explorer.nodule_marks.get_visible()
    assert explorer.figure is figure and list(figure.axes) == axes  # updated in place
    assert explorer.png() != first
    assert explorer.last_update_s < 2.0  # loose: a busy CI machine; ~20 ms measured here
    assert torch.get_num_threads() == threads


def test_explorer_rejects_bad_inputs():
    with pytest.raises(ValueError, match="MILModel"):
        mil_explorer({"x": torch.nn.Linear(2, 2)}, mil.make_bags(4, seed=0))
