"""Heat maps: one class's window scores laid on the window grid."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scoring.results import probability_column

__all__ = ["ScoreGrid", "score_grid"]

@dataclass(frozen=True)
class ScoreGrid:
    """One class's window scores on the window grid.

    ``values`` is ``(R, C)`` float64: cell ``(i, j)`` holds the best score of the windows
    whose origin lies in ``[j * stride, (j + 1) * stride) x [i * stride, (i + 1) * stride)``
    (NaN where no window was kept), so it is centred on those windows' centre. ``extent``
    is ``(left, right, bottom, top)`` in picture pixels, as :meth:`~matplotlib.axes.Axes.imshow`
    takes it.
    """

    values: np.ndarray
    stride: int
    window: int

    @property
    def extent(self) -> tuple[float, float, float, float]:
        offset = (self.window - self.stride) / 2
        rows, cols = self.values.shape
        return (offset, offset + cols * self.stride, offset + rows * self.stride, offset)

    def best_in(self, boxes: np.ndarray) -> np.ndarray:
        """``(N,)`` best score of the windows centred inside each ``(N, 4)`` ``x0, y0, x1, y1`` box.

        NaN where no window centred inside a box was kept.
        """
        centre = self.window / 2
        rows, cols = self.values.shape
        best = np.full(len(boxes), np.nan)
        for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=np.float64)):
            # Cell j's windows are centred at about j * stride + window / 2.
            j0, j1 = (max(0, math.ceil((v - centre) / self.stride)) for v in (x0, x1))
            i0, i1 = (max(0, math.ceil((v - centre) / self.stride)) for v in (y0, y1))
            cells = self.values[i0:min(i1, rows), j0:min(j1, cols)]
            if cells.size and not np.isnan(cells).all():
                best[k] = np.nanmax(cells)
        return best


def score_grid(windows: pd.DataFrame, cls: str, *, width: int, height: int, window: int, stride: int) -> ScoreGrid:
    """The :class:`ScoreGrid` of class ``cls`` from a windows frame (``windows.parquet``).

    Parameters
    ----------
    windows : pandas.DataFrame
        ``x, y`` window origins in pixels and a ``p_<cls>`` column; any subset of the grid.
    width, height : int
        Picture size in pixels.
    window, stride : int
        The run's window side and step in pixels.

    Notes
    -----
    Memory is one float64 per ``stride x stride`` cell of the picture.
    """
    column = probability_column(cls)
    if column not in windows:
        raise ValueError(f"windows have no {column!r} column; they have {list(windows.columns)}")
    rows = max(0, height - window) // stride + 1
    cols = max(0, width - window) // stride + 1
    grid = np.full((rows, cols), -np.inf)
    r = windows["y"].to_numpy(np.int64) // stride
    c = windows["x"].to_numpy(np.int64) // stride
    if len(r) and (r.max() >= rows or c.max() >= cols or min(r.min(), c.min()) < 0):
        raise ValueError(f"window origins fall outside a {width}x{height} picture with {window}-pixel windows")
    np.maximum.at(grid, (r, c), windows[column].to_numpy(np.float64))  # the aligned edge shares a cell
    grid[np.isneginf(grid)] = np.nan
    return ScoreGrid(values=grid, stride=stride, window=window)
