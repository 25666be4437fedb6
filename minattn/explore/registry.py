"""Which explorers exist: each public ``*_explorer`` function, the class of widget it returns, its CSS class.

A notebook page tells explorers apart by a CSS class named after the
function: ``relative_bias_explorer`` -> ``minattn-explorer-relative-bias``.
The class is derived here from the function's name, so the page's name and
the function's cannot drift apart. An explorer module registers its function::

    @register(SwinBlockExplorer)
    def swin_block_explorer(...) -> SwinBlockExplorer:
        return SwinBlockExplorer(...)

and ``minattn/explore/__init__.py`` imports it; ``tests/test_explore_registry.py``
checks that every ``*_explorer`` function is registered and exported.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["EXPLORERS", "css_class", "function_name", "register"]

EXPLORERS: dict[str, type] = {}  # public function name -> the explorer class it returns
SUFFIX = "_explorer"


def css_class(function: str) -> str:
    """``relative_bias_explorer`` -> ``minattn-explorer-relative-bias``, the explorer's class in the page."""
    if not function.endswith(SUFFIX) or function == SUFFIX:
        raise ValueError(f"an explorer function's name must end in {SUFFIX!r}; received {function!r}")
    return "minattn-explorer-" + function.removesuffix(SUFFIX).replace("_", "-")


def function_name(explorer_class: type) -> str | None:
    """The public function registered for ``explorer_class``, or None if it has none."""
    return next((name for name, cls in EXPLORERS.items() if cls is explorer_class), None)


def register(explorer_class: type) -> Callable:
    """Decorate the public function that makes an ``explorer_class``: it is entered in :data:`EXPLORERS`.

    Raises:
        ValueError: the function's name does not end in ``_explorer``, the name
            is already taken by another class, or the class already has a function.
    """

    def enter(function: Callable) -> Callable:
        name = function.__name__
        css_class(name)
        taken = EXPLORERS.get(name)
        if taken is not None and taken is not explorer_class:
            raise ValueError(f"{name} is already registered for {taken.__name__}")
        other = function_name(explorer_class)
        if other not in (None, name):
            raise ValueError(f"{explorer_class.__name__} is already registered as {other}")
        EXPLORERS[name] = explorer_class
        return function

    return enter
