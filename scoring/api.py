"""Score pictures from Python (a notebook) on a SparkSession you already have.

    from scoring.api import score_images
    result = score_images(spark, ["az://scans/a.png", "az://scans/b.png"], "az://results/run-7")
    result.boxes()          # one row per box of every picture, as a pandas frame
    result.pictures         # each picture's status, counts and timings

The same run as ``app/score.py --images``: the same checks, outputs and manifest. It takes a
classic session or a Spark Connect one (:mod:`scoring.connect`), with the same outputs. Its
Spark jobs run in a job group (``job_group=``, by default ``tilescan-<run id>``), so that
another thread can cancel them with ``spark.sparkContext.cancelJobGroup`` (on Connect, a tag:
``spark.interruptTag``); the session's own job group and description are restored
afterwards. Errors name the keywords (``stride=``), not the command line's flags.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd

from core import storage
from core.errors import InputError, TilescanError
from scoring.connect import context_of, is_connect
from scoring.inputs import is_list_file, output_names, resolve_inputs
from scoring.job import check_executor_python
from scoring.outputs import DATASET
from scoring.params import ScoreParams
from scoring.pipeline import prepare, run
from scoring.stored_windows import WINDOWS_FILE

__all__ = ["ScoredRun", "score_images"]


@dataclass(frozen=True)
class ScoredRun:
    """A finished run: where it is, its manifest, and its pictures' summaries."""

    out: str
    manifest: dict
    storage_options: dict | None = field(default=None, repr=False)

    @property
    def pictures(self) -> list[dict]:
        """``name, url, status`` (``scored``, ``failed``, or ``skipped``: kept by ``resume``), ``error``,
        ``counts``, ``timings_s`` (of pictures scored in this run)."""
        return list(self.manifest["pictures"])

    @property
    def failed(self) -> list[dict]:
        return [p for p in self.pictures if p["status"] == "failed"]

    def boxes(self) -> pd.DataFrame:
        """Every box of every picture: ``image`` (the picture's name, as in :meth:`windows`), ``url``,
        ``class``, ``x0, y0, x1, y1`` (pixels, half-open), ``score``."""
        fs, root = storage.filesystem(self.out, self.storage_options)
        doc = json.loads(storage.read_bytes(fs, storage.join(root, "detections.json")))
        images = {im["id"]: im for im in doc["images"]}
        names = {c["id"]: c["name"] for c in doc["categories"]}
        # A single picture's detections.json names no picture: its name is the one windows() gives it.
        single = None if all("name" in im for im in images.values()) else self._picture_name()
        rows = [{"image": images[a["image_id"]].get("name", single), "url": images[a["image_id"]]["file_name"],
                 "class": names[a["category_id"]], "x0": a["bbox"][0], "y0": a["bbox"][1],
                 "x1": a["bbox"][0] + a["bbox"][2], "y1": a["bbox"][1] + a["bbox"][3], "score": a["score"]}
                for a in doc["annotations"]]
        return pd.DataFrame(rows, columns=["image", "url", "class", "x0", "y0", "x1", "y1", "score"])

    def _picture_name(self) -> str:
        """A single picture's run: the name its picture would have in a collection."""
        picture = self.manifest.get("input")
        return output_names([picture["url"] if isinstance(picture, dict) and picture.get("url") else self.out])[0]

    def _layout(self) -> str:
        """``dataset`` (a collection's: each picture's windows once, in ``windows/image=<name>/``;
        a run before that layout also kept a copy in each picture's folder, never read here),
        ``picture`` (a single picture's ``windows.parquet``) or ``none`` (no picture was scored)."""
        fs, root = storage.filesystem(self.out, self.storage_options)
        with storage.errors("read", self.out):
            if fs.exists(storage.join(root, DATASET)):
                return "dataset"
            return "picture" if fs.exists(storage.join(root, WINDOWS_FILE)) else "none"

    def windows(self):
        """The run's windows, all pictures, as a pyarrow Table with an ``image`` column of the
        pictures' names (strings: ``0001`` stays ``0001``); a table with only that column and no
        rows when no picture was scored.

        A collection's are its dataset, ``windows/image=<name>/`` (each picture once, whichever
        layout wrote it); a single picture's run (``app/score.py --image`` of one file), its
        ``windows.parquet``, the ``image`` column its picture's name.
        """
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        fs, root = storage.filesystem(self.out, self.storage_options)
        layout = self._layout()
        if layout == "none":
            return pa.table({"image": pa.array([], pa.string())})
        if layout == "picture":
            path = storage.join(root, WINDOWS_FILE)
            with storage.errors("read", storage.join(self.out, WINDOWS_FILE)), fs.open(path, "rb") as fh:
                table = pq.read_table(fh)
            return table.append_column("image", pa.array([self._picture_name()] * table.num_rows, pa.string()))
        with storage.errors("read", storage.join(self.out, DATASET)):
            names = ds.partitioning(pa.schema([("image", pa.string())]), flavor="hive")
            return ds.dataset(storage.join(root, DATASET), filesystem=fs, format="parquet",
                              partitioning=names).to_table()

    def windows_frame(self, spark):
        """The run's windows as a Spark DataFrame, as :meth:`windows` finds them, its ``image``
        column the pictures' names as strings: Spark would otherwise read a partition
        ``image=0001`` as the integer 1. Only that column, and no rows, when no picture was scored."""
        layout = self._layout()
        if layout == "none":
            return spark.createDataFrame([], "image string")
        if layout == "picture":
            named = spark.createDataFrame([(self._picture_name(),)], "image string")
            return spark.read.parquet(storage.join(self.out, WINDOWS_FILE)).crossJoin(named)
        key = "spark.sql.sources.partitionColumnTypeInference.enabled"
        before = spark.conf.get(key, "true")
        spark.conf.set(key, "false")
        try:  # the partition types are fixed as the relation is made, here
            return spark.read.parquet(storage.join(self.out, DATASET))
        finally:
            spark.conf.set(key, before)


