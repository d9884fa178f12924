"""Train the car/boat/background classifier (the CIFAR ResNet, or the padding-free network) and export it as a bundle.

    python -m app.train --out models/classifier [--epochs 12] [--depth 20] [--resume]
    python -m app.train --out models/dense-classifier --architecture valid --widths 32,80,192 --epochs 20
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile

from app import cli
from core.credentials import is_local
from core.jsonfile import read_json_object
from core.transfer import transfer
from tilesets import data_root
from training import require_mxnet
from training.networks import ARCHITECTURES
from training.train import TrainConfig, train


def parse_args(argv=None) -> argparse.Namespace:
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    p = argparse.ArgumentParser(prog="python -m app.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    p.add_argument("--config", help="JSON file of TrainConfig fields; command-line options override it")
    p.add_argument("--data", help="CIFAR-10 binary folder (default: $TILESCAN_DATA/cifar10)")
    p.add_argument("--out", help="output bundle folder")
    p.add_argument("--architecture", choices=ARCHITECTURES,
                   help="resnet (default) or valid (padding-free: the layers of the dense detector)")
    for name in ("depth", "width", "epochs", "tiles_per_epoch", "batch_size", "seed", "canvases_per_class",
                 "limit_per_class"):
        p.add_argument("--" + name.replace("_", "-"), type=int, help=f"default {defaults[name]}")
    for name in ("lr", "wd", "val_fraction", "plain_fraction"):
        p.add_argument("--" + name.replace("_", "-"), type=float, help=f"default {defaults[name]}")
    cli.add_widths_argument(p, defaults["widths"])
    p.add_argument("--gpus", help="comma-separated GPU ids, e.g. 0,1 (default: CPU)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    cli.add_storage_arguments(p)
    return p.parse_args(argv)


def _config_file(path: str) -> dict:
    """The ``--config`` file's fields: a JSON object naming only :class:`TrainConfig` fields."""
    values = read_json_object(path, "--config")
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"--config {path}: unknown settings {unknown}")
    return values


def build_config(args: argparse.Namespace) -> TrainConfig:
    values = _config_file(args.config) if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None and f.name != "gpus":
            values[f.name] = given
    if args.gpus:
        try:
            values["gpus"] = tuple(int(g) for g in args.gpus.split(","))
        except ValueError:
            raise ValueError(f"--gpus must be comma-separated GPU ids such as 0,1, got {args.gpus!r}") from None
    values.setdefault("data", os.path.join(data_root(), "cifar10"))
    if "out" not in values:
        raise ValueError("--out is required")
    for key in ("class_mix", "gpus", "widths"):
        if key in values:
            values[key] = tuple(values[key])
    config = TrainConfig(**values)
    config.validate()
    return config


def _train(args: argparse.Namespace) -> int:
    config = build_config(args)
    options = cli.storage_options_from_args(args)
    require_mxnet()  # after the settings' own checks: a user fixes both at once
    if is_local(config.out):
        train(config, resume=args.resume, progress=not args.quiet, storage_options=options)
        return 0
    # MXNet writes checkpoints and exports to local files: train locally, then upload.
    with tempfile.TemporaryDirectory(prefix="tilescan-train-") as local:
        train(dataclasses.replace(config, out=local), progress=not args.quiet, storage_options=options)
        result = transfer(local, config.out, overwrite=True, storage_options=options, progress=not args.quiet)
        if not result.ok:
            raise OSError(f"upload to {config.out} failed for {len(result.failed)} files")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.configure_logging()
    return cli.run_command(lambda: _train(args), ValueError, TypeError, FileNotFoundError, OSError)


if __name__ == "__main__":
    sys.exit(main())
