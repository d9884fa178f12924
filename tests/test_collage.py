"""Collage geometry, tile choice and ground truth (collage, app.collage)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from app import collage as collage_app
from collage import (
    CollageParams,
    build_collage,
    generator,
    ground_truth,
    layout,
    owner_map,
    placements_from_ground_truth,
    window_classes,
)
from collage.generator import target_descriptors, tile_descriptors
from tilesets import FOREGROUND_CLASSES, data_root

CLASSES = ("car", "boat", "background")
SMALL = CollageParams(width=256, height=192, max_uses=3, seed=7)


def noise_library(n: int = 60, seed: int = 0):
    """Noise tiles, so that a tile pasted at the wrong offset shows; labels cycle over CLASSES."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = np.array([CLASSES[i % 3] for i in range(n)])
    return images, labels


def gradient_target(height: int = 60, width: int = 80) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def small():
    images, labels = noise_library()
    return build_collage(gradient_target(), images, labels, SMALL), images


def test_every_pixel_shows_the_tile_that_owns_it(small):
    collage, images = small
    p, owner = collage.placements, collage.owner
    assert collage.image.shape == (192, 256, 3) and owner.shape == (192, 256)
    assert owner.min() >= 0
    yy, xx = np.mgrid[0:192, 0:256]
    expected = images[p.tile[owner], yy - p.y[owner], xx - p.x[owner]]
    np.testing.assert_array_equal(collage.image, expected)


def test_later_tiles_cover_earlier_ones(small):
    collage, _ = small
    p = collage.placements
    for i in range(len(p)):
        rows, cols = p.box(i).slices()
        assert collage.owner[rows, cols].min() >= i  # nothing earlier shows inside a later tile


