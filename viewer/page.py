"""A picture's ``viewer.html``: the page template filled with the run's boxes and where its
tiles and OpenSeadragon's script are.

The boxes travel inside the page (a JSON block), not fetched from ``detections.json``: a page
opened from a disk (``file://``) may not fetch, and the page must open offline. They are the
same boxes ``detections.json`` holds, with their class and score.
"""
from __future__ import annotations

import html
import json
import re

import numpy as np

__all__ = ["viewer_html", "page_data"]

_SLOT = re.compile(r"\{\{(TITLE|SCRIPT|DATA)\}\}")


def _hex(color) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in color[:3])


def page_data(boxes: np.ndarray, classes, background: str, colors: dict, *, name: str, pyramid: dict,
              folder: str) -> dict:
    """What the page draws: the picture's size, its tiles (``folder``: the pyramid's folder,
    relative to the page), its classes with their colours, and each ``(N, 6)`` box
    ``(x0, y0, x1, y1, score, class)`` rounded to what a screen shows."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 6)
    rows = np.column_stack([np.round(boxes[:, :4], 1), np.round(boxes[:, 4], 4), boxes[:, 5]])
    return {
        "name": name, "width": pyramid["width"], "height": pyramid["height"],
        "tiles": {"url": f"{folder}/tiles_files/", "format": pyramid["format"], "tile_size": pyramid["tile_size"],
                  "overlap": pyramid["overlap"]},
        "script": f"{folder}/openseadragon.min.js",
        "classes": list(classes),
        "shown": [k for k, c in enumerate(classes) if c != background and c in colors],
        "colors": {c: _hex(colors[c]) for c in classes if c in colors},
        "boxes": [[*row[:5], int(row[5])] for row in rows.tolist()],
    }


def viewer_html(template: str, data: dict) -> bytes:
    """The page: ``template``'s ``{{TITLE}}``, ``{{SCRIPT}}`` and ``{{DATA}}`` filled from ``data``
    (:func:`page_data`)."""
    # "</" cannot end the JSON block early once written as "<\/", which JSON reads back as "</".
    block = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    values = {"TITLE": html.escape(f"tilescan: {data['name']}"), "SCRIPT": html.escape(data["script"], quote=True),
              "DATA": block}
    # One pass: a picture's name that looks like a slot stays as it is.
    return _SLOT.sub(lambda slot: values[slot.group(1)], template).encode("utf-8")
