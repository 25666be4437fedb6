"""Tests of the exercise autograder, minattn.grading: the engine, and every registered exercise.

The learners' answers to each exercise, right and wrong, are in tests/test_learners_*.py; here are the
properties every check must have, tried on every exercise the registry holds: its reference passes, every
bug it knows is recognised and named, and no answer, however hostile, crashes or hangs it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import threading
import time

import pytest
import torch
from learners import KINDS, all_attempts

from minattn.grading import CheckResult, ChoiceExercise, FunctionExercise, ValueExercise, check, known_names
from minattn.grading.functions import grade_function
from minattn.grading.topics import EXERCISES
from minattn.grading.units import explain_ratio

FUNCTIONS = [e for e in EXERCISES.values() if isinstance(e, FunctionExercise)]
VALUES = [e for e in EXERCISES.values() if isinstance(e, ValueExercise)]
CHOICES = [e for e in EXERCISES.values() if isinstance(e, ChoiceExercise)]
CPU = torch.device("cpu")


def stable_softmax(x, dim=-1):
    """A learner's correct softmax (guarded for rows of only -inf)."""
    shifted = x - x.amax(dim=dim, keepdim=True).nan_to_num(neginf=0.0)
    e = shifted.exp()
    total = e.sum(dim=dim, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))


# ----------------------------------------------------------------------------- every exercise


@pytest.mark.parametrize("exercise", FUNCTIONS, ids=lambda e: e.name)
def test_reference_passes_its_own_cases(exercise):
    # The reference is itself a ruled-out call, so it is graded with nothing ruled out.
    result = grade_function(dataclasses.replace(exercise, ruled_out=()), exercise.reference, 30.0, CPU)
    assert result.passed, result.feedback


@pytest.mark.parametrize("exercise", FUNCTIONS, ids=lambda e: e.name)
def test_every_function_exercise_rules_out_a_shortcut(exercise):
    assert exercise.ruled_out, f"{exercise.name} rules out no call: the package's own function would pass it"


# References that are the package's own functions (not the grader's), which a learner can call.
PACKAGE_REFERENCES = [e for e in FUNCTIONS if not e.reference.__module__.startswith("minattn.grading.")]


@pytest.mark.parametrize("exercise", PACKAGE_REFERENCES, ids=lambda e: e.name)
def test_reference_itself_is_a_ruled_out_shortcut(exercise):
    """The package's own implementation of what an exercise asks for does not pass it."""
    result = check(exercise.name, exercise.reference)
    assert result.status == "failed" and "ruled_out" in result.diagnoses, result


def _same_args(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(torch.equal(a.cpu(), b.cpu()))
        )
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same_args(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_args(a[k], b[k]) for k in a)
    if isinstance(a, torch.nn.Module) or isinstance(b, torch.nn.Module):
        return type(a) is type(b) and _same_args(dict(a.state_dict()), dict(b.state_dict()))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return False


def _bug_output(bug, case, expected):
    """What a learner with ``bug`` returns on ``case``: its first variant that is wrong here, else the right answer."""
    from minattn.grading.compare import outputs_match
    from minattn.grading.diagnose import clone

    if bug.predicate is not None:
        example = bug.example(clone(case)) if bug.example is not None else None
        return expected if example is None else example
    dtype = expected.dtype if isinstance(expected, torch.Tensor) and expected.is_floating_point() else None
    try:
        for output, _ in bug.variants(dataclasses.replace(case, args=clone(case.args), kwargs=clone(case.kwargs))):
            if not outputs_match(output, expected, dtype):
                return output
    except Exception as exc:  # noqa: BLE001 - the buggy code fails on this input, as the learner's would
        return exc
    return expected


BUGS = [(e, b) for e in FUNCTIONS for b in e.bugs]


