"""A padding-free detector for 32x32 windows, in Gluon: exact when run over a whole band.

Six 3x3 convolutions without padding and two 2x2 max-poolings (32 -> 30 -> 28 -> 14 -> 12 ->
10 -> 5 -> 3 -> 1), each convolution followed by batch normalisation and a ReLU, then the
class head and the box head as 1x1 convolutions. A window's output depends on its own 32x32
pixels and nothing else, so run over a band of ``32 + 4k`` by ``32 + 4j`` pixels the same
network gives every window at stride 4 (its output stride: the two poolings) in one pass,
each exactly as if it had been scored alone (OverFeat; Li, Zhao & Wang 2014). Max-pooling's
pairs line up for windows at multiples of 4 only, which is why the stride is 4 and not 1.

Its forward pass on 32x32 windows returns ``(logits, deltas)`` as ``(N, C)`` and ``(N, 4)``,
the shapes :mod:`training.detector` trains; :class:`DenseProbabilityHead` keeps the maps
``(N, C, rows, columns)`` and ``(N, 4, rows, columns)`` for export with any band size. Without
the box head (``boxes=False``) it is a classifier: logits only, the shape :mod:`training.train`
trains, so that the detector can start from a classifier of the same layers.
"""
from __future__ import annotations

from mxnet import gluon
from mxnet.gluon import nn

__all__ = ["ValidConvNet", "DenseProbabilityHead", "build_valid_net", "OUTPUT_STRIDE", "WIDTHS"]

#: The windows' spacing in the band's output maps: two 2x2 poolings.
OUTPUT_STRIDE = 4
#: The default widths of the three pairs of convolutions.
WIDTHS = (32, 64, 128)


class ValidConvNet(gluon.HybridBlock):
    """Three pairs of valid 3x3 conv-BN-ReLU layers, max-pooling after the first two pairs,
    then 1x1 convolutions for the class logits (``output``) and, with ``boxes``, the box deltas
    (``box_output``)."""

    def __init__(self, classes: int, widths=WIDTHS, *, boxes: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.boxes = boxes
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            for stage, width in enumerate(widths):
                for _ in range(2):
                    self.features.add(nn.Conv2D(width, 3, 1, 0, use_bias=False), nn.BatchNorm(),
                                      nn.Activation("relu"))
                if stage < len(widths) - 1:
                    self.features.add(nn.MaxPool2D(2, 2))
            self.output = nn.Conv2D(classes, 1)
            if boxes:
                self.box_output = nn.Conv2D(4, 1)

    def maps(self, F, x):
        """The logits' maps over the input, one position per window at stride 4, and with the box
        head the deltas' maps as well: ``(logits, deltas)``."""
        features = self.features(x)
        if not self.boxes:
            return (self.output(features),)
        return self.output(features), self.box_output(features)

    def hybrid_forward(self, F, x):
        flat = [F.flatten(m) for m in self.maps(F, x)]  # a 32x32 window's maps are 1x1
        return tuple(flat) if self.boxes else flat[0]


class DenseProbabilityHead(gluon.HybridBlock):
    """The exported graph: class probabilities (a softmax over the class axis) and, for a detector,
    box deltas, as maps."""

    def __init__(self, net: ValidConvNet, **kwargs):
        super().__init__(**kwargs)
        self.boxes = net.boxes
        with self.name_scope():
            self.net = net

    def hybrid_forward(self, F, x):
        logits, *deltas = self.net.maps(F, x)
        probabilities = F.softmax(logits, axis=1)
        return (probabilities, *deltas) if deltas else probabilities


def build_valid_net(*, classes: int = 3, widths=WIDTHS, boxes: bool = True) -> ValidConvNet:
    """A new, uninitialised padding-free detector (a classifier without ``boxes``) with ``widths``
    for its three pairs of convolutions. Both name their layers alike, so a detector loads a
    classifier's parameters by name."""
    if len(widths) != 3 or min(widths) < 1 or classes < 2:
        raise ValueError(f"need three widths >= 1 and >= 2 classes, got widths={widths}, classes={classes}")
    return ValidConvNet(classes, tuple(widths), boxes=boxes, prefix="validnet_")
