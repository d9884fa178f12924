"""The parameters of one scoring run: built once from the command line, validated, frozen."""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, replace

import numpy as np
from PIL import ImageColor

from core.errors import BundleError, TilescanError
from core.fieldtypes import wrong_type
from core.project import resource_path
from engines import DEFAULT_ENGINE, ENGINES, engine_class
from pixels import DEFAULT_MAX_PIXELS
from scoring.merge import MERGE_METHODS
from tiling.grid import EDGE_POLICIES

__all__ = ["ScoreParams", "Settings", "resolve_settings", "check_recommended", "default_stride", "parse_class_values",
           "format_class_values", "parse_colors", "DEFAULT_COLORS", "DEFAULT_MODEL", "FALLBACK_SETTINGS",
           "MAX_BATCH_SIZE", "TASKS_PER_CORE", "defaults"]

#: The bundled default model.
DEFAULT_MODEL = resource_path("models", "default")

#: What a run uses for the settings a model may recommend, when neither the command line nor
#: the model's ``recommended`` sets them.
FALLBACK_SETTINGS = {"engine": DEFAULT_ENGINE, "threshold": {"*": 0.9}, "merge": "fuse", "merge_iou": 0.3}
#: The largest --batch-size: a Python worker's memory grows by about 0.2 MB per window of a
#: batch (the engine's activations), and batches past a few hundred windows are no faster.
MAX_BATCH_SIZE = 4096
#: Spark tasks per core when --strips is 0 (Spark's tuning guide recommends 2 to 3). Each
#: task costs a Python worker about 0.03 s of hand-over, and the bands are balanced across
#: the tasks anyway: at 4 per core the dense 3000 x 3000 run here took 0.1 s longer in 6 s.
TASKS_PER_CORE = 2
DEFAULT_COLORS = {"car": (255, 0, 0), "boat": (0, 200, 0)}
_FALLBACK_COLORS = [(255, 200, 0), (0, 120, 255), (255, 0, 255), (0, 230, 230)]


def parse_class_values(text, name: str) -> dict:
    """``"0.9"`` or ``"car=0.95,boat=0.9"`` or ``"0.9,car=0.95"`` -> ``{"*": 0.9, "car": 0.95}``.

    From Python, one number stands for its text, and a dict is checked as it is given.
    """
    if isinstance(text, dict):
        text = {key: value.item() if isinstance(value, np.generic) else value for key, value in text.items()}
        for key, value in text.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise TilescanError(f"--{name}: values must be numbers in [0, 1], got {key}={value!r}")
        return dict(text)
    values = {}
    for token in filter(None, (t.strip() for t in str(text).split(","))):
        key, _, value = token.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise TilescanError(f"--{name}: {token!r} is not a number or CLASS=NUMBER") from None
        if not 0 <= number <= 1:
            raise TilescanError(f"--{name}: values must be in [0, 1], got {token!r}")
        key = key.strip() or "*"
        if key in values:  # a typo for another class, most likely: never let the last one win silently
            raise TilescanError(f"--{name}: {'the default' if key == '*' else key} is given twice in {text!r}")
        values[key] = number
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
        if key.strip() in colors:
            raise TilescanError(f"--colors: {key.strip()} is given twice in {text!r}")
        try:
            colors[key.strip()] = ImageColor.getrgb(value.strip())[:3]
        except ValueError:
            raise TilescanError(f"--colors: unknown colour {value!r}") from None
    return colors


