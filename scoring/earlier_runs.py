"""What a collection run takes from the earlier runs in its output folder, and what it tidies.

``--resume`` keeps the pictures an earlier run finished there, unless their file changed
since (another version at the same URL, or another URL by the same name): those are
scored again. The kept ones must have been scored as this run scores (the same model,
engine, windows, thresholds, merging and ``--keep``), or one run's detections would mix
two runs' answers: :func:`kept_manifests` checks that before Spark starts. Their boxes and
counts are read back (:func:`kept_annotations`), so the run's ``detections.json`` and
``manifest.json`` cover every picture of the run, kept or scored. The run's windows
dataset (``windows/image=<name>/``) is made to hold exactly the pictures with results in
this run (:func:`tidy_dataset`): parts an earlier run left for pictures that are not in
this one, or that failed in it (a part written by a commit that did not finish), are
removed. A picture's part is its windows' one copy: a finished picture without it is
scored again; only a picture finished before that layout, which keeps its own
``windows.parquet`` too, has a missing part restored from it.
"""
from __future__ import annotations

import json
import logging
import posixpath
from concurrent.futures import ThreadPoolExecutor

from core import storage
from core.errors import InputError, TilescanError
from core.redaction import redact
from pixels import stored_version
from scoring.outputs import DATASET
from scoring.stored_windows import PART, WINDOWS_FILE, dataset_part

__all__ = ["scored_with", "kept_manifests", "incomplete_pictures", "kept_annotations", "tidy_dataset", "KEPT_FILES"]

logger = logging.getLogger(__name__)

#: Files read at a time from the output folder (each one a request on blob storage).
READ_THREADS = 16
#: Kept pictures' detections read before they are handed on (memory holds one batch).
READ_BATCH = 256
#: What a run keeps of a kept picture's manifest.
KEPT_FIELDS = ("input", "counts", "finished", "attributes")
#: The files a kept picture's folder must still have: what the run reads back from them. Its
#: windows too: its part of the run's dataset, or (finished before that layout) its own
#: ``windows.parquet``.
KEPT_FILES = ("manifest.json", "detections.json")
#: The options a picture's results depend on, and those that choose which files it has, with
#: each one's key in a manifest's ``parameters``: a kept picture has what this run would write.
RESULT_OPTIONS = {"--engine": "engine", "--window": "window", "--stride": "stride", "--edge": "edge",
                  "--keep": "keep", "--threshold": "thresholds", "--merge": "merge", "--merge-iou": "merge_iou",
                  "--heatmap": "heatmap", "--no-viewer": "viewer"}
#: Options that record the opposite of their flag (``--no-viewer`` given: ``viewer`` false).
_NEGATED = frozenset({"--no-viewer"})


def scored_with(model_sha256: str, parameters: dict) -> dict:
    """What results depend on, as a picture's manifest records it: the model's sha256 and the
    :data:`RESULT_OPTIONS` among a run's ``parameters`` (JSON values)."""
    recorded = {"model": model_sha256, **{option: parameters.get(key) for option, key in RESULT_OPTIONS.items()}}
    return json.loads(json.dumps(recorded))


def _read_each(fs, root: str, url: str, names, file_name: str) -> dict:
    """``name -> bytes`` of each ``<name>/<file_name>``, read in parallel; a file that cannot be
    read maps to the one-line reason (a ``str``)."""
    def read(name: str):
        where = storage.join(url, name, file_name)
        try:
            return name, storage.read_bytes(fs, storage.join(root, name, file_name), url=where)
        except FileNotFoundError:
            return name, f"{redact(where)} is missing"
        except TilescanError as exc:
            return name, redact(exc)

    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="earlier-run") as pool:
        return dict(pool.map(read, names))


def _json_object(data: bytes | str):
    if isinstance(data, str):
        return data
    try:
        doc = json.loads(data)
    except ValueError as exc:
        return f"not JSON ({exc})"
    return doc if isinstance(doc, dict) else f"not a JSON object ({type(doc).__name__})"


def kept_manifests(fs, root: str, url: str, pictures: dict, expected: dict, *,
                   storage_options: dict | None = None) -> dict:
    """What the run keeps (:data:`KEPT_FIELDS`) of the manifests of the finished pictures that
    ``--resume`` keeps, each checked to record ``expected`` (:func:`scored_with` of this run).

    ``pictures`` maps the name of each finished picture to the URL it has in this run. One
    whose file is not the one it was scored from (another URL, or another version there) is
    left out: it is scored again.

    Raises
    ------
    InputError
        Naming the first picture whose manifest cannot be read, or that was scored otherwise.
    """
    manifests = {}
    for name, data in _read_each(fs, root, url, pictures, "manifest.json").items():
        manifest = _json_object(data)
        if isinstance(manifest, str):
            raise InputError(f"--resume: the manifest of {name}, finished earlier in {redact(url)}, cannot be read: "
                             f"{manifest}; remove that picture's folder to score it again")
        manifests[name] = manifest
    changed = _changed(pictures, manifests, storage_options)
    for name in changed:
        logger.info("scoring %s again: its picture changed since it was finished", name)
        del manifests[name]
    for name, manifest in manifests.items():
        parameters, model = manifest.get("parameters"), manifest.get("model")
        recorded = scored_with(model.get("sha256") if isinstance(model, dict) else None,
                               parameters if isinstance(parameters, dict) else {})
        for option, value in expected.items():
            if recorded[option] != value:
                what = "the model" if option == "model" else option
                then, now = (not recorded[option], not value) if option in _NEGATED else (recorded[option], value)
                raise InputError(f"--resume: {name} in {redact(url)} was scored with {what} {then!r}, "
                                 f"this run with {now!r}; keep the earlier settings, or pass --overwrite to "
                                 "score every picture again")
    return {name: {key: manifest.get(key) for key in KEPT_FIELDS} for name, manifest in manifests.items()}


