"""Merging hits into boxes: none, nms, fuse."""
from __future__ import annotations

import numpy as np
import pytest

from scoring.merge import iou_one_to_many, merge_hits


def hit(x, y, score, cls=0, size=32):
    return [x, y, x + size, y + size, score, cls]


def test_iou_known_values():
    boxes = np.array([[0, 0, 32, 32], [16, 0, 48, 32], [16, 16, 48, 48], [32, 0, 64, 32]], float)
    np.testing.assert_allclose(iou_one_to_many(boxes[0], boxes), [1, 512 / 1536, 256 / 1792, 0])


def test_empty_input_gives_empty_output():
    for method in ("none", "nms", "fuse"):
        assert merge_hits(np.zeros((0, 6)), method).shape == (0, 6)


def test_none_keeps_every_hit_sorted_by_score():
    hits = np.array([hit(0, 0, 0.91), hit(16, 0, 0.99), hit(200, 200, 0.95)])
    boxes = merge_hits(hits, "none")
    assert len(boxes) == 3
    assert boxes[:, 4].tolist() == [0.99, 0.95, 0.91]


def test_nms_keeps_best_of_overlapping_and_separate_objects():
    hits = np.array([hit(0, 0, 0.91), hit(16, 0, 0.99), hit(200, 200, 0.95)])
    boxes = merge_hits(hits, "nms", iou=0.3)
    assert sorted(map(tuple, boxes[:, :5].tolist())) == [(16, 0, 48, 32, 0.99), (200, 200, 232, 232, 0.95)]


def test_nms_is_per_class():
    hits = np.array([hit(0, 0, 0.95, cls=0), hit(0, 0, 0.93, cls=1)])
    assert len(merge_hits(hits, "nms")) == 2


def test_fuse_locates_object_between_stride_steps():
    # An object at x=8 seen by windows at x=0 and x=16 with equal confidence.
    hits = np.array([hit(0, 0, 0.95), hit(16, 0, 0.95)])
    (box,) = merge_hits(hits, "fuse", iou=0.3)
    np.testing.assert_allclose(box[:4], [8, 0, 40, 32])
    assert box[4] == 0.95


def test_fuse_weights_by_score():
    hits = np.array([hit(0, 0, 0.9), hit(16, 0, 0.3)])
    (box,) = merge_hits(hits, "fuse", iou=0.3)
    assert box[0] == pytest.approx(16 * 0.3 / 1.2)


def test_fuse_does_not_chain_neighbouring_objects():
    # A row of hits 16 px apart: each overlaps its neighbour by IoU 1/3, but the cluster is
    # built around the best hit only, so a long row becomes several boxes, not one.
    hits = np.array([hit(16 * i, 0, 0.99 - 0.001 * i) for i in range(9)])
    boxes = merge_hits(hits, "fuse", iou=0.3)
    assert 3 <= len(boxes) <= 5
    assert (boxes[:, 2] - boxes[:, 0]).max() <= 48


def test_ties_are_deterministic():
    hits = np.array([hit(16, 0, 0.9), hit(0, 0, 0.9)])
    a = merge_hits(hits, "nms")
    b = merge_hits(hits[::-1], "nms")
    np.testing.assert_array_equal(a, b)
    assert a[0, 0] == 0  # the tie goes to the top-left hit


@pytest.mark.parametrize("method, iou, match", [("mean", 0.3, "`method` must be one of"), ("nms", 0, "`iou` must be in")])
def test_errors(method, iou, match):
    with pytest.raises(ValueError, match=match):
        merge_hits(np.zeros((1, 6)), method, iou=iou)
