"""Sizes written the short way: one int for every axis of a 3D grid, or one int per axis.

A patch, a window or a shift of a 3D grid is often the same along D, H and W,
so code accepts ``4`` for ``(4, 4, 4)``. :func:`as_triple` turns either form
into the three sizes, one per axis; the exercises of lessons 03-07 unpack it
as ``wd, wh, ww = as_triple(window_size)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

__all__ = ["as_triple"]


def as_triple(size, name: str = "size") -> tuple[int, int, int]:
    """One size per axis (D, H, W): ``4 -> (4, 4, 4)``; ``(2, 4, 4)`` stays ``(2, 4, 4)``.

    Args:
        size: an int, used along all three axes, or a sequence of three ints.
            Python, NumPy and tensor integers are accepted. Zero and negative
            values pass unchanged: a shift of ``(-1, 0, 2)`` is a valid size here.
        name: what ``size`` is, named in the error message.

    Returns:
        A tuple of three Python ints.

    Raises:
        ValueError: ``size`` is not an int or three ints.
    """
    if hasattr(size, "tolist") and not isinstance(size, numbers.Integral):
        size = size.tolist()  # a tensor or NumPy array: a plain int or list
    if _is_int(size):
        return (int(size),) * 3
    values = tuple(size) if isinstance(size, Sequence) and not isinstance(size, str) else ()
    if len(values) != 3 or not all(_is_int(v) for v in values):
        raise ValueError(f"{name} must be an int or three ints (D, H, W); received {size!r}")
    return tuple(int(v) for v in values)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
