"""A scoring run on the driver: check everything, plan on headers, run the job, commit the run.

:func:`prepare` does what can be known before Spark starts (the inputs, the destination
probed with a small write, the model loaded once with the chosen engine, and a single
picture's header), raising a :class:`core.errors.TilescanError` on bad input.
:func:`run` reads the headers of a collection (on the executors when there are many),
plans balanced tasks of bands, runs the job, and commits the run's own files. The driver
never holds pixels.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from core import credentials, storage
from core.bundle import ModelBundle, load_bundle
from core.errors import InputError, OutputExistsError
from core.project import checkout_commit, installed_versions
from core.redaction import redact
from engines.numerics import FLOAT_ENGINE, UNCHECKED, NumericsCheck, NumericsError
from engines.preflight import Preflight, preflight
from engines.self_check import SelfCheck
from pixels import ImageInfo, probe_image
from scoring.earlier_runs import dataset_part, kept_annotations, kept_manifests, scored_with, tidy_dataset
from scoring.executor import probe_picture
from scoring.finish import PictureJob, RunContext, manifest_bytes
from scoring.inputs import Inputs, output_names, resolve_inputs
from scoring.outputs import SUCCESS, Destination, RunWriter
from scoring.params import TASKS_PER_CORE, ScoreParams, Settings
from scoring.run_detections import RunDetections
from tiling import Piece, Task, WindowGrid, plan_tasks, plan_waves

__all__ = ["Picture", "PreparedRun", "prepare", "run", "package_versions",
           "EXIT_SOME_FAILED", "PROBE_ON_DRIVER", "MAX_BAND_PIXELS",
           "WAVE_WINDOWS_PER_CORE"]

logger = logging.getLogger(__name__)

#: Exit code of a collection run in which some pictures failed (the others finished).
EXIT_SOME_FAILED = 3
#: Collections of up to this many pictures have their headers read on the driver.
PROBE_ON_DRIVER = 16
#: The largest band an executor reads at a time, in pixels (96 MB of RGB).
MAX_BAND_PIXELS = 32_000_000
_PROBE_THREADS = 8
#: A collection is scored in waves of about this many windows per core (two minutes of the
#: int8 engine here, five of fp32), each finished and committed before the next: a run
#: stopped midway keeps its finished waves for --resume, and the driver and the shuffle hold
#: one wave's results at a time. Each wave costs one more stage change and tail (about a second).
WAVE_WINDOWS_PER_CORE = 400_000


@dataclass
class Picture:
    """One picture of a run: where its outputs go, its header once read, and what became of it."""

    index: int
    url: str
    name: str
    root: str
    attributes: dict = field(default_factory=dict)
    info: ImageInfo | None = None
    error: str | None = None
    seen: Destination | None = None
    skipped: bool = False
    kept: dict | None = None  # of a picture --resume keeps (then ``skipped``): its manifest's input, counts, finished

    @property
    def header(self) -> dict:
        """The header as a manifest records it: read in this run, or kept from the earlier one ({} if neither)."""
        return self.info.to_json() if self.info is not None else (self.kept or {}).get("input") or {}

    def coco_image(self) -> dict:
        """The picture's entry in a run's COCO ``images``."""
        header = self.header
        return {"id": self.index + 1, "file_name": redact(self.url), "name": self.name, "width": header["width"],
                "height": header["height"]}

    def take_header(self, header: ImageInfo | str) -> None:
        """Keep what :func:`scoring.executor.probe_picture` found: the header, or why there is none."""
        if isinstance(header, ImageInfo):
            self.info = header
        else:
            self.error = header


@dataclass
class PreparedRun:
    """Everything checked on the driver before Spark starts: bad input fails fast."""

    params: ScoreParams
    settings: Settings
    bundle: ModelBundle
    inputs: Inputs
    pictures: list
    writer: RunWriter
    run_id: str
    timings: dict
    storage_options: dict | None = field(default=None, repr=False)
    #: The driver's numerics check of the engine the run uses (:mod:`engines.numerics`).
    numerics: NumericsCheck | None = None
    #: What the driver's self-check of the run's engine ran (:mod:`engines.self_check`).
    self_check: SelfCheck | None = None
    #: When the model's recommended engine failed that check here and the run took the float
    #: engine instead: the engine, its check and the line printed; else ``None``.
    fallback: dict | None = None

    @property
    def executor_options(self) -> dict:
        """The storage options executors use: the driver's credentials travel with the tasks."""
        return credentials.for_executors(self.storage_options)

    @property
    def single(self) -> bool:
        return self.inputs.single

    @property
    def colors(self) -> dict:
        return self.params.colors_for(self.bundle.spec.foreground)


