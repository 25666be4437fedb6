"""Calling learner code safely: a time limit, caught exceptions, a short traceback.

The learner's function runs in a daemon thread while the caller waits with a
timeout, so an infinite loop cannot freeze the Jupyter kernel and nothing has
to be killed. Python cannot kill a thread. After a timeout the grader asks
CPython to raise an exception inside the stuck thread (``PyThreadState_SetAsyncExc``),
which ends a loop written in Python within milliseconds; a thread stuck inside
one long C call (a huge tensor operation) only stops when that call returns.
A thread that cannot be stopped is abandoned: being a daemon it never blocks
the interpreter from exiting, but it keeps using a CPU core until then, so the
timeout feedback tells the learner to restart the kernel if things get slow.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import os
import re
import sys
import sysconfig
import threading
import traceback
from dataclasses import dataclass
from typing import Any

import torch

_GRADER_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_DIR = os.path.dirname(_GRADER_DIR)


class _StopLearnerThread(BaseException):
    """Raised inside a timed-out learner thread to end it (a BaseException, so `except Exception` cannot swallow it)."""


@dataclass
class Outcome:
    """How one call of the learner's function went.

    ``status`` is ``"returned"`` (``value`` holds the result), ``"raised"``
    (``error`` holds the exception) or ``"timeout"`` (``stopped`` says whether
    the stuck thread could be ended).
    """

    status: str
    value: Any = None
    error: BaseException | None = None
    stopped: bool = False
    ruled_out: str | None = None


def call_with_timeout(fn, args=(), kwargs=None, timeout: float = 10.0, watch=None) -> Outcome:
    """Run ``fn(*args, **kwargs)`` in a daemon thread; wait at most ``timeout`` seconds.

    Every exception of ``fn`` is caught and returned. A ``KeyboardInterrupt``
    while waiting (the learner pressing "interrupt") propagates as usual.
    ``watch`` (a :class:`~minattn.grading.shortcuts.CallWatch`) is entered in
    that thread; the first ruled-out call it caught is ``Outcome.ruled_out``.
    """
    kwargs = {} if kwargs is None else kwargs
    box: dict[str, Any] = {}
    done = threading.Event()
    cuda_device = _current_cuda_device()

    def target():
        # The outer suppress: a stop request that arrives late must not print a thread traceback.
        with contextlib.suppress(BaseException):
            try:
                _enter_cuda_device(cuda_device)
                with watch if watch is not None else contextlib.nullcontext():
                    box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - everything the learner raises is reported
                box["error"] = exc
            finally:
                done.set()

    thread = threading.Thread(target=target, name="minattn-grading-learner", daemon=True)
    thread.start()
    if not done.wait(max(timeout, 0.0)):
        return Outcome("timeout", stopped=_try_to_stop(thread))
    caught = watch.found if watch is not None else None
    if "error" in box:
        return Outcome("raised", error=box["error"], ruled_out=caught)
    return Outcome("returned", value=box.get("value"), ruled_out=caught)


def _current_cuda_device() -> int | None:
    try:
        return torch.cuda.current_device() if torch.cuda.is_initialized() else None
    except Exception:  # noqa: BLE001
        return None


def _enter_cuda_device(device: int | None) -> None:
    """Make the caller's CUDA device current in this (new) thread.

    A new thread has no current CUDA context; without this, cuBLAS warns "no
    current CUDA context" on the learner's first matrix product.
    """
    if device is None:
        return
    with contextlib.suppress(Exception):  # the learner's code will then meet the problem itself
        torch.cuda.set_device(device)


def _try_to_stop(thread: threading.Thread, wait: float = 0.3) -> bool:
    """Ask CPython to raise inside ``thread``; return True if the thread then ended."""
    if thread.ident is None or sys.implementation.name != "cpython":
        return False
    try:
        set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
        set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
        set_async_exc.restype = ctypes.c_int
        if set_async_exc(thread.ident, _StopLearnerThread) != 1:
            return False
    except Exception:  # noqa: BLE001 - stopping is best effort
        return False
    thread.join(wait)
    return not thread.is_alive()


# ----------------------------------------------------------------------------- signatures


def unaccepted_arguments(fn, args: tuple, kwargs: dict) -> list[str] | None:
    """Why ``fn`` cannot take ``(args, kwargs)``: the names it lacks, or None if it can.

    Functions whose signature cannot be read (builtins) are assumed to accept
    everything. When the mismatch is not about keyword names, the list holds
    Python's own message.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
        return None
    except TypeError as exc:
        params = signature.parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            missing = [name for name in kwargs if name not in params]
            if missing:
                return missing
        return [str(exc)]


