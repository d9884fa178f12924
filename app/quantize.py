"""Add a statically quantised int8 ONNX model to a bundle, for `score.py --engine onnxruntime-int8`.

    python -m app.quantize --model models/mine --calibration 'scans/*.tif' [--truth scans.coco.json] [--count 1200]
    python -m app.quantize --model models/default [--count 500] [--format qdq]

With --calibration (any bundle): calibrates on windows cut at the model's input size from
your own pictures (a picture, glob, folder or list file, local or on the lake), validates
the int8 copy against the float model on a third of them held back (top-1 agreement,
probability differences; with --truth, AP50 per class on the pictures it covers), records
the figures in model.json (int8.agreement) and recommends the int8 engine only if they
hold. Without it (the bundled 32x32 models): calibrates on CIFAR-10 training images and
canvas tiles (never the test set). Either way model.int8.onnx is written into the bundle
with its sha256, the golden batch is made again with an int8 tolerance, and the declared
contract is left as it was.
"""
from __future__ import annotations

import argparse
import os
import sys

from app import cli
from core.errors import TilescanError
from training.quantize import QUANT_FORMATS

#: Windows cut from --calibration pictures, and CIFAR-10 images otherwise.
DEFAULT_COUNTS = {"pictures": 1200, "cifar": 500}


def _quantize(args: argparse.Namespace) -> int:
    if args.calibration:
        from bundling import quantize_bundle

        report = quantize_bundle(args.model, args.calibration, count=args.count or DEFAULT_COUNTS["pictures"],
                                 truth=args.truth, storage_options=cli.storage_options_from_args(args),
                                 quant_format=args.format)
        print(f"wrote {os.path.join(args.model, 'model.int8.onnx')}; {report.line()}")
        return 0
    from tilesets import data_root, load_cifar
    from training.calibration import calibration_images
    from training.quantize import add_int8_model

    cifar = os.path.join(data_root(), "cifar10")
    if not os.path.isdir(cifar):
        raise TilescanError(f"CIFAR-10 not found at {cifar} (set TILESCAN_DATA), or give --calibration PICTURES")
    images = calibration_images(load_cifar(cifar, "train"), args.count or DEFAULT_COUNTS["cifar"])
    bundle_id = add_int8_model(args.model, images, quant_format=args.format)
    print(f"wrote {os.path.join(args.model, 'model.int8.onnx')}; bundle {bundle_id[:12]} lists it in model.json")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.quantize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    p.add_argument("--model", default="models/default", help="bundle folder (default %(default)s)")
    p.add_argument("--calibration", metavar="PICTURES",
                   help="your own pictures to calibrate on: a picture, glob, folder or list file")
    p.add_argument("--truth", metavar="COCO",
                   help="a COCO ground truth of some --calibration pictures (matched by file name): int8 must "
                        "also keep their AP50 per class within 0.01 of float32's")
    p.add_argument("--count", type=int, help=f"calibration windows (default {DEFAULT_COUNTS['pictures']} from "
                                             f"--calibration, else {DEFAULT_COUNTS['cifar']} CIFAR-10 images)")
    p.add_argument("--format", default=QUANT_FORMATS[0], choices=QUANT_FORMATS, help="ONNX quantisation format")
    cli.add_storage_arguments(p)
    args = p.parse_args(argv)
    cli.configure_logging()
    return cli.run_command(lambda: _quantize(args), ValueError)


if __name__ == "__main__":
    sys.exit(main())