@pytest.mark.parametrize("exercise, bug", BUGS, ids=[f"{e.name}-{b.key}" for e, b in BUGS])
def test_every_bug_is_rejected_and_named(exercise, bug):
    """A learner whose function has exactly this bug fails, and the feedback names this bug."""
    from minattn.grading.diagnose import clone

    answers = []
    for case in exercise.cases(CPU):
        expected = exercise.reference(*clone(case.args), **clone(case.kwargs))
        answers.append((case, _bug_output(bug, case, expected), expected))
    if bug.predicate is not None and bug.example is None:
        pytest.fail(f"{bug.key}: a predicate bug needs an example(case) to be proven")
    shows = [c for c, out, exp in answers if out is not exp and not isinstance(out, Exception)]
    assert shows, f"{bug.key} never shows on any hidden case of {exercise.name}: it can never be named"

    def learner(*args, **kwargs):
        for case, output, _ in answers:
            if _same_args(case.args, args) and _same_args(
                {k: v for k, v in case.kwargs.items() if k in kwargs}, kwargs
            ):
                if isinstance(output, Exception):
                    raise output
                return clone(output)
        raise AssertionError("the test's fake learner got inputs it does not know")

    learner.__signature__ = inspect.signature(exercise.reference)
    result = grade_function(exercise, learner, 30.0, CPU)
    assert result.status == "failed", result
    assert bug.key in result.diagnoses, result


@pytest.mark.parametrize("exercise", FUNCTIONS, ids=lambda e: e.name)
def test_function_checks_survive_hostile_answers(exercise):
    stop = threading.Event()

    def raises(*args, **kwargs):
        raise RuntimeError("a learner's bug")

    def loops(*args, **kwargs):
        while not stop.is_set():
            pass

    def wrong_type(*args, **kwargs):
        return "nonsense"

    try:
        for fn, status in ((raises, "error"), (wrong_type, "failed"), (loops, "timeout")):
            fn.__signature__ = inspect.signature(exercise.reference)
            start = time.monotonic()
            result = check(exercise.name, fn, timeout=0.5)
            assert result.status == status, result
            assert time.monotonic() - start < 5
        assert check(exercise.name, None).status == "not attempted"
        assert check(exercise.name, 42).status == "error"
    finally:
        stop.set()


@pytest.mark.parametrize("exercise", VALUES, ids=lambda e: e.name)
def test_value_checks_survive_hostile_answers(exercise):
    for blank in (None, ...):
        assert check(exercise.name, blank).status == "not attempted"
    for value in ("64 GiB", math.nan, math.inf, torch.zeros(3, 2), lambda: 1, object()):
        result = check(exercise.name, value)
        assert result.status == "failed", (value, result)
    answer = exercise.answer()
    assert check(exercise.name, answer).passed


@pytest.mark.parametrize(
    "exercise", [e for e in VALUES if not isinstance(e.answer(), (tuple, list, dict))], ids=lambda e: e.name
)
def test_value_feedback_shows_the_learners_value_never_the_answer(exercise):
    first = exercise.answer()
    wrong = first * 1.37 + 0.11
    result = check(exercise.name, wrong)
    assert result.status == "failed"
    assert "your answer is" in result.feedback
    for shown in {f"{first:,}", f"{first:.6g}", f"{first:.4g}", str(first)}:
        if len(shown) >= 3:
            assert shown not in result.feedback.replace(f"{wrong:.6g}", ""), result


@pytest.mark.parametrize("exercise", CHOICES, ids=lambda e: e.name)
def test_every_option_of_a_concept_question_gets_its_verdict(exercise):
    """Every option is tried: the right ones pass in any spelling, each wrong one is explained, never answered."""
    right = sorted(exercise.right)
    assert set(right) <= set(exercise.options) and len(exercise.options) >= 3
    for spelling in ("".join(right).upper(), " , ".join(right), set(right), list(reversed(right))):
        assert check(exercise.name, spelling).passed, spelling
    right_texts = [exercise.options[k] for k in right]
    for key in set(exercise.options) - exercise.right:
        assert key in exercise.why, f"option {key} has no explanation of why it is wrong"
        result = check(exercise.name, key if len(right) == 1 else "".join(sorted({key, *right[1:]})))
        assert result.status == "failed", result
        assert all(text not in result.feedback for text in right_texts), result
    for value in (None, ...):
        assert check(exercise.name, value).status == "not attempted"
    for value in ("z", 3, "the second one", ["ab"], object()):
        assert check(exercise.name, value).status == "failed"


