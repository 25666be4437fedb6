"""minattn.doctor: the environment report, here and in environments with pieces missing."""

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

import pytest
import torch
from packaging.requirements import Requirement

from minattn import doctor

ROOT = Path(__file__).resolve().parents[1]
DOCTOR_PATH = ROOT / "minattn" / "doctor.py"

# Each script blocks some modules the way a missing package looks to Python
# (None in sys.modules makes `import x` raise ImportError), then runs the doctor.
_BY_MODULE = 'import runpy, sys\n{block}\nrunpy.run_module("minattn.doctor", run_name="__main__")\n'
_BY_PATH = 'import runpy, sys\n{block}\nrunpy.run_path({path!r}, run_name="__main__")\n'
SCRIPTS = {
    "no_data_packages": _BY_MODULE.format(block='sys.modules["nilearn"] = None\nsys.modules["pydicom"] = None'),
    # As `python -m minattn.doctor`: the package must import without torch for the doctor to report.
    "no_torch": _BY_MODULE.format(block='sys.modules["torch"] = None'),
    # By path, as `python3 course.py doctor` runs it, where even minattn may be missing.
    "no_torch_by_path": _BY_PATH.format(block='sys.modules["torch"] = None', path=str(DOCTOR_PATH)),
    "no_ipywidgets": _BY_MODULE.format(block='sys.modules["ipywidgets"] = None'),
}


@pytest.fixture(scope="module")
def doctor_runs():
    """Start the three doctor subprocesses at once (each imports torch, monai, ...), collect them lazily."""
    procs = {
        key: subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        for key, script in SCRIPTS.items()
    }
    results = {}

    def get(key):
        if key not in results:
            try:
                out, err = procs[key].communicate(timeout=180)
            except subprocess.TimeoutExpired:
                procs[key].kill()
                raise
            results[key] = (procs[key].returncode, out, err)
        return results[key]

    yield get
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _problem(out, name):
    """The PROBLEM line whose check is ``name``, and the fix line under it ("" if none)."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("PROBLEM") and line[9:].startswith(name):
            after = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return line, (after if after.startswith("fix:") else "")
    raise AssertionError(f"no PROBLEM line for {name!r} in:\n{out}")


def _no_traceback(out, err):
    assert "Traceback" not in out, out
    assert "Traceback" not in err, err


# --------------------------------------------------------------------------- the real environment


def test_real_environment_is_ready(capsys):
    assert doctor.main([]) == 0
    out = capsys.readouterr().out
    assert "PROBLEM" not in out
    assert out.rstrip().endswith("ready for the course")
    assert re.search(r"^ok +Python +3\.\d+", out, re.M)
    assert sys.executable in out
    assert re.search(rf"^ok +PyTorch +{re.escape(torch.__version__)}", out, re.M)
    for requirements in doctor.REQUIRED.values():
        for line in requirements:
            name = Requirement(line).name
            version = importlib.metadata.version(name)
            assert re.search(rf"^ok +{re.escape(name)} +{re.escape(version)} ", out, re.M), (name, out)
    assert re.search(r"^ok +widgets front end +jupyterlab-manager \d+\.\d+", out, re.M)
    assert "(95, 117, 99)" in out
    assert "(128, 128)" in out


def test_json_output(capsys):
    assert doctor.main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name", "ok", "required", "detail", "fix"} <= set(rows[0])
    assert any(row["name"] == "MNI152 template" and row["ok"] for row in rows)


def test_required_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def normalised(lines):
        return sorted((Requirement(x).name.lower(), str(Requirement(x).specifier), str(Requirement(x).marker))
                      for x in lines)

    assert set(doctor.REQUIRED) == {"core", "course"}
    assert normalised(doctor.REQUIRED["core"]) == normalised(project["dependencies"])
    assert normalised(doctor.REQUIRED["course"]) == normalised(project["optional-dependencies"]["course"])


def test_entry_point_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["minattn-doctor"] == "minattn.doctor:main"


# --------------------------------------------------------------------------- single checks


def test_old_python_is_a_problem():
    (check,) = doctor.check_python((3, 9, 18), "/usr/bin/python3.9")
    assert check.problem and "3.9.18" in check.detail and "3.10" in check.fix
    (check,) = doctor.check_python((3, 12, 0), "/x/python")
    assert check.ok


def test_package_version_and_absence():
    (low,) = doctor.check_packages({"core": ["numpy>=999"]})
    assert low.problem and importlib.metadata.version("numpy") in low.detail
    assert 'pip install "numpy>=999"' in low.fix and sys.executable in low.fix
    (absent,) = doctor.check_packages({"course": ["no-such-package-minattn-doctor>=1"]})
    assert absent.problem and "not installed" in absent.detail
    assert 'install "no-such-package-minattn-doctor>=1"' in absent.fix


def test_optional_tools_are_never_problems():
    checks = doctor.check_optional_tools(["pytest", "no-such-tool-minattn-doctor"])
    assert [c.required for c in checks] == [False, False]
    assert checks[0].ok and not checks[1].ok
    assert all("optional: needed only to run the tests" in c.detail for c in checks)
    assert [c.status for c in checks] == ["info", "info"]


@pytest.mark.parametrize("empty", [False, True], ids=["no-dirs", "empty-dir"])
def test_frontend_missing(tmp_path, empty):
    (check,) = doctor.check_widgets_frontend([tmp_path] if empty else [])
    assert check.problem
    assert "VBox(children=...)" in check.detail
    assert 'pip install "jupyterlab_widgets>=3"' in check.fix and "restart JupyterLab" in check.fix


def _fake_extension(directory, version):
    ext = directory / "@jupyter-widgets" / "jupyterlab-manager"
    ext.mkdir(parents=True)
    (ext / "package.json").write_text(json.dumps({"name": "@jupyter-widgets/jupyterlab-manager", "version": version}))


def test_frontend_major_mismatch(tmp_path):
    _fake_extension(tmp_path, "3.0.0")
    assert importlib.metadata.version("ipywidgets").startswith("8.")
    (check,) = doctor.check_widgets_frontend([tmp_path])
    assert check.problem
    assert "3.0.0" in check.detail and "does not match ipywidgets 8" in check.detail
    assert "jupyterlab_widgets>=3" in check.fix


def test_frontend_first_copy_wins(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _fake_extension(first, "5.0.9")
    _fake_extension(second, "3.0.0")
    (check,) = doctor.check_widgets_frontend([first, second], ipywidgets_version="8.1.0")
    assert check.ok and "5.0.9" in check.detail and str(first) in check.detail
    (check,) = doctor.check_widgets_frontend([second, first], ipywidgets_version="8.1.0")
    assert check.problem
    (check,) = doctor.check_widgets_frontend([second], ipywidgets_version="7.8.5")
    assert check.ok


def test_torch_cpu_build(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    (check,) = doctor.check_torch()
    assert check.ok and check.required
    assert "CPU build" in check.detail and "GPU is optional" in check.detail
    assert "device: cpu" in check.detail


def test_torch_cuda_build_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    (check,) = doctor.check_torch()
    assert check.ok
    assert "CUDA 12.4 build" in check.detail and "no GPU visible" in check.detail


def test_torch_gpu_found(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Imaginary GPU 9000")
    (check,) = doctor.check_torch()
    assert check.ok and "GPU Imaginary GPU 9000" in check.detail


def test_unexpected_exception_becomes_a_line(monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor, "_find_labextension", boom)
    monkeypatch.setattr(doctor, "check_data", boom)  # also keeps this run quick
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    line, fix = _problem(out, "widgets front end")
    assert "could not check widgets front end: RuntimeError: boom" in line and fix
    line, _ = _problem(out, "course data")
    assert "RuntimeError: boom" in line
    assert "PyTorch" in out and "2 problem(s)" in out


# --------------------------------------------------------------------------- broken environments


def test_without_nilearn_and_pydicom(doctor_runs):
    rc, out, err = doctor_runs("no_data_packages")
    _no_traceback(out, err)
    assert rc == 1, out + err
    for name, requirement in (("nilearn", "nilearn>=0.10"), ("pydicom", "pydicom>=2.4")):
        line, fix = _problem(out, name)
        assert "import fails: ModuleNotFoundError" in line
        assert f'"{requirement}"' in fix
    for name, carrier in (("MNI152 template", "nilearn"), ("CT slice", "pydicom")):
        line, fix = _problem(out, name)
        assert "ModuleNotFoundError" in line
        assert f"the {carrier} line above" in fix and "nothing is downloaded" in fix
    assert re.search(r"^ok +PyTorch", out, re.M)


@pytest.mark.parametrize("run", ["no_torch", "no_torch_by_path"])
def test_without_torch(doctor_runs, run):
    rc, out, err = doctor_runs(run)
    _no_traceback(out, err)
    assert rc == 1, out + err
    line, fix = _problem(out, "PyTorch")
    assert "import torch fails" in line or "not installed" in line
    assert "pip install torch" in fix and "torch==2.13.0" in fix
    _problem(out, "course data")
    line, fix = _problem(out, "monai")
    assert "monai needs torch: fix the torch line first" in fix
    line, fix = _problem(out, "torch")
    assert "see the PyTorch line above" in fix
    assert re.search(r"^ok +numpy", out, re.M)


def test_without_ipywidgets(doctor_runs):
    rc, out, err = doctor_runs("no_ipywidgets")
    _no_traceback(out, err)
    assert rc == 1, out + err
    line, fix = _problem(out, "ipywidgets")
    assert "import fails: ModuleNotFoundError" in line
    assert 'pip install --force-reinstall --no-deps "ipywidgets>=8.0"' in fix
    assert "1 problem(s)" in out
