"""A run's plan on the driver: each picture's window grid, the waves of a large collection, and
each wave's balanced tasks of bands. Headers only: no pixels are read here."""
from __future__ import annotations

from dataclasses import dataclass

from pixels import ImageInfo
from tiling import Piece, Task, WindowGrid, plan_tasks, plan_waves

__all__ = ["RunPlan", "plan_run", "MAX_BAND_PIXELS", "WAVE_WINDOWS_PER_CORE"]

#: The largest band an executor reads at a time, in pixels (96 MB of RGB).
MAX_BAND_PIXELS = 32_000_000
#: A collection is scored in waves of about this many windows per core (two minutes of the
#: int8 engine here, five of fp32), each finished and committed before the next: a run
#: stopped midway keeps its finished waves for --resume, and the driver and the shuffle hold
#: one wave's results at a time. Each wave costs one more stage change and tail (about a second).
WAVE_WINDOWS_PER_CORE = 400_000


@dataclass(frozen=True)
class RunPlan:
    """``waves`` of :class:`tiling.Task` (pieces numbered by the run's picture index, tasks
    numbered across waves), and per picture index its windows and its bands."""

    waves: list
    windows: dict
    bands: dict

    @property
    def n_tasks(self) -> int:
        return sum(len(wave) for wave in self.waves)


def plan_run(pictures: dict[int, ImageInfo], *, window: int, stride: int, edge: str, tasks_per_wave: int,
             cores: int) -> RunPlan:
    """Plan the pictures (run index -> header) of a run: waves of about
    :data:`WAVE_WINDOWS_PER_CORE` x ``cores`` windows, each cut into ``tasks_per_wave`` tasks of
    bands of at most :data:`MAX_BAND_PIXELS`."""
    indices = list(pictures)
    grids = [WindowGrid(pictures[i].height, pictures[i].width, window, stride, edge) for i in indices]
    waves, bands, n_planned = [], {}, 0
    for wave in plan_waves([g.n_windows for g in grids], WAVE_WINDOWS_PER_CORE * cores):
        planned = plan_tasks([grids[k] for k in wave], tasks_per_wave, max_band_pixels=MAX_BAND_PIXELS)
        # plan_tasks numbers pictures by their position in the wave: back to run indices.
        waves.append([Task(n_planned + t.index, tuple(Piece(indices[wave[piece.image]], piece.strip)
                                                  for piece in t.pieces)) for t in planned])
        n_planned += len(planned)
    for task in (task for wave in waves for task in wave):
        for piece in task.pieces:
            bands[piece.image] = bands.get(piece.image, 0) + 1
    return RunPlan(waves, {i: g.n_windows for i, g in zip(indices, grids)}, bands)
