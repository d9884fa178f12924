"""The detector's training data: windows cut from collages, labelled from the collage's geometry.

Collages come from the project's own generator (:mod:`collage`) in several styles: tiles
matched to the colours of random synthetic pictures or picked at random, on grids of
various steps and jitters. A window is labelled by :class:`LabelRule` from where the
tiles lie and which of their pixels still show, never by looking at the pixels; windows
of noise, flat colours and gradients are added as negatives.

Coordinates follow :mod:`tiling.box`: pixels, ``x`` to the right, ``y`` down, half-open.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collage import Collage, CollageParams
from tiling.box import box_deltas

__all__ = ["IGNORE", "LabelRule", "LabelledWindows", "label_windows", "sample_windows", "negative_windows",
           "synthetic_target", "random_collage_params", "flip_horizontally"]

#: The label of a window that is neither clearly an object nor clearly background.
IGNORE = -1


@dataclass(frozen=True)
class LabelRule:
    """How a window is labelled from the tiles under it.

    For a window ``W`` and a foreground tile ``P`` (a car or a boat), ``iou`` is the IoU of
    ``W`` with ``P``'s whole box and ``visible`` the share of ``W``'s pixels where ``P``
    shows (not covered by a later tile).

    - **object** (``P``'s class, box target ``P``'s box): ``P`` is counted in the ground
      truth (at least ``min_visible`` of it shows, as for COCO evaluation) and
      ``iou >= positive_iou`` and ``visible >= positive_visible``; the best such ``P`` by IoU.
      0.35 admits every tile's nearest window on a stride-16 grid (IoU >= 0.39 at worst).
    - **background**: no foreground tile has ``iou >= background_iou`` and
      ``visible >= background_visible``.
    - **ignored**: anything else (the class loss skips it).

    A window also gets a box target, objects and ignored windows alike, when a counted tile
    has ``iou >= box_iou`` and ``visible >= box_visible``: windows near an object, which
    may fire at scoring time, learn where it is.
    """

    positive_iou: float = 0.35
    positive_visible: float = 0.25
    background_iou: float = 0.2
    background_visible: float = 0.1
    box_iou: float = 0.25
    box_visible: float = 0.15

    def __post_init__(self) -> None:
        for name in ("positive_iou", "positive_visible", "background_iou", "background_visible", "box_iou",
                     "box_visible"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"`{name}` must be in [0, 1], got {value}")
        if self.background_iou > self.positive_iou:
            raise ValueError(f"`background_iou` ({self.background_iou}) must not exceed `positive_iou` "
                             f"({self.positive_iou})")


@dataclass(frozen=True)
class LabelledWindows:
    """Windows with their labels.

    ``images`` (N, S, S, 3) uint8; ``labels`` (N,) int64 class index or :data:`IGNORE`;
    ``deltas`` (N, 4) float32 box targets (:data:`tiling.box.BOX_ENCODING`), meaningful where
    ``has_box`` (N,) bool.
    """

    images: np.ndarray
    labels: np.ndarray
    deltas: np.ndarray
    has_box: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices) -> LabelledWindows:
        return LabelledWindows(self.images[indices], self.labels[indices], self.deltas[indices], self.has_box[indices])

    @staticmethod
    def concatenate(parts) -> LabelledWindows:
        parts = list(parts)
        return LabelledWindows(*(np.concatenate([getattr(p, f) for p in parts])
                                 for f in ("images", "labels", "deltas", "has_box")))


def label_windows(collage: Collage, origins: np.ndarray, classes, background: str, *, window: int = 32,
                  rule: LabelRule = LabelRule()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels of the ``window x window`` windows at ``origins`` of ``collage`` by ``rule``.

    Parameters
    ----------
    collage : Collage
    origins : numpy.ndarray
        ``(N, 2)`` int ``(x, y)`` top-left corners, each window inside the collage.
    classes : sequence of str
        The model's classes; labels are indices into it.
    background : str
        The background class; tiles of any class not in ``classes`` count as background.

    Returns
    -------
    labels, deltas, has_box : numpy.ndarray
        ``(N,)`` int64, ``(N, 4)`` float32, ``(N,)`` bool; see :class:`LabelledWindows`.
    """
    origins = np.asarray(origins, dtype=np.int64).reshape(-1, 2)
    height, width = collage.owner.shape
    if len(origins) and (origins.min() < 0 or (origins[:, 0] + window).max() > width
                         or (origins[:, 1] + window).max() > height):
        raise ValueError(f"`origins` must keep {window}-pixel windows inside the {width}x{height} collage")
    classes = list(classes)
    p = collage.placements
    t = p.tile_size
    index = {c: k for k, c in enumerate(classes) if c != background}
    tile_class = np.array([index.get(str(c), -1) for c in p.label], dtype=np.int64)
    visible = np.bincount(collage.owner.ravel(), minlength=len(p)) / float(t * t)
    counted = visible >= collage.params.min_visible
    rows = origins[:, 1, None] + np.arange(window)
    cols = origins[:, 0, None] + np.arange(window)
    patches = collage.owner[rows[:, :, None], cols[:, None, :]].reshape(len(origins), -1)

    labels = np.full(len(origins), classes.index(background), dtype=np.int64)
    targets = np.zeros((len(origins), 4), dtype=np.float64)
    has_box = np.zeros(len(origins), dtype=bool)
    area = float(window * window)
    for n, (x, y) in enumerate(origins.tolist()):
        ids, pixels = np.unique(patches[n], return_counts=True)
        fg = tile_class[ids] >= 0
        if not fg.any():
            continue
        ids, share = ids[fg], pixels[fg] / area
        overlap = (np.clip(np.minimum(x + window, p.x[ids] + t) - np.maximum(x, p.x[ids]), 0, None)
                   * np.clip(np.minimum(y + window, p.y[ids] + t) - np.maximum(y, p.y[ids]), 0, None))
        iou = overlap / (area + t * t - overlap)
        positive = counted[ids] & (iou >= rule.positive_iou) & (share >= rule.positive_visible)
        if positive.any():
            labels[n] = tile_class[ids[np.argmax(np.where(positive, iou, -1))]]
        elif ((iou >= rule.background_iou) & (share >= rule.background_visible)).any():
            labels[n] = IGNORE
        boxed = counted[ids] & (iou >= rule.box_iou) & (share >= rule.box_visible)
        if boxed.any():
            k = ids[np.argmax(np.where(boxed, iou, -1))]
            targets[n] = (p.x[k], p.y[k], p.x[k] + t, p.y[k] + t)
            has_box[n] = True
    deltas = np.zeros((len(origins), 4), dtype=np.float32)
    if has_box.any():
        windows = np.concatenate([origins[has_box], origins[has_box] + window], axis=1)
        deltas[has_box] = box_deltas(windows, targets[has_box])
    return labels, deltas, has_box


