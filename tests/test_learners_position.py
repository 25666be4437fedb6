"""Learners' answers to the relative-position exercises (exercises 07), right and wrong, and the verdict each gets."""

import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from learners import Attempt, assert_verdict

import minattn
from minattn.grading.topics import position as topic
from minattn.sizes import as_triple

# ----------------------------------------------------------------------------- shuffle_both_ways


def shuffle_indexing(layer, x, perm):
    with torch.no_grad():
        return layer(x[:, perm]), layer(x)[:, perm]


def shuffle_index_select(layer, x, perm):
    shuffled_then_attended = layer(torch.index_select(x, 1, perm))
    attended_then_shuffled = torch.index_select(layer(x), 1, perm)
    return [shuffled_then_attended.detach(), attended_then_shuffled.detach()]


def shuffle_token_by_token(layer, x, perm):
    with torch.no_grad():
        out = layer(x)
        shuffled = torch.stack([x[:, int(p)] for p in perm], dim=1)
        return layer(shuffled), torch.stack([out[:, int(p)] for p in perm], dim=1)


def shuffle_swapped(layer, x, perm):
    with torch.no_grad():
        return layer(x)[:, perm], layer(x[:, perm])


def shuffle_outputs_kept(layer, x, perm):
    with torch.no_grad():
        return layer(x[:, perm]), layer(x)


def shuffle_inverse(layer, x, perm):
    inverse = torch.argsort(perm)
    with torch.no_grad():
        return layer(x[:, inverse]), layer(x)[:, inverse]


def shuffle_same_twice(layer, x, perm):
    """The learner who wants a gap of 0.0."""
    with torch.no_grad():
        out = layer(x)[:, perm]
        return out, out.clone()


def shuffle_batch_axis(layer, x, perm):
    with torch.no_grad():
        return layer(x[perm]), layer(x)[perm]


def shuffle_gap_only(layer, x, perm):
    with torch.no_grad():
        return (layer(x[:, perm]) - layer(x)[:, perm]).abs().max().item()


def shuffle_inputs_returned(layer, x, perm):
    return x[:, perm], x[:, perm]


# ----------------------------------------------------------------------------- relative_position_index


def rpi_meshgrid(window_size, table_window_size=None, device=None):
    window = as_triple(window_size)
    table = window if table_window_size is None else as_triple(table_window_size)
    axes = [torch.arange(w, device=device) for w in window]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    offsets = coords[:, None, :] - coords[None, :, :] + torch.tensor(table, device=device) - 1
    sides = [2 * t - 1 for t in table]
    return offsets[..., 0] * sides[1] * sides[2] + offsets[..., 1] * sides[2] + offsets[..., 2]


def rpi_integer_division(window_size, table_window_size=None, device=None):
    wd, wh, ww = as_triple(window_size)
    td, th, tw = (wd, wh, ww) if table_window_size is None else as_triple(table_window_size)
    token = torch.arange(wd * wh * ww, device=device)
    d, h, w = token // (wh * ww), token // ww % wh, token % ww
    od = d[:, None] - d[None, :] + td - 1
    oh = h[:, None] - h[None, :] + th - 1
    ow = w[:, None] - w[None, :] + tw - 1
    return (od * (2 * th - 1) + oh) * (2 * tw - 1) + ow


def rpi_loops(window_size, table_window_size=None, device=None):
    window = as_triple(window_size)
    table = window if table_window_size is None else as_triple(table_window_size)
    coords = [(d, h, w) for d in range(window[0]) for h in range(window[1]) for w in range(window[2])]
    n = len(coords)
    out = np.zeros((n, n), dtype=np.int64)
    for i, q in enumerate(coords):
        for j, k in enumerate(coords):
            o = [q[a] - k[a] + table[a] - 1 for a in range(3)]
            out[i, j] = o[0] * (2 * table[1] - 1) * (2 * table[2] - 1) + o[1] * (2 * table[2] - 1) + o[2]
    return torch.from_numpy(out).to(device)


