"""Reading pictures: headers without pixels, and band reads equal to the same rows of a whole decode."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from core.errors import InputError
from pixels import probe_image, read_band, read_image, read_reduced


def smooth(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colours with noise: like a photograph to a JPEG encoder, and every row different."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC)).astype(int)
    return np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)


def bands_of(height: int):
    """Top, middle and bottom bands, and the whole picture."""
    return [(0, 40), (height // 3, height // 3 + 57), (height - 33, height), (0, height)]


def save_pillow(path, image: Image.Image, **kwargs) -> str:
    image.save(path, **kwargs)
    return str(path)


PICTURE = smooth(301, 263)

PILLOW_CASES = {
    "png-rgb": lambda p: save_pillow(p / "a.png", Image.fromarray(PICTURE)),
    "png-gray": lambda p: save_pillow(p / "a.png", Image.fromarray(PICTURE[:, :, 1])),
    "png-rgba": lambda p: save_pillow(p / "a.png", Image.fromarray(np.dstack([PICTURE, PICTURE[:, :, :1]]))),
    "png-palette": lambda p: save_pillow(p / "a.png", Image.fromarray(PICTURE).convert("P")),
    "png-gray16": lambda p: save_pillow(p / "a.png", Image.fromarray(PICTURE[:, :, 0].astype(np.uint16) * 257)),
    "jpeg-420": lambda p: save_pillow(p / "a.jpg", Image.fromarray(PICTURE), quality=85),
    "jpeg-444-progressive": lambda p: save_pillow(p / "a.jpg", Image.fromarray(PICTURE), quality=95, subsampling=0,
                                                  progressive=True),
    "jpeg-gray": lambda p: save_pillow(p / "a.jpg", Image.fromarray(PICTURE[:, :, 2]), quality=90),
}


def tiff(path, array, **kwargs) -> str:
    tifffile.imwrite(path, array, **kwargs)
    return str(path)


TIFF_CASES = {
    "tiff-stripped": lambda p: tiff(p / "a.tif", PICTURE, photometric="rgb", rowsperstrip=16, compression="lzw"),
    "tiff-tiled": lambda p: tiff(p / "a.tif", PICTURE, photometric="rgb", tile=(64, 64), compression="zlib"),
    "bigtiff-tiled": lambda p: tiff(p / "a.tif", PICTURE, photometric="rgb", tile=(32, 48), bigtiff=True,
                                    compression="zlib"),
    "tiff-gray16-tiled": lambda p: tiff(p / "a.tif", PICTURE[:, :, 0].astype(np.uint16) * 257 + 3,
                                        photometric="minisblack", tile=(64, 64)),
    "tiff-uncompressed": lambda p: tiff(p / "a.tif", PICTURE, photometric="rgb"),
    # JPEG tiles or strips in YCbCr, subsampled (slide scanners', many COGs'): the codec gives RGB.
    "tiff-jpeg-ycbcr-tiled": lambda p: tiff(p / "a.tif", PICTURE, photometric="ycbcr", tile=(64, 64),
                                            compression="jpeg", subsampling=(2, 2)),
    "tiff-jpeg-ycbcr-stripped": lambda p: tiff(p / "a.tif", PICTURE, photometric="ycbcr", rowsperstrip=24,
                                               compression="jpeg", subsampling=(2, 1)),
    "tiff-planes-tiled": lambda p: tiff(p / "a.tif", np.moveaxis(PICTURE, 2, 0), photometric="rgb",
                                        planarconfig="separate", tile=(64, 64), compression="zlib"),
    "tiff-planes-stripped": lambda p: tiff(p / "a.tif", np.moveaxis(PICTURE, 2, 0), photometric="rgb",
                                           planarconfig="separate", rowsperstrip=16),
}


@pytest.mark.parametrize("kept", [True, False], ids=["kept-whole", "streamed"])
@pytest.mark.parametrize("case, reader", [*((c, "vips") for c in PILLOW_CASES), *((c, "tiff") for c in TIFF_CASES)])
def test_band_reads_equal_the_whole_decode(tmp_path, case, reader, kept, monkeypatch):
    if not kept:  # as for a picture over the size kept whole: a decoder goes down the bands, restarting above
        monkeypatch.setattr("pixels.bands.WHOLE_PIXELS", 0)
        monkeypatch.setattr("pixels.bands.TIFF_STEP_PIXELS", 0)  # and a TIFF band read one chunk row at a time
    path = {**PILLOW_CASES, **TIFF_CASES}[case](tmp_path)
    whole, info = read_image(path)
    assert info.reader == reader and (info.width, info.height) == (263, 301)
    assert probe_image(path) == info
    for y0, y1 in bands_of(info.height):
        band = read_band(info, y0, y1)
        assert band.dtype == np.uint8 and band.shape == (y1 - y0, 263, 3)
        np.testing.assert_array_equal(band, whole[y0:y1], err_msg=f"{case} rows {y0}:{y1}")


def test_overlapping_bands_down_the_picture_take_one_decode(tmp_path, monkeypatch):
    import pyvips

    monkeypatch.setattr("pixels.bands.WHOLE_PIXELS", 0)
    path = save_pillow(tmp_path / "a.png", Image.fromarray(PICTURE))
    info = probe_image(path)
    opened = []
    real = pyvips.Image.new_from_source
    monkeypatch.setattr(pyvips.Image, "new_from_source", lambda *a, **k: opened.append(1) or real(*a, **k))
    bands = [(0, 48), (32, 112), (96, 96 + 16), (100, 260), (250, 301)]  # with halo rows, and a skip
    for y0, y1 in bands:
        np.testing.assert_array_equal(read_band(info, y0, y1), PICTURE[y0:y1])
    assert len(opened) == 1
    read_band(info, 10, 20)  # above the decoder: it starts again
    assert len(opened) == 2


def test_other_formats_are_read_whole_and_cut(tmp_path):
    path = save_pillow(tmp_path / "a.bmp", Image.fromarray(PICTURE))
    info = probe_image(path)
    assert info.reader == "pillow" and info.format == "BMP"
    np.testing.assert_array_equal(read_band(info, 10, 90), PICTURE[10:90])


def png_header_only(path, width: int, height: int) -> str:
    """A PNG of a signature, an IHDR claiming ``width x height`` 8-bit RGB, and an IEND: no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return str(path)


