"""From voxels to tokens: cut a volume into patches and project each one.

A volume ``(B, C, D, H, W)`` is cut into non-overlapping ``pd x ph x pw``
patches. Each patch is flattened channel-major, ``(C, pd, ph, pw)``, which is
the memory layout of a ``Conv3d`` kernel, so a linear layer on the flattened
patches is exactly a convolution with kernel = stride = patch.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from ._validate import as_size_tuple, check_divisible, check_int, check_spatial_rank, spatial_ndim

# einops patterns for 2 and 3 spatial axes. Lower-case letters before the
# parentheses count patches along an axis; p, q, r index voxels inside a patch.
_PATCHIFY = {
    3: "b c (d p) (h q) (w r) -> b (d h w) (c p q r)",
    2: "b c (h q) (w r) -> b (h w) (c q r)",
}
_UNPATCHIFY = {3: "b (d h w) (c p q r) -> b c (d p) (h q) (w r)", 2: "b (h w) (c q r) -> b c (h q) (w r)"}
_AXES = {3: ("d", "h", "w"), 2: ("h", "w")}
_INNER = {3: ("p", "q", "r"), 2: ("q", "r")}


def patchify(x: torch.Tensor, patch_size) -> torch.Tensor:
    """Cut an image into flattened patches.

    Args:
        x: image ``(B, C, D, H, W)`` (or ``(B, C, H, W)`` in 2D).
        patch_size: an int or one int per spatial axis; must divide the image.

    Returns:
        ``(B, N, C * pd * ph * pw)`` with ``N = (D/pd)(H/ph)(W/pw)`` tokens in
        row-major ``(d, h, w)`` order, each flattened as ``(C, pd, ph, pw)``.
    """
    ndim = check_spatial_rank(x, "x", "channels_first")
    patch = as_size_tuple(patch_size, ndim, "patch_size")
    check_divisible(x.shape[2:], patch, "patch size", "crop or pad the image to a multiple of the patch first")
    sizes = dict(zip(_INNER[ndim], patch))
    return rearrange(x, _PATCHIFY[ndim], **sizes)


def unpatchify(tokens: torch.Tensor, patch_size, grid) -> torch.Tensor:
    """Inverse of :func:`patchify`.

    Args:
        tokens: ``(B, N, C * prod(patch_size))``.
        patch_size: the patch used to make the tokens.
        grid: number of patches along each spatial axis, ``(D/pd, H/ph, W/pw)``.

    Returns:
        The image ``(B, C, D, H, W)`` (or ``(B, C, H, W)`` in 2D).
    """
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
        raise ValueError(f"tokens must have shape (B, N, C * patch volume); received {getattr(tokens, 'shape', tokens)}")
    grid_t = tuple(grid)
    ndim = len(grid_t)
    if ndim not in (2, 3):
        raise ValueError(f"grid needs 2 or 3 entries (patches per spatial axis); received {grid_t}")
    grid_t = as_size_tuple(grid_t, ndim, "grid")
    patch = as_size_tuple(patch_size, ndim, "patch_size")
    if tokens.shape[1] != math.prod(grid_t):
        raise ValueError(f"grid {grid_t} holds {math.prod(grid_t)} patches but tokens has {tokens.shape[1]} (dim 1)")
    if tokens.shape[2] % math.prod(patch):
        raise ValueError(
            f"token length {tokens.shape[2]} is not a multiple of the patch volume {math.prod(patch)} "
            f"(patch {patch}); each token should hold C * {math.prod(patch)} numbers"
        )
    sizes = dict(zip(_AXES[ndim], grid_t)) | dict(zip(_INNER[ndim], patch))
    return rearrange(tokens, _UNPATCHIFY[ndim], **sizes)


class PatchEmbed(nn.Module):
    """Linear projection of flattened patches to ``embed_dim`` features.

    Equal to ``nn.Conv3d(in_channels, embed_dim, kernel_size=patch, stride=patch)``
    with the same weights (see :meth:`from_conv` and :meth:`conv_weight`). It has
    ``embed_dim * (prod(patch) * in_channels + 1)`` parameters: for an 8^3
    one-channel patch projected to 128 features, 128 * 513 = 65,664.

    Args:
        patch_size: an int (3D) or one int per spatial axis.
        in_channels: channels C of the image.
        embed_dim: features E of each token.
        spatial_dims: 2 or 3; taken from ``patch_size`` when it is a sequence.
    """

    def __init__(self, patch_size, in_channels: int, embed_dim: int, spatial_dims: int | None = None):
        super().__init__()
        if spatial_dims is None:
            spatial_dims = spatial_ndim(patch_size)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3; received {spatial_dims}")
        for name, value in (("in_channels", in_channels), ("embed_dim", embed_dim)):
            check_int(value, name, minimum=1)
        self.patch_size = as_size_tuple(patch_size, spatial_dims, "patch_size")
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.proj = nn.Linear(in_channels * math.prod(self.patch_size), embed_dim)

    def forward(self, x: torch.Tensor, as_grid: bool = False) -> torch.Tensor:
        """Project ``x`` ``(B, C, D, H, W)`` to tokens.

        Returns ``(B, N, E)``, or with ``as_grid=True`` the channels-last grid
        ``(B, D/pd, H/ph, W/pw, E)`` that Swin blocks take.
        """
        if isinstance(x, torch.Tensor) and x.ndim == len(self.patch_size) + 2 and x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have {self.in_channels} channels at dim 1, (B, C, ...); received shape {tuple(x.shape)}"
            )
        tokens = self.proj(patchify(x, self.patch_size))
        if not as_grid:
            return tokens
        grid = [s // p for s, p in zip(x.shape[2:], self.patch_size)]
        return tokens.reshape(x.shape[0], *grid, self.embed_dim)

    def conv_weight(self) -> torch.Tensor:
        """The projection as a convolution kernel ``(E, C, pd, ph, pw)``."""
        return self.proj.weight.reshape(self.embed_dim, self.in_channels, *self.patch_size)

    @classmethod
    def from_conv(cls, conv: nn.Conv3d | nn.Conv2d) -> "PatchEmbed":
        """Build the equivalent ``PatchEmbed`` from a patchifying convolution."""
        if conv.kernel_size != conv.stride or any(conv.padding) or conv.groups != 1 or any(d != 1 for d in conv.dilation):
            raise ValueError(
                "only a convolution with kernel_size == stride, no padding, no groups and no dilation is a patch "
                f"embedding; received kernel {conv.kernel_size}, stride {conv.stride}, padding {conv.padding}"
            )
        embed = cls(conv.kernel_size, conv.in_channels, conv.out_channels)
        embed = embed.to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            embed.proj.weight.copy_(conv.weight.reshape(conv.out_channels, -1))
            if conv.bias is not None:
                embed.proj.bias.copy_(conv.bias)
            else:
                embed.proj.bias.zero_()
        return embed
