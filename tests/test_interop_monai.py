"""minattn's modules reproduce MONAI 1.6.1's SwinUNETR modules with the same weights."""

import pytest
import torch
from monai.networks.nets import swin_unetr as monai_swin

import minattn
from minattn.interop import additive_to_boolean_mask, from_monai

# Divisible, needing padding, and windows larger than the input along D, along H, along all axes.
SHAPES = {
    "divisible": (8, 8, 8),
    "padding": (7, 9, 10),
    "window > input along D": (2, 8, 9),
    "window > input along H": (8, 3, 8),
    "window > input everywhere": (3, 2, 3),
}


def _randomise(module):
    # Default init leaves biases at zero and the position table tiny; random
    # weights make every part of the computation visible in the output.
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return module.eval()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("downsample", [None, monai_swin.PatchMerging, monai_swin.PatchMergingV2])
def test_basic_layer(device, shape, downsample):
    layer = monai_swin.BasicLayer(
        dim=12, depth=2, num_heads=3, window_size=(4, 4, 4), drop_path=[0.0, 0.0], qkv_bias=True, downsample=downsample
    )
    layer = _randomise(layer).to(device)
    converted = from_monai(layer)
    assert isinstance(converted.module, minattn.SwinStage)
    x = torch.randn(2, 12, *SHAPES[shape], device=device)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), layer(x), atol=1e-5, rtol=0)


def test_basic_layer_2d():
    layer = _randomise(
        monai_swin.BasicLayer(dim=8, depth=2, num_heads=2, window_size=(4, 4), drop_path=[0.0, 0.0], downsample=monai_swin.PatchMergingV2)
    )
    x = torch.randn(1, 8, 9, 6)
    with torch.no_grad():
        torch.testing.assert_close(from_monai(layer)(x), layer(x), atol=1e-5, rtol=0)


def test_swinunetr_first_stage_shape():
    # SwinUNETR's first stage: 48 channels, window 7, two blocks, 3 heads.
    layer = monai_swin.BasicLayer(dim=48, depth=2, num_heads=3, window_size=(7, 7, 7), drop_path=[0.0, 0.0], qkv_bias=True)
    layer = _randomise(layer)
    x = torch.randn(1, 48, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(from_monai(layer)(x), layer(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shifted", [False, True])
def test_swin_transformer_block(device, shifted):
    block = monai_swin.SwinTransformerBlock(
        dim=16, num_heads=4, window_size=(4, 4, 4), shift_size=(2, 2, 2) if shifted else (0, 0, 0)
    )
    block = _randomise(block).to(device)
    converted = from_monai(block)
    assert isinstance(converted.module, minattn.SwinBlock)
    x = torch.randn(2, 7, 8, 6, 16, device=device)  # channels-last, as MONAI's block takes it
    mask = monai_swin.compute_mask([8, 8, 8], (4, 4, 4), (2, 2, 2), torch.device(device))
    with torch.no_grad():
        torch.testing.assert_close(converted(x, mask), block(x, mask), atol=1e-5, rtol=0)


@pytest.mark.parametrize("tokens", [64, 32, 16])  # full window, D shrunk to 2, D shrunk to 1
def test_window_attention(device, tokens):
    attn = _randomise(monai_swin.WindowAttention(dim=8, num_heads=2, window_size=(4, 4, 4), qkv_bias=True)).to(device)
    converted = from_monai(attn)
    assert isinstance(converted.module, minattn.WindowAttention)
    x = torch.randn(6, tokens, 8, device=device)
    mask = torch.zeros(3, tokens, tokens, device=device)
    mask[1, :, : tokens // 2] = -100.0
    with torch.no_grad():
        torch.testing.assert_close(converted(x, None), attn(x, None), atol=1e-5, rtol=0)
        torch.testing.assert_close(converted(x, mask), attn(x, mask), atol=1e-5, rtol=0)


def test_shrunk_window_geometry_differs_from_monai_only_when_h_or_w_shrinks():
    layer = _randomise(monai_swin.BasicLayer(dim=8, depth=2, num_heads=2, window_size=(4, 4, 4), drop_path=[0.0, 0.0]))
    converted = from_monai(layer)
    for shape, same in [((2, 8, 8), True), ((8, 2, 8), False)]:
        x = torch.randn(1, 8, *shape)
        with torch.no_grad():
            monai_like = converted(x)
            for block in converted.module.blocks:
                block.attn.shrunk_window_index = "geometric"
            geometric = converted(x)
            for block in converted.module.blocks:
                block.attn.shrunk_window_index = "monai"
        assert torch.allclose(monai_like, geometric, atol=1e-6) == same


def test_additive_mask_conversion():
    mask = torch.tensor([[0.0, -100.0], [0.0, 0.0]])
    assert torch.equal(additive_to_boolean_mask(mask), torch.tensor([[True, False], [True, True]]))
    with pytest.raises(ValueError, match="0/-100"):
        additive_to_boolean_mask(torch.tensor([[0.0, -1.0]]))


def test_rejects_other_modules():
    with pytest.raises(ValueError, match="WindowAttention, SwinTransformerBlock or BasicLayer"):
        from_monai(torch.nn.Linear(2, 2))
