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
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from core import credentials, storage
from core.bundle import ModelBundle, load_bundle
from core.errors import InputError, OutputExistsError
from core.redaction import redact
from engines.numerics import FLOAT_ENGINE, NumericsCheck, NumericsError
from engines.preflight import Preflight, preflight
from engines.self_check import SelfCheck
from pixels import ImageInfo, probe_image
from scoring.connect import context_of
from scoring.earlier_runs import (
    incomplete_pictures,
    kept_annotations,
    kept_manifests,
    scored_with,
    tidy_dataset,
)
from scoring.executor import probe_picture
from scoring.finish import PictureJob, RunContext, manifest_bytes
from scoring.inputs import Inputs, absolute_url, output_names, resolve_inputs
from scoring.manifest import manifest_base, run_manifest, settings_parameters
from scoring.outputs import SUCCESS, Destination, RunWriter
from scoring.params import TASKS_PER_CORE, ScoreParams, Settings
from scoring.paths import scoring_path
from scoring.planning import RunPlan, plan_run
from scoring.records import SCORED, STAGED, BandSettings, JobPlan, PictureSummary, ProbeFailure
from scoring.run_detections import RunDetections
from scoring.stored_windows import dataset_part
from viewer import ViewerAssets, load_assets

__all__ = ["Picture", "PreparedRun", "prepare", "run", "EXIT_SOME_FAILED", "PROBE_ON_DRIVER"]

logger = logging.getLogger(__name__)

#: Exit code of a collection run in which some pictures failed (the others finished).
EXIT_SOME_FAILED = 3
#: Collections of up to this many pictures have their headers read on the driver.
PROBE_ON_DRIVER = 16
_PROBE_THREADS = 8


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
    note: str | None = None  # why a finished picture --resume would have kept is scored again

    @property
    def header(self) -> dict:
        """The header as a manifest records it: read in this run, or kept from the earlier one ({} if neither)."""
        return self.info.to_json() if self.info is not None else (self.kept or {}).get("input") or {}

    def coco_image(self) -> dict:
        """The picture's entry in a run's COCO ``images``."""
        header = self.header
        return {"id": self.index + 1, "file_name": redact(self.url), "name": self.name, "width": header["width"],
                "height": header["height"]}

    def take_header(self, header: ImageInfo | ProbeFailure) -> None:
        """Keep what :func:`scoring.executor.probe_picture` found: the header, or why there is none."""
        if isinstance(header, ProbeFailure):
            self.error = header.message
        else:
            self.info = header


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
    #: The viewer's page template and script, read once here (``None`` with ``--no-viewer``).
    viewer: ViewerAssets | None = field(default=None, repr=False)

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


def _finished_pictures(writer: RunWriter) -> set[str]:
    """The names of the picture folders under a collection's output that hold a finished picture."""
    with storage.errors("list", writer.url):
        writer.fs.invalidate_cache()
        found = writer.fs.glob(storage.join(storage.glob_escape(writer.root), "*", SUCCESS))
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
    viewer = load_assets() if params.viewer else None  # a checkout without OpenSeadragon: one line, now
    run_id = uuid.uuid4().hex
    began = datetime.now(timezone.utc).isoformat()
    started = time.time()
    if inputs is None:
        inputs = resolve_inputs(params.image, params.images, storage_options=storage_options)
    out = absolute_url(params.out)
    writer = RunWriter(out, run_id=run_id, overwrite=_replaces(params, inputs.single), storage_options=storage_options,
                       started=began)
    seen = writer.check(resumable=not inputs.single, resuming=params.resume)
    writer.probe()
    timings["check_s"] = time.time() - started

    started = time.time()
    bundle = load_bundle(params.model, storage_options=storage_options)
    settings = params.settings_for(bundle.spec, bundle.recommended, bundle.files, source=bundle.source)
    params = params.for_model(bundle.spec, bundle.recommended)  # after settings_for has checked `recommended`
    engine, settings, fallback = _checked_engine(bundle, settings, params.batch_size)
    bundle = engine.bundle
    params.colors_for(bundle.spec.foreground)  # unknown classes in --colors are bad input
    timings["load_model_s"] = time.time() - started

    started = time.time()
    first = {}  # a picture a list names twice (a/x.png, ./a/x.png) is scored once, as first named
    for k, url in enumerate(absolute_url(u) for u in inputs.urls):
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
        incomplete = incomplete_pictures(writer.fs, writer.root, writer.url, [p.name for p in pictures if p.skipped])
        for picture in pictures:
            if picture.name in incomplete:
                picture.skipped, picture.note = False, f"scored again: finished earlier, but {incomplete[picture.name]}"
                logger.warning("%s: %s", picture.name, picture.note)
        skipped = [p for p in pictures if p.skipped]
        if skipped:
            expected = scored_with(bundle.sha256, {**params.to_json(), **settings_parameters(settings)})
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
                       fallback=fallback, viewer=viewer)


