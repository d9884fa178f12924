"""Merge window hits into boxes: ``none``, ``nms`` and ``fuse``. Pure numpy.

Hits and boxes are ``(N, 6)`` float64 arrays: ``x0, y0, x1, y1, score, class`` with
pixel corners half-open (see :class:`tiling.Box`) and ``class`` an integer class index.
"""
from __future__ import annotations

import numpy as np

__all__ = ["MERGE_METHODS", "iou_one_to_many", "merge_hits"]

MERGE_METHODS = ("fuse", "nms", "none")


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` box ``x0, y0, x1, y1`` with each row of ``(N, 4)`` boxes."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def _score_order(hits: np.ndarray) -> np.ndarray:
    """Highest score first; ties by position (y, then x) so results are deterministic."""
    return np.lexsort((hits[:, 0], hits[:, 1], -hits[:, 4]))


def _clusters(hits: np.ndarray, iou: float):
    """Greedy clusters of one class: the best remaining hit and all hits with IoU >= ``iou``."""
    remaining = hits[_score_order(hits)]
    while len(remaining):
        overlaps = iou_one_to_many(remaining[0, :4], remaining[:, :4]) >= iou
        overlaps[0] = True  # a degenerate box still belongs to its own cluster
        yield remaining[overlaps]
        remaining = remaining[~overlaps]


def _nms_box(cluster: np.ndarray) -> np.ndarray:
    return cluster[0]


def _fused_box(cluster: np.ndarray) -> np.ndarray:
    weights = cluster[:, 4]
    corners = (cluster[:, :4] * weights[:, None]).sum(axis=0) / weights.sum()
    return np.concatenate([corners, [cluster[0, 4], cluster[0, 5]]])


def merge_hits(hits: np.ndarray, method: str = "fuse", *, iou: float = 0.3) -> np.ndarray:
    """Merge hits per class into boxes.

    Parameters
    ----------
    hits : numpy.ndarray
        ``(N, 6)``: ``x0, y0, x1, y1, score, class``.
    method : {"fuse", "nms", "none"}
        ``none`` keeps every hit as a box. ``nms`` keeps, per class, the best hit of each
        greedy cluster. ``fuse`` replaces each cluster by one box whose corners are the
        score-weighted mean of its members' and whose score is the best member's
        (weighted box fusion with a single model).
    iou : float
        A hit joins the cluster of the best remaining hit when their IoU is ``>= iou``.

    Returns
    -------
    numpy.ndarray
        ``(M, 6)`` boxes sorted by class, then score descending.
    """
    if method not in MERGE_METHODS:
        raise ValueError(f"`method` must be one of {MERGE_METHODS}, got {method!r}")
    if not 0 < iou <= 1:
        raise ValueError(f"`iou` must be in (0, 1], got {iou}")
    hits = np.asarray(hits, dtype=np.float64).reshape(-1, 6)
    if len(hits) == 0:
        return hits
    boxes = []
    for cls in np.unique(hits[:, 5]):
        members = hits[hits[:, 5] == cls]
        if method == "none":
            boxes.append(members[_score_order(members)])
            continue
        pick = _nms_box if method == "nms" else _fused_box
        boxes.append(np.stack([pick(cluster) for cluster in _clusters(members, iou)]))
    return np.concatenate(boxes)
