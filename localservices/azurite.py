"""The Azurite blob emulator, an ``azurite-blob`` process on 127.0.0.1.

``make setup`` installs Azurite under ``.tools/`` (the version
``cluster_scripts/npm-package.json`` pins). The tests use it through the fixtures of
:mod:`tests.azurite`; the memory benchmark serves a gigapixel picture from it.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

from core.project import project_path
from localservices.ports import free_ports

__all__ = ["Azurite", "AzuriteError", "AZURITE_BIN", "ACCOUNT", "KEY", "AZURE_ENV"]

AZURITE_BIN = project_path(".tools", "node_modules", ".bin", "azurite-blob")
# Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURE_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY",
             "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CLIENT_ID", "AZURE_STORAGE_CLIENT_SECRET",
             "AZURE_STORAGE_TENANT_ID", "AZURE_STORAGE_ANON")


#: What Azurite (the version cluster_scripts/npm-package.json pins) logs once it listens.
_LISTENING = b"successfully listens on"
#: Azurite's --debug lines: "<time> <request id> info: BlobStorageContextMiddleware: RequestMethod=GET
#: RequestURL=http://…" when a request arrives, "… DispatchMiddleware: Operation=Blob_Download" once routed.
_ARRIVED = re.compile(r"^\S+ (\S+) info: BlobStorageContextMiddleware: RequestMethod=(\w+) RequestURL=(\S+)")
_OPERATION = re.compile(r"^\S+ (\S+) info: DispatchMiddleware: Operation=(\w+)")
#: Starts on another free port when the one picked was taken before the emulator bound it.
_PORT_TRIES = 3


class AzuriteError(RuntimeError):
    """The emulator is not installed, or did not start: the one-line reason."""


class Azurite:
    """An ``azurite-blob`` process on ``127.0.0.1:port`` keeping its data under ``location``.

    :meth:`stop` and :meth:`start` again keep the port and the data, as a storage outage
    would. Without a ``port``, a free one is picked; if another process takes it before the
    emulator binds it, the first start picks again.
    """

    def __init__(self, location: str, port: int | None = None, *, ready_timeout: float = 30.0,
                 debug_log: str | None = None):
        self.location = location
        self.debug_log = debug_log  # Azurite's --debug log: a line per request and the operation it was
        self._port_picked = port is None
        self.port = port or free_ports(1)[0]
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen | None = None
        self.log = os.path.join(location, "azurite.log")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def connection_string(self, key: str = KEY) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
                f"BlobEndpoint={self.endpoint};")

    def start(self) -> Azurite:
        """Start the emulator unless it runs; raises :class:`AzuriteError` with the one-line reason."""
        if self.running:
            return self
        if not os.path.exists(AZURITE_BIN):
            raise AzuriteError(f"the Azurite emulator is missing ({AZURITE_BIN}): run `make setup`")
        for _ in range(_PORT_TRIES):
            log_from = os.path.getsize(self.log) if os.path.exists(self.log) else 0
            with open(self.log, "ab") as log:
                self.process = subprocess.Popen(
                    [AZURITE_BIN, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", self.location,
                     "--silent", "--skipApiVersionCheck", "--loose",
                     "--disableTelemetry",  # nothing may leave 127.0.0.1
                     *(["--debug", self.debug_log] if self.debug_log else [])],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            if self._wait_ready(log_from):
                self._port_picked = False  # served once: a restart keeps this port, as an outage would
                return self
            if not (self._port_picked and b"EADDRINUSE" in self._log_since(log_from)):
                break
            self.port = free_ports(1)[0]
        code = self.process.returncode
        self.stop()
        why = f"exited with code {code}" if code is not None else \
            f"did not answer on 127.0.0.1:{self.port} within {self.ready_timeout:.0f}s"
        raise AzuriteError(f"Azurite {why}; see {self.log}")

    def _wait_ready(self, log_from: int) -> bool:
        """True once this process says in its log that it listens (a TCP answer could come
        from another program that holds the port); False when it exits or times out first."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if _LISTENING in self._log_since(log_from):
                return True
            time.sleep(0.1)
        return False

    def _log_since(self, offset: int) -> bytes:
        with open(self.log, "rb") as log:
            log.seek(offset)
            return log.read()

    def stop(self) -> None:
        """Stop the emulator (SIGTERM, so that it saves its data) and wait until it is gone."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    def mark(self) -> str:
        """Send a request the debug log shows (a HEAD of a blob that is not there) and return its
        path: requests the log shows after it were sent after this call, however late Azurite
        writes its log. Pass two marks to :meth:`requests_between`. Needs ``debug_log``."""
        import urllib.error
        import urllib.request

        if not self.debug_log:
            raise AzuriteError("requests are logged only by an emulator started with debug_log")
        path = f"/{ACCOUNT}/tilescan-mark/{uuid.uuid4().hex}"
        try:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method="HEAD"),
                                   timeout=10)
        except urllib.error.HTTPError:
            pass  # refused, unsigned: it is in the log all the same
        return path

    def requests_between(self, start: str, end: str, timeout: float = 10.0) -> list[dict]:
        """Every request served after mark ``start`` and before mark ``end`` (:meth:`mark`), in
        order: its ``method``, ``path``, ``query`` and Blob ``operation``; waits for the log to
        show ``end``."""
        deadline = time.monotonic() + timeout
        while True:
            served = self.requests()
            paths = [r["path"] for r in served]
            if start in paths and end in paths:
                return served[paths.index(start) + 1:paths.index(end)]
            if time.monotonic() > deadline:
                raise AzuriteError(f"Azurite's debug log does not show the marks {start} and {end}")
            time.sleep(0.05)

    def requests(self) -> list[dict]:
        """Every request the debug log shows so far, in order: its ``method``, ``path``, ``query``
        and Blob ``operation``. Needs ``debug_log``; the log may lag the requests by a little,
        so count between two :meth:`mark` calls."""
        if not self.debug_log:
            raise AzuriteError("requests are logged only by an emulator started with debug_log")
        served: dict[str, dict] = {}
        with open(self.debug_log, "rb") as fh:
            for raw in fh:
                line = raw.decode("utf-8", "replace")
                if m := _ARRIVED.match(line):
                    url = urlsplit(m.group(3))
                    served[m.group(1)] = {"method": m.group(2), "path": unquote(url.path),
                                          "query": parse_qs(url.query), "operation": None}
                elif (m := _OPERATION.match(line)) and m.group(1) in served:
                    served[m.group(1)]["operation"] = m.group(2)
        return list(served.values())

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def service(self):
        """A blob service client; use it in a ``with`` block (an open connection delays :meth:`stop`)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string())

    def create_container(self, name: str | None = None) -> str:
        name = name or f"t{uuid.uuid4().hex[:20]}"
        with self.service() as service:
            service.create_container(name)
        return name

    def blobs(self, container: str, prefix: str = "") -> dict:
        """``{name: bytes}`` of every blob under ``prefix``, read with the SDK, not through adlfs."""
        with self.service() as service:
            client = service.get_container_client(container)
            return {b.name: client.download_blob(b.name).readall()
                    for b in client.list_blobs(name_starts_with=prefix)}

    def delete_blob(self, container: str, name: str) -> None:
        with self.service() as service:
            service.get_blob_client(container, name).delete_blob()
