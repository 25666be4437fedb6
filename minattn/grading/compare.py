"""Comparing a learner's output with the reference's, and saying how they differ.

The checks go from coarse to fine, and the first difference found is the one
reported: the kind of object, the number of outputs, the shape, the device,
the dtype, non-finite entries (NaN / inf) and finally the values themselves,
with a tolerance that depends on the dtype.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

# (rtol, atol) per floating dtype: loose enough for a different summation order.
TOLERANCES = {
    torch.float64: (1e-6, 1e-8),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}

# What an output must be: a floating tensor of the reference's dtype, an
# integer index tensor, a boolean mask, or a plain number.
KINDS = ("tensor", "index", "mask", "number")


@dataclass
class Mismatch:
    """The first difference between an output and the expected one.

    ``kind`` is one of ``"type"``, ``"length"``, ``"shape"``, ``"device"``,
    ``"dtype"``, ``"nonfinite"``, ``"values"`` or ``"number"``; ``message``
    says it in words for a learner.
    """

    kind: str
    message: str
    where: str = "output"


def describe(value: Any) -> str:
    """A short description of an argument: a tensor's dtype, shape and device, or the value."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).replace("torch.", "")
        return f"{dtype} tensor of shape {tuple(value.shape)} on {value.device}"
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if value is None:
        return "None"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_message(got: Any, wanted: str) -> str:
    if got is None:
        return f"your function returned None; it should return {wanted}. Did you forget the `return` statement?"
    return f"your function returned a {type(got).__name__}; it should return {wanted}."