def _rpi(window_size, table_window_size=None, device=None, sign=1, strides="offsets", shift=True):
    window = as_triple(window_size)
    table = window if table_window_size is None else as_triple(table_window_size)
    axes = [torch.arange(w, device=device) for w in window]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    offsets = sign * (coords[:, None, :] - coords[None, :, :])
    if shift:
        offsets = offsets + torch.tensor(table, device=device) - 1
    sides = [2 * t - 1 for t in table]
    steps = {
        "offsets": [sides[1] * sides[2], sides[2], 1],
        "window": [table[1] * table[2], table[2], 1],
        "reversed": [1, sides[0], sides[0] * sides[1]],
    }[strides]
    return (offsets * torch.tensor(steps, device=device)).sum(-1)


def rpi_key_minus_query(window_size, table_window_size=None, device=None):
    return _rpi(window_size, table_window_size, device, sign=-1)


def rpi_window_strides(window_size, table_window_size=None, device=None):
    return _rpi(window_size, table_window_size, device, strides="window")


def rpi_reversed_strides(window_size, table_window_size=None, device=None):
    return _rpi(window_size, table_window_size, device, strides="reversed")


def rpi_not_shifted(window_size, table_window_size=None, device=None):
    return _rpi(window_size, table_window_size, device, shift=False)


def rpi_fixed(window_size, table_window_size=None, device=None):
    return _rpi(2, None, device)


def rpi_table_ignored(window_size, table_window_size=None, device=None):
    return _rpi(window_size, None, device)


def rpi_sliced(window_size, table_window_size=None, device=None):
    if table_window_size is None:
        return _rpi(window_size, None, device)
    n = int(np.prod(as_triple(window_size)))
    return _rpi(table_window_size, None, device)[:n, :n]


def rpi_float(window_size, table_window_size=None, device=None):
    return rpi_meshgrid(window_size, table_window_size, device).double()


def rpi_no_device(window_size, table_window_size=None):
    return rpi_meshgrid(window_size, table_window_size)


def rpi_module(window_size, table_window_size=None, device=None):
    window = as_triple(window_size) if table_window_size is None else as_triple(table_window_size)
    return minattn.RelativePositionBias(window, num_heads=1).index.to(device)


def rpi_window_attention(window_size, table_window_size=None, device=None):
    return minattn.WindowAttention(6, as_triple(window_size), 1).position_bias.index.to(device)


def rpi_monai(window_size, table_window_size=None, device=None):
    from monai.networks.nets.swin_unetr import WindowAttention

    return WindowAttention(6, 1, as_triple(window_size)).relative_position_index.to(device)


# ----------------------------------------------------------------------------- lookup_bias


def lookup_permute(table, index):
    return table[index].permute(2, 0, 1)


def lookup_transposed_table(table, index):
    return table.T[:, index]


def lookup_embedding(table, index):
    return rearrange(F.embedding(index, table), "i j h -> h i j")


def lookup_loops(table, index):
    heads, n = table.shape[1], index.shape[0]
    out = table.new_zeros(heads, n, n)
    for h in range(heads):
        for i in range(n):
            for j in range(n):
                out[h, i, j] = table[index[i, j], h]
    return out


def lookup_heads_last(table, index):
    return table[index]


def lookup_transposed(table, index):
    return table[index].permute(2, 1, 0)


def lookup_reshaped(table, index):
    return table[index].reshape(table.shape[1], *index.shape)


def lookup_own_index(table, index):
    """Ignores the index it is given and rebuilds a window's index from the token count."""
    n = index.shape[0]
    side = round(n ** (1 / 3))
    window = (side,) * 3 if side**3 == n else (1, 1, n)
    return table[minattn.relative_position_index(window, device=index.device)].permute(2, 0, 1)


def lookup_float32(table, index):
    return table[index].permute(2, 0, 1).float()


