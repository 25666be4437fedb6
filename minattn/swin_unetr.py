"""SwinUNETR: the 3D Swin Transformer as the encoder of a U-Net.

Hatamizadeh et al. (2022) feed a volume through the Swin stages of the
earlier lessons and hand every stage's feature map to a convolutional decoder,
which climbs back to full resolution one level at a time: up-sample with a
transposed convolution, concatenate the encoder's map of the same resolution
(a skip connection), convolve. The attention lives in the encoder; the
decoder is MONAI's own convolution blocks, used as they are.

Macro-architecture for a one-channel 96^3 crop, ``feature_size`` F = 48,
depths (2, 2, 2, 2), heads (3, 6, 12, 24) and window 7, as in the paper::

    encoder (minattn)                  token grid     channels     heads   output
    patch embedding, 2x2x2 patches     48^3           1 -> 48        -     hidden 0
    stage 1: 2 Swin blocks, merging    48^3 -> 24^3   48 -> 96       3     hidden 1
    stage 2                            24^3 -> 12^3   96 -> 192      6     hidden 2
    stage 3 (grid padded to 14^3)      12^3 -> 6^3    192 -> 384    12     hidden 3
    stage 4 (window shrinks to 6^3)     6^3 -> 3^3    384 -> 768    24     hidden 4

    decoder (MONAI's blocks)                grid                     channels
    skips 0..3: residual conv blocks on     96^3, 48^3, 24^3, 12^3   48, 48, 96, 192
      the image and on hidden 0, 1, 2
    bottleneck: the same, on hidden 4       3^3                      768
    ups 0..4: up-sample x2, concatenate     6^3, 12^3, ..., 96^3     384, 192, 96, 48, 48
      hidden 3, then skips 3..0; convolve
    head: 1x1x1 convolution                 96^3                     out_channels

With 14 output classes (13 abdominal organs and background, as for BTCV) the
model has 62,187,296 parameters, as MONAI's has; only 8,062,002 of them (13 %) are
in the Swin encoder, the rest in the decoder's convolutions.

Every extent of the input must be a multiple of 32: the 2x patch and four
mergings halve it five times. Each hidden state is LayerNorm-ed over its
channels, without learned parameters, before the decoder sees it.

MONAI is needed for the decoder only; it is imported when a model is built,
so ``import minattn`` works without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._validate import as_size_tuple, ceil_div
from .patches import PatchEmbed
from .swin import PatchMerging, SwinStage
from .window_attention import WindowAttention

PATCH_SIZE = 2  # the decoder's last up-sampling doubles the grid, so it undoes exactly a 2x patch
NUM_STAGES = 4
INPUT_MULTIPLE = PATCH_SIZE * 2**NUM_STAGES  # 32


def _monai_blocks():
    """MONAI's ``UnetrBasicBlock``, ``UnetrUpBlock`` and ``UnetOutBlock``, imported on first use."""
    try:
        from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
    except ImportError as error:
        raise ImportError(
            "SwinUNETR's decoder is built from MONAI's convolution blocks; install the course extra "
            "(pip install 'monai==1.6.1')"
        ) from error
    return UnetrBasicBlock, UnetrUpBlock, UnetOutBlock


def residual_conv_block(spatial_dims: int, in_channels: int, out_channels: int, norm_name) -> nn.Module:
    """MONAI's ``UnetrBasicBlock``: two 3^n convolutions with a residual path, resolution kept.

    Takes and returns channels-first maps ``(B, C, D, H, W)``.
    """
    basic_block, _, _ = _monai_blocks()
    return basic_block(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=3,
        stride=1,
        norm_name=norm_name,
        res_block=True,
    )


def _four_positive_ints(value, name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != NUM_STAGES:
        raise ValueError(f"{name} needs {NUM_STAGES} entries, one per Swin stage; received {value!r}")
    return as_size_tuple(tuple(value), NUM_STAGES, name)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "b ... c -> b c ...")


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "b c ... -> b ... c")


