"""Shifted-window attention against brute force, and the Swin block and stage."""

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minattn
from minattn.swin import shifted_window_attention
from minattn.windows import WindowLayout


def brute_force_window_attention(x, attn, shift):
    """Global attention over the padded grid, allowed only within a window and a region.

    Written without partition, roll or masks: every token's shifted coordinate,
    window and region are computed directly, and the bias is looked up from
    the true offset between the two tokens inside their window.
    """
    batch, *spatial, channels = x.shape
    window, shift = minattn.effective_window_and_shift(spatial, attn.window_size, shift)
    padded = [math.ceil(s / w) * w for s, w in zip(spatial, window)]
    grid = torch.zeros(batch, *padded, channels, dtype=x.dtype)
    grid[(slice(None),) + tuple(slice(0, s) for s in spatial)] = x
    positions = torch.tensor(list(itertools.product(*(range(p) for p in padded))))  # (N, ndim)
    sizes, win, shifts = torch.tensor(padded), torch.tensor(window), torch.tensor(shift)
    shifted = (positions - shifts) % sizes
    window_id, local = shifted // win, shifted % win
    region = (shifted >= sizes - win).long() + ((shifted >= sizes - shifts) & (shifts > 0)).long()
    same_window = (window_id[:, None] == window_id[None]).all(-1)
    same_region = (region[:, None] == region[None]).all(-1) if any(shift) else torch.ones_like(same_window)
    allowed = same_window & same_region
    # bias of pair (i, j): table row of the offset local_i - local_j in the module's full table
    table_window = torch.tensor(attn.window_size)
    offset = local[:, None] - local[None] + table_window - 1
    sides = 2 * table_window - 1
    strides = torch.tensor([math.prod(sides[a + 1 :].tolist()) for a in range(len(window))])
    bias = attn.position_bias.table[(offset * strides).sum(-1)].permute(2, 0, 1)  # (h, N, N)
    tokens = grid.reshape(batch, -1, channels)
    q, k, v = attn.qkv(tokens).chunk(3, dim=-1)
    heads = attn.num_heads
    q, k, v = (t.reshape(batch, -1, heads, channels // heads).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) * (channels // heads) ** -0.5 + bias
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    out = attn.proj((weights @ v).transpose(1, 2).reshape(batch, -1, channels)).reshape(batch, *padded, channels)
    return out[(slice(None),) + tuple(slice(0, s) for s in spatial)]


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
@given(
    spatial=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    window=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
    shift_fraction=st.tuples(*(st.sampled_from([0.0, 0.34, 0.5, 0.99]),) * 3),
    heads=st.sampled_from([1, 2]),
)
def test_shifted_windows_equal_brute_force(fused, spatial, window, shift_fraction, heads):
    shift = tuple(int(f * w) for f, w in zip(shift_fraction, window))
    torch.manual_seed(sum(spatial) + sum(window))
    attn = minattn.WindowAttention(4, window, heads, fused=fused).double()
    with torch.no_grad():
        attn.position_bias.table.normal_(0, 1.0)  # a strong bias, so a wrong lookup shows
    x = torch.randn(2, *spatial, 4, dtype=torch.float64)
    expected = brute_force_window_attention(x, attn, shift)
    torch.testing.assert_close(shifted_window_attention(x, attn, shift), expected, atol=1e-10, rtol=0)


def test_two_dimensional_shifted_windows_equal_brute_force():
    attn = minattn.WindowAttention(4, (3, 2), 2).double()
    x = torch.randn(1, 7, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(
        shifted_window_attention(x, attn, (1, 1)), brute_force_window_attention(x, attn, (1, 1)), atol=1e-10, rtol=0
    )


def test_regular_windows_never_mix(device):
    block = minattn.SwinBlock(8, 2, window_size=2, shift_size=0).to(device)
    x = torch.randn(1, 4, 4, 4, 8, device=device)
    y = x.clone()
    # change only the last window (randomly: LayerNorm would cancel a constant offset)
    y[:, 2:, 2:, 2:] += torch.randn(1, 2, 2, 2, 8, device=device)
    changed = (block(x) - block(y)).abs().sum(-1) > 1e-6
    assert changed[:, 2:, 2:, 2:].all() and changed.sum() == 8


def test_shifted_block_connects_neighbouring_windows(device):
    block = minattn.SwinBlock(8, 2, window_size=2, shift_size=1).to(device)
    x = torch.randn(1, 4, 4, 4, 8, device=device)
    y = x.clone()
    y[:, 1, 1, 1] += torch.randn(8, device=device)  # a token at the corner of window 0
    changed = (block(x) - block(y)).abs().sum(-1) > 1e-6
    # the shifted window around (1.5, 1.5, 1.5) joins it with corners of its 7 neighbour windows
    assert changed[0, 1:3, 1:3, 1:3].all() and changed.sum() == 8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_block_keeps_shape_dtype_and_device(device, dtype):
    block = minattn.SwinBlock(12, 3, window_size=(2, 3, 4), shift_size=(1, 1, 2)).to(device, dtype)
    x = torch.randn(2, 5, 7, 6, 12, device=device, dtype=dtype)
    out = block(x)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out.float()).all()


def test_layout_builds_its_mask_once_per_device():
    layout = WindowLayout((8, 8, 8), 4, 2)
    first = layout.mask("cpu")
    assert WindowLayout((8, 8, 8), (4, 4, 4), (2, 2, 2)).mask(torch.device("cpu")) is first  # equal layouts share it
    assert WindowLayout((8, 8, 8), 4, 0).mask() is None  # regular windows need none
    block = minattn.SwinBlock(8, 2, window_size=4, shift_size=2)
    x = torch.randn(1, 8, 8, 8, 8)
    torch.testing.assert_close(block(x), block(x, mask=first))  # the block uses the layout's mask


def test_stage_alternates_shifts_and_merges(device):
    stage = minattn.SwinStage(8, depth=4, num_heads=2, window_size=4, downsample=minattn.PatchMerging).to(device)
    assert [b.shift_size for b in stage.blocks] == [(0, 0, 0), (2, 2, 2)] * 2
    out = stage(torch.randn(2, 8, 9, 7, 8, device=device))
    assert out.shape == (2, 4, 5, 4, 16)


def test_two_dimensional_stage():
    stage = minattn.SwinStage(8, depth=2, num_heads=2, window_size=(4, 4), downsample=minattn.PatchMerging)
    assert stage(torch.randn(1, 8, 8, 8)).shape == (1, 4, 4, 16)


def test_patch_merging_concatenates_row_major_offsets():
    merging = minattn.PatchMerging(1)
    with torch.no_grad():
        merging.norm.weight.fill_(1.0)
        merging.norm.bias.zero_()
    x = torch.arange(8.0).reshape(1, 2, 2, 2, 1)
    merged = torch.cat([x[:, i::2, j::2, k::2] for i, j, k in itertools.product(range(2), repeat=3)], -1)
    expected = merging.reduction(torch.nn.functional.layer_norm(merged, (8,)))
    torch.testing.assert_close(merging(x), expected)


def test_stage_trains(device):
    stage = minattn.SwinStage(8, depth=2, num_heads=2, window_size=2).to(device)
    x = torch.randn(1, 4, 4, 4, 8, device=device)
    stage(x).square().mean().backward()
    grads = [p.grad for p in stage.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert stage.blocks[1].attn.position_bias.table.grad.abs().sum() > 0


def test_bad_input():
    with pytest.raises(ValueError, match="smaller than the window"):
        minattn.SwinBlock(8, 2, window_size=4, shift_size=4)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        minattn.SwinBlock(10, 3, window_size=4, shift_size=0)
    block = minattn.SwinBlock(8, 2, window_size=4, shift_size=2)
    with pytest.raises(ValueError, match="channels-last"):
        block(torch.randn(1, 8, 6, 6, 6))  # channels-first by mistake
    attn = minattn.WindowAttention(8, 2, 2)
    with pytest.raises(ValueError, match="mask must be boolean"):
        attn(torch.randn(4, 8, 8), mask=torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="pass window_size="):
        attn(torch.randn(4, 5, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_and_explicit_paths_agree_in_inference_and_training(device, dtype):
    torch.manual_seed(3)
    fused = minattn.SwinStage(12, depth=2, num_heads=3, window_size=(3, 4, 4), fused=True).to(device, dtype)
    explicit = minattn.SwinStage(12, depth=2, num_heads=3, window_size=(3, 4, 4), fused=False).to(device, dtype)
    explicit.load_state_dict(fused.state_dict())
    with torch.no_grad():
        for block in (*fused.blocks, *explicit.blocks):
            torch.manual_seed(5)
            block.attn.position_bias.table.normal_(0, 1.0)
    x = torch.randn(2, 7, 9, 8, 12, device=device, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    with torch.no_grad():
        torch.testing.assert_close(fused(x), explicit(x), atol=tol, rtol=0)
    fused(x).square().mean().backward()
    explicit(x).square().mean().backward()
    for (name, a), b in zip(fused.named_parameters(), explicit.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=tol, rtol=1e-4, msg=name)


def test_fused_cache_is_rebuilt_when_the_table_changes():
    block = minattn.SwinBlock(8, 2, window_size=2, shift_size=1).eval()
    x = torch.randn(1, 4, 4, 4, 8)
    with torch.no_grad():
        before = block(x)
        assert block(x).equal(before)  # served from the cache
        block.attn.position_bias.table.add_(1.0 * torch.randn_like(block.attn.position_bias.table))
        after = block(x)
        block.attn.fused = False
        torch.testing.assert_close(after, block(x), atol=1e-5, rtol=0)
    assert not torch.allclose(before, after)


def test_fused_path_gives_zeros_for_a_query_with_no_allowed_key():
    attn = minattn.WindowAttention(4, 2, 1, fused=True)
    mask = torch.ones(1, 8, 8, dtype=torch.bool)
    mask[0, 3] = False
    x = torch.randn(2, 8, 4)
    out = attn(x, mask=mask)
    assert torch.isfinite(out).all()
    attn.fused = False
    torch.testing.assert_close(out, attn(x, mask=mask), atol=1e-6, rtol=0)


def test_recorded_weights_are_the_attention_of_each_window():
    attn = minattn.WindowAttention(8, 2, 2)
    x = torch.randn(3, 8, 8)
    mask = torch.rand(3, 8, 8) > 0.5
    mask |= torch.eye(8, dtype=torch.bool)
    attn.record_weights = True
    out = attn(x, mask=mask)
    weights = attn.last_weights
    assert weights.shape == (3, 2, 8, 8)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 8))
    assert torch.all(weights.masked_select(~mask[:, None].expand_as(weights)) == 0)
    attn.record_weights = False
    torch.testing.assert_close(attn(x, mask=mask), out, atol=1e-5, rtol=0)  # the fused path agrees


def test_mlp_in_chunks_gives_the_whole_grids_numbers(monkeypatch):
    # Without autograd on the CPU, a block runs norm2 -> MLP -> residual a chunk of tokens at a time.
    block = minattn.SwinBlock(12, 3, (4, 3, 5), (2, 1, 2)).double().eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(2, 7, 9, 10, 12, dtype=torch.float64)
    calls = []
    monkeypatch.setattr(minattn.swin, "MLP_CHUNK_BYTES", 48 * 8 * 100)  # 100 tokens a chunk: 13 chunks, one short
    block.mlp.register_forward_pre_hook(lambda module, args: calls.append(args[0].numel() // 12))
    with torch.no_grad():
        whole = block(x)  # a hook on the MLP expects one call: the whole grid
        assert calls == [2 * 7 * 9 * 10]
        block.mlp._forward_pre_hooks.clear()
        chunked = block(x)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
    spy = []
    original = block.mlp.forward
    monkeypatch.setattr(block.mlp, "forward", lambda t: spy.append(t.numel() // 12) or original(t))
    with torch.no_grad():
        block(x)
    assert spy == [100] * 12 + [60]
    spy.clear()
    block(x).sum().backward()  # training: one call, so that autograd keeps one graph
    assert spy == [1260]
