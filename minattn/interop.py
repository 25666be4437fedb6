"""Convert PyTorch's and MONAI's attention modules into minattn modules.

``from_monai`` is how the course shows that the blocks built from first
principles are the ones real medical models use: same weights in, same
numbers out. The converted attention, block and stage are wrapped so they
take and return exactly the tensors of the MONAI module (its channels-first
stage input and its additive 0/-100 mask); the minattn module is at
``.module``. A whole ``SwinUNETR`` (or its ``SwinTransformer`` encoder)
becomes minattn's :class:`~minattn.swin_unetr.SwinUNETR` (or
:class:`~minattn.swin_unetr.SwinEncoder`), which takes MONAI's tensors as it is.

Checked against MONAI 1.6.1 (``monai.networks.nets.swin_unetr``). MONAI's
PatchMerging changed its concatenation order in 1.5.0; both of its merging
layers are converted by reordering their weights.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable

import torch
from einops import rearrange
from torch import nn

from .multihead import MultiHeadAttention
from .patches import PatchEmbed
from .position import monai_sliced_index
from .swin import PatchMerging, SwinBlock, SwinStage
from .swin_unetr import PATCH_SIZE, SwinEncoder, SwinUNETR
from .window_attention import WindowAttention

# MONAI fills forbidden pairs with -100, minattn with a boolean False (exact 0 weight).
_BLOCKED_BELOW = -10.0


def additive_to_boolean_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Read MONAI's additive mask (0 allowed, -100 blocked) as minattn's boolean one.

    The weights differ by at most ``e^-100`` (about 4e-44) per blocked pair:
    MONAI gives blocked pairs that tiny weight, minattn gives them none.
    """
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return mask
    allowed = mask == 0
    if not bool(((mask <= _BLOCKED_BELOW) | allowed).all()):
        raise ValueError(
            "an additive mask can be converted only if it holds 0 (allowed) and large negative values "
            f"(blocked, <= {_BLOCKED_BELOW}), as MONAI's 0/-100 mask does"
        )
    return allowed


def _copy_linear(target: nn.Linear, source: nn.Linear) -> None:
    target.weight.copy_(source.weight)
    if target.bias is not None:
        if source.bias is None:
            target.bias.zero_()
        else:
            target.bias.copy_(source.bias)


def _copy_layer_norm(target: nn.LayerNorm, source: nn.Module, what: str) -> None:
    if not isinstance(source, nn.LayerNorm):
        raise ValueError(f"{what} must be nn.LayerNorm to convert; received {type(source).__name__}")
    target.eps = source.eps
    target.weight.copy_(source.weight)
    target.bias.copy_(source.bias)


def _window_attention_from_monai(source) -> WindowAttention:
    window = tuple(int(w) for w in source.window_size)
    attn = WindowAttention(source.dim, window, source.num_heads, qkv_bias=source.qkv.bias is not None)
    attn.shrunk_window_index = "monai"
    with torch.no_grad():
        _copy_linear(attn.qkv, source.qkv)
        _copy_linear(attn.proj, source.proj)
        attn.position_bias.table.copy_(source.relative_position_bias_table)
    return attn.to(device=source.qkv.weight.device, dtype=source.qkv.weight.dtype)


def _block_from_monai(source) -> SwinBlock:
    mlp = source.mlp
    if not isinstance(mlp.fn, nn.GELU) or mlp.fn.approximate != "none":
        raise ValueError(f"only MONAI blocks with an exact GELU MLP can be converted; received {mlp.fn}")
    block = SwinBlock(
        source.dim,
        source.num_heads,
        tuple(source.window_size),
        tuple(source.shift_size),
        mlp_ratio=mlp.linear1.out_features / source.dim,
        qkv_bias=source.attn.qkv.bias is not None,
    )
    block.attn = _window_attention_from_monai(source.attn)
    with torch.no_grad():
        _copy_layer_norm(block.norm1, source.norm1, "norm1")
        _copy_layer_norm(block.norm2, source.norm2, "norm2")
        _copy_linear(block.mlp.fc1, mlp.linear1)
        _copy_linear(block.mlp.fc2, mlp.linear2)
    return block.to(device=source.norm1.weight.device, dtype=source.norm1.weight.dtype)


