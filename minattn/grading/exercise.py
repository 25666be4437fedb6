"""What an exercise is, for the grader: the types every topic module fills in.

Three kinds of exercise:

* :class:`FunctionExercise`: the learner writes a function. It is called on
  hidden inputs (:class:`Case`, made fresh for the learner's device) and its
  output is compared with the reference's, case by case. Known mistakes
  (:class:`Bug`) are recognised by what they return, and calls that would do
  the exercise for the learner (:class:`RuledOut`) are caught while the
  function runs.
* :class:`ValueExercise`: the learner computes a value by hand or in a few
  lines (a token count, a probability). The answer is computed here, in the
  package, never typed into the notebook; wrong answers that a known slip
  gives (:class:`WrongAnswer`) are named.
* :class:`ChoiceExercise`: a concept question answered by picking options
  by letter; each wrong option comes with the misconception behind it.

Each topic module in :mod:`minattn.grading.topics` holds one topic's
references, cases, bugs, units and ruled-out calls, and lists its exercises in
``EXERCISES``. The case helpers below (:func:`randn`, :func:`arange`,
:func:`random_mask`) draw seeded inputs on the CPU and move them to the
learner's device, so every run and every device sees the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

F64, F32 = torch.float64, torch.float32


@dataclass
class Case:
    """One call of the function under test.

    Attributes:
        label: what the case is about, for the learner.
        args: positional arguments.
        kwargs: keyword arguments (the reference's optional parameters,
            ``mask=``, ``bias=``...). A function that lacks one of them fails
            the case with a message naming the parameter.
        droppable: keyword names left out instead when the learner's function
            does not take them (``device``: the output's device is checked).
        tags: hints for the bug library, e.g. ``"large"`` for huge logits.
    """

    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    droppable: frozenset = frozenset()
    tags: frozenset = frozenset()


@dataclass
class Bug:
    """A known mistake in a function exercise.

    ``variants(case)`` yields ``(output, detail)`` pairs: what the buggy code
    returns on ``case`` and the words that fill ``what``'s and ``hint``'s
    ``{placeholders}``. ``predicate(case, got, expected)`` instead returns a
    detail dict when the learner's output shows the bug, else None; such a bug
    gives ``example(case)``, the output of one learner's code with the bug, so
    that the tests can prove it is recognised.
    """

    key: str
    what: str
    hint: str
    variants: Callable[[Case], Iterable[tuple]] | None = None
    predicate: Callable[[Case, object, object], dict | None] | None = None
    example: Callable[[Case], object] | None = None

    def explain(self, detail: dict) -> str:
        return f"{self.what.format(**detail)}\n  Hint: {self.hint.format(**detail)}"


@dataclass(frozen=True)
class RuledOut:
    """Calls that would do an "implement it" exercise for the learner.

    Attributes:
        name: how the feedback names them, e.g. ``"torch.softmax / Tensor.softmax"``.
        functions: the callables themselves: Python functions and classes
            (caught when their code runs, however they were reached: an alias,
            a wrapper, a module's ``forward``) and C builtins such as
            ``torch.softmax`` (caught when called); or ``"module:attribute"``
            strings for an optional library, watched only once it is imported.
        tensor_methods: names of ``torch.Tensor`` methods that do the same
            (``"softmax"`` catches ``x.softmax(...)`` and ``torch.Tensor.softmax(x, ...)``).
    """

    name: str
    functions: tuple = ()
    tensor_methods: tuple[str, ...] = ()


@dataclass
class FunctionExercise:
    """An exercise whose answer is a function, graded on hidden inputs.

    Attributes:
        name: what ``check(name, fn)`` calls it; usually the reference's name.
        reference: the right function (minattn's own).
        cases: ``cases(device)`` gives the hidden inputs, simple ones first.
        output: what the result must be: ``"tensor"`` (a floating tensor of
            the reference's dtype), ``"index"`` (integer tensor), ``"mask"``
            (boolean tensor) or ``"number"`` (see :mod:`minattn.grading.compare`).
        signature: the signature the exercise states, shown when the learner's
            function cannot be called with a case's arguments.
        bugs: recognised mistakes, tried in order.
        ruled_out: calls the function may not make.
        unit: the unit of a number-valued result (``"bytes"``), for unit-slip
            feedback; None when the number has no unit.
        building_blocks: shown when a ruled-out call is caught, saying what to
            build the answer from instead.
    """

    name: str
    reference: Callable
    cases: Callable[[torch.device], list]
    output: str
    signature: str
    bugs: tuple = ()
    ruled_out: tuple = ()
    unit: str | None = None
    building_blocks: str = "the lesson's pieces"


@dataclass(frozen=True)
class WrongAnswer:
    """A wrong value a known slip gives: ``value()`` computes it, ``text`` names the slip (with a hint)."""

    key: str
    value: Callable[[], object]
    text: str


@dataclass
class ValueExercise:
    """An exercise whose answer is a value: a number, or a tuple or dict of numbers.

    Attributes:
        name: what ``check(name, value)`` calls it.
        question: the question in a few words, shown with the verdict.
        answer: computes the right answer from the package (never typed in).
        unit: the answer's unit (``"GiB"``, ``"tokens"``) or None for a pure
            number (a probability, a ratio); unit-slip feedback only where
            there is a unit (see :mod:`minattn.grading.units`).
        rel_tol / abs_tol: tolerances, as in :func:`math.isclose`; integers
            are compared exactly when both are whole numbers and both
            tolerances are 0.
        wrong: answers that known slips give, each named when it matches.
        integer: the answer is a count: a non-whole number is told so.
    """

    name: str
    question: str
    answer: Callable[[], object]
    unit: str | None = None
    rel_tol: float = 1e-3
    abs_tol: float = 0.0
    wrong: tuple = ()
    integer: bool = False


@dataclass
class ChoiceExercise:
    """A concept question: the learner picks one option (or several) by letter.

    Attributes:
        name: what ``check(name, choice)`` calls it.
        question: the question in a few words, shown with the verdict.
        options: letter -> the option's text, as the notebook shows them.
        correct: the right letter, or a frozenset of letters when several are
            right (the learner then gives all of them, e.g. ``{"a", "c"}`` or ``"ac"``).
        why: letter -> why that wrong option is wrong (the misconception behind
            it), shown when it is chosen; it must not give the right answer away.
    """

    name: str
    question: str
    options: dict
    correct: str | frozenset
    why: dict = field(default_factory=dict)

    @property
    def right(self) -> frozenset:
        return frozenset(self.correct) if not isinstance(self.correct, str) else frozenset({self.correct})


# ----------------------------------------------------------------------------- case helpers


def case_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """``dtype``, except float32 where the device has no float64 (Apple's MPS)."""
    return F32 if (dtype == F64 and device.type == "mps") else dtype


def randn(g: torch.Generator, shape, dtype, device, scale: float = 1.0) -> torch.Tensor:
    """Seeded standard normal numbers times ``scale``, drawn on the CPU, then moved to ``device``."""
    return (torch.randn(shape, generator=g, dtype=F64) * scale).to(device=device, dtype=case_dtype(dtype, device))


def arange(shape, dtype, device) -> torch.Tensor:
    """0, 1, 2, ... in ``shape``: every entry distinct, so a misplaced entry shows."""
    return torch.arange(math.prod(shape), dtype=F64).reshape(shape).to(device=device, dtype=case_dtype(dtype, device))


def random_mask(g: torch.Generator, shape, device, blocked_rows: Iterable[int] = ()) -> torch.Tensor:
    """A random boolean mask (True = may attend) in which every query row allows some keys and blocks others.

    Rows listed in ``blocked_rows`` block every key: a query that may attend to
    nothing, whose output the contract makes zero (never NaN).
    """
    mask = torch.rand(shape, generator=g) < 0.5
    n_q, n_k = shape[-2], shape[-1]
    rows = torch.arange(n_q)
    mask[..., rows, rows % n_k] = True
    mask[..., rows, (rows + 1) % n_k] = False
    for row in blocked_rows:
        mask[..., row, :] = False
    return mask.to(device)


def number_variant(fn):
    """Bug variants of a number-valued exercise: ``fn(*args, **kwargs)`` gives the wrong number."""

    def variants(case):
        yield fn(*case.args, **case.kwargs), {}

    return variants


GRID_AXES = ("d", "h", "w")


def axes_text(order: Iterable[str]) -> str:
    """``("d", "w", "h")`` as ``"(d, w, h)"``, for feedback about axis orders."""
    return "(" + ", ".join(order) + ")"


def graders_own(*fns) -> RuledOut:
    """A :class:`RuledOut` for the grader's own references ``fns``, where the package has no function of its own."""
    return RuledOut(f"minattn.grading's own {' / '.join(fn.__name__ for fn in fns)}", fns)


class SameWeights:
    """Mixin for the modules of hidden cases: equal when their weights are equal.

    The cases are built afresh for every check; comparing two builds of a case (as the bug tests do)
    then compares the modules' weights, not their identity.
    """

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        mine, theirs = self.state_dict(), other.state_dict()
        return mine.keys() == theirs.keys() and all(
            mine[k].dtype == theirs[k].dtype and mine[k].device == theirs[k].device and torch.equal(mine[k], theirs[k])
            for k in mine
        )

    __hash__ = object.__hash__
