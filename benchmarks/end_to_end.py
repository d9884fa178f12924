"""End-to-end throughput: ``spark-submit app/score.py`` on the picture at local[N].

    python -m benchmarks.end_to_end [--model models/default] [--image PNG] [--quick]

At score.py's default batch for every N, and once more at the most cores with the
engine's fastest batch size when that differs.

Windows per second are counted from the first task's start to the last task's end
(manifest ``timings_s.first_to_last_task_s``), so JVM start-up, reading the picture and
writing the outputs are shown apart: the Spark job's seconds and the whole command's
wall time are reported beside it. The rate is compared with the engine's own at the same
core count: N tasks of 1 thread each against the engine at 1 thread times N, against N
separate 1-thread engine processes timed together (Spark's layout without Spark), and
against the engine at N threads. The gap is broken down, in core-seconds of the N cores during
the tasks' span, from the manifest's task timings.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

from benchmarks.common import JOB_BATCH, spark_env
from core.project import ROOT, project_path

__all__ = ["run_score", "gap", "run", "main"]

logger = logging.getLogger(__name__)


def run_score(model: str, image: str, out: str, *, cores: int, engine: str | None = "onnxruntime",
              batch_size: int = JOB_BATCH, master: str | None = None, submit_args=(), log: str | None = None) -> dict:
    """Run ``spark-submit --master MASTER app/score.py --image IMAGE`` (a picture, a glob or a
    folder); its manifest (None for an ``out`` on a lake), the command's wall time and its log
    (``log``, by default beside ``out``).

    ``master`` defaults to ``local[cores]``; ``submit_args`` are more spark-submit options;
    ``engine=None``: the model's choice.
    """
    from scoring.job import spark_submit_executable

    master = master or f"local[{cores}]"
    command = [spark_submit_executable(), "--master", master, *submit_args, "--driver-memory", "4g",
               "--conf", "spark.ui.enabled=false", project_path("app", "score.py"), "--image", image,
               "--out", out, "--model", model, *(["--engine", engine] if engine else []),
               "--batch-size", str(batch_size), "--overwrite", "--quiet"]
    log = log or out.rstrip("/") + ".log"
    os.makedirs(os.path.dirname(log), exist_ok=True)
    started = time.time()
    with open(log, "w") as fh:
        done = subprocess.run(command, env=spark_env(), stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.time() - started
    if done.returncode:
        with open(log) as fh:
            tail = fh.read()[-2000:]
        raise RuntimeError(f"score.py on {master} exited {done.returncode}; log {log}:\n{tail}")
    manifest = None
    if "://" not in out:
        with open(os.path.join(out, "manifest.json")) as fh:
            manifest = json.load(fh)
    return {"manifest": manifest, "command_s": wall, "log": log}


def gap(timings: dict, windows: int, cores: int, engine_rate_1: float | None,
        processes_rate: float | None = None) -> dict:
    """Where the N cores' time went during the tasks' span, in core-seconds and fractions.

    ``capacity = N x first_to_last_task_s``. ``inference_at_engine_rate`` is what the
    windows would take at the engine's in-process rate on one thread (its fraction is the
    end-to-end ratio); ``inference_sharing_cores`` what N separate 1-thread processes lose
    to sharing caches and memory bandwidth (when ``processes_rate``, their summed rate, was
    measured); ``inference_slower_in_spark`` the rest of ``task_inference_s`` (``predict_s``
    summed over tasks); ``cutting_and_rows`` is ``score_s - predict_s`` (window gathering,
    row selection, the Arrow table); ``model_load`` the engines' loading;
    ``outside_scoring`` the rest: Python worker start, task (de)serialisation and shipping
    of the pixel bands, results sent back, scheduling gaps and uneven strips.
    """
    capacity = cores * timings["first_to_last_task_s"]
    inference = timings["task_inference_s"]
    ideal = windows / engine_rate_1 if engine_rate_1 else None
    shared = windows * cores / processes_rate if processes_rate and cores > 1 else ideal
    parts = {
        "inference_at_engine_rate": ideal,
        "inference_sharing_cores": shared - ideal if ideal is not None and shared is not None else None,
        "inference_slower_in_spark": inference - shared if shared is not None else None,
        "inference": inference if ideal is None else None,
        "cutting_and_rows": timings["task_score_s"] - inference,
        "model_load": timings["model_load_s"],
    }
    parts["outside_scoring"] = capacity - sum(v for v in parts.values() if v is not None)
    return {"capacity_core_s": capacity,
            "core_s": {k: v for k, v in parts.items() if v is not None},
            "fraction": {k: v / capacity for k, v in parts.items() if v is not None}}


def summarise(result: dict, cores: int, engine_section: dict | None, batch: int = JOB_BATCH) -> dict:
    from benchmarks.engine import processes, rate

    manifest = result["manifest"]
    timings, windows = manifest["timings_s"], manifest["counts"]["windows_scored"]
    per_s = windows / timings["first_to_last_task_s"]
    one = rate(engine_section, "onnxruntime", 1, batch) if engine_section else None
    many = rate(engine_section, "onnxruntime", cores, batch) if engine_section else None
    separate = (one if cores == 1 else processes(engine_section, cores, batch)) if engine_section else None
    return {
        "cores": cores, "batch_size": batch, "windows": windows, "tasks": manifest["parameters"]["tasks"],
        "first_to_last_task_s": timings["first_to_last_task_s"], "windows_per_s": per_s,
        "spark_job_s": timings["spark_job_s"], "spark_job_windows_per_s": windows / timings["spark_job_s"],
        "command_s": result["command_s"],
        "engine_1_thread_x_n_per_s": one * cores if one else None,
        "ratio_to_engine_1_thread_x_n": per_s / (one * cores) if one else None,
        "engine_n_processes_per_s": separate,
        "ratio_to_engine_n_processes": per_s / separate if separate else None,
        "engine_n_threads_per_s": many,
        "ratio_to_engine_n_threads": per_s / many if many else None,
        "python_workers": timings.get("python_workers"),
        "worker_max_rss_mb": timings.get("worker_max_rss_mb"),
        "timings_s": timings,
        "gap": gap(timings, windows, cores, one, separate),
    }


def run(model: str, image: str, work: str, *, cores_list, engine_section: dict | None = None,
        repeats: int = 1, extra_batch: int | None = None) -> dict:
    """score.py at local[N] for each N in ``cores_list`` (the default batch), and at
    the most cores with ``extra_batch`` when given (the engine's best batch size);
    ``repeats`` runs of each, the fastest is the figure."""
    configs = [(cores, JOB_BATCH) for cores in cores_list]
    if extra_batch and extra_batch != JOB_BATCH:
        configs.append((max(cores_list), extra_batch))
    runs = []
    for cores, batch in configs:
        tries = []
        for attempt in range(repeats):
            out = os.path.join(work, "end_to_end", f"local-{cores}-batch-{batch}-{attempt}")
            logger.info("end to end: score.py at local[%d], batch %d (%d/%d)", cores, batch, attempt + 1, repeats)
            result = run_score(model, image, out, cores=cores, batch_size=batch)
            tries.append(summarise(result, cores, engine_section, batch))
        best = max(tries, key=lambda t: t["windows_per_s"])
        best["all_windows_per_s"] = [t["windows_per_s"] for t in tries]
        runs.append(best)
    return {"image": image, "engine": "onnxruntime", "batch_size": JOB_BATCH, "runs": runs, "target_ratio": 0.9}


def main(argv=None) -> int:
    from benchmarks import engine, report
    from benchmarks.common import base_parser, configure_logging, core_counts, inputs_from_args

    p = base_parser(__doc__)
    p.add_argument("--repeats", type=int, default=1, help="runs per core count; the fastest counts")
    args = p.parse_args(argv)
    configure_logging()
    inputs = inputs_from_args(args)
    cores = core_counts()
    engines = engine.run(inputs.model, inputs.image, threads_list=cores, quick=args.quick, engines=("onnxruntime",))
    print(report.end_to_end_section(run(inputs.model, inputs.image, inputs.work, cores_list=cores,
                                        engine_section=engines, repeats=args.repeats,
                                        extra_batch=engine.best_batch(engines))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
