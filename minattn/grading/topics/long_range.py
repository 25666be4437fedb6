"""The long-range case (lesson 14): receptive fields through patch merges, depth against distance, and cost.

Function exercises: ``coarse_to_fine`` (backwards through a patch merge, 2D
and 3D, odd and even extents), ``layers_to_link`` (alternating regular and
shifted windows on a line of tokens), ``blocks_to_link`` (the same line in a
hierarchical Swin, with a patch merge after every ``blocks_per_stage``
blocks) and ``hierarchical_cost_ratio`` (one global layer's scores against
the first blocks of a hierarchical Swin). Concept questions
(:data:`CONCEPT_EXERCISES`): regular windows alone, layers per window of
distance, the depth of a 3D link from its per-axis depths, and why the hierarchy
makes the depth logarithmic.

Hidden lines have lengths that the window does not divide, sources on either
side of the target, windows even and odd and longer than the line; hidden
grids have a different extent along every axis. The lesson's own
configurations are among the cases, so the number the lesson prints passes
one case and no more.
"""

from __future__ import annotations

import math

import torch

from ... import cost
from ... import receptive_field as rf
from ...apps import long_range as lr
from ..exercise import Bug, Case, ChoiceExercise, FunctionExercise, RuledOut, graders_own

# ----------------------------------------------------------------------------- references


def coarse_to_fine(field, fine_shape):
    """Bool merged grid -> bool ``fine_shape``: the fine tokens each coarse token was merged from."""
    return lr.coarse_to_fine(field, fine_shape)


def layers_to_link(length, window, source, target):
    """Fewest alternating regular/shifted window layers after which ``target``'s information has reached ``source``.

    Equal to ``lr.layers_to_link((1, length), window, (0, source), (0, target))`` (the tests check it on
    hundreds of lines), but computed on intervals: a receptive field on a line is an interval, and a layer
    widens it to the windows holding its two ends. The masks of ``lr.layers_to_link`` take a tenth of a
    second per line, too slow for a check that runs a dozen lines under a time limit.
    """
    return _flat_layers(length, window, source, target)


def blocks_to_link(length, window, source, target, blocks_per_stage=2):
    """The same in a hierarchical Swin, a patch merge after every ``blocks_per_stage`` blocks.

    Equal to ``lr.hierarchical_layers_to_link((1, length), window, (0, source), (0, target), blocks_per_stage)``,
    on intervals (see :func:`layers_to_link`).
    """
    return _hier_blocks(length, window, source, target, blocks_per_stage)


def hierarchical_cost_ratio(grid, window, blocks, blocks_per_stage=2):
    """Scores of one global attention layer over ``grid`` / scores of the first ``blocks`` hierarchical blocks."""
    return cost.attention_scores(cost.num_tokens(grid)) / lr.hierarchical_cost(grid, window, blocks, blocks_per_stage)


# ----------------------------------------------------------------------------- cases


def coarse_to_fine_cases(device):
    g = torch.Generator().manual_seed(14)
    lesson = torch.zeros(2, 3, dtype=torch.bool)
    lesson[0, 1] = lesson[1, 2] = True
    out = [Case("the lesson's 2 x 3 coarse set, fine grid (4, 5)", (lesson.to(device), (4, 5)))]
    for fine in ((5, 7, 4), (9, 6), (4, 6, 8), (7, 3, 6), (3, 10, 5)):
        coarse = lr.merged_grid(fine)
        field = torch.rand(coarse, generator=g) < 0.4
        odd = [n for n in fine if n % 2]
        note = f"odd extents {odd} padded by the merge" if odd else "every extent even"
        out.append(Case(f"random coarse set {tuple(coarse)}, fine grid {fine} ({note})", (field.to(device), fine)))
    return out


_LINES = (
    # (length, window, source, target)
    (96, 7, 10, 80),
    (50, 5, 47, 3),
    (31, 4, 6, 6),
    (40, 6, 13, 16),
    (23, 7, 21, 0),
    (12, 16, 2, 11),
    (64, 8, 7, 8),
    (45, 9, 40, 2),
    (37, 3, 0, 36),
    (18, 7, 3, 12),
    (40, 5, 27, 3),
)


