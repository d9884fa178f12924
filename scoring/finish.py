"""Finish one picture on an executor: its scored bands become its outputs, committed atomically.

The rows its bands kept are sorted by position (so the result does not depend on how the
picture was cut), hits over the thresholds are merged into boxes, and the picture's
``windows.parquet``, ``detections.json``, ``overlay.png`` and ``manifest.json`` are
written and committed with ``_SUCCESS`` last (:class:`scoring.outputs.RunWriter`). A
collection's picture keeps its windows once, as its part of the run's windows dataset,
written inside its commit; its manifest says where (:mod:`scoring.stored_windows`).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import storage
from core.errors import StorageUnreachable, TilescanError
from core.redaction import redact
from engines.numerics import NumericsCheck
from pixels import ImageInfo
from pixels.georef import Georef
from scoring.boxes import boxes_from_table, picture_detections_json
from scoring.geojson import detections_geojson
from scoring.heatmap import HEATMAP_FILE, HeatmapRows, heatmap_grid, heatmap_tiff
from scoring.outputs import Destination, RunWriter
from scoring.overlay import overlay_png
from scoring.records import FAILED, SCORED, STAGED, PictureSummary, PieceFailure, PieceTiming
from scoring.results import probability_column, select_rows
from scoring.stored_windows import WINDOWS_FILE, manifest_pointer, write_part
from viewer import VIEWER_FILE, ViewerAssets, page_data, viewer_html, write_pyramid, write_pyramid_apart
from viewer.assets import SCRIPT_NAME
from viewer.pyramid import WHOLE_PIXELS as PYRAMID_WHOLE_PIXELS

__all__ = ["PictureJob", "RunContext", "finish_picture", "manifest_bytes", "piece_rows", "executor_checks",
           "TIMING_KEY"]

#: Schema metadata key of each piece's timings in its Arrow stream.
TIMING_KEY = b"tilescan.timing"


@dataclass(frozen=True)
class RunContext:
    """What every picture of a run is finished with; pickled to executors once per job.

    ``manifest`` holds the fields every picture's manifest shares (tool, run, model,
    parameters, Spark, versions, storage).
    """

    classes: tuple
    background: str
    thresholds: dict
    merge: str
    merge_iou: float
    keep: float
    colors: dict
    window: int
    overwrite: bool
    run_id: str
    manifest: dict
    storage_options: dict | None = field(default=None, repr=False)
    #: ``--heatmap``: each picture's scores as a raster, one pixel per window position at ``stride``.
    heatmap: bool = False
    stride: int | None = None
    #: The viewer's page template and script; ``None``: no viewer (``--no-viewer``).
    viewer: ViewerAssets | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PictureJob:
    """One picture to finish: where its outputs go and what its bands should add up to.

    A collection's pictures are committed where they are finished (``commit``); a single
    picture's files are only staged, and the driver commits them with the manifest, once
    the job's own timings are known.
    """

    index: int
    name: str
    info: ImageInfo
    root: str
    windows: int
    pieces: int
    commit: bool = True
    seen: Destination | None = None
    dataset: str | None = None
    attributes: dict = field(default_factory=dict)


def piece_rows(table: pa.Table, timing: PieceTiming) -> bytes:
    """A scored band's kept rows and timings as one Arrow IPC stream (what a scoring task sends)."""
    table = table.replace_schema_metadata({TIMING_KEY: json.dumps(timing.to_json())})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def executor_checks(timings: list[PieceTiming]) -> list[dict]:
    """The engine checks of the workers that scored these pieces, one entry per host and result.

    Each is the check's :meth:`~engines.numerics.NumericsCheck.to_json` (host, CPU, its
    instruction sets, engine, status, difference) with ``workers``: how many Python workers
    on that host gave it. Sorted by host.
    """
    found = {}
    for timing in timings:
        check = timing.engine_check
        if check is None:
            continue
        key = json.dumps({k: v for k, v in check.items() if k != "seconds"}, sort_keys=True)
        found.setdefault(key, (check, set()))[1].add(timing.worker)
    return [{**check, "workers": len(workers)}
            for _, (check, workers) in sorted(found.items(), key=lambda item: (item[1][0]["host"], item[0]))]


@dataclass
class _Pieces:
    """What a picture's scoring tasks sent, read: its kept rows sorted by position (``None`` if no
    band sent any), each band's timings, failures and failed engine checks, and heat-map rows."""

    table: pa.Table | None
    timings: list
    errors: list
    failed_checks: list
    heat: list


def _read_pieces(payloads) -> _Pieces:
    tables, timings, errors, failed_checks, heat = [], [], [], [], []
    for payload in payloads:
        if isinstance(payload, HeatmapRows):
            heat.append(payload)
            continue
        if isinstance(payload, NumericsCheck):
            failed_checks.append(payload)
            continue
        if isinstance(payload, PieceFailure):
            errors.append(payload)
            continue
        table = pa.ipc.open_stream(payload).read_all()
        timings.append(PieceTiming.from_json(json.loads(table.schema.metadata[TIMING_KEY])))
        tables.append(table.replace_schema_metadata(None))
    if not tables:
        return _Pieces(None, timings, errors, failed_checks, heat)
    # One copy, sorted: the pieces' tables are views of their bytes, and take gathers from them.
    table = pa.concat_tables(tables)
    del tables
    order = np.lexsort((table.column("x").to_numpy(), table.column("y").to_numpy()))
    return _Pieces(table.take(pa.array(order)).combine_chunks(), timings, errors, failed_checks, heat)


