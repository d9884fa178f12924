"""The exploration notebook runs top to bottom on a small run, and is committed without outputs."""
from __future__ import annotations

import ast
import base64
import io
import json
import os
import re
import warnings

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from collage import CollageParams, build_collage, ground_truth
from core.project import ROOT
from evaluation import detection_errors, figures, heatmap, runs
from evaluation.metrics import box_metrics
from evaluation.regions import auto_regions, regions_from_xywh
from scoring.params import ScoreParams
from scoring.pipeline import prepare, run
from tilesets import FOREGROUND_CLASSES, load_image_folder
from tiling.box import Box

NOTEBOOK = os.path.join(ROOT, "notebooks", "explore_detections.ipynb")
PARAMETERS = ("RUN", "TRUTH", "REGIONS", "EXPORT_DIR")
# The random-weights bundle scores every window near 0.38 car, 0.34 boat: these split them.
THRESHOLDS = {"car": 0.377, "boat": 0.34}


def parameters_cell(nb) -> nbformat.NotebookNode:
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return cell


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert [(c.id, c.outputs, c.execution_count) for c in code] == [(c.id, [], None) for c in code]


def test_parameters_cell_sets_the_documented_names():
    source = parameters_cell(nbformat.read(NOTEBOOK, as_version=4)).source
    names = [t.id for node in ast.parse(source).body for t in node.targets]
    assert tuple(names) == PARAMETERS


# ---------------------------------------------------------------------------------------
# Helpers without Spark


def test_match_boxes_counts_as_box_metrics_does():
    """Same true and false positives per class as pycocotools, crowd truths included."""
    rng = np.random.default_rng(7)
    size = 256
    categories = [{"id": 1, "name": "car"}, {"id": 2, "name": "boat"}]
    truths = [(int(rng.integers(1, 3)), *map(int, rng.integers(0, size - 32, 2))) for _ in range(40)]
    shifted = np.clip(np.array([t[1:] for t in truths[:30]]) + rng.integers(-10, 11, (30, 2)), 0, size - 32)
    found = [(c, int(x), int(y)) for (c, _, _), (x, y) in zip(truths, shifted)]
    found += [(int(rng.integers(1, 3)), *map(int, rng.integers(0, size - 32, 2))) for _ in range(15)]
    image = [{"id": 1, "width": size, "height": size}]
    truth = {"images": image, "categories": categories, "annotations": [
        {"id": k + 1, "image_id": 1, "category_id": c, "bbox": [x, y, 32, 32], "area": 1024,
         "iscrowd": int(k % 9 == 4)} for k, (c, x, y) in enumerate(truths)]}
    detections = {"images": image, "categories": categories, "annotations": [
        {"id": k + 1, "image_id": 1, "category_id": c, "bbox": [x, y, 32, 32], "score": float(s)}
        for k, ((c, x, y), s) in enumerate(zip(found, rng.random(len(found))))]}

    boxes, matched_truths = detection_errors.match_boxes(runs.boxes_frame(detections), runs.truth_frame(truth))
    assert set(boxes["outcome"]) == {"tp", "fp", "ignored"}  # every branch is taken
    expected = box_metrics(truth, detections)["classes"]
    for name, counts in expected.items():
        mine = boxes[boxes["class"] == name]["outcome"].value_counts()
        assert (mine.get("tp", 0), mine.get("fp", 0)) == (counts["true_positives"], counts["false_positives"])
        missed = matched_truths[matched_truths["class"] == name]["outcome"].value_counts().get("fn", 0)
        assert missed == counts["truths"] - counts["true_positives"]
    assert set(boxes.loc[boxes["outcome"] == "tp", "truth_id"]) == set(
        matched_truths.loc[matched_truths["outcome"] == "tp", "id"])


