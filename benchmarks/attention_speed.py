"""minattn.attention and the explicit path against torch's SDPA and a naive three-line attention.

    python benchmarks/attention_speed.py [--device cuda] [--dtype bfloat16] [--quick]

q, k, v of shape (1, heads, N, 32), no mask, N = 1,024 to 16,384, one and four
heads. Medians with half the spread over repeated calls after a warm-up, with
the thread count fixed. The explicit path refuses score matrices over its
memory budget (2 GiB); those cells read "refused".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import minattn
from common import benchmark_arguments, describe_machine, fmt_ms, markdown_table, time_call


def naive_attention(q, k, v):
    """The three lines every tutorial writes: scores, softmax, weighted sum."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


def main() -> None:
    args = benchmark_arguments(__doc__)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sizes = [256, 512] if args.quick else [1024, 4096, 16384]
    methods = {
        "torch SDPA": F.scaled_dot_product_attention,
        "minattn.attention": minattn.attention,
        "minattn explicit": minattn.scaled_dot_product_attention,
        "naive 3 lines": naive_attention,
    }
    rows = []
    torch.manual_seed(0)
    for heads in (1, 4):
        for n in sizes:
            q, k, v = (torch.randn(1, heads, n, 32, device=device, dtype=dtype) for _ in range(3))
            timings = {}
            for name, fn in methods.items():
                try:
                    with torch.no_grad():
                        timings[name] = time_call(lambda: fn(q, k, v), device, repeats=args.repeats)
                except (minattn.AttentionMemoryError, torch.OutOfMemoryError):
                    timings[name] = None
            sdpa = timings["torch SDPA"][0]
            cells = []
            for name in methods:
                t = timings[name]
                cells.append("refused" if t is None else f"{fmt_ms(*t)} ({t[0] / sdpa:.2f}x)")
            rows.append([str(heads), f"{n:,}", *cells])
    print(f"{describe_machine(device)}; {args.dtype}; d = 32; time (ratio to torch SDPA)\n")
    print(markdown_table(["heads", "N", *methods], rows))


if __name__ == "__main__":
    main()
