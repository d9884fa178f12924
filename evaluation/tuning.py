"""A detector's recommended settings, chosen on validation collages, and their measurement.

Pictures are scored here in one process as the Spark job does (the same window cutting,
engine, path, windows table, thresholds and merging), so what is chosen is what a run at the
defaults will do. The settings searched are the merge method and IoU, and a
threshold per class: for each class, the highest threshold whose AP50 stays within
``ap_tolerance`` of the best found, so the overlay shows as few low-confidence boxes as
the AP allows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from collage import Collage, CollageParams, build_collage, ground_truth
from evaluation.metrics import box_metrics
from scoring.boxes import boxes_from_table, coco_detections
from scoring.paths import scoring_path
from scoring.results import windows_table
from scoring.windows import score_strip, score_strip_dense
from tiling import WindowGrid, plan_strips

__all__ = ["TestPicture", "score_picture", "picture_metrics", "recommend_settings", "collage_picture",
           "THRESHOLDS", "MERGES", "MERGE_IOUS", "TUNED_SETTINGS", "AP_TOLERANCE"]

logger = logging.getLogger(__name__)

THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.3, 0.96, 0.05))
MERGES = ("nms", "fuse")
MERGE_IOUS = (0.3, 0.4, 0.5, 0.6)
#: The recommended settings :func:`recommend_settings` chooses.
TUNED_SETTINGS = ("threshold", "merge", "merge_iou")
#: How much AP a cheaper choice may give up to be preferred: a higher threshold (fewer boxes to
#: look at), a coarser dense stride (a quarter of the windows to keep and merge).
AP_TOLERANCE = 0.01


@dataclass(frozen=True)
class TestPicture:
    """A picture with its COCO ground truth: ``pixels`` (H, W, 3) uint8, ``truth`` a dict."""

    name: str
    pixels: np.ndarray
    truth: dict


def collage_picture(name: str, images, labels, params: CollageParams, target: np.ndarray, categories) -> TestPicture:
    """A collage of ``images`` built with ``params`` over ``target``, and its ground truth."""
    collage: Collage = build_collage(target, images, labels, params)
    return TestPicture(name, collage.image, ground_truth(collage, categories))


def score_picture(pixels: np.ndarray, engine, *, stride: int = 16, edge: str = "align",
                  batch_size: int = 128) -> pa.Table:
    """Every window of ``pixels`` scored by ``engine``, on the path a run takes (dense passes for a
    model that has them: :mod:`scoring.paths`): the windows table a run would keep with ``--keep 0``."""
    window = engine.spec.size
    grid = WindowGrid(pixels.shape[0], pixels.shape[1], window, stride, edge)
    (strip,) = plan_strips(grid, 1)
    path = scoring_path(engine.spec, stride=stride)
    if path["path"] == "dense":
        scores = score_strip_dense(pixels, strip, grid.xs, window, engine.detect_band, engine.detect, stride=stride,
                                   dense_stride=path["dense_stride"], pass_pixels=path["pass_pixels"],
                                   batch_size=batch_size)
    else:
        scores = score_strip(pixels, strip, grid.xs, window, engine.detect, batch_size=batch_size)
    return windows_table(scores.origins, scores.probs, 0, window=window, classes=engine.spec.classes,
                         deltas=scores.deltas)


def picture_metrics(table: pa.Table, picture: TestPicture, spec, *, thresholds: dict, merge: str,
                    iou: float) -> dict:
    """:func:`evaluation.metrics.box_metrics` of the boxes ``table`` gives with these settings."""
    _, boxes = boxes_from_table(table, spec.classes, thresholds, merge=merge, iou=iou)
    height, width = picture.pixels.shape[:2]
    detections = coco_detections(boxes, spec.classes, spec.background, file_name=picture.name, width=width,
                                 height=height)
    return box_metrics(picture.truth, detections)


def _mean_ap50(results: list[dict], name: str) -> float:
    values = [r["classes"][name]["ap50"] for r in results if r["classes"][name]["ap50"] is not None]
    return float(np.mean(values)) if values else 0.0


def recommend_settings(tables: list[pa.Table], pictures: list[TestPicture], spec, *,
                       ap_tolerance: float = AP_TOLERANCE,
                       thresholds=THRESHOLDS, merges=MERGES, merge_ious=MERGE_IOUS) -> dict:
    """The merge, merge IoU and per-class thresholds to recommend, from scored validation pictures.

    ``tables`` are the pictures' :func:`score_picture` tables. The merge and IoU are those
    with the best mean AP50 (over classes and pictures) at each class's best threshold;
    then each class gets the highest threshold within ``ap_tolerance`` of its best AP50.

    Returns
    -------
    dict
        ``threshold`` (per class), ``merge``, ``merge_iou``, and ``validation``: the mean
        AP50 per class at those settings and the grid searched.
    """
    foreground = [c for c in spec.classes if c != spec.background]
    scores = {}  # (merge, iou, threshold) -> {class: mean AP50}
    for merge in merges:
        for iou in merge_ious:
            for t in thresholds:
                results = [picture_metrics(table, picture, spec, thresholds=dict.fromkeys(foreground, t),
                                           merge=merge, iou=iou) for table, picture in zip(tables, pictures)]
                scores[merge, iou, t] = {c: _mean_ap50(results, c) for c in foreground}
            logger.info("tuning: %s at IoU %.1f: best AP50 %s", merge, iou,
                        {c: round(max(scores[merge, iou, t][c] for t in thresholds), 3) for c in foreground})

    def best_mean(merge, iou):
        return np.mean([max(scores[merge, iou, t][c] for t in thresholds) for c in foreground])

    merge, iou = max(((m, i) for m in merges for i in merge_ious), key=lambda key: (best_mean(*key), -key[1]))
    chosen = {}
    for c in foreground:
        best = max(scores[merge, iou, t][c] for t in thresholds)
        chosen[c] = max(t for t in thresholds if scores[merge, iou, t][c] >= best - ap_tolerance)
    return {
        "threshold": chosen,
        "merge": merge,
        "merge_iou": iou,
        "validation": {
            "ap50": {c: round(scores[merge, iou, chosen[c]][c], 4) for c in foreground},
            "pictures": [p.name for p in pictures],
            "searched": {"merge": list(merges), "merge_iou": list(merge_ious), "threshold": list(thresholds),
                         "ap_tolerance": ap_tolerance},
        },
    }
