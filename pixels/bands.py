"""Read horizontal bands of a picture from local disk or the lake, without decoding the rest.

What an executor calls for its rows, by the reader :func:`pixels.read.probe_image` chose:

- ``tiff``: tiled or stripped TIFF and BigTIFF (COG included; interleaved or separate colour
  planes; JPEG in YCbCr too), read through tifffile's zarr view: only the tiles or strips
  that the band touches are fetched and decoded;
- ``vips``: JPEG and PNG, decoded from the top by libvips (sequential access, a few rows
  held at a time): a process keeps its decoder open, so bands asked for top to bottom
  cost one decode in all; a band above the decoder's position starts it again;
- ``pillow``: anything else, decoded whole (within ``--max-pixels``) and cut.

A picture of up to :data:`WHOLE_PIXELS` is decoded whole once and kept by the process
(the most recent ones, up to twice that in all), so the bands a Python worker scores, and
the overlay it draws afterwards, cost one decode. Every reader gives the same pixels as
:func:`pixels.read.read_image`'s whole decode.
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
from PIL import Image

from core import storage
from core.errors import InputError, StorageError, StorageUnreachable, TilescanError
from core.redaction import redact
from pixels.convert import samples_to_rgb8
from pixels.read import ImageInfo, check_decoded_size, decode_image

__all__ = ["read_band", "read_reduced", "WHOLE_PIXELS", "HELD_WHOLE_PIXELS", "TIFF_STEP_PIXELS"]

#: Pictures up to this many pixels are decoded whole once per process and kept.
WHOLE_PIXELS = 32_000_000
#: The largest picture the finishing stage holds whole (192 MB of RGB): its overlay is drawn at
#: full size and its viewer's pyramid tiled from memory; a larger one is read band by band.
HELD_WHOLE_PIXELS = 64_000_000
#: What the kept pictures may hold in all, in pixels (the least recently used go first).
_KEPT_PIXELS = 2 * WHOLE_PIXELS
#: Decoders a process keeps open (the least recently used are closed first).
_OPEN_STREAMS = 2
#: A TIFF band is decoded a few rows of tiles or strips at a time, at most this many pixels
#: (at least one row of them): zarr decodes all the chunks of a read before copying any out,
#: so a whole band at once would hold its tiles beside the band.
TIFF_STEP_PIXELS = 8_000_000
#: Read-ahead of band reads: large enough for few requests to the lake, small against a band.
_BLOCK = 8 << 20
#: Pixels read at a time while reducing a picture.
_REDUCE_BAND_PIXELS = 16_000_000
#: How libvips opens a PNG or JPEG, from the lake or from bytes: top to bottom, failing on
#: truncated data rather than filling the missing rows with black.
_VIPS_LOAD = {"access": "sequential", "fail_on": "truncated"}
#: libjpeg reports damaged entropy-coded data ("Corrupt JPEG data: premature end of data
#: segment") only as a warning, and fills the rest with grey: a JPEG fails on warnings. (A PNG
#: does not: libpng warns about harmless things, such as a known-incorrect sRGB profile.)
_VIPS_FAIL_ON = {"JPEG": "warning", "MPO": "warning"}


def _vips_load(info: ImageInfo) -> dict:
    return {**_VIPS_LOAD, "fail_on": _VIPS_FAIL_ON.get(info.format, _VIPS_LOAD["fail_on"])}
_VIPS_DTYPES = {"uchar": np.uint8, "ushort": np.uint16, "char": np.int8, "short": np.int16, "uint": np.uint32,
                "int": np.int32, "float": np.float32, "double": np.float64}

_kept: OrderedDict = OrderedDict()  # picture key -> (H, W, 3) uint8
_streams: OrderedDict = OrderedDict()  # picture key -> _RowStream


def _key(info: ImageInfo) -> tuple:
    return info.url, info.etag, info.bytes, info.width, info.height


@contextmanager
def _decoding(info: ImageInfo):
    """Decoders' and storage's failures as one-line :class:`InputError` or :class:`StorageError`."""
    try:
        yield
    except FileNotFoundError:
        raise InputError(f"image not found: {info.url}") from None
    except TilescanError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise their own types for damaged data
        if isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ == "ServiceRequestError":
            raise StorageUnreachable(f"cannot read {redact(info.url)}: storage unreachable: {redact(exc)}") from None
        if type(exc).__module__.startswith("azure"):
            raise StorageError(f"cannot read {redact(info.url)}: {redact(exc)}") from None
        said = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # libvips: several lines
        raise InputError(f"image is truncated or corrupt: {info.url} ({type(exc).__name__}: {said})") from None


def _open(info: ImageInfo, storage_options):
    fs, path = storage.filesystem(info.url, storage_options)
    with storage.errors("read", info.url):
        return fs.open(path, "rb", block_size=_BLOCK)


def _tiff_band(info: ImageInfo, fh, y0: int, y1: int) -> np.ndarray:
    import tifffile
    import zarr

    with tifffile.TiffFile(fh) as tif:
        planes = int(tif.pages[0].planarconfig) == 2 and tif.pages[0].samplesperpixel > 1
        with tif.pages[0].aszarr() as store:
            samples = zarr.open(store, mode="r")  # (H, W[, S]), or (S, H, W) for separate planes
            shape = (*samples.shape[1:], samples.shape[0]) if planes else samples.shape
            check_decoded_size(info, shape[1], shape[0])
            rows = samples.chunks[1 if planes else 0]
            step = rows * max(1, TIFF_STEP_PIXELS // (rows * shape[1] * (shape[2] if planes else 1)))
            band = np.empty((y1 - y0, *shape[1:]), samples.dtype)
            top = y0
            while top < y1:
                bottom = min(y1, (top // step + 1) * step)  # whole chunk rows, but the band's first and last
                if planes:
                    band[top - y0:bottom - y0] = np.moveaxis(samples.get_basic_selection((slice(None),
                                                                                          slice(top, bottom))), 0, -1)
                elif zarr.__version__.startswith("2."):  # decodes straight into the band
                    samples.get_basic_selection(slice(top, bottom), out=band[top - y0:bottom - y0])
                else:  # zarr 3 takes only its own buffers as out=
                    band[top - y0:bottom - y0] = samples[top:bottom]
                top = bottom
            return band


class _RowStream:
    """The rows of a PNG or JPEG decoded once from the top (libvips, sequential access), served
    as bands that move down the picture; rows from the last band's top on are held."""

    def __init__(self, info: ImageInfo, storage_options):
        import pyvips

        self.fh = _open(info, storage_options)
        # The source's callbacks and the image must live as long as the region reads through them.
        self.source = pyvips.SourceCustom()
        self.source.on_read(lambda size: self.fh.read(size))
        self.source.on_seek(lambda offset, whence: (self.fh.seek(offset, whence), self.fh.tell())[1])
        self.image = pyvips.Image.new_from_source(self.source, "", **_vips_load(info))
        try:
            check_decoded_size(info, self.image.width, self.image.height)
        except InputError:
            self.image = self.source = None
            self.fh.close()
            raise
        self.width, self.bands = self.image.width, self.image.bands
        self.dtype = _VIPS_DTYPES[self.image.format]
        self.region = pyvips.Region.new(self.image)
        self.top = self.next = 0  # rows [top, next) are held
        self.rows = np.empty((0, self.width, self.bands), self.dtype)

    def _fetch(self, y1: int) -> np.ndarray:
        count = y1 - self.next
        data = self.region.fetch(0, self.next, self.width, count)
        self.next = y1
        return np.frombuffer(data, self.dtype).reshape(count, self.width, self.bands)

    def band(self, y0: int, y1: int) -> np.ndarray | None:
        """Samples of rows ``y0:y1``; ``None`` when ``y0`` is above the rows still held."""
        if y0 < self.top:
            return None
        while self.next < y0:  # rows above the band: decoded and let go, a few at a time
            self._fetch(min(y0, self.next + 256))
        held = self.rows[max(0, y0 - self.top):]
        self.top = y0
        self.rows = held if y1 <= self.next else np.concatenate([held, self._fetch(y1)])
        return self.rows[:y1 - y0]

    def close(self) -> None:
        self.region = self.image = self.source = None  # libvips lets go of the file before it closes
        self.fh.close()


