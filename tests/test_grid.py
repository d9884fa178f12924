"""Window grid and strip planner: invariants over random sizes, windows and strides."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiling import Box, WindowGrid, plan_strips, window_origins

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
