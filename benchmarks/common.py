"""What every benchmark needs: the model, the demo picture, Spark, and a rate timer."""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import zipfile

import numpy as np

from app.cli import configure_logging
from core.project import project_path
from scoring.params import DEFAULT_MODEL, defaults

__all__ = [
    "Inputs", "base_parser", "parser_for", "inputs_from_args", "resolve_model", "demo_image", "synthetic_png",
    "core_counts", "spark_env", "local_spark", "ship_benchmarks", "measure_rate", "best_of", "configure_logging",
    "write_json", "folder_size", "bench_main", "JOB_BATCH",
]

logger = logging.getLogger(__name__)

DEFAULT_WORK = project_path("work", "bench")
#: Same architecture as the default model, random weights: speed figures hold, accuracy does not.
RANDOM_MODEL = {"widths": (32, 80, 192), "dense": True}  # the padding-free network at the default's widths
DEMO_WIDTH, QUICK_WIDTH = 4000, 480


#: score.py's default batch size: the job's, so the one end-to-end ratios are taken at.
JOB_BATCH = defaults()["batch_size"]


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The model and picture every section runs on."""

    model: str                # bundle folder
    model_is_random: bool     # True when models/default was absent and a random network stands in
    image: str                # picture path
    truth: str | None         # its COCO ground truth (the demo collage's), or None
    work: str                 # scratch folder for runs and generated inputs
    quick: bool


def parser_for(description: str) -> argparse.ArgumentParser:
    """An empty parser for a benchmark's command line, named as its docstring says to run it
    (``python -m benchmarks.NAME``), not by argparse's file name."""
    command = re.search(r"python -m benchmarks\.\w+", description or "")
    return argparse.ArgumentParser(prog=command.group(0) if command else None, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script shares."""
    p = parser_for(description)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="model bundle folder (default models/default; a random padding-free network when absent)")
    p.add_argument("--image", help="picture to score (default: the demo collage, built into --work)")
    p.add_argument("--truth", help="COCO ground truth of --image, for AP (the collage's own by default)")
    p.add_argument("--work", default=DEFAULT_WORK, help="scratch folder (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, short timings")
    return p


def inputs_from_args(args: argparse.Namespace) -> Inputs:
    """The model and picture (built once under ``--work``); runs go to ``--work``/quick when quick."""
    base = os.path.abspath(args.work)
    work = os.path.join(base, "quick") if args.quick else base
    os.makedirs(work, exist_ok=True)
    model, is_random = resolve_model(args.model, base)
    if args.image:
        image, truth = os.path.abspath(args.image), args.truth
    else:
        image, truth = demo_image(base, width=QUICK_WIDTH if args.quick else DEMO_WIDTH)
    return Inputs(model=model, model_is_random=is_random, image=image, truth=truth, work=work, quick=args.quick)


def resolve_model(path: str, work: str) -> tuple[str, bool]:
    """``path`` when it holds a bundle, else a random padding-free bundle of the default's widths under ``work``."""
    if os.path.isfile(os.path.join(path, "model.json")):
        return os.path.abspath(path), False
    folder = os.path.join(work, f"random-validnet-{'-'.join(map(str, RANDOM_MODEL['widths']))}")
    print(f"warning: no model bundle at {path}: using a random-weights padding-free network (the default's "
          f"architecture) in {folder}; speed figures hold, accuracy figures do not",
          file=sys.stderr)
    if not os.path.isfile(os.path.join(folder, "model.json")):
        from training.export import random_bundle

        random_bundle(folder, seed=0, **RANDOM_MODEL)
    return folder, True


def demo_image(work: str, *, width: int = DEMO_WIDTH) -> tuple[str, str | None]:
    """The demo collage (built once into ``work``) and its ground truth.

    Without CIFAR-10 or the Mona Lisa under $TILESCAN_DATA, a synthetic picture of the
    same size stands in, with no ground truth.
    """
    folder = os.path.join(work, f"collage-{width}")
    image, truth = os.path.join(folder, "collage.png"), os.path.join(folder, "ground_truth.json")
    if os.path.isfile(os.path.join(folder, "collage.json")):
        return image, truth
    from collage import CollageParams
    from collage.make import make_collage
    from tilesets import data_root

    root = data_root()
    if not (os.path.isdir(os.path.join(root, "cifar10")) and os.path.isfile(os.path.join(root, "mona_lisa.jpg"))):
        print(f"warning: no CIFAR-10 or mona_lisa.jpg under {root}: scoring a synthetic picture instead "
              "of the demo collage (no AP figures)", file=sys.stderr)
        path = os.path.join(work, f"synthetic-{width}.png")
        return synthetic_png(path, width, int(round(width * 1192 / 800))), None
    started = time.time()
    make_collage(folder, CollageParams(width=width))
    logger.info("built the demo collage %s in %.1f s", image, time.time() - started)
    return image, truth


def synthetic_png(path: str, width: int, height: int, *, seed: int = 0) -> str:
    """Smooth colour noise as a PNG at ``path`` (kept when it already exists)."""
    if os.path.isfile(path):
        return path
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(pixels).save(path, compress_level=1)
    return path


def core_counts() -> list[int]:
    """Core counts to measure at: 1, 2 and all the cores this process may use."""
    cores = len(os.sched_getaffinity(0))
    return sorted({n for n in (1, 2, cores) if n <= cores})


def spark_env() -> dict:
    """Environment for ``spark-submit`` and for a local SparkSession: loopback, this Python."""
    bin_dir = os.path.dirname(sys.executable)
    return dict(os.environ, SPARK_LOCAL_IP=os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
                PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
                SPARK_CONF_DIR=project_path("conf"),
                PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))


