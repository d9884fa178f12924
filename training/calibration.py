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
    if not 2 <= count <= 2 * len(train):
        raise ValueError(f"`count` must be from 2 to {2 * len(train):,} (twice the training images), got {count}")
    rng = np.random.default_rng(seed)
    raw = train.images[rng.choice(len(train), count - count // 2, replace=False)]
    labels = train.model_label
    classes, sizes = np.unique(labels, return_counts=True)
    # Tiles per class in proportion, whole numbers that add up to count // 2 (largest remainders).
    exact = count // 2 * sizes / sizes.sum()
    shares = np.floor(exact).astype(int)
    shares[np.argsort(shares - exact, kind="stable")[:count // 2 - shares.sum()]] += 1
    tiles = []
    for k, share in zip(classes, shares.tolist()):
        if share:  # a class too rare for a tile in a small count
            canvases = make_canvases(train.images[labels == k], max(1, share // 16), rng)
            tiles.append(sample_canvas_tiles(canvases, share, rng))
    return np.concatenate([raw, *tiles])
