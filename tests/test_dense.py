"""The dense path: a padding-free network scores a band's every window in one pass, each exactly
as scored alone; a bundle declaring a dense stride it does not keep is refused when it loads;
a run takes the dense path when it can, says so, and gets the per-window path's scores."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.bundle import load_bundle, update_model_json
from core.errors import BundleError
from engines import create_engine
from engines.dense import check_dense
from scoring.paths import DENSE_PASS_PIXELS
from scoring.windows import dense_passes, score_strip, score_strip_dense
from tiling import WindowGrid
from tiling.strips import plan_strips

TOLERANCE = 1e-4  # the bar for float32


@pytest.fixture(scope="module")
def dense_engine(dense_bundle_dir):
    return create_engine(load_bundle(dense_bundle_dir), "onnxruntime")


def test_a_band_pass_scores_every_window_as_scored_alone(dense_engine):
    rng = np.random.default_rng(0)
    for _ in range(6):
        rows, columns = rng.integers(1, 12, 2)
        band = rng.integers(0, 256, (3, 32 + 4 * (rows - 1), 32 + 4 * (columns - 1)), dtype=np.uint8)
        band[:, : band.shape[1] // 2, : band.shape[2] // 3] = rng.integers(0, 256, (3, 1, 1))  # a flat part
        probs, deltas = dense_engine.detect_band(band)
        assert probs.shape == (rows, columns, 3) and deltas.shape == (rows, columns, 4)
        # Random windows, the band's four corners among them.
        picks = {(0, 0), (0, columns - 1), (rows - 1, 0), (rows - 1, columns - 1)}
        picks |= {tuple(p) for p in rng.integers(0, (rows, columns), (8, 2))}
        for r, c in picks:
            alone_probs, alone_deltas = dense_engine.detect(band[None, :, 4 * r:4 * r + 32, 4 * c:4 * c + 32])
            np.testing.assert_allclose(probs[r, c], alone_probs[0], atol=TOLERANCE)
            np.testing.assert_allclose(deltas[r, c], alone_deltas[0], atol=TOLERANCE)


@pytest.mark.parametrize("stride, edge", [(4, "align"), (8, "align"), (16, "align"), (8, "drop")])
def test_a_strip_scored_in_dense_passes_equals_it_scored_window_by_window(dense_engine, stride, edge):
    rng = np.random.default_rng(stride)
    height, width = 157, 203  # not on any grid: the align policy's last row and column are off it
    picture = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    grid = WindowGrid(height, width, 32, stride, edge)
    for strip in plan_strips(grid, 3):
        pixels = picture[strip.y0:strip.y1]
        alone = score_strip(pixels, strip, grid.xs, 32, dense_engine.detect, batch_size=16)
        # Passes of a few thousand pixels: blocks of the band meet inside it, halos and all.
        dense = score_strip_dense(pixels, strip, grid.xs, 32, dense_engine.detect_band, dense_engine.detect,
                                  stride=stride, dense_stride=4, pass_pixels=3000, batch_size=16)
        assert np.array_equal(dense.origins, alone.origins)
        np.testing.assert_allclose(dense.probs, alone.probs, atol=TOLERANCE)
        np.testing.assert_allclose(dense.deltas, alone.deltas, atol=TOLERANCE)


def test_dense_passes_cover_the_grid_once_within_their_pixels():
    for rows, columns, stride, budget in [(1, 1, 8, 10), (7, 40, 8, 5000), (30, 3, 16, 100_000), (5, 5, 4, 1 << 19)]:
        seen = np.zeros((rows, columns), int)
        for r0, r1, c0, c1 in dense_passes(rows, columns, 32, stride, budget):
            seen[r0:r1, c0:c1] += 1
            height, width = 32 + (r1 - r0 - 1) * stride, 32 + (c1 - c0 - 1) * stride
            assert height * width <= budget or r1 - r0 == 1 and c1 - c0 == 1 or (r1 - r0 == 1 and width <= budget)
        assert (seen == 1).all()


def test_the_load_check_proves_a_dense_network_exact(dense_engine):
    check = check_dense(dense_engine)
    assert check.stride == 4 and check.windows == 35 and check.difference <= TOLERANCE


def _sees_the_whole_band(folder):
    """Rewrite the bundle's graph so that its first convolution's output has its mean over the
    input taken away: same shapes, but a window's scores then depend on the whole band."""
    import onnx
    from onnx import helper

    path = os.path.join(folder, "model.onnx")
    model = onnx.load(path)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    produced = conv.output[0]
    for node in model.graph.node:
        node.input[:] = [f"{produced}_centred" if name == produced else name for name in node.input]
    at = list(model.graph.node).index(conv) + 1
    model.graph.initializer.append(helper.make_tensor("spatial_axes", onnx.TensorProto.INT64, [2], [2, 3]))
    model.graph.node.insert(at, helper.make_node("ReduceMean", [produced, "spatial_axes"], [f"{produced}_mean"]))
    model.graph.node.insert(at + 1, helper.make_node("Sub", [produced, f"{produced}_mean"], [f"{produced}_centred"]))
    onnx.save(model, path)
    doc = json.load(open(os.path.join(folder, "model.json")))
    doc["files"] = {k: v for k, v in doc["files"].items() if k == "onnx"}  # its golden batch no longer holds
    del doc["golden"]
    json.dump(doc, open(os.path.join(folder, "model.json"), "w"))
    update_model_json(folder)  # the graph's new sha256


def test_a_bundle_whose_band_pass_is_not_exact_is_refused_in_one_line(dense_bundle_dir, tmp_path):
    from engines.preflight import preflight

    folder = str(tmp_path / "bundle")
    shutil.copytree(dense_bundle_dir, folder)
    _sees_the_whole_band(folder)
    bundle = load_bundle(folder)
    with pytest.raises(BundleError) as refused:
        preflight(bundle, "onnxruntime", batch_size=16)
    message = str(refused.value)
    assert "\n" not in message and "dense.stride 4" in message and "remove `dense`" in message


