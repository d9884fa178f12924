"""What crosses the Spark boundary, typed: settings out to the executors, results back.

Out: :class:`BandSettings` (how every band is scored). Back from scoring a band: the kept
rows as Arrow bytes carrying a :class:`PieceTiming` (and with ``--heatmap`` its
:class:`~scoring.heatmap.HeatmapRows`), a :class:`PieceFailure`, or the
:class:`~engines.numerics.NumericsCheck` an engine failed. Back from a header read:
:class:`pixels.ImageInfo` or a :class:`ProbeFailure`. Back from finishing a picture: a
:class:`PictureSummary`. The job's own figures: :class:`JobTimings`. All are frozen and
pickle with Spark's default serializer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from engines.numerics import NumericsCheck

__all__ = ["BandSettings", "JobPlan", "PieceTiming", "PieceFailure", "ProbeFailure", "PictureSummary", "JobTimings",
           "SCORED", "STAGED", "FAILED"]

#: A picture's status after finishing: committed (a collection's), staged for the driver to
#: commit (a single picture's), or failed (with its one-line error).
SCORED, STAGED, FAILED = "scored", "staged", "failed"


@dataclass(frozen=True)
class BandSettings:
    """How every band of a run is scored: the engine, the window grid, the batch, the floor
    under which rows are not sent back (the lowest of ``--keep`` and the thresholds), the
    engine's threads per task (set by the job from Spark's ``spark.task.cpus``), whether
    each band also sends its part of the heat map (``--heatmap``), and, on the dense path
    (:mod:`scoring.paths`), the model's dense stride and a pass's pixels."""

    engine: str
    window: int
    stride: int
    edge: str
    batch_size: int
    floor: float
    threads: int = 1
    heatmap: bool = False
    dense_stride: int | None = None
    dense_pass_pixels: int = 0


@dataclass(frozen=True)
class JobPlan:
    """What one Spark job scores: ``waves`` of :class:`tiling.Task` (each wave holding all the
    bands of its pictures), ``jobs`` (picture index -> :class:`scoring.finish.PictureJob`, whose
    ``info`` the bands are read with), how every band is scored, and the storage options the
    executors use."""

    waves: list
    jobs: dict
    settings: BandSettings
    storage_options: dict | None = field(default=None, repr=False)

    @property
    def tasks(self) -> list:
        return [task for wave in self.waves for task in wave]


@dataclass(frozen=True)
class PieceTiming:
    """One scored band's figures, from the Python worker that scored it."""

    task: int
    task_start: float
    model_load_s: float
    read_s: float
    score_s: float
    predict_s: float
    windows: int
    end: float
    worker: str
    max_rss_mb: float
    #: The worker's engine check (:meth:`~engines.numerics.NumericsCheck.to_json`).
    engine_check: dict | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> PieceTiming:
        return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name in doc})


@dataclass(frozen=True)
class PieceFailure:
    """A band that could not be read: the one-line reason (its picture fails), and whether the
    storage did not answer at all."""

    message: str
    unreachable: bool = False


@dataclass(frozen=True)
class ProbeFailure:
    """A picture whose header could not be read: the one-line reason."""

    message: str


@dataclass(frozen=True)
class PictureSummary:
    """What finishing one picture returns to the driver.

    ``boxes`` is ``(N, 6)`` float64 (x0, y0, x1, y1, score, class) for a collection's
    picture, which the driver adds to the run's detections and then drops
    (:meth:`without_boxes`); a single picture's are in its staged ``detections.json``.
    ``staged`` (:attr:`scoring.outputs.RunWriter.staged`) and ``manifest`` are a single
    picture's, committed by the driver. ``numerics_failure`` is set when some band met an
    engine that failed its numerics check: nothing of the picture was written.
    """

    index: int
    name: str
    url: str
    width: int
    height: int
    status: str = FAILED
    error: str | None = None
    tasks: tuple[PieceTiming, ...] = ()
    counts: dict | None = None
    timings_s: dict | None = None
    overlay_scale: float | None = None
    boxes: np.ndarray | None = field(default=None, repr=False, compare=False)
    staged: dict | None = None
    manifest: dict | None = field(default=None, repr=False)
    numerics_failure: NumericsCheck | None = None
    #: It failed because the storage did not answer (reading its bands, or committing it).
    unreachable: bool = False

    def without_boxes(self) -> PictureSummary:
        return self if self.boxes is None else replace(self, boxes=None)


@dataclass(frozen=True)
class JobTimings:
    """The Spark job's figures, as a manifest's ``timings_s`` records them (:meth:`to_json`).

    The task sums are ``None`` when no band was scored.
    """

    spark_job_s: float
    waves: int
    tasks: int
    python_workers: int
    first_to_last_task_s: float | None = None
    task_read_s: float | None = None
    task_score_s: float | None = None
    task_inference_s: float | None = None
    model_load_s: float | None = None
    worker_max_rss_mb: float | None = None

    @classmethod
    def of(cls, spark_job_s: float, waves: int, tasks: int, pieces: list[PieceTiming]) -> JobTimings:
        if not pieces:
            return cls(spark_job_s, waves, tasks, 0)
        return cls(spark_job_s, waves, tasks, len({t.worker for t in pieces}),
                   first_to_last_task_s=max(t.end for t in pieces) - min(t.task_start for t in pieces),
                   task_read_s=sum(t.read_s for t in pieces), task_score_s=sum(t.score_s for t in pieces),
                   task_inference_s=sum(t.predict_s for t in pieces),
                   model_load_s=sum(t.model_load_s for t in pieces),
                   worker_max_rss_mb=max(t.max_rss_mb for t in pieces))

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}