def test_learners_cover_every_exercise():
    """Each exercise has at least three wrong and two right learner answers, and a shortcut where one exists.

    Concept questions are exempt: every one of their options is tried above.
    """
    attempts = all_attempts()
    problems = []
    for name, exercise in EXERCISES.items():
        if isinstance(exercise, ChoiceExercise):
            continue
        mine = [a for a in attempts if a.exercise == name]
        wrong = [a for a in mine if not a.right]
        right = [a for a in mine if a.right]
        if len(wrong) < 3 or len(right) < 2:
            problems.append(f"{name}: {len(wrong)} wrong and {len(right)} right answers")
        if isinstance(exercise, FunctionExercise) and not any(a.kind == "shortcut" for a in mine):
            problems.append(f"{name}: no shortcut answer")
    unknown = {a.exercise for a in attempts} - set(EXERCISES)
    assert not unknown, f"learner answers to exercises that do not exist: {unknown}"
    assert not problems, "\n".join(problems)
    assert {a.kind for a in attempts} <= set(KINDS)


# ----------------------------------------------------------------------------- the engine


def softmax_last_axis(x, dim=-1):
    return stable_softmax(x, -1)


def test_feedback_names_the_case_its_shapes_and_the_difference():
    result = check("softmax", softmax_last_axis)
    assert "wrong_axis" in result.diagnoses
    assert "(3, 4, 6)" in result.feedback  # the first failing input's shape
    assert "largest difference" in result.feedback
    assert result.case is not None and "dim=1" in result.case


def test_checks_are_deterministic():
    assert check("softmax", softmax_last_axis).feedback == check("softmax", softmax_last_axis).feedback


def test_shortcuts_are_caught_however_they_are_reached():
    import torch.nn.functional as F

    import minattn
    from minattn import softmax as aliased

    class Wrapper(torch.nn.Module):
        def forward(self, x, dim):
            return F.softmax(x, dim=dim)

    shortcuts = {
        "direct": lambda x, dim=-1: torch.softmax(x, dim),
        "method": lambda x, dim=-1: x.softmax(dim),
        "unbound method": lambda x, dim=-1: torch.Tensor.softmax(x, dim),
        "package": lambda x, dim=-1: minattn.softmax(x, dim),
        "alias": aliased,
        "module": lambda x, dim=-1: Wrapper()(x, dim),
        "log then exp": lambda x, dim=-1: torch.log_softmax(x, dim).exp(),
    }
    for label, fn in shortcuts.items():
        result = check("softmax", fn)
        assert result.status == "failed" and result.diagnoses == ("ruled_out",), (label, result)
        assert "rules out" in result.feedback and "build it from" in result.feedback

    # Building blocks stay allowed, and a comment naming a ruled-out call is not a call.
    def with_comment(x, dim=-1):
        # not torch.softmax(x, dim): built by hand
        return stable_softmax(x, dim)

    assert check("softmax", with_comment).passed


def test_a_missing_parameter_fails_and_is_named():
    def attention_basic(q, k, v):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        return stable_softmax(scores) @ v

    result = check("scaled_dot_product_attention", attention_basic)
    assert result.status == "failed"
    assert "missing_parameter" in result.diagnoses
    assert "`mask`" in result.feedback
    assert "Not tested" not in result.feedback


def test_in_place_modification_is_detected():
    def softmax_in_place(x, dim=-1):
        x -= x.amax(dim=dim, keepdim=True).nan_to_num(neginf=0.0)
        return stable_softmax(x, dim)

    result = check("softmax", softmax_in_place)
    assert result.status == "failed"
    assert "modified_input" in result.diagnoses and "`x`" in result.feedback


