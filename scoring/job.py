"""The Spark job: one task per strip, the model broadcast once, scores back as Arrow.

This and ``app/`` are the only modules that import pyspark. Executors receive a picklable
:class:`~scoring.executor.StripScorer` and the code in :mod:`scoring.shipping`'s zip.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa

from engines import ENGINES
from scoring.executor import TIMING_KEY, StripScorer
from scoring.shipping import executor_zip
from tiling.grid import WindowGrid
from tiling.strips import Strip

__all__ = ["spark_session", "spark_submit_executable", "score_on_spark", "ship_packages", "engine_threads"]


_CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


def spark_session(master: str | None = None):
    """The SparkSession of a scoring run: ``master`` when given, else the one spark-submit set, else ``local[*]``.

    Executors run the driver's Python (the environment with the engines in it) unless
    ``PYSPARK_PYTHON`` says otherwise; the JVM logs quietly through ``conf/``.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_CONF_DIR", _CONF_DIR)
    builder = SparkSession.builder.appName("tilescan")
    if master:
        builder = builder.master(master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # plain `python app/score.py`, not spark-submit
        builder = builder.master("local[*]")
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_submit_executable() -> str:
    """``spark-submit`` of the running environment (the pyspark wheel's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    return beside if os.path.exists(beside) else "spark-submit"


def engine_threads(spark) -> int:
    """Intra-op threads per task: the cores Spark gives each task, so none are oversubscribed."""
    return max(1, int(spark.sparkContext.getConf().get("spark.task.cpus", "1")))


_shipped: set = set()


def ship_packages(spark, engine: str) -> None:
    """Send the executor code for ``engine`` to the executors as one zip (cluster nodes lack it).

    The zip is named by its content hash: Spark refuses a second file of the same name with
    other contents, which happens when the code changes within one long-lived session.
    """
    data = executor_zip(ENGINES[engine].split(":")[0])
    digest = hashlib.sha256(data).hexdigest()[:16]
    key = (spark.sparkContext.applicationId, digest)
    if key in _shipped:
        return
    folder = os.path.join(tempfile.gettempdir(), f"tilescan-py-{os.getpid()}")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, f"tilescan_executor_{digest}.zip")
    with open(path, "wb") as fh:
        fh.write(data)
    spark.sparkContext.addPyFile(path)
    _shipped.add(key)


class _Progress(threading.Thread):
    """Prints windows done / total and windows per second while the job runs."""

    def __init__(self, counter, total: int, *, quiet: bool, interval: float = 1.0):
        super().__init__(daemon=True)
        self.counter, self.total, self.quiet, self.interval = counter, total, quiet, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.time()
        tty = sys.stderr.isatty()
        last_print = 0.0
        while not self._stop_event.wait(self.interval):
            done = self.counter.value
            now = time.time()
            if self.quiet or (not tty and now - last_print < 10):
                continue
            last_print = now
            rate = done / max(now - start, 1e-9)
            line = f"scoring: {done:,}/{self.total:,} windows ({100 * done / self.total:.0f}%), {rate:,.0f} windows/s"
            print("\r" + line if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        if not self.quiet and sys.stderr.isatty():
            print(file=sys.stderr)


def score_on_spark(spark, pixels: np.ndarray, grid: WindowGrid, strips: list[Strip], bundle, *,
                   engine: str, batch_size: int, floor: float, quiet: bool = False) -> tuple[pa.Table, dict]:
    """Score every window of ``grid`` on Spark; returns the kept rows and job timings.

    The table holds the windows whose best non-background probability is ``>= floor``,
    sorted by ``(y, x)`` so that the result does not depend on the partitioning.
    ``bundle`` should carry only the chosen engine's files: it is broadcast as it is.
    """
    sc = spark.sparkContext
    ship_packages(spark, engine)
    counter = sc.accumulator(0)
    broadcast = sc.broadcast(bundle)
    scorer = StripScorer(
        broadcast, bundle.sha256, engine=engine, threads=engine_threads(spark), window=grid.window, xs=grid.xs,
        batch_size=batch_size, floor=floor, classes=bundle.spec.classes,
        background=bundle.spec.background, counter=counter,
    )
    # One element per partition: each task gets its strip's pixel band (halo included).
    bands = [(strip, pixels[strip.y0:strip.y1]) for strip in strips]
    rdd = sc.parallelize(bands, numSlices=len(bands))
    progress = _Progress(counter, grid.n_windows, quiet=quiet)
    progress.start()
    started = time.time()
    try:
        sc.setJobDescription(f"tilescan: {grid.n_windows:,} windows in {len(strips)} strips")
        chunks = rdd.mapPartitions(scorer).collect()
    finally:
        progress.stop()
        broadcast.unpersist()
    job_s = time.time() - started
    if counter.value != grid.n_windows:
        raise RuntimeError(f"scored {counter.value} windows, expected {grid.n_windows}")
    tables, tasks = [], []
    for chunk in chunks:
        table = pa.ipc.open_stream(chunk).read_all()
        tasks.append(json.loads(table.schema.metadata[TIMING_KEY]))
        tables.append(table.replace_schema_metadata(None))
    table = pa.concat_tables(tables).combine_chunks()
    order = np.lexsort((table.column("x").to_numpy(), table.column("y").to_numpy()))
    table = table.take(pa.array(order))
    first = min(t["task_start"] for t in tasks)
    last = max(t["task_end"] for t in tasks)
    timings = {
        "spark_job_s": job_s,
        "first_to_last_task_s": last - first,
        "task_score_s": sum(t["score_s"] for t in tasks),
        "task_inference_s": sum(t["predict_s"] for t in tasks),
        "worker_max_rss_mb": max(t["max_rss_mb"] for t in tasks),
        "model_load_s": sum(t["model_load_s"] for t in tasks),
        "python_workers": len({t["worker"] for t in tasks}),
    }
    return table, timings
