"""The memory budget that guards the explicit attention path.

The explicit ``scaled_dot_product_attention`` materialises the full score
matrix. For N = 131,072 tokens that is 64 GiB in float32: allocating it would
freeze a laptop or kill the Jupyter kernel. Instead, a call whose score matrix
would exceed the budget raises :class:`AttentionMemoryError` before allocating.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

GIB = 1024**3

_budget_bytes = 2 * GIB


class AttentionMemoryError(MemoryError):
    """Raised when an explicit score matrix would exceed the memory budget."""


def get_memory_budget() -> int:
    """Return the current budget for one explicit score matrix, in bytes."""
    return _budget_bytes


def set_memory_budget(num_bytes: int) -> None:
    """Set the budget for one explicit score matrix, in bytes (default 2 GiB).

    Example: ``set_memory_budget(8 * minattn.memory.GIB)``.
    """
    global _budget_bytes
    if isinstance(num_bytes, bool) or not isinstance(num_bytes, (int, float)) or num_bytes <= 0:
        raise ValueError(f"the memory budget must be a positive number of bytes; received {num_bytes!r}")
    _budget_bytes = int(num_bytes)


@contextlib.contextmanager
def memory_budget(num_bytes: int) -> Iterator[None]:
    """Temporarily set the budget: ``with memory_budget(8 * GIB): ...``."""
    previous = get_memory_budget()
    set_memory_budget(num_bytes)
    try:
        yield
    finally:
        set_memory_budget(previous)


def format_bytes(num_bytes: int) -> str:
    """``68719476736`` -> ``'64.00 GiB'``; sizes under 1 GiB in MiB."""
    if num_bytes >= GIB:
        return f"{num_bytes / GIB:.2f} GiB"
    return f"{num_bytes / 1024**2:.2f} MiB"


def check_score_matrix_fits(shape: tuple[int, ...], element_size: int) -> None:
    """Raise :class:`AttentionMemoryError` if a tensor of ``shape`` exceeds the budget.

    The budget bounds one score matrix. The explicit path keeps a few
    matrices of that size alive at once (scores, exponentials, weights), so
    its peak is a small multiple of the budget.
    """
    needed = math.prod(shape) * element_size
    if needed > _budget_bytes:
        raise AttentionMemoryError(
            f"the explicit score matrix of shape {tuple(shape)} would need {format_bytes(needed)}, "
            f"over the memory budget of {format_bytes(_budget_bytes)}. Attend within windows "
            "(minattn.WindowAttention), use memory-efficient attention that never holds the whole matrix, "
            "or raise the budget with minattn.set_memory_budget(bytes) if your machine has the memory."
        )
