"""What minattn.attention adds to torch's SDPA on small problems, per call.

    python benchmarks/call_overhead.py [--device cuda] [--dtype bfloat16] [--quick]

On small inputs the fused kernel takes microseconds, so a wrapper's own work
(checks, layout, the zero rows a mask may leave) is what shows. q, k, v of
shape (1, heads, N, 32), N = 16 to 1,024, one and four heads, without and with
a boolean (N, N) mask (20 % of pairs forbidden, no empty row). Each cell is
the median over repeated timings of a loop of calls, divided by the calls, so
on a GPU it is the rate at which calls can be issued back to back.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

import minattn
from common import benchmark_arguments, describe_machine, markdown_table, time_call


def per_call_us(fn, device, calls: int, repeats: int) -> float:
    """Median microseconds per call of ``fn``, timed as loops of ``calls`` calls."""

    def loop():
        for _ in range(calls):
            fn()

    median, _ = time_call(loop, device, repeats, warmup=1)
    return median / calls * 1e6


def main() -> None:
    args = benchmark_arguments(__doc__)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sizes, calls = ([16], 10) if args.quick else ([16, 64, 256, 1024], 200)
    g = torch.Generator().manual_seed(0)
    rows = []
    for heads in (1, 4):
        for n in sizes:
            q, k, v = (torch.randn(1, heads, n, 32, generator=g).to(device, dtype) for _ in range(3))
            mask = torch.rand(n, n, generator=g) > 0.2
            mask.fill_diagonal_(True)  # no query without a key: torch and minattn then agree
            mask = mask.to(device)
            for label, kw in (("none", {}), ("(N, N) bool", {"attn_mask": mask})):
                ours = {"mask": kw["attn_mask"]} if kw else {}
                theirs = functools.partial(F.scaled_dot_product_attention, q, k, v, **kw)
                mine = functools.partial(minattn.attention, q, k, v, **ours)
                torch_us, ours_us = (per_call_us(fn, device, calls, args.repeats) for fn in (theirs, mine))
                rows.append([heads, f"{n:,}", label, f"{torch_us:.1f}", f"{ours_us:.1f}", f"{ours_us / torch_us:.2f}x"])
    print(f"{describe_machine(device)}; {args.dtype}; d = 32; microseconds per call, {calls} calls per timing\n")
    header = ["heads", "N", "mask", "torch SDPA (us)", "minattn.attention (us)", "ratio"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
