"""The Swin block (lesson 08): window attention and the block written out, and what a block holds.

Function exercises: ``window_attention_forward(attn, x, mask=None)`` (what ``minattn.WindowAttention``
computes, from its parts) and ``swin_block_forward(block, x)`` (what ``minattn.SwinBlock`` computes),
graded on hidden modules: windows of unequal sides, 1 to 4 heads, regular and shifted blocks, masks,
several volumes, float32 and float64. Value exercises: ``swin_block_params_c48_h3_w7`` and
``merged_tokens_32x64x64``, whose answers are computed here from the package. Concept questions
(multiple choice, :data:`CONCEPT_EXERCISES`): ``concept_window_mask_order``, ``concept_where_bias_enters``,
``concept_why_roll_back``, ``concept_pre_norm`` and ``concept_patch_merging``.

The hidden modules are built once per device and dtype, with their own seed (the learner's random
numbers do not move), and a bias table and LayerNorms far from their initial values, so that a missing
bias or a swapped norm shows.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from ... import cost
from ..._fused import ChunkedWindowAttention, FusedWindowAttention
from ...softmax import softmax
from ...swin import SwinBlock, SwinStage, shifted_window_attention
from ...window_attention import WindowAttention
from ...windows import cyclic_shift, shifted_window_mask, window_partition, window_reverse
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
    random_mask,
)
from .heads import named, seeded_build

# ----------------------------------------------------------------------------- references


def window_attention_forward(attn: WindowAttention, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """What ``attn(x, mask=mask)`` computes: window attention with relative position bias.

    Args:
        attn: a ``minattn.WindowAttention`` whose parts are used (``qkv``, ``proj``, ``num_heads``,
            ``position_bias``).
        x: ``(B * nW, N, C)``, the windows of B volumes, nW windows per volume, volume by volume.
        mask: None, or boolean ``(nW, N, N)``, True = may attend; window ``i`` of every volume gets
            ``mask[i]``.

    Returns:
        ``(B * nW, N, C)`` in ``x``'s dtype.
    """
    return attn(x, mask=mask)


def swin_block_forward(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """What ``block(x)`` computes for a ``minattn.SwinBlock``: ``(B, D, H, W, C)`` -> same shape."""
    return block(x)


# ----------------------------------------------------------------------------- hidden modules

_MODULES: dict = {}


def _randomise(module, seed: int):
    """Give the bias table and the LayerNorms values far from their initial ones (std 0.5 and 1 +- 0.3)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("position_bias.table"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif "norm" in name and name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return module


def _module(kind: str, seed: int, device, dtype, **config):
    """A hidden WindowAttention or SwinBlock, built once per (kind, seed, device, dtype)."""
    dtype = case_dtype(dtype, device)
    key = (kind, seed, str(device), dtype)
    if key not in _MODULES:
        if kind == "attn":
            text = (
                f"WindowAttention(dim={config['dim']}, window_size={config['window_size']}, "
                f"num_heads={config['num_heads']}{'' if config.get('qkv_bias', True) else ', qkv_bias=False'})"
            )
            module = seeded_build(seed, lambda: WindowAttention(**config))
        else:
            module = seeded_build(seed, lambda: SwinBlock(**config))
            text = (
                f"SwinBlock(dim={config['dim']}, heads={config['num_heads']}, window={module.window_size}, "
                f"shift={module.shift_size})"
            )
        # Inference only: no autograd graphs, so the hidden cases stay quick.
        module = _randomise(module, seed).to(device=device, dtype=dtype).requires_grad_(False)
        _MODULES[key] = named(module, text)
    return _MODULES[key]


def _grid(g, shape, dtype, device):
    return (torch.randn(shape, generator=g, dtype=F64)).to(device=device, dtype=case_dtype(dtype, device))


def window_attention_cases(device):
    g = torch.Generator().manual_seed(81)

    def attn(seed, dtype, **config):
        return _module("attn", seed, device, dtype, **config)

    def shifted(volumes, grid, window, shift, dim, dtype):
        """The windows of shifted volumes and their mask, as a Swin block makes them."""
        x = cyclic_shift(_grid(g, (volumes, *grid, dim), dtype, device), shift)
        return window_partition(x, window), shifted_window_mask(grid, window, shift, device=device)

    windows_b, mask_b = shifted(2, (2, 4, 6), (1, 2, 3), (0, 1, 1), 10, F64)
    windows_e, mask_e = shifted(2, (4, 6, 4), (2, 3, 2), (1, 1, 1), 15, F32)
    return [
        Case(
            "5 windows of (2, 3, 1) = 6 tokens, 12 channels, 3 heads, no mask (float64)",
            (attn(1, F64, dim=12, window_size=(2, 3, 1), num_heads=3), _grid(g, (5, 6, 12), F64, device)),
            {"mask": None},
        ),
        Case(
            "2 volumes x 8 windows of (1, 2, 3), 10 channels, 2 heads, shifted-window mask (8, 6, 6) (float64)",
            (attn(2, F64, dim=10, window_size=(1, 2, 3), num_heads=2), windows_b),
            {"mask": mask_b},
        ),
        Case(
            "3 volumes x 4 windows of (3, 2, 2) = 12 tokens, 8 channels, 4 heads of 2, random mask (4, 12, 12) "
            "(float32)",
            (attn(3, F32, dim=8, window_size=(3, 2, 2), num_heads=4), _grid(g, (12, 12, 8), F32, device)),
            {"mask": random_mask(g, (4, 12, 12), device)},
        ),
        Case(
            "7 windows of (2, 2, 3), 5 channels, a single head, no mask (float32)",
            (attn(4, F32, dim=5, window_size=(2, 2, 3), num_heads=1), _grid(g, (7, 12, 5), F32, device)),
            {"mask": None},
        ),
        Case(
            "2 volumes x 8 windows of (2, 3, 2), 15 channels, 3 heads, qkv without bias, shifted-window mask "
            "(float32)",
            (attn(5, F32, dim=15, window_size=(2, 3, 2), num_heads=3, qkv_bias=False), windows_e),
            {"mask": mask_e},
        ),
        Case(
            "3 volumes x 2 windows of (2, 2, 2), 12 channels, 2 heads of 6, random mask (2, 8, 8) (float64)",
            (attn(6, F64, dim=12, window_size=(2, 2, 2), num_heads=2), _grid(g, (6, 8, 12), F64, device)),
            {"mask": random_mask(g, (2, 8, 8), device)},
        ),
    ]


def swin_block_cases(device):
    g = torch.Generator().manual_seed(82)

    def block(seed, dtype, **config):
        return _module("block", seed, device, dtype, **config)

    return [
        Case(
            "regular block (shift 0), 3 heads, window (2, 3, 4), grid B=2, (4, 6, 8), C=12 (float64)",
            (
                block(11, F64, dim=12, num_heads=3, window_size=(2, 3, 4), shift_size=0, mlp_ratio=2.0),
                _grid(g, (2, 4, 6, 8, 12), F64, device),
            ),
        ),
        Case(
            "shifted block, shift (1, 1, 2), 3 heads, window (2, 3, 4), grid B=2, (4, 6, 8), C=12 (float64)",
            (
                block(12, F64, dim=12, num_heads=3, window_size=(2, 3, 4), shift_size=(1, 1, 2), mlp_ratio=2.0),
                _grid(g, (2, 4, 6, 8, 12), F64, device),
            ),
        ),
        Case(
            "shifted block, shift (1, 1, 1), 2 heads, window (3, 2, 2), grid B=3, (6, 4, 8), C=10 (float32)",
            (
                block(13, F32, dim=10, num_heads=2, window_size=(3, 2, 2), shift_size=(1, 1, 1), mlp_ratio=3.0),
                _grid(g, (3, 6, 4, 8, 10), F32, device),
            ),
        ),
        Case(
            "regular block, a single head, window (2, 2, 3), grid B=2, (6, 4, 9), C=5 (float32)",
            (
                block(14, F32, dim=5, num_heads=1, window_size=(2, 2, 3), shift_size=0, mlp_ratio=2.0),
                _grid(g, (2, 6, 4, 9, 5), F32, device),
            ),
        ),
        Case(
            "shifted block, shift (1, 2, 1) on window (2, 4, 3), 4 heads, grid B=3, (4, 12, 6), C=8 (float64)",
            (
                block(15, F64, dim=8, num_heads=4, window_size=(2, 4, 3), shift_size=(1, 2, 1), mlp_ratio=2.0),
                _grid(g, (3, 4, 12, 6, 8), F64, device),
            ),
        ),
        Case(
            "shifted along H and W only, shift (0, 1, 1), window (3, 2, 2), 3 heads, grid B=2, (6, 4, 8), C=9 "
            "(float32)",
            (
                block(16, F32, dim=9, num_heads=3, window_size=(3, 2, 2), shift_size=(0, 1, 1), mlp_ratio=2.0),
                _grid(g, (2, 6, 4, 8, 9), F32, device),
            ),
        ),
    ]


# ----------------------------------------------------------------------------- window attention, with switches


def _attention(
    attn,
    x,
    mask=None,
    *,
    qkv="three h d",
    scale="head",
    bias="right",
    mask_mode="right",
    empty_rows="zeros",
    softmax_dim=-1,
    proj=True,
):
    """Window attention written out, each switch one learner's slip (the defaults give the right answer)."""
    windows, n, c = x.shape
    heads = attn.num_heads
    q, k, v = rearrange(attn.qkv(x), f"b n ({qkv}) -> three b h n d", three=3, h=heads)
    factor = {"head": (c // heads) ** -0.5, "model": c**-0.5, "none": 1.0}[scale]
    scores = (q * factor) @ k.transpose(-2, -1)  # (B * nW, h, N, N)
    table, index = attn.position_bias.table, attn.position_bias.index
    looked_up = table[index.reshape(-1)].reshape(n, n, heads)
    if bias == "right":
        scores = scores + looked_up.permute(2, 0, 1)
    elif bias == "transposed":
        scores = scores + looked_up.permute(2, 1, 0)
    elif bias == "reshaped":
        scores = scores + looked_up.reshape(heads, n, n)
    if mask is not None and mask_mode != "ignored":
        per_volume = mask.shape[0]
        if mask_mode == "interleaved":
            m = mask.repeat_interleave(windows // per_volume, dim=0)
        else:
            m = mask.repeat(windows // per_volume, 1, 1)
        if mask_mode == "inverted":
            m = ~m
        scores = scores.masked_fill(~m[:, None], float("-inf"))
    weights = softmax(scores, dim=softmax_dim) if empty_rows == "zeros" else torch.softmax(scores, dim=softmax_dim)
    out = rearrange(weights @ v, "b h n d -> b n (h d)")
    return attn.proj(out) if proj else out


def _attention_variant(detail=None, **switches):
    def variants(case):
        attn, x = case.args
        yield _attention(attn, x, case.kwargs.get("mask"), **switches), dict(detail or {})

    return variants


def _inverted_mask(case):
    attn, x = case.args
    if case.kwargs.get("mask") is None:
        return
    for empty_rows in ("zeros", "nan"):
        yield _attention(attn, x, case.kwargs["mask"], mask_mode="inverted", empty_rows=empty_rows), {}


ATTENTION_BUGS = [
    Bug(
        "qkv_split_per_head",
        "the qkv output was cut into heads first and then into q, k, v ((h, 3, d) per token); its layout is "
        "q, k, v first: features 0:C are the queries, C:2C the keys, 2C:3C the values, each a block of heads.",
        "q, k, v = attn.qkv(x).chunk(3, dim=-1), then split each into heads; or "
        "rearrange(qkv, 'b n (three h d) -> three b h n d', three=3, h=heads).",
        _attention_variant(qkv="h three d"),
    ),
    Bug(
        "heads_interleaved",
        "the heads are interleaved: head i took features i, i+h, ... of q, k and v instead of the contiguous "
        "block i*d to (i+1)*d.",
        "split each of q, k, v with (h d), as split_heads does: rearrange(t, 'b n (h d) -> b h n d', h=heads).",
        _attention_variant(qkv="three d h"),
    ),
    Bug(
        "scale_model_width",
        "the scores were scaled by C**-0.5 (the model's width); each head's dot products sum d = C / h terms, so the "
        "scale is d**-0.5.",
        "scale = (C // attn.num_heads) ** -0.5 (also stored as attn.scale).",
        _attention_variant(scale="model"),
    ),
    Bug(
        "no_scale",
        "the scores were not scaled: q k^T must be multiplied by d**-0.5, d = C / h the head's width.",
        "scores = (q * d**-0.5) @ k.transpose(-2, -1).",
        _attention_variant(scale="none"),
    ),
    Bug(
        "no_position_bias",
        "the relative position bias is missing: every head adds its bias (h, N, N) to the scores before the softmax.",
        "scores = scores + attn.position_bias() (shape (h, N, N), the same for every window).",
        _attention_variant(bias="none"),
    ),
    Bug(
        "bias_transposed",
        "the relative position bias is transposed: entry (i, j) must be the bias of query i looking at key j.",
        "table[index] is (N, N, h): permute(2, 0, 1) gives (h, N, N); or use attn.position_bias().",
        _attention_variant(bias="transposed"),
    ),
    Bug(
        "bias_reshaped",
        "the bias table lookup (N, N, h) was reshaped to (h, N, N) instead of permuted, which scrambles heads and "
        "positions.",
        "table[index].permute(2, 0, 1), or attn.position_bias().",
        _attention_variant(bias="reshaped"),
    ),
    Bug(
        "mask_ignored",
        "the mask was ignored: pairs it blocks (False) must get weight 0.",
        "fill the blocked scores with -inf before the softmax: scores.masked_fill(~mask, float('-inf')), the mask "
        "broadcast to every volume and head.",
        _attention_variant(mask_mode="ignored"),
    ),
    Bug(
        "mask_inverted",
        "the mask was applied the wrong way round: True means 'may attend', so the pairs to block are where it is "
        "False.",
        "scores.masked_fill(~mask, float('-inf')), not masked_fill(mask, ...).",
        _inverted_mask,
    ),
    Bug(
        "mask_wrong_windows",
        "the windows got the wrong masks: windows are numbered volume by volume, so window i of every volume gets "
        "mask[i]; repeat_interleave gave each mask to consecutive windows instead.",
        "view the scores as (B, nW, h, N, N) and add mask[None, :, None] (shape (1, nW, 1, N, N)); or "
        "mask.repeat(B, 1, 1), which tiles the nW masks once per volume.",
        _attention_variant(mask_mode="interleaved"),
    ),
    Bug(
        "softmax_wrong_axis",
        "the softmax ran over the queries (dim=-2): each query's weights over the keys (the last axis) must sum to 1.",
        "softmax(scores, dim=-1).",
        _attention_variant(softmax_dim=-2),
    ),
    Bug(
        "no_output_projection",
        "the output projection is missing: after merging the heads, the result goes through attn.proj.",
        "return attn.proj(merged), merged being (B * nW, N, C).",
        _attention_variant(proj=False),
    ),
]


# ----------------------------------------------------------------------------- the block, with switches


def _block(
    block,
    x,
    *,
    direction=1,
    roll_back=True,
    use_mask=True,
    residual1=True,
    residual2=True,
    post_norm=False,
    parallel=False,
    mlp_norm="norm2",
):
    """The block written out, each switch one learner's slip (the defaults give the right answer)."""
    window, shift = block.window_size, block.shift_size
    grid = tuple(x.shape[1:4])
    shifted = any(shift)

    def attention(h):
        mask = None
        rolled = tuple(direction * s for s in shift)
        if shifted:
            h = cyclic_shift(h, rolled)
            if use_mask:
                mask = shifted_window_mask(grid, window, shift, device=h.device)
        h = window_reverse(block.attn(window_partition(h, window), mask=mask), window, grid)
        if shifted and roll_back:
            h = cyclic_shift(h, tuple(-s for s in rolled))
        return h

    if post_norm:
        x = block.norm1(x + attention(x))
        return block.norm2(x + block.mlp(x))
    if parallel:
        return x + attention(block.norm1(x)) + block.mlp(block.norm2(x))
    h = attention(block.norm1(x))
    x = x + h if residual1 else h
    inner = {"norm2": block.norm2, "norm1": block.norm1, "none": lambda t: t}[mlp_norm](x)
    return x + block.mlp(inner) if residual2 else block.mlp(inner)


def _block_variant(**switches):
    def variants(case):
        block, x = case.args
        yield _block(block, x, **switches), {}

    return variants


BLOCK_BUGS = [
    Bug(
        "roll_not_undone",
        "the grid was rolled before the windows but not rolled back after them, so every token's output sits "
        "shift places away from where it belongs.",
        "after window_reverse, roll back: cyclic_shift(h, tuple(-s for s in block.shift_size)).",
        _block_variant(roll_back=False),
    ),
    Bug(
        "roll_direction",
        "the grid was rolled the wrong way (by +shift before the windows): the mask from shifted_window_mask is "
        "made for a roll by -shift, which cyclic_shift(h, block.shift_size) does.",
        "cyclic_shift(h, shift) before the partition, cyclic_shift(h, -shift) after the reverse.",
        _block_variant(direction=-1),
    ),
    Bug(
        "shifted_without_mask",
        "the shifted block attended without its mask, so tokens that the roll brought together from opposite faces "
        "of the volume attend to each other.",
        "mask = shifted_window_mask(grid, block.window_size, block.shift_size, device=x.device), passed to your "
        "window_attention_forward whenever the block shifts.",
        _block_variant(use_mask=False),
    ),
    Bug(
        "no_attention_residual",
        "the first residual is missing: the attention's output is added to x, x = x + attention(norm1(x)).",
        "x = x + h after the windows are put back.",
        _block_variant(residual1=False),
    ),
    Bug(
        "no_mlp_residual",
        "the second residual is missing: return x + mlp(norm2(x)), not mlp(norm2(x)).",
        "return x + block.mlp(block.norm2(x)).",
        _block_variant(residual2=False),
    ),
    Bug(
        "post_norm",
        "the LayerNorms were applied after the residual additions (post-norm); a Swin block normalises the input of "
        "each branch (pre-norm): x + attention(norm1(x)), then x + mlp(norm2(x)).",
        "normalise first, add the residual last.",
        _block_variant(post_norm=True),
    ),
    Bug(
        "parallel_branches",
        "the MLP was applied to the block's input instead of to the output of the attention sub-layer: the two "
        "sub-layers run one after the other.",
        "x = x + attention(norm1(x)) first; then return x + mlp(norm2(x)) with that new x.",
        _block_variant(parallel=True),
    ),
    Bug(
        "mlp_without_norm",
        "the MLP's input was not normalised: the second sub-layer is x + mlp(norm2(x)).",
        "return x + block.mlp(block.norm2(x)).",
        _block_variant(mlp_norm="none"),
    ),
    Bug(
        "norm1_for_mlp",
        "the MLP's input was normalised with norm1; each sub-layer has its own LayerNorm: norm2 for the MLP.",
        "return x + block.mlp(block.norm2(x)).",
        _block_variant(mlp_norm="norm1"),
    ),
]


# ----------------------------------------------------------------------------- values

_BLOCK_C, _BLOCK_HEADS, _BLOCK_WINDOW = 48, 3, 7


def _block_counts() -> dict:
    """The parameters of SwinBlock(48, heads=3, window=7), part by part."""
    block = seeded_build(0, lambda: SwinBlock(_BLOCK_C, _BLOCK_HEADS, _BLOCK_WINDOW, 0))
    table = block.attn.position_bias.table
    linears = (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2)
    return {
        "total": sum(p.numel() for p in block.parameters()),
        "table": table.numel(),
        "table_rows": table.shape[0],
        "norms": sum(p.numel() for m in (block.norm1, block.norm2) for p in m.parameters()),
        "linear_biases": sum(m.bias.numel() for m in linears),
        "mlp": sum(p.numel() for p in block.mlp.parameters()),
    }


def _block_wrong(fn):
    return lambda: fn(_block_counts())


def _mlp_params(c: int, hidden: int) -> int:
    return (c * hidden + hidden) + (hidden * c + c)


_MERGE_GRID = (32, 64, 64)


def _merged_tokens(factor: int = 2, axes: int = 3) -> int:
    """Tokens of the 32 x 64 x 64 grid after merging groups of ``factor`` along the last ``axes`` axes."""
    grid = [s if i < 3 - axes else math.ceil(s / factor) for i, s in enumerate(_MERGE_GRID)]
    return cost.num_tokens(tuple(grid))


# ----------------------------------------------------------------------------- concept questions

CONCEPT_EXERCISES = [
    # Before exercise 8.1.
    ChoiceExercise(
        "concept_window_mask_order",
        "which mask applies to row 10 of the windows of 3 volumes, 4 windows each, with a mask of shape (4, N, N)",
        {
            "a": "mask[2]: row 10 is window 2 of the third volume, and the windows of every volume get the same "
            "4 masks in the same order",
            "b": "mask[3]: each mask covers three consecutive rows, as torch.repeat_interleave(mask, 3, dim=0) "
            "spreads the 4 masks over 12 rows",
            "c": "none: only the first 4 rows, the windows of the first volume, are masked",
            "d": "a mask of its own: a shifted block needs one mask per window of the batch, 12 in all, and this "
            "one lacks them",
        },
        "a",
        why={
            "b": "rows next to each other are neighbouring windows of one volume, not the same window of two "
            "volumes: window_partition numbers the windows volume by volume.",
            "c": "every volume is rolled the same way, so the windows that wrap around in the second volume need "
            "the same blocking as those of the first.",
            "d": "the mask depends only on the grid, the window and the shift, which all volumes of a batch share: "
            "shifted_window_mask returns one mask per window position.",
        },
    ),
    # After exercise 8.1.
    ChoiceExercise(
        "concept_where_bias_enters",
        "where the relative position bias enters window attention",
        {
            "a": "it is added to the scaled scores q . k / sqrt(d), one number per head and query-key pair, before "
            "the softmax",
            "b": "it is added to each token's features before the qkv projection, like an absolute position "
            "embedding",
            "c": "it is added to the attention weights after the softmax",
            "d": "it is added only in shifted blocks, together with the mask",
        },
        "a",
        why={
            "b": "a table indexed by the offset between a query and a key gives a number for each pair of tokens, "
            "not a vector for each token: a single token's features have nothing to take from it.",
            "c": "weights with a number added after the softmax would no longer sum to 1 and could turn negative: "
            "the outputs would stop being weighted averages of the values.",
            "d": "the mask is for shifted blocks only, because only the roll brings far-apart tokens into one "
            "window; where a key sits relative to a query matters in every window, shifted or not.",
        },
    ),
    # After exercise 8.2.
    ChoiceExercise(
        "concept_why_roll_back",
        "why a shifted block rolls the grid back by +s after the window attention",
        {
            "a": "so that each token's output returns to its own place in the grid, where the residual adds it to "
            "that token's input and where the next block expects it",
            "b": "to cancel the mask: rolling back removes the -inf entries that the mask put into the scores",
            "c": "it is optional: attention does not depend on the order of the tokens, so the outputs are the same "
            "with or without it",
            "d": "to restore the grid's shape: the roll moves the wrapped tokens past the end of each axis, which "
            "makes the grid s tokens longer",
        },
        "a",
        why={
            "b": "the mask acts on the scores inside the windows and is done with once the weights are computed; "
            "the roll moves the tokens of the grid, which the mask never touches.",
            "c": "attention is equivariant, not invariant: its outputs come out in the order of the rolled grid, as "
            "the tokens went in.",
            "d": "a cyclic roll keeps the shape: what leaves one end of an axis comes back in at the other end, as "
            "the shapes printed in the lesson show.",
        },
    ),
    # After concept check 8.c.
    ChoiceExercise(
        "concept_pre_norm",
        "what the pre-norm layout x + attn(norm1(x)), then x + mlp(norm2(x)), implies",
        {
            "a": "the block's input reaches its output unchanged along the residual path, plus what the two branches "
            "add: a block whose branches output zeros passes x through as it is",
            "b": "every token leaves the block normalised, its features with mean 0 and variance 1",
            "c": "norm1 and norm2 see the same tensor, so one LayerNorm could serve both sub-layers",
            "d": "nothing in particular: x + f(norm(x)) and norm(x + f(x)) are the same block written in another "
            "order",
        },
        "a",
        why={
            "b": "the LayerNorms sit inside the branches, on their inputs; the block's output is a residual sum that "
            "no LayerNorm follows.",
            "c": "norm2 normalises x after the first residual, x plus the attention's output, not the block's input; "
            "and each LayerNorm learns its own weight and bias per channel (exercise 8.3 counts both).",
            "d": "normalising after the addition rescales the sum of x and f, so the two layouts give different "
            "outputs with the same weights: the check of exercise 8.2 names post-norm as a bug.",
        },
    ),
    # After exercise 8.4.
    ChoiceExercise(
        "concept_patch_merging",
        "what patch merging does to a (B, D, H, W, C) grid with even D, H and W (two are right)",
        {
            "a": "the tokens become 8 times fewer and each gets 2C features, so the numbers per volume fall 4 times",
            "b": "before its projection, each merged token holds the 8C features of its 2 x 2 x 2 neighbours, side "
            "by side",
            "c": "the tokens become 2 times fewer, like the resolution, and each gets 2C features, so the numbers per "
            "volume stay the same",
            "d": "the 8 neighbours' C-vectors are averaged, so the width stays C; the next stage's first block "
            "doubles it to 2C",
        },
        frozenset({"a", "b"}),
        why={
            "c": "the resolution halves along each of the three axes, not only once: exercise 8.4 counted the tokens "
            "that come out.",
            "d": "patch merging keeps every number of its neighbours until its own Linear layer; the blocks of a "
            "stage never change the width, so the doubling cannot wait for the next stage.",
        },
    ),
]


# ----------------------------------------------------------------------------- the exercises

_WINDOW_ATTENTION_RULES = (
    RuledOut(
        "minattn.WindowAttention's own forward (attn(x), attn.forward, attn.attend)",
        (WindowAttention, WindowAttention.attend, FusedWindowAttention.__call__, ChunkedWindowAttention),
    ),
    RuledOut(
        "MONAI's WindowAttention",
        ("monai.networks.nets.swin_unetr:WindowAttention",),
    ),
)

_BLOCK_RULES = (
    RuledOut("minattn.SwinBlock's own forward (block(x)) and SwinStage's", (SwinBlock, SwinStage)),
    RuledOut("minattn.shifted_window_attention", (shifted_window_attention,)),
    *_WINDOW_ATTENTION_RULES,
    RuledOut(
        "MONAI's SwinTransformerBlock / BasicLayer",
        ("monai.networks.nets.swin_unetr:SwinTransformerBlock", "monai.networks.nets.swin_unetr:BasicLayer"),
    ),
)

EXERCISES = [
    FunctionExercise(
        "window_attention_forward",
        window_attention_forward,
        window_attention_cases,
        "tensor",
        "window_attention_forward(attn, x, mask=None)",
        bugs=tuple(ATTENTION_BUGS),
        ruled_out=_WINDOW_ATTENTION_RULES,
        building_blocks=(
            "attn.qkv, attn.proj, attn.position_bias(), split_heads / merge_heads, a softmax (or "
            "minattn.scaled_dot_product_attention)"
        ),
    ),
    FunctionExercise(
        "swin_block_forward",
        swin_block_forward,
        swin_block_cases,
        "tensor",
        "swin_block_forward(block, x)",
        bugs=tuple(BLOCK_BUGS),
        ruled_out=_BLOCK_RULES,
        building_blocks=(
            "block.norm1, block.norm2, block.mlp, cyclic_shift, shifted_window_mask, window_partition, "
            "window_reverse and your window_attention_forward(block.attn, windows, mask)"
        ),
    ),
    ValueExercise(
        "swin_block_params_c48_h3_w7",
        "parameters of a Swin block with C = 48, 3 heads, 7 x 7 x 7 windows, MLP width 4C",
        _block_wrong(lambda c: c["total"]),
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "no_table",
                _block_wrong(lambda c: c["total"] - c["table"]),
                "the relative position bias table is missing: it holds one learned number per offset and head.",
            ),
            WrongAnswer(
                "table_one_head",
                _block_wrong(lambda c: c["total"] - c["table"] + c["table_rows"]),
                "the bias table was counted for one head; it has a column per head: rows x heads.",
            ),
            WrongAnswer(
                "table_window_cells",
                _block_wrong(lambda c: c["total"] - c["table"] + _BLOCK_WINDOW**3 * _BLOCK_HEADS),
                "the bias table has one row per relative offset, (2W - 1)^3 of them, not one per window position "
                "(W^3).",
            ),
            WrongAnswer(
                "no_norms",
                _block_wrong(lambda c: c["total"] - c["norms"]),
                "the two LayerNorms are missing: each has a weight and a bias per channel.",
            ),
            WrongAnswer(
                "no_linear_biases",
                _block_wrong(lambda c: c["total"] - c["linear_biases"]),
                "the biases of the linear layers (qkv, proj and the MLP's two) are missing.",
            ),
            WrongAnswer(
                "mlp_width_c",
                _block_wrong(lambda c: c["total"] - c["mlp"] + _mlp_params(_BLOCK_C, _BLOCK_C)),
                "the MLP was counted with hidden width C; it is 4C wide: Linear(C, 4C) then Linear(4C, C).",
            ),
        ),
    ),
    ValueExercise(
        "merged_tokens_32x64x64",
        "tokens after patch merging of a 32 x 64 x 64 grid",
        _merged_tokens,
        rel_tol=0,
        integer=True,
        wrong=(
            WrongAnswer(
                "not_merged",
                lambda: _merged_tokens(factor=1),
                "that is the number of tokens before merging.",
            ),
            WrongAnswer(
                "halved",
                lambda: _merged_tokens(factor=1) // 2,
                "merging halves every axis, so the number of tokens falls 2 x 2 x 2 = 8 times, not 2.",
            ),
            WrongAnswer(
                "merged_2d",
                lambda: _merged_tokens(axes=2),
                "3D merging groups 2 x 2 x 2 = 8 tokens, along D too, not 2 x 2 = 4.",
            ),
            WrongAnswer(
                "counted_numbers",
                lambda: _merged_tokens() * 2 * _BLOCK_C,
                "that counts numbers (tokens x 96 channels); the question asks for tokens.",
            ),
        ),
    ),
    *CONCEPT_EXERCISES,
]
