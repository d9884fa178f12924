"""The int8 option: add_int8_model writes a verified bundle file, the int8 engine agrees with fp32."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from core.bundle import load_bundle, sha256_hex
from core.errors import BundleError
from engines import create_engine


def smooth_images(count: int, seed: int) -> np.ndarray:
    """``(count, 32, 32, 3)`` uint8: blocky colour noise, nearer to pictures than white noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)


@pytest.fixture
def quantization():
    """onnxruntime.quantization, which needs onnx and ml_dtypes besides onnxruntime."""
    return pytest.importorskip("onnxruntime.quantization")


@pytest.fixture
def bundle_copy(random_bundle_dir, tmp_path) -> str:
    folder = str(tmp_path / "bundle")
    shutil.copytree(random_bundle_dir, folder)
    return folder


def test_add_int8_model_writes_a_verified_file(quantization, bundle_copy):
    from engines.onnx_int8 import INT8_FILE, INT8_KEY
    from training.quantize import add_int8_model

    before = json.load(open(os.path.join(bundle_copy, "model.json")))
    bundle_id = add_int8_model(bundle_copy, smooth_images(48, seed=1))
    raw = open(os.path.join(bundle_copy, "model.json"), "rb").read()
    after = json.loads(raw)
    assert bundle_id == sha256_hex(raw)
    assert after["files"][INT8_KEY]["path"] == INT8_FILE
    # The golden windows and the float model's outputs on them stay; the int8 model gains a tolerance.
    assert {k: v for k, v in after["files"].items() if k != INT8_KEY} == before["files"]
    assert {k: v for k, v in after.items() if k not in ("files", "int8", "golden")} == {
        k: v for k, v in before.items() if k not in ("files", "golden")}  # the spec and other keys kept as they were
    assert set(after["golden"]["tolerance"]) == {"float32", "int8"}
    assert after["golden"]["tolerance"]["float32"] == before["golden"]["tolerance"]["float32"]
    assert after["int8"]["calibration_images"] == 48 and after["int8"]["reduce_range"] is True
    bundle = load_bundle(bundle_copy)  # verifies every file against its sha256
    assert bundle.sha256 == bundle_id
    import onnx

    ops = {node.op_type for node in onnx.load_from_string(bundle.file(INT8_KEY)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops  # QDQ, the default format
    assert "BatchNormalization" not in ops  # folded into the convolutions before quantising


@pytest.mark.parametrize("quant_format", ["qdq", "qoperator"])
def test_int8_engine_agrees_with_float(quantization, bundle_copy, quant_format):
    from training.quantize import add_int8_model

    add_int8_model(bundle_copy, smooth_images(64, seed=2), quant_format=quant_format)
    bundle = load_bundle(bundle_copy)
    windows = np.ascontiguousarray(smooth_images(200, seed=3).transpose(0, 3, 1, 2))
    fp32 = create_engine(bundle, "onnxruntime").predict(windows)
    int8 = create_engine(bundle, "onnxruntime-int8", threads=2).predict(windows)
    assert int8.shape == fp32.shape == (200, len(bundle.spec.classes))
    assert int8.dtype == np.float32
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-4)
    assert (int8.argmax(axis=1) == fp32.argmax(axis=1)).mean() >= 0.9
    # A random network's probabilities vary little between windows (and its argmax hardly
    # at all), so also require int8 to follow fp32's variation, class by class.
    for k in range(fp32.shape[1]):
        assert np.corrcoef(fp32[:, k], int8[:, k])[0, 1] > 0.95


def test_rerunning_replaces_the_int8_model(quantization, bundle_copy):
    from training.quantize import add_int8_model

    add_int8_model(bundle_copy, smooth_images(16, seed=4), quant_format="qdq")
    second = add_int8_model(bundle_copy, smooth_images(16, seed=4), quant_format="qoperator", per_channel=False)
    doc = json.load(open(os.path.join(bundle_copy, "model.json")))
    assert doc["int8"]["format"] == "qoperator" and doc["int8"]["per_channel"] is False
    assert load_bundle(bundle_copy).sha256 == second


@pytest.mark.parametrize("images, message", [
    (np.zeros((4, 32, 32, 3), np.float32), "uint8"),
    (np.zeros((4, 3, 32, 32), np.uint8), r"\(N >= 1, 32, 32, 3\)"),
    (np.zeros((0, 32, 32, 3), np.uint8), "N >= 1"),
])
def test_bad_calibration_images_are_refused(bundle_copy, images, message):
    from training.quantize import add_int8_model

    with pytest.raises(ValueError, match=message):
        add_int8_model(bundle_copy, images)


def test_bad_options_are_refused(bundle_copy, tmp_path):
    from training.quantize import add_int8_model

    images = smooth_images(4, seed=5)
    with pytest.raises(ValueError, match="quant_format"):
        add_int8_model(bundle_copy, images, quant_format="int4")
    with pytest.raises(ValueError, match="batch_size"):
        add_int8_model(bundle_copy, images, batch_size=0)
    with pytest.raises(ValueError, match="bundle_dir"):
        add_int8_model(str(tmp_path / "missing"), images)


def test_int8_engine_needs_the_int8_file(random_bundle):
    with pytest.raises(BundleError, match="onnx-int8"):
        create_engine(random_bundle, "onnxruntime-int8")


def test_calibration_takes_exactly_count_images_even_where_a_class_is_rare():
    from tilesets import LabelledImages
    from training.calibration import calibration_images

    rng = np.random.default_rng(3)
    original = np.array(["automobile"] * 4 + ["ship"] * 6 + ["frog"] * 90)  # car 4 %, boat 6 %
    ids = np.array([str(k) for k in range(len(original))])
    train = LabelledImages(rng.integers(0, 256, (len(original), 32, 32, 3), np.uint8), original, ids, ids)
    for count in (2, 3, 7, 11, 48, 200):
        images = calibration_images(train, count)
        assert images.shape == (count, 32, 32, 3) and images.dtype == np.uint8
        raw = images[:count - count // 2]  # the first part is training images as they are
        assert all(any(np.array_equal(image, known) for known in train.images) for image in raw)
    with pytest.raises(ValueError, match=r"`count` must be from 2 to 200 \(twice the training images\), got 201"):
        calibration_images(train, 201)
