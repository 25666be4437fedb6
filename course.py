#!/usr/bin/env python3
"""Set up the course and run it: the two commands of the README, with nothing but Python 3.10+.

    python3 course.py lab      set up (first time only), then open the course in JupyterLab
    python3 course.py test     set up (first time only), then run every test (what CI runs)
    python3 course.py setup    only set up
    python3 course.py doctor   check the environment and say what to fix

Set-up makes a virtual environment in ``.venv`` and installs the project with
its ``course``, ``grading`` and ``dev`` extras. When the environment has no
PyTorch yet it installs ``torch==2.13.0`` first; set ``MINATTN_TORCH`` to another pip
requirement (for instance the CUDA build PyTorch's install selector gives you)
to choose the build. Arguments after the command go to JupyterLab or pytest:
``python3 course.py test -k softmax``.

Only the standard library is used here: this script runs before anything is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MINATTN_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".minattn-installed"  # newer than pyproject.toml: the project's requirements are installed
DEFAULT_TORCH = "torch==2.13.0"
FIRST_LESSON = "course/00-start-here.ipynb"
LAB_SETTINGS = ROOT / ".jupyter" / "lab" / "settings"  # JupyterLab settings defaults for the course
COMMANDS = ("lab", "test", "setup", "doctor")


def say(message: str) -> None:
    print(f"[course.py] {message}", flush=True)


def run(*command: str | Path) -> None:
    """Run a command; on failure stop with its exit status and the command shown."""
    result = subprocess.run([str(part) for part in command], cwd=ROOT)
    if result.returncode:
        say(f"this step failed (exit {result.returncode}): {' '.join(map(str, command))}")
        sys.exit(result.returncode)


def ensure_python() -> None:
    if sys.version_info < (3, 10):
        sys.exit(f"The course needs Python 3.10 or newer; this is {sys.version.split()[0]} ({sys.executable}).")


def ensure_venv() -> None:
    if PYTHON.exists():
        return
    say(f"creating a virtual environment in {VENV}")
    try:
        venv.EnvBuilder(with_pip=True).create(VENV)
    except (subprocess.CalledProcessError, OSError) as error:
        sys.exit(
            f"Could not create {VENV}: {error}\n"
            "On Debian or Ubuntu the venv module comes separately: `sudo apt install python3-venv`, "
            f"then delete {VENV} and run this command again."
        )


def has_module(name: str) -> bool:
    probe = subprocess.run([str(PYTHON), "-c", f"import {name}"], capture_output=True, cwd=ROOT)
    return probe.returncode == 0


def ensure_installed() -> None:
    ensure_venv()
    if not has_module("torch"):
        torch = os.environ.get("MINATTN_TORCH", DEFAULT_TORCH)
        say(f"installing PyTorch ({torch}); set MINATTN_TORCH to choose another build")
        run(PYTHON, "-m", "pip", "install", "--quiet", *torch.split())
    if not STAMP.exists() or STAMP.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        say("installing minattn with the course, grading and test requirements (first run only)")
        run(PYTHON, "-m", "pip", "install", "--quiet", "--editable", ".[course,grading,dev]")
        STAMP.touch()


def lab_command(arguments: list[str]) -> list[str]:
    """The JupyterLab command line that ``course.py lab`` runs, ``arguments`` appended."""
    # The whole project is the server's root (so the lessons' links to exercises/ work); the first
    # lesson is the page it opens. Given as a file argument instead, it would make course/ the root.
    # The project's settings defaults (LAB_SETTINGS/overrides.json) turn off the first-run news question,
    # whose pop-up would otherwise cover the explorers' readouts in lesson 00; a learner's own settings still win.
    command = [
        str(PYTHON), "-m", "jupyterlab", f"--ServerApp.root_dir={ROOT}", f"--LabApp.default_url=/lab/tree/{FIRST_LESSON}",
        f"--LabApp.app_settings_dir={LAB_SETTINGS}", *arguments,
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in arguments:
        command.append("--allow-root")  # in a container one is often root, which JupyterLab refuses by default
    return command


def lab(arguments: list[str]) -> None:
    command = lab_command(arguments)
    say("opening the course in JupyterLab (stop it with Ctrl+C)")
    raise SystemExit(subprocess.run(command, cwd=ROOT).returncode)


def test(arguments: list[str]) -> None:
    raise SystemExit(subprocess.run([str(PYTHON), "-m", "pytest", *arguments], cwd=ROOT).returncode)


def doctor(arguments: list[str]) -> None:
    # By path, so that it reports even when the environment is too broken to import minattn.
    command = [str(PYTHON if PYTHON.exists() else sys.executable), str(ROOT / "minattn" / "doctor.py"), *arguments]
    raise SystemExit(subprocess.run(command, cwd=ROOT).returncode)


def main(argv: list[str]) -> None:
    ensure_python()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1])
        sys.exit(0 if argv else 2)
    if argv[0] not in COMMANDS:
        sys.exit(f"unknown command {argv[0]!r}; use one of: {', '.join(COMMANDS)}")
    command, arguments = argv[0], argv[1:]
    if command == "doctor":
        doctor(arguments)
    ensure_installed()
    if command == "lab":
        lab(arguments)
    elif command == "test":
        test(arguments)
    else:
        say(f"set up in {VENV}")


if __name__ == "__main__":
    main(sys.argv[1:])
