"""A notebook opened in a kernel without minattn says, in its first code cell, how to fix that."""

import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("course", "solutions", "exercises")
NOTEBOOKS = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("[0-9][0-9]-*.ipynb"))


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A Python with nothing installed: a learner's kernel that is not the course's environment."""
    folder = tmp_path_factory.mktemp("bare")
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    assert subprocess.run([python, "-c", "import minattn"], capture_output=True, cwd=folder).returncode != 0
    return python


def first_code_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(cell.source for cell in nb.cells if cell.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[f"{p.parent.name}/{p.stem}" for p in NOTEBOOKS])
def test_first_cell_explains_a_kernel_without_minattn(bare_python, path):
    run = subprocess.run([bare_python, "-c", first_code_cell(path)], capture_output=True, text=True, cwd=path.parent)
    said = run.stdout + run.stderr
    assert "python3 course.py lab" in said and '%pip install -e "..[course]"' in said, said
    assert str(bare_python) in said  # names the Python the kernel runs, so the learner sees which one is wrong
    if path.stem.startswith("00") and path.parent.name == "course":
        assert run.returncode == 0 and "cannot import minattn" in run.stdout  # lesson 00 reports, never raises
    else:
        assert run.returncode != 0 and "ModuleNotFoundError: this notebook's kernel runs" in run.stderr


GUARDED = [p for p in NOTEBOOKS if not (p.stem.startswith("00") and p.parent.name == "course")]


def test_the_check_is_silent_when_minattn_is_there():
    for path in GUARDED:
        run = subprocess.run(
            [sys.executable, "-c", first_code_cell(path)], capture_output=True, text=True, cwd=path.parent
        )
        assert run.returncode == 0 and run.stdout == "" and run.stderr == "", f"{path}: {run.stderr}"


def test_the_package_without_torch_says_what_to_do():
    """`import minattn` works without torch (so the doctor can run); using it names the fix."""
    code = (
        "import sys\nsys.modules['torch'] = None\nimport minattn\n"
        "try:\n    minattn.softmax\nexcept ImportError as error:\n    print(error)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "cannot import torch" in run.stdout and "-m minattn.doctor" in run.stdout
    assert "python3 course.py lab" in run.stdout
