"""``check``: test a learner's function against the reference, case by case.

For each case the learner's function gets fresh copies of the inputs and runs
under the time left from the check's budget (see :mod:`minattn.grading.runner`).
Its output is compared with the reference's (:mod:`minattn.grading.compare`);
the inputs are compared with their originals to catch in-place changes. All
cases run; the feedback describes the first failure, with the likely bug
(:mod:`minattn.grading.diagnose`) from the first failure where one is
recognised.
"""

from __future__ import annotations

import difflib
import inspect
import time

import torch

from .cases import SPECS, Case, Spec
from .compare import compare, describe
from .diagnose import Diagnosis, _clone, diagnose
from .result import CheckResult
from .runner import call_with_timeout, format_exception, is_placeholder, unaccepted_arguments

NOT_ATTEMPTED = (
    "Not attempted yet: {why}. Replace the `raise NotImplementedError()` placeholder with your code, run that cell, "
    "then run this check again."
)


def known_names() -> tuple[str, ...]:
    """Names that :func:`check` accepts."""
    return tuple(SPECS)


def get_spec(name: str) -> Spec:
    """The spec for ``name``; a ``ValueError`` listing the known names otherwise."""
    if isinstance(name, str) and name in SPECS:
        return SPECS[name]
    close = difflib.get_close_matches(str(name), SPECS, n=1)
    suggestion = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"check() knows no function named {name!r}.{suggestion} Known names: {', '.join(SPECS)}.")


def resolve_device(device) -> torch.device:
    """``device``, or CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check(name: str, fn, timeout: float = 10.0, device=None) -> CheckResult:
    """Check the learner's ``fn`` against the reference function ``name``.

    Args:
        name: a reference function of minattn, e.g. ``"softmax"``,
            ``"window_partition"`` or ``"attention_matrix_bytes"`` (see
            :func:`known_names`).
        fn: the learner's function, with the reference's signature. ``None``,
            or a body that still raises the template's ``NotImplementedError``,
            gives status ``"not attempted"``.
        timeout: seconds for the whole check (all cases together). A function
            still running then is reported as ``"timeout"``; the grader tries to
            stop it and otherwise abandons its daemon thread (it cannot be
            killed; see :mod:`minattn.grading.runner`).
        device: where the inputs live; defaults to ``"cuda"`` when available,
            else ``"cpu"``.

    Returns:
        A :class:`CheckResult`. Every exception of ``fn`` (and of the grader
        itself) is caught and reported there; a ``KeyboardInterrupt`` passes.

    Raises:
        ValueError: for an unknown ``name``. That is the notebook author's
            mistake, not the learner's, so it fails loudly (listing the known
            names) rather than showing up as a learner's failed check.
    """
    spec = get_spec(name)
    if fn is None or fn is Ellipsis:
        return CheckResult(name, "not attempted", NOT_ATTEMPTED.format(why="no function was given (fn is None)"))
    if not callable(fn):
        return CheckResult(
            name,
            "error",
            f"check() needs your function itself, e.g. check({name!r}, {name}); it received a "
            f"{type(fn).__name__} instead. Pass the function without calling it (no parentheses).",
        )
    try:
        return _run(spec, fn, float(timeout), resolve_device(device))
    except Exception as exc:  # noqa: BLE001 - the grader must never break a notebook
        return CheckResult(
            name,
            "error",
            f"The grader itself failed ({type(exc).__name__}: {exc}). This is not a problem with your code; "
            "please tell the course authors.",
        )


# ----------------------------------------------------------------------------- the run


class _Failure:
    def __init__(self, index, case, kind, problem, got=None, expected=None, diagnoses=(), error=None):
        self.index, self.case, self.kind, self.problem = index, case, kind, problem
        self.got, self.expected, self.diagnoses, self.error = got, expected, list(diagnoses), error


def _param_names(spec: Spec) -> list[str]:
    return list(inspect.signature(spec.reference).parameters)


def _describe_inputs(spec: Spec, case: Case) -> str:
    names = _param_names(spec)
    parts = [f"{names[i] if i < len(names) else f'arg{i}'} = {describe(a)}" for i, a in enumerate(case.args)]
    parts += [f"{k} = {describe(v)}" for k, v in case.kwargs.items()]
    return ", ".join(parts)


def _changed_inputs(spec: Spec, before: Case, after_args: tuple, after_kwargs: dict) -> list[str]:
    names = _param_names(spec)
    changed = []
    pairs = [(names[i] if i < len(names) else f"arg{i}", a, b) for i, (a, b) in enumerate(zip(before.args, after_args))]
    pairs += [(k, v, after_kwargs.get(k)) for k, v in before.kwargs.items()]
    for name, original, copy in pairs:
        if isinstance(original, torch.Tensor) and isinstance(copy, torch.Tensor):
            try:
                same = original.shape == copy.shape and bool(
                    (
                        (original == copy) | (original.isnan() & copy.isnan())
                        if original.is_floating_point()
                        else original == copy
                    ).all()
                )
            except Exception:  # noqa: BLE001
                same = False
            if not same:
                changed.append(name)
    return changed


def _bind(fn, case: Case):
    """The case as the learner's function can take it, or the reason it cannot."""
    kwargs = dict(case.kwargs)
    problem = unaccepted_arguments(fn, case.args, kwargs)
    if problem and case.droppable:
        kwargs = {k: v for k, v in kwargs.items() if k not in case.droppable}
        problem = unaccepted_arguments(fn, case.args, kwargs)
    if problem:
        return None, problem
    return Case(case.label, case.args, kwargs, case.droppable, case.tags), None


