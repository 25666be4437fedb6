"""Multi-head attention, and its equivalence with torch.nn.MultiheadAttention."""

import pytest
import torch
from torch import nn

import minattn
from minattn.interop import from_torch


def test_split_and_merge_heads_round_trip():
    x = torch.randn(2, 5, 12)
    heads = minattn.split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[:, 1], x[..., 4:8])  # head 1 takes a contiguous block of features
    assert torch.equal(minattn.merge_heads(heads), x)


@pytest.mark.parametrize("heads", [1, 2, 4, 8])
def test_parameter_count_does_not_depend_on_heads(heads):
    module = minattn.MultiHeadAttention(32, heads)
    assert sum(p.numel() for p in module.parameters()) == 4 * 32 * 32 + 4 * 32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_from_torch_self_attention_equals_torch(device, dtype, bias):
    torch_mha = nn.MultiheadAttention(24, 4, bias=bias, batch_first=True).to(device, dtype)
    ours = from_torch(torch_mha)
    x = torch.randn(3, 7, 24, device=device, dtype=dtype)
    expected, expected_weights = torch_mha(x, x, x, average_attn_weights=False)
    out, weights = ours(x, return_weights=True)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(out, expected, atol=tol, rtol=0)
    torch.testing.assert_close(weights, expected_weights, atol=tol, rtol=0)


def test_from_torch_cross_attention_with_mask_equals_torch(device):
    torch_mha = nn.MultiheadAttention(16, 2, batch_first=True).to(device)
    ours = from_torch(torch_mha)
    query = torch.randn(2, 3, 16, device=device)
    memory = torch.randn(2, 9, 16, device=device)
    value = torch.randn(2, 9, 16, device=device)
    allowed = torch.rand(3, 9, device=device) > 0.5
    allowed[:, 0] = True
    expected, _ = torch_mha(query, memory, value, attn_mask=~allowed)  # torch: True = forbidden
    torch.testing.assert_close(ours(query, memory, value, mask=allowed), expected, atol=1e-5, rtol=0)


def test_per_batch_mask_applies_to_every_head():
    module = minattn.MultiHeadAttention(8, 2)
    x = torch.randn(2, 4, 8)
    mask = torch.rand(2, 4, 4) > 0.5
    mask[..., 0] = True
    _, weights = module(x, mask=mask, return_weights=True)
    assert torch.all(weights.masked_select(~mask[:, None].expand_as(weights)) == 0)


def test_bad_input():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        minattn.MultiHeadAttention(10, 4)
    module = minattn.MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        module(torch.randn(4, 8))
    with pytest.raises(ValueError, match="batch_first=True"):
        from_torch(nn.MultiheadAttention(8, 2))
    with pytest.raises(ValueError, match="torch.nn.MultiheadAttention"):
        from_torch(nn.Linear(2, 2))
