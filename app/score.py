"""Score a trained model over every window of one picture, or of a whole collection, with Spark.

    spark-submit app/score.py --image mona_lisa.png --out out/mona_lisa
    spark-submit app/score.py --image 'az://scans/2026/*.png' --out az://results/2026
    spark-submit app/score.py --images scans.csv --out out/scans [--resume]

One picture: windows.parquet, detections.json (COCO), overlay.png, manifest.json and, last,
_SUCCESS under --out. A collection: the same per picture under --out/<picture>/ but its
windows, which are kept once, in the run's Parquet dataset of all windows
(windows/image=<picture>/part-00000.parquet, where each picture's manifest points), and for
the run one COCO detections.json of every picture, the run's manifest.json, and _SUCCESS last.
Exit codes: 0 done; 2 bad input (one error line, nothing written); 3 some pictures of a
collection failed (each listed with its error in the run's manifest; the others are done).
"""
from __future__ import annotations

import argparse
import sys
import time

from app import cli
from core.redaction import redact
from engines import ENGINES
from scoring.connect import is_connect
from scoring.merge import MERGE_METHODS
from scoring.params import (
    FALLBACK_SETTINGS,
    MAX_BATCH_SIZE,
    TASKS_PER_CORE,
    ScoreParams,
    defaults,
    format_class_values,
    parse_colors,
)
from tiling.grid import EDGE_POLICIES


def build_parser() -> argparse.ArgumentParser:
    d = defaults()
    p = argparse.ArgumentParser(prog="score.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="a picture, a glob ('az://scans/*.png') or a folder of pictures: local "
                                        "path or URL (az://, abfs://, file://)")
    source.add_argument("--images", metavar="LIST", help="a list of pictures: a text file of paths or URLs, one "
                                                         "per line, or a CSV or Parquet file with a path column")
    p.add_argument("--out", required=True, help="output folder: local path or URL")
    p.add_argument("--model", default=d["model"], help="model bundle folder (default: the bundled models/default)")
    p.add_argument("--engine", choices=list(ENGINES),
                   help=f"inference engine (default: the model's recommendation, else {FALLBACK_SETTINGS['engine']})")
    p.add_argument("--window", type=int, default=d["window"],
                   help="window side in pixels; must match the model (default: the model's input size)")
    p.add_argument("--stride", type=int, default=d["stride"],
                   help="step between windows in pixels (default: the model's recommended stride, else half the "
                        "window)")
    p.add_argument("--edge", default=d["edge"], choices=EDGE_POLICIES,
                   help="align: add windows flush with the right/bottom edges so no pixel is missed; "
                        "drop: plain grid (default %(default)s)")
    p.add_argument("--strips", type=int, default=d["strips"],
                   help=f"Spark tasks (per wave of a large collection); 0 = {TASKS_PER_CORE} x the cluster's "
                        "parallelism (default)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help=f"windows per inference batch, at most {MAX_BATCH_SIZE} (default %(default)s)")
    p.add_argument("--keep", type=float, default=d["keep"],
                   help="keep windows whose best non-background score is >= this in windows.parquet (a "
                        "collection's: its windows/ dataset); "
                        "0 keeps all (default %(default)s)")
    p.add_argument("--threshold", help="hit threshold: a number, or per class, e.g. car=0.95,boat=0.9 (default: the "
                                       "model's recommendation, else "
                                       f"{format_class_values(FALLBACK_SETTINGS['threshold'])})")
    p.add_argument("--merge", choices=MERGE_METHODS,
                   help="how hits become boxes (default: the model's recommendation, else "
                        f"{FALLBACK_SETTINGS['merge']})")
    p.add_argument("--merge-iou", type=float,
                   help="IoU at which hits join one box (default: the model's recommendation, else "
                        f"{FALLBACK_SETTINGS['merge_iou']})")
    p.add_argument("--colors", default="",
                   help="overlay colours, e.g. car=red,boat=#00ff00 (default car red, boat green)")
    p.add_argument("--max-pixels", type=int, default=d["max_pixels"],
                   help="refuse larger pictures (default %(default)s)")
    p.add_argument("--heatmap", action="store_true",
                   help="also write heatmap.tif per picture: a band per class, a pixel per window position at "
                        "--stride, tiled, with overviews, georeferenced like a GeoTIFF input")
    p.add_argument("--no-viewer", dest="viewer", action="store_false",
                   help="leave out each picture's zoomable viewer (viewer.html and its tile pyramid)")
    p.add_argument("--no-dense", dest="dense", action="store_false",
                   help="score every window on its own, even with a model that scores whole bands exactly "
                        "(model.json's dense stride); the scores are the same, only slower")
    p.add_argument("--master", help="Spark master when not run through spark-submit (default local[*])")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--resume", action="store_true",
                   help="keep the pictures of a collection already finished in --out, score the rest")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    cli.add_storage_arguments(p)
    return p


