"""Where one voxel's token looks, in every window-attention block of a SwinUNETR's encoder.

Pick a voxel of an image. At stage s (1 to 4) the encoder works on tokens that each cover
``2**s`` voxels per side (the 2x patch, then one 2x merging per earlier stage), so the voxel sits
in one token, and that token attends to the other tokens of its window: all of them in a regular
block, only those of its own region in a shifted one (:class:`minattn.windows.WindowLayout`). This
module gives those weights for every block, painted back onto the voxel grid, so they can be laid
over the anatomy.

The encoder needs every extent to be a multiple of 32, so the image is padded at the end of each
axis (with zeros, or by repeating the last slice) and the maps are cropped back to the image.

Only the window that holds the voxel's token matters, so the pass is split in two:
:class:`EncoderAttention` runs the encoder once and keeps the input of every block's attention
(the windows, the mask); :meth:`EncoderAttention.at` then attends again inside the one window that
holds the chosen voxel, with :attr:`WindowAttention.record_weights` on, and reads the weights from
:attr:`WindowAttention.last_weights`. Attention works window by window, so these are the weights
the whole pass would have recorded for that window, at a few milliseconds per voxel instead of a
forward pass. :func:`voxel_attention` does both steps for one voxel.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..swin_unetr import INPUT_MULTIPLE, PATCH_SIZE, SwinEncoder
from ..window_attention import WindowAttention
from ..windows import WindowLayout

__all__ = ["PAD_MODES", "BlockAttention", "EncoderAttention", "VoxelAttention", "voxel_attention"]

PAD_MODES = {"zero": "constant", "edge": "replicate"}  # our name -> torch.nn.functional.pad's mode


@dataclass(frozen=True)
class BlockAttention:
    """What the voxel's token attends to in one block.

    Attributes:
        stage: 1 to 4.
        block: index of the block in its stage, 0 first (even: regular windows, odd: shifted).
        nominal_shift: the shift the block asks for, in tokens (all 0 for a regular block).
        layout: the block's geometry on its token grid (effective window and shift).
        token: the voxel's token ``(d, h, w)`` on the stage's token grid.
        token_size: voxels per token side, ``2**stage``.
        window_index: which window of ``layout`` holds the token.
        slot: the token's position inside that window.
        weights: ``(heads, *layout.grid)``: the token's attention to every token of the grid; 0
            outside its window and, when shifted, outside its region. Each head's weights, with
            ``padding_weight``, sum to 1.
        padding_weight: ``(heads,)``: the weight that went to the zero tokens that pad the grid
            to whole windows (they carry no image).
        image_shape: ``(D, H, W)`` of the image.

    The maps on the voxel grid (:attr:`voxel_map`, :attr:`head_maps`, :meth:`plane`) are painted
    from ``weights`` when first asked for: each token's weight on every voxel it covers.
    """

    stage: int
    block: int
    nominal_shift: tuple
    layout: WindowLayout
    token: tuple
    token_size: int
    window_index: int
    slot: int
    weights: torch.Tensor
    padding_weight: torch.Tensor
    image_shape: tuple

    # cached_property writes to the instance's __dict__, which a frozen dataclass allows
    @functools.cached_property
    def mean_weights(self) -> torch.Tensor:
        """``(*layout.grid)``: :attr:`weights` averaged over the heads."""
        return self.weights.mean(0)

    @functools.cached_property
    def voxel_map(self) -> torch.Tensor:
        """``(D, H, W)``: the head-averaged weights on the voxel grid, cropped to the image."""
        return _paint(self._on_image(self.mean_weights[None]), self.token_size, self.image_shape)[0]

    @functools.cached_property
    def head_maps(self) -> torch.Tensor:
        """``(heads, D, H, W)``: each head's weights on the voxel grid, cropped to the image."""
        return _paint(self._on_image(self.weights), self.token_size, self.image_shape)

    def plane(self, axis: int, index: int) -> torch.Tensor:
        """The slice ``index`` along ``axis`` (0, 1, 2 = D, H, W) of :attr:`voxel_map`, without painting the volume.

        Returns:
            ``(rows, cols)``: the image's extents along the two other axes, in (D, H, W) order.
        """
        if axis not in (0, 1, 2) or not 0 <= index < self.image_shape[axis]:
            raise ValueError(
                f"need axis 0, 1 or 2 and an index inside the image {self.image_shape}; received {axis}, {index}"
            )
        tokens = self._on_image(self.mean_weights[None]).select(axis + 1, index // self.token_size)
        shape = tuple(s for a, s in enumerate(self.image_shape) if a != axis)
        painted = tokens[0].repeat_interleave(self.token_size, 0).repeat_interleave(self.token_size, 1)
        return painted[: shape[0], : shape[1]]

    def _on_image(self, maps: torch.Tensor) -> torch.Tensor:
        """``(K, *grid)`` -> ``(K, ...)``: only the tokens that cover some voxel of the image."""
        covering = (math.ceil(s / self.token_size) for s in self.image_shape)
        return maps[(slice(None), *(slice(0, c) for c in covering))]

    @property
    def kind(self) -> str:
        """``"regular"`` or ``"shifted"``: what the block was built as (see :attr:`shifted` for what it does)."""
        return "shifted" if any(self.nominal_shift) else "regular"

    @property
    def shifted(self) -> bool:
        """Whether this block's windows are displaced on this grid (a shift shrinks away on a small grid)."""
        return self.layout.shifted

    @property
    def window_voxels(self) -> tuple:
        """The effective window in voxels, ``(Wd, Wh, Ww) * 2**stage``."""
        return tuple(w * self.token_size for w in self.layout.window)

    @property
    def shift_voxels(self) -> tuple:
        """The effective shift in voxels."""
        return tuple(s * self.token_size for s in self.layout.shift)

    @property
    def tokens_attended(self) -> int:
        """Tokens of the encoder's grid (it covers the padded image) with non-zero head-averaged weight.

        The zero tokens that pad the grid to whole windows are not counted.
        """
        return int((self.mean_weights > 0).sum())

    @property
    def max_weight(self) -> float:
        """The largest head-averaged weight on any token."""
        return float(self.mean_weights.max())


@dataclass(frozen=True)
class VoxelAttention:
    """Every block's :class:`BlockAttention` for one voxel.

    Attributes:
        voxel: ``(z, y, x)`` = ``(d, h, w)`` in the image.
        image_shape: ``(D, H, W)`` of the image.
        padded_shape: the extents the encoder saw, multiples of 32.
        blocks: stage 1's blocks first, each stage's in order.
    """

    voxel: tuple
    image_shape: tuple
    padded_shape: tuple
    blocks: tuple

    def block(self, stage: int, block: int = 0) -> BlockAttention:
        """The block ``block`` (0 first) of stage ``stage`` (1 to 4)."""
        for found in self.blocks:
            if found.stage == stage and found.block == block:
                return found
        have = sorted({(b.stage, b.block) for b in self.blocks})
        raise ValueError(f"no block {block} in stage {stage}; (stage, block) pairs are {have}")


@dataclass
class _Recorded:
    """A block's attention input from the encoder pass."""

    stage: int
    block: int
    nominal_shift: tuple
    attn: WindowAttention
    layout: WindowLayout | None = None
    windows: torch.Tensor | None = None  # (nW, N, C), the attention's input
    mask: torch.Tensor | None = None  # (nW, N, N) or None
    window_size: tuple | None = None
    window_of: torch.Tensor | None = None  # long (prod(padded),): window of each padded-grid token
    slot_of: torch.Tensor | None = None  # long (prod(padded),): its slot in that window
    token_ids: torch.Tensor | None = None  # long (nW, N), layout.token_ids()
    real: torch.Tensor | None = None  # bool (prod(padded),): False on the padding tokens
    last_window: tuple | None = None  # (window, its weights (heads, N, N)) from the last call


def _encoder_of(model) -> SwinEncoder:
    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, SwinEncoder):
        raise ValueError(f"model must be a minattn SwinUNETR (or its SwinEncoder); received {type(model).__name__}")
    if encoder.spatial_dims != 3:
        raise ValueError(f"the voxel attention needs a 3D encoder; this one has spatial_dims={encoder.spatial_dims}")
    return encoder


