"""Labelled 32x32 images: the CIFAR-10 binary format and folder-per-class trees.

Images are ``(N, 32, 32, 3)`` uint8 RGB arrays. The model's classes come from
:data:`CIFAR_TO_MODEL`: automobile is ``car``, ship is ``boat``, the other eight
``background``.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from core import storage
from core.project import ROOT

__all__ = [
    "MODEL_CLASSES", "BACKGROUND", "FOREGROUND_CLASSES", "CIFAR_TO_MODEL", "TRAIN_FILES", "TEST_FILES",
    "LabelledImages",
    "load_cifar", "load_image_folder", "data_root",
]

#: The task's classes, in the models' output order; the last is the background.
MODEL_CLASSES = ("car", "boat", "background")
BACKGROUND = "background"
#: The classes that become boxes and COCO categories, in category-id order (``car`` is 1).
FOREGROUND_CLASSES = tuple(c for c in MODEL_CLASSES if c != BACKGROUND)
CIFAR_TO_MODEL = {"automobile": "car", "ship": "boat"}
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
RECORD_BYTES = 1 + 3 * 32 * 32


def data_root() -> str:
    """Where the shared data lives: ``TILESCAN_DATA``, else ``../shared/data`` beside the checkout."""
    env = os.environ.get("TILESCAN_DATA")
    if env:
        return env
    return os.path.join(os.path.dirname(ROOT), "shared", "data")


@dataclass(frozen=True)
class LabelledImages:
    """Images with their original and model labels and where each came from."""

    images: np.ndarray          # (N, 32, 32, 3) uint8
    original: np.ndarray        # (N,) str: the source data set's class name
    source: np.ndarray          # (N,) str: "file:record" for CIFAR, the path for folders
    record_id: np.ndarray       # (N,) str: stable id across runs

    def __len__(self) -> int:
        return len(self.images)

    @property
    def model_class(self) -> np.ndarray:
        """(N,) str: ``car``, ``boat`` or ``background``."""
        mapped = [CIFAR_TO_MODEL.get(c, c if c in MODEL_CLASSES else BACKGROUND) for c in self.original]
        return np.asarray(mapped)

    @property
    def model_label(self) -> np.ndarray:
        """(N,) int: index into :data:`MODEL_CLASSES`."""
        index = {c: i for i, c in enumerate(MODEL_CLASSES)}
        return np.asarray([index[c] for c in self.model_class], dtype=np.int64)

    def take(self, indices) -> LabelledImages:
        return LabelledImages(self.images[indices], self.original[indices], self.source[indices],
                              self.record_id[indices])


def _read_class_names(fs, root: str) -> list[str]:
    text = storage.read_bytes(fs, storage.join(root, "batches.meta.txt")).decode()
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != 10:
        raise ValueError(f"batches.meta.txt in {root} should list 10 classes, got {len(names)}")
    return names


def load_cifar(root: str, split: str = "train", *, storage_options: dict | None = None) -> LabelledImages:
    """Load CIFAR-10 in the binary record format (1 label byte, then R, G, B planes).

    Parameters
    ----------
    root : str
        Folder holding ``data_batch_*.bin``, ``test_batch.bin`` and ``batches.meta.txt``:
        a local path or a URL (``az://``, ``abfs://``, ...).
    split : {"train", "test"}
    storage_options : dict, optional
        Explicit options for a remote ``root`` (see :func:`core.storage.filesystem`).

    Notes
    -----
    Each batch file is read whole into memory (30 MB each for the training split).
    """
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}")
    fs, base = storage.filesystem(root, storage_options)
    with storage.errors("read", root):
        found = fs.isdir(base)
    if not found:
        raise FileNotFoundError(f"CIFAR-10 folder not found: {root}")
    names = _read_class_names(fs, base)
    images, labels, sources = [], [], []
    for filename in TRAIN_FILES if split == "train" else TEST_FILES:
        raw = np.frombuffer(storage.read_bytes(fs, storage.join(base, filename)), dtype=np.uint8)
        if raw.size % RECORD_BYTES:
            raise ValueError(f"{filename}: size {raw.size} is not a whole number of {RECORD_BYTES}-byte records")
        records = raw.reshape(-1, RECORD_BYTES)
        labels.append(records[:, 0])
        images.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        sources.extend(f"{filename}:{i}" for i in range(len(records)))
    labels = np.concatenate(labels)
    if labels.max() > 9:
        raise ValueError(f"CIFAR labels must be 0-9, found {labels.max()}")
    source = np.asarray(sources)
    return LabelledImages(
        images=np.ascontiguousarray(np.concatenate(images)),
        original=np.asarray(names)[labels],
        source=source,
        record_id=np.asarray([f"cifar10-{split}-{i:05d}" for i in range(len(labels))]),
    )


def load_image_folder(url: str, *, size: int = 32, storage_options: dict | None = None) -> LabelledImages:
    """Load a folder-per-class tree (``ROOT/CLASS/*.png``), e.g. tiles exported for review.

    Class folder names are kept as the original class; names that are model classes map to
    themselves, anything else to ``background``. Images are converted to RGB and must be
    ``size`` x ``size``.
    """
    from PIL import Image

    fs, root = storage.filesystem(url, storage_options)
    if not fs.isdir(root):
        raise FileNotFoundError(f"image folder not found: {url}")
    images, original, source = [], [], []
    for class_dir in sorted(fs.ls(root, detail=False)):
        label = storage.file_name(class_dir)
        if label.startswith(".") or not fs.isdir(class_dir):  # hidden: .Trash, or macOS's ._ files
            continue
        for path in sorted(fs.ls(class_dir, detail=False)):
            name = storage.file_name(path)
            if name.startswith(".") or not name.lower().endswith((".png", ".jpg", ".jpeg", ".bmp")):
                continue
            try:
                with Image.open(io.BytesIO(storage.read_bytes(fs, path))) as im:
                    array = np.asarray(im.convert("RGB"))
            except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for data that is no picture
                raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
            if array.shape[:2] != (size, size):
                raise ValueError(f"{path}: tiles must be {size}x{size}, got {array.shape[1]}x{array.shape[0]}")
            images.append(array)
            original.append(label)
            source.append(path)
    if not images:
        raise ValueError(f"no images found under {url} (expected {url}/CLASS/*.png)")
    return LabelledImages(
        images=np.stack(images),
        original=np.asarray(original),
        source=np.asarray(source),
        record_id=np.asarray(source),
    )
