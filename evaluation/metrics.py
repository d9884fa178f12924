"""Metrics of a run's results against a collage's ground truth.

Boxes are scored with pycocotools (AP at IoU 0.5, AP over IoU 0.5:0.95, and precision and
recall of all the run's boxes at IoU 0.5); windows with a confusion matrix against each
window's true class (the class of the tile that shows on most of it, from
:func:`collage.window_classes`).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from collage import owner_map, placements_from_ground_truth, window_classes

__all__ = ["IOU", "box_metrics", "window_confusion", "evaluate", "plot_pr_curves", "format_number",
           "summary_lines"]

#: The IoU at which precision, recall and the curves are reported.
IOU = 0.5

def _categories(doc: dict, what: str) -> dict:
    """``{category id: name}`` of a COCO document."""
    try:
        return {int(c["id"]): str(c["name"]) for c in doc["categories"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{what}: `categories` must list objects with id and name ({exc})") from None


def _image_size(doc: dict, what: str) -> tuple[int, int]:
    try:
        (image,) = doc["images"]
        return int(image["width"]), int(image["height"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{what}: `images` must hold exactly one image with width and height ({exc})") from None


def _boxes(annotations: list, what: str, *, scored: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 4)`` float64 ``x, y, w, h`` boxes and ``(N,)`` scores (zeros when not ``scored``)."""
    try:
        boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(len(annotations), 4)
        scores = np.array([a["score"] if scored else 0.0 for a in annotations], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{what}: every annotation needs a 4-number `bbox`"
                         f"{' and a `score`' if scored else ''} ({type(exc).__name__}: {exc})") from None
    bad = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0) | ~np.isfinite(scores)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: annotation {k} has an empty or non-finite box or score: {annotations[k]}")
    return boxes, scores


