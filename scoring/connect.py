"""A Spark Connect session, seen as the few parts of a SparkContext that a run uses.

A run is two stages per wave: its tasks' bands scored (``mapPartitions``), then their rows
grouped by picture and each picture finished (``groupByKey`` and ``mapPartitions``). On a
classic session these are RDD operations. Spark Connect has no RDDs, no broadcast variables
and no accumulators, so :class:`ConnectContext` runs the same callables as DataFrame stages
instead: the tasks as ``spark.range`` with a partition each, scored in ``mapInArrow``, the
rows grouped by picture with ``groupBy().applyInPandas``. Whatever the stages pass on
travels pickled in a binary column. The model travels pickled inside the stage's function
(a few megabytes for the default model), the executor code as a session artifact
(``addArtifacts``). Live progress needs the driver's own process (accumulators, and the port
running tasks report to: :mod:`scoring.progress`), which a Connect client is not: on Connect a
run reports after each wave instead.

Only :func:`context_of` is for the rest of the code: it returns the classic session's own
SparkContext, or this stand-in for a Connect session.
"""
from __future__ import annotations

import os
import pickle
import re
from types import SimpleNamespace

__all__ = ["context_of", "is_connect", "ConnectContext"]

#: The binary column the stages pass their pickled values in.
_ROWS = "key long, value binary"


def is_connect(spark) -> bool:
    """Whether ``spark`` is a Spark Connect session (which has no SparkContext)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


_contexts: dict = {}


def context_of(spark):
    """``spark``'s SparkContext, or for a Spark Connect session a :class:`ConnectContext`."""
    if not is_connect(spark):
        return spark.sparkContext
    if _contexts.get("session") is not spark:
        _contexts.update(session=spark, context=ConnectContext(spark))
    return _contexts["context"]


class _Settings:
    def __init__(self, conf: dict):
        self._conf = conf

    def getAll(self):  # noqa: N802 - SparkConf's name
        return list(self._conf.items())


class ConnectContext:
    """The parts of a SparkContext a run uses, on a Spark Connect session."""

    connect = True

    def __init__(self, spark):
        self.spark = spark

    # --- what it is -------------------------------------------------------------------------

    def _get(self, key: str, default=None):
        try:
            return self.spark.conf.get(key, default)
        except Exception:  # noqa: BLE001 - a server that hides a setting answers with its own error
            return default

    @property
    def applicationId(self) -> str:  # noqa: N802 - SparkContext's name
        return self._get("spark.app.id") or f"connect-{self.spark.session_id}"

    @property
    def master(self) -> str:
        return self._get("spark.master", "connect")

    @property
    def version(self) -> str:
        return self.spark.version

    @property
    def defaultParallelism(self) -> int:  # noqa: N802 - SparkContext's name
        """``spark.default.parallelism`` where set, else the cores of a local master, else the
        executors' cores as configured: it sizes tasks and waves, never what is scored."""
        given = self._get("spark.default.parallelism")
        if given:
            return max(1, int(given))
        local = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\d+)?\])?", self.master)
        if local:
            return os.cpu_count() or 1 if local.group(1) in (None, "*") else int(local.group(1))
        executors = int(self._get("spark.executor.instances", "2") or 2)
        return max(2, executors * int(self._get("spark.executor.cores", "1") or 1))

    def getConf(self):  # noqa: N802 - SparkContext's name
        everything = getattr(self.spark.conf, "getAll", None)
        return _Settings(dict(everything) if everything else {})

    @property
    def stopped(self) -> bool:
        return bool(getattr(self.spark, "is_stopped", False))

    # --- what a run asks of it --------------------------------------------------------------

    def addPyFile(self, path: str) -> None:  # noqa: N802 - SparkContext's name
        self.spark.addArtifacts(path, pyfile=True)

    def broadcast(self, value):
        """The value itself, carried inside the stages' functions (Connect has no broadcasts)."""
        return SimpleNamespace(value=value, unpersist=lambda: None)

    def accumulator(self, _start):
        """A counter that counts nothing: Connect has no accumulators (progress comes per wave)."""
        return SimpleNamespace(add=lambda _n: None, value=0)

    def setJobDescription(self, _text) -> None:  # noqa: N802 - SparkContext's name
        pass

    def cancelAllJobs(self) -> None:  # noqa: N802 - SparkContext's name
        self.spark.interruptAll()

    def parallelize(self, items, slices: int):
        return _Items(self.spark, list(items), slices)


class _Items:
    """``parallelize(items, slices)`` followed by the chains a run uses."""

    def __init__(self, spark, items: list, slices: int):
        self.spark, self.items, self.slices = spark, items, slices

    def each(self, results_of):
        """A DataFrame of ``(key, pickled value)`` rows: ``results_of(item)``'s pairs for every
        item, ``slices`` partitions of the items."""
        import pyarrow as pa

        items = self.items

        def stage(batches):
            for batch in batches:
                keys, values = [], []
                for index in batch.column(0).to_pylist():
                    for key, value in results_of(items[index]):
                        keys.append(key)
                        values.append(pickle.dumps(value))
                yield pa.RecordBatch.from_arrays([pa.array(keys, pa.int64()), pa.array(values, pa.binary())],
                                                 names=["key", "value"])

        return self.spark.range(len(items), numPartitions=max(1, self.slices)).mapInArrow(stage, _ROWS)

    def map(self, function):
        return _Collected(self.each(lambda item: [(0, function(item))]))

    def mapPartitions(self, scorer):  # noqa: N802 - RDD's name
        return _Scored(self, scorer)


class _Scored:
    def __init__(self, items: _Items, scorer):
        self.items, self.scorer = items, scorer

    def groupByKey(self, partitions: int, partitionFunc=None):  # noqa: N802, N803 - RDD's names
        scorer = self.scorer  # the stage's function must not carry the session (self.items holds it)
        return _Grouped(self.items.each(lambda task: scorer(iter([task]))), partitions)


class _Grouped:
    def __init__(self, rows, partitions: int):
        self.rows, self.partitions = rows, partitions

    def mapPartitions(self, finisher):  # noqa: N802 - RDD's name
        import pandas as pd

        def finish(group):
            values = [pickle.loads(v) for v in group["value"]]
            done = list(finisher(iter([(int(group["key"].iloc[0]), values)])))
            return pd.DataFrame({"key": [int(group["key"].iloc[0])] * len(done),
                                 "value": [pickle.dumps(d) for d in done]})

        return _Collected(self.rows.repartition(max(1, self.partitions), "key").groupBy("key")
                          .applyInPandas(finish, _ROWS))


class _Collected:
    def __init__(self, frame):
        self.frame = frame

    def collect(self) -> list:
        return [pickle.loads(row["value"]) for row in self.frame.collect()]