def _stream_band(info: ImageInfo, y0: int, y1: int, storage_options) -> np.ndarray:
    key = _key(info)
    stream = _streams.pop(key, None)
    samples = None if stream is None else stream.band(y0, y1)
    if samples is None:  # none open yet, or the band is above it: start from the top
        if stream is not None:
            stream.close()
        stream = _RowStream(info, storage_options)
        samples = stream.band(y0, y1)
    _streams[key] = stream
    while len(_streams) > _OPEN_STREAMS:
        _streams.popitem(last=False)[1].close()
    return samples


def _vips_whole(info: ImageInfo, storage_options) -> np.ndarray:
    """Samples of a whole PNG or JPEG decoded by libvips from the file's bytes, read in one go:
    a decoder that pulls the file through Python callbacks spends a fifth of its time in them."""
    import pyvips

    fs, path = storage.filesystem(info.url, storage_options)
    data = storage.read_bytes(fs, path, url=info.url)
    image = pyvips.Image.new_from_buffer(data, "", **_vips_load(info))
    check_decoded_size(info, image.width, image.height)
    samples = np.frombuffer(image.write_to_memory(), _VIPS_DTYPES[image.format])
    return samples.reshape(image.height, image.width, image.bands)


def _whole(info: ImageInfo, storage_options) -> np.ndarray:
    """The whole picture, decoded once per process while it stays among the kept ones."""
    key = _key(info)
    if key in _kept:
        _kept.move_to_end(key)
        return _kept[key]
    if info.reader == "pillow":
        pixels = decode_image(info, storage_options=storage_options)
    else:
        with _decoding(info):
            samples = _vips_whole(info, storage_options)
        pixels = samples_to_rgb8(samples)
    _kept[key] = pixels
    while sum(p.shape[0] * p.shape[1] for p in _kept.values()) > _KEPT_PIXELS and len(_kept) > 1:
        _kept.popitem(last=False)
    return pixels


