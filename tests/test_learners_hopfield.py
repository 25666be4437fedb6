"""Learners' answers to the Hopfield exercises (exercises 13), right and wrong, with the verdict each must get."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from learners import Attempt, assert_verdict

import minattn
from minattn.apps import hopfield as hf
from minattn.grading.topics import hopfield as topic

# ----------------------------------------------------------------------------- 13.1 the Boltzmann probability

E = (-1.0, 0.0, 0.5)

# ----------------------------------------------------------------------------- 13.2 the update


def update_softmax(state, patterns, beta):
    return minattn.softmax(beta * state @ patterns.T, dim=-1) @ patterns


def update_einsum(state, patterns, beta):
    logits = beta * torch.einsum("md,nd->mn", state, patterns)
    e = torch.exp(logits - logits.amax(dim=-1, keepdim=True))
    return torch.einsum("mn,nd->md", e / e.sum(dim=-1, keepdim=True), patterns)


def update_float64_loop(state, patterns, beta):
    rows = []
    for xi in state.double():
        z = beta * (patterns.double() @ xi)
        w = torch.exp(z - z.max())
        rows.append(patterns.double().T @ (w / w.sum()))
    return torch.stack(rows).to(state.dtype)


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def update_unit_patterns(state, patterns, beta):
    return minattn.softmax(beta * state @ unit(patterns).T, dim=-1) @ patterns


def update_unit_state(state, patterns, beta):
    return minattn.softmax(beta * unit(state) @ patterns.T, dim=-1) @ patterns


def update_cosine(state, patterns, beta):
    return minattn.softmax(beta * unit(state) @ unit(patterns).T, dim=-1) @ unit(patterns)


def update_no_beta(state, patterns, beta):
    return minattn.softmax(state @ patterns.T, dim=-1) @ patterns


def update_default_scale(state, patterns, beta):
    return minattn.softmax(state @ patterns.T / math.sqrt(state.shape[-1]), dim=-1) @ patterns


def update_energy_sign(state, patterns, beta):
    return minattn.softmax(-beta * state @ patterns.T, dim=-1) @ patterns


def update_naive_exp(state, patterns, beta):
    e = torch.exp(beta * state @ patterns.T)
    return e / e.sum(dim=-1, keepdim=True) @ patterns


def update_weights_only(state, patterns, beta):
    return minattn.softmax(beta * state @ patterns.T, dim=-1)


# ----------------------------------------------------------------------------- 13.3 the energy


def energy_logsumexp(state, patterns, beta):
    n = patterns.shape[0]
    big_m = patterns.norm(dim=1).max()
    lse = torch.logsumexp(beta * state @ patterns.T, dim=-1) / beta
    return -lse + 0.5 * (state * state).sum(-1) + math.log(n) / beta + 0.5 * big_m**2


def energy_numpy(state, patterns, beta):
    s, x = state.detach().cpu().double().numpy(), patterns.detach().cpu().double().numpy()
    z = beta * s @ x.T
    top = z.max(axis=1, keepdims=True)
    lse = (top[:, 0] + np.log(np.exp(z - top).sum(axis=1))) / beta
    big_m = np.linalg.norm(x, axis=1).max()
    out = -lse + 0.5 * (s * s).sum(1) + np.log(len(x)) / beta + 0.5 * big_m**2
    return torch.from_numpy(out).to(state)


def energy_loop_float64(state, patterns, beta):
    x = patterns.double()
    big_m = float(x.norm(dim=1).max())
    values = []
    for xi in state.double():
        lse = float(torch.logsumexp(beta * (x @ xi), dim=0)) / beta
        values.append(-lse + 0.5 * float(xi @ xi) + math.log(len(x)) / beta + 0.5 * big_m**2)
    return torch.tensor(values, dtype=state.dtype, device=state.device)


def energy_lse_not_over_beta(state, patterns, beta):
    lse = torch.logsumexp(beta * state @ patterns.T, dim=-1)
    return (
        -lse
        + 0.5 * (state * state).sum(-1)
        + math.log(patterns.shape[0]) / beta
        + 0.5 * patterns.norm(dim=1).max() ** 2
    )


def energy_mean_norm(state, patterns, beta):
    lse = torch.logsumexp(beta * state @ patterns.T, dim=-1) / beta
    return (
        -lse
        + 0.5 * (state * state).sum(-1)
        + math.log(patterns.shape[0]) / beta
        + 0.5 * patterns.norm(dim=1).mean() ** 2
    )


def energy_no_log_n(state, patterns, beta):
    lse = torch.logsumexp(beta * state @ patterns.T, dim=-1) / beta
    return -lse + 0.5 * (state * state).sum(-1) + 0.5 * patterns.norm(dim=1).max() ** 2


def energy_no_halves(state, patterns, beta):
    lse = torch.logsumexp(beta * state @ patterns.T, dim=-1) / beta
    return -lse + (state * state).sum(-1) + math.log(patterns.shape[0]) / beta + patterns.norm(dim=1).max() ** 2


def energy_naive(state, patterns, beta):
    lse = torch.log(torch.exp(beta * state @ patterns.T).sum(-1)) / beta
    return (
        -lse
        + 0.5 * (state * state).sum(-1)
        + math.log(patterns.shape[0]) / beta
        + 0.5 * patterns.norm(dim=1).max() ** 2
    )


def energy_unit_patterns(state, patterns, beta):
    return energy_logsumexp(state, unit(patterns), beta)


def energy_total(state, patterns, beta):
    return energy_logsumexp(state, patterns, beta).sum()


# ----------------------------------------------------------------------------- 13.4 retrieval


def closest_fraction(state, patterns, targets):
    return float(((state @ patterns.T).argmax(dim=-1) == targets).float().mean())


def retrieved_own_update(patterns, queries, targets, beta, steps):
    state = queries
    for _ in range(steps):
        state = update_softmax(state, patterns, beta)
    return closest_fraction(state, patterns, targets)


def retrieved_attention(patterns, queries, targets, beta, steps):
    state = queries
    for _ in range(steps):
        state = minattn.scaled_dot_product_attention(state, patterns, patterns, scale=beta)
    return (state @ patterns.T).argmax(-1).eq(targets).double().mean()  # a 0-dim tensor


def retrieved_numpy(patterns, queries, targets, beta, steps):
    x, s, t = (a.detach().cpu().double().numpy() for a in (patterns, queries, targets))
    for _ in range(steps):
        z = beta * s @ x.T
        w = np.exp(z - z.max(axis=1, keepdims=True))
        s = (w / w.sum(axis=1, keepdims=True)) @ x
    return float(np.mean((s @ x.T).argmax(axis=1) == t))


def retrieved_not_updated(patterns, queries, targets, beta, steps):
    return closest_fraction(queries, patterns, targets)


def retrieved_default_scale(patterns, queries, targets, beta, steps):
    state = queries
    for _ in range(steps):
        state = minattn.scaled_dot_product_attention(state, patterns, patterns)  # scale forgotten: 1 / sqrt(d)
    return closest_fraction(state, patterns, targets)


def retrieved_cosine(patterns, queries, targets, beta, steps):
    state = queries
    for _ in range(steps):
        state = update_softmax(state, patterns, beta)
    return closest_fraction(unit(state), unit(patterns), targets)


def retrieved_count(patterns, queries, targets, beta, steps):
    state = queries
    for _ in range(steps):
        state = update_softmax(state, patterns, beta)
    return int(((state @ patterns.T).argmax(dim=-1) == targets).sum())


def retrieved_percent(patterns, queries, targets, beta, steps):
    return 100 * retrieved_own_update(patterns, queries, targets, beta, steps)


def retrieved_by_package(patterns, queries, targets, beta, steps):
    return closest_fraction(hf.retrieve(queries, patterns, beta, max_steps=steps, tol=-1.0).state, patterns, targets)


def retrieved_package_update(patterns, queries, targets, beta, steps):
    state = queries
    for _ in range(steps):
        state = hf.hopfield_update(state, patterns, beta)
    return closest_fraction(state, patterns, targets)


ATTEMPTS = [
    # 13.1
    Attempt("boltzmann_ground_state", "formula", math.exp(2) / (math.exp(2) + 1 + math.exp(-1)), "right"),
    Attempt(
        "boltzmann_ground_state",
        "torch.softmax(-beta E), float32",
        float(torch.softmax(-2 * torch.tensor(E), 0)[0]),
        "right",
    ),
    Attempt(
        "boltzmann_ground_state", "numpy", float(np.exp(-2 * np.array(E))[0] / np.exp(-2 * np.array(E)).sum()), "right"
    ),
    Attempt(
        "boltzmann_ground_state",
        "exp(+beta E)",
        math.exp(-2) / (math.exp(-2) + 1 + math.exp(1)),
        "bug",
        names="sign_flipped",
    ),
    Attempt(
        "boltzmann_ground_state",
        "beta left out",
        math.exp(1) / (math.exp(1) + 1 + math.exp(-0.5)),
        "bug",
        names="beta_ignored",
    ),
    Attempt("boltzmann_ground_state", "not divided by Z", math.exp(2), "bug", names="not_normalised"),
    Attempt(
        "boltzmann_ground_state",
        "the highest state's probability",
        math.exp(-1) / (math.exp(2) + 1 + math.exp(-1)),
        "bug",
        names="other_state",
    ),
    Attempt("boltzmann_ground_state", "a guess", 0.9, "hard-coded"),
    # 13.2
    Attempt("hopfield_update", "minattn.softmax and matmul", update_softmax, "right"),
    Attempt("hopfield_update", "einsum with its own stable softmax", update_einsum, "right"),
    Attempt("hopfield_update", "a loop over states in float64", update_float64_loop, "right"),
    Attempt(
        "hopfield_update", "unit-norm patterns in the logits", update_unit_patterns, "bug", names="normalised_patterns"
    ),
    Attempt("hopfield_update", "unit-norm state", update_unit_state, "bug", names="normalised_state"),
    Attempt("hopfield_update", "cosine similarity", update_cosine, "bug", names="cosine_similarity"),
    Attempt("hopfield_update", "beta forgotten", update_no_beta, "bug", names="beta_ignored"),
    Attempt("hopfield_update", "1 / sqrt(d) instead of beta", update_default_scale, "bug", names="default_scale"),
    Attempt("hopfield_update", "softmax of the energies", update_energy_sign, "bug", names="energy_sign"),
    Attempt("hopfield_update", "exp without subtracting the max", update_naive_exp, "bug", names="softmax_overflow"),
    Attempt("hopfield_update", "returns the weights", update_weights_only, "bug", names="returned_weights"),
    Attempt(
        "hopfield_update",
        "the package's hopfield_update",
        hf.hopfield_update,
        "shortcut",
        "ruled_out",
        "hopfield_update",
    ),
    Attempt(
        "hopfield_update",
        "minattn.scaled_dot_product_attention",
        lambda s, x, b: minattn.scaled_dot_product_attention(s, x, x, scale=b),
        "shortcut",
        "ruled_out",
        "scaled_dot_product_attention",
    ),
    Attempt(
        "hopfield_update",
        "torch's scaled_dot_product_attention",
        lambda s, x, b: F.scaled_dot_product_attention(s, x, x, scale=b),
        "shortcut",
        "ruled_out",
    ),
    Attempt("hopfield_update", "returns the state unchanged", lambda s, x, b: s.clone(), "hard-coded"),
    # 13.3
    Attempt("hopfield_energy", "torch.logsumexp", energy_logsumexp, "right"),
    Attempt("hopfield_energy", "numpy with the max subtracted", energy_numpy, "right"),
    Attempt("hopfield_energy", "a loop over states in float64", energy_loop_float64, "right"),
    Attempt("hopfield_energy", "lse not divided by beta", energy_lse_not_over_beta, "bug", names="lse_not_over_beta"),
    Attempt("hopfield_energy", "M as the mean norm", energy_mean_norm, "bug", names="wrong_M"),
    Attempt("hopfield_energy", "log(N) / beta left out", energy_no_log_n, "bug", names="log_n_term"),
    Attempt("hopfield_energy", "no halves", energy_no_halves, "bug", names="half_missing"),
    Attempt("hopfield_energy", "log(sum(exp))", energy_naive, "bug", names="lse_overflow"),
    Attempt("hopfield_energy", "unit-norm patterns", energy_unit_patterns, "bug", names="normalised_patterns"),
    Attempt("hopfield_energy", "one number for all states", energy_total, "bug", names="summed_over_states"),
    Attempt(
        "hopfield_energy",
        "the package's hopfield_energy",
        hf.hopfield_energy,
        "shortcut",
        "ruled_out",
        "hopfield_energy",
    ),
    Attempt(
        "hopfield_energy",
        "zeros",
        lambda s, x, b: torch.zeros(s.shape[0], dtype=s.dtype, device=s.device),
        "hard-coded",
    ),
    # 13.4
    Attempt("fraction_retrieved", "its own update in a loop", retrieved_own_update, "right"),
    Attempt("fraction_retrieved", "minattn attention with scale=beta, a 0-dim tensor", retrieved_attention, "right"),
    Attempt("fraction_retrieved", "numpy", retrieved_numpy, "right"),
    Attempt("fraction_retrieved", "no update", retrieved_not_updated, "bug", names="not_updated"),
    Attempt("fraction_retrieved", "attention's default scale", retrieved_default_scale, "bug", names="default_scale"),
    Attempt("fraction_retrieved", "closest by cosine", retrieved_cosine, "bug", names="closest_by_cosine"),
    Attempt("fraction_retrieved", "a count", retrieved_count, "bug", names="count_not_fraction"),
    Attempt("fraction_retrieved", "a percentage", retrieved_percent, "bug", names="percent"),
    Attempt("fraction_retrieved", "the lesson's 62 / 64 typed in", lambda *args: 62 / 64, "hard-coded"),
    Attempt("fraction_retrieved", "the package's retrieve", retrieved_by_package, "shortcut", "ruled_out", "retrieve"),
    Attempt(
        "fraction_retrieved",
        "the package's hopfield_update",
        retrieved_package_update,
        "shortcut",
        "ruled_out",
        "hopfield_update",
    ),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)


def test_retrieval_reference_matches_the_package():
    """The grader's NumPy retrieval equals minattn's hopfield_update repeated, on every hidden case."""
    for case in topic.fraction_retrieved_cases(torch.device("cpu")):
        patterns, queries, targets, beta, steps = case.args
        state = queries.double()
        for _ in range(steps):
            state = hf.hopfield_update(state, patterns.double(), beta)
        package = float(((state @ patterns.double().T).argmax(-1) == targets).double().mean())
        assert topic.fraction_retrieved(*case.args) == package
        assert 0 < package < 1  # a typed-in 0 or 1 fails every case


def test_patterns_have_unequal_non_unit_norms():
    """Normalising a pattern must change the answer: no hidden pattern set has all norms equal or 1."""
    for cases in (topic.hopfield_update_cases, topic.hopfield_energy_cases, topic.fraction_retrieved_cases):
        for case in cases(torch.device("cpu")):
            patterns = case.args[1] if cases is not topic.fraction_retrieved_cases else case.args[0]
            norms = patterns.double().norm(dim=1)
            assert float(norms.max() - norms.min()) > 0.3 and not torch.isclose(norms, torch.ones_like(norms)).any()
        betas = {
            case.args[-1] if cases is not topic.fraction_retrieved_cases else case.args[3]
            for case in cases(torch.device("cpu"))
        }
        assert not betas & {1, 4}
