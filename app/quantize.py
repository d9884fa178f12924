"""Add a statically quantised int8 ONNX model to a bundle, for `score.py --engine onnxruntime-int8`.

    python -m app.quantize --model models/default [--count 500] [--format qdq]

Calibrates on CIFAR-10 training images and canvas tiles (never the test set), writes
model.int8.onnx into the bundle and lists it, with its sha256, in model.json.
"""
from __future__ import annotations

import argparse
import os
import sys

from app import cli
from core.errors import TilescanError
from tilesets import data_root, load_cifar
from training.calibration import calibration_images
from training.quantize import QUANT_FORMATS, add_int8_model


def _quantize(args: argparse.Namespace) -> int:
    cifar = os.path.join(data_root(), "cifar10")
    if not os.path.isdir(cifar):
        raise TilescanError(f"CIFAR-10 not found at {cifar} (set TILESCAN_DATA)")
    images = calibration_images(load_cifar(cifar, "train"), args.count)
    bundle_id = add_int8_model(args.model, images, quant_format=args.format)
    print(f"wrote {os.path.join(args.model, 'model.int8.onnx')}; bundle {bundle_id[:12]} lists it in model.json")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.quantize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    p.add_argument("--model", default="models/default", help="bundle folder (default %(default)s)")
    p.add_argument("--count", type=int, default=500, help="calibration images (default %(default)s)")
    p.add_argument("--format", default=QUANT_FORMATS[0], choices=QUANT_FORMATS, help="ONNX quantisation format")
    args = p.parse_args(argv)
    cli.configure_logging()
    return cli.run_command(lambda: _quantize(args), ValueError)


if __name__ == "__main__":
    sys.exit(main())
