"""From a windows table to boxes: hits over the class thresholds, merged, as COCO detections."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa

from scoring.merge import merge_hits
from scoring.results import BOX_COLUMNS, probability_column

__all__ = ["hits_from_table", "boxes_from_table", "coco_detections", "picture_detections_json", "coco_categories",
           "coco_annotations", "annotation_lines", "rounded", "detections_json", "detections_field",
           "annotations_field", "one_per_line"]


def hits_from_table(table: pa.Table, thresholds: dict, classes) -> np.ndarray:
    """``(N, 6)`` hits ``x0, y0, x1, y1, score, class``: windows at or over a class's threshold.

    A hit's box is the detector's refined box where the table has one (``box_*`` columns),
    else the window itself.
    """
    if BOX_COLUMNS[0] in table.column_names:
        corners = np.stack([table.column(c).to_numpy().astype(np.float64) for c in BOX_COLUMNS], axis=1)
    else:
        x, y, w, h = (table.column(c).to_numpy().astype(np.float64) for c in ("x", "y", "width", "height"))
        corners = np.stack([x, y, x + w, y + h], axis=1)
    hits = []
    for k, name in enumerate(classes):
        if name not in thresholds:
            continue
        p = table.column(probability_column(name)).to_numpy()
        m = p >= thresholds[name]
        hits.append(np.concatenate([corners[m], p[m, None], np.full((m.sum(), 1), k)], axis=1))
    return np.concatenate(hits) if hits else np.zeros((0, 6))


def _picture_fields(classes, background: str, *, file_name: str, width: int, height: int) -> dict:
    """The fields of a picture's COCO object before its annotations."""
    return {
        "info": {"description": "tilescan detections"},
        "images": [{"id": 1, "file_name": file_name, "width": int(width), "height": int(height)}],
        "categories": coco_categories(classes, background),
    }


def coco_detections(boxes: np.ndarray, classes, background: str, *, file_name: str, width: int,
                    height: int) -> dict:
    """A COCO object: ``images`` (one), ``categories`` and ``annotations``.

    ``boxes`` are ``(N, 6)`` with class indices into the model's ``classes``. Category ids
    are the 1-based positions of the non-background classes, so ``car`` is 1 and ``boat``
    2 for the default model. ``annotations`` alone is a valid COCO results list.
    """
    return {**_picture_fields(classes, background, file_name=file_name, width=width, height=height),
            "annotations": coco_annotations(boxes, classes, background)}


def picture_detections_json(boxes: np.ndarray, classes, background: str, *, file_name: str, width: int,
                            height: int) -> bytes:
    """``detections_json(coco_detections(...))``, with the annotations written straight from
    the boxes (:func:`annotation_lines`) rather than through an object each."""
    fields = _picture_fields(classes, background, file_name=file_name, width=width, height=height)
    return ("{\n" + ",\n".join([*(detections_field(k, v) for k, v in fields.items()),
                                 annotations_field(annotation_lines(boxes, classes, background))]) + "\n}\n").encode()


def coco_categories(classes, background: str) -> list:
    """COCO ``categories``: the non-background classes, numbered from 1 in the model's order."""
    foreground = [c for c in classes if c != background]
    return [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(foreground)]


def rounded(values, digits: int) -> list:
    """``round(v, digits)`` of each value, as Python floats: the same values, for a whole array at once.

    numpy's rounding scales the values first, and the product's own rounding can carry one
    across a half: a value that close to a half is rounded by Python itself. Python's
    ``round`` per value took most of the time of a picture's 15,000 annotations.
    """
    values = np.asarray(values, np.float64)
    scale = 10.0 ** digits
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = values * scale
        near_half = np.abs(scaled - np.floor(scaled) - 0.5) <= 1e-9 + 4e-16 * np.abs(scaled)
    # A product of 2**52 or more is whole: the value is its own rounding (and the product may overflow).
    out = np.where(np.abs(scaled) < 2.0 ** 52, np.rint(scaled) / scale, values).tolist()
    for k in np.flatnonzero(near_half).tolist():
        out[k] = round(float(values[k]), digits)
    return out


#: One COCO annotation as ``json.dumps`` writes its object (these keys in this order), to fill with ``%``.
_ANNOTATION = ('{"id": %d, "image_id": %d, "category_id": %d, "bbox": [%r, %r, %r, %r], "area": %r, '
               '"score": %r, "iscrowd": 0}')


