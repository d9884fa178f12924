"""A picture's header (read without decoding its pixels) and its whole decode to 8-bit RGB.

The header is all the driver needs to plan a run: size, mode, format, frames, EXIF
orientation, and which reader can decode bands of it (:mod:`pixels.bands`). Limits are
checked from the header, before any pixel is decoded.
"""
from __future__ import annotations

import io
import struct
import threading
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core import storage
from core.errors import InputError
from pixels.convert import conversion_note, pil_to_rgb8
from pixels.georef import read_georef

__all__ = ["ImageInfo", "probe_image", "read_image", "decode_image", "stored_version", "DEFAULT_MAX_PIXELS", "READERS",
           "WHOLE_DECODE_MAX_PIXELS", "SEGMENT_MAX_PIXELS"]

DEFAULT_MAX_PIXELS = 400_000_000
#: The largest picture of a format that cannot be read in bands (GIF, BMP, WebP, and pictures
#: Pillow must turn): each band decodes it whole, 0.3 GB at this size. A 19,999² GIF, under
#: --max-pixels, took 609 s and a 1.4 GB worker per band.
WHOLE_DECODE_MAX_PIXELS = 100_000_000
#: The largest tile or strip of a TIFF: tifffile decodes a whole one for every band that
#: touches it (a 1-megapixel picture stored as one 16384² tile cost 1 GB per band).
SEGMENT_MAX_PIXELS = 32 * 2 ** 20
#: The largest PNG text chunk read (Pillow's own limit is 1 MB; its limit on all text, 64 MB, stays).
PNG_TEXT_CHUNK_BYTES = 32 * 2 ** 20
#: How bands of a picture are read: ``tiff`` windowed reads of strips or tiles (tifffile),
#: ``vips`` a sequential decode that stops at the band's last row (libvips), ``pillow`` a
#: whole decode (size-capped) cut to the band.
READERS = ("tiff", "vips", "pillow")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Samples per pixel of each PNG colour type (IHDR byte 25).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Deflate never compresses better than this (a 258-byte match in two bits).
_DEFLATE_MAX_RATIO = 1032
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_VIPS_FORMATS = ("JPEG", "PNG")
_VIPS_MODES = ("L", "LA", "RGB", "RGBA", "P", "I;16", "I;16B", "I;16L")
_ORIENTATION_TAG = 0x0112
#: Pillow's names of JPEG files (MPO: a JPEG holding several pictures, such as a phone's).
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_HEADER_BLOCK = 1 << 16  # read-ahead while parsing headers: a header, not the picture
#: A picture this small is read whole by its probe: on a lake, one request instead of a size
#: lookup, a header read and a read of its end.
_PROBE_WHOLE_BYTES = 1 << 20
_pillow_limits = threading.Lock()


@dataclass(frozen=True)
class ImageInfo:
    """What the input is and what reading it does; goes into the manifest.

    ``width`` and ``height`` are the picture as shown, after its EXIF orientation.
    ``frames`` counts frames or pages (only the first is scored); ``reader`` is how bands
    are read (:data:`READERS`); ``etag`` identifies the stored version (the storage's ETag,
    or modification time and size).
    """

    url: str
    width: int
    height: int
    format: str
    mode: str
    bit_depth: int
    converted: str | None
    frames: int = 1
    orientation: int = 1
    reader: str = "pillow"
    tiled: bool = False
    bytes: int | None = None
    etag: str | None = None
    #: A GeoTIFF's pixel-to-map transform and CRS (:meth:`pixels.georef.Georef.to_json`), else None.
    georef: dict | None = None

    def to_json(self) -> dict:
        return asdict(self)


@contextmanager
def pillow_unlimited():
    """Pillow's own pixel limit lifted: it would refuse big scans (a DecompressionBombError, above
    179 megapixels) before our ``--max-pixels`` could be checked; and its limit on one PNG text
    chunk raised from 1 MB to :data:`PNG_TEXT_CHUNK_BYTES` (a scanner's or an editor's metadata
    is not damage). One thread at a time."""
    from PIL import PngImagePlugin

    with _pillow_limits, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        text, PngImagePlugin.MAX_TEXT_CHUNK = PngImagePlugin.MAX_TEXT_CHUNK, PNG_TEXT_CHUNK_BYTES
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous
            PngImagePlugin.MAX_TEXT_CHUNK = text


