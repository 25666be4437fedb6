"""The project's set-up files agree with each other."""

import re
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name where they differ


def _pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return [Requirement(line) for line in lines]


def _conda_specs():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs, pip_lines = {}, []
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            pip_lines += entry["pip"]
            continue
        name, spec = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", entry).groups()
        specs[name.lower()] = spec.replace(" ", "")
    return env, specs, pip_lines


def _pip_specs(pip_lines):
    """Requirements in environment.yml's pip section (those conda-forge does not carry), by name."""
    requirements = [Requirement(line) for line in pip_lines if not line.startswith("-")]
    return {r.name.lower(): str(r.specifier).replace(" ", "") for r in requirements}


def test_environment_yml_matches_pyproject():
    env, specs, pip_lines = _conda_specs()
    assert env["channels"] == ["conda-forge"]
    pip_specs = _pip_specs(pip_lines)
    for requirement in _pyproject_requirements():
        conda_name = CONDA_NAMES.get(requirement.name, requirement.name).lower()
        if requirement.name.lower() in pip_specs:
            assert pip_specs[requirement.name.lower()] == str(requirement.specifier).replace(" ", "")
            continue
        assert conda_name in specs, f"{requirement.name} is in pyproject.toml but not in environment.yml"
        assert specs[conda_name] == str(requirement.specifier).replace(" ", "") or set(
            specs[conda_name].split(",")
        ) == set(str(requirement.specifier).split(",")), f"{conda_name}: {specs[conda_name]} vs {requirement.specifier}"
    pypi_names = {CONDA_NAMES.get(r.name, r.name).lower() for r in _pyproject_requirements()}
    assert set(specs) - pypi_names == {"python", "pip"}, "environment.yml lists packages pyproject.toml lacks"
    assert set(pip_specs) <= pypi_names, "environment.yml's pip section lists packages pyproject.toml lacks"
    assert any(line.replace("-e ", "--editable ").strip() == "--editable ." for line in pip_lines)


def test_ci_runs_the_readme_commands():
    """The README's two commands are what set-up and CI use; CI installs only Chromium beside them."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^\s*(python3 course\.py \w+)\s*$", readme, flags=re.M)
    assert "python3 course.py lab" in commands and "python3 course.py test" in commands
    assert re.search(r"^python3 course\.py test$", ci, flags=re.M)
    assert "apt-get install" in ci and "chromium" in ci


def test_course_py_needs_only_the_standard_library():
    source = (ROOT / "course.py").read_text()
    imported = set(re.findall(r"^(?:from|import) (\w+)", source, flags=re.M))
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    out = subprocess.run([sys.executable, str(ROOT / "course.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "course.py lab" in out.stdout and "course.py test" in out.stdout
    out = subprocess.run([sys.executable, str(ROOT / "course.py"), "labb"], capture_output=True, text=True)
    assert out.returncode != 0 and "unknown command 'labb'" in out.stderr


def test_make_targets_call_course_py():
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "lab", "test"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "course.py lab" in out.stdout and "course.py test" in out.stdout
