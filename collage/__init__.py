"""Collages of labelled 32x32 tiles over a target picture, and their ground truth.

The generator (:mod:`collage.generator`) places library tiles, matched by colour or picked
at random, on a jittered, overlapping grid; :mod:`collage.truth` says where each tile still shows, writes
the COCO ground truth, and gives the true class of any window.
"""
from collage.generator import Collage, CollageParams, Placements, build_collage, layout, owner_map
from collage.truth import (
    GROUND_TRUTH_FORMAT,
    ground_truth,
    placements_from_ground_truth,
    visible_regions,
    window_classes,
)

__all__ = ["Collage", "CollageParams", "Placements", "build_collage", "layout", "owner_map", "GROUND_TRUTH_FORMAT",
           "ground_truth", "placements_from_ground_truth", "visible_regions", "window_classes"]
