"""minattn: attention mechanisms for 3D medical imaging, from first principles.

Modules follow the course: softmax -> attention -> patches -> windows ->
multihead -> position -> window_attention -> swin, with cost calculators in
``minattn.cost``, exact attention past the memory wall in ``minattn.efficient``
and converters from PyTorch and MONAI in ``minattn.interop``. The lessons'
data are in ``minattn.data``, their explorers in ``minattn.explore`` and the
exercise checks in ``minattn.grading``.
Grids inside blocks are channels-last ``(B, D, H, W, C)``; images enter
channels-first ``(B, C, D, H, W)``; 2D works wherever 3D does.
"""

import sys as _sys

try:
    import einops as _einops  # noqa: F401
    import numpy as _numpy  # noqa: F401
    import torch as _torch  # noqa: F401
except ImportError as _missing:
    # Without its core dependencies the package still imports, so that
    # `python -m minattn.doctor` can say what is missing instead of a traceback;
    # any other use says the same.
    _HINT = (
        f"minattn needs PyTorch, NumPy and einops, and this Python ({_sys.executable}) cannot import "
        f"{_missing.name or 'one of them'} ({_missing}). Run `{_sys.executable} -m minattn.doctor` to see "
        "what to install, or run the project's set-up: `python3 course.py lab` in the project folder."
    )

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(_HINT)

else:
    from . import cost, flex_window, interop
    from ._dispatch import attention
    from .attention import scaled_dot_product_attention
    from .efficient import memory_efficient_attention
    from .flex_window import flex_window_attention
    from .memory import AttentionMemoryError, get_memory_budget, memory_budget, set_memory_budget
    from .multihead import MultiHeadAttention, merge_heads, split_heads
    from .patches import PatchEmbed, patchify, unpatchify
    from .position import RelativePositionBias, relative_position_index, sincos_position_embedding
    from .softmax import softmax
    from .swin import Mlp, PatchMerging, SwinBlock, SwinStage, set_attention_backend, shifted_window_attention
    from .swin_unetr import SwinEncoder, SwinUNETR
    from .window_attention import WindowAttention
    from .windows import (
        WindowLayout,
        cyclic_shift,
        effective_window_and_shift,
        pad_to_windows,
        shifted_window_mask,
        swin_shifts,
        window_partition,
        window_reverse,
    )

__version__ = "0.1.0"

__all__ = [
    "AttentionMemoryError",
    "Mlp",
    "MultiHeadAttention",
    "PatchEmbed",
    "PatchMerging",
    "RelativePositionBias",
    "SwinBlock",
    "SwinEncoder",
    "SwinStage",
    "SwinUNETR",
    "WindowAttention",
    "WindowLayout",
    "attention",
    "cost",
    "cyclic_shift",
    "effective_window_and_shift",
    "flex_window",
    "flex_window_attention",
    "get_memory_budget",
    "interop",
    "memory_budget",
    "memory_efficient_attention",
    "merge_heads",
    "pad_to_windows",
    "patchify",
    "relative_position_index",
    "scaled_dot_product_attention",
    "set_attention_backend",
    "set_memory_budget",
    "shifted_window_attention",
    "shifted_window_mask",
    "sincos_position_embedding",
    "softmax",
    "split_heads",
    "swin_shifts",
    "unpatchify",
    "window_partition",
    "window_reverse",
]
