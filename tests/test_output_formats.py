"""The bytes of the outputs: a picture's overlay PNG, and the COCO ``detections.json`` of a picture and of a run."""
from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pixels import probe_image
from scoring.boxes import (
    annotation_lines,
    coco_annotations,
    coco_categories,
    coco_detections,
    detections_json,
    one_per_line,
    picture_detections_json,
    rounded,
)
from scoring.overlay import draw_overlay, overlay_png
from scoring.png import adler32_combine, encode_png, encode_png_blocks
from scoring.run_detections import RunDetections

CLASSES = ("background", "car", "boat")


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """``(type, data)`` of each chunk, checking the signature and every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        body = data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        at += 12 + length
    return chunks


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 5, 3), (7, 1, 3), (33, 17, 3)])
def test_png_decodes_to_the_same_pixels(shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    back = Image.open(io.BytesIO(encode_png(pixels)))
    assert back.mode == "RGB" and back.size == (shape[1], shape[0])
    np.testing.assert_array_equal(np.asarray(back), pixels)


def test_png_chunks_are_well_formed_and_the_stream_is_split():
    pixels = np.random.default_rng(1).integers(0, 256, (700, 600, 3), dtype=np.uint8)  # ~1.2 MB: incompressible
    chunks = png_chunks(encode_png(pixels))
    kinds = [kind for kind, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and set(kinds[1:-1]) == {b"IDAT"}
    assert len(kinds) - 2 >= 2, "a stream over 1 MiB is split into several IDAT chunks"
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (600, 700, 8, 2, 0, 0, 0)
    filtered = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(filtered) == 700 * (1 + 600 * 3)  # a filter byte and the samples of each row


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_png_in_blocks_of_any_height_decodes_to_the_same_pixels(threads):
    pixels = np.random.default_rng(threads).integers(0, 256, (300, 41, 3), dtype=np.uint8)
    cuts = [0, 1, 2, 90, 91, 256, 300]
    blocks = [pixels[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    data = encode_png_blocks(iter(blocks), 41, 300, threads=threads)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
    assert zlib.decompress(b"".join(body for kind, body in png_chunks(data) if kind == b"IDAT"))  # one zlib stream
    assert data == encode_png_blocks(iter(blocks), 41, 300, threads=1)  # the same bytes whatever the threads


@pytest.mark.parametrize("blocks, message", [
    ([np.zeros((3, 5, 3), np.uint8)], "hold 3 rows"),
    ([np.zeros((4, 5, 3), np.uint8), np.zeros((1, 5, 3), np.uint8)], "more than the 4 rows"),
    ([np.zeros((4, 6, 3), np.uint8)], "each block"),
    ([np.zeros((0, 5, 3), np.uint8)], "each block"),
])
def test_png_blocks_that_do_not_make_the_picture_are_refused(blocks, message):
    with pytest.raises(ValueError, match=message):
        encode_png_blocks(blocks, 5, 4)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.binary(max_size=70000))
def test_adler32_of_joined_data_comes_from_the_pieces_own(first, second):
    assert adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second)) == zlib.adler32(first + second)


def test_png_of_a_plain_picture_is_small():
    assert len(encode_png(np.full((500, 500, 3), 200, np.uint8))) < 5_000


@pytest.mark.parametrize("pixels", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                    np.zeros((4, 4, 3), np.uint16), np.zeros((0, 4, 3), np.uint8)])
def test_png_refuses_what_is_not_rgb8(pixels):
    with pytest.raises(ValueError, match="pixels"):
        encode_png(pixels)


@pytest.mark.parametrize("level", [-1, 4, 2.0, True, "2"])
def test_png_refuses_a_level_isal_does_not_have(level):
    with pytest.raises(ValueError, match="level"):
        encode_png(np.zeros((4, 4, 3), np.uint8), level=level)
    assert encode_png(np.zeros((4, 4, 3), np.uint8), level=0).startswith(b"\x89PNG")


def boxes():
    return np.array([[10.123, 20.0, 42.126, 52.0, 0.91234567, 1], [0.0, 0.0, 32.0, 32.0, 0.5, 2]])


def test_annotations_from_arrays_and_lists_agree():
    from_array = coco_annotations(boxes(), CLASSES, "background", image_id=3, first_id=7)
    assert from_array == coco_annotations(boxes().tolist(), CLASSES, "background", image_id=3, first_id=7)
    first = from_array[0]
    assert (first["id"], first["image_id"], first["category_id"]) == (7, 3, 1)
    assert first["bbox"] == [10.12, 20.0, 32.0, 32.0] and first["score"] == 0.912346
    assert coco_annotations(np.zeros((0, 6)), CLASSES, "background") == []


def python_rounded(values, digits):
    return [repr(round(v, digits)) for v in np.asarray(values, np.float64).tolist()]


@pytest.mark.parametrize("digits", [2, 6])
def test_rounded_is_pythons_round_value_for_value(digits):
    rng = np.random.default_rng(5)
    step = 10.0 ** -digits
    values = np.concatenate([
        rng.uniform(-5000, 5000, 20_000),
        (np.arange(-2000, 2000) + 0.5) * step,                   # halves, as near as a float gets
        (np.arange(-2000, 2000) + 0.5) * step + 1e-12,            # just beside them
        np.round(rng.uniform(0, 4000, 20_000), digits + 1),       # one digit more than kept
        [0.0, -0.0, -0.001, 1e300, -1e300, np.inf, -np.inf, np.nan, 5e-324],
    ])
    got = rounded(values, digits)
    assert all(type(v) is float for v in got)
    assert [repr(v) for v in got] == python_rounded(values, digits)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50), st.sampled_from([2, 6]))
def test_rounded_is_pythons_round_for_any_floats(values, digits):
    assert [repr(v) for v in rounded(values, digits)] == python_rounded(values, digits)


def test_annotations_round_as_pythons_round_of_each_box():
    rng = np.random.default_rng(6)
    corners = np.sort(rng.uniform(0, 3000, (2000, 2, 2)), axis=1).reshape(-1, 4)[:, [0, 2, 1, 3]]
    many = np.column_stack([corners, rng.uniform(0.4, 1, 2000), rng.integers(1, 3, 2000)])
    for got, (x0, y0, x1, y1, score, _) in zip(coco_annotations(many, CLASSES, "background"), many.tolist()):
        w, h = x1 - x0, y1 - y0
        assert json.dumps(got["bbox"] + [got["area"], got["score"]]) == json.dumps(
            [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2), round(w * h, 2), round(score, 6)])


def test_detections_json_reads_back_with_one_annotation_per_line():
    doc = coco_detections(boxes(), CLASSES, "background", file_name='a "quoted", name.png', width=64, height=64)
    text = detections_json(doc).decode()
    assert json.loads(text) == doc
    lines = text.splitlines()
    assert sum(line.startswith('{"id": ') and '"bbox"' in line for line in lines) == 2
    assert text.endswith("}\n")


def test_detections_json_of_no_boxes():
    doc = coco_detections(np.zeros((0, 6)), CLASSES, "background", file_name="x.png", width=64, height=64)
    assert json.loads(detections_json(doc)) == doc


@pytest.mark.parametrize("file_name", ["x.png", "odd}, {name.png"])
def test_detections_json_lines_are_each_objects_own_encoding(file_name):
    many = np.array([[k, k, k + 32.5, k + 32, 0.5 + k / 1000, 1 + k % 2] for k in range(300)], np.float64)
    doc = coco_detections(many, CLASSES, "background", file_name=file_name, width=512, height=512)
    doc["images"].append({"id": 2, "file_name": "nested.png", "tags": [{"a": 1}, {"b": 2}]})
    lines = detections_json(doc).decode().splitlines()
    for key in ("images", "categories", "annotations"):
        start = lines.index(f'"{key}": [')
        items = [line.rstrip(",") for line in lines[start + 1:start + 1 + len(doc[key])]]
        assert items == [json.dumps(item) for item in doc[key]]
    assert json.loads("\n".join(lines)) == doc


def test_overlay_outlines_each_box_inside_it_in_its_class_colour():
    red, green = (255, 0, 0), (0, 200, 0)
    boxes = np.array([[2, 3, 12, 13, 0.9, 0], [20.6, 5.2, 40.4, 30.9, 0.5, 1]])
    drawn = [np.asarray(draw_overlay(np.zeros((40, 60, 3), np.uint8), b, {"car": red, "boat": green},
                                     ("car", "boat", "background"))) for b in (boxes, boxes.tolist())]
    assert (drawn[0] == drawn[1]).all()
    image = drawn[0]
    for y0, y1, x0, x1, colour in ((3, 12, 2, 11, red), (5, 29, 20, 39, green)):  # inclusive pixel corners
        edges_y, edges_x = [y0, y0 + 1, y1 - 1, y1], [x0, x0 + 1, x1 - 1, x1]  # two pixels wide, inside the box
        assert (image[edges_y, x0:x1 + 1] == colour).all() and (image[y0:y1 + 1, edges_x] == colour).all()
        assert not image[y0 + 2:y1 - 1, x0 + 2:x1 - 1].any()
    assert int((image.any(axis=2)).sum()) == 10 * 10 - 6 * 6 + 20 * 25 - 16 * 21


def test_overlay_drawn_in_blocks_is_the_picture_drawn_whole(tmp_path):
    """Boxes with fractional corners, across the borders of the overlay's blocks of rows."""
    rng = np.random.default_rng(8)
    pixels = rng.integers(0, 256, (700, 300, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    x0, y0 = rng.uniform(0, 280, 3000), rng.uniform(0, 680, 3000)
    boxes = np.column_stack([x0, y0, np.minimum(x0 + rng.uniform(1, 60, 3000), 300),
                             np.minimum(y0 + rng.uniform(1, 60, 3000), 700), rng.uniform(size=3000),
                             rng.integers(0, 2, 3000)])
    colors = {"car": (255, 0, 0), "boat": (0, 200, 0)}
    png, factor = overlay_png(probe_image(str(tmp_path / "p.png")), boxes, colors, ("car", "boat", "background"))
    whole = np.asarray(draw_overlay(pixels, boxes, colors, ("car", "boat", "background")))
    assert factor == 1
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), whole)


