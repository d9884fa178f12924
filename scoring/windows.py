"""Cut a strip's windows as views and score them in batches; pure numpy, no Spark."""
from __future__ import annotations

import numpy as np

from tiling.strips import Strip

__all__ = ["window_batches", "score_strip", "StripScores"]


def window_batches(pixels: np.ndarray, ys: np.ndarray, xs: np.ndarray, window: int, batch_size: int):
    """Yield ``(origins, batch)`` for every window of a pixel band, row-major.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(H, W, 3)`` uint8 band of the image.
    ys, xs : numpy.ndarray
        Window origins relative to the band: rows ``ys``, columns ``xs``.
    window : int
        Window side in pixels.
    batch_size : int
        Windows per batch; the last batch may be smaller.

    Yields
    ------
    origins : numpy.ndarray
        ``(B, 2)`` int64 ``(x, y)`` origins relative to the band.
    batch : numpy.ndarray
        ``(B, 3, window, window)`` uint8, NCHW and C-contiguous. Gathered in one fancy-index
        copy from a strided view of ``pixels`` (no per-window Python work), then laid out
        channels first: the gather keeps the band's channels-last layout in memory, and the
        int8 engine given that layout took 3 % longer (its normalisation ran 10x slower).

    Notes
    -----
    Memory beyond the band is two batches at most (the gather and its NCHW copy):
    ``2 * B * 3 * window**2`` bytes.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    # (H-w+1, W-w+1, 3, w, w): every possible window, channels first in shape (not in memory).
    views = np.lib.stride_tricks.sliding_window_view(pixels, (window, window), axis=(0, 1))
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    yy, xx = yy.ravel(), xx.ravel()
    for start in range(0, len(yy), batch_size):
        y, x = yy[start:start + batch_size], xx[start:start + batch_size]
        yield np.stack([x, y], axis=1), np.ascontiguousarray(views[y, x])


class StripScores:
    """A strip's scores: ``origins`` ``(N, 2)`` absolute ``(x, y)``, ``probs`` ``(N, C)``, and
    ``deltas`` ``(N, 4)`` box deltas relative to each window, ``None`` from a classifier."""

    __slots__ = ("origins", "probs", "deltas")

    def __init__(self, origins: np.ndarray, probs: np.ndarray, deltas: np.ndarray | None = None) -> None:
        self.origins = origins
        self.probs = probs
        self.deltas = deltas


def score_strip(pixels: np.ndarray, strip: Strip, xs: np.ndarray, window: int, detect,
                *, batch_size: int) -> StripScores:
    """Score every window of ``strip``; ``pixels`` are image rows ``strip.y0:strip.y1``.

    ``detect`` maps a ``(B, 3, w, w)`` uint8 RGB batch to ``(B, C)`` probabilities and
    ``(B, 4)`` box deltas or ``None`` (an engine's ``detect``).
    """
    expected = (strip.height, pixels.shape[1] if pixels.ndim == 3 else -1, 3)
    if pixels.dtype != np.uint8 or pixels.shape != expected:
        raise ValueError(f"strip {strip.index} pixels must be uint8 {expected}, got {pixels.dtype} {pixels.shape}")
    ys = np.asarray(strip.window_ys, dtype=np.int64) - strip.y0
    origins, probs, deltas = [], [], []
    for batch_origins, batch in window_batches(pixels, ys, np.asarray(xs), window, batch_size):
        origins.append(batch_origins)
        batch_probs, batch_deltas = detect(batch)
        probs.append(batch_probs)
        deltas.append(batch_deltas)
    origins = np.concatenate(origins)
    origins[:, 1] += strip.y0
    boxes = None if deltas[0] is None else np.concatenate(deltas)
    return StripScores(origins, np.concatenate(probs), boxes)
