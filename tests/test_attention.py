"""The explicit attention against PyTorch's fused scaled_dot_product_attention."""

import math

import pytest
import torch
import torch.nn.functional as F

import minattn
from minattn.memory import GIB, AttentionMemoryError

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def _qkv(batch, nq, nk, dk, dv, dtype, device):
    q = torch.randn(*batch, nq, dk, dtype=dtype, device=device)
    k = torch.randn(*batch, nk, dk, dtype=dtype, device=device)
    v = torch.randn(*batch, nk, dv, dtype=dtype, device=device)
    return q, k, v


def _torch_reference(q, k, v, mask=None, bias=None, scale=None):
    # torch takes one attn_mask: fold the bias in, with -inf where the mask forbids.
    attn_mask = mask
    if bias is not None:
        attn_mask = bias.expand(torch.broadcast_shapes(bias.shape, mask.shape)) if mask is not None else bias
        if mask is not None:
            attn_mask = attn_mask.masked_fill(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)


CASES = {
    "plain": dict(batch=(2,), nq=5, nk=5, dk=8, dv=8),
    "heads, Nq != Nk, d_v != d_k": dict(batch=(2, 3), nq=4, nk=9, dk=6, dv=5),
    "single query": dict(batch=(1,), nq=1, nk=7, dk=4, dv=3),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("extra", ["none", "mask", "bias", "mask+bias", "broadcast mask", "scale"])
def test_equals_torch_sdpa(device, dtype, case, extra):
    spec = CASES[case]
    q, k, v = _qkv(spec["batch"], spec["nq"], spec["nk"], spec["dk"], spec["dv"], dtype, device)
    mask = bias = scale = None
    score_shape = (*spec["batch"], spec["nq"], spec["nk"])
    if "mask" in extra:
        shape = (spec["nq"], spec["nk"]) if extra == "broadcast mask" else score_shape
        mask = torch.rand(shape, device=device) > 0.4
        mask[..., 0] = True  # torch gives NaN for a fully masked row; minattn's zeros are tested below
    if "bias" in extra:
        bias = torch.randn(spec["nq"], spec["nk"], dtype=dtype, device=device)  # broadcast over batch and heads
    if extra == "scale":
        scale = 0.3
    ours = minattn.scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, scale=scale)
    theirs = _torch_reference(q, k, v, mask=mask, bias=bias, scale=scale)
    assert ours.shape == (*spec["batch"], spec["nq"], spec["dv"])
    assert ours.dtype == dtype and ours.device == q.device
    torch.testing.assert_close(ours, theirs, atol=TOLERANCE[dtype], rtol=0)


def test_weights_sum_to_one_and_reproduce_output(device):
    q, k, v = _qkv((2,), 3, 6, 4, 5, torch.float64, device)
    out, weights = minattn.scaled_dot_product_attention(q, k, v, return_weights=True)
    assert weights.shape == (2, 3, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, dtype=torch.float64, device=device))
    torch.testing.assert_close(out, weights @ v)
    manual = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), -1)
    torch.testing.assert_close(weights, manual)


def test_fully_masked_row_gives_zeros_not_nan(device):
    q, k, v = _qkv((1,), 3, 4, 4, 2, torch.float32, device)
    mask = torch.ones(3, 4, dtype=torch.bool, device=device)
    mask[1] = False
    out, weights = minattn.scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert torch.equal(out[0, 1], torch.zeros(2, device=device))
    assert torch.equal(weights[0, 1], torch.zeros(4, device=device))


def test_mask_with_more_batch_axes_than_qkv_broadcasts(device):
    q, k, v = _qkv((), 3, 4, 2, 2, torch.float64, device)
    mask = torch.rand(5, 3, 4, device=device) > 0.3
    mask[..., 0] = True
    out = minattn.scaled_dot_product_attention(q, k, v, mask=mask)
    assert out.shape == (5, 3, 2)
    torch.testing.assert_close(out[2], minattn.scaled_dot_product_attention(q, k, v, mask=mask[2]))


