"""A collage's ground truth: where each placement still shows, its COCO record, and the
true class of any window.

Coordinates follow :mod:`tiling.box`: pixels, ``x`` to the right, ``y`` down, boxes
half-open. Placements are numbered in paint order: placement ``i`` covers every
placement ``j < i`` that it overlaps.
"""
from __future__ import annotations

import numpy as np

from collage.generator import Collage, Placements
from tiling.box import Box

__all__ = ["GROUND_TRUTH_FORMAT", "visible_regions", "ground_truth", "placements_from_ground_truth",
           "window_classes"]

GROUND_TRUTH_FORMAT = "tilescan-collage/1"


def visible_regions(owner: np.ndarray, placements: Placements) -> tuple[np.ndarray, np.ndarray]:
    """Where each placement still shows.

    Returns
    -------
    boxes : numpy.ndarray
        ``(P, 4)`` int64 ``x0, y0, x1, y1`` (half-open): the bounding box of the pixels
        where ``owner == i``; an empty box at the tile's corner when none are left.
    counts : numpy.ndarray
        ``(P,)`` int64 number of visible pixels.
    """
    t = placements.tile_size
    boxes = np.stack([placements.x, placements.y, placements.x, placements.y], axis=1).astype(np.int64)
    counts = np.bincount(owner.ravel() + 1, minlength=len(placements) + 1)[1:].astype(np.int64)
    for i in np.flatnonzero(counts).tolist():
        x, y = int(placements.x[i]), int(placements.y[i])
        mine = owner[y:y + t, x:x + t] == i
        rows, cols = np.flatnonzero(mine.any(axis=1)), np.flatnonzero(mine.any(axis=0))
        boxes[i] = (x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1)
    return boxes, counts


def ground_truth(collage: Collage, categories, *, file_name: str = "collage.png") -> dict:
    """The collage's COCO ground truth, with the placements needed to rebuild its owner map.

    Every placement whose class is in ``categories`` becomes an annotation: ``bbox`` is its
    full tile ``[x, y, w, h]``, ``visible_bbox`` the bounding box of its visible pixels and
    ``visible_fraction`` their share of the tile. Tiles with a visible fraction below
    ``collage.params.min_visible`` get ``iscrowd`` 1 and ``ignore`` 1, so COCO evaluation
    neither rewards nor penalises them. Category ids are 1-based positions in ``categories``.
    The ``collage`` entry lists every placement in paint order (see
    :func:`placements_from_ground_truth`).
    """
    p, params = collage.placements, collage.params
    boxes, counts = visible_regions(collage.owner, p)
    fraction = counts / float(p.tile_size ** 2)
    category_id = {name: k + 1 for k, name in enumerate(categories)}
    annotations = []
    for i in np.flatnonzero(np.isin(p.label, list(categories))).tolist():
        hidden = int(fraction[i] < params.min_visible)
        full = p.box(i)
        annotations.append({
            "id": len(annotations) + 1,
            "image_id": 1,
            "category_id": category_id[str(p.label[i])],
            "bbox": list(full.to_xywh()),
            "area": full.area,
            "visible_bbox": list(Box(*(int(v) for v in boxes[i])).to_xywh()),
            "visible_fraction": round(float(fraction[i]), 4),
            "iscrowd": hidden,
            "ignore": hidden,
            "placement": i,
            "tile_index": int(p.tile[i]),
            "source": str(p.source[i]),
        })
    classes = sorted(set(p.label.tolist()))
    return {
        "info": {"description": "tilescan collage ground truth"},
        "images": [{"id": 1, "file_name": file_name, "width": params.width, "height": params.height}],
        "categories": [{"id": k, "name": name} for name, k in category_id.items()],
        "annotations": annotations,
        "collage": {
            "format": GROUND_TRUTH_FORMAT,
            "tile_size": p.tile_size,
            "min_visible": params.min_visible,
            "classes": classes,
            "placements": {
                "x": p.x.tolist(),
                "y": p.y.tolist(),
                "class": np.searchsorted(classes, p.label).tolist(),
                "tile_index": p.tile.tolist(),
                "source": p.source.tolist(),
            },
        },
    }


