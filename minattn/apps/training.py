"""One training loop for the applications, and the record it keeps.

Every application trains the same way: shuffle the samples with a seeded generator, cut them into
mini-batches, and for each batch compute a loss, back-propagate, optionally clip the gradient, step
the optimiser and the learning-rate schedule. :func:`fit` is that loop; the application says only how
a batch becomes a loss. It returns a :class:`History`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .._threads import torch_threads
from .._validate import check_int

__all__ = ["History", "count_parameters", "fit"]


@dataclass
class History:
    """What a training run did.

    Attributes:
        losses: the loss of every step, in order.
        epoch_losses: per epoch, the mean loss over its samples (each step weighted by its batch size).
        seconds: wall-clock time of the run.
        parameters: trainable numbers in the model.
    """

    losses: list = field(default_factory=list)
    epoch_losses: list = field(default_factory=list)
    seconds: float = 0.0
    parameters: int = 0

    @property
    def steps(self) -> int:
        """Optimiser steps taken."""
        return len(self.losses)


def count_parameters(model: nn.Module) -> int:
    """How many numbers ``model`` learns: the sizes of its trainable parameters, summed."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fit(
    model: nn.Module,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    num_samples: int,
    optimiser: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    schedule: Callable | None = None,
    max_grad_norm: float | None = None,
    drop_last: bool = False,
    progress: bool = False,
    description: str = "training",
    threads: int | None = 1,
) -> History:
    """Train ``model`` in place on mini-batches of ``num_samples`` samples; leave it in eval mode.

    Each epoch draws one permutation of the samples from a generator seeded with ``seed`` (the
    global random state is not touched), so the same model, data and seed give the same weights.

    Args:
        model: the network; its parameters are the ones ``optimiser`` updates.
        batch_loss: ``batch_loss(index)`` -> scalar loss of the samples at ``index``, long ``(b,)``
            on the CPU; it moves the batch where the model is.
        num_samples: how many samples there are.
        optimiser: updates the parameters.
        epochs: passes over the samples.
        batch_size: samples per step.
        seed: seeds the order of the samples.
        schedule: ``schedule(optimiser, total_steps)`` -> a learning-rate scheduler stepped after
            every step; None keeps the learning rate fixed.
        max_grad_norm: clip the gradient's norm to this before each step; None: no clipping.
        drop_last: drop the last batch of an epoch when it is smaller than ``batch_size``.
        progress: show a tqdm progress bar (the notebook one inside Jupyter).
        description: the progress bar's label.
        threads: torch CPU threads while training, restored afterwards (one is fastest for the
            course's small models); None leaves torch's setting alone.

    Returns:
        :class:`History`.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("num_samples", num_samples)):
        check_int(value, name, minimum=1)
    if drop_last and num_samples < batch_size:
        raise ValueError(f"{num_samples} samples are fewer than one batch of {batch_size}, and drop_last is set")
    steps_per_epoch = num_samples // batch_size if drop_last else math.ceil(num_samples / batch_size)
    used_per_epoch = steps_per_epoch * batch_size if drop_last else num_samples
    scheduler = schedule(optimiser, epochs * steps_per_epoch) if schedule is not None else None
    generator = torch.Generator().manual_seed(int(seed))
    history = History(parameters=count_parameters(model))
    bar = None
    if progress:
        from tqdm.auto import tqdm  # a course extra, needed only for the progress bar

        bar = tqdm(total=epochs * steps_per_epoch, desc=description, unit="step")
    start = time.perf_counter()
    model.train()
    try:
        with torch_threads(threads):
            for _ in range(epochs):
                order = torch.randperm(num_samples, generator=generator)
                total = 0.0
                for step in range(steps_per_epoch):
                    index = order[step * batch_size : (step + 1) * batch_size]
                    loss = batch_loss(index)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    if max_grad_norm is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                    optimiser.step()
                    if scheduler is not None:
                        scheduler.step()
                    history.losses.append(loss.item())
                    total += history.losses[-1] * len(index)
                    if bar is not None:
                        seen = step * batch_size + len(index)
                        bar.set_postfix(loss=f"{total / seen:.3f}", refresh=False)  # this epoch's mean so far
                        bar.update(1)
                history.epoch_losses.append(total / used_per_epoch)
    finally:
        if bar is not None:
            bar.close()
        model.eval()
    history.seconds = time.perf_counter() - start
    return history
