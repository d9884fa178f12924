"""The overlay: the input picture with each box outlined in its class colour.

A picture of up to :data:`FULL_OVERLAY_PIXELS` is drawn whole, at full resolution. A
larger one is drawn as a preview of at most :data:`PREVIEW_PIXELS`, reduced by a whole
factor (box-filtered, band by band, so memory stays near one band and the preview), with
the boxes scaled to it; the manifest records the scale (``overlay_scale``), and
``detections.json`` keeps the boxes at full resolution.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from pixels import ImageInfo, read_band, read_reduced
from pixels.bands import HELD_WHOLE_PIXELS
from scoring.png import BLOCK_ROWS, encode_png_blocks

__all__ = ["draw_overlay", "overlay_png", "outline_width", "FULL_OVERLAY_PIXELS", "PREVIEW_PIXELS"]

#: The largest picture drawn whole (64 megapixels: 192 MB of RGB); larger ones get a preview.
FULL_OVERLAY_PIXELS = HELD_WHOLE_PIXELS
#: The largest preview (16 megapixels, e.g. 4000 x 4000).
PREVIEW_PIXELS = 16_000_000


def outline_width(width: int, height: int) -> int:
    """Box outlines are one pixel wide per thousand pixels of the drawn picture's shorter side, and
    at least two: a one-pixel outline is lost at full size on a busy picture."""
    return max(2, round(min(width, height) / 1000))


def _corners(boxes, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Each ``(N, 6)`` box's inclusive pixel corners ``(x0, y0, x1, y1)`` at ``scale``, truncated
    as Pillow truncates coordinates (whole numbers can then be shifted exactly), and its class."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 6)
    corners = np.column_stack([boxes[:, 0] * scale, boxes[:, 1] * scale, boxes[:, 2] * scale - 1,
                               boxes[:, 3] * scale - 1])
    return np.trunc(corners).astype(np.int64), boxes[:, 5].astype(np.int64)


def draw_overlay(pixels: np.ndarray, boxes: np.ndarray, colors: dict, classes, *, scale: float = 1.0,
                 top: int = 0, line: int | None = None) -> Image.Image:
    """``pixels`` with each ``(N, 6)`` box outlined in its class colour, in the boxes' order.

    ``scale`` maps box coordinates (full-resolution pixels) onto the drawn picture; ``pixels``
    may be a block of its rows from row ``top`` on, drawn with the whole picture's ``line``
    width (by default :func:`outline_width` of ``pixels``): the blocks of a picture then
    hold the very pixels of the picture drawn whole.
    """
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    line = line or outline_width(*image.size)
    outline = {k: tuple(colors[name]) for k, name in enumerate(classes) if name in colors}
    corners, kinds = _corners(boxes, scale)
    corners[:, [1, 3]] -= top
    # Python ints (one tolist) for the coordinates: numpy scalars took twice as long for 15,000 boxes.
    for (x0, y0, x1, y1), kind in zip(corners.tolist(), kinds.tolist()):
        draw.rectangle((x0, y0, x1, y1), outline=outline[kind], width=line)
    return image


def overlay_png(info: ImageInfo, boxes: np.ndarray, colors: dict, classes, *,
                storage_options: dict | None = None) -> tuple[bytes, int]:
    """The overlay of the picture ``info`` describes, as PNG bytes, and the reduction factor (1: full size).

    It is drawn in blocks of rows, each encoded on other threads while the next is drawn
    (drawing holds the GIL, deflating does not): the picture is not copied whole.
    """
    area = info.width * info.height
    factor = 1 if area <= FULL_OVERLAY_PIXELS else math.ceil(math.sqrt(area / PREVIEW_PIXELS))
    if factor == 1:  # read_band keeps a picture the tasks just decoded, whatever its reader
        pixels = read_band(info, 0, info.height, storage_options=storage_options)
    else:
        pixels = read_reduced(info, factor, storage_options=storage_options)
    height, width = pixels.shape[:2]
    line = outline_width(width, height)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 6)
    corners, _ = _corners(boxes, 1 / factor)

    def drawn_blocks():
        for top in range(0, height, BLOCK_ROWS):
            bottom = min(height, top + BLOCK_ROWS)
            near = (corners[:, 1] < bottom + line) & (corners[:, 3] >= top - line)  # a margin to spare
            yield np.asarray(draw_overlay(pixels[top:bottom], boxes[near], colors, classes, scale=1 / factor,
                                          top=top, line=line))

    return encode_png_blocks(drawn_blocks(), width, height), factor
