"""One run's outputs read back: its files, as frames, and its evaluation.

Coordinates follow :mod:`tiling.box`: pixels, ``x`` to the right, ``y`` down, boxes
half-open. Box tables are pandas frames with ``x0, y0, x1, y1`` columns in that convention.
"""
from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import storage
from evaluation.heatmap import ScoreGrid, score_grid
from evaluation.metrics import evaluate, plot_pr_curves
from pixels import read_image
from scoring.inputs import absolute_url
from scoring.outputs import EVALUATION_FILES, MARKER, SUCCESS
from scoring.stored_windows import WINDOWS_FILE, windows_path

__all__ = [
    "BOX_COLUMNS", "EVALUATION_FILE", "CURVE_FILE", "EVALUATION_SUFFIX", "RunData", "read_json", "load_run",
    "load_truth", "load_input", "run_summary", "boxes_frame", "truth_frame", "evaluation_folder", "evaluate_run",
]

logger = logging.getLogger(__name__)

EVALUATION_FILE, CURVE_FILE = EVALUATION_FILES
#: Ends the name of a run's evaluation folder, beside the run (:func:`evaluation_folder`).
EVALUATION_SUFFIX = "-evaluation"
#: The corner columns of every box frame.
BOX_COLUMNS = ["x0", "y0", "x1", "y1"]


@dataclass(frozen=True, eq=False)
class RunData:
    """One finished run's outputs.

    ``boxes`` has one row per detection (:func:`boxes_frame`): ``id, class, x0, y0, x1,
    y1`` (float pixels, half-open) and ``score``. ``windows`` are the picture's windows as a
    frame (``x, y, width, height`` pixels, ``label``, ``score``, ``p_<class>``): its
    ``windows.parquet``, or a collection's picture's part of the run's dataset, where its
    manifest says (:func:`scoring.stored_windows.windows_path`); ``None`` when the run has
    none. ``overlay`` is ``(H, W, 3)`` uint8.
    """

    url: str
    manifest: dict
    detections: dict
    boxes: pd.DataFrame
    windows: pd.DataFrame | None
    overlay: np.ndarray

    @property
    def classes(self) -> list[str]:
        """The foreground classes, in category-id order."""
        return [c["name"] for c in sorted(self.detections["categories"], key=lambda c: c["id"])]

    @property
    def background(self) -> str:
        rest = [c for c in self.manifest["model"]["classes"] if c not in self.classes]
        return rest[0] if rest else "background"

    @property
    def picture_name(self) -> str:
        """The scored picture's file name without its extension, e.g. ``collage``."""
        return storage.file_name(self.manifest["input"]["url"]).rsplit(".", 1)[0]

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the picture in pixels."""
        return int(self.manifest["input"]["width"]), int(self.manifest["input"]["height"])

    @property
    def window(self) -> int:
        return int(self.manifest["parameters"]["window"])

    @property
    def stride(self) -> int:
        return int(self.manifest["parameters"]["stride"])

    @property
    def thresholds(self) -> dict:
        return dict(self.manifest["parameters"]["thresholds"])

    @property
    def colors(self) -> dict:
        """Each class's overlay colour as a matplotlib ``(r, g, b)`` in [0, 1]."""
        return {c: tuple(v / 255 for v in rgb) for c, rgb in self.manifest["parameters"]["colors"].items()}

    @property
    def windows_complete(self) -> bool:
        """Whether :attr:`windows` holds every scored window (the run used ``--keep 0``)."""
        counts = self.manifest["counts"]
        return self.windows is not None and counts["windows_kept"] == counts["windows_scored"]

    def score_grid(self, cls: str) -> ScoreGrid:
        """Class ``cls``'s window scores on the run's window grid (:func:`score_grid`)."""
        if self.windows is None:
            raise ValueError(f"{self.url} has no windows (its {WINDOWS_FILE}, or its part of a collection's dataset)")
        width, height = self.size
        return score_grid(self.windows, cls, width=width, height=height, window=self.window, stride=self.stride)

    @property
    def windows_note(self) -> str | None:
        """Why the heat maps are partial, or ``None`` when they are complete."""
        if self.windows is None:
            return "the run has no windows: no heat maps"
        if self.windows_complete:
            return None
        counts, keep = self.manifest["counts"], self.manifest["parameters"]["keep"]
        return (f"the run's windows hold {counts['windows_kept']:,} of the {counts['windows_scored']:,} windows "
                f"scored: only those with a foreground score >= {keep} (--keep). The heat maps show those; "
                "blank cells scored below that for every class. Score with --keep 0 for full heat maps.")


