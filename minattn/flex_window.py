"""Shifted-window attention as one masked attention over the whole grid, with PyTorch's FlexAttention.

The windowed path (:func:`minattn.shifted_window_attention`) cuts the grid
into a batch of windows and attends inside each. The same layer can be read
another way: one attention over every token of the (padded) grid, in which
a query may see a key only when both sit in the same window after the shift
and came from the same region. Written as a dense ``L x L`` mask that is
hopeless (``L`` is the whole grid), but it is *block-sparse*:
``torch.nn.attention.flex_attention`` takes exactly that, as

- a ``BlockMask``, built once per layout from a ``mask_mod(b, h, q, kv)``
  ("same window, same region"), which lists the tiles of the score matrix
  that hold any allowed pair; every other tile is skipped, never computed;
- a ``score_mod(score, b, h, q, kv)`` that adds the relative position bias,
  looked up per head in the bias table by the pair's slots in its window.

Token order. FlexAttention tiles the score matrix in blocks of consecutive
queries and keys (:data:`BLOCK_SIZE`). In the grid's row-major order a window's
tokens are scattered over many rows, so almost every tile would hold some
allowed pair and little could be skipped. We therefore put the tokens in
window order first (one gather: pad, roll and window partition are all a
permutation of the padded grid, :meth:`WindowLayout.token_ids`): window ``w``
then occupies positions ``[w N, (w + 1) N)``, the allowed pairs crowd the
diagonal, and only the tiles along it are computed. One gather back puts the
output in grid order and drops the padding. No per-window batch, no dense
mask: the mask exists as a rule and a list of tiles.

Padding: the grid is zero-padded to whole windows after the norm, as MONAI
and the windowed path do, and the padded tokens are keys like any other
(their keys and values are the projection's biases), so the numbers agree.

Backends. ``torch.compile(flex_attention)`` generates one fused kernel per
grid shape (CPU: C++, about 5-20 s the first time; CUDA: Triton), and is the
point of FlexAttention. Without it, FlexAttention runs eagerly: correct, but
it builds the full ``L x L`` score matrix, so the eager route is refused past
the memory budget (:func:`minattn.set_memory_budget`). FlexAttention has no
backward pass on CPU (torch 2.13); where gradients are needed there, and
when the attention weights are recorded, the layer takes the windowed path.
Every call returns the route it took: ``"flex-compiled"``, ``"flex-eager"``
or ``"windows"``.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch
from einops import rearrange

from ._validate import ceil_div, check_spatial_rank
from .memory import AttentionMemoryError, check_score_matrix_fits
from .window_attention import WindowAttention
from .windows import WindowLayout, pad_to_windows, window_partition

BACKENDS = ("flex-compiled", "flex-eager", "windows")

# Devices on which flex_attention has a backward pass (torch 2.13 refuses CPU and MPS).
_BACKWARD_DEVICES = ("cuda", "xpu", "hpu")

# Each grid shape compiles its own kernel. Dynamo's default limit of 8 per
# function would quietly run the ninth shape eagerly; we allow more, and make
# a hit raise so that the route we report is the route that ran.
_RECOMPILE_LIMIT = 64

# Tokens per side of one tile of the score matrix. FlexAttention's default is 128; windows
# (343 tokens for 7^3) rarely line up with tiles, and smaller tiles waste less on the
# pairs that straddle two windows: on a CPU, 64 ran a 32^3 grid with 7^3 windows in half
# the time of 128 (16 and 32 gained little more).
BLOCK_SIZE = 64


def _flex_api():
    try:
        from torch.nn.attention import flex_attention as api
    except ImportError as error:  # torch < 2.5
        raise ImportError(f"FlexAttention needs torch >= 2.5; this is torch {torch.__version__}") from error
    return api


@dataclass(frozen=True, eq=False)
class FlexWindowPlan:
    """Everything about one layout that FlexAttention needs, built once per (layout, device).

    Attributes:
        layout: the :class:`WindowLayout`.
        order: long ``(L,)``, ``L = nW * N``: position ``i`` of the window-ordered
            sequence holds token ``order[i]`` of the padded grid (row-major).
        restore: long ``(prod(grid),)``: where each real token (row-major on the
            unpadded grid) sits in the window-ordered sequence.
        region: long ``(L,)``: region label of each position of the sequence
            (all 0 for regular windows).
        block_mask: the ``BlockMask`` for "same window, same region".
    """

    layout: WindowLayout
    order: torch.Tensor
    restore: torch.Tensor
    region: torch.Tensor
    block_mask: object

    @property
    def length(self) -> int:
        """Tokens in the window-ordered sequence, ``L = nW * N`` (padding included)."""
        return self.order.numel()


def window_mask_mod(tokens_per_window: int, region: torch.Tensor | None = None, allowed: torch.Tensor | None = None):
    """The rule "query and key share a window (and a region)" on a window-ordered sequence.

    Args:
        tokens_per_window: N; positions ``[w N, (w + 1) N)`` are window ``w``.
        region: optional long ``(L,)`` region label per position; pairs of
            different labels are forbidden.
        allowed: optional boolean ``(nW, N, N)``, True = may attend, a
            shifted-window mask given slot by slot instead of by region.

    Returns:
        ``mask_mod(b, h, q, kv) -> bool tensor`` for ``create_block_mask``.
    """
    n = tokens_per_window

    def mask_mod(b, h, q, kv):
        same = (q // n) == (kv // n)
        if region is not None:
            same = same & (region[q] == region[kv])
        if allowed is not None:
            same = same & allowed[q // n, q % n, kv % n]
        return same

    return mask_mod


def bias_score_mod(table: torch.Tensor, index: torch.Tensor):
    """Add the relative position bias to each score, looked up in the bias table.

    Args:
        table: ``(offsets, heads)``, :class:`RelativePositionBias`'s table.
        index: long ``(N, N)``, the table row of each (query, key) pair of a
            window (:meth:`WindowAttention.bias_index`); the pair (q, kv) of a
            window-ordered sequence sits in slots ``q % N`` and ``kv % N``.

    Returns:
        ``score_mod(score, b, h, q, kv)`` for ``flex_attention``.
    """
    n = index.shape[-1]

    def score_mod(score, b, h, q, kv):
        return score + table[index[q % n, kv % n], h]

    return score_mod


def window_block_mask(
    layout: WindowLayout, device, region: torch.Tensor | None = None, allowed=None, block_size: int = BLOCK_SIZE
):
    """``BlockMask`` of a layout's (shifted) windows on the window-ordered sequence.

    FlexAttention's ``create_block_mask`` evaluates the mask_mod on every one
    of the ``L x L`` pairs, gigabytes for a real grid. The tiles follow from
    the geometry instead: label each position with its (window, region)
    group; a tile pair is computed iff the two tiles share a group, and is
    *full* (no mask_mod needed inside) iff both hold one and the same group.
    That costs ``O(L + tiles x groups)``.

    Args:
        layout: the geometry.
        device: where FlexAttention will run.
        region: region labels ``(L,)`` to use instead of the layout's own.
        allowed: optional boolean ``(nW, N, N)`` mask to use instead of the
            regions (unless ``region`` is given too); FlexAttention's own
            ``create_block_mask`` then finds the tiles.
        block_size: tokens per tile side.

    Returns:
        A ``BlockMask`` of shape ``(1, 1, L, L)``, shared by every batch
        element and head.
    """
    api = _flex_api()
    n = layout.tokens_per_window
    length = layout.num_windows * n
    if allowed is not None:  # the mask replaces the regions
        mask_mod = window_mask_mod(n, region, allowed)
        return api.create_block_mask(mask_mod, None, None, length, length, device=device, BLOCK_SIZE=block_size)
    if region is None:
        region = _window_ordered_regions(layout, device)
    mask_mod = window_mask_mod(n, region)
    tiles = ceil_div(length, block_size)
    position = torch.arange(length, device=device)
    group = (position // n) * (int(region.max()) + 1) + region  # one label per (window, region)
    _, group = torch.unique(group, return_inverse=True)
    holds = torch.zeros(tiles, int(group.max()) + 1, device=device)
    holds[position // block_size, group] = 1.0  # tile t holds a token of group g
    touched = (holds @ holds.T) > 0  # the two tiles share a group: some pair is allowed
    single = holds.sum(-1) == 1
    if length % block_size:
        single[-1] = False  # a ragged last tile is never full
    same = (holds.argmax(-1)[:, None] == holds.argmax(-1)[None, :]) & single[:, None] & single[None, :]
    full = touched & same
    partial_num, partial_index = _ordered(touched & ~full)
    full_num, full_index = _ordered(full)
    return api.BlockMask.from_kv_blocks(
        partial_num,
        partial_index,
        full_num,
        full_index,
        BLOCK_SIZE=block_size,
        mask_mod=mask_mod,
        seq_lengths=(length, length),
    )


def _ordered(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``(tiles, tiles)`` -> the BlockMask's counts ``(1, 1, tiles)`` and key tiles ``(1, 1, tiles, tiles)``."""
    counts = tiles.sum(-1, dtype=torch.int32)
    indices = torch.argsort(tiles.to(torch.int32), dim=-1, descending=True, stable=True).to(torch.int32)
    return counts[None, None].contiguous(), indices[None, None].contiguous()


