"""Regions of a picture to zoom into."""
from __future__ import annotations

import pandas as pd

from tiling.box import Box

__all__ = ["regions_from_xywh", "auto_regions"]


def regions_from_xywh(regions, width: int, height: int) -> list[Box]:
    """Zoom boxes given as ``[x, y, width, height]`` pixel lists, clipped to the picture.

    Raises
    ------
    ValueError
        For an entry that is not four numbers with positive width and height, or that
        lies outside the ``width x height`` picture.
    """
    boxes = []
    for k, entry in enumerate(regions):
        try:
            x, y, w, h = (float(v) for v in entry)
        except (TypeError, ValueError):
            raise ValueError(f"REGIONS[{k}] must be [x, y, width, height], got {entry!r}") from None
        if not (w > 0 and h > 0):
            raise ValueError(f"REGIONS[{k}] needs a positive width and height, got {entry!r}")
        clipped = Box.from_xywh(x, y, w, h).intersection(Box(0, 0, width, height))
        if clipped is None:
            raise ValueError(f"REGIONS[{k}] = {list(entry)} lies outside the {width}x{height} picture")
        boxes.append(Box(*(int(round(v)) for v in clipped.to_xyxy())))
    return boxes


def auto_regions(boxes: pd.DataFrame, width: int, height: int, *, count: int = 3, side: int = 256) -> list[Box]:
    """``side x side`` regions centred on the best-scoring boxes, or on the centre without any.

    Regions are clipped to the picture; a box inside an earlier region gets none of its own.
    """
    side_x, side_y = min(side, width), min(side, height)
    centres = [((width // 2), (height // 2))]
    if len(boxes):
        best = boxes.sort_values(["score", "y0", "x0"], ascending=[False, True, True])
        centres = list(zip(((best.x0 + best.x1) / 2).tolist(), ((best.y0 + best.y1) / 2).tolist()))
    regions: list[Box] = []
    for cx, cy in centres:
        if len(regions) == count:
            break
        if any(r.x0 <= cx < r.x1 and r.y0 <= cy < r.y1 for r in regions):
            continue
        x0 = int(min(max(round(cx - side_x / 2), 0), width - side_x))
        y0 = int(min(max(round(cy - side_y / 2), 0), height - side_y))
        regions.append(Box.from_xywh(x0, y0, side_x, side_y))
    return regions
