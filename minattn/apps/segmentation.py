"""Train :class:`~minattn.SwinUNETR` to segment brain tissue or lesions, on one process or many (``torchrun``).

    python -m minattn.apps.segmentation --epochs 20 --seed 0 --out ckpt.pt
    torchrun --nproc_per_node=2 -m minattn.apps.segmentation --epochs 20 --seed 0 --out ckpt.pt
    python -m minattn.apps.segmentation --task lesions --epochs 20 --seed 0 --out lesions.pt

``--task tissue`` (the default), four classes: the data are :mod:`minattn.apps.anatomy`'s, augmented
crops of the back of the brain to train on, the front (the frontal lobes, 16 mm away) to test on.
``--task lesions``, two classes (not lesion, lesion): the data are :mod:`minattn.apps.lesions`'s, crops
from a pool of CT phantoms and copies of the MNI152 template with lesions inserted, tested on fresh
phantoms and on the template with lesions at new places. The loss is MONAI's ``DiceCELoss``; the test
score is MONAI's ``DiceMetric`` per class (background left out) on whole held-out volumes, predicted
with ``sliding_window_inference``; with several test volumes, the mean of their scores.

Started by ``torchrun`` (``WORLD_SIZE`` > 1), the model is wrapped in ``DistributedDataParallel``
(NCCL on GPUs, Gloo on CPUs) and a ``DistributedSampler`` hands every rank its share of each global
batch of ``--batch-size`` x world-size samples. Each rank's loss is the mean over its samples and DDP
averages the gradients, so the update is the one a single process makes on the whole global batch; since
a crop depends only on ``(seed, epoch, sample index)``, both draw the same crops and reach the same
weights, up to rounding: splitting a batch changes the order of floating-point sums, by about 1e-4 of a
gradient's size. SGD passes that on unchanged (``--optimiser sgd``); AdamW divides each gradient by its
own running size, so on a weight whose gradient is nearly zero its first steps can differ by a whole
learning rate. Only rank 0 validates, draws the progress bar and writes the checkpoint.

This module keeps its own loop rather than :func:`~minattn.apps.training.fit`: that loop orders the
samples itself, while here the ``DistributedSampler`` must, and the ranks must meet for validation.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ..swin_unetr import SwinUNETR
from . import anatomy, lesions

__all__ = ["MODELS", "TASKS", "build_model", "evaluate", "load_checkpoint", "main", "train"]

NUM_CLASSES = len(anatomy.CLASS_NAMES)
MODELS = ("swin_unetr", "unet")
# each task's class names, background first
TASKS = {"tissue": anatomy.CLASS_NAMES, "lesions": lesions.CLASS_NAMES}


def build_model(tiny: bool = False, kind: str = "swin_unetr", num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    """A one-channel network with ``num_classes`` outputs (4: tissue; 2: lesions); ``tiny`` for tests.

    ``kind="swin_unetr"`` is :class:`~minattn.SwinUNETR` (feature size 12, 4,078,090 parameters with four
    classes); ``kind="unet"`` is the baseline, MONAI's convolutional ``UNet`` with about as many (4,223,737).
    """
    if kind not in MODELS:
        raise ValueError(f"kind must be one of {MODELS}; received {kind!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int of at least 2; received {num_classes!r}")
    if kind == "unet":
        from monai.networks.nets import UNet

        channels = (8, 16, 32, 64, 64) if tiny else (16, 32, 64, 128, 224)
        return UNet(3, 1, num_classes, channels=channels, strides=(2, 2, 2, 2), num_res_units=1 if tiny else 2)
    if tiny:
        return SwinUNETR(1, num_classes, feature_size=12, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))
    return SwinUNETR(1, num_classes, feature_size=12, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24))


def load_checkpoint(path, map_location="cpu") -> tuple:
    """The float32 model and the training record saved by ``--out``.

    Returns:
        ``(model, record)``: the network in eval mode, and the dict of per-step losses, per-epoch
        held-out Dice (tissue: grey matter, white matter, csf / other; lesions: lesion), seconds and
        the command's arguments. A checkpoint saved before ``--task`` existed is a tissue one.
    """
    saved = torch.load(path, map_location=map_location)
    args = saved["args"]
    classes = TASKS[args.get("task", "tissue")]
    model = build_model(args.get("tiny", False), args.get("model", "swin_unetr"), len(classes))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved["model"].items()})
    return model.eval(), {**saved["record"], "args": args}


def evaluate(
    model, image: torch.Tensor, labels: torch.Tensor, roi: tuple, autocast=None, num_classes: int = NUM_CLASSES
) -> torch.Tensor:
    """Dice of each class but the background on one whole volume, predicted window by window.

    Args:
        model: channels-first network, ``(B, 1, d, h, w)`` -> ``(B, num_classes, d, h, w)`` logits.
        image: float ``(D, H, W)``.
        labels: long ``(D, H, W)``, values 0 .. num_classes - 1.
        roi: ``(d, h, w)`` window of ``sliding_window_inference``.
        autocast: a context manager factory to predict under (None: full precision).
        num_classes: 4 for tissue, 2 for lesions.

    Returns:
        float ``(num_classes - 1,)``: tissue, Dice of grey matter, white matter and csf / other;
        lesions, the lesion Dice (NaN for a class absent from both the labels and the prediction).
    """
    from monai.inferers import sliding_window_inference
    from monai.metrics import DiceMetric

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad(), autocast() if autocast else contextlib.nullcontext():
        logits = sliding_window_inference(image[None, None].to(device), roi, 4, model, overlap=0.25)
    model.train(was_training)
    prediction = torch.as_tensor(logits).float().argmax(1)
    one_hot = torch.nn.functional.one_hot
    metric = DiceMetric(include_background=False, reduction="mean_batch")
    metric(
        one_hot(prediction, num_classes).movedim(-1, 1).float(),
        one_hot(labels[None].to(device), num_classes).movedim(-1, 1).float(),
    )
    return torch.as_tensor(metric.aggregate()).as_subclass(torch.Tensor).cpu()


def _distributed() -> tuple:
    """(rank, world size, device), after joining the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _task_data(task: str, args: argparse.Namespace, data) -> tuple:
    """``(draw, test)`` for ``task``: ``draw(epoch, index)`` -> one training crop ``(image, labels)``;
    ``test``, a list of ``(name, image, labels)`` held-out volumes."""
    if task == "lesions":
        if data is None:
            data = lesions.lesion_pool(resolution=args.resolution)
        for image in data.train_images:
            if any(s < c for s, c in zip(image.shape, args.crop)):
                raise ValueError(f"--crop {args.crop} is larger than a training volume of {tuple(image.shape)}")
        transform = lesions.augmentation(args.crop)

        def draw(epoch, index):
            return lesions.sample_crop(transform, data.train_images, data.train_labels, args.seed, epoch, index)

        return draw, list(zip(data.test_names, data.test_images, data.test_labels))
    if data is not None:
        pass
    elif args.data and Path(args.data).exists():  # the halves saved earlier: skips nilearn's resampling
        data = anatomy.Split(**torch.load(args.data))
    else:
        data = anatomy.front_back(args.resolution)
    transform = anatomy.augmentation(args.crop)

    def draw(epoch, index):
        return anatomy.sample_crop(transform, data.train_image, data.train_labels, args.seed, epoch, index)

    return draw, [("front", data.test_image, data.test_labels)]


