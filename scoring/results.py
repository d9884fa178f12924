"""The windows table: one row per scored window with its class probabilities."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from tiling.box import apply_deltas

__all__ = ["windows_table", "select_rows", "probability_column", "BOX_COLUMNS"]


def probability_column(name: str) -> str:
    return f"p_{name}"


def select_rows(probs: np.ndarray, classes, background: str, floor: float) -> np.ndarray:
    """Indices of windows whose best non-background probability is ``>= floor``."""
    foreground = [i for i, c in enumerate(classes) if c != background]
    if floor <= 0 or not foreground:
        return np.arange(len(probs))
    return np.flatnonzero(probs[:, foreground].max(axis=1) >= floor)


#: The refined box columns of a detector's windows table.
BOX_COLUMNS = ("box_x0", "box_y0", "box_x1", "box_y1")


def _box_columns(origins: np.ndarray, deltas: np.ndarray, window: int) -> dict:
    windows = np.concatenate([origins, origins + window], axis=1)
    boxes = apply_deltas(windows, deltas) if len(origins) else np.zeros((0, 4))
    return {name: pa.array(boxes[:, k].astype(np.float32)) for k, name in enumerate(BOX_COLUMNS)}


def windows_table(origins: np.ndarray, probs: np.ndarray, strip: int, *, window: int, classes,
                  deltas: np.ndarray | None = None) -> pa.Table:
    """One row per window: ``x, y, width, height, [box_x0, box_y0, box_x1, box_y1,] strip, label, score, p_<class>...``.

    ``label`` is the most probable class (background included) and ``score`` its
    probability; the ``p_*`` columns hold the full probability vector. With a detector's
    ``deltas``, the ``box_*`` columns hold the refined box it saw, in picture pixels.
    """
    n = len(origins)
    best = probs.argmax(axis=1) if n else np.zeros(0, np.int64)
    columns = {
        "x": pa.array(origins[:, 0].astype(np.int32)),
        "y": pa.array(origins[:, 1].astype(np.int32)),
        "width": pa.array(np.full(n, window, np.int32)),
        "height": pa.array(np.full(n, window, np.int32)),
        **(_box_columns(origins, deltas, window) if deltas is not None else {}),
        "strip": pa.array(np.full(n, strip, np.int32)),
        "label": pa.DictionaryArray.from_arrays(pa.array(best.astype(np.int32)), pa.array(list(classes))),
        "score": pa.array(probs[np.arange(n), best].astype(np.float32)),
    }
    for k, name in enumerate(classes):
        columns[probability_column(name)] = pa.array(probs[:, k].astype(np.float32))
    return pa.table(columns)
