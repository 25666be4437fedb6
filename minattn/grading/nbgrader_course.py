"""Set up an nbgrader course directory from the solution notebooks: one assignment per lesson.

    minattn-nbgrader-course COURSE_DIR [--solutions solutions/] [--lesson 05-windows-and-shifts ...]

writes ``COURSE_DIR/nbgrader_config.py`` and ``COURSE_DIR/source/<lesson>/<lesson>.ipynb``, a copy of
each solution notebook, so that nbgrader's own commands take it from there:

    cd COURSE_DIR
    nbgrader generate_assignment 05-windows-and-shifts   # release/: solutions cleared, checks locked
    nbgrader autograde 05-windows-and-shifts              # submitted/<student>/<lesson>/ -> autograded/
    nbgrader generate_feedback 05-windows-and-shifts      # feedback/: one HTML page per submission
    nbgrader export                                        # grades.csv

The solution notebooks follow nbgrader's conventions: solution regions between ``### BEGIN SOLUTION``
and ``### END SOLUTION``; a check cell is a locked grade cell with points; a written answer is a
manually graded markdown cell with points, its model answer and rubric inside the solution region
(hidden from the release). Under ``nbgrader autograde`` and ``nbgrader validate`` a check that does not
pass raises (see :mod:`minattn.grading.check`), so nbgrader gives its cell 0 points and shows the
feedback in its report.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

#: The course's nbgrader configuration, written into the course directory.
CONFIG = """\
# nbgrader configuration for the minattn course (written by minattn-nbgrader-course).
c = get_config()
c.CourseDirectory.course_id = "minattn"
# Seconds a cell may run when nbgrader executes a notebook; the longest lesson cells train small models.
c.Execute.timeout = 600
# nbgrader's own stubs. A top-level answer region becomes `raise NotImplementedError()` too, so in the
# released notebook Run All stops at the first unanswered exercise (the course's exercises/ folder
# keeps top-level stubs runnable instead).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
"""


def make_course(root, solutions="solutions", lessons=None) -> list[str]:
    """Write the config and one ``source/<lesson>/<lesson>.ipynb`` per solution notebook; return the lessons.

    ``lessons`` (names without ``.ipynb``) limits the copy to those; an unknown name raises ``ValueError``.
    """
    root, solutions = Path(root), Path(solutions)
    available = {p.stem: p for p in sorted(solutions.glob("*.ipynb"))}
    if not available:
        raise ValueError(f"{solutions}: no solution notebooks (*.ipynb) there")
    chosen = list(available) if not lessons else list(lessons)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise ValueError(f"no solution notebook for {', '.join(unknown)}; known lessons: {', '.join(available)}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG, encoding="utf-8")
    for name in chosen:
        folder = root / "source" / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(available[name], folder / f"{name}.ipynb")
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="minattn-nbgrader-course",
        description="Set up an nbgrader course directory: one assignment per lesson, from solutions/.",
    )
    parser.add_argument("root", help="the course directory to create or update")
    parser.add_argument("--solutions", default="solutions", help="folder of solution notebooks (default: solutions)")
    parser.add_argument("--lesson", action="append", help="only this lesson (repeatable), e.g. 05-windows-and-shifts")
    args = parser.parse_args(argv)
    try:
        lessons = make_course(args.root, args.solutions, args.lesson)
    except ValueError as exc:
        print(f"minattn-nbgrader-course: {exc}", file=sys.stderr)
        return 2
    print(f"{len(lessons)} assignment(s) in {Path(args.root) / 'source'}: {', '.join(lessons)}")
    print(f"next: cd {args.root} && nbgrader generate_assignment {lessons[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