class SwinEncoder(nn.Module):
    """SwinUNETR's encoder: a patch embedding and four Swin stages, each ending in patch merging.

    Args:
        in_channels: channels of the image.
        feature_size: channels F of a token after the patch embedding; stage i
            attends with ``F * 2**i`` channels and hands ``F * 2**(i + 1)`` on.
        depths: Swin blocks in each of the four stages.
        num_heads: attention heads in each stage; each must divide its stage's channels.
        window_size: an int or one int per spatial axis.
        spatial_dims: 3 (volumes) or 2 (images).
        mlp_ratio: hidden width of the blocks' MLPs as a multiple of their channels.
        qkv_bias: learn biases for q, k, v.
        patch_norm: LayerNorm the tokens right after the patch embedding.
        use_v2: SwinUNETR-v2: a residual convolution block (instance norm)
            before each stage, which gives the stages local context.
        use_checkpoint: in training, recompute each stage during the backward
            pass instead of keeping its activations: less memory, more time.
        shrunk_window_index: how the position bias is indexed where a window
            shrinks to a small grid, see :class:`WindowAttention`; ``"monai"``
            copies MONAI, ``"geometric"`` uses the true offsets.
        attention_backend: ``"windows"`` (default) or ``"flex"``, see
            :class:`~minattn.swin.SwinBlock`.
    """

    def __init__(
        self,
        in_channels: int,
        feature_size: int = 24,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size=7,
        spatial_dims: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        patch_norm: bool = False,
        use_v2: bool = False,
        use_checkpoint: bool = False,
        shrunk_window_index: str = "geometric",
        attention_backend: str = "windows",
    ):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3; received {spatial_dims!r}")
        if shrunk_window_index not in ("geometric", "monai"):
            raise ValueError(f"shrunk_window_index must be 'geometric' or 'monai'; received {shrunk_window_index!r}")
        depths = _four_positive_ints(depths, "depths")
        num_heads = _four_positive_ints(num_heads, "num_heads")
        window = as_size_tuple(window_size, spatial_dims, "window_size")
        self.in_channels, self.feature_size, self.spatial_dims = in_channels, feature_size, spatial_dims
        self.depths, self.num_heads, self.window_size = depths, num_heads, window
        self.use_checkpoint = use_checkpoint
        self.patch_embed = PatchEmbed(PATCH_SIZE, in_channels, feature_size, spatial_dims=spatial_dims)
        self.patch_norm = nn.LayerNorm(feature_size) if patch_norm else None
        widths = [feature_size * 2**i for i in range(NUM_STAGES)]
        self.stages = nn.ModuleList(
            SwinStage(
                width,
                depth,
                heads,
                window,
                downsample=PatchMerging,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                attention_backend=attention_backend,
            )
            for width, depth, heads in zip(widths, depths, num_heads)
        )
        # MONAI builds these with instance norm whatever the decoder's norm_name.
        self.stage_convs = (
            nn.ModuleList(residual_conv_block(spatial_dims, width, width, "instance") for width in widths)
            if use_v2
            else None
        )
        for module in self.modules():
            if isinstance(module, WindowAttention):
                module.shrunk_window_index = shrunk_window_index

    def forward(self, x: torch.Tensor, normalize: bool = True) -> list[torch.Tensor]:
        """Encode an image into five feature maps, fine to coarse.

        Args:
            x: ``(B, C, D, H, W)`` (or ``(B, C, H, W)``), extents even.
            normalize: LayerNorm each map over its channels (no learned
                parameters), as SwinUNETR does before its decoder.

        Returns:
            Five channels-first maps; map i is
            ``(B, F * 2**i, D / 2**(i+1), H / 2**(i+1), W / 2**(i+1))``.
        """
        x = self.patch_embed(x, as_grid=True)  # (B, D/2, H/2, W/2, F): Swin blocks work channels-last
        if self.patch_norm is not None:
            x = self.patch_norm(x)
        hidden = [x]
        for i, stage in enumerate(self.stages):
            if self.stage_convs is not None:
                x = _channels_last(self.stage_convs[i](_channels_first(x)))
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
            hidden.append(x)
        if normalize:
            hidden = [F.layer_norm(h, h.shape[-1:]) for h in hidden]
        return [_channels_first(h) for h in hidden]


