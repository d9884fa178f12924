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
from scoring.png import encode_png

__all__ = ["draw_overlay", "overlay_png", "FULL_OVERLAY_PIXELS", "PREVIEW_PIXELS"]

#: The largest picture drawn whole (64 megapixels: 192 MB of RGB); larger ones get a preview.
FULL_OVERLAY_PIXELS = 64_000_000
#: The largest preview (16 megapixels, e.g. 4000 x 4000).
PREVIEW_PIXELS = 16_000_000


def draw_overlay(pixels: np.ndarray, boxes: np.ndarray, colors: dict, classes, *, scale: float = 1.0) -> Image.Image:
    """``pixels`` with each ``(N, 6)`` box outlined in its class colour; line width grows with the picture.

    ``scale`` maps box coordinates (full-resolution pixels) onto ``pixels``.
    """
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    line = max(1, round(min(image.size) / 1000))
    outline = {k: tuple(colors[name]) for k, name in enumerate(classes) if name in colors}
    # Python floats (one tolist) for the coordinates: numpy scalars took twice as long for 15,000 boxes.
    for x0, y0, x1, y1, _, cls in np.asarray(boxes, np.float64).reshape(-1, 6).tolist():
        draw.rectangle([x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1], outline=outline[int(cls)], width=line)
    return image


def overlay_png(info: ImageInfo, boxes: np.ndarray, colors: dict, classes, *,
                storage_options: dict | None = None) -> tuple[bytes, int]:
    """The overlay of the picture ``info`` describes, as PNG bytes, and the reduction factor (1: full size)."""
    area = info.width * info.height
    factor = 1 if area <= FULL_OVERLAY_PIXELS else math.ceil(math.sqrt(area / PREVIEW_PIXELS))
    if factor == 1:  # read_band keeps a picture the tasks just decoded, whatever its reader
        pixels = read_band(info, 0, info.height, storage_options=storage_options)
    else:
        pixels = read_reduced(info, factor, storage_options=storage_options)
    image = draw_overlay(pixels, boxes, colors, classes, scale=1 / factor)
    del pixels  # Pillow drew on a copy: from here on, one copy of the rows at a time and their encoding
    rgb = np.asarray(image)
    del image
    return encode_png(rgb), factor