def _monai_merge_offsets(source) -> list[tuple[int, ...]]:
    """The (d, h, w) offset of each C-block in MONAI's concatenation, in order."""
    from monai.networks.nets.swin_unetr import PatchMerging as MonaiV1

    spatial_dims = 3 if source.reduction.in_features == 8 * source.dim else 2
    if spatial_dims == 2:  # both versions: x[:, j::2, i::2] for i, j in product(range(2), range(2))
        return [(j, i) for i, j in itertools.product(range(2), range(2))]
    if isinstance(source, MonaiV1):  # the order used before MONAI 1.5's PatchMergingV2
        return [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)]
    return list(itertools.product(range(2), range(2), range(2)))


def _merging_from_monai(source) -> PatchMerging:
    offsets = _monai_merge_offsets(source)
    spatial_dims = len(offsets[0])
    merging = PatchMerging(source.dim, spatial_dims=spatial_dims)
    # minattn concatenates offsets in row-major order; LayerNorm and Linear act
    # on the 2^n blocks elementwise, so permuting their weights reproduces MONAI.
    order = [offsets.index(o) for o in itertools.product(range(2), repeat=spatial_dims)]
    dim = source.dim

    def reorder(t: torch.Tensor) -> torch.Tensor:
        blocks = t.reshape(*t.shape[:-1], len(offsets), dim)
        return blocks[..., order, :].reshape(t.shape)

    with torch.no_grad():
        _copy_layer_norm(merging.norm, source.norm, "PatchMerging.norm")
        merging.norm.weight.copy_(reorder(source.norm.weight))
        merging.norm.bias.copy_(reorder(source.norm.bias))
        merging.reduction.weight.copy_(reorder(source.reduction.weight))
    return merging.to(device=source.reduction.weight.device, dtype=source.reduction.weight.dtype)


def _skeleton(build: Callable[[], nn.Module]) -> nn.Module:
    """Build a module on the meta device: its structure only, with no memory and no initialisation.

    The converters below build a module this way and then replace every
    part of it by a converted or copied one; :func:`_check_filled` makes sure.
    """
    with torch.device("meta"):
        return build()


