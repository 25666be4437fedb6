"""Learners' answers to the long-range exercises (exercises 14), right and wrong, with the verdict each must get."""

import math
import random

import pytest
import torch
import torch.nn.functional as F
from einops import repeat
from learners import Attempt, assert_verdict

from minattn import cost
from minattn.apps import long_range as lr
from minattn.grading.topics import long_range as topic
from minattn.receptive_field import receptive_field
from minattn.windows import effective_window_and_shift

# ----------------------------------------------------------------------------- 14.1 coarse to fine


def c2f_interleave(field, fine_shape):
    out = field
    for axis in range(field.ndim):
        out = out.repeat_interleave(2, dim=axis)
    return out[tuple(slice(0, n) for n in fine_shape)]


def c2f_gather(field, fine_shape):
    index = torch.meshgrid(*[torch.arange(n, device=field.device) // 2 for n in fine_shape], indexing="ij")
    return field[index]


def c2f_interpolate(field, fine_shape):
    x = field[None, None].float()
    up = F.interpolate(x, scale_factor=2, mode="nearest")[0, 0] > 0.5
    return up[tuple(slice(0, n) for n in fine_shape)]


def c2f_einops(field, fine_shape):
    if field.ndim == 2:
        out = repeat(field, "h w -> (h a) (w b)", a=2, b=2)
    else:
        out = repeat(field, "d h w -> (d a) (h b) (w c)", a=2, b=2, c=2)
    return out[tuple(slice(0, n) for n in fine_shape)].contiguous()


def c2f_tiled(field, fine_shape):
    return field.repeat(*([2] * field.ndim))[tuple(slice(0, n) for n in fine_shape)]


def c2f_uncropped(field, fine_shape):
    out = field
    for axis in range(field.ndim):
        out = out.repeat_interleave(2, dim=axis)
    return out


def c2f_crop_start(field, fine_shape):
    out = c2f_uncropped(field, fine_shape)
    return out[tuple(slice(size - n, None) for size, n in zip(out.shape, fine_shape))]


def c2f_two_axes(field, fine_shape):
    out = field.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)  # written for 2D grids only
    return out[tuple(slice(0, n) for n in fine_shape[:2])]


# ----------------------------------------------------------------------------- 14.2 layers on a line


def window_bounds(p, length, window, shifted):
    """First and last token of the window that holds token p."""
    w = min(window, length)
    s = window // 2 if shifted and length > window else 0
    if s and p < s:
        return 0, s - 1
    first = s + (p - s) // w * w
    return first, min(first + w, length) - 1


def layers_intervals(length, window, source, target):
    lo = hi = target
    layers = 0
    while not lo <= source <= hi:
        layers += 1
        shifted = layers % 2 == 0
        lo, hi = window_bounds(lo, length, window, shifted)[0], window_bounds(hi, length, window, shifted)[1]
    return layers


def window_ids(length, window, shifted):
    """Per token: an id shared exactly by the tokens of its window (and, after a shift, of its region)."""
    w = min(window, length)
    s = window // 2 if shifted and length > window else 0
    padded = -(-length // w) * w
    rolled = (torch.arange(length) - s) % padded
    region = (
        (rolled >= padded - w).long() + (rolled >= padded - s).long() if s else torch.zeros(length, dtype=torch.long)
    )
    return rolled // w * 3 + region


def layers_bool(length, window, source, target):
    reach = torch.zeros(length, dtype=torch.bool)
    reach[target] = True
    layers = 0
    while not reach[source]:
        layers += 1
        ids = window_ids(length, window, shifted=layers % 2 == 0)
        reach = torch.isin(ids, ids[reach])
    return layers


def layers_sets(length, window, source, target):
    reach, layers = {target}, 0
    while source not in reach:
        layers += 1
        ids = window_ids(length, window, shifted=layers % 2 == 0).tolist()
        hit = {ids[p] for p in reach}
        reach = {p for p in range(length) if ids[p] in hit}
    return layers


def layers_swapped(length, window, source, target):
    return layers_intervals(length, window, target, source)


def layers_shifted_first(length, window, source, target):
    lo = hi = target
    layers = 0
    while not lo <= source <= hi:
        layers += 1
        shifted = layers % 2 == 1
        lo, hi = window_bounds(lo, length, window, shifted)[0], window_bounds(hi, length, window, shifted)[1]
    return layers


def layers_rule_of_thumb(length, window, source, target):
    return round(2 * abs(target - source) / window)


def layers_cyclic(length, window, source, target):
    w = min(window, length)
    s = window // 2 if length > window else 0
    padded = -(-length // w) * w
    reach, layers = {target}, 0
    while source not in reach:
        layers += 1
        shift = s if layers % 2 == 0 else 0
        ids = [((p - shift) % padded) // w for p in range(length)]  # no mask: the wrapped window is one window
        hit = {ids[p] for p in reach}
        reach = {p for p in range(length) if ids[p] in hit}
    return layers


def layers_from_zero(length, window, source, target):
    return layers_intervals(length, window, source, target) - 1 if source != target else 0


def layers_by_package(length, window, source, target):
    return lr.layers_to_link((1, length), window, (0, source), (0, target))


def layers_by_receptive_field(length, window, source, target):
    layers = 0
    while not receptive_field((1, length), window, (0, source), layers)[0, target]:
        layers += 1
    return layers


# ----------------------------------------------------------------------------- 14.3 blocks with merging


def blocks_intervals(length, window, source, target, blocks_per_stage=2):
    lo = hi = target
    blocks, stage = 0, 0
    while not lo <= source >> stage <= hi:
        blocks += 1
        if (blocks - 1) // blocks_per_stage > stage:  # a patch merge before this block
            lo, hi, length, stage = lo // 2, hi // 2, -(-length // 2), stage + 1
        shifted = (blocks - 1) % blocks_per_stage % 2 == 1
        lo, hi = window_bounds(lo, length, window, shifted)[0], window_bounds(hi, length, window, shifted)[1]
    return blocks


def blocks_sets(length, window, source, target, blocks_per_stage=2):
    reach, blocks, stage = {target}, 0, 0
    while source // 2**stage not in reach:
        blocks += 1
        if (blocks - 1) // blocks_per_stage > stage:
            reach, length, stage = {p // 2 for p in reach}, math.ceil(length / 2), stage + 1
        ids = window_ids(length, window, shifted=(blocks - 1) % blocks_per_stage % 2 == 1).tolist()
        hit = {ids[p] for p in reach}
        reach = {p for p in range(length) if ids[p] in hit}
    return blocks


def blocks_no_merge(length, window, source, target, blocks_per_stage=2):
    lo = hi = target
    blocks = 0
    while not lo <= source <= hi:
        blocks += 1
        shifted = (blocks - 1) % blocks_per_stage % 2 == 1
        lo, hi = window_bounds(lo, length, window, shifted)[0], window_bounds(hi, length, window, shifted)[1]
    return blocks


def blocks_source_fine(length, window, source, target, blocks_per_stage=2):
    lo = hi = target
    blocks, stage = 0, 0
    while not lo <= source <= hi and blocks < 200:
        blocks += 1
        if (blocks - 1) // blocks_per_stage > stage:
            lo, hi, length, stage = lo // 2, hi // 2, -(-length // 2), stage + 1
        shifted = (blocks - 1) % blocks_per_stage % 2 == 1
        lo, hi = window_bounds(lo, length, window, shifted)[0], window_bounds(hi, length, window, shifted)[1]
    return blocks


def blocks_early_merge(length, window, source, target, blocks_per_stage=2):
    lo = hi = target
    blocks, stage = 0, 0
    while not lo <= source >> stage <= hi:
        blocks += 1
        if blocks // blocks_per_stage > stage:
            lo, hi, length, stage = lo // 2, hi // 2, -(-length // 2), stage + 1
        shifted = (blocks - 1) % blocks_per_stage % 2 == 1
        lo, hi = window_bounds(lo, length, window, shifted)[0], window_bounds(hi, length, window, shifted)[1]
    return blocks


def blocks_global_parity(length, window, source, target, blocks_per_stage=2):
    lo = hi = target
    blocks, stage = 0, 0
    while not lo <= source >> stage <= hi:
        blocks += 1
        if (blocks - 1) // blocks_per_stage > stage:
            lo, hi, length, stage = lo // 2, hi // 2, -(-length // 2), stage + 1
        shifted = blocks % 2 == 0
        lo, hi = window_bounds(lo, length, window, shifted)[0], window_bounds(hi, length, window, shifted)[1]
    return blocks


# ----------------------------------------------------------------------------- 14.4 the cost ratio


def stage_grid(grid, stage):
    for _ in range(stage):
        grid = tuple(-(-g // 2) for g in grid)
    return grid


def ratio_with_cost(grid, window, blocks, blocks_per_stage=2):
    total = 0
    for block in range(1, blocks + 1):
        here = stage_grid(grid, (block - 1) // blocks_per_stage)
        total += cost.windowed_attention_scores(here, tuple(min(window, g) for g in here))
    return cost.attention_scores(cost.num_tokens(grid)) / total


def ratio_arithmetic(grid, window, blocks, blocks_per_stage=2):
    total = 0
    for block in range(blocks):
        here = stage_grid(grid, block // blocks_per_stage)
        w = [min(window, g) for g in here]
        total += math.prod(-(-g // x) for g, x in zip(here, w)) * math.prod(w) ** 2
    return math.prod(grid) ** 2 / total


def ratio_package_helpers(grid, window, blocks, blocks_per_stage=2):
    grids = lr.stage_grids(grid, (blocks - 1) // blocks_per_stage + 1)
    total = 0
    for block in range(blocks):
        here = grids[block // blocks_per_stage]
        use, _ = effective_window_and_shift(here, window, 0)
        total += cost.windowed_attention_scores(here, use)
    return float(cost.num_tokens(grid) ** 2) / float(total)


def ratio_inverted(grid, window, blocks, blocks_per_stage=2):
    return 1 / ratio_with_cost(grid, window, blocks, blocks_per_stage)


def ratio_no_merge(grid, window, blocks, blocks_per_stage=2):
    return cost.attention_scores(cost.num_tokens(grid)) / (blocks * cost.windowed_attention_scores(grid, window))


def ratio_no_shrink(grid, window, blocks, blocks_per_stage=2):
    total = sum(
        cost.windowed_attention_scores(stage_grid(grid, (b - 1) // blocks_per_stage), window)
        for b in range(1, blocks + 1)
    )
    return cost.attention_scores(cost.num_tokens(grid)) / total


def ratio_floor(grid, window, blocks, blocks_per_stage=2):
    total = 0
    for block in range(1, blocks + 1):
        here = tuple(grid)
        for _ in range((block - 1) // blocks_per_stage):
            here = tuple(max(g // 2, 1) for g in here)
        total += cost.windowed_attention_scores(here, tuple(min(window, g) for g in here))
    return cost.attention_scores(cost.num_tokens(grid)) / total


def ratio_early(grid, window, blocks, blocks_per_stage=2):
    total = 0
    for block in range(1, blocks + 1):
        here = stage_grid(grid, block // blocks_per_stage)
        total += cost.windowed_attention_scores(here, tuple(min(window, g) for g in here))
    return cost.attention_scores(cost.num_tokens(grid)) / total


def ratio_by_package(grid, window, blocks, blocks_per_stage=2):
    return cost.attention_scores(cost.num_tokens(grid)) / lr.hierarchical_cost(grid, window, blocks, blocks_per_stage)


ATTEMPTS = [
    # 14.1
    Attempt("coarse_to_fine", "repeat_interleave, then crop", c2f_interleave, "right"),
    Attempt("coarse_to_fine", "index with arange // 2", c2f_gather, "right"),
    Attempt("coarse_to_fine", "nearest interpolation of a float copy", c2f_interpolate, "right"),
    Attempt("coarse_to_fine", "einops repeat", c2f_einops, "right"),
    Attempt("coarse_to_fine", "tiled with repeat", c2f_tiled, "bug", names="tiled_not_interleaved"),
    Attempt("coarse_to_fine", "not cropped", c2f_uncropped, "bug", names="not_cropped"),
    Attempt("coarse_to_fine", "cropped at the start", c2f_crop_start, "bug", names="cropped_at_start"),
    Attempt("coarse_to_fine", "two axes only", c2f_two_axes, "bug", names="not_every_axis"),
    Attempt(
        "coarse_to_fine", "returns 0/1 integers", lambda f, s: c2f_interleave(f, s).long(), "wrong type", says="boolean"
    ),
    Attempt(
        "coarse_to_fine", "the package's coarse_to_fine", lr.coarse_to_fine, "shortcut", "ruled_out", "coarse_to_fine"
    ),
    Attempt(
        "coarse_to_fine", "everything True", lambda f, s: torch.ones(s, dtype=torch.bool, device=f.device), "hard-coded"
    ),
    # 14.2
    Attempt("layers_to_link", "intervals", layers_intervals, "right"),
    Attempt("layers_to_link", "boolean tensors and window ids", layers_bool, "right"),
    Attempt("layers_to_link", "Python sets", layers_sets, "right"),
    Attempt("layers_to_link", "source and target swapped", layers_swapped, "bug", names="source_and_target_swapped"),
    Attempt("layers_to_link", "layer 1 shifted", layers_shifted_first, "bug", names="shifted_first"),
    Attempt("layers_to_link", "two layers per window", layers_rule_of_thumb, "bug", names="rule_of_thumb"),
    Attempt("layers_to_link", "no mask on the wrapped window", layers_cyclic, "bug", names="wrapped_window_joined"),
    Attempt("layers_to_link", "counts from 0", layers_from_zero, "bug", names="off_by_one"),
    Attempt("layers_to_link", "the lesson's 20 typed in", lambda *args: 20, "hard-coded"),
    Attempt(
        "layers_to_link", "the package's layers_to_link", layers_by_package, "shortcut", "ruled_out", "layers_to_link"
    ),
    Attempt(
        "layers_to_link",
        "minattn's receptive_field",
        layers_by_receptive_field,
        "shortcut",
        "ruled_out",
        "receptive_field",
    ),
    # 14.3
    Attempt("blocks_to_link", "intervals", blocks_intervals, "right"),
    Attempt("blocks_to_link", "Python sets", blocks_sets, "right"),
    Attempt("blocks_to_link", "never merged", blocks_no_merge, "bug", names="no_merging"),
    Attempt("blocks_to_link", "source not merged", blocks_source_fine, "bug", names="source_not_merged"),
    Attempt("blocks_to_link", "merge one block early", blocks_early_merge, "bug", names="merged_one_block_early"),
    Attempt(
        "blocks_to_link",
        "regular/shifted across stages",
        blocks_global_parity,
        "bug",
        names="shift_pattern_across_stages",
    ),
    Attempt(
        "blocks_to_link",
        "no blocks_per_stage parameter",
        lambda length, window, source, target: blocks_intervals(length, window, source, target),
        "bug",
        names="missing_parameter",
    ),
    Attempt("blocks_to_link", "the lesson's 7 typed in", lambda *args, **kwargs: 7, "hard-coded"),
    Attempt(
        "blocks_to_link",
        "the package's hierarchical_layers_to_link",
        lambda length, window, source, target, blocks_per_stage=2: lr.hierarchical_layers_to_link(
            (1, length), window, (0, source), (0, target), blocks_per_stage
        ),
        "shortcut",
        "ruled_out",
        "hierarchical_layers_to_link",
    ),
    # 14.4
    Attempt("hierarchical_cost_ratio", "cost helpers per block", ratio_with_cost, "right"),
    Attempt("hierarchical_cost_ratio", "plain arithmetic", ratio_arithmetic, "right"),
    Attempt("hierarchical_cost_ratio", "stage_grids and effective_window_and_shift", ratio_package_helpers, "right"),
    Attempt("hierarchical_cost_ratio", "upside down", ratio_inverted, "bug", names="inverted"),
    Attempt("hierarchical_cost_ratio", "no merging", ratio_no_merge, "bug", names="no_merging"),
    Attempt("hierarchical_cost_ratio", "window not shrunk", ratio_no_shrink, "bug", names="window_not_shrunk"),
    Attempt("hierarchical_cost_ratio", "halved rounding down", ratio_floor, "bug", names="floor_halving"),
    Attempt("hierarchical_cost_ratio", "merged one block early", ratio_early, "bug", names="merged_one_block_early"),
    Attempt(
        "hierarchical_cost_ratio",
        "the lesson's ratio typed in",
        lambda *args, **kwargs: 256_256_064 / 21_647_416,
        "hard-coded",
    ),
    Attempt(
        "hierarchical_cost_ratio",
        "the package's hierarchical_cost",
        ratio_by_package,
        "shortcut",
        "ruled_out",
        "hierarchical_cost",
    ),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)


def test_interval_references_match_the_package():
    """The grader's interval counts equal minattn's mask-based ones on every hidden line and on random lines."""
    rng = random.Random(14)
    lines = [c.args for c in topic.layers_to_link_cases(None)]
    lines += [
        (n, rng.randint(2, 9), rng.randrange(n), rng.randrange(n)) for n in (rng.randint(2, 60) for _ in range(40))
    ]
    for length, window, source, target in lines:
        assert topic.layers_to_link(length, window, source, target) == lr.layers_to_link(
            (1, length), window, (0, source), (0, target)
        ), (length, window, source, target)
    hier = [(*c.args, c.kwargs.get("blocks_per_stage", 2)) for c in topic.blocks_to_link_cases(None)]
    hier += [(*line, rng.choice([1, 2, 3])) for line in lines[-40:]]
    for length, window, source, target, per_stage in hier:
        assert topic.blocks_to_link(length, window, source, target, per_stage) == lr.hierarchical_layers_to_link(
            (1, length), window, (0, source), (0, target), blocks_per_stage=per_stage
        ), (length, window, source, target, per_stage)