def local_spark(master: str):
    """A SparkSession on ``master`` built the way ``app/score.py`` builds its own."""
    from scoring.job import local_with_retries, spark_session

    for key, value in spark_env().items():
        if key in ("SPARK_LOCAL_IP", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_CONF_DIR"):
            os.environ.setdefault(key, value)
    # As much driver memory as end_to_end gives spark-submit: in local mode that JVM is the
    # executor too (the shuffle of kept rows between the job's two stages).
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--driver-memory 4g pyspark-shell")
    spark = spark_session(master)
    if spark.sparkContext.master not in (master, local_with_retries(master)):  # tilescan retries local tasks
        raise RuntimeError(f"a SparkSession on {spark.sparkContext.master} is already running; wanted {master}")
    ship_benchmarks(spark)
    return spark


def bench_main(description: str, measure, argv=None, *, spark: bool = True, arguments=None) -> int:
    """The command line of one benchmark: ``measure(spark, inputs, args)`` returns its section of
    BENCHMARKS.md, printed. With ``spark`` it gets a local SparkSession (``--master``), else
    ``None``; ``arguments(parser)`` adds options."""
    p = base_parser(description)
    if spark:
        p.add_argument("--master", default="local[2]", help="Spark master (default %(default)s)")
    if arguments is not None:
        arguments(p)
    args = p.parse_args(argv)
    configure_logging()
    inputs = inputs_from_args(args)
    session = local_spark(args.master) if spark else None
    try:
        print(measure(session, inputs, args))
    finally:
        if session is not None:
            session.stop()
    return 0


def ship_benchmarks(spark) -> None:
    """Send this package to the executors: benchmark scorers are pickled by reference."""
    folder = tempfile.mkdtemp(prefix="tilescan-bench-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "tilescan_benchmarks.zip")
    package = project_path("benchmarks")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(os.listdir(package)):
            if name.endswith(".py"):
                archive.write(os.path.join(package, name), os.path.join("benchmarks", name))
    spark.sparkContext.addPyFile(path)


def measure_rate(call, items: int, *, min_seconds: float, warm_up: bool = True) -> dict:
    """Items per second of ``call()`` (which processes ``items`` items) in one timed block.

    One untimed warm-up call (unless ``warm_up`` is false), then calls until ``min_seconds``
    have passed (``0``: one call). Also returns CPU seconds per wall second: about the
    threads really used (lower means other processes took the cores).
    """
    if items < 1 or min_seconds < 0:
        raise ValueError(f"need items >= 1 and min_seconds >= 0, got {items} and {min_seconds}")
    if warm_up:
        call()
    calls, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - wall0
        if elapsed >= min_seconds:
            break
    return {"per_s": calls * items / elapsed, "cpu_per_wall": (time.process_time() - cpu0) / elapsed}


def best_of(blocks: list[dict]) -> dict:
    """Blocks of :func:`measure_rate` for one configuration, taken in interleaved rounds.

    The best block is the figure (noise on a shared machine only ever slows a block
    down); the median and the spread are kept to show how noisy the machine was.
    """
    if not blocks:
        raise ValueError("`blocks` is empty")
    rates = [b["per_s"] for b in blocks]
    best = int(np.argmax(rates))
    return {"per_s": rates[best], "median_per_s": statistics.median(rates), "min_per_s": min(rates),
            "cpu_per_wall": blocks[best]["cpu_per_wall"], "blocks": len(blocks)}


def folder_size(folder: str) -> tuple[int, int]:
    """How many files ``folder`` holds, at any depth, and their bytes."""
    count = size = 0
    for parent, _, names in os.walk(folder):
        count += len(names)
        size += sum(os.path.getsize(os.path.join(parent, n)) for n in names)
    return count, size


def write_json(path: str, doc) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1, default=_json_default)
        fh.write("\n")


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
