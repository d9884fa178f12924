"""Our job against a baseline in the reference design's manner, on the same SparkSession.

    python -m benchmarks.baseline [--model models/default] [--image PNG] [--quick]

The baseline scores one strip per worker, loads the model again in every task (a
StripScorer that empties the engine cache first), with MXNet at batch 128. Our job:
4 strips per core, the model loaded once per Python worker, ONNX Runtime at score.py's default batch.
Both go through ``scoring.job.score_on_spark`` on the same picture and session; each
starts with cold engine caches, and the two alternate when repeated.
"""
from __future__ import annotations

import logging
import sys

from benchmarks.common import JOB_BATCH
from scoring.job import StripScorer

__all__ = ["ReloadingScorer", "DESIGNS", "run", "main"]

logger = logging.getLogger(__name__)


class ReloadingScorer(StripScorer):
    """The reference design's executor: the model is loaded anew for every task."""

    def __call__(self, partition):
        from scoring.engines import cache

        cache.clear()
        yield from super().__call__(partition)


#: name -> (engine, batch size, strips per core, scorer class)
DESIGNS = {
    "baseline": ("mxnet", 128, 1, ReloadingScorer),
    "ours": ("onnxruntime", JOB_BATCH, 4, StripScorer),
}


def _clear_caches(_):
    from scoring.engines import cache

    cache.clear()
    return []


def _cold_workers(sc) -> None:
    """Empty the engine cache of every Python worker (one tiny task per slot, twice over)."""
    slots = sc.defaultParallelism
    sc.parallelize(range(2 * slots), 2 * slots).mapPartitions(_clear_caches).collect()


def run(spark, model: str, image: str, *, repeats: int = 1, floor: float = 0.5) -> dict:
    """Both designs on ``spark``; each design's fastest of ``repeats`` runs, and our speed-up."""
    from scoring.bundle import load_bundle
    from scoring.imageio import read_image
    from scoring.job import score_on_spark
    from tiling.grid import WindowGrid
    from tiling.strips import plan_strips

    bundle = load_bundle(model)
    pixels, _ = read_image(image, min_side=bundle.spec.size)
    grid = WindowGrid(pixels.shape[0], pixels.shape[1], bundle.spec.size, 16)
    sc = spark.sparkContext
    slots = sc.defaultParallelism
    sc.parallelize(range(slots), slots).count()  # start the Python workers before either design is timed
    results = {}
    for attempt in range(repeats):
        for name, (engine, batch, per_core, scorer) in DESIGNS.items():
            strips = plan_strips(grid, per_core * slots)
            _cold_workers(sc)
            logger.info("baseline: %s (%s, batch %d, %d strips), run %d/%d", name, engine, batch, len(strips),
                        attempt + 1, repeats)
            table, timings = score_on_spark(spark, pixels, grid, strips, bundle, engine=engine, batch_size=batch,
                                            floor=floor, quiet=True, scorer_class=scorer)
            row = {"engine": engine, "batch_size": batch, "strips": len(strips), "scorer": scorer.__name__,
                   "rows_kept": table.num_rows, "windows_per_s": grid.n_windows / timings["spark_job_s"],
                   **timings}
            if name not in results or row["windows_per_s"] > results[name]["windows_per_s"]:
                results[name] = row
    return {"image": image, "windows": grid.n_windows, "master": sc.master, "designs": results,
            "speedup": results["ours"]["windows_per_s"] / results["baseline"]["windows_per_s"]}


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import base_parser, configure_logging, inputs_from_args, local_spark

    p = base_parser(__doc__)
    p.add_argument("--master", default="local[2]", help="Spark master (default %(default)s)")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    configure_logging()
    inputs = inputs_from_args(args)
    spark = local_spark(args.master)
    try:
        print(report.baseline_section(run(spark, inputs.model, inputs.image, repeats=args.repeats)))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
