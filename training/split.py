"""Stratified train/val channels with a fixed seed, and their manifest."""
from __future__ import annotations

import csv

import numpy as np

from tilesets import LabelledImages

__all__ = ["split_channels", "write_manifest", "MANIFEST_FIELDS"]

MANIFEST_FIELDS = ("record_id", "source_file", "original_class", "model_class", "channel")


def split_channels(data: LabelledImages, *, val_fraction: float = 0.1, seed: int = 0) -> dict:
    """Indices of the ``train`` and ``val`` channels, stratified by original class.

    Each class contributes ``round(val_fraction * count)`` records to ``val``; the rest go
    to ``train``. Returns ``{"train": int array, "val": int array}``, each sorted.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in sorted(set(data.original)):
        members = np.flatnonzero(data.original == cls)
        members = members[rng.permutation(len(members))]
        n_val = int(round(val_fraction * len(members)))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return {"train": np.sort(np.concatenate(train)), "val": np.sort(np.concatenate(val))}


def write_manifest(path: str, data: LabelledImages, channels: dict) -> None:
    """One CSV row per record: id, source file, original and model class, channel."""
    model_class = data.model_class
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(MANIFEST_FIELDS)
        for channel, indices in channels.items():
            for i in indices:
                writer.writerow([data.record_id[i], data.source[i].split(":")[0], data.original[i],
                                 model_class[i], channel])