def manifest_bytes(manifest: dict) -> bytes:
    """A manifest as the file holds it: indented JSON with no secret in it (e.g. a SAS in a URL)."""
    return redact(json.dumps(manifest, indent=2), one_line=False).encode()


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _kept_windows_parquet(table: pa.Table, ctx: RunContext, georef: Georef | None) -> tuple[int, bytes]:
    """The windows a picture keeps (``--keep``), as ``windows.parquet`` holds them, and how many;
    with the map coordinates of each window's centre (``map_x``, ``map_y``) when the picture has
    a georeference."""
    probs = np.stack([table.column(probability_column(c)).to_numpy() for c in ctx.classes], axis=1)
    rows = select_rows(probs, ctx.classes, ctx.background, ctx.keep)
    del probs
    # Every row kept (--keep 0): the table itself, not a copy of it (a picture's every window).
    kept = table if len(rows) == table.num_rows else table.take(pa.array(rows))
    if georef is not None:
        x, y = (kept.column(n).to_numpy().astype(np.float64) for n in ("x", "y"))
        w, h = (kept.column(n).to_numpy().astype(np.float64) for n in ("width", "height"))
        map_x, map_y = georef.to_map(x + w / 2, y + h / 2)
        kept = kept.append_column("map_x", pa.array(map_x)).append_column("map_y", pa.array(map_y))
    parquet = io.BytesIO()
    pq.write_table(kept, parquet, compression="zstd")
    return kept.num_rows, parquet.getvalue()


def _write_dataset_part(writer: RunWriter, url: str, parquet: bytes, storage_options: dict | None) -> None:
    """A collection picture's windows, their one copy: its part of the run's dataset at ``url``,
    written inside its commit (before any file moves), so a picture with ``_SUCCESS`` has its
    windows; a part whose picture's commit then failed is removed as the run ends
    (:func:`scoring.earlier_runs.tidy_dataset`)."""
    _, path = storage.filesystem(url, storage_options)
    write_part(writer.fs, path, parquet, staging=writer.staging, url=url)


def _viewer_folder(job: PictureJob, ctx: RunContext, writer: RunWriter) -> tuple[str, dict]:
    """The picture's tile pyramid and OpenSeadragon's script, made in a local folder and written in
    place (:meth:`RunWriter.write_folder`); the folder's name and the pyramid's description."""
    # On the executor's own scratch disks (Spark gives its Python workers SPARK_LOCAL_DIRS): a
    # gigapixel picture's pyramid passes through an uncompressed local copy (viewer.pyramid).
    scratch = (os.environ.get("SPARK_LOCAL_DIRS") or "").split(",")[0] or None
    with tempfile.TemporaryDirectory(prefix="tilescan-viewer-", dir=scratch) as local:
        # A larger picture's in a process of its own, which takes libvips' memory away with it.
        make = write_pyramid if job.info.width * job.info.height <= PYRAMID_WHOLE_PIXELS else write_pyramid_apart
        pyramid = make(job.info, local, storage_options=ctx.storage_options)
        with open(os.path.join(local, SCRIPT_NAME), "wb") as fh:
            fh.write(ctx.viewer.script)
        return writer.write_folder(local), pyramid


