"""Score a run against a collage's ground truth with COCO metrics.

    python -m app.evaluate --run out/mona_lisa --truth out/collage/ground_truth.json

Reads the run's detections.json (and windows.parquet when it holds every window), writes
evaluation.json and pr_curve.png into the run folder and prints a short summary. Bad
input exits with code 2 and a one-line error.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scoring import storage  # noqa: E402
from scoring.errors import TilescanError  # noqa: E402
from scoring.evaluate import CURVE_FILE, EVALUATION_FILE, evaluate_run  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder written by app/score.py: local path or URL")
    p.add_argument("--truth", required=True, help="ground_truth.json written by app.collage: local path or URL")
    return p


def format_number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def summary_lines(result: dict) -> list[str]:
    lines = []
    for name, c in result["classes"].items():
        lines.append(f"{name:<10} AP50 {format_number(c['ap50'])}  AP50:95 {format_number(c['ap'])}  "
                     f"precision {format_number(c['precision'])}  recall {format_number(c['recall'])}  "
                     f"({c['detections']} boxes, {c['truths']} truths, {c['ignored_truths']} ignored)")
    lines.append(f"{'mean':<10} AP50 {format_number(result['mean']['ap50'])}  AP50:95 {format_number(result['mean']['ap'])}")
    windows = result["windows"]
    if windows and "skipped" in windows:
        lines.append(f"windows: no confusion matrix: {windows['skipped']}")
    elif windows:
        lines.append(f"windows: accuracy {format_number(windows['accuracy'])} over {windows['windows']} windows")
    return lines


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        result = evaluate_run(args.run, args.truth)
    except (TilescanError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in summary_lines(result):
        print(line)
    print(f"wrote {storage.join(args.run, EVALUATION_FILE)} and {storage.join(args.run, CURVE_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
