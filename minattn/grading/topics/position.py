"""Relative position (lesson 07): shuffling tokens, the relative position index, the bias table and its lookup.

Function exercises: ``shuffle_both_ways`` (attention without a bias is
permutation-equivariant, with one it is not), ``relative_position_index`` and
``lookup_bias`` (implement it). Value exercises: ``bias_table_rows_w7`` and
``zero_offset_row_w2``. Concept questions: ``concept_pooled_shuffle``,
``concept_bias_params_scale``, ``concept_zero_offset_row`` and
``concept_what_breaks_symmetry``. Hidden windows are unequal along every axis, tables of
a larger window included; head counts and token counts vary; float32 and
float64.
"""

from __future__ import annotations

import math

import torch

from ...multihead import MultiHeadAttention
from ...position import RelativePositionBias, monai_sliced_index, relative_position_index
from ...sizes import as_triple
from ...window_attention import WindowAttention
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
    arange,
    case_dtype,
    graders_own,
    randn,
)

_MONAI_WINDOW_ATTENTION = "monai.networks.nets.swin_unetr:WindowAttention"


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


# ----------------------------------------------------------------------------- shuffle, then attend


class CaseLayer:
    """An attention layer of a hidden case: ``layer(x)`` maps ``(B, N, C)`` tokens to ``(B, N, C)``.

    Its weights are drawn from a seeded generator (the notebook's global random
    state is left alone) and frozen, so the outputs need no ``torch.no_grad()``.
    Two layers made from the same recipe are equal, so a rebuilt case is
    recognised as the same input. Outputs are remembered by input: the case
    computes them once, before the check's clock starts, so the reference and
    the learner's calls on the same tokens cost next to nothing.
    """

    def __init__(self, kind: str, dim: int, heads: int, window, seed: int, dtype, device):
        self.recipe = (kind, dim, heads, window, seed, dtype, str(device))
        with torch.random.fork_rng(devices=[]):
            if kind == "window":
                module = WindowAttention(dim, window, heads)
            else:
                module = MultiHeadAttention(dim, heads)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in module.named_parameters():
                scale = 1.0 if name.endswith("table") else dim**-0.5
                p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * scale)
        module.requires_grad_(False)
        self.module = module.to(device=device, dtype=case_dtype(dtype, device)).eval()
        self._outputs: dict = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.requires_grad or x.is_complex():
            return self.module(x)
        key = (tuple(x.shape), x.dtype, str(x.device), x.detach().cpu().contiguous().numpy().tobytes())
        if key not in self._outputs:
            with torch.no_grad():
                self._outputs[key] = self.module(x)
        return self._outputs[key].clone()

    def __eq__(self, other) -> bool:
        return isinstance(other, CaseLayer) and self.recipe == other.recipe

    def __hash__(self) -> int:
        return hash(self.recipe)

    def __repr__(self) -> str:
        kind, dim, heads, window, _, dtype, _ = self.recipe
        if kind == "window":
            return (
                f"WindowAttention(dim={dim}, window={window}, heads={heads}, with a position bias, "
                f"{_dtype_name(dtype)})"
            )
        return f"MultiHeadAttention(dim={dim}, heads={heads}, no position bias, {_dtype_name(dtype)})"


# (kind, dim, heads, window, batch, dtype, perm): no perm is its own inverse.
_SHUFFLE_CASES = (
    ("mha", 6, 2, None, 2, F64, (2, 0, 4, 1, 3)),
    ("window", 8, 2, (1, 2, 3), 3, F32, (3, 5, 0, 1, 4, 2)),
    ("window", 6, 3, (2, 2, 1), 2, F64, (1, 3, 0, 2)),
    ("mha", 8, 4, None, 3, F32, (6, 0, 1, 5, 2, 3, 4)),
)


def shuffle_both_ways_cases(device):
    # A learner's layer may call torch.broadcast_shapes, whose first call imports sympy (seconds): do it
    # here, before the check's clock starts, not in the first case.
    torch.broadcast_shapes((1,), (1,))
    g = torch.Generator().manual_seed(7)
    out = []
    for seed, (kind, dim, heads, window, batch, dtype, perm) in enumerate(_SHUFFLE_CASES):
        layer = CaseLayer(kind, dim, heads, window, 100 + seed, dtype, device)
        n = len(perm)
        x = randn(g, (batch, n, dim), dtype, device, scale=1.5)
        perm_t = torch.tensor(perm, device=device)
        layer(x), layer(x[:, perm_t])  # computed now, off the check's clock
        what = "multi-head attention, no position bias" if kind == "mha" else f"window attention {window} with a bias"
        label = f"{what}: x ({batch}, {n}, {dim}), {heads} head(s), perm {list(perm)} ({_dtype_name(dtype)})"
        out.append(Case(label, (layer, x, perm_t)))
    return out


