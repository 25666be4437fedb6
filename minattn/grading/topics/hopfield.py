"""Boltzmann weights and modern Hopfield networks (lesson 13).

Function exercises: ``hopfield_update`` (one update, a batch of states),
``hopfield_energy`` (Ramsauer et al.'s energy of each state) and
``fraction_retrieved`` (update a batch of queries a number of times, then count
the states closest to their own pattern). Value exercise: ``boltzmann_ground_state``
(a probability worked out by hand). Concept questions (:data:`CONCEPT_EXERCISES`):
the limits of beta for a Boltzmann distribution and for the update, metastable
states, why convergence is slowest near the transition, and where a transformer's
default scale sits on the beta axis.

Hidden stored patterns have unequal, non-unit norms, so an update that
normalises the patterns or the state (a cosine instead of a dot product) is
caught and named; the inverse temperatures are neither 1 nor 4; the numbers of
states M, patterns N and dimensions d all differ; float32 and float64. One
float32 case has logits of about 150, where exp overflows unless the largest
logit is subtracted first (softmax) or logsumexp is used (energy).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...apps import hopfield as hf
from ...attention import scaled_dot_product_attention
from ...softmax import softmax
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
    graders_own,
)

# ----------------------------------------------------------------------------- references


def hopfield_update(state, patterns, beta):
    """``softmax(beta state X^T) X``: ``(B, d), (N, d) -> (B, d)``, one state per row."""
    return hf.hopfield_update(state, patterns, beta)


def hopfield_energy(state, patterns, beta):
    """Ramsauer et al.'s energy of each state: ``(B, d), (N, d) -> (B,)``."""
    return hf.hopfield_energy(state, patterns, beta)


def fraction_retrieved(patterns, queries, targets, beta, steps):
    """Fraction of queries whose state after ``steps`` updates has the largest dot product with its own pattern.

    Computed in float64 NumPy (see :func:`_retrieval`); the tests check it against
    :func:`minattn.apps.hopfield.hopfield_update` repeated ``steps`` times.
    """
    return _retrieval(patterns, queries, targets, beta, steps)


# ----------------------------------------------------------------------------- cases


def _on(t, dtype, device):
    return t.to(device=device, dtype=case_dtype(dtype, device))


def _patterns(g, n, d, norms, dtype, device):
    """``n`` random directions in ``d`` dimensions with the given (unequal, non-unit) norms."""
    x = torch.randn(n, d, generator=g, dtype=F64)
    x = x / x.norm(dim=1, keepdim=True) * torch.as_tensor(norms, dtype=F64)[:, None]
    return _on(x, dtype, device)


def _norms(g, n, low, high):
    return (low + (high - low) * torch.rand(n, generator=g, dtype=F64)).tolist()


def _states(g, m, d, scale, dtype, device):
    return _on(torch.randn(m, d, generator=g, dtype=F64) * scale, dtype, device)


def _describe_norms(patterns) -> str:
    norms = patterns.double().norm(dim=1)
    return f"norms {float(norms.min()):.2f} to {float(norms.max()):.2f}"


