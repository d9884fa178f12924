"""Give a bundle its golden batch: synthetic windows, the float model's outputs, tolerances.

The windows are drawn, with a fixed seed, from a pool of synthetic patterns at the
model's input size: stripes, shapes, blocks and the negatives of
:func:`training.collage_windows.negative_windows` (noise, flat colours, gradients).
Nothing is cut from a data set, so the batch may be committed with the model. The
windows kept are those the float model is least sure of, near its decision boundaries,
where a change in the arithmetic shows first: on the default detector, int8 kernels that
saturate (AVX2 without VNNI) stray from the float outputs four times as far on them as
exact int8 kernels do (BENCHMARKS.md).

Tolerances, per engine precision (:mod:`core.golden`): float32 engines may differ by the
rounding of another framework or kernel (:data:`FLOAT32_TOLERANCE`); int8 engines by
:data:`INT8_MARGIN` times what the bundle's own int8 model shows where it was made, so
that exact int8 kernels pass everywhere and saturating ones do not.
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace

import numpy as np

from core.bundle import load_bundle, update_model_json
from core.cpu import this_cpu
from core.golden import GOLDEN_FILE, GOLDEN_KEY, Difference, GoldenBatch, Tolerance, difference, golden_bytes
from core.project import installed_versions
from engines import create_engine
from training.collage_windows import negative_windows

__all__ = ["add_golden_batch", "synthetic_windows", "GOLDEN_WINDOWS", "CANDIDATES", "FLOAT32_TOLERANCE",
           "INT8_MARGIN", "INT8_FLOOR"]

logger = logging.getLogger(__name__)

#: Windows in a golden batch: enough to meet a saturating kernel, few enough to cost
#: milliseconds per engine load.
GOLDEN_WINDOWS = 48
#: Synthetic windows the golden batch is chosen from.
CANDIDATES = 2048
#: How far a float32 engine may stray: the rounding of another framework (MXNet) or of
#: another CPU's kernels (AVX2 against AVX-512 FMA order) stays two orders below this.
FLOAT32_TOLERANCE = Tolerance(probability_max=1e-4, probability_mean=1e-5, delta_max=1e-3)
#: An int8 engine may stray this many times as far as the bundle's int8 model did where it was made...
INT8_MARGIN = 2.0
#: ...and at least this far (an int8 model that happens to match closely must not fail on a rounding).
INT8_FLOOR = Tolerance(probability_max=0.01, probability_mean=0.001, delta_max=0.01)


def _stripes(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Two colours in straight stripes of any period and angle: high contrast at every scale."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    out = np.empty((count, size, size, 3), np.uint8)
    for n in range(count):
        angle, cycles = rng.uniform(0, np.pi), rng.uniform(1.5, 16)
        on = np.sin(2 * np.pi * cycles * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi)) > 0
        out[n] = np.where(on[:, :, None], rng.integers(0, 256, 3), rng.integers(0, 256, 3))
    return out


def _shapes(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One to five rectangles and ellipses of flat colours over a flat background."""
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((count, size, size, 3), np.uint8)
    for n in range(count):
        out[n] = rng.integers(0, 256, 3)
        for _ in range(int(rng.integers(1, 6))):
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(max(1, size // 8), max(2, 3 * size // 4), 2)
            if rng.random() < 0.5:
                inside = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
            else:
                inside = (xx - x0) ** 2 / w ** 2 + (yy - y0) ** 2 / h ** 2 < 1
            out[n][inside] = rng.integers(0, 256, 3)
    return out


def _blocks(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A coarse grid of random colours, 2 to 8 cells a side, blown up without smoothing."""
    out = np.empty((count, size, size, 3), np.uint8)
    for n in range(count):
        cells = int(rng.integers(2, 9))
        index = np.arange(size) * cells // size
        coarse = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
        out[n] = coarse[index][:, index]
    return out


def synthetic_windows(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, size, size, 3)`` uint8: stripes, shapes, blocks and negatives in equal shares, shuffled."""
    if count < 4 or size < 1:
        raise ValueError(f"`count` must be >= 4 and `size` >= 1, got {count} and {size}")
    share = count // 4
    parts = [_stripes(share, size, rng), _shapes(share, size, rng), _blocks(share, size, rng),
             negative_windows(count - 3 * share, rng, window=size)]
    pool = np.concatenate(parts)
    return pool[rng.permutation(len(pool))]


def _int8_tolerance(measured: Difference) -> Tolerance:
    def widen(value, floor):
        return None if value is None else max(INT8_MARGIN * value, floor)

    return Tolerance(widen(measured.probability_max, INT8_FLOOR.probability_max),
                     widen(measured.probability_mean, INT8_FLOOR.probability_mean),
                     widen(measured.delta_max, INT8_FLOOR.delta_max))


def add_golden_batch(bundle_dir: str, *, count: int = GOLDEN_WINDOWS, seed: int = 0) -> str:
    """Choose the golden windows of a local bundle, compute their references and tolerances, record them.

    The float model (the ``onnx`` file, through ONNX Runtime) scores :data:`CANDIDATES`
    synthetic windows; the ``count`` it is least sure of (lowest top probability) become
    the batch, and its outputs on them, computed again as one batch as the check will,
    the references. When the bundle has an int8 model, its difference from those
    references sets the int8 tolerance. Writes ``golden.npz`` and rewrites ``model.json``
    with it listed and a ``golden`` record; rerunning replaces both.

    Returns
    -------
    str
        The bundle's new id (sha256 of ``model.json``).
    """
    from engines.onnx_int8 import INT8_KEY

    if not isinstance(bundle_dir, (str, os.PathLike)) or not os.path.isdir(bundle_dir):
        raise ValueError(f"`bundle_dir` must be a local bundle folder, got {bundle_dir!r}")
    if not 1 <= count <= CANDIDATES:
        raise ValueError(f"`count` must be in [1, {CANDIDATES}], got {count}")
    bundle = load_bundle(str(bundle_dir))
    size = bundle.spec.size
    reference = create_engine(bundle, "onnxruntime", check=False)
    pool = np.ascontiguousarray(synthetic_windows(CANDIDATES, size, np.random.default_rng(seed)).transpose(0, 3, 1, 2))
    confidence = np.concatenate([reference.predict(pool[i:i + 256]).max(axis=1) for i in range(0, len(pool), 256)])
    chosen = np.sort(np.argsort(confidence, kind="stable")[:count])
    windows = np.ascontiguousarray(pool[chosen])
    probabilities, deltas = reference.detect(windows)
    tolerances = {"float32": FLOAT32_TOLERANCE if deltas is not None else replace(FLOAT32_TOLERANCE, delta_max=None)}
    measured = {}
    if INT8_KEY in bundle.files:
        int8 = create_engine(bundle, "onnxruntime-int8", check=False)
        measured["int8"] = difference(GoldenBatch(windows, probabilities, deltas, {}), *int8.detect(windows))
        tolerances["int8"] = _int8_tolerance(measured["int8"])
    with open(os.path.join(bundle_dir, GOLDEN_FILE), "wb") as fh:
        fh.write(golden_bytes(windows, probabilities, deltas))
    record = {
        "file": GOLDEN_KEY,
        "windows": int(count),
        "selection": f"the {count} of {CANDIDATES} synthetic windows (seed {seed}) the float model is least sure of",
        "reference": {"engine": "onnxruntime", "precision": "float32",
                      "onnxruntime": installed_versions(["onnxruntime"])["onnxruntime"], "cpu": this_cpu().describe()},
        "tolerance": {precision: t.to_json() for precision, t in tolerances.items()},
        "measured": {precision: d.to_json() for precision, d in measured.items()},
    }
    bundle_id = update_model_json(str(bundle_dir), files={GOLDEN_KEY: GOLDEN_FILE}, golden=record)
    logger.info("golden batch of %d windows in %s; tolerances %s", count, bundle_dir,
                {p: t.to_json() for p, t in tolerances.items()})
    return bundle_id
