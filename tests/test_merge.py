"""Merging hits into boxes: none, nms, fuse."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.merge import cluster_hits, merge_hits
from tiling.box import iou_one_to_many


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
    # built around the best hit only, so the row becomes pairs (0, 1), (2, 3), ... and a last single.
    hits = np.array([hit(16 * i, 0, 0.99 - 0.001 * i) for i in range(9)])
    boxes = merge_hits(hits, "fuse", iou=0.3)
    expected = []
    for first in range(0, 9, 2):
        members = hits[first:first + 2]
        weights = members[:, 4]
        corners = (members[:, :4] * weights[:, None]).sum(axis=0) / weights.sum()
        expected.append([*corners, members[0, 4], 0])
    np.testing.assert_allclose(boxes, expected)


def test_ties_are_deterministic():
    hits = np.array([hit(16, 0, 0.9), hit(0, 0, 0.9)])
    a = merge_hits(hits, "nms")
    b = merge_hits(hits[::-1], "nms")
    np.testing.assert_array_equal(a, b)
    assert a[0, 0] == 0  # the tie goes to the top-left hit


@pytest.mark.parametrize("method, iou, match",
                         [("mean", 0.3, "`method` must be one of"), ("nms", 0, "`iou` must be in")])
def test_errors(method, iou, match):
    with pytest.raises(ValueError, match=match):
        merge_hits(np.zeros((1, 6)), method, iou=iou)


def _hits_strategy():
    """Up to 40 hits of 1 to 3 classes on a 200 x 200 area, sizes 8 to 48, scores from a few values (ties)."""
    one = st.tuples(st.integers(0, 200), st.integers(0, 200), st.integers(8, 48), st.integers(8, 48),
                    st.sampled_from([0.5, 0.7, 0.9, 0.95, 0.99]), st.integers(0, 2))
    return st.lists(one, max_size=40).map(
        lambda rows: np.array([[x, y, x + w, y + h, s, c] for x, y, w, h, s, c in rows], float).reshape(-1, 6))


def _sorted_rows(boxes: np.ndarray) -> list:
    return sorted(map(tuple, np.round(boxes, 9).tolist()))


@settings(max_examples=150, deadline=None)
@given(_hits_strategy(), st.sampled_from([0.1, 0.3, 0.5, 0.9]), st.randoms(use_true_random=False))
def test_merge_properties(hits, iou, random):
    order = list(range(len(hits)))
    random.shuffle(order)
    shuffled = hits[order]
    for method in ("none", "nms", "fuse"):
        boxes = merge_hits(hits, method, iou=iou)
        # The same boxes whatever order the hits come in (ties are broken by position).
        assert _sorted_rows(merge_hits(shuffled, method, iou=iou)) == _sorted_rows(boxes)
        # Boxes per class never outnumber hits per class, and every class with hits keeps one box at least.
        for cls in np.unique(hits[:, 5]):
            n_hits, n_boxes = (hits[:, 5] == cls).sum(), (boxes[:, 5] == cls).sum()
            assert 1 <= n_boxes <= n_hits
    assert _sorted_rows(merge_hits(hits, "none")) == _sorted_rows(hits)
    # NMS keeps a subset of the hits; fuse keeps the same number of boxes as NMS, with the same scores.
    nms = merge_hits(hits, "nms", iou=iou)
    assert set(map(tuple, nms.tolist())) <= set(map(tuple, hits.tolist()))
    fuse = merge_hits(hits, "fuse", iou=iou)
    assert sorted(zip(nms[:, 5], nms[:, 4])) == sorted(zip(fuse[:, 5], fuse[:, 4]))
    # Every hit is in exactly one cluster, headed by a hit it overlaps by >= iou; heads do not
    # overlap one another by >= iou (a later one would have joined the earlier cluster).
    for cls in np.unique(hits[:, 5]):
        members = hits[hits[:, 5] == cls]
        head = cluster_hits(members, iou)
        assert head.shape == (len(members),) and set(head[head].tolist()) == set(head.tolist())
        for k in range(len(members)):
            if head[k] != k:
                assert iou_one_to_many(members[head[k], :4], members[k:k + 1, :4])[0] >= iou
                assert members[head[k], 4] >= members[k, 4]
        heads = np.unique(head)
        for a in range(len(heads)):
            assert (iou_one_to_many(members[heads[a], :4], members[heads[a + 1:], :4]) < iou).all()
        assert len(heads) == (nms[:, 5] == cls).sum()
