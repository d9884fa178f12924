"""Live progress: tasks report the windows they scored as they go, each piece counted once
whatever the attempts, the time left does not rise at a steady rate, and a run's progress
lines move before its one task ends."""
from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest

import scoring.progress
from core.project import ROOT, project_path
from localservices.ports import free_ports
from pixels import probe_image
from scoring.executor import BandScorer
from scoring.progress import PieceProgress, ProgressAddress, ProgressListener, ProgressReporter, RateEstimate
from scoring.records import BandSettings
from tests.conftest import write_noise_png
from tests.helpers import assert_moves_inside_tasks, progress_lines, python_with
from tiling import WindowGrid, plan_tasks


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def listener():
    listening = ProgressListener("127.0.0.1")
    yield listening
    listening.close()


def arrives(listener: ProgressListener, windows: int, timeout: float = 10.0) -> int:
    """The listener's count once it is ``windows``, or after ``timeout`` seconds (reports cross a socket)."""
    deadline = time.monotonic() + timeout
    while listener.windows != windows and time.monotonic() < deadline:
        time.sleep(0.01)
    return listener.windows


def settles(listener: ProgressListener, quiet_s: float = 0.3) -> int:
    """The listener's count once it has not changed for ``quiet_s`` seconds."""
    last, since = listener.windows, time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.02)
        if listener.windows != last:
            last, since = listener.windows, time.monotonic()
    return last


# --- what crosses the socket ---------------------------------------------------------------------


def test_a_report_line_round_trips_and_the_address_pickles():
    report = PieceProgress(2, 11, 4096)
    assert PieceProgress.from_line(report.to_line()) == report
    address = ProgressAddress("127.0.0.1", 4040, "ab" * 16, 0.5)
    assert pickle.loads(pickle.dumps(address)) == address


@pytest.mark.parametrize("line", [b"1 2\n", b"1 2 3 4\n", b"1 two 3\n", b"1 2 -3\n", b""])
def test_a_malformed_report_line_is_refused(line):
    with pytest.raises(ValueError, match="progress line"):
        PieceProgress.from_line(line)


# --- the rate and the time left ------------------------------------------------------------------


def lefts(estimate: RateEstimate, counts, times) -> list:
    found = []
    for t, done in zip(times, counts):
        estimate.add(t, done)
        found.append(estimate.left(t))
    return found


def test_a_steady_rate_reported_each_second_gives_a_time_left_that_does_not_rise():
    total, rate, start = 60_000, 1000.0, 40.0  # 40 s before the first window is scored: Spark, the engines
    times = [start + 0.37 + 0.5 * i for i in range(110)]  # sampled twice a second, out of step with the reports
    counts = [int(rate * int(t - start)) for t in times]  # tasks report once a second
    found = [left for left in lefts(RateEstimate(total), counts, times) if left is not None]
    assert len(found) > 100
    assert all(b <= a + 1e-9 for a, b in zip(found, found[1:])), found
    truth = (total - rate * (times[-1] - start)) / rate
    assert found[-1] == pytest.approx(truth, abs=1.5)  # the rate counts from the first window, not the job's start