def _notes(mode: str, bit_depth: int, orientation: int, frames: int, unit: str) -> str | None:
    parts = [conversion_note(mode, bit_depth)]
    if orientation != 1:
        parts.append(f"EXIF orientation {orientation} applied")
    if frames > 1:
        parts.append(f"first of {frames} {unit} scored")
    return "; ".join(p for p in parts if p) or None


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, 1 to 8, read from the header only (never by decoding the picture)."""
    if image.format == "PNG":
        # Pillow would decode the whole picture looking for an eXIf chunk after the pixel data.
        raw = image.info.get("exif")
        exif = Image.Exif()
        if raw:
            exif.load(raw)
    elif image.format in ("JPEG", "MPO", "WEBP", "TIFF"):
        exif = image.getexif()
    else:
        return 1
    value = exif.get(_ORIENTATION_TAG, 1)
    return int(value) if value in range(1, 9) else 1


def _probe_pillow(fh, head: bytes, url: str) -> dict:
    with pillow_unlimited():
        try:
            image = Image.open(fh)
        except UnidentifiedImageError:
            raise InputError(f"not an image (unrecognised format): {url}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"image is truncated or corrupt: {url} ({exc})") from None
        try:
            frames = int(getattr(image, "n_frames", 1))
            orientation = _orientation(image)
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"image is truncated or corrupt: {url} ({exc})") from None
    mode, fmt = image.mode, image.format or "unknown"
    png_depth = head[24] if head[:8] == _PNG_SIGNATURE and len(head) > 24 else None
    bit_depth = png_depth or {"I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "1": 1}.get(mode, 8)
    stored = image.size
    if fmt == "TIFF":  # Pillow reports some oriented TIFFs' size as shown already: the tags say how they are stored
        stored = (int(image.tag_v2.get(256, stored[0])), int(image.tag_v2.get(257, stored[1])))
    width, height = stored if orientation < 5 else stored[::-1]
    streams = fmt in _VIPS_FORMATS and mode in _VIPS_MODES and bit_depth >= 8 and orientation == 1 and frames == 1
    return {"width": width, "height": height, "format": fmt, "mode": mode, "bit_depth": bit_depth, "frames": frames,
            "orientation": orientation, "reader": "vips" if streams else "pillow",
            "converted": _notes(mode, bit_depth, orientation, frames, "frames")}


def _probe_tiff(fh, url: str) -> dict | None:
    """The header of a TIFF that tifffile can read in bands, or ``None`` to leave it to Pillow."""
    import tifffile

    try:
        with tifffile.TiffFile(fh) as tif:
            page = tif.pages[0]
            frames = len(tif.pages)
            photometric, samples, dtype = int(page.photometric), int(page.samplesperpixel), page.dtype
            orientation = int(page.tags.valueof(274, default=1) or 1)
            height, width, tiled = int(page.imagelength), int(page.imagewidth), bool(page.is_tiled)
            segment = (int(page.tilewidth) * int(page.tilelength) if tiled
                       else width * min(height, int(page.rowsperstrip or height)))
            # JPEG tiles in YCbCr (scanners', slide scanners' and many COGs' choice) decode to RGB in
            # the JPEG codec; other subsampled YCbCr is left to Pillow. Separate colour planes are
            # read plane by plane and interleaved.
            jpeg_ycbcr = photometric == 6 and int(page.compression) == 7 and samples == 3
            simple = ((photometric in (1, 2) and not page.is_subsampled or jpeg_ycbcr) and samples in (1, 2, 3, 4)
                      and dtype in (np.uint8, np.uint16) and orientation == 1)
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
            georef = read_georef(page)
    except (tifffile.TiffFileError, ValueError, OSError, KeyError, IndexError) as exc:
        raise InputError(f"image is truncated or corrupt: {url} ({exc})") from None
    if samples > 1 and dtype not in (np.uint8, np.uint16):  # Pillow reads one-sample 32-bit and float only
        raise InputError(f"image is a TIFF of {np.dtype(dtype).name} samples, {samples} per pixel: tilescan reads 8- "
                         f"and 16-bit colour; save it as 8- or 16-bit: {url}")
    if segment > SEGMENT_MAX_PIXELS:
        kind = "tile" if tiled else "strip"
        raise InputError(f"image stores its pixels in {kind}s of {segment:,} pixels, over the {SEGMENT_MAX_PIXELS:,} "
                         f"one may hold (each band decodes a whole {kind}): re-save it with smaller tiles (vips "
                         f"tiffsave IN OUT.tif --tile --tile-width 512 --tile-height 512): {url}")
    fh.seek(0, 2)
    if ends and max(ends) > fh.tell():
        raise InputError(f"image is truncated or corrupt: {url} (its pixel data run past the end of the file)")
    if not simple:
        return None
    bit_depth = 16 if dtype == np.uint16 else 8
    if photometric == 1:  # min-is-black grayscale
        mode = "I;16" if bit_depth == 16 else "LA" if samples == 2 else "L"
    else:
        mode = "RGBA" if samples == 4 else "RGB"
    return {"width": width, "height": height, "format": "TIFF", "mode": mode, "bit_depth": bit_depth, "frames": frames,
            "orientation": 1, "reader": "tiff", "tiled": tiled,
            "converted": _notes(mode, bit_depth, 1, frames, "pages"), "georef": georef and georef.to_json()}


def _check_complete(fh, fmt: str, head: bytes, url: str) -> None:
    """Refuse a PNG without its closing IEND chunk or a JPEG without its end marker: a file cut
    short, found from its last bytes instead of by decoding it all. A PNG too small to hold
    its pixels even at deflate's greatest compression is refused too (a header that claims
    a huge picture over a few bytes)."""
    if fmt not in ("PNG", "JPEG"):
        return
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(max(0, size - (12 if fmt == "PNG" else 65536)))
    tail = fh.read()
    complete = tail.endswith(b"IEND\xaeB`\x82") if fmt == "PNG" else b"\xff\xd9" in tail
    if not complete:
        raise InputError(f"image is truncated or corrupt: {url} (the file ends before its {fmt} end marker)")
    if fmt == "PNG" and len(head) >= 26:
        width, height = struct.unpack(">II", head[16:24])
        bits = width * height * head[24] * _PNG_CHANNELS.get(head[25], 1)
        least = bits // 8 // _DEFLATE_MAX_RATIO
        if size < least:
            raise InputError(f"image is truncated or corrupt: {url} ({size:,} bytes cannot hold its "
                             f"{width}x{height} pixels)")


def stored_version(details: dict) -> str | None:
    """Which version of a file ``details`` (fsspec's ``info``) describe: the storage's ETag, else
    its modification time and size (what :attr:`ImageInfo.etag` holds)."""
    etag = details.get("etag") or details.get("ETag")
    if etag:
        return str(etag).strip('"')
    mtime = details.get("mtime") or details.get("last_modified") or details.get("LastModified")
    return f"{mtime}-{details.get('size')}" if mtime is not None else None


def _open_for_probe(fs, path: str, size: int | None):
    if size is not None and size <= _PROBE_WHOLE_BYTES:
        return io.BytesIO(fs.cat_file(path))
    return fs.open(path, "rb", block_size=_HEADER_BLOCK)


def probe_image(url: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1,
                storage_options: dict | None = None) -> ImageInfo:
    """The header of the picture at ``url`` (local path or URL), its pixels left undecoded.

    Raises
    ------
    InputError
        Missing file, a folder, not an image, an unreadable header, more than
        ``max_pixels`` pixels, or a side below ``min_side``.
    """
    fs, path = storage.filesystem(url, storage_options)
    try:
        with storage.errors("read", url):
            details = fs.info(path)
    except FileNotFoundError:
        raise InputError(f"image not found: {url}") from None
    if details.get("type") == "directory":
        raise InputError(f"image path is a folder, not a file: {url}")
    if details.get("type") == "other":  # a FIFO, socket or device: opening or reading it may never end
        raise InputError(f"image path is not a regular file (a pipe, socket or device): {url}")
    try:
        with storage.errors("read", url), _open_for_probe(fs, path, details.get("size")) as fh:
            head = fh.read(32)
            fh.seek(0)
            fields = _probe_tiff(fh, url) if head[:4] in _TIFF_MAGICS else None
            if fields is None:
                fh.seek(0)
                fields = _probe_pillow(fh, head, url)
                _check_complete(fh, fields["format"], head, url)
    except FileNotFoundError:
        raise InputError(f"image not found: {url}") from None
    except IsADirectoryError:
        raise InputError(f"image path is a folder, not a file: {url}") from None
    width, height = fields["width"], fields["height"]
    if fields["reader"] == "pillow" and width * height > WHOLE_DECODE_MAX_PIXELS:
        raise InputError(f"image is a {width}x{height} {fields['format']} = {width * height:,} pixels; a "
                         f"{fields['format']} cannot be read in bands and is decoded whole, at most "
                         f"{WHOLE_DECODE_MAX_PIXELS:,} pixels: convert it to a tiled TIFF (vips tiffsave IN OUT.tif "
                         f"--tile --compression deflate): {url}")
    if width * height > max_pixels:
        raise InputError(f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                         f"{max_pixels:,} (--max-pixels)")
    if width < min_side or height < min_side:
        raise InputError(f"image is {width}x{height}, smaller than the {min_side}x{min_side} window")
    return ImageInfo(url=url, bytes=details.get("size"), etag=stored_version(details), **fields)


def read_image(url: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1,
               storage_options: dict | None = None) -> tuple[np.ndarray, ImageInfo]:
    """The whole picture at ``url`` as ``(H, W, 3)`` uint8 RGB, as shown (EXIF orientation applied).

    Only the first frame or page is decoded. Memory is the encoded file plus the decoded
    picture: use :func:`pixels.bands.read_band` for pictures too big for that.

    Raises
    ------
    InputError
        As :func:`probe_image`, checked before decoding, and for truncated or corrupt data.
    """
    info = probe_image(url, max_pixels=max_pixels, min_side=min_side, storage_options=storage_options)
    return decode_image(info, storage_options=storage_options), info


def decode_image(info: ImageInfo, *, storage_options: dict | None = None) -> np.ndarray:
    """The whole picture ``info`` describes (its header already checked by :func:`probe_image`),
    as ``(H, W, 3)`` uint8 RGB, as shown.

    Raises
    ------
    InputError
        For a missing file, truncated or corrupt data, or pixels that disagree with the header.
    """
    url = info.url
    fs, path = storage.filesystem(url, storage_options)
    try:
        data = storage.read_bytes(fs, path, url=url)
    except FileNotFoundError:
        raise InputError(f"image not found: {url}") from None
    try:
        with pillow_unlimited():
            image = Image.open(io.BytesIO(data))
            image.load()
            if info.orientation != 1:
                image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if info.reader == "tiff":  # a compression Pillow's libtiff lacks (WebP or JPEG 2000 tiles)
            from pixels.bands import read_band  # here: bands builds on this module

            return read_band(info, 0, info.height, storage_options=storage_options)
        raise InputError(f"image is truncated or corrupt: {url} ({exc})") from None
    if info.format in _JPEG_FORMATS:
        _check_jpeg_data(data, url)
    pixels = pil_to_rgb8(image, info.bit_depth)
    check_decoded_size(info, pixels.shape[1], pixels.shape[0])
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _check_jpeg_data(data: bytes, url: str) -> None:
    """Refuse a JPEG whose entropy-coded data are damaged between intact markers. libjpeg reports
    that only as a warning ("Corrupt JPEG data"), which Pillow drops, filling the rest with grey:
    libvips, failing on warnings, decodes it once more to hear it. Only JPEGs that Pillow decodes
    (oriented, CMYK, multi-picture) pay for this; the others are decoded by libvips already."""
    import pyvips

    try:
        pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="warning").avg()
    except pyvips.Error as exc:
        said = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise InputError(f"image is truncated or corrupt: {url} ({said})") from None


def check_decoded_size(info: ImageInfo, width: int, height: int) -> None:
    """Refuse a decoder's size that is not the probed header's: a header that lies, or a file
    replaced after it was probed (its bands would be cut from another picture's rows)."""
    if (width, height) != (info.width, info.height):
        raise InputError(f"image decodes to {width}x{height}, but its header read {info.width}x{info.height} "
                         f"when the run was planned (replaced since?): {info.url}")
