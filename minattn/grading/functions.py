"""Grading a function exercise: the learner's function on hidden inputs, case by case.

For each case the learner's function gets fresh copies of the inputs and runs
under the time left from the check's budget (the time the function itself has
run so far; the grader's references and diagnoses are not counted) (see :mod:`minattn.grading.runner`),
watched for ruled-out calls (:mod:`minattn.grading.shortcuts`). Its output is
compared with the reference's (:mod:`minattn.grading.compare`): type, shape,
device, dtype, then values; the inputs are compared with their originals to
catch in-place changes. A case that passes an argument the function does not
take is a failure naming that parameter, never a skipped case. All cases run;
the feedback describes the first failure, with the likely bug
(:mod:`minattn.grading.diagnose`) from the first failure where one is
recognised.
"""

from __future__ import annotations

import inspect
import time

import torch

from .._threads import single_thread
from .compare import compare, describe
from .diagnose import Diagnosis, clone, diagnose
from .exercise import Case, FunctionExercise
from .result import CheckResult
from .runner import call_with_timeout, format_exception, is_placeholder, learner_frames, unaccepted_arguments
from .shortcuts import CallWatch

NOT_ATTEMPTED = (
    "Not attempted yet: {why}. Replace the `raise NotImplementedError()` placeholder with your code, run that cell, "
    "then run this check again."
)


def resolve_device(device) -> torch.device:
    """``device``, or CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def grade_function(exercise: FunctionExercise, fn, timeout: float, device) -> CheckResult:
    """Grade the learner's ``fn`` on ``exercise``'s hidden cases (see :func:`minattn.grading.check`)."""
    name = exercise.name
    if fn is None or fn is Ellipsis:
        return CheckResult(name, "not attempted", NOT_ATTEMPTED.format(why="no function was given (fn is None)"))
    if not callable(fn):
        return CheckResult(
            name,
            "error",
            f"check() needs your function itself, e.g. check({name!r}, {name}); it received a "
            f"{type(fn).__name__} instead. Pass the function without calling it (no parentheses).",
        )
    # The hidden cases are tiny: a thread pool only adds hand-over costs to the learner's time budget.
    with single_thread():
        return _run(exercise, fn, float(timeout), resolve_device(device))


# ----------------------------------------------------------------------------- the run


class _Failure:
    def __init__(self, index, case, kind, problem, got=None, expected=None, diagnoses=(), error=None):
        self.index, self.case, self.kind, self.problem = index, case, kind, problem
        self.got, self.expected, self.diagnoses, self.error = got, expected, list(diagnoses), error


def _param_names(spec: FunctionExercise) -> list[str]:
    return list(inspect.signature(spec.reference).parameters)


def _describe_inputs(spec: FunctionExercise, case: Case) -> str:
    names = _param_names(spec)
    parts = [f"{names[i] if i < len(names) else f'arg{i}'} = {describe(a)}" for i, a in enumerate(case.args)]
    parts += [f"{k} = {describe(v)}" for k, v in case.kwargs.items()]
    return ", ".join(parts)


def _changed_inputs(spec: FunctionExercise, before: Case, after_args: tuple, after_kwargs: dict) -> list[str]:
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


def _not_attempted(spec: FunctionExercise, fn, error: BaseException) -> CheckResult:
    """ "Not attempted", naming the unfinished function when it is another one that ``fn`` calls."""
    name = getattr(fn, "__name__", "")
    frames = learner_frames(error)
    placeholder = frames[-1].name if frames else name
    if placeholder not in (name, "<lambda>"):
        why = f"your function calls `{placeholder}`, which still raises NotImplementedError: finish that exercise first"
    else:
        why = "your function still raises NotImplementedError"
    return CheckResult(spec.name, "not attempted", NOT_ATTEMPTED.format(why=why))


def _signature_failure(spec: FunctionExercise, index: int, case: Case, problem: list[str]) -> _Failure:
    if problem and all(p.isidentifier() for p in problem):
        names = ", ".join(f"`{p}`" for p in problem)
        what = f"your function has no parameter {names}, which this case passes"
    else:
        what = f"your function cannot be called with this case's arguments (Python says: {'; '.join(problem)})"
    return _Failure(
        index,
        case,
        "signature",
        what + ".",
        diagnoses=[
            Diagnosis(
                "missing_parameter",
                f"the exercise asks for {spec.signature}, and every parameter counts.\n"
                "  Hint: compare your `def` line with that signature, names and defaults included, and handle "
                "each parameter as the exercise describes.",
            )
        ],
    )


def _ruled_out_result(spec: FunctionExercise, call: str, index: int, total: int, case: Case) -> CheckResult:
    return CheckResult(
        spec.name,
        "failed",
        f"Your function calls {call}, which this exercise rules out (caught on {_case_line(spec, index, total, case)})."
        f"\nIt would do the exercise for you, so the check cannot tell whether your own code is right.\n"
        f"  Hint: build it from {spec.building_blocks}, as the lesson does.",
        case=case.label,
        diagnoses=("ruled_out",),
    )


def _run(spec: FunctionExercise, fn, timeout: float, device: torch.device) -> CheckResult:
    cases = spec.cases(device)
    total = len(cases)
    spent = 0.0  # seconds the learner's function ran; the grader's own work is not charged to it
    failures: list[_Failure] = []
    passed: list[Case] = []
    calls = 0
    for index, original in enumerate(cases, start=1):
        case, problem = _bind(fn, original)
        if case is None:
            failures.append(_signature_failure(spec, index, original, problem))
            continue
        expected = spec.reference(*clone(case.args), **clone(case.kwargs))
        args, kwargs = clone(case.args), clone(case.kwargs)
        remaining = timeout - spent
        watch = CallWatch(spec.ruled_out)
        started = time.monotonic()
        outcome = call_with_timeout(fn, args, kwargs, remaining, watch=watch) if remaining > 0 else None
        spent += time.monotonic() - started
        calls += 1
        if outcome is None or outcome.status == "timeout":
            return _timeout_result(spec, case, index, total, timeout, outcome, failures)
        if outcome.ruled_out:
            return _ruled_out_result(spec, outcome.ruled_out, index, total, case)
        if outcome.status == "raised":
            if calls == 1 and is_placeholder(outcome.error):
                return _not_attempted(spec, fn, outcome.error)
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
        return _failure_result(spec, failures, total)
    return _passed_result(spec, passed, device)


# ----------------------------------------------------------------------------- feedback


def _case_line(spec: FunctionExercise, index: int, total: int, case: Case) -> str:
    return f"case {index} of {total}: {case.label}\nInput: {_describe_inputs(spec, case)}"


def _passed_result(spec, passed, device) -> CheckResult:
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
    return CheckResult(spec.name, "passed", "\n".join(lines))


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


def _failure_result(spec, failures, total) -> CheckResult:
    shown = next((f for f in failures if f.diagnoses), failures[0])
    line = _case_line(spec, shown.index, total, shown.case)
    if shown.kind == "raised":
        status = "error"
        text = f"Your function raised an error on {line}\n{format_exception(shown.error)}"
        if isinstance(shown.error, NotImplementedError):
            text += "\n  Hint: a NotImplementedError here means a branch of your code is still a placeholder."
    elif shown.kind == "signature":
        status = "failed"
        text = f"Your function does not fit the exercise's signature on {line}\nProblem: {shown.problem}"
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
    return CheckResult(spec.name, status, text, case=shown.case.label, diagnoses=tuple(d.key for d in diagnoses))
