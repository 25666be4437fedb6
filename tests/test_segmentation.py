"""Brain-tissue segmentation on the MNI152 template: labels, the hemisphere split, crops, training, Dice."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from minattn.apps import anatomy
from minattn.apps import segmentation as seg
from minattn.data import load_mni152


@pytest.fixture(scope="module")
def halves():
    return anatomy.hemispheres()


def test_labels_cover_four_classes_inside_the_brain_mask():
    labels = tissue = anatomy.tissue_labels()
    assert labels.shape == load_mni152().shape == (95, 117, 99) and labels.dtype == torch.long
    counts = torch.bincount(tissue.flatten(), minlength=5)
    assert counts[4] == 0 and (counts[:4] > 0.01 * labels.numel()).all()  # four classes, each at least 1 %
    assert counts[1] > counts[2] > counts[3]  # more grey than white matter, more white matter than fluid
    image = load_mni152()
    assert image[labels == 2].mean() > image[labels == 1].mean() > image[labels == 3].mean()  # T1 contrast
    with pytest.raises(ValueError, match="resolution"):
        anatomy.tissue_labels(3)


def test_hemispheres_are_disjoint_and_the_test_half_is_mirrored(halves):
    image, labels = load_mni152(), anatomy.tissue_labels()
    mid = halves.midline
    assert mid == 49 and halves.train_image.shape == halves.test_image.shape == (95, 117, 49)
    assert halves.train_labels.shape == halves.test_labels.shape == (95, 117, 49)
    assert 2 * halves.train_image.shape[-1] + 1 == image.shape[-1]  # every column but the midline, once
    assert torch.equal(halves.train_image, image[..., :mid]) and torch.equal(halves.train_labels, labels[..., :mid])
    assert torch.equal(halves.test_image, image[..., mid + 1 :].flip(-1))
    assert torch.equal(halves.test_labels, labels[..., mid + 1 :].flip(-1))
    # the template is the symmetric MNI152: mirrored, the right half IS the left one, a leak if tested on
    assert torch.equal(halves.train_labels, halves.test_labels)
    assert torch.allclose(halves.train_image, halves.test_image, atol=1e-6)
    assert not torch.equal(halves.train_labels, labels[..., mid + 1 :])  # unmirrored it is not


def test_front_back_split_leaves_a_gap_and_keeps_every_class_in_both_parts():
    split = anatomy.front_back()
    image, labels = load_mni152(), anatomy.tissue_labels()
    assert split.test_image.shape == (95, 43, 99) and split.train_image.shape == (95, 66, 99)
    assert torch.equal(split.test_image, image[:, :43]) and torch.equal(split.train_labels, labels[:, 51:])
    assert 43 + 8 + 66 == image.shape[1]  # 8 rows (16 mm) between the parts belong to neither
    for part in (split.train_labels, split.test_labels):
        assert (torch.bincount(part.flatten(), minlength=4) > 0.005 * part.numel()).all()
    assert split.test_image.shape != split.train_image.shape  # not a mirror copy: other anatomy
    at_1mm = anatomy.front_back(1, gap_mm=16)
    assert at_1mm.test_image.shape[1] + 16 + at_1mm.train_image.shape[1] == load_mni152(1).shape[1]
    with pytest.raises(ValueError, match="test_share"):
        anatomy.front_back(test_share=1.2)
    with pytest.raises(ValueError, match="rows to train on"):
        anatomy.front_back(test_share=0.9)


def test_crops_are_multiples_of_32_seeded_and_keep_the_labels(halves):
    transform = anatomy.augmentation((32, 64, 32))
    draw = [anatomy.sample_crop(transform, halves.train_image, halves.train_labels, 0, 0, i) for i in (0, 0, 1)]
    for image, labels in draw:
        assert image.shape == labels.shape == (1, 32, 64, 32) and all(s % 32 == 0 for s in image.shape[1:])
        assert image.dtype == torch.float32 and labels.dtype == torch.long
        assert set(labels.unique().tolist()) <= {0, 1, 2, 3}
    assert torch.equal(draw[0][0], draw[1][0]) and torch.equal(draw[0][1], draw[1][1])  # same (seed, epoch, index)
    assert not torch.equal(draw[0][0], draw[2][0])
    with pytest.raises(ValueError, match="crop"):
        anatomy.augmentation((32, 64))
    with pytest.raises(ValueError, match="image and labels"):
        anatomy.sample_crop(transform, halves.train_image, halves.train_labels[:-1], 0, 0, 0)


def test_two_steps_of_training_run_and_give_finite_losses(tmp_path):
    data = tmp_path / "split.pt"
    torch.save(dataclasses.asdict(anatomy.front_back()), data)
    out = tmp_path / "ckpt.pt"
    common = ["--tiny", "--steps", "2", "--crop", "32x64x32", "--samples-per-epoch", "4", "--quiet"]
    record = seg.main([*common, "--batch-size", "2", "--no-validate", "--data", str(data), "--out", str(out)])
    assert len(record["losses"]) == 2 and all(math.isfinite(v) and v > 0 for v in record["losses"])
    assert record["world_size"] == 1 and record["global_batch"] == 2 and record["dice"] == []
    saved = torch.load(out)
    assert all(v.dtype == torch.float16 for v in saved["model"].values() if v.is_floating_point())
    model, loaded = seg.load_checkpoint(out)
    assert loaded["losses"] == record["losses"] and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.manual_seed(0)
    start = seg.build_model(tiny=True)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), start.parameters()))  # it trained
    baseline = seg.main([*common, "--model", "unet", "--no-validate", "--data", str(data)])
    assert len(baseline["losses"]) == 2 and all(math.isfinite(v) for v in baseline["losses"])
    with pytest.raises(ValueError, match="kind must be one of"):
        seg.build_model(kind="vit")
    for bad in ("32x48x32", "32x32x32", "64x64"):
        with pytest.raises(SystemExit):
            seg.parser().parse_args(["--crop", bad])


class _Oracle(nn.Module):
    """Logits that pick the class written in the input's voxel values: a perfect segmenter for a label image."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # so evaluate can ask where the model lives

    def forward(self, x):
        return 10.0 * nn.functional.one_hot(x[:, 0].round().long(), seg.NUM_CLASSES).movedim(-1, 1).float()


def test_dice_of_a_perfect_prediction_is_one_and_of_a_wrong_one_is_lower(halves):
    labels = halves.test_labels
    dice = seg.evaluate(_Oracle(), labels.float(), labels, (32, 64, 32))
    assert dice.shape == (3,) and torch.allclose(dice, torch.ones(3))
    wrong = labels.clone()
    wrong[wrong == 3] = 1  # fluid called grey matter
    dice = seg.evaluate(_Oracle(), wrong.float(), labels, (32, 64, 32))
    assert dice[0] < 1 and dice[1] == 1 and dice[2] == 0
