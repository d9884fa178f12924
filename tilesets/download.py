"""Fetch CIFAR-10 (binary version) from its official home, checked against its checksum.

Used only where no copy exists under ``TILESCAN_DATA``. The archive unpacks into
``cifar-10-batches-bin/``, which is moved to ``DEST/cifar10``: the layout the loader reads.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request

__all__ = ["CIFAR10_URL", "CIFAR10_MD5", "fetch_cifar10"]

logger = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
#: Published on https://www.cs.toronto.edu/~kriz/cifar.html beside the archive.
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
_INNER = "cifar-10-batches-bin"


def _download(url: str, path: str, *, timeout: float) -> str:
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as fh:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            fh.write(chunk)
    return digest.hexdigest()


def fetch_cifar10(dest: str, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5, timeout: float = 60) -> str:
    """Download, verify and unpack CIFAR-10 into ``dest/cifar10``; returns that folder.

    An existing ``dest/cifar10`` is returned untouched. Nothing is left behind when the
    download fails or the checksum does not match.

    Raises
    ------
    ValueError
        When the archive's MD5 differs from ``md5`` or it lacks the expected files.
    OSError
        When the download fails.
    """
    target = os.path.join(dest, "cifar10")
    if os.path.isdir(target):
        return target
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".cifar10-download-") as tmp:
        archive = os.path.join(tmp, "cifar-10-binary.tar.gz")
        logger.info("downloading CIFAR-10 from %s", url)
        got = _download(url, archive, timeout=timeout)
        if got != md5:
            raise ValueError(f"CIFAR-10 archive from {url} has MD5 {got}, expected {md5}: refusing it")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        inner = os.path.join(tmp, _INNER)
        needed = ["batches.meta.txt", "test_batch.bin"]
        missing = [n for n in needed if not os.path.exists(os.path.join(inner, n))]
        if missing:
            raise ValueError(f"CIFAR-10 archive lacks {', '.join(missing)} under {_INNER}/")
        shutil.move(inner, target)
    return target
