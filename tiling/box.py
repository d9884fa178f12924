"""The one box type of the project.

Convention, stated once: pixel coordinates, ``x`` to the right and ``y`` down, corners
half-open, so a box covers columns ``x0 <= x < x1`` and rows ``y0 <= y < y1``.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Box"]


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