def _checked_engine(bundle: ModelBundle, settings: Settings,
                    batch_size: int) -> tuple[Preflight, Settings, dict | None]:
    """:func:`engines.preflight.preflight` for the run's engine, falling back to the float engine
    when the engine was only the model's recommendation and failed its numerics check here
    (said in one line).

    An engine the user chose is never replaced: its failure is the run's error.
    """
    try:
        return preflight(bundle, settings.engine, batch_size=batch_size), settings, None
    except NumericsError as exc:
        if settings.source.get("engine") != "model" or settings.engine == FLOAT_ENGINE:
            raise
        line = (f"the model recommends --engine {settings.engine}, but its numbers here differ from the model's "
                f"({exc.check.summary()}); this run uses --engine {FLOAT_ENGINE} (float32) instead")
        logger.warning("%s", line)
        fallback = dataclasses.replace(settings, engine=FLOAT_ENGINE, source={**settings.source, "engine": "fallback"})
        return (preflight(bundle, FLOAT_ENGINE, batch_size=batch_size), fallback,
                {"engine": settings.engine, "check": exc.check.to_json(), "note": line})


def _absolute(url: str) -> str:
    """A local path made absolute (the manifest must name it wherever it is read); URLs as they are."""
    return os.path.abspath(url) if credentials.is_local(url) and "://" not in url else url


def _finished_pictures(writer: RunWriter) -> set[str]:
    """The names of the picture folders under a collection's output that hold a finished picture."""
    with storage.errors("list", writer.url):
        writer.fs.invalidate_cache()
        found = writer.fs.glob(storage.join(writer.root, "*", SUCCESS))
    return {path.rstrip("/").rsplit("/", 2)[-2] for path in found}


def _probe_all(pictures: list, params: ScoreParams, storage_options) -> None:
    def probe(picture: Picture) -> None:
        picture.take_header(probe_picture(picture.url, window=params.window, max_pixels=params.max_pixels,
                                          storage_options=storage_options))

    with concurrent.futures.ThreadPoolExecutor(_PROBE_THREADS, thread_name_prefix="probe") as pool:
        list(pool.map(probe, pictures))


