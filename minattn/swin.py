"""The 3D Swin Transformer block and stage, assembled from the earlier pieces.

A block is two residual sub-layers on a channels-last grid ``(B, D, H, W, C)``:

    x = x + shifted_window_attention(norm1(x))
    x = x + mlp(norm2(x))

A stage stacks blocks that alternate regular windows (shift 0) and windows
displaced by half a window, so information crosses window borders every
other block, and may end with patch merging (half the resolution, twice the
channels), as in SwinUNETR's encoder.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ._shortcuts import has_forward_hooks, needs_graph
from ._validate import as_size_tuple, check_int, check_spatial_rank, spatial_ndim
from .flex_window import flex_window_attention
from .window_attention import WindowAttention
from .windows import WindowLayout, check_shift, pad_to_windows, swin_shifts

#: Bytes of MLP hidden activations (4C wide) one chunk of tokens may hold when a block runs without
#: autograd on the CPU: a few MiB stay in the cache, where the whole grid's would go out to memory and
#: back between fc1, GELU and fc2. On a 2-core CPU, SwinUNETR's first stage (32^3 tokens, C = 48):
#: inference 167 ms a pass without the chunks, 149 ms with them (benchmarks/swin_shortcuts.py).
MLP_CHUNK_BYTES = 4 * 2**20

# "flex" compiles FlexAttention where torch.compile works and runs it eagerly elsewhere;
# "flex-compiled" and "flex-eager" ask for one of the two.
ATTENTION_BACKENDS = ("windows", "flex", "flex-compiled", "flex-eager")
_COMPILED = {"flex": None, "flex-compiled": True, "flex-eager": False}


def _check_attention_backend(name) -> str:
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS} (default 'windows'); got {name!r}")
    return name


class Mlp(nn.Module):
    """Position-wise feed-forward network: ``Linear(C, hidden) -> GELU -> Linear(hidden, C)``."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C)`` -> ``(..., C)``."""
        return self.fc2(self.act(self.fc1(x)))


