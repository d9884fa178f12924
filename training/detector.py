"""Train the collage detector: the ResNet trunk with a class head and a box head, on windows of collages.

Every epoch builds new collages from the training channel (:mod:`training.collage_windows`:
colour-matched to random pictures or random picks, on grids of random steps and jitters),
cuts windows near objects and anywhere, labels them from the geometry, and trains on a
class-balanced draw of them, plus noise, flat and gradient windows as negatives and,
when configured, the notebook's exported error tiles. Validation uses fixed collages from
the validation channel: the test set is never seen. Two architectures
(:mod:`training.networks`): the CIFAR ResNet (``resnet``), and the padding-free network
(``valid``), which scores a whole band exactly at its output stride. Either's trunk and class
head start from a trained classifier bundle of its own architecture (``init``; see
:data:`DEFAULT_INITS`), or from random weights without one. The box head starts at zero (each
window its own box).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from core.bundle import ModelSpec, load_bundle
from core.project import project_path
from tilesets import BACKGROUND, MODEL_CLASSES, LabelledImages, load_cifar, load_image_folder
from tiling.box import BOX_ENCODING, apply_deltas, iou_rows
from training.collage_windows import (
    IGNORE,
    LabelledWindows,
    LabelRule,
    flip_horizontally,
    negative_windows,
    random_collage_params,
    sample_windows,
    synthetic_target,
)
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

__all__ = ["DetectorConfig", "train_detector", "initialise_detector", "collage_windows_for", "DEFAULT_INIT",
           "DEFAULT_INITS"]

logger = logging.getLogger(__name__)

#: The classifier bundle each architecture's detector starts from (``python -m app.train``).
DEFAULT_INITS = {"resnet": project_path("models", "classifier"),
                 "valid": project_path("models", "dense-classifier")}
DEFAULT_INIT = DEFAULT_INITS["resnet"]
WINDOW = 32


@dataclass(frozen=True)
class DetectorConfig:
    """Every setting of a detector training run; written into the bundle.

    ``class_mix`` is the share of car, boat and background among the windows with a class
    label; ``ignored_fraction`` of every draw are ignored windows, which train the box head
    only; ``negative_fraction`` of the background share are noise, flat and gradient windows.
    """

    data: str
    out: str
    init: str | None = DEFAULT_INIT
    architecture: str = "resnet"
    depth: int = 20
    width: int = 16
    #: The padding-free network's three widths (``architecture`` ``valid``).
    widths: tuple = (32, 64, 128)
    epochs: int = 20
    windows_per_epoch: int = 65536
    collage_size: int = 768
    windows_per_collage: int = 2048
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    wd: float = 5e-4
    warmup_epochs: float = 0.25
    class_mix: tuple = (0.28, 0.32, 0.4)
    ignored_fraction: float = 0.1
    negative_fraction: float = 0.1
    box_weight: float = 2.0
    hard_negatives: str | None = None
    hard_negative_fraction: float = 0.05
    val_fraction: float = 0.1
    val_collages: int = 4
    val_windows_per_collage: int = 1536
    seed: int = 0
    rule: LabelRule = field(default_factory=LabelRule)

    def validate(self) -> None:
        check_config(self, positive=("epochs", "windows_per_epoch", "collage_size", "windows_per_collage",
                                     "batch_size", "val_collages", "val_windows_per_collage"))
        check_architecture(self.architecture)
        if self.collage_size < 4 * WINDOW:
            raise ValueError(f"`collage_size` must be >= {4 * WINDOW}, got {self.collage_size}")
        for name in ("ignored_fraction", "negative_fraction", "hard_negative_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)}")


def collage_windows_for(images: LabelledImages, collages: int, per_collage: int, rng: np.random.Generator, *,
                        size: int, rule: LabelRule) -> LabelledWindows:
    """Labelled windows of ``collages`` new collages of ``images`` in random styles."""
    from collage import build_collage

    parts = []
    for _ in range(collages):
        params = random_collage_params(rng, size=size)
        collage = build_collage(synthetic_target(rng), images.images, images.model_class, params,
                                ids=images.record_id)
        parts.append(sample_windows(collage, MODEL_CLASSES, BACKGROUND, per_collage, rng, rule=rule))
    return LabelledWindows.concatenate(parts)


def _hard_negatives(folder: str) -> LabelledWindows:
    """Exported error tiles: misses under their class (the crop is the object's window), false alarms background."""
    tiles = load_image_folder(folder)
    labels = tiles.model_label
    return LabelledWindows(tiles.images, labels, np.zeros((len(tiles), 4), np.float32),
                           labels != MODEL_CLASSES.index(BACKGROUND))


def _epoch_draw(pool: LabelledWindows, config: DetectorConfig, rng: np.random.Generator,
                hard: LabelledWindows | None) -> LabelledWindows:
    """``windows_per_epoch`` windows drawn from ``pool`` in the configured mix, noise negatives added."""
    n = config.windows_per_epoch
    n_hard = int(n * config.hard_negative_fraction) if hard is not None and len(hard) else 0
    ignored = np.flatnonzero((pool.labels == IGNORE) & pool.has_box)
    n_ignored = int(n * config.ignored_fraction) if len(ignored) else 0
    n_labelled = n - n_hard - n_ignored
    counts = [int(round(n_labelled * share)) for share in config.class_mix]
    background = MODEL_CLASSES.index(BACKGROUND)
    counts[background] += n_labelled - sum(counts)  # what rounding left over: the epoch's steps take all n
    n_noise = int(round(counts[background] * config.negative_fraction))
    counts[background] -= n_noise
    picks = []
    for k, count in enumerate(counts):
        members = np.flatnonzero(pool.labels == k)
        if len(members) == 0:
            raise ValueError(f"no {MODEL_CLASSES[k]} windows in this epoch's collages")
        picks.append(rng.choice(members, count, replace=count > len(members)))
    if n_ignored:
        picks.append(rng.choice(ignored, n_ignored, replace=n_ignored > len(ignored)))
    parts = [pool.take(np.concatenate(picks))]
    noise = negative_windows(n_noise, rng, window=WINDOW)
    parts.append(LabelledWindows(noise, np.full(n_noise, background, np.int64), np.zeros((n_noise, 4), np.float32),
                                 np.zeros(n_noise, bool)))
    if n_hard:
        parts.append(hard.take(rng.choice(len(hard), n_hard, replace=n_hard > len(hard))))
    drawn = LabelledWindows.concatenate(parts)
    drawn = drawn.take(rng.permutation(len(drawn)))
    return flip_horizontally(drawn, rng.random(len(drawn)) < 0.5)


def _evaluate(net, windows: LabelledWindows, spec: ModelSpec, ctx, batch: int = 512) -> dict:
    """Class accuracy on the labelled windows and box quality on the windows with a box target."""
    import mxnet as mx

    preds, deltas = [], []
    for i in range(0, len(windows), batch):
        x = mx.nd.array(spec.normalise(windows.images[i:i + batch].transpose(0, 3, 1, 2)), ctx=ctx)
        logits, boxes = net(x)
        preds.append(logits.argmax(axis=1).asnumpy().astype(np.int64))
        deltas.append(boxes.asnumpy())
    pred, deltas = np.concatenate(preds), np.concatenate(deltas)
    labelled = windows.labels != IGNORE
    accuracy = per_class_accuracy(pred[labelled], windows.labels[labelled], MODEL_CLASSES)
    frame = np.tile([0.0, 0.0, WINDOW, WINDOW], (int(windows.has_box.sum()), 1))
    iou = iou_rows(apply_deltas(frame, deltas[windows.has_box]), apply_deltas(frame, windows.deltas[windows.has_box]))
    before = iou_rows(frame, apply_deltas(frame, windows.deltas[windows.has_box]))
    return {"accuracy": accuracy, "balanced_accuracy": balanced_accuracy(accuracy),
            "box_iou_mean": float(iou.mean()), "box_iou_at_least_0.5": float((iou >= 0.5).mean()),
            "window_iou_at_least_0.5": float((before >= 0.5).mean()), "windows": int(len(windows))}


def initialise_detector(net, config: DetectorConfig, ctx) -> tuple[tuple, tuple]:
    """Xavier weights, the init bundle's where names match, a zero box head; the normalisation to use."""
    import mxnet as mx

    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=ctx)
    net(mx.nd.zeros((1, 3, WINDOW, WINDOW), ctx=ctx[0]))
    net.box_output.weight.set_data(mx.nd.zeros(net.box_output.weight.shape, ctx=ctx[0]))
    net.box_output.bias.set_data(mx.nd.zeros(net.box_output.bias.shape, ctx=ctx[0]))
    if not config.init:
        return None, None
    bundle = load_bundle(config.init)
    if tuple(bundle.spec.classes) != MODEL_CLASSES:
        raise ValueError(f"--init {config.init} has classes {bundle.spec.classes}, expected {MODEL_CLASSES}")
    if bundle.spec.dense_stride != dense_stride(config.architecture):
        raise ValueError(f"--init {config.init} is {'a padding-free' if bundle.spec.dense_stride else 'a ResNet'} "
                         f"classifier; the {config.architecture} detector starts from one of its own architecture")
    saved = {k.split(":", 1)[-1]: v for k, v in mx.nd.load_frombuffer(bundle.file("mxnet-params")).items()}
    params = net.collect_params()
    loaded = [name for name in params if name in saved]
    for name in loaded:
        if params[name].shape != saved[name].shape:
            raise ValueError(f"--init {config.init}: {name} is {saved[name].shape}, the detector's is "
                             f"{params[name].shape} (other widths?)")
        params[name].set_data(saved[name])
    missing = sorted(set(params) - set(loaded))
    if any(not name.startswith(net.box_output.prefix) for name in missing):
        raise ValueError(f"--init {config.init} lacks trunk parameters: {missing[:5]}")
    logger.info("initialised %d parameters from %s; new: %s", len(loaded), config.init, ", ".join(missing))
    return bundle.spec.mean, bundle.spec.std


