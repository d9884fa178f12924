"""A scoring run on the driver: validate, score on Spark, merge, draw, commit the outputs."""
from __future__ import annotations

import io
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import credentials
from core.bundle import ModelBundle, load_bundle
from core.errors import BundleError, TilescanError
from core.redaction import redact
from engines import create_engine, engine_class
from pixels import ImageInfo, read_image
from scoring.boxes import boxes_from_table, coco_detections
from scoring.outputs import RunWriter
from scoring.overlay import draw_overlay
from scoring.params import ScoreParams
from scoring.results import probability_column, select_rows
from tiling.grid import WindowGrid
from tiling.strips import plan_strips

__all__ = ["PreparedRun", "prepare", "run", "engine_bundle", "package_versions", "installed_versions"]


class PreparedRun:
    """Everything checked on the driver before Spark starts: bad input fails fast."""

    def __init__(self, params: ScoreParams, bundle: ModelBundle, pixels: np.ndarray, info: ImageInfo,
                 writer: RunWriter, timings: dict, *, storage_options: dict | None = None):
        self.params, self.bundle, self.pixels, self.info = params, bundle, pixels, info
        self.writer, self.timings = writer, timings
        self.storage_options = storage_options
        classes = bundle.spec.classes
        self.thresholds = params.thresholds_for(bundle.spec.foreground)
        self.colors = params.colors_for(bundle.spec.foreground)
        self.grid = WindowGrid(info.height, info.width, params.window, params.stride, params.edge)
        self.classes = classes


def prepare(params: ScoreParams, *, storage_options: dict | None = None) -> PreparedRun:
    """Check the destination, the model and the image; raise a TilescanError on bad input.

    ``storage_options`` are the explicit options for remote URLs (credentials among them,
    see :func:`core.credentials.resolve_options`); they never reach the manifest.
    """
    timings = {}
    writer = RunWriter(params.out, overwrite=params.overwrite, storage_options=storage_options)
    writer.check()
    started = time.time()
    bundle = load_bundle(params.model, storage_options=storage_options)
    if bundle.spec.size != params.window:
        raise BundleError(
            f"model {params.model} takes {bundle.spec.size}x{bundle.spec.size} inputs but --window is "
            f"{params.window}"
        )
    bundle = engine_bundle(bundle, params.engine)
    timings["load_model_s"] = time.time() - started
    started = time.time()
    pixels, info = read_image(params.image, max_pixels=params.max_pixels, min_side=params.window,
                              storage_options=storage_options)
    timings["read_image_s"] = time.time() - started
    return PreparedRun(params, bundle, pixels, info, writer, timings, storage_options=storage_options)