def _run(spec: Spec, fn, timeout: float, device: torch.device) -> CheckResult:
    cases = spec.make_cases(device)
    total = len(cases)
    deadline = time.monotonic() + timeout
    failures: list[_Failure] = []
    skipped: list[tuple[Case, list[str]]] = []
    passed: list[Case] = []
    calls = 0
    for index, original in enumerate(cases, start=1):
        case, problem = _bind(fn, original)
        if case is None:
            skipped.append((original, problem))
            continue
        expected = spec.reference(*_clone(case.args), **_clone(case.kwargs))
        args, kwargs = _clone(case.args), _clone(case.kwargs)
        remaining = deadline - time.monotonic()
        outcome = call_with_timeout(fn, args, kwargs, remaining) if remaining > 0 else None
        calls += 1
        if outcome is None or outcome.status == "timeout":
            return _timeout_result(spec, case, index, total, timeout, outcome, failures)
        if outcome.status == "raised":
            if calls == 1 and is_placeholder(outcome.error):
                return CheckResult(
                    spec.name,
                    "not attempted",
                    NOT_ATTEMPTED.format(why="your function still raises NotImplementedError"),
                )
            failures.append(_Failure(index, case, "raised", "", error=outcome.error))
            continue
        changed = _changed_inputs(spec, case, args, kwargs)
        if changed:
            what = ", ".join(f"`{n}`" for n in changed)
            failures.append(
                _Failure(
                    index,
                    case,
                    "inplace",
                    f"your function changed its input {what} in place.",
                    diagnoses=[
                        Diagnosis(
                            "modified_input",
                            f"the input {what} was modified in place (e.g. x -= x.max(), x.exp_(), x[...] = ..., or "
                            "masked_fill_ on an argument); the caller's tensor must stay unchanged.\n"
                            "  Hint: compute into a new tensor: x = x - m instead of x -= m, "
                            "x.exp() instead of x.exp_(), "
                            "or start from x.clone().",
                        )
                    ],
                )
            )
            continue
        mismatch = compare(expected, outcome.value, spec.output)
        if mismatch is None:
            passed.append(case)
            continue
        where = "" if mismatch.where == "output" else f"{mismatch.where}: "
        failures.append(
            _Failure(
                index,
                case,
                "mismatch",
                where + mismatch.message,
                got=outcome.value,
                expected=expected,
                diagnoses=diagnose(spec, case, outcome.value, expected, mismatch.kind),
            )
        )
    if failures:
        return _failure_result(spec, failures, total, skipped)
    if not passed:
        return _signature_result(spec, skipped)
    return _passed_result(spec, passed, skipped, device)


