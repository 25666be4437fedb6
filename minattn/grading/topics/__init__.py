"""The exercises, one module per topic, in the order the course teaches them.

Each module holds its topic's references, hidden cases, recognised bugs,
units and ruled-out calls, and lists its exercises in ``EXERCISES``; adding a
check means editing one of these files. :data:`EXERCISES` maps every
exercise's name to it.
"""

from __future__ import annotations

from . import (
    attention,
    cost,
    fusion,
    heads,
    hopfield,
    kernel_regression,
    long_range,
    microscope,
    mil,
    patches,
    position,
    segmentation,
    softmax,
    swin,
    windows,
)

TOPICS = (
    softmax,
    attention,
    patches,
    cost,
    windows,
    heads,
    position,
    swin,
    microscope,
    mil,
    fusion,
    kernel_regression,
    hopfield,
    long_range,
    segmentation,
)


def _registry() -> dict:
    exercises: dict = {}
    for topic in TOPICS:
        for exercise in topic.EXERCISES:
            if exercise.name in exercises:
                raise ValueError(f"two exercises are named {exercise.name!r} (one in {topic.__name__})")
            exercises[exercise.name] = exercise
    return exercises


EXERCISES = _registry()