def shuffle_both_ways(layer, x, perm):
    """``(layer(x[:, perm]), layer(x)[:, perm])``: shuffle then attend, and attend then shuffle."""
    with torch.no_grad():
        return layer(x[:, perm]), layer(x)[:, perm]


def _shuffle_variant(make):
    def variants(case):
        layer, x, perm = case.args
        with torch.no_grad():
            yield from make(layer, x, perm)

    return variants


SHUFFLE_BUGS = [
    Bug(
        "pair_swapped",
        "the two results are in the wrong order: first layer(x[:, perm]) (shuffle, then attend), then "
        "layer(x)[:, perm] (attend, then shuffle).",
        "return (layer(x[:, perm]), layer(x)[:, perm]).",
        _shuffle_variant(lambda layer, x, perm: iter([((layer(x)[:, perm], layer(x[:, perm])), {})])),
    ),
    Bug(
        "outputs_not_shuffled",
        "the second result is layer(x), not shuffled: the outputs must be shuffled the same way, layer(x)[:, perm], "
        "before they can be compared with the outputs of the shuffled tokens.",
        "return (layer(x[:, perm]), layer(x)[:, perm]).",
        _shuffle_variant(lambda layer, x, perm: iter([((layer(x[:, perm]), layer(x)), {})])),
    ),
    Bug(
        "inverse_permutation",
        "the tokens were put in the inverse order (x[:, perm.argsort()]); x[:, perm] puts token perm[i] at position i.",
        "index the token axis with perm itself: x[:, perm] and layer(x)[:, perm].",
        _shuffle_variant(
            lambda layer, x, perm: iter([((layer(x[:, perm.argsort()]), layer(x)[:, perm.argsort()]), {})])
        ),
    ),
    Bug(
        "same_result_twice",
        "both results were computed the same way, so they agree whatever the layer does; one must shuffle the "
        "tokens before the layer, the other shuffle the layer's outputs.",
        "return (layer(x[:, perm]), layer(x)[:, perm]).",
        _shuffle_variant(
            lambda layer, x, perm: iter(
                [
                    ((layer(x)[:, perm], layer(x)[:, perm]), {}),
                    ((layer(x[:, perm]), layer(x[:, perm])), {}),
                ]
            )
        ),
    ),
]


# ----------------------------------------------------------------------------- relative position index


def relative_position_index_cases(device):
    return [
        Case("window 2 (2 x 2 x 2)", (2,), {"device": device}),
        Case("window (2, 3, 4)", ((2, 3, 4),), {"device": device}),
        Case("window (3, 2, 1)", ((3, 2, 1),), {"device": device}),
        Case(
            "window (2, 2, 3) in the table of a (3, 4, 4) window",
            ((2, 2, 3),),
            {"table_window_size": (3, 4, 4), "device": device},
        ),
        Case(
            "window (3, 1, 2) in the table of a (4, 3, 5) window",
            ((3, 1, 2),),
            {"table_window_size": (4, 3, 5), "device": device},
        ),
        Case(
            "window (3, 3, 2) in the table of a (3, 3, 3) window: only W shrank",
            ((3, 3, 2),),
            {"table_window_size": (3, 3, 3), "device": device},
        ),
    ]


def _rpi(window_size, table_window_size=None, device=None, sign=1, strides="offsets", shift=True):
    window = as_triple(window_size)
    table = window if table_window_size is None else as_triple(table_window_size)
    axes = [torch.arange(w, device=device) for w in window]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    offsets = sign * (coords[:, None, :] - coords[None, :, :])
    if shift:
        offsets = offsets + torch.tensor(table, device=device) - 1
    sides = [2 * t - 1 for t in table]
    if strides == "window":
        steps = [table[1] * table[2], table[2], 1]
    elif strides == "reversed":
        steps = [1, sides[0], sides[0] * sides[1]]
    else:
        steps = [sides[1] * sides[2], sides[2], 1]
    return (offsets * torch.tensor(steps, device=device)).sum(-1)


def _rpi_variant(**switches):
    def variants(case):
        yield _rpi(*case.args, **{**case.kwargs, **switches}), {}

    return variants


def _rpi_table_ignored(case):
    if case.kwargs.get("table_window_size") is not None:
        yield _rpi(*case.args, device=case.kwargs.get("device")), {}


