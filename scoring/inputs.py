"""Which pictures a run scores, and the name of each one's output folder.

``--image`` is one picture (a path or URL), a glob (``az://scans/2026/*.png``) or a
folder (every picture under it); ``--images`` is a list: a text file of paths or URLs, one
per line, or a CSV or Parquet file with a ``path`` column (its other columns travel into
the run manifest as each picture's attributes). Relative paths in a list are relative to
the list's own folder. Only a single picture named directly keeps the flat output layout.

A folder or a glob never yields tilescan's own outputs: a picture in a folder that holds
the ``_tilescan`` marker (an overlay), or in its viewer's folder of tiles, is skipped, so a
run writing into the folder it scores does not score its overlays and tiles the next time.
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import io
import logging
import math
import os
import posixpath
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from core import credentials, storage
from core.errors import InputError
from scoring.outputs import MARKER, RESERVED_NAMES, VIEWER_FOLDER

__all__ = ["Inputs", "resolve_inputs", "resolve_source", "is_list_file", "output_names", "PICTURE_SUFFIXES",
           "LIST_SUFFIXES", "absolute_url"]

logger = logging.getLogger(__name__)

#: The file endings a folder's pictures are found by.
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
_GLOB = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r"[^\w.-]+")  # letters and digits of every script stay: scans are named in many languages
#: The longest picture name kept whole, in UTF-8 bytes: file systems allow 255 per name, and
#: the name also becomes ``image=<name>`` in the windows dataset. Longer ones are cut and
#: get the short hash ('-' and 8 hex digits), ending up this long.
MAX_NAME_BYTES = 255 - len("image=")


@dataclass(frozen=True)
class Inputs:
    """The pictures of a run, in a stable order.

    ``single`` is true when ``--image`` named one picture directly (the flat layout);
    ``attributes`` holds, per picture, the other columns of a CSV or Parquet list.
    """

    urls: tuple[str, ...]
    single: bool
    source: str
    attributes: tuple[dict, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.urls)


def _url(fs, path: str, like: str) -> str:
    """``path`` from ``fs`` as a URL in the form the user gave: a plain path stays a plain path,
    and a URL keeps its scheme and its ``CONTAINER@ACCOUNT`` part.

    >>> _url(None, "scans/2026/a.png", "abfs://scans@acct.dfs.core.windows.net/2026/*.png")
    'abfs://scans@acct.dfs.core.windows.net/2026/a.png'
    """
    if "://" not in like:
        return path
    scheme, rest = like.split("://", 1)
    netloc = rest.split("/", 1)[0]
    container = netloc.split("@", 1)[0]
    if scheme != "file" and (path == container or path.startswith(container + "/")):
        return f"{scheme}://{netloc}{path[len(container):]}"
    return fs.unstrip_protocol(path)


def _run_folders(paths) -> set:
    """The folders, among those of ``paths``, that hold tilescan's marker: their pictures are its outputs."""
    return {posixpath.dirname(p) for p in paths if posixpath.basename(p) == MARKER}


def _in_run(path: str, runs: set) -> bool:
    """Whether ``path`` is a run's output: in a run's folder, or in its viewer's folder of tiles."""
    folder = posixpath.dirname(path)
    if folder in runs:
        return True
    parts = folder.split("/")
    return any(VIEWER_FOLDER.match(parts[k]) and "/".join(parts[:k]) in runs for k in range(1, len(parts)))


def _hidden(path: str, below: int) -> bool:
    """Whether a file or folder from component ``below`` on in ``path`` is hidden (named
    ``.x``): as Spark's own file listing and the shell's ``*`` do, a folder or a glob skips
    them; macOS leaves an ``._x.png`` of resource data beside every ``x.png`` it copies."""
    return any(part.startswith(".") and part not in (".", "..") for part in path.split("/")[below:])


def _special(details: dict) -> bool:
    """Whether a listed entry is a FIFO, socket or device (fsspec's ``other``, which a listing
    also gives a symbolic link): never opened, as reading one may never end. A link is followed
    when its picture is read, where a link to such a file is refused by name."""
    return details.get("type") == "other" and not details.get("islink")


def _pictures_under(fs, root: str, like: str) -> list[str]:
    found = fs.find(root, detail=True)
    runs = _run_folders(found)
    below = len(root.rstrip("/").split("/"))
    skipped = [p for p, d in found.items() if _special(d) and p.lower().endswith(PICTURE_SUFFIXES)]
    if skipped:
        logger.warning("skipped %d special files (pipes, sockets or devices) named like pictures, e.g. %s",
                       len(skipped), _url(fs, sorted(skipped)[0], like))
    return [_url(fs, p, like) for p in sorted(found)
            if p.lower().endswith(PICTURE_SUFFIXES) and not _in_run(p, runs) and not _hidden(p, below)
            and not _special(found[p])]


