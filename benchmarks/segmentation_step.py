"""One training step of the capstone's models: minattn's SwinUNETR, MONAI's with the same weights, MONAI's UNet.

    python benchmarks/segmentation_step.py [--device cuda] [--dtype bfloat16] [--quick] [--crop D H W] [--batch B]

The step of ``python -m minattn.apps.segmentation``: a batch of two one-channel 64 x 64 x 32 crops,
forward, MONAI's DiceCELoss, backward and an AdamW update. The SwinUNETR is the capstone's (feature size
12, depths (2, 2, 2, 2), window 7); MONAI's is the same network with the same weights, so the two must
agree before anything is timed. The UNet is the baseline with about as many parameters. bfloat16 means
autocast, as ``--bf16`` in the training script, and on CUDA MONAI's SwinUNETR runs with
``use_flash_attention=True``. ``--crop 96 96 96 --batch 1`` times SwinUNETR's usual 96^3 input instead
(each side a multiple of 32).
"""

from __future__ import annotations

import contextlib

import torch
from monai.losses import DiceCELoss
from monai.networks.nets import SwinUNETR as MonaiSwinUNETR

from common import benchmark_arguments, describe_machine, fmt_ms, markdown_table, time_call
from minattn.apps import segmentation as seg
from minattn.apps.training import count_parameters
from minattn.interop import from_monai


def capstone_step(model, x, y, bfloat16: bool = False):
    """One training step of the capstone as a call: DiceCE, backward, AdamW (under bfloat16 autocast if asked)."""
    model.train()
    loss_function = DiceCELoss(softmax=True, to_onehot_y=True)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run():
        autocast = torch.autocast(x.device.type, dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext()
        with autocast:
            loss = loss_function(model(x).float(), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return run


def main() -> None:
    args = benchmark_arguments(
        __doc__,
        repeats=5,
        extra=[
            (("--crop",), {"type": int, "nargs": 3, "metavar": ("D", "H", "W"), "help": "default 64 64 32"}),
            (("--batch",), {"type": int, "help": "crops per step (default 2)"}),
        ],
    )
    torch.manual_seed(0)
    device = torch.device(args.device)
    crop, batch = ((64, 32, 32), 1) if args.quick else ((64, 64, 32), 2)  # 32^3 would leave one voxel at the bottleneck
    crop, batch = tuple(args.crop or crop), args.batch or batch
    if any(side % 32 for side in crop):
        raise SystemExit(f"--crop: each side must be a multiple of 32 (SwinUNETR halves it five times); got {crop}")
    flash = device.type == "cuda" and args.dtype == "bfloat16"
    theirs = MonaiSwinUNETR(
        in_channels=1, out_channels=seg.NUM_CLASSES, feature_size=12, use_flash_attention=flash
    ).to(device)
    ours = from_monai(theirs).to(device)
    unet = seg.build_model(kind="unet").to(device)
    x = torch.randn(batch, 1, *crop, device=device)
    y = torch.randint(0, seg.NUM_CLASSES, (batch, 1, *crop), device=device)
    with torch.no_grad():
        difference = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
    bfloat16 = args.dtype == "bfloat16"
    times = {name: time_call(capstone_step(model, x, y, bfloat16), device, args.repeats) for name, model in
             (("MONAI SwinUNETR", theirs), ("minattn SwinUNETR", ours), ("MONAI UNet", unet))}
    base = times["MONAI SwinUNETR"][0]
    rows = [
        [name, f"{count_parameters(model):,}", fmt_ms(*times[name]), f"{base / times[name][0]:.2f}x"]
        for name, model in (("MONAI SwinUNETR", theirs), ("minattn SwinUNETR", ours), ("MONAI UNet", unet))
    ]
    print(f"{describe_machine(device)}; {args.dtype}; batch {batch} x 1 x {crop}; flash attention: {flash}")
    print(f"max |minattn - MONAI| logits, same weights: {difference:.1e}\n")
    print(markdown_table(["model", "parameters", "training step", "speed vs MONAI SwinUNETR"], rows))


if __name__ == "__main__":
    main()
