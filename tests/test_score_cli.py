"""score.py on bad input: one-line errors, exit code 2, nothing left under --out."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from app import score
from core.project import ROOT
from pixels import read_image
from tests.conftest import write_noise_png


def run_cli(capsys, *args):
    code = score.main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "run")


def truncated_png(tmp_path):
    path = write_noise_png(tmp_path / "full.png", 200, 150)
    data = open(path, "rb").read()
    cut = tmp_path / "truncated.png"
    cut.write_bytes(data[: len(data) // 2])
    return str(cut)


def tampered_bundle(src, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(src, copy)
    with open(copy / "model.onnx", "ab") as fh:
        fh.write(b"junk")
    return str(copy)


def bundle_with_size(src, tmp_path, size):
    copy = tmp_path / "size"
    shutil.copytree(src, copy)
    doc = json.load(open(copy / "model.json"))
    doc["input"]["size"] = [size, size]
    del doc["golden"], doc["files"]["golden"]  # its windows are the real model's size: a bundle made before them
    json.dump(doc, open(copy / "model.json", "w"))
    return str(copy)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "image not found"),
        ("not_image", "not an image"),
        ("truncated", "truncated or corrupt"),
        ("too_small", "smaller than the 32x32 window"),
        ("too_many_pixels", "over the limit of 10,000"),
        ("tampered_bundle", "does not match its sha256"),
        ("window_mismatch", "takes 64x64 inputs but --window is 32"),
        ("graph_size_mismatch", "the ONNX graph's input is (N, 3, 32, 32), but model.json declares NCHW "
                                "(N, 3, 64, 64)"),
        ("bad_threshold", "--threshold: values must be in [0, 1]"),
        ("unknown_class", "--threshold names unknown classes ['truck']"),
        ("int8_missing", "has no onnx-int8 file for --engine onnxruntime-int8 (it has: "),
        ("mxnet_missing", "--engine mxnet needs MXNet, which is not installed here: pip install 'tilescan[train]'"),
    ],
)
def test_bad_input(case, message, capsys, tmp_path, out, random_bundle_dir, small_image, no_spark, monkeypatch):
    image, model, extra = small_image, random_bundle_dir, []
    if case == "missing":
        image = str(tmp_path / "nope.png")
    elif case == "not_image":
        image = str(tmp_path / "notes.png")
        open(image, "w").write("these are not pixels\n")
    elif case == "truncated":
        image = truncated_png(tmp_path)
    elif case == "too_small":
        image = write_noise_png(tmp_path / "tiny.png", 40, 20)
    elif case == "too_many_pixels":
        extra = ["--max-pixels", "10000"]
    elif case == "tampered_bundle":
        model = tampered_bundle(random_bundle_dir, tmp_path)
    elif case == "window_mismatch":
        model, extra = bundle_with_size(random_bundle_dir, tmp_path, 64), ["--window", "32"]
    elif case == "graph_size_mismatch":  # model.json says 64, the graph takes 32: found before Spark
        model = bundle_with_size(random_bundle_dir, tmp_path, 64)
    elif case == "bad_threshold":
        extra = ["--threshold", "car=1.5"]
    elif case == "unknown_class":
        extra = ["--threshold", "truck=0.5"]
    elif case == "int8_missing":
        extra = ["--engine", "onnxruntime-int8"]
    elif case == "mxnet_missing":
        monkeypatch.setitem(sys.modules, "mxnet", None)  # as where MXNet is not installed
        monkeypatch.setattr("engines.preflight._passed", {})  # an earlier test's MXNet load in this process
        extra = ["--engine", "mxnet"]
    code, err = run_cli(capsys, "--image", image, "--out", out, "--model", model, *extra)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert len(err.splitlines()) == 1
    assert not os.path.exists(out)


@pytest.mark.parametrize("option, message", [
    ("--out", "--out must name a folder, got ''"),
    ("--image", "--image must name a picture, glob or folder, got ''"),
    ("--images", "--images must name a list file, got ''"),
])
def test_an_empty_name_is_refused_not_taken_as_here(option, message, capsys, tmp_path, random_bundle_dir,
                                                    small_image, no_spark, monkeypatch):
    monkeypatch.chdir(tmp_path)  # '' would otherwise mean the working folder
    given = {"--image": small_image, "--out": str(tmp_path / "run"), option: ""}
    if option == "--images":
        del given["--image"]
    code, err = run_cli(capsys, *[a for pair in given.items() for a in pair], "--model", random_bundle_dir)
    assert code == 2 and err == f"error: {message}"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("given, expected", [
    (0.5, {"*": 0.5}),
    (1, {"*": 1.0}),
    ("car=0.95,boat=0.9", {"car": 0.95, "boat": 0.9}),
    ({"car": 0.95, "*": 0}, {"car": 0.95, "*": 0}),
    (2, "--threshold: values must be in [0, 1], got '2'"),
    ({"car": 1.5}, "--threshold: values must be numbers in [0, 1], got car=1.5"),
    ({"car": "0.9"}, "--threshold: values must be numbers in [0, 1], got car='0.9'"),
    ({"car": True}, "--threshold: values must be numbers in [0, 1], got car=True"),
    ("car=0.5,car=0.6", "--threshold: car is given twice in 'car=0.5,car=0.6'"),
    ("0.5,boat=0.4,0.6", "--threshold: the default is given twice in '0.5,boat=0.4,0.6'"),
])
def test_thresholds_from_python_are_taken_as_on_the_command_line(given, expected):
    from core.errors import TilescanError
    from scoring.params import ScoreParams

    if isinstance(expected, str):
        with pytest.raises(TilescanError, match=f"^{re.escape(expected)}$"):
            ScoreParams(out="run", image="a.png", threshold=given)
    else:
        assert ScoreParams(out="run", image="a.png", threshold=given).threshold == expected


def test_a_batch_too_big_for_a_workers_memory_is_refused():
    from core.errors import TilescanError
    from scoring.params import MAX_BATCH_SIZE, ScoreParams

    assert ScoreParams(out="run", image="a.png", batch_size=MAX_BATCH_SIZE).batch_size == 4096
    with pytest.raises(TilescanError, match=r"^--batch-size must be in \[1, 4096\] \(memory grows with it\), "
                                            r"got 100000$"):
        ScoreParams(out="run", image="a.png", batch_size=100_000)


@pytest.mark.parametrize("given, message", [
    ({"stride": "16"}, "--stride must be an integer, got '16'"),
    ({"stride": True}, "--stride must be an integer, got True"),
    ({"batch_size": 1.5}, "--batch-size must be an integer, got 1.5"),
    ({"keep": "0.5"}, "--keep must be a number, got '0.5'"),
    ({"overwrite": "no"}, "--overwrite must be true or false, got 'no'"),  # a string is truthy: it overwrote
])
def test_options_of_the_wrong_type_from_python_are_one_line(given, message):
    from core.errors import TilescanError
    from scoring.params import ScoreParams

    with pytest.raises(TilescanError, match=f"^{re.escape(message)}$"):
        ScoreParams(out="run", image="a.png", **given)
    assert ScoreParams(out="run", image="a.png", keep=1, merge_iou=None).keep == 1  # an int is a number


def test_colors_from_python_are_taken_as_on_the_command_line():
    from core.errors import TilescanError
    from scoring.params import ScoreParams

    assert ScoreParams(out="run", image="a.png", colors="car=blue").colors == {"car": (0, 0, 255)}
    with pytest.raises(TilescanError, match=r"^--colors: car is given twice in 'car=red, car=blue'$"):
        ScoreParams(out="run", image="a.png", colors="car=red, car=blue")


def test_exit_code_through_a_real_process(tmp_path, random_bundle_dir):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "app", "score.py"), "--image", str(tmp_path / "none.png"),
         "--out", str(out), "--model", random_bundle_dir],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: image not found: {tmp_path / 'none.png'}"]
    assert not out.exists()


def test_finished_run_is_not_overwritten(capsys, tmp_path, out, random_bundle_dir, small_image):
    os.makedirs(out)
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump({"tool": "tilescan", "run_id": "earlier"}, fh)
    open(os.path.join(out, "_SUCCESS"), "w").close()
    code, err = run_cli(capsys, "--image", small_image, "--out", out, "--model", random_bundle_dir)
    assert code == 2 and "already holds a finished run; pass --overwrite" in err
    assert sorted(os.listdir(out)) == ["_SUCCESS", "manifest.json"]
    # --resume keeps a collection's finished pictures; it used to score one picture's finished run again.
    code, err = run_cli(capsys, "--image", small_image, "--out", out, "--model", random_bundle_dir, "--resume")
    assert code == 2 and err == (f"error: {out} already holds a finished run of one picture: --resume has nothing "
                                 "left to score there; pass --overwrite to score it again")
    assert sorted(os.listdir(out)) == ["_SUCCESS", "manifest.json"]


@pytest.mark.parametrize(
    "mode, make, note",
    [
        ("L", lambda a: Image.fromarray(a[:, :, 0]), "grayscale to RGB"),
        ("P", lambda a: Image.fromarray(a).convert("P"), "palette to RGB"),
        ("RGBA", lambda a: Image.fromarray(np.dstack([a, np.full(a.shape[:2], 128, np.uint8)])), "alpha dropped"),
        ("I;16", lambda a: Image.fromarray(a[:, :, 0].astype(np.uint16) * 257), "16-bit grayscale"),
    ],
)
def test_modes_are_converted_to_rgb8(tmp_path, mode, make, note):
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    image = make(pixels)
    assert image.mode == mode
    path = str(tmp_path / "in.png")
    image.save(path)
    rgb, info = read_image(path)
    assert rgb.shape == (40, 50, 3) and rgb.dtype == np.uint8
    assert note in info.converted and info.mode == mode
    if mode in ("L", "I;16"):
        np.testing.assert_array_equal(rgb[:, :, 1], pixels[:, :, 0])
    if mode == "RGBA":
        np.testing.assert_array_equal(rgb, pixels)


def test_plain_rgb_is_untouched(small_image):
    rgb, info = read_image(small_image)
    assert info.converted is None and info.bit_depth == 8
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(small_image)))


def test_without_pyspark_a_run_says_where_spark_comes_from(capsys, tmp_path, random_bundle_dir, small_image,
                                                           monkeypatch):
    from scoring.job import PYSPARK_MISSING

    # As where pyspark is not installed (the package does not require it: a cluster brings its own).
    for name in ("pyspark", "pyspark.sql"):
        monkeypatch.setitem(sys.modules, name, None)
    code, err = run_cli(capsys, "--image", small_image, "--out", str(tmp_path / "run"), "--model", random_bundle_dir,
                        "--master", "local[1]")
    assert code == 2 and err == f"error: {PYSPARK_MISSING}"
    assert not (tmp_path / "run").exists()
