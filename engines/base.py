"""The engine interface: uint8 windows in, class probabilities (and, for detectors, box deltas) out."""
from __future__ import annotations

import numpy as np

from core.bundle import ModelBundle

__all__ = ["Engine"]


class Engine:
    """Base of all engines.

    Subclasses name the bundle files they need in ``required_files`` and implement
    :meth:`forward` on normalised float32 input; :meth:`predict` and :meth:`detect`
    normalise with the bundle's spec (:meth:`core.bundle.ModelSpec.normalise`) and check
    the outputs' shapes.
    """

    name = "base"
    required_files: tuple[str, ...] = ()
    #: Which of the golden batch's tolerances applies (:data:`core.golden.PRECISIONS`).
    precision = "float32"
    #: What :func:`engines.create_engine` found when it checked this engine (``None``: not checked).
    numerics = None

    def __init__(self, bundle: ModelBundle, *, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"`threads` must be >= 1, got {threads}")
        self.spec = bundle.spec
        self.threads = threads

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of windows: ``(N, len(classes))`` float32 (see :meth:`detect`)."""
        return self.detect(windows)[0]

    def detect(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities and, when the model has a box head, box deltas for a batch of windows.

        Parameters
        ----------
        windows : numpy.ndarray
            ``(N, 3, S, S)`` uint8 RGB, ``S`` the model's input size. May be a
            non-contiguous view.

        Returns
        -------
        probabilities : numpy.ndarray
            ``(N, len(classes))`` float32, columns in the spec's class order.
        deltas : numpy.ndarray or None
            ``(N, 4)`` float32 in :data:`tiling.box.BOX_ENCODING` relative to each window,
            ``None`` for a plain classifier.
        """
        size = self.spec.size
        if windows.dtype != np.uint8 or windows.ndim != 4 or windows.shape[1:] != (3, size, size):
            raise ValueError(
                f"windows must be uint8 (N, 3, {size}, {size}), got {windows.dtype} {windows.shape}"
            )
        outputs = self.forward(self.spec.normalise(windows))
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        probs = np.asarray(outputs[0], dtype=np.float32)
        expected = (len(windows), len(self.spec.classes))
        if probs.shape != expected:
            raise ValueError(f"engine {self.name} returned shape {probs.shape}, expected {expected}")
        if not self.spec.boxes:
            return probs, None
        if len(outputs) < 2:
            raise ValueError(f"engine {self.name} returned no box output, but the model declares one")
        deltas = np.asarray(outputs[1], dtype=np.float32)
        if deltas.shape != (len(windows), 4):
            raise ValueError(f"engine {self.name} returned boxes of shape {deltas.shape}, expected {(len(windows), 4)}")
        return probs, deltas

    def forward(self, batch: np.ndarray):
        """The network alone on ``(N, 3, S, S)`` float32 input already normalised.

        Returns its outputs in the model's order: probabilities, then box deltas if any (one
        array, or a list).
        """
        raise NotImplementedError
