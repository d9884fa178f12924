"""Our job against a baseline in the reference design's manner, on the same SparkSession.

    python -m benchmarks.baseline [--model models/default] [--image PNG] [--quick]

The baseline decodes the picture on the driver, ships one strip per worker, loads the
model again in every task, with MXNet at batch 128: a small Spark job of its own, written
here from the same public pieces (the strip planner, ``score_strip``, the windows table).
Ours is a whole run (``scoring.pipeline.prepare`` and ``run``): executors read their own
bands, 2 tasks per core, the model loaded once per Python worker, the model's recommended
engine at score.py's default batch, and the outputs written too. Both score the same
picture on the same session, each starting with cold engine caches, and the two
alternate when repeated; the rates compare their Spark jobs.
"""
from __future__ import annotations

import logging
import os
import sys
import time

from benchmarks.common import JOB_BATCH

__all__ = ["reference_design_task", "run", "main"]

logger = logging.getLogger(__name__)

#: The reference design's engine and batch size.
BASELINE_ENGINE, BASELINE_BATCH = "mxnet", 128


def reference_design_task(bundle_broadcast, xs, window: int, batch_size: int, floor: float):
    """A partition function that loads the model for its task, then scores its strips."""
    def task(partition):
        from engines import create_engine
        from scoring.results import select_rows, windows_table
        from scoring.windows import score_strip

        bundle = bundle_broadcast.value
        engine = create_engine(bundle, BASELINE_ENGINE)  # anew in every task, as the reference design did
        for strip, pixels in partition:
            scores = score_strip(pixels, strip, xs, window, engine.detect, batch_size=batch_size)
            keep = select_rows(scores.probs, bundle.spec.classes, bundle.spec.background, floor)
            yield windows_table(scores.origins[keep], scores.probs[keep], strip.index, window=window,
                                classes=bundle.spec.classes).num_rows
    return task


def _clear_caches(_):
    from engines import cache

    cache.clear()
    return []


def _cold_workers(sc) -> None:
    """Empty the engine cache of every Python worker (one tiny task per slot, twice over)."""
    slots = sc.defaultParallelism
    sc.parallelize(range(2 * slots), 2 * slots).mapPartitions(_clear_caches).collect()


def _baseline(spark, pixels, grid, bundle, floor: float) -> dict:
    from scoring.job import ship_packages
    from tiling.strips import plan_strips

    sc = spark.sparkContext
    ship_packages(spark, BASELINE_ENGINE)
    strips = plan_strips(grid, sc.defaultParallelism)
    broadcast = sc.broadcast(bundle)
    task = reference_design_task(broadcast, grid.xs, grid.window, BASELINE_BATCH, floor)
    started = time.time()
    rows = sc.parallelize([(s, pixels[s.y0:s.y1]) for s in strips], len(strips)).mapPartitions(task).collect()
    job_s = time.time() - started
    broadcast.unpersist()
    return {"engine": BASELINE_ENGINE, "batch_size": BASELINE_BATCH, "strips": len(strips), "rows_kept": sum(rows),
            "spark_job_s": job_s, "windows_per_s": grid.n_windows / job_s}


def _ours(spark, image: str, model: str, out: str) -> dict:
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare
    from scoring.pipeline import run as run_pipeline

    manifest = run_pipeline(prepare(ScoreParams(image=image, out=out, model=model, overwrite=True, quiet=True)), spark)
    t = manifest["timings_s"]
    return {"engine": manifest["parameters"]["engine"], "batch_size": JOB_BATCH, "strips": t["tasks"],
            "rows_kept": manifest["counts"]["windows_kept"], "spark_job_s": t["spark_job_s"],
            "windows_per_s": manifest["counts"]["windows_scored"] / t["spark_job_s"]}


def run(spark, model: str, image: str, work: str, *, repeats: int = 1, floor: float = 0.5) -> dict:
    """Both designs on ``spark``; each design's fastest of ``repeats`` runs, and our speed-up."""
    from core.bundle import load_bundle
    from pixels import read_image
    from tiling.grid import WindowGrid

    bundle = load_bundle(model)
    pixels, _ = read_image(image, min_side=bundle.spec.size)
    grid = WindowGrid(pixels.shape[0], pixels.shape[1], bundle.spec.size, 16)
    sc = spark.sparkContext
    slots = sc.defaultParallelism
    sc.parallelize(range(slots), slots).count()  # start the Python workers before either design is timed
    designs = {"baseline": lambda: _baseline(spark, pixels, grid, bundle, floor),
               "ours": lambda: _ours(spark, image, model, os.path.join(work, "baseline", "ours"))}
    results = {}
    for attempt in range(repeats):
        for name, design in designs.items():
            _cold_workers(sc)
            logger.info("baseline: %s, run %d/%d", name, attempt + 1, repeats)
            row = design()
            if name not in results or row["windows_per_s"] > results[name]["windows_per_s"]:
                results[name] = row
    return {"image": image, "windows": grid.n_windows, "master": sc.master, "designs": results,
            "speedup": results["ours"]["windows_per_s"] / results["baseline"]["windows_per_s"]}


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import bench_main

    return bench_main(__doc__, lambda spark, inputs, args: report.baseline_section(
        run(spark, inputs.model, inputs.image, inputs.work, repeats=args.repeats)), argv,
        arguments=lambda p: p.add_argument("--repeats", type=int, default=1))


if __name__ == "__main__":
    sys.exit(main())
