"""minattn's SwinUNETR gives MONAI 1.6.1's outputs with MONAI's weights, in 3D and 2D."""

import io
import sys

import pytest
import torch
from monai.networks.nets import SwinUNETR as MonaiSwinUNETR
from torch import nn

import minattn
from minattn._threads import single_thread
from minattn.interop import from_monai

TOLERANCE = 1e-5  # float32, largest absolute difference over the output

# Each extent is a multiple of 32 and one is 64: the bottleneck's instance norm needs more than one voxel.
# A 3D model is costly on a CPU: two cases, the others in 2D (the same code but for the grid's rank).
VARIANTS = {
    # Window 7: the first grid (16 x 16 x 32) is padded; stage 3's window shrinks along D and H, stage 4's along all.
    "3d": ({}, (1, 2, 32, 32, 64)),
    # Window (4, 5, 6): stage 3's grid 8 x 4 x 4 keeps D's window and shift, H's and W's shrink.
    "3d v2, mergingv2, window (4, 5, 6)": (
        {"use_v2": True, "downsample": "mergingv2", "window_size": (4, 5, 6)},
        (1, 2, 64, 32, 32),
    ),
    "2d": ({"spatial_dims": 2}, (2, 2, 32, 64)),
    "2d v2": ({"spatial_dims": 2, "use_v2": True}, (2, 2, 64, 32)),
}

OPTIONS = {
    "depths (1, 2, 1, 1), feature_size 24, other heads": (
        {"spatial_dims": 2, "depths": (1, 2, 1, 1), "feature_size": 24, "num_heads": (2, 3, 4, 6)},
        (1, 2, 64, 32),
    ),
    "2d patch norm, group norm, no hidden-state norm, mlp_ratio 2, no qkv bias": (
        {
            "spatial_dims": 2,
            "window_size": (5, 3),
            "patch_norm": True,
            "norm_name": ("group", {"num_groups": 3}),
            "normalize": False,
            "mlp_ratio": 2.0,
            "qkv_bias": False,
        },
        (1, 2, 32, 64),
    ),
}


@pytest.fixture(autouse=True)
def _one_thread():
    # These models are small: beside a second test worker, two torch threads made this file
    # several times slower than one thread (0.3 s against 12.7 s for the gradient test).
    with single_thread():
        yield


def _monai(**kwargs):
    """MONAI's SwinUNETR, 2 channels in and 3 out, with the Swin encoder's small parameters made random."""
    model = MonaiSwinUNETR(**{"in_channels": 2, "out_channels": 3, "feature_size": 12, **kwargs})
    # Default init leaves biases at 0, LayerNorms at 1 and the position tables near 0;
    # random values make every one of them show in the output.
    with torch.no_grad():
        for name, p in model.swinViT.named_parameters():
            if p.ndim == 1 or name.endswith("relative_position_bias_table"):
                p.add_(torch.randn_like(p), alpha=0.3)
    return model.eval()


def _forward(model, x):
    # Full float32 on a GPU too: TF32 convolutions would round the two models' inputs differently.
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        return model(x)


def _max_difference(minattn_model, monai_model, x) -> float:
    expected, got = _forward(monai_model, x), _forward(minattn_model, x)
    assert got.shape == expected.shape == (x.shape[0], 3, *x.shape[2:])
    return (got - expected).abs().max().item()


@pytest.mark.parametrize("variant", VARIANTS)
def test_equals_monai(device, variant):
    kwargs, shape = VARIANTS[variant]
    source = _monai(**kwargs).to(device)
    converted = from_monai(source)
    assert isinstance(converted, minattn.SwinUNETR)
    assert (converted.encoder.stage_convs is not None) == kwargs.get("use_v2", False)
    x = torch.randn(shape, device=device)
    assert _max_difference(converted, source, x) < TOLERANCE


@pytest.mark.parametrize("option", OPTIONS)
def test_equals_monai_with_other_options(option):
    kwargs, shape = OPTIONS[option]
    source = _monai(**kwargs)
    assert _max_difference(from_monai(source), source, torch.randn(shape)) < TOLERANCE


def test_encoder_gives_monais_hidden_states():
    source = _monai(spatial_dims=2, use_v2=True).swinViT
    encoder = from_monai(source)
    assert isinstance(encoder, minattn.SwinEncoder)
    x = torch.randn(2, 2, 32, 64)
    for normalize in (True, False):
        with torch.no_grad():
            pairs = list(zip(encoder(x, normalize), source(x, normalize), strict=True))
        assert [got.shape[1:] for got, _ in pairs] == [(12, 16, 32), (24, 8, 16), (48, 4, 8), (96, 2, 4), (192, 1, 2)]
        for got, expected in pairs:
            torch.testing.assert_close(got, expected, atol=TOLERANCE, rtol=0)


