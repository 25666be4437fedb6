"""Lesson 12: Nadaraya-Watson kernel regression is attention (and its explorer)."""

import math
import statistics

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import minattn  # noqa: E402
from minattn.apps import kernel_regression as kr  # noqa: E402
from minattn.explore import kernel_regression_explorer  # noqa: E402


@pytest.fixture(scope="module")
def profile():
    return kr.ct_profile()


def _brute_force_nw(xq, xt, yt, h):
    """Textbook loops: f(x) = sum_i K(x, x_i) y_i / sum_j K(x, x_j)."""
    xq, xt = xq.reshape(len(xq), -1), xt.reshape(len(xt), -1)
    out = []
    for q in xq:
        num, den = 0.0, 0.0
        for k, y in zip(xt, yt):
            kernel = math.exp(-float(((q - k) ** 2).sum()) / (2 * h * h))
            num, den = num + kernel * y, den + kernel
        out.append(num / den)
    return torch.stack([torch.as_tensor(o, dtype=torch.float64) for o in out])


def test_squared_distances_and_kernel_against_loops():
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    d2 = kr.squared_distances(a, b)
    assert d2.shape == (5, 7)
    for i in range(5):
        for j in range(7):
            assert d2[i, j] == pytest.approx(float(((a[i] - b[j]) ** 2).sum()), rel=1e-14)
    k = kr.gaussian_kernel(a, b, 0.7)
    torch.testing.assert_close(k, torch.exp(-d2 / (2 * 0.49)), rtol=1e-14, atol=0)
    # 1-D inputs are points of dimension 1
    torch.testing.assert_close(kr.squared_distances(a[:, 0], b[:, 0]), (a[:, :1] - b[:, 0]) ** 2)


def test_kernel_sum_matches_textbook_loops():
    xt, xq = torch.rand(12, dtype=torch.float64) * 10, torch.rand(4, dtype=torch.float64) * 10
    yt = torch.randn(12, dtype=torch.float64)
    expected = _brute_force_nw(xq, xt, yt, 1.3)
    torch.testing.assert_close(kr.nadaraya_watson(xq, xt, yt, 1.3), expected, rtol=1e-12, atol=0)
    w = kr.nadaraya_watson_weights(xq, xt, 1.3)
    torch.testing.assert_close(w.sum(1), torch.ones(4, dtype=torch.float64))


@pytest.mark.parametrize("method", ["expansion", "bias"])
@pytest.mark.parametrize("h", [0.5, 1.5, 4.0, 20.0])
def test_attention_form_equals_kernel_sum_to_machine_precision(profile, method, h):
    d = profile
    kernel_sum = kr.nadaraya_watson(d.x, d.x_train, d.y_train, h)
    attention, weights = kr.nadaraya_watson_attention(d.x, d.x_train, d.y_train, h, method=method, return_weights=True)
    assert attention.shape == kernel_sum.shape == (128,)
    assert float((weights - kr.nadaraya_watson_weights(d.x, d.x_train, h)).abs().max()) < 1e-12
    # outputs are in HU (hundreds): compare relative to their scale
    assert float((attention - kernel_sum).abs().max()) < 1e-12 * float(d.y_train.abs().max())


def test_softmax_of_negative_distances_is_the_kernel_weights():
    xq, xt = torch.randn(6, 2, dtype=torch.float64), torch.randn(9, 2, dtype=torch.float64)
    h = 0.8
    logits = -kr.squared_distances(xq, xt) / (2 * h * h)
    torch.testing.assert_close(minattn.softmax(logits), kr.nadaraya_watson_weights(xq, xt, h), rtol=0, atol=1e-15)
    torch.testing.assert_close(kr.softmax_weights(xq, xt, h), kr.nadaraya_watson_weights(xq, xt, h), rtol=0, atol=1e-15)