def _window_ordered_regions(layout: WindowLayout, device) -> torch.Tensor:
    """Region label ``(L,)`` of each position of the window-ordered sequence (all 0 without a shift)."""
    # region_ids labels the padded, rolled grid; partitioning it lists the labels in window order.
    return window_partition(layout.region_ids(device)[None, ..., None], layout.window).reshape(-1)


def plan_for(layout: WindowLayout, device=None) -> FlexWindowPlan:
    """The cached :class:`FlexWindowPlan` of ``layout`` on ``device`` (CPU by default)."""
    return _cached_plan(layout, torch.device(device) if device is not None else torch.device("cpu"))


@functools.lru_cache(maxsize=64)
def _cached_plan(layout: WindowLayout, device: torch.device) -> FlexWindowPlan:
    order = layout.token_ids(device).reshape(-1)  # window-major, slot-minor
    position = torch.empty_like(order)
    position[order] = torch.arange(order.numel(), device=device)
    real = layout.real(device).reshape(-1)
    restore = position[real]  # the real tokens, in row-major order of the unpadded grid
    region = _window_ordered_regions(layout, device)
    block_mask = window_block_mask(layout, device, region)
    return FlexWindowPlan(layout, order, restore, region, block_mask)


@functools.cache
def _compiled_flex():
    return torch.compile(_flex_api().flex_attention, dynamic=False)


