"""Calibration images for static int8 quantisation, drawn from the training set only."""
from __future__ import annotations

import numpy as np

from tilesets import LabelledImages
from training.canvas import make_canvases, sample_canvas_tiles

__all__ = ["calibration_images"]


def calibration_images(train: LabelledImages, count: int, *, seed: int = 7) -> np.ndarray:
    """``(count, 32, 32, 3)`` uint8: half training images, half tiles of training canvases.

    Canvas tiles are what a window over a collage sees (parts of overlapping images), so
    activation ranges cover both. Classes are drawn in the training set's proportions.
    """
    if count < 2:
        raise ValueError(f"`count` must be >= 2, got {count}")
    rng = np.random.default_rng(seed)
    raw = train.images[rng.choice(len(train), count - count // 2, replace=False)]
    labels = train.model_label
    tiles = []
    for k in np.unique(labels):
        share = int(round(count // 2 * np.mean(labels == k)))
        canvases = make_canvases(train.images[labels == k], max(1, share // 16), rng)
        tiles.append(sample_canvas_tiles(canvases, share, rng))
    return np.concatenate([raw, *tiles])[:count]
