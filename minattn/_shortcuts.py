"""When a module may take a shortcut past its plain route (same numbers, sooner).

Shortcuts that skip calling a submodule must not skip hooks waiting on it, and
shortcuts written for inference must step aside when autograd needs a graph.
"""

from __future__ import annotations

import torch
from torch import nn


def has_forward_hooks(*modules: nn.Module) -> bool:
    """True when any of ``modules``, or any module inside them, has a forward hook or pre-hook."""
    return any(m._forward_hooks or m._forward_pre_hooks for module in modules for m in module.modules())


def needs_graph(module: nn.Module, x: torch.Tensor) -> bool:
    """True when autograd records ``module`` applied to ``x``: gradients are on and ``x`` or a parameter wants one."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters()))