def _update_cases(device, seed):
    g = torch.Generator().manual_seed(seed)
    fixed = _on(
        torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.5, 0.0, 0.5], [-1.5, 1.5, 0.0, 3.0]], dtype=F64), F64, device
    )
    out = [
        Case(
            "2 states, 3 fixed patterns of norms 2.24, 0.71 and 3.67, d = 4 (float64), beta = 1.5",
            (_on(torch.tensor([[0.5, 0.2, 0.4, -0.3], [-0.2, 0.1, 0.3, 0.6]], dtype=F64), F64, device), fixed, 1.5),
        )
    ]
    specs = [
        # (M states, N patterns, d, norm range, state scale, dtype, beta)
        (5, 7, 9, (0.5, 2.5), 0.4, F64, 0.7),
        (6, 4, 11, (0.3, 1.8), 0.5, F32, 2.5),
        (3, 10, 6, (1.0, 3.0), 0.3, F64, 0.3),
        (8, 5, 16, (0.5, 2.0), 0.4, F32, 1.7),
    ]
    for m, n, d, (low, high), scale, dtype, beta in specs:
        patterns = _patterns(g, n, d, _norms(g, n, low, high), dtype, device)
        name = str(dtype).replace("torch.", "")
        out.append(
            Case(
                f"{m} states, {n} patterns of d = {d} ({_describe_norms(patterns)}, {name}), beta = {beta}",
                (_states(g, m, d, scale, dtype, device), patterns, beta),
            )
        )
    patterns = _patterns(g, 6, 10, _norms(g, 6, 1.5, 3.0), F32, device)
    state = _on(patterns.double()[[0, 3, 5, 1]].cpu() * 0.8, F32, device)
    out.append(
        Case(
            f"4 states near stored patterns, 6 patterns of d = 10 ({_describe_norms(patterns)}, float32), beta = 25: "
            "logits up to about 150, where exp overflows in float32",
            (state, patterns, 25.0),
            tags=frozenset({"large"}),
        )
    )
    return out


def hopfield_update_cases(device):
    return _update_cases(device, 13)


def hopfield_energy_cases(device):
    return _update_cases(device, 1313)


_RETRIEVAL_SPECS = (
    # (seed, N patterns, d, norm range, M queries, noise, cluster spread (0: no clusters), beta, steps, dtype);
    # drawn so that every query's closest pattern wins by at least 5% in float32 and float64 alike
    (355, 19, 21, (0.5, 2.0), 16, 0.8, 0.0, 3.5, 1, F64),
    (357, 13, 10, (0.3, 3.0), 8, 1.0, 0.0, 3.5, 3, F32),
    (365, 7, 19, (0.2, 2.5), 32, 0.8, 0.3, 3.5, 1, F32),
    (379, 5, 22, (0.5, 2.0), 16, 0.5, 0.0, 6.0, 7, F64),
)


