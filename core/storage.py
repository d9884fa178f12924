"""One storage interface for every path: local paths and fsspec URLs alike.

Everything that reads or writes a user's data goes through :func:`filesystem`, so a local
path, ``file://``, ``abfs://``/``az://`` (ADLS Gen2 and Blob storage through adlfs) and,
where installed, ``s3://`` behave the same. Filesystem objects from fsspec pickle, so they
can travel to executors. Credentials are chosen by :mod:`core.credentials`; secrets never
go into messages: every error built from an exception passes through
:func:`core.redaction.redact`.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import posixpath
import uuid
from typing import Iterator, Mapping

import fsspec

from core.credentials import AZURE_PROTOCOLS, RETRY_OPTIONS, protocol, resolve_options
from core.errors import StorageError, StorageUnreachable
from core.redaction import redact

__all__ = ["filesystem", "renames", "read_bytes", "write_bytes", "write_new", "make_folder", "check_writable", "join",
           "glob_escape", "file_name", "errors", "NETWORK_TIMEOUT_S"]

logger = logging.getLogger(__name__)

#: Seconds an http(s) read or connect may wait for the server before it fails.
NETWORK_TIMEOUT_S = 60


def _backend_errors() -> tuple:
    errors = [OSError, ValueError, TimeoutError]
    try:
        from azure.core.exceptions import AzureError

        errors.append(AzureError)
    except ImportError:
        pass
    return tuple(errors)


def _unreachable(exc: BaseException) -> bool:
    """Whether the storage did not answer at all: refused, reset or timed out."""
    return isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ == "ServiceRequestError"


def _explain(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)  # azure.storage.blob gives a StorageErrorCode enum
    text = redact(exc)
    if code in ("AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
                "InvalidAuthenticationInfo", "NoAuthenticationInformation"):
        # The SDK's text is long and says the same; keep the code and what to check.
        return f"access denied ({code}): check the account key, SAS token or identity (docs/azure.md)"
    if _unreachable(exc):
        return f"storage unreachable: {text}"
    if type(exc).__name__ in ("ClientAuthenticationError", "CredentialUnavailableError"):
        return f"no usable Azure credentials (see docs/azure.md): {text}"
    return text


@contextlib.contextmanager
def errors(action: str, url: str, *, writing: bool = False) -> Iterator[None]:
    """Turn a storage backend's failure into a one-line :class:`StorageError`.

    ``FileNotFoundError`` and ``IsADirectoryError`` pass through unchanged: they are the
    contract callers turn into their own messages. ``NotADirectoryError`` (a file where the
    path needs a folder) becomes ``FileNotFoundError``: nothing can be at that path.
    ``writing`` makes ``FileNotFoundError`` a :class:`StorageError` too: a writer's own
    folder, or a file it staged, was removed from under it.
    """
    try:
        yield
    except FileNotFoundError as exc:
        if writing:
            gone = redact(str(exc.filename)) if exc.filename and str(exc.filename) != url else "its folder"
            raise StorageError(f"cannot {action} {redact(url)}: {gone} is gone "
                               "(removed while tilescan wrote?)") from None
        raise
    except (IsADirectoryError, StorageError):
        raise
    except NotADirectoryError as exc:
        raise FileNotFoundError(errno.ENOENT, "no such file (a file is in the way)", exc.filename) from None
    except _backend_errors() as exc:
        kind = StorageUnreachable if _unreachable(exc) else StorageError
        raise kind(f"cannot {action} {redact(url)}: {_explain(exc)}") from None
    except RuntimeError as exc:  # adlfs wraps a failed upload ("Failed to upload block") around its cause
        if not isinstance(exc.__cause__, _backend_errors()):
            raise
        raise StorageError(f"cannot {action} {redact(url)}: {_explain(exc.__cause__)}") from None



def _apply_retries(fs, retries: dict) -> None:
    policy = getattr(getattr(getattr(fs, "service_client", None), "_config", None), "retry_policy", None)
    if policy is None:
        logger.warning("cannot apply %s to %s: no Azure retry policy found", sorted(retries), type(fs).__name__)
        return
    # adlfs caches one filesystem per set of options, so this applies to all its users.
    if "retry_total" in retries:
        total = int(retries["retry_total"])
        policy.total_retries = policy.connect_retries = policy.read_retries = policy.status_retries = total
    for key in ("initial_backoff", "increment_base", "random_jitter_range"):
        if key in retries:
            setattr(policy, key, float(retries[key]))


def filesystem(url: str, storage_options: Mapping | None = None):
    """Return ``(fs, path)`` for a local path or URL.

    Parameters
    ----------
    url : str
        A local path, ``file://``, ``az://CONTAINER/PATH``,
        ``abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH``, ``s3://``, ...
    storage_options : mapping, optional
        Explicit options for remote URLs (see :func:`resolve_options`); the Azure
        ``retry_total``, ``initial_backoff``, ``increment_base`` and
        ``random_jitter_range`` set the SDK's retry policy.

    Raises
    ------
    StorageError
        For retired, unknown or malformed URLs, missing credentials, or a filesystem that
        cannot be created or reached; the message says what to use instead and holds no secret.
    """
    options, _ = resolve_options(url, storage_options)
    retries = {k: options.pop(k) for k in RETRY_OPTIONS if k in options}
    if protocol(url) in ("http", "https") and "client_kwargs" not in options:
        options["client_kwargs"] = {"timeout": _http_timeout()}
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        raise StorageError(f"cannot open {redact(url)}: {redact(exc)} (install the package for "
                           f"{protocol(url)}://)") from None
    # OSError: some connect or open as they are made (ftp://, a chained URL's zip://...::ARCHIVE).
    except (ValueError, TypeError, OSError) as exc:
        raise StorageError(f"cannot open {redact(url)}: {redact(exc)}") from None
    if retries and protocol(url) in AZURE_PROTOCOLS:
        _apply_retries(fs, retries)
    return fs, path


def _http_timeout():
    """aiohttp's timeout for http(s) pictures and lists: a server that accepts the connection and
    never answers fails the read after :data:`NETWORK_TIMEOUT_S`, instead of hanging the run."""
    import aiohttp

    return aiohttp.ClientTimeout(total=None, sock_connect=NETWORK_TIMEOUT_S, sock_read=NETWORK_TIMEOUT_S)


def glob_escape(path: str) -> str:
    """``path`` as a glob pattern that matches only itself: a folder named ``G[1]`` or ``a*`` is
    a place, never a pattern.

    >>> glob_escape("out/G[1]/a*")
    'out/G[[]1[]]/a[*]'
    """
    return "".join(f"[{c}]" if c in "*?[]" else c for c in path)


def join(root: str, *parts: str) -> str:
    return posixpath.join(root, *parts)


def file_name(url: str) -> str:
    """The file name at the end of a path or URL, without an http(s) URL's query: a SAS
    token's signature never becomes a folder or file name.

    >>> file_name("https://acct.blob.core.windows.net/c/x.png?sv=2024&sig=s3cr3t")
    'x.png'
    """
    if url.lower().startswith(("http://", "https://")):
        url = url.split("?", 1)[0].split("#", 1)[0]
    return url.rstrip("/").rsplit("/", 1)[-1]


def read_bytes(fs, path: str, *, url: str | None = None, limit: int | None = None) -> bytes:
    """The whole file; ``FileNotFoundError`` if missing, :class:`StorageError` on other failures.

    ``url`` names the file in messages as the user wrote it (default: rebuilt from ``path``).
    With ``limit``, the file must be a regular file (not a pipe, socket or device, whose read
    may never end) of at most ``limit`` bytes, checked before it is read, and no more than
    that is read.
    """
    where = url or fs.unstrip_protocol(path)
    with errors("read", where):
        if limit is not None:
            details = fs.info(path)
            if details.get("type") == "other":
                raise StorageError(f"{redact(where)} is not a regular file (a pipe, socket or device)")
            if (details.get("size") or 0) > limit:
                raise StorageError(f"{redact(where)} is {details['size']:,} bytes, over the {limit:,} allowed")
        if limit is None:
            data = fs.cat_file(path)  # one request on blob storage (open asks for the size first)
        else:
            with fs.open(path, "rb") as fh:
                data = fh.read(limit + 1)
    if limit is not None and len(data) > limit:  # a size the listing did not tell
        raise StorageError(f"{redact(where)} holds more than the {limit:,} bytes allowed")
    return data


def renames(fs) -> bool:
    """Whether ``fs`` moves a file by renaming it (a disk, memory); blob storage copies and deletes."""
    return bool({"file", "local", "memory"} & set(fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)))


def write_bytes(fs, path: str, data: bytes, *, url: str | None = None) -> None:
    with errors("write", url or fs.unstrip_protocol(path), writing=True):
        fs.pipe_file(path, data)


def write_new(fs, path: str, data: bytes, *, url: str | None = None) -> bool:
    """Create ``path`` with ``data`` only if nothing is there yet; ``False`` when something is.

    Atomic where the storage offers it: ``O_EXCL`` on disk, ``If-None-Match: *`` on Azure blobs.
    """
    with errors("write", url or fs.unstrip_protocol(path)):
        try:
            with fs.open(path, "xb") as fh:
                fh.write(data)
        except FileExistsError:
            return False
    return True


def check_writable(fs, path: str, *, url: str | None = None) -> None:
    """Make the folder ``path`` and write and remove a small file in it: a destination that
    cannot be written (read-only, no permission, full disk) fails now, before the work."""
    url = url or fs.unstrip_protocol(path)
    with errors("reach", url):
        existed = fs.exists(path)
    make_folder(fs, path, url=url)
    name = f".tilescan-probe-{uuid.uuid4().hex[:12]}"
    try:
        write_bytes(fs, join(path, name), b"tilescan write probe\n", url=join(url, name))
    except StorageError:
        if not existed:  # leave the place as it was found
            with contextlib.suppress(Exception):
                fs.rm(path, recursive=True)
        raise
    with errors("write", url):
        fs.rm(join(path, name))


def make_folder(fs, path: str, *, url: str | None = None) -> None:
    """Make the folder ``path``, and on blob storage its container if there is none yet.

    Blob storage has no folders (a prefix exists once a blob is under it), and fsspec's
    ``makedirs`` does nothing there, so the container is what needs creating. Every failure
    is a one-line :class:`StorageError`.
    """
    url = url or fs.unstrip_protocol(path)
    with errors("create", url):
        try:
            if set(getattr(fs, "protocol", ())) & set(AZURE_PROTOCOLS):
                fs.mkdir(path.split("/", 1)[0], create_parents=True, exist_ok=True)
            else:
                fs.makedirs(path, exist_ok=True)
        # Here these say that no folder can be made there (a file in the way, a filesystem such
        # as /proc that takes none): no caller has a better message, so they end as others do.
        except (NotADirectoryError, FileExistsError):
            raise StorageError(f"cannot create {redact(url)}: it or a folder above it is a file") from None
        except FileNotFoundError as exc:
            raise StorageError(f"cannot create {redact(url)}: {_explain(exc)}") from None
