"""The golden batch: its format in a bundle (core.golden), checked at load, and how a bundle gets
one (training.golden): synthetic windows the float model is least sure of, with tolerances."""
from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pytest

from core.bundle import load_bundle, update_model_json
from core.errors import BundleError
from core.golden import Difference, Tolerance, difference, golden_bytes
from engines import create_engine
from tests.helpers import tamper_golden


def rewrite(folder, *, arrays: dict | None = None, record=None) -> str:
    """Replace the golden file's arrays and/or model.json's golden record; sha256s follow."""
    if arrays is not None:
        with open(os.path.join(folder, "golden.npz"), "wb") as fh:
            np.savez(fh, **arrays)
    doc = json.load(open(os.path.join(folder, "model.json")))
    update_model_json(str(folder), golden=doc["golden"] if record is None else record)
    return str(folder)


@pytest.fixture
def copy(detector_bundle_dir, tmp_path):
    folder = tmp_path / "bundle"
    shutil.copytree(detector_bundle_dir, folder)
    return folder


def test_a_bundle_carries_the_golden_batch_it_was_exported_with(detector_bundle):
    golden = detector_bundle.golden
    assert golden.windows.dtype == np.uint8 and golden.windows.shape == (48, 3, 32, 32)
    assert golden.probabilities.shape == (48, 3) and golden.deltas.shape == (48, 4)
    assert golden.tolerance("float32") == Tolerance(1e-4, 1e-5, 1e-3) and golden.tolerance("int8") is None
    # The engine the references came from reproduces them here: same model file, same framework.
    probabilities, deltas = create_engine(detector_bundle, "onnxruntime", check=False).detect(golden.windows)
    assert difference(golden, probabilities, deltas).probability_max < 1e-5
    # What a subset of the bundle (an engine's files, as broadcast) keeps.
    assert detector_bundle.subset(["onnx"]).golden is golden


@pytest.mark.parametrize("case, message", [
    ("no_tolerance", "golden.tolerance must give tolerances for some of float32, int8"),
    ("unknown_precision", "golden.tolerance must give tolerances for some of float32, int8"),
    ("negative_tolerance", "golden.tolerance.float32.probability_max must be a number >= 0, got -1"),
    ("text_tolerance", "golden.tolerance.float32.probability_mean must be a number >= 0, got 'small'"),
    ("unknown_file", "golden.file must name one of `files` ('golden'), got 'elsewhere'"),
    ("windows_of_another_size", "golden windows must be uint8 (N >= 1, 3, 32, 32), got uint8 (2, 3, 16, 16)"),
    ("float_windows", "golden windows must be uint8 (N >= 1, 3, 32, 32), got float32 (2, 3, 32, 32)"),
    ("too_few_classes", "golden probabilities must be float32 (N >= 1, 3), got float32 (2, 2)"),
    ("no_deltas", "golden deltas must be float32 (N >= 1, 4), got missing"),
    ("not_finite", "golden probabilities holds values that are not finite"),
    ("no_windows", "golden windows must be uint8 (N >= 1, 3, 32, 32), got uint8 (0, 3, 32, 32)"),
])
def test_a_golden_batch_that_does_not_fit_the_model_is_refused_at_load(case, message, copy):
    record = json.load(open(copy / "model.json"))["golden"]
    good = {"windows": np.zeros((2, 3, 32, 32), np.uint8), "probabilities": np.full((2, 3), 1 / 3, np.float32),
            "deltas": np.zeros((2, 4), np.float32)}
    if case == "no_tolerance":
        rewrite(copy, record={**record, "tolerance": {}})
    elif case == "unknown_precision":
        rewrite(copy, record={**record, "tolerance": {"int4": record["tolerance"]["float32"]}})
    elif case == "negative_tolerance":
        rewrite(copy, record={**record, "tolerance": {"float32": {"probability_max": -1, "probability_mean": 0}}})
    elif case == "text_tolerance":
        rewrite(copy, record={**record, "tolerance": {"float32": {"probability_max": 1, "probability_mean": "small"}}})
    elif case == "unknown_file":
        rewrite(copy, record={**record, "file": "elsewhere"})
    else:
        arrays = dict(good)
        if case == "windows_of_another_size":
            arrays["windows"] = np.zeros((2, 3, 16, 16), np.uint8)
        elif case == "float_windows":
            arrays["windows"] = np.zeros((2, 3, 32, 32), np.float32)
        elif case == "too_few_classes":
            arrays["probabilities"] = np.zeros((2, 2), np.float32)
        elif case == "no_deltas":
            del arrays["deltas"]
        elif case == "not_finite":
            arrays["probabilities"][1, 2] = np.nan
        elif case == "no_windows":
            arrays = {"windows": np.zeros((0, 3, 32, 32), np.uint8), "probabilities": np.zeros((0, 3), np.float32),
                      "deltas": np.zeros((0, 4), np.float32)}
        rewrite(copy, arrays=arrays)
    with pytest.raises(BundleError) as failed:
        load_bundle(str(copy))
    assert message in str(failed.value) and str(copy) in str(failed.value)


