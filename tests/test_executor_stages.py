"""The executor stages without Spark: BandScorer and finish_picture with a fake engine, a numpy closure.

The fake engine's probabilities are a function of each window's pixels alone, so every
window's row can be checked against the picture itself, however the picture was cut.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import engines
from core.bundle import ModelBundle, ModelSpec
from core.golden import GoldenBatch, Tolerance
from engines import Engine, register_engine
from engines.cache import clear
from engines.numerics import NumericsCheck
from pixels import probe_image
from scoring.executor import BandScorer
from scoring.finish import PictureJob, RunContext, finish_picture
from scoring.records import FAILED, SCORED, STAGED, BandSettings, PieceFailure
from scoring.stored_windows import dataset_part, windows_path
from tests.conftest import write_noise_png
from tiling import WindowGrid, plan_tasks

CLASSES = ("car", "boat", "background")
WINDOW, STRIDE = 16, 8


def fake_probabilities(windows: np.ndarray) -> np.ndarray:
    """``(N, 3)``: car from the red mean, boat from the blue mean, background the rest; sums to 1."""
    means = windows.reshape(len(windows), 3, -1).mean(axis=2) / 255.0
    car, boat = 0.6 * means[:, 0], 0.4 * means[:, 2]
    return np.stack([car, boat, 1 - car - boat], axis=1).astype(np.float32)


@pytest.fixture
def fake_engine(monkeypatch):
    """The ``fake`` engine, registered for this test only; the worker cache cleared around it."""
    monkeypatch.setattr(engines, "ENGINES", dict(engines.ENGINES))

    @register_engine("fake")
    class FakeEngine(Engine):
        calls = []

        def raw_outputs(self, windows):
            FakeEngine.calls.append(len(windows))
            return [fake_probabilities(windows)]

    clear()
    yield FakeEngine
    clear()


def fake_bundle(golden: GoldenBatch | None = None, sha: str = "f" * 64) -> ModelBundle:
    spec = ModelSpec("fake", CLASSES, WINDOW)
    return ModelBundle(spec, {}, sha, "memory://fake", golden=golden)


@pytest.fixture
def picture(tmp_path):
    return probe_image(write_noise_png(tmp_path / "scene.png", 75, 61, seed=4), min_side=WINDOW)


def score(picture, bundle, tasks: int, *, floor: float = 0.0, batch_size: int = 7) -> list:
    grid = WindowGrid(picture.height, picture.width, WINDOW, STRIDE)
    settings = BandSettings(engine="fake", window=WINDOW, stride=STRIDE, edge="align", batch_size=batch_size,
                            floor=floor)
    counted = []

    class Counter:
        def add(self, n):
            counted.append(n)

    scorer = BandScorer(lambda: bundle, bundle.sha256, settings, {0: picture}, storage_options=None,
                        counter=Counter())
    payloads = [payload for _, payload in scorer(plan_tasks([grid], tasks))]
    assert sum(counted) == grid.n_windows  # the progress counter sees every window once
    return payloads


def context(**options) -> RunContext:
    values = dict(classes=CLASSES, background="background", thresholds={"car": 0.25, "boat": 0.2}, merge="fuse",
                  merge_iou=0.3, keep=0.0, colors={"car": (255, 0, 0), "boat": (0, 0, 255)}, window=WINDOW,
                  overwrite=False, run_id="stages", manifest={"tool": "tilescan"})
    return RunContext(**{**values, **options})


def job(picture, root, pieces: int, *, commit: bool = True) -> PictureJob:
    grid = WindowGrid(picture.height, picture.width, WINDOW, STRIDE)
    return PictureJob(0, "scene", picture, str(root), grid.n_windows, pieces, commit=commit)


def rows(folder) -> dict:
    table = pq.read_table(os.path.join(folder, "windows.parquet")).to_pandas()
    return {(x, y): tuple(p) for x, y, *p in zip(table["x"], table["y"], *(table[f"p_{c}"] for c in CLASSES))}


@pytest.mark.parametrize("tasks", [1, 3, 7])
def test_band_scorer_scores_every_window_once_as_the_engine_does(tasks, fake_engine, picture):
    payloads = score(picture, fake_bundle(), tasks)
    assert all(isinstance(p, bytes) for p in payloads)  # Arrow streams of rows, with their PieceTiming
    assert max(fake_engine.calls) <= 7  # the batch size holds
    pixels = np.asarray(Image.open(picture.url).convert("RGB"))
    summary = finish_picture(job(picture, picture.url + "-out", len(payloads), commit=False), payloads, context())
    assert summary.status == STAGED
    grid = WindowGrid(picture.height, picture.width, WINDOW, STRIDE)
    assert summary.counts["windows_scored"] == grid.n_windows == sum(t.windows for t in summary.tasks)
    staged = os.path.join(os.path.dirname(picture.url), "scene.png-out", summary.staged["staging"])
    found = rows(staged)
    assert len(found) == grid.n_windows
    for (x, y), probabilities in found.items():
        window = pixels[y:y + WINDOW, x:x + WINDOW].transpose(2, 0, 1)[None]
        assert np.allclose(probabilities, fake_probabilities(window)[0], atol=1e-6)


def test_finish_picture_gives_the_same_outputs_however_the_picture_was_cut(fake_engine, picture, tmp_path):
    outputs = []
    for tasks in (1, 5):
        root = tmp_path / f"cut{tasks}"
        payloads = score(picture, fake_bundle(), tasks)
        summary = finish_picture(job(picture, root, len(payloads)), payloads, context())
        assert summary.status == SCORED and summary.error is None
        assert {"_SUCCESS", "detections.json", "manifest.json", "overlay.png", "windows.parquet"} <= set(
            os.listdir(root))
        windows = pq.read_table(root / "windows.parquet").drop_columns(["strip"])  # the band: the cut's own
        outputs.append((windows, json.load(open(root / "detections.json")), summary.boxes))
    assert outputs[0][0].equals(outputs[1][0])  # rows sorted by position, not by task
    assert outputs[0][1] == outputs[1][1]
    assert np.array_equal(outputs[0][2], outputs[1][2]) and len(outputs[0][2])


def collection_job(picture, run, pieces: int) -> PictureJob:
    """The picture ``scene`` of a collection whose folder is ``run``: its windows go to the run's dataset."""
    grid = WindowGrid(picture.height, picture.width, WINDOW, STRIDE)
    return PictureJob(0, "scene", picture, str(run / "scene"), grid.n_windows, pieces,
                      dataset=dataset_part(str(run), "scene"))


