"""Window attention over a whole grid that computes only the grid's own queries, not the padding's.

A grid that is not a whole number of windows is zero-padded, and the padded
tokens sit in the windows along its far faces. As keys they count (Swin's and
MONAI's layer let every query see them; their keys and values are the
projection's biases), but their own outputs are cropped away at the end. At
SwinUNETR's first stage (32^3 tokens, 7^3 windows, padded to 35^3) they are a
quarter of the queries, at 16^3 (padded to 21^3) more than half. This route
skips them, with the numbers of the windowed route unchanged:

- one gather puts the tokens in window order (padding, roll and partition
  are together one permutation of the padded grid, see
  :meth:`WindowLayout.token_ids`), with two twists: windows are sorted by which
  of their slots hold real tokens, and inside each window the real tokens
  come first. Attention inside a window does not depend on the order of its
  tokens, as long as the bias and the mask are permuted alike;
- windows with the same pattern of real slots form a group; each group is one
  call of PyTorch's fused SDPA on views of the projected tokens: its queries
  are the first ``n_real`` slots, its keys and values all ``N``, its bias and
  mask rows and columns permuted and cut the same way (built once, cached);
- one gather back takes the real tokens' outputs in grid order, before the
  output projection, which so skips the padding too (and the roll back and
  the crop of the windowed route are not needed).

Training on the CPU goes the same way, each group through
:func:`minattn._fused.chunked_window_attention` (Nq = the real queries, the
bias gathered from the table so that its gradient reaches it). Training on
other devices keeps the windowed route: this one was measured on the CPU only.
Measured on a 2-core CPU (benchmarks/swin_shortcuts.py), without and with this
route: SwinUNETR's first stage, inference 196 -> 149 ms, training step 652 ->
568 ms; the capstone's SwinUNETR, whose deeper stages are mostly padding,
inference 522 -> 427 ms, training step 2.15 -> 1.71 s.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._fused import _version, chunked_window_attention, work_dtype
from .windows import WindowLayout


@dataclass(frozen=True, eq=False)
class QueryGroup:
    """Windows that hold real tokens in the same slots.

    Attributes:
        start, stop: the group's windows are ``[start, stop)`` of the ordered sequence.
        windows: long ``(stop - start,)``: their numbers in :func:`window_partition` order.
        slots: long ``(N,)``: the slot order inside each of them, real slots first.
        real: how many slots hold real tokens (the queries computed).
        first_output: where the group's outputs start among all real outputs.
    """

    start: int
    stop: int
    windows: torch.Tensor
    slots: torch.Tensor
    real: int
    first_output: int

    @property
    def outputs(self) -> slice:
        """The group's rows among all real outputs: window by window, ``real`` rows each."""
        return slice(self.first_output, self.first_output + (self.stop - self.start) * self.real)


@dataclass(frozen=True, eq=False)
class RealQueryPlan:
    """How one layout's tokens are ordered for :class:`RealQueryAttention`, built once per (layout, device).

    Attributes:
        order: long ``(nW * N,)``: position ``i`` of the ordered sequence holds
            token ``order[i]`` of the unpadded grid (row-major), or
            ``prod(grid)`` (a zero row appended to the grid) for padding.
        restore: long ``(prod(grid),)``: where each real token's output sits
            among the real outputs (the real positions of ``order``, in order).
        groups: the :class:`QueryGroup` s, in sequence order.
    """

    order: torch.Tensor
    restore: torch.Tensor
    groups: tuple[QueryGroup, ...]


def real_query_plan(layout: WindowLayout, device=None) -> RealQueryPlan:
    """The cached :class:`RealQueryPlan` of ``layout`` on ``device`` (CPU by default)."""
    return _cached_plan(layout, torch.device(device) if device is not None else torch.device("cpu"))


