"""Interactive explorers for the course: ipywidgets + matplotlib, no JavaScript from the internet.

Each function returns a widget (an ``ipywidgets.VBox``) to display in a
notebook. Every explorer exposes ``.controls`` (name -> widget) and ``.state``
(what it currently shows), so it can be driven from code and tested headlessly::

    from minattn.explore import window_explorer
    w = window_explorer()
    w                                   # display it
    w.controls["shifted"].value = True  # or drive it from code
    w.state["allowed"]                  # the tokens the picked token may attend to

The figure is drawn with Agg and shown as a PNG that is replaced in place on
every change, so it works the same under ``%matplotlib inline``, with
``ipympl`` or with no backend at all.

``EXPLORERS`` maps each explorer function's name to the widget class it
returns; a new explorer registers its function there (:mod:`.registry`).
"""

from .anatomy_attention import anatomy_attention_explorer
from .attention import attention_explorer
from .attention_maps import attention_map_explorer
from .cost import cost_explorer
from .fusion import fusion_explorer
from .heads import heads_explorer
from .hopfield import hopfield_explorer
from .kernel_regression import kernel_regression_explorer
from .mil import mil_explorer
from .patches import patch_explorer
from .receptive_field import receptive_field_explorer
from .registry import EXPLORERS
from .relative_bias import relative_bias_explorer
from .swin_steps import swin_steps_explorer
from .windows import window_explorer

__all__ = [
    "EXPLORERS",
    "anatomy_attention_explorer",
    "attention_explorer",
    "attention_map_explorer",
    "cost_explorer",
    "fusion_explorer",
    "heads_explorer",
    "hopfield_explorer",
    "kernel_regression_explorer",
    "mil_explorer",
    "patch_explorer",
    "receptive_field_explorer",
    "relative_bias_explorer",
    "swin_steps_explorer",
    "window_explorer",
]
