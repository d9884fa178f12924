"""The parameters of one scoring run: built once from the command line, validated, frozen."""
from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, field, fields

from PIL import ImageColor

from core.errors import TilescanError
from engines import DEFAULT_ENGINE, ENGINES
from pixels import DEFAULT_MAX_PIXELS
from scoring.merge import MERGE_METHODS
from tiling.grid import EDGE_POLICIES

__all__ = ["ScoreParams", "parse_class_values", "format_class_values", "parse_colors", "DEFAULT_COLORS",
           "DEFAULT_MODEL", "defaults"]

#: The bundled default model.
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "default")

DEFAULT_COLORS = {"car": (255, 0, 0), "boat": (0, 200, 0)}
_FALLBACK_COLORS = [(255, 200, 0), (0, 120, 255), (255, 0, 255), (0, 230, 230)]


def parse_class_values(text: str, name: str) -> dict:
    """``"0.9"`` or ``"car=0.95,boat=0.9"`` or ``"0.9,car=0.95"`` -> ``{"*": 0.9, "car": 0.95}``."""
    values = {}
    for token in filter(None, (t.strip() for t in str(text).split(","))):
        key, _, value = token.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise TilescanError(f"--{name}: {token!r} is not a number or CLASS=NUMBER") from None
        if not 0 <= number <= 1:
            raise TilescanError(f"--{name}: values must be in [0, 1], got {token!r}")
        values[key.strip() or "*"] = number
    if not values:
        raise TilescanError(f"--{name}: give a number or CLASS=NUMBER pairs")
    return values


def format_class_values(values: dict) -> str:
    """The inverse of :func:`parse_class_values`: ``{"*": 0.9, "car": 0.95}`` -> ``"0.9,car=0.95"``."""
    return ",".join(f"{value:g}" if key == "*" else f"{key}={value:g}" for key, value in values.items())


def parse_colors(text: str | None) -> dict:
    """``"car=red,boat=#00ff00"`` -> ``{"car": (255, 0, 0), "boat": (0, 255, 0)}``."""
    colors = {}
    for token in filter(None, (t.strip() for t in (text or "").split(","))):
        key, sep, value = token.partition("=")
        if not sep:
            raise TilescanError(f"--colors: {token!r} is not CLASS=COLOR")
        try:
            colors[key.strip()] = ImageColor.getrgb(value.strip())[:3]
        except ValueError:
            raise TilescanError(f"--colors: unknown colour {value!r}") from None
    return colors


@dataclass(frozen=True)
class ScoreParams:
    """Everything a run depends on; written to the manifest as is."""

    image: str
    out: str
    model: str = DEFAULT_MODEL
    engine: str = DEFAULT_ENGINE
    window: int = 32
    stride: int = 16
    edge: str = "align"
    strips: int = 0
    batch_size: int = 128
    keep: float = 0.5
    threshold: dict = field(default_factory=lambda: {"*": 0.9})
    merge: str = "fuse"
    merge_iou: float = 0.3
    colors: dict = field(default_factory=dict)
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.engine in ENGINES, f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}"),
            (self.window >= 1, f"--window must be >= 1, got {self.window}"),
            (self.stride >= 1, f"--stride must be >= 1, got {self.stride}"),
            (self.edge in EDGE_POLICIES, f"--edge must be one of {', '.join(EDGE_POLICIES)}, got {self.edge!r}"),
            (self.strips >= 0, f"--strips must be >= 0 (0 = automatic), got {self.strips}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (0 <= self.keep <= 1, f"--keep must be in [0, 1], got {self.keep}"),
            (self.merge in MERGE_METHODS, f"--merge must be one of {', '.join(MERGE_METHODS)}, got {self.merge!r}"),
            (0 < self.merge_iou <= 1, f"--merge-iou must be in (0, 1], got {self.merge_iou}"),
            (self.max_pixels >= 1, f"--max-pixels must be >= 1, got {self.max_pixels}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TilescanError(message)

    def thresholds_for(self, classes) -> dict:
        """The hit threshold of each class; unknown class names in ``--threshold`` are errors."""
        unknown = set(self.threshold) - {"*"} - set(classes)
        if unknown:
            raise TilescanError(f"--threshold names unknown classes {sorted(unknown)}; the model has {list(classes)}")
        default = self.threshold.get("*", defaults()["threshold"]["*"])
        return {c: self.threshold.get(c, default) for c in classes}

    def colors_for(self, classes) -> dict:
        unknown = set(self.colors) - set(classes)
        if unknown:
            raise TilescanError(f"--colors names unknown classes {sorted(unknown)}; the model has {list(classes)}")
        fallback = iter(_FALLBACK_COLORS * 4)
        return {c: self.colors.get(c) or DEFAULT_COLORS.get(c) or next(fallback) for c in classes}

    def to_json(self) -> dict:
        return asdict(self)


def defaults() -> dict:
    """Every parameter's default, from :class:`ScoreParams`: the one place they are set."""
    values = {}
    for f in fields(ScoreParams):
        if f.default_factory is not MISSING:
            values[f.name] = f.default_factory()
        elif f.default is not MISSING:
            values[f.name] = f.default
    return values
