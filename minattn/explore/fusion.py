"""Explorer 11: attention as a fusion engine, one patient and one clinical query at a time.

A trained :class:`minattn.apps.fusion.CrossAttentionFusion` lets each clinical
token (age, site, sex, lab) query the 6 x 6 image tokens of a patient's slice.
Pick a patient and a query: the left panel draws that query's attention over
the slice, with the region the clinical exam points to (orange box) and the
lesions (cyan circles); the middle panel gives the 36 weights themselves; the
right panel compares, for this patient, the share of each query's attention
that falls in the exam's region with chance (1/4) and with the cohort's mean.
The line below the figure gives the patient's age, outcome, the model's
probability and the chosen query's share in the exam's region.

The maps and probabilities of the whole cohort are computed once, when the
explorer is made (:func:`minattn.apps.fusion.query_maps` and
:func:`minattn.apps.fusion.evaluate`); changing the patient or the query only
picks rows and redraws.

:func:`show_patient` (and the :class:`PatientView` it makes) draws one patient
the same way in a plain matplotlib axes; the lesson uses it for its figures.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.patches import Circle, Rectangle

from ..apps.fusion import (
    AGE_THRESHOLD,
    CLINICAL_TOKENS,
    GRID,
    IMAGE_SIZE,
    REGIONS,
    Cohort,
    CrossAttentionFusion,
    evaluate,
    query_maps,
    region_of_tokens,
)
from ._base import Explorer, ExplorerError, Heatmap
from .registry import register
from .text import NumberLayer

__all__ = ["FusionExplorer", "PatientView", "fusion_explorer", "show_patient"]

_SITE_COLOUR = "#ffb000"  # the region the exam points to
_LESION_COLOUR = "#00e5ff"
_HALF = IMAGE_SIZE // 2
_CHOSEN, _OTHER = "#d62728", "#9e9e9e"


class PatientView:
    """One patient's slice in a matplotlib axes, drawn once and refilled in place by :meth:`show`.

    Draws the slice ``(48, 48)`` (gray, HU / 100 shown on [-1.5, 3.5]), an
    optional ``(GRID, GRID)`` map stretched over it (``cmap``, ``alpha``), the
    four regions (dashed white lines), the region the exam points to (orange
    box) and the lesions (cyan circles, one per region that holds one).

    Args:
        ax: the axes to draw in.
        alpha: opacity of the map.
        cmap: colormap of the map.
    """

    def __init__(self, ax, alpha: float = 0.55, cmap: str = "magma"):
        self.ax = ax
        extent = (-0.5, IMAGE_SIZE - 0.5, IMAGE_SIZE - 0.5, -0.5)
        self.image = ax.imshow(np.zeros((IMAGE_SIZE, IMAGE_SIZE)), cmap="gray", vmin=-1.5, vmax=3.5)
        self.overlay = ax.imshow(
            np.zeros((GRID, GRID)), cmap=cmap, alpha=alpha, extent=extent, interpolation="nearest", visible=False
        )
        ax.axhline(_HALF - 0.5, color="w", ls="--", lw=0.7)
        ax.axvline(_HALF - 0.5, color="w", ls="--", lw=0.7)
        self.box = ax.add_patch(Rectangle((-0.5, -0.5), _HALF, _HALF, fill=False, ec=_SITE_COLOUR, lw=2))
        self.circles = [
            ax.add_patch(Circle((0.0, 0.0), 4.5, fill=False, ec=_LESION_COLOUR, lw=1, visible=False)) for _ in REGIONS
        ]
        ax.set_xlabel("W (px)")
        ax.set_ylabel("H (px)")

    @property
    def artists(self) -> list:
        """The artists :meth:`show` changes (an explorer redraws only these)."""
        return [self.image, self.overlay, self.box, *self.circles]

    def show(self, cohort: Cohort, i: int, overlay=None, vmin: float | None = None, vmax: float | None = None):
        """Show patient ``i`` of ``cohort``, with ``overlay`` ``(GRID, GRID)`` over it (None: no map).

        The map's colour scale runs from ``vmin`` to ``vmax``, by default its own
        minimum and maximum (as ``imshow`` would scale it). Returns ``self``.
        """
        self.image.set_data(cohort.images[i, 0].numpy())
        if overlay is None:
            self.overlay.set_visible(False)
        else:
            overlay = np.asarray(overlay, dtype=float)
            if overlay.shape != (GRID, GRID):
                raise ValueError(f"overlay must have shape ({GRID}, {GRID}); received {overlay.shape}")
            low = float(overlay.min()) if vmin is None else vmin
            high = float(overlay.max()) if vmax is None else vmax
            self.overlay.set_data(overlay)
            self.overlay.set_clim(low, high if high > low else low + 1e-9)
            self.overlay.set_visible(True)
        site = int(cohort.site[i])
        self.box.set_xy(((site % 2) * _HALF - 0.5, (site // 2) * _HALF - 0.5))
        for region, circle in enumerate(self.circles):
            present = bool(cohort.lesions[i, region])
            circle.set_visible(present)
            if present:
                row, col = cohort.lesion_centres[i, region].tolist()
                circle.set_center((col, row))
        return self


def show_patient(ax, cohort: Cohort, i: int, overlay=None, title: str | None = None) -> PatientView:
    """Draw patient ``i`` of ``cohort`` in ``ax`` (see :class:`PatientView`), with a title.

    ``overlay``: a ``(GRID, GRID)`` map (e.g. one row of
    :func:`minattn.apps.fusion.query_maps`) drawn over the slice, on its own
    colour scale. The default title gives the age, the exam's region and the outcome.
    """
    view = PatientView(ax).show(cohort, i, overlay)
    site = int(cohort.site[i])
    ax.set_title(
        title or f"age {float(cohort.age[i]):.0f}, site: {REGIONS[site]}\noutcome {int(cohort.outcome[i])}",
        fontsize=9,
    )
    return view


class FusionExplorer(Explorer):
    title = "Attention as a fusion engine: where does each clinical query read the image?"
    description = (
        "Three panels: the patient's image with its lesions circled, the exam's region outlined in orange and the "
        "chosen clinical query's attention laid over it; that attention as 6 x 6 numbers, one per image token; "
        "and for each clinical query a bar of the share of its attention inside the region, with the cohort's "
        "mean as a black tick and chance (a quarter) dashed."
    )

    def __init__(self, model, cohort: Cohort, patient: int | None = None, query: str = "site"):
        if not isinstance(model, CrossAttentionFusion):
            raise ValueError(  # noqa: TRY004 - the package's bad-input error is a ValueError
                "model must be a trained CrossAttentionFusion (minattn.apps.fusion.train_fusion(..., 'cross')); "
                f"received {type(model).__name__}"
            )
        if not isinstance(cohort, Cohort) or len(cohort) == 0:
            raise ValueError(
                f"cohort must be a non-empty Cohort (minattn.apps.fusion.make_cohort); received {type(cohort).__name__}"
            )
        if query not in CLINICAL_TOKENS:
            raise ValueError(f"query must be one of {list(CLINICAL_TOKENS)}; received {query!r}")
        self.model = model
        self.cohort = cohort
        n = len(cohort)
        # Everything shown is computed once: an update only picks rows.
        with torch.no_grad():
            self.maps = query_maps(model, cohort).numpy()  # (n, 4, GRID, GRID)
            self.probabilities = evaluate(model, cohort)["probabilities"].numpy()  # (n,)
        self.regions = region_of_tokens().reshape(GRID, GRID).numpy()  # (GRID, GRID) region of each token
        in_site = self.regions[None, :, :] == cohort.site.numpy()[:, None, None]  # (n, GRID, GRID)
        self.shares = (self.maps * in_site[:, None]).sum((-2, -1))  # (n, 4): each query's share in the site's region
        if patient is None:  # start on a patient whose image decides and who has decoys: the interesting case
            interesting = ((cohort.age >= AGE_THRESHOLD) & cohort.finding & (cohort.lesions.sum(1) >= 2)).nonzero()
            patient = int(interesting[0]) if len(interesting) else 0
        if isinstance(patient, bool) or not isinstance(patient, (int, np.integer)) or not 0 <= patient < n:
            raise ValueError(f"patient must be an int in 0..{n - 1}; received {patient!r}")
        style = {"description_width": "initial"}
        controls = {
            "patient": widgets.IntSlider(
                value=int(patient), min=0, max=n - 1, description="test patient", style=style, continuous_update=True
            ),
            "query": widgets.Dropdown(
                options=list(CLINICAL_TOKENS), value=query, description="clinical query", style=style
            ),
        }
        super().__init__(controls, [["patient", "query"]], figsize=(12, 4.3))

    # -- drawing --------------------------------------------------------------------------------
    def build(self, figure) -> None:
        ax_image, ax_map, ax_bars = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1.0, 1.0, 1.15]})
        figure.subplots_adjust(left=0.05, right=0.98, bottom=0.15, top=0.82, wspace=0.32)
        self.ax_image, self.ax_map, self.ax_bars = ax_image, ax_map, ax_bars
        self.view = PatientView(ax_image, alpha=0.6)
        self.dynamic(*self.view.artists)
        self.image_title = self.label(ax_image, fontsize=9)

        self.weights = Heatmap(self, ax_map, max_cells=GRID * GRID, cmap="magma", fmt="{:.2f}".format, fontsize=8)
        self.weights.set(np.zeros((GRID, GRID)), range(GRID), range(GRID), vmin=0.0, vmax=1.0)
        ax_map.set_aspect("equal")
        ax_map.set_xlabel("image token column")
        ax_map.set_ylabel("image token row")
        self.map_box = self.dynamic(
            ax_map.add_patch(Rectangle((-0.5, -0.5), GRID // 2, GRID // 2, fill=False, ec=_SITE_COLOUR, lw=2.5))
        )
        self.map_title = self.label(ax_map, fontsize=9)

        k = len(CLINICAL_TOKENS)
        self.bars = ax_bars.bar(range(k), np.zeros(k), color=_OTHER, edgecolor="black", linewidth=0.5)
        self.dynamic(*self.bars)
        self.bar_numbers = NumberLayer(fontsize=8)
        ax_bars.add_artist(self.bar_numbers)
        self.dynamic(self.bar_numbers)
        ax_bars.axhline(0.25, color="#1f77b4", ls="--", lw=1)
        ax_bars.text(
            -0.5, 1.05, "dashed: chance (the region is 1/4 of the image)", color="#1f77b4", fontsize=8, va="top"
        )
        cohort_mean = self.shares.mean(0)
        ax_bars.scatter(range(k), cohort_mean, marker="_", s=500, color="black", linewidths=1.5, zorder=3)
        ax_bars.set_xticks(range(k), [f"{name}\nquery" for name in CLINICAL_TOKENS])
        ax_bars.set_xlim(-0.6, k - 0.4)
        ax_bars.set_ylim(0, 1.08)
        ax_bars.set_ylabel("share of the query's attention\nin the exam's region")
        ax_bars.set_title("this patient (bars) and the cohort's mean (black)", fontsize=9)

    def update(self) -> None:
        n = len(self.cohort)
        patient = int(self.value("patient"))
        if not 0 <= patient < n:
            raise ExplorerError(f"patient must lie in 0..{n - 1}; received {patient}")
        query = self.value("query")
        t = CLINICAL_TOKENS.index(query)
        cohort = self.cohort
        attention = self.maps[patient, t]  # (GRID, GRID), sums to 1
        top = float(self.maps[patient].max())  # one colour scale per patient, so the four queries compare
        self.view.show(cohort, patient, attention, vmin=0.0, vmax=top)
        self.weights.set(attention, range(GRID), range(GRID), vmin=0.0, vmax=top)
        site = int(cohort.site[patient])
        self.map_box.set_xy(((site % 2) * (GRID // 2) - 0.5, (site // 2) * (GRID // 2) - 0.5))
        shares = self.shares[patient]
        for j, bar in enumerate(self.bars):
            bar.set_height(float(shares[j]))
            bar.set_facecolor(_CHOSEN if j == t else _OTHER)
        self.bar_numbers.set_items(  # at the foot of each bar, clear of the cohort's marks
            (j, 0.04, f"{shares[j]:.2f}", "white" if j == t and shares[j] > 0.08 else "black")
            for j in range(len(shares))
        )

        age = float(cohort.age[patient])
        outcome = int(cohort.outcome[patient])
        probability = float(self.probabilities[patient])
        share = float(shares[t])
        finding = bool(cohort.finding[patient])
        lesions = int(cohort.lesions[patient].sum())
        region = REGIONS[site]
        self.image_title.set_text(
            f"patient {patient}: age {age:.0f}, outcome {outcome}, P = {probability:.2f}\n"
            f"{query} query's attention; exam points to {region}"
        )
        self.map_title.set_text(f"{query} query: the 36 weights (sum 1)\n{share:.2f} of them in the orange region")
        self.state.update(
            patient=patient,
            query=query,
            map=attention,
            probability=probability,
            share_in_region=share,
            shares=shares,
            age=age,
            outcome=outcome,
            site=region,
            finding=finding,
            lesions=lesions,
        )
        if age >= AGE_THRESHOLD:
            rule = f"from {AGE_THRESHOLD:.0f} on, the outcome follows the finding"
        else:
            rule = f"under {AGE_THRESHOLD:.0f}, the outcome is a coin that never looks at the image"
        text = (
            f"Patient {patient}, age {age:.0f} ({rule}): the exam points to the {region} region, which "
            f"{'holds a' if finding else 'holds no'} lesion ({lesions} in the whole slice). "
            f"Outcome {outcome}; the model's P(outcome) = {probability:.2f}. "
            f"The {query} query puts {100 * share:.0f}% of its attention in the exam's region (chance: 25%)."
        )
        self.show_info(text)


@register(FusionExplorer)
def fusion_explorer(model, cohort: Cohort, patient: int | None = None, query: str = "site") -> FusionExplorer:
    """A cohort's patients with the attention each clinical query of a fusion model puts on the image.

    Args:
        model: a trained :class:`minattn.apps.fusion.CrossAttentionFusion`
            (one-way or bidirectional: the clinical-to-image weights are shown).
        cohort: the patients to show (:func:`minattn.apps.fusion.make_cohort`),
            images ``(n, 1, 48, 48)``; their maps ``(n, 4, 6, 6)`` and
            probabilities ``(n,)`` are computed once, here.
        patient: the patient to show first (default: the first one aged 60 or
            more whose exam's region holds a lesion, with at least one decoy).
        query: the clinical query to show first, one of
            :data:`minattn.apps.fusion.CLINICAL_TOKENS`.
    """
    return FusionExplorer(model, cohort, patient, query)
