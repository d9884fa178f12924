"""Score a run against a collage's ground truth with COCO metrics.

    python -m app.evaluate --run out/mona_lisa --truth out/collage/ground_truth.json

Reads the run's detections.json (and its windows when they hold every window: its
windows.parquet, or a collection picture's part of the run's dataset), writes
evaluation.json and pr_curve.png beside the run, never into it: into RUN-evaluation/
(for a picture of a collection, COLLECTION-evaluation/PICTURE/), or into --out DIR, and
prints a short summary. Bad input, or an --out that is (inside) a run, exits with code 2
and a one-line error.
"""
from __future__ import annotations

import argparse
import sys

from app import cli
from core import storage
from evaluation.metrics import summary_lines
from evaluation.runs import CURVE_FILE, EVALUATION_FILE, EVALUATION_SUFFIX, evaluate_run, evaluation_folder


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    p.add_argument("--run", required=True, help="run folder written by app/score.py: local path or URL")
    p.add_argument("--truth", required=True, help="ground_truth.json written by app.collage: local path or URL")
    p.add_argument("--out", default=None,
                   help=f"folder for evaluation.json and pr_curve.png: local path or URL, never a run's folder "
                        f"(default: beside the run, RUN{EVALUATION_SUFFIX}; for a picture of a collection, "
                        f"COLLECTION{EVALUATION_SUFFIX}/PICTURE)")
    cli.add_storage_arguments(p)
    return p


def _evaluate(args: argparse.Namespace) -> int:
    options = cli.storage_options_from_args(args)
    out = evaluation_folder(args.run, args.out, storage_options=options)
    result = evaluate_run(args.run, args.truth, out=out, storage_options=options)
    for line in summary_lines(result):
        print(line)
    print(f"wrote {storage.join(out, EVALUATION_FILE)} and {storage.join(out, CURVE_FILE)}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging()
    return cli.run_command(lambda: _evaluate(args), ValueError, OSError)


if __name__ == "__main__":
    sys.exit(main())