_compile_failed: dict[tuple[str, torch.dtype], str] = {}  # (device type, dtype) -> why compiling failed


def _flex_call(q, k, v, score_mod, block_mask, scale: float, compiled: bool | None) -> tuple[torch.Tensor, str]:
    """Run FlexAttention, compiled when asked or possible; returns the output and the route."""
    api = _flex_api()
    key = (q.device.type, q.dtype)
    if compiled is True or (compiled is None and key not in _compile_failed):
        try:
            with torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True):
                out = _compiled_flex()(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale)
            return out, "flex-compiled"
        except Exception as error:  # no compiler, unsupported platform or dtype, too many grid shapes...
            if compiled is True:
                raise
            _compile_failed[key] = f"{type(error).__name__}: {error}"[:300]
            warnings.warn(
                f"torch.compile could not compile FlexAttention for {key[1]} on {key[0]} ({_compile_failed[key]}); "
                "shifted-window attention runs FlexAttention eagerly there from now on",
                RuntimeWarning,
                stacklevel=3,
            )
    try:  # eager FlexAttention builds the full (B, heads, L, L) score matrix
        check_score_matrix_fits((q.shape[0], q.shape[1], q.shape[2], k.shape[2]), q.element_size())
    except AttentionMemoryError as error:
        raise AttentionMemoryError(
            f"uncompiled FlexAttention holds the whole score matrix of the grid: {error} "
            "Compiled FlexAttention (attention_backend='flex-compiled') and the windowed path "
            "(attention_backend='windows') do not."
        ) from None
    with warnings.catch_warnings():
        # It warns that it is not compiled; we chose that, and report it as the route.
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        out = api.flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale)
    return out, "flex-eager"


