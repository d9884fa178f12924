"""app.validate_int8: a bundle records where its int8 copy holds, per kind of CPU, and recommends
the int8 engine only while it holds on every kind recorded."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from app.validate_int8 import INT8_ENGINE, record_validation
from core.bundle import load_bundle
from engines import create_engine
from evaluation import tuning
from evaluation.int8_validation import validate_on_this_cpu, windows_per_second
from tests.helpers import copy_bundle


def entry(model: str, isa: list, *, int8_car: float, float_car: float = 0.8) -> dict:
    return {"cpu": {"model": model, "isa": isa}, "ap50": {"float32": {"car": float_car}, "int8": {"car": int8_car}},
            "holds": int8_car >= float_car - 0.01, "windows_per_s": {"float32": 100, "int8": 150},
            "int8_speedup": 1.5, "golden": {"float32": None, "int8": None}}


@pytest.fixture
def int8_bundle(detector_bundle_dir, tmp_path):
    pytest.importorskip("onnxruntime.quantization")
    from training.quantize import add_int8_model

    folder = copy_bundle(detector_bundle_dir, tmp_path / "bundle")
    add_int8_model(folder, np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), np.uint8))
    return folder


def recorded(folder) -> tuple[dict, dict]:
    doc = json.load(open(os.path.join(folder, "model.json")))
    return doc["int8"]["validation"], doc.get("recommended", {})


def test_each_kind_of_cpu_is_recorded_once_and_int8_recommended_only_where_all_hold(int8_bundle):
    pictures = [tuning.TestPicture("val-a", np.zeros((1, 1, 3), np.uint8), {})]
    record_validation(int8_bundle, entry("Xeon", ["AVX2", "AVX-512", "VNNI"], int8_car=0.8), pictures)
    validation, recommended = recorded(int8_bundle)
    assert validation["validated"] and recommended["engine"] == INT8_ENGINE
    record_validation(int8_bundle, entry("EPYC", ["AVX2"], int8_car=0.7), pictures)
    validation, recommended = recorded(int8_bundle)
    assert [c["cpu"]["model"] for c in validation["cpus"]] == ["Xeon", "EPYC"]
    assert not validation["validated"] and "engine" not in recommended  # it fails on one kind: float32
    record_validation(int8_bundle, entry("EPYC", ["AVX2"], int8_car=0.795), pictures)  # the same kind again
    validation, recommended = recorded(int8_bundle)
    assert [c["cpu"]["model"] for c in validation["cpus"]] == ["Xeon", "EPYC"]
    assert validation["validated"] and recommended["engine"] == INT8_ENGINE
    assert load_bundle(int8_bundle).recommended["engine"] == INT8_ENGINE  # and the bundle still verifies


def test_recording_a_cpu_writes_the_model_card_again(tmp_path):
    from scoring.params import DEFAULT_MODEL

    folder = copy_bundle(DEFAULT_MODEL, tmp_path / "bundle")  # it has its held-out results
    pictures = [type("Picture", (), {"name": name}) for name in recorded(folder)[0]["pictures"]]
    record_validation(folder, entry("Test CPU 9000", ["AVX2"], int8_car=0.79), pictures)
    card = open(os.path.join(folder, "MODEL.md")).read()
    assert "| Test CPU 9000 | AVX2 | car 0.79 |" in card


def test_another_int8_model_or_other_pictures_start_the_record_anew(int8_bundle):
    from training.quantize import add_int8_model

    pictures = [tuning.TestPicture("val-a", np.zeros((1, 1, 3), np.uint8), {})]
    record_validation(int8_bundle, entry("Xeon", ["AVX2"], int8_car=0.8), pictures)
    other = [tuning.TestPicture("val-b", np.zeros((1, 1, 3), np.uint8), {})]
    record_validation(int8_bundle, entry("EPYC", ["AVX2"], int8_car=0.8), other)
    assert [c["cpu"]["model"] for c in recorded(int8_bundle)[0]["cpus"]] == ["EPYC"]
    add_int8_model(int8_bundle, np.random.default_rng(1).integers(0, 256, (16, 32, 32, 3), np.uint8))
    record_validation(int8_bundle, entry("Xeon", ["AVX2"], int8_car=0.8), other)
    validation = recorded(int8_bundle)[0]
    assert [c["cpu"]["model"] for c in validation["cpus"]] == ["Xeon"]
    doc = json.load(open(os.path.join(int8_bundle, "model.json")))
    assert validation["int8_sha256"] == doc["files"]["onnx-int8"]["sha256"]


def test_a_measurement_on_this_cpu(detector_bundle):
    from core.cpu import this_cpu

    rng = np.random.default_rng(3)
    pixels = np.repeat(np.repeat(rng.integers(0, 256, (24, 24, 3), np.uint8), 8, 0), 8, 1)
    truth = {"images": [{"id": 1, "width": 192, "height": 192, "file_name": "p"}],
             "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "boat"}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [32, 32, 32, 32], "area": 1024,
                              "iscrowd": 0}]}
    pictures = [tuning.TestPicture("p", pixels, truth)]
    engines = {"float32": create_engine(detector_bundle, "onnxruntime"),
               "int8": create_engine(detector_bundle, "onnxruntime")}  # a float stand-in: holds by construction
    settings = {"threshold": {"car": 0.3, "boat": 0.3}, "merge": "fuse", "merge_iou": 0.4}
    found = validate_on_this_cpu(engines, engines, pictures, detector_bundle.spec, settings, tolerance=0.01, rounds=1)
    assert found["cpu"] == {"model": this_cpu().model, "isa": list(this_cpu().isa)}
    assert found["holds"] and found["ap50"]["int8"] == found["ap50"]["float32"]
    assert found["golden"]["float32"]["status"] == "passed" and found["windows_per_s"]["float32"] > 0
    assert found["speed_path"] == "batches of 121 windows at stride 16"  # all 11 x 11 of the picture
    rates = windows_per_second({"a": engines["float32"]}, np.zeros((4, 3, 32, 32), np.uint8), rounds=1, seconds=0.05)
    assert rates["a"] > 0


def test_a_dense_model_is_timed_on_the_dense_passes_a_run_makes(dense_bundle_dir):
    from evaluation.int8_validation import speed_setup
    from scoring.paths import DENSE_PASS_PIXELS
    from scoring.windows import dense_passes

    bundle = load_bundle(dense_bundle_dir)
    pictures = [tuning.TestPicture("p", np.zeros((1536, 1536, 3), np.uint8), {})]
    speed, path = speed_setup(pictures, bundle.spec, 8)
    band = speed["band"]
    r0, r1, c0, c1 = next(dense_passes(189, 189, 32, 8, DENSE_PASS_PIXELS))  # (1536 - 32) / 8 + 1 windows a side
    assert band.shape == (3, 32 + (r1 - r0 - 1) * 8, 32 + (c1 - c0 - 1) * 8) and band.size <= 3 * DENSE_PASS_PIXELS
    assert speed["band_windows"] == (r1 - r0) * (c1 - c0)
    assert path == f"dense passes of {band.shape[1]}x{band.shape[2]} px, {speed['band_windows']:,} windows at stride 8"
    engine = create_engine(bundle, "onnxruntime")
    assert windows_per_second({"a": engine}, **speed, rounds=1, seconds=0.05)["a"] > 0
    # At a stride off its dense grid the model is timed window by window, as a run scores it.
    speed, path = speed_setup(pictures, bundle.spec, 6)
    assert set(speed) == {"windows"} and path == "batches of 128 windows at stride 6"