def shifted_window_attention(
    x: torch.Tensor, attn: WindowAttention, shift_size, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Window attention over a whole grid: pad, shift, partition, attend, and undo each step.

    On the fused path (weights not recorded) it first offers the grid to
    :meth:`WindowAttention.attend_grid`, which gives the same numbers without
    computing the padded tokens' queries.

    Args:
        x: ``(B, D, H, W, C)`` (already normalised).
        attn: the window attention; its ``window_size`` is the nominal window.
        shift_size: the nominal shift (0 for a regular block).
        mask: a boolean ``(nW, N, N)`` mask for the padded grid to use instead
            of the layout's own (only when the block shifts).

    Returns:
        ``(B, D, H, W, C)``.
    """
    check_spatial_rank(x, "x", "channels_last")
    layout = WindowLayout(x.shape[1:-1], attn.window_size, shift_size)
    if layout.shifted:
        mask = layout.mask(x.device) if mask is None else mask
    else:
        mask = None  # regular windows never mix regions
    attended = attn.attend_grid(x, layout, mask)  # the same numbers, sooner; None where it does not apply
    if attended is not None:
        return attended
    windows = attn(layout.partition(x), mask=mask, window_size=layout.window)
    return layout.reverse(windows)


class SwinBlock(nn.Module):
    """One 3D (or 2D) Swin Transformer block on a channels-last grid.

    Args:
        dim: channels C.
        num_heads: attention heads.
        window_size: an int (3D) or one int per spatial axis.
        shift_size: an int or per-axis ints, each smaller than the window; 0
            for a regular block, ``window // 2`` for a shifted one.
        mlp_ratio: hidden width of the MLP as a multiple of C.
        qkv_bias: learn biases for q, k, v.
        fused: attention path, see :class:`WindowAttention` (None: the fused one).
        attention_backend: ``"windows"`` (default): attend in a batch of
            windows (:func:`shifted_window_attention`); ``"flex"``: the same
            attention as one FlexAttention call over the whole grid
            (:func:`minattn.flex_window.flex_window_attention`), compiled where
            ``torch.compile`` works, eager elsewhere (``"flex-compiled"`` and
            ``"flex-eager"`` ask for one of them). Same numbers; can be changed
            later by setting the attribute (or :func:`set_attention_backend`).

    Attributes:
        last_backend: the route the last forward's attention took:
            ``"windows"``, ``"flex-compiled"`` or ``"flex-eager"`` (the flex
            backend takes the windowed path where FlexAttention has no
            backward pass, e.g. training on CPU, or when weights are recorded).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size,
        shift_size,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        fused: bool | None = None,
        attention_backend: str = "windows",
    ):
        super().__init__()
        self.attention_backend = _check_attention_backend(attention_backend)
        self.last_backend: str | None = None
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias=qkv_bias, fused=fused)
        self.window_size = self.attn.window_size
        self.shift_size = as_size_tuple(shift_size, len(self.window_size), "shift_size", allow_zero=True)
        check_shift(self.window_size, self.shift_size)
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive; received {mlp_ratio}")
        self.dim = dim
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, D, H, W, C)`` -> same shape.

        ``mask`` optionally overrides the layout's shifted-window mask (boolean
        ``(nW, N, N)`` on the padded grid); it is ignored by regular blocks.
        Without autograd on the CPU, the MLP sub-layer runs a chunk of tokens
        at a time (:data:`MLP_CHUNK_BYTES`), with the same numbers.
        """
        ndim = check_spatial_rank(x, "x", "channels_last")
        if ndim != len(self.window_size) or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must be channels-last with {len(self.window_size)} spatial axes and {self.dim} channels, "
                f"(B, {'D, ' if len(self.window_size) == 3 else ''}H, W, {self.dim}); received {tuple(x.shape)}"
            )
        # A permuted view (a channels-first volume seen channels-last) would be copied again by each
        # norm and residual add below; one copy now serves them all (no-op when already contiguous).
        x = x.contiguous()
        if self.attention_backend == "windows":
            x = x + shifted_window_attention(self.norm1(x), self.attn, self.shift_size, mask)
            self.last_backend = "windows"
        else:
            attended, self.last_backend = self._flex_attention(self.norm1(x), mask)
            x = x + attended
        if self._feeds_forward_in_chunks(x):
            return self._feed_forward_in_chunks(x)  # the same numbers, sooner
        return x + self.mlp(self.norm2(x))

    def _feeds_forward_in_chunks(self, x: torch.Tensor) -> bool:
        """On the CPU without autograd, and with no hooks on the norm or MLP (they expect one call)."""
        return x.device.type == "cpu" and not needs_graph(self, x) and not has_forward_hooks(self.norm2, self.mlp)

    def _feed_forward_in_chunks(self, x: torch.Tensor) -> torch.Tensor:
        """``x + mlp(norm2(x))``, a chunk of tokens at a time (:data:`MLP_CHUNK_BYTES`); x contiguous."""
        tokens = x.reshape(-1, self.dim)
        out = torch.empty_like(tokens)
        rows = max(1, MLP_CHUNK_BYTES // (self.mlp.fc1.out_features * x.element_size()))
        for start in range(0, tokens.shape[0], rows):
            chunk = tokens[start : start + rows]
            torch.add(chunk, self.mlp(self.norm2(chunk)), out=out[start : start + rows])
        return out.view(x.shape)

    def _flex_attention(self, x: torch.Tensor, mask: torch.Tensor | None):
        compiled = _COMPILED[_check_attention_backend(self.attention_backend)]
        return flex_window_attention(x, self.attn, self.shift_size, mask, compiled=compiled)


class PatchMerging(nn.Module):
    """Halve the resolution, double the channels.

    Each 2x2x2 neighbourhood's eight C-vectors are concatenated in row-major
    ``(d, h, w)`` offset order into one 8C vector, normalised, and projected to
    2C without bias. An odd extent is zero-padded at its end first.

    Args:
        dim: input channels C.
        spatial_dims: 3 (default) or 2.
    """

    _PATTERN = {3: "b (d p) (h q) (w r) c -> b d h w (p q r c)", 2: "b (h q) (w r) c -> b h w (q r c)"}
    _OFFSETS = {3: dict(p=2, q=2, r=2), 2: dict(q=2, r=2)}

    def __init__(self, dim: int, spatial_dims: int = 3):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3; received {spatial_dims}")
        self.dim = dim
        self.spatial_dims = spatial_dims
        merged = 2**spatial_dims * dim
        self.norm = nn.LayerNorm(merged)
        self.reduction = nn.Linear(merged, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W, C)`` -> ``(B, ceil(D/2), ceil(H/2), ceil(W/2), 2C)``."""
        ndim = check_spatial_rank(x, "x", "channels_last")
        if ndim != self.spatial_dims or x.shape[-1] != self.dim:
            raise ValueError(f"x must be channels-last with {self.spatial_dims} spatial axes and {self.dim} channels; received {tuple(x.shape)}")
        x = pad_to_windows(x, 2)
        x = rearrange(x, self._PATTERN[ndim], **self._OFFSETS[ndim])
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """A stage of Swin blocks alternating regular and shifted windows.

    Args:
        dim: channels C.
        depth: number of blocks; even-numbered ones (0, 2, ...) use regular
            windows, odd ones windows shifted by ``window // 2``.
        num_heads: attention heads per block.
        window_size: an int (3D) or one int per spatial axis.
        downsample: None, or a module class called as
            ``downsample(dim=dim, spatial_dims=...)`` (e.g. :class:`PatchMerging`)
            applied after the blocks.
        mlp_ratio, qkv_bias, fused, attention_backend: passed to every :class:`SwinBlock`.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size,
        downsample=None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        fused: bool | None = None,
        attention_backend: str = "windows",
    ):
        super().__init__()
        depth = check_int(depth, "depth", minimum=1)
        ndim = spatial_ndim(window_size)
        window = as_size_tuple(window_size, ndim, "window_size")
        self.window_size = window
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, shift, mlp_ratio, qkv_bias, fused, attention_backend)
            for shift in swin_shifts(window, depth)
        )
        self.downsample = downsample(dim=dim, spatial_dims=ndim) if downsample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W, C)`` -> same, or ``(B, D/2, H/2, W/2, 2C)`` after merging."""
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


def set_attention_backend(model: nn.Module, backend: str) -> nn.Module:
    """Set ``attention_backend`` (e.g. ``"windows"`` or ``"flex"``) on every :class:`SwinBlock` inside ``model``.

    Works on a block, a stage, an encoder or a whole SwinUNETR, e.g. one
    converted with :func:`minattn.interop.from_monai`. Returns ``model``.
    """
    backend = _check_attention_backend(backend)
    for module in model.modules():
        if isinstance(module, SwinBlock):
            module.attention_backend = backend
    return model
