"""Commit a folder of outputs atomically into a local folder or a storage URL.

Files are written under ``_temporary-<id>/`` inside the destination and moved into place
when all of them are complete; ``_SUCCESS`` is written last, so a reader that sees
``_SUCCESS`` sees a finished run and a failed run leaves none. The rules a commit keeps:

- a destination that is neither empty nor a tilescan folder (``_tilescan`` marker or a
  tilescan ``manifest.json``) is refused, ``--overwrite`` or not;
- a finished run is replaced only when asked (``overwrite``), and only the one seen when
  the run started: a run that finished there meanwhile is never replaced;
- one commit at a time per folder (an exclusive ``_commit.lock``);
- replacing a finished run removes its ``_SUCCESS`` first and its ``manifest.json``
  next, moves the new manifest last: an interrupted commit leaves no ``_SUCCESS``, and no
  manifest describing files it did not write; the next commit replaces the leftovers.

On blob storage (adlfs) a move is a copy plus a delete, so every target's size is checked
before ``_SUCCESS`` is written, and listing caches are dropped before each listing (adlfs
answers from a cached listing). Every request is a round trip to the lake: what the folder
holds is listed once and used for every decision after it (benchmarks/storage.py counts them).
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from core import storage
from core.errors import OutputExistsError, StorageError, TilescanError
from core.redaction import redact

__all__ = ["RunWriter", "Destination", "SUCCESS", "MARKER", "VIEWER_FOLDER", "OUTPUT_FILES", "OPTIONAL_FILES",
           "DATASET", "EVALUATION_FILES", "RESERVED_NAMES"]

logger = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
#: Marks a folder as tilescan's, from its first commit on.
MARKER = "_tilescan"
_LOCK = "_commit.lock"
_MANIFEST = "manifest.json"
_STAGING = re.compile(r"^_temporary-[0-9a-f]{12}$")
OUTPUT_FILES = ("windows.parquet", "detections.json", "detections.geojson", "overlay.png", "manifest.json")
#: What a run writes when asked (``--heatmap``): a commit without it removes the replaced run's.
OPTIONAL_FILES = ("heatmap.tif", "viewer.html")
#: A picture's viewer folder (its tile pyramid and script), named by the run that wrote it
#: (:meth:`RunWriter.write_folder`): thousands of tiles are written in place, never moved.
VIEWER_FOLDER = re.compile(r"^viewer-[0-9a-f]{12}$")
#: Files of such a folder uploaded at once.
_FOLDER_SLICE = 32
#: A collection run's windows dataset, a folder of the run partitioned by picture (``image=<name>``):
#: each picture's windows, their one copy (:mod:`scoring.stored_windows`).
DATASET = "windows"
#: What ``app.evaluate`` writes: the metrics and the PR curves, into a folder beside the run
#: (:func:`evaluation.runs.evaluation_folder`). Runs evaluated before that hold them in their
#: folder: a commit replacing such a run removes them with its other files.
EVALUATION_FILES = ("evaluation.json", "pr_curve.png")
#: Names a collection's own files and folders take: no picture's folder may take one (lower case).
#: They stay as they were (the evaluation files included), so a picture keeps its folder's name
#: from one version to the next (``--resume`` finds it by that name).
RESERVED_NAMES = frozenset({*OUTPUT_FILES, *OPTIONAL_FILES, DATASET, *EVALUATION_FILES})
#: A commit takes seconds; a commit lock older than this was left by a run that was
#: stopped while committing, or lost its storage then.
_STALE_LOCK_S = 300


@dataclass(frozen=True)
class Destination:
    """What a destination folder holds: ``finished`` (a ``_SUCCESS``), ``run`` (the run id in
    its manifest, if any), ``ours`` (empty, or a tilescan folder), ``is_file``, and when the
    run its manifest describes finished (``finished_at``, ISO 8601 in UTC)."""

    exists: bool
    is_file: bool
    finished: bool
    run: str | None
    ours: bool
    finished_at: str | None = None
    #: It holds tilescan's ``_tilescan`` marker.
    marked: bool = False
    #: The names directly in it, with their sizes (None for a folder).
    entries: tuple = ()

    @property
    def names(self) -> frozenset:
        return frozenset(name for name, _ in self.entries)


def _owner_gone(held) -> bool:
    """Whether a lock names a process on this host that no longer runs: it is taken over at once."""
    if not isinstance(held, dict) or held.get("host") != socket.gethostname() or not isinstance(held.get("pid"), int):
        return False
    try:
        os.kill(held["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: another user's process, alive
        return False
    return False


class RunWriter:
    """Stage files under ``URL/_temporary-<id>/``, then :meth:`commit` or :meth:`abort`.

    ``run_id`` goes into the marker; ``overwrite`` allows replacing the finished run that
    :meth:`check` saw. ``started`` (ISO 8601 in UTC) is when this run started: a folder that
    :meth:`check` saw finished, by whatever run, is still never replaced by this one if a run
    finished it again after this one started (two runs into one folder at once).
    """

    def __init__(self, url: str, *, run_id: str | None = None, overwrite: bool = False,
                 storage_options: dict | None = None, started: str | None = None):
        self.url = url
        self.run_id = run_id or uuid.uuid4().hex
        self.overwrite = overwrite
        self.started = started
        self.fs, self.root = storage.filesystem(url, storage_options)
        self._stage_in(f"_temporary-{uuid.uuid4().hex[:12]}")
        self._created_root = False
        self._claimed = False
        self._seen: Destination | None = None
        self._written: dict[str, int] = {}
        self._folders: dict[str, int] = {}

    def _stage_in(self, name: str) -> None:
        self.staging_name = name
        self._begun = False
        self.staging, self._staging_url = storage.join(self.root, name), storage.join(self.url, name)

    @property
    def staged(self) -> dict:
        """The staging folder's name and the files staged in it, with their sizes, and the folders
        written in place (:meth:`write_folder`) with their file counts."""
        return {"staging": self.staging_name, "written": dict(self._written), "folders": dict(self._folders)}

    def adopt(self, staged: dict) -> None:
        """Take over files another writer (an executor's) staged in this folder: :attr:`staged` of it."""
        if not _STAGING.match(staged["staging"]):
            raise ValueError(f"not a staging folder: {staged['staging']!r}")
        self._stage_in(staged["staging"])
        self._written.update(staged["written"])
        self._folders.update(staged.get("folders", {}))

    # --- what is there ------------------------------------------------------------------

    def inspect(self) -> Destination:
        """What the destination holds now."""
        with storage.errors("reach output", self.url):
            entries = self._entries()
            if entries is None:
                return Destination(False, False, False, None, True)
            if entries == "file":
                return Destination(True, True, False, None, False)
            names = {name for name, _ in entries}
            finished = SUCCESS in names
            run, tilescan, finished_at = None, MARKER in names, None
            if _MANIFEST in names:
                try:
                    doc = json.loads(storage.read_bytes(self.fs, storage.join(self.root, _MANIFEST)))
                except (ValueError, FileNotFoundError):
                    doc = None
                if isinstance(doc, dict) and doc.get("tool") == "tilescan":
                    tilescan, run, finished_at = True, doc.get("run_id"), doc.get("finished")
        leftovers = all(_STAGING.match(n) or VIEWER_FOLDER.match(n) or n == _LOCK for n in names)
        return Destination(True, False, finished, run, tilescan or leftovers,
                           finished_at if isinstance(finished_at, str) else None, MARKER in names, entries)

    def _entries(self):
        """What the folder holds, as (name, size or None for a folder) pairs, from one listing;
        None when there is nothing, ``"file"`` when it is a file."""
        self.fs.invalidate_cache()
        try:
            listed = self.fs.ls(self.root, detail=True)
        except (FileNotFoundError, NotADirectoryError):  # nothing there, or a file above it
            return None
        if any(e["type"] == "file" and e["name"].rstrip("/") == self.root.rstrip("/") for e in listed):
            return "file"
        return tuple((e["name"].rstrip("/").rsplit("/", 1)[-1], e.get("size") if e["type"] == "file" else None)
                     for e in listed)

    def check(self, *, resumable: bool = False, resuming: bool = False) -> Destination:
        """Refuse a file, a folder that is not tilescan's, or a finished run (unless overwriting).

        Returns what the folder holds, which :meth:`commit` compares with what it finds then.
        ``resumable`` (a collection) mentions ``--resume`` in the refusal; ``resuming`` (one
        picture with ``--resume``) says what it keeps instead.
        """
        seen = self.inspect()
        if seen.is_file:
            raise TilescanError(f"--out {self.url} is a file, not a folder")
        if not seen.ours:
            raise OutputExistsError(f"--out {self.url} holds files that are not a tilescan run; "
                                    "choose a new or empty folder")
        if seen.finished and not self.overwrite:
            if resuming and not resumable:
                raise OutputExistsError(f"{self.url} already holds a finished run of one picture: --resume has "
                                        "nothing left to score there; pass --overwrite to score it again")
            hint = " (or --resume to keep its finished pictures)" if resumable else ""
            raise OutputExistsError(f"{self.url} already holds a finished run; pass --overwrite to replace it{hint}")
        self._seen = seen
        self._created_root = self._created_root or not seen.exists  # this run's to remove if it fails
        return seen

    def claim(self) -> None:
        """Mark the folder as tilescan's and take back a replaced run's ``_SUCCESS``, before other
        writers (a collection's pictures) fill it."""
        self._begin()
        if self._seen is not None and self._seen.finished and self.overwrite:
            self._remove(storage.join(self.root, SUCCESS))
        storage.write_new(self.fs, storage.join(self.root, MARKER), self._marker())
        self._claimed = True

    def _marker(self) -> bytes:
        return json.dumps({"tool": "tilescan", "run_id": self.run_id}).encode()

    def started_with(self, destination: Destination | None) -> None:
        """Take ``destination`` as what the folder held when the run started (as checked on the driver).

        A finished destination with no ``run`` stands for whatever finished run is there.
        """
        self._seen = destination

    def probe(self) -> None:
        """Write, move and delete a small file where the outputs will go, as a commit does: an
        unwritable destination, a missing container that cannot be created, a full disk, or a
        credential that may write but not delete (a SAS token without ``d``) fail now, not
        after the job."""
        try:
            self._begin()
            path, moved = storage.join(self.staging, "probe"), storage.join(self.staging, "probe-moved")
            storage.write_bytes(self.fs, path, b"tilescan write probe\n",
                                url=storage.join(self._staging_url, "probe"))
            try:
                with storage.errors("move and delete files in", self.url):
                    self.fs.mv(path, moved)
                    self.fs.rm(moved)
            except TilescanError as exc:
                raise TilescanError(f"{redact(exc)}; a commit moves and deletes files there (a SAS token needs "
                                    "the d permission)") from None
        finally:
            self.abort()  # leaves the folder as it was found (removed again if the probe made it)

    # --- writing and committing -----------------------------------------------------------

    def _begin(self) -> None:
        # Once per staging folder: on blob storage each check and makedirs is a request.
        if self._begun:
            return
        with storage.errors("write", self.url):
            self.fs.invalidate_cache()
            if not self._created_root:
                self._created_root = not self.fs.exists(self.root)
        storage.make_folder(self.fs, self.staging, url=self._staging_url)
        self._begun = True

    def write(self, name: str, data: bytes) -> None:
        self._begin()
        storage.write_bytes(self.fs, storage.join(self.staging, name), data,
                            url=storage.join(self._staging_url, name))
        self._written[name] = len(data)

    def write_file(self, name: str, local_path: str) -> None:
        """Stage the local file ``local_path`` as ``name``, streamed (on blob storage, in blocks)."""
        self._begin()
        with storage.errors("write", storage.join(self._staging_url, name), writing=True):
            self.fs.put_file(local_path, storage.join(self.staging, name))
        self._written[name] = os.path.getsize(local_path)

    @property
    def folder_name(self) -> str:
        """The name of this run's folder written in place (:meth:`write_folder`)."""
        return f"viewer-{self.run_id[:12]}"

    def write_folder(self, local_folder: str) -> str:
        """Write the local folder's files (a tile pyramid: thousands of them) straight into
        :attr:`folder_name`, not staged; returns that name.

        Moving them would cost a copy and a delete per file on blob storage. Only a committed
        page refers to the folder, so a reader never sees a half-written one in use; a commit
        removes the folders of the runs it replaces, an abort this run's own.
        """
        self._begin()
        name, files = self.folder_name, []
        for parent, _, names in os.walk(local_folder):
            files += [os.path.join(parent, n) for n in names]
        targets = [storage.join(self.root, name, *os.path.relpath(f, local_folder).split(os.sep)) for f in files]
        with storage.errors("write", storage.join(self.url, name), writing=True):
            self._folders[name] = len(files)  # removed by abort from here on, even half-written
            if storage.renames(self.fs):  # a disk's folders must be made; blob storage has none to make
                for folder in sorted({target.rsplit("/", 1)[0] for target in targets}):
                    self.fs.makedirs(folder, exist_ok=True)
            # In slices: blob storage uploads a call's files all at once, each held in memory meanwhile
            # (a gigapixel picture's 5,500 tiles took 400 MB so).
            for first in range(0, len(files), _FOLDER_SLICE):
                self.fs.put(files[first:first + _FOLDER_SLICE], targets[first:first + _FOLDER_SLICE])
        return name

    def commit(self, *, before_moves: Callable[[], None] | None = None) -> None:
        """Move every staged file into place, check their sizes, then write ``_SUCCESS``.

        ``before_moves`` is called under the lock, once the folder no longer claims to be
        finished and before any file moves: it writes what must be in place whenever the folder
        has its ``_SUCCESS`` but lives outside it (a collection picture's part of the run's
        windows dataset). If it raises, nothing is committed.

        Raises
        ------
        OutputExistsError
            When another run finished in the folder since :meth:`check` (or another run is
            committing there now): this run's files are removed and nothing is replaced.
        """
        lock = storage.join(self.root, _LOCK)
        self._acquire(lock)
        try:
            present = self.ensure_committable().names
            success = storage.join(self.root, SUCCESS)
            with storage.errors("commit the outputs to", self.url, writing=True):
                # From here on the folder no longer claims to be finished, nor has a manifest describing
                # files it no longer holds, nor keeps the replaced run's files of its own.
                own = (n for n in (*OUTPUT_FILES, *OPTIONAL_FILES, *EVALUATION_FILES) if n not in self._written)
                for name in dict.fromkeys((SUCCESS, _MANIFEST, *own)):
                    if name in present:
                        self._remove_file(storage.join(self.root, name))
                if before_moves is not None:
                    before_moves()
                self.fs.pipe_file(storage.join(self.root, MARKER), self._marker())
                for name in sorted(self._written, key=lambda n: n == _MANIFEST):  # the manifest last
                    self._move(name, replacing=name in present)
                # The viewer folders of the runs this one replaces (in a picture's folder: never a
                # collection's, whose pictures' folders may take any name).
                viewer_here = "viewer.html" in present or "viewer.html" in self._written
                for name in present if viewer_here else ():
                    if VIEWER_FOLDER.match(name) and name not in self._folders:
                        self._remove(storage.join(self.root, name))
                after = dict(self._entries() or ())
                for name, size in self._written.items():
                    if after.get(name, -1) != size:
                        raise OSError(f"{name} has {after.get(name)} bytes after the move, expected {size}")
                self._remove_staged()
                self._remove_stale_staging(after)
            storage.write_bytes(self.fs, success, b"", url=storage.join(self.url, SUCCESS))
        finally:
            self._release(lock)

    def ensure_committable(self) -> Destination:
        """Refuse to go on when the folder holds another run than the one :meth:`check` saw: a run
        finished there while this one ran (checked again, under the lock, as it commits). Returns
        what the folder holds now.

        Raises
        ------
        OutputExistsError
            When another run finished in the folder since this run started.
        """
        now = self.inspect()
        if self._claimed and not now.marked:
            # The folder (or its container) was removed while the run went on; pictures finished
            # since it came back stay, in a folder marked again as tilescan's for --resume.
            storage.write_new(self.fs, storage.join(self.root, MARKER), self._marker(), url=self.url)
            raise StorageError(f"{self.url} was removed while this run went on (its {MARKER} marker is gone): "
                               "nothing was committed there; the pictures finished since are kept for --resume")
        seen = self._seen or Destination(False, False, False, None, True)
        if seen.run is not None:
            same = seen.run == now.run
        else:  # seen finished by a run not known by id: any run, unless one finished it after this one started
            same = not (now.finished_at and self.started and now.finished_at > self.started)
        replaceable = self.overwrite and seen.finished and same
        if not now.ours or (now.finished and not replaceable):
            raise OutputExistsError(f"{self.url}: another run finished there while this one ran; "
                                    "nothing was replaced (run again, with --overwrite to replace it)")
        return now

    def _acquire(self, lock: str) -> None:
        self._begin()
        owner = json.dumps({"run_id": self.run_id, "time": time.time(), "host": socket.gethostname(),
                            "pid": os.getpid()}).encode()
        url = storage.join(self.url, _LOCK)
        if storage.write_new(self.fs, lock, owner, url=url):
            return
        try:
            held = json.loads(storage.read_bytes(self.fs, lock))
            age = time.time() - float(held.get("time", 0))
        except (ValueError, FileNotFoundError, TypeError, AttributeError):
            held, age = {}, float("inf")
        if age > _STALE_LOCK_S or _owner_gone(held):
            logger.warning("removing %s, left by a run that was stopped while committing", redact(url))
            self._remove(lock)
            if storage.write_new(self.fs, lock, owner, url=url):
                return
            age = 0.0
        raise OutputExistsError(
            f"{self.url}: another run is committing its outputs there now (its lock {_LOCK} is {age:.0f} s old; "
            f"one older than {_STALE_LOCK_S} s is taken as left by a failed run); nothing was replaced")

    def _release(self, lock: str) -> None:
        try:
            self._remove_file(lock)
        except Exception as exc:  # noqa: BLE001 - the commit's own outcome matters more
            logger.warning("could not remove the commit lock %s: %s", redact(lock), redact(exc))

    def _remove_staged(self) -> None:
        """Remove the staging folder after the moves: on blob storage, the staged copies by name
        (a request each, no listing); on a disk, the emptied folder."""
        if storage.renames(self.fs):
            self._remove(self.staging)
        else:
            for name in self._written:
                self._remove_file(storage.join(self.staging, name))
            self._remove_file(self.staging)  # the folder itself, on a lake with folders (ADLS Gen2 HNS)

    def _remove_stale_staging(self, entries: dict) -> None:
        """Remove what earlier failed runs staged here (their abort could not reach the storage);
        ``entries``: what the folder held after the moves."""
        for name in entries:
            if _STAGING.match(name) and name != self.staging_name:
                logger.info("removing %s, left by a failed run", redact(storage.join(self.url, name)))
                self._remove(storage.join(self.root, name))

    def _move(self, name: str, *, replacing: bool) -> None:
        """Move a staged file into place. On blob storage a move is a copy and a delete: the copy
        replaces the target in one request, and the staged copies go with their folder at the end."""
        source, target = storage.join(self.staging, name), storage.join(self.root, name)
        if storage.renames(self.fs):
            if replacing:
                self._remove_file(target)
            self.fs.mv(source, target)
        else:
            self.fs.cp_file(source, target)

    def abort(self) -> None:
        """Remove what this run began; never raises (it runs while another error is reported)."""
        self._begun = False
        try:
            self.fs.invalidate_cache()
            self._remove(self.staging)
            for name in self._folders:
                self._remove(storage.join(self.root, name))
            if self._created_root and self.fs.exists(self.root) and not self.fs.ls(self.root):
                self._remove(self.root)
        except Exception as exc:  # noqa: BLE001 - the original error matters more
            logger.warning("could not clean up %s: %s", redact(self._staging_url), redact(exc))

    def _remove(self, path: str) -> None:
        self.fs.invalidate_cache()
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def _remove_file(self, path: str) -> None:
        """Remove a file known to be there: one request, and no error if it has gone since."""
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        self.fs.invalidate_cache()