def _line_label(length, window, source, target) -> str:
    notes = []
    if (length, window, source, target) == (96, 7, 10, 80):
        notes.append("the exercise's tumour and metastasis")
    if source == target:
        notes.append("source = target")
    if window >= length:
        notes.append("a window longer than the line")
    elif length % window:
        notes.append(f"{length} tokens are not whole windows of {window}")
    if source > target:
        notes.append("the target lies before the source")
    note = f" ({'; '.join(notes)})" if notes else ""
    return f"line of {length} tokens, window {window}, source {source}, target {target}{note}"


def layers_to_link_cases(device):
    return [Case(_line_label(*line), line) for line in _LINES]


_HIER_LINES = (
    # (length, window, source, target, blocks_per_stage)
    (96, 7, 10, 80, 2),
    (200, 7, 3, 190, 2),
    (45, 5, 44, 1, 2),
    (33, 4, 5, 5, 2),
    (100, 6, 20, 75, 3),
    (70, 7, 30, 34, 1),
    (129, 3, 0, 128, 2),
    (60, 5, 52, 9, 3),
)


def blocks_to_link_cases(device):
    out = []
    for length, window, source, target, per_stage in _HIER_LINES:
        label = (
            _line_label(length, window, source, target) + f", {per_stage} block{'s' if per_stage > 1 else ''} per stage"
        )
        kwargs = {} if per_stage == 2 else {"blocks_per_stage": per_stage}
        out.append(Case(label, (length, window, source, target), kwargs))
    return out


_COST_GRIDS = (
    # (grid, window, blocks, blocks_per_stage)
    ((23, 29, 24), 7, 4, 2),
    ((40, 12, 9), 5, 3, 2),
    ((17, 33, 10), 4, 6, 2),
    ((48, 32, 20), 7, 5, 3),
    ((9, 6, 14), 3, 7, 1),
    ((30, 21, 26), 6, 8, 2),
)


def hierarchical_cost_ratio_cases(device):
    out = []
    for grid, window, blocks, per_stage in _COST_GRIDS:
        note = " (the lesson's brain)" if grid == (23, 29, 24) else ""
        kwargs = {} if per_stage == 2 else {"blocks_per_stage": per_stage}
        out.append(
            Case(
                f"grid {grid}{note}, window {window}, {blocks} blocks, {per_stage} per stage",
                (grid, window, blocks),
                kwargs,
            )
        )
    return out


# ----------------------------------------------------------------------------- line simulations (bug variants)


