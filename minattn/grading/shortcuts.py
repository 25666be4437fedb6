"""Catching calls that would do an exercise for the learner, while the learner's function runs.

An "implement it" exercise is not passed by calling the thing it asks for:
the package's own ``minattn.softmax``, PyTorch's ``torch.softmax`` or
``x.softmax(...)``, MONAI's block. A text search of the learner's code would
miss an alias (``from minattn import softmax as sm``), a wrapper or a class
whose ``forward`` calls it, and would flag a comment. So the grader watches
what the function actually calls, with a profile hook (:func:`sys.setprofile`)
set in the thread that runs it (see :mod:`minattn.grading.runner`):

* a Python function or class is caught when its code object starts running,
  however it was reached;
* a C builtin (``torch.softmax``, ``F.scaled_dot_product_attention``) is
  caught when it is called, and so is a ``torch.Tensor`` method by name.

Building blocks (``torch.exp``, ``torch.roll``, ``einops.rearrange``) stay
allowed: only what an exercise's :class:`~minattn.grading.exercise.RuledOut`
lists is caught.
"""

from __future__ import annotations

import inspect
import sys

import torch

from .exercise import RuledOut

_TENSOR_TYPES = tuple({torch.Tensor, getattr(torch._C, "TensorBase", torch.Tensor)})


def _code_objects(obj) -> list:
    """The code objects that run when ``obj`` is called: a function's, or a class's ``__init__``/``forward``."""
    if inspect.isclass(obj):
        return [c for name in ("forward", "__call__", "__init__") for c in _code_objects(obj.__dict__.get(name))]
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    try:
        obj = inspect.unwrap(obj)
    except ValueError:
        return []
    code = getattr(obj, "__code__", None)
    return [code] if code is not None else []


def _resolve(target):
    """A callable, or ``"module:attribute"`` looked up only if that module is already imported, else None.

    A library the learner did not import (MONAI, say) cannot be what their function calls, so it is
    never imported just to be watched.
    """
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    module = sys.modules.get(module_name)
    return getattr(module, attribute, None) if module is not None else None


class CallWatch:
    """A profile hook that records the first ruled-out call made in the current thread.

    Use as a context manager inside the thread that runs the learner's code;
    ``found`` is then the :class:`RuledOut` name of the first call caught, or None.
    """

    def __init__(self, ruled_out: tuple[RuledOut, ...]):
        self.found: str | None = None
        # Keyed by id(): code objects compare equal by content, and a learner's own copy of a
        # function must not count as the package's. ``_keep`` holds the objects so their ids stay theirs.
        self._codes: dict[int, str] = {}
        self._builtins: dict[int, str] = {}
        self._keep: list = []
        self._methods: dict[str, str] = {}
        for rule in ruled_out:
            for fn in rule.functions:
                fn = _resolve(fn)
                if fn is None:
                    continue
                codes = _code_objects(fn)
                if codes:
                    self._codes.update({id(code): rule.name for code in codes})
                    self._keep.extend(codes)
                elif callable(fn):
                    self._builtins[id(fn)] = rule.name
                    self._keep.append(fn)
            self._methods.update({m: rule.name for m in rule.tensor_methods})
        self._previous = None

    @property
    def active(self) -> bool:
        return bool(self._codes or self._builtins or self._methods)

    def _profile(self, frame, event, arg):
        if self.found is not None:
            return
        if event == "call":
            self.found = self._codes.get(id(frame.f_code))
        elif event == "c_call":
            self.found = self._builtins.get(id(arg)) or self._tensor_method(arg)

    def _tensor_method(self, fn) -> str | None:
        name = getattr(fn, "__name__", None)
        if name not in self._methods:
            return None
        owner = getattr(fn, "__self__", None)
        owner_class = getattr(fn, "__objclass__", None)
        if isinstance(owner, _TENSOR_TYPES) or owner_class in _TENSOR_TYPES:
            return self._methods[name]
        return None

    def __enter__(self) -> CallWatch:
        if self.active:
            self._previous = sys.getprofile()
            sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            sys.setprofile(self._previous)


def describe_rules(ruled_out: tuple[RuledOut, ...]) -> str:
    """``"a, b and c"``: the names of the ruled-out calls, for an exercise's text and its feedback."""
    names = [rule.name for rule in ruled_out]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