def _rpi_sliced(case):
    table = case.kwargs.get("table_window_size")
    if table is not None:
        n = math.prod(as_triple(case.args[0]))
        yield monai_sliced_index(n, as_triple(table), device=case.kwargs.get("device")), {}


POSITION_BUGS = [
    Bug(
        "index_transposed",
        "the index is transposed: the offsets are key - query instead of query - key.",
        "offsets = coords[:, None, :] - coords[None, :, :] (query along rows, key along columns), then add W - 1.",
        _rpi_variant(sign=-1),
    ),
    Bug(
        "strides_from_window",
        "the offsets are flattened with strides from the window size W instead of the number of offsets 2W-1: each "
        "axis's offset takes 2W-1 values, so the strides are ((2Wh-1)(2Ww-1), 2Ww-1, 1).",
        "index = d * (2Wh-1) * (2Ww-1) + h * (2Ww-1) + w, with d, h, w the shifted offsets.",
        _rpi_variant(strides="window"),
    ),
    Bug(
        "strides_reversed",
        "the offsets are flattened with W slowest (reversed strides); D must be the slowest axis: "
        "d * (2Wh-1)(2Ww-1) + h * (2Ww-1) + w.",
        "multiply the D offset by (2Wh-1)*(2Ww-1), the H offset by (2Ww-1) and leave W as it is.",
        _rpi_variant(strides="reversed"),
    ),
    Bug(
        "no_offset_shift",
        "the offsets were not shifted by W - 1: they run from -(W-1) to W-1, so some indices are negative.",
        "add W - 1 per axis before flattening, making each offset lie in [0, 2W-2].",
        _rpi_variant(shift=False),
    ),
    Bug(
        "table_ignored",
        "table_window_size is ignored: the offsets must be placed in the larger table's grid, with its W - 1 "
        "and its strides.",
        "use T = table_window_size (when given) for the shift T - 1 and the strides 2T - 1.",
        _rpi_table_ignored,
    ),
    Bug(
        "sliced_full_index",
        "the index is the table window's own index cut to [:N, :N], as MONAI does: that gives the right offsets "
        "only when just D shrank. When H or W shrinks, the first N tokens of the big window are other positions.",
        "compute the offsets from the small window's own coordinates, then shift them by T - 1 and flatten them "
        "with the table's strides (2T - 1).",
        _rpi_sliced,
    ),
]


# ----------------------------------------------------------------------------- looking up the bias


# (window, table window, heads, dtype, index kind): unequal windows and head counts; a random index (any table
# rows, not a relative position index) and MONAI's sliced index show that the given index is the one used.
_LOOKUP_CASES = (
    ((1, 2, 2), None, 2, F64, "arange"),
    ((2, 3, 1), None, 3, F32, "relative"),
    ((2, 1, 3), (3, 2, 4), 4, F64, "relative"),
    ((1, 1, 5), (2, 2, 3), 5, F32, "random"),
    ((3, 2, 2), (3, 2, 2), 1, F64, "sliced"),
)


def lookup_bias_cases(device):
    g = torch.Generator().manual_seed(8)
    out = []
    for window, table_window, heads, dtype, kind in _LOOKUP_CASES:
        table_w = window if table_window is None else table_window
        rows = math.prod(2 * t - 1 for t in table_w)
        n = math.prod(window)
        if kind == "random":
            index = torch.randint(0, rows, (n, n), generator=g).to(device)
            what = f"a random ({n}, {n}) index into {rows} rows"
        elif kind == "sliced":
            n -= 5  # the first N - 5 tokens of the window, as MONAI slices a shrunk window's index
            index = monai_sliced_index(n, table_w, device=device)
            what = f"the {table_w} window's index cut to [:{n}, :{n}]"
        else:
            index = relative_position_index(window, table_window, device=device)
            where = "" if table_window is None else f" in the table of a {table_window} window"
            what = f"the index of window {window}{where}"
        if kind == "arange":
            table = arange((rows, heads), dtype, device)
        else:
            table = randn(g, (rows, heads), dtype, device)
        label = f"table ({rows}, {heads}), {what} ({'arange' if kind == 'arange' else 'random'} {_dtype_name(dtype)})"
        out.append(Case(label, (table, index)))
    return out


def lookup_bias(table, index):
    """``(rows, heads)`` table and ``(N, N)`` index -> ``(heads, N, N)`` bias, ``[h, i, j] = table[index[i, j], h]``."""
    n_q, n_k = index.shape
    return table[index.reshape(-1)].reshape(n_q, n_k, table.shape[1]).permute(2, 0, 1)


def _lookup_variant(make):
    def variants(case):
        table, index = case.args
        yield make(table, index), {}

    return variants