def _annotations_one_by_one(boxes, image_id, first_id):
    """The annotations as plain Python writes each, to hold the fast path to."""
    items = []
    for n, (x0, y0, x1, y1, score, k) in enumerate(np.asarray(boxes, np.float64).tolist(), start=first_id):
        w, h = x1 - x0, y1 - y0
        items.append({"id": n, "image_id": image_id, "category_id": int(k), "bbox": [round(x0, 2), round(y0, 2),
                      round(w, 2), round(h, 2)], "area": round(w * h, 2), "score": round(score, 6), "iscrowd": 0})
    return items


def test_annotation_lines_are_each_annotations_json_dumps():
    rng = np.random.default_rng(9)
    many = np.column_stack([rng.uniform(0, 3000, (500, 4)), rng.uniform(size=500), rng.integers(1, 3, 500)])
    many[:50, :4] = np.round(many[:50, :4] * 2) / 2 + 0.005  # about a half in the last kept digit
    many[50, 0], many[51, 4], many[52, 3] = np.nan, np.inf, -np.inf  # written as json writes them
    expected = [json.dumps(item) for item in _annotations_one_by_one(many, 4, 9)]
    assert annotation_lines(many, CLASSES, "background", image_id=4, first_id=9).split(",\n") == expected
    assert one_per_line(coco_annotations(many, CLASSES, "background", image_id=4, first_id=9)).split(",\n") == expected
    assert annotation_lines(np.zeros((0, 6)), CLASSES, "background") == ""