def train_detector(config: DetectorConfig, *, resume: bool = False, progress: bool = True,
                   storage_options: dict | None = None) -> dict:
    """Train, then export the detector bundle into local folder ``config.out``; returns the last epoch's record."""
    import json

    config.validate()
    import mxnet as mx
    from mxnet import autograd, gluon
    from tqdm import tqdm

    from training.export import export_bundle

    check_out(config.out)
    data = load_cifar(config.data, "train", storage_options=storage_options)  # before anything is written
    ckpt_dir = start_run(config.out, config.seed)
    ctx = [mx.cpu()]

    channels = split_channels(data, val_fraction=config.val_fraction, seed=config.seed)
    write_manifest(os.path.join(config.out, "manifest.csv"), data, channels)
    train_data, val_data = data.take(channels["train"]), data.take(channels["val"])
    hard = _hard_negatives(config.hard_negatives) if config.hard_negatives else None

    net = build_network(config.architecture, classes=len(MODEL_CLASSES), depth=config.depth, width=config.width,
                        widths=config.widths, boxes=True)
    mean, std = initialise_detector(net, config, ctx)
    if mean is None:
        mean, std = normaliser(train_data.images)
    name = network_name(config.architecture, depth=config.depth, widths=config.widths)
    spec = ModelSpec(name=f"{name}-car-boat-detector", classes=MODEL_CLASSES, size=WINDOW, mean=tuple(mean),
                     std=tuple(std), boxes=BOX_ENCODING, dense_stride=dense_stride(config.architecture))
    net.hybridize(static_alloc=True, static_shape=True)
    val = collage_windows_for(val_data, config.val_collages, config.val_windows_per_collage,
                              np.random.default_rng(config.seed + 1), size=config.collage_size, rule=config.rule)

    class_loss = gluon.loss.SoftmaxCrossEntropyLoss()
    box_loss = gluon.loss.HuberLoss(rho=0.1)
    steps_per_epoch = config.windows_per_epoch // config.batch_size
    trainer, total_steps, warmup = sgd_trainer(net, config, steps_per_epoch)
    start_epoch, elapsed_before = restore(net, trainer, config.out, ckpt_dir, resume=resume, ctx=ctx)
    metrics_path = os.path.join(config.out, "metrics.jsonl")

    started = time.time()
    record = {}
    for epoch in range(start_epoch, config.epochs):
        rng = np.random.default_rng([config.seed, epoch])
        epoch_start = time.time()
        collages = max(1, -(-config.windows_per_epoch // config.windows_per_collage))
        pool = collage_windows_for(train_data, collages, config.windows_per_collage, rng, size=config.collage_size,
                                   rule=config.rule)
        drawn = _epoch_draw(pool, config, rng, hard)
        data_s = time.time() - epoch_start
        sums = {"class": 0.0, "box": 0.0}
        seen = 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   file=sys.stderr, leave=False)
        for step in bar:
            trainer.set_learning_rate(learning_rate(epoch * steps_per_epoch + step, total_steps, warmup, config.lr))
            batch = drawn.take(np.arange(step * config.batch_size, (step + 1) * config.batch_size))
            x = mx.nd.array(spec.normalise(batch.images.transpose(0, 3, 1, 2)), ctx=ctx[0])
            labelled = batch.labels != IGNORE
            y = mx.nd.array(np.where(labelled, batch.labels, 0), ctx=ctx[0])
            class_weight = mx.nd.array(labelled.astype(np.float32)[:, None], ctx=ctx[0])
            target = mx.nd.array(batch.deltas, ctx=ctx[0])
            box_weight = mx.nd.array(batch.has_box.astype(np.float32)[:, None] * config.box_weight, ctx=ctx[0])
            with autograd.record():
                logits, deltas = net(x)
                lc = class_loss(logits, y, class_weight)
                lb = box_loss(deltas, target, box_weight)
                loss = lc + lb
            loss.backward()
            trainer.step(config.batch_size)
            sums["class"] += float(lc.sum().asscalar())
            sums["box"] += float(lb.sum().asscalar())
            seen += len(batch)
            if step % 20 == 0:
                bar.set_postfix(cls=f"{sums['class'] / seen:.3f}", box=f"{sums['box'] / seen:.4f}")
        train_s = time.time() - epoch_start - data_s
        record = {
            "epoch": epoch + 1,
            "class_loss": sums["class"] / seen,
            "box_loss": sums["box"] / seen,
            "lr": float(trainer.learning_rate),
            "pool_windows": int(len(pool)),
            "val": _evaluate(net, val, spec, ctx[0]),
            "data_s": data_s,
            "windows_per_s": seen / train_s,
            "elapsed_s": elapsed_before + time.time() - started,
        }
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        v = record["val"]
        logger.info("epoch %d/%d class loss %.4f box loss %.4f | val balanced acc %.4f (car %.3f boat %.3f bg %.3f), "
                    "box IoU %.3f (>=0.5: %.3f) | %.0f windows/s, %.0fs", epoch + 1, config.epochs,
                    record["class_loss"], record["box_loss"], v["balanced_accuracy"], v["accuracy"]["car"],
                    v["accuracy"]["boat"], v["accuracy"]["background"], v["box_iou_mean"],
                    v["box_iou_at_least_0.5"], record["windows_per_s"], record["elapsed_s"])
        save_checkpoint(net, trainer, ckpt_dir, epoch + 1, record["elapsed_s"], config.epochs)

    info = {"training": {**run_record(config, epochs_completed=config.epochs, train_time_s=record.get("elapsed_s"),
                                     segments=schedule_segments(ckpt_dir, config.epochs)),
                         "kind": "collage detector", "final": record}}
    export_bundle(net, spec, config.out, extra=info)
    return record
