"""The Spark job: tasks of picture bands scored with the model broadcast once, then each
picture finished where its bands meet.

Stage one runs one task per planned :class:`tiling.Task`: executors read their own bands
from the lake (:class:`~scoring.executor.BandScorer`); their kept rows are grouped by
picture, and stage two finishes and commits each picture
(:class:`~scoring.executor.PictureFinisher`). Only summaries come back to the driver, with
the windows scored that running tasks report for the progress line (:mod:`scoring.progress`):
pixels never pass through it. This and ``app/`` are the only modules that import pyspark;
executors run the code in :mod:`scoring.shipping`'s zip.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import replace

from core.errors import InputError, StorageUnreachable, Terminated, TilescanError
from core.project import resource_path
from core.redaction import redact
from engines import engine_module
from engines.numerics import NumericsError
from scoring.connect import context_of, is_connect
from scoring.executor import UNREACHABLE_IN_A_ROW, BandScorer, PictureFinisher, probe_picture
from scoring.finish import executor_checks
from scoring.progress import ProgressListener, RateEstimate
from scoring.records import SCORED, JobPlan, JobTimings, PictureSummary
from scoring.shipping import executor_zip
from tiling import Task

__all__ = ["check_master", "spark_session", "spark_submit_executable", "ship_packages", "engine_threads",
           "cancel_on_interrupt", "probe_on_executors", "run_job", "check_storage_answers", "spark_settings",
           "local_with_retries", "LOCAL_TASK_ATTEMPTS"]


logger = logging.getLogger(__name__)

#: The master URLs Spark takes (spark-submit --master), for a check before it starts.
_MASTER = re.compile(r"local(\[(\*|\d+)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|spark://[^/\s]+|yarn|k8s://\S+")
#: Seconds to wait for a standalone master to accept a connection.
MASTER_TIMEOUT_S = 3.0


def check_master(master: str | None, *, timeout: float = MASTER_TIMEOUT_S) -> None:
    """Refuse a ``--master`` Spark would not take, or a standalone master nothing answers at.

    Before Spark starts, in one line: Spark's own answers are a JVM stack trace and, for a
    standalone master that is not there, a minute of retries first.
    """
    if master is None:
        return
    if not _MASTER.fullmatch(master):
        raise InputError(f"--master {master!r} is not a Spark master URL (local[N], spark://HOST:PORT, yarn, "
                         "k8s://...)")
    if not master.startswith("spark://"):
        return
    refused = []
    for address in master[len("spark://"):].split(","):  # several with standby masters: one answering will do
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"--master {master!r}: {address!r} is not HOST:PORT")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            return
        except OSError as exc:
            refused.append(f"{address} ({exc.strerror or type(exc).__name__})")
    raise TilescanError(f"--master {master}: no Spark master answers at {', '.join(refused)}")


#: Attempts of a task in local mode, as on a cluster (``spark.task.maxFailures``): Spark's local
#: master tries a task once, so a Python worker that crashed once (the OOM killer, a decoder's
#: segfault) failed the whole run.
LOCAL_TASK_ATTEMPTS = 4
_LOCAL = re.compile(r"local(\[(\*|\d+)\])?")


def local_with_retries(master: str) -> str:
    """A local master that retries a failed task as a cluster does; any other master as it is.

    >>> local_with_retries("local[*]"), local_with_retries("local"), local_with_retries("local[2,1]")
    ('local[*,4]', 'local[1,4]', 'local[2,1]')
    """
    found = _LOCAL.fullmatch(master)
    if not found:
        return master
    return f"local[{found.group(2) or 1},{LOCAL_TASK_ATTEMPTS}]"


#: pyspark is not a requirement of the package: a cluster brings its own.
PYSPARK_MISSING = ("pyspark is not installed here: on a cluster, run tilescan with the cluster's spark-submit, "
                   "which brings its own; to run Spark on this machine, pip install 'tilescan[local]'")


def spark_session(master: str | None = None):
    """The SparkSession of a scoring run: ``master`` when given, else the one spark-submit set, else ``local[*]``.

    Executors run the driver's Python (the environment with the engines in it) unless
    ``PYSPARK_PYTHON`` says otherwise; the JVM logs quietly through ``conf/``.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise TilescanError(PYSPARK_MISSING) from None

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_CONF_DIR", resource_path("conf"))
    builder = SparkSession.builder.appName("tilescan")
    if master:
        builder = builder.master(local_with_retries(master))
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # plain `python app/score.py`, not spark-submit
        builder = builder.master(local_with_retries("local[*]"))
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - py4j's and PySpark's errors: the JVM has said why above
        given = f" with --master {master}" if master else ""
        raise TilescanError(f"Spark did not start{given}: {redact(exc)}") from None
    if not is_connect(spark):  # spark.api.mode=connect: the server logs as it is configured
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_submit_executable() -> str:
    """``spark-submit`` of the running environment (the pyspark wheel's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "spark-submit")
    return beside if os.path.exists(beside) else "spark-submit"


_application: dict = {}  # what this driver keeps for the Spark application it runs in


def _application_state(sc) -> dict:
    """What the driver keeps for ``sc``'s application between runs (its settings, the code
    zips shipped, the last bundle broadcast); a process runs one SparkContext at a time, so
    another application starts afresh."""
    if _application.get("id") != sc.applicationId:
        _application.clear()
        _application.update(id=sc.applicationId, shipped=set())
    return _application


def _context_conf(spark) -> dict:
    """The SparkContext's settings, fixed once it has started: read through py4j once per
    application (about 25 ms each time, with both cores idle before the job)."""
    sc = context_of(spark)
    state = _application_state(sc)
    if "conf" not in state:
        state["conf"] = dict(sc.getConf().getAll())
    return state["conf"]


def engine_threads(spark) -> int:
    """Intra-op threads per task: the cores Spark gives each task, so none are oversubscribed."""
    return max(1, int(_context_conf(spark).get("spark.task.cpus", "1")))


def _bundle_broadcast(sc, bundle):
    """``bundle`` broadcast to the executors, reusing the last one sent in this application when
    it is the same (a notebook scoring again: about 20 ms saved, while both cores wait)."""
    state = _application_state(sc)
    key = (bundle.sha256, bundle.source, tuple(sorted(bundle.files)))
    held = state.get("broadcast")
    if held is not None and held[0] == key:
        return held[1]
    if held is not None:
        held[1].unpersist()
    broadcast = sc.broadcast(bundle)
    state["broadcast"] = (key, broadcast)
    return broadcast


def ship_packages(spark, engine: str | None) -> None:
    """Send the executor code (with ``engine``'s module, if given) to the executors as one zip.

    The zip is named by its content hash: Spark refuses a second file of the same name with
    other contents, which happens when the code changes within one long-lived session.
    """
    data = executor_zip(*([engine_module(engine)] if engine else []))
    digest = hashlib.sha256(data).hexdigest()[:16]
    sc = context_of(spark)
    shipped = _application_state(sc)["shipped"]
    if digest in shipped:
        return
    folder = os.path.join(tempfile.gettempdir(), f"tilescan-py-{os.getpid()}")
    if not os.path.isdir(folder):
        _remove_orphaned_zips()
        os.makedirs(folder)
        atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, f"tilescan_executor_{digest}.zip")
    with open(path, "wb") as fh:
        fh.write(data)
    sc.addPyFile(path)
    shipped.add(digest)


def _remove_orphaned_zips() -> None:
    """Remove the executor-zip folders of drivers that ended without cleaning up (SIGKILL)."""
    for name in os.listdir(tempfile.gettempdir()):
        pid = name[len("tilescan-py-"):]
        if not (name.startswith("tilescan-py-") and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(tempfile.gettempdir(), name), ignore_errors=True)
        except OSError:  # another user's live process
            pass


def spark_settings(spark) -> dict:
    """The Spark configuration a run depended on, for the manifest: secrets among it redacted."""
    conf = _context_conf(spark)
    secret = ("secret", "password", "token", "key", "sas", "credential")
    return {k: ("***" if any(word in k.lower() for word in secret) else redact(v)) for k, v in sorted(conf.items())
            if not k.startswith("spark.app.initial")}


@contextmanager
def cancel_on_interrupt(sc):
    """Ctrl-C cancels the running Spark jobs, then raises :class:`KeyboardInterrupt` here.

    PySpark's own handler calls the JVM from inside the signal handler, while the main
    thread waits on the same Py4J connection: the connection breaks and every later call
    prints a traceback. Cancelling from another thread (its own connection) lets the
    waiting call return normally, with the job's failure. The cancelling repeats until the
    block ends: a Ctrl-C just before the job is submitted must stop it too. A second Ctrl-C
    interrupts at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted, ended = threading.Event(), threading.Event()
    received = []

    def keep_cancelling():
        while not ended.is_set():
            sc.cancelAllJobs()
            ended.wait(0.5)

    def cancel(signum, frame):
        if interrupted.is_set():
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        received.append(signum)
        interrupted.set()
        threading.Thread(target=keep_cancelling, daemon=True).start()

    # SIGTERM (a scheduler, kill) stops the run as Ctrl-C does: jobs cancelled, one line, no trace.
    previous = {signum: signal.signal(signum, cancel) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupted
    except Exception:
        if not interrupted.is_set():
            raise
    finally:
        ended.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if interrupted.is_set():
        _wait_for_cancelled_tasks(sc)
        raise Terminated if received[0] == signal.SIGTERM else KeyboardInterrupt


def _wait_for_cancelled_tasks(sc, timeout: float = 15.0) -> None:
    """Give cancelled tasks a moment to stop: a JVM shut down under running tasks logs an error
    per task. The executors' own count of running tasks is the one to wait on (a cancelled
    stage leaves the active list before its tasks have stopped)."""
    if getattr(sc, "connect", False):  # Spark Connect interrupts its operations itself
        return
    executors = sc._jsc.sc().statusTracker()  # PySpark's StatusTracker does not count tasks
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not sum(info.numRunningTasks() for info in executors.getExecutorInfos()):
            return
        time.sleep(0.1)


def probe_on_executors(spark, urls: list, *, window: int, max_pixels: int, storage_options) -> list:
    """The header (:class:`pixels.ImageInfo`) or one-line error of each picture, read on the executors."""
    sc = context_of(spark)
    ship_packages(spark, None)
    slices = max(1, min(len(urls), 4 * sc.defaultParallelism))
    sc.setJobDescription(f"tilescan: the headers of {len(urls):,} pictures")
    probe = functools.partial(probe_picture, window=window, max_pixels=max_pixels, storage_options=storage_options)
    with cancel_on_interrupt(sc):
        return sc.parallelize(list(urls), slices).map(probe).collect()


#: Seconds between progress lines without a terminal: a log gets one line per this.
PLAIN_EVERY_S = 10.0
#: The pace of progress in seconds for a test: between lines, terminal or not, and between a
#: task's reports (:data:`scoring.progress.REPORT_EVERY_S` otherwise).
_TEST_PACE = "TILESCAN_TEST_PROGRESS_S"


class _Progress(threading.Thread):
    """Prints pictures finished, windows scored, windows per second and the time left while the job runs.

    ``count_windows()`` gives the windows scored so far, inside running tasks too where they
    report (:func:`_windows_scored`); the rate and the time left come from recent progress
    (:class:`scoring.progress.RateEstimate`), sampled every ``interval`` seconds. On a terminal
    the line is rewritten every ``interval`` seconds; otherwise a line is printed every
    ``plain_every`` seconds.
    """

    def __init__(self, count_windows, pictures, total_windows: int, total_pictures: int, *, quiet: bool,
                 interval: float = 1.0, plain_every: float = PLAIN_EVERY_S):
        super().__init__(daemon=True)
        self.count_windows, self.pictures = count_windows, pictures
        self.total_windows, self.total_pictures = total_windows, total_pictures
        self.quiet, self.interval, self.plain_every = quiet, interval, plain_every
        self.estimate = RateEstimate(total_windows)
        self._stop_event = threading.Event()

    def sample(self, now: float) -> int:
        """The windows scored so far, taken into the estimate at ``now`` (monotonic seconds)."""
        done = min(self.count_windows(), self.total_windows)
        self.estimate.add(now, done)
        return done

    def line(self, now: float) -> str:
        done = self.sample(now)
        rate, left = self.estimate.rate, self.estimate.left(now)
        eta = "?" if left is None else f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
        return (f"scoring: {self.pictures.value:,}/{self.total_pictures:,} pictures finished, "
                f"{done:,}/{self.total_windows:,} windows ({100 * done / max(self.total_windows, 1):.0f}%), "
                f"{'?' if rate is None else f'{rate:,.0f}'} windows/s, {eta} left")

    def run(self) -> None:
        tty = sys.stderr.isatty()
        last_print = None
        while not self._stop_event.wait(self.interval):
            if self.quiet:
                continue
            now = time.monotonic()
            if not tty and last_print is not None and now - last_print < self.plain_every:
                self.sample(now)  # the rate sees each change as it comes, printed or not
                continue
            last_print = now
            line = self.line(now)
            print("\r" + line if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stop_event.set()
        if self.ident is None:  # never started
            return
        self.join()
        if not self.quiet and sys.stderr.isatty():
            print(file=sys.stderr)


def _test_pace() -> float | None:
    """The pace a test set in ``TILESCAN_TEST_PROGRESS_S``, if any."""
    given = os.environ.get(_TEST_PACE)
    return float(given) if given else None


def _progress_listener(spark, every_s: float | None) -> ProgressListener | None:
    """A listener for the scoring tasks' reports on the driver's host (``spark.driver.host``,
    bound at ``spark.driver.bindAddress`` as Spark binds its own), or ``None`` where it cannot
    listen: the count then comes from finished tasks, as it does from executors that cannot
    connect to it."""
    conf = _context_conf(spark)
    host = conf.get("spark.driver.host")
    if not host:
        return None
    try:
        return ProgressListener(host, bind=conf.get("spark.driver.bindAddress") or host,
                                **({} if every_s is None else {"every_s": every_s}))
    except OSError as exc:
        logger.debug("no live progress: cannot listen at %s (%s)", host, exc)
        return None


def _windows_scored(counter, listener: ProgressListener | None):
    """The windows scored so far: those the tasks reported to ``listener`` as they went or, where
    more (tasks that could not reach it), those of the finished tasks (``counter``, an accumulator)."""
    if listener is None:
        return lambda: counter.value
    return lambda: max(counter.value, listener.windows)


def _collect(sc, tasks: list, members: list, scorer, finisher) -> list:
    """One Spark job: ``tasks`` scored by ``scorer``, their rows grouped by picture and finished."""
    finishing = max(1, min(len(members), 2 * sc.defaultParallelism))
    return (sc.parallelize(tasks, len(tasks)).mapPartitions(scorer)
            .groupByKey(finishing, partitionFunc=lambda index: index)
            .mapPartitions(finisher).collect())


#: What a Python worker imports to score (checked on the executors before a run from the API).
EXECUTOR_MODULES = ("numpy", "pyarrow", "PIL", "onnxruntime", "pyvips", "tifffile", "fsspec")
_executors_checked: set = set()


def check_executor_python(sc) -> None:
    """One line, before any scoring job, when the executors' Python cannot import what scoring
    needs (a session whose ``spark.pyspark.python`` is another environment than tilescan's).
    Once per application: its executors' Python does not change."""
    if sc.applicationId in _executors_checked:
        return
    names = EXECUTOR_MODULES
    # A lambda: pickled by value, so that the executor needs nothing of tilescan to run it.
    probe = lambda _: [__import__(name) for name in names] and __import__("sys").executable  # noqa: E731
    try:
        sc.parallelize([0], 1).map(probe).collect()
    except Exception as exc:  # noqa: BLE001 - py4j's error of the failed job
        missing = re.search(r"No module named '([^']+)'", str(exc))
        if missing is None:
            raise _job_error(sc, exc) from None
        raise TilescanError(f"the executors' Python cannot import {missing.group(1)}, which scoring needs: set "
                            "spark.pyspark.python (or PYSPARK_PYTHON before the session starts) to an environment "
                            "where tilescan is installed") from None
    _executors_checked.add(sc.applicationId)


def _task_failure(exc: BaseException) -> str | None:
    """The one-line reason of a Spark job that failed because a task failed every attempt (a
    crashed Python worker, a killed executor); ``None`` for any other failure."""
    text = str(exc)
    if "Job aborted due to stage failure" not in text:
        return None
    found = re.search(r"most recent failure: [^:]*\):\s*(?:[\w.]+(?:Exception|Error): )?([^\n]+)", text)
    return redact(found.group(1).strip()[:300] if found else "a task failed every attempt")


def _job_error(sc, exc: BaseException) -> BaseException:
    """What a failed Spark job becomes: one line for a session stopped under it; anything else as it was."""
    text = str(exc)
    # Spark 3.5's collect raises an AttributeError of its own as it leaves a stopped context.
    stopped = sc.stopped if getattr(sc, "connect", False) else getattr(sc, "_jsc", None) is None
    if stopped or "SparkContext was shut down" in text or \
            "SparkContext has been shutdown" in text or "Cannot call methods on a stopped SparkContext" in text:
        return TilescanError("the Spark session was stopped while the run went on; the pictures it had not "
                             "finished were not committed (--resume keeps the finished ones)")
    return exc


def _failed(plan: JobPlan, index: int, reason: str) -> PictureSummary:
    job = plan.jobs[index]
    return PictureSummary(index, job.name, job.info.url, job.info.width, job.info.height,
                          error=f"its Spark task failed every attempt: {reason}")


def _one_by_one(sc, wave: list, members: list, plan: JobPlan, scorer, finisher) -> list:
    """A wave's pictures in a job each, after the wave's job failed: a picture whose job fails
    again fails alone, with the reason, and the others are finished."""
    done = []
    for index in members:
        tasks = [Task(t.index, tuple(p for p in t.pieces if p.image == index)) for t in wave]
        tasks = [t for t in tasks if t.pieces]
        try:
            done += _collect(sc, tasks, [index], scorer, finisher)
        except Exception as exc:  # noqa: BLE001 - py4j's error of a failed Spark job
            reason = _task_failure(exc)
            if reason is None:
                raise _job_error(sc, exc) from None
            done.append(_failed(plan, index, reason))
    return done


def check_storage_answers(wave: list[PictureSummary], summaries: list[PictureSummary]) -> None:
    """Stop before the next wave when the storage stopped answering in this one: its later pictures
    would each fail the same way, after their retries.

    Raises
    ------
    StorageUnreachable
        When at least :data:`scoring.executor.UNREACHABLE_IN_A_ROW` pictures of the wave failed so.
    """
    lost = [s for s in wave if s.unreachable]
    if len(lost) >= UNREACHABLE_IN_A_ROW:
        finished = sum(s.status == SCORED for s in summaries)
        raise StorageUnreachable(f"the storage stopped answering: {len(lost)} pictures of this wave could not reach "
                                 f"it ({lost[0].error}); the {finished} pictures finished so far are kept for --resume")


def run_job(spark, plan: JobPlan, bundle, context, *, quiet: bool = False,
            on_wave=None) -> tuple[list[PictureSummary], JobTimings, list[dict]]:
    """Score the tasks of each wave of ``plan`` and finish its pictures on Spark, a wave at a
    time; the pictures' summaries, the job's timings and the executors' engine checks
    (:func:`scoring.finish.executor_checks`).

    ``bundle`` should carry only the engine's files: it is broadcast once, as it is, for
    every wave. ``on_wave`` is called with each wave's summaries as the wave ends; the
    summaries kept after it have no boxes (:meth:`PictureSummary.without_boxes`).

    Raises
    ------
    NumericsError
        As the first wave in which an executor's engine failed its numerics check ends: the
        pictures that engine scored bands of were not written, and no later wave starts.
    """
    sc = context_of(spark)
    settings = replace(plan.settings, threads=engine_threads(spark))
    ship_packages(spark, settings.engine)
    windows = sc.accumulator(0)
    finished = sc.accumulator(0)
    broadcast = _bundle_broadcast(sc, bundle)
    tasks = plan.tasks
    # Live progress counts through accumulators and a socket the tasks report to, which a Spark
    # Connect session lacks or may not reach: there a wave says when it ends.
    live = not getattr(sc, "connect", False)
    pace = _test_pace()
    listener = _progress_listener(spark, pace) if live and not quiet else None
    progress = _Progress(_windows_scored(windows, listener), finished, sum(t.n_windows for t in tasks),
                         len(plan.jobs), quiet=quiet or not live,
                         **({} if pace is None else {"interval": pace, "plain_every": pace}))
    summaries = []
    started = time.time()
    try:
        with cancel_on_interrupt(sc):
            progress.start()  # here: by its first line, Ctrl-C cancels the job
            for number, wave in enumerate(plan.waves, start=1):
                # Each wave's closures carry only its own pictures.
                members = sorted({piece.image for task in wave for piece in task.pieces})
                scorer = BandScorer(lambda: broadcast.value, bundle.sha256, settings,
                                    {i: plan.jobs[i].info for i in members}, storage_options=plan.storage_options,
                                    counter=windows, progress=None if listener is None else listener.address)
                finisher = PictureFinisher({i: plan.jobs[i] for i in members}, context, finished)
                sc.setJobDescription(f"tilescan: {sum(t.n_windows for t in wave):,} windows of {len(members):,} "
                                     f"pictures in {len(wave)} tasks" + (f", wave {number} of {len(plan.waves)}"
                                                                         if len(plan.waves) > 1 else ""))
                try:
                    done = _collect(sc, wave, members, scorer, finisher)
                except Exception as exc:  # noqa: BLE001 - py4j's error of a failed Spark job
                    reason = _task_failure(exc)
                    if reason is None:
                        raise _job_error(sc, exc) from None
                    if len(members) == 1:
                        done = [_failed(plan, members[0], reason)]
                    else:
                        logger.warning("a task of this wave failed every attempt (%s): its pictures are scored one "
                                       "by one, so that only a picture that fails again is lost", reason)
                        done = _one_by_one(sc, wave, members, plan, scorer, finisher)
                failed = next((s.numerics_failure for s in done if s.numerics_failure is not None), None)
                if failed is not None:
                    raise NumericsError(failed)
                if not (live or quiet):
                    logger.warning("scoring: wave %d of %d finished (%d pictures)", number, len(plan.waves), len(done))
                if on_wave is not None:
                    on_wave(done)
                summaries += [summary.without_boxes() for summary in done]
                if number < len(plan.waves):
                    check_storage_answers(done, summaries)
    finally:
        progress.stop()  # the broadcast stays for the next run of this bundle (see _bundle_broadcast)
        if listener is not None:
            listener.close()
    pieces = [t for s in summaries for t in s.tasks]
    return summaries, JobTimings.of(time.time() - started, len(plan.waves), len(tasks), pieces), executor_checks(pieces)
