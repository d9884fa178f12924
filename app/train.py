"""Train the car/boat/background ResNet and export it as a model bundle.

    python -m app.train --out models/default [--epochs 10] [--depth 20] [--resume]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scoring import storage  # noqa: E402
from training.data import data_root  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of TrainConfig fields; command-line options override it")
    p.add_argument("--data", help="CIFAR-10 binary folder (default: $TILESCAN_DATA/cifar10)")
    p.add_argument("--out", help="output bundle folder")
    for name in ("depth", "width", "epochs", "tiles_per_epoch", "batch_size", "seed", "canvases_per_class",
                 "limit_per_class"):
        p.add_argument("--" + name.replace("_", "-"), type=int, help=f"default {defaults[name]}")
    for name in ("lr", "wd", "val_fraction", "plain_fraction"):
        p.add_argument("--" + name.replace("_", "-"), type=float, help=f"default {defaults[name]}")
    p.add_argument("--gpus", help="comma-separated GPU ids, e.g. 0,1 (default: CPU)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    storage.add_arguments(p)
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> TrainConfig:
    values = {}
    if args.config:
        with open(args.config) as fh:
            values.update(json.load(fh))
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None and f.name != "gpus":
            values[f.name] = given
    if args.gpus:
        values["gpus"] = tuple(int(g) for g in args.gpus.split(","))
    values.setdefault("data", os.path.join(data_root(), "cifar10"))
    if "out" not in values:
        raise SystemExit("error: --out is required")
    for key in ("class_mix", "gpus"):
        if key in values:
            values[key] = tuple(values[key])
    return TrainConfig(**values)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        config = build_config(args)
        config.validate()
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        options = storage.options_from_args(args)
        if storage.is_local(config.out):
            train(config, resume=args.resume, progress=not args.quiet, storage_options=options)
            return 0
        # MXNet writes checkpoints and exports to local files: train locally, then upload.
        import tempfile

        from scoring.lake import transfer

        with tempfile.TemporaryDirectory(prefix="tilescan-train-") as local:
            train(dataclasses.replace(config, out=local), progress=not args.quiet, storage_options=options)
            result = transfer(local, config.out, overwrite=True, storage_options=options, progress=not args.quiet)
            if not result.ok:
                raise OSError(f"upload to {config.out} failed for {len(result.failed)} files")
    except (FileNotFoundError, storage.StorageError, OSError) as exc:
        print(f"error: {storage.redact(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