def test_a_collection_picture_keeps_its_windows_once_in_the_runs_dataset(fake_engine, picture, tmp_path,
                                                                         monkeypatch):
    import scoring.finish as finish

    payloads = score(picture, fake_bundle(), 3)
    alone = finish_picture(job(picture, tmp_path / "alone", len(payloads)), payloads, context())
    seen = []

    def written_before_the_commit(fs, path, data, **kwargs):
        seen.append(os.path.exists(tmp_path / "run" / "scene" / "_SUCCESS"))
        finish_part(fs, path, data, **kwargs)

    finish_part = finish.write_part
    monkeypatch.setattr(finish, "write_part", written_before_the_commit)
    run = tmp_path / "run"
    summary = finish_picture(collection_job(picture, run, len(payloads)), payloads, context())
    assert alone.status == summary.status == SCORED and seen == [False]
    # One copy: the picture's folder says where it is, and holds none itself.
    assert sorted(os.listdir(run / "scene")) == ["_SUCCESS", "_tilescan", "detections.geojson", "detections.json",
                                                 "manifest.json", "overlay.png"]
    manifest = json.load(open(run / "scene" / "manifest.json"))
    assert manifest["windows"] == "../windows/image=scene/part-00000.parquet"
    assert windows_path(str(run / "scene"), manifest) == str(run / "windows" / "image=scene" / "part-00000.parquet")
    assert os.listdir(run / "windows" / "image=scene") == ["part-00000.parquet"]
    part = pq.read_table(run / "windows" / "image=scene" / "part-00000.parquet")
    assert part.equals(pq.read_table(tmp_path / "alone" / "windows.parquet"))  # what a single picture keeps
    assert json.load(open(tmp_path / "alone" / "manifest.json"))["windows"] == "windows.parquet"


@pytest.mark.parametrize("fails", ["part", "after-part"])
def test_a_collection_picture_whose_commit_fails_leaves_no_result(fails, fake_engine, picture, tmp_path,
                                                                 monkeypatch):
    import scoring.finish as finish
    from core.errors import StorageError
    from scoring.earlier_runs import tidy_dataset
    from scoring.outputs import RunWriter

    if fails == "part":
        def no_part(*args, **kwargs):
            raise StorageError("cannot write the part: disk full")
        monkeypatch.setattr(finish, "write_part", no_part)
    else:
        def no_move(self, name, *, replacing):
            raise OSError("no space left on device")
        monkeypatch.setattr(RunWriter, "_move", no_move)
    payloads = score(picture, fake_bundle(), 3)
    run = tmp_path / "run"
    summary = finish_picture(collection_job(picture, run, len(payloads)), payloads, context())
    assert summary.status == FAILED
    assert not (run / "scene" / "_SUCCESS").exists() and not (run / "scene" / "manifest.json").exists()
    part = run / "windows" / "image=scene"
    assert part.exists() == (fails == "after-part")  # written, then its picture's commit failed
    # The run's end keeps the parts of the pictures with results only: that one goes.
    tidy_dataset(RunWriter(str(run)).fs, str(run), str(run), results=set(), kept=set(), started="2000-01-01",
                 run_id="stages")
    assert not part.exists()


