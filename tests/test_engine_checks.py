"""A run checks its engine's numbers on the driver and in every executor's Python worker.

The three outcomes: the check passes (and every manifest says where, on which CPU); it fails
on the driver (one line, exit 2, before Spark; a recommended int8 engine falls back to
float32 instead); it fails on an executor (the same one line on the driver, nothing
committed). Executors that disagree are made two ways: a tampered golden batch broadcast
to them, and Python workers whose ONNX Runtime answers otherwise (tests/executor_faults).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from app import score
from core.cpu import this_cpu
from core.golden import GoldenBatch
from core.project import ROOT, project_path
from engines import NumericsError
from scoring.params import ScoreParams
from scoring.pipeline import prepare, run
from tests.conftest import write_noise_png
from tests.helpers import copy_bundle, tamper_golden

pytestmark = pytest.mark.slow
COMMON = ["--threshold", "0.34", "--keep", "0", "--quiet"]
FAULTS = os.path.join(ROOT, "tests", "executor_faults")


def run_cli(capsys, *args):
    code = score.main(list(args))
    return code, capsys.readouterr().err.strip()


def check_fields(check: dict, engine: str) -> None:
    cpu = this_cpu()
    assert check["engine"] == engine and check["status"] == "passed"
    assert (check["host"], check["model"], check["isa"]) == (cpu.host, cpu.model, list(cpu.isa))
    assert check["windows"] == 48 and check["difference"]["probability_max"] <= 1e-4


@pytest.fixture(scope="module")
def folder_of_pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    for seed, name in enumerate(("a", "b", "c")):
        write_noise_png(folder / f"{name}.png", 120 + 40 * seed, 90, seed=seed)
    return folder


@pytest.fixture(scope="module")
def int8_bundle_dir(detector_bundle_dir, tmp_path_factory):
    """The random detector with an int8 copy (7-bit weights), recommending the int8 engine."""
    pytest.importorskip("onnxruntime.quantization")
    from training.quantize import add_int8_model

    folder = copy_bundle(detector_bundle_dir, tmp_path_factory.mktemp("int8") / "bundle",
                         int8_engine_recommended=True)
    add_int8_model(folder, np.random.default_rng(0).integers(0, 256, (32, 32, 32, 3), np.uint8))
    return folder


# --- it passes: every manifest says where and on which CPU ------------------------------------

def test_every_manifest_records_the_driver_and_each_executor_check(spark, capsys, tmp_path, small_image,
                                                                    folder_of_pictures, random_bundle_dir):
    master = ["--master", spark.sparkContext.master]
    one = tmp_path / "one"
    code, err = run_cli(capsys, "--image", small_image, "--out", str(one), "--model", random_bundle_dir, *master,
                        *COMMON)
    assert code == 0, err
    many = tmp_path / "many"
    code, err = run_cli(capsys, "--image", str(folder_of_pictures), "--out", str(many), "--model", random_bundle_dir,
                        *master, *COMMON)
    assert code == 0, err
    manifests = [json.load(open(one / "manifest.json")), json.load(open(many / "manifest.json")),
                 *(json.load(open(many / name / "manifest.json")) for name in ("a", "b", "c"))]
    for manifest in manifests:
        numerics = manifest["numerics"]
        assert numerics["golden_windows"] == 48 and numerics["tolerance"]["probability_max"] == 1e-4
        check_fields(numerics["driver"], "onnxruntime")
        assert numerics["executors"], "no executor's check recorded"
        for executor in numerics["executors"]:
            check_fields(executor, "onnxruntime")
            assert executor["workers"] >= 1
        assert "fallback" not in numerics and not any("not checked" in note for note in manifest["notes"])


def test_a_bundle_made_before_golden_batches_is_scored_and_said_unchecked(spark, tmp_path, small_image,
                                                                          random_bundle_dir):
    model = copy_bundle(random_bundle_dir, tmp_path / "old")
    doc = json.load(open(os.path.join(model, "model.json")))
    del doc["golden"], doc["files"]["golden"]
    json.dump(doc, open(os.path.join(model, "model.json"), "w"))
    manifest = run(prepare(ScoreParams(image=small_image, out=str(tmp_path / "run"), model=model, quiet=True)), spark)
    numerics = manifest["numerics"]
    assert numerics["golden_windows"] == 0 and numerics["tolerance"] is None
    assert numerics["driver"]["status"] == "unchecked"
    assert {e["status"] for e in numerics["executors"]} == {"unchecked"}
    assert any(note.startswith("the engines' numbers were not checked: the bundle carries no golden batch")
               for note in manifest["notes"])


# --- it fails on the driver ---------------------------------------------------------------------

def test_a_tampered_golden_batch_fails_on_the_driver_in_one_line_before_spark(capsys, tmp_path, small_image,
                                                                              random_bundle_dir, no_spark):
    model = tamper_golden(copy_bundle(random_bundle_dir, tmp_path / "bundle"), shift=0.05)
    out = tmp_path / "run"
    code, err = run_cli(capsys, "--image", small_image, "--out", str(out), "--model", model, *COMMON)
    assert code == 2 and len(err.splitlines()) == 1, err
    cpu = this_cpu()
    assert err.startswith(f"error: onnxruntime on {cpu.host} ({cpu.model}; {cpu.isa_text()}) answers unlike the "
                          "model on its 48 golden windows: probabilities off by up to 0.05"), err
    assert err.endswith("check this host's onnxruntime installation, and that model.json's contract is the one its "
                        "golden batch was made with")
    assert not out.exists()


def test_an_int8_engine_chosen_explicitly_is_never_replaced(capsys, tmp_path, small_image, int8_bundle_dir, no_spark):
    model = tamper_golden(copy_bundle(int8_bundle_dir, tmp_path / "bundle"), tolerance={"int8": {"probability_max": 0}})
    out = tmp_path / "run"
    code, err = run_cli(capsys, "--image", small_image, "--out", str(out), "--model", model,
                        "--engine", "onnxruntime-int8", *COMMON)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: onnxruntime-int8 on") and err.endswith("use --engine onnxruntime (float32)"), err
    assert not out.exists()


def test_a_recommended_int8_engine_that_fails_here_gives_way_to_float32(spark, capsys, tmp_path, small_image,
                                                                        int8_bundle_dir):
    model = tamper_golden(copy_bundle(int8_bundle_dir, tmp_path / "bundle"), tolerance={"int8": {"probability_max": 0}})
    out = tmp_path / "run"
    code, err = run_cli(capsys, "--image", small_image, "--out", str(out), "--model", model,
                        "--master", spark.sparkContext.master, *COMMON)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "the model recommends --engine onnxruntime-int8, but its numbers here differ" \
        in warnings[0] and warnings[0].endswith("this run uses --engine onnxruntime (float32) instead"), err
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["parameters"]["engine"] == "onnxruntime"
    assert manifest["parameters"]["settings_source"]["engine"] == "fallback"
    fallback = manifest["numerics"]["fallback"]
    assert fallback["engine"] == "onnxruntime-int8" and fallback["check"]["status"] == "failed"
    assert fallback["note"] in manifest["notes"]
    check_fields(manifest["numerics"]["driver"], "onnxruntime")
    assert {e["engine"] for e in manifest["numerics"]["executors"]} == {"onnxruntime"}
    assert (out / "_SUCCESS").exists()


# --- it fails on an executor --------------------------------------------------------------------

def tampered_on_executors(prepared, shift: float) -> None:
    """What the executors receive is a golden batch whose references are ``shift`` off; the driver's was right."""
    golden = prepared.bundle.golden
    wrong = GoldenBatch(golden.windows, golden.probabilities + np.float32(shift), golden.deltas, golden.tolerances)
    prepared.bundle = dataclasses.replace(prepared.bundle, golden=wrong)


