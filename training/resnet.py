"""The CIFAR ResNet of He et al. 2016 ("Deep Residual Learning", section 4.2), in Gluon.

Three stages of ``n`` basic blocks at widths ``w, 2w, 4w`` on 32x32 input, a 3x3 stem
and global average pooling: ``6n + 2`` weighted layers. Depth 20 (n = 3) is the default.
The detector variant adds a second head on the same trunk: a dense layer over the last
stage's whole feature map (which keeps where things are, unlike the pooled vector) that
outputs a box relative to the window (:data:`tiling.box.BOX_ENCODING`).
Reads top to bottom: block, network, probability head, builder.
"""
from __future__ import annotations

from mxnet import gluon
from mxnet.gluon import nn

__all__ = ["BasicBlock", "CifarResNet", "ProbabilityHead", "build_resnet"]


class BasicBlock(gluon.HybridBlock):
    """Two 3x3 conv-BN layers with an identity or a 1x1 projection shortcut."""

    def __init__(self, channels: int, stride: int, project: bool, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(
                nn.Conv2D(channels, 3, stride, 1, use_bias=False),
                nn.BatchNorm(),
                nn.Activation("relu"),
                nn.Conv2D(channels, 3, 1, 1, use_bias=False),
                nn.BatchNorm(),
            )
            self.shortcut = None
            if project:
                self.shortcut = nn.HybridSequential(prefix="")
                self.shortcut.add(nn.Conv2D(channels, 1, stride, use_bias=False), nn.BatchNorm())

    def hybrid_forward(self, F, x):
        residual = x if self.shortcut is None else self.shortcut(x)
        return F.Activation(self.body(x) + residual, act_type="relu")


class CifarResNet(gluon.HybridBlock):
    """Stem, three stages of ``blocks_per_stage`` blocks, pooling, a dense layer of logits.

    With ``boxes``, also a dense layer of 4 box deltas over the last stage's feature map;
    the forward pass then returns ``(logits, deltas)``. The parameter names are the same as
    without, so a classifier's weights initialise a detector's trunk and class head.
    """

    def __init__(self, blocks_per_stage: int, width: int, classes: int, *, boxes: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.boxes = boxes
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            self.features.add(nn.Conv2D(width, 3, 1, 1, use_bias=False), nn.BatchNorm(), nn.Activation("relu"))
            for stage in range(3):
                channels = width * 2**stage
                for i in range(blocks_per_stage):
                    downsample = i == 0 and stage > 0
                    self.features.add(BasicBlock(channels, 2 if downsample else 1, downsample))
            if boxes:
                self.pool = nn.GlobalAvgPool2D()
                self.output = nn.Dense(classes)
                self.box_output = nn.Dense(4)
                # The last stage's map of a 32x32 input is 8x8 at width 4w. Scaling it by one
                # over the square root of its size keeps the dense layer's steps as large as
                # the class head's, instead of thousands of times larger.
                self.box_scale = 1.0 / (4 * width * 8 * 8) ** 0.5
            else:
                self.features.add(nn.GlobalAvgPool2D())
                self.output = nn.Dense(classes)

    def hybrid_forward(self, F, x):
        if not self.boxes:
            return self.output(self.features(x))
        maps = self.features(x)
        return self.output(self.pool(maps)), self.box_output(F.flatten(maps) * self.box_scale)


class ProbabilityHead(gluon.HybridBlock):
    """Wraps a logits network so that the exported graph outputs probabilities (and boxes, if it has them)."""

    def __init__(self, net: CifarResNet, **kwargs):
        super().__init__(**kwargs)
        self.boxes = net.boxes
        with self.name_scope():
            self.net = net

    def hybrid_forward(self, F, x):
        if not self.boxes:
            return F.softmax(self.net(x), axis=-1)
        logits, deltas = self.net(x)
        return F.softmax(logits, axis=-1), deltas


def build_resnet(depth: int = 20, *, classes: int = 3, width: int = 16, boxes: bool = False) -> CifarResNet:
    """A new, uninitialised CIFAR ResNet of ``depth = 6n + 2`` layers (with a box head when ``boxes``)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"`depth` must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
    if width < 1 or classes < 2:
        raise ValueError(f"`width` must be >= 1 and `classes` >= 2, got width={width}, classes={classes}")
    return CifarResNet((depth - 2) // 6, width, classes, boxes=boxes, prefix="resnet_")
