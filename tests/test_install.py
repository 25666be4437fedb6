"""Each install the project offers works alone: the bare package, and each extra that has console scripts.

Each gets a fresh virtual environment (no system site packages, nothing from the environment running
the tests), ``pip install 'minattn-<version>-py3-none-any.whl[extra]'`` of a wheel built from this tree,
and then every console script of pyproject.toml runs there: with ``--help`` where the install has what
the script needs, and without it the script must stop with one line naming the extra to install.

PyTorch is the heavy part (a wheel of about 190 MB, 900 MB unpacked). The README asks for the PyTorch
build that suits the machine to be installed first, and the test does the same, cheaply: each fresh
environment sees the torch these tests run with, and exactly the distributions torch itself requires,
through a ``.pth`` file naming a folder of links to them. pip then counts torch as installed, as it
would a learner's, and installs everything else the package declares from the package index (CI
machines reach PyPI; pip's cache is used as usual).
"""

import csv
import os
import re
import shutil
import subprocess
import sys
import venv
from importlib.metadata import distribution
from pathlib import Path
from subprocess import PIPE

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SCRIPTS = sorted(PROJECT["scripts"])
#: The console scripts that need the `grading` extra; the others need only the package.
GRADING_SCRIPTS = {"minattn-exercises", "minattn-grade"}
#: What the wheel is built from: the package and the files its metadata names.
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "LICENSE-COURSE.md", "minattn"]
BIN = "Scripts" if os.name == "nt" else "bin"


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_closure(name: str):
    """The distribution ``name`` and every one it requires, transitively, in this environment."""
    found, todo = {}, [name]
    while todo:
        dist = distribution(todo.pop())
        if _key(dist.metadata["Name"]) in found:
            continue
        found[_key(dist.metadata["Name"])] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(found.values())


@pytest.fixture(scope="module")
def torch_shelf(tmp_path_factory):
    """A folder of links to this environment's torch and the distributions it requires (their files and metadata)."""
    shelf = tmp_path_factory.mktemp("torch-shelf")
    for dist in _requirement_closure("torch"):
        tops = {Path(str(file)).parts[0] for file in dist.files or [] if not str(file).startswith("..")}
        for top in tops - {"__pycache__"}:
            source = Path(dist.locate_file(top))
            if source.exists() and not top.endswith(".pth") and not (shelf / top).exists():
                (shelf / top).symlink_to(source, target_is_directory=source.is_dir())
    assert (shelf / "torch").is_dir() and any(shelf.glob("torch-*.dist-info"))
    return shelf


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The project's wheel, built once from a copy of this tree.

    Built with this environment's setuptools, which is quicker; the isolated build from pyproject.toml's
    build requirements, as a learner's install makes it, is the one `course.py setup` runs.
    """
    work = tmp_path_factory.mktemp("build")
    source = work / "minattn-source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    build = ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(work / "dist"), str(source)]
    subprocess.run([sys.executable, "-m", "pip", *build], check=True, cwd=work, env=_clean_env())
    (built,) = (work / "dist").glob("minattn-*.whl")
    return built


def _clean_env(**extra) -> dict:
    """This process's environment without what would point a child at the environment running the tests."""
    leaks = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "JUPYTER_PATH"}
    env = {k: v for k, v in os.environ.items() if k not in leaks}
    env.update(extra)
    return env


def _install(where: Path, wheel: Path, shelf: Path, extra: str | None) -> Path:
    """A fresh virtual environment at ``where`` with ``wheel[extra]`` installed; returns its bin folder."""
    venv.EnvBuilder(system_site_packages=False, symlinks=os.name != "nt", with_pip=False).create(where)
    python = where / BIN / ("python.exe" if os.name == "nt" else "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True, env=_clean_env(),
    ).stdout.strip()  # fmt: skip
    Path(purelib, "preinstalled-torch.pth").write_text(f"{shelf}\n")
    requirement = f"{wheel}[{extra}]" if extra else str(wheel)
    # This pip, run for the new environment (`--python`), so the environment needs no pip of its own.
    command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-compile", requirement]
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=_clean_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Requirement already satisfied: torch" in result.stdout, "pip installed a torch of its own"
    return where / BIN


def _run(bin_dir: Path, script: str, *arguments: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    command = [bin_dir / script, *arguments]
    return subprocess.run(command, check=False, capture_output=True, text=True, cwd=cwd, env=_clean_env(**env))


def _help_of_each(bin_dir: Path, scripts, cwd: Path) -> dict:
    """``SCRIPT --help`` for each script, all at once (each spends its time importing torch); script -> result."""
    env = _clean_env()
    started = {
        s: subprocess.Popen([bin_dir / s, "--help"], stdout=PIPE, stderr=PIPE, text=True, cwd=cwd, env=env)
        for s in scripts
    }
    results = {}
    for script, process in started.items():
        out, err = process.communicate()
        results[script] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


def _assert_usage(result: subprocess.CompletedProcess, script: str) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"usage: {script} "), result.stdout
    assert "Traceback" not in result.stderr, result.stderr


def test_bare_package(tmp_path, wheel, torch_shelf):
    """``pip install minattn``: the other scripts work; the grading scripts name the extra they need."""
    bin_dir = _install(tmp_path / "venv", wheel, torch_shelf, extra=None)
    for script, result in _help_of_each(bin_dir, SCRIPTS, cwd=tmp_path).items():
        if script not in GRADING_SCRIPTS:
            _assert_usage(result, script)
            continue
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr and result.stdout == "", result.stdout + result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"{script} needs nbformat"), line
        assert line.endswith("pip install 'minattn[grading]'"), line


def test_grading_extra(tmp_path, wheel, torch_shelf):
    """``pip install 'minattn[grading]'``: its scripts answer ``--help``, and the grader grades for real."""
    bin_dir = _install(tmp_path / "venv", wheel, torch_shelf, extra="grading")
    for script, result in _help_of_each(bin_dir, sorted(GRADING_SCRIPTS), cwd=tmp_path).items():
        _assert_usage(result, script)

    # One answered exercise graded in a kernel of the new environment: only its own ipykernel can start
    # one (Jupyter's user folders point at empty ones), which `--help` alone would not show.
    (tmp_path / "solutions").mkdir()
    nb = new_notebook(metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}})
    answer = {
        "grade": False,
        "grade_id": "answer",
        "locked": False,
        "schema_version": 3,
        "solution": True,
        "task": False,
    }
    graded = {**answer, "grade": True, "grade_id": "tokens", "locked": True, "points": 1, "solution": False}
    nb.cells = [
        new_code_cell("from minattn.grading import check", id="imports"),
        new_code_cell(
            "tokens = None\n### BEGIN SOLUTION\ntokens = 32 * 64 * 64\n### END SOLUTION",
            id="answer",
            metadata={"nbgrader": answer},
        ),
        new_code_cell('check("tokens_32x64x64", tokens)', id="check", metadata={"nbgrader": graded}),
    ]
    nbformat.write(nb, tmp_path / "solutions" / "01-tiny.ipynb")
    nb.cells[1].source = "tokens = 131_072"
    nbformat.write(nb, tmp_path / "alice-01-tiny.ipynb")
    result = _run(
        bin_dir, "minattn-grade", "alice-01-tiny.ipynb", "--solutions", "solutions", "--out", "grades.csv",
        cwd=tmp_path, JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"), JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {row["exercise"]: row for row in csv.DictReader((tmp_path / "grades.csv").open())}
    assert rows["tokens"]["status"] == "passed" and rows["tokens"]["points"] == "1", rows
