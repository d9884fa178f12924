"""Which credentials reach a storage URL, resolved once, in the order Azure users expect.

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
reading of the environment cannot override what was chosen. Retired or malformed URLs
are refused here, with the form to use instead.
"""
from __future__ import annotations

import os
import re
from typing import Mapping

from core.errors import StorageError
from core.jsonfile import read_json_object
from core.redaction import SECRET_OPTIONS, redact, remember_secrets

__all__ = [
    "AZURE_PROTOCOLS", "AZURE_OPTIONS", "RETRY_OPTIONS", "is_local", "protocol", "check_url", "resolve_options",
    "describe", "parse_option_pairs", "load_options_file", "for_executors",
]

AZURE_PROTOCOLS = ("az", "abfs", "abfss")
# Options tilescan applies itself, after adlfs built its client (adlfs does not pass them
# on): the Azure SDK's ExponentialRetry settings. The SDK's default (3 retries, 15 s
# initial back-off plus jitter) keeps a command waiting about a minute per failed request.
RETRY_OPTIONS = ("retry_total", "initial_backoff", "increment_base", "random_jitter_range")
_AZURE_CREDENTIAL_OPTIONS = SECRET_OPTIONS + ("client_id", "tenant_id", "anon")
_STRING_OPTIONS = ("account_name", "account_host", "client_id", "tenant_id", "location_mode",
                   "managed_identity_client_id")
#: Every storage option an Azure URL accepts; any other is refused (a typo would otherwise
#: fall through to another credential).
AZURE_OPTIONS = tuple(sorted({*_STRING_OPTIONS, *_AZURE_CREDENTIAL_OPTIONS, *RETRY_OPTIONS}))
_CONTAINER = re.compile(r"^(\$root|\$web|\$logs|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$")
_SCHEME_WITHOUT_SLASHES = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(?!//)")
_REFUSED = {
    "adl": "adl:// is Azure Data Lake Storage Gen1, retired on 29 February 2024; use ADLS Gen2: "
           "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH (see docs/azure.md)",
    "wasb": "wasb:// is the Hadoop connector's form; use az://CONTAINER/PATH or "
            "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH",
}
_REFUSED["wasbs"] = _REFUSED["wasb"]

def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def protocol(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def check_url(url: str) -> None:
    """Refuse retired protocols and URLs that fsspec would silently read as local paths."""
    if not isinstance(url, str) or not url:
        raise StorageError(f"a path or URL is required, got {url!r}")
    scheme = protocol(url)
    if scheme in _REFUSED:
        raise StorageError(f"cannot use {redact(url)}: {_REFUSED[scheme]}")
    bare = _SCHEME_WITHOUT_SLASHES.match(url)
    if bare and bare.group(1).lower() in _known_protocols():
        scheme = bare.group(1)
        rest = url[len(scheme) + 1:].lstrip("/")
        raise StorageError(f"malformed URL {redact(url)}: did you mean {scheme}://{rest}?")
    if scheme in AZURE_PROTOCOLS:
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
    unknown = sorted(set(explicit) - set(AZURE_OPTIONS))
    if unknown:
        raise StorageError(f"unknown storage option{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))} for "
                           f"{redact(url)}; the options are {', '.join(AZURE_OPTIONS)}")
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
    check_url(url)
    if is_local(url):
        return {}, "local"
    explicit = dict(storage_options or {})
    environ = os.environ if environ is None else environ
    if protocol(url) in AZURE_PROTOCOLS:
        options, source = _azure_options(url, explicit, environ)
    else:
        options = {k: v for k, v in explicit.items() if k not in RETRY_OPTIONS}
        source = "storage options" if options else "default"
    remember_secrets(options)
    return options, source


#: ``AZURE_STORAGE_*`` variables and the storage options they stand for.
_ENVIRONMENT_OPTIONS = {"AZURE_STORAGE_CONNECTION_STRING": "connection_string",
                        "AZURE_STORAGE_ACCOUNT_NAME": "account_name", "AZURE_STORAGE_ACCOUNT_KEY": "account_key",
                        "AZURE_STORAGE_SAS_TOKEN": "sas_token", "AZURE_STORAGE_CLIENT_ID": "client_id",
                        "AZURE_STORAGE_CLIENT_SECRET": "client_secret", "AZURE_STORAGE_TENANT_ID": "tenant_id"}


def for_executors(storage_options: Mapping | None = None, environ: Mapping | None = None) -> dict:
    """The storage options executors need to reach the lake as the driver does.

    Executors on other machines do not share the driver's environment: the credentials the
    driver takes from ``AZURE_STORAGE_*`` travel as explicit options (in the tasks, never
    in Spark's configuration), unless explicit credentials were given. Without either,
    executors use their own ``DefaultAzureCredential`` (a managed identity, say).
    """
    options = dict(storage_options or {})
    environ = os.environ if environ is None else environ
    if any(options.get(k) not in (None, "") for k in _AZURE_CREDENTIAL_OPTIONS):
        return options
    found = {option: environ[name] for name, option in _ENVIRONMENT_OPTIONS.items() if environ.get(name)}
    groups = (("connection_string",), ("account_key",), ("sas_token",), ("client_id", "client_secret", "tenant_id"))
    for group in groups:
        if all(k in found for k in group):
            options.update({k: found[k] for k in group})
            break
    if "account_name" in found:
        options.setdefault("account_name", found["account_name"])
    remember_secrets(options)
    return options


def describe(url: str, storage_options: Mapping | None = None) -> dict:
    """Where ``url`` lives and how it is reached, for the manifest: no secret in it."""
    options, source = resolve_options(url, storage_options)
    info = {"protocol": protocol(url), "credentials": source}
    if "account_name" in options:
        info["account"] = options["account_name"]
    return info



def _is_secret_option(key: str) -> bool:
    """Whether an option's value is a secret, however it is spelt (``account_key``, ``AccountKey``,
    ``SharedAccessSignature``, ``sas``...)."""
    word = re.sub(r"[^a-z]", "", key.lower())
    return (word in ("key", "secret", "token", "password", "credential", "credentials", "connectionstring", "sas",
                     "sig", "sastoken", "sharedaccesssignature", "sharedaccesskey")
            or word.endswith(("key", "secret", "token", "password", "signature")))


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
    return read_json_object(path, "--storage-options-file", StorageError)

