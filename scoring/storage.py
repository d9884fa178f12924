"""One storage interface for every path: local paths and fsspec URLs alike.

Everything that reads or writes a user's data goes through :func:`filesystem`, so a local
path, ``file://``, ``abfs://``/``az://`` (ADLS Gen2 and Blob storage through adlfs) and,
where installed, ``s3://`` behave the same. Filesystem objects from fsspec pickle, so they
can travel to executors.

Azure credentials are resolved here, once, in the order Azure users expect:

1. explicit storage options (``--storage-options-file`` / ``--storage-option``, or the
   ``storage_options`` argument): a connection string, an account key, a SAS token, a
   service principal, or ``anon``;
2. the environment: ``AZURE_STORAGE_CONNECTION_STRING``, then
   ``AZURE_STORAGE_ACCOUNT_KEY`` (with the account from the URL, ``account_name`` or
   ``AZURE_STORAGE_ACCOUNT_NAME``), then ``AZURE_STORAGE_SAS_TOKEN``, then a service
   principal in ``AZURE_STORAGE_CLIENT_ID``/``_SECRET``/``TENANT_ID``;
3. ``DefaultAzureCredential`` (``anon=False``): managed identity on a cluster, the Azure
   CLI login on a workstation.

Keys and SAS tokens are handed to adlfs as a connection string, so that adlfs' own
reading of the environment cannot override what was chosen. Secrets never go into
messages: every error built from an exception passes through :func:`redact`.
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from contextlib import contextmanager
from typing import Iterator, Mapping

import fsspec

from scoring.errors import TilescanError

__all__ = [
    "filesystem", "read_bytes", "write_bytes", "join", "is_local", "StorageError", "redact", "errors",
    "resolve_options", "describe", "add_arguments", "options_from_args", "parse_option_pairs", "load_options_file",
    "AZURE_PROTOCOLS", "RETRY_OPTIONS",
]

logger = logging.getLogger(__name__)

AZURE_PROTOCOLS = ("az", "abfs", "abfss")
# Options tilescan applies itself, after adlfs built its client (adlfs does not pass them
# on): the Azure SDK's ExponentialRetry settings. The SDK's default (3 retries, 15 s
# initial back-off plus jitter) keeps a command waiting about a minute per failed request.
RETRY_OPTIONS = ("retry_total", "initial_backoff", "increment_base", "random_jitter_range")
_AZURE_SECRET_OPTIONS = ("connection_string", "account_key", "sas_token", "client_secret", "credential")
_AZURE_CREDENTIAL_OPTIONS = _AZURE_SECRET_OPTIONS + ("client_id", "tenant_id", "anon")
_SECRET_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN",
               "AZURE_STORAGE_CLIENT_SECRET", "AZURE_CLIENT_SECRET")
_STRING_OPTIONS = ("account_name", "account_host", "client_id", "tenant_id", "location_mode",
                   "managed_identity_client_id")
_CONTAINER = re.compile(r"^(\$root|\$web|\$logs|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$")
_SCHEME_WITHOUT_SLASHES = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(?!//)")
_REFUSED = {
    "adl": "adl:// is Azure Data Lake Storage Gen1, retired on 29 February 2024; use ADLS Gen2: "
           "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH (see docs/azure.md)",
    "wasb": "wasb:// is the Hadoop connector's form; use az://CONTAINER/PATH or "
            "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH",
}
_REFUSED["wasbs"] = _REFUSED["wasb"]

# Secret values seen while resolving options in this process, scrubbed from any text
# passed to redact() whatever form an SDK prints them in.
_known_secrets: set[str] = set()


class StorageError(TilescanError):
    """A path or URL that cannot be used, or storage that failed; the message holds no secret."""


# ---------------------------------------------------------------------------------------
# Redaction

_SECRET_PATTERNS = [
    # connection-string fields and SAS query parameters
    (re.compile(r"(?i)((?:AccountKey|SharedAccessSignature|SharedAccessKey)\s*=\s*)[^;\s\"']+"), r"\1***"),
    (re.compile(r"(?i)((?:^|[?&;,\s\"'])sig=)[^&;,\s\"']+"), r"\1***"),
    # option names followed by a value, as in a dict's repr or KEY=VALUE
    (re.compile(r"(?i)((?:account_key|sas_token|client_secret|connection_string|credential|password|secret)"
                r"[\"']?\s*[:=]\s*[\"']?)[^\"',;\s}]+"), r"\1***"),
    (re.compile(r"(?i)(Bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
]


def redact(value, *, one_line: bool = True, limit: int = 400) -> str:
    """Text of ``value`` (an exception or a string) with credentials replaced by ``***``.

    Scrubs account keys, SAS signatures (``sig=``), connection strings, client secrets and
    bearer tokens, by pattern and by the exact values this process was given. With
    ``one_line`` (for error messages) whitespace is collapsed and the text cut to
    ``limit`` characters.
    """
    text = str(value)
    if isinstance(value, BaseException) and not text:
        text = type(value).__name__
    secrets = set(_known_secrets)
    secrets.update(os.environ[name] for name in _SECRET_ENV if os.environ.get(name))
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 6:
            text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    if one_line:
        text = " ".join(text.split())
        if len(text) > limit:
            text = text[: limit - 3] + "..."
    return text


def _remember_secrets(options: Mapping) -> None:
    for key in _AZURE_SECRET_OPTIONS:
        value = options.get(key)
        if isinstance(value, str) and value:
            _known_secrets.add(value)
            for field in re.findall(r"(?i)(?:AccountKey|SharedAccessSignature)=([^;]+)", value):
                _known_secrets.add(field)


def _backend_errors() -> tuple:
    errors = [OSError, ValueError, TimeoutError]
    try:
        from azure.core.exceptions import AzureError

        errors.append(AzureError)
    except ImportError:
        pass
    return tuple(errors)


def _explain(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)  # azure.storage.blob gives a StorageErrorCode enum
    text = redact(exc)
    if code in ("AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
                "InvalidAuthenticationInfo", "NoAuthenticationInformation"):
        # The SDK's text is long and says the same; keep the code and what to check.
        return f"access denied ({code}): check the account key, SAS token or identity (docs/azure.md)"
    if type(exc).__name__ == "ServiceRequestError":
        return f"storage unreachable: {text}"
    if type(exc).__name__ in ("ClientAuthenticationError", "CredentialUnavailableError"):
        return f"no usable Azure credentials (see docs/azure.md): {text}"
    return text


@contextmanager
def errors(action: str, url: str) -> Iterator[None]:
    """Turn a storage backend's failure into a one-line :class:`StorageError`.

    ``FileNotFoundError``, ``IsADirectoryError`` and ``NotADirectoryError`` pass through
    unchanged: they are the contract callers turn into their own messages.
    """
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, StorageError):
        raise
    except _backend_errors() as exc:
        raise StorageError(f"cannot {action} {redact(url)}: {_explain(exc)}") from None


# ---------------------------------------------------------------------------------------
# URLs and credentials


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _protocol(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def _check_url(url: str) -> None:
    """Refuse retired protocols and URLs that fsspec would silently read as local paths."""
    if not isinstance(url, str) or not url:
        raise StorageError(f"a path or URL is required, got {url!r}")
    protocol = _protocol(url)
    if protocol in _REFUSED:
        raise StorageError(f"cannot use {redact(url)}: {_REFUSED[protocol]}")
    bare = _SCHEME_WITHOUT_SLASHES.match(url)
    if bare and bare.group(1).lower() in _known_protocols():
        scheme = bare.group(1)
        rest = url[len(scheme) + 1:].lstrip("/")
        raise StorageError(f"malformed URL {redact(url)}: did you mean {scheme}://{rest}?")
    if protocol in AZURE_PROTOCOLS:
        _azure_parts(url)


def _known_protocols() -> set:
    from fsspec.registry import known_implementations

    return set(known_implementations) | {"abfss"}


def _azure_parts(url: str) -> tuple[str, str | None, str]:
    """``(container, account or None, path)`` of an ``az://``/``abfs://`` URL."""
    rest = url.split("://", 1)[1]
    netloc, _, path = rest.partition("/")
    container, at, host = netloc.partition("@")
    account = None
    if at:
        account = host.split(".", 1)[0] if host else ""
        if not account:
            raise StorageError(f"malformed URL {redact(url)}: "
                               "expected abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH")
    if not container:
        raise StorageError(f"malformed URL {redact(url)}: no container; expected az://CONTAINER/PATH or "
                           "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH")
    if not _CONTAINER.match(container):
        raise StorageError(f"malformed URL {redact(url)}: {container!r} is not a valid container name "
                           "(3-63 lowercase letters, digits and single hyphens)")
    return container, account, path


