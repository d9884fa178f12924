"""Data and figures for looking at one run's detections by eye.

``notebooks/explore_detections.ipynb`` imports these and shows what they return: the
overlay and zoomed regions, boxes and scores per class, heat maps of each class's score,
and, against a collage's ground truth, the false positives and false negatives, which
:func:`export_tiles` writes as a folder-per-class tree of tiles that
:func:`training.data.load_image_folder` reads (active learning: errors back into training).

Coordinates follow :mod:`tiling.box`: pixels, ``x`` to the right, ``y`` down, boxes
half-open. Box tables are pandas frames with ``x0, y0, x1, y1`` columns in that
convention. Figures are :class:`matplotlib.figure.Figure` objects built without pyplot, so
nothing here touches global plotting state.
"""
from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scoring import storage
from scoring.evaluate import IOU, _read_json, plot_pr_curves
from scoring.imageio import read_image
from scoring.merge import iou_one_to_many
from scoring.outputs import SUCCESS
from scoring.results import probability_column
from tiling.box import Box
from tiling.collage import owner_map, placements_from_ground_truth, window_classes

__all__ = [
    "FALSE_POSITIVE", "FALSE_NEGATIVE", "RunData", "ScoreGrid", "load_run", "load_truth", "load_input",
    "run_summary", "boxes_frame", "regions_from_xywh", "auto_regions", "score_grid", "truth_frame",
    "match_boxes", "error_table", "export_tiles", "plot_summary", "plot_regions", "plot_boxes_and_scores",
    "plot_heat_maps", "plot_gallery",
]

logger = logging.getLogger(__name__)

FALSE_POSITIVE = "false positive"
FALSE_NEGATIVE = "false negative"
_BOX_COLUMNS = ["x0", "y0", "x1", "y1"]
#: Longest side, in pixels, of a picture drawn whole; crops are always drawn at full resolution.
_DISPLAY_SIDE = 2048


# ---------------------------------------------------------------------------------------
# Reading a run


@dataclass(frozen=True, eq=False)
class RunData:
    """One finished run's outputs.

    ``boxes`` has one row per detection (:func:`boxes_frame`): ``id, class, x0, y0, x1,
    y1`` (float pixels, half-open) and ``score``. ``windows`` is ``windows.parquet`` as a
    frame (``x, y, width, height`` pixels, ``label``, ``score``, ``p_<class>``), ``None``
    when the run has none. ``overlay`` is ``(H, W, 3)`` uint8.
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
        return self.manifest["input"]["url"].rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]

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
        """Whether ``windows.parquet`` holds every scored window (the run used ``--keep 0``)."""
        counts = self.manifest["counts"]
        return self.windows is not None and counts["windows_kept"] == counts["windows_scored"]

    def score_grid(self, cls: str) -> ScoreGrid:
        """Class ``cls``'s window scores on the run's window grid (:func:`score_grid`)."""
        if self.windows is None:
            raise ValueError(f"{self.url} has no windows.parquet")
        width, height = self.size
        return score_grid(self.windows, cls, width=width, height=height, window=self.window, stride=self.stride)

    @property
    def windows_note(self) -> str | None:
        """Why the heat maps are partial, or ``None`` when they are complete."""
        if self.windows is None:
            return "the run has no windows.parquet: no heat maps"
        if self.windows_complete:
            return None
        counts, keep = self.manifest["counts"], self.manifest["parameters"]["keep"]
        return (f"windows.parquet holds {counts['windows_kept']:,} of the {counts['windows_scored']:,} windows "
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
    """
    import pyarrow.parquet as pq

    fs, root = storage.filesystem(url, storage_options)
    with storage.errors("read", url):
        finished = fs.exists(storage.join(root, SUCCESS))
    if not finished:
        raise FileNotFoundError(f"no finished run in {url}: {SUCCESS} is missing (a failed or unfinished run, "
                                "or the wrong folder)")
    manifest = _read_json(fs, storage.join(root, "manifest.json"), "manifest")
    detections = _read_json(fs, storage.join(root, "detections.json"), "detections")
    windows = None
    path = storage.join(root, "windows.parquet")
    if fs.exists(path):
        with storage.errors("read", fs.unstrip_protocol(path)), fs.open(path, "rb") as fh:
            windows = pq.read_table(fh).to_pandas()
    overlay, _ = read_image(storage.join(url, "overlay.png"), storage_options=storage_options)
    return RunData(url=url, manifest=manifest, detections=detections, boxes=boxes_frame(detections),
                   windows=windows, overlay=overlay)


