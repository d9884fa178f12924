"""The CIFAR-10 download path, against a local HTTP server on 127.0.0.1."""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import tarfile
import threading
import urllib.error

import numpy as np
import pytest

from tilesets import load_cifar
from tilesets.download import fetch_cifar10


def small_archive(folder) -> bytes:
    """A CIFAR-10-format archive with 20 test records (label, then R, G, B planes)."""
    rng = np.random.default_rng(0)
    records = np.concatenate([np.arange(20, dtype=np.uint8)[:, None] % 10,
                              rng.integers(0, 256, (20, 3072), dtype=np.uint8)], axis=1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n".encode()
        for name, data in (("batches.meta.txt", names),
                           ("test_batch.bin", records.tobytes())):
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (folder / "cifar-10-binary.tar.gz").write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_verifies_and_unpacks(server, tmp_path):
    served, base = server
    data = small_archive(served)
    dest = tmp_path / "data"
    folder = fetch_cifar10(str(dest), url=f"{base}/cifar-10-binary.tar.gz", md5=hashlib.md5(data).hexdigest())
    test = load_cifar(folder, "test")
    assert len(test) == 20 and test.original[1] == "automobile"
    assert sorted(os.listdir(dest)) == ["cifar10"]  # no temporary files left


def test_checksum_mismatch_is_refused_and_leaves_nothing(server, tmp_path):
    served, base = server
    small_archive(served)
    dest = tmp_path / "data"
    with pytest.raises(ValueError, match="expected 0000"):
        fetch_cifar10(str(dest), url=f"{base}/cifar-10-binary.tar.gz", md5="0" * 32)
    assert os.listdir(dest) == []


def test_missing_archive_raises_the_http_error_and_leaves_nothing(server, tmp_path):
    _, base = server
    with pytest.raises(urllib.error.HTTPError) as info:
        fetch_cifar10(str(tmp_path / "d"), url=f"{base}/nothing.tar.gz", md5="0" * 32)
    assert info.value.code == 404
    assert os.listdir(tmp_path / "d") == []
