"""memory_efficient_attention and attention agree with the explicit path, without its memory."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

import minattn._dispatch as dispatch
from minattn import attention, memory_efficient_attention
from minattn.attention import scaled_dot_product_attention as explicit
from minattn.memory import AttentionMemoryError, memory_budget

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ATOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def randn(*shape, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def rand_mask(*shape, p=0.5, device="cpu", seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).to(device)


def causal(n_q, n_k, device="cpu"):
    return torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril()


def make_case(name, dtype, device):
    """q, k, v and keyword arguments for one named situation; batch (2, 3) heads, Nq = 100, Nk = 100 or 257."""
    b, h, n, d = 2, 3, 100, 8
    q = randn(b, h, n, d, dtype=dtype, device=device, seed=10)
    k = randn(b, h, n, d, dtype=dtype, device=device, seed=11)
    v = randn(b, h, n, d, dtype=dtype, device=device, seed=12)
    kw = {}
    if name == "random_mask":
        kw["mask"] = rand_mask(b, h, n, n, device=device)
    elif name == "causal_mask":
        kw["mask"] = causal(n, n, device)
    elif name == "mask_nq_nk":  # (Nq, Nk), broadcast over batch and heads
        kw["mask"] = rand_mask(n, n, device=device)
    elif name == "mask_b1":  # (B, 1, Nq, Nk), broadcast over heads
        kw["mask"] = rand_mask(b, 1, n, n, device=device)
    elif name == "key_padding":  # (B, 1, 1, Nk): size-1 query axis
        kw["mask"] = rand_mask(b, 1, 1, n, p=0.7, device=device)
    elif name == "query_mask":  # (Nq, 1): size-1 key axis
        kw["mask"] = rand_mask(n, 1, p=0.7, device=device)
    elif name == "bias":
        kw["bias"] = randn(h, n, n, dtype=dtype, device=device, seed=13)
    elif name == "bias_wider_than_qk":  # one head of q, k, v; the bias alone has batch and head axes
        q, k, v = q[:1, :1], k[:1, :1], v[:1, :1]
        kw["bias"] = randn(b, h, n, n, dtype=dtype, device=device, seed=13)
    elif name == "mask_and_bias":
        kw["mask"] = rand_mask(b, 1, n, n, device=device)
        kw["bias"] = randn(h, n, n, dtype=dtype, device=device, seed=13)
    elif name == "nq_ne_nk":
        k = randn(b, h, 257, d, dtype=dtype, device=device, seed=11)
        v = randn(b, h, 257, d, dtype=dtype, device=device, seed=12)
        kw["mask"] = rand_mask(n, 257, device=device)
    elif name == "dv_ne_dk":
        v = randn(b, h, n, 5, dtype=dtype, device=device, seed=12)
    elif name == "broadcast_batch":  # k shared by the batch, v shared by the heads
        k = randn(1, h, n, d, dtype=dtype, device=device, seed=11)
        v = randn(b, 1, n, d, dtype=dtype, device=device, seed=12)
    elif name == "no_batch":
        q, k, v = q[0, 0], k[0, 0], v[0, 0]
    elif name == "scale":
        kw["scale"] = 0.37
    elif name != "plain":
        raise KeyError(name)
    return q, k, v, kw


CASES = [
    "plain",
    "random_mask",
    "causal_mask",
    "mask_nq_nk",
    "mask_b1",
    "key_padding",
    "query_mask",
    "bias",
    "bias_wider_than_qk",
    "mask_and_bias",
    "nq_ne_nk",
    "dv_ne_dk",
    "broadcast_batch",
    "no_batch",
    "scale",
]


# ---------------------------------------------------------------- memory_efficient_attention


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_mea_matches_explicit(case, dtype, device):
    q, k, v, kw = make_case(case, dtype, device)
    expected = explicit(q, k, v, **kw)
    got = memory_efficient_attention(q, k, v, chunk_size=32, **kw)
    assert got.shape == expected.shape and got.dtype == dtype and got.device == q.device
    torch.testing.assert_close(got, expected, atol=ATOL[dtype], rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [100, 257])
@pytest.mark.parametrize("chunk_size", [7, 64, 1024])
def test_mea_chunk_sizes(chunk_size, n, device):
    """Tiles that divide N, that leave a ragged last tile, and one tile bigger than N."""
    q = randn(2, n, 8, device=device, seed=1)
    k = randn(2, n + 3, 8, device=device, seed=2)
    v = randn(2, n + 3, 6, device=device, seed=3)
    mask = rand_mask(n, n + 3, p=0.6, device=device)
    bias = randn(n, n + 3, device=device, seed=4)
    expected = explicit(q, k, v, mask=mask, bias=bias)
    got = memory_efficient_attention(q, k, v, mask=mask, bias=bias, chunk_size=chunk_size)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_mea_fully_masked_rows_are_zero(device):
    n, chunk = 40, 8
    q, k, v = (randn(1, n, 4, device=device, seed=s) for s in (1, 2, 3))
    mask = rand_mask(n, n, p=0.5, device=device)
    mask[0] = False  # first row: nothing allowed
    mask[17] = False  # a middle row
    mask[n - 1] = False  # the last row, in a ragged tile
    mask[5] = False
    mask[5, n - 1] = True  # only the very last key: m stays -inf for four tiles, then grows
    mask[6] = False
    mask[6, 0] = True  # only the first key: later all-masked tiles must not disturb it
    got = memory_efficient_attention(q, k, v, mask=mask, chunk_size=chunk)
    assert not torch.isnan(got).any()
    for row in (0, 17, n - 1):
        assert torch.equal(got[:, row], torch.zeros_like(got[:, row]))
    torch.testing.assert_close(got[:, 5], v[:, n - 1], atol=1e-12, rtol=0)
    torch.testing.assert_close(got[:, 6], v[:, 0], atol=1e-12, rtol=0)
    torch.testing.assert_close(got, explicit(q, k, v, mask=mask), atol=1e-10, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_mea_bias_minus_inf_rows_are_zero(device):
    q, k, v = (randn(10, 4, device=device, seed=s) for s in (1, 2, 3))
    bias = randn(10, 10, device=device, seed=4)
    bias[3] = float("-inf")
    got = memory_efficient_attention(q, k, v, bias=bias, chunk_size=4)
    assert not torch.isnan(got).any() and torch.equal(got[3], torch.zeros_like(got[3]))
    torch.testing.assert_close(got, explicit(q, k, v, bias=bias), atol=1e-10, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_mea_rescales_when_the_maximum_grows(device):
    """Scores that grow from tile to tile (up to ~1e3): every new tile must rescale the old sums.

    Without the exp(old_max - new_max) factor the early tiles would dominate; without the
    running maximum exp() would overflow to inf.
    """
    n = 64
    q = torch.ones(3, 4, dtype=torch.float64, device=device)
    q[1] = -1.0
    growth = torch.linspace(0, 500, n, dtype=torch.float64, device=device)[:, None]
    k = growth * torch.ones(n, 4, dtype=torch.float64, device=device) + randn(n, 4, device=device, seed=5)
    v = randn(n, 3, device=device, seed=6)
    got = memory_efficient_attention(q, k, v, chunk_size=8)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, explicit(q, k, v), atol=1e-10, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_mea_1d_and_scalar_masks(device):
    q, k, v = (randn(2, 12, 4, device=device, seed=s) for s in (1, 2, 3))
    key_mask = rand_mask(12, p=0.6, device=device)
    torch.testing.assert_close(
        memory_efficient_attention(q, k, v, mask=key_mask, chunk_size=5),
        explicit(q, k, v, mask=key_mask),
        atol=1e-10,
        rtol=0,
    )
    nothing = torch.tensor(False, device=device)
    assert torch.equal(memory_efficient_attention(q, k, v, mask=nothing, chunk_size=5), torch.zeros_like(q))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mea_low_precision_close_to_float32(dtype, device):
    q, k, v = (randn(2, 3, 200, 16, dtype=dtype, device=device, seed=s) for s in (1, 2, 3))
    mask = rand_mask(2, 1, 200, 200, p=0.7, device=device)
    bias = randn(3, 200, 200, dtype=dtype, device=device, seed=4)
    got = memory_efficient_attention(q, k, v, mask=mask, bias=bias, chunk_size=64)
    assert got.dtype == dtype
    # Reference: the same (rounded) inputs in float32, so only the computation's precision differs.
    expected = explicit(q.float(), k.float(), v.float(), mask=mask, bias=bias.float())
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3  # about two units in the last place of the output
    torch.testing.assert_close(got.float(), expected, atol=tol, rtol=tol)


def test_mea_gradcheck():
    q = randn(2, 9, 4, seed=1).requires_grad_()
    k = randn(2, 11, 4, seed=2).requires_grad_()
    v = randn(2, 11, 3, seed=3).requires_grad_()
    bias = randn(9, 11, seed=4).requires_grad_()
    mask = rand_mask(2, 9, 11, p=0.7)
    mask[0, 2] = False  # a fully masked row: its gradient is zero, never NaN

    def f(q, k, v, bias):
        return memory_efficient_attention(q, k, v, mask=mask, bias=bias, chunk_size=4)

    assert torch.autograd.gradcheck(f, (q, k, v, bias), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_mea_gradients_equal_explicit(device):
    def inputs():
        q = randn(2, 2, 50, 8, dtype=torch.float32, device=device, seed=1).requires_grad_()
        k = randn(2, 2, 70, 8, dtype=torch.float32, device=device, seed=2).requires_grad_()
        v = randn(2, 2, 70, 6, dtype=torch.float32, device=device, seed=3).requires_grad_()
        bias = randn(2, 50, 70, dtype=torch.float32, device=device, seed=4).requires_grad_()
        return q, k, v, bias

    mask = rand_mask(50, 70, p=0.6, device=device)
    mask[3] = False
    upstream = randn(2, 2, 50, 6, dtype=torch.float32, device=device, seed=5)
    a, b = inputs(), inputs()
    (explicit(*a[:3], mask=mask, bias=a[3]) * upstream).sum().backward()
    (memory_efficient_attention(*b[:3], mask=mask, bias=b[3], chunk_size=16) * upstream).sum().backward()
    for ta, tb in zip(a, b):
        assert not torch.isnan(tb.grad).any()
        torch.testing.assert_close(tb.grad, ta.grad, atol=1e-5, rtol=1e-5)


class _LargestTensor(TorchFunctionMode):
    """Record the largest tensor that any torch function or tensor method returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_mea_never_builds_the_score_matrix():
    n, chunk = 2048, 256
    q, k, v = (randn(1, n, 16, dtype=torch.float32, seed=s) for s in (1, 2, 3))
    mask = rand_mask(1, n, p=0.8)  # key padding: a small mask on a large score matrix
    with _LargestTensor() as probe:
        explicit(q, k, v, mask=mask)
    assert probe.largest >= n * n  # the probe sees the explicit path's full matrix
    with _LargestTensor() as probe:
        memory_efficient_attention(q, k, v, mask=mask, chunk_size=chunk)
    assert probe.largest <= chunk * chunk < n * n

    budget = n * n * 4 // 2  # half the explicit score matrix
    with memory_budget(budget):
        with pytest.raises(AttentionMemoryError):
            explicit(q, k, v, mask=mask)
        got = memory_efficient_attention(q, k, v, mask=mask, chunk_size=chunk)
    torch.testing.assert_close(got, explicit(q, k, v, mask=mask), atol=1e-5, rtol=0)


