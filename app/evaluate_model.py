"""Recompute a model bundle's held-out results from the CIFAR-10 test set.

    python -m app.evaluate_model --model models/default [--write]

Without --write, compares the figures with the bundle's recorded evaluation.json and exits
1 when they differ; with --write, records them (evaluation.json and the model card).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from app import cli
from core.bundle import load_bundle
from core.errors import TilescanError
from tilesets import data_root
from training.held_out import evaluate_bundle
from training.model_card import write_model_card

RECORD = "evaluation.json"


def _evaluate(args: argparse.Namespace) -> int:
    cifar = args.data or os.path.join(data_root(), "cifar10")
    if not os.path.isdir(cifar):
        raise TilescanError(f"CIFAR-10 not found at {cifar} (set TILESCAN_DATA or --data)")
    bundle = load_bundle(args.model)
    results = evaluate_bundle(bundle, cifar)
    for view in ("test_images", "test_canvas_tiles"):
        r = results[view]
        per = ", ".join(f"{c} {v:.4f}" for c, v in r["per_class_accuracy"].items())
        print(f"{view}: balanced accuracy {r['balanced_accuracy']:.4f} ({per}) on {r['count']:,}")
    record_path = os.path.join(args.model, RECORD)
    if args.write:
        with open(record_path, "w") as fh:
            json.dump(results, fh, indent=2)
            fh.write("\n")
        write_model_card(args.model, results)
        print(f"recorded in {record_path} and {os.path.join(args.model, 'MODEL.md')}")
        return 0
    if not os.path.exists(record_path):
        raise TilescanError(f"no recorded results in {record_path}; run with --write")
    with open(record_path) as fh:
        recorded = json.load(fh)
    same = all(recorded[v] == results[v] for v in ("test_images", "test_canvas_tiles"))
    print("reproduced: the recorded results match" if same else "MISMATCH: the recorded results differ")
    return 0 if same else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/default", help="bundle folder (default %(default)s)")
    p.add_argument("--data", default=None, help="CIFAR-10 folder (default $TILESCAN_DATA/cifar10)")
    p.add_argument("--write", action="store_true", help="record the results in the bundle")
    args = p.parse_args(argv)
    cli.configure_logging()
    return cli.run_command(lambda: _evaluate(args))


if __name__ == "__main__":
    sys.exit(main())
