"""The networks the trainers build, by architecture name: the CIFAR ResNet, and the padding-free
network (:mod:`training.valid_net`) that scores a whole band exactly at its output stride.

The classifier trainer and the detector trainer build the same layers under the same names,
so a detector starts from a classifier of its own architecture.
"""
from __future__ import annotations

__all__ = ["ARCHITECTURES", "check_architecture", "build_network", "network_name", "dense_stride"]

#: The networks a trainer can build.
ARCHITECTURES = ("resnet", "valid")


def check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"`architecture` must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")


def build_network(architecture: str, *, classes: int, depth: int, width: int, widths: tuple, boxes: bool):
    """A new, uninitialised Gluon network: the ResNet at ``depth`` and ``width``, or the padding-free
    network at ``widths``; with ``boxes``, the box head as well (a detector)."""
    check_architecture(architecture)
    if architecture == "valid":
        from training.valid_net import build_valid_net

        return build_valid_net(classes=classes, widths=widths, boxes=boxes)
    from training.resnet import build_resnet

    return build_resnet(depth, classes=classes, width=width, boxes=boxes)


def network_name(architecture: str, *, depth: int, widths: tuple) -> str:
    """The start of a bundle's name: ``cifar-resnet20`` or ``validnet-32-64-128``."""
    return f"validnet-{'-'.join(map(str, widths))}" if architecture == "valid" else f"cifar-resnet{depth}"


def dense_stride(architecture: str) -> int | None:
    """The output stride the bundle declares (``dense``), or None for a network with padding."""
    if architecture != "valid":
        return None
    from training.valid_net import OUTPUT_STRIDE

    return OUTPUT_STRIDE