@dataclass(frozen=True)
class Settings:
    """The engine, thresholds and merging a run uses, and where each came from.

    ``source`` maps ``engine``, ``merge``, ``merge_iou`` and each class's threshold
    (``threshold.<class>``) to ``option`` (the command line), ``model`` (the bundle's
    recommendation) or ``default`` (:data:`FALLBACK_SETTINGS`).
    """

    engine: str
    thresholds: dict
    merge: str
    merge_iou: float
    source: dict

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScoreParams:
    """Everything a run depends on; written to the manifest as is.

    ``window`` left ``None`` is the model's input size, and ``stride`` half the window
    (:meth:`for_model`, when the bundle is loaded). ``image`` is a picture, glob or folder,
    ``images`` a list file (exactly one of the two, see :func:`scoring.inputs.resolve_inputs`).
    ``engine``, ``threshold``, ``merge`` and ``merge_iou`` left ``None`` take the model's
    recommendation, else :data:`FALLBACK_SETTINGS` (see :meth:`settings_for`). ``resume``
    keeps the pictures a collection already finished in ``out``.
    """

    out: str
    image: str | None = None
    images: str | tuple | None = None
    model: str = DEFAULT_MODEL
    engine: str | None = None
    window: int | None = None
    stride: int | None = None
    edge: str = "align"
    strips: int = 0
    batch_size: int = 128
    keep: float = 0.5
    threshold: dict | None = None
    merge: str | None = None
    merge_iou: float | None = None
    colors: dict = field(default_factory=dict)
    max_pixels: int = DEFAULT_MAX_PIXELS
    heatmap: bool = False
    #: Each picture's zoomable viewer (viewer.html and its tile pyramid); ``--no-viewer`` leaves it out.
    viewer: bool = True
    #: The dense path for a model that declares one (:mod:`scoring.paths`); ``--no-dense``: window by window.
    dense: bool = True
    overwrite: bool = False
    resume: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):  # numpy numbers from a notebook (np.int64(128)) are the Python numbers they hold
            value = getattr(self, f.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, f.name, value.item())
        # The option's text as on the command line, or from Python (a notebook) a number or a dict.
        if self.threshold is not None:
            object.__setattr__(self, "threshold", parse_class_values(self.threshold, "threshold"))
        if isinstance(self.colors, str):
            object.__setattr__(self, "colors", parse_colors(self.colors))
        wrong = wrong_type(self)  # from Python: stride="16" or overwrite="no" must not slip through
        if wrong:
            name, what, value = wrong
            raise TilescanError(f"--{name.replace('_', '-')} must be {what}, got {value!r}")
        checks = [
            (self.engine is None or self.engine in ENGINES,
             f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}"),
            (self.window is None or self.window >= 1, f"--window must be >= 1, got {self.window}"),
            (self.stride is None or self.stride >= 1, f"--stride must be >= 1, got {self.stride}"),
            (self.edge in EDGE_POLICIES, f"--edge must be one of {', '.join(EDGE_POLICIES)}, got {self.edge!r}"),
            (self.strips >= 0, f"--strips must be >= 0 (0 = automatic), got {self.strips}"),
            (1 <= self.batch_size <= MAX_BATCH_SIZE,
             f"--batch-size must be in [1, {MAX_BATCH_SIZE}] (memory grows with it), got {self.batch_size}"),
            (0 <= self.keep <= 1, f"--keep must be in [0, 1], got {self.keep}"),
            (self.merge is None or self.merge in MERGE_METHODS,
             f"--merge must be one of {', '.join(MERGE_METHODS)}, got {self.merge!r}"),
            (self.merge_iou is None or 0 < self.merge_iou <= 1, f"--merge-iou must be in (0, 1], got {self.merge_iou}"),
            (self.max_pixels >= 1, f"--max-pixels must be >= 1, got {self.max_pixels}"),
            (not (self.overwrite and self.resume), "--overwrite and --resume exclude each other: choose one"),
            ((self.image is None) != (self.images is None),
             "give either --image (a picture, glob or folder) or --images (a list of pictures)"),
            (str(self.out).strip() != "", "--out must name a folder, got ''"),
            (self.image is None or str(self.image).strip() != "",
             "--image must name a picture, glob or folder, got ''"),
            (not isinstance(self.images, str) or self.images.strip() != "", "--images must name a list file, got ''"),
        ]
        for ok, message in checks:
            if not ok:
                raise TilescanError(message)

    def for_model(self, spec, recommended: dict | None = None) -> ScoreParams:
        """These parameters with the window the model takes (``window`` left ``None`` is its input
        size) and, where no stride is given, the model's recommended stride (``recommended``, a
        bundle's, checked: :func:`check_recommended`), else half the window.

        Raises
        ------
        BundleError
            When ``window`` is given and differs from the model's input size.
        """
        if self.window is not None and self.window != spec.size:
            raise BundleError(f"model {self.model} takes {spec.size}x{spec.size} inputs but --window is {self.window} "
                              "(leave --window out: it defaults to the model's input size)")
        return replace(self, window=spec.size, stride=self.stride or default_stride(spec, recommended))

    def settings_for(self, spec, recommended: dict, available_files=(), *, source: str = "the model") -> Settings:
        """What this run uses: :func:`resolve_settings` with this run's options."""
        return resolve_settings(spec, recommended, available_files, engine=self.engine, threshold=self.threshold,
                                merge=self.merge, merge_iou=self.merge_iou, source=source)

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


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def default_stride(spec, recommended: dict | None = None) -> int:
    """The stride a run takes when none is given: the model's recommended one (chosen on its
    validation collages), else half its window."""
    return (recommended or {}).get("stride") or max(1, spec.size // 2)


def check_recommended(recommended: dict, spec, source: str = "the model") -> None:
    """Check a bundle's ``recommended`` settings as the command line's options are checked:
    types, ranges and class names, with the bundle named.

    Raises
    ------
    BundleError
        One line naming the first setting that is wrong.
    """
    def refuse(message: str):
        raise BundleError(f"model bundle {source}: recommended.{message}")

    thresholds = recommended.get("threshold")
    if thresholds is not None:
        if not isinstance(thresholds, dict):
            refuse(f"threshold must be an object of class: number, got {thresholds!r}")
        unknown = set(thresholds) - set(spec.foreground)
        if unknown:
            refuse(f"threshold names unknown classes {sorted(unknown)}; the model has {list(spec.foreground)}")
        for name, value in thresholds.items():
            if not (_number(value) and 0 <= value <= 1):
                refuse(f"threshold.{name} must be a number in [0, 1], got {value!r}")
    merge = recommended.get("merge")
    if merge is not None and merge not in MERGE_METHODS:
        refuse(f"merge must be one of {', '.join(MERGE_METHODS)}, got {merge!r}")
    iou = recommended.get("merge_iou")
    if iou is not None and not (_number(iou) and 0 < iou <= 1):
        refuse(f"merge_iou must be a number in (0, 1], got {iou!r}")
    engine = recommended.get("engine")
    if engine is not None and not (isinstance(engine, str) and engine.strip()):
        refuse(f"engine must be an engine's name, got {engine!r}")
    stride = recommended.get("stride")
    if stride is not None and not (isinstance(stride, int) and not isinstance(stride, bool) and stride >= 1):
        refuse(f"stride must be a whole number of pixels >= 1, got {stride!r}")


def resolve_settings(spec, recommended: dict, available_files=(), *, engine: str | None = None,
                     threshold: dict | None = None, merge: str | None = None,
                     merge_iou: float | None = None, source: str = "the model") -> Settings:
    """The settings a run uses: each from the options given, else the model's ``recommended``
    (checked first: :func:`check_recommended`), else :data:`FALLBACK_SETTINGS`.

    A recommended engine is taken only when it is registered here and the bundle has its
    files (``available_files``); unknown class names in ``threshold`` are errors.
    """
    check_recommended(recommended, spec, source)
    classes = spec.foreground
    given = threshold or {}
    unknown = set(given) - {"*"} - set(classes)
    if unknown:
        raise TilescanError(f"--threshold names unknown classes {sorted(unknown)}; the model has {list(classes)}")
    recommended_thresholds = recommended.get("threshold") or {}
    source, thresholds = {}, {}
    for c in classes:
        if c in given or "*" in given:
            thresholds[c], source[f"threshold.{c}"] = given.get(c, given.get("*")), "option"
        elif c in recommended_thresholds:
            thresholds[c], source[f"threshold.{c}"] = float(recommended_thresholds[c]), "model"
        else:
            thresholds[c], source[f"threshold.{c}"] = FALLBACK_SETTINGS["threshold"]["*"], "default"
    chosen = {}
    options = {"engine": engine, "merge": merge, "merge_iou": merge_iou}
    for name in ("engine", "merge", "merge_iou"):
        mine, theirs = options[name], recommended.get(name)
        if name == "engine" and theirs is not None and not (
                theirs in ENGINES and set(engine_class(theirs).required_files) <= set(available_files)):
            theirs = None
        if mine is not None:
            chosen[name], source[name] = mine, "option"
        elif theirs is not None:
            chosen[name], source[name] = theirs, "model"
        else:
            chosen[name], source[name] = FALLBACK_SETTINGS[name], "default"
    return Settings(engine=chosen["engine"], thresholds=thresholds, merge=chosen["merge"],
                    merge_iou=float(chosen["merge_iou"]), source=source)
