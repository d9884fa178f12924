"""The committed bundles, the default detector and the classifier it started from: they
verify, their engines agree, their recorded results hold, score.py uses the default when no
--model is given, and the default finds (next to) nothing in noise and flat grey."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from app import score
from core.bundle import load_bundle
from engines import create_engine
from scoring.params import DEFAULT_MODEL, default_stride
from tests.conftest import DATA, HAVE_MXNET, needs_cifar
from tiling import WindowGrid

BUNDLE = DEFAULT_MODEL
CLASSIFIER = os.path.join(os.path.dirname(DEFAULT_MODEL), "classifier")
#: The padding-free classifier the dense detector starts from.
DENSE_CLASSIFIER = os.path.join(os.path.dirname(DEFAULT_MODEL), "dense-classifier")
#: The second detector, the default before the padding-free one: the ResNet-20.
RESNET = os.path.join(os.path.dirname(DEFAULT_MODEL), "resnet")
#: The lowest CIFAR-10 test balanced accuracy each bundle may record.
FLOORS = {BUNDLE: 0.9, CLASSIFIER: 0.95, DENSE_CLASSIFIER: 0.95, RESNET: 0.9}


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE)


@pytest.mark.parametrize("folder", list(FLOORS))
def test_bundles_verify(folder):
    bundle = load_bundle(folder)
    assert bundle.spec.classes == ("car", "boat", "background")
    assert bundle.spec.size == 32 and bundle.spec.channel_order == "RGB"
    assert {"onnx", "mxnet-symbol", "mxnet-params", "onnx-int8"} <= set(bundle.files)


def test_the_default_is_a_detector_with_validated_settings(bundle):
    assert bundle.spec.boxes == "window-offset-log-size"
    recommended = bundle.recommended
    assert set(recommended["threshold"]) == {"car", "boat"} and recommended["merge"] in ("nms", "fuse")
    doc = json.load(open(os.path.join(BUNDLE, "model.json")))
    validation = doc["int8"]["validation"]
    assert validation["int8_sha256"] == doc["files"]["onnx-int8"]["sha256"]  # recorded for this int8 model
    for cpu in validation["cpus"]:
        ap50 = cpu["ap50"]
        assert cpu["holds"] == all(ap50["int8"][c] >= ap50["float32"][c] - validation["tolerance"]
                                   for c in ("car", "boat"))
    assert validation["validated"] == all(cpu["holds"] for cpu in validation["cpus"])
    assert (recommended.get("engine") == "onnxruntime-int8") == validation["validated"]
    # Validated where int8 kernels saturate with full 8-bit weights, not only where they are exact.
    kinds = {tuple(cpu["cpu"]["isa"]) for cpu in validation["cpus"]}
    assert {("AVX2",), ("AVX2", "AVX-512")} <= kinds and any("VNNI" in kind for kind in kinds)
    assert doc["int8"]["reduce_range"] is True


@needs_cifar
@pytest.mark.parametrize("folder", list(FLOORS))
def test_engines_agree_and_results_reproduce(folder):
    from tilesets import load_cifar
    from training.held_out import evaluate_bundle

    bundle = load_bundle(folder)
    test = load_cifar(os.path.join(DATA, "cifar10"), "test")
    windows = np.ascontiguousarray(test.images[:512].transpose(0, 3, 1, 2))
    onnx, onnx_deltas = create_engine(bundle, "onnxruntime").detect(windows)
    if HAVE_MXNET:  # the engine it was trained with (the train extra)
        mx_probs, mx_deltas = create_engine(bundle, "mxnet").detect(windows)
        np.testing.assert_allclose(mx_probs, onnx, atol=1e-4)
        if bundle.spec.boxes:
            np.testing.assert_allclose(mx_deltas, onnx_deltas, atol=1e-4)
    # Each engine passed the bundle's golden-batch check as it loaded (create_engine raises otherwise),
    # and int8 stays within the bundle's int8 tolerance on CIFAR-10 too: thresholds the bundle
    # records, which hold on any CPU, not figures only one kind of CPU meets.
    int8_engine = create_engine(bundle, "onnxruntime-int8")
    assert int8_engine.numerics.status == "passed"
    int8 = int8_engine.predict(windows)
    tolerance = bundle.golden.tolerance("int8")
    assert np.abs(int8 - onnx).max() <= tolerance.probability_max
    assert np.abs(int8 - onnx).mean() <= tolerance.probability_mean

    recorded = json.load(open(os.path.join(folder, "evaluation.json")))
    results = evaluate_bundle(bundle, os.path.join(DATA, "cifar10"))
    assert results["test_images"] == recorded["test_images"]
    assert results["test_canvas_tiles"] == recorded["test_canvas_tiles"]
    assert recorded["test_images"]["balanced_accuracy"] >= FLOORS[folder]


@pytest.mark.slow
def test_score_uses_the_default_bundle(spark, tmp_path, small_image, capsys):
    out = tmp_path / "run"
    assert score.main(["--image", small_image, "--out", str(out), "--quiet"]) == 0
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["model"]["source"] == BUNDLE
    assert manifest["model"]["sha256"] == load_bundle(BUNDLE).sha256
    assert "tilescan: 250x173 px" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("picture", ["noise", "grey"])
def test_the_default_finds_next_to_nothing_in_noise_and_flat_grey(picture, spark, tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = (rng.integers(0, 256, (2000, 2000, 3), dtype=np.uint8) if picture == "noise"
              else np.full((2000, 2000, 3), 128, dtype=np.uint8))
    image = tmp_path / f"{picture}.png"
    Image.fromarray(pixels).save(image, compress_level=1)
    out = tmp_path / "run"
    assert score.main(["--image", str(image), "--out", str(out), "--master", spark.sparkContext.master,
                       "--quiet"]) == 0, capsys.readouterr().err
    manifest = json.load(open(out / "manifest.json"))
    bundle = load_bundle(BUNDLE)
    stride = default_stride(bundle.spec, bundle.recommended)
    assert manifest["parameters"]["stride"] == stride
    assert manifest["counts"]["windows_scored"] == WindowGrid(2000, 2000, 32, stride).n_windows
    assert manifest["counts"]["boxes"] <= 5, manifest["counts"]