def _as_image(image, channels: int) -> torch.Tensor:
    """``(D, H, W)`` (one channel) or ``(C, D, H, W)`` -> ``(1, C, D, H, W)``."""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"image must be a torch.Tensor (D, H, W); received {type(image).__name__}")
    if image.ndim == 3 and channels == 1:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != channels:
        expected = "(D, H, W) or (1, D, H, W)" if channels == 1 else f"({channels}, D, H, W)"
        raise ValueError(
            f"image must have shape {expected} for a {channels}-channel model; received {tuple(image.shape)}"
        )
    if min(image.shape[1:]) < 1:
        raise ValueError(f"image must have at least one voxel along every axis; received {tuple(image.shape)}")
    return image[None]


def _check_voxel(voxel, shape: tuple) -> tuple:
    values = voxel.tolist() if hasattr(voxel, "tolist") else voxel
    if (
        isinstance(values, (str, bytes))
        or not hasattr(values, "__len__")
        or len(values) != 3
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values)
    ):
        raise ValueError(f"voxel must be three ints (z, y, x) = (d, h, w); received {voxel!r}")
    values = tuple(int(v) for v in values)
    if any(not 0 <= v < s for v, s in zip(values, shape)):
        raise ValueError(
            f"voxel {values} lies outside the image of shape {shape}: each index must lie in 0..extent - 1"
        )
    return values


