"""Make a model bundle from your own model, or check one, before scoring with it.

    tilescan-bundle create --onnx model.onnx --classes airplane,ship,other --background other \\
        --mean imagenet --std imagenet --output logits --out models/mine
    tilescan-bundle create --mxnet-symbol net-symbol.json --mxnet-params net-0000.params --size 32 \\
        --classes car,boat,background --mean 0.49,0.48,0.45 --std 0.25 --out models/mxnet-net
    tilescan-bundle check models/mine

create reads the window size, layout and input type from the graph where it fixes them
(give --size, --layout, --dtype where it does not), folds a PyTorch export's .onnx.data
weights into the one file, writes model.json with every file's sha256, the golden batch
every engine is checked against as it loads, and a MODEL.md skeleton, after a real batch
and a batch of one pass the self-check. check runs every engine the bundle has files for
through the golden batch and the self-check. Then: spark-submit app/score.py --model DIR ...
Exit codes: 0 done; 2 bad options or a model that does not keep its contract (one line).
"""
from __future__ import annotations

import argparse
import sys

from app import cli
from core.contract import CHANNEL_ORDERS, DTYPES, LAYOUTS, NORMALISATIONS, OUTPUTS, PIXEL_SCALES
from scoring.params import defaults


def _create(args: argparse.Namespace) -> int:
    from bundling import create_bundle

    created = create_bundle(args.out, classes=args.classes, background=args.background, onnx=args.onnx,
                            mxnet_symbol=args.mxnet_symbol, mxnet_params=args.mxnet_params, output=args.output,
                            mean=args.mean, std=args.std, pixel_scale=args.pixel_scale, layout=args.layout,
                            size=args.size, dtype=args.dtype, channel_order=args.channel_order, name=args.name,
                            boxes=args.boxes, dense_stride=args.dense_stride, batch_size=args.batch_size,
                            overwrite=args.overwrite)
    spec = created.spec
    print(f"wrote {created.out}: {spec.name}, {spec.size}x{spec.size} {spec.layout} {spec.dtype}, output "
          f"{spec.output} over {', '.join(spec.classes)}; bundle {created.sha256[:12]}")
    for line in created.lines:
        print(line)
    return 0


def _check(args: argparse.Namespace) -> int:
    from bundling import check_bundle

    for line in check_bundle(args.bundle, batch_size=args.batch_size,
                             storage_options=cli.storage_options_from_args(args)):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tilescan-bundle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    commands = p.add_subparsers(dest="command", required=True)
    batch = defaults()["batch_size"]
    create = commands.add_parser("create", help="make a bundle from an ONNX file or an MXNet symbol and params")
    model = create.add_mutually_exclusive_group(required=True)
    model.add_argument("--onnx", help="the ONNX file (a .onnx.data file beside it is folded in)")
    model.add_argument("--mxnet-symbol", help="an MXNet symbol JSON (with --mxnet-params and --size)")
    create.add_argument("--mxnet-params", help="the MXNet params file to --mxnet-symbol")
    create.add_argument("--classes", required=True, help="class names in the order of the model's outputs")
    create.add_argument("--background", required=True, help="the class that is not an object (never boxed)")
    create.add_argument("--output", default="probabilities", choices=OUTPUTS,
                        help="what the model outputs: probabilities (softmax in the graph), logits (softmax "
                             "applied here) or sigmoid (independent classes) (default %(default)s)")
    names = ", ".join(NORMALISATIONS)
    create.add_argument("--mean", default="none", help=f"per-channel mean: 3 numbers, 1 number, or {names} "
                                                       "(on the --pixel-scale; default %(default)s)")
    create.add_argument("--std", default="none", help=f"per-channel std: 3 numbers, 1 number, or {names} "
                                                      "(default %(default)s)")
    create.add_argument("--pixel-scale", default="0-1", choices=PIXEL_SCALES,
                        help="pixels as 0-1 (torchvision) or 0-255 (mmcv, Caffe) before mean and std "
                             "(default %(default)s)")
    create.add_argument("--layout", choices=LAYOUTS, help="NCHW or NHWC (default: from the graph)")
    create.add_argument("--size", type=int, help="window side in pixels (default: from the graph)")
    create.add_argument("--dtype", choices=DTYPES, help="input type (default: from the graph)")
    create.add_argument("--channel-order", default="RGB", choices=CHANNEL_ORDERS, help="(default %(default)s)")
    create.add_argument("--boxes", action="store_true",
                        help="the model's second output is box deltas (window-offset-log-size)")
    create.add_argument("--dense-stride", type=int,
                        help="a padding-free network exported with dynamic height and width: it scores a whole band "
                             "at once, every window at this stride (checked exact before the bundle is kept)")
    create.add_argument("--name", help="the model's name (default: the file's)")
    create.add_argument("--out", required=True, help="the bundle folder to write")
    create.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    create.add_argument("--batch-size", type=int, default=batch, help="the self-check's batch (default %(default)s)")
    check = commands.add_parser("check", help="load a bundle and check every engine it has files for")
    check.add_argument("bundle", help="the bundle folder: local path or URL")
    check.add_argument("--batch-size", type=int, default=batch, help="the self-check's batch (default %(default)s)")
    cli.add_storage_arguments(check)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging()
    return cli.run_command(lambda: _create(args) if args.command == "create" else _check(args), ValueError)


if __name__ == "__main__":
    sys.exit(main())