class SwinUNETR(nn.Module):
    """SwinUNETR: :class:`SwinEncoder` and MONAI's convolutional U-Net decoder (see the module docstring).

    Args:
        in_channels: channels of the image.
        out_channels: channels of the output (e.g. one per class).
        feature_size: channels F after the patch embedding (MONAI's default 24; the paper uses 48).
        depths, num_heads, window_size, spatial_dims, mlp_ratio, qkv_bias,
        patch_norm, use_v2, use_checkpoint, shrunk_window_index, attention_backend: passed
        to :class:`SwinEncoder`.
        norm_name: normalisation of the decoder's blocks, as MONAI names it
            (``"instance"``, ``"batch"``, ``("group", {"num_groups": 4})``, ...).
        normalize: LayerNorm the encoder's maps before the decoder.

    :func:`minattn.interop.from_monai` converts MONAI's ``SwinUNETR`` into
    this class; :meth:`from_monai_state_dict` loads a MONAI checkpoint. Names
    map as: MONAI ``swinViT`` -> ``encoder`` (``layers1..4`` -> ``stages``,
    ``layers1c..4c`` -> ``stage_convs``), ``encoder1..4`` -> ``skips``,
    ``encoder10`` -> ``bottleneck``, ``decoder5..1`` -> ``ups``, ``out`` -> ``head``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        feature_size: int = 24,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size=7,
        spatial_dims: int = 3,
        norm_name: tuple | str = "instance",
        normalize: bool = True,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        patch_norm: bool = False,
        use_v2: bool = False,
        use_checkpoint: bool = False,
        shrunk_window_index: str = "geometric",
        attention_backend: str = "windows",
    ):
        super().__init__()
        self.encoder = SwinEncoder(
            in_channels,
            feature_size,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            spatial_dims=spatial_dims,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            patch_norm=patch_norm,
            use_v2=use_v2,
            use_checkpoint=use_checkpoint,
            shrunk_window_index=shrunk_window_index,
            attention_backend=attention_backend,
        )
        self.in_channels = in_channels
        self.spatial_dims = spatial_dims
        self.normalize = normalize
        _, up_block, out_block = _monai_blocks()

        def block(c_in: int, c_out: int) -> nn.Module:
            return residual_conv_block(spatial_dims, c_in, c_out, norm_name)

        def up(c_in: int, c_out: int) -> nn.Module:
            return up_block(
                spatial_dims=spatial_dims,
                in_channels=c_in,
                out_channels=c_out,
                kernel_size=3,
                upsample_kernel_size=2,
                norm_name=norm_name,
                res_block=True,
            )

        f = feature_size
        self.skips = nn.ModuleList([block(in_channels, f), block(f, f), block(2 * f, 2 * f), block(4 * f, 4 * f)])
        self.bottleneck = block(16 * f, 16 * f)
        self.ups = nn.ModuleList(
            up(c_in, c_out) for c_in, c_out in [(16 * f, 8 * f), (8 * f, 4 * f), (4 * f, 2 * f), (2 * f, f), (f, f)]
        )
        self.head = out_block(spatial_dims=spatial_dims, in_channels=f, out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, D, H, W)`` -> ``(B, out_channels, D, H, W)``; every extent a multiple of 32."""
        self.check_input(x)
        hidden = self.encoder(x, self.normalize)
        # The image and the three finest maps pass a conv block before the
        # decoder; the fourth map (hidden 3) joins it as it is, as in MONAI.
        skips = [conv(h) for conv, h in zip(self.skips, [x, *hidden[:3]])] + [hidden[3]]
        y = self.bottleneck(hidden[4])
        for up, skip in zip(self.ups, reversed(skips)):
            y = up(y, skip)
        return self.head(y)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` unless ``x`` is ``(B, in_channels, *spatial)`` with extents multiples of 32."""
        layout = "(B, C, D, H, W)" if self.spatial_dims == 3 else "(B, C, H, W)"
        if not isinstance(x, torch.Tensor) or x.ndim != self.spatial_dims + 2:
            raise ValueError(f"x must be a {layout} tensor; received shape {tuple(getattr(x, 'shape', ()))}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels at dim 1, {layout}; received {tuple(x.shape)}")
        spatial = tuple(x.shape[2:])
        if any(s % INPUT_MULTIPLE for s in spatial):
            padded = tuple(ceil_div(s, INPUT_MULTIPLE) * INPUT_MULTIPLE for s in spatial)
            raise ValueError(
                f"every spatial extent must be a multiple of {INPUT_MULTIPLE} (a 2x patch, then four 2x mergings); "
                f"received {spatial}: crop or pad the input, e.g. to {padded}"
            )

    @classmethod
    def from_monai_state_dict(cls, state_dict: Mapping[str, torch.Tensor], **monai_kwargs) -> SwinUNETR:
        """Load a state dict saved from MONAI's ``SwinUNETR`` (a checkpoint) into a minattn model.

        Builds ``monai.networks.nets.SwinUNETR(**monai_kwargs)`` with the
        arguments the checkpoint's model was built with, loads the state dict
        strictly, and converts with :func:`minattn.interop.from_monai`. The
        model comes back on the CPU, in training mode, like a new module.

        Example::

            model = SwinUNETR.from_monai_state_dict(torch.load(path), in_channels=1, out_channels=14, feature_size=48)
        """
        from monai.networks.nets import SwinUNETR as MonaiSwinUNETR

        from .interop import from_monai

        reference = MonaiSwinUNETR(**monai_kwargs)
        reference.load_state_dict(state_dict)
        return from_monai(reference)
