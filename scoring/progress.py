"""Live progress of a scoring run: the windows scored inside running tasks, and the rate and
time left from recent progress.

PySpark sends a Python task's accumulators to the driver only as the task ends, and what
executors' heartbeats carry for a running task are the JVM's metrics, which do not move while
the JVM waits on its Python worker (measured: none moved over a 30 s Python task). A big
picture then sat at 0 % until its first task ended. So each scoring task reports on a side
channel instead: :class:`ProgressReporter` keeps, per piece (a band of a picture), the windows
this attempt has scored and sends them at most once per :attr:`ProgressAddress.every_s` over
one TCP connection to the driver's :class:`ProgressListener`, which keeps, per piece, the most
any attempt has reported: a retried task or a piece scored again is not counted twice. An
executor that cannot reach the driver stops trying, and the driver's count falls back to
finished tasks. :class:`RateEstimate` gives the rate over the last half minute of progress,
from the first windows scored on, so that a steady rate gives a time left that does not rise.

The wire format is text, one line each, so the driver unpickles nothing from the network:
``tilescan-progress 1 TOKEN`` once, then ``IMAGE STRIP WINDOWS`` (:class:`PieceProgress`).
Nothing here imports pyspark; the reporter runs on the executors.
"""
from __future__ import annotations

import collections
import hmac
import logging
import secrets
import selectors
import socket
import threading
import time
from dataclasses import dataclass

__all__ = ["ProgressAddress", "PieceProgress", "ProgressReporter", "ProgressListener", "RateEstimate",
           "REPORT_EVERY_S", "RATE_SPAN_S"]

logger = logging.getLogger(__name__)

#: Seconds between a task's reports: one small message a second per running task, whatever its batches.
REPORT_EVERY_S = 1.0
#: Seconds of recent progress the rate is taken over.
RATE_SPAN_S = 30.0
#: Seconds an executor waits to connect to the driver (once per Python worker and run; see ``_refused``).
CONNECT_TIMEOUT_S = 1.0
_HELLO = "tilescan-progress 1"
_MAX_LINE = 256  # bytes: a report line is three integers
_MAX_CONNECTIONS = 4096  # running tasks at once; more are closed, and counted as they finish


@dataclass(frozen=True)
class ProgressAddress:
    """Where the scoring tasks of a run send their progress: the driver's ``host`` and
    ``port``, the run's random ``token`` (a connection that does not give it is dropped), and
    the seconds between a task's reports."""

    host: str
    port: int
    token: str
    every_s: float = REPORT_EVERY_S


@dataclass(frozen=True)
class PieceProgress:
    """The windows one attempt has scored of one piece: picture ``image``'s band ``strip``.

    >>> PieceProgress.from_line(PieceProgress(3, 7, 1200).to_line())
    PieceProgress(image=3, strip=7, windows=1200)
    """

    image: int
    strip: int
    windows: int

    def to_line(self) -> bytes:
        return f"{self.image} {self.strip} {self.windows}\n".encode("ascii")

    @classmethod
    def from_line(cls, line: bytes) -> PieceProgress:
        """The report of one line; :class:`ValueError` unless it is three whole numbers, none negative."""
        parts = line.split()
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise ValueError(f"a progress line holds IMAGE STRIP WINDOWS, three whole numbers; got "
                             f"{line[:_MAX_LINE]!r}")
        image, strip, windows = (int(part) for part in parts)
        return cls(image, strip, windows)


#: Driver addresses this Python worker could not reach: its later tasks of that run do not wait
#: on them again (a firewall that drops the packets costs CONNECT_TIMEOUT_S once, not per task).
#: A run listens on a new port, so the few most recent are enough.
_refused: collections.deque = collections.deque(maxlen=8)


class ProgressReporter:
    """Counts the windows one task attempt scores, per piece, and sends them to the driver.

    Call :meth:`piece` as a piece starts, :meth:`scored` after each batch, :meth:`done` as a
    piece ends (also one that failed: its windows count as done, as the finished-task count
    does), and :meth:`close` as the task ends. A batch costs a clock reading; a report is one
    ``send`` of the pieces changed since the last, at most once per ``address.every_s`` (and
    once more at :meth:`close`). With ``address`` ``None``, or once the driver could not be
    reached, it only counts.
    """

    def __init__(self, address: ProgressAddress | None, *, clock=time.monotonic):
        self.address = address
        self.clock = clock
        self.counts: dict[tuple[int, int], int] = {}  # (image, strip) -> windows scored by this attempt
        self._changed: set = set()
        self._current: tuple[int, int] | None = None
        self._sock: socket.socket | None = None
        self._off = address is None or address in _refused
        self._next_send = 0.0  # the first batch is reported at once: the driver sees scoring start

    def piece(self, image: int, strip: int) -> None:
        self._current = (image, strip)
        self.counts.setdefault(self._current, 0)

    def scored(self, windows: int) -> None:
        """``windows`` more of the current piece are scored."""
        self.counts[self._current] += windows
        self._changed.add(self._current)
        self._maybe_send()

    def done(self, image: int, strip: int, windows: int) -> None:
        """The piece ``(image, strip)`` is done: ``windows`` in all."""
        self.counts[(image, strip)] = windows
        self._changed.add((image, strip))
        self._maybe_send()

    def close(self) -> None:
        """Send what changed since the last report, and hang up."""
        if self._changed and not self._off:
            self._send()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _maybe_send(self) -> None:
        if not self._off and self.clock() >= self._next_send:
            self._send()

    def _send(self) -> None:
        self._next_send = self.clock() + self.address.every_s
        payload = b"".join(PieceProgress(*key, self.counts[key]).to_line() for key in sorted(self._changed))
        try:
            if self._sock is None:
                self._sock = socket.create_connection((self.address.host, self.address.port),
                                                      timeout=CONNECT_TIMEOUT_S)
                payload = f"{_HELLO} {self.address.token}\n".encode("ascii") + payload
            self._sock.sendall(payload)
        except OSError:  # the driver is out of reach from here: it counts this task as it finishes
            self._off = True
            if self.address not in _refused:
                _refused.append(self.address)
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            return
        self._changed.clear()


