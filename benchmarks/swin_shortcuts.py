"""What each of minattn's Swin shortcuts is worth: the same models with each switched off, in one process.

    python benchmarks/swin_shortcuts.py [--device cuda] [--quick] [--repeats N]

Two shortcuts give the windowed path's numbers sooner (see ``minattn._real_queries`` and
``minattn.swin.MLP_CHUNK_BYTES``):

- real queries: ``WindowAttention.attend_grid`` attends from the grid's own tokens only, not the
  padding's (inference anywhere, training on the CPU);
- MLP chunks: without autograd on the CPU, a block runs norm2, the MLP and the residual a few MiB of
  tokens at a time.

Each is switched off by patching its entry point (``attend_grid`` returning None; the block's chunk
test returning False), which sends the call down the route it replaced. Timed: SwinUNETR's first
stage (48 channels, 32^3 tokens, window 7, two blocks, 3 heads), inference and a training step; and
the capstone's SwinUNETR (feature size 12, 2 crops of 64 x 64 x 32), inference and a training step
(DiceCE, AdamW). The outputs with and without each shortcut are compared before timing.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import torch
from monai.networks.nets import SwinUNETR as MonaiSwinUNETR
from monai.networks.nets import swin_unetr as monai_swin

from common import benchmark_arguments, describe_machine, fmt_ms, inference, markdown_table, time_call, training_step
from segmentation_step import capstone_step
from minattn.apps import segmentation as seg
from minattn.interop import from_monai
from minattn.swin import SwinBlock
from minattn.window_attention import WindowAttention

SETTINGS = {
    "both shortcuts": (),
    "no real queries": ("real queries",),
    "no MLP chunks": ("MLP chunks",),
    "neither": ("real queries", "MLP chunks"),
}


def switched_off(shortcuts) -> contextlib.ExitStack:
    """A context in which the named shortcuts are not taken."""
    stack = contextlib.ExitStack()
    if "real queries" in shortcuts:
        stack.enter_context(mock.patch.object(WindowAttention, "attend_grid", return_value=None))
    if "MLP chunks" in shortcuts:
        stack.enter_context(mock.patch.object(SwinBlock, "_feeds_forward_in_chunks", return_value=False))
    return stack


def main() -> None:
    args = benchmark_arguments(__doc__)
    torch.manual_seed(0)
    device = torch.device(args.device)
    stage_size, crop = (8, (64, 32, 32)) if args.quick else (32, (64, 64, 32))
    layer = monai_swin.BasicLayer(dim=48, depth=2, num_heads=3, window_size=(7, 7, 7), drop_path=[0.0, 0.0])
    stage = from_monai(layer.to(device))
    stage_input = torch.randn(1, 48, *(stage_size,) * 3, device=device)
    network = from_monai(MonaiSwinUNETR(in_channels=1, out_channels=seg.NUM_CLASSES, feature_size=12).to(device))
    volumes = torch.randn(2, 1, *crop, device=device)
    labels = torch.randint(0, seg.NUM_CLASSES, (2, 1, *crop), device=device)

    with torch.no_grad():
        reference = [stage(stage_input), network(volumes)]
        differences = []
        for shortcuts in SETTINGS.values():
            with switched_off(shortcuts):
                outputs = [stage(stage_input), network(volumes)]
            differences.append(max((a - b).abs().max().item() for a, b in zip(outputs, reference)))

    passes = {
        "stage inference": inference(stage, stage_input),
        "stage training step": training_step(stage, stage_input),
        "capstone inference": inference(network, volumes),
        "capstone training step": capstone_step(network, volumes, labels),
    }
    rows = []
    for (label, shortcuts), difference in zip(SETTINGS.items(), differences):
        with switched_off(shortcuts):
            times = [time_call(run, device, args.repeats) for run in passes.values()]
        rows.append([label, *(fmt_ms(*t) for t in times), f"{difference:.1e}"])
    print(f"{describe_machine(device)}; float32; stage input (1, 48, {stage_size}, {stage_size}, {stage_size}); "
          f"capstone input (2, 1, {crop[0]}, {crop[1]}, {crop[2]})\n")
    print(markdown_table(["setting", *passes, "max output difference"], rows))


if __name__ == "__main__":
    main()
