"""The overlay: the input picture with each box outlined in its class colour."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["draw_overlay"]


def draw_overlay(pixels: np.ndarray, boxes: np.ndarray, colors: dict, classes) -> Image.Image:
    """The input with each box outlined in its class colour; line width grows with the image."""
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    line = max(1, round(min(image.size) / 1000))
    for x0, y0, x1, y1, _, cls in boxes:
        color = colors[classes[int(cls)]]
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=tuple(color), width=line)
    return image