def test_score_grid_puts_each_window_on_its_centre():
    # A 70 x 50 picture, 32-pixel windows every 16 pixels, edges aligned: x 0 16 32 38, y 0 16 18.
    xs, ys = np.meshgrid([0, 16, 32, 38], [0, 16, 18])
    windows = pd.DataFrame({"x": xs.ravel(), "y": ys.ravel(), "p_car": np.arange(12) / 11})
    grid = heatmap.score_grid(windows, "car", width=70, height=50, window=32, stride=16)
    assert grid.values.shape == (2, 3)
    assert grid.extent == (8, 56, 40, 8)  # cell (i, j) is centred on window (16 j + 16, 16 i + 16)
    assert grid.values[0].tolist() == pytest.approx([0, 1 / 11, 3 / 11])  # x 32 and 38 share a cell: the best
    assert grid.values[1].tolist() == pytest.approx([8 / 11, 9 / 11, 11 / 11])  # rows 16 and 18 too
    boxes = pd.DataFrame({"x0": [0, 20], "y0": [0, 0], "x1": [32, 70], "y1": [32, 50]})
    assert grid.best_in(boxes).tolist() == pytest.approx([0, 1])  # cell (0, 0); columns 1 and 2


def test_score_grid_leaves_windows_not_kept_blank():
    windows = pd.DataFrame({"x": [16], "y": [0], "p_car": [0.7]})
    grid = heatmap.score_grid(windows, "car", width=70, height=50, window=32, stride=16)
    assert np.isnan(grid.values).sum() == grid.values.size - 1 and grid.values[0, 1] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="p_boat"):
        heatmap.score_grid(windows, "boat", width=70, height=50, window=32, stride=16)


@pytest.mark.parametrize("regions, match", [
    ([[0, 0, 10]], r"REGIONS\[0\] must be \[x, y, width, height\]"),
    ([[0, 0, 10, 10], [5, 5, 0, 10]], r"REGIONS\[1\] needs a positive width"),
    ([[500, 0, 10, 10]], r"outside the 100x80 picture"),
])
def test_bad_regions_are_named(regions, match):
    with pytest.raises(ValueError, match=match):
        regions_from_xywh(regions, 100, 80)


def test_regions_are_clipped_to_the_picture():
    assert regions_from_xywh([[90, -5, 20, 20]], 100, 80) == [Box(90, 0, 100, 15)]


def error_rows(*boxes) -> pd.DataFrame:
    """Rows as :func:`detection_errors.error_table` gives them, for the columns export_tiles reads."""
    return pd.DataFrame([{"kind": kind, "true_class": true, "predicted": predicted, "x0": x0, "y0": y0,
                          "x1": x0 + 32, "y1": y0 + 32} for kind, true, predicted, x0, y0 in boxes])


def test_error_tiles_go_into_a_new_container(azurite, azure_env):
    picture = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    errors = error_rows((detection_errors.FALSE_POSITIVE, "background", "car", 0, 16),
                        (detection_errors.FALSE_NEGATIVE, "boat", "background", 48, 32))
    fresh = f"new{os.getpid()}errors"
    exported = detection_errors.export_tiles(picture, errors, f"az://{fresh}/tiles", prefix="p")
    assert set(azurite.blobs(fresh)) == {"tiles/background/p-fp-car-x00000-y00016.png",
                                        "tiles/boat/p-fn-background-x00048-y00032.png"}
    assert list(exported["path"]) == [f"az://{fresh}/tiles/background/p-fp-car-x00000-y00016.png",
                                      f"az://{fresh}/tiles/boat/p-fn-background-x00048-y00032.png"]


def test_an_error_crop_outside_the_picture_writes_no_tile(tmp_path):
    picture = np.zeros((64, 64, 3), np.uint8)
    errors = error_rows((detection_errors.FALSE_POSITIVE, "background", "car", 0, 0),
                        (detection_errors.FALSE_NEGATIVE, "boat", "background", 48, 48))
    with pytest.raises(ValueError, match="is not inside the 64x64 picture"):
        detection_errors.export_tiles(picture, errors, str(tmp_path / "tiles"))
    assert not (tmp_path / "tiles").exists()