def sample_windows(collage: Collage, classes, background: str, count: int, rng: np.random.Generator, *,
                   near_objects: float = 0.6, window: int = 32, rule: LabelRule = LabelRule()) -> LabelledWindows:
    """``count`` labelled windows of ``collage``: a share ``near_objects`` around its foreground tiles.

    Windows near objects start at a foreground tile's corner shifted by up to 12 pixels each
    way (what a stride-16 grid sees of it); the rest lie anywhere.
    """
    height, width = collage.owner.shape
    p = collage.placements
    foreground = np.flatnonzero(np.isin(p.label, [c for c in classes if c != background]))
    near = int(round(count * near_objects)) if len(foreground) else 0
    picks = rng.choice(foreground, near) if near else np.zeros(0, np.int64)
    shifted = np.stack([p.x[picks], p.y[picks]], axis=1) + rng.integers(-12, 13, (near, 2))
    anywhere = np.stack([rng.integers(0, width - window + 1, count - near),
                         rng.integers(0, height - window + 1, count - near)], axis=1)
    origins = np.clip(np.concatenate([shifted, anywhere]), 0, [width - window, height - window])
    labels, deltas, has_box = label_windows(collage, origins, classes, background, window=window, rule=rule)
    rows = origins[:, 1, None] + np.arange(window)
    cols = origins[:, 0, None] + np.arange(window)
    images = collage.image[rows[:, :, None], cols[:, None, :]]
    return LabelledWindows(images, labels, deltas, has_box)


