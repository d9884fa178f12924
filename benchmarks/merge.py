"""Merging at scale: a million hits, and a picture of noise a model calls mostly "car".

    python -m benchmarks.merge [--model models/default] [--quick]

1. ``scoring.merge.merge_hits`` on 1,000,000 hits (32-pixel windows every 16 pixels over
   a 16,000-pixel square, random scores, three classes), each method, in this process;
2. a 12,000 x 12,000 picture of noise scored on a local SparkSession with the bundled
   classifier (``models/classifier``, which fires on most noise windows: the case that
   made merging quadratic) and with the model, reporting merge's share of each run.
"""
from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np

from core.project import project_path

__all__ = ["grid_hits", "time_merge", "run", "main"]

logger = logging.getLogger(__name__)

HITS, QUICK_HITS = 1_000_000, 100_000
NOISE_SIDE, QUICK_NOISE_SIDE = 12_000, 1_200
CLASSIFIER = project_path("models", "classifier")


def grid_hits(count: int, *, seed: int = 0) -> np.ndarray:
    """``(count, 6)`` hits: 32-pixel windows every 16 pixels row by row, random scores and classes."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(count)))
    ys, xs = np.divmod(np.arange(count), side)
    origins = np.stack([xs, ys], axis=1).astype(np.float64) * 16
    return np.concatenate([origins, origins + 32, rng.random((count, 1)), rng.integers(0, 3, (count, 1))], axis=1)


def time_merge(hits: np.ndarray, *, iou: float = 0.3) -> dict:
    from scoring.merge import MERGE_METHODS, merge_hits

    rows = {}
    for method in MERGE_METHODS:
        started = time.perf_counter()
        boxes = merge_hits(hits, method, iou=iou)
        rows[method] = {"seconds": time.perf_counter() - started, "boxes": int(len(boxes))}
    return rows


def _noise_run(spark, model: str, picture: str, out: str) -> dict:
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare
    from scoring.pipeline import run as run_pipeline

    started = time.time()
    manifest = run_pipeline(prepare(ScoreParams(image=picture, out=out, model=model, overwrite=True, quiet=True)),
                            spark)
    total = time.time() - started
    t, c = manifest["timings_s"], manifest["counts"]
    return {"model": model, "engine": manifest["parameters"]["engine"], "windows": c["windows_scored"],
            "hits": c["hits"], "boxes": c["boxes"], "total_s": total, "spark_job_s": t["spark_job_s"],
            "merge_s": t["merge_s"], "outputs_s": t["outputs_s"], "merge_share": t["merge_s"] / total}


def run(spark, model: str, work: str, *, quick: bool = False) -> dict:
    hits = grid_hits(QUICK_HITS if quick else HITS)
    result = {"hits": len(hits), "merge": time_merge(hits)}
    side = QUICK_NOISE_SIDE if quick else NOISE_SIDE
    rng = np.random.default_rng(5)
    picture = os.path.join(work, "merge", f"noise-{side}.png")
    if not os.path.isfile(picture):
        from PIL import Image

        os.makedirs(os.path.dirname(picture), exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(picture, compress_level=1)
    runs = []
    bundles = [CLASSIFIER] if os.path.isfile(os.path.join(CLASSIFIER, "model.json")) else []
    if os.path.abspath(model) != CLASSIFIER:
        bundles.append(model)
    for bundle in bundles:
        logger.info("merge: %dx%d noise with %s", side, side, bundle)
        runs.append(_noise_run(spark, bundle, picture, os.path.join(work, "merge", "run-" + os.path.basename(bundle))))
    result["noise"] = {"side": side, "runs": runs}
    return result


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import bench_main

    return bench_main(__doc__, lambda spark, inputs, args: report.merge_section(
        run(spark, inputs.model, inputs.work, quick=args.quick)), argv)


if __name__ == "__main__":
    sys.exit(main())