@pytest.mark.parametrize("collection", [False, True])
def test_an_executor_whose_check_fails_stops_the_run_and_nothing_is_committed(collection, spark, tmp_path,
                                                                               small_image, folder_of_pictures,
                                                                               random_bundle_dir):
    model = copy_bundle(random_bundle_dir, tmp_path / "bundle")  # its own sha256: no worker holds its engine
    out = tmp_path / "run"
    image = str(folder_of_pictures) if collection else small_image
    prepared = prepare(ScoreParams(image=image, out=str(out), model=model, quiet=True))
    assert prepared.numerics.status == "passed"
    tampered_on_executors(prepared, 0.05)
    with pytest.raises(NumericsError) as failed:
        run(prepared, spark)
    assert str(failed.value).startswith("onnxruntime on") and "off by up to 0.05" in str(failed.value)
    assert failed.value.check.cpu == this_cpu()
    found = [os.path.relpath(os.path.join(folder, name), out) for folder, _, names in os.walk(out) for name in names]
    assert not [name for name in found if name.endswith(("_SUCCESS", "manifest.json"))], found
    if not collection:
        assert not out.exists()


@pytest.mark.spark
def test_executors_of_another_answer_fail_the_command_in_one_line(tmp_path, small_image, random_bundle_dir):
    wrapper = tmp_path / "python"
    wrapper.write_text("#!/bin/sh\nexport TILESCAN_TEST_ENGINES_OFF=1\n"
                       f'PYTHONPATH="{FAULTS}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    model = copy_bundle(random_bundle_dir, tmp_path / "bundle")
    out = tmp_path / "run"
    env = {**os.environ, "PYSPARK_PYTHON": str(wrapper), "SPARK_CONF_DIR": project_path("conf")}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "app", "score.py"), "--image", small_image, "--out",
                           str(out), "--model", model, "--master", "local[2]", *COMMON],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 2, done.stderr
    # Besides the JVM's own notice as Spark 4 starts, one line: no Python or Py4J trace.
    errors = [line for line in done.stderr.splitlines() if line.strip() and "jdk.incubator" not in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr and "Py4J" not in done.stderr, done.stderr
    assert errors[0].startswith(f"error: onnxruntime on {this_cpu().host} ("), errors[0]
    assert "answers unlike the model on its 48 golden windows: probabilities off by up to 0.01 (mean 0.01" \
        in errors[0]
    assert not out.exists()
