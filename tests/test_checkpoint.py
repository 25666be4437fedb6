"""The committed SwinUNETR checkpoint of lesson 15: small, reproducible by its recorded command, and good."""

import re
from pathlib import Path

import pytest
import torch

from minattn.apps import anatomy
from minattn.apps import segmentation as seg

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "course" / "checkpoints" / "anatomy-swin-unetr.pt"
# Held-out Dice the checkpoint must reach on the front of the brain (the test part): grey matter, white matter, csf / other.
# Measured when it was trained (README, "Measured figures"); the floors sit a little below.
DICE_FLOORS = {"grey matter": 0.80, "white matter": 0.82, "csf / other": 0.30}


@pytest.fixture(scope="module")
def trained():
    return seg.load_checkpoint(CHECKPOINT)


def test_the_checkpoint_is_under_10_mb_and_records_its_command(trained):
    assert CHECKPOINT.stat().st_size < 10 * 2**20
    model, record = trained
    args = record["args"]
    assert args["model"] == "swin_unetr" and not args["tiny"] and args["seed"] == 0
    assert len(record["losses"]) == args["epochs"] * args["samples_per_epoch"] // args["batch_size"]
    # the README gives the command that wrote it, with these very arguments
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = (
        f"python -m minattn.apps.segmentation --epochs {args['epochs']} --samples-per-epoch "
        f"{args['samples_per_epoch']} --batch-size {args['batch_size']} --seed {args['seed']}"
    )
    assert re.search(re.escape(command) + r" --out course/checkpoints/anatomy-swin-unetr\.pt", readme)


def test_the_checkpoint_segments_the_held_out_hemisphere(trained, two_threads):
    model, record = trained
    halves = anatomy.front_back()
    dice = seg.evaluate(model, halves.test_image, halves.test_labels, roi=tuple(record["args"]["crop"]))
    for name, score in zip(anatomy.CLASS_NAMES[1:], dice.tolist()):
        assert score >= DICE_FLOORS[name], f"{name}: held-out Dice {score:.3f} < {DICE_FLOORS[name]}"
    # and it is the model that was trained: the record's last validation agrees (float16 storage aside)
    assert torch.allclose(dice, torch.tensor(record["dice"][-1]), atol=0.01)
    # a model that was not trained does not pass these floors, so they measure the training
    torch.manual_seed(0)
    untrained = seg.evaluate(seg.build_model(), halves.test_image, halves.test_labels, roi=(64, 64, 32))
    assert (untrained < torch.tensor(list(DICE_FLOORS.values()))).all()