def _truth_annotations(truths: list, names: dict) -> list[dict]:
    """The truth's annotations with ``category_id`` one of ``names`` and ``iscrowd`` 0 or 1.

    COCO files from other annotation tools often leave ``iscrowd`` out: it is then 0, as
    pycocotools' own ground truth loader would have it, instead of its KeyError later.
    """
    checked = []
    for k, a in enumerate(truths):
        try:
            category, crowd = int(a["category_id"]), int(a.get("iscrowd", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"ground truth: annotation {k} needs an integer `category_id` and `iscrowd` "
                             f"({type(exc).__name__}: {exc})") from None
        if category not in names:
            raise ValueError(f"ground truth: annotation {k} has category_id {category}, not one of the "
                             f"categories {sorted(names)}")
        if crowd not in (0, 1):
            raise ValueError(f"ground truth: annotation {k} has iscrowd {crowd}, not 0 or 1")
        checked.append({**a, "category_id": category, "iscrowd": crowd})
    return checked


def _overlap_groups(boxes: np.ndarray) -> np.ndarray:
    """``(N,)`` group of each ``x, y, w, h`` box, such that boxes that overlap share a group.

    Two boxes overlap only if their centres are closer, along each axis, than the larger
    side of all boxes; groups are the connected components of that (looser) relation.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if not len(boxes):
        return np.zeros(0, dtype=np.int64)
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    pairs = cKDTree(centres).query_pairs(boxes[:, 2:].max(), p=np.inf, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(boxes), len(boxes)))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _split_images(truths: list, detections: list, categories) -> tuple[list, list, list]:
    """The one picture cut into one COCO image per group of overlapping boxes of a class.

    pycocotools matches detections to truths with a Python loop over every pair in an
    image, which takes minutes on a collage with thousands of tiles. A detection can only
    match a box it overlaps, so matching within each group gives the same result; only the
    order of detections with equal scores across groups can differ.
    """
    images, gts, dts = [], [], []
    for cat in categories:
        mine_t = [a for a in truths if a["category_id"] == cat]
        mine_d = [a for a in detections if a["category_id"] == cat]
        boxes = np.array([a["bbox"] for a in mine_t + mine_d], dtype=np.float64).reshape(-1, 4)
        groups = _overlap_groups(boxes) + len(images) + 1
        images.extend({"id": int(g)} for g in np.unique(groups))
        gts.extend({**a, "image_id": int(g)} for a, g in zip(mine_t, groups[:len(mine_t)]))
        dts.extend({**a, "image_id": int(g)} for a, g in zip(mine_d, groups[len(mine_t):]))
    return images, gts, dts


def _mean_valid(values: np.ndarray):
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def _ratio(num: int, den: int):
    return num / den if den else None


def box_metrics(truth: dict, detections: dict) -> dict:
    """COCO box metrics of ``detections`` against ``truth``, per class.

    Parameters
    ----------
    truth : dict
        COCO ground truth of one picture (:func:`tiling.collage.ground_truth`); truths with
        ``iscrowd`` 1 are ignored: matching them neither helps nor hurts.
    detections : dict
        The run's ``detections.json``: COCO ``images`` (one), ``categories`` and
        ``annotations`` with ``bbox`` ``[x, y, w, h]`` in pixels and ``score``. Categories
        are matched to the truth's by name.

    Returns
    -------
    dict
        ``classes``: per class name ``ap50`` and ``ap`` (IoU 0.5 and mean over
        0.5:0.95, ``None`` without truths), ``precision`` and ``recall`` of all its
        detections at IoU 0.5, and counts; ``mean``: the means of ``ap50`` and ``ap``;
        ``pr_curve``: COCO's interpolated precision at 101 recall levels at IoU 0.5.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = _categories(truth, "ground truth")
    size = _image_size(truth, "ground truth")
    ids = {name: cat for cat, name in names.items()}
    det_names = _categories(detections, "detections")
    if detections.get("images") and _image_size(detections, "detections") != size:
        raise ValueError(f"detections are for a {'x'.join(map(str, _image_size(detections, 'detections')))} "
                         f"picture, the ground truth for {size[0]}x{size[1]}")
    unknown = sorted(set(det_names.values()) - set(ids))
    if unknown:
        raise ValueError(f"detections have classes {unknown} that the ground truth lacks ({sorted(ids)})")
    truths = truth.get("annotations")
    found = detections.get("annotations")
    if not isinstance(truths, list) or not isinstance(found, list):
        raise ValueError("ground truth and detections need an `annotations` list")
    _boxes(truths, "ground truth", scored=False)
    truths = _truth_annotations(truths, names)
    _, scores = _boxes(found, "detections", scored=True)
    try:
        found = [{"category_id": ids[det_names[int(a["category_id"])]], "bbox": [float(v) for v in a["bbox"]],
                  "score": float(s)} for a, s in zip(found, scores)]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"detections: an annotation has an unknown `category_id` ({exc})") from None

    images, gts, dts = _split_images(truths, found, names)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{**im, "width": size[0], "height": size[1]} for im in images],
                      "categories": truth["categories"], "annotations": gts}
        gt.createIndex()
        if dts:
            dt = gt.loadRes(dts)
        else:  # loadRes cannot take an empty list
            dt = COCO()
            dt.dataset = {"images": gt.dataset["images"], "categories": truth["categories"], "annotations": []}
            dt.createIndex()
        coco = COCOeval(gt, dt, iouType="bbox")
        coco.params.imgIds = [im["id"] for im in images]
        coco.params.catIds = list(names)
        coco.params.maxDets = [max(1, len(dts))]
        coco.params.areaRng, coco.params.areaRngLbl = [[0, 1e10]], ["all"]
        coco.evaluate()
        coco.accumulate()

    t = int(np.flatnonzero(np.isclose(coco.params.iouThrs, IOU))[0])
    classes, curves = {}, {}
    for k, cat in enumerate(coco.params.catIds):  # evaluate() sorted them; the arrays follow
        name = names[cat]
        precision = coco.eval["precision"][:, :, k, 0, 0]
        tp = fp = n_truths = 0
        for e in coco.evalImgs:
            if e is None or e["category_id"] != cat:
                continue
            counted = ~e["dtIgnore"][t].astype(bool)
            matched = e["dtMatches"][t] > 0
            tp += int((matched & counted).sum())
            fp += int((~matched & counted).sum())
            n_truths += int((~e["gtIgnore"].astype(bool)).sum())
        mine = [a for a in truths if a["category_id"] == cat]
        classes[name] = {
            "ap50": _mean_valid(precision[t]),
            "ap": _mean_valid(precision),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, n_truths),
            "true_positives": tp,
            "false_positives": fp,
            "truths": n_truths,
            "ignored_truths": sum(1 for a in mine if a.get("iscrowd")),
            "detections": sum(1 for a in dts if a["category_id"] == cat),
        }
        curves[name] = [None if p < 0 else round(float(p), 6) for p in precision[t]]
    means = {}
    for key in ("ap50", "ap"):
        values = [c[key] for c in classes.values() if c[key] is not None]
        means[key] = float(np.mean(values)) if values else None
    return {
        "iou": IOU,
        "classes": classes,
        "mean": means,
        "pr_curve": {"iou": IOU, "recall": [round(float(r), 4) for r in coco.params.recThrs], "precision": curves},
    }


