"""Peak resident memory of a scoring run's processes, sampled from /proc while it runs.

The run is ``python app/score.py`` (no spark-submit), so the process tree is: the driver's
Python at the root, the driver's JVM its child (``java``), and the executors' Python
workers (``pyspark.daemon`` and the workers it forks) children of the JVM. Each is sampled
every ``interval`` seconds (``VmRSS``); a role's peak is the largest sample of any of its
processes.
"""
from __future__ import annotations

import os
import threading
import time

__all__ = ["TreeSampler"]


def _status(pid: int) -> dict:
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        pass
    return fields


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children() -> dict:
    """``{parent pid: [child pids]}`` of every process."""
    tree: dict = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            ppid = _status(int(name)).get("PPid")
            if ppid:
                tree.setdefault(int(ppid), []).append(int(name))
    return tree


class TreeSampler(threading.Thread):
    """Samples ``root`` and its descendants until :meth:`stop`; :attr:`peaks_mb` per role.

    Roles: ``driver_python`` (the root), ``driver_jvm`` (a ``java`` process), and
    ``executor_python`` (a Python process below the JVM, the largest one).
    """

    def __init__(self, root: int, *, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peaks_mb = {"driver_python": 0.0, "driver_jvm": 0.0, "executor_python": 0.0}
        self._done = threading.Event()

    def _sample(self) -> None:
        tree = _children()
        todo = [(self.root, "driver_python")]
        while todo:
            pid, role = todo.pop()
            rss = _status(pid).get("VmRSS", "0 kB").split()[0]
            self.peaks_mb[role] = max(self.peaks_mb[role], int(rss) / 1024)
            for child in tree.get(pid, []):
                line = _cmdline(child)
                if "java" in line.split(" ")[0]:
                    todo.append((child, "driver_jvm"))
                elif role in ("driver_jvm", "executor_python"):
                    todo.append((child, "executor_python"))
                else:
                    todo.append((child, role))

    def run(self) -> None:
        while not self._done.is_set():
            self._sample()
            self._done.wait(self.interval)

    def stop(self) -> dict:
        self._done.set()
        self.join()
        return dict(self.peaks_mb)

    @classmethod
    def watch(cls, process, *, interval: float = 0.2) -> dict:
        """Sample ``process`` (a Popen) until it ends; its peaks, in MB."""
        sampler = cls(process.pid, interval=interval)
        sampler.start()
        while process.poll() is None:
            time.sleep(interval)
        return sampler.stop()
