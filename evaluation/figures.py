"""Figures of a run for people: the overlay, heat maps, score histograms, PR curves, galleries.

Figures are :class:`matplotlib.figure.Figure` objects built without pyplot, so nothing
here touches global plotting state.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from evaluation.detection_errors import FALSE_POSITIVE
from evaluation.metrics import plot_pr_curves
from evaluation.runs import RunData
from scoring.results import probability_column
from tiling.box import Box

__all__ = ["plot_summary", "plot_regions", "plot_boxes_and_scores", "plot_heat_maps",
           "plot_gallery"]

#: Longest side, in pixels, of a picture drawn whole; crops are always drawn at full resolution.
_DISPLAY_SIDE = 2048


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _show_picture(axes, pixels: np.ndarray, **kwargs) -> None:
    """Draw a whole picture, reduced to at most :data:`_DISPLAY_SIDE` pixels a side, in picture coordinates."""
    from PIL import Image

    height, width = pixels.shape[:2]
    factor = math.ceil(max(height, width) / _DISPLAY_SIDE)
    shown = np.asarray(Image.fromarray(pixels).reduce(factor)) if factor > 1 else pixels
    axes.imshow(shown, extent=(0, width, height, 0), interpolation="antialiased", **kwargs)


def _draw_heat_maps(figure, axes, run: RunData, *, shrink: float) -> None:
    """One heat map per class on ``axes``, over the overlay in grey, and their colour bar."""
    from matplotlib import colormaps

    cmap = colormaps["magma"].with_extremes(bad=(0, 0, 0, 0))  # cells without windows stay clear
    grey = run.overlay.mean(axis=2).astype(np.uint8)
    width, height = run.size
    for ax, cls in zip(axes, run.classes):
        grid = run.score_grid(cls)
        _show_picture(ax, grey, cmap="gray", vmin=0, vmax=255)
        shown = ax.imshow(grid.values, extent=grid.extent, cmap=cmap, vmin=0, vmax=1, alpha=0.75,
                          interpolation="nearest")
        ax.set(xlim=(0, width), ylim=(height, 0), title=f"p({cls})" + ("" if run.windows_complete else ", partial"))
        ax.axis("off")
    figure.colorbar(shown, ax=list(axes), shrink=shrink, label="window score")


def plot_summary(run: RunData, *, evaluation: dict | None = None):
    """The overlay, each class's heat map (when there are windows) and the PR curves (with an evaluation)."""
    from PIL import Image

    width, height = run.size
    panels = 1 + (len(run.classes) if run.windows is not None else 0) + (evaluation is not None)
    figure = _figure(3.6 * panels, 3.6 * max(0.6, min(1.6, height / width)) + 0.5)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    _show_picture(axes[0], run.overlay)
    axes[0].set_title(f"overlay: {len(run.boxes)} boxes")
    axes[0].axis("off")
    if run.windows is not None:
        _draw_heat_maps(figure, axes[1:1 + len(run.classes)], run, shrink=0.6)
    if evaluation is not None:
        axes[-1].imshow(np.asarray(Image.open(io.BytesIO(plot_pr_curves(evaluation)))))
        axes[-1].axis("off")
    figure.suptitle(run.url)
    return figure


def plot_regions(image: np.ndarray, regions: list[Box], *, columns: int = 3):
    """Each region of ``image`` at full resolution (one picture pixel per screen pixel, or more)."""
    if not regions:
        raise ValueError("`regions` is empty: give at least one Box")
    rows = -(-len(regions) // columns)
    cols = min(columns, len(regions))
    side = max(max(r.width, r.height) for r in regions) / 100 + 0.4  # inches at 100 dpi
    figure = _figure(max(2.5, side) * cols, (max(2.5, side) + 0.3) * rows)
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    for ax, region in zip(axes, regions):
        ax.imshow(image[region.slices()], extent=(region.x0, region.x1, region.y1, region.y0),
                  interpolation="nearest")
        ax.set_title("x {}, y {}, {} x {}".format(*(int(v) for v in region.to_xywh())), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(regions):]:
        ax.axis("off")
    return figure


def plot_boxes_and_scores(run: RunData):
    """Boxes per class, then per class the histogram of window scores and of box scores."""
    classes = run.classes
    figure = _figure(3.4 * (1 + len(classes)), 3.2)
    axes = figure.subplots(1, 1 + len(classes), squeeze=False)[0]
    counts = run.boxes["class"].value_counts().reindex(classes, fill_value=0)
    bars = axes[0].bar(classes, counts.to_numpy(), color=[run.colors.get(c, "gray") for c in classes])
    axes[0].bar_label(bars)
    axes[0].set(title="boxes per class", ylabel="boxes")
    bins = np.linspace(0, 1, 41)
    for ax, cls in zip(axes[1:], classes):
        shown = 0
        if run.windows is not None:
            shown += len(run.windows)
            ax.hist(run.windows[probability_column(cls)], bins=bins, color="0.6",
                    label="windows" + ("" if run.windows_complete else " (kept)"))
        scores = run.boxes.loc[run.boxes["class"] == cls, "score"]
        shown += len(scores)
        ax.hist(scores, bins=bins, color=run.colors.get(cls, "C0"), alpha=0.8, label="boxes")
        if cls in run.thresholds:
            ax.axvline(run.thresholds[cls], color="k", linestyle="--", linewidth=1, label="threshold")
        # A log axis of empty histograms only draws matplotlib's warning.
        ax.set(title=f"scores: {cls}", xlabel=f"p({cls})", yscale="log" if shown else "linear", xlim=(0, 1))
        ax.legend(fontsize=8)
    return figure


def plot_heat_maps(run: RunData):
    """Each class's window score over the picture (blank where no window was kept)."""
    width, height = run.size
    panels = len(run.classes)
    figure = _figure(5.5 * panels, 5.5 * max(0.5, min(1.6, height / width)) + 0.6)
    _draw_heat_maps(figure, figure.subplots(1, panels, squeeze=False)[0], run, shrink=0.7)
    return figure


def plot_gallery(image: np.ndarray, errors: pd.DataFrame, *, title: str, limit: int = 24, columns: int = 8):
    """The first ``limit`` rows of :func:`error_table` as enlarged crops captioned with their scores."""
    shown = errors.head(limit)
    rows = max(1, -(-len(shown) // columns))
    figure = _figure(1.25 * columns, 1.45 * rows + 0.4)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, row in zip(axes, shown.itertuples(index=False)):
        ax.imshow(image[Box(row.x0, row.y0, row.x1, row.y1).slices()], interpolation="nearest")
        score = "n/a" if np.isnan(row.score) else f"{row.score:.2f}"
        if row.kind == FALSE_POSITIVE:
            caption = f"{row.predicted} {score}\ntrue: {row.true_class}"
        else:
            caption = f"{row.true_class}: best {score}\nvisible {row.visible_fraction:.0%}"
        ax.set_title(caption, fontsize=7)
    if not len(shown):
        axes[0].text(0, 0.5, "none", fontsize=12)
    figure.suptitle(f"{title} ({len(shown)} of {len(errors)})")
    return figure