def _annotation_frame(doc: dict, **columns) -> pd.DataFrame:
    """``id, class, x0, y0, x1, y1`` of each COCO annotation, then ``columns`` (name: function of one)."""
    names = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
    annotations = doc["annotations"]
    xywh = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
    frame = pd.DataFrame({
        "id": np.array([a["id"] for a in annotations], dtype=np.int64),
        "class": [names[int(a["category_id"])] for a in annotations],
        "x0": xywh[:, 0], "y0": xywh[:, 1], "x1": xywh[:, 0] + xywh[:, 2], "y1": xywh[:, 1] + xywh[:, 3],
    })
    for name, get in columns.items():
        frame[name] = [get(a) for a in annotations]
    return frame


def boxes_frame(detections: dict) -> pd.DataFrame:
    """One row per box of a COCO detections document: ``id, class, x0, y0, x1, y1, score``."""
    return _annotation_frame(detections, score=lambda a: float(a["score"]))


def load_run(url: str, *, storage_options: dict | None = None) -> RunData:
    """Read a finished run's outputs from ``url`` (a local folder or a URL).

    Raises
    ------
    FileNotFoundError
        When ``url`` holds no finished run (no ``_SUCCESS``) or an output is missing.
    ValueError
        When ``url`` is a collection's folder (its pictures' folders hold the runs).
    """
    import pyarrow.parquet as pq

    fs, root = storage.filesystem(url, storage_options)
    with storage.errors("read", url):
        finished = fs.exists(storage.join(root, SUCCESS))
    if not finished:
        raise FileNotFoundError(f"no finished run in {url}: {SUCCESS} is missing (a failed or unfinished run, "
                                "or the wrong folder)")
    manifest = read_json(fs, storage.join(root, "manifest.json"), "manifest")
    if isinstance(manifest.get("pictures"), list):
        named = next((p.get("name") for p in manifest["pictures"] if isinstance(p, dict)), None)
        raise ValueError(f"{url} is a collection's folder: load one picture's folder (e.g. "
                         f"{storage.join(url, named or '<picture>')})")
    detections = read_json(fs, storage.join(root, "detections.json"), "detections")
    windows = None
    path = windows_path(root, manifest)  # its own windows.parquet, or its part of a collection's dataset
    if fs.exists(path):
        with storage.errors("read", fs.unstrip_protocol(path)), fs.open(path, "rb") as fh:
            windows = pq.read_table(fh).to_pandas()
    overlay, _ = read_image(storage.join(url, "overlay.png"), storage_options=storage_options)
    return RunData(url=url, manifest=manifest, detections=detections, boxes=boxes_frame(detections),
                   windows=windows, overlay=overlay)


def load_truth(url: str, *, storage_options: dict | None = None) -> dict:
    """A collage's ground truth (:func:`collage.truth.ground_truth`) from a path or URL."""
    fs, path = storage.filesystem(url, storage_options)
    return read_json(fs, path, "ground truth")


def load_input(run: RunData, *, storage_options: dict | None = None) -> np.ndarray:
    """The picture the run scored, without boxes: ``(H, W, 3)`` uint8.

    Error tiles are cut from it rather than from the overlay, whose box outlines would
    end up in the training data.
    """
    pixels, _ = read_image(run.manifest["input"]["url"], storage_options=storage_options)
    if (pixels.shape[1], pixels.shape[0]) != run.size:
        raise ValueError(f"{run.manifest['input']['url']} is {pixels.shape[1]}x{pixels.shape[0]} now, but the run "
                         f"scored a {run.size[0]}x{run.size[1]} picture")
    return pixels