def lookup_zeros(table, index):
    return table.new_zeros(table.shape[1], *index.shape)


def lookup_module(table, index):
    heads = table.shape[1]
    module = minattn.RelativePositionBias(1, heads)
    with torch.no_grad():
        module.table = torch.nn.Parameter(table.clone())
    return module(index).detach()


def lookup_forward_unbound(table, index):
    class Holder:
        pass

    holder = Holder()
    holder.table, holder.index, holder.num_heads = table, index, table.shape[1]
    return minattn.RelativePositionBias.forward(holder, index)


ATTEMPTS = [
    # shuffle_both_ways
    Attempt("shuffle_both_ways", "indexing the token axis", shuffle_indexing, "right"),
    Attempt("shuffle_both_ways", "index_select, a list of two", shuffle_index_select, "right"),
    Attempt("shuffle_both_ways", "token by token, then stack", shuffle_token_by_token, "right"),
    Attempt("shuffle_both_ways", "the pair in the other order", shuffle_swapped, "bug", names="pair_swapped"),
    Attempt("shuffle_both_ways", "outputs not shuffled", shuffle_outputs_kept, "bug", names="outputs_not_shuffled"),
    Attempt("shuffle_both_ways", "the inverse permutation", shuffle_inverse, "bug", names="inverse_permutation"),
    Attempt(
        "shuffle_both_ways",
        "the same tensor twice (gap 0.0)",
        shuffle_same_twice,
        "hard-coded",
        names="same_result_twice",
    ),
    Attempt("shuffle_both_ways", "shuffles the batch axis", shuffle_batch_axis, "bug", status="error"),
    Attempt("shuffle_both_ways", "returns the gap, a float", shuffle_gap_only, "wrong type"),
    Attempt("shuffle_both_ways", "returns the shuffled inputs", shuffle_inputs_returned, "hard-coded"),
    Attempt(
        "shuffle_both_ways",
        "the grader's own function",
        topic.shuffle_both_ways,
        "shortcut",
        "ruled_out",
        "minattn.grading",
    ),
    # bias_table_rows_w7
    Attempt("bias_table_rows_w7", "(2 * 7 - 1) ** 3", (2 * 7 - 1) ** 3, "right"),
    Attempt(
        "bias_table_rows_w7", "from a RelativePositionBias", minattn.RelativePositionBias(7, 1).table.shape[0], "right"
    ),
    Attempt("bias_table_rows_w7", "a float", 2197.0, "right"),
    Attempt("bias_table_rows_w7", "tokens in the window", 7**3, "bug", names="tokens"),
    Attempt("bias_table_rows_w7", "query-key pairs", 343**2, "bug", names="pairs"),
    Attempt("bias_table_rows_w7", "14 offsets per axis", 14**3, "bug", names="two_w"),
    Attempt("bias_table_rows_w7", "13 + 13 + 13", 39, "bug", names="added_axes"),
    Attempt("bias_table_rows_w7", "a 2D table", 169, "bug", names="two_axes"),
    Attempt("bias_table_rows_w7", "the 2^3 table's 27 typed in", 27, "hard-coded"),
    # relative_position_index
    Attempt("relative_position_index", "meshgrid and broadcasting", rpi_meshgrid, "right"),
    Attempt("relative_position_index", "coordinates by integer division", rpi_integer_division, "right"),
    Attempt("relative_position_index", "loops in numpy", rpi_loops, "right"),
    Attempt("relative_position_index", "key - query", rpi_key_minus_query, "bug", names="index_transposed"),
    Attempt("relative_position_index", "strides from W", rpi_window_strides, "bug", names="strides_from_window"),
    Attempt("relative_position_index", "W slowest", rpi_reversed_strides, "bug", names="strides_reversed"),
    Attempt("relative_position_index", "offsets not shifted", rpi_not_shifted, "bug", names="no_offset_shift"),
    Attempt("relative_position_index", "table window ignored", rpi_table_ignored, "bug", names="table_ignored"),
    Attempt("relative_position_index", "MONAI's [:n, :n] slice", rpi_sliced, "bug", names="sliced_full_index"),
    Attempt("relative_position_index", "a float64 index", rpi_float, "wrong type", says="integer"),
    Attempt("relative_position_index", "no device parameter", rpi_no_device, "bug", names="missing_parameter"),
    Attempt("relative_position_index", "the 2^3 index for every window", rpi_fixed, "hard-coded"),
    Attempt(
        "relative_position_index",
        "minattn's own",
        minattn.relative_position_index,
        "shortcut",
        "ruled_out",
        "minattn.relative_position_index",
    ),
    Attempt("relative_position_index", "a RelativePositionBias's index", rpi_module, "shortcut", "ruled_out"),
    Attempt(
        "relative_position_index", "minattn.WindowAttention's index", rpi_window_attention, "shortcut", "ruled_out"
    ),
    Attempt("relative_position_index", "MONAI's WindowAttention", rpi_monai, "shortcut", "ruled_out", "MONAI"),
    # zero_offset_row_w2
    Attempt("zero_offset_row_w2", "1 * 9 + 1 * 3 + 1", 1 * 9 + 1 * 3 + 1, "right"),
    Attempt("zero_offset_row_w2", "read off minattn's index", int(minattn.relative_position_index(2)[0, 0]), "right"),
    Attempt("zero_offset_row_w2", "the middle of 27 rows, a tensor", torch.tensor(27 // 2), "right"),
    Attempt("zero_offset_row_w2", "offsets not shifted", 0, "bug", names="no_shift"),
    Attempt("zero_offset_row_w2", "strides (4, 2, 1)", 7, "bug", names="strides_from_window"),
    Attempt("zero_offset_row_w2", "1 + 1 + 1", 3, "bug", names="added"),
    Attempt("zero_offset_row_w2", "counted from 1", 14, "bug", names="one_based"),
    Attempt("zero_offset_row_w2", "the number of rows typed in", 27, "hard-coded"),
    # lookup_bias
    Attempt("lookup_bias", "table[index].permute", lookup_permute, "right"),
    Attempt("lookup_bias", "transpose the table, then index", lookup_transposed_table, "right"),
    Attempt("lookup_bias", "F.embedding and einops", lookup_embedding, "right"),
    Attempt("lookup_bias", "loops", lookup_loops, "right"),
    Attempt("lookup_bias", "heads last", lookup_heads_last, "bug", names="heads_last"),
    Attempt("lookup_bias", "query and key swapped", lookup_transposed, "bug", names="query_key_swapped"),
    Attempt("lookup_bias", "reshape instead of permute", lookup_reshaped, "bug", names="reshape_not_permute"),
    Attempt("lookup_bias", "its own index, not the given one", lookup_own_index, "bug"),
    Attempt("lookup_bias", "always float32", lookup_float32, "wrong type", says="dtype"),
    Attempt("lookup_bias", "zeros of the right shape", lookup_zeros, "hard-coded"),
    Attempt(
        "lookup_bias",
        "a RelativePositionBias with the table",
        lookup_module,
        "shortcut",
        "ruled_out",
        "minattn.RelativePositionBias",
    ),
    Attempt("lookup_bias", "RelativePositionBias.forward, unbound", lookup_forward_unbound, "shortcut", "ruled_out"),
    Attempt("lookup_bias", "the grader's own function", topic.lookup_bias, "shortcut", "ruled_out", "minattn.grading"),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    if "MONAI" in attempt.label:
        # A learner imports MONAI in an earlier cell; importing it takes seconds, which are not the check's.
        importlib.import_module("monai.networks.nets.swin_unetr")
    assert_verdict(attempt)


def test_case_layers_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    topic.shuffle_both_ways_cases(torch.device("cpu"))
    assert torch.equal(torch.rand(3), before)