def test_ground_truth_records_what_shows(small):
    collage, _ = small
    truth = json.loads(json.dumps(ground_truth(collage, FOREGROUND_CLASSES)))
    p, owner = collage.placements, collage.owner
    assert truth["categories"] == [{"id": 1, "name": "car"}, {"id": 2, "name": "boat"}]
    assert truth["images"] == [{"id": 1, "file_name": "collage.png", "width": 256, "height": 192}]
    assert len(truth["annotations"]) == int(np.isin(p.label, ["car", "boat"]).sum())
    for a in truth["annotations"]:
        i = a["placement"]
        assert CLASSES[a["category_id"] - 1] == p.label[i]
        assert a["bbox"] == [int(p.x[i]), int(p.y[i]), 32, 32] and a["area"] == 1024
        mine = owner == i
        assert a["visible_fraction"] == pytest.approx(mine.sum() / 1024, abs=1e-4)
        if mine.any():
            ys, xs = np.nonzero(mine)
            assert a["visible_bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
        hidden = int(mine.sum() / 1024 < SMALL.min_visible)
        assert a["iscrowd"] == a["ignore"] == hidden
        assert a["tile_index"] == p.tile[i] and a["source"] == p.source[i]


def test_ground_truth_rebuilds_the_owner_map(small):
    collage, _ = small
    truth = json.loads(json.dumps(ground_truth(collage, FOREGROUND_CLASSES)))
    placements, height, width = placements_from_ground_truth(truth)
    np.testing.assert_array_equal(owner_map(placements, height, width), collage.owner)
    np.testing.assert_array_equal(placements.label, collage.placements.label)


def test_no_tile_is_used_more_than_max_uses(small):
    collage, images = small
    assert np.bincount(collage.placements.tile, minlength=len(images)).max() <= SMALL.max_uses


def test_same_seed_same_collage_other_seed_differs(small):
    collage, images = small
    labels = noise_library()[1]
    again = build_collage(gradient_target(), images, labels, SMALL)
    np.testing.assert_array_equal(again.image, collage.image)
    np.testing.assert_array_equal(again.placements.tile, collage.placements.tile)
    other = build_collage(gradient_target(), images, labels, CollageParams(width=256, height=192, max_uses=3, seed=8))
    assert not np.array_equal(other.image, collage.image)


def test_tiles_are_chosen_by_colour():
    rng = np.random.default_rng(1)
    red = np.clip(rng.normal([200, 30, 30], 10, (20, 32, 32, 3)), 0, 255).astype(np.uint8)
    blue = np.clip(rng.normal([30, 30, 200], 10, (20, 32, 32, 3)), 0, 255).astype(np.uint8)
    images = np.concatenate([red, blue])
    labels = np.array(["car"] * 20 + ["boat"] * 20)
    target = np.zeros((48, 64, 3), dtype=np.uint8)
    target[:, :32] = (255, 0, 0)
    target[:, 32:] = (0, 0, 255)
    collage = build_collage(target, images, labels, SMALL)
    p = collage.placements
    left, right = p.x + 32 <= 128, p.x >= 128
    assert left.any() and right.any()
    assert (p.label[left] == "car").all() and (p.label[right] == "boat").all()


def test_height_keeps_the_target_aspect_ratio():
    images, labels = noise_library()
    collage = build_collage(gradient_target(60, 80), images, labels, CollageParams(width=160, max_uses=5))
    assert collage.image.shape == (120, 160, 3)
    assert collage.params.height == 120


def test_target_descriptors_are_block_means_at_collage_size():
    target = gradient_target(96, 128) ^ np.uint8(0x55)  # not smooth, so an offset error shows
    corners = np.array([[0, 0], [5, 17], [96, 64]])
    got = target_descriptors(target, corners, width=128, height=96, tile_size=32, grid=4)
    crops = np.stack([target[y:y + 32, x:x + 32] for x, y in corners])
    np.testing.assert_allclose(got, tile_descriptors(crops, 4), atol=1e-3)


def test_target_descriptors_average_areas_when_scaling():
    target = np.zeros((2, 2, 3), dtype=np.uint8)
    target[0, 0] = 200  # the top-left quarter of a 64x64 collage
    got = target_descriptors(target, np.array([[16, 16]]), width=64, height=64, tile_size=32, grid=1)
    np.testing.assert_allclose(got, [[50, 50, 50]], atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(height=st.integers(8, 90), width=st.integers(8, 90), tile=st.integers(4, 16),
       step=st.integers(1, 16), jitter=st.integers(0, 6), seed=st.integers(0, 2 ** 16))
def test_layout_covers_every_pixel_and_stays_inside(height, width, tile, step, jitter, seed):
    if step + 2 * jitter > tile or tile > min(height, width):
        return
    corners = layout(height, width, tile_size=tile, step=step, jitter=jitter, rng=np.random.default_rng(seed))
    x, y = corners.T
    assert (x >= 0).all() and (y >= 0).all() and (x + tile <= width).all() and (y + tile <= height).all()
    covered = np.zeros((height, width), dtype=bool)
    for cx, cy in corners:
        covered[cy:cy + tile, cx:cx + tile] = True
    assert covered.all()


def test_window_classes_match_a_direct_count(small):
    collage, _ = small
    p, owner = collage.placements, collage.owner
    rng = np.random.default_rng(3)
    x0, y0 = rng.integers(0, 200, 50), rng.integers(0, 150, 50)
    sizes = rng.choice([8, 32], (50, 1))
    windows = np.stack([x0, y0, x0 + sizes[:, 0], y0 + sizes[:, 0]], axis=1)
    got = window_classes(owner, p.label, windows)
    for (a, b, c, d), label in zip(windows, got):
        ids, counts = np.unique(owner[b:d, a:c], return_counts=True)
        assert label == p.label[ids[counts == counts.max()].max()]


def test_window_classes_prefer_the_tile_on_top_when_tied():
    owner = np.array([[0, 1]], dtype=np.int32)
    assert window_classes(owner, ["car", "boat"], np.array([[0, 0, 2, 1]])).tolist() == ["boat"]


@pytest.mark.parametrize("change, match", [
    ({"step": 26, "jitter": 4}, "step"),
    ({"width": 16}, "width"),
    ({"min_visible": 1.5}, "min_visible"),
    ({"grid": 3}, "grid"),
])
def test_bad_params_name_the_argument(change, match):
    with pytest.raises(ValueError, match=match):
        CollageParams(**change)


def test_too_few_tiles_for_max_uses(monkeypatch):
    images, labels = noise_library(10)
    with pytest.raises(ValueError, match="max_uses"):
        build_collage(gradient_target(), images, labels, CollageParams(width=256, height=192, max_uses=2))

    # Counted before any layout is made: a collage far too big for the library fails at once.
    def no_layout(*args, **kwargs):
        raise AssertionError("laid out a collage the library cannot fill")

    monkeypatch.setattr(generator, "layout", no_layout)
    with pytest.raises(ValueError, match=r"fewer than the 695556 placements of a 20000x20000"):
        build_collage(gradient_target(), images, labels, CollageParams(width=20000, height=20000))


@pytest.mark.parametrize("size", [{"width": 100_000, "height": 100_000}, {"width": 400_000}])
def test_collage_over_the_pixel_cap_is_refused(size):
    with pytest.raises(ValueError, match=r"collage is [\d,]+ pixels, more than the 400,000,000"):
        CollageParams(**size).resolve((2, 1, 3))


def test_bad_target_and_windows():
    images, labels = noise_library()
    with pytest.raises(ValueError, match="target"):
        build_collage(np.zeros((10, 10), np.uint8), images, labels, SMALL)
    with pytest.raises(ValueError, match="labels"):
        build_collage(gradient_target(), images, labels[:5], SMALL)
    with pytest.raises(ValueError, match="inside"):
        window_classes(np.zeros((4, 4), np.int32), ["car"], np.array([[0, 0, 5, 4]]))


def test_placements_from_ground_truth_rejects_plain_coco():
    with pytest.raises(ValueError, match="collage"):
        placements_from_ground_truth({"images": [{"id": 1, "width": 4, "height": 4}], "annotations": []})


def write_folder_library(root, n_per_class: int = 12) -> str:
    images, _ = noise_library(3 * n_per_class)
    for k, name in enumerate(CLASSES):
        os.makedirs(root / name)
        for i in range(n_per_class):
            Image.fromarray(images[k * n_per_class + i]).save(root / name / f"{i}.png")
    return str(root)


def test_command_writes_collage_truth_and_summary(tmp_path):
    library = write_folder_library(tmp_path / "lib")
    Image.fromarray(gradient_target()).save(tmp_path / "target.png")
    out = tmp_path / "out"
    code = collage_app.main(["--target", str(tmp_path / "target.png"), "--library", library, "--out", str(out),
                             "--width", "128", "--seed", "3", "--max-uses", "4"])
    assert code == 0
    picture = np.asarray(Image.open(out / "collage.png"))
    truth = json.loads((out / "ground_truth.json").read_text())
    summary = json.loads((out / "collage.json").read_text())
    assert picture.shape == (96, 128, 3)
    assert summary["parameters"]["height"] == 96 and summary["parameters"]["seed"] == 3
    assert summary["counts"]["annotations"] == len(truth["annotations"])
    placements, height, width = placements_from_ground_truth(truth)
    assert (height, width) == (96, 128) and len(placements) == summary["counts"]["placements"]


@pytest.mark.parametrize("args, message", [
    (["--step", "30", "--jitter", "2"], "step"),
    (["--target", "/nonexistent/picture.png"], "not found"),
])
def test_command_bad_input_exits_2(tmp_path, capsys, args, message):
    library = write_folder_library(tmp_path / "lib")
    Image.fromarray(gradient_target()).save(tmp_path / "target.png")
    argv = ["--target", str(tmp_path / "target.png"), "--library", library, "--out", str(tmp_path / "out"), *args]
    assert collage_app.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


HAVE_CIFAR = os.path.isdir(os.path.join(data_root(), "cifar10"))
HAVE_MONA_LISA = os.path.isfile(os.path.join(data_root(), "mona_lisa.jpg"))


@pytest.mark.data
@pytest.mark.skipif(not (HAVE_CIFAR and HAVE_MONA_LISA),
                    reason=f"CIFAR-10 and mona_lisa.jpg not found under {data_root()} (set TILESCAN_DATA)")
def test_mona_lisa_from_cifar10_test_set():
    from tilesets import load_cifar

    library = load_cifar(os.path.join(data_root(), "cifar10"), "test")
    target = np.asarray(Image.open(os.path.join(data_root(), "mona_lisa.jpg")).convert("RGB"))
    # Few CIFAR ships have the Mona Lisa's colours: single use spreads the choice wider.
    params = CollageParams(width=512, height=768, max_uses=1)
    collage = build_collage(target, library.images, library.model_class, params, ids=library.record_id)
    truth = ground_truth(collage, FOREGROUND_CLASSES)
    assert len(set(collage.placements.tile.tolist())) == len(collage.placements)  # no tile used twice
    counted = {c["name"]: sum(a["category_id"] == c["id"] for a in truth["annotations"]) for c in truth["categories"]}
    assert counted["car"] > 10 and counted["boat"] > 0
    assert all(a["source"].startswith("cifar10-test-") for a in truth["annotations"])
    assert collage.owner.min() >= 0