def _from_image(image: str, storage_options) -> Inputs:
    fs, path = storage.filesystem(image, storage_options)
    pattern = bool(_GLOB.search(path))
    if pattern:
        with storage.errors("read", image):
            fs.invalidate_cache()
            pattern = not fs.exists(path)  # a picture or folder named with [ ] * ? is itself, not a pattern
    if pattern:
        parts = path.split("/")
        literal = next(k for k, part in enumerate(parts) if _GLOB.search(part))
        # A pattern that itself names hidden files ('.*.png') gets them.
        below = len(parts) if any(part.startswith(".") for part in parts[literal:]) else literal
        with storage.errors("list", image):
            runs = _run_folders(fs.glob(posixpath.join(posixpath.dirname(path), MARKER)))
            matched = fs.glob(path, detail=True)
            urls = [_url(fs, p, image) for p in sorted(matched) if not _in_run(p, runs)
                    and not _hidden(p, below) and matched[p].get("type") != "directory" and not _special(matched[p])]
        return Inputs(tuple(urls), single=False, source=image)
    with storage.errors("read", image):
        fs.invalidate_cache()
        folder = fs.isdir(path)
    if folder:
        with storage.errors("list", image):
            return Inputs(tuple(_pictures_under(fs, path, image)), single=False, source=image)
    return Inputs((image,), single=True, source=image)


