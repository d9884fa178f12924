"""A run's false positives and false negatives against a collage's ground truth, as tiles.

:func:`export_tiles` writes them as a folder-per-class tree that
:func:`tilesets.load_image_folder` reads (active learning: errors back into training).
"""
from __future__ import annotations

import io
import logging

import numpy as np
import pandas as pd

from collage import owner_map, placements_from_ground_truth, window_classes
from core import storage
from evaluation.metrics import IOU
from evaluation.runs import BOX_COLUMNS, RunData, truth_frame
from tiling.box import Box, iou_one_to_many

__all__ = ["FALSE_POSITIVE", "FALSE_NEGATIVE", "match_boxes", "error_table", "export_tiles"]

logger = logging.getLogger(__name__)

FALSE_POSITIVE = "false positive"
FALSE_NEGATIVE = "false negative"


def _covered(box: np.ndarray, boxes: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """The share of ``box`` that each of ``boxes`` covers, from their IoU ``iou`` (all ``x0, y0, x1, y1``)."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return iou * (area + areas) / (1 + iou) / area  # IoU = I / (A + B - I), solved for I


def match_boxes(boxes: pd.DataFrame, truths: pd.DataFrame, *, iou: float = IOU) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match detections to ground truth per class, greedily by score, as COCO does.

    Each box, best score first, takes the unmatched non-crowd truth of its class that it
    overlaps most, if their IoU is ``>= iou``: a true positive. A box that matches none
    but lies ``>= iou`` of its area inside a crowd (mostly hidden) truth is ignored, as
    in pycocotools; any other box is a false positive. Unmatched non-crowd truths are
    false negatives. The counts per class are those of :func:`scoring.evaluate.box_metrics`.

    Returns
    -------
    boxes, truths : pandas.DataFrame
        Copies with ``outcome`` (boxes: ``tp``, ``fp`` or ``ignored``; truths: ``tp``,
        ``fn`` or ``ignored``), the matched ``truth_id``/``box_id`` (-1 for none) and, for
        boxes, ``iou`` with it.

    Notes
    -----
    Each box is compared with every truth of its class: ``O(boxes x truths)`` work.
    """
    if not 0 < iou <= 1:
        raise ValueError(f"`iou` must be in (0, 1], got {iou}")
    box_class, truth_class = boxes["class"].to_numpy(), truths["class"].to_numpy()
    box_corners = boxes[BOX_COLUMNS].to_numpy(np.float64)
    truth_corners = truths[BOX_COLUMNS].to_numpy(np.float64)
    crowd = truths["crowd"].to_numpy(bool)
    outcome = np.full(len(boxes), "fp", dtype=object)
    truth_outcome = np.where(crowd, "ignored", "fn").astype(object)
    truth_id, box_id = np.full(len(boxes), -1, np.int64), np.full(len(truths), -1, np.int64)
    overlap = np.zeros(len(boxes))
    # Best score first; ties by position, so the matching is deterministic.
    order = np.lexsort((box_corners[:, 0], box_corners[:, 1], -boxes["score"].to_numpy(np.float64)))
    for cls in sorted(set(box_class)):
        candidates = np.flatnonzero(truth_class == cls)
        open_ = ~crowd[candidates]
        for b in order[box_class[order] == cls]:
            overlaps = iou_one_to_many(box_corners[b], truth_corners[candidates])
            best = np.where(open_, overlaps, -1.0)
            if len(best) and best.max() >= iou:
                t = int(best.argmax())
                open_[t] = False
                outcome[b], overlap[b] = "tp", best[t]
                truth_id[b] = truths["id"].iat[candidates[t]]
                truth_outcome[candidates[t]], box_id[candidates[t]] = "tp", boxes["id"].iat[b]
            elif crowd[candidates].any() and _covered(box_corners[b], truth_corners[candidates], overlaps)[
                    crowd[candidates]].max() >= iou:
                outcome[b] = "ignored"
    return (boxes.assign(outcome=outcome, truth_id=truth_id, iou=overlap),
            truths.assign(outcome=truth_outcome, box_id=box_id))


def _crop_windows(boxes: pd.DataFrame, side: int, width: int, height: int) -> np.ndarray:
    """``(N, 4)`` int64 ``x0, y0, x1, y1``: the ``side x side`` window centred on each box, inside the picture."""
    cx = ((boxes["x0"] + boxes["x1"]) / 2).to_numpy(np.float64)
    cy = ((boxes["y0"] + boxes["y1"]) / 2).to_numpy(np.float64)
    x0 = np.clip(np.round(cx - side / 2), 0, width - side).astype(np.int64)
    y0 = np.clip(np.round(cy - side / 2), 0, height - side).astype(np.int64)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


def error_table(run: RunData, truth: dict, *, iou: float = IOU) -> pd.DataFrame:
    """The run's false positives and false negatives against a collage's ground truth.

    Parameters
    ----------
    run : RunData
    truth : dict
        Ground truth with its collage placements (:func:`tiling.collage.ground_truth`):
        a false positive's true class is the class of the tile that shows on most of its
        crop, as for :func:`scoring.evaluate.window_confusion`.
    iou : float
        IoU at which a box matches a truth.

    Returns
    -------
    pandas.DataFrame
        One row per error, each with a ``window x window`` crop ``x0, y0, x1, y1`` (int
        pixels, half-open): ``kind`` (:data:`FALSE_POSITIVE` or :data:`FALSE_NEGATIVE`),
        ``predicted`` (the box's class, or the run's background class for a miss),
        ``true_class``, ``score`` (a box's score; for a miss the best score of its class
        among the windows centred on it, NaN where none was kept), ``visible_fraction``
        (misses) and ``ref`` (the box or truth id). False positives come first, most
        confident first; then the misses, most visible first, lowest score first.
    """
    width, height = run.size
    boxes, truths = match_boxes(run.boxes, truth_frame(truth), iou=iou)
    placements, h, w = placements_from_ground_truth(truth)
    if (w, h) != run.size:
        raise ValueError(f"the ground truth is for a {w}x{h} picture, the run scored {width}x{height}")

    fp = boxes[boxes["outcome"] == "fp"].sort_values(["score", "y0", "x0"], ascending=[False, True, True])
    fp_crops = _crop_windows(fp, run.window, width, height)
    fp_true = window_classes(owner_map(placements, h, w), placements.label, fp_crops) if len(fp) else []
    fp_rows = pd.DataFrame({"kind": FALSE_POSITIVE, "predicted": fp["class"].to_numpy(), "true_class": fp_true,
                            "score": fp["score"].to_numpy(), "visible_fraction": np.nan, "ref": fp["id"].to_numpy()})

    fn = truths[truths["outcome"] == "fn"].copy()
    fn["score"] = np.nan
    if run.windows is not None:
        for cls, part in fn.groupby("class"):
            fn.loc[part.index, "score"] = run.score_grid(cls).best_in(part[BOX_COLUMNS].to_numpy())
    fn = fn.sort_values(["visible_fraction", "score", "id"], ascending=[False, True, True], na_position="first")
    fn_rows = pd.DataFrame({"kind": FALSE_NEGATIVE, "predicted": run.background, "true_class": fn["class"].to_numpy(),
                            "score": fn["score"].to_numpy(), "visible_fraction": fn["visible_fraction"].to_numpy(),
                            "ref": fn["id"].to_numpy()})

    crops = np.concatenate([fp_crops, _crop_windows(fn, run.window, width, height)]).reshape(-1, 4)
    table = pd.concat([fp_rows, fn_rows], ignore_index=True)
    table[BOX_COLUMNS] = crops
    return table


def _tile_name(prefix: str, row) -> str:
    kind = "fp" if row.kind == FALSE_POSITIVE else "fn"
    return f"{prefix}{kind}-{row.predicted}-x{row.x0:05d}-y{row.y0:05d}.png"


def export_tiles(image: np.ndarray, errors: pd.DataFrame, folder: str, *, prefix: str = "",
                 storage_options: dict | None = None) -> pd.DataFrame:
    """Write each error's crop as ``FOLDER/<true class>/<prefix>-<kind>-<predicted>-x<x0>-y<y0>.png``.

    The tree is what :func:`tilesets.load_image_folder` reads: a false positive goes
    under its true class (usually the background), a miss under its object's class.
    A name stands for one crop of one picture with one true class, so exporting again,
    from this run or another run over the same picture, rewrites the same files, and the
    folder can collect the errors of several pictures when each has its own ``prefix``
    (e.g. :attr:`RunData.picture_name`).

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` uint8, the picture the run scored (:func:`load_input`).
    errors : pandas.DataFrame
        Rows of :func:`error_table`, or a subset.
    folder : str
        Local folder or URL.
    prefix : str
        Start of every file name; ``"-"`` is added when it is not empty.

    Returns
    -------
    pandas.DataFrame
        ``errors`` with the written ``path`` of each tile.
    """
    from PIL import Image

    fs, root = storage.filesystem(folder, storage_options)
    prefix = f"{prefix}-" if prefix else ""
    tiles = []  # (class, name, PNG bytes): every crop checked before anything is written
    for row in errors.itertuples(index=False):
        crop = image[Box(row.x0, row.y0, row.x1, row.y1).slices()]
        if crop.shape[:2] != (row.y1 - row.y0, row.x1 - row.x0):
            raise ValueError(f"crop {[row.x0, row.y0, row.x1, row.y1]} is not inside the "
                             f"{image.shape[1]}x{image.shape[0]} picture")
        png = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(crop)).save(png, format="PNG")
        tiles.append((str(row.true_class), _tile_name(prefix, row), png.getvalue()))
    for true_class in sorted({t[0] for t in tiles}):  # once each (on blob storage, the container if new)
        storage.make_folder(fs, storage.join(root, true_class), url=storage.join(folder, true_class))
    paths = []
    for true_class, name, data in tiles:
        storage.write_bytes(fs, storage.join(root, true_class, name), data)
        paths.append(storage.join(folder, true_class, name))
    logger.info("wrote %d error tiles under %s", len(paths), folder)
    return errors.assign(path=paths)
