"""Whether a module, or one inside it, has forward hooks: shortcuts that skip calling it must not skip them."""

from __future__ import annotations

from torch import nn


def has_forward_hooks(*modules: nn.Module) -> bool:
    """True when any of ``modules``, or any module inside them, has a forward hook or pre-hook."""
    return any(m._forward_hooks or m._forward_pre_hooks for module in modules for m in module.modules())