def test_a_declared_stride_the_graph_does_not_have_is_refused(dense_bundle_dir, tmp_path):
    from bundling.check import check_bundle

    folder = str(tmp_path / "bundle")
    shutil.copytree(dense_bundle_dir, folder)
    doc = json.load(open(os.path.join(folder, "model.json")))
    doc["dense"] = {"stride": 8}  # its poolings make it 4
    json.dump(doc, open(os.path.join(folder, "model.json"), "w"))
    with pytest.raises(BundleError, match="declares dense.stride 8, but the model fails on a band"):
        check_bundle(folder)
    doc["dense"] = {"stride": 4}
    json.dump(doc, open(os.path.join(folder, "model.json"), "w"))
    assert "dense at stride 4: a 48x56 band's 35 windows as scored alone" in "\n".join(check_bundle(folder))


def test_a_dense_bundle_with_a_fixed_batch_axis_is_refused_saying_so(dense_bundle_dir, tmp_path):
    import onnx

    from bundling.check import check_bundle

    folder = str(tmp_path / "bundle")
    shutil.copytree(dense_bundle_dir, folder)
    path = os.path.join(folder, "model.onnx")
    model = onnx.load(path)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 16  # exported for batches of 16 windows
    onnx.save(model, path)
    update_model_json(folder)
    with pytest.raises(BundleError) as refused:
        check_bundle(folder)
    assert str(refused.value) == (f"model bundle {folder}: model.json declares dense.stride 4, but the model's "
                                  "batch axis is fixed at 16: export it with a dynamic batch axis, height and "
                                  "width, or remove `dense` from model.json")


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.parametrize("strips", [1, 5])
def test_a_run_takes_the_dense_path_says_so_and_scores_as_window_by_window(spark, tmp_path, small_image,
                                                                           dense_bundle_dir, strips):
    from scoring.params import ScoreParams
    from scoring.pipeline import prepare, run

    def scored(name, **kwargs):
        out = tmp_path / name
        manifest = run(prepare(ScoreParams(image=small_image, out=str(out), model=dense_bundle_dir, stride=8,
                                           keep=0.0, strips=strips, quiet=True, **kwargs)), spark)
        table = pq.read_table(out / "windows.parquet").sort_by([("y", "ascending"), ("x", "ascending")])
        return manifest, table

    dense_manifest, dense = scored("dense")
    alone_manifest, alone = scored("alone", dense=False)
    assert dense_manifest["scoring"] == {"path": "dense", "dense_stride": 4, "pass_pixels": DENSE_PASS_PIXELS}
    assert alone_manifest["scoring"] == {"path": "per-window", "reason": "--no-dense"}
    assert dense_manifest["model"]["self_check"]["dense"]["stride"] == 4
    # 250 x 173 at stride 8: 28 + 1 columns and 18 + 1 rows, the last of each off the grid.
    assert dense.num_rows == alone.num_rows == 29 * 19 == dense_manifest["counts"]["windows_scored"]
    for name in ("x", "y", "strip"):
        assert dense.column(name).equals(alone.column(name))
    for name in ("p_car", "p_boat", "p_background", "box_x0", "box_y0", "box_x1", "box_y1"):
        np.testing.assert_allclose(dense.column(name).to_numpy(), alone.column(name).to_numpy(), atol=TOLERANCE)


def test_a_stride_off_the_dense_grid_goes_window_by_window_and_says_why(dense_bundle_dir):
    from scoring.paths import scoring_path

    spec = load_bundle(dense_bundle_dir).spec
    assert scoring_path(spec, stride=6) == {"path": "per-window", "reason": "--stride 6 is not a multiple of the "
                                                                            "model's dense stride 4"}
    assert scoring_path(spec, stride=12)["path"] == "dense"


def test_your_own_padding_free_model_gets_the_dense_path_and_a_padded_one_is_refused(dense_bundle_dir,
                                                                                   detector_bundle_dir, tmp_path):
    from bundling import create_bundle
    from scoring.paths import scoring_path

    def made(source, name):
        return create_bundle(str(tmp_path / name), onnx=os.path.join(source, "model.onnx"),
                             classes="car,boat,background", background="background", size=32,
                             mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), boxes=True, dense_stride=4)

    created = made(dense_bundle_dir, "mine")
    assert created.spec.dense_stride == 4 and scoring_path(created.spec, stride=8)["path"] == "dense"
    assert "dense at stride 4: a 48x56 band's 35 windows as scored alone" in "\n".join(created.lines)
    # A ResNet pads its convolutions and pools globally: no band pass at all, refused in one line.
    with pytest.raises(BundleError, match="declares dense.stride 4, but"):
        made(detector_bundle_dir, "padded")
    assert not os.path.exists(tmp_path / "padded")


def test_a_model_that_recommends_a_stride_sets_the_default_and_a_bad_one_is_refused(dense_bundle_dir):
    from scoring.params import ScoreParams, check_recommended

    spec = load_bundle(dense_bundle_dir).spec
    params = ScoreParams(image="a.png", out="out")
    assert params.for_model(spec).stride == 16  # half the window, as before
    assert params.for_model(spec, {"stride": 8}).stride == 8
    assert ScoreParams(image="a.png", out="out", stride=12).for_model(spec, {"stride": 8}).stride == 12
    for bad in (0, 2.5, "8", True):
        with pytest.raises(BundleError, match="recommended.stride must be a whole number of pixels >= 1"):
            check_recommended({"stride": bad}, spec)