def test_expansion_is_ordinary_scaled_dot_product_attention():
    """The -||q||^2 term cancels: q.k / h^2 - ||k||^2 / (2 h^2) gives the same softmax."""
    xq, xt = torch.randn(5, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    yt = torch.randn(8, 2, dtype=torch.float64)
    h = 1.1
    bias = -(xt * xt).sum(-1)[None] / (2 * h * h)
    direct = minattn.scaled_dot_product_attention(xq, xt, yt, bias=bias, scale=1 / h**2)
    torch.testing.assert_close(kr.nadaraya_watson_attention(xq, xt, yt, h), direct, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(kr.nadaraya_watson(xq, xt, yt, h), direct, rtol=1e-12, atol=1e-14)


def test_multidimensional_inputs_and_outputs_against_loops():
    xt, xq = torch.randn(10, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    yt = torch.randn(10, 3, dtype=torch.float64)
    out = kr.nadaraya_watson_attention(xq, xt, yt, 0.9)
    assert out.shape == (3, 3)
    for c in range(3):
        torch.testing.assert_close(out[:, c], _brute_force_nw(xq, xt, yt[:, c], 0.9), rtol=1e-12, atol=1e-14)


def test_bandwidth_limits_nearest_neighbour_and_mean():
    xt = torch.tensor([0.0, 1.0, 2.5, 4.0], dtype=torch.float64)
    yt = torch.tensor([10.0, -3.0, 7.0, 1.0], dtype=torch.float64)
    xq = torch.tensor([0.1, 1.2, 2.4, 3.9], dtype=torch.float64)
    torch.testing.assert_close(kr.nadaraya_watson_attention(xq, xt, yt, 0.01), yt)  # h -> 0: nearest neighbour
    torch.testing.assert_close(kr.nadaraya_watson_attention(xq, xt, yt, 1e4), yt.mean().expand(4))  # h -> inf: mean


def test_attention_form_survives_where_the_kernel_sum_underflows():
    xt = torch.tensor([0.0, 1.0], dtype=torch.float64)
    yt = torch.tensor([5.0, 9.0], dtype=torch.float64)
    far = torch.tensor([100.0], dtype=torch.float64)  # 100 bandwidths away: every exp underflows
    assert torch.isnan(kr.nadaraya_watson(far, xt, yt, 1.0)).all()
    torch.testing.assert_close(kr.nadaraya_watson_attention(far, xt, yt, 1.0), torch.tensor([9.0], dtype=torch.float64))


def test_float32_and_device(device):
    xt = torch.linspace(0, 1, 20, device=device)
    yt = torch.sin(6 * xt)
    out = kr.nadaraya_watson_attention(xt, xt, yt, 0.05)
    assert out.dtype == torch.float32 and out.device.type == device.type
    ref = kr.nadaraya_watson(xt.double().cpu(), xt.double().cpu(), yt.double().cpu(), 0.05)
    torch.testing.assert_close(out.double().cpu(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kr.nadaraya_watson(torch.zeros(3, 2), torch.zeros(4, 3), torch.zeros(4), 1.0), "number of features"),
        (lambda: kr.nadaraya_watson(torch.zeros(3), torch.zeros(4), torch.zeros(5), 1.0), r"\(4,\) or \(4, c\)"),
        (lambda: kr.nadaraya_watson(torch.zeros(3), torch.zeros(4), torch.zeros(4), 0.0), "positive"),
        (lambda: kr.nadaraya_watson(torch.zeros(2, 3, 4), torch.zeros(4), torch.zeros(4), 1.0), r"\(N,\) or \(N, d\)"),
        (lambda: kr.nadaraya_watson_attention(torch.zeros(3), torch.zeros(4), torch.zeros(4), 1, method="x"), "method"),
        (lambda: kr.nadaraya_watson(torch.zeros(3), torch.zeros(4), torch.zeros(4, dtype=torch.float64), 1.0), "dtype"),
        (lambda: kr.nadaraya_watson(torch.zeros(3, dtype=torch.long), torch.zeros(4), torch.zeros(4), 1.0), "floating"),
        (lambda: kr.ct_profile(row=200), "row"),
        (lambda: kr.ct_profile(width=4), "odd"),
        (lambda: kr.best_bandwidth([1.0, 2.0], torch.zeros(3)), "one error per bandwidth"),
    ],
)
def test_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_ct_profile_is_deterministic_and_split(profile):
    again = kr.ct_profile()
    assert torch.equal(again.y_train, profile.y_train) and torch.equal(again.x_val, profile.x_val)
    assert profile.x.shape == profile.truth.shape == (128,)
    assert profile.x_train.shape == profile.y_train.shape == (96,)
    assert profile.x_val.shape == profile.y_val.shape == (32,)
    assert not set(profile.x_train.tolist()) & set(profile.x_val.tolist())
    assert profile.x[1] == pytest.approx(kr.CT_PIXEL_MM)
    # the line crosses lung (about -800 HU) and the vertebral body (bone)
    assert profile.truth.min() < -700 and profile.truth.max() > 300
    noise = profile.y_train - profile.truth[(profile.x_train / kr.CT_PIXEL_MM).round().long()]
    assert 150 < float(noise.std()) < 250


def test_heldout_curve_has_an_interior_best_bandwidth(profile):
    d = profile
    hs = torch.logspace(-1, 1.5, 26, dtype=torch.float64)
    errors = kr.heldout_errors(hs, d.x_train, d.y_train, d.x_val, d.y_val)
    manual = ((kr.nadaraya_watson(d.x_val, d.x_train, d.y_train, float(hs[10])) - d.y_val) ** 2).mean().sqrt()
    assert float(errors[10]) == pytest.approx(float(manual), rel=1e-10)
    best = kr.best_bandwidth(hs, errors)
    assert 0.8 < best < 3.0  # between copying single noisy samples and blurring the bone edges
    assert errors.min() < 0.8 * errors[0] and errors.min() < 0.4 * errors[-1]


def test_leave_one_out_with_a_mask_equals_refitting():
    x = torch.rand(15, dtype=torch.float64) * 10
    y = torch.sin(x) + 0.1 * torch.randn(15, dtype=torch.float64)
    hs = [0.3, 1.0, 3.0]
    fast = kr.leave_one_out_errors(hs, x, y)
    for h, err in zip(hs, fast):
        residuals = []
        for i in range(15):
            keep = torch.arange(15) != i
            residuals.append(float(kr.nadaraya_watson(x[i : i + 1], x[keep], y[keep], h)[0] - y[i]))
        assert float(err) == pytest.approx(math.sqrt(sum(r * r for r in residuals) / 15), rel=1e-10)


# The explorer ---------------------------------------------------------------------------------


def test_kernel_regression_explorer_updates_in_place_and_fast():
    explorer = kernel_regression_explorer()
    assert isinstance(explorer, widgets.VBox) and explorer.state["error"] is None
    assert set(explorer.controls) == {"bandwidth", "query"}
    figure, axes = explorer.figure, list(explorer.figure.axes)
    artists = [list(ax.get_children()) for ax in axes]
    first = explorer.png()
    times = []
    for h in [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 1.7]:
        explorer.controls["bandwidth"].value = h
        assert explorer.state["error"] is None, explorer.state["error"]
        times.append(explorer.last_update_s)
    assert explorer.figure is figure and [list(ax.get_children()) for ax in axes] == artists
    assert explorer.png() != first
    assert statistics.median(times) < 0.3  # loose here (shared CPU); about 25 ms measured
    state = explorer.state
    d = explorer.data
    torch.testing.assert_close(
        torch.from_numpy(state["fit"]), kr.nadaraya_watson(d.x, d.x_train, d.y_train, 1.7), rtol=1e-12, atol=1e-9
    )
    assert state["weights"].sum() == pytest.approx(1.0)
    assert 0.8 < state["best_bandwidth"] < 3.0


def test_kernel_regression_explorer_regimes():
    explorer = kernel_regression_explorer()
    explorer.controls["bandwidth"].value = 0.1
    assert explorer.state["regime"].startswith("under") and explorer.state["weights"].max() > 0.99
    explorer.controls["bandwidth"].value = 30.0
    assert explorer.state["regime"].startswith("over") and explorer.state["effective_samples"] > 30
    explorer.controls["query"].value = 10.0
    assert explorer.state["query"] == 10.0 and explorer.state["error"] is None
