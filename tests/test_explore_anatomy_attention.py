"""The anatomy attention explorer (lesson 15), driven headlessly through its controls."""

import statistics

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets
import numpy as np
import pytest
import torch

from minattn.apps.anatomy import CLASS_NAMES
from minattn.apps.segmentation import build_model
from minattn.apps.voxel_attention import voxel_attention
from minattn.explore import EXPLORERS, anatomy_attention_explorer
from minattn.explore.anatomy_attention import AnatomyAttentionExplorer, label_borders, weight_colours
from minattn.swin_unetr import SwinUNETR

SHAPE = (37, 50, 29)  # unequal extents, none a multiple of 32


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SwinUNETR(1, 4, feature_size=6, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 3), window_size=(3, 4, 2)).eval()


@pytest.fixture(scope="module")
def anatomy():
    """A ball of 'tissue' (labels 1 inside 2 inside 3) in a noisy image."""
    grid = torch.stack(torch.meshgrid(*(torch.arange(s) for s in SHAPE), indexing="ij"), -1).float()
    radius = ((grid - torch.tensor(SHAPE) / 2) / torch.tensor(SHAPE)).norm(dim=-1)
    labels = (radius < 0.45).long() + (radius < 0.3).long() + (radius < 0.15).long()
    image = labels.float() / 3 + 0.05 * torch.rand(SHAPE, generator=torch.Generator().manual_seed(0))
    return image, labels


@pytest.fixture(scope="module")
def explorer(model, anatomy):
    image, labels = anatomy
    return anatomy_attention_explorer(model, image, labels)


def expected_planes(model, image, voxel, stage, block):
    maps = voxel_attention(model, image, voxel).block(stage, block).voxel_map.numpy()
    return {"axial": maps[voxel[0]], "coronal": maps[:, voxel[1]], "sagittal": maps[:, :, voxel[2]]}