def test_mea_bad_input():
    q, k, v = randn(5, 4), randn(6, 4), randn(6, 3)
    with pytest.raises(ValueError, match="d_k"):
        memory_efficient_attention(q, randn(6, 5), v)
    with pytest.raises(ValueError, match="same number of tokens"):
        memory_efficient_attention(q, k, randn(7, 3))
    with pytest.raises(ValueError, match="boolean"):
        memory_efficient_attention(q, k, v, mask=torch.ones(5, 6))
    with pytest.raises(ValueError, match="broadcast"):
        memory_efficient_attention(q, k, v, mask=torch.ones(4, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="bias"):
        memory_efficient_attention(q, k, v, bias=torch.ones(5, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="v batch axes"):
        memory_efficient_attention(randn(2, 5, 4), randn(2, 6, 4), randn(3, 6, 3))
    for bad in (0, -1, 2.5, True, None):
        with pytest.raises(ValueError, match="chunk_size"):
            memory_efficient_attention(q, k, v, chunk_size=bad)


def test_mea_empty_query():
    out = memory_efficient_attention(randn(2, 0, 4), randn(2, 6, 4), randn(2, 6, 3))
    assert out.shape == (2, 0, 3)


# ---------------------------------------------------------------- attention


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_attention_matches_explicit(case, dtype, device):
    q, k, v, kw = make_case(case, dtype, device)
    expected = explicit(q, k, v, **kw)
    got = attention(q, k, v, **kw)
    assert got.shape == expected.shape and got.dtype == dtype and got.device == q.device
    torch.testing.assert_close(got, expected, atol=ATOL[dtype], rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_fully_masked_rows_are_zero(device):
    q, k, v = (randn(2, 2, 16, 8, dtype=torch.float32, device=device, seed=s) for s in (1, 2, 3))
    mask = rand_mask(2, 1, 16, 16, device=device)
    mask[0, 0, 4] = False
    mask[1, 0, 15] = False
    bias = randn(2, 16, 16, dtype=torch.float32, device=device, seed=4)
    bias[1, 7] = float("-inf")  # a row forbidden by the bias alone, in head 1
    for kw in ({"mask": mask}, {"bias": bias}, {"mask": mask, "bias": bias}):
        got = attention(q, k, v, **kw)
        assert not torch.isnan(got).any(), kw.keys()
        torch.testing.assert_close(got, explicit(q, k, v, **kw), atol=1e-5, rtol=0)
    got = attention(q, k, v, mask=mask)
    assert torch.equal(got[0, :, 4], torch.zeros_like(got[0, :, 4]))
    got = attention(q, k, v, bias=bias)
    assert torch.equal(got[:, 1, 7], torch.zeros_like(got[:, 1, 7]))


def test_attention_zeroes_rows_that_torch_leaves_nan(monkeypatch):
    """Older PyTorch versions (and some kernels) return NaN for a query with no allowed key."""
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    class NanForEmptyRows:
        @staticmethod
        def scaled_dot_product_attention(q, k, v, attn_mask=None, **kwargs):
            out = real_sdpa(q, k, v, attn_mask=attn_mask, **kwargs)
            allowed = attn_mask if attn_mask.dtype == torch.bool else attn_mask > float("-inf")
            return torch.where(allowed.any(-1, keepdim=True), out, float("nan"))

    monkeypatch.setattr(dispatch, "F", NanForEmptyRows)
    q, k, v = (randn(2, 10, 4, dtype=torch.float32, seed=s) for s in (1, 2, 3))
    mask = rand_mask(10, 10, p=0.7)
    mask[2] = False
    bias = randn(10, 10, dtype=torch.float32, seed=4)
    bias[6] = float("-inf")
    for kw in ({"mask": mask}, {"bias": bias}, {"mask": mask, "bias": bias}):
        got = attention(q, k, v, **kw)
        assert not torch.isnan(got).any(), kw.keys()
        torch.testing.assert_close(got, explicit(q, k, v, **kw), atol=1e-5, rtol=0)


def _spy(monkeypatch):
    calls = []
    original = dispatch.memory_efficient_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(dispatch, "memory_efficient_attention", spy)
    return calls


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_attention_over_budget_with_mask_goes_memory_efficient(with_bias, device, monkeypatch):
    calls = _spy(monkeypatch)
    n = 256
    q, k, v = (randn(1, 2, n, 8, dtype=torch.float32, device=device, seed=s) for s in (1, 2, 3))
    mask = rand_mask(1, 1, n, n, p=0.7, device=device)
    mask[..., 9, :] = False
    bias = randn(2, n, n, dtype=torch.float32, device=device, seed=4) if with_bias else None
    expected = explicit(q, k, v, mask=mask, bias=bias)
    with memory_budget(1024):  # far below the 512 KiB score matrix
        with pytest.raises(AttentionMemoryError):
            explicit(q, k, v, mask=mask, bias=bias)
        got = attention(q, k, v, mask=mask, bias=bias)
    if device == "cpu":  # on CUDA a fused kernel that takes masks is an equally valid route
        assert len(calls) == 1
    assert not torch.isnan(got).any()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_attention_under_budget_uses_torch(monkeypatch):
    calls = _spy(monkeypatch)
    q, k, v = (randn(1, 2, 64, 8, dtype=torch.float32, seed=s) for s in (1, 2, 3))
    mask = rand_mask(64, 64, p=0.7)
    attention(q, k, v, mask=mask)
    assert calls == []


@pytest.mark.parametrize("device", DEVICES)
def test_attention_over_budget_without_mask_uses_a_fused_kernel(device, monkeypatch):
    """No mask: PyTorch's flash kernel never holds the matrix, so it is used at any N."""
    calls = _spy(monkeypatch)
    q, k, v = (randn(2, 300, 16, dtype=torch.float32, device=device, seed=s) for s in (1, 2, 3))
    with memory_budget(1024):
        got = attention(q, k, v)
    assert calls == []
    torch.testing.assert_close(got, explicit(q, k, v), atol=1e-5, rtol=0)


def test_attention_over_budget_falls_back_when_no_fused_kernel(monkeypatch):
    """Over budget, if PyTorch has no fused kernel for the inputs, attention takes the tiled path.

    PyTorch answers "No available kernel" (a RuntimeError) when every allowed
    backend refuses; a stand-in raises it here so the test does not depend on
    which inputs a given PyTorch build's kernels accept.
    """
    calls = _spy(monkeypatch)

    class NoKernel:
        @staticmethod
        def scaled_dot_product_attention(*args, **kwargs):
            raise RuntimeError("No available kernel. Aborting execution.")

    monkeypatch.setattr(dispatch, "F", NoKernel)
    q, k, v = (randn(1, 1, 64, 8, seed=s) for s in (1, 2, 3))
    with memory_budget(1024):
        got = attention(q, k, v)
    assert len(calls) == 1
    torch.testing.assert_close(got, explicit(q, k, v), atol=1e-10, rtol=0)
    with pytest.raises(RuntimeError, match="No available kernel"):  # under budget: no silent fallback
        attention(q, k, v)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_gradients_equal_explicit(device):
    def inputs():
        return [randn(2, 2, 30, 8, dtype=torch.float64, device=device, seed=s).requires_grad_() for s in (1, 2, 3)]

    mask = rand_mask(2, 1, 30, 30, p=0.7, device=device)
    a, b = inputs(), inputs()
    explicit(*a, mask=mask).sum().backward()
    attention(*b, mask=mask).sum().backward()
    for ta, tb in zip(a, b):
        torch.testing.assert_close(tb.grad, ta.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_bfloat16(device):
    q, k, v = (randn(2, 2, 64, 16, dtype=torch.bfloat16, device=device, seed=s) for s in (1, 2, 3))
    mask = rand_mask(64, 64, p=0.7, device=device)
    got = attention(q, k, v, mask=mask)
    assert got.dtype == torch.bfloat16
    expected = explicit(q.float(), k.float(), v.float(), mask=mask)
    torch.testing.assert_close(got.float(), expected, atol=2e-2, rtol=2e-2)


def test_attention_bad_input():
    q, k, v = randn(5, 4), randn(6, 4), randn(6, 3)
    with pytest.raises(ValueError, match="d_k"):
        attention(q, randn(6, 5), v)
    with pytest.raises(ValueError, match="boolean"):
        attention(q, k, v, mask=torch.ones(5, 6))
    with pytest.raises(ValueError, match="broadcast"):
        attention(q, k, v, bias=torch.ones(4, 6, dtype=torch.float64))


def test_mea_without_a_mask_never_builds_the_score_matrix():
    n, chunk = 2048, 256
    q, k, v = (randn(1, n, 16, dtype=torch.float32, seed=s) for s in (1, 2, 3))
    with _LargestTensor() as probe:
        got = memory_efficient_attention(q, k, v, chunk_size=chunk)
    assert probe.largest <= chunk * chunk < n * n
    torch.testing.assert_close(got, explicit(q, k, v), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda g: torch.rand(7, 5, generator=g) > 0.8,
        lambda g: (torch.rand(2, 3, 6, 9, generator=g) > 0.9),
        lambda g: (torch.rand(6, 9, generator=g) > 0.9).expand(2, 3, 6, 9),  # broadcast, stride 0
        lambda g: (torch.rand(9, 6, generator=g) > 0.9).transpose(0, 1),  # keys not contiguous
        lambda g: torch.zeros(4, 0, dtype=torch.bool),  # no keys at all
    ],
    ids=["plain", "batched", "expanded", "transposed", "no_keys"],
)
def test_rows_with_a_key_equal_torch_any(make):
    from minattn._dispatch import _any_along_keys

    allowed = make(torch.Generator().manual_seed(3))
    expected = allowed.any(dim=-1, keepdim=True)
    got = _any_along_keys(allowed)
    assert got.dtype == torch.bool and torch.equal(got, expected)
    assert not expected.all()  # every case holds a query with no key, the row the answer must find