class EncoderAttention:
    """The encoder run once over an image, ready to give any voxel's attention (:meth:`at`).

    Args:
        model: a :class:`minattn.SwinUNETR` (or its :class:`minattn.swin_unetr.SwinEncoder`), 3D.
        image: ``(D, H, W)`` for a one-channel model, or ``(C, D, H, W)``; any extents.
        pad: how the image is padded at the end of each axis to a multiple of 32: ``"zero"``
            (zeros, the background of a skull-stripped T1) or ``"edge"`` (the last slice repeated).

    Attributes:
        image_shape: ``(D, H, W)``.
        padded_shape: the encoder's input extents.
        depths: blocks per stage.
        num_heads: heads per stage.

    The pass runs without gradients, in eval mode (restored afterwards), on the model's device and
    dtype. Kept per block: the attention's input windows ``(nW, N, C)``, a few MB in all for the
    course's model on the 2 mm hemisphere.
    """

    def __init__(self, model, image: torch.Tensor, pad: str = "zero"):
        encoder = _encoder_of(model)
        if pad not in PAD_MODES:
            raise ValueError(f"pad must be one of {sorted(PAD_MODES)}; received {pad!r}")
        x = _as_image(image, encoder.in_channels)
        parameter = next(encoder.parameters())
        x = x.to(device=parameter.device, dtype=parameter.dtype)
        self.image_shape = tuple(x.shape[2:])
        self.padded_shape = tuple(math.ceil(s / INPUT_MULTIPLE) * INPUT_MULTIPLE for s in self.image_shape)
        widths = []  # F.pad lists (before, after) from the last axis backwards
        for s, p in zip(reversed(self.image_shape), reversed(self.padded_shape)):
            widths += [0, p - s]
        x = F.pad(x, widths, mode=PAD_MODES[pad])
        self.pad = pad
        self.depths = tuple(len(stage.blocks) for stage in encoder.stages)
        self.num_heads = tuple(stage.blocks[0].attn.num_heads for stage in encoder.stages)
        self._records = self._run(encoder, x)

    @staticmethod
    def _run(encoder: SwinEncoder, x: torch.Tensor) -> list:
        records, hooks = [], []
        for s, stage in enumerate(encoder.stages, start=1):
            for b, block in enumerate(stage.blocks):
                record = _Recorded(s, b, tuple(block.shift_size), block.attn)
                records.append(record)
                grid = {}

                def before_block(module, args, record=record, grid=grid):
                    grid["shape"] = tuple(args[0].shape[1:-1])  # the block's input (B, D, H, W, C)

                def after_attention(module, args, kwargs, output, record=record, grid=grid):
                    bound = inspect.signature(module.forward).bind(*args, **kwargs)
                    bound.apply_defaults()
                    record.windows = bound.arguments["x"].detach()
                    record.mask = bound.arguments["mask"]
                    window = bound.arguments["window_size"]
                    record.window_size = tuple(window) if window is not None else None
                    # the geometry shifted_window_attention gives this block
                    record.layout = WindowLayout(grid["shape"], module.window_size, record.nominal_shift)

                hooks.append(block.register_forward_pre_hook(before_block))
                hooks.append(block.attn.register_forward_hook(after_attention, with_kwargs=True))
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                encoder(x, normalize=False)
        finally:
            for hook in hooks:
                hook.remove()
            encoder.train(was_training)
        for record in records:
            _index(record)
        return records

    def at(self, voxel) -> VoxelAttention:
        """Every block's attention from the token holding ``voxel``.

        Args:
            voxel: ``(z, y, x)`` = ``(d, h, w)``, inside the image.

        Returns:
            :class:`VoxelAttention`; its maps are ``(D, H, W)``, on the model's device.
        """
        voxel = _check_voxel(voxel, self.image_shape)
        blocks = []
        with torch.no_grad():
            for record in self._records:
                blocks.append(self._block(record, voxel))
        return VoxelAttention(voxel, self.image_shape, self.padded_shape, tuple(blocks))

    def _block(self, record: _Recorded, voxel: tuple) -> BlockAttention:
        layout = record.layout
        size = PATCH_SIZE * 2 ** (record.stage - 1)  # voxels per token side at this stage
        token = tuple(v // size for v in voxel)
        flat = 0
        for t, p in zip(token, layout.padded):
            flat = flat * p + t
        window, slot = int(record.window_of[flat]), int(record.slot_of[flat])
        row = _window_weights(record, window)[:, slot]  # (heads, N)
        heads = row.shape[0]
        full = row.new_zeros(heads, math.prod(layout.padded))
        full[:, record.token_ids[window]] = row  # each slot holds a different token
        padding_weight = full[:, ~record.real].sum(-1)
        grid_weights = full.reshape(heads, *layout.padded)[(slice(None), *(slice(0, g) for g in layout.grid))]
        return BlockAttention(
            stage=record.stage,
            block=record.block,
            nominal_shift=record.nominal_shift,
            layout=layout,
            token=token,
            token_size=size,
            window_index=window,
            slot=slot,
            weights=grid_weights,
            padding_weight=padding_weight,
            image_shape=self.image_shape,
        )


def _index(record: _Recorded) -> None:
    """Check the recorded call against the block's layout, and index its tokens' windows and slots."""
    layout = record.layout
    if layout is None:
        raise RuntimeError(
            f"stage {record.stage} block {record.block}: its attention was not called during the encoder pass"
        )
    called_window = record.window_size or record.attn.window_size
    if (
        tuple(called_window) != layout.window
        or record.windows.shape[:2] != (layout.num_windows, layout.tokens_per_window)
        or (record.mask is None) == layout.shifted
    ):
        # The block no longer calls its attention the way WindowLayout describes.
        raise RuntimeError(
            f"stage {record.stage} block {record.block}: attention ran on windows {tuple(record.windows.shape)} "
            f"of size {tuple(called_window)}, mask {'none' if record.mask is None else tuple(record.mask.shape)}; "
            f"the layout {layout} expects ({layout.num_windows}, {layout.tokens_per_window}, C)"
        )
    device = record.windows.device
    ids = layout.token_ids(device)
    count = math.prod(layout.padded)
    record.token_ids = ids
    record.window_of = torch.empty(count, dtype=torch.long, device=device)
    record.slot_of = torch.empty(count, dtype=torch.long, device=device)
    num_windows, n = ids.shape
    record.window_of[ids.flatten()] = torch.arange(num_windows, device=device).repeat_interleave(n)
    record.slot_of[ids.flatten()] = torch.arange(n, device=device).repeat(num_windows)
    record.real = layout.real(device).flatten()


def _window_weights(record: _Recorded, window: int) -> torch.Tensor:
    """Attend again inside window ``window`` alone and return its recorded weights, ``(heads, N, N)``."""
    if record.last_window is not None and record.last_window[0] == window:
        return record.last_window[1]  # a voxel moved within the same window: same weights
    attn = record.attn
    mask = record.mask[window : window + 1] if record.mask is not None else None
    saved = attn.record_weights, attn.last_weights
    attn.record_weights = True
    try:
        # forward, not __call__: the module's own hooks (if any) need not see this extra call
        attn.forward(record.windows[window : window + 1], mask=mask, window_size=record.window_size)
        weights = attn.last_weights[0]
    finally:
        attn.record_weights, attn.last_weights = saved
    record.last_window = (window, weights)
    return weights


def _paint(token_maps: torch.Tensor, size: int, shape: tuple) -> torch.Tensor:
    """``(K, d, h, w)`` token values -> ``(K, *shape)``: each value on its ``size^3`` voxels, cropped."""
    k, d, h, w = token_maps.shape
    voxels = token_maps[:, :, None, :, None, :, None].expand(k, d, size, h, size, w, size)
    voxels = voxels.reshape(k, d * size, h * size, w * size)
    return voxels[:, : shape[0], : shape[1], : shape[2]].contiguous()


def voxel_attention(model, image: torch.Tensor, voxel, pad: str = "zero") -> VoxelAttention:
    """Attention from the token holding ``voxel`` to every token, in every encoder block, on the voxel grid.

    Args:
        model: a :class:`minattn.SwinUNETR` (or its encoder), 3D.
        image: ``(D, H, W)`` for a one-channel model (or ``(C, D, H, W)``); any extents: it is
            padded at the end of each axis to a multiple of 32 (``pad``: ``"zero"`` or ``"edge"``)
            and the maps are cropped back.
        voxel: ``(z, y, x)`` = ``(d, h, w)`` inside the image.

    Returns:
        :class:`VoxelAttention`: ``.block(stage, block).voxel_map`` is ``(D, H, W)``, averaged over
        the heads, and ``.head_maps`` ``(heads, D, H, W)``, for stage 1..4 and block 0 (regular),
        1 (shifted), ...

    To look at many voxels of one image, make an :class:`EncoderAttention` once and call its
    :meth:`~EncoderAttention.at`: the encoder then runs only once.
    """
    encoder = _encoder_of(model)
    # check the voxel before the (slow) encoder pass
    _check_voxel(voxel, tuple(_as_image(image, encoder.in_channels).shape[2:]))
    return EncoderAttention(model, image, pad).at(voxel)
