"""The engine interface: uint8 windows in, class probabilities out."""
from __future__ import annotations

import numpy as np

from core.bundle import ModelBundle

__all__ = ["Engine"]


class Engine:
    """Base of all engines.

    Subclasses name the bundle files they need in ``required_files`` and implement
    :meth:`forward` on normalised float32 input; :meth:`predict` normalises with the
    bundle's spec (:meth:`core.bundle.ModelSpec.normalise`) and checks the output's shape.
    """

    name = "base"
    required_files: tuple[str, ...] = ()

    def __init__(self, bundle: ModelBundle, *, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"`threads` must be >= 1, got {threads}")
        self.spec = bundle.spec
        self.threads = threads

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of windows.

        Parameters
        ----------
        windows : numpy.ndarray
            ``(N, 3, S, S)`` uint8 RGB, ``S`` the model's input size. May be a
            non-contiguous view.

        Returns
        -------
        numpy.ndarray
            ``(N, len(classes))`` float32, columns in the spec's class order.
        """
        size = self.spec.size
        if windows.dtype != np.uint8 or windows.ndim != 4 or windows.shape[1:] != (3, size, size):
            raise ValueError(
                f"windows must be uint8 (N, 3, {size}, {size}), got {windows.dtype} {windows.shape}"
            )
        probs = np.asarray(self.forward(self.spec.normalise(windows)), dtype=np.float32)
        expected = (len(windows), len(self.spec.classes))
        if probs.shape != expected:
            raise ValueError(f"engine {self.name} returned shape {probs.shape}, expected {expected}")
        return probs

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The network alone on ``(N, 3, S, S)`` float32 input already normalised."""
        raise NotImplementedError