def read_band(info: ImageInfo, y0: int, y1: int, *, storage_options: dict | None = None) -> np.ndarray:
    """Rows ``y0:y1`` of the picture ``info`` describes, as ``(y1 - y0, width, 3)`` uint8 RGB.

    Raises
    ------
    InputError
        When the rows are outside the picture, or the data are truncated or corrupt.

    Notes
    -----
    Memory is about the band for the ``tiff`` and ``vips`` readers, the whole picture for
    ``pillow`` and for pictures of up to :data:`WHOLE_PIXELS` (which stay in memory).
    """
    if not 0 <= y0 < y1 <= info.height:
        raise InputError(f"rows {y0}:{y1} are outside the {info.width}x{info.height} picture {info.url}")
    if info.reader != "tiff" and info.width * info.height <= WHOLE_PIXELS:
        return _whole(info, storage_options)[y0:y1]
    if info.reader == "pillow":
        return np.ascontiguousarray(decode_image(info, storage_options=storage_options)[y0:y1])
    with _decoding(info):
        if info.reader == "tiff":
            with _open(info, storage_options) as fh:
                samples = _tiff_band(info, fh, y0, y1)
        else:
            try:
                samples = _stream_band(info, y0, y1, storage_options)
            except Exception:
                stream = _streams.pop(_key(info), None)
                if stream is not None:
                    stream.close()
                raise
    band = samples_to_rgb8(samples)
    if band.shape != (y1 - y0, info.width, 3):
        raise InputError(f"rows {y0}:{y1} of {info.url} decoded to {band.shape}, expected "
                         f"{(y1 - y0, info.width, 3)}")
    return band


def read_reduced(info: ImageInfo, factor: int, *, storage_options: dict | None = None) -> np.ndarray:
    """The picture ``info`` describes, reduced by the whole ``factor`` (a box filter, as
    Pillow's ``Image.reduce``), as ``(ceil(H / factor), ceil(W / factor), 3)`` uint8 RGB.

    Read band by band, so memory stays near one band and the result (the ``pillow``
    reader aside, which decodes whole).
    """
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"`factor` must be an int >= 1, got {factor!r}")
    if info.reader == "pillow" or info.width * info.height <= WHOLE_PIXELS:
        whole = read_band(info, 0, info.height, storage_options=storage_options)
        return np.asarray(Image.fromarray(whole).reduce(factor))
    rows = max(factor, _REDUCE_BAND_PIXELS // info.width // factor * factor)
    parts = []
    for y0 in range(0, info.height, rows):  # top to bottom: one pass of a PNG or JPEG decoder
        band = read_band(info, y0, min(info.height, y0 + rows), storage_options=storage_options)
        parts.append(np.asarray(Image.fromarray(band).reduce(factor)))
        del band  # not held while the next one is read
    return np.concatenate(parts)
