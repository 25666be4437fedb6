"""The explorer registry, checked without a browser.

A notebook page tells explorers apart by the CSS class ``minattn-explorer-<name>``,
where ``<name>`` is the function's name without ``_explorer``, dashes for underscores
(the rule the browser test uses to find each explorer a lesson calls). Every public
``*_explorer`` function must be registered, exported and named this way.
"""

import importlib
import inspect
import pkgutil

import ipywidgets as widgets
import numpy as np
import pytest

from minattn import explore
from minattn.explore import EXPLORERS, cost_explorer, registry
from minattn.explore._base import Explorer
from minattn.explore.cost import CostExplorer


def page_class(function_name: str) -> str:
    """The class the browser test looks for, written out independently of the registry."""
    return "minattn-explorer-" + function_name.removesuffix("_explorer").replace("_", "-")


def explorer_functions() -> dict:
    """Every function named ``*_explorer`` defined in a module of minattn.explore."""
    found = {}
    for info in pkgutil.iter_modules(explore.__path__):
        module = importlib.import_module(f"minattn.explore.{info.name}")
        for name, obj in vars(module).items():
            if name.endswith("_explorer") and inspect.isfunction(obj) and obj.__module__ == module.__name__:
                found[name] = obj
    return found


def test_every_explorer_function_is_registered_and_exported():
    functions = explorer_functions()
    assert len(functions) >= 12
    assert sorted(functions) == sorted(EXPLORERS)
    for name, function in functions.items():
        assert name in explore.__all__ and getattr(explore, name) is function


@pytest.mark.parametrize("name", sorted(EXPLORERS))
def test_registered_class_is_the_one_returned_and_named_like_the_function(name):
    cls = EXPLORERS[name]
    assert issubclass(cls, Explorer)
    # the function says it returns this class (annotations are strings under `from __future__ import annotations`)
    assert inspect.signature(getattr(explore, name)).return_annotation in (cls, cls.__name__)
    assert cls.css_classes() == ["minattn-explorer", page_class(name)]


def test_the_widget_carries_its_registered_class():
    widget = cost_explorer()
    assert isinstance(widget, CostExplorer)
    assert widget._dom_classes == ("minattn-explorer", "minattn-explorer-cost")


def test_a_new_explorer_is_named_by_the_function_it_registers(monkeypatch):
    monkeypatch.setattr(registry, "EXPLORERS", {})

    class Blink(Explorer):
        def build(self, figure):
            self.image = self.dynamic(figure.subplots().imshow(np.zeros((3, 5)), vmin=0, vmax=1))

        def update(self):
            self.image.set_data(np.full((3, 5), self.value("level") / 4))
            self.show_info(f"level {self.value('level')}")

    @registry.register(Blink)
    def swin_block_step_explorer():
        return Blink({"level": widgets.IntSlider(value=1, min=0, max=4)}, [["level"]], figsize=(2, 2))

    widget = swin_block_step_explorer()
    assert registry.EXPLORERS == {"swin_block_step_explorer": Blink}
    assert widget._dom_classes == ("minattn-explorer", "minattn-explorer-swin-block-step")
    widget.controls["level"].value = 3
    assert widget.state["text"] == "level 3" and "level 3" in widget.info.value


def test_register_refuses_names_and_classes_that_would_disagree(monkeypatch):
    monkeypatch.setattr(registry, "EXPLORERS", {})

    class First(Explorer):
        pass

    class Second(Explorer):
        pass

    def first_explorer():
        pass

    def plot_first():
        pass

    registry.register(First)(first_explorer)
    assert registry.register(First)(first_explorer) is first_explorer  # registering again changes nothing
    with pytest.raises(ValueError, match="must end in '_explorer'"):
        registry.register(Second)(plot_first)
    with pytest.raises(ValueError, match="first_explorer is already registered for First"):
        registry.register(Second)(first_explorer)

    def other_explorer():
        pass

    with pytest.raises(ValueError, match="First is already registered as first_explorer"):
        registry.register(First)(other_explorer)
    assert registry.EXPLORERS == {"first_explorer": First}
