"""Keep credentials out of every message, log line and manifest.

Every error built from a storage backend's exception passes through :func:`redact`, which
scrubs secrets both by pattern (connection-string fields, SAS signatures, option names
followed by a value, bearer tokens) and by the exact values this process was given.
"""
from __future__ import annotations

import os
import re
from typing import Mapping

__all__ = ["redact", "remember_secrets", "SECRET_OPTIONS", "SECRET_ENV"]

#: Storage options whose values are secrets.
SECRET_OPTIONS = ("connection_string", "account_key", "sas_token", "client_secret", "credential")
#: Environment variables whose values are secrets.
SECRET_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN",
              "AZURE_STORAGE_CLIENT_SECRET", "AZURE_CLIENT_SECRET")

# Secret values seen while resolving options in this process, scrubbed from any text
# passed to redact() whatever form an SDK prints them in.
_known_secrets: set[str] = set()

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
    secrets.update(os.environ[name] for name in SECRET_ENV if os.environ.get(name))
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


def remember_secrets(options: Mapping) -> None:
    """Note the secret values among ``options`` so that :func:`redact` scrubs them anywhere."""
    for key in SECRET_OPTIONS:
        value = options.get(key)
        if isinstance(value, str) and value:
            _known_secrets.add(value)
            for field in re.findall(r"(?i)(?:AccountKey|SharedAccessSignature)=([^;]+)", value):
                _known_secrets.add(field)