def _connection_string(account: str, *, key: str | None = None, sas: str | None = None,
                       account_host: str | None = None) -> str:
    if account_host:
        endpoint = account_host if "://" in account_host else f"https://{account_host}"
    else:
        endpoint = f"https://{account}.blob.core.windows.net"
    parts = [f"BlobEndpoint={endpoint.rstrip('/')}", f"AccountName={account}"]
    if key:
        parts.append(f"AccountKey={key}")
    if sas:
        parts.append(f"SharedAccessSignature={sas.lstrip('?')}")
    return ";".join(parts) + ";"


def _connection_string_account(connection_string: str) -> str | None:
    match = re.search(r"(?i)(?:^|;)\s*AccountName\s*=\s*([^;]+)", connection_string)
    return match.group(1).strip() if match else None


def _azure_options(url: str, explicit: dict, environ: Mapping) -> tuple[dict, str]:
    _, url_account, _ = _azure_parts(url)
    options = {k: v for k, v in explicit.items() if k not in _AZURE_CREDENTIAL_OPTIONS}
    account = explicit.get("account_name") or url_account or environ.get("AZURE_STORAGE_ACCOUNT_NAME")
    host = explicit.get("account_host")
    if host and "://" in str(host):
        options["account_host"] = str(host).split("://", 1)[1].rstrip("/")

    def need_account(source: str) -> str:
        if not account:
            raise StorageError(f"{source} needs the storage account for {redact(url)}: use "
                               "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH, the account_name option "
                               "or AZURE_STORAGE_ACCOUNT_NAME")
        return account

    def with_connection_string(connection_string: str, source: str) -> tuple[dict, str]:
        named = _connection_string_account(connection_string)
        if url_account and named and named != url_account:
            raise StorageError(f"{redact(url)} names account {url_account!r} but the credentials ({source}) "
                               f"are for account {named!r}")
        result = {**options, "connection_string": connection_string}
        if named or account:
            result["account_name"] = named or account
        return result, source

    given = {k: explicit[k] for k in _AZURE_CREDENTIAL_OPTIONS if explicit.get(k) not in (None, "")}
    if given:
        if "connection_string" in given:
            return with_connection_string(given["connection_string"], "connection string (storage options)")
        if "account_key" in given:
            cs = _connection_string(need_account("an account key"), key=given["account_key"], account_host=host)
            return with_connection_string(cs, "account key (storage options)")
        if "sas_token" in given:
            cs = _connection_string(need_account("a SAS token"), sas=given["sas_token"], account_host=host)
            return with_connection_string(cs, "SAS token (storage options)")
        if {"client_id", "client_secret", "tenant_id"} & set(given):
            missing = [k for k in ("client_id", "client_secret", "tenant_id") if k not in given]
            if missing:
                raise StorageError(f"a service principal needs client_id, client_secret and tenant_id; "
                                   f"missing {', '.join(missing)}")
            source = "service principal (storage options)"
        elif "credential" in given:
            source = "credential object (storage options)"
        elif given.get("anon") in (True, "true", "True", 1):
            source = "anonymous (public container)"
        else:
            source = "DefaultAzureCredential (storage options: anon=false)"
        # adlfs would prefer these variables over a token credential: refuse rather than
        # silently use another credential than the one asked for.
        for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN"):
            if environ.get(name):
                raise StorageError(f"the storage options choose {source}, but {name} is set in the "
                                   f"environment and adlfs would use it instead; unset {name}")
        return {**options, **given, "account_name": need_account(source)}, source

    if environ.get("AZURE_STORAGE_CONNECTION_STRING"):
        return with_connection_string(environ["AZURE_STORAGE_CONNECTION_STRING"], "AZURE_STORAGE_CONNECTION_STRING")
    if environ.get("AZURE_STORAGE_ACCOUNT_KEY"):
        cs = _connection_string(need_account("AZURE_STORAGE_ACCOUNT_KEY"), key=environ["AZURE_STORAGE_ACCOUNT_KEY"],
                                account_host=host)
        return with_connection_string(cs, "AZURE_STORAGE_ACCOUNT_KEY")
    if environ.get("AZURE_STORAGE_SAS_TOKEN"):
        cs = _connection_string(need_account("AZURE_STORAGE_SAS_TOKEN"), sas=environ["AZURE_STORAGE_SAS_TOKEN"],
                                account_host=host)
        return with_connection_string(cs, "AZURE_STORAGE_SAS_TOKEN")
    principal = [environ.get(f"AZURE_STORAGE_{k.upper()}") for k in ("client_id", "client_secret", "tenant_id")]
    if all(principal):
        source = "service principal (AZURE_STORAGE_CLIENT_ID)"
        return {**options, **dict(zip(("client_id", "client_secret", "tenant_id"), principal)),
                "account_name": need_account(source)}, source
    source = "DefaultAzureCredential"
    return {**options, "account_name": need_account(source), "anon": False}, source