def prepare(params: ScoreParams, *, storage_options: dict | None = None, inputs: Inputs | None = None) -> PreparedRun:
    """Check the inputs, the destination and the model; raise a TilescanError on bad input.

    ``storage_options`` are the explicit options for remote URLs (credentials among them,
    see :func:`core.credentials.resolve_options`); they never reach the manifest.
    ``inputs`` are ``params``' pictures when the caller has resolved them already (a
    folder or a glob on the lake is not listed twice).
    """
    timings = {}
    run_id = uuid.uuid4().hex
    started = time.time()
    if inputs is None:
        inputs = resolve_inputs(params.image, params.images, storage_options=storage_options)
    out = _absolute(params.out)
    writer = RunWriter(out, run_id=run_id, overwrite=_replaces(params, inputs.single), storage_options=storage_options)
    seen = writer.check(resumable=not inputs.single, resuming=params.resume)
    writer.probe()
    timings["check_s"] = time.time() - started

    started = time.time()
    bundle = load_bundle(params.model, storage_options=storage_options)
    params = params.for_model(bundle.spec)
    settings = params.settings_for(bundle.spec, bundle.recommended, bundle.files)
    engine, settings, fallback = _checked_engine(bundle, settings, params.batch_size)
    bundle = engine.bundle
    params.colors_for(bundle.spec.foreground)  # unknown classes in --colors are bad input
    timings["load_model_s"] = time.time() - started

    started = time.time()
    first = {}  # a picture a list names twice (a/x.png, ./a/x.png) is scored once, as first named
    for k, url in enumerate(_absolute(u) for u in inputs.urls):
        first.setdefault(url, k)
    urls = list(first)
    names = output_names(urls)
    attributes = [inputs.attributes[k] for k in first.values()] if inputs.attributes else [{}] * len(urls)
    if inputs.single:
        pictures = [Picture(0, urls[0], "", out, dict(attributes[0]), seen=seen)]
        pictures[0].info = probe_image(urls[0], max_pixels=params.max_pixels, min_side=params.window,
                                       storage_options=storage_options)
    else:
        pictures = [Picture(i, u, n, storage.join(out, n), dict(a)) for i, (u, n, a) in
                    enumerate(zip(urls, names, attributes))]
        finished = _finished_pictures(writer)
        taken = [p.name for p in pictures if p.name in finished]
        if taken and not (params.resume or params.overwrite):
            raise OutputExistsError(f"{out} already holds {len(taken)} finished pictures of this run (e.g. "
                                    f"{taken[0]}); pass --resume to keep them or --overwrite to replace them")
        for picture in pictures:
            picture.skipped = params.resume and picture.name in finished
            picture.seen = Destination(True, False, True, None, True) if picture.name in finished else None
        skipped = [p for p in pictures if p.skipped]
        if skipped:
            expected = scored_with(bundle.sha256, {**params.to_json(), **_settings_parameters(settings)})
            kept = kept_manifests(writer.fs, writer.root, writer.url, {p.name: p.url for p in skipped}, expected,
                                  storage_options=storage_options)
            for picture in skipped:
                picture.kept = kept.get(picture.name)
                picture.skipped = picture.kept is not None
        if len(pictures) <= PROBE_ON_DRIVER:
            _probe_all([p for p in pictures if not p.skipped], params, storage_options)
        writer.claim()
    timings["inputs_s"] = time.time() - started
    return PreparedRun(params, settings, bundle, inputs, pictures, writer, run_id, timings,
                       storage_options=storage_options, numerics=engine.numerics, self_check=engine.self_check,
                       fallback=fallback)


def _replaces(params: ScoreParams, single: bool) -> bool:
    """Whether the run may replace a finished run in ``--out``: with ``--overwrite``, or in a
    collection with ``--resume`` (which keeps its finished pictures). A single picture's
    finished run is never replaced by ``--resume``: that would score it again."""
    return params.overwrite or (params.resume and not single)


def package_versions(engine: str) -> dict:
    """The versions a run's results depend on."""
    names = ["tilescan", "numpy", "pyarrow", "pyspark", "pillow", "fsspec", "onnxruntime", "tifffile", "zarr",
             "pyvips", "pyvips-binary"]
    return installed_versions(names + (["mxnet"] if engine == "mxnet" else []))


def _settings_parameters(settings: Settings) -> dict:
    """The settings a run resolved from its options and the model, as its manifest's parameters record them."""
    return {"engine": settings.engine, "thresholds": settings.thresholds, "merge": settings.merge,
            "merge_iou": settings.merge_iou}


def _numerics(prepared: PreparedRun) -> tuple[dict, list[str]]:
    """The manifest's record of the driver's engine check (each picture adds its executors'),
    and the notes it calls for."""
    check, golden = prepared.numerics, prepared.bundle.golden
    tolerance = golden.tolerance(check.precision) if golden is not None else None
    record = {"golden_windows": len(golden) if golden is not None else 0,
              "tolerance": None if tolerance is None else tolerance.to_json(), "driver": check.to_json()}
    notes = []
    if prepared.fallback is not None:
        record["fallback"] = prepared.fallback
        notes.append(prepared.fallback["note"])
    if check.status == UNCHECKED:
        notes.append(f"the engines' numbers were not checked: {check.reason}")
    return record, notes