def test_bfloat16_close_to_float32(device):
    q, k, v = _qkv((2, 2), 16, 16, 8, 8, torch.float32, device)
    ours = minattn.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), minattn.scaled_dot_product_attention(q, k, v), atol=3e-2, rtol=0)


def test_gradients_match_torch():
    q, k, v = (t.requires_grad_() for t in _qkv((2,), 4, 5, 3, 3, torch.float64, "cpu"))
    torch.autograd.gradcheck(lambda a, b, c: minattn.scaled_dot_product_attention(a, b, c), (q, k, v))


def test_seed_example_each_query_blends_its_value_with_the_shared_one():
    # q1 = k1, q2 = k2, and k3 equally similar to both queries.
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]) * 3
    queries = keys[:2]
    values = torch.eye(3)
    _, weights = minattn.scaled_dot_product_attention(queries, keys, values, return_weights=True)
    assert weights[0].argsort(descending=True)[:2].tolist() == [0, 2]
    assert weights[1].argsort(descending=True)[:2].tolist() == [1, 2]
    torch.testing.assert_close(weights[0, 2], weights[1, 2])


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((2, 4, 8), (2, 5, 6), (2, 5, 6)), "share their last"),
        (((2, 4, 8), (2, 5, 8), (2, 6, 8)), "same number of tokens"),
        (((8,), (5, 8), (5, 8)), "tokens, features"),
        (((3, 4, 8), (2, 5, 8), (2, 5, 8)), "do not broadcast"),
    ],
)
def test_bad_shapes_raise_clear_errors(shapes, message):
    q, k, v = (torch.randn(s) for s in shapes)
    with pytest.raises(ValueError, match=message):
        minattn.scaled_dot_product_attention(q, k, v)


def test_float_mask_is_refused_with_a_pointer_to_bias():
    q = k = v = torch.randn(4, 8)
    with pytest.raises(ValueError, match="bias="):
        minattn.scaled_dot_product_attention(q, k, v, mask=torch.zeros(4, 4))


def test_mask_of_wrong_shape_is_refused():
    q = k = v = torch.randn(4, 8)
    with pytest.raises(ValueError, match="mask must broadcast"):
        minattn.scaled_dot_product_attention(q, k, v, mask=torch.ones(3, 4, dtype=torch.bool))


def test_mixed_dtypes_are_refused():
    with pytest.raises(ValueError, match="share a dtype"):
        minattn.scaled_dot_product_attention(torch.randn(4, 8), torch.randn(4, 8).double(), torch.randn(4, 8))


def test_memory_guard_refuses_the_seed_matrix_before_allocating():
    # 131,072 tokens: the 64 GiB score matrix of lesson 04. Only the tiny q is real;
    # k is an expanded view, so nothing large exists unless attention allocates it.
    n = 131_072
    q = torch.zeros(n, 32)
    with pytest.raises(AttentionMemoryError, match=r"64\.00 GiB") as info:
        minattn.scaled_dot_product_attention(q, q, q)
    assert "windowed" in str(info.value).lower() or "window" in str(info.value)


def test_memory_budget_is_settable_and_restored():
    q = torch.randn(1024, 4)
    assert minattn.get_memory_budget() == 2 * GIB
    with minattn.memory_budget(1024 * 1024):  # 1 MiB < 4 MiB of scores
        with pytest.raises(AttentionMemoryError, match="4.00 MiB"):
            minattn.scaled_dot_product_attention(q, q, q)
    assert minattn.get_memory_budget() == 2 * GIB
    minattn.scaled_dot_product_attention(q, q, q)
    with pytest.raises(ValueError, match="positive"):
        minattn.set_memory_budget(0)


def test_mask_and_bias_on_another_device_are_refused():
    q = k = v = torch.randn(4, 8)
    with pytest.raises(ValueError, match="mask is on meta"):
        minattn.scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.bool, device="meta"))
    with pytest.raises(ValueError, match="bias is on meta"):
        minattn.scaled_dot_product_attention(q, k, v, bias=torch.zeros(4, 4, device="meta"))
