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


def test_environment_yml_matches_pyproject():
    env, specs, pip_lines = _conda_specs()
    assert env["channels"] == ["conda-forge"]
    for requirement in _pyproject_requirements():
        conda_name = CONDA_NAMES.get(requirement.name, requirement.name).lower()
        assert conda_name in specs, f"{requirement.name} is in pyproject.toml but not in environment.yml"
        assert specs[conda_name] == str(requirement.specifier).replace(" ", "") or set(
            specs[conda_name].split(",")
        ) == set(str(requirement.specifier).split(",")), f"{conda_name}: {specs[conda_name]} vs {requirement.specifier}"
    pypi_names = {CONDA_NAMES.get(r.name, r.name).lower() for r in _pyproject_requirements()}
    assert set(specs) - pypi_names == {"python", "pip"}, "environment.yml lists packages pyproject.toml lacks"
    assert any(line.replace("-e ", "--editable ").strip() == "--editable ." for line in pip_lines)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^\s*(make \w+)\s*$", readme, flags=re.M)
    assert "make lab" in commands and "make test" in commands
    assert re.search(r"^make test$", ci, flags=re.M)


def test_make_targets_exist():
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "lab", "test"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "jupyter lab" in out.stdout and "pytest" in out.stdout
