"""The outcome of one check: a status, plain-text feedback, and a coloured panel for Jupyter.

A :class:`CheckResult` is what :func:`minattn.grading.check` returns. Shown as the last expression of a
notebook cell it renders as a green, red, orange or grey panel; printed, it is
plain text. Everything the learner's code produced (error messages, values)
is HTML-escaped before it reaches the panel.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

STATUSES = ("passed", "failed", "error", "timeout", "not attempted")

# (border colour, background, symbol) per status.
_STYLE = {
    "passed": ("#1a7f37", "#e9f6ec", "\u2714"),
    "failed": ("#b42318", "#fdeceb", "\u2718"),
    "error": ("#b42318", "#fdeceb", "\u26a0"),
    "timeout": ("#b54708", "#fff4e5", "\u23f1"),
    "not attempted": ("#5f6368", "#f1f3f4", "\u25cb"),
}


@dataclass(frozen=True)
class CheckResult:
    """What a check found.

    Attributes:
        name: what was checked (a reference function's or an answer's name).
        status: one of ``"passed"``, ``"failed"``, ``"error"`` (the learner's
            code raised), ``"timeout"`` (it did not finish in time) or
            ``"not attempted"`` (nothing written yet).
        feedback: plain text for the learner: what went wrong, on which input,
            the likely bug and a hint.
        case: label of the case the feedback is about, if any.
        diagnoses: short keys of the recognised bugs (e.g. ``"wrong_axis"``),
            for instructors and tests.
    """

    name: str
    status: str
    feedback: str
    case: str | None = None
    diagnoses: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}; received {self.status!r}")

    @property
    def passed(self) -> bool:
        """True only for status ``"passed"``."""
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"[{self.status.upper()}] {self.name}\n{self.feedback}"

    def __repr__(self) -> str:
        first_line = self.feedback.splitlines()[0] if self.feedback else ""
        return f"CheckResult(name={self.name!r}, status={self.status!r}, feedback={first_line!r}...)"

    def _repr_html_(self) -> str:
        colour, background, symbol = _STYLE[self.status]
        title = f"{symbol} {html.escape(self.name)}: {html.escape(self.status)}"
        body = html.escape(self.feedback)
        return (
            f'<div class="minattn-check minattn-check-{self.status.replace(" ", "-")}" '
            f'style="border:1px solid {colour};border-left:8px solid {colour};background:{background};'
            'padding:8px 12px;margin:6px 0;border-radius:4px;color:#1f1f1f;">'
            f'<div style="font-weight:bold;color:{colour};font-family:sans-serif;">{title}</div>'
            '<pre style="white-space:pre-wrap;margin:6px 0 0 0;background:transparent;'
            f'font-size:90%;color:#1f1f1f;">{body}</pre></div>'
        )