def run_summary(run: RunData) -> pd.Series:
    """What was scored, how, and what came out, as one labelled column."""
    m, p, counts = run.manifest, run.manifest["parameters"], run.manifest["counts"]
    rows = {
        "input": m["input"]["url"],
        "size (pixels)": "{} x {}".format(*run.size),
        "model": f"{m['model']['name']} ({m['model']['sha256'][:12]})",
        "engine": p["engine"],
        "window / stride": f"{p['window']} / {p['stride']} ({p['edge']})",
        "thresholds": ", ".join(f"{c}={v}" for c, v in p["thresholds"].items()),
        "merge": f"{p['merge']} (IoU {p['merge_iou']})",
        "windows scored": f"{counts['windows_scored']:,}",
        "windows kept": f"{counts['windows_kept']:,} (--keep {p['keep']})",
        "hits": f"{counts['hits']:,}",
    }
    rows.update({f"boxes: {c}": n for c, n in counts["boxes_per_class"].items()})
    rows["Spark job (s)"] = round(m.get("timings_s", {}).get("spark_job_s", float("nan")), 1)
    return pd.Series(rows, name=run.url)


def truth_frame(truth: dict) -> pd.DataFrame:
    """One row per ground-truth object: ``id, class, x0, y0, x1, y1, visible_fraction, crowd``."""
    return _annotation_frame(truth, visible_fraction=lambda a: float(a.get("visible_fraction", 1.0)),
                             crowd=lambda a: bool(a.get("iscrowd", 0)))



