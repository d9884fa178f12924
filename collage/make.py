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
from pixels import read_image
from tilesets import FOREGROUND_CLASSES, data_root, load_cifar, load_image_folder

__all__ = ["CIFAR_LIBRARY", "COLLAGE_FILES", "default_target", "load_library", "make_collage"]


#: The library name of the CIFAR-10 test set.
CIFAR_LIBRARY = "cifar10-test"
COLLAGE_FILES = ("collage.png", "ground_truth.json", "collage.json")


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

    target = target or default_target()
    fs, root = storage.filesystem(out, storage_options)
    timings = {}
    started = time.time()
    picture, _ = read_image(target, storage_options=storage_options)
    tiles = load_library(library, storage_options)
    timings["load_s"] = time.time() - started

    started = time.time()
    collage = build_collage(picture, tiles.images, tiles.model_class, params, ids=tiles.record_id)
    truth = ground_truth(collage, FOREGROUND_CLASSES)
    timings["build_s"] = time.time() - started

    started = time.time()
    png = io.BytesIO()
    Image.fromarray(collage.image).save(png, format="PNG", compress_level=1)
    with storage.errors("write", out):
        fs.makedirs(root, exist_ok=True)
    storage.write_bytes(fs, storage.join(root, "collage.png"), png.getvalue())
    storage.write_bytes(fs, storage.join(root, "ground_truth.json"), json.dumps(truth).encode())
    timings["write_s"] = time.time() - started

    labels = collage.placements.label
    annotations = truth["annotations"]
    summary = {
        "target": target,
        "target_size": [int(picture.shape[1]), int(picture.shape[0])],
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
