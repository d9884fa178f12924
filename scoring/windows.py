"""Cut a strip's windows as views and score them in batches, or score the strip's grid in dense
passes over its pixels; pure numpy, no Spark."""
from __future__ import annotations

import numpy as np

from tiling.strips import Strip

__all__ = ["window_batches", "score_strip", "score_strip_dense", "dense_passes", "StripScores"]


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


def _check_pixels(pixels: np.ndarray, strip: Strip) -> None:
    expected = (strip.height, pixels.shape[1] if pixels.ndim == 3 else -1, 3)
    if pixels.dtype != np.uint8 or pixels.shape != expected:
        raise ValueError(f"strip {strip.index} pixels must be uint8 {expected}, got {pixels.dtype} {pixels.shape}")


def _scored(parts: list, *, in_order: bool) -> StripScores:
    """The parts' ``(origins, probs, deltas)`` as one :class:`StripScores`, row-major (sorted
    unless they come ``in_order``)."""
    origins = np.concatenate([p[0] for p in parts])
    probs = np.concatenate([p[1] for p in parts])
    deltas = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
    if not in_order:  # dense passes and single windows: put them back in the grid's order
        order = np.lexsort((origins[:, 0], origins[:, 1]))
        origins, probs = origins[order], probs[order]
        deltas = None if deltas is None else deltas[order]
    return StripScores(origins, probs, deltas)


def _windows_one_by_one(pixels: np.ndarray, ys: np.ndarray, xs: np.ndarray, window: int, detect,
                        batch_size: int, y0: int) -> list:
    parts = []
    for batch_origins, batch in window_batches(pixels, ys, xs, window, batch_size):
        batch_origins[:, 1] += y0
        parts.append((batch_origins, *detect(batch)))
    return parts


def score_strip(pixels: np.ndarray, strip: Strip, xs: np.ndarray, window: int, detect,
                *, batch_size: int) -> StripScores:
    """Score every window of ``strip``; ``pixels`` are image rows ``strip.y0:strip.y1``.

    ``detect`` maps a ``(B, 3, w, w)`` uint8 RGB batch to ``(B, C)`` probabilities and
    ``(B, 4)`` box deltas or ``None`` (an engine's ``detect``).
    """
    _check_pixels(pixels, strip)
    ys = np.asarray(strip.window_ys, dtype=np.int64) - strip.y0
    return _scored(_windows_one_by_one(pixels, ys, np.asarray(xs), window, detect, batch_size, strip.y0),
                   in_order=True)


def dense_passes(rows: int, columns: int, window: int, stride: int, pass_pixels: int):
    """Cut a grid of ``rows`` x ``columns`` windows at ``stride`` into blocks whose pixels (the
    block's windows' union) stay within ``pass_pixels``, or one window row's when even that
    does not; yields ``(row0, row1, column0, column1)``, row-major."""
    def side(n):
        return window + (n - 1) * stride

    across = max(1, min(columns, (pass_pixels // side(1) - window) // stride + 1))
    down = max(1, min(rows, (pass_pixels // side(across) - window) // stride + 1))
    for r in range(0, rows, down):
        for c in range(0, columns, across):
            yield r, min(rows, r + down), c, min(columns, c + across)


def score_strip_dense(pixels: np.ndarray, strip: Strip, xs: np.ndarray, window: int, detect_band, detect, *,
                      stride: int, dense_stride: int, pass_pixels: int, batch_size: int) -> StripScores:
    """Score every window of ``strip`` as :func:`score_strip` does, the windows on the grid at
    ``stride`` (a multiple of the network's ``dense_stride``) in dense passes over blocks of the
    band (``detect_band``: an engine's :meth:`~engines.base.Engine.detect_band`), each block's
    pixels within ``pass_pixels`` (its activations are what a pass holds); the windows off the
    grid (the ``align`` policy's last row and column) one by one, through ``detect``."""
    if stride % dense_stride:
        raise ValueError(f"--stride {stride} is not a multiple of the network's dense stride {dense_stride}")
    _check_pixels(pixels, strip)
    ys, xs = np.asarray(strip.window_ys, dtype=np.int64), np.asarray(xs, dtype=np.int64)
    grid_ys, grid_xs = ys[ys % stride == 0], xs[xs % stride == 0]
    step = stride // dense_stride
    parts = []
    if len(grid_ys) and len(grid_xs):
        for r0, r1, c0, c1 in dense_passes(len(grid_ys), len(grid_xs), window, stride, pass_pixels):
            top, left = int(grid_ys[r0]) - strip.y0, int(grid_xs[c0])
            height, width = window + (r1 - r0 - 1) * stride, window + (c1 - c0 - 1) * stride
            probs, deltas = detect_band(pixels[top:top + height, left:left + width].transpose(2, 0, 1))
            yy, xx = np.meshgrid(grid_ys[r0:r1], grid_xs[c0:c1], indexing="ij")
            parts.append((np.stack([xx.ravel(), yy.ravel()], axis=1), probs[::step, ::step].reshape(yy.size, -1),
                          None if deltas is None else deltas[::step, ::step].reshape(yy.size, 4)))
    # Off the grid: every window of an off-grid row, and the off-grid columns of the grid's rows.
    off_ys, off_xs = ys[ys % stride != 0] - strip.y0, xs[xs % stride != 0]
    parts += _windows_one_by_one(pixels, off_ys, xs, window, detect, batch_size, strip.y0) if len(off_ys) else []
    if len(off_xs) and len(grid_ys):
        parts += _windows_one_by_one(pixels, grid_ys - strip.y0, off_xs, window, detect, batch_size, strip.y0)
    return _scored(parts, in_order=len(parts) == 1)
