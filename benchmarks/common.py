"""Shared helpers for the benchmark scripts: timing, machine description, tables."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Callable

import torch


def describe_machine(device: torch.device) -> str:
    """One line naming the device, the CPU count and the versions."""
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}"
    else:
        where = f"CPU {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    return f"{where}; Python {platform.python_version()}; torch {torch.__version__}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 1) -> tuple[float, float]:
    """Median and spread (max - min) of ``repeats`` timed calls, in seconds, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times) - min(times)


def inference(module: Callable, x: torch.Tensor) -> Callable[[], None]:
    """A call that runs ``module(x)`` without gradients: what an inference timing times."""

    def run():
        with torch.no_grad():
            module(x)

    return run


def training_step(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A call that runs forward and backward of ``module(x)`` (a mean-square loss), from cleared gradients."""

    def run():
        module.zero_grad(set_to_none=True)
        module(x).float().square().mean().backward()

    return run


def fmt_ms(seconds: float, spread: float) -> str:
    return f"{seconds * 1e3:.1f} ± {spread * 1e3 / 2:.1f} ms"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def benchmark_arguments(doc: str, repeats: int = 5, extra: tuple = ()) -> argparse.Namespace:
    """The options every timing script shares (device, dtype, threads, repeats, --quick); sets the threads.

    ``extra``: a script's own options, as ``(names, keyword arguments)`` pairs for ``add_argument``.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    for names, options in extra:
        parser.add_argument(*names, **options)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args