def _replaces(params: ScoreParams, single: bool) -> bool:
    """Whether the run may replace a finished run in ``--out``: with ``--overwrite``, or in a
    collection with ``--resume`` (which keeps its finished pictures). A single picture's
    finished run is never replaced by ``--resume``: that would score it again."""
    return params.overwrite or (params.resume and not single)


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
    p, timings = prepared.params, prepared.timings
    began = datetime.fromisoformat(prepared.writer.started)  # when prepare began: what "another run since" compares
    started = time.time()
    _probe_on_executors(prepared, spark)
    timings["probe_s"] = time.time() - started

    started = time.time()
    ready = [pic for pic in prepared.pictures if not pic.skipped and pic.info is not None]
    cores = context_of(spark).defaultParallelism
    plan = plan_run({pic.index: pic.info for pic in ready}, window=p.window, stride=p.stride, edge=p.edge,
                    tasks_per_wave=p.strips or TASKS_PER_CORE * cores, cores=cores)
    timings["plan_s"] = time.time() - started
    if p.stride > p.window:
        logger.warning("--stride %d is larger than --window %d: bands of %d pixels between windows are not scanned",
                       p.stride, p.window, p.stride - p.window)
    base = manifest_base(prepared, spark, began, plan.n_tasks)
    base["timings_s"] = dict(timings)
    job = _job_plan(prepared, plan, ready)
    context = _run_context(prepared, base)
    if prepared.single:
        return _run_picture(prepared, spark, job, context)
    return _run_collection(prepared, spark, job, context, base)


def _probe_on_executors(prepared: PreparedRun, spark) -> None:
    """The headers of a large collection's pictures, read on the executors (a small one's were read in prepare)."""
    from scoring.job import probe_on_executors

    p = prepared.params
    unprobed = [pic for pic in prepared.pictures if not pic.skipped and pic.info is None and pic.error is None]
    if unprobed:
        headers = probe_on_executors(spark, [pic.url for pic in unprobed], window=p.window, max_pixels=p.max_pixels,
                                     storage_options=prepared.executor_options)
        for picture, header in zip(unprobed, headers):
            picture.take_header(header)


def _job_plan(prepared: PreparedRun, plan: RunPlan, ready: list) -> JobPlan:
    p, s = prepared.params, prepared.settings
    jobs = {pic.index: PictureJob(pic.index, pic.name, pic.info, pic.root, plan.windows[pic.index],
                                  plan.bands.get(pic.index, 0), commit=not prepared.single, seen=pic.seen,
                                  dataset=None if prepared.single else dataset_part(prepared.writer.url, pic.name),
                                  attributes=pic.attributes)
            for pic in ready}
    path = scoring_path(prepared.bundle.spec, stride=p.stride, dense=p.dense)
    band = BandSettings(engine=s.engine, window=p.window, stride=p.stride, edge=p.edge, batch_size=p.batch_size,
                        floor=min([p.keep, *s.thresholds.values()]), heatmap=p.heatmap,
                        dense_stride=path.get("dense_stride"), dense_pass_pixels=path.get("pass_pixels", 0))
    return JobPlan(plan.waves, jobs, band, storage_options=prepared.executor_options)


