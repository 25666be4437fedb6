"""Run time of every notebook, executed top to bottom in a fresh kernel (outputs are not saved).

    python benchmarks/notebook_times.py [course solutions exercises]

Prints a Markdown table. Budgets: each lesson under 60 s on a 2-core CPU,
all lessons under 6 minutes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from common import markdown_table

ROOT = Path(__file__).resolve().parents[1]


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=["course", "solutions", "exercises"])
    args = parser.parse_args()
    rows = []
    for folder in args.folders:
        total = 0.0
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            seconds = run(path)
            total += seconds
            rows.append([f"{folder}/{path.name}", f"{seconds:.1f}"])
        rows.append([f"**{folder}/ in all**", f"**{total:.1f}**"])
    print(markdown_table(["notebook", "seconds"], rows))


if __name__ == "__main__":
    main()
