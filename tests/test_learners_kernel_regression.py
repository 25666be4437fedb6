"""Learners' answers to the kernel-regression exercises (exercises 12), right and wrong, and their verdicts."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from learners import Attempt, assert_verdict

import minattn
from minattn.apps import kernel_regression as kr
from minattn.grading.topics import kernel_regression as topic

# ----------------------------------------------------------------------------- 12.1 the weight by hand

LOGITS = [-((1.5 - x) ** 2) / 2 for x in (0.0, 1.0, 3.0)]

# ----------------------------------------------------------------------------- 12.2 kernel sums


def kernel_sum_einsum(x_query, x_train, y_train, h):
    kernel = torch.exp(-((x_query[:, None] - x_train[None, :]) ** 2) / (2 * h**2))
    return torch.einsum("mn,n->m", kernel, y_train) / kernel.sum(dim=1)


def kernel_sum_numpy(x_query, x_train, y_train, h):
    q, k, y = (t.detach().cpu().numpy() for t in (x_query, x_train, y_train))
    kernel = np.exp(-(np.subtract.outer(q, k) ** 2) / (2 * h * h))
    return torch.from_numpy((kernel * y).sum(axis=1) / kernel.sum(axis=1)).to(x_query)


def kernel_sum_loop_float64(x_query, x_train, y_train, h):
    out = []
    for x in x_query.double():
        w = torch.exp(-((x - x_train.double()) ** 2) / (2 * h * h))
        out.append((w * y_train.double()).sum() / w.sum())
    return torch.stack(out).to(x_query.dtype)


def kernel_without_2(x_query, x_train, y_train, h):
    kernel = torch.exp(-((x_query[:, None] - x_train[None, :]) ** 2) / (h * h))
    return kernel @ y_train / kernel.sum(dim=1)


def kernel_not_normalised(x_query, x_train, y_train, h):
    return torch.exp(-((x_query[:, None] - x_train[None, :]) ** 2) / (2 * h * h)) @ y_train


def kernel_over_queries(x_query, x_train, y_train, h):
    kernel = torch.exp(-((x_query[:, None] - x_train[None, :]) ** 2) / (2 * h * h))
    return (kernel / kernel.sum(dim=0, keepdim=True)) @ y_train


def kernel_column(x_query, x_train, y_train, h):
    kernel = torch.exp(-((x_query[:, None] - x_train[None, :]) ** 2) / (2 * h * h))
    return kernel @ y_train[:, None] / kernel.sum(dim=1, keepdim=True)  # (M, 1)


def kernel_sum_as_attention(x_query, x_train, y_train, h):
    return minattn.scaled_dot_product_attention(
        x_query[:, None], x_train[:, None], y_train[:, None], bias=-(x_train**2)[None, :] / (2 * h * h), scale=1 / h**2
    )[:, 0]


# ----------------------------------------------------------------------------- 12.3 as attention


def attention_centred(x_query, x_train, y_train, h):
    centre = x_train.mean()
    q, k = (x_query - centre)[:, None], (x_train - centre)[:, None]
    bias = -(k[:, 0] ** 2)[None, :] / (2 * h * h)
    return minattn.scaled_dot_product_attention(q, k, y_train[:, None], bias=bias, scale=1.0 / (h * h))[:, 0]


def attention_raw(x_query, x_train, y_train, h):
    bias = -(x_train**2)[None, :] / (2 * h * h)
    return minattn.scaled_dot_product_attention(
        x_query[:, None], x_train[:, None], y_train[:, None], bias=bias, scale=1 / h**2
    ).squeeze(-1)


def attention_distance_bias(x_query, x_train, y_train, h):
    bias = -((x_query[:, None] - x_train[None, :]) ** 2) / (2 * h * h)
    out = minattn.scaled_dot_product_attention(
        x_query[:, None], x_train[:, None], y_train[:, None], bias=bias, scale=0.0
    )
    return out.reshape(-1)


def attention_torch_sdpa(x_query, x_train, y_train, h):
    centre = x_train.mean()
    q, k = (x_query - centre)[None, :, None], (x_train - centre)[None, :, None]
    mask = -(k[..., 0] ** 2)[:, None, :] / (2 * h * h)
    return F.scaled_dot_product_attention(q, k, y_train[None, :, None], attn_mask=mask, scale=1 / h**2)[0, :, 0]


def attention_softmax_of_distances(x_query, x_train, y_train, h):
    weights = minattn.softmax(-((x_query[:, None] - x_train[None, :]) ** 2) / (2 * h * h), dim=-1)
    return weights @ y_train


def attention_no_bias(x_query, x_train, y_train, h):
    centre = x_train.mean()
    q, k = (x_query - centre)[:, None], (x_train - centre)[:, None]
    return minattn.scaled_dot_product_attention(q, k, y_train[:, None], scale=1.0 / (h * h))[:, 0]


def attention_bias_sign(x_query, x_train, y_train, h):
    q, k = x_query[:, None], x_train[:, None]
    return minattn.scaled_dot_product_attention(
        q, k, y_train[:, None], bias=(k[:, 0] ** 2)[None, :] / (2 * h * h), scale=1 / h**2
    )[:, 0]


def attention_default_scale(x_query, x_train, y_train, h):
    centre = x_train.mean()
    q, k = (x_query - centre)[:, None], (x_train - centre)[:, None]
    return minattn.scaled_dot_product_attention(q, k, y_train[:, None], bias=-(k[:, 0] ** 2)[None, :] / (2 * h * h))[
        :, 0
    ]


def attention_column(x_query, x_train, y_train, h):
    return attention_centred(x_query, x_train, y_train, h)[:, None]


# ----------------------------------------------------------------------------- 12.4 the bandwidth


def rmse(pred, y):
    return float(((pred - y) ** 2).mean().sqrt())


def best_by_loop(x_train, y_train, x_val, y_val, candidates):
    errors = [rmse(attention_centred(x_val, x_train, y_train, h), y_val) for h in candidates]
    return candidates[errors.index(min(errors))]


def best_vectorised(x_train, y_train, x_val, y_val, candidates):
    h = torch.tensor(candidates, dtype=torch.float64, device=x_train.device)[:, None, None]
    d2 = (x_val.double()[:, None] - x_train.double()[None, :]) ** 2
    pred = minattn.softmax(-d2 / (2 * h * h), dim=-1) @ y_train.double()
    errors = ((pred - y_val.double()) ** 2).mean(-1).sqrt()
    return float(torch.tensor(candidates, dtype=torch.float64)[int(errors.argmin())])


def best_numpy(x_train, y_train, x_val, y_val, candidates):
    xt, yt, xv, yv = (t.cpu().double().numpy() for t in (x_train, y_train, x_val, y_val))
    scores = []
    for h in candidates:
        w = np.exp(-(np.subtract.outer(xv, xt) ** 2) / (2 * h * h))
        scores.append(np.sqrt(np.mean(((w @ yt) / w.sum(1) - yv) ** 2)))
    return float(np.asarray(candidates)[int(np.argmin(scores))])


def best_largest(x_train, y_train, x_val, y_val, candidates):
    errors = [rmse(attention_centred(x_val, x_train, y_train, h), y_val) for h in candidates]
    return candidates[errors.index(max(errors))]


def best_index(x_train, y_train, x_val, y_val, candidates):
    errors = [rmse(attention_centred(x_val, x_train, y_train, h), y_val) for h in candidates]
    return int(torch.tensor(errors).argmin())


def best_error(x_train, y_train, x_val, y_val, candidates):
    return min(rmse(attention_centred(x_val, x_train, y_train, h), y_val) for h in candidates)


def best_on_training(x_train, y_train, x_val, y_val, candidates):
    errors = [rmse(attention_centred(x_train, x_train, y_train, h), y_train) for h in candidates]
    return candidates[errors.index(min(errors))]


def best_by_package(x_train, y_train, x_val, y_val, candidates):
    return kr.best_bandwidth(candidates, kr.heldout_errors(candidates, x_train, y_train, x_val, y_val))


ATTEMPTS = [
    # 12.1
    Attempt("nw_weight_by_hand", "formula 1 / (1 + 2/e)", 1 / (1 + 2 / math.e), "right"),
    Attempt(
        "nw_weight_by_hand",
        "torch.softmax of the logits, float32",
        float(torch.softmax(torch.tensor(LOGITS), 0)[1]),
        "right",
    ),
    Attempt("nw_weight_by_hand", "numpy exp and sum", float(np.exp(LOGITS[1]) / np.exp(LOGITS).sum()), "right"),
    Attempt("nw_weight_by_hand", "the kernel value alone", math.exp(-0.125), "bug", names="kernel_not_normalised"),
    Attempt(
        "nw_weight_by_hand",
        "logits without the 2",
        math.exp(-0.25) / (math.exp(-0.25) + 2 * math.exp(-2.25)),
        "bug",
        names="kernel_without_2",
    ),
    Attempt(
        "nw_weight_by_hand",
        "the weight at 0 mm",
        math.exp(-1.125) / sum(math.exp(v) for v in LOGITS),
        "bug",
        names="other_sample",
    ),
    Attempt("nw_weight_by_hand", "a guess: a third", 1 / 3, "hard-coded"),
    # 12.2
    Attempt("nw_kernel_sum", "einsum", kernel_sum_einsum, "right"),
    Attempt("nw_kernel_sum", "numpy round trip", kernel_sum_numpy, "right"),
    Attempt("nw_kernel_sum", "a loop over queries in float64", kernel_sum_loop_float64, "right"),
    Attempt("nw_kernel_sum", "exp(-d^2 / h^2)", kernel_without_2, "bug", names="kernel_without_2"),
    Attempt("nw_kernel_sum", "not divided by the kernel sum", kernel_not_normalised, "bug", names="not_normalised"),
    Attempt(
        "nw_kernel_sum", "normalised over the queries", kernel_over_queries, "bug", names="normalised_over_queries"
    ),
    Attempt(
        "nw_kernel_sum", "returns (M, 1)", kernel_column, "bug", names="wrong_shape_right_values", says="wrong shape"
    ),
    Attempt(
        "nw_kernel_sum", "the package's nadaraya_watson", kr.nadaraya_watson, "shortcut", "ruled_out", "nadaraya_watson"
    ),
    Attempt(
        "nw_kernel_sum",
        "attention instead of kernel sums",
        kernel_sum_as_attention,
        "shortcut",
        "ruled_out",
        "scaled_dot_product_attention",
    ),
    Attempt(
        "nw_kernel_sum",
        "the mean of the targets for every query",
        lambda xq, xt, yt, h: yt.mean().expand(len(xq)).clone(),
        "hard-coded",
    ),
    Attempt(
        "nw_kernel_sum",
        "returns a numpy array",
        lambda xq, xt, yt, h: kernel_sum_einsum(xq, xt, yt, h).numpy(),
        "wrong type",
    ),
    Attempt(
        "nw_kernel_sum",
        "always float64",
        lambda xq, xt, yt, h: kernel_sum_einsum(xq.double(), xt.double(), yt.double(), h),
        "wrong type",
        says="wrong dtype",
    ),
    # 12.3
    Attempt("nw_attention", "centred expansion (the lesson's way)", attention_centred, "right"),
    Attempt("nw_attention", "expansion without centring", attention_raw, "right"),
    Attempt("nw_attention", "the whole distance as a bias, scale 0", attention_distance_bias, "right"),
    Attempt("nw_attention", "torch's scaled_dot_product_attention with a float mask", attention_torch_sdpa, "right"),
    Attempt("nw_attention", "softmax of negative squared distances", attention_softmax_of_distances, "right"),
    Attempt("nw_attention", "kernel sums again", kernel_sum_einsum, "bug", names="kernel_sums_underflow"),
    Attempt("nw_attention", "no key bias", attention_no_bias, "bug", names="no_key_bias"),
    Attempt("nw_attention", "+||k||^2 bias", attention_bias_sign, "bug", names="bias_sign"),
    Attempt("nw_attention", "default scale", attention_default_scale, "bug", names="default_scale"),
    Attempt(
        "nw_attention", "returns (M, 1)", attention_column, "bug", names="wrong_shape_right_values", says="wrong shape"
    ),
    Attempt(
        "nw_attention",
        "the package's nadaraya_watson_attention",
        kr.nadaraya_watson_attention,
        "shortcut",
        "ruled_out",
        "nadaraya_watson_attention",
    ),
    Attempt(
        "nw_attention",
        "the package's nadaraya_watson",
        lambda xq, xt, yt, h: kr.nadaraya_watson(xq, xt, yt, h),
        "shortcut",
        "ruled_out",
    ),
    Attempt(
        "nw_attention",
        "the package's softmax weights",
        lambda xq, xt, yt, h: kr.softmax_weights(xq, xt, h) @ yt,
        "shortcut",
        "ruled_out",
    ),
    Attempt("nw_attention", "zeros", lambda xq, xt, yt, h: torch.zeros_like(xq), "hard-coded"),
    # 12.4
    Attempt("best_bandwidth", "a loop over the candidates", best_by_loop, "right"),
    Attempt("best_bandwidth", "all candidates at once", best_vectorised, "right"),
    Attempt("best_bandwidth", "numpy", best_numpy, "right"),
    Attempt("best_bandwidth", "largest error", best_largest, "bug", names="largest_error"),
    Attempt("best_bandwidth", "returns the index", best_index, "bug", names="returned_index"),
    Attempt("best_bandwidth", "returns the error", best_error, "bug", names="returned_error"),
    Attempt(
        "best_bandwidth", "scored on the training samples", best_on_training, "bug", names="scored_on_training_data"
    ),
    Attempt("best_bandwidth", "the lesson's 1.5 mm typed in", lambda *args: 1.5, "hard-coded"),
    Attempt(
        "best_bandwidth",
        "the package's heldout_errors and best_bandwidth",
        best_by_package,
        "shortcut",
        "ruled_out",
        "heldout_errors",
    ),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)


def test_bandwidth_reference_matches_the_package():
    """The grader's batched NumPy RMSE equals minattn's heldout_errors on every hidden case."""
    for case in topic.best_bandwidth_cases(torch.device("cpu")):
        x_train, y_train, x_val, y_val, candidates = case.args
        package = kr.heldout_errors(candidates, x_train.double(), y_train.double(), x_val.double(), y_val.double())
        assert np.allclose(topic.heldout_rmse(*case.args), package.numpy(), rtol=1e-9)
        assert topic.best_bandwidth(*case.args) == kr.best_bandwidth(candidates, package)
