"""The fused route of WindowAttention gives the explicit path's numbers, and its cache never serves stale tensors."""

from __future__ import annotations

import pytest
import torch

from minattn._fused import FusedWindowAttention
from minattn.attention import scaled_dot_product_attention

VOLUMES, WINDOWS, HEADS, TOKENS, HEAD_DIM = 2, 3, 2, 6, 5
SCALE = HEAD_DIM**-0.5


def inputs(dtype=torch.float64, seed=0, requires_grad=False):
    """q, k, v ``(B * nW, h, N, d)``, a bias ``(h, N, N)`` and a mask ``(nW, N, N)`` with no empty row."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(VOLUMES * WINDOWS, HEADS, TOKENS, HEAD_DIM, generator=g, dtype=dtype) for _ in range(3))
    bias = torch.randn(HEADS, TOKENS, TOKENS, generator=g, dtype=dtype)
    mask = (torch.rand(WINDOWS, TOKENS, TOKENS, generator=g) < 0.5) | torch.eye(TOKENS, dtype=torch.bool)
    tensors = [t.requires_grad_(requires_grad) for t in (q, k, v, bias)]
    return (*tensors, mask)


def explicit(q, k, v, bias, mask):
    """minattn's explicit attention, window i of every volume taking mask i."""
    grouped = [t.reshape(VOLUMES, WINDOWS, HEADS, TOKENS, -1) for t in (q, k, v)]
    mask = None if mask is None else mask[None, :, None]
    out = scaled_dot_product_attention(*grouped, mask=mask, bias=bias, scale=SCALE)
    return out.reshape(q.shape)


@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inference_matches_explicit(masked, dtype):
    q, k, v, bias, mask = inputs(dtype)
    mask = mask if masked else None
    with torch.no_grad():
        got = FusedWindowAttention()(q, k, v, bias, mask, SCALE)
    torch.testing.assert_close(
        got, explicit(q, k, v, bias, mask), atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0
    )


@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
def test_training_on_cpu_matches_explicit_gradients(masked):
    fused_inputs, explicit_inputs = inputs(requires_grad=True), inputs(requires_grad=True)
    mask = fused_inputs[-1] if masked else None
    upstream = torch.randn(VOLUMES * WINDOWS, HEADS, TOKENS, HEAD_DIM, dtype=torch.float64)
    (FusedWindowAttention()(*fused_inputs[:4], mask, SCALE) * upstream).sum().backward()
    (explicit(*explicit_inputs[:4], mask) * upstream).sum().backward()
    for name, a, b in zip(["q", "k", "v", "bias"], fused_inputs, explicit_inputs):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=0, msg=name)


def test_the_folded_mask_is_reused_until_mask_bias_or_dtype_change():
    q, k, v, bias, mask = inputs()
    route = FusedWindowAttention()
    with torch.no_grad():
        route(q, k, v, bias, mask, SCALE)
        folded = route._combined[-1]
        route(q, k, v, bias, mask, SCALE)
        assert route._combined[-1] is folded  # the same mask and bias: served from the cache

        mask[1, 2, 4] = not mask[1, 2, 4]  # changed in place: same object, new version
        got = route(q, k, v, bias, mask, SCALE)
        assert route._combined[-1] is not folded
        torch.testing.assert_close(got, explicit(q, k, v, bias, mask), atol=1e-12, rtol=0)

        bias.mul_(3.0)  # changed in place, as an optimiser step changes the table
        got = route(q, k, v, bias, mask, SCALE)
        torch.testing.assert_close(got, explicit(q, k, v, bias, mask), atol=1e-12, rtol=0)

        q32, k32, v32, bias32 = (t.float() for t in (q, k, v, bias))
        got = route(q32, k32, v32, bias32, mask, SCALE)
        assert route._combined[-1].dtype == torch.float32
        torch.testing.assert_close(got, explicit(q32, k32, v32, bias32, mask), atol=1e-5, rtol=0)


def test_a_mask_with_an_empty_row_is_left_to_the_explicit_path():
    *_, mask = inputs()
    route = FusedWindowAttention()
    assert route.accepts(None, torch.float32) and route.accepts(mask, torch.float32)
    mask[2, 3] = False  # query 3 of window 2 may attend to nothing
    assert not route.accepts(mask, torch.float32)


@pytest.mark.parametrize("bias_learns", [True, False])
def test_training_a_window_at_a_time_gives_the_same_gradients(bias_learns, monkeypatch):
    """Chunks of one window (the cache limit set to one window's scores) must not change a gradient."""
    import minattn._fused as fused

    monkeypatch.setattr(fused, "CHUNK_BYTES", HEADS * VOLUMES * TOKENS * TOKENS * 8)
    fused_inputs, explicit_inputs = inputs(requires_grad=True), inputs(requires_grad=True)
    for bias in (fused_inputs[3], explicit_inputs[3]):
        bias.requires_grad_(bias_learns)
    mask = fused_inputs[-1]
    upstream = torch.randn(VOLUMES * WINDOWS, HEADS, TOKENS, HEAD_DIM, dtype=torch.float64)
    q, k, v, bias = fused_inputs[:4]
    per_window = q.reshape(VOLUMES, WINDOWS, HEADS, TOKENS, HEAD_DIM)
    assert fused._windows_per_chunk(per_window, per_window) == 1
    (FusedWindowAttention()(q, k, v, bias, mask, SCALE) * upstream).sum().backward()
    (explicit(*explicit_inputs[:4], mask) * upstream).sum().backward()
    for name, a, b in zip(["q", "k", "v", "bias"], fused_inputs, explicit_inputs):
        if name == "bias" and not bias_learns:
            assert a.grad is None
            continue
        torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=0, msg=name)


@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
def test_training_never_holds_more_scores_than_a_chunk(masked, monkeypatch):
    """With or without a mask, every chunk's scores fit in CHUNK_BYTES (the cache-sized unit of work)."""
    import minattn._fused as fused

    limit = VOLUMES * HEADS * TOKENS * TOKENS * 8  # one window of every volume, float64
    monkeypatch.setattr(fused, "CHUNK_BYTES", limit)
    held = []

    def spy(*args):
        scores = original(*args)
        held.append(scores.numel() * scores.element_size())
        return scores

    original = fused._scores
    monkeypatch.setattr(fused, "_scores", spy)
    q, k, v, bias, mask = inputs(requires_grad=True)
    FusedWindowAttention()(q, k, v, bias, mask if masked else None, SCALE).sum().backward()
    assert len(held) > 1 and max(held) <= limit


def test_training_in_bfloat16_is_computed_in_float32():
    q, k, v, bias, mask = (t.to(torch.bfloat16) if t.is_floating_point() else t for t in inputs(torch.float32))
    for t in (q, k, v, bias):
        t.requires_grad_(True)
    out = FusedWindowAttention()(q, k, v, bias, mask, SCALE)
    assert out.dtype == torch.bfloat16
    reference = explicit(*(t.detach().float() for t in (q, k, v, bias)), mask)
    torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=0)
    out.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(bias.grad.float()).all()
