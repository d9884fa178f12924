"""Training pipeline: the CIFAR loader, the split, canvases, and a short real training run."""
from __future__ import annotations

import csv
import json
import os
import re
import sys

import numpy as np
import pytest
from PIL import Image

from core.project import ROOT
from tests.conftest import DATA, needs_cifar
from tests.test_hardening import assert_one_line, run_cli
from tilesets import MODEL_CLASSES, LabelledImages, load_cifar, load_image_folder
from training import MXNET_MISSING
from training.canvas import canvas_tiles, make_canvas, sample_canvas_tiles
from training.split import split_channels, write_manifest

CIFAR = os.path.join(DATA, "cifar10")


@needs_cifar
def test_cifar_loader_reads_the_real_files():
    train = load_cifar(CIFAR, "train")
    test = load_cifar(CIFAR, "test")
    assert train.images.shape == (50000, 32, 32, 3) and test.images.shape == (10000, 32, 32, 3)
    classes, counts = np.unique(test.original, return_counts=True)
    assert len(classes) == 10 and (counts == 1000).all()
    model, counts = np.unique(train.model_class, return_counts=True)
    assert dict(zip(model, counts)) == {"background": 40000, "boat": 5000, "car": 5000}
    # Record 0 of test_batch.bin, decoded by hand: label byte, then R, G, B planes.
    raw = np.fromfile(os.path.join(CIFAR, "test_batch.bin"), dtype=np.uint8, count=3073)
    assert test.original[0] == open(os.path.join(CIFAR, "batches.meta.txt")).read().split()[raw[0]]
    np.testing.assert_array_equal(test.images[0, :, :, 1], raw[1 + 1024:1 + 2048].reshape(32, 32))
    assert set(train.record_id).isdisjoint(test.record_id)


def test_cifar_loader_rejects_a_partial_record(tmp_path):
    (tmp_path / "batches.meta.txt").write_text("\n".join("abcdefghij"))
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(ValueError, match="not a whole number of 3073-byte records"):
        load_cifar(str(tmp_path), "test")


def test_image_folder_loader(tmp_path):
    for name, color in (("car", 10), ("boat", 20), ("truck", 30)):
        os.makedirs(tmp_path / name)
        for i in range(2):
            Image.fromarray(np.full((32, 32, 3), color + i, np.uint8)).save(tmp_path / name / f"{i}.png")
    data = load_image_folder(str(tmp_path))
    assert len(data) == 6
    assert sorted(set(data.model_class)) == ["background", "boat", "car"]  # truck -> background
    assert data.images[data.original == "boat"][1, 0, 0, 0] == 21