def read_json(fs, path: str, what: str) -> dict:
    try:
        doc = json.loads(storage.read_bytes(fs, path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a folder, not a JSON file") from None
    except ValueError as exc:
        raise ValueError(f"{what} {path} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{what} {path} must hold a JSON object, got a {type(doc).__name__}")
    return doc


def _read_windows(fs, root: str) -> tuple[np.ndarray, np.ndarray] | str:
    """The run's windows and labels, or why there is no window confusion matrix."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = storage.join(root, "manifest.json")
    manifest = read_json(fs, manifest, "manifest") if fs.exists(manifest) else None
    path = windows_path(root, manifest)  # its own windows.parquet, or its part of a collection's dataset
    if not fs.exists(path):
        return "the run has no windows"
    damaged = None
    with storage.errors("read", fs.unstrip_protocol(path)), fs.open(path, "rb") as fh:
        try:
            table = pq.read_table(fh, columns=["x", "y", "width", "height", "label"])
        except pa.ArrowException as exc:  # damaged, or not the windows of a run
            damaged = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    if damaged:
        raise ValueError(f"{path} cannot be read as a run's windows ({damaged})")
    if manifest is not None:
        counts = manifest.get("counts")
        scored = counts.get("windows_scored") if isinstance(counts, dict) else None
        if scored is not None and scored != table.num_rows:
            return (f"the run's windows hold {table.num_rows} of the {scored} windows scored "
                    "(score with --keep 0 to keep every window)")
    x, y, w, h = (table.column(c).to_numpy().astype(np.int64) for c in ("x", "y", "width", "height"))
    labels = np.asarray(table.column("label").to_pylist(), dtype=str)
    return np.stack([x, y, x + w, y + h], axis=1), labels


def _tilescan_run_around(fs, path: str) -> tuple[str, bool] | None:
    """The nearest of ``path`` and the folders above it that is a tilescan run's folder (its
    ``_SUCCESS``, or the ``_tilescan`` marker of a run not finished), and whether it is
    committed; ``None`` when there is none. Two requests per folder on blob storage."""
    path = path.rstrip("/")
    while path and path not in ("/", "."):
        committed = fs.exists(storage.join(path, SUCCESS))
        if committed or fs.exists(storage.join(path, MARKER)):
            return path, committed
        parent = posixpath.dirname(path)
        if parent == path:
            break
        path = parent
    return None


def evaluation_folder(run: str, out: str | None = None, *, storage_options: dict | None = None) -> str:
    """Where the evaluation of the run folder ``run`` is written: ``out`` when given, else beside
    the run, in ``<run>`` + :data:`EVALUATION_SUFFIX`; for a picture of a collection, beside the
    collection: ``<collection>-evaluation/<picture>``. A run is never written into.

    Raises
    ------
    ValueError
        When the folder is a tilescan run's folder or inside one (committed or not).
    """
    if out is None:
        url = absolute_url(run).rstrip("/")
        scheme, sep, rest = url.rpartition("://")
        head, name = posixpath.split(rest)
        in_collection = False
        if head not in ("", "/"):  # a run at the top of a container or disk has no collection around it
            parent = scheme + sep + head
            fs, path = storage.filesystem(parent, storage_options)
            with storage.errors("read", parent):
                in_collection = fs.exists(storage.join(path, SUCCESS)) or fs.exists(storage.join(path, MARKER))
        out = storage.join(parent + EVALUATION_SUFFIX, name) if in_collection else url + EVALUATION_SUFFIX
    fs, path = storage.filesystem(out, storage_options)
    with storage.errors("read", out):
        found = _tilescan_run_around(fs, path)
    if found is not None:
        inside, committed = found
        named = inside if "://" not in out else fs.unstrip_protocol(inside)
        where = "is" if inside == path.rstrip("/") else "is inside"
        raise ValueError(f"the evaluation folder {out} {where} the {'committed ' if committed else ''}tilescan run "
                         f"{named}: an evaluation never writes into a run; choose another folder (without --out it "
                         f"goes beside the run, in RUN{EVALUATION_SUFFIX})")
    return out


def evaluate_run(run: str, truth: str, *, out: str | None = None, storage_options: dict | None = None) -> dict:
    """Evaluate the run folder ``run`` against the ground-truth file ``truth``.

    Reads ``detections.json`` and the windows (if it has them) of ``run`` (local path or URL),
    and writes :data:`EVALUATION_FILE` and :data:`CURVE_FILE` into ``out``, by default beside
    the run, never into it (:func:`evaluation_folder`).

    Raises
    ------
    FileNotFoundError
        When ``detections.json`` or the ground truth is missing.
    ValueError
        When either is malformed or they do not describe the same picture and classes, or
        ``out`` is (inside) a run.
    """
    out = evaluation_folder(run, out, storage_options=storage_options)
    fs, root = storage.filesystem(run, storage_options)
    truth_doc = load_truth(truth, storage_options=storage_options)
    detections = read_json(fs, storage.join(root, "detections.json"), "detections")
    images = detections.get("images")
    if isinstance(images, list) and len(images) > 1:  # a collection's: the truth is one collage's
        named = images[0].get("name") if isinstance(images[0], dict) else None
        raise ValueError(f"{run} holds the detections of {len(images)} pictures: evaluate the picture the truth "
                         f"is for, by its folder (e.g. --run {storage.join(run, named or '<picture>')})")
    # A plain COCO ground truth (not a collage's) has no tiles to give each window a class.
    windows = _read_windows(fs, root) if "collage" in truth_doc else "the ground truth is not a collage's"
    if isinstance(windows, str):
        logger.info("no window confusion matrix: %s", windows)
        result = evaluate(truth_doc, detections)
        result["windows"] = {"skipped": windows}
    else:
        result = evaluate(truth_doc, detections, windows=windows[0], labels=windows[1])
    result = {"run": run, "truth": truth, **result}
    fs, folder = storage.filesystem(out, storage_options)
    storage.make_folder(fs, folder, url=out)
    storage.write_bytes(fs, storage.join(folder, EVALUATION_FILE), (json.dumps(result, indent=1) + "\n").encode(),
                        url=storage.join(out, EVALUATION_FILE))
    storage.write_bytes(fs, storage.join(folder, CURVE_FILE), plot_pr_curves(result), url=storage.join(out, CURVE_FILE))
    return result