@functools.lru_cache(maxsize=64)
def _cached_plan(layout: WindowLayout, device: torch.device) -> RealQueryPlan:
    padded_ids = layout.token_ids(device)  # (nW, N): the padded grid's token in each slot
    real = layout.real(device).reshape(-1)
    tokens = math.prod(layout.grid)
    unpadded_id = torch.full(real.shape, tokens, dtype=torch.long, device=device)  # padding -> the zero row
    unpadded_id[real] = torch.arange(tokens, device=device)
    slot_is_real = real[padded_ids]  # (nW, N)
    patterns, pattern_of_window = torch.unique(slot_is_real, dim=0, return_inverse=True)
    groups, order, start, first_output = [], [], 0, 0
    for index, pattern in enumerate(patterns):
        windows = (pattern_of_window == index).nonzero().flatten()
        slots = torch.cat([pattern.nonzero().flatten(), (~pattern).nonzero().flatten()])
        group = QueryGroup(start, start + len(windows), windows, slots, int(pattern.sum()), first_output)
        groups.append(group)
        order.append(unpadded_id[padded_ids[windows][:, slots]].reshape(-1))
        start, first_output = group.stop, group.outputs.stop
    order = torch.cat(order)
    restore = torch.empty(tokens, dtype=torch.long, device=device)
    restore[order[order < tokens]] = torch.arange(tokens, device=device)
    return RealQueryPlan(order, restore, tuple(groups))


class RealQueryAttention:
    """The route, with the per-group masks one layer reuses between calls.

    One instance per :class:`minattn.WindowAttention`. Cached tensors are
    recognised as in ``minattn._fused``: the mask by identity and version, the
    bias by value.
    """

    def __init__(self):
        self._masks: tuple | None = None  # (plan, mask, its version, dtype, per-group additive masks)
        self._combined: tuple | None = None  # (those masks, bias, per-group bias + mask)

    def applies(self, x: torch.Tensor, training: bool) -> bool:
        """Inference on any device; training on the CPU only, where it was measured."""
        return not training or x.device.type == "cpu"

    def __call__(
        self, x: torch.Tensor, attn, layout: WindowLayout, mask: torch.Tensor | None, training: bool
    ) -> torch.Tensor | None:
        """``attn``'s window attention over the grid ``x``, or None where a real query would see no key.

        Args:
            x: ``(B, *grid, C)``, already normalised.
            attn: the :class:`minattn.WindowAttention`.
            layout: the grid's :class:`WindowLayout`.
            mask: boolean ``(nW, N, N)`` for the padded grid, True = may
                attend; or None (regular windows).
            training: whether autograd needs the graph (then ``x`` is on the CPU).

        Returns:
            ``(B, *grid, C)``; None when some real query's row of ``mask``
            allows no key (fused kernels would give NaN there; the caller's
            explicit path gives zeros).
        """
        plan = real_query_plan(layout, x.device)
        batch, channels = x.shape[0], x.shape[-1]
        tokens, n = plan.restore.numel(), layout.tokens_per_window
        heads, head_dim = attn.num_heads, attn.head_dim
        # The zero row stands for the padding, as zero-padding after the norm does in the windowed route.
        rows = F.pad(x.reshape(batch, tokens, channels), (0, 0, 0, 1))
        qkv = attn.qkv(rows.index_select(1, plan.order)).view(batch, layout.num_windows, n, 3, heads, head_dim)
        # The masks take q's dtype (under autocast it is not x's), or the dtype that training computes in.
        masks = self._group_masks(plan, mask, work_dtype(qkv.dtype) if training else qkv.dtype)
        if masks is None:
            return None
        # Each group's q, k, v as views (B, nW_g, h, N, d). Split and unbind rather than a slice per
        # group: in training, the backward pass then joins the pieces' gradients in one copy.
        windows_per_group = [group.stop - group.start for group in plan.groups]
        q, k, v = ([piece.transpose(2, 3) for piece in t.split(windows_per_group, dim=1)] for t in qkv.unbind(3))
        if training:
            out = _train(plan, masks, attn.position_bias, attn.bias_index(layout.window), q, k, v, attn.scale)
        else:
            combined = self._bias_and_masks(masks, attn.bias_for(layout.window).to(qkv.dtype), plan)
            out = _infer(plan, combined, q, k, v, attn.scale)
        return attn.proj(out.view(batch, tokens, channels).index_select(1, plan.restore)).view(x.shape)

    def _group_masks(self, plan: RealQueryPlan, mask: torch.Tensor | None, dtype: torch.dtype):
        """Each group's additive mask ``(nW_g, real, N)`` (0, or -inf where forbidden), in its slot order.

        A list with one entry per group (all None without a mask); None when
        some real query may attend to no key.
        """
        version = None if mask is None else _version(mask)
        cached = self._masks
        if cached is not None and cached[0] is plan and cached[1] is mask and cached[2:4] == (version, dtype):
            return cached[4]
        masks = []
        for group in plan.groups:
            if mask is None:
                masks.append(None)
                continue
            allowed = mask[group.windows][:, group.slots[: group.real]][:, :, group.slots]
            if not bool(allowed.any(-1).all()):
                return None
            additive = torch.zeros(allowed.shape, dtype=dtype, device=mask.device)
            masks.append(additive.masked_fill_(~allowed, float("-inf")))
        self._masks = (plan, mask, version, dtype, masks)
        return masks

    def _bias_and_masks(self, masks, bias: torch.Tensor, plan: RealQueryPlan):
        """Each group's bias plus mask for SDPA: ``(1, h, real, N)``, or ``(nW_g, h, real, N)`` with a mask.

        Reused while the masks and the bias stay the same; contiguous, as SDPA
        runs faster on a contiguous mask.
        """
        cached = self._combined
        if cached is not None and cached[0] is masks and cached[1].dtype == bias.dtype and torch.equal(cached[1], bias):
            return cached[2]
        combined = []
        for group, group_mask in zip(plan.groups, masks):
            group_bias = bias[:, group.slots[: group.real]][:, :, group.slots][None]  # (1, h, real, N)
            combined.append((group_bias if group_mask is None else group_bias + group_mask[:, None]).contiguous())
        # A copy of the bias: a caller's bias changed in place must not change the cached one too.
        self._combined = (masks, bias.detach().clone(), combined)
        return combined


