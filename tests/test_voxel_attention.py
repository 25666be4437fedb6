"""One voxel's attention in every encoder block of a SwinUNETR, checked against the window geometry."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from minattn.apps.microscope import window_weights_to_grid
from minattn.apps.segmentation import build_model
from minattn.apps.voxel_attention import EncoderAttention, voxel_attention
from minattn.swin_unetr import SwinUNETR

IMAGE_SHAPE = (37, 50, 29)  # unequal, and none a multiple of 32: padded to (64, 64, 32)
WINDOW = (3, 4, 2)  # unequal too; at stage 4 (grid 4 x 4 x 2) H and W shrink to the grid
VOXELS = [(0, 0, 0), (20, 33, 11), (36, 49, 28)]  # the last one's tokens reach into the padding


def small_model() -> SwinUNETR:
    torch.manual_seed(0)
    return SwinUNETR(1, 4, feature_size=6, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 3), window_size=WINDOW).eval()


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def image():
    return torch.rand(IMAGE_SHAPE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def probe(model, image):
    return EncoderAttention(model, image)


def padded_image(image):
    return F.pad(image[None, None], (0, 32 - 29, 0, 64 - 50, 0, 64 - 37))


def paint(token_map, size):
    """Token values (d, h, w) on the voxels each covers, cropped to the image: the plain way."""
    voxels = token_map
    for axis in range(3):
        voxels = voxels.repeat_interleave(size, dim=axis)
    return voxels[: IMAGE_SHAPE[0], : IMAGE_SHAPE[1], : IMAGE_SHAPE[2]]


def allowed_tokens(layout, token):
    """Tokens of the grid the token may attend to: its window's, and when shifted its region's too.

    Written from the layer's recipe (pad, roll by -shift, cut) with WindowLayout's region labels.
    """
    regions = layout.region_ids()  # on rolled positions of the padded grid
    rolled = tuple((t - s) % p for t, s, p in zip(token, layout.shift, layout.padded))
    window = tuple(r // w for r, w in zip(rolled, layout.window))
    allowed = torch.zeros(layout.grid, dtype=torch.bool)
    for other in itertools.product(*(range(g) for g in layout.grid)):
        position = tuple((t - s) % p for t, s, p in zip(other, layout.shift, layout.padded))
        same_window = tuple(q // w for q, w in zip(position, layout.window)) == window
        if same_window and regions[position] == regions[rolled]:
            allowed[other] = True
    return allowed


def test_every_stage_and_block_is_there_with_its_geometry(probe):
    result = probe.at(VOXELS[1])
    assert [(b.stage, b.block, b.kind) for b in result.blocks] == [
        (s, b, kind) for s in range(1, 5) for b, kind in enumerate(("regular", "shifted"))
    ]
    assert result.image_shape == IMAGE_SHAPE and result.padded_shape == (64, 64, 32)
    for block in result.blocks:
        size = 2**block.stage
        assert block.token_size == size
        assert block.layout.grid == (64 // size, 64 // size, 32 // size)
        assert block.token == tuple(v // size for v in VOXELS[1])
        assert block.voxel_map.shape == IMAGE_SHAPE
        assert block.weights.shape == (probe.num_heads[block.stage - 1], *block.layout.grid)
    stage4 = result.block(4, 1)
    assert stage4.layout.window == (3, 4, 2) and stage4.layout.shift == (1, 0, 0)
    assert stage4.window_voxels == (48, 64, 32) and stage4.shift_voxels == (16, 0, 0)


@pytest.mark.parametrize("voxel", VOXELS)
def test_weights_sum_to_one_and_the_own_token_has_weight(probe, voxel):
    for block in probe.at(voxel).blocks:
        total = block.weights.flatten(1).sum(-1) + block.padding_weight
        torch.testing.assert_close(total, torch.ones_like(total), atol=1e-5, rtol=0)
        assert (block.weights[(slice(None), *block.token)] > 0).all()
        assert block.voxel_map[voxel] > 0
        assert block.voxel_map[voxel] == pytest.approx(float(block.weights.mean(0)[block.token]), rel=1e-6)


def test_padding_weight_only_where_the_window_reaches_the_padding(model):
    # D = 64: the stage-1 grid has 32 tokens along D, padded to 33 for windows of 3.
    probe = EncoderAttention(model, torch.rand(64, 40, 20, generator=torch.Generator().manual_seed(2)))
    for block in probe.at((0, 0, 0)).blocks:  # every window of the corner token lies on the grid
        assert float(block.padding_weight.abs().sum()) == 0.0, (block.stage, block.block)
    # voxel 63 -> token 31, whose regular window along D is tokens 30, 31 and the padding token 32
    block = probe.at((63, 0, 0)).block(1, 0)
    assert block.layout.padded[0] == 33 and float(block.padding_weight.min()) > 0


@pytest.mark.parametrize("voxel", VOXELS)
def test_support_is_the_window_and_for_shifted_blocks_the_region(probe, voxel):
    for block in probe.at(voxel).blocks:
        allowed = allowed_tokens(block.layout, block.token)
        support = block.weights.mean(0) > 0
        assert torch.equal(support, allowed), (block.stage, block.block)
        if not block.shifted:  # a regular window is a box of whole windows from the origin
            box = torch.zeros(block.layout.grid, dtype=torch.bool)
            start = [t // w * w for t, w in zip(block.token, block.layout.window)]
            box[tuple(slice(s, s + w) for s, w in zip(start, block.layout.window))] = True
            assert torch.equal(support, box)
        # the voxel map is non-zero exactly on the voxels of the allowed tokens
        assert torch.equal(block.voxel_map > 0, paint(allowed, block.token_size))


def test_a_shifted_block_can_reach_past_the_regular_windows_border(probe):
    # Voxel (20, 33, 11): stage-1 token (10, 16, 5); its regular window along D is tokens 9..11,
    # the shifted one (shift 1) tokens 10..12.
    result = probe.at((20, 33, 11))
    regular, shifted = result.block(1, 0), result.block(1, 1)
    d_support = lambda b: torch.nonzero(b.weights.mean(0).flatten(1).sum(-1) > 0).flatten().tolist()  # noqa: E731
    assert d_support(regular) == [9, 10, 11] and d_support(shifted) == [10, 11, 12]


def test_maps_equal_the_whole_layer_recorded_once(model, image, probe):
    """Brute force: record every window of every block in one pass and read the voxel's row."""
    voxel = VOXELS[2]
    attentions = [block.attn for stage in model.encoder.stages for block in stage.blocks]
    for attn in attentions:
        attn.record_weights = True
    try:
        with torch.no_grad():
            model.encoder(padded_image(image))
        recorded = [attn.last_weights for attn in attentions]
    finally:
        for attn in attentions:
            attn.record_weights, attn.last_weights = False, None
    result = probe.at(voxel)
    for block, weights in zip(result.blocks, recorded):
        grid = block.layout.grid
        shift = (0, 0, 0) if block.kind == "regular" else tuple(w // 2 for w in WINDOW)
        matrix = window_weights_to_grid(weights, grid, WINDOW, shift)[0]  # (heads, N, N)
        flat = (block.token[0] * grid[1] + block.token[1]) * grid[2] + block.token[2]
        row = matrix[:, flat]
        torch.testing.assert_close(block.weights, row.reshape(-1, *grid), atol=2e-6, rtol=1e-4)
        expected = paint(row.reshape(-1, *grid).mean(0), block.token_size)
        torch.testing.assert_close(block.voxel_map, expected, atol=2e-6, rtol=1e-4)
        heads = torch.stack([paint(h, block.token_size) for h in row.reshape(-1, *grid)])
        torch.testing.assert_close(block.head_maps, heads, atol=2e-6, rtol=1e-4)


def test_one_call_equals_the_encoder_kept_for_many_voxels(model, image, probe):
    once = voxel_attention(model, image, VOXELS[1])
    kept = probe.at(VOXELS[1])
    for a, b in zip(once.blocks, kept.blocks):
        torch.testing.assert_close(a.voxel_map, b.voxel_map)


@pytest.mark.parametrize("voxel", VOXELS)
def test_a_plane_is_the_slice_of_the_voxel_map(probe, voxel):
    for block in probe.at(voxel).blocks:
        for axis in range(3):
            plane = block.plane(axis, voxel[axis])
            torch.testing.assert_close(plane, block.voxel_map.select(axis, voxel[axis]), atol=0, rtol=0)
    with pytest.raises(ValueError, match="inside the image"):
        block.plane(1, IMAGE_SHAPE[1])


def test_moving_within_a_window_reuses_its_weights_and_leaving_it_does_not(model, image):
    probe = EncoderAttention(model, image)
    first = probe.at((0, 0, 0)).block(1, 0)  # stage-1 token (0, 0, 0), window tokens 0..2 x 0..3 x 0..1
    inside = probe.at((5, 7, 3)).block(1, 0)  # token (2, 3, 1): the same window, another query
    assert inside.window_index == first.window_index and inside.slot != first.slot
    assert not torch.equal(inside.weights, first.weights)
    probe.at((30, 40, 20))  # elsewhere, then back
    torch.testing.assert_close(probe.at((5, 7, 3)).block(1, 0).weights, inside.weights)
    fresh = EncoderAttention(model, image).at((5, 7, 3)).block(1, 0)
    torch.testing.assert_close(fresh.weights, inside.weights)


def test_the_model_is_left_as_it_was(image):
    model = small_model().train()
    attn = model.encoder.stages[0].blocks[0].attn
    voxel_attention(model, image, (1, 2, 3))
    assert model.training and attn.record_weights is False and attn.last_weights is None
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_edge_padding_repeats_the_last_slice(model, image):
    zero = EncoderAttention(model, image, pad="zero").at(VOXELS[2]).block(4, 0)
    edge = EncoderAttention(model, image, pad="edge").at(VOXELS[2]).block(4, 0)
    assert zero.weights.shape == edge.weights.shape
    assert not torch.allclose(zero.weights, edge.weights)  # the padding is part of what the model sees


def test_the_courses_tiny_model_has_regular_blocks_only():
    torch.manual_seed(0)
    model = build_model(tiny=True).eval()
    result = voxel_attention(model, torch.rand(40, 70, 20), (39, 69, 19))
    assert [(b.stage, b.kind) for b in result.blocks] == [(s, "regular") for s in range(1, 5)]
    for block in result.blocks:
        assert block.voxel_map.shape == (40, 70, 20)
        total = block.weights.flatten(1).sum(-1) + block.padding_weight
        torch.testing.assert_close(total, torch.ones_like(total), atol=1e-5, rtol=0)


def test_runs_on_the_models_device(device, image):
    model = small_model().to(device)
    block = voxel_attention(model, image, (5, 6, 7)).block(2, 1)
    assert block.voxel_map.device.type == device.type
    total = block.weights.flatten(1).sum(-1) + block.padding_weight
    torch.testing.assert_close(total.cpu(), torch.ones(total.shape), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "voxel, message",
    [
        ((37, 0, 0), r"voxel \(37, 0, 0\) lies outside the image of shape \(37, 50, 29\)"),
        ((0, -1, 0), "lies outside the image"),
        ((0, 0, 29), "lies outside the image"),
        ((1, 2), r"three ints \(z, y, x\)"),
        ((1.0, 2, 3), r"three ints \(z, y, x\)"),
        ("abc", r"three ints \(z, y, x\)"),
    ],
)
def test_a_voxel_outside_the_image_is_refused(model, image, probe, voxel, message):
    with pytest.raises(ValueError, match=message):
        voxel_attention(model, image, voxel)
    with pytest.raises(ValueError, match=message):
        probe.at(voxel)


@pytest.mark.parametrize("shape", [(37, 50), (1, 1, 37, 50, 29), (2, 37, 50, 29)])
def test_an_image_of_the_wrong_rank_is_refused(model, shape):
    with pytest.raises(ValueError, match=r"image must have shape \(D, H, W\) or \(1, D, H, W\)"):
        voxel_attention(model, torch.zeros(shape), (0, 0, 0))


def test_other_bad_arguments_are_refused(model, image, probe):
    with pytest.raises(ValueError, match="must be a minattn SwinUNETR"):
        voxel_attention(torch.nn.Linear(2, 2), image, (0, 0, 0))
    with pytest.raises(ValueError, match="pad must be one of"):
        EncoderAttention(model, image, pad="reflect")
    with pytest.raises(ValueError, match="image must be a torch.Tensor"):
        voxel_attention(model, image.numpy(), (0, 0, 0))
    with pytest.raises(ValueError, match=r"no block 2 in stage 1"):
        probe.at((0, 0, 0)).block(1, 2)