def train(args: argparse.Namespace, data: anatomy.Split | lesions.Pool | None = None) -> dict:
    """Train as ``args`` say (see :func:`main`); return the record: per-step losses and validation Dice.

    ``data``: for ``--task tissue`` the split to use (default: ``args.data``'s file, else
    :func:`anatomy.front_back`); for ``--task lesions`` the pool (default: :func:`lesions.lesion_pool`).
    ``record["dice"]`` holds, per validation, each class's Dice (background left out) averaged over the
    test volumes; ``record["test_dice"]`` the last validation's scores per test volume, by name.
    With ``args.dump_params`` every rank writes its parameters to ``<dump_params>/rank<r>.pt``.
    """
    rank, world, device = _distributed()
    task = getattr(args, "task", "tissue")  # a Namespace made before --task existed means tissue
    if task not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}; received {task!r}")
    classes = TASKS[task]
    draw, test = _task_data(task, args, data)
    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = build_model(args.tiny, args.model, len(classes)).to(device)
    trained = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    from monai.losses import DiceCELoss

    loss_function = DiceCELoss(softmax=True, to_onehot_y=True)
    if args.optimiser == "sgd":
        optimiser = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    else:
        optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5)
    sampler = torch.utils.data.DistributedSampler(
        range(args.samples_per_epoch), num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True
    )
    steps_per_epoch = len(sampler) // args.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"--samples-per-epoch {args.samples_per_epoch} is less than one global batch of "
            f"{args.batch_size} x {world} processes"
        )
    total = steps_per_epoch * args.epochs if args.steps is None else min(args.steps, steps_per_epoch * args.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _learning_rate_factor(step, total, args))
    use_bf16 = args.bf16 and device.type == "cuda"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    record = {"losses": [], "dice": [], "world_size": world, "global_batch": args.batch_size * world}
    dice_label = "dice" if task == "tissue" else "lesion dice"
    bar = None
    if rank == 0 and not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="segmentation" if task == "tissue" else "lesion segmentation", unit="step")
    start = time.perf_counter()
    step = 0
    model.train()
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        order = list(sampler)
        for first in range(0, steps_per_epoch * args.batch_size, args.batch_size):
            if step == total:
                break
            crops = [draw(epoch, i) for i in order[first : first + args.batch_size]]
            images = torch.stack([c[0] for c in crops]).to(device)
            labels = torch.stack([c[1] for c in crops]).to(device)
            with autocast():
                loss = loss_function(trained(images).float(), labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if world > 1:  # the global batch's loss, for the record and the bar
                loss = loss.detach().clone()
                dist.all_reduce(loss)
                loss /= world
            record["losses"].append(loss.item())
            if bar is not None:
                shown = {"loss": f"{record['losses'][-1]:.3f}"}
                if record["dice"]:  # the last held-out Dice, averaged over the classes but background
                    shown[dice_label] = f"{sum(record['dice'][-1]) / len(record['dice'][-1]):.3f}"
                bar.set_postfix(shown, refresh=False)
                bar.update(1)
        if args.validate:  # after every epoch, and after the last step
            if rank == 0:
                per_volume = [evaluate(model, x, y, args.crop, autocast, len(classes)) for _, x, y in test]
                dice = torch.stack(per_volume).mean(0)
                record["dice"].append(dice.tolist())
                record["test_dice"] = {name: d.tolist() for (name, _, _), d in zip(test, per_volume)}
                if bar is not None:
                    bar.set_postfix({"loss": f"{record['losses'][-1]:.3f}", dice_label: f"{dice.mean():.3f}"})
            if world > 1:
                dist.barrier()
        if step == total:
            break
    if bar is not None:
        bar.close()
    record["seconds"] = time.perf_counter() - start
    if args.dump_params:
        Path(args.dump_params).mkdir(parents=True, exist_ok=True)
        torch.save(
            {k: v.detach().cpu() for k, v in model.named_parameters()}, Path(args.dump_params) / f"rank{rank}.pt"
        )
    if args.out and rank == 0:
        # float16 halves the file (4 M parameters: 8 MB); the rounding changes no prediction measurably
        weights = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        torch.save({"model": weights, "args": vars(args), "record": record}, args.out)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return record


def _learning_rate_factor(step: int, total: int, args) -> float:
    """``--schedule cosine``: from 1 down to 0 along half a cosine over the run; ``constant``: 1."""
    if args.schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * step / total))