def test_image_folder_loader_skips_hidden_files_and_names_a_damaged_tile(tmp_path):
    (tmp_path / "car").mkdir()
    (tmp_path / ".Trash" / "boat").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "car" / "0.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / ".Trash" / "boat" / "1.png")
    (tmp_path / "car" / "._0.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource data
    data = load_image_folder(str(tmp_path))
    assert list(data.source) == [str(tmp_path / "car" / "0.png")]
    (tmp_path / "car" / "1.png").write_bytes(b"junk")  # a traceback from PIL before
    with pytest.raises(ValueError, match=r"car/1.png: not a readable image \(UnidentifiedImageError"):
        load_image_folder(str(tmp_path))


def fake_data(per_class):
    original = np.repeat(["automobile", "ship", "cat", "dog"], per_class)
    n = len(original)
    return LabelledImages(np.zeros((n, 32, 32, 3), np.uint8), original, np.asarray([f"f:{i}" for i in range(n)]),
                          np.asarray([f"id-{i}" for i in range(n)]))


def test_split_is_stratified_disjoint_and_repeatable(tmp_path):
    data = fake_data(50)
    channels = split_channels(data, val_fraction=0.2, seed=7)
    assert set(channels["train"]).isdisjoint(channels["val"])
    assert sorted(np.concatenate(list(channels.values()))) == list(range(len(data)))
    for cls in ("automobile", "ship", "cat", "dog"):
        assert (data.original[channels["val"]] == cls).sum() == 10
    again = split_channels(data, val_fraction=0.2, seed=7)
    assert all((channels[k] == again[k]).all() for k in channels)
    assert not (split_channels(data, val_fraction=0.2, seed=8)["val"] == channels["val"]).all()
    write_manifest(str(tmp_path / "m.csv"), data, channels)
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert len(rows) == len(data) and {r["model_class"] for r in rows} == {"car", "boat", "background"}


def solid_images(n):
    """Image k is filled with the value k + 1 (never 0), so the canvas shows who is where."""
    return np.repeat(np.arange(1, n + 1, dtype=np.uint8), 32 * 32 * 3).reshape(n, 32, 32, 3)


def test_canvas_is_covered_by_overlapping_images():
    images = solid_images(20)
    canvas = make_canvas(images, np.random.default_rng(0), size=96, scatter=2.0)
    assert canvas.shape == (96, 96, 3)
    assert canvas.min() >= 1  # every pixel covered by some image
    # Scattered images overlap the base grid: some image is visible off the 32-px grid.
    values = canvas[:, :, 0]
    assert any(len(np.unique(values[y:y + 32, x:x + 32])) > 1 for y in range(0, 96, 32) for x in range(0, 96, 32))


def test_canvas_tiles_geometry():
    canvas = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    tiles = canvas_tiles(canvas, stride=8)
    assert tiles.shape == (13 * 13, 32, 32, 3)
    np.testing.assert_array_equal(tiles[13 * 2 + 3], canvas[16:48, 24:56])
    sampled = sample_canvas_tiles(canvas[None], 50, np.random.default_rng(2), stride=8)
    flat = {t.tobytes() for t in tiles}
    assert all(t.tobytes() in flat for t in sampled)  # samples lie on the stride-8 grid


def test_run_record_names_no_folder_of_the_training_machine_inside_the_project():
    pytest.importorskip("mxnet")
    from training.loop import run_record
    from training.train import TrainConfig

    outside = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar10")
    config = TrainConfig(data=outside, out=os.path.join(ROOT, "work", "run"), gpus=(0,))
    recorded = run_record(config, epochs_completed=1, train_time_s=None)["config"]
    assert recorded["out"] == os.path.join("work", "run")
    assert recorded["data"] == outside and recorded["gpus"] == [0] and recorded["depth"] == config.depth


@pytest.mark.parametrize("trainer", ["classifier", "detector"])
@pytest.mark.parametrize("setting, value, message", [
    ("lr", -0.1, "`lr` must be > 0"),
    ("lr", 0.0, "`lr` must be > 0"),
    ("momentum", 1.0, "`momentum` must be in [0, 1)"),
    ("wd", -1e-4, "`wd` must be >= 0"),
    ("warmup_epochs", -1.0, "`warmup_epochs` must be >= 0"),
    ("val_fraction", 0.0, "`val_fraction` must be in (0, 1)"),
    ("class_mix", (1.2, -0.2, 0.0), "fractions (>= 0) summing to 1"),
    ("widths", (32, 64), "`widths` needs three whole numbers >= 1, got (32, 64)"),
    ("widths", (32, 0, 128), "`widths` needs three whole numbers >= 1"),
    ("widths", (32, 64.5, 128), "`widths` needs three whole numbers >= 1"),
    # As a config file can give them: they failed deep in training, or True trained one epoch.
    ("epochs", 1.5, "`epochs` must be an integer, got 1.5"),
    ("epochs", True, "`epochs` must be an integer, got True"),
    ("batch_size", "128", "`batch_size` must be an integer, got '128'"),
    ("lr", "0.1", "`lr` must be a number, got '0.1'"),
])
def test_training_settings_out_of_range_are_refused(trainer, setting, value, message):
    from training.detector import DetectorConfig
    from training.train import TrainConfig

    config_class = TrainConfig if trainer == "classifier" else DetectorConfig
    config_class(data="cifar10", out="run").validate()  # the defaults pass
    with pytest.raises(ValueError, match=re.escape(message)):
        config_class(data="cifar10", out="run", **{setting: value}).validate()


def test_the_classifier_takes_its_widths_from_the_command_line_over_a_config_file(tmp_path):
    from app import train

    path = tmp_path / "config.json"
    path.write_text('{"widths": [24, 48, 96], "epochs": 3}')
    config = train.build_config(train.parse_args(["--config", str(path), "--out", "run", "--widths", "48,96,192"]))
    assert config.widths == (48, 96, 192) and config.epochs == 3
    assert train.build_config(train.parse_args(["--config", str(path), "--out", "run"])).widths == (24, 48, 96)


@pytest.mark.parametrize("content, message", [
    ("[]", "must be a JSON object, got a list"),
    ('{"epochs": 1, "bogus": 2}', ": unknown settings ['bogus']"),
    ('{"epochs":', "is not JSON ("),
    (None, "not found"),
])
def test_a_bad_config_file_is_one_line_before_training(content, message, tmp_path, capsys):
    from app import train

    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    # No data there: were the file taken, training would stop at once rather than run.
    code, err = run_cli(train.main, capsys, "--config", str(path), "--out", str(tmp_path / "run"),
                        "--data", str(tmp_path / "none"), "--quiet")
    assert_one_line(code, err, f"--config {path}")
    assert err.startswith(f"error: --config {path}") and message in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("gpus, message", [
    ("99", "--gpus 99: MXNet sees "),  # no machine has a 100th GPU
    ("0,x", "--gpus must be comma-separated GPU ids such as 0,1, got '0,x'"),
    ("-1", "`gpus` must be GPU ids (0, 1, ...), got (-1,)"),
])
def test_gpus_that_are_not_there_are_one_line_before_training(gpus, message, tmp_path, capsys):
    if "MXNet" in message:
        pytest.importorskip("mxnet", reason="which GPUs MXNet sees: MXNet is the train extra")
    from app import train

    data = tmp_path / "cifar10"
    data.mkdir()  # the data are not read before the GPUs are checked
    code, err = run_cli(train.main, capsys, f"--gpus={gpus}", "--out", str(tmp_path / "run"), "--data", str(data),
                        "--quiet")
    assert_one_line(code, err, message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("trainer", ["train", "train_detector"])
def test_training_never_writes_into_a_folder_of_other_files(trainer, tmp_path, capsys):
    pytest.importorskip("mxnet", reason="training checks its folder once MXNet is there (the train extra)")
    import importlib

    main = importlib.import_module(f"app.{trainer}").main
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("not a model")
    (tmp_path / "a-file").write_text("not a folder")
    for out, message in ((tmp_path / "notes", "holds files that are not a model bundle or a training run"),
                         (tmp_path / "a-file", "is a file, not a folder")):
        code, err = run_cli(main, capsys, "--out", str(out), "--data", str(tmp_path / "none"), "--quiet")
        assert_one_line(code, err, f"--out {out} {message}")
    assert sorted(os.listdir(tmp_path / "notes")) == ["mine.txt"]
    # Data that are not there are found before the run's folder is made.
    code, err = run_cli(main, capsys, "--out", str(tmp_path / "new"), "--data", str(tmp_path / "none"), "--quiet")
    assert code == 2 and "not found" in err and not (tmp_path / "new").exists()


@needs_cifar
@pytest.mark.slow
def test_short_training_run_learns_and_exports_a_scorable_bundle(tmp_path):
    pytest.importorskip("mxnet")
    from core.bundle import load_bundle
    from engines import create_engine
    from training.train import TrainConfig, train

    out = str(tmp_path / "model")
    config = TrainConfig(data=CIFAR, out=out, depth=8, width=8, epochs=3, tiles_per_epoch=64 * 70, batch_size=64,
                         lr=0.05, limit_per_class=300, canvases_per_class=20, seed=1)
    train(config, progress=False)
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[-1]["loss"] < metrics[0]["loss"] < np.log(3) + 0.1  # learning, from near chance
    assert metrics[-1]["val_balanced_accuracy"] > 0.45  # above chance (1/3) after ~200 steps

    bundle = load_bundle(out)
    assert bundle.spec.classes == MODEL_CLASSES
    windows = load_cifar(CIFAR, "test").images[:200].transpose(0, 3, 1, 2).copy()
    onnx = create_engine(bundle, "onnxruntime").predict(windows)
    mxnet = create_engine(bundle, "mxnet").predict(windows)
    np.testing.assert_allclose(onnx, mxnet, atol=1e-4)

    manifest = list(csv.DictReader(open(os.path.join(out, "manifest.csv"))))
    assert {r["channel"] for r in manifest} == {"train", "val"}
    assert all(r["record_id"].startswith("cifar10-train-") for r in manifest)  # test set untouched

    # --resume continues from the last checkpoint instead of starting again.
    more = TrainConfig(**{**config.__dict__, "epochs": 4})
    train(more, resume=True, progress=False)
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    segments = json.load(open(os.path.join(out, "model.json")))["training"]["segments"]
    assert segments == [{"epochs": [1, config.epochs], "schedule": config.epochs},
                        {"epochs": [config.epochs + 1, 4], "schedule": 4}]


@pytest.mark.parametrize("trainer", ["train", "train_detector"])
def test_training_without_mxnet_says_how_to_install_it(trainer, tmp_path, monkeypatch, capsys):
    import importlib

    monkeypatch.setitem(sys.modules, "mxnet", None)  # as where it is not installed: importing it fails
    code = importlib.import_module(f"app.{trainer}").main(["--out", str(tmp_path / "model")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"error: {MXNET_MISSING}"]
    assert not (tmp_path / "model").exists()


def test_training_uses_every_core_unless_told_otherwise(monkeypatch):
    from training import require_mxnet

    pytest.importorskip("mxnet")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    require_mxnet()
    assert os.environ["OMP_NUM_THREADS"] == str(len(os.sched_getaffinity(0)))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    require_mxnet()
    assert os.environ["OMP_NUM_THREADS"] == "1"