def _train(plan: RealQueryPlan, masks, position_bias, bias_index, q, k, v, scale: float) -> torch.Tensor:
    """Every group through :func:`chunked_window_attention`; the real outputs ``(B, prod(grid), h, d)``.

    Each group's bias is gathered straight from the table (``position_bias``,
    read at the window's ``bias_index`` ``(N, N)`` permuted into the group's
    slot order), in autograd, so that the table learns. The groups' outputs
    are joined by one concatenation (whose backward pass is views), not
    written into a buffer.
    """
    outputs = []
    for group, group_mask, group_q, group_k, group_v in zip(plan.groups, masks, q, k, v):
        group_bias = position_bias(bias_index[group.slots[: group.real]][:, group.slots])  # (h, real, N)
        group_q = group_q[..., : group.real, :]
        attended = chunked_window_attention(group_q, group_k, group_v, group_bias, group_mask, scale)
        outputs.append(attended.transpose(2, 3).flatten(1, 2))  # (B, nW_g * real, h, d)
    return torch.cat(outputs, dim=1)


def _infer(plan: RealQueryPlan, combined, q, k, v, scale: float) -> torch.Tensor:
    """Every group through PyTorch's SDPA, one volume at a time; the real outputs ``(B, prod(grid), h, d)``."""
    batch, _, heads, _, head_dim = q[0].shape
    out = q[0].new_empty(batch, plan.restore.numel(), heads, head_dim)
    for group, attn_mask, group_q, group_k, group_v in zip(plan.groups, combined, q, k, v):
        for volume in range(batch):  # the mask has one entry per window of a volume, not of the batch
            attended = F.scaled_dot_product_attention(
                group_q[volume, :, :, : group.real], group_k[volume], group_v[volume], attn_mask=attn_mask, scale=scale
            )
            out[volume, group.outputs] = attended.transpose(1, 2).flatten(0, 1)
    return out
