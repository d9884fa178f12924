"""A collection in one run against the same pictures as separate spark-submits.

    python -m benchmarks.collection [--model models/default] [--quick]

200 pictures of 1000 x 1000 (20 with --quick) are scored by one ``spark-submit
app/score.py --image FOLDER`` at local[N], then a sample of them one ``spark-submit`` each,
as a user without collections would loop; the separate runs' mean time, times the number
of pictures, is what the loop would take (the whole loop would take an hour: the sample's
spread is reported beside its mean). The run's windows per second over its tasks' span is
compared with the engine's own rate: N separate 1-thread engine processes (Spark's layout
without Spark), timed on the same cores.
"""
from __future__ import annotations

import logging
import os
import statistics
import sys

from benchmarks.common import synthetic_png
from benchmarks.end_to_end import run_score

__all__ = ["run", "main", "PICTURES", "QUICK_PICTURES", "SEPARATE_SAMPLE"]

logger = logging.getLogger(__name__)

PICTURES, QUICK_PICTURES = 200, 20
SEPARATE_SAMPLE, QUICK_SEPARATE_SAMPLE = 10, 3
SIDE = 1000


def run(model: str, work: str, *, cores: int = 2, quick: bool = False) -> dict:
    """The one run, the sample of separate runs, and the engine's rate on the same cores."""
    from benchmarks.engine import processes_rate
    from core.bundle import load_bundle
    from scoring.params import resolve_settings

    count = QUICK_PICTURES if quick else PICTURES
    folder = os.path.join(work, "collection", f"pictures-{count}")
    pictures = [synthetic_png(os.path.join(folder, f"p{k:03d}.png"), SIDE, SIDE, seed=k) for k in range(count)]
    bundle = load_bundle(model)
    engine = resolve_settings(bundle.spec, bundle.recommended, bundle.files).engine

    logger.info("collection: %d pictures in one run", count)
    one = run_score(model, folder, os.path.join(work, "collection", "one-run"), cores=cores, engine=None)
    wall, manifest = one["command_s"], one["manifest"]
    t, counts = manifest["timings_s"], manifest["counts"]
    sample = pictures[:QUICK_SEPARATE_SAMPLE if quick else SEPARATE_SAMPLE]
    separate = []
    for k, picture in enumerate(sample):
        logger.info("collection: separate run %d/%d", k + 1, len(sample))
        separate.append(run_score(model, picture, os.path.join(work, "collection", f"separate-{k}"), cores=cores,
                                  engine=None)["command_s"])
    per_picture = statistics.mean(separate)
    engine_rate = processes_rate(model, pictures[0], cores, engine=engine, seconds=2.0 if quick else 5.0)
    tasks_rate = counts["windows_scored"] / t["first_to_last_task_s"]
    return {
        "pictures": count, "size": [SIDE, SIDE], "cores": cores, "windows": counts["windows_scored"],
        "one_run": {"command_s": wall, "spark_job_s": t["spark_job_s"], "tasks": t["tasks"],
                    "first_to_last_task_s": t["first_to_last_task_s"], "windows_per_s_over_tasks": tasks_rate,
                    "windows_per_s_command": counts["windows_scored"] / wall},
        "separate": {"sample": len(separate), "command_s": separate, "mean_s": per_picture,
                     "spread_s": [min(separate), max(separate)], "projected_total_s": per_picture * count},
        "speedup": per_picture * count / wall,
        "engine": {**engine_rate, "name": engine},
        "ratio_to_engine": tasks_rate / engine_rate["per_s"],
    }


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import bench_main

    return bench_main(__doc__, lambda _, inputs, args: report.collection_section(
        run(inputs.model, inputs.work, quick=args.quick)), argv, spark=False)


if __name__ == "__main__":
    sys.exit(main())
