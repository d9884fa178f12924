"""Where the time goes, on the driver and on the executors, and a profile of the hot path.

    python -m benchmarks.breakdown [--model models/default] [--image PNG] [--quick]

One scoring run in this process (``scoring.pipeline.prepare`` and ``run`` on a local
SparkSession, as ``app/score.py`` does) with its manifest's stage timings: the driver's
checks, the job, and in it the executors' band reads, window cutting and inference, then
each picture's merge, outputs and commit. Then cProfile of ``scoring.windows.score_strip``
on one band (read with ``pixels.read_band``) with the run's engine in this process: the
ten functions with the most cumulative time.
"""
from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time

from benchmarks.common import JOB_BATCH
from core.project import project_relative

__all__ = ["run", "profile_band", "main"]


def _short(path: str) -> str:
    for marker in ("site-packages" + os.sep, os.sep + "lib" + os.sep + "python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return project_relative(path)


def profile_band(image: str, bundle, engine: str, *, stride: int = 16, top: int = 10) -> dict:
    """cProfile of ``score_strip`` on the picture's middle band with ``engine`` at 1 thread."""
    from engines import create_engine, engine_class
    from pixels import probe_image, read_band
    from scoring.windows import score_strip
    from tiling import WindowGrid, plan_strips

    info = probe_image(image)
    grid = WindowGrid(info.height, info.width, bundle.spec.size, stride)
    strips = plan_strips(grid, 8)
    strip = strips[len(strips) // 2]
    model = create_engine(bundle.subset(engine_class(engine).required_files), engine, threads=1)
    pixels = read_band(info, strip.y0, strip.y1)
    score_strip(pixels, strip, grid.xs, grid.window, model.detect, batch_size=JOB_BATCH)  # warm
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    score_strip(pixels, strip, grid.xs, grid.window, model.detect, batch_size=JOB_BATCH)
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


def run(spark, model: str, image: str, work: str) -> dict:
    """One in-process run on ``spark``: driver stages in seconds, executor stages in core-seconds."""
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare
    from scoring.pipeline import run as run_pipeline

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
    driver = {
        "check_destination": t["check_s"],
        "load_verify_model": t["load_model_s"],
        "read_header": t["inputs_s"],
        "plan": t["plan_s"],
        "spark_job": t["spark_job_s"],
        "of_which_first_to_last_task": t["first_to_last_task_s"],
        "commit": t.get("commit_s", 0.0),
        "other": prepare_s + run_s - t["check_s"] - t["load_model_s"] - t["inputs_s"] - t["plan_s"]
                 - t["spark_job_s"] - t.get("commit_s", 0.0),
        "total": prepare_s + run_s,
    }
    capacity = cores * t["first_to_last_task_s"]
    finishing = t["finish_s"]
    executors = {
        "model_load": t["model_load_s"],
        "band_reads": t["task_read_s"],
        "inference_predict": t["task_inference_s"],
        "cutting_and_rows": t["task_score_s"] - t["task_inference_s"],
        "finish_picture": finishing,
        "of_which_merge": t["merge_s"],
        "of_which_outputs": t["outputs_s"],
        "of_which_write": t["write_s"],
        "outside": capacity - t["task_read_s"] - t["task_score_s"] - t["model_load_s"] - finishing,
        "capacity": capacity,
    }
    return {
        "image": image, "size": [manifest["input"]["width"], manifest["input"]["height"]],
        "windows": manifest["counts"]["windows_scored"], "tasks": t["tasks"], "cores": cores,
        "master": spark.sparkContext.master, "python_workers": t.get("python_workers"),
        "engine": manifest["parameters"]["engine"], "driver_s": driver, "executor_core_s": executors,
        "profile": profile_band(image, prepared.bundle, manifest["parameters"]["engine"]),
    }


def main(argv=None) -> int:
    from benchmarks import report
    from benchmarks.common import bench_main

    return bench_main(__doc__, lambda spark, inputs, args: report.breakdown_section(
        run(spark, inputs.model, inputs.image, inputs.work)), argv)


if __name__ == "__main__":
    sys.exit(main())