def finish_picture(job: PictureJob, payloads, ctx: RunContext) -> PictureSummary:
    """Turn one picture's scored bands into its committed outputs; returns its
    :class:`~scoring.records.PictureSummary`.

    A collection's picture is committed here and its summary carries its boxes, which the
    driver gathers into the run's detections; a single picture's files are staged (status
    ``staged``) for the driver to commit. A picture some of whose bands met an engine that
    failed its numerics check is not written at all; its summary's ``numerics_failure``
    holds that :class:`~engines.numerics.NumericsCheck`, with which the driver stops the run.
    """
    started = time.time()
    pieces = _read_pieces(payloads)
    table, tasks, errors, failed_checks = pieces.table, pieces.timings, pieces.errors, pieces.failed_checks
    summary = PictureSummary(job.index, job.name, job.info.url, job.info.width, job.info.height, tasks=tuple(tasks))
    if failed_checks:
        return replace(summary, error=failed_checks[0].failure_line(), numerics_failure=failed_checks[0])
    scored = sum(t.windows for t in tasks)
    if errors or table is None or scored != job.windows:
        return replace(summary, error=errors[0].message if errors else f"scored {scored} of {job.windows} windows",
                       unreachable=any(e.unreachable for e in errors))
    writer = RunWriter(job.root, run_id=ctx.run_id, overwrite=ctx.overwrite, storage_options=ctx.storage_options,
                       started=ctx.manifest.get("started"))
    writer.started_with(job.seen)
    try:
        timings = {"read_s": sum(t.read_s for t in tasks), "score_s": sum(t.score_s for t in tasks),
                   "inference_s": sum(t.predict_s for t in tasks)}
        # Several things at once, as each can start: the kept windows' Parquet (encoded outside
        # the GIL) and the viewer's pyramid (libvips) while the hits merge, then the overlay
        # (boxes drawn, the PNG deflated on threads of its own) while the detections are written.
        with ThreadPoolExecutor(3) as pool:
            georef = Georef.from_json(job.info.georef)
            windows_file = pool.submit(_kept_windows_parquet, table, ctx, georef)
            # The pyramid is libvips' work on threads of its own: it runs beside all the rest, from
            # the pixels the overlay holds too. A larger picture's pyramid reads the picture again
            # band by band: after the overlay's own pass, so that their bands are never held at once.
            beside = ctx.viewer is not None and job.info.width * job.info.height <= PYRAMID_WHOLE_PIXELS
            viewer = pool.submit(_viewer_folder, job, ctx, writer) if beside else None
            step = time.time()
            hits, boxes = boxes_from_table(table, ctx.classes, ctx.thresholds, merge=ctx.merge, iou=ctx.merge_iou)
            timings["merge_s"] = time.time() - step
            step = time.time()
            overlay = pool.submit(overlay_png, job.info, boxes, ctx.colors, ctx.classes,
                                  storage_options=ctx.storage_options)
            detections = picture_detections_json(boxes, ctx.classes, ctx.background,
                                                 file_name=storage.file_name(job.info.url), width=job.info.width,
                                                 height=job.info.height)
            geojson = detections_geojson(boxes, ctx.classes, ctx.background, georef=georef, image=job.name)
            kept, parquet = windows_file.result()
            write_s = time.time()
            if job.dataset is None:  # a single picture's; a collection's one copy joins the run's dataset
                writer.write(WINDOWS_FILE, parquet)
            writer.write("detections.json", detections)
            writer.write("detections.geojson", geojson)
            write_s = time.time() - write_s
            png, factor = overlay.result()
            pyramid = None
            if ctx.viewer is not None:
                folder, pyramid = viewer.result() if viewer is not None else _viewer_folder(job, ctx, writer)
                data = page_data(boxes, ctx.classes, ctx.background, ctx.colors,
                                 name=job.name or storage.file_name(job.info.url), pyramid=pyramid, folder=folder)
                writer.write(VIEWER_FILE, viewer_html(ctx.viewer.template, data))
                pyramid = {"page": VIEWER_FILE, "folder": folder, **pyramid}
        heatmap = None
        if ctx.heatmap:
            names = [c for c in ctx.classes if c != ctx.background]
            raster, heatmap = heatmap_tiff(heatmap_grid(pieces.heat, len(names)), names, stride=ctx.stride,
                                           window=ctx.window, georef=georef)
            step_write = time.time()
            writer.write(HEATMAP_FILE, raster)
            write_s += time.time() - step_write
        timings["outputs_s"] = time.time() - step - write_s
        step = time.time()
        writer.write("overlay.png", png)
        timings["write_s"] = write_s + time.time() - step  # the manifest's own write and the commit follow
        windows = [t.windows for t in tasks]
        counts = {
            "windows_scored": scored,
            "windows_kept": kept,
            "hits": int(len(hits)),
            "boxes": int(len(boxes)),
            "boxes_per_class": {c: int((boxes[:, 5] == k).sum()) for k, c in enumerate(ctx.classes)
                                if c != ctx.background},
            "strip_windows": windows,
            "strip_balance": max(windows) / float(np.mean(windows)),
        }
        timings["finish_s"] = time.time() - started
        manifest = {**ctx.manifest, "finished": datetime.now(timezone.utc).isoformat(), "input": job.info.to_json(),
                    "attributes": job.attributes, "counts": counts,
                    "windows": manifest_pointer(None if job.dataset is None else job.name), "overlay_scale": 1 / factor,
                    **({"heatmap": heatmap} if heatmap else {}), **({"viewer": pyramid} if pyramid else {}),
                    "numerics": {**ctx.manifest.get("numerics", {}), "executors": executor_checks(tasks)},
                    "timings_s": {**ctx.manifest.get("timings_s", {}), **timings}}
        manifest = json.loads(json.dumps(manifest, default=_json_default))
        if not job.commit:
            return replace(summary, status=STAGED, staged=writer.staged, manifest=manifest, counts=counts,
                           timings_s=timings, overlay_scale=1 / factor)
        writer.write("manifest.json", manifest_bytes(manifest))
        writer.commit(before_moves=None if job.dataset is None else
                      lambda: _write_dataset_part(writer, job.dataset, parquet, ctx.storage_options))
    except TilescanError as exc:
        writer.abort()
        return replace(summary, status=FAILED, error=redact(exc), unreachable=isinstance(exc, StorageUnreachable))
    except BaseException:
        writer.abort()
        raise
    # An array, not lists: tens of thousands of boxes unpickle in a millisecond instead of 30.
    return replace(summary, status=SCORED, counts=counts, timings_s=timings, overlay_scale=1 / factor,
                   boxes=np.ascontiguousarray(boxes, np.float64))
