"""docs/own-model.md's export recipes, run as written, each made into a bundle that passes its checks.

Each recipe needs its framework: MXNet is in the test environment; PyTorch and
Keras/TensorFlow are not (they are skipped here, with the reason).
"""
from __future__ import annotations

import os
import re

import pytest

from app import bundle as bundle_cli
from core.bundle import load_bundle
from core.project import ROOT

GUIDE = os.path.join(ROOT, "docs", "own-model.md")
#: What each recipe writes, and the framework it needs.
RECIPES = {"pytorch": ("model.onnx", "torch"), "keras": ("model.onnx", "tf2onnx"),
           "mxnet": ("net-symbol.json", "mxnet")}


def snippet(name: str) -> str:
    text = open(GUIDE).read()
    found = re.search(rf"<!-- snippet: {name} -->\n```python\n(.*?)```", text, re.S)
    assert found, f"docs/own-model.md has no {name} snippet"
    return found.group(1)


def run_snippet(name: str, folder) -> str:
    """Run the guide's ``name`` recipe in ``folder``; the path of the model file it wrote."""
    written, _ = RECIPES[name]
    here = os.getcwd()
    os.chdir(folder)
    try:
        exec(compile(snippet(name), f"docs/own-model.md:{name}", "exec"), {"__name__": f"own_model_{name}"})
    finally:
        os.chdir(here)
    path = os.path.join(folder, written)
    assert os.path.isfile(path), f"the {name} recipe wrote no {written}"
    return str(path)


def test_every_recipe_the_guide_names_is_tested():
    assert set(re.findall(r"<!-- snippet: (\w+) -->", open(GUIDE).read())) == set(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_exports_a_model_the_bundle_command_takes(name, tmp_path, capsys):
    pytest.importorskip(RECIPES[name][1], reason=f"{RECIPES[name][1]} is not installed here")
    model = run_snippet(name, tmp_path)
    out = str(tmp_path / "bundle")
    if name == "mxnet":
        source = ["--mxnet-symbol", model, "--mxnet-params", str(tmp_path / "net-0000.params"), "--size", "32",
                  "--classes", "car,boat,background", "--background", "background"]
    else:
        source = ["--onnx", model, "--classes", "airplane,ship,other", "--background", "other"]
        source += ["--pixel-scale", "0-255"] if name == "keras" else ["--mean", "imagenet", "--std", "imagenet"]
    assert bundle_cli.main(["create", *source, "--output", "logits", "--out", out]) == 0, capsys.readouterr().err
    spec = load_bundle(out).spec
    layout = "NHWC" if name == "keras" else "NCHW"
    assert (spec.size, spec.layout, spec.output) == (32 if name == "mxnet" else 64, layout, "logits")
    assert bundle_cli.main(["check", out]) == 0
