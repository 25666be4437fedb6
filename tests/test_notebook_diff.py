"""Lessons are reviewable as text: nbdime's ``nbdiff``, and ``git diff`` through the repository's .gitattributes."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbdime import nbdiffapp
from nbdime.__main__ import main_dispatch as nbdime_command
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def write_lesson(path: Path, value: int) -> None:
    """A small lesson whose one code cell sets ``scale`` to ``value`` and shows its output."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# Scaling\n\nWhy divide by sqrt(d_k)?", id="intro"),
        new_code_cell(
            f"d_k = 64\nscale = {value}\nprint(scale)",
            id="scale",
            execution_count=1,
            outputs=[new_output("stream", name="stdout", text=f"{value}\n")],
        ),
    ]
    nbformat.write(nb, path)


def test_nbdiff_shows_a_changed_source_line_as_text(tmp_path, monkeypatch, capsys):
    write_lesson(tmp_path / "before.ipynb", 8)
    write_lesson(tmp_path / "after.ipynb", 1)
    monkeypatch.chdir(tmp_path)
    assert nbdiffapp.main(["--no-color", "before.ipynb", "after.ipynb"]) == 0  # what the `nbdiff` command runs
    out = capsys.readouterr().out
    assert "## modified /cells/1/source:" in out, out
    assert re.search(r"^-scale = 8$", out, re.MULTILINE) and re.search(r"^\+scale = 1$", out, re.MULTILINE), out
    assert re.search(r"^ d_k = 64$", out, re.MULTILINE), out  # an unchanged line is context, not a change
    assert "/cells/0" not in out, out  # the markdown cell did not change
    assert '"source"' not in out, out  # cells, not JSON


def test_git_diff_of_a_notebook_goes_through_nbdime(tmp_path, monkeypatch, capsys):
    """What README's Contributing says: enable nbdime once in the clone, then `git diff` shows cells."""
    # As in an activated environment: git finds nbdime's drivers on PATH. No outer repository leaks in.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in [name for name in os.environ if name.startswith("GIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def git(*arguments):
        return subprocess.run(["git", *arguments], capture_output=True, text=True, check=True)

    git("-c", "init.defaultBranch=main", "init", "--quiet")
    shutil.copyfile(ROOT / ".gitattributes", tmp_path / ".gitattributes")
    assert nbdime_command(["config-git", "--enable"]) == 0  # `nbdime config-git --enable`, in this clone only
    capsys.readouterr()
    # The committed .gitattributes already holds what nbdime would add, so enabling leaves it unchanged.
    assert (tmp_path / ".gitattributes").read_text() == (ROOT / ".gitattributes").read_text()
    assert git("check-attr", "diff", "merge", "--", "lesson.ipynb").stdout.split() == [
        "lesson.ipynb:", "diff:", "jupyternotebook", "lesson.ipynb:", "merge:", "jupyternotebook",
    ]  # fmt: skip

    write_lesson(tmp_path / "lesson.ipynb", 8)
    git("add", "lesson.ipynb")
    write_lesson(tmp_path / "lesson.ipynb", 1)
    out = ANSI.sub("", git("diff").stdout)
    assert "## modified /cells/1/source:" in out, out
    assert re.search(r"^-scale = 8$", out, re.MULTILINE) and re.search(r"^\+scale = 1$", out, re.MULTILINE), out
    assert '"source"' not in out, out
    raw = git("diff", "--no-ext-diff").stdout  # the plain JSON diff stays one flag away
    assert re.search(r'^-\s*"scale = 8\\n",$', raw, re.MULTILINE), raw
