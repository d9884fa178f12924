"""Held-out results of a model bundle on the CIFAR-10 test set, never used in training.

Two views: the unmodified test images (accuracy per class, balanced accuracy, confusion
matrix), and every stride-8 tile of single-class canvases built from the test images.
Scored through the same engines as the scorer, so the figures describe the shipped bundle.
"""
from __future__ import annotations

import numpy as np

from core.bundle import ModelBundle
from engines import create_engine
from tilesets import MODEL_CLASSES, load_cifar
from training.canvas import canvas_tiles, make_canvases

__all__ = ["evaluate_bundle", "confusion_matrix", "summarise"]


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """``(n, n)`` counts, rows the true class, columns the predicted one."""
    return np.bincount(truth * n + pred, minlength=n * n).reshape(n, n)


def summarise(truth: np.ndarray, pred: np.ndarray, classes=MODEL_CLASSES) -> dict:
    matrix = confusion_matrix(truth, pred, len(classes))
    recall = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    return {
        "count": int(len(truth)),
        "accuracy": float((truth == pred).mean()),
        "per_class_accuracy": {c: round(float(r), 4) for c, r in zip(classes, recall)},
        "balanced_accuracy": round(float(recall.mean()), 4),
        "confusion_matrix": {"classes": list(classes), "rows_true_cols_predicted": matrix.tolist()},
    }


def _predict(engine, images_nhwc: np.ndarray, batch: int = 1024) -> np.ndarray:
    out = [engine.predict(np.ascontiguousarray(images_nhwc[i:i + batch].transpose(0, 3, 1, 2))).argmax(axis=1)
           for i in range(0, len(images_nhwc), batch)]
    return np.concatenate(out)


def evaluate_bundle(bundle: ModelBundle, cifar_root: str, *, engine: str = "onnxruntime", threads: int = 2,
                    canvases_per_class: int = 20, canvas_size: int = 128, seed: int = 2016) -> dict:
    """Results of ``bundle`` on the CIFAR-10 test set; deterministic for a given ``seed``."""
    if tuple(bundle.spec.classes) != MODEL_CLASSES:
        raise ValueError(f"expected a model with classes {MODEL_CLASSES}, got {bundle.spec.classes}")
    test = load_cifar(cifar_root, "test")
    model = create_engine(bundle, engine, threads=threads)
    truth = test.model_label
    pred = _predict(model, test.images)
    results = {"test_images": summarise(truth, pred)}
    wrong = pred != truth
    results["test_images"]["errors_by_original_class"] = {
        str(c): int(wrong[test.original == c].sum())
        for c in sorted(set(test.original)) if wrong[test.original == c].any()
    }
    rng = np.random.default_rng(seed)
    tiles, labels = [], []
    for k in range(len(MODEL_CLASSES)):
        for canvas in make_canvases(test.images[truth == k], canvases_per_class, rng, size=canvas_size):
            t = canvas_tiles(canvas, stride=8)
            tiles.append(t)
            labels.append(np.full(len(t), k))
    results["test_canvas_tiles"] = summarise(np.concatenate(labels), _predict(model, np.concatenate(tiles)))
    results["settings"] = {"engine": engine, "canvases_per_class": canvases_per_class, "canvas_size": canvas_size,
                           "tile_stride": 8, "seed": seed, "bundle_sha256": bundle.sha256}
    return results