def load_truth(url: str, *, storage_options: dict | None = None) -> dict:
    """A collage's ground truth (:func:`tiling.collage.ground_truth`) from a path or URL."""
    fs, path = storage.filesystem(url, storage_options)
    return _read_json(fs, path, "ground truth")


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


# ---------------------------------------------------------------------------------------
# Regions


def regions_from_xywh(regions, width: int, height: int) -> list[Box]:
    """Zoom boxes given as ``[x, y, width, height]`` pixel lists, clipped to the picture.

    Raises
    ------
    ValueError
        For an entry that is not four numbers with positive width and height, or that
        lies outside the ``width x height`` picture.
    """
    boxes = []
    for k, entry in enumerate(regions):
        try:
            x, y, w, h = (float(v) for v in entry)
        except (TypeError, ValueError):
            raise ValueError(f"REGIONS[{k}] must be [x, y, width, height], got {entry!r}") from None
        if not (w > 0 and h > 0):
            raise ValueError(f"REGIONS[{k}] needs a positive width and height, got {entry!r}")
        clipped = Box.from_xywh(x, y, w, h).intersection(Box(0, 0, width, height))
        if clipped is None:
            raise ValueError(f"REGIONS[{k}] = {list(entry)} lies outside the {width}x{height} picture")
        boxes.append(Box(*(int(round(v)) for v in clipped.to_xyxy())))
    return boxes


