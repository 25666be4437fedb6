"""Learners' answers to the multi-head exercises (exercises 06), right and wrong, with the verdict each must get."""

import math

import numpy as np
import pytest
import torch
from einops import rearrange
from learners import Attempt, assert_verdict

import minattn
from minattn.apps.fusion import count_parameters as fusion_count_parameters
from minattn.grading.topics.heads import SCORES_ROW

# ----------------------------------------------------------------------------- split_heads


def split_view_transpose(x, num_heads):
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads).transpose(1, 2)


def split_einops(x, num_heads):
    return rearrange(x, "b n (h d) -> b h n d", h=num_heads)


def split_by_slices(x, num_heads):
    d = x.shape[-1] // num_heads
    return torch.stack([x[..., i * d : (i + 1) * d] for i in range(num_heads)], dim=1)


def split_chunk(x, num_heads):
    return torch.stack(x.chunk(num_heads, dim=-1), dim=1)


def split_interleaved(x, num_heads):
    b, n, c = x.shape
    return x.view(b, n, c // num_heads, num_heads).permute(0, 3, 1, 2)


def split_no_transpose(x, num_heads):
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads)


def split_plain_reshape(x, num_heads):
    b, n, c = x.shape
    return x.reshape(b, num_heads, n, c // num_heads)


def split_two_heads(x):
    return split_view_transpose(x, 2)


def split_zeros(x, num_heads):
    b, n, c = x.shape
    return torch.zeros(b, num_heads, n, c // num_heads, dtype=x.dtype, device=x.device)


# ----------------------------------------------------------------------------- merge_heads


def merge_transpose_reshape(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def merge_einops(x):
    return rearrange(x, "b h n d -> b n (h d)")


def merge_cat(x):
    return torch.cat(x.unbind(dim=1), dim=-1)


def merge_numpy(x):
    a = x.detach().cpu().numpy()
    b, h, n, d = a.shape
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 1, 3)).reshape(b, n, h * d)).to(x.device)


def merge_interleaved(x):
    b, h, n, d = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, n, h * d)


def merge_plain_reshape(x):
    b, h, n, d = x.shape
    return x.reshape(b, n, h * d)


def merge_zeros(x):
    b, h, n, d = x.shape
    return torch.zeros(b, n, h * d, dtype=x.dtype, device=x.device)


# ----------------------------------------------------------------------------- count_parameters


def count_numel(module):
    return sum(p.numel() for p in module.parameters())


def count_numpy_shapes(module):
    return sum(np.prod(p.shape) for p in module.parameters())  # numpy floats for 0-d shapes: still right


def count_per_module(module):
    return sum(p.numel() for m in module.modules() for p in m.parameters(recurse=False))


def count_named(module):
    total = 0
    for _, p in module.named_parameters():
        total += math.prod(p.shape)
    return total


def count_tensors(module):
    return len(list(module.parameters()))


def count_weights_only(module):
    return sum(p.numel() for name, p in module.named_parameters() if not name.endswith("bias"))


def count_state_dict(module):
    return sum(t.numel() for t in module.state_dict().values())


def count_own(module):
    return sum(p.numel() for p in module.parameters(recurse=False))


def count_printed(module):
    return 66048  # the count printed for C = 128


# ----------------------------------------------------------------------------- entropy


def entropy_xlogy(p, dim=-1):
    return -torch.special.xlogy(p, p).sum(dim)


def entropy_guarded(p, dim=-1):
    return -(p * torch.log(p + 1e-9)).sum(dim=dim)


def entropy_guard_1e8(p, dim=-1):
    return -(p * (p + 1e-8).log()).sum(dim)


def entropy_big_guard(p, dim=-1):
    return -(p * torch.log(p + 1e-6)).sum(dim)


def entropy_where(p, dim=-1):
    safe = torch.where(p > 0, p, torch.ones_like(p))
    return -(p * safe.log()).sum(dim)


def entropy_entr(p, dim=-1):
    return torch.special.entr(p).sum(dim)


def entropy_numpy(p, dim=-1):
    a = p.detach().cpu().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)
    return torch.from_numpy(-terms.sum(axis=dim)).to(p.device, p.dtype)


def entropy_float64_inside(p, dim=-1):
    q = p.double()
    return (-(q * q.clamp_min(1e-300).log()).sum(dim)).to(p.dtype)


def entropy_bits(p, dim=-1):
    return -(p * torch.log2(p.clamp_min(1e-12))).sum(dim)


def entropy_no_minus(p, dim=-1):
    return torch.special.xlogy(p, p).sum(dim)


def entropy_nan(p, dim=-1):
    return -(p * torch.log(p)).sum(dim)


def entropy_last_axis(p, dim=-1):
    return -torch.special.xlogy(p, p).sum(-1)


def entropy_keepdim(p, dim=-1):
    return -torch.special.xlogy(p, p).sum(dim, keepdim=True)