def flat_png(path, width: int, height: int) -> str:
    """A real, complete PNG of one colour, written by libvips without the picture in memory."""
    import pyvips

    pyvips.Image.black(width, height, bands=3).pngsave(str(path), compression=9)
    return str(path)


def test_header_only_for_a_picture_over_pillows_own_limit(tmp_path):
    # 15000 x 15000 = 225 megapixels: over Pillow's bomb guard, under our default limit.
    path = flat_png(tmp_path / "big.png", 15000, 15000)
    info = probe_image(path)
    assert (info.width, info.height, info.reader) == (15000, 15000, "vips")
    with pytest.raises(InputError, match="over the limit of 100,000,000"):
        probe_image(path, max_pixels=100_000_000)
    reduced = read_reduced(info, 100)
    assert reduced.shape == (150, 150, 3) and not reduced.any()


def test_a_header_claiming_more_pixels_than_the_file_can_hold_is_refused(tmp_path):
    path = png_header_only(tmp_path / "claims.png", 15000, 15000)  # 45 bytes
    with pytest.raises(InputError, match=r"truncated or corrupt: .*45 bytes cannot hold its 15000x15000 pixels"):
        probe_image(path)


@pytest.mark.parametrize("reader_case", ["png", "tiled"])
def test_reduced_reads_equal_the_reduced_whole_decode(tmp_path, reader_case, monkeypatch):
    monkeypatch.setattr("pixels.bands._REDUCE_BAND_PIXELS", 203 * 40)  # ten bands of 40 rows and a last one
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (301, 203, 3), dtype=np.uint8)
    if reader_case == "png":
        path = str(tmp_path / "p.png")
        Image.fromarray(pixels).save(path)
    else:
        import tifffile

        path = str(tmp_path / "p.tif")
        tifffile.imwrite(path, pixels, tile=(64, 64))
    want = np.asarray(Image.fromarray(pixels).reduce(4))
    assert np.array_equal(read_reduced(probe_image(path), 4), want)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_a_file_cut_short_is_refused_from_its_header(tmp_path, suffix):
    full = tmp_path / f"full.{suffix}"
    Image.fromarray(PICTURE).save(full)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt: .* ends before its (PNG|JPEG) end marker"):
        probe_image(str(cut))


def test_a_tiff_cut_short_is_refused_from_its_header(tmp_path):
    path = TIFF_CASES["tiff-tiled"](tmp_path)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(InputError, match="pixel data run past the end of the file"):
        probe_image(str(cut))


def test_damaged_pixel_data_is_refused_by_band_reads(tmp_path):
    path = tmp_path / "damaged.png"
    Image.fromarray(PICTURE).save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 200] = bytes(200)  # the header and the end marker intact
    path.write_bytes(bytes(data))
    info = probe_image(str(path))
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_band(info, 250, 301)


@pytest.mark.parametrize("compression", ["webp", "jpeg2000"])
def test_a_tiff_whose_compression_pillow_lacks_is_read_whole_and_in_bands(tmp_path, compression):
    path = tiff(tmp_path / "a.tif", PICTURE, photometric="rgb", tile=(64, 64), compression=compression,
                compressionargs={"level": 100, "lossless": True} if compression == "webp" else {"level": 0})
    whole, info = read_image(path)
    assert info.reader == "tiff"
    np.testing.assert_array_equal(whole, tifffile.imread(path))
    np.testing.assert_array_equal(read_band(info, 100, 157), whole[100:157])


REPLACEABLE = {"png": ("vips", PILLOW_CASES["png-rgb"]), "tiff": ("tiff", TIFF_CASES["tiff-tiled"]),
               "bmp": ("pillow", lambda p: save_pillow(p / "a.bmp", Image.fromarray(PICTURE)))}


@pytest.mark.parametrize("kept", [True, False], ids=["kept-whole", "streamed"])
@pytest.mark.parametrize("side", ["smaller", "taller", "wider"])
@pytest.mark.parametrize("case", REPLACEABLE)
def test_a_picture_replaced_after_its_header_was_read_is_refused(tmp_path, case, side, kept, monkeypatch):
    """Its bands would be cut from another picture's rows: too few of them, or some never scored."""
    if not kept:
        monkeypatch.setattr("pixels.bands.WHOLE_PIXELS", 0)
    reader, write = REPLACEABLE[case]
    path = write(tmp_path)
    info = probe_image(path)
    assert info.reader == reader
    height, width = {"smaller": (150, 263), "taller": (400, 263), "wider": (301, 300)}[side]
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setattr(f"{__name__}.PICTURE", smooth(height, width, seed=1))
    replacement = write(other)
    (other / replacement.rsplit("/", 1)[-1]).replace(path)
    with pytest.raises(InputError, match=rf"decodes to {width}x{height}, but its header read 263x301 when the run "
                                         rf"was planned \(replaced since\?\): {path}"):
        read_band(info, 0, 40)


def test_band_outside_the_picture_is_refused(tmp_path):
    info = probe_image(PILLOW_CASES["png-rgb"](tmp_path))
    with pytest.raises(InputError, match="outside"):
        read_band(info, 290, 320)
