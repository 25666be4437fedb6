"""Kernel regression (lesson 12): Nadaraya-Watson by kernel sums, as attention, and the bandwidth choice.

Function exercises: ``nw_kernel_sum`` and ``nw_attention`` (the estimator, 1-D
inputs, ``(M,)`` queries, ``(N,)`` samples, ``(M,)`` out) and ``best_bandwidth``
(the held-out choice of ``h`` among candidates). Value exercise:
``nw_weight_by_hand`` (a weight worked out with a calculator). Concept questions
(:data:`CONCEPT_EXERCISES`): the limits of the bandwidth, the factors that cancel
in the softmax, the temperature 2h^2, and why the training error cannot choose h.

Hidden cases have M != N, bandwidths other than 1 (so ``h`` and ``h^2`` differ),
float32 and float64, and for ``nw_attention`` one query so far from every
sample that every kernel value underflows: kernel sums give 0 / 0 there, the
softmax of attention does not. References compute in float64 and return the
inputs' dtype, so a float32 answer is compared with the exact estimate.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...apps import kernel_regression as kr
from ...attention import scaled_dot_product_attention
from ..exercise import (
    F32,
    F64,
    Bug,
    Case,
    ChoiceExercise,
    FunctionExercise,
    RuledOut,
    ValueExercise,
    WrongAnswer,
    case_dtype,
)

# ----------------------------------------------------------------------------- references


def nw_kernel_sum(x_query, x_train, y_train, h):
    """Nadaraya-Watson with a Gaussian kernel: ``(M,), (N,), (N,) -> (M,)`` (exact, in the inputs' dtype)."""
    return kr.nadaraya_watson(x_query.double(), x_train.double(), y_train.double(), h).to(x_query.dtype)


def nw_attention(x_query, x_train, y_train, h):
    """The same estimate through attention, finite even where every kernel value underflows."""
    return kr.nadaraya_watson_attention(x_query.double(), x_train.double(), y_train.double(), h).to(x_query.dtype)


def best_bandwidth(x_train, y_train, x_val, y_val, candidates):
    """The candidate ``h`` whose estimate at ``x_val`` has the smallest RMSE against ``y_val`` (a float)."""
    return kr.best_bandwidth(candidates, heldout_rmse(x_train, y_train, x_val, y_val, candidates))


def heldout_rmse(x_train, y_train, x_val, y_val, candidates):
    """Held-out RMSE of every candidate at once: ``kr.heldout_errors`` as one batched softmax in float64 NumPy.

    NumPy, because these arrays are tiny: it takes microseconds, where torch's thread pool can take
    milliseconds per call on a busy machine, and the check's time limit counts this too.
    """
    xt, yt, xv, yv = (t.detach().cpu().double().numpy() for t in (x_train, y_train, x_val, y_val))
    h = np.asarray(candidates, dtype=np.float64)[:, None, None]  # (C, 1, 1)
    logits = -((xv[:, None] - xt[None, :]) ** 2) / (2 * h * h)  # (C, M, N)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    pred = (e / e.sum(axis=-1, keepdims=True)) @ yt  # (C, M)
    return np.sqrt(((pred - yv) ** 2).mean(axis=-1))  # (C,)


# ----------------------------------------------------------------------------- cases


def _on(values, dtype, device):
    return torch.as_tensor(values, dtype=F64).to(device=device, dtype=case_dtype(dtype, device))


def _uniform(g, n, low, high, dtype, device, sort=False):
    x = low + (high - low) * torch.rand(n, generator=g, dtype=F64)
    return _on(x.sort().values if sort else x, dtype, device)


def _normal(g, n, mean, std, dtype, device):
    return _on(mean + std * torch.randn(n, generator=g, dtype=F64), dtype, device)


def _estimator_cases(device, g):
    """Cases shared by both estimators: M != N, h != 1, float32 and float64, unsorted samples."""
    return [
        Case(
            "4 queries, 3 samples at 0, 1 and 3 (float64), h = 0.8",
            (
                _on([1.5, 0.2, 2.9, 4.0], F64, device),
                _on([0.0, 1.0, 3.0], F64, device),
                _on([2.0, -1.0, 5.0], F64, device),
                0.8,
            ),
        ),
        Case(
            "7 queries, 11 unsorted samples on [0, 10] (float64), h = 1.3",
            (
                _uniform(g, 7, 0.0, 10.0, F64, device),
                _uniform(g, 11, 0.0, 10.0, F64, device),
                _normal(g, 11, 10.0, 50.0, F64, device),
                1.3,
            ),
        ),
        Case(
            "9 queries, 5 samples on [-2, 2] (float32), h = 2.5",
            (
                _uniform(g, 9, -2.0, 2.0, F32, device),
                _uniform(g, 5, -2.0, 2.0, F32, device),
                _normal(g, 5, 3.0, 1.0, F32, device),
                2.5,
            ),
        ),
        Case(
            "13 queries, 20 sorted samples on [-2, 2] (float32), h = 0.6",
            (
                _uniform(g, 13, -2.0, 2.0, F32, device),
                _uniform(g, 20, -2.0, 2.0, F32, device, sort=True),
                _normal(g, 20, -4.0, 1.0, F32, device),
                0.6,
            ),
        ),
        Case(
            "6 queries, 30 samples on [20, 80] mm with HU-like targets (float64), h = 4",
            (
                _uniform(g, 6, 20.0, 80.0, F64, device),
                _uniform(g, 30, 20.0, 80.0, F64, device),
                _normal(g, 30, -300.0, 400.0, F64, device),
                4.0,
            ),
        ),
    ]


def nw_kernel_sum_cases(device):
    return _estimator_cases(device, torch.Generator().manual_seed(12))


def nw_attention_cases(device):
    g = torch.Generator().manual_seed(12)
    cases = _estimator_cases(device, g)
    x_train = _uniform(torch.Generator().manual_seed(121), 8, 0.0, 10.0, F64, device, sort=True)
    y_train = _normal(torch.Generator().manual_seed(122), 8, 5.0, 20.0, F64, device)
    far = _on([1.0, 6.5, float(x_train.max()) + 20.0], F64, device)  # the last query: 40 bandwidths past every sample
    cases.append(
        Case(
            "3 queries, the last one 40 bandwidths away from all 8 samples (float64), h = 0.5: every kernel value "
            "underflows to 0 there",
            (far, x_train, y_train, 0.5),
            tags=frozenset({"far"}),
        )
    )
    return cases


def _step_data(g, n_train, n_val, noise, dtype, device, length=20.0):
    """A piecewise-constant profile with two edges, noisy training samples and clean held-out values."""

    def truth(x):
        return torch.where((x > 0.35 * length) & (x < 0.6 * length), 300.0, -500.0) + 40.0 * torch.sin(x)

    x_train = (length * torch.rand(n_train, generator=g, dtype=F64)).sort().values
    x_val = (length * torch.rand(n_val, generator=g, dtype=F64)).sort().values
    y_train = truth(x_train) + noise * torch.randn(n_train, generator=g, dtype=F64)
    return tuple(_on(t, dtype, device) for t in (x_train, y_train, x_val, truth(x_val)))


def _smooth_data(g, n_train, n_val, noise, dtype, device):
    """A smooth bump: heavy smoothing pays off."""

    def truth(x):
        return 2.0 + torch.exp(-((x - 1.0) ** 2) / 8.0)

    x_train = -6.0 + 12.0 * torch.rand(n_train, generator=g, dtype=F64)
    x_val = -6.0 + 12.0 * torch.rand(n_val, generator=g, dtype=F64)
    y_train = truth(x_train) + noise * torch.randn(n_train, generator=g, dtype=F64)
    return tuple(_on(t, dtype, device) for t in (x_train, y_train, x_val, truth(x_val)))


def best_bandwidth_cases(device):
    g = torch.Generator().manual_seed(1212)
    data = kr.ct_profile()
    lesson = tuple(
        t.to(device=device, dtype=case_dtype(F64, device)) for t in (data.x_train, data.y_train, data.x_val, data.y_val)
    )
    return [
        Case(
            "the lesson's CT profile (96 samples, 32 held out, float64), the lesson's 9 candidates",
            (*lesson, [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0]),
        ),
        Case(
            "a profile with two edges: 60 noisy samples, 25 held out (float64), 6 unsorted candidates",
            (*_step_data(g, 60, 25, 250.0, F64, device), [3.0, 0.25, 1.5, 0.75, 6.0, 0.125]),
        ),
        Case(
            "a smooth bump: 40 noisy samples, 17 held out (float32), 5 candidates",
            (*_smooth_data(g, 40, 17, 0.5, F32, device), [0.25, 4.0, 1.0, 0.5, 2.5]),
        ),
        Case(
            "a profile with two edges, little noise: 120 samples, 31 held out (float32), 7 candidates",
            (*_step_data(g, 120, 31, 5.0, F32, device), [0.5, 2.0, 0.0625, 0.375, 1.0, 0.1875, 4.0]),
        ),
    ]


# ----------------------------------------------------------------------------- bug variants


def _diff(x_query, x_train):
    return x_query.double()[:, None] - x_train.double()[None, :]  # (M, N)


def _as(out, like):
    return out.to(like.dtype)


def _weights_estimate(weights, y_train, like):
    return _as(weights @ y_train.double(), like)


def _kernel_variant(kernel_of):
    """A wrong kernel ``kernel_of(differences, h)``, normalised and averaged as it should be."""

    def variants(case):
        x_query, x_train, y_train, h = case.args
        k = kernel_of(_diff(x_query, x_train), float(h))
        yield _weights_estimate(k / k.sum(dim=1, keepdim=True), y_train, x_query), {}

    return variants


def _gaussian(d, h):
    return torch.exp(-(d**2) / (2 * h * h))


def _not_normalised(case):
    x_query, x_train, y_train, h = case.args
    yield _weights_estimate(_gaussian(_diff(x_query, x_train), float(h)), y_train, x_query), {}


def _normalised_over_queries(case):
    x_query, x_train, y_train, h = case.args
    k = _gaussian(_diff(x_query, x_train), float(h))
    yield _weights_estimate(k / k.sum(dim=0, keepdim=True), y_train, x_query), {}


def _attention_variant(scale_of, bias_of):
    """``scaled_dot_product_attention`` with a wrong scale or key bias, on centred and on raw inputs."""

    def variants(case):
        x_query, x_train, y_train, h = case.args
        h = float(h)
        for centre in (x_train.double().mean(), 0.0):
            q = (x_query.double() - centre)[:, None]
            k = (x_train.double() - centre)[:, None]
            bias = bias_of(k[:, 0], h)
            out = scaled_dot_product_attention(
                q, k, y_train.double()[:, None], bias=None if bias is None else bias[None, :], scale=scale_of(h)
            )
            yield _as(out[:, 0], x_query), {}

    return variants


def _kernel_sums_underflow(case):
    if "far" not in case.tags:
        return
    x_query, x_train, y_train, h = case.args
    yield kr.nadaraya_watson(x_query, x_train, y_train, h), {}


def _errors(case):
    return heldout_rmse(*case.args).tolist()


def _argmax_variant(case):
    errors = _errors(case)
    yield float(case.args[4][errors.index(max(errors))]), {}


def _index_variant(case):
    errors = _errors(case)
    yield errors.index(min(errors)), {}


def _error_variant(case):
    yield min(_errors(case)), {}


def _training_error_variant(case):
    x_train, y_train, _, _, candidates = case.args
    errors = heldout_rmse(x_train, y_train, x_train, y_train, candidates).tolist()
    yield float(candidates[errors.index(min(errors))]), {}


# ----------------------------------------------------------------------------- bugs

KERNEL_BUGS = [
    Bug(
        "kernel_without_2",
        "the kernel is exp(-(x - x_i)^2 / h^2): the factor 2 of 2 h^2 is missing, so the kernel is narrower than "
        "asked (it is the Gaussian of bandwidth h / sqrt(2)).",
        "K = torch.exp(-(x_query[:, None] - x_train[None, :]) ** 2 / (2 * h * h)).",
        _kernel_variant(lambda d, h: torch.exp(-(d**2) / (h * h))),
    ),
    Bug(
        "bandwidth_not_squared",
        "the squared distance is divided by 2 h instead of 2 h^2: h must be squared, like the distance.",
        "K = torch.exp(-(x_query[:, None] - x_train[None, :]) ** 2 / (2 * h * h)).",
        _kernel_variant(lambda d, h: torch.exp(-(d**2) / (2 * h))),
    ),
    Bug(
        "distance_not_squared",
        "the kernel uses the distance |x - x_i| instead of its square (that is a Laplace kernel, not a Gaussian).",
        "square the differences: (x_query[:, None] - x_train[None, :]) ** 2.",
        _kernel_variant(lambda d, h: torch.exp(-d.abs() / (2 * h * h))),
    ),
    Bug(
        "not_normalised",
        "the kernel-weighted sum of the targets is not divided by the sum of the kernel values, so the weights of a "
        "query do not add up to 1.",
        "return (K @ y_train) / K.sum(dim=1): each query's own kernel sum.",
        _not_normalised,
    ),
    Bug(
        "normalised_over_queries",
        "the kernel values are divided by their sum over the queries (dim=0) instead of over the training samples "
        "(dim=1): the weights of a query must add up to 1 across the samples.",
        "K has shape (M, N), one row per query: divide by K.sum(dim=1, keepdim=True).",
        _normalised_over_queries,
    ),
]

ATTENTION_BUGS = [
    Bug(
        "kernel_sums_underflow",
        "your estimate is NaN for a query far from every sample: there every kernel value exp(-d^2 / 2h^2) underflows "
        "to 0 and kernel sums give 0 / 0. Attention's softmax subtracts each row's largest logit before exp, so it "
        "returns the nearest sample's value there.",
        "compute the estimate with one call to minattn.scaled_dot_product_attention (logits q.k / h^2 plus the key "
        "bias), not with exp and sums.",
        _kernel_sums_underflow,
    ),
    Bug(
        "no_key_bias",
        "the key term -||k||^2 / 2h^2 is missing: without it keys far from the origin get large dot products and win "
        "whatever their distance to the query.",
        "pass bias = -(k ** 2).sum(-1)[None, :] / (2 * h * h), shape (1, N), one number per key.",
        _attention_variant(lambda h: 1.0 / (h * h), lambda k, h: None),
    ),
    Bug(
        "bias_sign",
        "the key bias has the wrong sign: it is -||k||^2 / 2h^2, from -||q - k||^2 = 2 q.k - ||q||^2 - ||k||^2.",
        "bias = -(k ** 2).sum(-1)[None, :] / (2 * h * h).",
        _attention_variant(lambda h: 1.0 / (h * h), lambda k, h: k**2 / (2 * h * h)),
    ),
    Bug(
        "bias_not_halved",
        "the key bias is -||k||^2 / h^2; divided by 2h^2 like the other terms it is -||k||^2 / (2 h^2).",
        "bias = -(k ** 2).sum(-1)[None, :] / (2 * h * h).",
        _attention_variant(lambda h: 1.0 / (h * h), lambda k, h: -(k**2) / (h * h)),
    ),
    Bug(
        "dot_scale_halved",
        "the dot product is scaled by 1 / 2h^2; the expansion has 2 q.k, and 2 q.k / 2h^2 = q.k / h^2.",
        "scale = 1 / h**2.",
        _attention_variant(lambda h: 1.0 / (2 * h * h), lambda k, h: -(k**2) / (2 * h * h)),
    ),
    Bug(
        "default_scale",
        "the dot product is scaled by the default 1 / sqrt(d_k) = 1 (d_k = 1 here) instead of 1 / h^2: the bandwidth "
        "must set the scale.",
        "pass scale=1 / h**2 to scaled_dot_product_attention.",
        _attention_variant(lambda h: None, lambda k, h: -(k**2) / (2 * h * h)),
    ),
]

BANDWIDTH_BUGS = [
    Bug(
        "largest_error",
        "your function returns the candidate with the LARGEST held-out error.",
        "pick the index of the smallest RMSE: errors.index(min(errors)) or torch.tensor(errors).argmin().",
        _argmax_variant,
    ),
    Bug(
        "returned_index",
        "your function returns the position of the best candidate in the list, not the bandwidth itself.",
        "return candidates[best_index].",
        _index_variant,
    ),
    Bug(
        "returned_error",
        "your function returns the smallest held-out RMSE, not the bandwidth that gives it.",
        "remember which candidate gave each error and return that candidate.",
        _error_variant,
    ),
    Bug(
        "scored_on_training_data",
        "the errors were measured on the training samples themselves: there the smallest bandwidth always wins, "
        "because each sample predicts itself.",
        "fit on (x_train, y_train), predict at x_val and compare with y_val.",
        _training_error_variant,
    ),
]

# ----------------------------------------------------------------------------- ruled out

KR_ESTIMATORS = RuledOut(
    "minattn.apps.kernel_regression's estimators (nadaraya_watson, nadaraya_watson_attention, "
    "nadaraya_watson_weights, softmax_weights, gaussian_kernel)",
    (
        kr.nadaraya_watson,
        kr.nadaraya_watson_attention,
        kr.nadaraya_watson_weights,
        kr.softmax_weights,
        kr.gaussian_kernel,
    ),
)
SDPA = RuledOut(
    "minattn.scaled_dot_product_attention / torch.nn.functional.scaled_dot_product_attention",
    (scaled_dot_product_attention, F.scaled_dot_product_attention),
)
KR_SELECTION = RuledOut(
    "minattn.apps.kernel_regression's bandwidth helpers (heldout_errors, leave_one_out_errors, best_bandwidth)",
    (kr.heldout_errors, kr.leave_one_out_errors, kr.best_bandwidth),
)

# ----------------------------------------------------------------------------- the weight by hand


def _hand_weights(logits) -> list[float]:
    e = [math.exp(v) for v in logits]
    return [v / sum(e) for v in e]


_HAND_X, _HAND_Q = (0.0, 1.0, 3.0), 1.5


def _weight_by_hand() -> float:
    weights = kr.nadaraya_watson_weights(torch.tensor([_HAND_Q], dtype=F64), torch.tensor(_HAND_X, dtype=F64), 1.0)
    return float(weights[0, 1])


# ----------------------------------------------------------------------------- concept questions of lesson 12

CONCEPT_EXERCISES = [
    ChoiceExercise(
        "concept_bandwidth_limits",
        "the Nadaraya-Watson estimate f(x) at the two extremes of the bandwidth (two are right)",
        {
            "a": "as h → 0, f(x) tends to the target yᵢ of the training input nearest to x",
            "b": "as h → ∞, f(x) tends to the mean of all training targets, the same at every x",
            "c": "as h → 0, f(x) tends to 0, because every kernel value K(x, xᵢ) tends to 0",
            "d": "as h → ∞, f(x) tends to the straight line that fits the samples best (least squares)",
        },
        frozenset({"a", "b"}),
        why={
            "c": "the kernel values do shrink, but the estimate divides by their sum: the weights always add up to "
            "1, so what matters is how the kernel values compare with each other, not how small they are.",
            "d": "whatever h is, f(x) is a weighted average of the targets yᵢ with weights that add up to 1; a "
            "fitted line is what local-linear regression gives, a different estimator.",
        },
    ),
    ChoiceExercise(
        "concept_kernel_factors_cancel",
        "which factors of K(x, xᵢ) make no difference to the Nadaraya-Watson weights (two are right)",
        {
            "a": "the Gaussian's normalising constant 1 / (h √(2π))",
            "b": "exp(-x² / 2h²), where x is the query point",
            "c": "exp(x xᵢ / h²)",
            "d": "exp(-xᵢ² / 2h²), where xᵢ is the training input",
        },
        frozenset({"a", "b"}),
        why={
            "c": "this factor changes from one training sample to the next, so it changes how the weight is shared "
            "out: it is the dot-product part of the logit, the part attention computes with scale = 1 / h².",
            "d": "this factor changes from one training sample to the next, so it reweights the samples: far from "
            "the origin it is small. In the attention route it becomes the per-key bias.",
        },
    ),
    ChoiceExercise(
        "concept_bandwidth_temperature",
        "the factor by which the softmax temperature is multiplied when the bandwidth h is doubled",
        {
            "a": "2: the temperature grows in proportion to h",
            "b": "4: the temperature grows with the square of h",
            "c": "1/4: a wider kernel makes the softmax colder",
            "d": "1: the bandwidth changes the kernel, not the temperature of the softmax",
        },
        "b",
        why={
            "a": "the temperature is what the squared distances are divided by in the logits; write that divisor "
            "out with h, then with 2h.",
            "c": "a wider kernel spreads the weight over more samples, and spreading the weight is what a hotter "
            "softmax does, not a colder one.",
            "d": "the kernel weights are a softmax of -(x - xᵢ)² / 2h²: the bandwidth sits in the divisor of the "
            "logits, and that divisor is the temperature.",
        },
    ),
    ChoiceExercise(
        "concept_bandwidth_by_training_error",
        "which candidate h wins if each one is scored by predicting the training samples themselves",
        {
            "a": "the smallest candidate: as h shrinks, each training sample's weight goes to itself, and the "
            "error falls towards 0 while the fit copies the noise",
            "b": "about the same h as the held-out choice (1.5 mm), since both errors are measured along the same "
            "CT profile",
            "c": "the largest candidate, because more smoothing always lowers the error on the data the fit was "
            "made from",
            "d": "none: the weights always add up to 1, so the training error is the same for every h",
        },
        "a",
        why={
            "b": "the two errors are not alike: here each training sample is scored against an estimate that it "
            "takes part in itself, and how much it takes part depends on h.",
            "c": "smoothing averages each sample with its neighbours; on the lesson's held-out curve the largest "
            "bandwidths give the largest errors, and averaging a noisy sample with others does not bring the "
            "estimate closer to that same noisy sample.",
            "d": "adding up to 1 fixes the total weight, not where it goes; the estimate changes a lot with h, "
            "and so does its error.",
        },
    ),
]


EXERCISES = [
    ValueExercise(
        "nw_weight_by_hand",
        "Nadaraya-Watson weight on the sample at 1 mm (samples at 0, 1, 3 mm, query at 1.5 mm, h = 1 mm)",
        _weight_by_hand,
        unit=None,
        rel_tol=1e-3,
        wrong=(
            WrongAnswer(
                "kernel_not_normalised",
                lambda: math.exp(-((_HAND_Q - 1.0) ** 2) / 2),
                "that is the kernel value K(1.5, 1) alone; the weight divides it by the sum of all three kernel "
                "values.",
            ),
            WrongAnswer(
                "kernel_without_2",
                lambda: _hand_weights([-((_HAND_Q - x) ** 2) for x in _HAND_X])[1],
                "the logits were -(x - x_i)^2 / h^2; the Gaussian kernel divides by 2 h^2.",
            ),
            WrongAnswer(
                "distance_not_squared",
                lambda: _hand_weights([-abs(_HAND_Q - x) / 2 for x in _HAND_X])[1],
                "the distance was not squared: the logits are -(x - x_i)^2 / 2h^2.",
            ),
            WrongAnswer(
                "other_sample",
                lambda: _hand_weights([-((_HAND_Q - x) ** 2) / 2 for x in _HAND_X])[0],
                "that is the weight of the sample at 0 mm (or at 3 mm, the same distance away); the question asks "
                "for the one at 1 mm.",
            ),
        ),
    ),
    FunctionExercise(
        "nw_kernel_sum",
        nw_kernel_sum,
        nw_kernel_sum_cases,
        "tensor",
        "nw_kernel_sum(x_query, x_train, y_train, h) -> (M,)",
        bugs=tuple(KERNEL_BUGS),
        ruled_out=(KR_ESTIMATORS, SDPA),
        building_blocks="broadcast differences, torch.exp and sums (or a matrix product)",
    ),
    FunctionExercise(
        "nw_attention",
        nw_attention,
        nw_attention_cases,
        "tensor",
        "nw_attention(x_query, x_train, y_train, h) -> (M,)",
        bugs=tuple(ATTENTION_BUGS + KERNEL_BUGS),
        ruled_out=(KR_ESTIMATORS,),
        building_blocks="one call to minattn.scaled_dot_product_attention with your own scale and key bias",
    ),
    FunctionExercise(
        "best_bandwidth",
        best_bandwidth,
        best_bandwidth_cases,
        "number",
        "best_bandwidth(x_train, y_train, x_val, y_val, candidates) -> float",
        bugs=tuple(BANDWIDTH_BUGS),
        ruled_out=(KR_SELECTION,),
        unit=None,
        building_blocks="your nw_attention (or nw_kernel_sum), a loop over the candidates and the RMSE",
    ),
    *CONCEPT_EXERCISES,
]
