"""The Spark job: one task per strip, the model broadcast once, scores back as Arrow.

This and ``app/`` are the only modules that touch pyspark. Executors receive a
picklable :class:`StripScorer`; each Python worker loads the engine once (keyed by the
bundle's sha256, see :mod:`scoring.engines.cache`) and keeps it for all its tasks.
"""
from __future__ import annotations

import atexit
import hashlib
import io
import json
import logging
import os
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time
import zipfile

import numpy as np
import pyarrow as pa

from scoring.results import select_rows, windows_table
from scoring.windows import score_strip
from tiling.grid import WindowGrid
from tiling.strips import Strip

__all__ = ["StripScorer", "score_on_spark", "ship_packages", "engine_threads"]

logger = logging.getLogger(__name__)

_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHIPPED_PACKAGES = ("scoring", "tiling")
_TIMING_KEY = b"tilescan.timing"


class StripScorer:
    """Scores the strips of one Spark partition; pickled to executors.

    Each call yields one Arrow IPC stream (bytes) per strip holding the rows of the
    windows whose best non-background probability is at least ``floor``.
    """

    def __init__(self, bundle_broadcast, bundle_sha256: str, *, engine: str, threads: int, window: int, xs: np.ndarray,
                 batch_size: int, floor: float, classes, background: str, bgr: bool, counter):
        self.bundle_broadcast = bundle_broadcast
        self.bundle_sha256 = bundle_sha256
        self.engine = engine
        self.threads = threads
        self.window = window
        self.xs = np.asarray(xs)
        self.batch_size = batch_size
        self.floor = floor
        self.classes = tuple(classes)
        self.background = background
        self.bgr = bgr
        self.counter = counter

    def __call__(self, partition):
        from scoring.engines.cache import cached_engine

        task_start = time.time()
        engine = cached_engine(self.bundle_sha256, lambda: self.bundle_broadcast.value, self.engine, self.threads)
        load_s = time.time() - task_start
        predict_s = [0.0]

        def timed_predict(batch):
            started = time.perf_counter()
            probs = engine.predict(batch)
            predict_s[0] += time.perf_counter() - started
            return probs

        for strip, pixels in partition:
            strip_start = time.time()
            scores = score_strip(pixels, strip, self.xs, self.window, timed_predict,
                                 batch_size=self.batch_size, bgr=self.bgr)
            keep = select_rows(scores.probs, self.classes, self.background, self.floor)
            table = windows_table(scores.origins[keep], scores.probs[keep], strip.index,
                                  window=self.window, classes=self.classes)
            timing = {"task_start": task_start, "model_load_s": load_s, "score_s": time.time() - strip_start,
                      "predict_s": predict_s[0], "task_end": time.time(),
                      "worker": f"{socket.gethostname()}:{os.getpid()}",
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            table = table.replace_schema_metadata({_TIMING_KEY: json.dumps(timing)})
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            self.counter.add(strip.n_windows)
            yield sink.getvalue()


def engine_threads(spark) -> int:
    """Intra-op threads per task: the cores Spark gives each task, so none are oversubscribed."""
    return max(1, int(spark.sparkContext.getConf().get("spark.task.cpus", "1")))


def _package_zip() -> bytes:
    """``scoring`` and ``tiling`` as one zip, in a stable order so equal code gives equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in _SHIPPED_PACKAGES:
            for dirpath, dirnames, filenames in sorted(os.walk(os.path.join(_PROJECT_ROOT, package))):
                dirnames.sort()
                for filename in sorted(filenames):
                    if filename.endswith(".py"):
                        full = os.path.join(dirpath, filename)
                        info = zipfile.ZipInfo(os.path.relpath(full, _PROJECT_ROOT), date_time=(2020, 1, 1, 0, 0, 0))
                        with open(full, "rb") as fh:
                            archive.writestr(info, fh.read(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


_shipped: set = set()


def ship_packages(spark) -> None:
    """Send ``scoring`` and ``tiling`` to the executors as one zip (cluster nodes lack them).

    The zip is named by its content hash: Spark refuses a second file of the same name with
    other contents, which happens when the code changes within one long-lived session.
    """
    data = _package_zip()
    digest = hashlib.sha256(data).hexdigest()[:16]
    key = (spark.sparkContext.applicationId, digest)
    if key in _shipped:
        return
    folder = os.path.join(tempfile.gettempdir(), f"tilescan-py-{os.getpid()}")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, f"tilescan_packages_{digest}.zip")
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
                   engine: str, batch_size: int, floor: float, quiet: bool = False,
                   scorer_class: type = StripScorer) -> tuple[pa.Table, dict]:
    """Score every window of ``grid`` on Spark; returns the kept rows and job timings.

    The table holds the windows whose best non-background probability is ``>= floor``,
    sorted by ``(y, x)`` so that the result does not depend on the partitioning.
    ``scorer_class`` lets benchmarks swap in a variant of :class:`StripScorer`.
    """
    sc = spark.sparkContext
    ship_packages(spark)
    counter = sc.accumulator(0)
    broadcast = sc.broadcast(bundle)
    scorer = scorer_class(
        broadcast, bundle.sha256, engine=engine, threads=engine_threads(spark), window=grid.window, xs=grid.xs,
        batch_size=batch_size, floor=floor, classes=bundle.spec.classes,
        background=bundle.spec.background, bgr=bundle.spec.channel_order == "BGR", counter=counter,
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
        tasks.append(json.loads(table.schema.metadata[_TIMING_KEY]))
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