LOOKUP_BUGS = [
    Bug(
        "heads_last",
        "the heads are the last axis, (N, N, heads); the bias is (heads, N, N), one N x N matrix per head.",
        "move the heads to the front: table[index].permute(2, 0, 1).",
        _lookup_variant(lambda table, index: table[index]),
    ),
    Bug(
        "query_key_swapped",
        "the bias is transposed in each head: entry [h, i, j] holds table[index[j, i], h]; query i is the row, "
        "key j the column.",
        "table[index].permute(2, 0, 1): axis 0 of index (queries) becomes axis 1 of the bias, axis 1 (keys) axis 2.",
        _lookup_variant(lambda table, index: table[index].permute(2, 1, 0)),
    ),
    Bug(
        "reshape_not_permute",
        "the (N, N, heads) lookup was reshaped to (heads, N, N): a reshape keeps the memory order, so the numbers "
        "of different heads and pairs get mixed.",
        "move axes with permute (or einops.rearrange), not reshape: table[index].permute(2, 0, 1).",
        _lookup_variant(lambda table, index: table[index].reshape(table.shape[1], *index.shape)),
    ),
]


# ----------------------------------------------------------------------------- exercises


def _table_rows_w7() -> int:
    return int(relative_position_index(7).max()) + 1


def _zero_offset_row_w2() -> int:
    return int(relative_position_index(2)[0, 0])


# ----------------------------------------------------------------------------- concept questions

CONCEPT_QUESTIONS = [
    # After exercise 7.1.
    ChoiceExercise(
        "concept_pooled_shuffle",
        "the mean over the tokens of an attention layer's outputs (no position information) after a shuffle",
        {
            "a": "the same vector: the outputs are only reordered, and a mean does not depend on the order",
            "b": "the vector's entries come out shuffled in the same way as the tokens",
            "c": "a different vector, since each token now sits next to other tokens and attends to them differently",
            "d": "a different vector, since attention is permutation-equivariant, not permutation-invariant, so "
            "anything computed from its outputs changes with the order",
        },
        "a",
        why={
            "b": "the shuffle acts on the token axis, and the mean removes that axis; the channels of a token are "
            "never reordered.",
            "c": "attention has no notion of a neighbour: each score depends only on the contents of a query and a "
            "key, not on where they stand.",
            "d": "equivariance says how the outputs move: each one moves with its own token. Ask what a mean over "
            "the tokens does with outputs that have only moved.",
        },
    ),
    # After exercise 7.3.
    ChoiceExercise(
        "concept_bias_params_scale",
        "the relative position bias parameters of a SwinUNETR with 7 x 7 x 7 windows fed 128^3 volumes instead of 96^3",
        {
            "a": "they grow with the number of tokens: every position of the volume gets its own learned bias",
            "b": "they grow with the number of windows: each window has its own table",
            "c": "they stay the same: a table has one row per offset inside a window and one column per head, so "
            "its size depends on the window and the number of heads only",
            "d": "they stay the same, but each table holds 343^2 = 117,649 rows per head, one per query-key pair "
            "of a window",
        },
        "c",
        why={
            "a": "that describes an absolute position embedding, one learned vector per position of the grid; "
            "this table is indexed by the offset between a query and a key.",
            "b": "all windows of a block read one shared table: a pair of neighbours gets the same bias in every "
            "window, which is what lets the same layer run on any number of windows.",
            "d": "many pairs share an offset, and pairs with the same offset share a row: count the distinct "
            "offsets, as in exercise 7.3.",
        },
    ),
    # After exercise 7.5.
    ChoiceExercise(
        "concept_zero_offset_row",
        "the table row of the zero offset (0, 0, 0) in a window of any shape, with a table of R rows",
        {
            "a": "row 0, the first row of the table",
            "b": "the middle row, (R - 1) / 2: along each axis the offsets run symmetrically from -(W-1) to W-1, "
            "and (0, 0, 0) is the centre of that grid of offsets",
            "c": "the middle row only when the window is a cube; when Wd, Wh and Ww differ, the zero offset lies "
            "off the middle",
            "d": "a different row for each token: the diagonal of the index holds N different rows, one per position",
        },
        "b",
        why={
            "a": "row 0 belongs to the most negative offset, (-(Wd-1), -(Wh-1), -(Ww-1)): every offset is shifted "
            "by W - 1 per axis before it is flattened.",
            "c": "an unequal window changes how many offsets each axis has, not where the zero offset sits among "
            "them: along every axis it has W - 1 offsets on either side, whatever W is.",
            "d": "a pair's row depends only on its offset, query minus key, and every token's offset to itself is "
            "the same (0, 0, 0).",
        },
    ),
    # After the shuffle with a bias (exercise 7.6).
    ChoiceExercise(
        "concept_what_breaks_symmetry",
        "what makes a window's outputs change by more than a reordering when its tokens are shuffled (two are right)",
        {
            "a": "a relative position bias whose table holds the same number c in every row",
            "b": "a relative position bias whose table holds different numbers for different offsets",
            "c": "a mask that blocks pairs by the positions of their two tokens, such as the mask of a "
            "wrapped-around shifted window (lesson 05)",
            "d": "more heads, each with its own query, key and value projections",
        },
        frozenset({"b", "c"}),
        why={
            "a": "c is added to every score of a row, and the softmax of a row does not change when one constant "
            "is added to all of its scores: the layer behaves as if there were no bias.",
            "d": "each head on its own is attention without position; joining such heads and projecting each token "
            "keeps every output moving with its token.",
        },
    ),
]


