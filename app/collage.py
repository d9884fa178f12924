"""Build a collage of labelled 32x32 tiles over a target picture, with its COCO ground truth.

    python -m app.collage --out out/collage [--target mona_lisa.jpg] [--library cifar10-test|FOLDER]

Writes collage.png, ground_truth.json and collage.json (parameters and counts) into --out.
The target defaults to mona_lisa.jpg and the library to the CIFAR-10 test set, both from
$TILESCAN_DATA. Bad input exits with code 2 and a one-line error.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scoring import storage  # noqa: E402
from scoring.errors import TilescanError  # noqa: E402
from tiling.collage import CollageParams, build_collage, ground_truth  # noqa: E402
from training.data import data_root, load_cifar, load_image_folder  # noqa: E402

logger = logging.getLogger("tilescan")

CIFAR_LIBRARY = "cifar10-test"
#: Command-line option and the CollageParams field it sets.
OPTIONS = {"width": int, "height": int, "step": int, "jitter": int, "max_uses": int, "seed": int,
           "min_visible": float}


def build_parser() -> argparse.ArgumentParser:
    defaults = {f.name: f.default for f in dataclasses.fields(CollageParams)}
    p = argparse.ArgumentParser(prog="python -m app.collage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", help="picture to imitate: local path or URL (default $TILESCAN_DATA/mona_lisa.jpg)")
    p.add_argument("--library", default=CIFAR_LIBRARY,
                   help=f"tiles: {CIFAR_LIBRARY} (CIFAR-10 test set) or a folder of CLASS/*.png (default %(default)s)")
    p.add_argument("--out", required=True, help="output folder: local path or URL")
    helps = {"height": "collage height in pixels (default: keep the target's aspect ratio)",
             "jitter": "largest random shift of a tile along each axis; step + 2 * jitter <= 32"}
    for name, kind in OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind,
                       help=helps.get(name, f"default {defaults[name]}"))
    storage.add_arguments(p)
    return p


def params_from_args(args: argparse.Namespace) -> CollageParams:
    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    return CollageParams(**given)


def load_target(url: str, storage_options: dict | None = None):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    fs, path = storage.filesystem(url, storage_options)
    try:
        data = storage.read_bytes(fs, path)
    except FileNotFoundError:
        raise TilescanError(f"--target not found: {url}") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise TilescanError(f"--target {url} is not a readable picture ({exc})") from None


def load_library(name: str, storage_options: dict | None = None):
    if name == CIFAR_LIBRARY:
        return load_cifar(storage.join(data_root(), "cifar10"), "test", storage_options=storage_options)
    return load_image_folder(name, storage_options=storage_options)


def make_collage(args: argparse.Namespace) -> dict:
    """Build and write the collage; returns the contents of collage.json."""
    from PIL import Image

    params = params_from_args(args)
    target_url = args.target or os.path.join(data_root(), "mona_lisa.jpg")
    options = storage.options_from_args(args)
    fs, root = storage.filesystem(args.out, options)
    timings = {}
    started = time.time()
    target = load_target(target_url, options)
    library = load_library(args.library, options)
    timings["load_s"] = time.time() - started

    started = time.time()
    collage = build_collage(target, library.images, library.model_class, params, ids=library.record_id)
    truth = ground_truth(collage)
    timings["build_s"] = time.time() - started

    started = time.time()
    png = io.BytesIO()
    Image.fromarray(collage.image).save(png, format="PNG", compress_level=1)
    fs.makedirs(root, exist_ok=True)
    storage.write_bytes(fs, storage.join(root, "collage.png"), png.getvalue())
    storage.write_bytes(fs, storage.join(root, "ground_truth.json"), json.dumps(truth).encode())
    timings["write_s"] = time.time() - started

    labels = collage.placements.label
    annotations = truth["annotations"]
    summary = {
        "target": target_url,
        "target_size": [int(target.shape[1]), int(target.shape[0])],
        "library": args.library,
        "library_tiles": len(library),
        "parameters": dataclasses.asdict(collage.params),
        "counts": {
            "placements": len(collage.placements),
            "placements_per_class": {c: int((labels == c).sum()) for c in sorted(set(labels.tolist()))},
            "annotations": len(annotations),
            "ignored_annotations": sum(a["iscrowd"] for a in annotations),
            "distinct_tiles": int(len(set(collage.placements.tile.tolist()))),
        },
        "files": ["collage.png", "ground_truth.json", "collage.json"],
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    storage.write_bytes(fs, storage.join(root, "collage.json"), (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    try:
        summary = make_collage(args)
    except (TilescanError, ValueError, TypeError, OSError) as exc:
        print(f"error: {storage.redact(exc)}", file=sys.stderr)
        return 2
    counts = summary["counts"]
    p = summary["parameters"]
    logger.info("wrote a %dx%d collage of %d tiles (%s) to %s in %.1f s", p["width"], p["height"],
                counts["placements"], ", ".join(f"{c} {n}" for c, n in counts["placements_per_class"].items()),
                args.out, sum(summary["timings_s"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