def _fixed_batch_notes(prepared: PreparedRun) -> list[str]:
    """A note, and a warning now, when the model's batch axis is fixed and windows run in batches of that size."""
    fixed = prepared.self_check.fixed_batch if prepared.self_check is not None else None
    if fixed is None or fixed >= prepared.params.batch_size:
        return []
    line = (f"the model was exported with a fixed batch of {fixed}: its windows run {fixed} at a time instead of "
            f"--batch-size {prepared.params.batch_size}, which is slower; export it with a dynamic batch axis")
    logger.warning("%s", line)
    return [line]


def _manifest_base(prepared: PreparedRun, spark, began: datetime, n_tasks: int) -> dict:
    """What every picture's manifest and the run's share: provenance, model, parameters, Spark."""
    from scoring.job import engine_threads, spark_settings

    p, spec, s = prepared.params, prepared.bundle.spec, prepared.settings
    sc = spark.sparkContext
    conf = spark_settings(spark)
    numerics, numerics_notes = _numerics(prepared)
    return {
        "tool": "tilescan",
        "version": installed_versions(["tilescan"])["tilescan"],
        "commit": checkout_commit(),
        "run_id": prepared.run_id,
        "started": began.isoformat(),
        "model": {"source": _absolute(p.model), "sha256": prepared.bundle.sha256, "name": spec.name,
                  "classes": list(spec.classes), "background": spec.background, "boxes": spec.boxes,
                  "contract": {key: spec.to_json()[key] for key in ("input", "output")},
                  "self_check": None if prepared.self_check is None else prepared.self_check.to_json()},
        "parameters": {**p.to_json(), **{k: [_absolute(u) for u in v] if isinstance(v, (list, tuple)) else _absolute(v)
                                         for k, v in (("image", p.image), ("images", p.images), ("out", p.out),
                                                      ("model", p.model)) if v},
                       "tasks": n_tasks, **_settings_parameters(s),
                       "settings_source": s.source, "colors": {c: list(v) for c, v in prepared.colors.items()}},
        "notes": ([f"--stride {p.stride} is larger than --window {p.window}: bands of "
                   f"{p.stride - p.window} pixels between windows are not scanned"] if p.stride > p.window else [])
        + numerics_notes + _fixed_batch_notes(prepared),
        "numerics": numerics,
        "spark": {"master": sc.master, "default_parallelism": sc.defaultParallelism, "app_id": sc.applicationId,
                  "version": sc.version, "engine_threads_per_task": engine_threads(spark),
                  "driver_memory": conf.get("spark.driver.memory", "1g (default)"),
                  "executor_memory": conf.get("spark.executor.memory", "1g (default)"), "conf": conf},
        "versions": package_versions(s.engine),
        "storage": {role: credentials.describe(url, prepared.storage_options)
                    for role, url in (("image", prepared.pictures[0].url), ("model", p.model), ("out", p.out))},
    }


