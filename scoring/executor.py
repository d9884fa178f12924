"""What runs on the executors: scoring bands of pictures, then finishing each picture.

Nothing here imports pyspark: Spark pickles a :class:`BandScorer` and a
:class:`PictureFinisher` and calls them on partitions. Each Python worker loads the engine
once (keyed by the bundle's sha256, see :mod:`engines.cache`) and keeps it for all its
tasks; each reads its own bands from the lake (:func:`pixels.read_band`).
"""
from __future__ import annotations

import os
import resource
import socket
import time

from core.errors import StorageUnreachable, TilescanError
from core.redaction import redact
from engines.cache import cached_engine
from engines.numerics import NumericsError
from pixels import probe_image, read_band
from scoring.finish import PictureJob, RunContext, finish_picture, piece_rows
from scoring.heatmap import heatmap_rows
from scoring.progress import ProgressAddress, ProgressReporter
from scoring.records import BandSettings, PieceFailure, PieceTiming, ProbeFailure
from scoring.results import select_rows, windows_table
from scoring.windows import score_strip, score_strip_dense
from scoring.worker_gc import freeze_survivors
from scoring.worker_imports import keep_zip_directories
from tiling.grid import WindowGrid

__all__ = ["BandScorer", "PictureFinisher", "probe_picture", "UNREACHABLE_IN_A_ROW", "UNREACHABLE_PAUSE_S"]

#: After this many bands in a row a Python worker could not read because the storage did not
#: answer, it stops asking for :data:`UNREACHABLE_PAUSE_S`: the bands it gets meanwhile fail at
#: once with the last reason, instead of each waiting out its retries (an emulator stopped
#: mid-run kept a run going for 6.5 minutes). Then it asks again.
UNREACHABLE_IN_A_ROW = 3
UNREACHABLE_PAUSE_S = 60.0
_unreachable = {"in_a_row": 0, "last": "", "until": 0.0}  # this worker's, for all its tasks


def probe_picture(url: str, *, window: int, max_pixels: int, storage_options):
    """The header (:class:`pixels.ImageInfo`) of one picture, or the :class:`ProbeFailure` saying why there is none."""
    keep_zip_directories()
    try:
        return probe_image(url, max_pixels=max_pixels, min_side=window, storage_options=storage_options)
    except TilescanError as exc:
        return ProbeFailure(redact(exc))


