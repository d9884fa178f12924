"""Model bundles and engines: the contract, the checksums, and engine agreement."""
from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest

from core.bundle import load_bundle
from core.errors import BundleError, TilescanError
from engines import ENGINES, create_engine, engine_class
from engines.cache import cached_engine, clear
from scoring.windows import score_strip, window_batches
from tiling import WindowGrid, plan_strips


def random_windows(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_contract(random_bundle, name):
    missing = set(engine_class(name).required_files) - set(random_bundle.files)
    if missing:
        pytest.skip(f"the random bundle has no {', '.join(sorted(missing))} file (see tests/test_quantize.py)")
    if name == "mxnet":
        pytest.importorskip("mxnet", reason="the MXNet engine is the train extra")
    engine = create_engine(random_bundle, name)
    probs = engine.predict(random_windows(37))
    assert probs.shape == (37, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match=r"windows must be uint8 \(N, 3, 32, 32\)"):
        engine.predict(random_windows(2).astype(np.float32))


def test_onnxruntime_and_mxnet_agree(random_bundle):
    pytest.importorskip("mxnet", reason="the MXNet engine is the train extra")
    windows = random_windows(300, seed=5)
    onnx = create_engine(random_bundle, "onnxruntime").predict(windows)
    mxnet = create_engine(random_bundle, "mxnet").predict(windows)
    np.testing.assert_allclose(onnx, mxnet, atol=1e-4)


def test_batch_composition_does_not_change_scores(random_bundle):
    engine = create_engine(random_bundle, "onnxruntime")
    windows = random_windows(64, seed=2)
    together = engine.predict(windows)
    alone = np.concatenate([engine.predict(windows[i:i + 1]) for i in range(64)])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_unknown_engine_lists_the_valid_ones():
    with pytest.raises(TilescanError, match="choose one of: onnxruntime, mxnet"):
        engine_class("tensorrt")


def test_engine_output_shape_is_checked(random_bundle):
    engine = create_engine(random_bundle, "onnxruntime")
    engine.forward = lambda batch: np.zeros((len(batch), 2), np.float32)
    with pytest.raises(ValueError, match=r"returned shape \(4, 2\), expected \(4, 3\)"):
        engine.predict(random_windows(4))


def test_cache_loads_once_per_key(random_bundle):
    clear()
    calls = []

    def source():
        calls.append(1)
        return random_bundle

    first = cached_engine(random_bundle.sha256, source, "onnxruntime", 1)
    assert cached_engine(random_bundle.sha256, source, "onnxruntime", 1) is first
    assert cached_engine(random_bundle.sha256, source, "onnxruntime", 2) is not first
    assert len(calls) == 2


def test_tampered_file_fails_its_checksum(random_bundle_dir, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(random_bundle_dir, copy)
    with open(copy / "model.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="model.onnx does not match its sha256"):
        load_bundle(str(copy))


def test_missing_bundle_and_missing_file(random_bundle_dir, tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(str(tmp_path / "nowhere"))
    copy = tmp_path / "bundle"
    shutil.copytree(random_bundle_dir, copy)
    os.remove(copy / "model-0000.params")
    with pytest.raises(BundleError, match="model-0000.params is missing"):
        load_bundle(str(copy))


def test_model_json_contract(random_bundle_dir):
    doc = json.load(open(os.path.join(random_bundle_dir, "model.json")))
    assert doc["classes"] == ["car", "boat", "background"]
    assert doc["input"]["channel_order"] == "RGB" and doc["input"]["layout"] == "NCHW"
    assert doc["input"]["size"] == [32, 32] and len(doc["input"]["mean"]) == 3
    assert set(doc["files"]) == {"onnx", "mxnet-symbol", "mxnet-params", "golden"}
    assert doc["golden"]["file"] == "golden" and set(doc["golden"]["tolerance"]) == {"float32"}


def test_window_batches_are_the_windows_row_major():
    pixels = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    grid = WindowGrid(70, 90, 32, 16)
    seen = []
    for origins, batch in window_batches(pixels, grid.ys, grid.xs, 32, batch_size=5):
        assert batch.shape[1:] == (3, 32, 32)
        # Laid out as NCHW, not a view of the band's channels-last bytes: the engine's
        # normalisation of a channels-last batch took a twentieth of its time.
        assert batch.flags.c_contiguous
        for (x, y), window in zip(origins, batch):
            np.testing.assert_array_equal(window, pixels[y:y + 32, x:x + 32].transpose(2, 0, 1))
            seen.append((x, y))
    assert seen == [tuple(o) for o in grid.origins()]


def test_score_strip_with_a_fake_engine_keeps_order():
    pixels = np.random.default_rng(1).integers(0, 256, (100, 80, 3), dtype=np.uint8)
    grid = WindowGrid(100, 80, 32, 16)
    # A numpy closure stands in for a model: "probability" = mean of the window's red channel.
    def fake(batch):
        red = batch[:, 0].mean(axis=(1, 2)) / 255
        return np.stack([red, 1 - red], 1), None
    for strip in plan_strips(grid, 3):
        scores = score_strip(pixels[strip.y0:strip.y1], strip, grid.xs, 32, fake, batch_size=4)
        for (x, y), p in zip(scores.origins, scores.probs):
            assert p[0] == pytest.approx(pixels[y:y + 32, x:x + 32, 0].mean() / 255)


def test_the_mxnet_engine_without_mxnet_says_how_to_install_it(random_bundle, monkeypatch):
    from engines import EngineUnavailable

    monkeypatch.setitem(sys.modules, "mxnet", None)  # as where it is not installed
    with pytest.raises(EngineUnavailable, match=r"^--engine mxnet needs MXNet.*pip install 'tilescan\[train\]'"):
        create_engine(random_bundle, "mxnet")