def test_score_histograms_of_a_run_without_hits_draw_no_warning():
    # A log axis over empty histograms made matplotlib warn in the notebook's output.
    detections = {"categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "boat"}], "annotations": []}
    manifest = {"parameters": {"thresholds": {"car": 0.5}, "colors": {"car": [255, 0, 0], "boat": [0, 255, 0]}},
                "counts": {"windows_kept": 0, "windows_scored": 6}}
    run = runs.RunData(url="run", manifest=manifest, detections=detections, boxes=runs.boxes_frame(detections),
                       windows=None, overlay=np.zeros((32, 48, 3), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = figures.plot_boxes_and_scores(run)
    assert [ax.get_yscale() for ax in figure.axes] == ["linear", "linear", "linear"]


# ---------------------------------------------------------------------------------------
# The notebook on a small run


def synthetic_collage(folder, width: int = 192, height: int = 160) -> tuple[str, str]:
    """A collage of noisy flat-colour tiles of the three classes, and its ground truth: their paths."""
    rng = np.random.default_rng(0)
    n = 48
    tiles = np.clip(rng.integers(0, 256, (n, 1, 1, 3)) + rng.integers(-40, 41, (n, 32, 32, 3)), 0, 255)
    labels = np.array(["car", "boat", "background"])[np.arange(n) % 3]
    target = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    collage = build_collage(target, tiles.astype(np.uint8), labels, CollageParams(width=width, height=height, seed=0))
    image, truth = os.path.join(folder, "collage.png"), os.path.join(folder, "ground_truth.json")
    Image.fromarray(collage.image).save(image)
    with open(truth, "w") as fh:
        json.dump(ground_truth(collage, FOREGROUND_CLASSES), fh)
    return image, truth


@pytest.fixture(scope="module")
def small_collage(tmp_path_factory):
    return synthetic_collage(tmp_path_factory.mktemp("collage"))


def score_collage(spark, image, model, out, keep, *, collection: bool = False):
    """The collage scored alone, or as a collection of one (``collection``): then its picture's folder."""
    source = {"images": (image,)} if collection else {"image": image}
    params = ScoreParams(**source, out=str(out), model=model, keep=keep, threshold=THRESHOLDS, strips=2,
                         quiet=True)
    run(prepare(params), spark)
    return os.path.join(str(out), "collage") if collection else str(out)


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernel spec for this interpreter, with the checkout importable, in a folder of its own."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("kernel")
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    install(kernel_name="tilescan-tests", prefix=str(prefix), env={"PYTHONPATH": path})
    return str(prefix / "share" / "jupyter" / "kernels"), "tilescan-tests"


#: Appended to the notebook under test: what its cells computed, for the test to check.
_DUMP_CELL = """
import json as _json
_json.dump({
    "summary": {k: str(v) for k, v in runs.run_summary(run).items()},
    "evaluation": evaluation,
    "zooms": [[int(v) for v in z.to_xywh()] for z in zooms],
    "errors": errors[["kind", "predicted", "true_class", "x0", "y0"]].values.tolist() if truth else None,
}, open({path!r}, "w"))
"""


def execute(kernel, dump: str, **parameters) -> nbformat.NotebookNode:
    """Run the notebook in ``notebooks/`` with ``parameters`` in place of its parameters cell.

    A last cell writes what the notebook computed into the JSON file ``dump``.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    kernel_dir, name = kernel
    nb = nbformat.read(NOTEBOOK, as_version=4)
    parameters_cell(nb).source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    nb.cells.append(nbformat.v4.new_code_cell(_DUMP_CELL.replace("{path!r}", repr(dump))))
    manager = KernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernel_dir]))
    client = NotebookClient(nb, km=manager, timeout=120, resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}})
    # Given its kernel manager, a client leaves the kernel running until the test process exits,
    # whose last collection then logs "Could not destroy zmq context": shut it down here.
    client.execute(cleanup_kc=True)
    return nb


def assert_pictures(nb, count: int) -> None:
    """The notebook showed ``count`` figures, each a real picture (not one flat colour)."""
    shown = outputs(nb, "image/png")
    assert len(shown) == count
    for out in shown:
        picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["data"]["image/png"]))).convert("L"))
        assert picture.shape[0] > 100 and picture.shape[1] > 100 and picture.std() > 1


def outputs(nb, kind: str) -> list:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "image/png" and kind in out.get("data", {}):
                found.append(out)
            elif kind == "stream" and out.output_type == "stream":
                found.append(out.text)
    return found


@pytest.mark.slow
def test_notebook_with_ground_truth_exports_tiles_the_loader_reads(spark, random_bundle_dir, small_collage,
                                                                    kernel_name, tmp_path):
    image, truth = small_collage
    run_dir = score_collage(spark, image, random_bundle_dir, tmp_path / "run", keep=0.0)
    export = str(tmp_path / "errors")
    dump = str(tmp_path / "dump.json")
    nb = execute(kernel_name, dump, RUN=run_dir, TRUTH=truth, REGIONS=[[0, 0, 96, 80], [150, 100, 64, 64]],
                 EXPORT_DIR=export)
    assert_pictures(nb, 7)  # summary, 2 regions, boxes and scores, heat maps, PR curves, 2 galleries

    # What the notebook computed is what the library computes.
    shown = json.load(open(dump))
    loaded = runs.load_run(run_dir)
    assert shown["evaluation"] == json.loads(json.dumps(box_metrics(runs.load_truth(truth), loaded.detections)))
    assert shown["zooms"] == [[0, 0, 96, 80], [150, 100, 42, 60]]  # the second clipped to the 192x160 picture
    assert shown["summary"]["windows scored"] == f"{loaded.manifest['counts']['windows_scored']:,}"
    errors = detection_errors.error_table(loaded, runs.load_truth(truth))
    assert shown["errors"] == errors[["kind", "predicted", "true_class", "x0", "y0"]].values.tolist()
    assert len(errors) and set(errors["kind"]) == {detection_errors.FALSE_POSITIVE, detection_errors.FALSE_NEGATIVE}
    tiles = load_image_folder(export)
    assert len(tiles) == len(errors)
    assert tiles.images.shape[1:] == (32, 32, 3)
    expected = errors.groupby("true_class").size().to_dict()
    assert pd.Series(tiles.model_class).value_counts().to_dict() == expected
    # Each tile is the input's pixels at the position in its name, under its true class.
    collage = np.asarray(Image.open(image).convert("RGB"))
    for pixels, source in zip(tiles.images, tiles.source):
        name = os.path.basename(source)
        kind, predicted, x, y = re.match(r"collage-(fp|fn)-(\w+)-x(\d+)-y(\d+)\.png$", name).groups()
        np.testing.assert_array_equal(pixels, collage[int(y):int(y) + 32, int(x):int(x) + 32])
        assert (predicted == "background") == (kind == "fn")


@pytest.mark.slow
def test_notebook_without_ground_truth_on_a_run_keeping_some_windows(spark, random_bundle_dir, small_collage,
                                                                      kernel_name, tmp_path):
    image, _ = small_collage
    # A picture of a collection: its windows are its part of the run's dataset, not in its folder.
    run_dir = score_collage(spark, image, random_bundle_dir, tmp_path / "run", keep=0.375, collection=True)
    assert not os.path.exists(os.path.join(run_dir, "windows.parquet"))
    assert not runs.load_run(run_dir).windows_complete and len(runs.load_run(run_dir).windows)
    dump = str(tmp_path / "dump.json")
    nb = execute(kernel_name, dump, RUN=run_dir, TRUTH=None, REGIONS=[], EXPORT_DIR=str(tmp_path / "errors"))
    text = "".join(outputs(nb, "stream"))
    loaded = runs.load_run(run_dir)
    assert loaded.windows_note in text and "TRUTH is None" in text
    assert_pictures(nb, 4)  # summary, regions, boxes and scores, (partial) heat maps
    shown = json.load(open(dump))
    assert shown["evaluation"] is None and shown["errors"] is None
    width, height = loaded.size
    assert shown["zooms"] == [[int(v) for v in z.to_xywh()] for z in auto_regions(loaded.boxes, width, height)]
    assert not (tmp_path / "errors").exists()