EXERCISES = [
    FunctionExercise(
        "shuffle_both_ways",
        shuffle_both_ways,
        shuffle_both_ways_cases,
        "tensor",
        "shuffle_both_ways(layer, x, perm)",
        bugs=tuple(SHUFFLE_BUGS),
        ruled_out=(graders_own(shuffle_both_ways),),
        building_blocks="indexing the token axis with perm and calling the layer",
    ),
    ValueExercise(
        "bias_table_rows_w7",
        "rows of the bias table of a 7 x 7 x 7 window",
        _table_rows_w7,
        unit=None,
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "tokens",
                lambda: 7**3,
                "that is the number of tokens in the window; the table has one row "
                "per offset, and along each axis the offset takes 2 * 7 - 1 = 13 values.",
            ),
            WrongAnswer(
                "pairs",
                lambda: (7**3) ** 2,
                "that is the number of query-key pairs; many pairs share an "
                "offset, and the table has one row per offset: 13 values along each axis.",
            ),
            WrongAnswer(
                "two_w", lambda: 14**3, "offsets run from -(7-1) to 7-1: 2 * 7 - 1 = 13 values per axis, not 14."
            ),
            WrongAnswer(
                "added_axes",
                lambda: 3 * 13,
                "the offsets of the three axes combine: multiply the 13 values per axis, do not add them.",
            ),
            WrongAnswer(
                "two_axes", lambda: 13**2, "that is the table of a 2D window; a 3D window has three offset axes."
            ),
        ),
    ),
    FunctionExercise(
        "relative_position_index",
        relative_position_index,
        relative_position_index_cases,
        "index",
        "relative_position_index(window_size, table_window_size=None, device=None)",
        bugs=tuple(POSITION_BUGS),
        ruled_out=(
            RuledOut(
                "minattn.relative_position_index / minattn.RelativePositionBias",
                (relative_position_index, monai_sliced_index, RelativePositionBias),
            ),
            RuledOut("MONAI's WindowAttention", (_MONAI_WINDOW_ATTENTION,)),
        ),
        building_blocks="torch.arange, torch.meshgrid (or broadcasting) and integer arithmetic",
    ),
    ValueExercise(
        "zero_offset_row_w2",
        "table row of the zero offset (0, 0, 0) in a 2 x 2 x 2 window",
        _zero_offset_row_w2,
        unit=None,
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "no_shift",
                lambda: 0,
                "the offsets are shifted by W - 1 = 1 along each axis before they "
                "are flattened (step 3), so the zero offset is not row 0.",
            ),
            WrongAnswer(
                "strides_from_window",
                lambda: 1 * 2 * 2 + 1 * 2 + 1,
                "the strides come from the number of "
                "offsets per axis, 2W - 1 = 3, not from the window size 2: d * 9 + h * 3 + w.",
            ),
            WrongAnswer(
                "added",
                lambda: 1 + 1 + 1,
                "the shifted offsets (1, 1, 1) are flattened with strides (9, 3, 1), not added.",
            ),
            WrongAnswer(
                "one_based", lambda: _zero_offset_row_w2() + 1, "rows are counted from 0, as tensor indices are."
            ),
        ),
    ),
    FunctionExercise(
        "lookup_bias",
        lookup_bias,
        lookup_bias_cases,
        "tensor",
        "lookup_bias(table, index)",
        bugs=tuple(LOOKUP_BUGS),
        ruled_out=(
            RuledOut("minattn.RelativePositionBias (its forward does this lookup)", (RelativePositionBias,)),
            graders_own(lookup_bias),
        ),
        building_blocks="indexing the table with the index tensor, then permute",
    ),
    *CONCEPT_QUESTIONS,
]
