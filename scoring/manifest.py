"""A run's manifests: what every picture's manifest and the run's share (provenance, the model and
its contract, the parameters and settings, the engine checks, Spark, versions, storage), and a
collection run's own record of its pictures.

``prepared`` is the run's :class:`scoring.pipeline.PreparedRun`.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from core import credentials, storage
from core.project import checkout_commit, installed_versions
from engines import engine_class
from engines.numerics import UNCHECKED
from scoring.connect import context_of
from scoring.inputs import absolute_url
from scoring.params import Settings
from scoring.paths import scoring_path
from scoring.records import SCORED, PictureSummary
from scoring.stored_windows import dataset_part

__all__ = ["manifest_base", "run_manifest", "package_versions", "settings_parameters"]

logger = logging.getLogger(__name__)


def package_versions(engine: str) -> dict:
    """The versions a run's results depend on."""
    names = ["tilescan", "numpy", "pyarrow", "pyspark", "pillow", "fsspec", "onnxruntime", "tifffile", "zarr",
             "pyvips", "pyvips-binary"]
    return installed_versions(names + (["mxnet"] if engine == "mxnet" else []))


def settings_parameters(settings: Settings) -> dict:
    """The settings a run resolved from its options and the model, as its manifest's parameters record them."""
    return {"engine": settings.engine, "thresholds": settings.thresholds, "merge": settings.merge,
            "merge_iou": settings.merge_iou}


def _numerics(prepared) -> tuple[dict, list[str]]:
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


def _fixed_batch_notes(prepared) -> list[str]:
    """A note, and a warning now, when the model's batch axis is fixed and windows run in batches of that size."""
    fixed = prepared.self_check.fixed_batch if prepared.self_check is not None else None
    if fixed is None or fixed >= prepared.params.batch_size:
        return []
    line = (f"the model was exported with a fixed batch of {fixed}: its windows run {fixed} at a time instead of "
            f"--batch-size {prepared.params.batch_size}, which is slower; export it with a dynamic batch axis")
    logger.warning("%s", line)
    return [line]


def _absolute_locations(params) -> dict:
    """The run's pictures, output and model as the manifest names them: local paths made absolute."""
    named = (("image", params.image), ("images", params.images), ("out", params.out), ("model", params.model))
    return {k: [absolute_url(u) for u in v] if isinstance(v, (list, tuple)) else absolute_url(v) for k, v in named if v}


def manifest_base(prepared, spark, began: datetime, n_tasks: int) -> dict:
    """What every picture's manifest and the run's share: provenance, model, parameters, Spark."""
    from scoring.job import engine_threads, spark_settings

    p, spec, s = prepared.params, prepared.bundle.spec, prepared.settings
    sc = context_of(spark)
    conf = spark_settings(spark)
    numerics, numerics_notes = _numerics(prepared)
    return {
        "tool": "tilescan",
        "version": installed_versions(["tilescan"])["tilescan"],
        "commit": checkout_commit(),
        "run_id": prepared.run_id,
        "started": began.isoformat(),
        "model": {"source": absolute_url(p.model), "sha256": prepared.bundle.sha256, "name": spec.name,
                  "classes": list(spec.classes), "background": spec.background, "boxes": spec.boxes,
                  "contract": {key: spec.to_json()[key] for key in ("input", "output")},
                  "self_check": None if prepared.self_check is None else prepared.self_check.to_json()},
        "parameters": {**p.to_json(), **_absolute_locations(p),
                       "tasks": n_tasks, **settings_parameters(s),
                       "settings_source": s.source, "colors": {c: list(v) for c, v in prepared.colors.items()}},
        "notes": ([f"--stride {p.stride} is larger than --window {p.window}: bands of "
                   f"{p.stride - p.window} pixels between windows are not scanned"] if p.stride > p.window else [])
        + numerics_notes + _fixed_batch_notes(prepared),
        "scoring": scoring_path(spec, stride=p.stride, dense=p.dense),
        "numerics": numerics,
        "spark": {"master": sc.master, "default_parallelism": sc.defaultParallelism, "app_id": sc.applicationId,
                  "version": sc.version, "engine_threads_per_task": engine_threads(spark),
                  "task_resources": engine_class(s.engine).task_resources(engine_threads(spark)),
                  "driver_memory": conf.get("spark.driver.memory", "1g (default)"),
                  "executor_memory": conf.get("spark.executor.memory", "1g (default)"), "conf": conf},
        "versions": package_versions(s.engine),
        "storage": {role: credentials.describe(url, prepared.storage_options)
                    for role, url in (("image", prepared.pictures[0].url), ("model", p.model), ("out", p.out))},
    }


def run_manifest(prepared, base: dict, summaries: dict[int, PictureSummary], timings: dict) -> dict:
    """A collection run's manifest: ``base``, with every picture's status (``scored``, ``failed``
    with its one-line error, or ``skipped`` by ``--resume``), counts and timings, and the run's counts."""
    spec = prepared.bundle.spec
    foreground = [c for c in spec.classes if c != spec.background]
    entries = []
    for picture in prepared.pictures:
        status = "failed" if picture.error else "skipped" if picture.skipped else SCORED
        entry = {"name": picture.name, "url": picture.url, "status": status, "attributes": picture.attributes,
                 "manifest": storage.join(picture.name, "manifest.json")}
        if picture.error:
            entry["error"] = picture.error
        if picture.note:
            entry["note"] = picture.note
        header = picture.header
        if header:
            entry.update({key: header.get(key) for key in ("width", "height", "etag")})
        if status != "failed":  # its windows' one copy, relative to the run's folder as "manifest" is
            entry["windows"] = dataset_part("", picture.name)
        if status == SCORED:
            summary = summaries[picture.index]
            entry.update(counts=summary.counts, timings_s=summary.timings_s)
        elif status == "skipped":
            entry.update(counts=picture.kept.get("counts"), finished=picture.kept.get("finished"))
            kept = picture.kept.get("attributes")
            if isinstance(kept, dict) and kept != picture.attributes:  # the picture's manifest keeps those
                entry.update(attributes=kept, note=f"kept from an earlier run, with its attributes then; the list "
                                                   f"now gives {picture.attributes}")
        entries.append(entry)
    scored = [e for e in entries if e["status"] == SCORED]
    counts = {
        "pictures": len(entries),
        "scored": len(scored),
        "failed": sum(e["status"] == "failed" for e in entries),
        "skipped": sum(e["status"] == "skipped" for e in entries),
        "windows_scored": sum(e["counts"]["windows_scored"] for e in scored),
        "boxes": sum(e["counts"]["boxes"] for e in scored),
        "boxes_per_class": {c: sum(e["counts"]["boxes_per_class"][c] for e in scored) for c in foreground},
    }
    return {**base, "inputs": {"source": prepared.inputs.source, "count": len(entries)},
            "finished": datetime.now(timezone.utc).isoformat(), "counts": counts,
            "timings_s": {**timings, "write_s": 0.0}, "pictures": entries}
