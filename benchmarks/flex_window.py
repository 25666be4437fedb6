"""Shifted-window attention as one FlexAttention call, against the windowed path and MONAI's BasicLayer.

    python benchmarks/flex_window.py [--device cuda] [--dtype bfloat16] [--quick]

SwinUNETR's first stage: 48 channels, 32^3 tokens, window 7, two blocks (regular,
shifted), 3 heads. Times inference (no_grad) and a training step (forward and
backward) for MONAI, minattn's default windowed path and minattn's FlexAttention
path (compiled; the first, compiling call is a warm-up and not timed), after
checking that the outputs agree. The table says which route each pass took:
FlexAttention has no backward pass on the CPU in torch 2.13, so there the flex
layer trains through the windowed path. --quick: a 7^3 grid (one window) and eager
FlexAttention, for a smoke run.
"""

from __future__ import annotations

import torch
from common import benchmark_arguments, describe_machine, fmt_ms, inference, markdown_table, time_call, training_step
from monai.networks.nets import swin_unetr as monai_swin

import minattn
from minattn.interop import from_monai


def routes(adapter) -> str:
    return ", ".join(sorted({block.last_backend for block in adapter.module.blocks}))


def main() -> None:
    args = benchmark_arguments(__doc__)
    torch.manual_seed(0)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    size, repeats, flex = (7, 1, "flex-eager") if args.quick else (32, args.repeats, "flex")

    layer = monai_swin.BasicLayer(
        dim=48, depth=2, num_heads=3, window_size=(7, 7, 7), drop_path=[0.0, 0.0], qkv_bias=True
    )
    layer = layer.to(device, dtype).eval()
    windows = from_monai(layer)
    flexible = minattn.set_attention_backend(from_monai(layer), flex)
    x = torch.randn(1, 48, size, size, size, device=device, dtype=dtype)

    with torch.no_grad():
        reference = layer(x).float()
        diff_windows = (windows(x).float() - reference).abs().max().item()
        diff_flex = (flexible(x).float() - reference).abs().max().item()  # also compiles, once per grid

    rows = []
    for label, timed in (("inference", inference), ("training step", training_step)):
        monai_time = time_call(timed(layer, x), device, repeats)
        windows_time = time_call(timed(windows, x), device, repeats)
        flex_time = time_call(timed(flexible, x), device, repeats)
        rows.append(
            [
                label,
                fmt_ms(*monai_time),
                fmt_ms(*windows_time),
                fmt_ms(*flex_time),
                routes(flexible),
                f"{windows_time[0] / flex_time[0]:.2f}x",
                f"{monai_time[0] / flex_time[0]:.2f}x",
            ]
        )
    shape = f"(1, 48, {size}, {size}, {size})"
    print(f"{describe_machine(device)}; {args.dtype}; input {shape}; attention_backend={flex!r}")
    print(f"max |minattn - MONAI|: windows {diff_windows:.1e}, flex {diff_flex:.1e}\n")
    header = ["pass", "MONAI BasicLayer", "minattn windows", "minattn flex", "flex route", "vs windows", "vs MONAI"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
