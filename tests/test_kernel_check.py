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


def first_code_cell(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    return next(cell for cell in nb.cells if cell.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[f"{p.parent.name}/{p.stem}" for p in NOTEBOOKS])
def test_first_cell_explains_a_kernel_without_minattn(bare_python, path):
    source = first_code_cell(path).source
    run = subprocess.run([bare_python, "-c", source], capture_output=True, text=True, cwd=path.parent)
    assert run.returncode != 0, "the check stops Run All before the first `import minattn` fails"
    assert run.stderr.startswith("This notebook's kernel runs") and "cannot import minattn" in run.stderr, run.stderr
    assert "python3 course.py lab" in run.stderr and '%pip install -e "..[course]"' in run.stderr, run.stderr
    assert str(bare_python) in run.stderr  # names the Python the kernel runs, so the learner sees which one is wrong


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[f"{p.parent.name}/{p.stem}" for p in NOTEBOOKS])
def test_the_check_is_one_collapsed_line(path):
    cell = first_code_cell(path)
    assert "\n" not in cell.source.strip() and 'find_spec("minattn")' in cell.source
    assert cell.metadata.get("jupyter", {}).get("source_hidden") is True  # JupyterLab shows it folded
    assert "nbval-ignore-output" in cell.metadata.get("tags", [])


def test_the_check_is_silent_when_minattn_is_there():
    for path in NOTEBOOKS:
        source = first_code_cell(path).source
        run = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, cwd=path.parent)
        assert run.returncode == 0 and run.stdout == "" and run.stderr == "", f"{path}: {run.stderr}"


def test_lesson_00_runs_the_doctor_right_after_the_check():
    nb = nbformat.read(ROOT / "course" / "00-start-here.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert "find_spec" in code[0].source and "minattn.doctor" in code[1].source


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