def _window_of(p, length, window, shifted, shift_of=lambda w: w // 2):
    """(first, last) token of the window holding token ``p`` on a line, as Swin pads, rolls and masks it."""
    w = min(window, length)
    s = shift_of(window) if (shifted and length > window) else 0
    if s == 0:
        first = (p // w) * w
    elif p < s:
        return 0, s - 1
    else:
        first = s + ((p - s) // w) * w
    return first, min(first + w, length) - 1


def _spread(lo, hi, length, window, shifted, **kw):
    return _window_of(lo, length, window, shifted, **kw)[0], _window_of(hi, length, window, shifted, **kw)[1]


def _flat_layers(length, window, source, target, first_shifted=False, shift_of=lambda w: w // 2, limit=2000):
    if source == target:
        return 0
    lo = hi = target
    for layer in range(1, limit):
        shifted = (layer % 2 == 0) != first_shifted
        lo, hi = _spread(lo, hi, length, window, shifted, shift_of=shift_of)
        if lo <= source <= hi:
            return layer
    return None


def _wrapped_layers(length, window, source, target, limit=2000):
    """Layers when the shifted layer's wrapped-around window is NOT split by the mask (a cyclic line)."""
    if source == target:
        return 0
    w = min(window, length)
    s = window // 2 if length > window else 0
    padded = -(-length // w) * w
    reach = {target}
    for layer in range(1, limit):
        shift = s if layer % 2 == 0 else 0
        ids = [((p - shift) % padded) // w for p in range(length)]
        hit = {ids[p] for p in reach}
        reach = {p for p in range(length) if ids[p] in hit}
        if source in reach:
            return layer
    return None


def _hier_blocks(
    length, window, source, target, per_stage=2, merge=True, coarsen_source=True, early=False, global_parity=False
):
    if source == target:
        return 0
    lo = hi = target
    stage = 0
    for block in range(1, 1000):
        wanted = (block // per_stage) if early else (block - 1) // per_stage
        while merge and stage < wanted:
            lo, hi, length, stage = lo // 2, hi // 2, -(-length // 2), stage + 1
        index = block - 1 if global_parity else (block - 1) % per_stage
        lo, hi = _spread(lo, hi, length, window, shifted=index % 2 == 1)
        here = source >> stage if coarsen_source else source
        if lo <= here <= hi:
            return block
    return None


def _line_variant(fn):
    def variants(case):
        yield fn(*case.args, **case.kwargs), {}

    return variants


def _per_stage(case) -> int:
    return case.kwargs.get("blocks_per_stage", 2)


def _hier_variant(**how):
    def variants(case):
        yield _hier_blocks(*case.args, _per_stage(case), **how), {}

    return variants


def _two_per_window(case):
    _, window, source, target = case.args[:4]
    d = abs(target - source)
    for guess in (round(2 * d / window), 2 * math.ceil(d / window), 2 * (d // window), math.ceil(2 * d / window)):
        yield guess, {}


def _off_by_one(reference):
    def variants(case):
        right = reference(*case.args, **case.kwargs)
        yield right - 1, {}
        yield right + 1, {}

    return variants


def _hier_cost(grid, window, blocks, per_stage=2, shrink=True, floor=False, early=False, merge=True):
    grids = [tuple(grid)]
    total = 0
    for block in range(1, blocks + 1):
        stage = (block // per_stage) if early else (block - 1) // per_stage
        stage = stage if merge else 0
        while len(grids) <= stage:
            grids.append(tuple(max(g // 2, 1) if floor else -(-g // 2) for g in grids[-1]))
        here = grids[stage]
        use = tuple(min(window, g) for g in here) if shrink else (window,) * len(here)
        total += cost.windowed_attention_scores(here, use)
    return total


def _cost_variant(flip=False, blocks_factor=False, **how):
    def variants(case):
        grid, window, blocks = case.args
        per_stage = case.kwargs.get("blocks_per_stage", 2)
        hier = _hier_cost(grid, window, blocks, per_stage, **how)
        global_ = cost.num_tokens(grid) ** 2 * (blocks if blocks_factor else 1)
        yield (hier / global_ if flip else global_ / hier), {}

    return variants


def _tiled(case):
    field, fine = case.args
    out = field.repeat(*([2] * field.ndim))
    yield out[tuple(slice(0, n) for n in fine)], {}


def _interleave(field, axes):
    out = field
    for axis in axes:
        out = out.repeat_interleave(2, dim=axis)
    return out


def _not_cropped(case):
    field, _ = case.args
    yield _interleave(field, range(field.ndim)), {}


def _cropped_at_start(case):
    field, fine = case.args
    out = _interleave(field, range(field.ndim))
    yield out[tuple(slice(out.shape[i] - n, None) for i, n in enumerate(fine))], {}


def _not_every_axis(case):
    field, fine = case.args
    for skipped in range(field.ndim):
        axes = [a for a in range(field.ndim) if a != skipped]
        out = _interleave(field, axes)
        yield out[tuple(slice(0, n) if i != skipped else slice(None) for i, n in enumerate(fine))], {"axis": skipped}


# ----------------------------------------------------------------------------- bugs

COARSE_TO_FINE_BUGS = [
    Bug(
        "tiled_not_interleaved",
        "the coarse set was tiled (repeat: the whole grid twice) instead of repeating each entry twice in place "
        "(repeat_interleave): coarse token c must cover fine tokens 2c and 2c + 1.",
        "out = out.repeat_interleave(2, dim=axis) for every axis.",
        _tiled,
    ),
    Bug(
        "not_cropped",
        "the result was not cut to fine_shape: an odd extent was padded by the merge, and the padding holds no token.",
        "end with out[tuple(slice(0, n) for n in fine_shape)].",
        _not_cropped,
    ),
    Bug(
        "cropped_at_start",
        "the padding was cut from the start of an axis; the merge pads at the END of each axis, so keep the first "
        "n entries.",
        "out[tuple(slice(0, n) for n in fine_shape)].",
        _cropped_at_start,
    ),
    Bug(
        "not_every_axis",
        "axis {axis} was not repeated: every axis of the grid (2 in 2D, 3 in 3D) must be, since a merge halves "
        "each one.",
        "loop over range(field.ndim), not over a fixed number of axes.",
        _not_every_axis,
    ),
]

# Integer answers make bugs coincide; the order puts each bug among the first two named where it first shows.
LAYERS_BUGS = [
    Bug(
        "rule_of_thumb",
        "your count is what the rule of thumb 'two layers per window of distance' gives; the real count depends "
        "on where "
        "the two tokens sit inside their windows.",
        "simulate the layers: the set of tokens that have the target's information grows to whole windows each layer.",
        _two_per_window,
    ),
    Bug(
        "wrapped_window_joined",
        "the wrapped-around window of a shifted layer was treated as one window: the cyclic shift brings the end "
        "of the "
        "line next to its start, but the mask keeps those regions apart, so information never jumps from one end to "
        "the other.",
        "in a shifted layer the windows are [0, s), [s, s + w), [s + w, s + 2w), ..., the last one cut at the "
        "line's end.",
        _line_variant(_wrapped_layers),
    ),
    Bug(
        "source_and_target_swapped",
        "you followed the source's information to the target; the question is when the TARGET's information has "
        "reached the source. The answer is not symmetric: the windows of layer 1 are regular, those of layer 2 "
        "shifted.",
        "start the set at the target, spread it layer by layer (1: regular, 2: shifted, ...), and stop when it holds "
        "the source.",
        lambda case: iter([(layers_to_link(case.args[0], case.args[1], case.args[3], case.args[2]), {})]),
    ),
    Bug(
        "shifted_first",
        "layer 1 used shifted windows; a Swin stage starts with regular windows (layer 1), then shifted (layer 2), "
        "and so on.",
        "layer L is shifted when L is even.",
        _line_variant(lambda *a: _flat_layers(*a, first_shifted=True)),
    ),
    Bug(
        "off_by_one",
        "your count is one layer off on this line (0 layers when source = target, 1 when they share a regular window).",
        "count the layers applied before the set first holds the source.",
        _off_by_one(layers_to_link),
    ),
]

BLOCKS_BUGS = [
    Bug(
        "no_merging",
        "the tokens were never merged: this is the count of one resolution. After every blocks_per_stage blocks a "
        "patch merge halves the line (token t becomes t // 2).",
        "after the last block of a stage: lo, hi = lo // 2, hi // 2 and length = ceil(length / 2).",
        _hier_variant(merge=False),
    ),
    Bug(
        "source_not_merged",
        "after a merge the source was looked for at its old coordinate; at stage s it lives in token source // 2**s.",
        "compare with source >> stage (source // 2**stage).",
        _hier_variant(coarsen_source=False),
    ),
    Bug(
        "merged_one_block_early",
        "the merge came one block early: block b belongs to stage (b - 1) // blocks_per_stage, so the first stage "
        "runs all its blocks before merging.",
        "stage of block b (1-based) = (b - 1) // blocks_per_stage.",
        _hier_variant(early=True),
    ),
    Bug(
        "shift_pattern_across_stages",
        "the regular/shifted pattern ran on across stages; every stage starts again with regular windows "
        "(block index inside the stage even: regular, odd: shifted).",
        "shifted = ((b - 1) % blocks_per_stage) % 2 == 1.",
        _hier_variant(global_parity=True),
    ),
    Bug(
        "source_and_target_swapped",
        "you followed the source's information to the target; the question is when the TARGET's information has "
        "reached the source.",
        "start the set at the target.",
        lambda case: iter(
            [(blocks_to_link(case.args[0], case.args[1], case.args[3], case.args[2], _per_stage(case)), {})]
        ),
    ),
    Bug(
        "off_by_one",
        "your count is one block off on this line (0 blocks when source = target, 1 when they share a window).",
        "count the blocks applied before the set first holds the source's token.",
        _off_by_one(blocks_to_link),
    ),
]

COST_BUGS = [
    Bug(
        "inverted",
        "your ratio is upside down: the question is how many times MORE scores one global layer computes.",
        "global scores / hierarchical scores.",
        _cost_variant(flip=True),
    ),
    Bug(
        "no_merging",
        "every block was costed on the full grid; after every blocks_per_stage blocks a patch merge halves each "
        "extent (rounded up), and the windows of the next stage cover the smaller grid.",
        "the stage of block b is (b - 1) // blocks_per_stage; its grid is halved (ceil) that many times.",
        _cost_variant(merge=False),
    ),
    Bug(
        "window_not_shrunk",
        "on a stage whose grid is smaller than the window along an axis, the window was not shrunk to the grid "
        "(Swin's rule), so padding was counted as tokens.",
        "use min(window, extent) along each axis.",
        _cost_variant(shrink=False),
    ),
    Bug(
        "floor_halving",
        "the grids were halved rounding down; a merge pads an odd extent, so it halves rounding UP.",
        "next extent = -(-extent // 2).",
        _cost_variant(floor=True),
    ),
    Bug(
        "merged_one_block_early",
        "the merge came one block early: block b belongs to stage (b - 1) // blocks_per_stage.",
        "stage of block b (1-based) = (b - 1) // blocks_per_stage.",
        _cost_variant(early=True),
    ),
    Bug(
        "global_times_blocks",
        "the global side was multiplied by the number of blocks; the question compares ONE global layer.",
        "global scores = N^2 with N the number of tokens of the grid.",
        _cost_variant(blocks_factor=True),
    ),
]

# ----------------------------------------------------------------------------- ruled out

COARSE_TO_FINE_RULED_OUT = (RuledOut("minattn.apps.long_range.coarse_to_fine", (lr.coarse_to_fine,)),)
LINK_RULED_OUT = (
    graders_own(layers_to_link, blocks_to_link),
    RuledOut(
        "minattn.apps.long_range's counts (layers_to_link, hierarchical_layers_to_link, hierarchical_receptive_field)",
        (lr.layers_to_link, lr.hierarchical_layers_to_link, lr.hierarchical_receptive_field),
    ),
    RuledOut(
        "minattn.receptive_field (receptive_field, receptive_field_growth, propagate, layers_to_cover)",
        (rf.receptive_field, rf.receptive_field_growth, rf.propagate, rf.layers_to_cover),
    ),
)
COST_RULED_OUT = (RuledOut("minattn.apps.long_range.hierarchical_cost", (lr.hierarchical_cost,)),)

# ----------------------------------------------------------------------------- concept questions of lesson 14

CONCEPT_EXERCISES = [
    ChoiceExercise(
        "concept_regular_windows_only",
        "which tokens have reached token 10 after 10 layers of regular 7-token windows, never shifted",
        {
            "a": "tokens 7 to 13 only, however many layers are stacked",
            "b": "tokens 0 to 20 after two layers, and one more window on each side for every further layer",
            "c": "all 96 tokens: enough layers always carry information along the whole line",
            "d": "only token 10 itself: windows that are not shifted mix nothing",
        },
        "a",
        why={
            "b": "a layer lets a token take in the tokens of its own window; when the next layer uses the same "
            "windows, what can those tokens pass on that token 10 has not had already?",
            "c": "depth alone spreads nothing: in each layer a token only takes in the tokens that share its window "
            "in that layer.",
            "d": "a regular window layer is ordinary attention inside each window: every token of a window attends "
            "to every token of that window.",
        },
    ),
    ChoiceExercise(
        "concept_layers_per_window",
        "layers of alternating regular and shifted 7-token windows that link a source at token 3 to a target "
        "7k tokens further along the line (k >= 1)",
        {
            "a": "k: every layer carries the information one more window towards the source",
            "b": "2k",
            "c": "about log₂(k) + 1: every shifted layer doubles the receptive field",
            "d": "1: the shifted windows join neighbouring windows, so one shifted layer is enough",
        },
        "b",
        why={
            "a": "the field gains ground at every layer, but not a whole window towards the source each time: "
            "follow the edge on the source's side through one regular and one shifted layer.",
            "c": "a window layer adds at most a fixed number of tokens at the edges of the field, whatever its "
            "size, so no layer at one resolution doubles it.",
            "d": "a shifted window straddles only two neighbouring regular windows; tokens several windows apart "
            "never share a window in any single layer.",
        },
    ),
    ChoiceExercise(
        "concept_box_depth",
        "layers needed in 3D when the same two tokens need 4 (along D), 1 (H) and 7 (W) layers on lines alone",
        {
            "a": "12, the sum: the field crosses one axis after the other",
            "b": "7, the largest of the three",
            "c": "1: once the two tokens share a window along one axis, they are linked",
            "d": "8, from the straight-line combination √(4² + 1² + 7²)",
        },
        "b",
        why={
            "a": "a window layer works along all three axes at once: the field grows along D, H and W in the "
            "same layers.",
            "c": "sharing a window means sharing it along D and along H and along W: the mask allows a pair only "
            "when every axis allows it.",
            "d": "layer counts are not lengths along perpendicular directions, so Pythagoras does not combine "
            "them; picture the field after a given number of layers, one interval per axis.",
        },
    ),
    ChoiceExercise(
        "concept_hierarchy_logarithmic",
        "why a patch merge after every two blocks makes the depth grow with the logarithm of the distance",
        {
            "a": "each merge halves every distance measured in tokens while the window keeps its 7 tokens, so each "
            "stage reaches twice as far in the input grid as the one before",
            "b": "shifted windows double the receptive field at every layer; the merges only save computation",
            "c": "the windows grow from stage to stage: 7, then 14, then 28 tokens",
            "d": "a merge concatenates 8 tokens into one with more channels, so each token carries more "
            "information through every layer",
        },
        "a",
        why={
            "b": "at one resolution the depth grows linearly with the distance (your layers_to_link): shifted "
            "windows alone add a fixed amount per layer.",
            "c": "every stage uses windows of the same number of tokens (fewer only where the grid is smaller); "
            "look at what one token of a later stage stands for.",
            "d": "channels set how much a token can hold, not how far information travels in a layer: that is "
            "set by which tokens share a window.",
        },
    ),
]


EXERCISES = [
    FunctionExercise(
        "coarse_to_fine",
        coarse_to_fine,
        coarse_to_fine_cases,
        "mask",
        "coarse_to_fine(field, fine_shape) -> bool tensor of fine_shape",
        bugs=tuple(COARSE_TO_FINE_BUGS),
        ruled_out=COARSE_TO_FINE_RULED_OUT,
        building_blocks="repeat_interleave and slicing",
    ),
    FunctionExercise(
        "layers_to_link",
        layers_to_link,
        layers_to_link_cases,
        "number",
        "layers_to_link(length, window, source, target) -> int",
        bugs=tuple(LAYERS_BUGS),
        ruled_out=LINK_RULED_OUT,
        unit=None,
        building_blocks="a loop that grows the set of tokens holding the target's information, window by window",
    ),
    FunctionExercise(
        "blocks_to_link",
        blocks_to_link,
        blocks_to_link_cases,
        "number",
        "blocks_to_link(length, window, source, target, blocks_per_stage=2) -> int",
        bugs=tuple(BLOCKS_BUGS),
        ruled_out=LINK_RULED_OUT,
        unit=None,
        building_blocks="your spreading step from layers_to_link plus the merge (t // 2) between stages",
    ),
    FunctionExercise(
        "hierarchical_cost_ratio",
        hierarchical_cost_ratio,
        hierarchical_cost_ratio_cases,
        "number",
        "hierarchical_cost_ratio(grid, window, blocks, blocks_per_stage=2) -> float",
        bugs=tuple(COST_BUGS),
        ruled_out=COST_RULED_OUT,
        unit=None,
        building_blocks="cost.num_tokens, cost.attention_scores and cost.windowed_attention_scores on each "
        "stage's grid",
    ),
    *CONCEPT_EXERCISES,
]
