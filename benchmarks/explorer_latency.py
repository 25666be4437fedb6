"""Measure how long each interactive explorer takes to respond to a control change.

    python benchmarks/explorer_latency.py [--repeats 1]

Runs outside Jupyter with matplotlib's inline backend selected, as a notebook
with ``%matplotlib inline`` has it. For each explorer it makes about 20
control changes (a mix of the controls a learner moves: sliders, toggles,
presets, buttons) and times each ``control.value = ...`` from the assignment
to the new PNG being in the widget: recomputing the state, redrawing the
figure and encoding the PNG. Not included: sending the PNG to the browser and
the browser painting it. Prints a Markdown table. Its "CPU" column is the
update's CPU time on the notebook's thread: on a busy machine the wall-clock
time also counts the waits for a free core, the CPU time hardly does.

The MIL and fusion explorers run on untrained models (an update costs the
same as with trained ones); their inputs are made before the build is timed.
The attention-map explorer is not measured: it needs a trained Swin classifier.
``--only NAME ...`` measures only the named explorers.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import matplotlib

matplotlib.use("module://matplotlib_inline.backend_inline")

import torch

from minattn.explore import (
    attention_explorer,
    cost_explorer,
    fusion_explorer,
    heads_explorer,
    hopfield_explorer,
    kernel_regression_explorer,
    mil_explorer,
    patch_explorer,
    receptive_field_explorer,
    relative_bias_explorer,
    window_explorer,
)


class Scenario(NamedTuple):
    make: Callable  # builds the explorer from inputs()
    changes: list  # [(control, value), ...]; value None clicks a button
    inputs: Callable = tuple  # what make() takes, made before the build is timed


@functools.cache
def mil_inputs():
    from minattn.apps.mil import MILModel

    torch.manual_seed(0)
    return ({"plain attention": MILModel("attention"), "gated attention": MILModel("gated")},)


@functools.cache
def fusion_inputs():
    from minattn.apps import fusion

    torch.manual_seed(0)
    return fusion.make_model("cross"), fusion.make_cohort(40, seed=1)


# ~20 changes each, in the order a learner might make them.
SCENARIOS = {
    "attention_explorer": (
        attention_explorer,
        [("temperature", t) for t in (0.5, 0.3, 2.0, 4.0, 1.0)]
        + [("d_k", d) for d in (4, 16, 64, 128, 256, 512, 32, 8)]
        + [("scaled", False), ("temperature", 0.7), ("scaled", True), ("temperature", 1.5)]
        + [("preset", "seed"), ("temperature", 1.0), ("keys", "2 0; 0 2; 1 1")],
    ),
    "patch_explorer": (
        patch_explorer,
        [("slice", s) for s in (10, 20, 30, 40, 50, 60, 70, 80)]
        + [("patch", p) for p in (4, 16, 2, 8)]
        + [
            ("axis", "H"),
            ("slice", 40),
            ("slice", 70),
            ("axis", "W"),
            ("embed_dim", 256),
            ("channels", 4),
            ("fit", "crop"),
            ("slice", 30),
        ],
    ),
    "cost_explorer": (
        cost_explorer,
        [("memory_gib", g) for g in (8, 24, 80)]
        + [("D", 64), ("H", 128), ("W", 128), ("patch", 2), ("patch", 4), ("window", 4), ("window", 16)]
        + [("dtype", "float16"), ("dtype", "bfloat16"), ("heads", 4), ("head_dim", 64)]
        + [
            ("preset", "seed_windows"),
            ("preset", "seed_ct"),
            ("preset", "seed_feature_map"),
            ("memory_gib", 128),
            ("window", 7),
        ],
    ),
    "window_explorer": (
        window_explorer,
        [("token_h", h) for h in (0, 2, 4, 6)]
        + [("token_w", w) for w in (1, 3, 5, 7)]
        + [("shifted", False), ("token_d", 2), ("shifted", True), ("token_d", 0)]
        + [("window_h", 2), ("window_w", 2), ("window_h", 4), ("window_w", 4)]
        + [("grid_w", 12), ("grid_h", 12), ("token_h", 9), ("grid_d", 6)],
    ),
    "receptive_field_explorer": (
        receptive_field_explorer,
        [("layers", n) for n in (1, 2, 3, 4, 5, 6, 8, 10)]
        + [("token_h", h) for h in (2, 5, 11, 14)]
        + [("token_w", w) for w in (0, 15)]
        + [("window_h", 8), ("window_w", 8), ("layers", 2), ("grid_h", 24), ("grid_w", 24), ("layers", 7)],
    ),
    "heads_explorer": (
        heads_explorer,
        [("T_intensity", t) for t in (0.1, 0.5, 2.0)]
        + [("T_texture", t) for t in (0.2, 1.0, 8.0)]
        + [("T_position", t) for t in (0.1, 3.0)]
        + [("query_row", r) for r in (0, 2, 6)]
        + [("query_col", c) for c in (1, 7)]
        + [
            ("window_row", 2),
            ("window_col", 0),
            ("preset", "all_soft"),
            ("preset", "council"),
            ("window", 4),
            ("window", 8),
        ],
    ),
    "relative_bias_explorer": (
        relative_bias_explorer,
        [("query_row", r) for r in (0, 1, 3, 5)]
        + [("query_col", c) for c in (0, 2, 4)]
        + [("shuffle", None), ("use_bias", False), ("shuffle", None), ("use_bias", True)]
        + [("strength", s) for s in (0.5, 2.5, 4.0)]
        + [("kind", "left"), ("kind", "init"), ("kind", "distance"), ("window", 8), ("unshuffle", None), ("window", 6)],
    ),
    "mil_explorer": (
        mil_explorer,
        [("bag", b) for b in (0, 3, 7, 12, 20, 30, 47, 5)]
        + [
            ("truth", False),
            ("pooling", "gated attention"),
            ("bag", 9),
            ("truth", True),
            ("pooling", "plain attention"),
        ]
        + [("bag", b) for b in (1, 2, 40, 41, 42, 43, 44)],
        mil_inputs,
    ),
    "fusion_explorer": (
        fusion_explorer,
        [("query", q) for q in ("age", "sex", "lab", "site")]
        + [("patient", p) for p in (0, 1, 2, 5, 8, 13, 21, 34)]
        + [("query", "age"), ("patient", 3), ("query", "lab"), ("patient", 39), ("query", "sex")]
        + [("patient", p) for p in (10, 20, 30)],
        fusion_inputs,
    ),
    "kernel_regression_explorer": (
        kernel_regression_explorer,
        [("bandwidth", h) for h in (0.3, 0.6, 1.0, 2.0, 4.0, 8.0, 16.0, 1.5)]
        + [("query", x) for x in (5.0, 20.0, 35.0, 50.0, 65.0, 80.0)]
        + [("bandwidth", h) for h in (0.2, 25.0, 3.0)]
        + [("query", x) for x in (10.0, 45.0, 75.0)],
    ),
    "hopfield_explorer": (
        hopfield_explorer,
        [("beta", b) for b in (1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 200.0, 32.0)]
        + [("pattern", p) for p in (0, 10, 40, 63)]
        + [("corruption", "mask"), ("level", 0.3), ("level", 0.6), ("beta", 4.0)]
        + [("corruption", "noise"), ("level", 1.5), ("pattern", 21), ("beta", 32.0)],
    ),
}
SCENARIOS = {name: Scenario(*scenario) for name, scenario in SCENARIOS.items()}


def measure(scenario: Scenario):
    make, changes = scenario.make, scenario.changes
    inputs = scenario.inputs()
    start = time.perf_counter()
    explorer = make(*inputs)
    build = time.perf_counter() - start
    times, cpu = [], []
    full_before = explorer.full_draws
    for name, value in changes:
        start, start_cpu = time.perf_counter(), time.thread_time()
        if value is None:
            explorer.click(name)
        else:
            explorer.controls[name].value = value
        times.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
        if explorer.state["error"] is not None:
            raise RuntimeError(f"{make.__name__}: {name} = {value!r} gave an error: {explorer.state['error']}")
    return build, times, cpu, explorer.full_draws - full_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=1, help="run each scenario this many times (fresh explorer each)"
    )
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="measure only these explorers")
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    for label, scenario in SCENARIOS.items():
        if args.only and label not in args.only:
            continue
        times, cpu, builds, full = [], [], [], 0
        for _ in range(args.repeats):
            build, t, c, f = measure(scenario)
            times += t
            cpu += c
            builds.append(build)
            full += f
        ms = sorted(1e3 * t for t in times)
        q1, med, q3 = statistics.quantiles(ms, n=4) if len(ms) > 1 else (ms[0],) * 3
        cpu_ms = 1e3 * statistics.median(cpu)
        rows.append((label, len(ms), med, q1, q3, ms[0], ms[-1], cpu_ms, full, 1e3 * statistics.median(builds)))
    load_after = os.getloadavg()

    print(f"Command: `{' '.join([os.path.basename(sys.executable), *sys.argv])}`  ")
    print(
        f"Backend: {matplotlib.get_backend()}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"matplotlib {matplotlib.__version__}; {os.cpu_count()} CPUs; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n"
    )
    print(
        "| explorer | changes | median (ms) | IQR (ms) | min - max (ms) | median CPU (ms) | full redraws | build (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, n, med, q1, q3, low, high, cpu_ms, full, build in rows:
        print(
            f"| `{label}` | {n} | {med:.1f} | {q1:.1f} - {q3:.1f} | {low:.1f} - {high:.1f} | {cpu_ms:.1f} | {full} "
            f"| {build:.0f} |"
        )


if __name__ == "__main__":
    main()
