"""A set of samples stored field by field: one dataclass, every tensor field holding one row per sample.

The applications' data sets (:class:`~minattn.apps.microscope.LesionVolumes`,
:class:`~minattn.apps.mil.MILBags`, :class:`~minattn.apps.fusion.Cohort`) keep images, labels and
masks side by side, row ``i`` of each belonging to sample ``i``. :class:`SampleSet` gives them their
length and a :meth:`~SampleSet.subset` that picks the same rows from every field at once.
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["SampleSet"]


class SampleSet:
    """Mixin for a dataclass whose tensor fields (and list fields) run over the samples along dim 0.

    Fields of any other type (a tile size, a grid) describe the whole set and are copied unchanged.
    """

    def _row_fields(self) -> dict:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), (torch.Tensor, list))
        }

    def __len__(self) -> int:
        for value in self._row_fields().values():
            if isinstance(value, torch.Tensor):
                return value.shape[0]
        raise TypeError(f"{type(self).__name__} has no tensor field to count samples in")

    def subset(self, index):
        """The samples at ``index``, in that order, as a new set of the same type.

        Args:
            index: a slice, a sequence or 1D tensor of integer positions (negative ones count from
                the end, repeats are kept), or a 1D boolean mask of length ``len(self)``.

        Returns:
            The same type, every tensor and list field indexed along dim 0.
        """
        rows = _rows(index, len(self))
        picked = {}
        for name, value in self._row_fields().items():
            if isinstance(rows, slice):
                picked[name] = value[rows]
            elif isinstance(value, torch.Tensor):
                picked[name] = value[rows.to(value.device)]
            else:
                picked[name] = [value[i] for i in rows.tolist()]
        return dataclasses.replace(self, **picked)


def _rows(index, n: int):
    """``index`` checked against ``n`` samples: a slice as it is, anything else as a long tensor ``(k,)``."""
    if isinstance(index, slice):
        return index
    try:
        rows = torch.as_tensor(index)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"index must be a slice, integer positions or a boolean mask; received {index!r}") from exc
    if rows.ndim != 1:
        raise ValueError(f"index must be 1D (one entry per picked sample); received shape {tuple(rows.shape)}")
    if rows.dtype == torch.bool:
        if rows.numel() != n:
            raise ValueError(f"a boolean index must have one entry per sample, {n}; received {rows.numel()}")
        return rows.nonzero().squeeze(1).cpu()
    if rows.numel() == 0:
        return rows.to(torch.long).cpu()
    if rows.is_floating_point() or rows.is_complex():
        raise ValueError(f"index must hold integers or booleans; received {rows.dtype}")
    rows = rows.to(torch.long).cpu()
    if int(rows.min()) < -n or int(rows.max()) >= n:
        raise ValueError(f"index must lie in [{-n}, {n - 1}] for {n} samples; received {rows.tolist()}")
    return rows
