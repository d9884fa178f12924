"""The model bundle: a folder with ``model.json``, the weights, and their sha256.

``model.json`` holds the model contract (:class:`core.contract.ModelSpec`) and a ``files`` table naming
each file an engine needs with its sha256. The bundle's id is the sha256 of
``model.json`` itself, so it changes whenever any weight file does.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from core import storage
from core.contract import ModelSpec
from core.errors import BundleError
from core.golden import GOLDEN_KEY, GoldenBatch, read_golden

__all__ = ["FORMAT", "MODEL_JSON", "ModelSpec", "ModelBundle", "load_bundle", "write_model_json", "update_model_json",
           "sha256_hex"]

FORMAT = "tilescan-model/1"
MODEL_JSON = "model.json"
#: The largest ``model.json``, and the largest file it lists (one ONNX file holds at most 2 GiB).
MAX_MODEL_JSON_BYTES = 16 * 2 ** 20
MAX_FILE_BYTES = 2 ** 31


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelBundle:
    """A loaded, verified bundle: the spec plus the bytes of every engine file.

    Small enough to broadcast: the bytes travel once to each executor.
    """

    spec: ModelSpec
    files: dict = field(repr=False)
    sha256: str
    source: str
    #: Settings the bundle recommends for scoring (thresholds, merging, engine), from
    #: ``model.json``'s ``recommended``; empty for a bundle that recommends none.
    recommended: dict = field(default_factory=dict)
    #: What every engine is checked against when it loads (:mod:`core.golden`); ``None`` for a
    #: bundle made before bundles carried one.
    golden: GoldenBatch | None = field(default=None, repr=False, compare=False)

    def file(self, key: str) -> bytes:
        try:
            return self.files[key]
        except KeyError:
            raise BundleError(
                f"model bundle {self.source} has no {key!r} file (it has: {', '.join(sorted(self.files))})"
            ) from None

    def subset(self, keys) -> ModelBundle:
        """The same bundle carrying only the files one engine needs (and its golden batch, read already)."""
        return ModelBundle(self.spec, {k: self.file(k) for k in keys}, self.sha256, self.source, self.recommended,
                           self.golden)


def _file_name(entry, key: str, url: str) -> str:
    """The file name of one ``files`` entry, checked to be a plain name inside the bundle folder."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not isinstance(
            entry.get("sha256"), str):
        raise BundleError(f"model.json in {url}: files.{key} must have a `path` and a `sha256`")
    name = entry["path"]
    steps = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or ".." in steps or "://" in name or ":" in steps[0]:
        raise BundleError(f"model.json in {url}: files.{key} path {name!r} must name a file inside the bundle")
    return name


def load_bundle(url: str, *, storage_options: dict | None = None) -> ModelBundle:
    """Read and verify a bundle folder (local path or URL).

    Raises
    ------
    BundleError
        When ``model.json`` is missing or malformed, a file entry names a file outside the
        bundle folder, or any file is missing or does not match its recorded sha256.
    """
    fs, root = storage.filesystem(url, storage_options)
    try:
        raw = storage.read_bytes(fs, storage.join(root, MODEL_JSON), url=storage.join(url, MODEL_JSON),
                                 limit=MAX_MODEL_JSON_BYTES)
    except FileNotFoundError:
        raise BundleError(f"model bundle not found: {url} has no {MODEL_JSON}") from None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"model.json in {url} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BundleError(f"model.json in {url} must be a JSON object, got a {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise BundleError(f"model.json in {url}: format must be {FORMAT!r}, got {doc.get('format')!r}")
    spec = ModelSpec.from_json(doc)
    table = doc.get("files", {})
    if not isinstance(table, dict):
        raise BundleError(f"model.json in {url}: `files` must be an object of file entries")
    files = {}
    for key, entry in table.items():
        name = _file_name(entry, key, url)
        try:
            data = storage.read_bytes(fs, storage.join(root, name), url=storage.join(url, name), limit=MAX_FILE_BYTES)
        except FileNotFoundError:
            raise BundleError(f"model bundle {url}: file {name} is missing") from None
        if sha256_hex(data) != entry["sha256"]:
            raise BundleError(
                f"model bundle {url}: {name} does not match its sha256 in model.json "
                "(corrupt or replaced file)"
            )
        files[key] = data
    if not files:
        raise BundleError(f"model bundle {url}: model.json lists no files")
    recommended = doc.get("recommended") or {}
    if not isinstance(recommended, dict):
        raise BundleError(f"model.json in {url}: `recommended` must be an object, got {type(recommended).__name__}")
    return ModelBundle(spec=spec, files=files, sha256=sha256_hex(raw), source=url, recommended=recommended,
                       golden=_golden(doc, spec, files, url))


def _golden(doc: dict, spec: ModelSpec, files: dict, url: str) -> GoldenBatch | None:
    """The bundle's golden batch, checked against its spec; ``None`` when ``model.json`` has none."""
    record = doc.get("golden")
    if record is None:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("file"), str) or record["file"] not in files:
        found = record.get("file") if isinstance(record, dict) else record
        raise BundleError(f"model.json in {url}: golden.file must name one of `files` ({GOLDEN_KEY!r}), "
                          f"got {found!r}")
    return read_golden(record, files[record["file"]], size=spec.size, classes=len(spec.classes),
                       boxes=spec.boxes is not None, where=url)


def _file_table(folder: str, files: dict) -> dict:
    """``files`` (engine key -> file name inside ``folder``) with each file's sha256."""
    import os

    table = {}
    for key, name in files.items():
        with open(os.path.join(folder, name), "rb") as fh:
            table[key] = {"path": name, "sha256": sha256_hex(fh.read())}
    return table


def _write_doc(folder: str, doc: dict) -> str:
    import os

    raw = (json.dumps(doc, indent=2) + "\n").encode()
    with open(os.path.join(folder, MODEL_JSON), "wb") as fh:
        fh.write(raw)
    return sha256_hex(raw)


def write_model_json(folder: str, spec: ModelSpec, files: dict, *, extra: dict | None = None) -> str:
    """Write ``model.json`` for files already in a local ``folder``.

    ``files`` maps an engine key (``onnx``, ``mxnet-symbol``, ``mxnet-params``) to a file
    name inside ``folder``; their sha256 are computed here. Returns the bundle id.
    """
    return _write_doc(folder, {"format": FORMAT, **spec.to_json(), "files": _file_table(folder, files),
                               **(extra or {})})


def update_model_json(folder: str, *, files: dict | None = None, **keys) -> str:
    """Rewrite a local bundle's ``model.json`` with ``keys`` set and ``files`` added (key -> file name).

    Every other key stays as it was, the contract word for word (it is checked, never
    rewritten); the sha256 of every listed file is computed again. Returns the bundle's new id.
    """
    import os

    with open(os.path.join(folder, MODEL_JSON)) as fh:
        doc = json.load(fh)
    ModelSpec.from_json(doc)
    names = {key: entry["path"] for key, entry in doc["files"].items()}
    names.update(files or {})
    doc["files"] = _file_table(folder, names)
    doc.update(keys)
    return _write_doc(folder, doc)