class ProgressListener:
    """Listens on the driver for the reports of a run's scoring tasks.

    ``windows`` is the sum over pieces of the most windows any attempt reported for it. It
    binds ``bind`` (default ``host``) on a free port; executors connect to ``host``
    (:attr:`address`, which the tasks carry). Raises :class:`OSError` when it cannot bind.
    One daemon thread reads every connection; :meth:`close` stops it.
    """

    def __init__(self, host: str, *, bind: str | None = None, every_s: float = REPORT_EVERY_S):
        self._server = socket.create_server((bind or host, 0))
        self._server.setblocking(False)
        self.address = ProgressAddress(host, self._server.getsockname()[1], secrets.token_hex(16), every_s)
        self._hello = f"{_HELLO} {self.address.token}".encode("ascii")
        self._best: dict[tuple[int, int], int] = {}
        self._windows = 0  # written by the listener's thread only; an int read is atomic
        self._selector = selectors.DefaultSelector()
        self._wake, self._waker = socket.socketpair()
        self._selector.register(self._server, selectors.EVENT_READ, None)
        self._selector.register(self._wake, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name="tilescan-progress", daemon=True)
        self._thread.start()

    @property
    def windows(self) -> int:
        """Windows scored so far, by running and finished tasks, each piece counted once."""
        return self._windows

    def take(self, report: PieceProgress) -> None:
        """Count ``report``: a piece's windows are the most any attempt has reported for it."""
        key = (report.image, report.strip)
        before = self._best.get(key, 0)
        if report.windows > before:
            self._best[key] = report.windows
            self._windows += report.windows - before

    def close(self) -> None:
        """Stop listening and close every connection."""
        if self._thread.is_alive():
            self._waker.send(b"x")
            self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()
        self._waker.close()

    def _serve(self) -> None:
        try:
            while True:
                for key, _ in self._selector.select():
                    if key.fileobj is self._wake:
                        return
                    if key.fileobj is self._server:
                        self._accept()
                    else:
                        self._read(key.fileobj, key.data)
        except Exception:  # noqa: BLE001 - never stop a run for its progress line: it falls back to finished tasks
            logger.debug("live progress stopped", exc_info=True)

    def _accept(self) -> None:
        try:
            conn, _ = self._server.accept()
        except OSError:
            return
        if len(self._selector.get_map()) >= _MAX_CONNECTIONS:
            conn.close()
            return
        conn.setblocking(False)
        self._selector.register(conn, selectors.EVENT_READ, {"buffer": b"", "greeted": False})

    def _read(self, conn: socket.socket, state: dict) -> None:
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        *lines, state["buffer"] = (state["buffer"] + data).split(b"\n")
        try:
            for line in lines:
                if not state["greeted"]:
                    if not hmac.compare_digest(line.strip(), self._hello):
                        raise ValueError("not this run's token")
                    state["greeted"] = True
                else:
                    self.take(PieceProgress.from_line(line))
            if not data or len(state["buffer"]) > _MAX_LINE:
                raise ValueError("connection closed, or a line too long")
        except ValueError:
            self._selector.unregister(conn)
            conn.close()


class RateEstimate:
    """Windows per second over the last ``span_s`` seconds of progress, and the time left.

    :meth:`add` takes a count of windows done at a time; the estimate starts at the first
    count above nothing (so the time before scoring started, Spark's and the engines', does
    not slow it) and moves only when the count does. The time left is made at the last change
    and counts down from it: at a steady rate, however the count arrives (each second from
    running tasks, or in steps as tasks finish), it does not rise.
    """

    def __init__(self, total: int, *, span_s: float = RATE_SPAN_S):
        if span_s <= 0:
            raise ValueError(f"`span_s` must be > 0, got {span_s}")
        self.total = total
        self.span_s = span_s
        self._changes: collections.deque = collections.deque()  # (time, done) where the count rose

    def add(self, t: float, done: int) -> None:
        """``done`` windows at time ``t`` (seconds, any origin, not decreasing)."""
        if done <= 0 or (self._changes and done <= self._changes[-1][1]):
            return
        self._changes.append((t, done))
        # Keep one change at or before the span's start, so that the span is whole.
        while len(self._changes) > 2 and self._changes[1][0] <= t - self.span_s:
            self._changes.popleft()

    @property
    def rate(self) -> float | None:
        """Windows per second over the span; ``None`` before two changes."""
        if len(self._changes) < 2:
            return None
        (t0, d0), (t1, d1) = self._changes[0], self._changes[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None

    def left(self, now: float) -> float | None:
        """Seconds left at :attr:`rate`, counted down since the last change; ``None`` when
        unknown, or when the count has not moved for longer than its estimate."""
        rate = self.rate
        if rate is None:
            return None
        t1, d1 = self._changes[-1]
        left = max(self.total - d1, 0) / rate - (now - t1)
        if left < 0 and d1 < self.total:
            return None
        return max(left, 0.0)