def test_the_comparison_sees_the_deepest_attention():
    # The grids are 16x32, 8x16, 4x8 and 2x4 tokens; the last stage's window shrinks to 2x4,
    # where MONAI indexes its bias table by slicing: the geometric index differs there.
    source = _monai(spatial_dims=2)
    converted = from_monai(source)
    x = torch.randn(1, 2, 32, 64)
    expected = _forward(source, x)

    def difference() -> float:
        return (_forward(converted, x) - expected).abs().max().item()

    assert difference() < TOLERANCE
    deepest = converted.encoder.stages[3].blocks[0].attn
    assert deepest.shrunk_window_index == "monai"
    deepest.shrunk_window_index = "geometric"
    assert difference() > 1e-3
    deepest.shrunk_window_index = "monai"
    with torch.no_grad():
        deepest.position_bias.table.add_(torch.randn_like(deepest.position_bias.table), alpha=0.1)
    assert difference() > 1e-3


def test_monai_state_dict_loads():
    kwargs = {"in_channels": 2, "out_channels": 3, "feature_size": 12, "spatial_dims": 2, "use_v2": True}
    source = _monai(**kwargs)
    checkpoint = io.BytesIO()
    torch.save(source.state_dict(), checkpoint)
    checkpoint.seek(0)
    loaded = minattn.SwinUNETR.from_monai_state_dict(torch.load(checkpoint, weights_only=True), **kwargs).eval()
    assert _max_difference(loaded, source, torch.randn(1, 2, 32, 64)) < TOLERANCE
    with pytest.raises(RuntimeError, match="Unexpected key"):  # the arguments must be the checkpoint's
        minattn.SwinUNETR.from_monai_state_dict(source.state_dict(), **{**kwargs, "use_v2": False})


def test_gradients_equal_monai():
    # In training mode, and through the encoder's gradient checkpointing.
    source = _monai(spatial_dims=2, use_checkpoint=True).train()
    converted = from_monai(source)
    assert converted.training and converted.encoder.use_checkpoint
    x = torch.randn(1, 2, 64, 32)
    weights = torch.randn(1, 3, 64, 32)
    input_grads = []
    for model in (source, converted):
        xi = x.clone().requires_grad_()
        (model(xi) * weights).sum().backward()
        input_grads.append(xi.grad)
    assert (input_grads[0] - input_grads[1]).abs().max() < 1e-4 * input_grads[0].abs().max()
    assert all(p.grad is not None and bool(p.grad.isfinite().all()) for p in converted.parameters())
    monai_stages = [
        source.swinViT.layers1[0],
        source.swinViT.layers2[0],
        source.swinViT.layers3[0],
        source.swinViT.layers4[0],
    ]
    for stage, monai_stage in zip(converted.encoder.stages, monai_stages):
        for block, monai_block in zip(stage.blocks, monai_stage.blocks):
            expected = monai_block.attn.relative_position_bias_table.grad
            torch.testing.assert_close(block.attn.position_bias.table.grad, expected, atol=1e-4, rtol=1e-3)
            assert expected.abs().max() > 0


def test_a_new_model_runs_with_geometric_shrunk_windows():
    model = minattn.SwinUNETR(2, 3, feature_size=12, window_size=(5, 3), spatial_dims=2).eval()
    indices = {m.shrunk_window_index for m in model.modules() if isinstance(m, minattn.WindowAttention)}
    assert indices == {"geometric"}
    with torch.no_grad():
        out = model(torch.randn(2, 2, 64, 32))
    assert out.shape == (2, 3, 64, 32)
    assert bool(out.isfinite().all())


def test_bad_input_is_named():
    model = minattn.SwinUNETR(2, 3, feature_size=12, spatial_dims=2)
    with pytest.raises(ValueError, match=r"multiple of 32.*\(64, 80\).*\(64, 96\)"):
        model(torch.randn(1, 2, 64, 80))
    with pytest.raises(ValueError, match="2 channels"):
        model(torch.randn(1, 3, 64, 96))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.randn(1, 2, 32, 64, 96))


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="depths needs 4 entries"):
        minattn.SwinEncoder(2, 12, depths=(2, 2, 2))
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        minattn.SwinEncoder(2, 12, spatial_dims=1)
    with pytest.raises(ValueError, match="shrunk_window_index"):
        minattn.SwinEncoder(2, 12, shrunk_window_index="sliced")


def test_conversion_refuses_what_it_cannot_reproduce():
    with pytest.raises(ValueError, match="patch_size"):
        from_monai(MonaiSwinUNETR(in_channels=1, out_channels=2, feature_size=12, patch_size=4, spatial_dims=2))

    class Downsample(nn.Module):  # a user's own downsampling, which MONAI accepts
        def __init__(self, dim, norm_layer, spatial_dims):
            super().__init__()
            self.reduction = nn.Linear(4 * dim, 2 * dim)

    with pytest.raises(ValueError, match="downsample"):
        from_monai(
            MonaiSwinUNETR(in_channels=1, out_channels=2, feature_size=12, spatial_dims=2, downsample=Downsample)
        )


def test_building_without_monai_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "monai.networks.blocks", None)  # as if MONAI were not installed
    with pytest.raises(ImportError, match="monai==1.6.1"):
        minattn.SwinUNETR(1, 2, feature_size=12)