@pytest.mark.parametrize("count", [0, 1, 300])
def test_a_pictures_detections_json_written_from_its_boxes_is_the_documents(count):
    many = np.array([[k, k, k + 32.5, k + 32, 0.5 + k / 1000, 1 + k % 2] for k in range(count)], np.float64)
    doc = coco_detections(many, CLASSES, "background", file_name="x.png", width=512, height=512)
    assert picture_detections_json(many, CLASSES, "background", file_name="x.png", width=512,
                                   height=512) == detections_json(doc)


class StagedBytes:
    """Stands for a RunWriter: keeps what is staged with ``write_file``."""

    def __init__(self):
        self.files = {}

    def write_file(self, name, local_path):
        with open(local_path, "rb") as fh:
            self.files[name] = fh.read()


def test_a_runs_detections_spooled_picture_by_picture_are_the_whole_documents_bytes():
    many = np.array([[k, k, k + 32.5, k + 32, 0.5 + k / 1000, 1 + k % 2] for k in range(300)], np.float64)
    kept = coco_annotations(boxes(), CLASSES, "background", image_id=7, first_id=40)  # numbered by an earlier run
    images = [{"id": k, "file_name": f"{k}.png", "name": str(k), "width": 512, "height": 512} for k in (1, 2, 3, 4)]
    staged = StagedBytes()
    with RunDetections(CLASSES, "background") as run:
        run.add(images[0], annotations=kept)
        run.add(images[1], boxes=np.zeros((0, 6)))
        run.add(images[2], boxes=many)
        run.add(images[3], annotations=[])
        run.write(staged)
    annotations = [{**a, "id": n, "image_id": 1} for n, a in enumerate(kept, start=1)]
    annotations += coco_annotations(many, CLASSES, "background", image_id=3, first_id=len(kept) + 1)
    whole = {"info": {"description": "tilescan detections"}, "images": images,
             "categories": coco_categories(CLASSES, "background"), "annotations": annotations}
    assert staged.files == {"detections.json": detections_json(whole)}
    with RunDetections(CLASSES, "background") as run:
        run.add(images[0], boxes=np.zeros((0, 6)))
        run.write(staged)
    assert json.loads(staged.files["detections.json"])["annotations"] == []