def _changed(pictures: dict, manifests: dict, storage_options) -> set:
    """The names of the pictures whose file is not the one their manifest records."""
    def changed(name: str) -> bool:
        recorded = manifests[name].get("input")
        recorded = recorded if isinstance(recorded, dict) else {}
        if recorded.get("url") != pictures[name]:
            return True
        try:
            fs, path = storage.filesystem(pictures[name], storage_options)
            with storage.errors("read", pictures[name]):
                version = stored_version(fs.info(path))
        except (FileNotFoundError, TilescanError):
            return True  # scored again, its error then said as for any picture
        return version is None or version != recorded.get("etag")

    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="earlier-run") as pool:
        return {name for name, moved in zip(manifests, pool.map(changed, manifests)) if moved}


def incomplete_pictures(fs, root: str, url: str, names) -> dict:
    """``name -> why`` for each finished picture among ``names`` whose folder lacks one of
    :data:`KEPT_FILES`, or whose windows are gone (its part of the run's dataset, and its own
    ``windows.parquet`` if it was finished before that layout), removed since it finished:
    ``--resume`` scores it again instead of keeping it. One listing of the run's folder (a few
    paged requests on blob storage)."""
    names = list(names)
    if not names:
        return {}
    with storage.errors("list", url):
        fs.invalidate_cache()
        found = fs.find(root)
    prefix = root.rstrip("/") + "/"
    present = {tuple(path[len(prefix):].split("/")) for path in found if path.startswith(prefix)}
    incomplete = {}
    for name in names:
        lacking = [f for f in KEPT_FILES if (name, f) not in present]
        if (DATASET, f"image={name}", PART) not in present and (name, WINDOWS_FILE) not in present:
            lacking.append(f"{DATASET}/image={name}/{PART}")  # its windows, their one copy
        if lacking:
            incomplete[name] = f"its {', '.join(lacking)} {'is' if len(lacking) == 1 else 'are'} missing"
    return incomplete


def kept_annotations(fs, root: str, url: str, names):
    """``(name, COCO annotations)`` of each kept picture in turn, as its ``detections.json``
    holds them, or ``(name, the one-line reason they cannot be read)``; read in parallel, a
    batch at a time."""
    names = list(names)
    for start in range(0, len(names), READ_BATCH):
        for name, data in _read_each(fs, root, url, names[start:start + READ_BATCH], "detections.json").items():
            doc = _json_object(data)
            annotations = doc.get("annotations") if isinstance(doc, dict) else None
            yield name, (annotations if isinstance(annotations, list) else
                         doc if isinstance(doc, str) else "its detections.json holds no annotations list")


def tidy_dataset(fs, root: str, url: str, *, results, kept, started: str | None = None,
                 run_id: str | None = None) -> None:
    """Make the run's dataset under ``root`` hold the pictures ``results`` only: remove others'
    parts (an earlier run's, or one this run wrote in a commit that then failed), and restore a
    ``kept`` picture's missing part from its own ``windows.parquet`` (a picture finished
    before the one-copy layout; a later one without its part is never kept).

    A part whose picture another run (not ``run_id``, this one) finished after this one
    ``started`` (ISO 8601 in UTC: two runs into one folder at once) is that run's, and stays.
    """
    folder = storage.join(root, DATASET)
    with storage.errors("tidy the windows dataset of", url):
        fs.invalidate_cache()
        parts = {path.rstrip("/").rsplit("/", 1)[-1] for path in fs.ls(folder, detail=False)} \
            if fs.exists(folder) else set()
        pictures = {part[len("image="):] for part in parts if part.startswith("image=")}
    others = sorted(pictures - set(results))
    if started is not None and others:
        manifests = {name: _json_object(data) for name, data in _read_each(fs, root, url, others,
                                                                            "manifest.json").items()}
        others = [name for name in others if not (isinstance(manifests[name], dict)
                                                  and str(manifests[name].get("finished", "")) > started
                                                  and manifests[name].get("run_id") != run_id)]
    with storage.errors("tidy the windows dataset of", url):
        for name in others:
            fs.rm(storage.join(folder, f"image={name}"), recursive=True)
    for name in sorted(set(kept) - pictures):
        target, where = dataset_part(root, name), dataset_part(url, name)
        storage.make_folder(fs, posixpath.dirname(target), url=posixpath.dirname(where))
        storage.write_bytes(fs, target, storage.read_bytes(fs, storage.join(root, name, WINDOWS_FILE)), url=where)