def _check_filled(module: nn.Module) -> nn.Module:
    left = [name for name, t in itertools.chain(module.named_parameters(), module.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"conversion left parts of {type(module).__name__} unfilled: {left[:5]}")
    return module


def _stage_from_monai(source) -> SwinStage:
    if getattr(source, "use_hyena", False):
        raise ValueError("a MONAI BasicLayer with use_hyena=True has no attention to convert")
    blocks = list(source.blocks)
    first = blocks[0]
    stage = _skeleton(
        lambda: SwinStage(
            first.dim, len(blocks), first.num_heads, tuple(source.window_size), qkv_bias=first.attn.qkv.bias is not None
        )
    )
    stage.blocks = nn.ModuleList(_block_from_monai(b) for b in blocks)
    if source.downsample is not None:
        stage.downsample = _merging_from_monai(source.downsample)
    return _check_filled(stage)


def _swin_encoder_from_monai(source) -> SwinEncoder:
    """MONAI's ``SwinTransformer`` (SwinUNETR's ``swinViT``) as a :class:`SwinEncoder` with the same weights."""
    from monai.networks.nets import swin_unetr as monai_swin

    layers = [source.layers1[0], source.layers2[0], source.layers3[0], source.layers4[0]]
    proj = source.patch_embed.proj
    if any(k != PATCH_SIZE for k in proj.kernel_size):
        raise ValueError(
            f"only patch_size={PATCH_SIZE} can be converted (SwinUNETR's decoder undoes a 2x patch); "
            f"received patch_size {tuple(proj.kernel_size)}"
        )
    for layer in layers:
        if not isinstance(layer.downsample, monai_swin.PatchMergingV2):  # PatchMerging is a subclass
            raise ValueError(
                "only MONAI's own downsample layers (downsample='merging' or 'mergingv2') can be converted; "
                f"received {type(layer.downsample).__name__}"
            )
    patch_norm = source.patch_embed.norm
    if patch_norm is not None and not isinstance(patch_norm, nn.LayerNorm):
        raise ValueError(f"patch_embed.norm must be nn.LayerNorm to convert; received {type(patch_norm).__name__}")
    first_blocks = [layer.blocks[0] for layer in layers]
    encoder = _skeleton(
        lambda: SwinEncoder(
            proj.in_channels,
            source.embed_dim,
            depths=[len(layer.blocks) for layer in layers],
            num_heads=[block.num_heads for block in first_blocks],
            window_size=tuple(source.window_size),
            spatial_dims=len(source.window_size),
            patch_norm=patch_norm is not None,
            use_v2=source.use_v2,
            use_checkpoint=first_blocks[0].use_checkpoint,
        )
    )
    encoder.patch_embed = PatchEmbed.from_conv(proj)
    if patch_norm is not None:
        encoder.patch_norm = copy.deepcopy(patch_norm)
    encoder.stages = nn.ModuleList(_stage_from_monai(layer) for layer in layers)  # window attention as MONAI's
    if source.use_v2:
        encoder.stage_convs = nn.ModuleList(
            copy.deepcopy(convs[0]) for convs in (source.layers1c, source.layers2c, source.layers3c, source.layers4c)
        )
    return _check_filled(encoder).train(source.training)


def _swin_unetr_from_monai(source) -> SwinUNETR:
    """MONAI's ``SwinUNETR`` as minattn's: the encoder converted, the convolution blocks copied as they are."""
    encoder = _swin_encoder_from_monai(source.swinViT)
    head_conv = next(m for m in source.out.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    model = _skeleton(
        lambda: SwinUNETR(
            encoder.in_channels,
            head_conv.out_channels,
            feature_size=encoder.feature_size,
            depths=encoder.depths,
            num_heads=encoder.num_heads,
            window_size=encoder.window_size,
            spatial_dims=encoder.spatial_dims,
            normalize=source.normalize,
        )
    )
    model.encoder = encoder
    # The decoder's blocks are MONAI's own classes: copies keep any norm_name MONAI accepts.
    model.skips = nn.ModuleList(
        copy.deepcopy(b) for b in (source.encoder1, source.encoder2, source.encoder3, source.encoder4)
    )
    model.bottleneck = copy.deepcopy(source.encoder10)
    model.ups = nn.ModuleList(
        copy.deepcopy(b) for b in (source.decoder5, source.decoder4, source.decoder3, source.decoder2, source.decoder1)
    )
    model.head = copy.deepcopy(source.out)
    return _check_filled(model).train(source.training)


class MonaiWindowAttentionAdapter(nn.Module):
    """minattn ``WindowAttention`` with MONAI's ``forward(x, mask)`` signature."""

    def __init__(self, module: WindowAttention):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B * nW, n, C)``, ``mask`` additive ``(nW, n, n)`` or None -> ``(B * nW, n, C)``."""
        n = x.shape[1]
        full = math.prod(self.module.window_size)
        if n > full:
            raise ValueError(f"x holds {n} tokens per window, more than the window's {full}")
        # MONAI knows only n here, and slices its full-window index to [:n, :n].
        index = monai_sliced_index(n, self.module.window_size, device=x.device)
        bias = self.module.position_bias(index)
        return self.module.attend(x, bias, additive_to_boolean_mask(mask))


class MonaiBlockAdapter(nn.Module):
    """minattn ``SwinBlock`` with MONAI's ``forward(x, mask_matrix)`` signature (channels-last)."""

    def __init__(self, module: SwinBlock):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, mask_matrix: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, D, H, W, C)``, ``mask_matrix`` additive ``(nW, N, N)`` -> ``(B, D, H, W, C)``."""
        return self.module(x, additive_to_boolean_mask(mask_matrix))


class MonaiStageAdapter(nn.Module):
    """minattn ``SwinStage`` taking and returning MONAI's channels-first ``(B, C, D, H, W)``."""

    def __init__(self, module: SwinStage):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, D, H, W)`` -> ``(B, C', D', H', W')``."""
        x = self.module(rearrange(x, "b c ... -> b ... c"))
        return rearrange(x, "b ... c -> b c ...")


def from_monai(module: nn.Module) -> nn.Module:
    """Convert MONAI's 3D (or 2D) Swin modules, from one ``WindowAttention`` to a whole ``SwinUNETR``.

    ``WindowAttention``, ``SwinTransformerBlock`` and ``BasicLayer`` give an
    adapter whose ``.module`` is the minattn ``WindowAttention``, ``SwinBlock``
    or ``SwinStage`` holding copies of the weights; the adapter takes and
    returns what the MONAI module does. ``SwinTransformer`` gives a
    :class:`~minattn.swin_unetr.SwinEncoder` and ``SwinUNETR`` a
    :class:`~minattn.swin_unetr.SwinUNETR`, which take and return MONAI's
    tensors themselves; their convolution blocks are copies of MONAI's.
    Outputs agree to float round-off in eval mode (minattn's attention has no
    dropout).

    Shrunk windows: when the input is no larger than the window along an axis,
    the window shrinks to the input. MONAI then indexes its bias table with the
    full window's index cut to ``[:n, :n]``, which is the true geometry only if
    D alone shrank. The converted modules copy MONAI
    (``shrunk_window_index = "monai"``); set it to ``"geometric"`` for the
    true offsets, which minattn's own modules use.
    """
    from monai.networks.nets import swin_unetr as monai_swin

    if isinstance(module, monai_swin.WindowAttention):
        return MonaiWindowAttentionAdapter(_window_attention_from_monai(module))
    if isinstance(module, monai_swin.SwinTransformerBlock):
        return MonaiBlockAdapter(_block_from_monai(module))
    if isinstance(module, monai_swin.BasicLayer):
        return MonaiStageAdapter(_stage_from_monai(module))
    if isinstance(module, monai_swin.SwinTransformer):
        return _swin_encoder_from_monai(module)
    if isinstance(module, monai_swin.SwinUNETR):
        return _swin_unetr_from_monai(module)
    raise ValueError(
        "from_monai converts monai.networks.nets.swin_unetr WindowAttention, SwinTransformerBlock or BasicLayer, "
        f"or a whole SwinTransformer or SwinUNETR; received {type(module).__name__}"
    )


def from_torch(module: nn.MultiheadAttention) -> MultiHeadAttention:
    """Convert ``torch.nn.MultiheadAttention(batch_first=True)`` to :class:`MultiHeadAttention`.

    Masks have opposite meanings: torch's boolean ``attn_mask`` is True where
    attending is *forbidden*, minattn's True where it is *allowed*; pass
    ``~attn_mask``.
    """
    if not isinstance(module, nn.MultiheadAttention):
        raise ValueError(f"from_torch converts torch.nn.MultiheadAttention; received {type(module).__name__}")
    if not module.batch_first:
        raise ValueError("from_torch needs nn.MultiheadAttention(batch_first=True): minattn is batch-first")
    if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
        raise ValueError("from_torch supports q, k, v of the model width without bias_k/bias_v or add_zero_attn")
    weight = module.in_proj_weight
    converted = MultiHeadAttention(module.embed_dim, module.num_heads, qkv_bias=module.in_proj_bias is not None)
    converted = converted.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        converted.in_proj_weight.copy_(weight)
        if module.in_proj_bias is not None:
            converted.in_proj_bias.copy_(module.in_proj_bias)
        _copy_linear(converted.out_proj, module.out_proj)
    return converted
