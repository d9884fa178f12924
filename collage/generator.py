"""Collages of labelled tiles over a target picture.

As in metapixel's collage mode, ``T x T`` tiles are laid on a jittered grid whose step is
smaller than ``T`` and painted in random order, so later tiles cover parts of earlier
ones. Each tile is chosen by colour (among the library's tiles still under their use
limit, the nearest neighbour of the target's mean colours under it) or, with
``match="random"``, at random.

Coordinates follow :mod:`tiling.box`: pixels, ``x`` to the right, ``y`` down, boxes
half-open. Placements are numbered in paint order ("z-order"): placement ``i`` covers
every placement ``j < i`` that it overlaps.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

from pixels import DEFAULT_MAX_PIXELS
from tiling.box import Box

__all__ = ["CollageParams", "Placements", "Collage", "layout", "tile_descriptors", "target_descriptors",
           "build_collage", "owner_map", "MATCH_MODES"]

#: How tiles are chosen: ``colour``, the nearest match to the target's colours under each
#: placement; ``random``, uniformly at random (the target only sets the size).
MATCH_MODES = ("colour", "random")

logger = logging.getLogger(__name__)



def _check_int(name: str, value, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")


def _check_layout(tile_size, step, jitter, **sizes) -> None:
    _check_int("tile_size", tile_size, 1)
    for name, value in sizes.items():
        _check_int(name, value, tile_size)
    _check_int("step", step, 1)
    _check_int("jitter", jitter, 0)
    if step + 2 * jitter > tile_size:
        raise ValueError(
            f"`step` + 2 * `jitter` must be <= the tile size {tile_size} so that every pixel is "
            f"covered, got {step} + 2 * {jitter} = {step + 2 * jitter}"
        )


@dataclass(frozen=True)
class CollageParams:
    """Every setting of a collage; the single source of the defaults.

    Parameters
    ----------
    width, height : int
        Collage size in pixels. ``height=None`` keeps the target's aspect ratio
        (see :meth:`resolve`).
    tile_size : int
        Tile side in pixels; the library's images must be ``tile_size x tile_size``.
    step : int
        Grid step in pixels, before jitter.
    jitter : int
        Each tile moves by up to this many pixels along each axis. ``step + 2 * jitter``
        must not exceed ``tile_size``, which guarantees that every pixel is covered.
    max_uses : int
        How many times one library tile may be placed.
    grid : int
        Colour descriptor: mean colours of a ``grid x grid`` grid of cells per tile.
    candidates : int
        Nearest neighbours fetched per placement; when all are spent, the placement
        searches again among the tiles still available.
    min_visible : float
        Ground-truth tiles with a smaller visible fraction are marked ignored (crowd).
    match : {"colour", "random"}
        How tiles are chosen, see :data:`MATCH_MODES`.
    seed : int
        Seed of the jitter, the paint order and random picks.
    """

    width: int = 4000
    height: int | None = None
    tile_size: int = 32
    step: int = 24
    jitter: int = 4
    max_uses: int = 8
    grid: int = 2
    candidates: int = 16
    min_visible: float = 0.5
    match: str = "colour"
    seed: int = 0

    def __post_init__(self) -> None:
        sizes = {"width": self.width} if self.height is None else {"width": self.width, "height": self.height}
        _check_layout(self.tile_size, self.step, self.jitter, **sizes)
        _check_int("max_uses", self.max_uses, 1)
        _check_int("grid", self.grid, 1)
        if self.tile_size % self.grid:
            raise ValueError(f"`grid` must divide the tile size {self.tile_size}, got {self.grid}")
        _check_int("candidates", self.candidates, 1)
        _check_int("seed", self.seed, 0)
        if not 0 <= self.min_visible <= 1:
            raise ValueError(f"`min_visible` must be in [0, 1], got {self.min_visible}")
        if self.match not in MATCH_MODES:
            raise ValueError(f"`match` must be one of {', '.join(MATCH_MODES)}, got {self.match!r}")
        # Built, written and evaluated whole in memory (`make_collage` peaks near 20 bytes a
        # pixel): no bigger than a picture that is decoded whole may be.
        if self.height is not None and self.width * self.height > DEFAULT_MAX_PIXELS:
            raise ValueError(f"a {self.width}x{self.height} collage is {self.width * self.height:,} pixels, "
                             f"more than the {DEFAULT_MAX_PIXELS:,} it may have (it is built in memory)")

    def check_library(self, tiles: int) -> None:
        """Refuse a library of ``tiles`` tiles too small for this (resolved) collage's placements.

        Counted from the grid, before any layout is made: a collage far too big for the
        library fails at once, and before anything is written.
        """
        placements = _axis_cells(self.height, self.step) * _axis_cells(self.width, self.step)
        if tiles * self.max_uses < placements:
            raise ValueError(f"`max_uses` ({self.max_uses}) x {tiles} library tiles is fewer than the "
                             f"{placements} placements of a {self.width}x{self.height} collage")

    def resolve(self, target_shape: tuple) -> CollageParams:
        """These parameters with ``height`` set from the target's ``(rows, cols, ...)`` shape.

        >>> CollageParams(width=400).resolve((1192, 800, 3)).height
        596
        """
        if self.height is not None:
            return self
        rows, cols = target_shape[:2]
        return replace(self, height=max(self.tile_size, int(round(self.width * rows / cols))))


@dataclass(frozen=True)
class Placements:
    """Tiles on a collage, in paint order: each covers the earlier ones it overlaps.

    ``x``, ``y`` (P,) int64 are top-left corners; placement ``i`` covers the box
    ``[x[i], x[i] + tile) x [y[i], y[i] + tile)``. ``tile`` (P,) int64 indexes the library,
    ``label`` (P,) str is the tile's class and ``source`` (P,) str its record id.
    """

    x: np.ndarray
    y: np.ndarray
    tile: np.ndarray
    label: np.ndarray
    source: np.ndarray
    tile_size: int = 32

    def __len__(self) -> int:
        return len(self.x)

    def box(self, i: int) -> Box:
        """The full box of placement ``i``."""
        return Box.from_xywh(int(self.x[i]), int(self.y[i]), self.tile_size, self.tile_size)


@dataclass(frozen=True)
class Collage:
    """A collage: ``image`` (H, W, 3) uint8, ``owner`` (H, W) int32 placement shown at each pixel."""

    image: np.ndarray
    owner: np.ndarray
    placements: Placements
    params: CollageParams


def _axis_cells(size: int, step: int) -> int:
    return -(-size // step)


def _axis_origins(size: int, step: int, jitter: int) -> np.ndarray:
    # Cell i is [i * step, (i + 1) * step); its tile starts in [i*step - 2*jitter, i*step], so
    # it covers the cell whenever step + 2 * jitter <= tile; clipping to the picture keeps that.
    return np.arange(_axis_cells(size, step), dtype=np.int64) * step - jitter


def layout(height: int, width: int, *, tile_size: int, step: int, jitter: int,
           rng: np.random.Generator) -> np.ndarray:
    """Top-left corners of the tiles of a jittered grid that covers every pixel.

    Parameters
    ----------
    height, width : int
        Collage size in pixels, each at least ``tile_size``.
    tile_size, step, jitter : int
        Tile side, grid step and largest shift along each axis, in pixels, with
        ``step + 2 * jitter <= tile_size``.
    rng : numpy.random.Generator
        Source of the jitter.

    Returns
    -------
    numpy.ndarray
        ``(P, 2)`` int64 ``(x, y)`` corners, row-major over the grid, every tile inside
        ``[0, width) x [0, height)``.

    >>> layout(64, 80, tile_size=32, step=32, jitter=0, rng=np.random.default_rng(0)).tolist()
    [[0, 0], [32, 0], [48, 0], [0, 32], [32, 32], [48, 32]]
    """
    _check_layout(tile_size, step, jitter, height=height, width=width)
    ys, xs = np.meshgrid(_axis_origins(height, step, jitter),
                         _axis_origins(width, step, jitter), indexing="ij")
    corners = np.stack([xs.ravel(), ys.ravel()], axis=1)
    corners += rng.integers(-jitter, jitter + 1, size=corners.shape)
    return np.clip(corners, 0, [width - tile_size, height - tile_size])


def tile_descriptors(images: np.ndarray, grid: int) -> np.ndarray:
    """Mean colour of each cell of a ``grid x grid`` grid over each tile.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, T, T, 3)`` uint8 tiles; ``grid`` must divide ``T``.

    Returns
    -------
    numpy.ndarray
        ``(N, grid * grid * 3)`` float32, cells row-major, then channels.
    """
    n, t = images.shape[:2]
    cell = t // grid
    means = images.reshape(n, grid, cell, grid, cell, 3).mean(axis=(2, 4), dtype=np.float64)
    return means.reshape(n, -1).astype(np.float32)


def _box_means(image: np.ndarray, x0, y0, x1, y1) -> np.ndarray:
    """Mean colour over boxes with fractional corners, weighting pixels by covered area.

    The corner arrays share one shape ``S``; returns ``S + (channels,)`` float64.
    """
    h, w = image.shape[:2]
    sat = np.zeros((h + 1, w + 1, image.shape[2]))
    sat[1:, 1:] = image.cumsum(axis=0, dtype=np.float64).cumsum(axis=1)

    def integral(y, x):
        # The integral over [0, y) x [0, x) is bilinear inside each pixel, so interpolating
        # the summed-area table between pixel corners is exact.
        iy = np.minimum(np.floor(y).astype(np.int64), h - 1)
        ix = np.minimum(np.floor(x).astype(np.int64), w - 1)
        fy, fx = (y - iy)[..., None], (x - ix)[..., None]
        return ((sat[iy, ix] * (1 - fx) + sat[iy, ix + 1] * fx) * (1 - fy)
                + (sat[iy + 1, ix] * (1 - fx) + sat[iy + 1, ix + 1] * fx) * fy)

    total = integral(y1, x1) - integral(y0, x1) - integral(y1, x0) + integral(y0, x0)
    return total / ((y1 - y0) * (x1 - x0))[..., None]


def target_descriptors(target: np.ndarray, corners: np.ndarray, *, width: int, height: int, tile_size: int,
                       grid: int) -> np.ndarray:
    """The descriptor of :func:`tile_descriptors` for the target under each placement.

    The target is stretched to ``width x height`` (the collage size) by exact area
    averaging, without building the stretched picture.

    Parameters
    ----------
    target : numpy.ndarray
        ``(h, w, 3)`` uint8, any size.
    corners : numpy.ndarray
        ``(P, 2)`` ``(x, y)`` tile corners in collage pixels.

    Returns
    -------
    numpy.ndarray
        ``(P, grid * grid * 3)`` float32.
    """
    cell = tile_size // grid
    offsets = np.arange(grid) * cell
    sy, sx = target.shape[0] / height, target.shape[1] / width
    y0 = (corners[:, 1, None, None] + offsets[None, :, None]) * sy
    x0 = (corners[:, 0, None, None] + offsets[None, None, :]) * sx
    y0, x0 = np.broadcast_arrays(y0, x0)
    means = _box_means(target, x0, y0, x0 + cell * sx, y0 + cell * sy)
    return means.reshape(len(corners), -1).astype(np.float32)


def _assign_tiles(queries: np.ndarray, descriptors: np.ndarray, *, max_uses: int, k: int,
                  batch: int = 256) -> tuple[np.ndarray, int]:
    """Library index for each query, in query order, using no tile more than ``max_uses`` times.

    The next ``batch`` queries fetch their ``k`` nearest tiles from a k-d tree of the tiles
    still available; each query takes its first candidate under the limit, or waits at the
    front of the queue for the next batch, whose tree no longer holds the spent tiles. The
    first query of a batch always succeeds, so the loop progresses. Small batches keep the
    tree fresh, so few queries wait. Returns the ``(Q,)`` int64 choices and the number
    of batches.
    """
    uses = [0] * len(descriptors)
    chosen = np.full(len(queries), -1, dtype=np.int64)
    pending = np.arange(len(queries))
    batches = 0
    while len(pending):
        batches += 1
        available = np.flatnonzero(np.asarray(uses) < max_uses)
        k_batch = min(k, len(available))
        head, rest = pending[:batch], pending[batch:]
        _, found = cKDTree(descriptors[available]).query(queries[head], k=k_batch)
        candidates = available[np.asarray(found).reshape(len(head), k_batch)]
        waiting = []
        for q, row in zip(head.tolist(), candidates.tolist()):
            for t in row:
                if uses[t] < max_uses:
                    uses[t] += 1
                    chosen[q] = t
                    break
            else:
                waiting.append(q)
        pending = np.concatenate([np.asarray(waiting, dtype=np.int64), rest])
    return chosen, batches


def _paint(placements: Placements, height: int, width: int, images: np.ndarray | None = None):
    owner = np.full((height, width), -1, dtype=np.int32)
    picture = None if images is None else np.zeros((height, width, 3), dtype=np.uint8)
    t = placements.tile_size
    for i, (x, y) in enumerate(zip(placements.x.tolist(), placements.y.tolist())):
        owner[y:y + t, x:x + t] = i
        if picture is not None:
            picture[y:y + t, x:x + t] = images[placements.tile[i]]
    return owner, picture


def owner_map(placements: Placements, height: int, width: int) -> np.ndarray:
    """``(height, width)`` int32: the placement that shows at each pixel, -1 where none does."""
    return _paint(placements, height, width)[0]


def build_collage(target: np.ndarray, images: np.ndarray, labels, params: CollageParams, *,
                  ids=None) -> Collage:
    """Cover a stretched copy of ``target`` with overlapping library tiles, matched by colour or at random.

    Parameters
    ----------
    target : numpy.ndarray
        ``(h, w, 3)`` uint8 picture of any size; it is stretched to the collage size.
    images : numpy.ndarray
        ``(N, T, T, 3)`` uint8 library tiles, ``T == params.tile_size``.
    labels : array_like
        ``(N,)`` class name of each tile.
    params : CollageParams
        ``height=None`` keeps the target's aspect ratio.
    ids : array_like, optional
        ``(N,)`` record id of each tile, kept as each placement's ``source``; default the index.

    Returns
    -------
    Collage
        Deterministic for a given ``params.seed``.

    Notes
    -----
    Memory is about 7 bytes per collage pixel (picture and owner map): some 170 MB for
    4000 x 6000.
    """
    target = np.asarray(target)
    if target.ndim != 3 or target.shape[2] != 3 or target.dtype != np.uint8 or min(target.shape[:2]) < 1:
        raise ValueError(f"`target` must be an (h, w, 3) uint8 array, got {target.dtype} {target.shape}")
    t = params.tile_size
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (t, t, 3) or images.dtype != np.uint8 or not len(images):
        raise ValueError(f"`images` must be a non-empty (N, {t}, {t}, 3) uint8 array, got {images.dtype} "
                         f"{images.shape}")
    labels = np.asarray(labels).astype(str)
    ids = np.arange(len(images)).astype(str) if ids is None else np.asarray(ids).astype(str)
    if labels.shape != (len(images),) or ids.shape != (len(images),):
        raise ValueError(f"`labels` and `ids` need one entry per image ({len(images)}), "
                         f"got {labels.shape} and {ids.shape}")
    params = params.resolve(target.shape)
    params.check_library(len(images))
    rng = np.random.default_rng(params.seed)
    corners = layout(params.height, params.width, tile_size=t, step=params.step, jitter=params.jitter, rng=rng)
    corners = corners[rng.permutation(len(corners))]

    if params.match == "random":
        # Every tile max_uses times, shuffled: uniform picks within the use limit.
        chosen = rng.permutation(np.repeat(np.arange(len(images)), params.max_uses))[:len(corners)]
    else:
        queries = target_descriptors(target, corners, width=params.width, height=params.height, tile_size=t,
                                     grid=params.grid)
        chosen, batches = _assign_tiles(queries, tile_descriptors(images, params.grid), max_uses=params.max_uses,
                                        k=params.candidates)
        logger.debug("collage %dx%d: %d placements matched in %d batches", params.width, params.height,
                    len(chosen), batches)

    placements = Placements(x=corners[:, 0].copy(), y=corners[:, 1].copy(), tile=chosen,
                            label=labels[chosen], source=ids[chosen], tile_size=t)
    owner, picture = _paint(placements, params.height, params.width, images)
    return Collage(image=picture, owner=owner, placements=placements, params=params)
