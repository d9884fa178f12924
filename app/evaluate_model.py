"""Recompute a model bundle's held-out results from the CIFAR-10 test set.

    python -m app.evaluate_model --model models/default [--write]

Without --write, compares the figures with the bundle's recorded evaluation.json and exits
1 when they differ; with --write, records them (evaluation.json and the model card).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scoring.bundle import load_bundle  # noqa: E402
from scoring.errors import TilescanError  # noqa: E402
from training.data import data_root  # noqa: E402
from training.evaluate import evaluate_bundle  # noqa: E402
from training.model_card import write_model_card  # noqa: E402

RECORD = "evaluation.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/default", help="bundle folder (default %(default)s)")
    p.add_argument("--data", default=None, help="CIFAR-10 folder (default $TILESCAN_DATA/cifar10)")
    p.add_argument("--write", action="store_true", help="record the results in the bundle")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cifar = args.data or os.path.join(data_root(), "cifar10")
    if not os.path.isdir(cifar):
        print(f"error: CIFAR-10 not found at {cifar} (set TILESCAN_DATA or --data)", file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(args.model)
    except TilescanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
        print(f"error: no recorded results in {record_path}; run with --write", file=sys.stderr)
        return 2
    recorded = json.load(open(record_path))
    same = all(recorded[v] == results[v] for v in ("test_images", "test_canvas_tiles"))
    print("reproduced: the recorded results match" if same else "MISMATCH: the recorded results differ")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
