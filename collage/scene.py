"""A georeferenced scene: labelled tiles (CIFAR-10 cars and boats) placed at known positions on
a plain ground of fields, written as a tiled GeoTIFF in a projected CRS, tile by tile, so that a
scene of any size is made in the memory of a row of tiles.

It is what an aerial picture is to tilescan, with its truth known: the pixel box and the map
position of every object.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from tilesets import LabelledImages

__all__ = ["PlacedObject", "Scene", "place_objects", "write_scene_geotiff", "field_tile", "TILE"]

#: GeoTIFF tags: ModelPixelScale, ModelTiepoint, GeoKeyDirectory.
_PIXEL_SCALE, _TIEPOINT, _GEO_KEYS = 33550, 33922, 34735
TILE = 512


@dataclass(frozen=True)
class PlacedObject:
    """One labelled tile in the scene: its class and its top-left pixel; ``record`` indexes the library."""

    label: str
    x: int
    y: int
    size: int
    record: int

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.size / 2, self.y + self.size / 2


@dataclass(frozen=True)
class Scene:
    """A scene's size, its objects and its georeference: ``origin`` is the map position of the
    top-left corner of pixel (0, 0), ``pixel_size`` metres per pixel, north up, in ``epsg``."""

    side: int
    objects: tuple
    origin: tuple
    pixel_size: float
    epsg: int

    def to_map(self, x: float, y: float) -> tuple[float, float]:
        return self.origin[0] + x * self.pixel_size, self.origin[1] - y * self.pixel_size


def place_objects(library: LabelledImages, classes, count: int, side: int, *, grid: int, seed: int = 0) -> list:
    """``count`` tiles of ``classes`` from ``library`` on cells of a ``grid``-pixel lattice, none
    within two tiles of another or of the scene's edge; the same ``seed`` gives the same scene."""
    rng = np.random.default_rng(seed)
    size = library.images.shape[1]
    picks = np.flatnonzero(np.isin(library.model_class, list(classes)))
    records = rng.choice(picks, size=count, replace=False)
    cells = (side - 4 * size) // grid
    taken: list = []
    placed = []
    for record in records:
        while True:
            x, y = (int(v) * grid + 2 * size for v in rng.integers(0, cells, 2))
            if all(abs(x - a) >= 3 * size or abs(y - b) >= 3 * size for a, b in taken):
                break
        taken.append((x, y))
        placed.append(PlacedObject(str(library.model_class[record]), x, y, size, int(record)))
    return placed


def field_tile(ty: int, tx: int, seed: int) -> np.ndarray:
    """A tile of the ground: fields of grass and soil that change slowly (waves hundreds of pixels
    long, continuous across tiles) with a little grain."""
    rng = np.random.default_rng(seed)
    phases, periods = rng.uniform(0, 2 * np.pi, (3, 2)), rng.uniform(180, 420, (3, 2))
    y, x = np.mgrid[ty * TILE:(ty + 1) * TILE, tx * TILE:(tx + 1) * TILE].astype(np.float32)
    wave = sum(np.sin(x / periods[k, 0] + phases[k, 0]) * np.cos(y / periods[k, 1] + phases[k, 1]) for k in range(3))
    soil, grass = np.array([120, 100, 75], np.float32), np.array([80, 115, 60], np.float32)
    mix = (np.clip(wave / 3 + 0.5, 0, 1))[..., None]
    grain = np.random.default_rng([seed, ty, tx]).normal(0, 3, (TILE, TILE, 3))
    return np.clip(soil * mix + grass * (1 - mix) + grain, 0, 255).astype(np.uint8)


def write_scene_geotiff(path: str, side: int, objects, library: LabelledImages, *, origin: tuple,
                        pixel_size: float, epsg: int, seed: int = 0) -> Scene:
    """Write the ``side``-square scene with ``objects`` pasted on it as a tiled, Deflate-compressed
    BigTIFF at ``path``, with its georeference (PixelIsArea); returns the :class:`Scene`."""
    import tifffile

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    by_tile: dict = {}
    for obj in objects:  # an object may straddle up to four tiles
        for ty in {obj.y // TILE, (obj.y + obj.size - 1) // TILE}:
            for tx in {obj.x // TILE, (obj.x + obj.size - 1) // TILE}:
                by_tile.setdefault((ty, tx), []).append(obj)

    def tiles():
        for ty in range(-(-side // TILE)):
            for tx in range(-(-side // TILE)):
                tile = field_tile(ty, tx, seed)
                for obj in by_tile.get((ty, tx), ()):
                    x0, y0 = obj.x - tx * TILE, obj.y - ty * TILE
                    sx, sy = max(0, -x0), max(0, -y0)
                    ex, ey = min(obj.size, TILE - x0), min(obj.size, TILE - y0)
                    tile[y0 + sy:y0 + ey, x0 + sx:x0 + ex] = library.images[obj.record][sy:ey, sx:ex]
                yield tile

    keys = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg)  # projected, PixelIsArea, the EPSG code
    tags = [(_PIXEL_SCALE, "d", 3, (pixel_size, pixel_size, 0.0), True),
            (_TIEPOINT, "d", 6, (0.0, 0.0, 0.0, origin[0], origin[1], 0.0), True),
            (_GEO_KEYS, "H", len(keys), keys, True)]
    partial = path + ".partial"
    tifffile.imwrite(partial, tiles(), shape=(side, side, 3), dtype=np.uint8, tile=(TILE, TILE), photometric="rgb",
                     compression="zlib", bigtiff=True, extratags=tags)
    os.replace(partial, path)
    return Scene(side, tuple(objects), tuple(origin), pixel_size, epsg)
