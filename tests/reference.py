"""A plain single-process reference: every window scored on its own, no Spark, no batching."""
from __future__ import annotations

import numpy as np

from engines import create_engine
from pixels import read_image
from tiling import WindowGrid


def reference_scores(image: str, bundle, *, window=32, stride=16, edge="align", engine="onnxruntime") -> dict:
    """``{(x, y): probabilities}`` for every window of ``image``."""
    pixels, _ = read_image(image)
    grid = WindowGrid(pixels.shape[0], pixels.shape[1], window, stride, edge)
    model = create_engine(bundle, engine)
    out = {}
    for x, y in grid.origins():
        crop = np.ascontiguousarray(pixels[y:y + window, x:x + window].transpose(2, 0, 1)[None])
        out[(int(x), int(y))] = model.predict(crop)[0]
    return out


def table_scores(table, classes) -> dict:
    """``{(x, y): probabilities}`` from a windows table."""
    x = table.column("x").to_numpy()
    y = table.column("y").to_numpy()
    probs = np.stack([table.column(f"p_{c}").to_numpy() for c in classes], axis=1)
    return {(int(a), int(b)): p for a, b, p in zip(x, y, probs)}


def assert_same_scores(got: dict, want: dict, atol: float = 1e-5) -> None:
    assert set(got) == set(want), f"window sets differ: {len(set(got) ^ set(want))} windows"
    keys = sorted(want)
    g = np.stack([got[k] for k in keys])
    w = np.stack([want[k] for k in keys])
    assert (g.argmax(axis=1) == w.argmax(axis=1)).all(), "labels differ"
    np.testing.assert_allclose(g, w, atol=atol)
