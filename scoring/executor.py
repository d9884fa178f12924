"""What runs on the executors: one task scores its strips with the engine its worker keeps.

Nothing here imports pyspark: Spark pickles a :class:`StripScorer` and calls it on each
partition. Each Python worker loads the engine once (keyed by the bundle's sha256, see
:mod:`engines.cache`) and keeps it for all its tasks.
"""
from __future__ import annotations

import io
import json
import os
import resource
import socket
import time

import numpy as np
import pyarrow as pa

from engines.cache import cached_engine
from scoring.results import select_rows, windows_table
from scoring.windows import score_strip

__all__ = ["StripScorer", "TIMING_KEY"]

#: Schema metadata key of each result stream's task timings.
TIMING_KEY = b"tilescan.timing"


class StripScorer:
    """Scores the strips of one Spark partition; pickled to executors.

    Each call yields one Arrow IPC stream (bytes) per strip holding the rows of the
    windows whose best non-background probability is at least ``floor``.
    """

    def __init__(self, bundle_broadcast, bundle_sha256: str, *, engine: str, threads: int, window: int, xs: np.ndarray,
                 batch_size: int, floor: float, classes, background: str, counter):
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
        self.counter = counter

    def __call__(self, partition):
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
            scores = score_strip(pixels, strip, self.xs, self.window, timed_predict, batch_size=self.batch_size)
            keep = select_rows(scores.probs, self.classes, self.background, self.floor)
            table = windows_table(scores.origins[keep], scores.probs[keep], strip.index,
                                  window=self.window, classes=self.classes)
            timing = {"task_start": task_start, "model_load_s": load_s, "score_s": time.time() - strip_start,
                      "predict_s": predict_s[0], "task_end": time.time(),
                      "worker": f"{socket.gethostname()}:{os.getpid()}",
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            table = table.replace_schema_metadata({TIMING_KEY: json.dumps(timing)})
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            self.counter.add(strip.n_windows)
            yield sink.getvalue()