def _run_context(prepared: PreparedRun, base: dict) -> RunContext:
    p, s, spec = prepared.params, prepared.settings, prepared.bundle.spec
    return RunContext(classes=spec.classes, background=spec.background, thresholds=s.thresholds, merge=s.merge,
                      merge_iou=s.merge_iou, keep=p.keep, colors=prepared.colors, window=p.window,
                      overwrite=_replaces(p, prepared.single), run_id=prepared.run_id, manifest=base,
                      storage_options=prepared.executor_options, heatmap=p.heatmap, stride=p.stride,
                      viewer=prepared.viewer)


def _run_picture(prepared: PreparedRun, spark, job: JobPlan, context: RunContext) -> dict:
    """One picture: scored, its files staged by its executor, committed here with its manifest."""
    summaries, job_timings, _ = _scored(prepared, spark, job, context)  # its manifest has its executors' checks
    prepared.timings.update(job_timings.to_json())
    summary = summaries[0] if summaries else None
    if summary is None or summary.status != STAGED:
        prepared.writer.abort()
        raise InputError(summary.error if summary is not None and summary.error else "not scored")
    return _commit_picture(prepared, summary, prepared.timings)


def _run_collection(prepared: PreparedRun, spark, job: JobPlan, context: RunContext, base: dict) -> dict:
    """A collection: scored wave by wave, each picture committed where it is finished, then the run's files."""
    pictures = prepared.pictures
    with RunDetections(prepared.bundle.spec.classes, prepared.bundle.spec.background) as detections:
        _add_kept(prepared, detections)

        def add_scored(wave: list[PictureSummary]) -> None:  # a wave's boxes go to the spool, not the driver's memory
            for summary in wave:
                if summary.status == SCORED:
                    detections.add(pictures[summary.index].coco_image(), boxes=summary.boxes)

        if job.waves:
            summaries, job_timings, checks = _scored(prepared, spark, job, context, on_wave=add_scored)
            prepared.timings.update(job_timings.to_json())
        else:
            summaries, checks = [], []
            prepared.timings["spark_job_s"] = 0.0
        base["numerics"]["executors"] = checks
        by_index = {summary.index: summary for summary in summaries}
        for index in job.jobs:
            summary = by_index.get(index)
            if summary is None or summary.status != SCORED:
                pictures[index].error = summary.error if summary is not None and summary.error else "not scored"
        return _commit_run(prepared, base, by_index, prepared.timings, detections)


def _scored(prepared: PreparedRun, spark, job: JobPlan, context: RunContext, *, on_wave=None):
    """:func:`scoring.job.run_job`; when it fails (an executor's engine failed its numerics check,
    the session was stopped, Ctrl-C), what the run staged is removed before the error goes on."""
    from scoring.job import run_job

    try:
        return run_job(spark, job, prepared.bundle, context, quiet=prepared.params.quiet, on_wave=on_wave)
    except BaseException:
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


def _commit_picture(prepared: PreparedRun, summary: PictureSummary, timings: dict) -> dict:
    """A single picture's files, staged by its executor, committed with its manifest and the job's timings."""
    writer = prepared.writer
    manifest = summary.manifest
    manifest["timings_s"] = {**timings, **summary.timings_s}
    try:
        writer.adopt(summary.staged)
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
    writer = prepared.writer
    started = time.time()
    manifest = run_manifest(prepared, base, summaries, timings)
    entries = manifest["pictures"]
    try:
        writer.ensure_committable()  # before tidying: a run that lost the folder to another removes nothing
        tidy_dataset(writer.fs, writer.root, writer.url,
                     results={e["name"] for e in entries if e["status"] != "failed"},
                     kept={e["name"] for e in entries if e["status"] == "skipped"}, started=writer.started,
                     run_id=writer.run_id)
        detections.write(writer)
        manifest["timings_s"]["write_s"] = time.time() - started
        writer.write("manifest.json", manifest_bytes(manifest))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return manifest