def test_wrong_dtype_device_shape_and_type_are_reported():
    result = check("softmax", lambda x, dim=-1: stable_softmax(x, dim).float())
    assert "wrong dtype" in result.feedback and "expected float64" in result.feedback
    assert "Likely bug" not in result.feedback  # the values are right: nothing else to diagnose
    assert "wrong device" in check("softmax", lambda x, dim=-1: stable_softmax(x, dim).to("meta")).feedback
    result = check("softmax", lambda x, dim=-1: stable_softmax(x, dim).unsqueeze(0))
    assert "wrong shape" in result.feedback
    assert "ndarray" in check("softmax", lambda x, dim=-1: stable_softmax(x, dim).cpu().numpy()).feedback
    assert "returned None" in check("softmax", lambda x, dim=-1: None).feedback


def _learner_helper(x):
    y = x.sum()
    raise ValueError(f"learner says: the sum was {y.item():.1f} <oops>")


def softmax_raises(x, dim=-1):
    z = x + 1
    return _learner_helper(z)


def test_exception_shows_message_and_short_traceback():
    result = check("softmax", softmax_raises)
    assert result.status == "error"
    assert "learner says: the sum was" in result.feedback and "ValueError" in result.feedback
    assert "softmax_raises" in result.feedback and "_learner_helper" in result.feedback
    assert "runner.py" not in result.feedback and "threading" not in result.feedback  # grader frames hidden
    frame_lines = [line for line in result.feedback.splitlines() if line.lstrip().startswith(("File ", "Cell In["))]
    assert 1 <= len(frame_lines) <= 4


def test_timeout_ends_an_infinite_loop():
    stop = threading.Event()

    def softmax_forever(x, dim=-1):
        while not stop.is_set():  # endless (the event only guards this test process)
            pass
        return x

    threads_before = threading.active_count()
    start = time.monotonic()
    try:
        result = check("softmax", softmax_forever, timeout=1)
        assert result.status == "timeout" and time.monotonic() - start < 3
        assert "did not finish within 1 s" in result.feedback and "stopped" in result.feedback
        deadline = time.monotonic() + 2
        while threading.active_count() > threads_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= threads_before
    finally:
        stop.set()


def test_not_attempted_and_a_later_placeholder():
    def template(x, dim=-1):
        # YOUR CODE HERE
        raise NotImplementedError()

    for fn in (None, template):
        assert check("softmax", fn).status == "not attempted"

    def last_axis_only(x, dim=-1):
        if dim not in (-1, x.ndim - 1):
            raise NotImplementedError("only the last axis so far")
        return stable_softmax(x, -1)

    result = check("softmax", last_axis_only)
    assert result.status == "error" and "only the last axis so far" in result.feedback


def test_misuse_by_the_notebook_author_raises():
    with pytest.raises(ValueError, match="softmax"):
        check("sofmax", softmax_last_axis)
    assert set(known_names()) == set(EXERCISES)


def test_repr_html_shows_status_and_escapes_learner_text():
    def softmax_script(x, dim=-1):
        raise ValueError("<script>alert('x')</script>")

    page = check("softmax", softmax_script)._repr_html_()
    assert "error" in page and "<script>" not in page and "&lt;script&gt;" in page
    passed = check("softmax", stable_softmax)
    assert "#1a7f37" in passed._repr_html_() and "[PASSED] softmax" in str(passed)
    assert "status='passed'" in repr(passed)
    with pytest.raises(ValueError):
        CheckResult("x", "great", "")


