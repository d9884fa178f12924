"""The one box type of the project.

Convention, stated once: pixel coordinates, ``x`` to the right and ``y`` down, corners
half-open, so a box covers columns ``x0 <= x < x1`` and rows ``y0 <= y < y1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Box", "BOX_ENCODING", "box_deltas", "apply_deltas", "iou_rows", "iou_one_to_many"]

#: How a box is given relative to the window that saw it: ``(x0 - wx0) / S, (y0 - wy0) / S,
#: log(width / S), log(height / S)``, ``S`` the window side.
BOX_ENCODING = "window-offset-log-size"


@dataclass(frozen=True, order=True)
class Box:
    """An axis-aligned box in pixels, half-open: ``[x0, x1) x [y0, y1)``.

    >>> b = Box.from_xywh(16, 32, 32, 32)
    >>> b
    Box(x0=16, y0=32, x1=48, y1=64)
    >>> b.to_xywh()
    (16, 32, 32, 32)
    >>> b.area
    1024
    """

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"box corners must satisfy x0 <= x1 and y0 <= y1, got {self}")

    @classmethod
    def from_xywh(cls, x: float, y: float, width: float, height: float) -> Box:
        """Build from the COCO form ``[x, y, width, height]``."""
        return cls(x, y, x + width, y + height)

    def to_xywh(self) -> tuple:
        """The COCO form ``(x, y, width, height)``."""
        return (self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0)

    def to_xyxy(self) -> tuple:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices for indexing an ``(H, W, ...)`` array; needs int corners."""
        return slice(int(self.y0), int(self.y1)), slice(int(self.x0), int(self.x1))

    def intersection(self, other: Box) -> Box | None:
        x0, y0 = max(self.x0, other.x0), max(self.y0, other.y0)
        x1, y1 = min(self.x1, other.x1), min(self.y1, other.y1)
        if x1 <= x0 or y1 <= y0:
            return None
        return Box(x0, y0, x1, y1)


def _corners(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"`{name}` must be an (N, 4) array, got shape {array.shape}")
    return array


def box_deltas(windows, boxes) -> np.ndarray:
    """Each box relative to its window, in the :data:`BOX_ENCODING`.

    Parameters
    ----------
    windows, boxes : array_like
        ``(N, 4)`` ``x0, y0, x1, y1`` in pixels (half-open); windows square and non-empty,
        boxes non-empty.

    Returns
    -------
    numpy.ndarray
        ``(N, 4)`` float32 ``dx, dy, log-width, log-height``.

    >>> box_deltas([[16, 16, 48, 48]], [[24, 8, 56, 40]]).tolist()
    [[0.25, -0.25, 0.0, 0.0]]
    """
    windows, boxes = _corners("windows", windows), _corners("boxes", boxes)
    side = windows[:, 2:3] - windows[:, 0:1]
    if (side <= 0).any() or (boxes[:, 2:] <= boxes[:, :2]).any():
        raise ValueError("windows and boxes must be non-empty")
    offsets = (boxes[:, :2] - windows[:, :2]) / side
    sizes = np.log((boxes[:, 2:] - boxes[:, :2]) / side)
    return np.concatenate([offsets, sizes], axis=1).astype(np.float32)


def apply_deltas(windows, deltas) -> np.ndarray:
    """The boxes that ``(N, 4)`` :data:`BOX_ENCODING` deltas describe for their windows.

    The inverse of :func:`box_deltas`; returns ``(N, 4)`` float64 ``x0, y0, x1, y1``.
    Sizes are bounded to 1/8 to 8 window sides, so that a wild output cannot overflow.

    >>> apply_deltas([[16, 16, 48, 48]], [[0.25, -0.25, 0.0, 0.0]]).tolist()
    [[24.0, 8.0, 56.0, 40.0]]
    """
    windows, deltas = _corners("windows", windows), _corners("deltas", deltas)
    side = windows[:, 2:3] - windows[:, 0:1]
    x0y0 = windows[:, :2] + deltas[:, :2] * side
    size = np.exp(np.clip(deltas[:, 2:], -np.log(8), np.log(8))) * side
    return np.concatenate([x0y0, x0y0 + size], axis=1)


def iou_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two ``(N, 4)`` ``x0, y0, x1, y1`` arrays, as ``(N,)`` float64; 0 where the union is empty.

    >>> iou_rows(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2]])).tolist()
    [0.3333333333333333]
    """
    inter = (np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
             * np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None))
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` box ``x0, y0, x1, y1`` with each row of ``(N, 4)`` boxes."""
    return iou_rows(np.broadcast_to(box, boxes.shape), boxes)
