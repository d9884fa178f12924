"""Where the time goes, on the driver and on the executors, and a profile of the hot path.

    python -m benchmarks.breakdown [--model models/default] [--image PNG] [--quick]

One scoring run in this process (``scoring.pipeline.prepare`` and ``run`` on a local
SparkSession, as ``app/score.py`` does) with its manifest's stage timings, plus what the
manifest does not split: shipping the pixel bands to Spark (``sc.parallelize`` of the
same bands, timed alone), drawing the overlay (redrawn from the same boxes) and pyarrow's
first conversion in each Python worker, which imports pandas (timed in a fresh
interpreter). Then
cProfile of ``scoring.windows.score_strip`` on one strip with the ONNX Runtime engine in
this process: the ten functions with the most cumulative time.
"""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import subprocess
import sys
import time

from benchmarks.common import JOB_BATCH

__all__ = ["run", "profile_strip", "main"]


def _short(path: str) -> str:
    for marker in ("site-packages" + os.sep, os.sep + "lib" + os.sep + "python"):
        if marker in path:
            return path.split(marker, 1)[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    return path[len(root):] if path.startswith(root) else path


def profile_strip(prepared, strip, *, engine: str = "onnxruntime", top: int = 10) -> dict:
    """cProfile of ``score_strip`` on ``strip`` with ``engine`` at 1 thread: the ``top`` by cumulative time."""
    from engines import create_engine
    from scoring.windows import score_strip

    model = create_engine(prepared.bundle, engine, threads=1)
    pixels = prepared.pixels[strip.y0:strip.y1]
    score_strip(pixels, strip, prepared.grid.xs, prepared.grid.window, model.predict, batch_size=JOB_BATCH)  # warm
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    score_strip(pixels, strip, prepared.grid.xs, prepared.grid.window, model.predict, batch_size=JOB_BATCH)
    profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    total = max(stats.total_tt, 1e-12)
    rows = []
    for (path, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        if name.startswith("<method 'disable'") or path == "~" and name == "<built-in method builtins.exec>":
            continue
        where = name if path == "~" else f"{_short(path)}:{line}({name})"
        rows.append({"function": where, "calls": ncalls, "tottime_s": tottime, "cumtime_s": cumtime,
                     "cum_share": cumtime / total})
    rows.sort(key=lambda r: -r["cumtime_s"])
    return {"strip": strip.index, "windows": strip.n_windows, "engine": engine, "threads": 1,
            "batch_size": JOB_BATCH, "wall_s": wall, "profiled_s": total, "top": rows[:top]}


def _overlay_s(prepared, table) -> float:
    from scoring.boxes import boxes_from_table
    from scoring.overlay import draw_overlay

    p = prepared.params
    started = time.time()
    _, boxes = boxes_from_table(table, prepared.classes, prepared.thresholds, merge=p.merge, iou=p.merge_iou)
    draw_overlay(prepared.pixels, boxes, prepared.colors, prepared.classes).save(io.BytesIO(), format="PNG")
    return time.time() - started


_FIRST_ARROW = """
import time
import numpy as np
import pyarrow as pa
started = time.perf_counter()
pa.array(np.zeros(3, np.int32))
print(time.perf_counter() - started)
"""


def first_arrow_conversion_s() -> float:
    """Seconds of pyarrow's first numpy conversion in a fresh interpreter (it imports pandas then)."""
    done = subprocess.run([sys.executable, "-c", _FIRST_ARROW], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def run(spark, model: str, image: str, work: str) -> dict:
    """One in-process run on ``spark``; driver stages in seconds, executor stages in core-seconds."""
    import pyarrow.parquet as pq

    from scoring.params import ScoreParams
    from scoring.pipeline import prepare
    from scoring.pipeline import run as run_pipeline
    from tiling.strips import plan_strips

    out = os.path.join(work, "breakdown", "run")
    params = ScoreParams(image=image, out=out, model=model, batch_size=JOB_BATCH, overwrite=True, quiet=True)
    started = time.time()
    prepared = prepare(params)
    prepare_s = time.time() - started
    started = time.time()
    manifest = run_pipeline(prepared, spark)
    run_s = time.time() - started
    t = manifest["timings_s"]
    cores = spark.sparkContext.defaultParallelism
    strips = plan_strips(prepared.grid, manifest["parameters"]["strips"])

    sc = spark.sparkContext
    started = time.time()
    sc.parallelize([(s, prepared.pixels[s.y0:s.y1]) for s in strips], numSlices=len(strips))
    parallelize_s = time.time() - started
    overlay_s = _overlay_s(prepared, pq.read_table(os.path.join(out, "windows.parquet")))

    staged = t["spark_job_s"] + t["merge_s"] + t["outputs_s"] + t.get("write_s", 0.0)
    driver = {
        "read_decode_image": t["read_image_s"],
        "load_verify_model": t["load_model_s"],
        "before_and_after_job": run_s - staged,
        "of_which_parallelize_pixels": parallelize_s,
        "spark_job": t["spark_job_s"],
        "of_which_job_start_and_collect": t["spark_job_s"] - t["first_to_last_task_s"],
        "of_which_first_to_last_task": t["first_to_last_task_s"],
        "merge": t["merge_s"],
        "outputs_encode": t["outputs_s"],
        "of_which_overlay": overlay_s,
        "write_commit": t.get("write_s"),
        "total": prepare_s + run_s,
    }
    capacity = cores * t["first_to_last_task_s"]
    executors = {
        "model_load": t["model_load_s"],
        "inference_predict": t["task_inference_s"],
        "cutting_and_rows": t["task_score_s"] - t["task_inference_s"],
        "of_which_first_arrow_conversion": first_arrow_conversion_s() * (t.get("python_workers") or 1),
        "outside_scoring": capacity - t["task_score_s"] - t["model_load_s"],
        "capacity": capacity,
    }
    largest = max(strips, key=lambda s: s.n_windows)
    return {
        "image": image, "size": [prepared.info.width, prepared.info.height],
        "windows": manifest["counts"]["windows_scored"], "strips": len(strips), "cores": cores,
        "master": sc.master, "python_workers": t.get("python_workers"),
        "driver_s": driver, "executor_core_s": executors,
        "profile": profile_strip(prepared, largest),
    }


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import base_parser, configure_logging, inputs_from_args, local_spark

    p = base_parser(__doc__)
    p.add_argument("--master", default="local[2]", help="Spark master (default %(default)s)")
    args = p.parse_args(argv)
    configure_logging()
    inputs = inputs_from_args(args)
    spark = local_spark(args.master)
    try:
        print(report.breakdown_section(run(spark, inputs.model, inputs.image, inputs.work)))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
