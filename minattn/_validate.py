"""Input checks shared by every module.

Each helper raises a ``ValueError`` that names what was expected and what was
received, so a learner sees the shape mistake instead of a wrong answer later.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch


def broadcast_shapes(*shapes) -> torch.Size:
    """The shape that ``shapes`` broadcast to, by PyTorch's (NumPy's) rules.

    The same answer as ``torch.broadcast_shapes``, in plain Python: that one
    goes through PyTorch's symbolic-shape machinery, which costs ~35 us a
    call, as much as a whole small attention call. Raises ``ValueError`` when
    two sizes along an axis differ and neither is 1.
    """
    ndim = max((len(shape) for shape in shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        for axis, size in enumerate(shape, start=ndim - len(shape)):
            if size == 1 or size == out[axis]:
                continue
            if out[axis] != 1:
                raise ValueError(f"shapes {[tuple(s) for s in shapes]} do not broadcast (axis {axis - ndim})")
            out[axis] = size
    return torch.Size(out)


def as_size_tuple(value, ndim: int, name: str, *, allow_zero: bool = False) -> tuple[int, ...]:
    """Turn ``value`` (an int or a sequence of ``ndim`` ints) into a tuple of ints.

    Python, numpy and tensor integers are accepted (sizes are often computed
    with numpy). ``allow_zero`` admits zeros (shifts); otherwise every entry
    must be >= 1 (patches, windows).
    """
    if hasattr(value, "tolist") and not isinstance(value, numbers.Integral):
        value = value.tolist()  # tensors and numpy arrays
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        values = (value,) * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != ndim:
            raise ValueError(f"{name} needs {ndim} entries, one per spatial axis; received {len(values)}: {values}")
    else:
        raise ValueError(f"{name} must be an int or a sequence of {ndim} ints; received {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values):
        raise ValueError(f"{name} must hold ints; received {values}")
    values = tuple(int(v) for v in values)
    lowest = 0 if allow_zero else 1
    if any(v < lowest for v in values):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {kind} along every axis; received {values}")
    return values


def spatial_ndim(size) -> int:
    """Number of spatial axes a size describes: 3 for a plain int (3D is the default), else its length."""
    if isinstance(size, numbers.Integral):
        return 3
    return len(size.tolist() if hasattr(size, "tolist") else tuple(size))


def check_spatial_rank(x: torch.Tensor, name: str, layout: str) -> int:
    """Check that ``x`` has 2 or 3 spatial axes for ``layout``; return their number.

    ``layout`` is ``"channels_first"`` for images ``(B, C, [D,] H, W)`` or
    ``"channels_last"`` for feature maps ``(B, [D,] H, W, C)``.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; received {type(x).__name__}")
    if x.ndim not in (4, 5):
        expected = "(B, C, D, H, W) or (B, C, H, W)" if layout == "channels_first" else "(B, D, H, W, C) or (B, H, W, C)"
        raise ValueError(f"{name} must have shape {expected}; received a {x.ndim}-D tensor of shape {tuple(x.shape)}")
    return x.ndim - 2


def check_divisible(spatial: Sequence[int], size: Sequence[int], what: str, hint: str = "") -> None:
    """Raise unless every spatial extent is a multiple of ``size``."""
    if any(s % p for s, p in zip(spatial, size)):
        message = f"spatial shape {tuple(spatial)} is not divisible by the {what} {tuple(size)}"
        raise ValueError(message + (f"; {hint}" if hint else ""))


def check_int(value, name: str, minimum: int = 0) -> int:
    """Return ``value`` as an int, or raise unless it is an integer (not a bool) of at least ``minimum``.

    Python and numpy integers are accepted; floats, bools and strings are not,
    so a ``2.0`` that should have been ``2`` is caught where it is passed.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
        raise ValueError(f"{name} must be {kind}; received {value!r}")
    return int(value)


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive ints, in integer arithmetic (no float rounding for huge sizes)."""
    return -(-a // b)