def entropy_uniform(p, dim=-1):
    shape = [s for i, s in enumerate(p.shape) if i != dim % p.ndim]
    return torch.full(shape, math.log(p.shape[dim]), dtype=p.dtype, device=p.device)


def entropy_categorical(p, dim=-1):
    return torch.distributions.Categorical(probs=p.movedim(dim, -1)).entropy()


def entropy_scipy(p, dim=-1):
    from scipy.stats import entropy

    return torch.from_numpy(entropy(p.detach().cpu().numpy(), axis=dim)).to(p.device, p.dtype)


# ----------------------------------------------------------------------------- the sharp and the soft head

ROW = torch.tensor(SCORES_ROW)  # as the notebook defines scores_row (float32)


def row_entropy(temperature, dtype=torch.float64):
    p = torch.softmax(ROW.to(dtype) / temperature, dim=-1)
    return float(torch.special.entr(p).sum())


def numpy_entropies():
    s = ROW.double().numpy()
    out = []
    for t in (0.25, 4.0):
        e = np.exp(s / t - (s / t).max())
        p = e / e.sum()
        out.append(float(-(p * np.log(p)).sum()))
    return out


def guarded_float32_entropies():
    out = []
    for t in (0.25, 4.0):
        p = minattn.softmax(ROW / t)
        out.append(-(p * torch.log(p + 1e-9)).sum().item())
    return tuple(out)


