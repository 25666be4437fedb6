"""Lesson 13: softmax as a Boltzmann distribution, attention as a modern Hopfield network (and its explorer)."""

import math
import statistics

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import minattn  # noqa: E402
from minattn.apps import hopfield as hf  # noqa: E402
from minattn.explore import hopfield_explorer  # noqa: E402


@pytest.fixture(scope="module")
def patterns():
    return hf.ct_patterns(16)


def _random_patterns(n=20, d=32, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    return x / x.norm(dim=1, keepdim=True)


def test_boltzmann_is_softmax_of_minus_beta_energy():
    e = torch.tensor([1.0, 0.0, 2.0, 0.5], dtype=torch.float64)
    p = hf.boltzmann(e, 2.0)
    expected = torch.exp(-2.0 * e) / torch.exp(-2.0 * e).sum()
    torch.testing.assert_close(p, expected, rtol=1e-14, atol=0)
    assert hf.boltzmann(e, 1e4).argmax() == 1 and hf.boltzmann(e, 1e4).max() == pytest.approx(1.0)  # cold: ground state
    torch.testing.assert_close(hf.boltzmann(e, 1e-9), torch.full((4,), 0.25, dtype=torch.float64))  # hot: uniform


def test_pattern_energies_are_minus_dot_products():
    x = _random_patterns(5, 8)
    state = torch.randn(3, 8, dtype=torch.float64)
    e = hf.pattern_energies(state, x)
    for m in range(3):
        for i in range(5):
            assert e[m, i] == pytest.approx(-float(x[i] @ state[m]), rel=1e-14)


@pytest.mark.parametrize("beta", [0.1, 1.0, 8.0, 100.0])
def test_update_is_scaled_dot_product_attention_with_keys_equal_values(beta):
    x = _random_patterns()
    state = torch.randn(7, 32, dtype=torch.float64)
    update = hf.hopfield_update(state, x, beta)
    attention = minattn.scaled_dot_product_attention(state, x, x, scale=beta)
    torch.testing.assert_close(update, attention, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(hf.hopfield_update_attention(state, x, beta), attention, rtol=1e-13, atol=1e-15)
    # the written-out formula, one state at a time: X^T softmax(beta X xi)
    for m in range(7):
        w = torch.softmax(beta * (x @ state[m]), 0)
        torch.testing.assert_close(update[m], x.T @ w, rtol=1e-13, atol=1e-15)


def test_leading_axes_and_device(device):
    x = _random_patterns(dtype=torch.float32).to(device)
    state = torch.randn(2, 3, 32, device=device)
    out = hf.hopfield_update(state, x, 4.0)
    assert out.shape == (2, 3, 32) and out.dtype == torch.float32 and out.device.type == device.type
    torch.testing.assert_close(out, hf.hopfield_update_attention(state, x, 4.0), rtol=1e-5, atol=1e-6)
    assert hf.hopfield_energy(state, x, 4.0).shape == (2, 3)


def test_stored_patterns_are_fixed_points_at_large_beta(patterns):
    assert patterns.shape == (64, 256)
    torch.testing.assert_close(patterns.norm(dim=1), torch.ones(64, dtype=torch.float64))
    error = (hf.hopfield_update(patterns, patterns, 500.0) - patterns).norm(dim=1).max()
    assert float(error) < 1e-10
    r = hf.retrieve(patterns, patterns, 500.0)
    assert bool(r.converged.all()) and int(r.steps.max()) == 0  # nothing to do
    # at a modest beta a pattern is no longer exactly fixed: its neighbours pull on it
    assert float((hf.hopfield_update(patterns, patterns, 20.0) - patterns).norm(dim=1).max()) > 1e-3


def test_retrieval_from_noise_and_from_half_a_patch_at_large_beta(patterns):
    targets = torch.arange(64)
    for kind, level, threshold in [("noise", 0.8, 0.95), ("mask", 0.5, 0.8)]:
        queries = hf.corrupt(patterns, kind, level)
        r = hf.retrieve(queries, patterns, 64.0)
        closest = (r.state @ patterns.T).argmax(1)
        accuracy = float((closest == targets).double().mean())
        assert accuracy >= threshold, (kind, accuracy)
        hits = closest == targets
        assert float(hf.overlap(r.state[hits], patterns[hits]).min()) > 0.99  # a hit is the pattern itself
        assert float(r.steps.double().median()) <= 3  # retrieval in one or two updates


def test_small_beta_returns_the_average(patterns):
    queries = hf.corrupt(patterns, "noise", 0.8)
    r = hf.retrieve(queries, patterns, 0.01)
    mean = patterns.mean(0)
    assert float((r.state - mean).norm(dim=1).max()) < 1e-3 * float(mean.norm())
    assert float(hf.effective_number(r.weights).min()) > 63.9
    # in between, a metastable state: a weighted average of a few similar patterns
    mid = hf.retrieve(queries, patterns, 8.0)
    effective = hf.effective_number(mid.weights)
    assert 2 < float(effective.median()) < 30


@pytest.mark.parametrize("beta", [0.5, 4.0, 8.0, 64.0])
def test_energy_never_increases_along_updates(patterns, beta):
    for queries in (hf.corrupt(patterns, "noise", 1.0, seed=1), hf.corrupt(patterns, "mask", 0.5)):
        r = hf.retrieve(queries, patterns, beta, max_steps=30)
        steps = r.energies.diff(dim=0)
        assert float(steps.max()) <= 1e-12
        assert float(r.energies.min()) >= -1e-12  # the constants make E >= 0
    x = _random_patterns()
    r = hf.retrieve(torch.randn(10, 32, dtype=torch.float64), x, beta, max_steps=30)
    assert float(r.energies.diff(dim=0).max()) <= 1e-12


def test_energy_formula_by_hand():
    x = _random_patterns(4, 3)
    xi = torch.tensor([0.3, -0.2, 0.9], dtype=torch.float64)
    beta = 2.5
    lse = math.log(sum(math.exp(beta * float(x[i] @ xi)) for i in range(4))) / beta
    m = float(x.norm(dim=1).max())
    expected = -lse + 0.5 * float(xi @ xi) + math.log(4) / beta + 0.5 * m * m
    assert float(hf.hopfield_energy(xi, x, beta)) == pytest.approx(expected, rel=1e-13)


def test_steps_count_updates_until_settled():
    x = torch.eye(4, dtype=torch.float64)
    query = torch.tensor([[0.9, 0.1, 0.0, 0.0]], dtype=torch.float64)
    r = hf.retrieve(query, x, 1000.0)
    assert int(r.steps[0]) == 1 and bool(r.converged[0])  # one update lands on e_1; the next one moves nothing
    torch.testing.assert_close(r.state[0], x[0])
    r = hf.retrieve(query, x, 1.0, max_steps=3, tol=1e-15)
    assert not bool(r.converged[0]) and int(r.steps[0]) == 3 and r.energies.shape == (4, 1)


def test_effective_number_and_overlap():
    assert float(hf.effective_number(torch.full((10,), 0.1))) == pytest.approx(10.0)
    assert float(hf.effective_number(torch.tensor([0.0, 1.0, 0.0]))) == pytest.approx(1.0)
    a = torch.tensor([1.0, 0.0])
    assert float(hf.overlap(a, torch.tensor([2.0, 0.0]))) == pytest.approx(1.0)
    assert float(hf.overlap(a, torch.tensor([0.0, 3.0]))) == pytest.approx(0.0)


def test_corrupt(patterns):
    masked = hf.corrupt(patterns, "mask", 0.5).reshape(64, 16, 16)
    assert bool((masked[:, 8:] == 0).all())
    torch.testing.assert_close(masked[:, :8], patterns.reshape(64, 16, 16)[:, :8])
    noisy = hf.corrupt(patterns, "noise", 0.8)
    assert float((noisy - patterns).norm(dim=1).mean()) == pytest.approx(0.8, rel=0.1)
    assert torch.equal(noisy, hf.corrupt(patterns, "noise", 0.8))  # seeded


def test_retrieval_sweep_moves_from_average_to_single_pattern(patterns):
    queries = hf.corrupt(patterns, "noise", 0.8)
    sweep = hf.retrieval_sweep(queries, patterns, torch.arange(64), [1.0, 8.0, 64.0])
    acc, eff = sweep["accuracy"].tolist(), sweep["effective_patterns"].tolist()
    assert acc[0] < 0.05 and acc[2] > 0.95 and acc[0] < acc[1] < acc[2]
    assert eff[0] > 60 and eff[2] < 1.1 and eff[0] > eff[1] > eff[2]
    assert sweep["steps"][2] <= 2


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: hf.hopfield_update(torch.zeros(3, 5), torch.zeros(4, 6), 1.0), r"d = 6"),
        (lambda: hf.hopfield_update(torch.zeros(3, 6), torch.zeros(4, 6, 1), 1.0), r"\(N, d\)"),
        (lambda: hf.hopfield_update(torch.zeros(6), torch.zeros(4, 6), 0.0), "beta"),
        (lambda: hf.hopfield_update(torch.zeros(6), torch.zeros(4, 6, dtype=torch.float64), 1.0), "dtype"),
        (lambda: hf.retrieve(torch.zeros(6), torch.zeros(4, 6), 1.0, max_steps=0), "max_steps"),
        (lambda: hf.corrupt(torch.zeros(4, 6), "mask", 0.5), "square"),
        (lambda: hf.corrupt(torch.zeros(4, 4), "blur", 0.5), "kind"),
        (lambda: hf.ct_patterns(7), "divisible"),
    ],
)
def test_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# The explorer ---------------------------------------------------------------------------------