def resolve_options(url: str, storage_options: Mapping | None = None,
                    environ: Mapping | None = None) -> tuple[dict, str]:
    """The keyword arguments fsspec gets for ``url``, and where its credentials come from.

    Parameters
    ----------
    url : str
        A local path or URL.
    storage_options : mapping, optional
        Explicit options; they apply to every remote URL (local paths get none).
    environ : mapping, optional
        The environment to read ``AZURE_STORAGE_*`` from (default ``os.environ``).

    Returns
    -------
    (options, source)
        ``options`` may hold secrets (never log it); ``source`` names the credential
        method in words and holds none, e.g. ``"AZURE_STORAGE_CONNECTION_STRING"``.
    """
    _check_url(url)
    if is_local(url):
        return {}, "local"
    explicit = dict(storage_options or {})
    environ = os.environ if environ is None else environ
    if _protocol(url) in AZURE_PROTOCOLS:
        options, source = _azure_options(url, explicit, environ)
    else:
        options = {k: v for k, v in explicit.items() if k not in RETRY_OPTIONS}
        source = "storage options" if options else "default"
    _remember_secrets(options)
    return options, source


def describe(url: str, storage_options: Mapping | None = None) -> dict:
    """Where ``url`` lives and how it is reached, for the manifest: no secret in it."""
    options, source = resolve_options(url, storage_options)
    info = {"protocol": _protocol(url), "credentials": source}
    if "account_name" in options:
        info["account"] = options["account_name"]
    return info


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
        cannot be created; the message says what to use instead and holds no secret.
    """
    options, _ = resolve_options(url, storage_options)
    retries = {k: options.pop(k) for k in RETRY_OPTIONS if k in options}
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        raise StorageError(f"cannot open {redact(url)}: {redact(exc)} (install the package for "
                           f"{_protocol(url)}://)") from None
    except (ValueError, TypeError) as exc:
        raise StorageError(f"cannot open {redact(url)}: {redact(exc)}") from None
    if retries and _protocol(url) in AZURE_PROTOCOLS:
        _apply_retries(fs, retries)
    return fs, path


def join(root: str, *parts: str) -> str:
    return posixpath.join(root, *parts)


def read_bytes(fs, path: str, *, url: str | None = None) -> bytes:
    """The whole file; ``FileNotFoundError`` if missing, :class:`StorageError` on other failures.

    ``url`` names the file in messages as the user wrote it (default: rebuilt from ``path``).
    """
    with errors("read", url or fs.unstrip_protocol(path)):
        with fs.open(path, "rb") as fh:
            return fh.read()


def write_bytes(fs, path: str, data: bytes, *, url: str | None = None) -> None:
    with errors("write", url or fs.unstrip_protocol(path)):
        fs.pipe_file(path, data)


# ---------------------------------------------------------------------------------------
# Command-line options


def _is_secret_option(key: str) -> bool:
    key = key.lower()
    return (key in ("key", "secret", "token", "password", "credential", "credentials", "connection_string")
            or key.endswith(("_key", "_secret", "_token", "_password")))


def _option_value(key: str, text: str):
    if key in _STRING_OPTIONS:
        return text
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_option_pairs(pairs) -> dict:
    """``["account_name=x", "retry_total=1"]`` -> ``{"account_name": "x", "retry_total": 1}``.

    Secrets are refused: on a command line they show in the process list and, under
    spark-submit, in the Spark UI's environment page.
    """
    options = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise StorageError(f"--storage-option: expected KEY=VALUE, got {redact(pair)!r}")
        if _is_secret_option(key):
            raise StorageError(f"--storage-option {key}=...: secrets do not belong on the command line (they show "
                               "in the process list and the Spark UI); put them in a --storage-options-file or "
                               "the AZURE_STORAGE_* environment variables")
        options[key] = _option_value(key, value)
    return options


def load_options_file(path: str) -> dict:
    """A JSON object of storage options, e.g. ``{"account_name": "x", "account_key": "..."}``."""
    try:
        with open(path, encoding="utf-8") as fh:
            options = json.load(fh)
    except FileNotFoundError:
        raise StorageError(f"--storage-options-file {path} not found") from None
    except (OSError, ValueError) as exc:
        # json's message quotes no file content beyond a position, but redact it anyway.
        raise StorageError(f"--storage-options-file {path}: not a JSON object ({redact(exc)})") from None
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise StorageError(f"--storage-options-file {path}: expected a JSON object of option names to values")
    return options


def add_arguments(parser) -> None:
    """Add ``--storage-options-file`` and ``--storage-option`` to an argparse parser."""
    group = parser.add_argument_group("storage (docs/azure.md)")
    group.add_argument("--storage-options-file", metavar="JSON",
                       help="JSON object of options for remote URLs, secrets included, e.g. "
                            '{"account_name": "...", "account_key": "..."}')
    group.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                       help="an option for remote URLs (repeatable; overrides the file), e.g. account_name=NAME, "
                            "retry_total=2; no secrets here")


def options_from_args(args) -> dict:
    """The explicit storage options: the file's, overridden by ``--storage-option`` pairs."""
    options = load_options_file(args.storage_options_file) if args.storage_options_file else {}
    options.update(parse_option_pairs(args.storage_option))
    _remember_secrets(options)
    return options
