"""Keep the garbage collection PySpark runs between a Python worker's tasks short.

A reused worker runs a full :func:`gc.collect` after every task (``pyspark/daemon.py``),
while the next task is already waiting for it. A full collection walks every object the
collector tracks, and a worker holding numpy, pyarrow, libvips, the engine's runtime and
its model has tens of thousands of them: about 30 ms a collection here, so the gap between
two tasks of a worker was 0.07 to 0.11 s, and mostly 0.02 to 0.04 s with them frozen.
:func:`freeze_survivors` moves every object alive at a task's start (modules, the cached
engine, kept pictures) to the permanent generation, so a collection walks only what the
tasks made since. Frozen objects are still freed by reference counting when let go; only
a reference cycle among them that becomes garbage stays (an engine dropped from the
cache, say), which the objects a worker keeps across tasks make rare.
"""
from __future__ import annotations

import gc

__all__ = ["freeze_survivors"]


def freeze_survivors() -> None:
    """Move every object the collector tracks to the permanent generation.

    Call it at a task's start, right after PySpark's collection: called between the items
    of one task, it would also freeze the garbage the earlier items left uncollected.
    (``gc.get_freeze_count`` walks the frozen objects one by one: 7 ms a task here, so it
    is not asked for.)
    """
    gc.freeze()
