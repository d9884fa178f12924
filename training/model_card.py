"""Write MODEL.md for a trained bundle from its model.json, metrics and held-out results."""
from __future__ import annotations

import json
import os

__all__ = ["write_model_card"]


def _table(matrix: list, classes: list) -> str:
    head = "| true \\ predicted | " + " | ".join(classes) + " |"
    rule = "|---" * (len(classes) + 1) + "|"
    rows = [f"| {c} | " + " | ".join(f"{v:,}" for v in row) + " |" for c, row in zip(classes, matrix)]
    return "\n".join([head, rule, *rows])


def _view(title: str, r: dict) -> str:
    per = ", ".join(f"{c} {v:.4f}" for c, v in r["per_class_accuracy"].items())
    cm = r["confusion_matrix"]
    return (f"### {title}\n\n{r['count']:,} samples. Balanced accuracy **{r['balanced_accuracy']:.4f}**; "
            f"accuracy per class: {per}; overall accuracy {r['accuracy']:.4f}.\n\n"
            f"{_table(cm['rows_true_cols_predicted'], cm['classes'])}\n")


def write_model_card(folder: str, results: dict) -> str:
    model = json.load(open(os.path.join(folder, "model.json")))
    training = model.get("training", {})
    config = training.get("config", {})
    metrics = [json.loads(line) for line in open(os.path.join(folder, "metrics.jsonl"))] \
        if os.path.exists(os.path.join(folder, "metrics.jsonl")) else []
    last = metrics[-1] if metrics else {}
    machine = training.get("machine", {})
    minutes = (training.get("train_time_s") or 0) / 60
    curve = "\n".join(
        f"| {m['epoch']} | {m['loss']:.4f} | {m['val_balanced_accuracy']:.4f} | {m['images_per_s']:.0f} |"
        for m in metrics
    )
    engines = {"onnx": "ONNX Runtime", "onnx-int8": "ONNX Runtime, int8", "mxnet-symbol": "MXNet symbol",
               "mxnet-params": "MXNet parameters"}
    files = ", ".join(f"`{entry['path']}` ({engines.get(key, key)})" for key, entry in model["files"].items())
    by_class = results["test_images"].get("errors_by_original_class", {})
    errors = ", ".join(f"{c} {n}" for c, n in sorted(by_class.items(), key=lambda kv: -kv[1])) or "none"
    text = f"""# Model card: {model['name']}

A CIFAR ResNet (He et al. 2016, depth {config.get('depth')}, width {config.get('width')}) that classifies
32x32 RGB windows as **car**, **boat** or **background**, trained with MXNet {training.get('mxnet', '')} by
this project's own pipeline (`training/`). Output columns: {', '.join(model['classes'])} (probabilities).

## Data

CIFAR-10 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009), from
`$TILESCAN_DATA/cifar10`. automobile -> car, ship -> boat, the other eight classes -> background.
The 50,000 training images are split into `train` and `val` channels (stratified by class,
{config.get('val_fraction', 0.1):.0%} val, seed {config.get('seed')}), listed in `manifest.csv`. The 10,000
test images were never used for training or for choosing anything: they give the results below.

Each batch mixes unmodified images and 32x32 tiles cut at stride {config.get('tile_stride')} from single-class
canvases ({config.get('canvas_size')}x{config.get('canvas_size')} px, images scattered so that they overlap,
rebuilt every epoch in memory: nothing is written to disk), sampled with class mix
{config.get('class_mix')} (car, boat, background) instead of CIFAR's 1:1:8, with random flips and shifts
of up to {config.get('max_shift')} px.

## Training

    python -m app.train --out models/default

{config.get('epochs')} epochs of {config.get('tiles_per_epoch'):,} samples, batch {config.get('batch_size')},
SGD with momentum
{config.get('momentum')}, weight decay {config.get('wd')}, peak learning rate {config.get('lr')} with warm-up and
cosine decay. {minutes:.1f} minutes on {machine.get('cpus')} CPU cores ({machine.get('platform', '')}).
Final training loss {last.get('loss', float('nan')):.4f}; per-epoch records in `metrics.jsonl`.

| epoch | loss | val balanced accuracy | images/s |
|---|---|---|---|
{curve}

## Held-out results (CIFAR-10 test set)

Recomputed by `make evaluate-model` (ONNX Runtime engine, the scorer's default).

{_view('Unmodified test images', results['test_images'])}
{_view('Tiles of canvases built from test images', results['test_canvas_tiles'])}
## Files

{files}; `model.json` (classes, input contract, sha256 of each file), `manifest.csv`, `metrics.jsonl`,
`evaluation.json`. The int8 model, where present, is made by `make quantize-default` (static
quantisation calibrated on training images) and serves `score.py --engine onnxruntime-int8`.

## Limits

Trained on 32x32 CIFAR images: objects much larger or smaller than a window are out of
distribution. Errors on the test images by original CIFAR-10 class: {errors}.
"""
    path = os.path.join(folder, "MODEL.md")
    with open(path, "w") as fh:
        fh.write(text)
    return path