class _JsonLiteral(str):
    """Text that ``%r`` writes as it is: ``NaN`` or ``Infinity``, as ``json`` writes such a float."""

    def __repr__(self) -> str:
        return str(self)


def _json_rounded(values: np.ndarray, digits: int) -> list:
    """:func:`rounded` values that ``%r`` writes as ``json.dumps`` writes them."""
    out = rounded(values, digits)
    for k in np.flatnonzero(~np.isfinite(values)).tolist():
        out[k] = _JsonLiteral(json.dumps(out[k]))
    return out


def annotation_lines(boxes, classes, background: str, *, image_id: int = 1, first_id: int = 1) -> str:
    """The COCO annotations of ``(N, 6)`` boxes on picture ``image_id``, numbered from
    ``first_id``, as JSON one per line with no brackets (as :func:`one_per_line` writes them).

    Written from the arrays by one format string rather than through an object each and
    ``json``: twice as fast for a picture's 15,000 boxes, with the same text.
    """
    foreground = [c for c in classes if c != background]
    category_id = {k: foreground.index(c) + 1 for k, c in enumerate(classes) if c != background}
    x0, y0, x1, y1, score, cat = np.asarray(boxes, np.float64).reshape(-1, 6).T
    w, h = x1 - x0, y1 - y0
    rows = zip(range(first_id, first_id + len(cat)), itertools.repeat(int(image_id)),
               [category_id[k] for k in cat.astype(int).tolist()], _json_rounded(x0, 2), _json_rounded(y0, 2),
               _json_rounded(w, 2), _json_rounded(h, 2), _json_rounded(w * h, 2), _json_rounded(score, 6))
    return ",\n".join([_ANNOTATION % row for row in rows])


def coco_annotations(boxes, classes, background: str, *, image_id: int = 1, first_id: int = 1) -> list:
    """COCO ``annotations`` of ``(N, 6)`` boxes on picture ``image_id``, numbered from ``first_id``
    (read back from :func:`annotation_lines`, the one place their fields are written)."""
    return json.loads("[" + annotation_lines(boxes, classes, background, image_id=image_id, first_id=first_id) + "]")


def one_per_line(items: list) -> str:
    """``items`` as JSON, one per line, with no brackets: what ``json.dumps`` of each gives.

    A list of objects is encoded by one call of the C encoder (one call per item costs
    twice as long for tens of thousands) and cut where one object ends and the next
    begins; when a string inside holds that same ``}, {``, the count of cuts tells, and
    each item is encoded alone.
    """
    if all(isinstance(item, dict) for item in items):
        parts = json.dumps(items)[1:-1].split("}, {")
        if len(parts) == len(items):
            return "},\n{".join(parts)
    return ",\n".join(map(json.dumps, items))


def detections_field(key: str, value) -> str:
    """One field of ``detections.json``: a non-empty list one item per line, anything else on one line."""
    if isinstance(value, list) and value:
        return f"{json.dumps(key)}: [\n" + one_per_line(value) + "\n]"
    return f"{json.dumps(key)}: {json.dumps(value)}"


def annotations_field(lines: str) -> str:
    """The ``annotations`` field of ``detections.json`` from :func:`annotation_lines`' text."""
    return '"annotations": [\n' + lines + "\n]" if lines else '"annotations": []'


def detections_json(detections: dict) -> bytes:
    """A COCO object as ``detections.json`` holds it: one line per image, category and annotation.

    Lines are written by ``json``'s C encoder: ``indent=`` would use its pure-Python one,
    several times slower on a picture with tens of thousands of boxes.
    """
    return ("{\n" + ",\n".join(detections_field(k, v) for k, v in detections.items()) + "\n}\n").encode()


def boxes_from_table(table: pa.Table, classes, thresholds: dict, *, merge: str, iou: float):
    """Hits of a windows table and the boxes they merge into: ``(hits, boxes)``, each ``(N, 6)``.

    The one path from scores to boxes, used by a run and when re-merging a finished run's
    ``windows.parquet`` with other settings.
    """
    hits = hits_from_table(table, thresholds, classes)
    return hits, merge_hits(hits, merge, iou=iou)
