"""Measure how closely minattn matches PyTorch and MONAI: the max absolute difference per check.

    python benchmarks/equivalences.py [--device cuda]

Prints a Markdown table. The same comparisons are asserted (to 1e-5 in float32
and 1e-10 in float64) by the tests; this script reports the measured sizes.
"""

from __future__ import annotations

import argparse
import platform

import monai
import torch
import torch.nn.functional as F
from einops import rearrange
from monai.networks.nets import swin_unetr as monai_swin
from torch import nn

import minattn
from minattn.interop import from_monai, from_torch


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def _randomised(module: nn.Module, device) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return module.to(device).eval()


def sdpa_rows(device):
    rows = []
    for dtype in (torch.float32, torch.float64):
        q, k, v = (torch.randn(2, 4, n, d, device=device, dtype=dtype) for n, d in ((64, 32), (96, 32), (96, 16)))
        mask = torch.rand(64, 96, device=device) > 0.3
        mask[:, 0] = True
        bias = torch.randn(4, 64, 96, device=device, dtype=dtype)
        ours = minattn.scaled_dot_product_attention(q, k, v, mask=mask, bias=bias)
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~mask, float("-inf")))
        rows.append((f"scaled_dot_product_attention vs torch SDPA, mask + bias, Nq != Nk, d_v != d_k ({dtype})", _max_diff(ours, theirs)))
    return rows


def patch_rows(device):
    conv = nn.Conv3d(1, 128, 8, 8).to(device)
    x = torch.randn(1, 1, 32, 32, 32, device=device)
    ours = minattn.PatchEmbed.from_conv(conv)(x)
    return [("PatchEmbed vs Conv3d, 8^3 patches, E = 128", _max_diff(ours, rearrange(conv(x), "b e d h w -> b (d h w) e")))]


def torch_mha_rows(device):
    mha = nn.MultiheadAttention(48, 3, batch_first=True).to(device)
    x = torch.randn(2, 50, 48, device=device)
    return [("from_torch vs nn.MultiheadAttention", _max_diff(from_torch(mha)(x), mha(x, x, x)[0]))]


def monai_rows(device):
    rows = []
    for label, shape, downsample in [
        ("divisible 16^3, PatchMerging", (16, 16, 16), monai_swin.PatchMerging),
        ("padding 13x15x17, PatchMergingV2", (13, 15, 17), monai_swin.PatchMergingV2),
        ("window > input along D (5x16x16)", (5, 16, 16), None),
        ("window > input along H (16x5x16)", (16, 5, 16), None),
    ]:
        layer = monai_swin.BasicLayer(
            dim=48, depth=2, num_heads=3, window_size=(7, 7, 7), drop_path=[0.0, 0.0], qkv_bias=True, downsample=downsample
        )
        layer = _randomised(layer, device)
        x = torch.randn(1, 48, *shape, device=device)
        with torch.no_grad():
            rows.append((f"from_monai BasicLayer (48 ch, window 7), {label}", _max_diff(from_monai(layer)(x), layer(x))))
    block = _randomised(monai_swin.SwinTransformerBlock(48, 3, (7, 7, 7), (3, 3, 3)), device)
    x = torch.randn(1, 14, 14, 14, 48, device=device)
    mask = monai_swin.compute_mask([14, 14, 14], (7, 7, 7), (3, 3, 3), torch.device(device))
    with torch.no_grad():
        rows.append(("from_monai SwinTransformerBlock, shifted", _max_diff(from_monai(block)(x, mask), block(x, mask))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    # Compare arithmetic, not precision modes: CUDA convolutions default to
    # TF32 (10-bit mantissa), which alone moves Conv3d by ~1e-3.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device} ({name}); torch {torch.__version__}; MONAI {monai.__version__}\n")
    print("| equivalence | max abs difference |\n|---|---|")
    for check, diff in sdpa_rows(device) + patch_rows(device) + torch_mha_rows(device) + monai_rows(device):
        print(f"| {check} | {diff:.1e} |")


if __name__ == "__main__":
    main()
