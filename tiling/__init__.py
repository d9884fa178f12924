"""Pure geometry: boxes, the window grid and strips. Ints and numpy only, no Spark, no I/O."""
from tiling.box import Box
from tiling.grid import EDGE_POLICIES, WindowGrid, window_origins
from tiling.plan import Piece, Task, plan_tasks, plan_waves
from tiling.strips import Strip, plan_strips

__all__ = ["Box", "EDGE_POLICIES", "WindowGrid", "window_origins", "Strip", "plan_strips", "Piece", "Task",
           "plan_tasks", "plan_waves"]
