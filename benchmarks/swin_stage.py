"""minattn.SwinStage against MONAI's BasicLayer with the same weights.

    python benchmarks/swin_stage.py [--device cuda] [--dtype bfloat16] [--quick]

SwinUNETR's first stage: 48 channels, 32^3 tokens, window 7, two blocks, 3 heads.
Times inference (no_grad) and a training step (forward and backward) for MONAI,
minattn's fused path (the default) and minattn's explicit teaching path, and
checks that the outputs agree before timing anything.
"""

from __future__ import annotations


import torch
from monai.networks.nets import swin_unetr as monai_swin

from common import benchmark_arguments, describe_machine, fmt_ms, inference, markdown_table, time_call, training_step
from minattn.interop import from_monai


def set_fused(adapter, fused: bool) -> None:
    for block in adapter.module.blocks:
        block.attn.fused = fused


def main() -> None:
    args = benchmark_arguments(__doc__)
    torch.manual_seed(0)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    size, repeats = (8, 1) if args.quick else (32, args.repeats)

    layer = monai_swin.BasicLayer(dim=48, depth=2, num_heads=3, window_size=(7, 7, 7), drop_path=[0.0, 0.0], qkv_bias=True)
    layer = layer.to(device, dtype).eval()
    ours = from_monai(layer)
    x = torch.randn(1, 48, size, size, size, device=device, dtype=dtype)

    with torch.no_grad():
        reference = layer(x)
        diffs = {}
        for fused in (True, False):
            set_fused(ours, fused)
            diffs[fused] = (ours(x).float() - reference.float()).abs().max().item()

    rows = []
    for label, timed in (("inference", inference), ("training step", training_step)):
        monai_time = time_call(timed(layer, x), device, repeats)
        set_fused(ours, True)
        fused_time = time_call(timed(ours, x), device, repeats)
        set_fused(ours, False)
        explicit_time = time_call(timed(ours, x), device, repeats)
        rows.append([
            label,
            fmt_ms(*monai_time),
            fmt_ms(*fused_time),
            f"{monai_time[0] / fused_time[0]:.2f}x",
            fmt_ms(*explicit_time),
            f"{monai_time[0] / explicit_time[0]:.2f}x",
        ])
    print(f"{describe_machine(device)}; {args.dtype}; input (1, 48, {size}, {size}, {size})")
    print(f"max |minattn - MONAI|: fused {diffs[True]:.1e}, explicit {diffs[False]:.1e}\n")
    header = ["pass", "MONAI BasicLayer", "minattn fused", "speed-up", "minattn explicit", "speed-up"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