def window_confusion(truth: dict, windows: np.ndarray, labels) -> dict:
    """Confusion matrix of window labels against each window's true class.

    Parameters
    ----------
    truth : dict
        Ground truth with its ``collage`` placements (:func:`tiling.collage.ground_truth`).
    windows : numpy.ndarray
        ``(N, 4)`` int ``x0, y0, x1, y1`` (half-open) windows inside the collage.
    labels : array_like
        ``(N,)`` predicted class name of each window.

    Returns
    -------
    dict
        ``classes`` (the truth's categories, then the other tile classes), ``matrix``
        (rows true class, columns predicted), ``accuracy`` and per-class ``precision`` and
        ``recall`` (``None`` where undefined).
    """
    from sklearn.metrics import confusion_matrix

    placements, height, width = placements_from_ground_truth(truth)
    foreground = list(_categories(truth, "ground truth").values())
    classes = foreground + sorted(set(placements.label.tolist()) - set(foreground))
    labels = np.asarray(labels).astype(str)
    if labels.shape != (len(windows),):
        raise ValueError(f"`labels` needs one entry per window ({len(windows)}), got shape {labels.shape}")
    unknown = sorted(set(labels.tolist()) - set(classes))
    if unknown:
        raise ValueError(f"window labels {unknown} are not classes of the ground truth ({classes})")
    true = window_classes(owner_map(placements, height, width), placements.label, windows)
    matrix = confusion_matrix(true, labels, labels=classes)
    diagonal = np.diag(matrix)
    return {
        "classes": classes,
        "matrix": matrix.tolist(),
        "windows": int(len(windows)),
        "accuracy": _ratio(int(diagonal.sum()), int(matrix.sum())),
        "precision": {c: _ratio(int(d), int(n)) for c, d, n in zip(classes, diagonal, matrix.sum(axis=0))},
        "recall": {c: _ratio(int(d), int(n)) for c, d, n in zip(classes, diagonal, matrix.sum(axis=1))},
    }


def evaluate(truth: dict, detections: dict, *, windows: np.ndarray | None = None, labels=None) -> dict:
    """:func:`box_metrics`, plus :func:`window_confusion` under ``windows`` when windows are given."""
    result = box_metrics(truth, detections)
    result["windows"] = None if windows is None else window_confusion(truth, windows, labels)
    return result


def plot_pr_curves(evaluation: dict) -> bytes:
    """PNG bytes of the precision-recall curve of each class at IoU 0.5."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    curve = evaluation["pr_curve"]
    for name, precision in curve["precision"].items():
        ap = evaluation["classes"][name]["ap50"]
        values = [np.nan if p is None else p for p in precision]
        axes.plot(curve["recall"], values, label=f"{name} (AP50 {'n/a' if ap is None else f'{ap:.3f}'})")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
             title=f"Precision-recall at IoU {curve['iou']}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def format_number(value) -> str:
    """Three decimals, or ``n/a`` for a metric that is undefined."""
    return "n/a" if value is None else f"{value:.3f}"


def summary_lines(result: dict) -> list[str]:
    """An evaluation (:func:`evaluate`) as a few lines of text: one per class, the means, the windows."""
    lines = []
    for name, c in result["classes"].items():
        lines.append(f"{name:<10} AP50 {format_number(c['ap50'])}  AP50:95 {format_number(c['ap'])}  "
                     f"precision {format_number(c['precision'])}  recall {format_number(c['recall'])}  "
                     f"({c['detections']} boxes, {c['truths']} truths, {c['ignored_truths']} ignored)")
    lines.append(f"{'mean':<10} AP50 {format_number(result['mean']['ap50'])}  "
                 f"AP50:95 {format_number(result['mean']['ap'])}")
    windows = result.get("windows")
    if windows and "skipped" in windows:
        lines.append(f"windows: no confusion matrix: {windows['skipped']}")
    elif windows:
        lines.append(f"windows: accuracy {format_number(windows['accuracy'])} over {windows['windows']} windows")
    return lines
