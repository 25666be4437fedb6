"""Time exact attention at the course's N = 131,072 tokens, where the explicit path refuses.

Compares, for one head of q, k, v ``(1, 1, N, d)``:

* ``mea``: :func:`minattn.memory_efficient_attention` (plain PyTorch,
  online softmax, chunk x chunk tiles);
* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (PyTorch's
  fused kernel: flash attention on CPU when no mask is given);
* ``attention``: :func:`minattn.attention`, the dispatching entry
  point (should match ``sdpa`` here: no mask, so the fused kernel is used).

Each method's rate is printed in GFLOP/s (4 N^2 d per head: the two
products), beside the rate of a plain square matrix multiply measured in the
same run: the ceiling that exact attention can approach on this machine.

Each (N, method) runs in a fresh subprocess, so the peak resident memory
(``ru_maxrss``) belongs to that case alone. Prints a Markdown table.

    python benchmarks/efficient_attention.py            # N = 32,768 and 131,072 (minutes on a laptop CPU)
    python benchmarks/efficient_attention.py --quick    # tiny N, a smoke test (seconds)
    python benchmarks/efficient_attention.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

METHODS = ("mea", "sdpa", "attention")


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def gemm_rate(args) -> dict:
    """GFLOP/s of one plain (n x n) @ (n x n) matrix multiply, n = ``args.n``: best of the timed runs."""
    import torch

    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    a, b = (torch.randn(args.n, args.n).to(device=device, dtype=dtype) for _ in range(2))
    times = []
    for _ in range(1 + args.repeats):  # the first run warms up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return {"n": args.n, "gflops": 2 * args.n**3 / min(times[1:]) / 1e9}


def worker(args) -> dict:
    """Run one (N, method) case in this process and return its measurements."""
    import torch
    import torch.nn.functional as F

    from minattn import attention, memory_efficient_attention

    if args.method == "gemm":
        return gemm_rate(args)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    cuda = device.type == "cuda"

    def run(q, k, v):
        if args.method == "mea":
            return memory_efficient_attention(q, k, v, chunk_size=args.chunk_size)
        if args.method == "sdpa":
            return F.scaled_dot_product_attention(q, k, v)
        return attention(q, k, v)

    def inputs(n):
        g = torch.Generator().manual_seed(0)
        shape = (1, args.heads, n, args.dim)
        return [torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype) for _ in range(3)]

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    with torch.no_grad():
        # Warm-up on a small N first (thread pool, kernel selection, caches),
        # then, where it is cheap, once at the measured N.
        run(*inputs(min(args.n, 2048)))
        q, k, v = inputs(args.n)
        sync()
        rss_inputs = _peak_rss_mib()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        if args.n <= args.warm_full_max:
            run(q, k, v)
        times = []
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            out = run(q, k, v)
            sync()
            times.append(time.perf_counter() - t0)
            if not torch.isfinite(out).all():
                raise RuntimeError(f"{args.method} returned non-finite values at N={args.n}")
            del out
    result = {
        "n": args.n,
        "method": args.method,
        "times": times,
        "rss_inputs_mib": rss_inputs,
        "peak_rss_mib": _peak_rss_mib(),
    }
    if cuda:
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny N and one repeat: a smoke test")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="token counts N (default 32768 131072)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per case (default 3, or 1 when N > 32768)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (fixed, so CPU figures compare)")
    parser.add_argument("--dim", type=int, default=32, help="d = d_k = d_v")
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument(
        "--warm-full-max", type=int, default=32768, help="also warm up at the measured N when N <= this (default 32768)"
    )
    parser.add_argument("--worker", nargs=2, metavar=("N", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        args.n, args.method = int(args.worker[0]), args.worker[1]
        args.repeats = args.repeats or (3 if args.n <= 32768 else 1)
        print(json.dumps(worker(args)))
        return

    sizes = args.sizes or ([256, 1024] if args.quick else [32768, 131072])
    passthrough = [
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--dim",
        str(args.dim),
        "--heads",
        str(args.heads),
        "--dtype",
        args.dtype,
        "--chunk-size",
        str(args.chunk_size),
        "--warm-full-max",
        str(args.warm_full_max),
    ]
    if args.repeats or args.quick:
        passthrough += ["--repeats", str(args.repeats or 1)]

    import torch  # only for the header: the measurements run in subprocesses

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")  # the repo's minattn, installed or not
    rows = []
    for n in sizes:
        for method in args.methods:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(n), method, *passthrough]
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                rows.append({"n": n, "method": method, "error": proc.stderr.strip().splitlines()[-1:]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"done: N={n} {method}", file=sys.stderr, flush=True)
    gemm_n = 1024 if args.quick else 4096
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(gemm_n), "gemm", *passthrough]
    gemm = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.splitlines()[-1])

    print(f"command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`")
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.platform()}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"torch.set_num_threads({args.threads}), device {args.device}"
    )
    if args.device.startswith("cuda") and torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(torch.device(args.device))}")
    print(
        f"one head, d = {args.dim}, {args.dtype}, chunk_size = {args.chunk_size} (mea), no mask; "
        "each case in a fresh process; time = median of the timed runs"
    )
    side = f"({gemm['n']} x {gemm['n']})"
    print(f"plain matrix multiply {side} @ {side}, same threads and dtype: {gemm['gflops']:.0f} GFLOP/s")
    print()
    extra = " peak CUDA MiB |" if args.device.startswith("cuda") else ""
    print(
        f"| N | method | median s | time / sdpa | GFLOP/s | runs | RSS after inputs MiB | peak RSS MiB |{extra} "
        "full fp32 score matrix GiB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if extra else "") + "---:|")
    sdpa = {r["n"]: statistics.median(r["times"]) for r in rows if r["method"] == "sdpa" and "error" not in r}
    for r in rows:
        full = r["n"] ** 2 * args.heads * 4 / 2**30
        if "error" in r:
            print(
                f"| {r['n']:,} | {r['method']} | error: {' '.join(r['error'])} | | | | | |"
                + (" |" if extra else "")
                + f" {full:.3g} |"
            )
            continue
        cuda_col = f" {r['peak_cuda_mib']:.0f} |" if extra else ""
        seconds = statistics.median(r["times"])
        ratio = f"{seconds / sdpa[r['n']]:.2f}x" if r["n"] in sdpa else "-"
        rate = 4 * r["n"] ** 2 * args.dim * args.heads / seconds / 1e9
        print(
            f"| {r['n']:,} | {r['method']} | {seconds:.4g} | {ratio} | {rate:.0f} | {len(r['times'])} | "
            f"{r['rss_inputs_mib']:.0f} | {r['peak_rss_mib']:.0f} |{cuda_col} {full:.3g} |"
        )


if __name__ == "__main__":
    main()