def _crop(text: str) -> tuple:
    sizes = tuple(int(s) for s in text.split("x"))
    # 32^3 would leave one voxel at the bottleneck, where instance norm has nothing to normalise over
    if len(sizes) != 3 or any(s < 32 or s % 32 for s in sizes) or max(sizes) < 64:
        raise argparse.ArgumentTypeError(
            f"crop must be DxHxW, each a positive multiple of 32 and one at least 64; received {text!r}"
        )
    return sizes


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m minattn.apps.segmentation``."""
    p = argparse.ArgumentParser(prog="python -m minattn.apps.segmentation", description=__doc__.split("\n")[0])
    p.add_argument(
        "--task", choices=tuple(TASKS), default="tissue", help="tissue: four brain tissues; lesions: lesion or not"
    )
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=None, help="stop after this many optimiser steps")
    p.add_argument("--samples-per-epoch", type=int, default=32, help="augmented crops per epoch")
    p.add_argument("--batch-size", type=int, default=2, help="crops per process per step")
    p.add_argument(
        "--crop", type=_crop, default=(64, 64, 32), help="DxHxW, multiples of 32, one at least 64 (default 64x64x32)"
    )
    p.add_argument("--model", choices=MODELS, default="swin_unetr", help="unet: the convolutional baseline")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine", help="learning rate over the run")
    p.add_argument(
        "--optimiser",
        choices=("adamw", "sgd"),
        default="adamw",
        help="sgd keeps one process and many within rounding of each other; AdamW's first steps do not (see docs)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=2, choices=(1, 2), help="the template's voxel size in mm")
    p.add_argument(
        "--data", default=None, help="tissue only: a file of anatomy.front_back() saved with torch.save(asdict(...))"
    )
    p.add_argument("--tiny", action="store_true", help="a small model, for tests")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA only)")
    p.add_argument("--no-validate", dest="validate", action="store_false", help="skip the held-out Dice")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", default=None, help="checkpoint path (written by rank 0)")
    p.add_argument("--dump-params", default=None, help="folder where every rank writes its parameters")
    return p


def main(argv=None, data: anatomy.Split | lesions.Pool | None = None) -> dict:
    """Parse ``argv`` (default: the command line) and :func:`train` (on ``data`` if given)."""
    args = parser().parse_args(argv)
    for name in ("epochs", "samples_per_epoch", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1; received {getattr(args, name)}")
    if args.task == "lesions" and args.data:
        raise ValueError("--data holds a tissue split; --task lesions builds its volumes itself")
    expected = anatomy.Split if args.task == "tissue" else lesions.Pool
    if data is not None and not isinstance(data, expected):
        raise TypeError(f"--task {args.task} trains on a {expected.__name__}; received {type(data).__name__}")
    record = train(args, data)
    if int(os.environ.get("RANK", "0")) == 0 and record["dice"]:
        names = TASKS[args.task][1:]
        print("held-out Dice: " + ", ".join(f"{n} {d:.3f}" for n, d in zip(names, record["dice"][-1])))
        if len(record["test_dice"]) > 1:  # the mean above, volume by volume
            print("  per volume: " + ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in record["test_dice"].items()))
    return record


if __name__ == "__main__":
    main()