class BandScorer:
    """Scores the pieces of the tasks in a partition; yields ``(picture index, payload)`` per piece.

    A payload is the piece's kept rows (windows whose best non-background probability is
    at least ``settings.floor``) with its :class:`~scoring.records.PieceTiming` and this
    worker's engine check (:func:`scoring.finish.piece_rows`), a
    :class:`~scoring.records.PieceFailure` when the piece could not be read, or, when this
    worker's engine failed its numerics check, that :class:`~engines.numerics.NumericsCheck`:
    nothing is scored with it. ``load_bundle`` returns the bundle (a broadcast's value);
    ``pictures`` maps a picture index to its :class:`pixels.ImageInfo`; ``counter`` (an
    accumulator) counts the windows done as the task ends; with ``progress``, the task also
    reports the windows it has scored to the driver as it goes (:mod:`scoring.progress`).
    """

    def __init__(self, load_bundle, bundle_sha256: str, settings: BandSettings, pictures: dict, *,
                 storage_options: dict | None, counter, progress: ProgressAddress | None = None):
        self.load_bundle = load_bundle
        self.bundle_sha256 = bundle_sha256
        self.settings = settings
        self.pictures = pictures
        self.storage_options = storage_options
        self.counter = counter
        self.progress = progress

    def __call__(self, partition):
        reporter = ProgressReporter(self.progress)
        try:
            yield from self._score(partition, reporter)
        finally:
            reporter.close()

    def _done(self, reporter: ProgressReporter, piece) -> None:
        """Count ``piece``'s windows as done, scored or not: in the accumulator and to the driver."""
        self.counter.add(piece.strip.n_windows)
        reporter.done(piece.image, piece.strip.index, piece.strip.n_windows)

    def _score(self, partition, reporter: ProgressReporter):
        task_start = time.time()
        keep_zip_directories()
        band = self.settings
        try:
            engine = cached_engine(self.bundle_sha256, self.load_bundle, band.engine, band.threads)
        except NumericsError as exc:
            # Data, not an exception: Spark would retry the task, maybe elsewhere, and the
            # driver would get a Py4J trace; this way it gets the check and stops the run.
            for task in partition:
                for piece in task.pieces:
                    self._done(reporter, piece)
                    yield piece.image, exc.check
            return
        spec = engine.spec
        check = engine.numerics.to_json()
        freeze_survivors()  # the engine, the modules and kept pictures: see scoring.worker_gc
        load_s = time.time() - task_start
        predict_s = [0.0]

        def timed_detect(batch):
            started = time.perf_counter()
            result = engine.detect(batch)
            predict_s[0] += time.perf_counter() - started
            reporter.scored(len(batch))
            return result

        step = band.stride // band.dense_stride if band.dense_stride else 1

        def timed_band(pixels):
            started = time.perf_counter()
            result = engine.detect_band(pixels)
            predict_s[0] += time.perf_counter() - started
            rows, columns = result[0].shape[:2]
            reporter.scored(-(-rows // step) * -(-columns // step))  # the windows of the run's grid it holds
            return result

        for task in partition:
            # Each picture's bands top to bottom: a PNG or JPEG decoder then goes down it once.
            for piece in sorted(task.pieces, key=lambda p: (p.image, p.strip.y0)):
                info, strip = self.pictures[piece.image], piece.strip
                piece_start = time.time()
                reporter.piece(piece.image, strip.index)
                if _unreachable["in_a_row"] >= UNREACHABLE_IN_A_ROW and time.time() < _unreachable["until"]:
                    self._done(reporter, piece)
                    yield piece.image, PieceFailure(f"not read: the storage did not answer this worker's last "
                                                    f"{_unreachable['in_a_row']} reads ({_unreachable['last']})",
                                                    unreachable=True)
                    continue
                try:
                    pixels = read_band(info, strip.y0, strip.y1, storage_options=self.storage_options)
                except TilescanError as exc:
                    self._done(reporter, piece)
                    unreachable = isinstance(exc, StorageUnreachable)
                    _unreachable.update(in_a_row=_unreachable["in_a_row"] + 1 if unreachable else 0,
                                        last=redact(exc) if unreachable else "",
                                        until=time.time() + UNREACHABLE_PAUSE_S)
                    yield piece.image, PieceFailure(redact(exc), unreachable=unreachable)
                    continue
                _unreachable["in_a_row"] = 0
                read_s = time.time() - piece_start
                xs = WindowGrid(info.height, info.width, band.window, band.stride, band.edge).xs
                before = predict_s[0]
                if band.dense_stride:
                    scores = score_strip_dense(pixels, strip, xs, band.window, timed_band, timed_detect,
                                               stride=band.stride, dense_stride=band.dense_stride,
                                               pass_pixels=band.dense_pass_pixels, batch_size=band.batch_size)
                else:
                    scores = score_strip(pixels, strip, xs, band.window, timed_detect, batch_size=band.batch_size)
                del pixels  # not held while the next band is read: one band at a time in memory
                keep = select_rows(scores.probs, spec.classes, spec.background, band.floor)
                table = windows_table(scores.origins[keep], scores.probs[keep], strip.index, window=band.window,
                                      classes=spec.classes,
                                      deltas=None if scores.deltas is None else scores.deltas[keep])
                timing = PieceTiming(task=task.index, task_start=task_start, model_load_s=load_s, read_s=read_s,
                                     score_s=time.time() - piece_start - read_s, predict_s=predict_s[0] - before,
                                     windows=int(len(scores.origins)), end=time.time(),
                                     worker=f"{socket.gethostname()}:{os.getpid()}",
                                     max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                     engine_check=check)
                load_s = 0.0  # counted once, with the task's first piece
                if band.heatmap:  # every window's, whatever --keep leaves out of the rows
                    part = heatmap_rows(scores.origins, scores.probs, spec.classes, spec.background, band.stride)
                    if part is not None:
                        yield piece.image, part
                self._done(reporter, piece)
                yield piece.image, piece_rows(table, timing)


class PictureFinisher:
    """Finishes the pictures of a partition of ``(picture index, payloads)``; yields their summaries."""

    def __init__(self, jobs: dict, context: RunContext, counter):
        self.jobs = jobs  # index -> PictureJob
        self.context = context
        self.counter = counter

    def __call__(self, partition):
        keep_zip_directories()
        freeze_survivors()
        for index, payloads in partition:
            job: PictureJob = self.jobs[index]
            summary = finish_picture(job, list(payloads), self.context)
            self.counter.add(1)
            yield summary