def test_in_a_jupyter_kernel():
    """Run All on a fresh notebook: placeholders, an endless loop, an error, a shortcut; the kernel lives on."""
    import nbclient
    import nbformat

    cells = [
        "from minattn.grading import check\nimport torch",
        "def softmax(x, dim=-1):\n    # YOUR CODE HERE\n    raise NotImplementedError()\ncheck('softmax', softmax)",
        "def softmax(x, dim=-1):\n    while True:\n        pass\ncheck('softmax', softmax, timeout=1)",
        "def softmax(x, dim=-1):\n    return x.exp() / undefined_name\ncheck('softmax', softmax)",
        "check('softmax', lambda x, dim=-1: torch.softmax(x, dim=dim))",
        "def softmax(x, dim=-1):\n    e = (x - x.amax(dim, keepdim=True).nan_to_num(neginf=0)).exp()\n"
        "    s = e.sum(dim, keepdim=True)\n    return e / torch.where(s > 0, s, torch.ones_like(s))\n"
        "check('softmax', softmax)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    html = [
        next(o for o in cell.outputs if o.output_type == "execute_result").data["text/html"] for cell in nb.cells[1:]
    ]
    assert "not attempted" in html[0]
    assert "timeout" in html[1] and "stopped" in html[1]
    assert "error" in html[2] and "Cell In[4]" in html[2] and "undefined_name" in html[2]
    assert "failed" in html[3] and "torch.softmax" in html[3]
    assert "passed" in html[4]


# ----------------------------------------------------------------------------- values and units


def test_value_answers_slips_and_blanks():
    assert check("score_matrix_gib_fp32_32x64x64", 64).passed
    assert check("score_matrix_gib_fp32_32x64x64", torch.tensor(64.0)).passed
    result = check("score_matrix_gib_fp32_32x64x64", 68719476736)
    assert result.status == "failed" and "looks like bytes" in result.feedback
    assert "68,719,476,736" in result.feedback  # the learner's own value
    assert "two slips" in check("score_matrix_gib_fp32_32x64x64", 17179869184).feedback
    assert check("tokens_32x64x64", "131072 tokens").status == "failed"
    assert "whole number" in check("tokens_32x64x64", 131072.5).feedback


def test_unit_slips_only_where_the_answer_has_that_unit():
    assert explain_ratio(68719476736, 64, "GiB")[0] == "binary_3"
    assert explain_ratio(2, 1, "bytes")[0] == "fp16_vs_fp32"
    assert explain_ratio(2e12, 1e12, "FLOPs")[0] == "multiply_adds"
    assert "TFLOPs" in explain_ratio(2.2e12, 2.2, "TFLOPs")[1]
    for unit in (None, "tokens", "scores", "parameters"):
        assert explain_ratio(8, 1, unit) is None and explain_ratio(4, 1, unit) is None
        assert explain_ratio(2, 1, unit) is None and explain_ratio(1024, 1, unit) is None
    assert explain_ratio(131072, 17179869184, "scores")[0] == "not_squared"


def test_value_feedback_for_zero_and_near_misses_is_true():
    result = check("window_saving_128_w8", 0)
    assert "It is 0" in result.feedback and "sign" not in result.feedback
    result = check("window_saving_128_w8", 4096 * 1.2)
    assert "20% too large" in result.feedback and "times too large" not in result.feedback
    result = check("window_saving_128_w8", -4096)
    assert "sign is wrong" in result.feedback


def test_under_nbgrader_a_check_that_does_not_pass_raises(monkeypatch):
    from minattn.grading import CheckFailed

    for mode in ("autograde", "validate"):
        monkeypatch.setenv("NBGRADER_EXECUTION", mode)
        with pytest.raises(AssertionError, match="wrong_axis|normalised over axis") as raised:
            check("softmax", softmax_last_axis)
        assert isinstance(raised.value, CheckFailed) and raised.value.result.status == "failed"
        with pytest.raises(CheckFailed, match="NOT ATTEMPTED"):
            check("softmax", None)
        assert check("softmax", stable_softmax).passed  # a pass returns, as in a notebook
    monkeypatch.setenv("NBGRADER_EXECUTION", "")
    assert check("softmax", None).status == "not attempted"


def test_an_unfinished_helper_is_named(two_threads):
    def helper(x):
        # YOUR CODE HERE
        raise NotImplementedError()

    def softmax(x, dim=-1):
        return helper(x)

    result = check("softmax", softmax)
    assert result.status == "not attempted" and "`helper`" in result.feedback
    threads = torch.get_num_threads()
    check("softmax", stable_softmax)
    assert torch.get_num_threads() == threads  # the check's one-thread setting is undone
