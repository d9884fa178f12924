"""The first field of a settings dataclass whose value is not of its declared kind.

Settings reach the dataclasses from the command line (typed by argparse) and also from
config files and notebooks, where ``"epochs": 1.5``, ``stride="16"`` or ``overwrite="no"``
would otherwise fail deep inside a run, or be taken silently (a string is truthy, ``True``
is the integer 1).
"""
from __future__ import annotations

import dataclasses
import numbers

__all__ = ["wrong_type"]

#: Declared types checked, with what each accepts and how a message names it.
_KINDS = {
    "int": (numbers.Integral, "an integer"),
    "int | None": (numbers.Integral, "an integer"),
    "float": (numbers.Real, "a number"),
    "float | None": (numbers.Real, "a number"),
    "bool": (bool, "true or false"),
}


def wrong_type(settings) -> tuple[str, str, object] | None:
    """``(field name, what it must be, the value)`` of the first field of the dataclass
    instance ``settings`` whose value is not of its declared kind, else ``None``.

    ``int``, ``float`` (also ``int | None`` and ``float | None``, where ``None`` passes) and ``bool`` fields are
    checked; a bool is never taken as a number.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Settings:
    ...     epochs: int = 1
    ...     lr: float = 0.1
    >>> wrong_type(Settings(epochs=True))
    ('epochs', 'an integer', True)
    >>> wrong_type(Settings(lr=1)) is None
    True
    """
    for f in dataclasses.fields(settings):
        kind = _KINDS.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        value = getattr(settings, f.name)
        if kind is None or (value is None and str(f.type).endswith(" | None")):
            continue
        accepted, named = kind
        if not isinstance(value, accepted) or (accepted is not bool and isinstance(value, bool)):
            return f.name, named, value
    return None