def test_a_steady_rate_in_steps_as_tasks_finish_gives_a_time_left_that_does_not_rise():
    total, step, every = 80_000, 5_000, 7.0  # a task of 5,000 windows finishes every 7 s
    times = [0.5 * i for i in range(200)]
    counts = [step * int(t // every) for t in times]
    found = [left for left in lefts(RateEstimate(total), counts, times) if left is not None]
    assert len(found) > 150
    assert all(b <= a + 1e-9 for a, b in zip(found, found[1:])), found


def test_the_rate_follows_recent_progress():
    estimate = RateEstimate(10**9, span_s=30)
    for t in range(1, 121):  # 2,000 windows/s for a minute, then 500
        estimate.add(float(t), 2000 * min(t, 60) + 500 * max(t - 60, 0))
    assert estimate.rate == pytest.approx(500)


def test_the_time_left_is_unknown_before_two_counts_and_once_the_count_stalls_past_it():
    estimate = RateEstimate(1000)
    estimate.add(1.0, 0)
    estimate.add(2.0, 100)
    assert estimate.rate is None and estimate.left(2.0) is None
    estimate.add(3.0, 200)
    assert estimate.rate == pytest.approx(100) and estimate.left(3.0) == pytest.approx(8)
    assert estimate.left(10.0) == pytest.approx(1)
    assert estimate.left(12.0) is None  # stalled for longer than it expected: unknown, not 0 s
    estimate.add(13.0, 1000)
    assert estimate.left(60.0) == 0  # every window scored: the pictures are being finished


def test_a_span_must_be_positive():
    with pytest.raises(ValueError, match="`span_s` must be > 0, got 0"):
        RateEstimate(10, span_s=0)


# --- reporters and the listener over a socket ----------------------------------------------------


def test_each_piece_counts_the_most_any_attempt_reported(listener):
    first, retry, other = (ProgressReporter(listener.address) for _ in range(3))
    first.piece(0, 3)
    first.scored(300)  # a task's first attempt scores 300 windows of piece (0, 3), then its worker dies
    assert arrives(listener, 300) == 300
    retry.piece(0, 3)
    retry.scored(100)
    retry.close()
    assert settles(listener) == 300  # the retry has not caught up: nothing counted twice
    other.piece(1, 0)
    other.done(1, 0, 50)
    other.close()
    assert arrives(listener, 350) == 350
    again = ProgressReporter(listener.address)
    again.done(0, 3, 800)
    again.close()
    assert arrives(listener, 850) == 850
    first.close()


def test_a_task_reports_at_most_once_per_interval(listener):
    clock = FakeClock()
    reporter = ProgressReporter(replace(listener.address, every_s=1.0), clock=clock)
    reporter.piece(0, 0)
    reporter.scored(16)  # the first batch goes at once
    assert arrives(listener, 16) == 16
    for _ in range(50):
        reporter.scored(16)
    assert settles(listener) == 16  # the next report waits a second
    clock.now = 1.0
    reporter.scored(16)
    assert arrives(listener, 16 * 52) == 16 * 52
    reporter.close()


def test_a_connection_without_the_runs_token_is_dropped(listener):
    with socket.create_connection((listener.address.host, listener.address.port)) as intruder:
        intruder.sendall(b"tilescan-progress 1 " + b"0" * 32 + b"\n0 0 1000\n")
        intruder.settimeout(10)
        try:
            closed = intruder.recv(1) == b""
        except ConnectionResetError:
            closed = True
        assert closed  # by the driver
    reporter = ProgressReporter(listener.address)
    reporter.done(0, 0, 10)
    reporter.close()
    assert arrives(listener, 10) == 10


def test_a_driver_out_of_reach_is_tried_once_per_worker_and_scoring_goes_on(monkeypatch):
    (port,) = free_ports(1)  # nothing listens there
    address = ProgressAddress("127.0.0.1", port, "t" * 32)
    tries = []
    connect = socket.create_connection

    def counting(*args, **kwargs):
        tries.append(args)
        return connect(*args, **kwargs)

    monkeypatch.setattr(scoring.progress.socket, "create_connection", counting)
    for _ in range(3):  # three tasks of one Python worker
        reporter = ProgressReporter(address)
        reporter.piece(0, 0)
        reporter.scored(10)
        reporter.done(0, 0, 20)
        reporter.close()
        assert reporter.counts == {(0, 0): 20}
    assert len(tries) == 1


def test_a_band_scorer_reports_every_window_once_across_attempts(listener, tmp_path, random_bundle):
    info = probe_image(write_noise_png(tmp_path / "p.png", 160, 120, seed=2), min_side=32)
    grid = WindowGrid(info.height, info.width, 32, 16)
    settings = BandSettings(engine="onnxruntime", window=32, stride=16, edge="align", batch_size=8, floor=0.0)
    counted = []

    class Counter:
        def add(self, n):
            counted.append(n)

    tasks = plan_tasks([grid], 2)
    scorer = BandScorer(lambda: random_bundle, random_bundle.sha256, settings, {0: info}, storage_options=None,
                        counter=Counter(), progress=listener.address)
    attempt = scorer(tasks[:1])
    next(attempt)  # the first attempt of the first task scores a piece, then is lost
    attempt.close()
    partial = settles(listener)
    assert 0 < partial < grid.n_windows
    for _ in range(2):  # the first task again, then every task: each piece counted once
        list(scorer(tasks[:1]))
    list(scorer(tasks))
    assert arrives(listener, grid.n_windows) == grid.n_windows
    assert settles(listener) == grid.n_windows


# --- a run's progress lines ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.spark
def test_progress_moves_inside_a_runs_one_task(tmp_path, random_bundle_dir):
    """One picture scored in one task (local[1], --strips 1) by an engine slowed to 0.05 s a
    batch: without a terminal, the lines show windows scored before the task ends."""
    picture = write_noise_png(tmp_path / "p.png", 400, 320, seed=3)
    env = {**os.environ, "PYSPARK_PYTHON": python_with(tmp_path, TILESCAN_TEST_SLOW_BATCH_S="0.05"),
           "SPARK_CONF_DIR": project_path("conf"), "SPARK_LOCAL_IP": "127.0.0.1", "TILESCAN_TEST_PROGRESS_S": "0.2"}
    done = subprocess.run([sys.executable, "-m", "app.score", "--image", picture, "--out", str(tmp_path / "run"),
                           "--model", random_bundle_dir, "--master", "local[1]", "--strips", "1", "--batch-size",
                           "16"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\r" not in done.stderr  # no terminal: whole lines
    lines = progress_lines(done.stderr)
    assert {line[3] for line in lines} == {WindowGrid(320, 400, 32, 16).n_windows}
    assert_moves_inside_tasks(lines, done.stderr)