def run(prepared: PreparedRun, spark) -> dict:
    """Score the prepared run on ``spark`` and commit its outputs; returns the manifest.

    A single picture's manifest is its own; a collection's is the run's, with every
    picture's status (``scored``, ``failed`` with its one-line error, or ``skipped`` by
    ``--resume``), counts and timings.

    Raises
    ------
    TilescanError
        For a single picture that cannot be read or written; a collection records a
        failed picture and goes on.
    """
    from scoring.job import probe_on_executors, run_job

    p, spec, timings = prepared.params, prepared.bundle.spec, prepared.timings
    began = datetime.now(timezone.utc)
    pictures = prepared.pictures
    todo = [pic for pic in pictures if not pic.skipped]
    unprobed = [pic for pic in todo if pic.info is None and pic.error is None]
    started = time.time()
    if unprobed:
        for picture, header in zip(unprobed, probe_on_executors(spark, [pic.url for pic in unprobed],
                                                                window=p.window, max_pixels=p.max_pixels,
                                                                storage_options=prepared.executor_options)):
            picture.take_header(header)
    timings["probe_s"] = time.time() - started

    started = time.time()
    ready = [pic for pic in todo if pic.info is not None]
    grids = [WindowGrid(pic.info.height, pic.info.width, p.window, p.stride, p.edge) for pic in ready]
    parallelism = spark.sparkContext.defaultParallelism
    n_tasks = p.strips or TASKS_PER_CORE * parallelism
    waves, pieces, n_planned = [], {}, 0
    for wave in plan_waves([g.n_windows for g in grids], WAVE_WINDOWS_PER_CORE * parallelism):
        planned = plan_tasks([grids[k] for k in wave], n_tasks, max_band_pixels=MAX_BAND_PIXELS)
        # plan_tasks numbers pictures by their position in the wave: back to run indices.
        waves.append([Task(n_planned + t.index, tuple(Piece(ready[wave[piece.image]].index, piece.strip)
                                                  for piece in t.pieces)) for t in planned])
        n_planned += len(planned)
    for task in (task for wave in waves for task in wave):
        for piece in task.pieces:
            pieces[piece.image] = pieces.get(piece.image, 0) + 1
    timings["plan_s"] = time.time() - started
    if p.stride > p.window:
        logger.warning("--stride %d is larger than --window %d: bands of %d pixels between windows are not scanned",
                       p.stride, p.window, p.stride - p.window)

    base = _manifest_base(prepared, spark, began, n_planned)
    base["timings_s"] = dict(timings)
    s = prepared.settings
    context = RunContext(classes=spec.classes, background=spec.background, thresholds=s.thresholds, merge=s.merge,
                         merge_iou=s.merge_iou, keep=p.keep, colors=prepared.colors, window=p.window,
                         overwrite=_replaces(p, prepared.single), run_id=prepared.run_id,
                         manifest=base, storage_options=prepared.executor_options)
    jobs = {pic.index: PictureJob(pic.index, pic.name, pic.info, pic.root, grids[k].n_windows,
                                  pieces.get(pic.index, 0), commit=not prepared.single, seen=pic.seen,
                                  dataset=None if prepared.single else dataset_part(prepared.writer.url, pic.name),
                                  attributes=pic.attributes)
            for k, pic in enumerate(ready)}
    score = functools.partial(run_job, spark, waves, jobs, prepared.bundle, context, engine=s.engine,
                              pictures={pic.index: pic.info for pic in ready}, window=p.window, stride=p.stride,
                              edge=p.edge, batch_size=p.batch_size, floor=min([p.keep, *s.thresholds.values()]),
                              storage_options=prepared.executor_options, quiet=p.quiet)
    if prepared.single:
        summaries, job_timings, _ = _scored(prepared, score)  # the picture's manifest has its executors' checks
        timings.update(job_timings)
        summary = summaries[0] if summaries else {}
        if summary.get("status") != "staged":
            prepared.writer.abort()
            raise InputError(summary.get("error", "not scored"))
        return _commit_picture(prepared, summary, timings)

    with RunDetections(spec.classes, spec.background) as detections:
        _add_kept(prepared, detections)

        def add_scored(wave_summaries: list) -> None:  # a wave's boxes go to the spool, not the driver's memory
            for summary in wave_summaries:
                if summary["status"] == "scored":
                    detections.add(pictures[summary["index"]].coco_image(), boxes=summary.pop("boxes"))

        summaries, job_timings, checks = _scored(prepared, functools.partial(score, on_wave=add_scored)) if waves \
            else ([], {"spark_job_s": 0.0}, [])
        base["numerics"]["executors"] = checks
        timings.update(job_timings)
        by_index = {summary["index"]: summary for summary in summaries}
        for picture in ready:
            summary = by_index.get(picture.index)
            if summary is None or summary["status"] != "scored":
                picture.error = (summary or {}).get("error", "not scored")
        return _commit_run(prepared, base, by_index, timings, detections)


