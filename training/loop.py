"""What both trainers share: the start of a run, input normalisation, the optimiser and its
schedule, checkpoints and resuming, accuracy per class,
and the record of a training run written into the bundle."""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import platform

import numpy as np

from core.fieldtypes import wrong_type
from core.project import project_relative
from tilesets import MODEL_CLASSES

__all__ = ["check_config", "check_out", "start_run", "normaliser", "sgd_trainer", "restore", "learning_rate",
           "latest_checkpoint", "save_checkpoint", "schedule_segments", "per_class_accuracy", "balanced_accuracy",
           "run_record"]


def check_config(config, *, positive: tuple) -> None:
    """The checks both trainers' configurations share: ``depth`` is 6n + 2, each field named in
    ``positive`` is >= 1, the optimiser's settings are in range (a negative learning rate
    trains towards nan without a word), ``class_mix`` has one fraction per class, summing
    to 1, and ``widths`` holds three whole numbers; before them, that integer fields hold
    integers and number fields numbers (a config file's ``"epochs": 1.5`` or ``true`` failed
    deep in training, or trained one epoch)."""
    wrong = wrong_type(config)
    if wrong:
        raise ValueError("`{}` must be {}, got {!r}".format(*wrong))
    if (config.depth - 2) % 6 or config.depth < 8:
        raise ValueError(f"`depth` must be 6n + 2, got {config.depth}")
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"`{name}` must be >= 1, got {getattr(config, name)}")
    if not config.lr > 0:
        raise ValueError(f"`lr` must be > 0, got {config.lr}")
    if not 0 <= config.momentum < 1:
        raise ValueError(f"`momentum` must be in [0, 1), got {config.momentum}")
    for name in ("wd", "warmup_epochs"):
        if not getattr(config, name) >= 0:
            raise ValueError(f"`{name}` must be >= 0, got {getattr(config, name)}")
    if not 0 < config.val_fraction < 1:
        raise ValueError(f"`val_fraction` must be in (0, 1), got {config.val_fraction}")
    widths = config.widths
    if len(widths) != 3 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"`widths` needs three whole numbers >= 1, got {widths}")
    mix = config.class_mix
    if len(mix) != len(MODEL_CLASSES) or min(mix) < 0 or abs(sum(mix) - 1) > 1e-6:
        raise ValueError(f"`class_mix` needs {len(MODEL_CLASSES)} fractions (>= 0) summing to 1, got {mix}")


#: What a bundle or a training run holds: a folder with none of them is never trained into.
_RUN_FILES = ("model.json", "checkpoints", "metrics.jsonl")


def check_out(out: str) -> None:
    """Refuse (``ValueError``) a file, or a folder holding files but no bundle or training run."""
    if os.path.isfile(out):
        raise ValueError(f"--out {out} is a file, not a folder")
    if os.path.isdir(out) and os.listdir(out) and not any(os.path.exists(os.path.join(out, name))
                                                          for name in _RUN_FILES):
        raise ValueError(f"--out {out} holds files that are not a model bundle or a training run; "
                         "choose a new or empty folder")


def start_run(out: str, seed: int) -> str:
    """Make the bundle folder and its ``checkpoints/`` (``out`` checked by :func:`check_out`
    first, before the data are read), seed numpy and MXNet; returns the checkpoint folder."""
    import mxnet as mx

    ckpt_dir = os.path.join(out, "checkpoints")
    os.makedirs(ckpt_dir, exist_ok=True)
    np.random.seed(seed)
    mx.random.seed(seed)
    return ckpt_dir


def normaliser(train_images: np.ndarray) -> tuple[tuple, tuple]:
    """Per-channel mean and standard deviation of ``(N, H, W, 3)`` uint8 images, on the 0-1 scale."""
    mean = train_images.reshape(-1, 3).mean(axis=0) / 255.0
    std = train_images.reshape(-1, 3).std(axis=0) / 255.0
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def sgd_trainer(net, config, steps_per_epoch: int):
    """SGD with momentum and weight decay from ``config``; with the run's total and warm-up steps."""
    from mxnet import gluon

    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": config.lr, "momentum": config.momentum, "wd": config.wd})
    return trainer, steps_per_epoch * config.epochs, int(config.warmup_epochs * steps_per_epoch)


