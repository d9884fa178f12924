"""The engine interface: uint8 windows in, class probabilities out."""
from __future__ import annotations

import numpy as np

from scoring.bundle import ModelBundle

__all__ = ["Engine"]


class Engine:
    """Base of all engines.

    Subclasses name the bundle files they need in ``required_files`` and implement
    :meth:`_forward` on normalised float32 input; :meth:`predict` does the normalisation
    from the bundle's spec and checks the output's shape.
    """

    name = "base"
    required_files: tuple[str, ...] = ()

    def __init__(self, bundle: ModelBundle, *, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"`threads` must be >= 1, got {threads}")
        self.spec = bundle.spec
        self.threads = threads
        std = np.asarray(self.spec.std, dtype=np.float32)
        mean = np.asarray(self.spec.mean, dtype=np.float32)
        # (x/255 - mean)/std folded into one multiply-add per pixel.
        self._scale = (1.0 / (255.0 * std)).reshape(1, 3, 1, 1)
        self._offset = (-mean / std).reshape(1, 3, 1, 1)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of windows.

        Parameters
        ----------
        windows : numpy.ndarray
            ``(N, 3, S, S)`` uint8, channels in the model's ``channel_order``, ``S`` the
            model's input size. May be a non-contiguous view.

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
        batch = windows.astype(np.float32)
        batch *= self._scale
        batch += self._offset
        probs = np.asarray(self._forward(batch), dtype=np.float32)
        expected = (len(windows), len(self.spec.classes))
        if probs.shape != expected:
            raise ValueError(f"engine {self.name} returned shape {probs.shape}, expected {expected}")
        return probs

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError
