"""Is this Python ready for the course? ``python -m minattn.doctor`` prints a report.

One line per check (``ok``, ``PROBLEM`` or ``info``), and under each problem one
line saying what to do. Exit status 0 when everything required is there, 1
otherwise. The doctor never raises: whatever is missing or broken becomes a
line of the report.

Only the standard library is imported at module level, because the doctor has
to run where torch or anything else is missing; it also runs by path
(``python minattn/doctor.py``), so there are no relative imports.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import re
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

__all__ = [
    "OPTIONAL_TOOLS",
    "REQUIRED",
    "Check",
    "check_data",
    "check_optional_tools",
    "check_packages",
    "check_python",
    "check_torch",
    "check_widgets_frontend",
    "format_report",
    "main",
    "run_checks",
]

# Must match pyproject.toml: `dependencies` (core) and the `course` extra
# (tests/test_doctor.py compares them).
REQUIRED: dict[str, list[str]] = {
    "core": ["torch>=2.1", "numpy>=1.24", "einops>=0.7"],
    "course": [
        "jupyterlab>=4.0",
        "ipywidgets>=8.0",
        "matplotlib>=3.7",
        "nilearn>=0.10",
        "pydicom>=2.4",
        "tqdm>=4.60",
        "monai==1.6.1",
    ],
}

# Only the test suite needs these; missing ones are reported, never a problem.
OPTIONAL_TOOLS: list[str] = ["pytest", "nbval", "playwright"]


MIN_PYTHON = (3, 10)
SETUP_TORCH = "torch==2.13.0"  # the CPU build course.py installs when no torch is present
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
# ipywidgets major -> the jupyterlab-manager major that speaks its protocol.
WIDGETS_PAIRS = {8: 5, 7: 3}

_UNEXPECTED_FIX = "unexpected: please report this line (the rest of the report is still valid)"
_RESTART = "then restart JupyterLab and reload the browser tab"
_SETUP = "`python3 course.py setup` installs everything"


@dataclass
class Check:
    """One line of the report; ``fix`` says what to do when ``ok`` is False."""

    name: str
    ok: bool
    required: bool
    detail: str
    fix: str = ""

    @property
    def status(self) -> str:
        if not self.required:
            return "info"
        return "ok" if self.ok else "PROBLEM"

    @property
    def problem(self) -> bool:
        return self.required and not self.ok


# --------------------------------------------------------------------------- helpers


def _python() -> str:
    """This interpreter, quoted if needed, for copy-pasteable fix lines."""
    exe = sys.executable or "python"
    return f'"{exe}"' if " " in exe else exe


def _pip(*requirements: str) -> str:
    return f"{_python()} -m pip install " + " ".join(f'"{r}"' for r in requirements)


def _describe(exc: BaseException, limit: int = 100) -> str:
    """``ExcType: first line of the message``, short enough for one report line."""
    lines = str(exc).strip().splitlines()
    msg = lines[0] if lines else ""
    if len(msg) > limit:
        msg = msg[: limit - 3] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _guarded(name: str, check: Callable[..., Iterable[Check]], *args, **kwargs) -> list[Check]:
    """Run one check; an exception it did not expect becomes a report line instead of a traceback."""
    try:
        return list(check(*args, **kwargs))
    except (Exception, SystemExit) as exc:  # SystemExit too: some packages exit on import
        return [Check(name, ok=False, required=True, detail=f"could not check {name}: {_describe(exc)}",
                      fix=_UNEXPECTED_FIX)]


def _import(module: str):
    """Import quietly: deprecation warnings from third-party packages are noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def _imports(module: str) -> bool:
    try:
        _import(module)
    except (Exception, SystemExit):
        return False
    return True


def _reinstall_fix(exc: BaseException, name: str, requirement: str) -> str:
    """What to do when an installed package ``name`` fails: reinstall it, unless what fails is a dependency."""
    dependency = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    top = dependency.split(".")[0] if dependency else None
    if top and top not in (name, name.replace("-", "_")):
        # Reinstalling this package would not help: something it imports is missing.
        ours = {_split_requirement(r)[0] for group in REQUIRED.values() for r in group}
        if top in ours:
            return f"{name} needs {top}: fix the {top} line first"
        # pip installs the missing dependencies of an already-installed requirement.
        return f"{_pip(requirement)}  (installs {top}, which {name} needs; {_SETUP})"
    # --no-deps: a forced reinstall must not swap the torch build for another one.
    return f'{_python()} -m pip install --force-reinstall --no-deps "{requirement}"'


def _installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _split_requirement(requirement: str) -> tuple[str, str]:
    """``"numpy>=1.24"`` -> ``("numpy", ">=1.24")``, without needing ``packaging``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)", requirement)
    if not match:
        raise ValueError(f"cannot read requirement {requirement!r}")
    return match.group(1), match.group(2).strip()


def _satisfies(version: str, spec: str) -> bool | None:
    """True/False when ``packaging`` can judge; None when it is missing or the version is unreadable."""
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion, Version
    except Exception:
        return None
    try:
        # prereleases=True: a nightly torch 2.6.0.dev... does satisfy >=2.1
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return None


def _major(version: str) -> int | None:
    match = re.match(r"\s*(\d+)", version or "")
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------- checks


def check_python(version_info: Sequence[int] | None = None, executable: str | None = None) -> list[Check]:
    """Python version and which interpreter this is (3.10 or newer is needed)."""
    info = tuple(version_info if version_info is not None else sys.version_info[:3])
    exe = executable if executable is not None else (sys.executable or "unknown")
    version = ".".join(str(part) for part in info[:3])
    where = "virtual environment" if sys.prefix != getattr(sys, "base_prefix", sys.prefix) else "no virtual environment"
    detail = f"{version} at {exe} ({where})"
    if info[:2] >= MIN_PYTHON:
        return [Check("Python", ok=True, required=True, detail=detail)]
    need = ".".join(map(str, MIN_PYTHON))
    return [Check("Python", ok=False, required=True, detail=f"{detail}: the course needs {need} or newer",
                  fix=f"install Python {need}+ and run the set-up with it, e.g. python3.11 course.py setup")]


def check_torch() -> list[Check]:
    """PyTorch: version, build (CUDA, ROCm or CPU) and the device it finds."""
    torch_fix = (f"{_python()} -m pip install torch  (the build for this machine, see pytorch.org), "
                 f'or run `python3 course.py setup`, which installs the CPU build "{SETUP_TORCH}"')
    try:
        torch = _import("torch")
    except (Exception, SystemExit) as exc:
        installed = _installed_version("torch")
        what = "not installed in this Python" if installed is None and isinstance(exc, ImportError) \
            else f"import torch fails: {_describe(exc)}"
        return [Check("PyTorch", ok=False, required=True, detail=what, fix=torch_fix)]

    version = getattr(torch, "__version__", "unknown")
    cuda = getattr(torch.version, "cuda", None)
    hip = getattr(torch.version, "hip", None)
    gpu_build = f"ROCm {hip} build" if hip else f"CUDA {cuda} build" if cuda else ""

    mps = getattr(getattr(torch, "backends", None), "mps", None)
    if torch.cuda.is_available():  # ROCm builds report their GPUs through torch.cuda too
        try:
            name = torch.cuda.get_device_name(0)
        except Exception as exc:  # a driver problem should not hide the rest of the line
            name = f"unnamed ({_describe(exc, 60)})"
        detail = f"{version}, {gpu_build or 'GPU build'}, device: GPU {name}"
    elif mps is not None and mps.is_available():
        detail = f"{version}, device: Apple GPU (mps)"
    elif gpu_build:
        detail = (f"{version}, {gpu_build}, device: cpu; no GPU visible, so the course runs on the CPU "
                  "(a GPU is optional; check the driver or CUDA_VISIBLE_DEVICES if you expected one)")
    else:
        detail = f"{version}, device: cpu; CPU build: everything in the course runs, a GPU is optional"
    return [Check("PyTorch", ok=True, required=True, detail=detail)]


def _check_package(requirement: str, group: str) -> list[Check]:
    name, spec = _split_requirement(requirement)
    fix = f"{_pip(requirement)}  ({_SETUP})"
    version = _installed_version(name)
    if name == "torch":  # plain pip may pick another build (CUDA vs CPU): say which to choose
        fix = f"{_pip(requirement)}  (the build for this machine, see pytorch.org; {_SETUP})"
    if version is None:
        fix = "see the PyTorch line above" if name == "torch" else fix
        return [Check(name, ok=False, required=True, detail=f"not installed (needs {requirement}, {group})", fix=fix)]
    module = name.replace("-", "_")
    try:
        _import(module)
    except (Exception, SystemExit) as exc:  # a broken binary can raise anything, not only ImportError
        fix = "see the PyTorch line above" if name == "torch" else _reinstall_fix(exc, name, requirement)
        return [Check(name, ok=False, required=True,
                      detail=f"{version} is installed but its import fails: {_describe(exc)}", fix=fix)]
    verdict = _satisfies(version, spec) if spec else True
    if verdict is False:
        return [Check(name, ok=False, required=True, detail=f"{version}, but the course needs {requirement}", fix=fix)]
    note = "" if verdict else "; version not judged (packaging is not importable)"
    return [Check(name, ok=True, required=True, detail=f"{version} ({group}: {requirement}){note}")]


def check_packages(required: dict[str, list[str]] | None = None) -> list[Check]:
    """Each required package: installed version, whether it meets its requirement, whether it imports."""
    groups = REQUIRED if required is None else required
    checks: list[Check] = []
    for group, requirements in groups.items():
        for requirement in requirements:
            label = re.split(r"[<>=!~;\[\s]", requirement.strip(), maxsplit=1)[0] or requirement
            checks += _guarded(label, _check_package, requirement, group)
    return checks


def check_optional_tools(names: Sequence[str] | None = None) -> list[Check]:
    """The test tools, reported as information only."""
    checks = []
    for name in OPTIONAL_TOOLS if names is None else names:
        version = _installed_version(name)
        shown = version if version is not None else "not installed"
        checks.append(Check(name, ok=version is not None, required=False,
                            detail=f"{shown} (optional: needed only to run the tests)"))
    return checks


def _find_labextension(search_dirs: Sequence[str | os.PathLike]) -> tuple[Path, str] | None:
    """The first ``package.json`` of the widgets extension in ``search_dirs``, and its version.

    JupyterLab takes the first copy along its search path, so the first one
    found here is the one the browser gets.
    """
    for directory in search_dirs:
        package_json = Path(directory) / WIDGETS_EXTENSION / "package.json"
        if package_json.is_file():
            try:
                version = str(json.loads(package_json.read_text(encoding="utf-8")).get("version", "unknown"))
            except (OSError, ValueError) as exc:
                version = f"unreadable ({_describe(exc, 50)})"
            return package_json.parent, version
    return None


def check_widgets_frontend(search_dirs: Sequence[str | os.PathLike] | None = None,
                           ipywidgets_version: str | None = None) -> list[Check]:
    """The JupyterLab extension that draws ipywidgets, and whether its major matches ipywidgets.

    Args:
        search_dirs: the ``labextensions`` directories to search; None asks
            ``jupyter_core.paths.jupyter_path("labextensions")``.
        ipywidgets_version: None reads the installed ipywidgets version.
    """
    name = "widgets front end"
    fix = f'{_pip("jupyterlab_widgets>=3")}, {_RESTART}'
    if search_dirs is None:
        try:
            paths = _import("jupyter_core.paths")
        except (Exception, SystemExit) as exc:
            return [Check(name, ok=False, required=True,
                          detail=f"jupyter_core does not import, so JupyterLab's extensions cannot be found: "
                                 f"{_describe(exc)}",
                          fix=f'{_pip("jupyterlab>=4.0", "jupyterlab_widgets>=3")}  ({_SETUP})')]
        search_dirs = paths.jupyter_path("labextensions")
    search_dirs = list(search_dirs)

    found = _find_labextension(search_dirs)
    if found is None:
        first = f" (first: {search_dirs[0]})" if search_dirs else ""
        return [Check(name, ok=False, required=True,
                      detail=f"{WIDGETS_EXTENSION} not found in {len(search_dirs)} labextensions dir(s){first}; "
                             "explorers would show as text like 'VBox(children=...)' instead of controls",
                      fix=fix)]

    where, ext_version = found
    detail = f"jupyterlab-manager {ext_version} in {where.parent.parent}"
    if ext_version.startswith("unreadable"):
        return [Check(name, ok=False, required=True, detail=detail,
                      fix=fix.replace("install", "install --force-reinstall", 1))]

    widgets = ipywidgets_version if ipywidgets_version is not None else _installed_version("ipywidgets")
    if widgets is None:
        return [Check(name, ok=True, required=True, detail=f"{detail}; ipywidgets not installed, pairing not checked")]
    want = WIDGETS_PAIRS.get(_major(widgets))
    have = _major(ext_version)
    if want is not None and have != want:
        return [Check(name, ok=False, required=True,
                      detail=f"{detail} does not match ipywidgets {widgets} (which needs jupyterlab-manager {want}.x); "
                             "widgets would not display",
                      fix=f'{_pip("ipywidgets>=8.0", "jupyterlab_widgets>=3")}; if the old copy is not in this '
                          f"Python's prefix remove {where}; {_RESTART}")]
    return [Check(name, ok=True, required=True, detail=f"{detail} (matches ipywidgets {widgets})")]


def check_data() -> list[Check]:
    """The lessons' offline data: the MNI152 template (nilearn) and the CT slice (pydicom)."""
    try:
        data = _import("minattn.data")
    except (Exception, SystemExit) as exc:
        missing = getattr(exc, "name", None)
        if missing == "minattn":
            fix = f"{_python()} -m pip install -e .  (in the project folder), or run `python3 course.py setup`"
        else:
            fix = f"install the package named in the error (see the lines above); {_SETUP}"
        return [Check("course data", ok=False, required=True,
                      detail=f"could not import minattn.data: {_describe(exc)}", fix=fix)]

    checks = []
    for label, loader, requirement in (
        ("MNI152 template", "load_mni152", "nilearn>=0.10"),
        ("CT slice", "load_ct_slice", "pydicom>=2.4"),
    ):
        carrier = _split_requirement(requirement)[0]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shape = tuple(getattr(data, loader)().shape)
            checks.append(Check(label, ok=True, required=True,
                                detail=f"{loader}() -> shape {shape}, from the {carrier} wheel, no download"))
        except (Exception, SystemExit) as exc:
            ships = f"the file ships inside {carrier}; nothing is downloaded"
            if _installed_version(carrier) is None:
                fix = f"{_pip(requirement)}  ({ships})"
            elif not _imports(carrier):
                fix = f"fix the {carrier} line above ({ships})"
            else:  # it imports, yet the loader fails: a missing dependency or a damaged installation
                fix = f"{_reinstall_fix(exc, carrier, requirement)}  ({ships})"
            checks.append(Check(label, ok=False, required=True,
                                detail=f"minattn.data.{loader}() failed: {_describe(exc)}", fix=fix))
    return checks


def run_checks(labextension_dirs: Sequence[str | os.PathLike] | None = None) -> list[Check]:
    """Every check, in report order; each is guarded so one failure cannot hide the others."""
    checks: list[Check] = []
    checks += _guarded("Python", check_python)
    checks += _guarded("PyTorch", check_torch)
    checks += _guarded("packages", check_packages)
    checks += _guarded("test tools", check_optional_tools)
    checks += _guarded("widgets front end", check_widgets_frontend, labextension_dirs)
    checks += _guarded("course data", check_data)
    return checks


def format_report(checks: Sequence[Check]) -> str:
    """The report as text: one line per check, a ``fix:`` line under each problem, a summary."""
    width = max([len(c.name) for c in checks] + [10])
    lines = ["minattn doctor: is this Python ready for the course?", ""]
    for check in checks:
        lines.append(f"{check.status:<8} {check.name:<{width}}  {check.detail}")
        if check.problem and check.fix:
            lines.append(f"{'':<8} {'':<{width}}  fix: {check.fix}")
    problems = sum(c.problem for c in checks)
    lines.append("")
    if problems:
        lines.append(f"{problems} problem(s): fix the lines marked PROBLEM above, then restart the kernel/JupyterLab")
    else:
        lines.append("ready for the course")
    return "\n".join(lines)


def _write(text: str) -> None:
    """Print even where the terminal cannot encode a path or device name."""
    try:
        sys.stdout.write(text + "\n")
    except UnicodeEncodeError:
        sys.stdout.write(text.encode("ascii", "backslashreplace").decode("ascii") + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report; return 1 if a required check failed, else 0."""
    parser = argparse.ArgumentParser(prog="minattn-doctor", description="Is this Python ready for the course?")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON instead of a report")
    args = parser.parse_args(argv)
    try:
        checks = run_checks()
        _write(json.dumps([asdict(c) for c in checks], indent=2) if args.json else format_report(checks))
    except Exception as exc:  # nothing above should raise; if it does, still no traceback
        _write(f"PROBLEM  the doctor itself failed: {_describe(exc)}")
        return 1
    return 1 if any(c.problem for c in checks) else 0


if __name__ == "__main__":
    # Run by path, the script's own folder (minattn/) is sys.path[0]; its modules
    # (data, memory, ...) must not shadow top-level packages of the same names.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    sys.exit(main())