def test_a_band_that_cannot_be_read_fails_its_picture_and_writes_nothing(fake_engine, picture, tmp_path):
    os.remove(picture.url)  # the header was read; the pixels are gone
    payloads = score(picture, fake_bundle(), 3)
    assert all(isinstance(p, PieceFailure) for p in payloads)
    summary = finish_picture(job(picture, tmp_path / "out", len(payloads)), payloads, context())
    assert summary.status == FAILED and "image not found" in summary.error
    assert not (tmp_path / "out").exists()


def test_a_missing_band_fails_the_picture(fake_engine, picture, tmp_path):
    payloads = score(picture, fake_bundle(), 3)
    summary = finish_picture(job(picture, tmp_path / "out", len(payloads)), payloads[1:], context())
    assert summary.status == FAILED and summary.error.startswith("scored ") and "windows" in summary.error
    assert not (tmp_path / "out").exists()


def test_an_engine_that_fails_its_numerics_check_scores_nothing(fake_engine, picture, tmp_path):
    windows = np.zeros((4, 3, WINDOW, WINDOW), np.uint8)
    wrong = fake_probabilities(windows) + np.float32(0.1)  # references the engine does not reproduce
    golden = GoldenBatch(windows, wrong, None, {"float32": Tolerance(1e-4, 1e-5)})
    payloads = score(picture, fake_bundle(golden, sha="e" * 64), 3)
    assert payloads and all(isinstance(p, NumericsCheck) and p.failed for p in payloads)
    assert not fake_engine.calls[1:]  # the golden batch ran; no band did
    summary = finish_picture(job(picture, tmp_path / "out", len(payloads)), payloads, context())
    assert summary.status == FAILED and summary.numerics_failure is not None
    assert "answers unlike the model on its 4 golden windows" in summary.error
    assert not (tmp_path / "out").exists()


def test_the_floor_keeps_only_rows_that_can_matter(fake_engine, picture):
    everything = score(picture, fake_bundle(), 2, floor=0.0)
    some = score(picture, fake_bundle(), 2, floor=0.3)  # noise: car scores of 0.27 to 0.34
    sizes = [sum(pa.ipc.open_stream(p).read_all().num_rows for p in payloads) for payloads in (everything, some)]
    assert 0 < sizes[1] < sizes[0]


def test_a_worker_stops_asking_a_storage_that_does_not_answer_for_a_while(fake_engine, picture, monkeypatch):
    import scoring.executor as executor
    from core.errors import StorageUnreachable

    calls = []

    def unreachable(info, y0, y1, **options):
        calls.append((y0, y1))
        raise StorageUnreachable(f"cannot read {info.url}: storage unreachable: connection refused")

    monkeypatch.setattr(executor, "read_band", unreachable)
    monkeypatch.setattr(executor, "_unreachable", {"in_a_row": 0, "last": "", "until": 0.0})
    payloads = score(picture, fake_bundle(), 7)
    assert len(calls) == executor.UNREACHABLE_IN_A_ROW < len(payloads)  # then it fails at once
    assert all(isinstance(p, PieceFailure) and p.unreachable for p in payloads)
    assert "not read: the storage did not answer this worker's last 3 reads" in payloads[-1].message
    monkeypatch.undo()  # the storage answers again; the pause is over: it asks again
    monkeypatch.setattr(executor, "_unreachable", {"in_a_row": 3, "last": "x", "until": 0.0})
    assert all(isinstance(p, bytes) for p in score(picture, fake_bundle(), 3))
    summary = finish_picture(job(picture, picture.url + "-gone", len(payloads)), payloads, context())
    assert summary.status == FAILED and summary.unreachable


def test_the_run_stops_before_the_next_wave_when_the_storage_stopped_answering():
    from core.errors import StorageUnreachable
    from scoring.job import check_storage_answers
    from scoring.records import PictureSummary

    scored = [PictureSummary(k, f"p{k}", f"p{k}.png", 10, 10, status=SCORED) for k in range(4)]
    lost = [PictureSummary(k, f"q{k}", f"q{k}.png", 10, 10, error="cannot read q: storage unreachable: refused",
                           unreachable=True) for k in range(3)]
    check_storage_answers(scored + lost[:2], scored + lost[:2])  # two: it goes on
    with pytest.raises(StorageUnreachable, match=r"3 pictures of this wave could not reach it .* the 4 pictures "
                                                 r"finished so far are kept for --resume"):
        check_storage_answers(scored + lost, scored + lost)