def auto_regions(boxes: pd.DataFrame, width: int, height: int, *, count: int = 3, side: int = 256) -> list[Box]:
    """``side x side`` regions centred on the best-scoring boxes, or on the centre without any.

    Regions are clipped to the picture; a box inside an earlier region gets none of its own.
    """
    side_x, side_y = min(side, width), min(side, height)
    centres = [((width // 2), (height // 2))]
    if len(boxes):
        best = boxes.sort_values(["score", "y0", "x0"], ascending=[False, True, True])
        centres = list(zip(((best.x0 + best.x1) / 2).tolist(), ((best.y0 + best.y1) / 2).tolist()))
    regions: list[Box] = []
    for cx, cy in centres:
        if len(regions) == count:
            break
        if any(r.x0 <= cx < r.x1 and r.y0 <= cy < r.y1 for r in regions):
            continue
        x0 = int(min(max(round(cx - side_x / 2), 0), width - side_x))
        y0 = int(min(max(round(cy - side_y / 2), 0), height - side_y))
        regions.append(Box.from_xywh(x0, y0, side_x, side_y))
    return regions


# ---------------------------------------------------------------------------------------
# Heat maps


@dataclass(frozen=True)
class ScoreGrid:
    """One class's window scores on the window grid.

    ``values`` is ``(R, C)`` float64: cell ``(i, j)`` holds the best score of the windows
    whose origin lies in ``[j * stride, (j + 1) * stride) x [i * stride, (i + 1) * stride)``
    (NaN where no window was kept), so it is centred on those windows' centre. ``extent``
    is ``(left, right, bottom, top)`` in picture pixels, as :meth:`~matplotlib.axes.Axes.imshow`
    takes it.
    """

    values: np.ndarray
    stride: int
    window: int

    @property
    def extent(self) -> tuple[float, float, float, float]:
        offset = (self.window - self.stride) / 2
        rows, cols = self.values.shape
        return (offset, offset + cols * self.stride, offset + rows * self.stride, offset)

    def best_in(self, boxes: pd.DataFrame) -> np.ndarray:
        """``(N,)`` best score of the windows centred inside each box; NaN where none was kept."""
        centre = self.window / 2
        rows, cols = self.values.shape
        best = np.full(len(boxes), np.nan)
        for k, (x0, y0, x1, y1) in enumerate(boxes[_BOX_COLUMNS].to_numpy()):
            # Cell j's windows are centred at about j * stride + window / 2.
            j0, j1 = (max(0, math.ceil((v - centre) / self.stride)) for v in (x0, x1))
            i0, i1 = (max(0, math.ceil((v - centre) / self.stride)) for v in (y0, y1))
            cells = self.values[i0:min(i1, rows), j0:min(j1, cols)]
            if cells.size and not np.isnan(cells).all():
                best[k] = np.nanmax(cells)
        return best


def score_grid(windows: pd.DataFrame, cls: str, *, width: int, height: int, window: int, stride: int) -> ScoreGrid:
    """The :class:`ScoreGrid` of class ``cls`` from a windows frame (``windows.parquet``).

    Parameters
    ----------
    windows : pandas.DataFrame
        ``x, y`` window origins in pixels and a ``p_<cls>`` column; any subset of the grid.
    width, height : int
        Picture size in pixels.
    window, stride : int
        The run's window side and step in pixels.

    Notes
    -----
    Memory is one float64 per ``stride x stride`` cell of the picture.
    """
    column = probability_column(cls)
    if column not in windows:
        raise ValueError(f"windows have no {column!r} column; they have {list(windows.columns)}")
    rows = max(0, height - window) // stride + 1
    cols = max(0, width - window) // stride + 1
    grid = np.full((rows, cols), -np.inf)
    r = windows["y"].to_numpy(np.int64) // stride
    c = windows["x"].to_numpy(np.int64) // stride
    if len(r) and (r.max() >= rows or c.max() >= cols or min(r.min(), c.min()) < 0):
        raise ValueError(f"window origins fall outside a {width}x{height} picture with {window}-pixel windows")
    np.maximum.at(grid, (r, c), windows[column].to_numpy(np.float64))  # the aligned edge shares a cell
    grid[np.isneginf(grid)] = np.nan
    return ScoreGrid(values=grid, stride=stride, window=window)


# ---------------------------------------------------------------------------------------
# Errors against ground truth


def truth_frame(truth: dict) -> pd.DataFrame:
    """One row per ground-truth object: ``id, class, x0, y0, x1, y1, visible_fraction, crowd``."""
    return _annotation_frame(truth, visible_fraction=lambda a: float(a.get("visible_fraction", 1.0)),
                             crowd=lambda a: bool(a.get("iscrowd", 0)))


def _covered(box: np.ndarray, boxes: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """The share of ``box`` that each of ``boxes`` covers, from their IoU ``iou`` (all ``x0, y0, x1, y1``)."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return iou * (area + areas) / (1 + iou) / area  # IoU = I / (A + B - I), solved for I


def match_boxes(boxes: pd.DataFrame, truths: pd.DataFrame, *, iou: float = IOU) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match detections to ground truth per class, greedily by score, as COCO does.

    Each box, best score first, takes the unmatched non-crowd truth of its class that it
    overlaps most, if their IoU is ``>= iou``: a true positive. A box that matches none
    but lies ``>= iou`` of its area inside a crowd (mostly hidden) truth is ignored, as
    in pycocotools; any other box is a false positive. Unmatched non-crowd truths are
    false negatives. The counts per class are those of :func:`scoring.evaluate.box_metrics`.

    Returns
    -------
    boxes, truths : pandas.DataFrame
        Copies with ``outcome`` (boxes: ``tp``, ``fp`` or ``ignored``; truths: ``tp``,
        ``fn`` or ``ignored``), the matched ``truth_id``/``box_id`` (-1 for none) and, for
        boxes, ``iou`` with it.

    Notes
    -----
    Each box is compared with every truth of its class: ``O(boxes x truths)`` work.
    """
    if not 0 < iou <= 1:
        raise ValueError(f"`iou` must be in (0, 1], got {iou}")
    box_class, truth_class = boxes["class"].to_numpy(), truths["class"].to_numpy()
    box_corners = boxes[_BOX_COLUMNS].to_numpy(np.float64)
    truth_corners = truths[_BOX_COLUMNS].to_numpy(np.float64)
    crowd = truths["crowd"].to_numpy(bool)
    outcome = np.full(len(boxes), "fp", dtype=object)
    truth_outcome = np.where(crowd, "ignored", "fn").astype(object)
    truth_id, box_id = np.full(len(boxes), -1, np.int64), np.full(len(truths), -1, np.int64)
    overlap = np.zeros(len(boxes))
    # Best score first; ties by position, so the matching is deterministic.
    order = np.lexsort((box_corners[:, 0], box_corners[:, 1], -boxes["score"].to_numpy(np.float64)))
    for cls in sorted(set(box_class)):
        candidates = np.flatnonzero(truth_class == cls)
        open_ = ~crowd[candidates]
        for b in order[box_class[order] == cls]:
            overlaps = iou_one_to_many(box_corners[b], truth_corners[candidates])
            best = np.where(open_, overlaps, -1.0)
            if len(best) and best.max() >= iou:
                t = int(best.argmax())
                open_[t] = False
                outcome[b], overlap[b] = "tp", best[t]
                truth_id[b] = truths["id"].iat[candidates[t]]
                truth_outcome[candidates[t]], box_id[candidates[t]] = "tp", boxes["id"].iat[b]
            elif crowd[candidates].any() and _covered(box_corners[b], truth_corners[candidates], overlaps)[
                    crowd[candidates]].max() >= iou:
                outcome[b] = "ignored"
    return (boxes.assign(outcome=outcome, truth_id=truth_id, iou=overlap),
            truths.assign(outcome=truth_outcome, box_id=box_id))


def _crop_windows(boxes: pd.DataFrame, side: int, width: int, height: int) -> np.ndarray:
    """``(N, 4)`` int64 ``x0, y0, x1, y1``: the ``side x side`` window centred on each box, inside the picture."""
    cx = ((boxes["x0"] + boxes["x1"]) / 2).to_numpy(np.float64)
    cy = ((boxes["y0"] + boxes["y1"]) / 2).to_numpy(np.float64)
    x0 = np.clip(np.round(cx - side / 2), 0, width - side).astype(np.int64)
    y0 = np.clip(np.round(cy - side / 2), 0, height - side).astype(np.int64)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


def error_table(run: RunData, truth: dict, *, iou: float = IOU) -> pd.DataFrame:
    """The run's false positives and false negatives against a collage's ground truth.

    Parameters
    ----------
    run : RunData
    truth : dict
        Ground truth with its collage placements (:func:`tiling.collage.ground_truth`):
        a false positive's true class is the class of the tile that shows on most of its
        crop, as for :func:`scoring.evaluate.window_confusion`.
    iou : float
        IoU at which a box matches a truth.

    Returns
    -------
    pandas.DataFrame
        One row per error, each with a ``window x window`` crop ``x0, y0, x1, y1`` (int
        pixels, half-open): ``kind`` (:data:`FALSE_POSITIVE` or :data:`FALSE_NEGATIVE`),
        ``predicted`` (the box's class, or the run's background class for a miss),
        ``true_class``, ``score`` (a box's score; for a miss the best score of its class
        among the windows centred on it, NaN where none was kept), ``visible_fraction``
        (misses) and ``ref`` (the box or truth id). False positives come first, most
        confident first; then the misses, most visible first, lowest score first.
    """
    width, height = run.size
    boxes, truths = match_boxes(run.boxes, truth_frame(truth), iou=iou)
    placements, h, w = placements_from_ground_truth(truth)
    if (w, h) != run.size:
        raise ValueError(f"the ground truth is for a {w}x{h} picture, the run scored {width}x{height}")

    fp = boxes[boxes["outcome"] == "fp"].sort_values(["score", "y0", "x0"], ascending=[False, True, True])
    fp_crops = _crop_windows(fp, run.window, width, height)
    fp_true = window_classes(owner_map(placements, h, w), placements.label, fp_crops) if len(fp) else []
    fp_rows = pd.DataFrame({"kind": FALSE_POSITIVE, "predicted": fp["class"].to_numpy(), "true_class": fp_true,
                            "score": fp["score"].to_numpy(), "visible_fraction": np.nan, "ref": fp["id"].to_numpy()})

    fn = truths[truths["outcome"] == "fn"].copy()
    fn["score"] = np.nan
    if run.windows is not None:
        for cls, part in fn.groupby("class"):
            fn.loc[part.index, "score"] = run.score_grid(cls).best_in(part)
    fn = fn.sort_values(["visible_fraction", "score", "id"], ascending=[False, True, True], na_position="first")
    fn_rows = pd.DataFrame({"kind": FALSE_NEGATIVE, "predicted": run.background, "true_class": fn["class"].to_numpy(),
                            "score": fn["score"].to_numpy(), "visible_fraction": fn["visible_fraction"].to_numpy(),
                            "ref": fn["id"].to_numpy()})

    crops = np.concatenate([fp_crops, _crop_windows(fn, run.window, width, height)]).reshape(-1, 4)
    table = pd.concat([fp_rows, fn_rows], ignore_index=True)
    table[_BOX_COLUMNS] = crops
    return table


def _tile_name(prefix: str, row) -> str:
    kind = "fp" if row.kind == FALSE_POSITIVE else "fn"
    return f"{prefix}{kind}-{row.predicted}-x{row.x0:05d}-y{row.y0:05d}.png"


def export_tiles(image: np.ndarray, errors: pd.DataFrame, folder: str, *, prefix: str = "",
                 storage_options: dict | None = None) -> pd.DataFrame:
    """Write each error's crop as ``FOLDER/<true class>/<prefix>-<kind>-<predicted>-x<x0>-y<y0>.png``.

    The tree is what :func:`training.data.load_image_folder` reads: a false positive goes
    under its true class (usually the background), a miss under its object's class.
    A name stands for one crop of one picture with one true class, so exporting again,
    from this run or another run over the same picture, rewrites the same files, and the
    folder can collect the errors of several pictures when each has its own ``prefix``
    (e.g. :attr:`RunData.picture_name`).

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` uint8, the picture the run scored (:func:`load_input`).
    errors : pandas.DataFrame
        Rows of :func:`error_table`, or a subset.
    folder : str
        Local folder or URL.
    prefix : str
        Start of every file name; ``"-"`` is added when it is not empty.

    Returns
    -------
    pandas.DataFrame
        ``errors`` with the written ``path`` of each tile.
    """
    from PIL import Image

    fs, root = storage.filesystem(folder, storage_options)
    prefix = f"{prefix}-" if prefix else ""
    paths = []
    for row in errors.itertuples(index=False):
        crop = image[Box(row.x0, row.y0, row.x1, row.y1).slices()]
        if crop.shape[:2] != (row.y1 - row.y0, row.x1 - row.x0):
            raise ValueError(f"crop {[row.x0, row.y0, row.x1, row.y1]} is not inside the "
                             f"{image.shape[1]}x{image.shape[0]} picture")
        png = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(crop)).save(png, format="PNG")
        path = storage.join(root, str(row.true_class), _tile_name(prefix, row))
        with storage.errors("write", fs.unstrip_protocol(path)):
            fs.makedirs(storage.join(root, str(row.true_class)), exist_ok=True)
        storage.write_bytes(fs, path, png.getvalue())
        paths.append(storage.join(folder, str(row.true_class), _tile_name(prefix, row)))
    logger.info("wrote %d error tiles under %s", len(paths), folder)
    return errors.assign(path=paths)


# ---------------------------------------------------------------------------------------
# Figures


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _show_picture(axes, pixels: np.ndarray, **kwargs) -> None:
    """Draw a whole picture, reduced to at most :data:`_DISPLAY_SIDE` pixels a side, in picture coordinates."""
    from PIL import Image

    height, width = pixels.shape[:2]
    factor = math.ceil(max(height, width) / _DISPLAY_SIDE)
    shown = np.asarray(Image.fromarray(pixels).reduce(factor)) if factor > 1 else pixels
    axes.imshow(shown, extent=(0, width, height, 0), interpolation="antialiased", **kwargs)


def _draw_heat_maps(figure, axes, run: RunData, *, shrink: float) -> None:
    """One heat map per class on ``axes``, over the overlay in grey, and their colour bar."""
    from matplotlib import colormaps

    cmap = colormaps["magma"].with_extremes(bad=(0, 0, 0, 0))  # cells without windows stay clear
    grey = run.overlay.mean(axis=2).astype(np.uint8)
    width, height = run.size
    for ax, cls in zip(axes, run.classes):
        grid = run.score_grid(cls)
        _show_picture(ax, grey, cmap="gray", vmin=0, vmax=255)
        shown = ax.imshow(grid.values, extent=grid.extent, cmap=cmap, vmin=0, vmax=1, alpha=0.75,
                          interpolation="nearest")
        ax.set(xlim=(0, width), ylim=(height, 0), title=f"p({cls})" + ("" if run.windows_complete else ", partial"))
        ax.axis("off")
    figure.colorbar(shown, ax=list(axes), shrink=shrink, label="window score")


def plot_summary(run: RunData, *, evaluation: dict | None = None):
    """The overlay, each class's heat map (when there are windows) and the PR curves (with an evaluation)."""
    from PIL import Image

    width, height = run.size
    panels = 1 + (len(run.classes) if run.windows is not None else 0) + (evaluation is not None)
    figure = _figure(3.6 * panels, 3.6 * max(0.6, min(1.6, height / width)) + 0.5)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    _show_picture(axes[0], run.overlay)
    axes[0].set_title(f"overlay: {len(run.boxes)} boxes")
    axes[0].axis("off")
    if run.windows is not None:
        _draw_heat_maps(figure, axes[1:1 + len(run.classes)], run, shrink=0.6)
    if evaluation is not None:
        axes[-1].imshow(np.asarray(Image.open(io.BytesIO(plot_pr_curves(evaluation)))))
        axes[-1].axis("off")
    figure.suptitle(run.url)
    return figure


def plot_regions(image: np.ndarray, regions: list[Box], *, columns: int = 3):
    """Each region of ``image`` at full resolution (one picture pixel per screen pixel, or more)."""
    if not regions:
        raise ValueError("`regions` is empty: give at least one Box")
    rows = -(-len(regions) // columns)
    cols = min(columns, len(regions))
    side = max(max(r.width, r.height) for r in regions) / 100 + 0.4  # inches at 100 dpi
    figure = _figure(max(2.5, side) * cols, (max(2.5, side) + 0.3) * rows)
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    for ax, region in zip(axes, regions):
        ax.imshow(image[region.slices()], extent=(region.x0, region.x1, region.y1, region.y0),
                  interpolation="nearest")
        ax.set_title("x {}, y {}, {} x {}".format(*(int(v) for v in region.to_xywh())), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(regions):]:
        ax.axis("off")
    return figure


def plot_boxes_and_scores(run: RunData):
    """Boxes per class, then per class the histogram of window scores and of box scores."""
    classes = run.classes
    figure = _figure(3.4 * (1 + len(classes)), 3.2)
    axes = figure.subplots(1, 1 + len(classes), squeeze=False)[0]
    counts = run.boxes["class"].value_counts().reindex(classes, fill_value=0)
    bars = axes[0].bar(classes, counts.to_numpy(), color=[run.colors.get(c, "gray") for c in classes])
    axes[0].bar_label(bars)
    axes[0].set(title="boxes per class", ylabel="boxes")
    bins = np.linspace(0, 1, 41)
    for ax, cls in zip(axes[1:], classes):
        if run.windows is not None:
            ax.hist(run.windows[probability_column(cls)], bins=bins, color="0.6",
                    label="windows" + ("" if run.windows_complete else " (kept)"))
        ax.hist(run.boxes.loc[run.boxes["class"] == cls, "score"], bins=bins, color=run.colors.get(cls, "C0"),
                alpha=0.8, label="boxes")
        if cls in run.thresholds:
            ax.axvline(run.thresholds[cls], color="k", linestyle="--", linewidth=1, label="threshold")
        ax.set(title=f"scores: {cls}", xlabel=f"p({cls})", yscale="log", xlim=(0, 1))
        ax.legend(fontsize=8)
    return figure


def plot_heat_maps(run: RunData):
    """Each class's window score over the picture (blank where no window was kept)."""
    width, height = run.size
    panels = len(run.classes)
    figure = _figure(5.5 * panels, 5.5 * max(0.5, min(1.6, height / width)) + 0.6)
    _draw_heat_maps(figure, figure.subplots(1, panels, squeeze=False)[0], run, shrink=0.7)
    return figure


def plot_gallery(image: np.ndarray, errors: pd.DataFrame, *, title: str, limit: int = 24, columns: int = 8):
    """The first ``limit`` rows of :func:`error_table` as enlarged crops captioned with their scores."""
    shown = errors.head(limit)
    rows = max(1, -(-len(shown) // columns))
    figure = _figure(1.25 * columns, 1.45 * rows + 0.4)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, row in zip(axes, shown.itertuples(index=False)):
        ax.imshow(image[Box(row.x0, row.y0, row.x1, row.y1).slices()], interpolation="nearest")
        score = "n/a" if np.isnan(row.score) else f"{row.score:.2f}"
        if row.kind == FALSE_POSITIVE:
            caption = f"{row.predicted} {score}\ntrue: {row.true_class}"
        else:
            caption = f"{row.true_class}: best {score}\nvisible {row.visible_fraction:.0%}"
        ax.set_title(caption, fontsize=7)
    if not len(shown):
        axes[0].text(0, 0.5, "none", fontsize=12)
    figure.suptitle(f"{title} ({len(shown)} of {len(errors)})")
    return figure