def placements_from_ground_truth(doc: dict) -> tuple[Placements, int, int]:
    """The placements recorded by :func:`ground_truth`, with the collage's height and width.

    ``owner_map(*placements_from_ground_truth(doc))`` rebuilds the owner map exactly.
    """
    try:
        info = doc["collage"]
        if info.get("format") != GROUND_TRUTH_FORMAT:
            raise ValueError(f"format must be {GROUND_TRUTH_FORMAT!r}, got {info.get('format')!r}")
        table = info["placements"]
        classes = np.asarray(info["classes"], dtype=str)
        placements = Placements(
            x=np.asarray(table["x"], dtype=np.int64),
            y=np.asarray(table["y"], dtype=np.int64),
            tile=np.asarray(table["tile_index"], dtype=np.int64),
            label=classes[np.asarray(table["class"], dtype=np.int64)],
            source=np.asarray(table["source"], dtype=str),
            tile_size=int(info["tile_size"]),
        )
        image = doc["images"][0]
        height, width = int(image["height"]), int(image["width"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"ground truth has no usable `collage` placements ({type(exc).__name__}: {exc})") from None
    if not len({len(placements.x), len(placements.y), len(placements.label), len(placements.source)}) == 1:
        raise ValueError("ground truth `collage.placements` columns differ in length")
    return placements, height, width


def _row_modes(values: np.ndarray) -> np.ndarray:
    """The most frequent value of each row; ties go to the largest value.

    >>> _row_modes(np.array([[3, 1, 3, 1], [2, 2, 5, 0]])).tolist()
    [3, 2]
    """
    s = np.sort(values, axis=1)
    n, m = s.shape
    starts = np.ones((n, m), dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    first = np.flatnonzero(starts)  # every row begins a run, so runs never span two rows
    lengths = np.diff(np.append(first, n * m))
    rows = first // m
    order = np.lexsort((lengths, rows))  # stable: equal runs stay in value order
    last_of_row = order[np.append(rows[order][1:] != rows[order][:-1], True)]
    return s.ravel()[first[last_of_row]]


def window_classes(owner: np.ndarray, labels, windows: np.ndarray, *, chunk_pixels: int = 1 << 22) -> np.ndarray:
    """The true class of each window: the class of the placement that shows on most of it.

    Parameters
    ----------
    owner : numpy.ndarray
        ``(H, W)`` int32 owner map from :func:`owner_map`, every pixel covered.
    labels : array_like
        ``(P,)`` class name of each placement.
    windows : numpy.ndarray
        ``(N, 4)`` int ``x0, y0, x1, y1`` (half-open), non-empty and inside the owner map.
    chunk_pixels : int
        Pixels gathered at a time; bounds memory to about ``8 * chunk_pixels`` bytes.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` str. When two placements show on equally many pixels, the one on top wins.

    >>> owner = np.array([[0, 0, 1, 1], [0, 1, 1, 1]], dtype=np.int32)
    >>> window_classes(owner, ["car", "boat"], np.array([[0, 0, 2, 2], [0, 0, 4, 2]])).tolist()
    ['car', 'boat']
    """
    labels = np.asarray(labels).astype(str)
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[1] != 4 or not np.issubdtype(windows.dtype, np.integer):
        raise ValueError(f"`windows` must be an (N, 4) int array of x0, y0, x1, y1, got {windows.dtype} "
                         f"{windows.shape}")
    height, width = owner.shape
    x0, y0, x1, y1 = windows.T
    bad = (x0 < 0) | (y0 < 0) | (x1 > width) | (y1 > height) | (x1 <= x0) | (y1 <= y0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`windows` must be non-empty and inside the {width}x{height} owner map, got "
                         f"{windows[k].tolist()} at row {k}")
    if owner.min(initial=0) < 0:
        raise ValueError("`owner` has uncovered pixels (-1)")
    result = np.empty(len(windows), dtype=labels.dtype)
    sizes, group = np.unique(np.stack([x1 - x0, y1 - y0], axis=1), axis=0, return_inverse=True)
    for g, (w, h) in enumerate(sizes.tolist()):
        members = np.flatnonzero(group.ravel() == g)
        for part in np.array_split(members, -(-len(members) * w * h // chunk_pixels)):
            rows = y0[part, None] + np.arange(h)
            cols = x0[part, None] + np.arange(w)
            patches = owner[rows[:, :, None], cols[:, None, :]].reshape(len(part), -1)
            result[part] = labels[_row_modes(patches)]
    return result
