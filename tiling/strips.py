"""Cut a window grid into balanced horizontal strips with their halo rows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiling.grid import WindowGrid

__all__ = ["Strip", "plan_strips"]


@dataclass(frozen=True)
class Strip:
    """One horizontal band of window rows and the pixel rows those windows read.

    ``y0:y1`` (half-open) is the pixel band an executor needs: it runs from the first
    window row's origin to the last window row's origin plus the window height, so it
    includes the halo rows shared with the next strip. ``window_ys`` are the absolute
    row origins of the strip's windows; each window row of the grid is in exactly one strip.
    """

    index: int
    y0: int
    y1: int
    window_ys: tuple[int, ...]
    n_columns: int

    @property
    def n_windows(self) -> int:
        return len(self.window_ys) * self.n_columns

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def plan_strips(grid: WindowGrid, n_strips: int) -> list[Strip]:
    """Split the grid's window rows into at most ``n_strips`` strips of near-equal size.

    Window counts differ by at most one row's worth (``len(grid.xs)``) between strips.
    When the grid has fewer window rows than ``n_strips``, each row becomes its own strip.

    >>> grid = WindowGrid(height=100, width=64, window=32, stride=16)
    >>> [(s.y0, s.y1, s.n_windows) for s in plan_strips(grid, 2)]
    [(0, 64, 9), (48, 100, 9)]
    """
    if not isinstance(n_strips, (int, np.integer)) or isinstance(n_strips, bool):
        raise TypeError(f"`n_strips` must be an int, got {type(n_strips).__name__}")
    if n_strips < 1:
        raise ValueError(f"`n_strips` must be >= 1, got {n_strips}")
    n = min(int(n_strips), len(grid.ys))
    strips = []
    for index, rows in enumerate(np.array_split(grid.ys, n)):
        strips.append(
            Strip(
                index=index,
                y0=int(rows[0]),
                y1=int(rows[-1]) + grid.window,
                window_ys=tuple(int(y) for y in rows),
                n_columns=len(grid.xs),
            )
        )
    return strips
