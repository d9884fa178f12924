"""A collage from a target picture and a tile library, written out with its ground truth."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import time

from collage.generator import CollageParams, build_collage
from collage.truth import ground_truth
from core import storage
from pixels import probe_image, read_image, read_reduced
from tilesets import FOREGROUND_CLASSES, data_root, load_cifar, load_image_folder

__all__ = ["CIFAR_LIBRARY", "COLLAGE_FILES", "TEST_COLLAGES", "default_target", "load_library", "make_collage"]


#: The library name of the CIFAR-10 test set.
CIFAR_LIBRARY = "cifar10-test"
COLLAGE_FILES = ("collage.png", "ground_truth.json", "collage.json")
#: The collages detections are measured on, both of the CIFAR-10 test set over the Mona Lisa:
#: the demo's (tiles matched by colour, step 24, jitter 4) and one built differently (random
#: picks, step 20, jitter 6).
TEST_COLLAGES = {
    "mona-lisa": CollageParams(width=4000, seed=0),
    "random-picks": CollageParams(width=4000, step=20, jitter=6, match="random", seed=1),
}


def default_target() -> str:
    """The Mona Lisa in the shared data folder."""
    return os.path.join(data_root(), "mona_lisa.jpg")


def load_library(name: str, storage_options: dict | None = None):
    """The tiles: :data:`CIFAR_LIBRARY` (the CIFAR-10 test set) or a folder of ``CLASS/*.png``."""
    if name == CIFAR_LIBRARY:
        return load_cifar(storage.join(data_root(), "cifar10"), "test", storage_options=storage_options)
    return load_image_folder(name, storage_options=storage_options)


def make_collage(out: str, params: CollageParams, *, target: str | None = None, library: str = CIFAR_LIBRARY,
                 storage_options: dict | None = None) -> dict:
    """Build a collage and write ``collage.png``, ``ground_truth.json`` and ``collage.json`` into ``out``.

    Parameters
    ----------
    out : str
        Output folder: local path or URL.
    params : CollageParams
    target : str, optional
        The picture to imitate (path or URL); default :func:`default_target`.
    library : str
        :data:`CIFAR_LIBRARY` or a folder of ``CLASS/*.png`` tiles.

    Returns
    -------
    dict
        The contents of ``collage.json``: parameters, counts and timings.
    """
    from PIL import Image

    target = default_target() if target is None else target
    fs, root = storage.filesystem(out, storage_options)
    timings = {}
    started = time.time()
    info = probe_image(target, storage_options=storage_options)
    params = params.resolve((info.height, info.width))
    tiles = load_library(library, storage_options)
    params.check_library(len(tiles))
    # On blob storage this creates the container; an unwritable --out fails before the work.
    storage.check_writable(fs, root, url=out)
    # A target far larger than the collage is box-reduced band by band as it is read (the
    # colours under each tile barely change; memory would grow with the target otherwise),
    # keeping at least two target pixels per collage pixel.
    factor = min(info.height // params.height, info.width // params.width) // 2
    if factor >= 2:
        picture = read_reduced(info, factor, storage_options=storage_options)
    else:
        picture, _ = read_image(target, storage_options=storage_options)
    timings["load_s"] = time.time() - started

    started = time.time()
    collage = build_collage(picture, tiles.images, tiles.model_class, params, ids=tiles.record_id)
    truth = ground_truth(collage, FOREGROUND_CLASSES)
    timings["build_s"] = time.time() - started

    started = time.time()
    png = io.BytesIO()
    Image.fromarray(collage.image).save(png, format="PNG", compress_level=1)
    storage.write_bytes(fs, storage.join(root, "collage.png"), png.getvalue())
    storage.write_bytes(fs, storage.join(root, "ground_truth.json"), json.dumps(truth).encode())
    timings["write_s"] = time.time() - started

    labels = collage.placements.label
    annotations = truth["annotations"]
    summary = {
        "target": target,
        "target_size": [info.width, info.height],
        "library": library,
        "library_tiles": len(tiles),
        "parameters": dataclasses.asdict(collage.params),
        "counts": {
            "placements": len(collage.placements),
            "placements_per_class": {c: int((labels == c).sum()) for c in sorted(set(labels.tolist()))},
            "annotations": len(annotations),
            "ignored_annotations": sum(a["iscrowd"] for a in annotations),
            "distinct_tiles": int(len(set(collage.placements.tile.tolist()))),
        },
        "files": list(COLLAGE_FILES),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
    storage.write_bytes(fs, storage.join(root, "collage.json"), (json.dumps(summary, indent=2) + "\n").encode())
    return summary
