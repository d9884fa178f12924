"""Plan the work of a whole collection: bands of pictures grouped into balanced tasks.

Pictures larger than half a task's share are cut into strips (with their halo rows, see
:mod:`tiling.strips`) of at most half a share, and no taller than a band's pixel budget;
smaller pictures stay whole. The pieces are then dealt largest first, each to the task with the fewest windows
so far (longest-processing-time first), so tasks differ by at most about one piece, and
the tasks are returned largest first, so that no big task starts last.

A large collection is first grouped into waves (:func:`plan_waves`), each planned and run
on its own: a run then finishes pictures as it goes, not all at its end.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from tiling.grid import WindowGrid
from tiling.strips import Strip, plan_strips

__all__ = ["Piece", "Task", "plan_tasks", "plan_waves"]


@dataclass(frozen=True)
class Piece:
    """One band of one picture: ``image`` indexes the collection, ``strip`` holds its window rows."""

    image: int
    strip: Strip

    @property
    def n_windows(self) -> int:
        return self.strip.n_windows


@dataclass(frozen=True)
class Task:
    """The pieces one Spark task scores, in picture and band order."""

    index: int
    pieces: tuple[Piece, ...]

    @property
    def n_windows(self) -> int:
        return sum(p.n_windows for p in self.pieces)


def _strips(grid: WindowGrid, target: float, max_band_pixels: int | None) -> list[Strip]:
    """The grid's strips: at most half of ``target`` windows each, bands within ``max_band_pixels``."""
    count = 1 if grid.n_windows <= target / 2 else math.ceil(grid.n_windows / (target / 2))
    while True:
        strips = plan_strips(grid, count)
        tallest = max(s.height for s in strips)
        if max_band_pixels is None or tallest * grid.width <= max_band_pixels or len(strips) == len(grid.ys):
            return strips
        count = min(len(grid.ys), max(count + 1, math.ceil(count * tallest * grid.width / max_band_pixels)))


def plan_tasks(grids, n_tasks: int, *, max_band_pixels: int | None = None) -> list[Task]:
    """Split ``grids`` (one per picture) into pieces and deal them into at most ``n_tasks`` tasks.

    Parameters
    ----------
    grids : sequence of WindowGrid
        The pictures' window grids; a piece's ``image`` is the index into this sequence.
    n_tasks : int
        How many tasks to aim for (fewer when there are fewer pieces).
    max_band_pixels : int, optional
        Largest band (rows read, halo included, times the picture's width) a piece may
        need, in pixels; pictures whose single window rows exceed it get one row per band.

    Returns
    -------
    list of Task
        Largest first (most windows), each window row of every picture in exactly one
        piece; tasks differ in windows by at most the largest piece.

    >>> tasks = plan_tasks([WindowGrid(96, 96, 32, 16), WindowGrid(640, 64, 32, 16)], 2)
    >>> [(t.n_windows, [(p.image, p.strip.y0, p.strip.y1) for p in t.pieces]) for t in tasks]
    [(82, [(0, 0, 96), (1, 160, 336), (1, 480, 640)]), (60, [(1, 0, 176), (1, 320, 496)])]
    """
    if not isinstance(n_tasks, int) or isinstance(n_tasks, bool) or n_tasks < 1:
        raise ValueError(f"`n_tasks` must be an int >= 1, got {n_tasks!r}")
    if max_band_pixels is not None and max_band_pixels < 1:
        raise ValueError(f"`max_band_pixels` must be >= 1, got {max_band_pixels}")
    grids = list(grids)
    if not grids:
        return []
    target = sum(g.n_windows for g in grids) / n_tasks
    pieces = [Piece(i, strip) for i, grid in enumerate(grids) for strip in _strips(grid, target, max_band_pixels)]
    pieces.sort(key=lambda p: (-p.n_windows, p.image, p.strip.index))
    bins = [(0, k, []) for k in range(min(n_tasks, len(pieces)))]
    heapq.heapify(bins)
    for piece in pieces:
        load, k, members = heapq.heappop(bins)
        members.append(piece)
        heapq.heappush(bins, (load + piece.n_windows, k, members))
    ordered = sorted(bins, key=lambda b: (-b[0], b[1]))
    return [Task(index, tuple(sorted(members, key=lambda p: (p.image, p.strip.index))))
            for index, (_, _, members) in enumerate(ordered)]


def plan_waves(window_counts, budget: int) -> list[list[int]]:
    """Group pictures, in their order, into consecutive waves of about ``budget`` windows.

    As few waves as keep them within the budget on average, and as even as whole pictures
    allow: each picture goes to the wave its middle window falls in, so a picture larger
    than a wave is a wave of its own.

    >>> plan_waves([5, 5, 5, 5, 5], 12)
    [[0, 1], [2], [3, 4]]
    >>> plan_waves([1, 40, 1, 1], 12), plan_waves([3, 4], 12), plan_waves([], 12)
    ([[0], [1], [2, 3]], [[0, 1]], [])
    """
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ValueError(f"`budget` must be an int >= 1, got {budget!r}")
    counts = list(window_counts)
    n_waves = max(1, math.ceil(sum(counts) / budget))
    share = sum(counts) / n_waves
    waves: list[list[int]] = [[] for _ in range(n_waves)]
    before = 0
    for k, count in enumerate(counts):
        waves[min(n_waves - 1, int((before + count / 2) / share) if share else 0)].append(k)
        before += count
    return [wave for wave in waves if wave]
