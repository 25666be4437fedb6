import pytest
import torch

import minattn


def test_matches_torch_on_random_logits(device):
    x = torch.randn(3, 5, 7, dtype=torch.float64, device=device) * 4
    for dim in (0, 1, -1):
        torch.testing.assert_close(minattn.softmax(x, dim=dim), torch.softmax(x, dim=dim), atol=1e-12, rtol=0)


def test_exact_for_float32_logits_of_1e4(device):
    x = torch.tensor([[1e4, 1e4 - 1.0, 1e4 - 3.0, -1e4]], device=device)
    out = minattn.softmax(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.softmax(x.double(), -1).float(), atol=1e-7, rtol=0)


def test_naive_softmax_overflows_where_minattn_does_not(device):
    x = torch.tensor([1e4, 0.0], device=device)
    naive = torch.exp(x) / torch.exp(x).sum()
    assert torch.isnan(naive).any()
    assert torch.equal(minattn.softmax(x), torch.tensor([1.0, 0.0], device=device))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_does_not_overflow(device, dtype):
    x = torch.tensor([[60000.0, 59999.0, 0.0]], device=device).to(dtype)
    out = minattn.softmax(x)
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), torch.softmax(x.float(), -1), atol=1e-2, rtol=0)
    # Many equal logits: the float32 accumulation keeps the sum exact.
    many = torch.zeros(1, 70000, device=device, dtype=dtype)
    assert torch.isfinite(minattn.softmax(many)).all()


def test_rows_of_minus_inf_give_zeros_not_nan(device):
    x = torch.tensor([[float("-inf")] * 3, [0.0, float("-inf"), 1.0]], device=device)
    out = minattn.softmax(x)
    assert torch.equal(out[0], torch.zeros(3, device=device))
    torch.testing.assert_close(out[1], torch.softmax(x[1], -1))


def test_gradient_matches_torch():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(minattn.softmax, (x,))


def test_rejects_integer_input():
    with pytest.raises(ValueError, match="floating-point"):
        minattn.softmax(torch.arange(4))