def _retrieval_data(seed, n, d, norm_range, m, noise, cluster):
    """Patterns of unequal norms (in clusters of similar directions when ``cluster`` > 0) and noisy queries."""
    g = torch.Generator().manual_seed(seed)
    if cluster:
        centres = torch.randn(max(2, n // 3), d, generator=g, dtype=F64)
        which = torch.randint(0, centres.shape[0], (n,), generator=g)
        x = centres[which] + cluster * torch.randn(n, d, generator=g, dtype=F64)
    else:
        x = torch.randn(n, d, generator=g, dtype=F64)
    low, high = norm_range
    norms = low + (high - low) * torch.rand(n, generator=g, dtype=F64)
    x = x / x.norm(dim=1, keepdim=True) * norms[:, None]
    targets = torch.randint(0, n, (m,), generator=g)
    own = x[targets]
    noisy = own + noise * torch.randn(m, d, generator=g, dtype=F64) / math.sqrt(d) * own.norm(dim=1, keepdim=True)
    return x, noisy, targets


def fraction_retrieved_cases(device):
    out = []
    for seed, n, d, norm_range, m, noise, cluster, beta, steps, dtype in _RETRIEVAL_SPECS:
        x, queries, targets = _retrieval_data(seed, n, d, norm_range, m, noise, cluster)
        name = str(dtype).replace("torch.", "")
        out.append(
            Case(
                f"{n} patterns of d = {d} ({_describe_norms(x)}), {m} noisy queries ({name}), beta = {beta}, "
                f"{steps} update{'s' if steps > 1 else ''}",
                (_on(x, dtype, device), _on(queries, dtype, device), targets.to(device), beta, steps),
            )
        )
    return out


# ----------------------------------------------------------------------------- bug variants


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def _update_with(logits_of, values_of=lambda x: x, dim=-1):
    """Variants ``softmax(logits_of(state, patterns, beta), dim) @ values_of(patterns)``, computed in float64."""

    def variants(case):
        state, patterns, beta = case.args
        s, x = state.double(), patterns.double()
        weights = softmax(logits_of(s, x, float(beta)), dim=dim)
        yield (weights @ values_of(x)).to(state.dtype), {}

    return variants


def _normalised_patterns(case):
    state, patterns, beta = case.args
    s, x = state.double(), patterns.double()
    for values in (x, _unit(x)):
        yield (softmax(float(beta) * s @ _unit(x).T, dim=-1) @ values).to(state.dtype), {}


def _cosine(case):
    state, patterns, beta = case.args
    s, x = state.double(), patterns.double()
    for values in (x, _unit(x)):
        yield (softmax(float(beta) * _unit(s) @ _unit(x).T, dim=-1) @ values).to(state.dtype), {}


def _returned_weights(case):
    state, patterns, beta = case.args
    yield softmax(float(beta) * state.double() @ patterns.double().T, dim=-1).to(state.dtype), {}


def _naive_update(case):
    if "large" not in case.tags:
        return
    state, patterns, beta = case.args
    e = torch.exp(beta * state @ patterns.T)  # in the case's dtype: overflows in float32
    yield (e / e.sum(dim=-1, keepdim=True)) @ patterns, {}


def _energy_parts(state, patterns, beta):
    s, x = state.double(), patterns.double()
    z = float(beta) * s @ x.T
    return s, x, float(beta), z, x.shape[0], float(x.norm(dim=1).max())


def _energy_variant(formula):
    """A wrong energy ``formula(lse (= log-sum-exp of beta z), beta, xi.xi, N, M, state, patterns)``, in float64."""

    def variants(case):
        s, x, beta, z, n, big_m = _energy_parts(*case.args)
        lse = torch.logsumexp(z, dim=-1)
        out = formula(lse, beta, (s * s).sum(-1), n, big_m, s, x)
        yield (out if isinstance(out, torch.Tensor) else torch.as_tensor(out)).to(case.args[0].dtype), {}

    return variants


def _energy(lse, beta, sq, n, big_m):
    return -lse / beta + 0.5 * sq + math.log(n) / beta + 0.5 * big_m**2


def _wrong_m(case):
    s, x, beta, z, n, _ = _energy_parts(*case.args)
    lse, sq = torch.logsumexp(z, dim=-1), (s * s).sum(-1)
    dtype = case.args[0].dtype
    for big_m in (x.norm(dim=1).mean(), x.abs().max(), s.norm(dim=1).max(), x.norm(dim=1).min()):
        yield _energy(lse, beta, sq, n, float(big_m)).to(dtype), {}
    yield _energy(lse, beta, sq, n, 1.0).to(dtype), {}  # M = 1, as if the patterns had unit norm


def _normalised_energy(case):
    state, patterns, beta = case.args
    for s in (state.double(), _unit(state.double())):
        yield hf.hopfield_energy(s, _unit(patterns.double()), beta).to(state.dtype), {}


def _naive_energy(case):
    if "large" not in case.tags:
        return
    state, patterns, beta = case.args
    n = patterns.shape[0]
    big_m = patterns.norm(dim=1).max()
    lse = torch.log(torch.exp(beta * state @ patterns.T).sum(-1)) / beta  # in the case's dtype: overflows in float32
    yield -lse + 0.5 * (state * state).sum(-1) + math.log(n) / beta + 0.5 * big_m**2, {}


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)


def _retrieval(patterns, queries, targets, beta, steps, *, scale=None, closest_by="dot", result="fraction"):
    """Retrieval in float64 NumPy: tiny arrays, so it costs microseconds however busy torch's thread pool is."""
    x, state, targets = _numpy(patterns), _numpy(queries), _numpy(targets).astype(np.int64)
    scale = float(beta) if scale is None else scale
    for _ in range(int(steps)):
        logits = scale * state @ x.T  # (M, N)
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        state = (e / e.sum(axis=-1, keepdims=True)) @ x  # (M, d)
    if closest_by == "dot":
        closest = (state @ x.T).argmax(axis=-1)
    elif closest_by == "cosine":
        unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
        closest = (unit(state) @ unit(x).T).argmax(axis=-1)
    else:
        closest = ((state[:, None, :] - x[None, :, :]) ** 2).sum(-1).argmin(axis=-1)
    hits = int((closest == targets).sum())
    if result == "count":
        return hits
    if result == "percent":
        return 100.0 * hits / len(targets)
    return hits / len(targets)


def _retrieval_variant(**how):
    def variants(case):
        patterns, queries, targets, beta, steps = case.args
        yield _retrieval(patterns, queries, targets, beta, steps, **how), {}

    return variants


def _steps_variant(steps_of):
    def variants(case):
        patterns, queries, targets, beta, steps = case.args
        yield _retrieval(patterns, queries, targets, beta, steps_of(steps)), {}

    return variants


def _default_scale_variant(case):
    patterns, queries, targets, beta, steps = case.args
    yield _retrieval(patterns, queries, targets, beta, steps, scale=1 / math.sqrt(patterns.shape[1])), {}


# ----------------------------------------------------------------------------- bugs

UPDATE_BUGS = [
    Bug(
        "normalised_patterns",
        "the patterns were normalised to unit length before the dot product: the update compares a state with the "
        "stored patterns by their plain dot products beta * xi . x_i, and the patterns here have different lengths.",
        "logits = beta * state @ patterns.T with the patterns as they are; no division by a norm.",
        _normalised_patterns,
    ),
    Bug(
        "normalised_state",
        "the state was normalised to unit length before the dot product; the logits are beta * xi . x_i with the "
        "state as it is (its length acts like a larger beta).",
        "logits = beta * state @ patterns.T, without dividing the state by its norm.",
        _update_with(lambda s, x, b: b * _unit(s) @ x.T),
    ),
    Bug(
        "cosine_similarity",
        "the logits are cosine similarities (state and patterns both normalised); the Hopfield update uses the dot "
        "product, which also weighs each pattern by its length.",
        "logits = beta * state @ patterns.T.",
        _cosine,
    ),
    Bug(
        "beta_ignored",
        "beta was not used: the logits must be multiplied by the inverse temperature beta.",
        "weights = softmax(beta * state @ patterns.T, dim=-1).",
        _update_with(lambda s, x, b: s @ x.T),
    ),
    Bug(
        "divided_by_beta",
        "the logits were divided by beta; beta is an INVERSE temperature, so it multiplies them.",
        "weights = softmax(beta * state @ patterns.T, dim=-1).",
        _update_with(lambda s, x, b: s @ x.T / b),
    ),
    Bug(
        "default_scale",
        "the logits were scaled by 1 / sqrt(d), attention's default, instead of by beta.",
        "multiply the dot products by beta (with scaled_dot_product_attention that would be scale=beta).",
        _update_with(lambda s, x, b: s @ x.T / math.sqrt(x.shape[1])),
    ),
    Bug(
        "energy_sign",
        "the softmax was taken of the energies -beta xi . x_i; Boltzmann weights are softmax(-beta E) = "
        "softmax(+beta xi . x_i), so similar patterns get MORE weight.",
        "weights = softmax(beta * state @ patterns.T, dim=-1).",
        _update_with(lambda s, x, b: -b * s @ x.T),
    ),
    Bug(
        "softmax_over_states",
        "the softmax runs over the states (dim=0); each state's weights must add up to 1 over the stored patterns.",
        "the logits are (B, N): take the softmax along dim=-1.",
        _update_with(lambda s, x, b: b * s @ x.T, dim=0),
    ),
    Bug(
        "returned_weights",
        "your function returns the (B, N) weights over the patterns; the update is the patterns averaged under "
        "those weights, (B, d).",
        "return weights @ patterns.",
        _returned_weights,
    ),
    Bug(
        "softmax_overflow",
        "exp overflowed: with logits of about 150 in float32, exp gives inf and inf / inf is NaN. The largest logit "
        "was not subtracted first.",
        "use minattn.softmax (or subtract logits.amax(dim=-1, keepdim=True) before exp).",
        _naive_update,
    ),
]

ENERGY_BUGS = [
    Bug(
        "lse_not_over_beta",
        "the log-sum-exp term is not divided by beta: it is -(1/beta) log sum_i exp(beta x_i . xi).",
        "lse = torch.logsumexp(beta * state @ patterns.T, dim=-1) / beta.",
        _energy_variant(lambda lse, b, sq, n, m, s, x: -lse + 0.5 * sq + math.log(n) / b + 0.5 * m**2),
    ),
    Bug(
        "lse_sign",
        "the log-sum-exp term has the wrong sign: it enters the energy with a minus, -(1/beta) log sum exp, so "
        "states similar to stored patterns have LOW energy.",
        "E = -lse + xi.xi / 2 + log(N) / beta + M^2 / 2.",
        _energy_variant(lambda lse, b, sq, n, m, s, x: lse / b + 0.5 * sq + math.log(n) / b + 0.5 * m**2),
    ),
    Bug(
        "log_n_term",
        "the constant log(N) / beta is missing or not divided by beta.",
        "add math.log(N) / beta, N = patterns.shape[0] (the number of stored patterns, not the dimension d).",
        lambda case: (
            v
            for formula in (
                lambda lse, b, sq, n, m, s, x: -lse / b + 0.5 * sq + 0.5 * m**2,
                lambda lse, b, sq, n, m, s, x: -lse / b + 0.5 * sq + math.log(n) + 0.5 * m**2,
                lambda lse, b, sq, n, m, s, x: -lse / b + 0.5 * sq + math.log(x.shape[1]) / b + 0.5 * m**2,
            )
            for v in _energy_variant(formula)(case)
        ),
    ),
    Bug(
        "log_of_mean",
        "the log-sum-exp was taken of the MEAN of the exponentials (log of mean = log of sum - log N), so "
        "log(N) / beta "
        "is counted twice.",
        "use the sum: torch.logsumexp(beta * state @ patterns.T, dim=-1) / beta.",
        _energy_variant(lambda lse, b, sq, n, m, s, x: -lse / b + 0.5 * sq + 2 * math.log(n) / b + 0.5 * m**2),
    ),
    Bug(
        "wrong_M",
        "M is not the largest norm of the stored patterns: M = max_i ||x_i||, and the patterns here have different "
        "lengths (none of them 1).",
        "big_m = patterns.norm(dim=1).max(); add big_m ** 2 / 2.",
        _wrong_m,
    ),
    Bug(
        "half_missing",
        "a factor 1/2 is missing: the energy has xi . xi / 2 and M^2 / 2.",
        "0.5 * (state * state).sum(-1) and 0.5 * big_m ** 2.",
        lambda case: (
            v
            for formula in (
                lambda lse, b, sq, n, m, s, x: -lse / b + sq + math.log(n) / b + 0.5 * m**2,
                lambda lse, b, sq, n, m, s, x: -lse / b + 0.5 * sq + math.log(n) / b + m**2,
                lambda lse, b, sq, n, m, s, x: -lse / b + sq + math.log(n) / b + m**2,
            )
            for v in _energy_variant(formula)(case)
        ),
    ),
    Bug(
        "norm_not_squared",
        "the state's length ||xi|| was used where the energy has its square, xi . xi.",
        "0.5 * (state * state).sum(-1), one number per state.",
        _energy_variant(lambda lse, b, sq, n, m, s, x: -lse / b + 0.5 * sq.sqrt() + math.log(n) / b + 0.5 * m**2),
    ),
    Bug(
        "normalised_patterns",
        "the patterns (or the state) were normalised to unit length; the energy uses the plain dot products "
        "x_i . xi and the patterns here have different lengths.",
        "beta * state @ patterns.T with the patterns and the state as they are.",
        _normalised_energy,
    ),
    Bug(
        "summed_over_states",
        "your function returns one number for all the states together; the energy is one number per state, shape (B,).",
        "reduce over the last axis only: .sum(-1), torch.logsumexp(..., dim=-1).",
        lambda case: (
            (v.sum(), d) for v, d in _energy_variant(lambda lse, b, sq, n, m, s, x: _energy(lse, b, sq, n, m))(case)
        ),
    ),
    Bug(
        "lse_overflow",
        "exp overflowed: with beta x_i . xi of about 150 in float32, log(sum(exp(...))) is log(inf) = inf.",
        "use torch.logsumexp(beta * state @ patterns.T, dim=-1), which subtracts the largest term first.",
        _naive_energy,
    ),
]

RETRIEVAL_BUGS = [
    Bug(
        "not_updated",
        "the queries were compared with the patterns without being updated at all.",
        "repeat state = update(state) `steps` times, starting from state = queries, then compare.",
        _steps_variant(lambda steps: 0),
    ),
    Bug(
        "wrong_number_of_updates",
        "the number of updates is off: the states must be updated exactly `steps` times (and each update must start "
        "from the previous state, not from the queries again).",
        "for _ in range(steps): state = update(state).",
        lambda case: (v for f in (lambda s: 1, lambda s: s - 1, lambda s: s + 1) for v in _steps_variant(f)(case)),
    ),
    Bug(
        "default_scale",
        "the updates used attention's default scale 1 / sqrt(d) instead of beta.",
        "pass scale=beta to scaled_dot_product_attention (or use your hopfield_update with beta).",
        _default_scale_variant,
    ),
    Bug(
        "closest_by_cosine",
        "'closest' was measured by cosine similarity; the exercise asks for the largest dot product, and the patterns "
        "here have different lengths.",
        "closest = (state @ patterns.T).argmax(dim=-1).",
        _retrieval_variant(closest_by="cosine"),
    ),
    Bug(
        "closest_by_distance",
        "'closest' was measured by Euclidean distance; the exercise asks for the largest dot product, and the "
        "patterns here have different lengths.",
        "closest = (state @ patterns.T).argmax(dim=-1).",
        _retrieval_variant(closest_by="distance"),
    ),
    Bug(
        "count_not_fraction",
        "your function returns the number of retrieved queries; the exercise asks for the fraction (between 0 and 1).",
        "divide by the number of queries, len(targets).",
        _retrieval_variant(result="count"),
    ),
    Bug(
        "percent",
        "your function returns a percentage; the exercise asks for a fraction between 0 and 1.",
        "do not multiply by 100.",
        _retrieval_variant(result="percent"),
    ),
]

# ----------------------------------------------------------------------------- ruled out

HF_UPDATE = RuledOut(
    "minattn.apps.hopfield's update (hopfield_update, hopfield_update_attention, boltzmann, retrieve, retrieval_sweep)",
    (hf.hopfield_update, hf.hopfield_update_attention, hf.boltzmann, hf.retrieve, hf.retrieval_sweep),
)
SDPA = RuledOut(
    "minattn.scaled_dot_product_attention / torch.nn.functional.scaled_dot_product_attention",
    (scaled_dot_product_attention, F.scaled_dot_product_attention),
)
HF_ENERGY = RuledOut(
    "minattn.apps.hopfield's energy (hopfield_energy, retrieve, retrieval_sweep)",
    (hf.hopfield_energy, hf.retrieve, hf.retrieval_sweep),
)
GRADER_RETRIEVAL = graders_own(fraction_retrieved)
HF_RETRIEVAL = RuledOut(
    "minattn.apps.hopfield's update and retrieval (hopfield_update, hopfield_update_attention, retrieve, "
    "retrieval_sweep)",
    (hf.hopfield_update, hf.hopfield_update_attention, hf.retrieve, hf.retrieval_sweep),
)

# ----------------------------------------------------------------------------- the Boltzmann probability by hand

_ENERGIES, _BETA = (-1.0, 0.0, 0.5), 2.0


def _boltzmann(energies, beta, index=0) -> float:
    return float(hf.boltzmann(torch.tensor(energies, dtype=F64), beta)[index])


# ----------------------------------------------------------------------------- concept questions of lesson 13

CONCEPT_EXERCISES = [
    ChoiceExercise(
        "concept_boltzmann_limits",
        "four states with energies 0, 1, 2 and 4 at the extremes of β (two are right)",
        {
            "a": "as β → ∞, the ground state's probability tends to 1",
            "b": "as β → 0, every state's probability tends to 1/4",
            "c": "as β → 0, the highest-energy state becomes the most likely: a hot system favours high energy",
            "d": "doubling β doubles the ground state's probability",
        },
        frozenset({"a", "b"}),
        why={
            "c": "for every β > 0 the factor exp(-β E) falls as E grows, so a higher energy is never more "
            "likely than a lower one.",
            "d": "β multiplies the logits -E_i, not the probabilities: at β = 1 the ground state already has "
            "0.66, and a probability cannot exceed 1.",
        },
    ),
    ChoiceExercise(
        "concept_hopfield_beta_limits",
        "what one update softmax(β ξ Xᵀ) X returns at the extremes of β",
        {
            "a": "β → ∞: the stored pattern with the largest dot product with ξ; β → 0: the mean "
            "of all stored patterns",
            "b": "β → ∞: the mean of all stored patterns; β → 0: the stored pattern with the largest "
            "dot product with ξ",
            "c": "β → ∞: ξ itself, unchanged; β → 0: the zero vector",
            "d": "β → ∞: the sign of each entry of ξ, as in a classical Hopfield network; β → 0: ξ unchanged",
        },
        "a",
        why={
            "b": "β is an INVERSE temperature: it multiplies the logits, so a large β makes the softmax "
            "colder, not hotter.",
            "c": "the new state is built from the stored patterns alone (the state enters only through the "
            "weights), and the weights of a softmax never all vanish.",
            "d": "that is the update of the classical binary Hopfield network; the modern update replaces the "
            "state by a softmax-weighted combination of the stored patterns.",
        },
    ),
    ChoiceExercise(
        "concept_metastable_state",
        "what the state is that the noisy and the masked query of patch 21 both settle on at β = 8",
        {
            "a": "a fixed point of the update that is a weighted average of a few similar stored patches, an "
            "attractor of its own",
            "b": "a state on its way to patch 21: with more updates it would reach patch 21, as it does at β = 64",
            "c": "the global fixed point: the mean of all 64 stored patches",
            "d": "an accident of the corruption: the two queries happen to have lost the same information",
        },
        "a",
        why={
            "b": "the state has stopped moving (less than 1e-6 per update) and the energy never increases along "
            "the way: more updates leave it where it is.",
            "c": "the weights are far from 1/64 each: a handful of patches carry almost all of them (about 6.7 "
            "patterns averaged).",
            "d": "adding noise and erasing the lower half destroy different information, yet both end in the same "
            "state: it is set by the stored patterns and β, not by the query.",
        },
    ),
    ChoiceExercise(
        "concept_slowest_convergence",
        "why the median number of updates peaks at β = 4 in the lesson's sweep (75, against 9 at β = 1 and "
        "1 at β = 64)",
        {
            "a": "β = 4 lies at the transition from the single global fixed point to the metastable states, "
            "where the energy landscape is flat and the state settles in many small steps",
            "b": "at small β more weights are far from 0, so each update has more of the softmax to compute",
            "c": "there the energy goes up and down, so the state swings between two patterns before it settles",
            "d": "at β = 4 the queries start farther from their stored patterns",
        },
        "a",
        why={
            "b": "every update computes all N weights and the same matrix products whatever β is; the sweep "
            "counts updates, not time.",
            "c": "the update never increases the energy (it is a step of the concave-convex procedure), at any β.",
            "d": "the sweep uses the same corrupted queries at every β: only β changes.",
        },
    ),
    ChoiceExercise(
        "concept_default_scale_beta",
        "the inverse temperature β, on the unit-norm scale, of attention's default scale for a head with d_k = 64 "
        "and unit-variance entries",
        {
            "a": "1/8 (= 1/√d_k)",
            "b": "8 (= √d_k)",
            "c": "64 (= d_k)",
            "d": "16, as in the lesson",
        },
        "b",
        why={
            "a": "that is the scale applied to the raw vectors; on unit-norm vectors β multiplies the cosine, and "
            "the raw dot product is the cosine times both lengths.",
            "c": "that is the product of the two lengths alone; attention then multiplies the dot product by its "
            "scale 1/√d_k.",
            "d": "the lesson's β = 16 was for 16 x 16 patches, d = 256; this head has d_k = 64.",
        },
    ),
]


EXERCISES = [
    ValueExercise(
        "boltzmann_ground_state",
        "probability of the ground state, energies (-1, 0, 0.5) at beta = 2",
        lambda: _boltzmann(_ENERGIES, _BETA),
        unit=None,
        rel_tol=1e-3,
        wrong=(
            WrongAnswer(
                "sign_flipped",
                lambda: float(torch.softmax(_BETA * torch.tensor(_ENERGIES, dtype=F64), 0)[0]),
                "that is exp(+beta E_1) / sum exp(+beta E_j): the exponent is -beta E, so LOW energy is likely.",
            ),
            WrongAnswer(
                "beta_ignored",
                lambda: _boltzmann(_ENERGIES, 1.0),
                "that is the probability at beta = 1: multiply each energy by beta = 2 inside the exponential.",
            ),
            WrongAnswer(
                "not_normalised",
                lambda: math.exp(-_BETA * _ENERGIES[0]),
                "that is exp(-beta E_1) alone; divide it by the sum Z over all three states.",
            ),
            WrongAnswer(
                "other_state",
                lambda: _boltzmann(_ENERGIES, _BETA, 2),
                "that is the probability of the highest-energy state (E = 0.5); the ground state has the lowest "
                "energy, E = -1.",
            ),
        ),
    ),
    FunctionExercise(
        "hopfield_update",
        hopfield_update,
        hopfield_update_cases,
        "tensor",
        "hopfield_update(state, patterns, beta) -> (B, d)",
        bugs=tuple(UPDATE_BUGS),
        ruled_out=(HF_UPDATE, SDPA),
        building_blocks="a matrix product, minattn.softmax and another matrix product",
    ),
    FunctionExercise(
        "hopfield_energy",
        hopfield_energy,
        hopfield_energy_cases,
        "tensor",
        "hopfield_energy(state, patterns, beta) -> (B,)",
        bugs=tuple(ENERGY_BUGS),
        ruled_out=(HF_ENERGY,),
        building_blocks="torch.logsumexp, norms and sums",
    ),
    FunctionExercise(
        "fraction_retrieved",
        fraction_retrieved,
        fraction_retrieved_cases,
        "number",
        "fraction_retrieved(patterns, queries, targets, beta, steps) -> float",
        bugs=tuple(RETRIEVAL_BUGS),
        ruled_out=(HF_RETRIEVAL, GRADER_RETRIEVAL),
        unit=None,
        building_blocks="your hopfield_update (or minattn.scaled_dot_product_attention with scale=beta) in a loop, "
        "then argmax",
    ),
    *CONCEPT_EXERCISES,
]
