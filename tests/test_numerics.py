"""engines.numerics and the engine cache: every engine load runs the bundle's golden batch; a
disagreement is one line naming the host, CPU, instruction sets, engine, numbers and remedy."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from core.bundle import load_bundle
from core.cpu import this_cpu
from engines import NumericsError, create_engine
from engines.numerics import FAILED, PASSED, UNCHECKED, check_engine
from tests.helpers import copy_bundle, tamper_golden


@pytest.mark.parametrize("engine", ["onnxruntime", "mxnet"])
def test_every_engine_passes_the_check_as_it_loads(engine, detector_bundle):
    if engine == "mxnet":
        pytest.importorskip("mxnet")
    check = create_engine(detector_bundle, engine).numerics
    assert check.status == PASSED and check.engine == engine and check.precision == "float32"
    assert check.windows == 48 and check.cpu == this_cpu()
    assert check.tolerance.admits(check.difference) and check.difference.delta_max is not None
    assert 0 < check.seconds < 1  # a few dozen windows: milliseconds
    assert f"{engine} on {this_cpu().host} ({this_cpu().describe()}): passed on 48 golden windows" in check.summary()


def test_an_engine_that_strays_fails_with_one_line_naming_where_and_how_far(detector_bundle_dir, tmp_path):
    bundle = load_bundle(tamper_golden(copy_bundle(detector_bundle_dir, tmp_path / "b"), shift=0.01))
    with pytest.raises(NumericsError) as failed:
        create_engine(bundle, "onnxruntime")
    line, cpu = str(failed.value), this_cpu()
    assert "\n" not in line
    assert line.startswith(f"onnxruntime on {cpu.host} ({cpu.model}; {cpu.isa_text()}) answers unlike the model "
                           "on its 48 golden windows: probabilities off by up to 0.01 (mean 0.01; allowed 0.0001 / "
                           "1e-05), box deltas by up to 0 (allowed 0.001); "), line
    assert line.endswith("check this host's onnxruntime installation, and that model.json's contract is the one its "
                         "golden batch was made with")
    check = failed.value.check
    assert check.failed and check.difference.probability_max == pytest.approx(0.01, abs=1e-6)
    # It crosses from executors to the driver: pickled, and recorded as JSON.
    assert pickle.loads(pickle.dumps(check)) == check
    assert json.loads(json.dumps(check.to_json()))["status"] == FAILED


def test_a_failing_int8_engine_points_to_float32(detector_bundle_dir, tmp_path):
    pytest.importorskip("onnxruntime.quantization")
    from training.quantize import add_int8_model

    folder = copy_bundle(detector_bundle_dir, tmp_path / "b")
    add_int8_model(folder, np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), np.uint8))
    tamper_golden(folder, tolerance={"int8": {"probability_max": 1e-9}})
    bundle = load_bundle(folder)
    assert create_engine(bundle, "onnxruntime").numerics.status == PASSED  # float32 keeps its own tolerance
    with pytest.raises(NumericsError) as failed:
        create_engine(bundle, "onnxruntime-int8")
    cause = "" if this_cpu().exact_int8 else "int8 kernels without VNNI saturate: "
    assert str(failed.value).startswith("onnxruntime-int8 on ")
    assert str(failed.value).endswith(f"; {cause}use --engine onnxruntime (float32)")


def test_the_line_stays_whole_for_long_host_and_cpu_names():
    from core.cpu import CpuInfo
    from core.golden import Difference, Tolerance
    from core.redaction import redact
    from engines.numerics import NumericsCheck

    cpu = CpuInfo("wn3-spark-worker-17.internal.cloudapp.net.example", "AMD EPYC 7763 64-Core Processor", ("AVX2",))
    check = NumericsCheck("onnxruntime-int8", "int8", FAILED, cpu, 48, Difference(0.853, 0.1502, 0.2),
                          Tolerance(0.404, 0.0631, 0.0441))
    line = str(NumericsError(check))
    assert redact(line) == line  # the CLI's error line keeps it all (it cuts at 400 characters)
    assert "(AMD EPYC 7763 64-Core Processor; AVX2, no VNNI)" in line and "off by up to 0.85 (mean 0.15; " \
        "allowed 0.4 / 0.063), box deltas by up to 0.2 (allowed 0.044)" in line
    assert line.endswith("int8 kernels without VNNI saturate: use --engine onnxruntime (float32)")


def test_a_bundle_made_before_golden_batches_is_loaded_unchecked(detector_bundle_dir, tmp_path):
    folder = copy_bundle(detector_bundle_dir, tmp_path / "b")
    doc = json.load(open(f"{folder}/model.json"))
    del doc["golden"], doc["files"]["golden"]
    json.dump(doc, open(f"{folder}/model.json", "w"))
    check = create_engine(load_bundle(folder), "onnxruntime").numerics
    assert check.status == UNCHECKED and "carries no golden batch" in check.reason
    assert "not checked (the bundle carries no golden batch" in check.summary()


def test_an_engine_whose_precision_has_no_tolerance_is_unchecked(detector_bundle):
    engine = create_engine(detector_bundle, "onnxruntime", check=False)
    assert engine.numerics is None
    engine.precision = "int8"  # as an int8 engine of a bundle whose golden batch predates its int8 model
    check = check_engine(engine, detector_bundle.golden)
    assert check.status == UNCHECKED and "no tolerance for int8 engines" in check.reason


def test_a_worker_keeps_a_failed_check_and_does_not_check_again(detector_bundle_dir, tmp_path):
    from engines import cache

    bundle = load_bundle(tamper_golden(copy_bundle(detector_bundle_dir, tmp_path / "b"), shift=0.2))
    loads = []

    def load():
        loads.append(1)
        return bundle

    for _ in range(2):
        with pytest.raises(NumericsError, match="onnxruntime on"):
            cache.cached_engine(bundle.sha256, load, "onnxruntime", 1)
    assert len(loads) == 1