def _list_rows(data: bytes, name: str) -> list[dict]:
    """The rows of a list file: ``{"path": ...}`` per line of text, or each row of a CSV or Parquet table."""
    lowered = name.lower()
    if lowered.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            # One thread and no read-ahead (a list is small): pyarrow 16 reading a table of no rows
            # through its dataset reader or with its I/O pool left a thread that aborted the
            # interpreter as it exited (exit 134): 6 times in 8, and 11 in 40 on a busy machine
            # with use_threads=False alone; 0 in 40 this way.
            table = pq.ParquetFile(pa.BufferReader(data), pre_buffer=False).read(use_threads=False)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"--images {name}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        if "path" not in table.column_names:
            raise InputError(f"--images {name}: a Parquet list needs a `path` column, it has {table.column_names}")
        kind = table.schema.field("path").type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise InputError(f"--images {name}: the `path` column must hold strings, it holds {kind}")
        return table.to_pylist()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"--images {name}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
                         "a list is a text file of paths, or a CSV or Parquet file with a `path` column") from None
    if lowered.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        if "path" not in header:
            raise InputError(f"--images {name}: a CSV list needs a `path` column, it has {header}")
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:  # csv would keep the last of them and drop the others silently
            raise InputError(f"--images {name}: the header names {', '.join(map(repr, twice))} more than once")
        rows = list(reader)
        for number, row in enumerate(rows, start=1):
            if None in row:  # more cells than the header has names: csv files them under None
                raise InputError(f"--images {name}: row {number} has {len(header) + len(row[None])} cells, the "
                                 f"header names {len(header)}")
        return rows
    return [{"path": line.strip()} for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _plain(value):
    """A list's cell as JSON holds it (the manifest carries it): dates and times in ISO 8601,
    bytes in hex, NaN and infinities as null, anything else not JSON (a decimal) as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, (datetime.date, datetime.time)):  # a datetime is a date
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _list_base(images: str) -> tuple[str, str]:
    """Where a list's relative paths are resolved, and the query they carry: an http(s) list's
    folder without its query (a SAS token's signature may hold a ``/``), and the token itself
    when it grants the whole container (``sr=c``), which the pictures then need too.

    >>> _list_base("https://a.blob.core.windows.net/c/lists/l.txt?sv=1&sr=c&sig=x/y%3D")
    ('https://a.blob.core.windows.net/c/lists', '?sv=1&sr=c&sig=x/y%3D')
    >>> _list_base("scans/list.txt")
    ('scans', '')
    """
    head, query = images, ""
    if images.lower().startswith(("http://", "https://")):
        head, _, query = images.partition("?")
        granted = dict(parse_qsl(query)).get("sr")
        query = f"?{query}" if query and granted == "c" else ""
    head = head.rstrip("/")
    return (head.rsplit("/", 1)[0] if "/" in head else "."), query


def _from_list(images: str, storage_options) -> Inputs:
    if images.lower().endswith(PICTURE_SUFFIXES):  # not read: a picture may be gigabytes
        raise InputError(f"--images takes a list of pictures, {images} is a picture (use --image)")
    fs, path = storage.filesystem(images, storage_options)
    try:
        data = storage.read_bytes(fs, path, url=images)
    except FileNotFoundError:
        raise InputError(f"--images list not found: {images}") from None
    except IsADirectoryError:
        raise InputError(f"--images must be a list file, {images} is a folder (use --image for a folder)") from None
    base, query = _list_base(images)
    urls, attributes, seen = [], [], set()
    for row in _list_rows(data, path):
        entry = str(row.get("path") or "").strip()
        if not entry:
            raise InputError(f"--images {images}: a row has no path: {row}")
        url = entry if "://" in entry or posixpath.isabs(entry) else posixpath.join(base, entry) + query
        if url not in seen:
            seen.add(url)
            urls.append(url)
            attributes.append({k: _plain(v) for k, v in row.items() if k != "path"})
    return Inputs(tuple(urls), single=False, source=images, attributes=tuple(attributes))


def absolute_url(url: str) -> str:
    """A local path made absolute (a manifest must name it wherever it is read); URLs as they are."""
    return os.path.abspath(url) if credentials.is_local(url) and "://" not in url else url


#: The endings of a list file of pictures (``--images``).
LIST_SUFFIXES = (".txt", ".csv", ".parquet")


def is_list_file(source) -> bool:
    """Whether ``source`` names a list of pictures (by its ending) rather than a picture, glob or folder."""
    return str(source).lower().endswith(LIST_SUFFIXES)


def resolve_source(source: str, *, storage_options: dict | None = None) -> Inputs:
    """The pictures ``source`` names, whichever kind it is: a list file, or a picture, glob or folder."""
    listed = is_list_file(source)
    return resolve_inputs(None if listed else source, source if listed else None, storage_options=storage_options)


def resolve_inputs(image: str | None = None, images=None, *, storage_options: dict | None = None) -> Inputs:
    """The pictures ``--image`` or ``--images`` name (exactly one of the two).

    ``images`` is a list file's path or URL, or (from Python) a sequence of paths or URLs.

    Raises
    ------
    InputError
        Both or neither given, an unreadable list, or nothing matched.
    """
    if (image is None) == (images is None):
        raise InputError("give either --image (a picture, glob or folder) or --images (a list of pictures)")
    if image is not None:
        inputs = _from_image(image, storage_options)
    elif isinstance(images, (list, tuple)):
        urls = tuple(dict.fromkeys(str(u) for u in images))
        inputs = Inputs(urls, single=False, source=f"a list of {len(urls)} pictures")
    else:
        inputs = _from_list(images, storage_options)
    if not inputs.urls:
        hint = "" if images is not None else (f" (a folder's pictures end in {', '.join(PICTURE_SUFFIXES)}; "
                                              "tilescan's own outputs are never taken)")
        raise InputError(f"no pictures found for {inputs.source}{hint}")
    return inputs


def _stem(url: str) -> tuple[str, bool]:
    """A picture's file name without its ending, made safe, and whether it was longer than
    :data:`MAX_NAME_BYTES` and had to be cut (on a character boundary) to leave room for the hash."""
    stem = _UNSAFE.sub("_", unicodedata.normalize("NFC", storage.file_name(url).rsplit(".", 1)[0]))
    data = stem.encode()
    if len(data) > MAX_NAME_BYTES:
        return data[:MAX_NAME_BYTES - 9].decode(errors="ignore").strip("._") or "picture", True
    return stem.strip("._") or "picture", False


def output_names(urls) -> list[str]:
    """One folder name per picture: its file name without the ending, made safe; names that
    would collide, with each other or with the run's own files and ``windows`` dataset
    (:data:`scoring.outputs.RESERVED_NAMES`), and names cut to fit :data:`MAX_NAME_BYTES`,
    get a short hash of their full URL (``a/x.png`` and ``b/x.png`` become ``x-15a6511e``
    and ``x-29cc070f``).

    >>> output_names(["scans/windows.png", "scans/door.png", "scans/manifest.json.png"])
    ['windows-ed6da656', 'door', 'manifest.json-17f5bd65']
    >>> output_names(["scans/über.png", "scans/扫描 1.png", "scans/#1.png"])
    ['über', '扫描_1', '1']
    >>> output_names(["https://acct.blob.core.windows.net/c/x.png?sv=2024&sig=s3cr3t&rscd=x.png"])
    ['x']
    """
    urls = list(urls)
    stems = [_stem(url) for url in urls]
    digests = [hashlib.sha1(u.encode()).hexdigest() for u in urls]
    counts = Counter(s for s, _ in stems)
    names = [f"{s}-{d[:8]}" if cut or counts[s] > 1 or s.lower() in RESERVED_NAMES else s
             for (s, cut), d in zip(stems, digests)]
    # A name can still meet another: a picture named like another's hashed name (x-15a6511e.png),
    # or names that differ only in case (one folder on a case-insensitive disk). Those get
    # longer hashes, and at the full hash their position too, until every name is unique.
    for length in (16, 40, None):
        taken = Counter(n.lower() for n in names)
        clashing = [i for i, n in enumerate(names) if taken[n.lower()] > 1]
        if not clashing:
            break
        for i in clashing:
            suffix = f"-{digests[i][:length]}" if length else f"-{digests[i]}-{i}"
            stem = stems[i][0].encode()[:MAX_NAME_BYTES - len(suffix)].decode(errors="ignore")
            names[i] = stem + suffix
    return names
