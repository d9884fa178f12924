"""Canvases of one class and the 32x32 tiles cut from them.

As in the reference design, a canvas holds images of a single class (cars only, boats
only, or negatives only) scattered so that they overlap one another, and every tile cut
from it takes the canvas's class: the network learns that part of a car, beside part of
another car, is still "car", which is what a sliding window over a collage sees. Tiles
are sampled from canvases held in memory instead of being written out.
"""
from __future__ import annotations

import numpy as np

from tiling.grid import window_origins

__all__ = ["make_canvas", "make_canvases", "canvas_tiles", "sample_canvas_tiles"]

TILE = 32


def make_canvas(images: np.ndarray, rng: np.random.Generator, *, size: int = 128,
                scatter: float = 1.5) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 canvas from ``images`` (``(K, 32, 32, 3)``).

    A base layer of images on a 32-pixel grid covers every pixel; then
    ``scatter * (size / 32) ** 2`` more images land at uniform random positions on top,
    overlapping the base and one another.
    """
    if size < TILE:
        raise ValueError(f"`size` must be >= {TILE}, got {size}")
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    base = window_origins(size, TILE, TILE)
    n_scatter = int(round(scatter * (size / TILE) ** 2))
    picks = rng.integers(0, len(images), size=len(base) ** 2 + n_scatter)
    positions = [(x, y) for y in base for x in base]
    positions += list(zip(rng.integers(0, size - TILE + 1, n_scatter), rng.integers(0, size - TILE + 1, n_scatter)))
    for (x, y), k in zip(positions, picks):
        canvas[y:y + TILE, x:x + TILE] = images[k]
    return canvas


def make_canvases(images: np.ndarray, count: int, rng: np.random.Generator, **kwargs) -> np.ndarray:
    """``(count, size, size, 3)`` uint8: ``count`` canvases from the same pool."""
    return np.stack([make_canvas(images, rng, **kwargs) for _ in range(count)])


def canvas_tiles(canvas: np.ndarray, *, stride: int = 8) -> np.ndarray:
    """Every 32x32 tile of one canvas at ``stride``: ``(T, 32, 32, 3)`` uint8 (a copy)."""
    origins = window_origins(canvas.shape[0], TILE, stride, edge="drop")
    views = np.lib.stride_tricks.sliding_window_view(canvas, (TILE, TILE), axis=(0, 1))
    return np.ascontiguousarray(views[origins][:, origins].reshape(-1, 3, TILE, TILE).transpose(0, 2, 3, 1))


def sample_canvas_tiles(canvases: np.ndarray, count: int, rng: np.random.Generator, *,
                        stride: int = 8) -> np.ndarray:
    """``count`` tiles drawn uniformly from the stride grid of random canvases."""
    origins = window_origins(canvases.shape[1], TILE, stride, edge="drop")
    which = rng.integers(0, len(canvases), count)
    ys = origins[rng.integers(0, len(origins), count)]
    xs = origins[rng.integers(0, len(origins), count)]
    return np.stack([canvases[c, y:y + TILE, x:x + TILE] for c, y, x in zip(which, ys, xs)])
