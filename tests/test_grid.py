"""Window grid and strip planner: invariants over random sizes, windows and strides."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiling import Box, WindowGrid, plan_strips, plan_tasks, plan_waves, window_origins

sizes = st.integers(min_value=1, max_value=700)
windows = st.integers(min_value=1, max_value=64)
strides = st.integers(min_value=1, max_value=80)


@st.composite
def grids(draw):
    window = draw(windows)
    height = draw(st.integers(min_value=window, max_value=600))
    width = draw(st.integers(min_value=window, max_value=600))
    return WindowGrid(height, width, window, draw(strides), draw(st.sampled_from(["align", "drop"])))


@given(size=sizes, window=windows, stride=strides)
def test_origins_in_bounds_sorted_unique(size, window, stride):
    if window > size:
        with pytest.raises(ValueError, match="must not exceed"):
            window_origins(size, window, stride)
        return
    for edge in ("align", "drop"):
        origins = window_origins(size, window, stride, edge)
        assert origins[0] == 0
        assert (origins >= 0).all() and (origins + window <= size).all()
        assert (np.diff(origins) > 0).all()


@given(size=sizes, window=windows, stride=strides)
def test_align_covers_every_pixel(size, window, stride):
    if window > size or stride > window:
        return  # a stride beyond the window leaves gaps by design
    origins = window_origins(size, window, stride, "align")
    covered = np.zeros(size, bool)
    for o in origins:
        covered[o:o + window] = True
    assert covered.all()
    assert origins[-1] == size - window


@given(size=sizes, window=windows, stride=strides)
def test_drop_is_the_plain_grid(size, window, stride):
    if window > size:
        return
    origins = window_origins(size, window, stride, "drop")
    assert (origins == np.arange(len(origins)) * stride).all()
    assert origins[-1] + stride + window > size


@settings(max_examples=200)
@given(grid=grids(), n=st.integers(min_value=1, max_value=40))
def test_strips_partition_window_rows(grid, n):
    strips = plan_strips(grid, n)
    assert len(strips) == min(n, len(grid.ys))
    rows = [y for s in strips for y in s.window_ys]
    assert rows == grid.ys.tolist()  # every window row in exactly one strip, in order
    assert sum(s.n_windows for s in strips) == grid.n_windows
    counts = [len(s.window_ys) for s in strips]
    assert max(counts) - min(counts) <= 1  # balanced as the rows allow
    for s in strips:
        assert 0 <= s.y0 < s.y1 <= grid.height  # halo stays inside the image
        assert s.y0 == s.window_ys[0] and s.y1 == s.window_ys[-1] + grid.window
        assert [t.index for t in strips] == list(range(len(strips)))


@given(grid=grids())
def test_origins_row_major(grid):
    origins = grid.origins()
    assert len(origins) == grid.n_windows
    assert origins[: len(grid.xs), 0].tolist() == grid.xs.tolist()
    assert (origins[:, 1] == np.repeat(grid.ys, len(grid.xs))).all()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"size": 10, "window": 0, "stride": 1}, ValueError, "`window` must be >= 1, got 0"),
        ({"size": 10, "window": 4, "stride": 0}, ValueError, "`stride` must be >= 1, got 0"),
        ({"size": 10, "window": 4, "stride": 2.0}, TypeError, "`stride` must be an int"),
        ({"size": 10, "window": 4, "stride": 2, "edge": "wrap"}, ValueError, "`edge` must be one of"),
    ],
)
def test_origin_errors_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        window_origins(**kwargs)


def test_plan_strips_rejects_zero():
    with pytest.raises(ValueError, match="`n_strips` must be >= 1, got 0"):
        plan_strips(WindowGrid(64, 64, 32, 16), 0)


def test_box_conventions():
    box = Box.from_xywh(10, 20, 32, 16)
    assert box.to_xyxy() == (10, 20, 42, 36)
    assert box.to_xywh() == (10, 20, 32, 16)
    rows, cols = box.slices()
    assert np.zeros((100, 100))[rows, cols].shape == (16, 32)
    assert box.intersection(Box(40, 30, 50, 50)) == Box(40, 30, 42, 36)
    assert box.intersection(Box(42, 20, 50, 30)) is None  # half-open: touching is not overlapping
    with pytest.raises(ValueError, match="x0 <= x1"):
        Box(5, 0, 4, 1)


@settings(max_examples=200, deadline=None)
@given(shapes=st.lists(st.tuples(st.integers(32, 900), st.integers(32, 300)), min_size=1, max_size=12),
       n_tasks=st.integers(1, 16), budget=st.one_of(st.none(), st.integers(2000, 60000)))
def test_collection_plan_covers_every_row_once_in_balanced_tasks(shapes, n_tasks, budget):
    grids = [WindowGrid(h, w, 32, 16) for h, w in shapes]
    tasks = plan_tasks(grids, n_tasks, max_band_pixels=budget)
    assert 1 <= len(tasks) <= n_tasks
    assert [t.index for t in tasks] == list(range(len(tasks)))
    loads = [t.n_windows for t in tasks]
    assert loads == sorted(loads, reverse=True)  # largest first: no big task starts last
    pieces = [p for t in tasks for p in t.pieces]
    for i, grid in enumerate(grids):
        rows = sorted(y for p in pieces if p.image == i for y in p.strip.window_ys)
        assert rows == grid.ys.tolist()  # every window row of every picture, exactly once
        for p in pieces:
            if p.image == i:
                assert 0 <= p.strip.y0 and p.strip.y1 <= grid.height and p.strip.n_columns == len(grid.xs)
                if budget is not None and len(p.strip.window_ys) > 1:
                    assert p.strip.height * grid.width <= budget
    assert sum(loads) == sum(g.n_windows for g in grids)
    # Longest-processing-time dealing: the fullest task exceeds the emptiest by at most one piece.
    assert loads[0] - loads[-1] <= max(p.n_windows for p in pieces)


def test_plan_tasks_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`n_tasks` must be an int >= 1, got 0"):
        plan_tasks([WindowGrid(64, 64, 32, 16)], 0)
    with pytest.raises(ValueError, match="`max_band_pixels` must be >= 1"):
        plan_tasks([WindowGrid(64, 64, 32, 16)], 2, max_band_pixels=0)
    assert plan_tasks([], 3) == []


@settings(max_examples=300, deadline=None)
@given(counts=st.lists(st.integers(1, 5000), max_size=30), budget=st.integers(1, 20000))
def test_waves_are_consecutive_and_about_the_budget(counts, budget):
    waves = plan_waves(counts, budget)
    assert [k for wave in waves for k in wave] == list(range(len(counts)))  # in order, each picture once
    assert all(waves) and len(waves) <= max(1, -(-sum(counts) // budget))
    for wave in waves:  # over the budget by at most halves of its first and last pictures
        assert sum(counts[k] for k in wave) <= budget + max(counts[k] for k in wave)


def test_plan_waves_rejects_a_bad_budget():
    with pytest.raises(ValueError, match="`budget` must be an int >= 1, got 0"):
        plan_waves([3], 0)
