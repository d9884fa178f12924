"""Build a collage of labelled 32x32 tiles over a target picture, with its COCO ground truth.

    python -m app.collage --out out/collage [--target mona_lisa.jpg] [--library cifar10-test|FOLDER]

Writes collage.png, ground_truth.json and collage.json (parameters and counts) into --out.
The target defaults to mona_lisa.jpg and the library to the CIFAR-10 test set, both from
$TILESCAN_DATA. Bad input exits with code 2 and a one-line error.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from app import cli
from collage import CollageParams
from collage.make import CIFAR_LIBRARY, make_collage

logger = logging.getLogger(__name__)

#: Command-line option and the CollageParams field it sets.
OPTIONS = {"width": int, "height": int, "step": int, "jitter": int, "max_uses": int, "seed": int,
           "min_visible": float, "match": str}


def build_parser() -> argparse.ArgumentParser:
    defaults = {f.name: f.default for f in dataclasses.fields(CollageParams)}
    p = argparse.ArgumentParser(prog="python -m app.collage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_version_argument(p)
    p.add_argument("--target", help="picture to imitate: local path or URL (default $TILESCAN_DATA/mona_lisa.jpg)")
    p.add_argument("--library", default=CIFAR_LIBRARY,
                   help=f"tiles: {CIFAR_LIBRARY} (CIFAR-10 test set) or a folder of CLASS/*.png (default %(default)s)")
    p.add_argument("--out", required=True, help="output folder: local path or URL")
    helps = {"height": "collage height in pixels (default: keep the target's aspect ratio)",
             "jitter": "largest random shift of a tile along each axis; step + 2 * jitter <= 32",
             "match": "colour: tiles matched to the target's colours; random: uniform picks (default colour)"}
    for name, kind in OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, help=helps.get(name, f"default {defaults[name]}"))
    cli.add_storage_arguments(p)
    return p


def params_from_args(args: argparse.Namespace) -> CollageParams:
    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    return CollageParams(**given)


def _collage(args: argparse.Namespace) -> int:
    summary = make_collage(args.out, params_from_args(args), target=args.target, library=args.library,
                           storage_options=cli.storage_options_from_args(args))
    counts, p = summary["counts"], summary["parameters"]
    logger.info("wrote a %dx%d collage of %d tiles (%s) to %s in %.1f s", p["width"], p["height"],
                counts["placements"], ", ".join(f"{c} {n}" for c, n in counts["placements_per_class"].items()),
                args.out, sum(summary["timings_s"].values()))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.configure_logging()
    return cli.run_command(lambda: _collage(args), ValueError, TypeError, OSError)


if __name__ == "__main__":
    sys.exit(main())
