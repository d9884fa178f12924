"""Every benchmark in one run; writes BENCHMARKS.md and benchmarks/results.json.

    python -m benchmarks.run_all             # make bench: about half an hour on 2 cores
    python -m benchmarks.run_all --quick     # smoke run, tiny sizes; writes under work/bench/quick/
    python -m benchmarks.run_all --only engine,end_to_end
    python -m benchmarks.run_all --only storage --update   # one section into the last run's report

Order: the machine, the engines, end to end (spark-submit, each its own JVM) back to back
so that their ratio holds; the collection (spark-submits too); the engines on each kind of
CPU (a process per kind); then the in-process runs on
one local SparkSession (breakdown, baseline, int8 and its AP runs, the dense picture,
merging); memory (a fresh process per picture, and Azurite); the storage requests
(Azurite); Spark Connect against a classic session last (a process per session). A section
that fails is recorded under ``errors`` and the others still run. ``--update`` keeps the
other sections of the last results and says when the new ones were measured: for figures
that do not depend on load (request counts), or that are compared only within the section.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from datetime import datetime, timezone

from benchmarks import (
    baseline,
    breakdown,
    collection,
    connect,
    cpus,
    dense,
    dense_scoring,
    end_to_end,
    engine,
    geotiff,
    machine,
    memory,
    merge,
    quantize,
    report,
    scaling,
    storage,
    viewer_cost,
)
from benchmarks.common import base_parser, configure_logging, core_counts, inputs_from_args, local_spark
from core.project import ROOT, project_path

__all__ = ["SECTIONS", "main"]

logger = logging.getLogger("benchmarks")

SECTIONS = ("engine", "end_to_end", "scaling", "collection", "cpus", "breakdown", "baseline", "quantize", "dense",
            "merge", "memory", "storage", "connect", "geotiff", "viewer", "dense_scoring")
SPARK_SECTIONS = ("breakdown", "baseline", "quantize", "dense", "merge", "viewer")


def _attempt(results: dict, name: str, call):
    started = time.time()
    try:
        results[name] = call()
    except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others' figures
        logger.error("section %s failed:\n%s", name, traceback.format_exc())
        results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"[:500]
    logger.info("section %s: %.1f s", name, time.time() - started)


def _updated(path: str, results: dict, only: tuple) -> dict:
    """The last results with the sections measured now put in, each dated: its own run."""
    import json

    with open(path) as fh:
        last = json.load(fh)
    machine = results.get("machine") or {}
    on = {k: machine.get(k) for k in ("cpu_model", "cores", "simd_flags")}
    for name in only:
        if name in results:
            last[name] = {**results[name], "measured": results["meta"]["date"], "machine": on}
        if name in results.get("errors", {}):
            last.setdefault("errors", {})[name] = results["errors"][name]
    return last


def main(argv=None) -> int:
    p = base_parser(__doc__)
    p.add_argument("--only", help=f"comma-separated sections (default all): {', '.join(SECTIONS)}")
    p.add_argument("--master", default="local[2]", help="Spark master of the in-process runs (default %(default)s)")
    p.add_argument("--md", help="BENCHMARKS.md to write (default: the repository's; under --work with --quick)")
    p.add_argument("--json", help="raw figures (default benchmarks/results.json; under --work with --quick)")
    p.add_argument("--connect-baseline", metavar="COMMIT",
                   help="connect section: also time the classic path at this git commit, side by side")
    p.add_argument("--update", action="store_true",
                   help="keep the other sections of the results file, and date the ones measured now")
    args = p.parse_args(argv)
    only = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown sections {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    configure_logging()
    started = time.time()
    inputs = inputs_from_args(args)
    md = args.md or (os.path.join(inputs.work, "BENCHMARKS.md") if args.quick else project_path("BENCHMARKS.md"))
    out_json = args.json or (os.path.join(inputs.work, "results.json") if args.quick
                             else project_path("benchmarks", "results.json"))
    cores = core_counts()
    quick = args.quick

    from PIL import Image

    from core.bundle import load_bundle

    bundle = load_bundle(inputs.model)
    with Image.open(inputs.image) as picture:
        width, height = picture.size
    results = {"meta": {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.run_all " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": quick, "cores_measured": cores,
        "model": {"path": inputs.model, "name": bundle.spec.name, "sha256": bundle.sha256,
                  "random": inputs.model_is_random},
        "image": {"path": os.path.relpath(inputs.image, ROOT), "width": width, "height": height,
                  "truth": inputs.truth},
    }}
    _attempt(results, "machine", lambda: machine.run(quick=quick))
    if "engine" in only:
        _attempt(results, "engine", lambda: engine.run(inputs.model, inputs.image, threads_list=cores,
                                                       machine=results.get("machine"), quick=quick))
    if "end_to_end" in only:
        _attempt(results, "end_to_end", lambda: end_to_end.run(
            inputs.model, inputs.image, inputs.work, cores_list=cores, engine_section=results.get("engine"),
            repeats=1 if quick else 2,
            extra_batch=engine.best_batch(results["engine"]) if "engine" in results and not quick else None))
    if "scaling" in only:
        _attempt(results, "scaling", lambda: scaling.run(inputs.model, inputs.image, inputs.work))
    if "collection" in only:
        _attempt(results, "collection", lambda: collection.run(inputs.model, inputs.work, quick=quick))
    if "cpus" in only:
        _attempt(results, "cpus", lambda: cpus.run(inputs.model, inputs.image, inputs.work, quick=quick))
    if any(s in only for s in SPARK_SECTIONS):
        spark = local_spark(args.master)
        try:
            if "breakdown" in only:
                _attempt(results, "breakdown", lambda: breakdown.run(spark, inputs.model, inputs.image, inputs.work))
            if "baseline" in only:
                _attempt(results, "baseline", lambda: baseline.run(spark, inputs.model, inputs.image, inputs.work,
                                                                   repeats=1 if quick else 2))
            if "quantize" in only:
                _attempt(results, "quantize", lambda: quantize.run(
                    inputs.model, inputs.image, inputs.work, threads_list=cores, spark=spark, truth=inputs.truth,
                    quick=quick))
            if "dense" in only:
                _attempt(results, "dense", lambda: dense.run(spark, inputs.model, inputs.work, quick=quick))
            if "merge" in only:
                _attempt(results, "merge", lambda: merge.run(spark, inputs.model, inputs.work, quick=quick))
            if "viewer" in only:
                _attempt(results, "viewer", lambda: viewer_cost.run(spark, inputs.model, inputs.work, quick=quick))
        finally:
            spark.stop()
    if "memory" in only:
        _attempt(results, "memory", lambda: memory.run(inputs.model, inputs.work, quick=quick))
    if "storage" in only:
        _attempt(results, "storage", lambda: storage.run(inputs.model, inputs.work, quick=quick))
    if "geotiff" in only:
        _attempt(results, "geotiff", lambda: geotiff.run(inputs.model, inputs.work, quick=quick))
    if "dense_scoring" in only:
        _attempt(results, "dense_scoring", lambda: dense_scoring.run(inputs.work, quick=quick))
    if "connect" in only:
        _attempt(results, "connect", lambda: connect.run(inputs.model, inputs.work, quick=quick,
                                                         baseline=args.connect_baseline))
    results["meta"]["total_s"] = time.time() - started
    results["meta"]["load_average_end"] = os.getloadavg()
    if args.update:
        results = _updated(out_json, results, only)
    report.write(results, md, out_json)
    print(report.render(results))
    print(f"wrote {md} and {out_json} in {time.time() - started:.0f} s", file=sys.stderr)
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