def flex_window_attention(
    x: torch.Tensor,
    attn: WindowAttention,
    shift_size,
    mask: torch.Tensor | None = None,
    compiled: bool | None = None,
    plan: FlexWindowPlan | None = None,
) -> tuple[torch.Tensor, str]:
    """The (shifted) window attention of ``attn`` over a whole grid, as one FlexAttention call.

    Gives the numbers of :func:`minattn.shifted_window_attention` (same
    padding, shift, regions, bias and ``shrunk_window_index``).

    Args:
        x: ``(B, D, H, W, C)`` (or ``(B, H, W, C)``), already normalised.
        attn: the weights: its ``qkv``, ``proj``, heads, scale and position bias.
        shift_size: the nominal shift (0 for regular windows).
        mask: optional boolean ``(nW, N, N)`` on the padded grid, True = may
            attend, to use instead of the layout's regions (as the windowed
            path takes it); such a mask gets its own, uncached ``BlockMask``.
        compiled: True: compiled FlexAttention or an error; False: eager;
            None (default): compiled, or eager where compiling fails.
        plan: a :class:`FlexWindowPlan` to use instead of the cached one of
            the layout (e.g. with other region labels).

    Returns:
        ``(out, backend)``: ``out`` shaped like ``x``; ``backend`` one of
        :data:`BACKENDS`, the route that ran.
    """
    check_spatial_rank(x, "x", "channels_last")
    if len(attn.window_size) != x.ndim - 2 or x.shape[-1] != attn.dim:
        raise ValueError(
            f"x must be channels-last with {len(attn.window_size)} spatial axes and {attn.dim} channels; "
            f"received {tuple(x.shape)}"
        )
    layout = WindowLayout(x.shape[1:-1], attn.window_size, shift_size)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in attn.parameters()))
    if attn.record_weights or (needs_grad and x.device.type not in _BACKWARD_DEVICES):
        # The windowed path: it keeps the weights, and it has a backward pass everywhere.
        mask = (layout.mask(x.device) if mask is None else mask) if layout.shifted else None
        return layout.reverse(attn(layout.partition(x), mask=mask, window_size=layout.window)), "windows"

    plan = plan_for(layout, x.device) if plan is None else plan
    block_mask = plan.block_mask
    if mask is not None and layout.shifted and not torch.equal(mask, layout.mask(x.device)):
        allowed = attn._check_mask(mask, layout.num_windows, layout.tokens_per_window)
        block_mask = window_block_mask(layout, x.device, allowed=allowed.to(x.device))

    batch = x.shape[0]
    tokens = pad_to_windows(x, layout.window).reshape(batch, -1, attn.dim)[:, plan.order]  # (B, L, C)
    q, k, v = rearrange(attn.qkv(tokens), "b l (three h d) -> three b h l d", three=3, h=attn.num_heads)
    table = attn.position_bias.table.to(q.dtype)
    score_mod = bias_score_mod(table, attn.bias_index(layout.window).to(x.device))
    out, backend = _flex_call(q, k, v, score_mod, block_mask, attn.scale, compiled)
    out = rearrange(out, "b h l d -> b l (h d)")[:, plan.restore]  # grid order, padding dropped
    return attn.proj(out).reshape(x.shape), backend


def computed_block_fraction(block_mask) -> float:
    """Share of the score matrix's tiles that FlexAttention computes (partial or full), in [0, 1]."""
    dense = block_mask.to_dense()  # (B, H, query blocks, key blocks), 1 where a tile is computed
    return float(dense.float().mean())


def tile_kinds(block_mask) -> torch.Tensor:
    """What FlexAttention does with each tile of the score matrix, for drawing.

    Returns:
        long ``(query tiles, key tiles)`` for batch element 0 and head 0:
        0 skipped, 1 partial (the mask_mod decides pair by pair), 2 full
        (every pair allowed, no mask_mod).
    """
    tiles = block_mask.kv_indices.shape[-1]
    kinds = torch.zeros(block_mask.kv_num_blocks.shape[-1], tiles, dtype=torch.long)
    lists = [(block_mask.kv_num_blocks, block_mask.kv_indices, 1)]
    if block_mask.full_kv_num_blocks is not None:
        lists.append((block_mask.full_kv_num_blocks, block_mask.full_kv_indices, 2))
    for counts, indices, kind in lists:
        for row, (count, columns) in enumerate(zip(counts[0, 0].tolist(), indices[0, 0])):
            kinds[row, columns[:count].long().cpu()] = kind
    return kinds


__all__ = [
    "BACKENDS",
    "FlexWindowPlan",
    "bias_score_mod",
    "computed_block_fraction",
    "flex_window_attention",
    "plan_for",
    "tile_kinds",
    "window_block_mask",
    "window_mask_mod",
]