def test_hopfield_explorer_updates_in_place_and_fast():
    explorer = hopfield_explorer()
    assert isinstance(explorer, widgets.VBox) and explorer.state["error"] is None
    assert set(explorer.controls) == {"beta", "pattern", "corruption", "level"}
    figure, axes = explorer.figure, list(explorer.figure.axes)
    artists = [list(ax.get_children()) for ax in axes]
    first = explorer.png()
    times = []
    for beta in [1.0, 4.0, 8.0, 16.0, 64.0, 200.0]:
        explorer.controls["beta"].value = beta
        assert explorer.state["error"] is None, explorer.state["error"]
        times.append(explorer.last_update_s)
    assert explorer.figure is figure and [list(ax.get_children()) for ax in axes] == artists
    assert explorer.png() != first
    assert statistics.median(times) < 0.3  # loose here (shared CPU); about 40 ms measured
    assert explorer.state["retrieved"] and explorer.state["steps"] <= 2
    explorer.controls["beta"].value = 1.0
    assert not explorer.state["retrieved"] and explorer.state["effective_patterns"] > 60


def test_hopfield_explorer_mask_and_bad_level():
    explorer = hopfield_explorer()
    explorer.controls["corruption"].value = "mask"
    explorer.controls["level"].value = 0.5
    assert explorer.state["error"] is None
    assert bool((explorer.state["query"].reshape(16, 16)[8:] == 0).all())
    explorer.controls["level"].value = 1.5
    assert "masked fraction" in explorer.state["error"]
    explorer.controls["level"].value = 0.25
    assert explorer.state["error"] is None
    assert float(torch.as_tensor(explorer.state["energies"]).diff().max()) <= 1e-12
