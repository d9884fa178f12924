"""The grid of sliding windows over an image."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["EDGE_POLICIES", "WindowGrid", "window_origins"]

#: ``align``: add a last window flush with the far edge so that no pixel goes unscanned;
#: ``drop``: the plain grid, leaving up to ``stride - 1`` edge pixels unscanned.
EDGE_POLICIES = ("align", "drop")


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1, got {value}")


def window_origins(size: int, window: int, stride: int, edge: str = "align") -> np.ndarray:
    """Start offsets of the windows along one axis.

    Parameters
    ----------
    size : int
        Length of the axis in pixels.
    window : int
        Window length in pixels; must not exceed ``size``.
    stride : int
        Step between consecutive windows in pixels.
    edge : {"align", "drop"}
        Edge policy, see :data:`EDGE_POLICIES`.

    Returns
    -------
    numpy.ndarray
        Sorted, unique ``int64`` offsets ``o`` with ``0 <= o <= size - window``.

    >>> window_origins(70, 32, 16).tolist()
    [0, 16, 32, 38]
    >>> window_origins(70, 32, 16, edge="drop").tolist()
    [0, 16, 32]
    """
    for name, value in (("size", size), ("window", window), ("stride", stride)):
        _check_positive_int(name, value)
    if edge not in EDGE_POLICIES:
        raise ValueError(f"`edge` must be one of {EDGE_POLICIES}, got {edge!r}")
    if window > size:
        raise ValueError(f"`window` ({window}) must not exceed the axis size ({size})")
    origins = np.arange(0, size - window + 1, stride, dtype=np.int64)
    if edge == "align" and origins[-1] + window < size:
        origins = np.append(origins, size - window)
    return origins


@dataclass(frozen=True)
class WindowGrid:
    """All windows of an image: the cross product of row and column origins.

    Windows are numbered row-major: window ``k`` has row ``k // len(xs)`` and column
    ``k % len(xs)``.
    """

    height: int
    width: int
    window: int
    stride: int
    edge: str = "align"
    ys: np.ndarray = field(init=False, repr=False, compare=False)
    xs: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ys", window_origins(self.height, self.window, self.stride, self.edge))
        object.__setattr__(self, "xs", window_origins(self.width, self.window, self.stride, self.edge))

    @property
    def n_windows(self) -> int:
        return len(self.ys) * len(self.xs)

    def origins(self) -> np.ndarray:
        """``(n_windows, 2)`` int64 array of ``(x, y)`` window origins, row-major."""
        yy, xx = np.meshgrid(self.ys, self.xs, indexing="ij")
        return np.stack([xx.ravel(), yy.ravel()], axis=1)