def negative_windows(count: int, rng: np.random.Generator, *, window: int = 32) -> np.ndarray:
    """``(count, S, S, 3)`` uint8 windows with no object: noise, smooth noise, flat colours, gradients.

    What a scanner also meets (sensor noise, blank areas, sky), and what a classifier
    trained only on photographs answers at random.
    """
    kinds = rng.integers(0, 5, count)
    out = np.empty((count, window, window, 3), dtype=np.uint8)
    for n, kind in enumerate(kinds.tolist()):
        if kind == 0:  # white noise, uniform or around a colour
            low = rng.integers(0, 200)
            out[n] = rng.integers(low, rng.integers(low + 20, 257), (window, window, 3))
        elif kind == 1:  # smooth noise at a random scale
            cells = int(rng.integers(2, 9))
            coarse = rng.integers(0, 256, (cells, cells, 3)).astype(np.float64)
            ramp = np.linspace(0, cells - 1, window)
            i0 = np.floor(ramp).astype(int).clip(0, cells - 2) if cells > 1 else np.zeros(window, int)
            f = (ramp - i0)[:, None]
            rows = coarse[i0] * (1 - f)[:, :, None] + coarse[np.minimum(i0 + 1, cells - 1)] * f[:, :, None]
            smooth = rows[:, i0] * (1 - f.T)[:, :, None] + rows[:, np.minimum(i0 + 1, cells - 1)] * f.T[:, :, None]
            out[n] = np.clip(smooth + rng.normal(0, rng.uniform(0, 12), smooth.shape), 0, 255)
        elif kind == 2:  # flat colour, grey levels included, with a little noise
            colour = rng.integers(0, 256, 3) if rng.random() < 0.6 else np.repeat(rng.integers(0, 256), 3)
            out[n] = np.clip(colour + rng.normal(0, rng.uniform(0, 4), (window, window, 3)), 0, 255)
        elif kind == 3:  # a linear gradient between two colours
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            angle = rng.uniform(0, 2 * np.pi)
            yy, xx = np.mgrid[0:window, 0:window] / (window - 1)
            t = np.clip((np.cos(angle) * xx + np.sin(angle) * yy + 1) / 2, 0, 1)[:, :, None]
            out[n] = (a * (1 - t) + b * t).astype(np.uint8)
        else:  # salt and pepper over a flat colour
            out[n] = rng.integers(0, 256, 3)
            specks = rng.random((window, window)) < rng.uniform(0.01, 0.3)
            out[n][specks] = rng.integers(0, 256, (int(specks.sum()), 3))
    return out


def synthetic_target(rng: np.random.Generator, *, height: int = 96, width: int = 64) -> np.ndarray:
    """A picture for tiles to be matched to: random colour fields, smooth or blocky, ``(h, w, 3)`` uint8."""
    from PIL import Image

    cells = (int(rng.integers(2, 9)), int(rng.integers(2, 9)))
    coarse = rng.integers(0, 256, (*cells, 3), dtype=np.uint8)
    method = Image.BICUBIC if rng.random() < 0.7 else Image.NEAREST
    return np.asarray(Image.fromarray(coarse).resize((width, height), method))


def random_collage_params(rng: np.random.Generator, *, size: int, tile_size: int = 32) -> CollageParams:
    """A collage style drawn at random: size near ``size``, any step 16-28 with a jitter that keeps
    every pixel covered, colour-matched or random picks."""
    step = int(rng.integers(16, 29))
    jitter = int(rng.integers(0, (tile_size - step) // 2 + 1))
    width = int(rng.integers(size * 3 // 4, size + 1))
    height = int(rng.integers(size * 3 // 4, size + 1))
    return CollageParams(width=width, height=height, tile_size=tile_size, step=step, jitter=jitter, max_uses=64,
                         match="colour" if rng.random() < 0.5 else "random", seed=int(rng.integers(0, 2**31)))


def flip_horizontally(windows: LabelledWindows, flip: np.ndarray) -> LabelledWindows:
    """The windows where ``flip`` is set mirrored left to right, their box targets with them."""
    images = windows.images.copy()
    deltas = windows.deltas.copy()
    images[flip] = images[flip, :, ::-1]
    # A box [dx, dx + w) of the window's width becomes [1 - dx - w, 1 - dx).
    deltas[flip, 0] = 1 - deltas[flip, 0] - np.exp(deltas[flip, 2])
    return LabelledWindows(images, windows.labels, deltas, windows.has_box)