# ----------------------------------------------------------------------------- tracebacks


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.add(_PACKAGE_DIR)
    return tuple(os.path.abspath(d) + os.sep for d in dirs if d)


_LIBRARY_DIRS = _library_dirs()


def _is_grader(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_GRADER_DIR + os.sep)


def _is_library(filename: str) -> bool:
    if filename.startswith("<"):
        return filename.startswith("<frozen")  # "<string>", "<ipython-input-...>" are the learner's
    return os.path.abspath(filename).startswith(_LIBRARY_DIRS)


_CELL_FILE = re.compile(r"ipykernel_\d+[/\\]\d+\.py$")


def _cell_name(filename: str) -> str | None:
    """``"Cell In[3]"`` for code typed in a Jupyter cell, as IPython names it; None elsewhere."""
    if not _CELL_FILE.search(filename):
        return None
    number = None
    with contextlib.suppress(Exception):  # IPython internals may change: fall back to a plain name
        shell = sys.modules["IPython"].get_ipython()
        number = shell.compile._filename_map.get(filename)  # filled by IPython for every cell it runs
    return f"Cell In[{number}]" if number is not None else "a notebook cell"


def _short_name(filename: str) -> str:
    cell = _cell_name(filename)
    if cell:
        return cell
    absolute = os.path.abspath(filename) if not filename.startswith("<") else filename
    for directory in _LIBRARY_DIRS:
        if absolute.startswith(directory):
            return absolute[len(directory) :]
    return filename


def learner_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The traceback frames worth showing: the learner's own, plus the innermost one.

    Frames of the grader are dropped, and so are library frames between the
    learner's code and the place the error was raised, except the innermost
    (it tells where the error came from).
    """
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _is_grader(f.filename)]
    keep = [i for i, f in enumerate(frames) if not _is_library(f.filename)]
    if frames and (not keep or keep[-1] != len(frames) - 1):
        keep.append(len(frames) - 1)
    return [frames[i] for i in keep]


def format_exception(exc: BaseException, max_lines: int = 8, max_message: int = 600) -> str:
    """A short traceback (at most ``max_lines`` frame lines) and the exception's message."""
    lines: list[str] = []
    for frame in learner_frames(exc):
        name = _short_name(frame.filename)
        place = name if name.startswith(("Cell In[", "a notebook cell")) else f'File "{name}"'
        lines.append(f"  {place}, line {frame.lineno}, in {frame.name}")
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    if len(lines) > max_lines:
        lines = ["  ..."] + lines[-(max_lines - 1) :]
    message = str(exc)
    if len(message) > max_message:
        message = message[:max_message] + " ..."
    head = "Traceback (most recent call last, your code and where it failed):"
    return "\n".join([head, *lines, f"{type(exc).__name__}: {message}" if message else type(exc).__name__])


def is_placeholder(exc: BaseException) -> bool:
    """True if ``exc`` is the exercise template's ``raise NotImplementedError`` in the learner's code.

    A ``NotImplementedError`` raised by PyTorch (an operation missing on some
    device) is not a placeholder.
    """
    if not isinstance(exc, NotImplementedError):
        return False
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _is_grader(f.filename)]
    if not frames:
        return True
    innermost = frames[-1]
    if _is_library(innermost.filename):
        return False
    line = (innermost.line or "").strip()
    return not line or line.startswith("raise NotImplementedError")
