"""Lesion segmentation: the pool of phantoms and template copies, crops, training, checkpoints, Dice."""

import math

import pytest
import torch
from torch import nn

from minattn.apps import anatomy, lesions
from minattn.apps import segmentation as seg
from minattn.data import load_mni152


@pytest.fixture(scope="module")
def pool():
    return lesions.lesion_pool(train_phantoms=2, train_templates=1, test_phantoms=1, test_templates=1)


def _seeds(names):
    return {int(name.rsplit(" ", 1)[1]) for name in names}


def test_the_pool_has_two_classes_and_lesions_in_every_volume(pool):
    assert pool.train_names == ["phantom seed 0", "phantom seed 1", "template seed 0"]
    assert pool.test_names == [f"phantom seed {lesions.TEST_SEED}", f"template seed {lesions.TEST_SEED}"]
    assert not _seeds(pool.train_names) & _seeds(pool.test_names)  # nothing tested was trained on
    assert max(_seeds(pool.train_names)) < lesions.TEST_SEED <= min(_seeds(pool.test_names))
    volumes = [*zip(pool.train_images, pool.train_labels), *zip(pool.test_images, pool.test_labels)]
    for image, labels in volumes:
        assert image.dim() == 3 and image.shape == labels.shape and min(image.shape) >= 64
        assert image.dtype == torch.float32 and labels.dtype == torch.long
        assert labels.unique().tolist() == [0, 1]  # two classes, and lesion voxels in every volume
        assert 0 < labels.float().mean() < 0.02  # lesions are small
        assert image.min() >= 0 and image.max() <= 1.5  # about [0, 1]
        assert image[labels == 1].mean() > image[labels == 0].mean() + 0.3  # bright lesions
    phantom_image, template_image = pool.test_images
    assert phantom_image.max() == 1 and phantom_image.min() == 0  # the soft-tissue window, clipped
    assert template_image.shape == load_mni152().shape
    brain = anatomy.tissue_labels() > 0
    for labels in (pool.train_labels[2], pool.test_labels[1]):
        assert brain[labels == 1].all()  # template lesions lie wholly inside the brain
    # the template copies differ in their lesions only
    assert not torch.equal(pool.train_labels[2], pool.test_labels[1])
    outside = (pool.train_labels[2] == 0) & (pool.test_labels[1] == 0)
    assert torch.equal(pool.train_images[2][outside], template_image[outside])


def test_the_pool_is_deterministic_and_checks_its_arguments(pool):
    again = lesions.lesion_pool(train_phantoms=2, train_templates=1, test_phantoms=1, test_templates=1)
    for ours, theirs in zip(
        [*pool.train_images, *pool.train_labels, *pool.test_images, *pool.test_labels],
        [*again.train_images, *again.train_labels, *again.test_images, *again.test_labels],
    ):
        assert torch.equal(ours, theirs)
    image, labels = lesions.template_with_lesions(lesions.TEST_SEED, lesions=1)
    assert torch.equal(labels, lesions.template_with_lesions(lesions.TEST_SEED, lesions=1)[1])
    assert not torch.equal(labels, lesions.template_with_lesions(lesions.TEST_SEED + 1, lesions=1)[1])
    with pytest.raises(ValueError, match="at least one volume to train on"):
        lesions.lesion_pool(train_phantoms=0, train_templates=0)
    with pytest.raises(ValueError, match="test_phantoms must be an int"):
        lesions.lesion_pool(test_phantoms=-1)
    with pytest.raises(ValueError, match=f"from 0 to {lesions.TEST_SEED}"):
        lesions.lesion_pool(train_phantoms=lesions.TEST_SEED + 1)  # training seeds would reach the test ones
    with pytest.raises(ValueError, match="lesions must be an int of at least 1"):
        lesions.lesion_pool(lesions=0)
    with pytest.raises(ValueError, match="lesions must be an int of at least 1"):
        lesions.template_with_lesions(0, lesions=2.5)


def test_crops_pick_a_volume_and_a_place_from_seed_epoch_and_index(pool):
    transform = lesions.augmentation((64, 64, 32))
    draw = [lesions.sample_crop(transform, pool.train_images, pool.train_labels, 0, 0, i) for i in range(8)]
    for image, labels in draw:
        assert image.shape == labels.shape == (1, 64, 64, 32)
        assert image.dtype == torch.float32 and labels.dtype == torch.long
        assert set(labels.unique().tolist()) <= {0, 1}
    assert sum(bool(labels.any()) for _, labels in draw) >= 3  # about half are centred on a lesion
    again = lesions.sample_crop(transform, pool.train_images, pool.train_labels, 0, 0, 5)
    assert torch.equal(again[0], draw[5][0]) and torch.equal(again[1], draw[5][1])
    assert not torch.equal(draw[4][0], draw[5][0])
    other_epoch = lesions.sample_crop(transform, pool.train_images, pool.train_labels, 0, 1, 5)
    assert not torch.equal(other_epoch[0], draw[5][0])
    with pytest.raises(ValueError, match="crop"):
        lesions.augmentation((64, 64))
    with pytest.raises(ValueError, match="one label volume per image"):
        lesions.sample_crop(transform, pool.train_images, pool.train_labels[:-1], 0, 0, 0)
    with pytest.raises(ValueError, match=r"image and labels must both be \(D, H, W\)"):
        lesions.sample_crop(transform, [pool.train_images[0]], [pool.train_labels[0][:-1]], 0, 0, 0)


