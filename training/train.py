"""Train the car/boat/background classifier on canvases of CIFAR-10 images with MXNet Gluon: the
CIFAR ResNet, or (``architecture`` ``valid``) the padding-free network the dense detector starts from.

Each batch mixes unmodified images and 32x32 tiles cut at stride 8 from in-memory
single-class canvases, with balanced class sampling (negatives outnumber each positive
class 8 to 1 in CIFAR-10). Canvases are rebuilt every epoch from the channel's images,
so the data never inflates on disk.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from core.bundle import ModelSpec
from tilesets import MODEL_CLASSES, LabelledImages, load_cifar
from training.canvas import canvas_tiles, make_canvases, sample_canvas_tiles
from training.loop import (
    balanced_accuracy,
    check_config,
    check_out,
    learning_rate,
    normaliser,
    per_class_accuracy,
    restore,
    run_record,
    save_checkpoint,
    schedule_segments,
    sgd_trainer,
    start_run,
)
from training.networks import build_network, check_architecture, dense_stride, network_name
from training.split import split_channels, write_manifest

__all__ = ["TrainConfig", "train"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; written beside the model.

    The defaults are the settings the bundled classifier was trained with.
    """

    data: str
    out: str
    architecture: str = "resnet"
    depth: int = 20
    width: int = 16
    #: The padding-free network's three widths (``architecture`` ``valid``).
    widths: tuple = (32, 64, 128)
    epochs: int = 12
    tiles_per_epoch: int = 51200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    wd: float = 5e-4
    warmup_epochs: float = 0.5
    val_fraction: float = 0.1
    seed: int = 0
    canvas_size: int = 128
    canvases_per_class: int = 200
    tile_stride: int = 8
    plain_fraction: float = 0.5
    class_mix: tuple = (0.3, 0.3, 0.4)
    max_shift: int = 4
    limit_per_class: int = 0
    gpus: tuple = ()

    def validate(self) -> None:
        check_config(self, positive=("epochs", "tiles_per_epoch", "batch_size", "canvas_size", "canvases_per_class"))
        check_architecture(self.architecture)
        if not 0 <= self.plain_fraction <= 1:
            raise ValueError(f"`plain_fraction` must be in [0, 1], got {self.plain_fraction}")
        if any(not isinstance(g, int) or g < 0 for g in self.gpus):
            raise ValueError(f"`gpus` must be GPU ids (0, 1, ...), got {self.gpus}")


class BatchSampler:
    """Balanced batches of unmodified images and canvas tiles for one channel."""

    def __init__(self, data: LabelledImages, config: TrainConfig, rng: np.random.Generator):
        self.config = config
        self.rng = rng
        labels = data.model_label
        self.pools = [data.images[labels == k] for k in range(len(MODEL_CLASSES))]
        for name, pool in zip(MODEL_CLASSES, self.pools):
            if len(pool) == 0:
                raise ValueError(f"no {name} images in the training channel")
        self.canvases = None

    def new_epoch(self) -> None:
        self.canvases = [
            make_canvases(pool, self.config.canvases_per_class, self.rng, size=self.config.canvas_size)
            for pool in self.pools
        ]

    def batch(self, size: int):
        config, rng = self.config, self.rng
        labels = rng.choice(len(MODEL_CLASSES), size=size, p=config.class_mix)
        plain = rng.random(size) < config.plain_fraction
        out = np.empty((size, 32, 32, 3), dtype=np.uint8)
        for k, pool in enumerate(self.pools):
            take = (labels == k) & plain
            out[take] = pool[rng.integers(0, len(pool), take.sum())]
            take = (labels == k) & ~plain
            if take.any():
                out[take] = sample_canvas_tiles(self.canvases[k], int(take.sum()), rng, stride=config.tile_stride)
        return _augment(out, rng, config.max_shift), labels