def _scored(prepared: PreparedRun, score) -> tuple[list[dict], dict, list[dict]]:
    """``score()`` (:func:`scoring.job.run_job`); when an executor's engine fails its numerics
    check, what the run staged is removed before the one-line error goes on."""
    try:
        return score()
    except NumericsError:
        prepared.writer.abort()
        raise


def _add_kept(prepared: PreparedRun, detections: RunDetections) -> None:
    """The boxes of the pictures --resume keeps, read back into the run's detections; one that
    cannot be read fails (it stays as it was)."""
    writer = prepared.writer
    by_name = {picture.name: picture for picture in prepared.pictures if picture.skipped}
    for name, found in kept_annotations(writer.fs, writer.root, writer.url, by_name):
        picture = by_name[name]
        if isinstance(found, str):
            picture.error = f"finished earlier, but {found}; remove its folder to score it again"
        else:
            detections.add(picture.coco_image(), annotations=found)


def _commit_picture(prepared: PreparedRun, summary: dict, timings: dict) -> dict:
    """A single picture's files, staged by its executor, committed with its manifest and the job's timings."""
    writer = prepared.writer
    manifest = summary["manifest"]
    manifest["timings_s"] = {**timings, **summary["timings_s"]}
    try:
        writer.adopt(summary["staged"])
        started = time.time()
        writer.write("manifest.json", manifest_bytes(manifest))
        writer.commit()
        manifest["timings_s"]["commit_s"] = time.time() - started
    except BaseException:
        writer.abort()
        raise
    return manifest


def _commit_run(prepared: PreparedRun, base: dict, summaries: dict, timings: dict,
                detections: RunDetections) -> dict:
    """The run's manifest and multi-picture detections, committed with the run's ``_SUCCESS`` last.

    Pictures kept by ``--resume`` are in both, with the boxes and counts they were finished with.
    """
    spec = prepared.bundle.spec
    writer = prepared.writer
    foreground = [c for c in spec.classes if c != spec.background]
    entries = []
    for picture in prepared.pictures:
        status = "failed" if picture.error else "skipped" if picture.skipped else "scored"
        entry = {"name": picture.name, "url": picture.url, "status": status, "attributes": picture.attributes,
                 "manifest": storage.join(picture.name, "manifest.json")}
        if picture.error:
            entry["error"] = picture.error
        header = picture.header
        if header:
            entry.update({key: header.get(key) for key in ("width", "height", "etag")})
        if status == "scored":
            summary = summaries[picture.index]
            entry.update(counts=summary["counts"], timings_s=summary["timings_s"])
        elif status == "skipped":
            entry.update(counts=picture.kept.get("counts"), finished=picture.kept.get("finished"))
        entries.append(entry)
    scored = [e for e in entries if e["status"] == "scored"]
    counts = {
        "pictures": len(entries),
        "scored": len(scored),
        "failed": sum(e["status"] == "failed" for e in entries),
        "skipped": sum(e["status"] == "skipped" for e in entries),
        "windows_scored": sum(e["counts"]["windows_scored"] for e in scored),
        "boxes": sum(e["counts"]["boxes"] for e in scored),
        "boxes_per_class": {c: sum(e["counts"]["boxes_per_class"][c] for e in scored) for c in foreground},
    }
    started = time.time()
    manifest = {**base, "inputs": {"source": prepared.inputs.source, "count": len(entries)},
                "finished": datetime.now(timezone.utc).isoformat(), "counts": counts,
                "timings_s": {**timings, "write_s": 0.0}, "pictures": entries}
    try:
        tidy_dataset(writer.fs, writer.root, writer.url,
                     results={e["name"] for e in entries if e["status"] != "failed"},
                     kept={e["name"] for e in entries if e["status"] == "skipped"})
        detections.write(writer)
        manifest["timings_s"]["write_s"] = time.time() - started
        writer.write("manifest.json", manifest_bytes(manifest))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return manifest