def params_from_args(args: argparse.Namespace) -> ScoreParams:
    return ScoreParams(
        image=args.image, images=args.images, out=args.out, model=args.model, engine=args.engine, window=args.window,
        stride=args.stride, edge=args.edge, strips=args.strips, batch_size=args.batch_size, keep=args.keep,
        threshold=args.threshold,
        merge=args.merge, merge_iou=args.merge_iou,
        colors=parse_colors(args.colors), max_pixels=args.max_pixels, heatmap=args.heatmap, viewer=args.viewer,
        dense=args.dense, overwrite=args.overwrite,
        resume=args.resume,
        quiet=args.quiet,
    )


def _score(args: argparse.Namespace) -> int:
    from scoring.job import check_master, spark_session
    from scoring.pipeline import EXIT_SOME_FAILED, prepare, run

    started = time.time()
    params = params_from_args(args)
    check_master(args.master)
    prepared = prepare(params, storage_options=cli.storage_options_from_args(args))
    spark = spark_session(args.master)
    try:
        manifest = run(prepared, spark)
    except KeyboardInterrupt:
        # The process exits now, and the JVM would log errors about the tasks cancelled under
        # it after the one "interrupted" line.
        if not is_connect(spark):
            spark.sparkContext.setLogLevel("OFF")
        raise
    counts, timings = manifest["counts"], manifest["timings_s"]
    per_class = ", ".join(f"{n} {c}" for c, n in counts["boxes_per_class"].items())
    rate = counts["windows_scored"] / max(timings["spark_job_s"], 1e-9)
    if prepared.single:
        print(f"tilescan: {manifest['input']['width']}x{manifest['input']['height']} px, "
              f"{counts['windows_scored']:,} windows in {len(counts['strip_windows'])} bands, "
              f"{timings['spark_job_s']:.1f}s ({rate:,.0f} windows/s), {counts['hits']} hits -> "
              f"{counts['boxes']} boxes ({per_class}), total {time.time() - started:.1f}s -> {params.out}")
        return 0
    print(f"tilescan: {counts['scored']:,} of {counts['pictures']:,} pictures scored"
          + (f", {counts['skipped']:,} kept from before (--resume)" if counts["skipped"] else "")
          + (f", {counts['failed']:,} FAILED (see manifest.json)" if counts["failed"] else "")
          + f"; {counts['windows_scored']:,} windows, {timings['spark_job_s']:.1f}s ({rate:,.0f} windows/s), "
          f"{counts['boxes']} boxes ({per_class}), total {time.time() - started:.1f}s -> {params.out}")
    for picture in manifest["pictures"]:
        if picture["status"] == "failed":
            print(f"failed: {redact(picture['url'])}: {picture['error']}", file=sys.stderr)  # a SAS in a URL
    return EXIT_SOME_FAILED if counts["failed"] else 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging(quiet=args.quiet)
    return cli.run_command(lambda: _score(args))


if __name__ == "__main__":
    sys.exit(main())