def test_two_steps_of_lesion_training_and_the_checkpoint_has_two_classes(pool, tmp_path, capsys):
    out = tmp_path / "lesions.pt"
    common = ["--task", "lesions", "--tiny", "--crop", "64x64x32", "--samples-per-epoch", "4", "--quiet"]
    record = seg.main([*common, "--steps", "2", "--epochs", "1", "--out", str(out)], data=pool)
    assert len(record["losses"]) == 2 and all(math.isfinite(v) and v > 0 for v in record["losses"])
    assert len(record["dice"]) == 1 and len(record["dice"][-1]) == 1  # one class scored: lesion
    assert list(record["test_dice"]) == pool.test_names
    per_volume = [v[0] for v in record["test_dice"].values()]
    assert record["dice"][-1][0] == pytest.approx(sum(per_volume) / len(per_volume))
    printed = capsys.readouterr().out
    assert "held-out Dice: lesion " in printed and "grey matter" not in printed and "template seed 1000" in printed
    model, loaded = seg.load_checkpoint(out)
    assert loaded["args"]["task"] == "lesions" and loaded["losses"] == record["losses"]
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 64, 64, 32)).shape == (1, 2, 64, 64, 32)  # two output channels
    torch.manual_seed(0)
    start = seg.build_model(tiny=True, num_classes=2)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), start.parameters()))  # it trained
    # a checkpoint written before --task existed is a tissue one: four output channels
    saved = torch.load(out)
    del saved["args"]["task"]
    saved["model"] = {k: v.half() for k, v in seg.build_model(tiny=True).state_dict().items()}
    torch.save(saved, tmp_path / "old.pt")
    old, _ = seg.load_checkpoint(tmp_path / "old.pt")
    with torch.no_grad():
        assert old(torch.zeros(1, 1, 64, 64, 32)).shape[1] == 4


def test_lesion_options_are_checked(pool):
    with pytest.raises(ValueError, match="--data holds a tissue split"):
        seg.main(["--task", "lesions", "--data", "split.pt", "--quiet"])
    with pytest.raises(TypeError, match="trains on a Pool"):
        seg.main(["--task", "lesions", "--quiet"], data=anatomy.front_back())
    with pytest.raises(TypeError, match="trains on a Split"):
        seg.main(["--quiet"], data=pool)
    with pytest.raises(ValueError, match="larger than a training volume"):
        seg.main(["--task", "lesions", "--tiny", "--crop", "128x64x32", "--quiet"], data=pool)
    with pytest.raises(SystemExit):
        seg.parser().parse_args(["--task", "tumours"])
    with pytest.raises(ValueError, match="num_classes must be an int of at least 2"):
        seg.build_model(tiny=True, num_classes=1)
    assert seg.parser().parse_args([]).task == "tissue"  # the default is unchanged


class _Oracle(nn.Module):
    """Logits that pick the class written in the input's voxel values (0 or 1): a perfect lesion segmenter."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # so evaluate can ask where the model lives

    def forward(self, x):
        return 10.0 * nn.functional.one_hot(x[:, 0].round().long(), 2).movedim(-1, 1).float()


def test_lesion_dice_of_a_perfect_prediction_is_one_and_of_wrong_ones_lower(pool):
    labels = pool.test_labels[0]
    dice = seg.evaluate(_Oracle(), labels.float(), labels, (64, 64, 32), num_classes=2)
    assert dice.shape == (1,) and dice.item() == pytest.approx(1.0)
    nothing = seg.evaluate(_Oracle(), torch.zeros_like(labels).float(), labels, (64, 64, 32), num_classes=2)
    assert nothing.item() == 0  # no lesion found
    half = labels.clone()
    found = half.nonzero()
    missed = found[: len(found) // 2]
    half[tuple(missed.T)] = 0  # half the lesion voxels missed: Dice = 2 * n/2 / (n + n/2) = 2/3
    dice = seg.evaluate(_Oracle(), half.float(), labels, (64, 64, 32), num_classes=2)
    expected = 2 * (len(found) - len(missed)) / (len(found) + len(found) - len(missed))
    assert dice.item() == pytest.approx(expected, abs=1e-5) and 0.6 < dice.item() < 0.7
