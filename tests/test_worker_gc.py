"""A Python worker's collections between tasks walk only what the tasks made since the freeze."""
from __future__ import annotations

import gc

import pytest

from scoring.worker_gc import freeze_survivors


@pytest.fixture
def frozen():
    """Freezing is per process: the test's freeze is undone afterwards."""
    yield
    gc.unfreeze()


def _tracked(obj) -> bool:
    return any(o is obj for o in gc.get_objects())


def test_survivors_leave_the_collected_generations(frozen):
    kept = [object(), {"engine": "cached"}]
    assert _tracked(kept)
    freeze_survivors()
    assert gc.get_freeze_count() >= 1
    assert not _tracked(kept)  # a collection no longer walks it
    later = [object()]
    assert _tracked(later)


def test_garbage_made_after_the_freeze_is_still_collected(frozen):
    freeze_survivors()
    gc.collect()
    cycle = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