#: Each option's flag as the command line spells it: the API's errors name the keyword instead.
_FLAGS = {"--" + f.name.replace("_", "-"): f"{f.name}=" for f in dataclasses.fields(ScoreParams)}


def _in_python_terms(exc: TilescanError) -> TilescanError:
    """The same error, its flags (``--stride``) named as this API's keywords (``stride=``)."""
    said = re.sub(r"--[a-z][a-z-]*", lambda m: _FLAGS.get(m.group(0), m.group(0)), str(exc))
    if said == str(exc):
        return exc
    renamed = type(exc).__new__(type(exc))
    renamed.args = (said,)
    return renamed


@contextmanager
def _job_group(spark, group: str, description: str):
    """Run the block's Spark jobs in ``group``; give back the session's own group and description.
    On Spark Connect, which has no job groups, ``group`` is a tag of the block's operations."""
    if is_connect(spark):
        spark.addTag(group)
        try:
            yield
        finally:
            spark.removeTag(group)
        return
    sc = spark.sparkContext
    keys = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")
    before = {key: sc.getLocalProperty(key) for key in keys}
    sc.setJobGroup(group, description, interruptOnCancel=True)
    try:
        yield
    finally:
        for key, value in before.items():
            sc.setLocalProperty(key, value)


def score_images(spark, images, out: str, *, storage_options: dict | None = None, job_group: str | None = None,
                 **options) -> ScoredRun:
    """Score ``images`` (a sequence of paths or URLs, a glob, a folder, or a list file) into ``out``.

    The outputs always have a collection's layout (``out/<picture>/``), one picture or many.
    ``options`` are :class:`scoring.params.ScoreParams` fields (``model``, ``stride``,
    ``threshold``, ``resume``...); ``threshold`` and ``colors`` may also be given as on the
    command line (``threshold=0.8`` or ``"car=0.95,boat=0.9"``). Bad input raises
    :class:`core.errors.TilescanError` before Spark does any work (executors whose Python
    cannot import what scoring needs included); pictures that fail are listed in
    :attr:`ScoredRun.failed`. ``job_group`` names the Spark job group of the run's jobs.
    """
    try:
        return _score_images(spark, images, out, storage_options=storage_options, job_group=job_group, **options)
    except TilescanError as exc:
        raise _in_python_terms(exc) from None


def _score_images(spark, images, out, *, storage_options, job_group, **options) -> ScoredRun:
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise InputError(f"`out` must be a path or URL, got {out!r}")
    out = os.fspath(out)
    listed = None  # a folder's or a glob's pictures, listed once
    if isinstance(images, (list, tuple)):
        unnamed = [u for u in images if not isinstance(u, (str, os.PathLike))]
        if unnamed:
            raise InputError(f"`images` must list paths or URLs, got {unnamed[0]!r}")
        source = {"images": tuple(os.fspath(u) for u in images)}
    elif not isinstance(images, (str, os.PathLike)):
        raise InputError("`images` must be a path or URL (a picture, glob, folder or list file) or a list of them, "
                         f"got {type(images).__name__}")
    elif is_list_file(images):
        source = {"images": str(images)}
    else:
        listed = resolve_inputs(str(images), storage_options=storage_options)
        source = {"images": (str(images),)} if listed.single else {"image": str(images)}
    # Checked before prepare claims the output folder.
    if not is_connect(spark) and getattr(spark, "sparkContext", None) is None:
        kind = type(spark)
        raise InputError(f"`spark` must be a SparkSession (classic or Spark Connect), got {kind.__module__}."
                         f"{kind.__qualname__}")
    params = ScoreParams(out=out, **source, **options)
    check_executor_python(context_of(spark))
    prepared = prepare(params, storage_options=storage_options,
                       inputs=None if listed is None or listed.single else listed)
    with _job_group(spark, job_group or f"tilescan-{prepared.run_id}", f"tilescan: {out}"):
        manifest = run(prepared, spark)
    return ScoredRun(out=prepared.writer.url, manifest=manifest, storage_options=storage_options)