ATTEMPTS = [
    # split_heads
    Attempt("split_heads", "view then transpose", split_view_transpose, "right"),
    Attempt("split_heads", "einops rearrange", split_einops, "right"),
    Attempt("split_heads", "stacked slices, a loop over heads", split_by_slices, "right"),
    Attempt("split_heads", "chunk and stack", split_chunk, "right"),
    Attempt("split_heads", "features split as (d h)", split_interleaved, "bug", names="heads_interleaved"),
    Attempt("split_heads", "no transpose", split_no_transpose, "bug", names="heads_not_transposed"),
    Attempt(
        "split_heads",
        "reshape straight to (B, h, N, d)",
        split_plain_reshape,
        "bug",
        names="reshape_without_transpose",
    ),
    Attempt("split_heads", "always 2 heads, no num_heads", split_two_heads, "bug", names="missing_parameter"),
    Attempt("split_heads", "zeros of the right shape", split_zeros, "hard-coded"),
    Attempt("split_heads", "minattn.split_heads", minattn.split_heads, "shortcut", "ruled_out", "minattn.split_heads"),
    Attempt(
        "split_heads",
        "returns a numpy array",
        lambda x, num_heads: split_einops(x, num_heads).cpu().numpy(),
        "wrong type",
    ),
    # merge_heads
    Attempt("merge_heads", "transpose then reshape", merge_transpose_reshape, "right"),
    Attempt("merge_heads", "einops rearrange", merge_einops, "right"),
    Attempt("merge_heads", "torch.cat of the heads", merge_cat, "right"),
    Attempt("merge_heads", "numpy round trip", merge_numpy, "right"),
    Attempt("merge_heads", "features merged as (d h)", merge_interleaved, "bug", names="heads_interleaved"),
    Attempt("merge_heads", "reshape without transpose", merge_plain_reshape, "bug", names="reshape_without_transpose"),
    Attempt("merge_heads", "zeros of the right shape", merge_zeros, "hard-coded"),
    Attempt("merge_heads", "minattn.merge_heads", lambda x: minattn.merge_heads(x), "shortcut", "ruled_out"),
    # count_parameters
    Attempt("count_parameters", "sum of numel", count_numel, "right"),
    Attempt("count_parameters", "numpy product of shapes", count_numpy_shapes, "right"),
    Attempt("count_parameters", "each module's own parameters", count_per_module, "right"),
    Attempt("count_parameters", "math.prod over named_parameters", count_named, "right"),
    Attempt("count_parameters", "number of parameter tensors", count_tensors, "bug", names="counted_tensors"),
    Attempt("count_parameters", "weights only", count_weights_only, "bug", names="no_biases"),
    Attempt("count_parameters", "state_dict, buffers included", count_state_dict, "bug", names="counted_buffers"),
    Attempt("count_parameters", "recurse=False", count_own, "bug", names="not_recursive"),
    Attempt("count_parameters", "the printed count typed in", count_printed, "hard-coded"),
    Attempt(
        "count_parameters", "minattn.apps.fusion.count_parameters", fusion_count_parameters, "shortcut", "ruled_out"
    ),
    Attempt("count_parameters", "returns a list of sizes", lambda m: [p.numel() for p in m.parameters()], "wrong type"),
    # mha_params_c96
    Attempt("mha_params_c96", "4 (C^2 + C)", 4 * (96 * 96 + 96), "right"),
    Attempt("mha_params_c96", "4C^2 + 4C as a float", 4.0 * 96**2 + 4.0 * 96, "right"),
    Attempt(
        "mha_params_c96",
        "counted on a layer with 8 heads",
        sum(p.numel() for p in minattn.MultiHeadAttention(96, 8).parameters()),
        "right",
    ),
    Attempt("mha_params_c96", "weights only, 4C^2", 4 * 96 * 96, "bug", names="no_biases"),
    Attempt("mha_params_c96", "three projections", 3 * (96 * 96 + 96), "bug", names="no_output_projection"),
    Attempt("mha_params_c96", "one projection", 96 * 96 + 96, "bug", names="one_projection"),
    Attempt("mha_params_c96", "the printed count for C = 128", 66048, "hard-coded", names="c128"),
    Attempt("mha_params_c96", "per head, 4 (C^2 / h + C / h) with h = 3", 4 * (96 * 32 + 32), "bug"),
    # entropy
    Attempt("entropy", "xlogy", entropy_xlogy, "right"),
    Attempt("entropy", "log with a + 1e-9 guard", entropy_guarded, "right"),
    Attempt("entropy", "log with a + 1e-8 guard", entropy_guard_1e8, "right"),
    Attempt("entropy", "torch.where around the log", entropy_where, "right"),
    Attempt("entropy", "torch.special.entr", entropy_entr, "right"),
    Attempt("entropy", "numpy round trip", entropy_numpy, "right"),
    Attempt("entropy", "float64 inside, cast back", entropy_float64_inside, "right"),
    Attempt("entropy", "log2: bits", entropy_bits, "bug", names="log_base", says="base 2"),
    Attempt("entropy", "minus sign missing", entropy_no_minus, "bug", names="missing_minus"),
    Attempt("entropy", "log with a + 1e-6 guard", entropy_big_guard, "bug", names="log_guard_too_large"),
    Attempt("entropy", "0 log 0 gives NaN", entropy_nan, "bug", names="zero_gives_nan"),
    Attempt("entropy", "always the last axis", entropy_last_axis, "bug", names="wrong_axis"),
    Attempt("entropy", "keepdim=True", entropy_keepdim, "bug", names="kept_dim"),
    Attempt("entropy", "ln N typed in for every row", entropy_uniform, "hard-coded"),
    Attempt("entropy", "torch.distributions.Categorical", entropy_categorical, "shortcut", "ruled_out", "Categorical"),
    Attempt("entropy", "scipy.stats.entropy", entropy_scipy, "shortcut", "ruled_out", "scipy.stats.entropy"),
    Attempt("entropy", "no dim parameter", lambda p: entropy_xlogy(p), "bug", names="missing_parameter"),
    # temperature_entropies
    Attempt("temperature_entropies", "entr of a float64 softmax", (row_entropy(0.25), row_entropy(4.0)), "right"),
    Attempt("temperature_entropies", "numpy, as a list", numpy_entropies(), "right"),
    Attempt("temperature_entropies", "float32 with a + 1e-9 guard", guarded_float32_entropies(), "right"),
    Attempt(
        "temperature_entropies",
        "a tensor of the two",
        torch.tensor([row_entropy(0.25, torch.float32), row_entropy(4.0, torch.float32)]),
        "right",
    ),
    Attempt(
        "temperature_entropies",
        "sharp and soft swapped",
        (row_entropy(4.0), row_entropy(0.25)),
        "bug",
        names="swapped",
    ),
    Attempt(
        "temperature_entropies",
        "scores multiplied by T",
        (row_entropy(1 / 0.25), row_entropy(1 / 4.0)),
        "bug",
        names="swapped",
    ),
    Attempt(
        "temperature_entropies",
        "in bits",
        (row_entropy(0.25) / math.log(2), row_entropy(4.0) / math.log(2)),
        "bug",
        names="log_base",
    ),
    Attempt(
        "temperature_entropies",
        "minus sign missing",
        (-row_entropy(0.25), -row_entropy(4.0)),
        "bug",
        names="missing_minus",
    ),
    Attempt(
        "temperature_entropies",
        "no temperature",
        (row_entropy(1.0), row_entropy(1.0)),
        "bug",
        names="no_temperature",
    ),
    Attempt("temperature_entropies", "the printed numbers, rounded", (0.444, 2.023), "hard-coded"),
    Attempt("temperature_entropies", "one number only", row_entropy(0.25), "wrong type"),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)


def test_the_notebooks_scores_row_is_the_one_the_answer_uses():
    """temperature_entropies computes its answer from SCORES_ROW: the notebook's scores_row must be that row."""
    import re
    from pathlib import Path

    import nbformat

    root = Path(__file__).resolve().parents[1]
    for folder in ("solutions", "exercises"):
        nb = nbformat.read(root / folder / "06-multi-head-attention.ipynb", as_version=4)
        text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
        found = re.search(r"scores_row = torch\.tensor\(\[([^\]]*)\]\)", text)
        assert found, folder
        assert tuple(float(v) for v in found.group(1).split(",")) == SCORES_ROW, folder
