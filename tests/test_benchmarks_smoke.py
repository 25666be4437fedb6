"""The benchmark scripts still run (tiny sizes). Timings are read by people from the results table, not asserted."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script, args, expect",
    [
        ("attention_speed.py", ["--quick", "--repeats", "1"], "minattn.attention"),
        ("call_overhead.py", ["--quick", "--repeats", "1"], "minattn.attention"),
        ("swin_stage.py", ["--quick"], "MONAI BasicLayer"),
        ("swin_shortcuts.py", ["--quick", "--repeats", "1"], "no real queries"),
        ("efficient_attention.py", ["--quick"], "plain matrix multiply"),
        ("equivalences.py", [], "from_monai BasicLayer"),
        ("flex_window.py", ["--quick"], "minattn flex"),
        ("segmentation_step.py", ["--crop", "32", "32", "64", "--batch", "1", "--repeats", "1"], "minattn SwinUNETR"),
    ],
)
def test_benchmark_runs(script, args, expect):
    out = subprocess.run(
        [sys.executable, script, *args], cwd=BENCHMARKS, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "|---" in out.stdout and expect in out.stdout
