"""A local JSON file that must hold one object: a settings or options file named on a command line."""
from __future__ import annotations

import json

from core.redaction import redact

__all__ = ["read_json_object"]


def read_json_object(path: str, option: str, error: type[Exception] = ValueError) -> dict:
    """The JSON object in the local file ``path``, given as ``option``; else ``error`` with one line naming both."""
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except FileNotFoundError:
        raise error(f"{option} {path} not found") from None
    except OSError as exc:
        raise error(f"{option} {path} cannot be read ({redact(exc)})") from None
    except ValueError as exc:
        # json's message quotes no content beyond a position, but options files hold secrets: redacted anyway.
        raise error(f"{option} {path} is not JSON ({redact(exc)})") from None
    if not isinstance(value, dict):
        raise error(f"{option} {path} must be a JSON object, got a {type(value).__name__}")
    return value
