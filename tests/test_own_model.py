"""A user's own model: made into a bundle by `tilescan-bundle create`, scored as its maker computes
it, refused on the driver with one line when it does not keep its contract, quantised on the
user's own pictures."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from app import bundle as bundle_cli
from app import quantize as quantize_cli
from app import score
from core.bundle import load_bundle
from core.contract import softmax
from core.errors import BundleError
from engines import create_engine
from engines.self_check import self_check
from tests.conftest import write_noise_png
from tests.own_models import foreign_cnn, imagenet_input, onnxruntime_outputs

CLASSES = "airplane,ship,other"


def make_bundle(tmp_path, name="bundle", *extra, **model) -> str:
    """`tilescan-bundle create` on a :func:`foreign_cnn` export, as the issue's user would run it."""
    onnx = foreign_cnn(tmp_path / f"{name}.onnx", **model)
    out = str(tmp_path / name)
    args = ["create", "--onnx", onnx, "--classes", CLASSES, "--background", "other", "--mean", "imagenet",
            "--std", "imagenet", "--output", "logits", "--out", out, *extra]
    assert bundle_cli.main(args) == 0
    return out


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> str:
    """A 230 x 170 picture with structure: blocks of colour over noise, so windows differ."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (170, 230, 3), dtype=np.uint8)
    for _ in range(12):
        x, y = rng.integers(0, 200, 2)
        pixels[y:y + 40, x:x + 50] = rng.integers(0, 256, 3)
    path = tmp_path_factory.mktemp("own") / "scene.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def test_create_reads_the_graph_folds_external_weights_and_writes_a_checked_bundle(tmp_path):
    out = make_bundle(tmp_path)
    assert os.path.exists(tmp_path / "bundle.onnx.data")  # PyTorch's default: weights beside the graph
    assert sorted(os.listdir(out)) == ["MODEL.md", "golden.npz", "model.json", "model.onnx"]
    doc = json.load(open(os.path.join(out, "model.json")))
    assert doc["output"] == "logits"
    assert doc["input"]["size"] == [64, 64] and doc["input"]["layout"] == "NCHW"  # from the graph
    assert doc["input"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert doc["source"]["batch_axis"] == "dynamic"
    import onnx
    from onnx.external_data_helper import uses_external_data

    inlined = onnx.load(os.path.join(out, "model.onnx"), load_external_data=False)
    assert not any(uses_external_data(t) for t in inlined.graph.initializer)
    loaded = load_bundle(out)
    assert loaded.golden is not None and len(loaded.golden) == 48
    assert create_engine(loaded).numerics.status == "passed"
    assert "*To fill*" in open(os.path.join(out, "MODEL.md")).read()


def test_create_refuses_what_the_graph_contradicts_and_writes_nothing(tmp_path, capsys):
    onnx = foreign_cnn(tmp_path / "m.onnx")
    base = ["create", "--onnx", onnx, "--background", "other", "--mean", "imagenet", "--std", "imagenet"]
    cases = [
        (["--classes", "a,b,c,other", "--output", "logits"], "the graph outputs 3 class scores per window, but "
                                                             "--classes names 4"),
        (["--classes", CLASSES, "--output", "logits", "--layout", "NHWC"], "--layout NHWC contradicts the graph"),
        (["--classes", CLASSES, "--output", "logits", "--size", "32"], "--size 32 contradicts the graph"),
        (["--classes", CLASSES], "model.json declares output probabilities, but the model's outputs are not"),
        (["--classes", CLASSES, "--output", "logits", "--mean", "1,2"], "--mean needs 1 or 3 numbers"),
    ]
    for k, (extra, message) in enumerate(cases):
        out = tmp_path / f"out{k}"
        assert bundle_cli.main([*base, *extra, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
        assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(f".out{k}")]


def test_create_refuses_probabilities_declared_as_logits(tmp_path, capsys):
    onnx = foreign_cnn(tmp_path / "m.onnx", softmax=True)
    code = bundle_cli.main(["create", "--onnx", onnx, "--classes", CLASSES, "--background", "other",
                            "--output", "logits", "--out", str(tmp_path / "b")])
    assert code == 2
    assert "the model's outputs are probabilities already" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("layout, batch", [("NCHW", "batch_size"), ("NHWC", "N"), ("NCHW", 1)],
                         ids=["pytorch", "keras-nhwc", "fixed-batch-1"])
def test_own_model_scores_as_its_maker_computes_it(layout, batch, spark, tmp_path, picture, capsys):
    """--model DIR alone: the window (64) and stride (32) come from the model; every window's
    probabilities are softmax(the model's own onnxruntime output) on the same pixels."""
    model = make_bundle(tmp_path, "bundle", layout=layout, batch=batch)
    assert spark.sparkContext.master == "local[2]"  # the tests' loopback session: score.main's getOrCreate takes it
    out = str(tmp_path / "run")
    assert score.main(["--image", picture, "--out", out, "--model", model, "--keep", "0", "--quiet"]) == 0
    capsys.readouterr()
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["parameters"]["window"] == 64 and manifest["parameters"]["stride"] == 32
    assert manifest["model"]["contract"]["output"] == "logits"
    assert manifest["spark"]["task_resources"] == {"cpus": 1}
    assert manifest["model"]["self_check"]["fixed_batch"] == (batch if isinstance(batch, int) else None)
    assert any("fixed batch of 1" in note for note in manifest["notes"]) == isinstance(batch, int)
    table = pq.read_table(os.path.join(out, "windows.parquet")).to_pandas()
    pixels = np.asarray(Image.open(picture).convert("RGB"))
    windows = np.stack([pixels[y:y + 64, x:x + 64] for x, y in zip(table["x"], table["y"])]).transpose(0, 3, 1, 2)
    expected = softmax(onnxruntime_outputs(os.path.join(tmp_path, "bundle.onnx"), imagenet_input(windows, layout)))
    got = table[[f"p_{c}" for c in CLASSES.split(",")]].to_numpy()
    assert len(table) == manifest["counts"]["windows_scored"] > 12  # the edges' aligned windows included
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.parametrize("case, message", [
    ("nhwc_declared_nchw", "the ONNX graph's input is (N, 64, 64, 3), but model.json declares NCHW (N, 3, 64, 64); "
                           "declare input.layout NHWC"),
    ("class_count", "the ONNX graph outputs 3 class scores per window, but model.json names 4 classes"),
    ("logits_as_probabilities", "model.json declares output probabilities, but the model's outputs are not"),
    ("external_weights", "keeps its weights in a separate file (model.onnx.data: PyTorch's default export)"),
    ("unknown_field", "input.resize is not part of the model contract"),
    ("batch_dependent", "a window's scores depend on the other windows in its batch"),
    ("fixed_batch_too_small_output", "outputs 2 class scores per window, but model.json names 3 classes"),
])
def test_mismatched_models_are_refused_on_the_driver(case, message, tmp_path, picture, capsys, no_spark):
    """Bundles written by hand, as before the bundle command: one line, exit 2, nothing written."""
    folder = tmp_path / "hand"
    folder.mkdir()
    layout, classes, output = "NCHW", CLASSES.split(","), "logits"
    model = {}
    if case == "nhwc_declared_nchw":
        model["layout"] = "NHWC"
    elif case == "class_count":
        classes = ["airplane", "ship", "car", "other"]
    elif case == "logits_as_probabilities":
        output = "probabilities"
    elif case == "batch_dependent":
        model["batch_dependent"] = True
    elif case == "fixed_batch_too_small_output":
        model.update(classes=2, batch=1)
        classes = ["airplane", "ship", "other"]
    foreign_cnn(folder / "model.onnx", external=case == "external_weights", **model)
    if case == "fixed_batch_too_small_output":  # the graph's output dim hidden: found by running it
        import onnx

        proto = onnx.load(folder / "model.onnx")
        proto.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"
        onnx.save(proto, folder / "model.onnx")
    from core.bundle import ModelSpec, write_model_json

    spec = ModelSpec("hand", tuple(classes), 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), background="other",
                     layout=layout, output=output)
    write_model_json(str(folder), spec, {"onnx": "model.onnx"})
    if case == "unknown_field":
        doc = json.load(open(folder / "model.json"))
        doc["input"]["resize"] = "bilinear"
        json.dump(doc, open(folder / "model.json", "w"))
    out = tmp_path / "run"
    assert score.main(["--image", picture, "--out", str(out), "--model", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not out.exists()


def test_fixed_batch_model_scores_any_batch_like_a_dynamic_one(tmp_path):
    dynamic = load_bundle(make_bundle(tmp_path, "dynamic"))
    fixed = load_bundle(make_bundle(tmp_path, "fixed", batch=4))
    windows = np.random.default_rng(0).integers(0, 256, (11, 3, 64, 64), dtype=np.uint8)
    engine = create_engine(fixed)
    assert engine.fixed_batch == 4
    assert np.abs(engine.predict(windows) - create_engine(dynamic).predict(windows)).max() <= 1e-6
    assert self_check(engine, 128).fixed_batch == 4


def test_torchvision_pixel_scale_and_uint8_inputs_are_honoured(tmp_path):
    """0-255 pixels with mmcv's mean and std give the same network input as 0-1 with torchvision's."""
    unit = make_bundle(tmp_path, "unit")
    scaled = make_bundle(tmp_path, "scaled", "--pixel-scale", "0-255")
    spec_unit, spec_scaled = load_bundle(unit).spec, load_bundle(scaled).spec
    assert spec_scaled.mean == pytest.approx((123.675, 116.28, 103.53))
    windows = np.random.default_rng(1).integers(0, 256, (5, 3, 64, 64), dtype=np.uint8)
    assert np.abs(spec_unit.network_input(windows) - spec_scaled.network_input(windows)).max() < 1e-5
    with pytest.raises(BundleError, match="a uint8 input takes the pixels as they are"):
        from dataclasses import replace

        replace(spec_unit, dtype="uint8")


def test_bundle_check_passes_a_good_bundle_and_refuses_a_wrong_contract(tmp_path, capsys):
    model = make_bundle(tmp_path)
    capsys.readouterr()
    assert bundle_cli.main(["check", model]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"{model}: bundle, 64x64 NCHW float32 RGB, output logits")
    assert lines[1].startswith("onnxruntime: ") and "passed" in lines[1]
    doc = json.load(open(os.path.join(model, "model.json")))
    doc["output"] = "probabilities"  # a hand edit that would score logits as probabilities
    json.dump(doc, open(os.path.join(model, "model.json"), "w"))
    assert bundle_cli.main(["check", model]) == 2
    assert "declares output probabilities, but the model's outputs are not" in capsys.readouterr().err


def test_bundle_from_mxnet_symbol_and_params(tmp_path, random_bundle_dir, capsys):
    pytest.importorskip("mxnet")
    out = str(tmp_path / "from-mxnet")
    code = bundle_cli.main(["create", "--mxnet-symbol", os.path.join(random_bundle_dir, "model-symbol.json"),
                            "--mxnet-params", os.path.join(random_bundle_dir, "model-0000.params"), "--size", "32",
                            "--classes", "car,boat,background", "--background", "background",
                            "--mean", "0.49,0.48,0.45", "--std", "0.25,0.24,0.26", "--out", out])
    assert code == 0, capsys.readouterr().err
    made, original = load_bundle(out), load_bundle(random_bundle_dir)
    assert {"onnx", "mxnet-symbol", "mxnet-params", "golden"} <= set(made.files)
    windows = np.random.default_rng(2).integers(0, 256, (9, 3, 32, 32), dtype=np.uint8)
    assert np.abs(create_engine(made, "mxnet").predict(windows)
                  - create_engine(original, "onnxruntime").predict(windows)).max() < 1e-4
    capsys.readouterr()
    assert bundle_cli.main(["check", out]) == 0
    assert "mxnet: " in capsys.readouterr().out


@pytest.fixture(scope="module")
def calibration_pictures(tmp_path_factory, picture) -> str:
    folder = tmp_path_factory.mktemp("calibration")
    for k in range(3):
        write_noise_png(folder / f"noise{k}.png", 160, 120, seed=k)
    shutil.copy(picture, folder / "scene.png")
    return str(folder)


@pytest.mark.parametrize("holds", [True, False], ids=["recommended", "not-recommended"])
def test_quantize_on_own_pictures_records_agreement_and_recommends_int8_only_if_it_holds(
        holds, tmp_path, calibration_pictures, capsys, monkeypatch, no_spark):
    import bundling.quantize

    if not holds:  # a tolerance no int8 copy meets
        monkeypatch.setitem(bundling.quantize.AGREEMENT_TOLERANCE, "top1_agreement_min", 1.01)
    model = make_bundle(tmp_path)
    before = json.load(open(os.path.join(model, "model.json")))
    assert quantize_cli.main(["--model", model, "--calibration", calibration_pictures, "--count", "300"]) == 0
    line = capsys.readouterr().out
    doc = json.load(open(os.path.join(model, "model.json")))
    figures = doc["int8"]["agreement"]
    assert figures["calibration_windows"] == 200 and figures["held_out_windows"] == 100
    assert 0 <= figures["top1_agreement"] <= 1 and figures["probability_max"] >= figures["probability_mean"] >= 0
    assert figures["holds"] is holds and ("NOT recommended" in line) is not holds
    assert {k: doc[k] for k in ("input", "output", "classes")} == {k: before[k] for k in ("input", "output", "classes")}
    assert (doc.get("recommended", {}).get("engine") == "onnxruntime-int8") is holds
    assert "int8" in doc["golden"]["tolerance"]
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare

    prepared = prepare(ScoreParams(image=calibration_pictures, out=str(tmp_path / "run"), model=model))
    assert prepared.settings.engine == ("onnxruntime-int8" if holds else "onnxruntime")
    prepared.writer.abort()



def test_quantize_with_a_ground_truth_records_ap50_of_both_engines(tmp_path, calibration_pictures, capsys):
    from bundling.quantize import AGREEMENT_TOLERANCE

    model = make_bundle(tmp_path)
    truth = {"images": [{"id": 7, "file_name": "scene.png", "width": 230, "height": 170}],
             "categories": [{"id": 1, "name": "airplane"}, {"id": 2, "name": "ship"}],
             "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [20, 30, 64, 64], "area": 4096,
                              "iscrowd": 0},
                             {"id": 2, "image_id": 7, "category_id": 2, "bbox": [120, 80, 64, 64], "area": 4096,
                              "iscrowd": 0}]}
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(truth))
    args = ["--model", model, "--calibration", calibration_pictures, "--count", "150", "--truth", str(path)]
    assert quantize_cli.main(args) == 0
    assert "AP50 airplane " in capsys.readouterr().out
    figures = json.load(open(os.path.join(model, "model.json")))["int8"]["agreement"]
    ap = figures["ap50"]
    assert set(ap) == {"float32", "int8"} and set(ap["float32"]) == {"airplane", "ship"}
    kept = all(ap["int8"][c] >= ap["float32"][c] - AGREEMENT_TOLERANCE["ap50_loss_max"] for c in ap["float32"])
    agrees = (figures["top1_agreement"] >= AGREEMENT_TOLERANCE["top1_agreement_min"]
              and figures["probability_mean"] <= AGREEMENT_TOLERANCE["probability_mean_max"])
    assert figures["holds"] is (kept and agrees)
    path.write_text(json.dumps({**truth, "images": [{**truth["images"][0], "file_name": "elsewhere.png"}]}))
    before = open(os.path.join(model, "model.json")).read()
    assert quantize_cli.main(args) == 2
    assert "names none of the --calibration pictures" in capsys.readouterr().err
    assert open(os.path.join(model, "model.json")).read() == before  # refused before anything was written


def test_a_graph_that_takes_8_bit_pixels_gets_them_as_they_are(tmp_path):
    """An exporter's preprocessing inside the graph (uint8 NHWC in): no mean, std or scaling outside it."""
    onnx = foreign_cnn(tmp_path / "u8.onnx", uint8=True, layout="NHWC")
    out = str(tmp_path / "u8")
    assert bundle_cli.main(["create", "--onnx", onnx, "--classes", CLASSES, "--background", "other", "--output",
                            "logits", "--out", out]) == 0
    spec = load_bundle(out).spec
    assert (spec.dtype, spec.layout, spec.pixel_scale) == ("uint8", "NHWC", "0-255")
    assert "mean" not in json.load(open(os.path.join(out, "model.json")))["input"]
    windows = np.random.default_rng(4).integers(0, 256, (9, 3, 64, 64), dtype=np.uint8)
    expected = softmax(onnxruntime_outputs(onnx, np.ascontiguousarray(windows.transpose(0, 2, 3, 1))))
    assert np.abs(create_engine(load_bundle(out)).predict(windows) - expected).max() <= 1e-6