def engine_bundle(bundle: ModelBundle, engine: str) -> ModelBundle:
    """The part of ``bundle`` that ``engine`` needs, checked by loading it once here, on the driver.

    Executors report errors late and wrapped in Py4J traces, so everything a task would
    trip on is found first: the engine's framework missing, the bundle lacking the
    engine's files, or files the engine cannot load.
    """
    needed = engine_class(engine).required_files
    missing = [key for key in needed if key not in bundle.files]
    if missing:
        raise BundleError(f"model bundle {bundle.source} has no {' or '.join(missing)} file for --engine {engine} "
                          f"(it has: {', '.join(sorted(bundle.files))})")
    subset = bundle.subset(needed)
    try:
        create_engine(subset, engine)
    except ImportError as exc:
        raise TilescanError(f"--engine {engine} needs {exc.name or 'a package'} installed ({exc})") from None
    except (TilescanError, ValueError) as exc:
        raise BundleError(f"model bundle {bundle.source}: {redact(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - frameworks raise their own types for unreadable models
        raise BundleError(f"model bundle {bundle.source}: the {engine} engine cannot load "
                          f"{', '.join(needed)} ({type(exc).__name__}: {redact(exc)})") from None
    return subset


def installed_versions(names) -> dict:
    """Python's version and each named distribution's (``None`` when not installed)."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return versions


def package_versions(engine: str) -> dict:
    """The versions a run's results depend on."""
    names = ["numpy", "pyarrow", "pyspark", "pillow", "fsspec", "onnxruntime"]
    return installed_versions(names + (["mxnet"] if engine == "mxnet" else []))


def run(prepared: PreparedRun, spark) -> dict:
    """Score the prepared run on ``spark`` and commit its outputs; returns the manifest."""
    from scoring.job import score_on_spark

    p, spec, timings = prepared.params, prepared.bundle.spec, prepared.timings
    began = datetime.now(timezone.utc)
    try:
        n_strips = p.strips or 4 * spark.sparkContext.defaultParallelism
        strips = plan_strips(prepared.grid, n_strips)
        floor = min([p.keep, *prepared.thresholds.values()])
        table, job_timings = score_on_spark(
            spark, prepared.pixels, prepared.grid, strips, prepared.bundle,
            engine=p.engine, batch_size=p.batch_size, floor=floor, quiet=p.quiet,
        )
        timings.update(job_timings)

        started = time.time()
        hits, boxes = boxes_from_table(table, spec.classes, prepared.thresholds, merge=p.merge, iou=p.merge_iou)
        timings["merge_s"] = time.time() - started

        started = time.time()
        probs = np.stack([table.column(probability_column(c)).to_numpy() for c in spec.classes], axis=1)
        kept = table.take(pa.array(select_rows(probs, spec.classes, spec.background, p.keep)))
        parquet = io.BytesIO()
        pq.write_table(kept, parquet, compression="zstd")
        file_name = p.image.rstrip("/").rsplit("/", 1)[-1]
        detections = coco_detections(boxes, spec.classes, spec.background, file_name=file_name,
                                     width=prepared.info.width, height=prepared.info.height)
        overlay = io.BytesIO()
        draw_overlay(prepared.pixels, boxes, prepared.colors, spec.classes).save(overlay, format="PNG")
        timings["outputs_s"] = time.time() - started

        manifest = _manifest(prepared, spark, strips, kept.num_rows, hits, boxes, began)
        started = time.time()
        writer = prepared.writer
        writer.write("windows.parquet", parquet.getvalue())
        writer.write("detections.json", json.dumps(detections, indent=1).encode())
        writer.write("overlay.png", overlay.getvalue())
        text = json.dumps(manifest, indent=2, default=_json_default)
        writer.write("manifest.json", redact(text, one_line=False).encode())  # e.g. a SAS in a URL
        writer.commit()
        timings["write_s"] = time.time() - started
        return manifest
    except BaseException:
        prepared.writer.abort()
        raise


def _manifest(prepared: PreparedRun, spark, strips, windows_kept: int, hits, boxes, began) -> dict:
    """What produced the run: input, model, every parameter, counts, timings, versions."""
    from scoring.job import engine_threads

    p, spec = prepared.params, prepared.bundle.spec
    sc = spark.sparkContext
    windows = [s.n_windows for s in strips]
    return {
        "tool": "tilescan",
        "started": began.isoformat(),
        "finished": datetime.now(timezone.utc).isoformat(),
        "input": prepared.info.to_json(),
        "model": {"source": p.model, "sha256": prepared.bundle.sha256, "name": spec.name,
                  "classes": list(spec.classes), "background": spec.background},
        "parameters": {**p.to_json(), "strips": len(strips), "thresholds": prepared.thresholds,
                       "colors": {c: list(v) for c, v in prepared.colors.items()}},
        "counts": {
            "windows_scored": prepared.grid.n_windows,
            "windows_kept": windows_kept,
            "hits": int(len(hits)),
            "boxes": int(len(boxes)),
            "boxes_per_class": {c: int((boxes[:, 5] == k).sum()) for k, c in enumerate(spec.classes)
                                if c != spec.background},
            "strip_windows": windows,
            "strip_balance": max(windows) / np.mean(windows),
        },
        "spark": {"master": sc.master, "default_parallelism": sc.defaultParallelism, "app_id": sc.applicationId,
                  "engine_threads_per_task": engine_threads(spark)},
        "timings_s": prepared.timings,
        "versions": package_versions(p.engine),
        "storage": {role: credentials.describe(url, prepared.storage_options)
                    for role, url in (("image", p.image), ("model", p.model), ("out", p.out))},
    }


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
