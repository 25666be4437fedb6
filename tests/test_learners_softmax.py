"""Learners' answers to the softmax exercises (exercises 02), right and wrong, with the verdict each must get."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from learners import Attempt, assert_verdict

import minattn


def stable(x, dim=-1):
    shifted = x - x.amax(dim=dim, keepdim=True).nan_to_num(neginf=0.0)
    e = shifted.exp()
    total = e.sum(dim=dim, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))


def via_logsumexp(x, dim=-1):
    out = torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))
    return torch.nan_to_num(out, nan=0.0)


def numpy_round_trip(x, dim=-1):
    a = x.detach().cpu().numpy()
    m = np.max(a, axis=dim, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(a - m)
    s = e.sum(axis=dim, keepdims=True)
    return torch.from_numpy(e / np.where(s > 0, s, 1.0)).to(x.device, x.dtype)


def no_max(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def last_axis(x, dim=-1):
    return stable(x, -1)


def no_keepdim(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim)


def in_place(x, dim=-1):
    x -= x.amax(dim=dim, keepdim=True).nan_to_num(neginf=0.0)
    return stable(x, dim)


def fixed_answer(x, dim=-1):
    return torch.full_like(x, 1.0 / x.shape[dim])


def unguarded(x, dim=-1):
    """The textbook stable softmax: NaN for a slice of only -inf."""
    shifted = x - x.amax(dim=dim, keepdim=True)
    e = torch.exp(shifted)
    return e / e.sum(dim=dim, keepdim=True)


def max_guard_only(x, dim=-1):
    """Guards the maximum but still divides 0 by 0 on a slice of only -inf."""
    m = x.amax(dim=dim, keepdim=True)
    e = torch.exp(x - torch.where(torch.isfinite(m), m, torch.zeros_like(m)))
    return e / e.sum(dim=dim, keepdim=True)


def clamped(x, dim=-1):
    """Replaces -inf by the most negative finite number: a slice of only -inf becomes uniform."""
    return stable(x.clamp(min=torch.finfo(x.dtype).min), dim)


def float64_inside(x, dim=-1):
    y = x.double()
    m = y.amax(dim=dim, keepdim=True)
    e = (y - m.masked_fill(m == -math.inf, 0.0)).exp()
    return (e / e.sum(dim=dim, keepdim=True).clamp_min(1e-300)).to(x.dtype)


SOFTMAX = [
    Attempt("softmax", "max subtracted, guarded sum", stable, "right"),
    Attempt("softmax", "float64 inside, clamped sum", float64_inside, "right"),
    Attempt("softmax", "exp(x - logsumexp)", via_logsumexp, "right"),
    Attempt("softmax", "numpy round trip", numpy_round_trip, "right"),
    Attempt("softmax", "no max subtraction", no_max, "bug", names="no_max_subtraction"),
    Attempt("softmax", "always the last axis", last_axis, "bug", names="wrong_axis"),
    Attempt("softmax", "sum without keepdim", no_keepdim, "bug", names="missing_keepdim"),
    Attempt("softmax", "subtracts the max in place", in_place, "bug", names="modified_input"),
    Attempt("softmax", "uniform weights typed in", fixed_answer, "hard-coded"),
    Attempt(
        "softmax", "torch.softmax", lambda x, dim=-1: torch.softmax(x, dim), "shortcut", "ruled_out", "torch.softmax"
    ),
    Attempt("softmax", "x.softmax", lambda x, dim=-1: x.softmax(dim), "shortcut", "ruled_out", "Tensor.softmax"),
    Attempt("softmax", "F.softmax", lambda x, dim=-1: F.softmax(x, dim=dim), "shortcut", "ruled_out"),
    Attempt("softmax", "minattn's own, aliased", minattn.softmax, "shortcut", "ruled_out", "minattn.softmax"),
    Attempt("softmax", "nn.Softmax module", lambda x, dim=-1: torch.nn.Softmax(dim)(x), "shortcut", "ruled_out"),
    Attempt("softmax", "no dim parameter", lambda x: stable(x), "bug", names="missing_parameter"),
    Attempt("softmax", "returns a numpy array", lambda x, dim=-1: stable(x, dim).cpu().numpy(), "wrong type"),
    Attempt("softmax", "NaN on a slice of only -inf", unguarded, "bug", names="all_inf_nan"),
    Attempt("softmax", "max guarded, 0 / 0 left", max_guard_only, "bug", names="all_inf_nan"),
    Attempt("softmax", "-inf clamped to a finite number", clamped, "bug", names="all_inf_uniform"),
    Attempt(
        "softmax",
        "torch.special.softmax",
        lambda x, dim=-1: torch.special.softmax(x, dim),
        "shortcut",
        "ruled_out",
        "torch.special.softmax",
    ),
]

E = math.e

SHIFTED = [
    Attempt("shifted_logits_top_weight", "three significant figures", 0.665, "right"),
    Attempt("shifted_logits_top_weight", "e^2 / (1 + e + e^2)", E**2 / (1 + E + E**2), "right"),
    Attempt(
        "shifted_logits_top_weight",
        "minattn.softmax of the shifted logits, a tensor",
        minattn.softmax(torch.tensor([0.0, 1.0, 2.0])).max(),
        "right",
    ),
    Attempt("shifted_logits_top_weight", "equal weights", 1 / 3, "bug", names="uniform"),
    Attempt("shifted_logits_top_weight", "one-hot", 1.0, "bug", names="one_hot"),
    Attempt("shifted_logits_top_weight", "the smallest weight", 0.0900, "bug", names="smallest_weight"),
    Attempt("shifted_logits_top_weight", "the middle weight", 0.2447, "bug", names="middle_weight"),
    Attempt("shifted_logits_top_weight", "the naive formula's NaN", math.nan, "hard-coded"),
]

SLOPE = [
    Attempt("saturated_slope_p0999", "0.000999", 0.000999, "right"),
    Attempt("saturated_slope_p0999", "p * (1 - p)", 0.999 * (1 - 0.999), "right"),
    Attempt(
        "saturated_slope_p0999", "p - p**2 as a tensor", torch.tensor(0.999, dtype=torch.float64) - 0.999**2, "right"
    ),
    Attempt("saturated_slope_p0999", "slope at p = 0.5", 0.25, "bug", names="slope_at_half"),
    Attempt("saturated_slope_p0999", "1 - p", 0.001, "bug", names="one_minus_p"),
    Attempt("saturated_slope_p0999", "p itself", 0.999, "bug", names="p_itself"),
    Attempt("saturated_slope_p0999", "zero, 'it is flat'", 0, "hard-coded"),
    Attempt("saturated_slope_p0999", "as text", "0.000999", "wrong type"),
]

ATTEMPTS = [*SOFTMAX, *SHIFTED, *SLOPE]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)