# ----------------------------------------------------------------------------- feedback


def _case_line(spec: Spec, index: int, total: int, case: Case) -> str:
    return f"case {index} of {total}: {case.label}\nInput: {_describe_inputs(spec, case)}"


def _skip_note(skipped) -> str:
    if not skipped:
        return ""
    by_reason: dict[str, int] = {}
    for _, problem in skipped:
        if problem and all(p.isidentifier() for p in problem):
            reason = "that pass " + ", ".join(f"{p}=" for p in problem) + " (your function does not take it)"
        else:
            reason = f"that your function cannot take ({'; '.join(problem)})"
        by_reason[reason] = by_reason.get(reason, 0) + 1
    lines = [f"Not tested: {n} case{'s' if n > 1 else ''} {reason}." for reason, n in by_reason.items()]
    return "\n" + "\n".join(lines)


def _passed_result(spec, passed, skipped, device) -> CheckResult:
    dtypes = sorted(
        {
            str(a.dtype).replace("torch.", "")
            for case in passed
            for a in (*case.args, *case.kwargs.values())
            if isinstance(a, torch.Tensor) and a.is_floating_point()
        }
    )
    where = f" ({', '.join(dtypes)} on {device})" if dtypes else ""
    lines = [f"All {len(passed)} cases passed{where}. Well done!"]
    lines += [f"  \u2714 {case.label}" for case in passed]
    return CheckResult(spec.name, "passed", "\n".join(lines) + _skip_note(skipped))


def _signature_result(spec, skipped) -> CheckResult:
    problems = sorted({"; ".join(p) for _, p in skipped})
    return CheckResult(
        spec.name,
        "error",
        f"Your function cannot be called the way this exercise needs: {spec.signature}.\n"
        f"Python says: {' / '.join(problems)}.\n  Hint: compare your `def` line with the signature above.",
    )


def _timeout_result(spec, case, index, total, timeout, outcome, failures) -> CheckResult:
    if outcome is None:
        head = f"The time budget of {timeout:g} s ran out before {_case_line(spec, index, total, case)}"
        tail = "Your function is correct so far but too slow: avoid Python loops over every voxel or token."
    else:
        head = f"Your function did not finish within {timeout:g} s on {_case_line(spec, index, total, case)}"
        tail = (
            "It most likely loops forever: check that every loop ends (a while condition that eventually changes, "
            "an index that moves forward)."
        )
        if outcome.stopped:
            tail += " The grader stopped the stuck call."
        else:
            tail += (
                " The stuck call could not be stopped and keeps running in a background thread; if the notebook "
                "becomes slow, restart the kernel."
            )
    earlier = f"\n(Before that, {len(failures)} case(s) failed.)" if failures else ""
    return CheckResult(spec.name, "timeout", f"{head}\n{tail}{earlier}", case=case.label)


def _failure_result(spec, failures, total, skipped) -> CheckResult:
    shown = next((f for f in failures if f.diagnoses), failures[0])
    line = _case_line(spec, shown.index, total, shown.case)
    if shown.kind == "raised":
        status = "error"
        text = f"Your function raised an error on {line}\n{format_exception(shown.error)}"
        if isinstance(shown.error, NotImplementedError):
            text += "\n  Hint: a NotImplementedError here means a branch of your code is still a placeholder."
    else:
        status = "failed"
        text = f"Wrong result on {line}\nProblem: {shown.problem}"
    diagnoses = shown.diagnoses
    if diagnoses:
        label = "Likely bug" if len(diagnoses) == 1 else "Likely bug (one of these)"
        text += f"\n{label}: " + "\n".join(d.text for d in diagnoses)
    others = [f for f in failures if f is not shown]
    if others:
        names = "; ".join(f"case {f.index} ({f.case.label})" for f in others[:4])
        more = " ..." if len(others) > 4 else ""
        text += f"\n{len(others)} other case(s) failed too: {names}{more}."
    text += _skip_note(skipped)
    return CheckResult(spec.name, status, text, case=shown.case.label, diagnoses=tuple(d.key for d in diagnoses))
