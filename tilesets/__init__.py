"""Labelled 32x32 image sets: CIFAR-10 in its binary format, folder-per-class trees, and
where the shared data lives. Used by the collage generator, training and evaluation."""
from tilesets.labelled import (
    BACKGROUND,
    CIFAR_TO_MODEL,
    FOREGROUND_CLASSES,
    MODEL_CLASSES,
    LabelledImages,
    data_root,
    load_cifar,
    load_image_folder,
)

__all__ = ["BACKGROUND", "CIFAR_TO_MODEL", "FOREGROUND_CLASSES", "MODEL_CLASSES", "LabelledImages", "data_root",
           "load_cifar",
           "load_image_folder"]
