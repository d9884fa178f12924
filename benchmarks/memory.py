"""Peak resident memory of the driver and of a Python worker as the picture grows.

    python -m benchmarks.memory [--model models/default] [--quick]

For each size a synthetic picture is scored as ``app/score.py`` scores it, in a fresh
Python process (a new SparkSession, local[2]); that process reports its own peak RSS (the
Python driver, not the JVM) and the run's manifest gives the largest Python worker's
(``timings_s.worker_max_rss_mb``). The growth is a least-squares line in MB per megapixel.

The driver's peak is VmHWM from /proc/self/status, with ``resource.getrusage`` beside it:
Linux carries ``ru_maxrss`` across fork and exec, so a child of a big benchmark process
reports its parent's size, while VmHWM belongs to the child's own address space.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import ROOT, spark_env, synthetic_png

__all__ = ["SIZES", "QUICK_SIZES", "measure", "run", "main"]

logger = logging.getLogger(__name__)

#: (width, height) in pixels
SIZES = ((1000, 1000), (2000, 2000), (4000, 4000), (4000, 8000))
QUICK_SIZES = ((256, 256), (512, 512))
_MARK = "tilescan-memory:"


def _vm_hwm_mb() -> float | None:
    """This process's peak resident memory in MB (Linux), None elsewhere."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _child(image: str, model: str, out: str, master: str) -> int:
    """Score here as score.py does, then print this process's peak RSS and the manifest's timings."""
    from scoring.job import spark_session
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare
    from scoring.pipeline import run as run_pipeline

    params = ScoreParams(image=image, out=out, model=model, overwrite=True, quiet=True)
    manifest = run_pipeline(prepare(params), spark_session(master))
    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(_MARK + json.dumps({
        "driver_max_rss_mb": _vm_hwm_mb() or ru_maxrss,
        "driver_ru_maxrss_mb": ru_maxrss,
        "windows": manifest["counts"]["windows_scored"],
        "strips": manifest["parameters"]["strips"],
        "timings_s": manifest["timings_s"],
    }))
    return 0


def measure(image: str, model: str, out: str, *, master: str = "local[2]") -> dict:
    """Score ``image`` in a child process; its peak driver and worker RSS in MB."""
    command = [sys.executable, "-m", "benchmarks.memory", "--child", "--image", image, "--model", model,
               "--out", out, "--master", master]
    started = time.time()
    done = subprocess.run(command, env=spark_env(), capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"memory child for {image} exited {done.returncode}:\n{done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if not lines:
        raise RuntimeError(f"memory child for {image} printed no result:\n{done.stdout[-2000:]}")
    result = json.loads(lines[-1][len(_MARK):])
    result["worker_max_rss_mb"] = result["timings_s"]["worker_max_rss_mb"]
    result["command_s"] = time.time() - started
    return result


def _line(x, y) -> dict:
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return {"mb_per_megapixel": float(slope), "intercept_mb": float(intercept)}


def run(model: str, work: str, *, sizes=SIZES, master: str = "local[2]") -> dict:
    """Peak driver and worker RSS at every size in ``sizes``, and how they grow."""
    rows = []
    for width, height in sizes:
        image = synthetic_png(os.path.join(work, "memory", f"noise-{width}x{height}.png"), width, height)
        logger.info("memory: %dx%d", width, height)
        result = measure(image, model, os.path.join(work, "memory", f"run-{width}x{height}"), master=master)
        rows.append({"width": width, "height": height, "megapixels": width * height / 1e6,
                     "image_mb": width * height * 3 / 2**20, **result})
    growth = None
    if len(rows) >= 2:
        mp = [r["megapixels"] for r in rows]
        growth = {"driver": _line(mp, [r["driver_max_rss_mb"] for r in rows]),
                  "worker": _line(mp, [r["worker_max_rss_mb"] for r in rows]),
                  "decoded_image_mb_per_megapixel": 3 / 1.048576}
    return {"master": master, "rows": rows, "growth": growth}


def main(argv=None) -> int:
    from benchmarks.common import base_parser, configure_logging

    p = base_parser(__doc__)
    p.add_argument("--master", default="local[2]", help="Spark master (default %(default)s)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args.image, args.model, args.out, args.master)
    from benchmarks import report
    from benchmarks.common import inputs_from_args

    configure_logging()
    inputs = inputs_from_args(args)
    print(report.memory_section(run(inputs.model, inputs.work, sizes=QUICK_SIZES if args.quick else SIZES,
                                    master=args.master)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