def restore(net, trainer, out: str, ckpt_dir: str, *, resume: bool, ctx) -> tuple[int, float]:
    """``(epochs done, seconds spent)``: from the last checkpoint when resuming and there is
    one, else ``(0, 0.0)`` with an earlier run's ``metrics.jsonl`` removed."""
    import logging

    checkpoint = latest_checkpoint(ckpt_dir) if resume else None
    if checkpoint:
        net.load_parameters(checkpoint["params"], ctx=ctx)
        trainer.load_states(checkpoint["states"])
        logging.getLogger(__name__).info("resuming after epoch %d", checkpoint["epoch"])
        return checkpoint["epoch"], checkpoint["elapsed_s"]
    metrics_path = os.path.join(out, "metrics.jsonl")
    if os.path.exists(metrics_path):
        os.remove(metrics_path)
    return 0, 0.0


def learning_rate(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up over ``warmup`` steps to ``peak``, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * peak * (1 + np.cos(np.pi * progress))


def latest_checkpoint(folder: str) -> dict | None:
    """The record of the last checkpoint :func:`save_checkpoint` wrote in ``folder``, or ``None``."""
    states = sorted(glob.glob(os.path.join(folder, "epoch-*.json")))
    if not states:
        return None
    with open(states[-1]) as fh:
        return json.load(fh)


def save_checkpoint(net, trainer, folder: str, epoch: int, elapsed_s: float, schedule: int) -> None:
    """The network's parameters, the optimiser's state and a record, after ``epoch`` epochs of
    a run whose learning rate follows a ``schedule``-epoch cosine schedule."""
    prefix = os.path.join(folder, f"epoch-{epoch:04d}")
    net.save_parameters(prefix + ".params")
    trainer.save_states(prefix + ".states")
    with open(prefix + ".json", "w") as fh:
        json.dump({"epoch": epoch, "params": prefix + ".params", "states": prefix + ".states",
                   "elapsed_s": elapsed_s, "schedule": schedule}, fh)


def schedule_segments(folder: str, epochs: int) -> list[dict]:
    """How epochs 1 to ``epochs`` were trained, from the checkpoints in ``folder``: runs of
    epochs under one cosine schedule, ``{"epochs": [first, last], "schedule": its length}``.
    A ``--resume`` with more ``--epochs`` starts a segment (a warm restart); ``schedule`` is
    ``None`` for checkpoints written before schedules were recorded."""
    segments = []
    for epoch in range(1, epochs + 1):
        path = os.path.join(folder, f"epoch-{epoch:04d}.json")
        schedule = None
        if os.path.exists(path):
            with open(path) as fh:
                schedule = json.load(fh).get("schedule")
        if segments and segments[-1]["schedule"] == schedule:
            segments[-1]["epochs"][1] = epoch
        else:
            segments.append({"epochs": [epoch, epoch], "schedule": schedule})
    return segments


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, classes) -> dict:
    """``{class: share of its samples predicted right}``, ``None`` for a class without samples."""
    return {name: float((pred[labels == k] == k).mean()) if (labels == k).any() else None
            for k, name in enumerate(classes)}


def balanced_accuracy(per_class: dict) -> float:
    """The mean of :func:`per_class_accuracy`'s defined values."""
    values = [v for v in per_class.values() if v is not None]
    return float(np.mean(values))


def _recorded(value):
    if isinstance(value, tuple):
        return list(value)
    return project_relative(value) if isinstance(value, str) and os.path.isabs(value) else value


def run_record(config, *, epochs_completed: int, train_time_s: float | None, segments: list | None = None) -> dict:
    """What produced a bundle: the config (absolute paths inside the project made relative to
    it), its schedule's segments (:func:`schedule_segments`), how long it took, on what, with
    which MXNet."""
    import mxnet as mx

    settings = {k: _recorded(v) for k, v in dataclasses.asdict(config).items()}
    return {
        "config": settings,
        "epochs_completed": epochs_completed,
        "segments": segments,
        "train_time_s": train_time_s,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "mxnet": mx.__version__,
    }
