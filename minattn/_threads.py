"""How many CPU threads torch uses, set for the length of a ``with`` block.

The course's tensors are small. For them one thread beats a thread pool: a second thread that has to
wait for a busy core costs more than it saves (on a loaded 2-core machine, training the lesson-sized
models was measured 10 to 40 times slower on two threads than on one). Training loops, widgets and
the grader therefore run their work inside :func:`single_thread`.
"""

from __future__ import annotations

import contextlib

import torch

from ._validate import check_int

__all__ = ["single_thread", "torch_threads"]


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run torch's CPU operations on ``count`` threads inside the block, then restore the previous count.

    The previous count comes back however the block ends, exception included.

    Args:
        count: threads to use, at least 1; ``None`` leaves torch's setting alone (the block runs as it is).
    """
    if count is not None:
        count = check_int(count, "count", minimum=1)
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def single_thread():
    """``with single_thread():`` runs the block on one torch thread (see :func:`torch_threads`)."""
    return torch_threads(1)
