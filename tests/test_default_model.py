"""The committed default bundle: it verifies, its engines agree, its recorded results hold,
and score.py uses it when no --model is given."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from app import score
from core.bundle import load_bundle
from engines import create_engine
from scoring.params import DEFAULT_MODEL
from tests.conftest import DATA, needs_cifar

BUNDLE = DEFAULT_MODEL


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE)


def test_default_bundle_verifies(bundle):
    assert bundle.spec.classes == ("car", "boat", "background")
    assert bundle.spec.size == 32 and bundle.spec.channel_order == "RGB"
    assert {"onnx", "mxnet-symbol", "mxnet-params", "onnx-int8"} <= set(bundle.files)


@needs_cifar
def test_default_bundle_engines_agree_and_results_reproduce(bundle):
    from tilesets import load_cifar
    from training.held_out import evaluate_bundle

    test = load_cifar(os.path.join(DATA, "cifar10"), "test")
    windows = np.ascontiguousarray(test.images[:512].transpose(0, 3, 1, 2))
    onnx = create_engine(bundle, "onnxruntime").predict(windows)
    np.testing.assert_allclose(create_engine(bundle, "mxnet").predict(windows), onnx, atol=1e-4)
    int8 = create_engine(bundle, "onnxruntime-int8").predict(windows)
    assert (int8.argmax(axis=1) == onnx.argmax(axis=1)).mean() > 0.97

    recorded = json.load(open(os.path.join(BUNDLE, "evaluation.json")))
    results = evaluate_bundle(bundle, os.path.join(DATA, "cifar10"))
    assert results["test_images"] == recorded["test_images"]
    assert results["test_canvas_tiles"] == recorded["test_canvas_tiles"]
    assert recorded["test_images"]["balanced_accuracy"] >= 0.95


@pytest.mark.slow
def test_score_uses_the_default_bundle(spark, tmp_path, small_image, capsys):
    out = tmp_path / "run"
    assert score.main(["--image", small_image, "--out", str(out), "--quiet"]) == 0
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["model"]["source"] == BUNDLE
    assert manifest["model"]["sha256"] == load_bundle(BUNDLE).sha256
    assert "tilescan: 250x173 px" in capsys.readouterr().out
