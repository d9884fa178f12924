"""Turn window scores into the run's outputs: the windows table, hits, COCO boxes, overlay."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

__all__ = ["windows_table", "select_rows", "hits_from_table", "boxes_from_table", "coco_detections", "draw_overlay",
           "probability_column"]


def probability_column(name: str) -> str:
    return f"p_{name}"


def select_rows(probs: np.ndarray, classes, background: str, floor: float) -> np.ndarray:
    """Indices of windows whose best non-background probability is ``>= floor``."""
    foreground = [i for i, c in enumerate(classes) if c != background]
    if floor <= 0 or not foreground:
        return np.arange(len(probs))
    return np.flatnonzero(probs[:, foreground].max(axis=1) >= floor)


def windows_table(origins: np.ndarray, probs: np.ndarray, strip: int, *, window: int, classes) -> pa.Table:
    """One row per window: ``x, y, width, height, strip, label, score, p_<class>...``.

    ``label`` is the most probable class (background included) and ``score`` its
    probability; the ``p_*`` columns hold the full probability vector.
    """
    n = len(origins)
    best = probs.argmax(axis=1) if n else np.zeros(0, np.int64)
    columns = {
        "x": pa.array(origins[:, 0].astype(np.int32)),
        "y": pa.array(origins[:, 1].astype(np.int32)),
        "width": pa.array(np.full(n, window, np.int32)),
        "height": pa.array(np.full(n, window, np.int32)),
        "strip": pa.array(np.full(n, strip, np.int32)),
        "label": pa.DictionaryArray.from_arrays(pa.array(best.astype(np.int32)), pa.array(list(classes))),
        "score": pa.array(probs[np.arange(n), best].astype(np.float32)),
    }
    for k, name in enumerate(classes):
        columns[probability_column(name)] = pa.array(probs[:, k].astype(np.float32))
    return pa.table(columns)


def hits_from_table(table: pa.Table, thresholds: dict, classes) -> np.ndarray:
    """``(N, 6)`` hits ``x0, y0, x1, y1, score, class``: windows at or over a class's threshold."""
    x = table.column("x").to_numpy().astype(np.float64)
    y = table.column("y").to_numpy().astype(np.float64)
    w = table.column("width").to_numpy().astype(np.float64)
    h = table.column("height").to_numpy().astype(np.float64)
    hits = []
    for k, name in enumerate(classes):
        if name not in thresholds:
            continue
        p = table.column(probability_column(name)).to_numpy()
        m = p >= thresholds[name]
        hits.append(np.stack([x[m], y[m], x[m] + w[m], y[m] + h[m], p[m], np.full(m.sum(), k)], axis=1))
    return np.concatenate(hits) if hits else np.zeros((0, 6))


def coco_detections(boxes: np.ndarray, classes, background: str, *, file_name: str, width: int,
                    height: int) -> dict:
    """A COCO object: ``images`` (one), ``categories`` and ``annotations``.

    ``boxes`` are ``(N, 6)`` with class indices into the model's ``classes``. Category ids
    are the 1-based positions of the non-background classes, so ``car`` is 1 and ``boat``
    2 for the default model. ``annotations`` alone is a valid COCO results list.
    """
    foreground = [c for c in classes if c != background]
    category_id = {k: foreground.index(c) + 1 for k, c in enumerate(classes) if c != background}
    categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(foreground)]
    annotations = []
    for n, (x0, y0, x1, y1, score, cat) in enumerate(boxes, start=1):
        w, h = x1 - x0, y1 - y0
        annotations.append({
            "id": n,
            "image_id": 1,
            "category_id": category_id[int(cat)],
            "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(w), 2), round(float(h), 2)],
            "area": round(float(w * h), 2),
            "score": round(float(score), 6),
            "iscrowd": 0,
        })
    return {
        "info": {"description": "tilescan detections"},
        "images": [{"id": 1, "file_name": file_name, "width": int(width), "height": int(height)}],
        "categories": categories,
        "annotations": annotations,
    }


def draw_overlay(pixels: np.ndarray, boxes: np.ndarray, colors: dict, classes) -> Image.Image:
    """The input with each box outlined in its class colour; line width grows with the image."""
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    line = max(1, round(min(image.size) / 1000))
    for x0, y0, x1, y1, _, cls in boxes:
        color = colors[classes[int(cls)]]
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=tuple(color), width=line)
    return image


def boxes_from_table(table: pa.Table, classes, thresholds: dict, *, merge: str, iou: float):
    """Hits of a windows table and the boxes they merge into: ``(hits, boxes)``, each ``(N, 6)``.

    The one path from scores to boxes, used by a run and when re-merging a finished run's
    ``windows.parquet`` with other settings.
    """
    from scoring.merge import merge_hits

    hits = hits_from_table(table, thresholds, classes)
    return hits, merge_hits(hits, merge, iou=iou)