def test_it_builds_with_a_white_figure_and_its_controls(explorer):
    assert isinstance(explorer, widgets.VBox) and explorer.state["error"] is None, explorer.state["error"]
    assert isinstance(explorer, AnatomyAttentionExplorer)
    assert set(explorer.controls) == {"z", "y", "x", "stage", "block", "scale", "outline"}
    assert [explorer.controls[a].max for a in "zyx"] == [s - 1 for s in SHAPE]
    assert list(explorer.controls["stage"].options) == [("1", 1), ("2", 2), ("3", 3), ("4", 4)]
    assert list(explorer.controls["block"].options) == [("regular", 0), ("shifted", 1)]
    assert explorer.state["voxel"] == tuple(s // 2 for s in SHAPE)  # starts at the centre
    assert explorer.figure.get_facecolor() == (1.0, 1.0, 1.0, 1.0)
    assert explorer.png()[:8] == b"\x89PNG\r\n\x1a\n"
    assert explorer._dom_classes == ("minattn-explorer", "minattn-explorer-anatomy-attention")


def test_it_is_registered():
    assert EXPLORERS["anatomy_attention_explorer"] is AnatomyAttentionExplorer


def test_stage_and_block_redraw_from_the_maps_computed_once(explorer, model, anatomy):
    image, _ = anatomy
    voxel = explorer.state["voxel"]
    computed = explorer.maps_computed
    times, pngs = [], set()
    for stage in (1, 2, 3, 4):
        for block in (0, 1):
            with explorer.hold():
                explorer.controls["stage"].value = stage
                explorer.controls["block"].value = block
            state = explorer.state
            assert state["error"] is None, state["error"]
            assert (state["stage"], state["block"]) == (stage, block)
            assert state["kind"] == ("shifted" if block else "regular")
            for name, plane in expected_planes(model, image, voxel, stage, block).items():
                np.testing.assert_allclose(state["planes"][name], plane, atol=1e-7)
            times.append(explorer.last_update_s)
            pngs.add(explorer.png())
    assert explorer.maps_computed == computed  # no new forward pass for a stage or a block
    assert len(pngs) == 8  # every block looks different
    assert statistics.median(times) < 0.5  # loose on a shared machine; ~40 ms of CPU measured


def test_moving_the_voxel_recomputes_and_moves_the_planes(explorer, model, anatomy):
    image, _ = anatomy
    computed = explorer.maps_computed
    with explorer.hold():
        explorer.controls["stage"].value = 2
        explorer.controls["block"].value = 1
        explorer.controls["z"].value = 5
        explorer.controls["y"].value = 40
        explorer.controls["x"].value = 27
    state = explorer.state
    assert state["error"] is None, state["error"]
    assert state["voxel"] == (5, 40, 27) and explorer.maps_computed == computed + 1
    for name, plane in expected_planes(model, image, (5, 40, 27), 2, 1).items():
        np.testing.assert_allclose(state["planes"][name], plane, atol=1e-7)
    np.testing.assert_array_equal(state["image_planes"]["axial"], image[5].numpy())
    np.testing.assert_array_equal(state["image_planes"]["coronal"], image[:, 40].numpy())
    np.testing.assert_array_equal(state["image_planes"]["sagittal"], image[:, :, 27].numpy())
    # the voxel is marked at its cell's centre in every plane
    marker = explorer.planes["sagittal"]["marker"]
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (40.5, 5.5)
    assert explorer.planes["axial"]["title"].get_text() == "axial (z = 5)"


def test_the_info_line_names_stage_window_tokens_and_weight(explorer, model, anatomy):
    image, _ = anatomy
    with explorer.hold():
        explorer.controls["stage"].value = 3
        explorer.controls["block"].value = 1
        for axis, value in zip("zyx", (20, 25, 14)):
            explorer.controls[axis].value = value
    block = voxel_attention(model, image, (20, 25, 14)).block(3, 1)
    text = explorer.state["text"]
    assert text in explorer.info.value
    assert "stage 3, shifted block: one token = 8<sup>3</sup> voxels" in text
    assert "window 3x4x2 tokens = 24x32x16 voxels, shifted by 8x16x8 voxels" in text
    assert f"attends to {block.tokens_attended} tokens" in text
    assert f"max weight {block.max_weight:.4f}" in text
    _, labels = anatomy
    assert f"The voxel's token (voxel in {CLASS_NAMES[int(labels[20, 25, 14])]}) attends" in text
    assert explorer.state["max_weight"] == pytest.approx(block.max_weight)
    assert explorer.state["window_voxels"] == (24, 32, 16)
    # at stage 4 the grid (4 x 4 x 2 tokens) is no larger than the window along H and W
    explorer.controls["stage"].value = 4
    assert "window 3x4x2 tokens = 48x64x32 voxels, shifted by 16x0x0 voxels" in explorer.state["text"]


def test_log_and_linear_colours(explorer):
    explorer.controls["stage"].value = 1
    explorer.controls["scale"].value = "log"
    log_png = explorer.png()
    heat = explorer.planes["axial"]["heat"].get_array()
    plane = explorer.state["planes"]["axial"]
    assert np.array_equal(heat[..., 3] > 0, plane > 0)  # transparent exactly where no attention goes
    explorer.controls["scale"].value = "linear"
    assert explorer.state["scale"] == "linear" and explorer.png() != log_png
    explorer.controls["scale"].value = "log"
    # on a log scale a weight of a thousandth of the largest still gets a colour of its own
    weights = np.array([0.0, 1e-4, 1e-3, 1e-2, 1.0])
    log = weight_colours(weights, 1.0, "log")
    linear = weight_colours(weights, 1.0, "linear")
    assert log[0, 3] == 0 and (log[1:, 3] > 0).all()
    # 1e-3 and 1e-2 of the largest: far apart on the log scale, nearly the same colour on the linear one
    assert np.linalg.norm(log[2, :3] - log[3, :3]) > 5 * np.linalg.norm(linear[2, :3] - linear[3, :3])


def test_tissue_borders_toggle(explorer, anatomy):
    _, labels = anatomy
    explorer.controls["outline"].value = True
    z, y, x = explorer.state["voxel"]
    expected = sum(len(label_borders(p)) for p in (labels[z], labels[:, y], labels[:, :, x]))
    assert explorer.state["outline_segments"] == expected > 0
    explorer.controls["outline"].value = False
    assert explorer.state["outline_segments"] == 0
    explorer.controls["outline"].value = True


def test_label_borders():
    labels = np.array([[0, 0, 1], [0, 1, 1]])
    segments = {tuple(map(tuple, s)) for s in label_borders(labels).tolist()}
    # vertical: between (0,1)|(0,2) at x = 2 and (1,0)|(1,1) at x = 1; horizontal: below (0,1) at y = 1
    assert segments == {((2.0, 0.0), (2.0, 1.0)), ((1.0, 1.0), (1.0, 2.0)), ((1.0, 1.0), (2.0, 1.0))}
    assert label_borders(np.zeros((3, 4))).shape == (0, 2, 2)


def test_without_labels_there_is_no_border_control(model):
    # D = 64: at stage 1 the grid has 32 tokens along D, padded to 33 for windows of 3
    explorer = anatomy_attention_explorer(model, torch.rand(64, 40, 20), voxel=(0, 0, 0))
    assert "outline" not in explorer.controls and explorer.state["error"] is None
    assert explorer.state["voxel"] == (0, 0, 0) and "voxel in" not in explorer.state["text"]
    assert explorer.state["padding_weight"] == 0 and "pad the grid" not in explorer.state["text"]
    explorer.controls["z"].value = 63  # token 31: its window holds tokens 30, 31 and the padding token 32
    share = explorer.state["padding_weight"]
    assert share > 0 and f"{100 * share:.1f}% goes to the zero tokens that pad the grid" in explorer.state["text"]


def test_a_model_of_one_block_per_stage_offers_regular_blocks_only():
    torch.manual_seed(0)
    explorer = anatomy_attention_explorer(build_model(tiny=True).eval(), torch.rand(40, 70, 20))
    assert list(explorer.controls["block"].options) == [("regular", 0)]
    explorer.controls["stage"].value = 4
    assert explorer.state["error"] is None and explorer.state["kind"] == "regular"


def test_bad_inputs_are_refused(model, anatomy):
    image, labels = anatomy
    with pytest.raises(ValueError, match=r"image must be a tensor \(D, H, W\)"):
        anatomy_attention_explorer(model, image[None])
    with pytest.raises(ValueError, match=r"labels must be a tensor \(D, H, W\) = \(37, 50, 29\)"):
        anatomy_attention_explorer(model, image, labels[:-1])
    with pytest.raises(ValueError, match="lies outside the image"):
        anatomy_attention_explorer(model, image, labels, voxel=(0, 50, 0))