def _augment(images: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Random horizontal flips and shifts of up to ``max_shift`` pixels (edge-padded)."""
    flip = rng.random(len(images)) < 0.5
    images[flip] = images[flip, :, ::-1]
    if max_shift:
        padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="edge")
        dy, dx = rng.integers(0, 2 * max_shift + 1, (2, len(images)))
        for i in range(len(images)):
            images[i] = padded[i, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
    return images


def _network_input(images: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """``(N, 32, 32, 3)`` uint8 images as the network sees them: the scorer's own normalisation."""
    return spec.normalise(images.transpose(0, 3, 1, 2))


def _predict(net, images: np.ndarray, spec: ModelSpec, ctx, batch: int = 512) -> np.ndarray:
    import mxnet as mx

    out = []
    for i in range(0, len(images), batch):
        x = mx.nd.array(_network_input(images[i:i + batch], spec), ctx=ctx)
        out.append(net(x).argmax(axis=1).asnumpy().astype(np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _val_sets(val: LabelledImages, config: TrainConfig):
    """Val images as they are, and all stride-8 tiles of fixed single-class val canvases."""
    rng = np.random.default_rng(config.seed + 1)
    labels = val.model_label
    tiles, tile_labels = [], []
    for k in range(len(MODEL_CLASSES)):
        pool = val.images[labels == k]
        for canvas in make_canvases(pool, 4, rng, size=config.canvas_size):
            t = canvas_tiles(canvas, stride=config.tile_stride)
            tiles.append(t)
            tile_labels.append(np.full(len(t), k))
    return (val.images, labels), (np.concatenate(tiles), np.concatenate(tile_labels))


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True,
          storage_options: dict | None = None) -> dict:
    """Run training and export the bundle into local folder ``config.out``; returns the final metrics.

    ``config.data`` may be a URL (read with ``storage_options``).
    """
    config.validate()
    import mxnet as mx
    from mxnet import autograd, gluon
    from tqdm import tqdm

    from training.export import export_bundle

    seen = mx.context.num_gpus() if config.gpus else 0
    if any(g >= seen for g in config.gpus):  # before anything is written: MXNet would fail mid-way
        raise ValueError(f"--gpus {','.join(map(str, config.gpus))}: MXNet sees {seen} GPU(s) here (a CPU-only "
                         "build, or no such device); leave --gpus out to train on the CPU")
    check_out(config.out)
    data = load_cifar(config.data, "train", storage_options=storage_options)  # before anything is written
    ckpt_dir = start_run(config.out, config.seed)
    rng = np.random.default_rng(config.seed)
    ctx = [mx.gpu(i) for i in config.gpus] or [mx.cpu()]

    channels = split_channels(data, val_fraction=config.val_fraction, seed=config.seed)
    if config.limit_per_class:
        channels = {name: _limit(data, idx, config.limit_per_class, rng) for name, idx in channels.items()}
    write_manifest(os.path.join(config.out, "manifest.csv"), data, channels)
    train_data, val_data = data.take(channels["train"]), data.take(channels["val"])
    mean, std = normaliser(train_data.images)
    name = network_name(config.architecture, depth=config.depth, widths=config.widths)
    spec = ModelSpec(name=f"{name}-car-boat", classes=MODEL_CLASSES, size=32, mean=mean, std=std,
                     dense_stride=dense_stride(config.architecture))
    sampler = BatchSampler(train_data, config, rng)
    (val_images, val_labels), (val_tiles, val_tile_labels) = _val_sets(val_data, config)

    net = build_network(config.architecture, classes=len(MODEL_CLASSES), depth=config.depth, width=config.width,
                        widths=config.widths, boxes=False)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    steps_per_epoch = config.tiles_per_epoch // config.batch_size
    trainer, total_steps, warmup = sgd_trainer(net, config, steps_per_epoch)
    start_epoch, elapsed_before = restore(net, trainer, config.out, ckpt_dir, resume=resume, ctx=ctx)
    if start_epoch:
        rng = np.random.default_rng([config.seed, start_epoch])
        sampler.rng = rng
    metrics_path = os.path.join(config.out, "metrics.jsonl")

    started = time.time()
    record = {}
    for epoch in range(start_epoch, config.epochs):
        sampler.new_epoch()
        epoch_start = time.time()
        loss_sum, seen = 0.0, 0
        preds, truths = [], []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not progress, file=sys.stderr, leave=False)
        for step in bar:
            trainer.set_learning_rate(learning_rate(epoch * steps_per_epoch + step, total_steps, warmup, config.lr))
            images, labels = sampler.batch(config.batch_size)
            x = mx.nd.array(_network_input(images, spec), ctx=ctx[0])
            y = mx.nd.array(labels, ctx=ctx[0])
            with autograd.record():
                logits = net(x)
                loss = loss_fn(logits, y)
            loss.backward()
            trainer.step(config.batch_size)
            loss_sum += float(loss.sum().asscalar())
            seen += len(labels)
            preds.append(logits.argmax(axis=1).asnumpy().astype(np.int64))
            truths.append(labels)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        epoch_time = time.time() - epoch_start
        val_pred = _predict(net, val_images, spec, ctx[0])
        tile_pred = _predict(net, val_tiles, spec, ctx[0])
        val_acc = per_class_accuracy(val_pred, val_labels, MODEL_CLASSES)
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / seen,
            "lr": float(trainer.learning_rate),
            "train_accuracy": per_class_accuracy(np.concatenate(preds), np.concatenate(truths), MODEL_CLASSES),
            "val_accuracy": val_acc,
            "val_balanced_accuracy": balanced_accuracy(val_acc),
            "val_tile_accuracy": per_class_accuracy(tile_pred, val_tile_labels, MODEL_CLASSES),
            "images_per_s": seen / epoch_time,
            "elapsed_s": elapsed_before + time.time() - started,
        }
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        logger.info(
            "epoch %d/%d loss %.4f val balanced acc %.4f (car %.3f boat %.3f bg %.3f) %.0f img/s %.0fs",
            epoch + 1, config.epochs, record["loss"], record["val_balanced_accuracy"],
            val_acc["car"], val_acc["boat"], val_acc["background"], record["images_per_s"], record["elapsed_s"],
        )
        save_checkpoint(net, trainer, ckpt_dir, epoch + 1, record["elapsed_s"], config.epochs)

    run_info = {"training": run_record(config, epochs_completed=config.epochs, train_time_s=record.get("elapsed_s"),
                                     segments=schedule_segments(ckpt_dir, config.epochs))}
    export_bundle(net, spec, config.out, extra=run_info)
    return record


def _limit(data: LabelledImages, indices: np.ndarray, per_class: int, rng) -> np.ndarray:
    labels = data.model_label[indices]
    keep = [rng.permutation(indices[labels == k])[:per_class] for k in range(len(MODEL_CLASSES))]
    return np.sort(np.concatenate(keep))
