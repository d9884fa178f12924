"""Score a trained classifier over every window of a large picture with Spark.

    spark-submit app/score.py --image mona_lisa.png --out out/mona_lisa

Writes windows.parquet, detections.json (COCO), overlay.png, manifest.json and, last,
_SUCCESS under --out. Bad input exits with code 2 and a one-line error.
"""
from __future__ import annotations

import argparse
import sys
import time

from app import cli
from engines import ENGINES
from scoring.merge import MERGE_METHODS
from scoring.params import ScoreParams, defaults, format_class_values, parse_class_values, parse_colors
from tiling.grid import EDGE_POLICIES


def build_parser() -> argparse.ArgumentParser:
    d = defaults()
    p = argparse.ArgumentParser(prog="score.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, help="input picture: local path or URL (az://, abfs://, file://)")
    p.add_argument("--out", required=True, help="output folder: local path or URL")
    p.add_argument("--model", default=d["model"], help="model bundle folder (default: the bundled models/default)")
    p.add_argument("--engine", default=d["engine"], choices=list(ENGINES),
                   help="inference engine (default %(default)s)")
    p.add_argument("--window", type=int, default=d["window"],
                   help="window side in pixels; must match the model (default %(default)s)")
    p.add_argument("--stride", type=int, default=d["stride"],
                   help="step between windows in pixels (default %(default)s)")
    p.add_argument("--edge", default=d["edge"], choices=EDGE_POLICIES,
                   help="align: add windows flush with the right/bottom edges so no pixel is missed; "
                        "drop: plain grid (default %(default)s)")
    p.add_argument("--strips", type=int, default=d["strips"],
                   help="strips (Spark tasks); 0 = 4 x the cluster's parallelism (default)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help="windows per inference batch (default %(default)s)")
    p.add_argument("--keep", type=float, default=d["keep"],
                   help="keep windows whose best non-background score is >= this in windows.parquet; "
                        "0 keeps all (default %(default)s)")
    p.add_argument("--threshold", default=format_class_values(d["threshold"]),
                   help="hit threshold: a number, or per class, e.g. car=0.95,boat=0.9 (default %(default)s)")
    p.add_argument("--merge", default=d["merge"], choices=MERGE_METHODS,
                   help="how hits become boxes (default %(default)s)")
    p.add_argument("--merge-iou", type=float, default=d["merge_iou"],
                   help="IoU at which hits join one box (default %(default)s)")
    p.add_argument("--colors", default="",
                   help="overlay colours, e.g. car=red,boat=#00ff00 (default car red, boat green)")
    p.add_argument("--max-pixels", type=int, default=d["max_pixels"],
                   help="refuse larger pictures (default %(default)s)")
    p.add_argument("--master", help="Spark master when not run through spark-submit (default local[*])")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    cli.add_storage_arguments(p)
    return p


def params_from_args(args: argparse.Namespace) -> ScoreParams:
    return ScoreParams(
        image=args.image, out=args.out, model=args.model, engine=args.engine, window=args.window,
        stride=args.stride, edge=args.edge, strips=args.strips, batch_size=args.batch_size, keep=args.keep,
        threshold=parse_class_values(args.threshold, "threshold"), merge=args.merge, merge_iou=args.merge_iou,
        colors=parse_colors(args.colors), max_pixels=args.max_pixels, overwrite=args.overwrite, quiet=args.quiet,
    )


def _score(args: argparse.Namespace) -> int:
    from scoring.job import spark_session
    from scoring.pipeline import prepare, run

    started = time.time()
    params = params_from_args(args)
    prepared = prepare(params, storage_options=cli.storage_options_from_args(args))
    manifest = run(prepared, spark_session(args.master))
    counts, timings = manifest["counts"], manifest["timings_s"]
    per_class = ", ".join(f"{n} {c}" for c, n in counts["boxes_per_class"].items())
    rate = counts["windows_scored"] / max(timings["spark_job_s"], 1e-9)
    print(f"tilescan: {manifest['input']['width']}x{manifest['input']['height']} px, "
          f"{counts['windows_scored']:,} windows in {len(counts['strip_windows'])} strips, "
          f"{timings['spark_job_s']:.1f}s ({rate:,.0f} windows/s), {counts['hits']} hits -> "
          f"{counts['boxes']} boxes ({per_class}), total {time.time() - started:.1f}s -> {params.out}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging(quiet=args.quiet)
    return cli.run_command(lambda: _score(args))


if __name__ == "__main__":
    sys.exit(main())