def as_number(value: Any):
    """``value`` as a Python int or float, or None if it is not a real number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
            return None
        return value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def numbers_equal(got, expected) -> bool:
    """Exact for ints; a relative tolerance of 1e-9 for floats (large counts lose bits as floats)."""
    if isinstance(got, int) and isinstance(expected, int):
        return got == expected
    if not (math.isfinite(got) and math.isfinite(expected)):
        return False
    return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)


def _index(flat_index: int, shape) -> tuple[int, ...]:
    out = []
    for size in reversed(tuple(shape)):
        out.append(flat_index % size)
        flat_index //= size
    return tuple(reversed(out))


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _compare_tensor(expected: torch.Tensor, got: Any, kind: str, where: str) -> Mismatch | None:
    if not isinstance(got, torch.Tensor):
        wanted = {"tensor": "a torch.Tensor", "index": "an integer torch.Tensor", "mask": "a boolean torch.Tensor"}[
            kind
        ]
        return Mismatch("type", _type_message(got, wanted), where)
    if tuple(got.shape) != tuple(expected.shape):
        return Mismatch("shape", f"wrong shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}.", where)
    if got.device != expected.device:
        return Mismatch(
            "device",
            f"wrong device: your output is on {got.device} but it should be on {expected.device}, where the "
            "inputs are. Create new tensors with device=x.device (or the device argument), never a fixed device.",
            where,
        )
    dtype_problem = _dtype_problem(expected, got, kind)
    if dtype_problem:
        return Mismatch("dtype", dtype_problem, where)
    if kind == "tensor":
        return _compare_float(expected, got, where)
    return _compare_exact(expected, got, where)


def _dtype_problem(expected: torch.Tensor, got: torch.Tensor, kind: str) -> str | None:
    name = str(got.dtype).replace("torch.", "")
    if kind == "index":
        if got.is_floating_point() or got.is_complex() or got.dtype == torch.bool:
            return (
                f"wrong dtype: an index must be an integer tensor (torch.long), got {name}. Use integer "
                "arithmetic: torch.arange gives integers, and // keeps them integers where / makes floats."
            )
        return None
    if kind == "mask":
        if got.dtype != torch.bool:
            return (
                f"wrong dtype: the mask must be boolean (True = may attend), got {name}. Compare labels with == to "
                "get booleans; a float mask with -100 or -inf is an additive bias, not this function's answer."
            )
        return None
    if got.dtype != expected.dtype:
        want = str(expected.dtype).replace("torch.", "")
        return (
            f"wrong dtype: expected {want} (the input's dtype), got {name}. Keep the input's dtype: avoid .float() "
            "or .double(), and give new tensors dtype=x.dtype (torch.tensor, torch.zeros and torch.ones default to "
            "float32)."
        )
    return None


def _compare_float(expected: torch.Tensor, got: torch.Tensor, where: str) -> Mismatch | None:
    rtol, atol = TOLERANCES.get(expected.dtype, (1e-4, 1e-5))
    e = expected.detach().to("cpu", torch.float64)
    g = got.detach().to("cpu", torch.float64)
    bad = ~torch.isfinite(g) & torch.isfinite(e)
    if bad.any():
        first = _index(int(bad.flatten().nonzero()[0]), g.shape)
        what = "NaN" if torch.isnan(g[bad]).any() else "inf"
        return Mismatch(
            "nonfinite",
            f"{int(bad.sum())} of {g.numel()} entries are {what} where the expected output is finite "
            f"(first at index {first}: expected {_fmt(float(e[first]))}, got {_fmt(float(g[first]))}).",
            where,
        )
    close = torch.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None
    diff = torch.where(close, torch.zeros_like(g), (g - e).abs())
    diff = torch.nan_to_num(diff, nan=math.inf)
    worst = _index(int(diff.flatten().argmax()), g.shape)
    return Mismatch(
        "values",
        f"wrong values: {int((~close).sum())} of {g.numel()} entries differ; the largest difference is "
        f"{_fmt(float(diff[worst]))} at index {worst} (expected {_fmt(float(e[worst]))}, got {_fmt(float(g[worst]))}; "
        f"tolerance rtol={rtol:g}, atol={atol:g}).",
        where,
    )


def _compare_exact(expected: torch.Tensor, got: torch.Tensor, where: str) -> Mismatch | None:
    e = expected.detach().cpu()
    g = got.detach().cpu().to(e.dtype) if expected.dtype != torch.bool else got.detach().cpu()
    wrong = g != e
    if not wrong.any():
        return None
    first = _index(int(wrong.flatten().nonzero()[0]), g.shape)
    return Mismatch(
        "values",
        f"wrong values: {int(wrong.sum())} of {g.numel()} entries differ; the first is at index {first} "
        f"(expected {e[first].item()}, got {g[first].item()}).",
        where,
    )


def _compare_number(expected, got: Any, where: str) -> Mismatch | None:
    number = as_number(got)
    if number is None:
        return Mismatch("type", _type_message(got, "a number (an int)"), where)
    if numbers_equal(number, expected):
        return None
    ratio = number / expected if expected else math.inf
    return Mismatch(
        "number",
        f"wrong number: expected {expected:,}, got {number:,} (your value is {ratio:.4g} times the expected one).",
        where,
    )


def compare(expected: Any, got: Any, kind: str = "tensor", where: str = "output") -> Mismatch | None:
    """The first difference between ``got`` and ``expected``, or None if they agree.

    ``expected`` is the reference's output: a tensor, a tuple of tensors (e.g.
    ``(out, weights)``) or a number. ``kind`` says what a tensor output must
    be (see :data:`KINDS`).
    """
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return Mismatch("type", _type_message(got, f"a tuple of {len(expected)} results"), where)
        if len(got) != len(expected):
            return Mismatch("length", f"expected a tuple of {len(expected)} results, got {len(got)}.", where)
        for i, (e, g) in enumerate(zip(expected, got)):
            mismatch = compare(e, g, kind, f"{where}[{i}]")
            if mismatch:
                return mismatch
        return None
    if isinstance(expected, torch.Tensor):
        return _compare_tensor(expected, got, kind, where)
    return _compare_number(expected, got, where)


def outputs_match(a: Any, b: Any, dtype_for_tolerance: torch.dtype | None = None) -> bool:
    """True if two outputs hold the same values (shape must match; dtype and device may differ).

    Used to recognise a bug: does the learner's output equal a buggy variant's?
    Never raises.
    """
    try:
        if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
            if not (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list))) or len(a) != len(b):
                return False
            return all(outputs_match(x, y, dtype_for_tolerance) for x, y in zip(a, b))
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            if tuple(a.shape) != tuple(b.shape) or a.device.type == "meta" or b.device.type == "meta":
                return False
            if a.numel() == 0:
                return True
            dtype = dtype_for_tolerance or (a.dtype if a.is_floating_point() else b.dtype)
            rtol, atol = TOLERANCES.get(dtype, (1e-4, 1e-5))
            x = a.detach().to("cpu", torch.float64)
            y = b.detach().to("cpu", torch.float64)
            return bool(torch.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True).all())
        x, y = as_number(a), as_number(b)
        if x is None or y is None:
            return False
        return math.isclose(x, y, rel_tol=1e-9)
    except Exception:  # noqa: BLE001 - matching is best effort
        return False