def test_a_golden_file_changed_behind_model_json_is_refused(copy):
    with open(copy / "golden.npz", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="golden.npz does not match its sha256"):
        load_bundle(str(copy))


def test_a_golden_file_that_is_no_npz_is_one_error(copy):
    with open(copy / "golden.npz", "wb") as fh:
        fh.write(b"these are not arrays")
    rewrite(copy)
    with pytest.raises(BundleError, match="the golden batch is not a readable .npz"):
        load_bundle(str(copy))


def test_tolerances_admit_up_to_their_bounds():
    tolerance = Tolerance(0.1, 0.01, 0.05)
    assert tolerance.admits(Difference(0.1, 0.01, 0.05))
    assert not tolerance.admits(Difference(0.11, 0.01, 0.05))
    assert not tolerance.admits(Difference(0.1, 0.011, 0.05))
    assert not tolerance.admits(Difference(0.1, 0.01, 0.06))
    assert tolerance.admits(Difference(0.1, 0.01, None))  # a classifier has no deltas
    assert Tolerance(0.1, 0.01, None).admits(Difference(0.1, 0.01, 5.0))


def test_golden_bytes_round_trip_without_pickle():
    windows = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    data = golden_bytes(windows, np.ones((2, 3)), None)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["probabilities", "windows"]
        np.testing.assert_array_equal(npz["windows"], windows)
        assert npz["probabilities"].dtype == np.float32


# --- training.golden: how a bundle gets its batch ------------------------------------------------

def test_the_batch_is_the_synthetic_windows_the_float_model_is_least_sure_of(detector_bundle):
    from training.golden import CANDIDATES, synthetic_windows

    pool = synthetic_windows(CANDIDATES, 32, np.random.default_rng(0)).transpose(0, 3, 1, 2)
    confidence = create_engine(detector_bundle, "onnxruntime").predict(np.ascontiguousarray(pool)).max(axis=1)
    chosen = {window.tobytes() for window in detector_bundle.golden.windows}
    picked = np.array([window.tobytes() in chosen for window in pool])
    assert picked.sum() == 48
    assert confidence[picked].max() <= confidence[~picked].min()


def test_synthetic_windows_at_any_size():
    from training.golden import synthetic_windows

    for size in (7, 32, 64):
        windows = synthetic_windows(40, size, np.random.default_rng(1))
        assert windows.shape == (40, size, size, 3) and windows.dtype == np.uint8
        assert len({w.tobytes() for w in windows}) > 30  # varied, not one pattern
    np.testing.assert_array_equal(synthetic_windows(8, 16, np.random.default_rng(2)),
                                  synthetic_windows(8, 16, np.random.default_rng(2)))
    with pytest.raises(ValueError, match="`count` must be >= 4"):
        synthetic_windows(3, 32, np.random.default_rng(0))


def test_making_the_batch_again_gives_the_same_file(copy):
    from training.golden import add_golden_batch

    before = open(copy / "golden.npz", "rb").read()
    add_golden_batch(str(copy))
    assert open(copy / "golden.npz", "rb").read() == before
    with pytest.raises(ValueError, match=r"`count` must be in \[1, 2048\], got 0"):
        add_golden_batch(str(copy), count=0)


def test_the_int8_tolerance_is_twice_what_the_int8_model_showed_with_floors(copy):
    pytest.importorskip("onnxruntime.quantization")
    from training.golden import INT8_FLOOR, INT8_MARGIN
    from training.quantize import add_int8_model

    rng = np.random.default_rng(4)
    add_int8_model(str(copy), np.repeat(np.repeat(rng.integers(0, 256, (32, 8, 8, 3), np.uint8), 4, 1), 4, 2))
    record = json.load(open(copy / "model.json"))["golden"]
    measured, tolerance = record["measured"]["int8"], record["tolerance"]["int8"]
    for name, floor in (("probability_max", INT8_FLOOR.probability_max),
                        ("probability_mean", INT8_FLOOR.probability_mean), ("delta_max", INT8_FLOOR.delta_max)):
        assert tolerance[name] == pytest.approx(max(INT8_MARGIN * measured[name], floor))
    bundle = load_bundle(str(copy))
    assert create_engine(bundle, "onnxruntime-int8").numerics.status == "passed"


def test_tamper_golden_keeps_the_bundle_verifiable(copy):
    tamper_golden(copy, shift=0.5, tolerance={"float32": {"probability_max": 0.25}})
    bundle = load_bundle(str(copy))
    assert bundle.golden.tolerance("float32").probability_max == 0.25
    assert bundle.golden.probabilities.min() >= 0.5
