"""The engine interface: uint8 windows in, class probabilities (and, for detectors, box deltas) out;
for a network that declares a dense stride, a whole band in, every window of its grid out."""
from __future__ import annotations

import numpy as np

from core.bundle import ModelBundle
from core.errors import TilescanError

__all__ = ["Engine"]


class Engine:
    """Base of all engines.

    A subclass names the bundle files it needs in ``required_files``, the devices it runs
    on in ``devices``, and implements :meth:`forward` on the network's input. Everything
    the model contract asks (:class:`core.contract.ModelSpec`: normalisation, layout,
    dtype, the activation of the output) is done here, the same for every engine, and the
    outputs' shapes are checked. ``**options`` are the engine's own settings; one it does
    not take is refused.
    """

    name = "base"
    required_files: tuple[str, ...] = ()
    #: Device kinds the engine runs on (``"cpu"``; a GPU engine adds ``"cuda"``, as ``cuda:0``).
    devices: tuple[str, ...] = ("cpu",)
    #: Which of the golden batch's tolerances applies (:data:`core.golden.PRECISIONS`).
    precision = "float32"
    #: What :func:`engines.create_engine` found when it checked this engine (``None``: not checked).
    numerics = None
    #: The batch size the network was exported with when its batch axis is fixed; batches
    #: are then cut (and the last padded) to it. ``None``: any batch size.
    fixed_batch: int | None = None

    def __init__(self, bundle: ModelBundle, *, threads: int = 1, device: str = "cpu", **options) -> None:
        if threads < 1:
            raise ValueError(f"`threads` must be >= 1, got {threads}")
        if device.split(":")[0] not in self.devices:
            raise TilescanError(f"engine {self.name} runs on {', '.join(self.devices)}, not {device!r}")
        if options:
            raise TypeError(f"engine {self.name} takes no option {sorted(options)[0]!r}")
        self.spec = bundle.spec
        self.threads = threads
        self.device = device

    @classmethod
    def task_resources(cls, threads: int) -> dict:
        """What one Spark task running this engine needs of its executor: ``{"cpus": threads}``
        here; a GPU engine adds ``"gpus"``."""
        return {"cpus": threads}

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
            ``(N, len(classes))`` float32, columns in the spec's class order: the network's
            first output after the contract's activation (:meth:`core.contract.ModelSpec.activate`).
        deltas : numpy.ndarray or None
            ``(N, 4)`` float32 in :data:`tiling.box.BOX_ENCODING` relative to each window,
            ``None`` for a plain classifier.
        """
        outputs = self.raw_outputs(windows)
        first = np.asarray(outputs[0])
        expected = (len(windows), len(self.spec.classes))
        if first.shape != expected:
            raise ValueError(f"engine {self.name} returned shape {first.shape}, expected {expected}")
        probs = self.spec.activate(first)
        if not self.spec.boxes:
            return probs, None
        if len(outputs) < 2:
            raise ValueError(f"engine {self.name} returned no box output, but the model declares one")
        deltas = np.asarray(outputs[1], dtype=np.float32)
        if deltas.shape != (len(windows), 4):
            raise ValueError(f"engine {self.name} returned boxes of shape {deltas.shape}, expected {(len(windows), 4)}")
        return probs, deltas

    def detect_band(self, band: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Every window of a band at the network's dense stride ``s``, in one pass (a network that
        declares ``dense_stride``; :mod:`engines.dense` checks that it is exact).

        Parameters
        ----------
        band : numpy.ndarray
            ``(3, S + s*j, S + s*k)`` uint8 RGB; may be a non-contiguous view.

        Returns
        -------
        probabilities : numpy.ndarray
            ``(j + 1, k + 1, len(classes))`` float32: at ``[r, c]`` the window at ``(c*s, r*s)``.
        deltas : numpy.ndarray or None
            ``(j + 1, k + 1, 4)`` float32 for a detector, else ``None``.
        """
        size, stride = self.spec.size, self.spec.dense_stride
        if not stride:
            raise ValueError(f"model {self.spec.name} declares no dense stride")
        if band.dtype != np.uint8 or band.ndim != 3 or band.shape[0] != 3 or min(band.shape[1:]) < size or \
                any((side - size) % stride for side in band.shape[1:]):
            raise ValueError(f"a band must be uint8 (3, {size} + {stride}j, {size} + {stride}k), got {band.dtype} "
                             f"{band.shape}")
        rows, columns = ((side - size) // stride + 1 for side in band.shape[1:])
        outputs = self._forward_list(self.spec.network_input(band[None]))
        maps = [np.asarray(out) for out in outputs[:2 if self.spec.boxes else 1]]
        for out, depth in zip(maps, (len(self.spec.classes), 4)):
            if out.shape != (1, depth, rows, columns):
                raise ValueError(f"engine {self.name} returned maps of shape {out.shape} for a band of "
                                 f"{band.shape[1]}x{band.shape[2]}, expected {(1, depth, rows, columns)}")
        probs = self.spec.activate(maps[0][0].reshape(len(self.spec.classes), -1).T)
        probs = probs.reshape(rows, columns, -1)
        if not self.spec.boxes:
            return probs, None
        return probs, np.ascontiguousarray(maps[1][0].transpose(1, 2, 0), dtype=np.float32)

    def raw_outputs(self, windows: np.ndarray) -> list:
        """The network's outputs as it gives them (before the contract's activation) for
        ``(N, 3, S, S)`` uint8 RGB windows, cut into batches of :attr:`fixed_batch` if it has one;
        a dense network's 1x1 maps as rows, ``(N, C)``."""
        size = self.spec.size
        if windows.dtype != np.uint8 or windows.ndim != 4 or windows.shape[1:] != (3, size, size):
            raise ValueError(
                f"windows must be uint8 (N, 3, {size}, {size}), got {windows.dtype} {windows.shape}"
            )
        batch = self.spec.network_input(windows)
        fixed = self.fixed_batch
        if fixed is None or len(batch) == fixed:
            return self._window_rows(self._forward_list(batch))
        parts = []
        for start in range(0, len(batch), fixed):
            chunk = batch[start:start + fixed]
            if len(chunk) < fixed:  # the network takes exactly `fixed` windows: pad the last cut
                chunk = np.concatenate([chunk, np.zeros((fixed - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            parts.append([np.asarray(out)[:min(fixed, len(batch) - start)]
                          for out in self._window_rows(self._forward_list(chunk))])
        return [np.concatenate(column) for column in zip(*parts)]

    def _window_rows(self, outputs: list) -> list:
        """A dense network's outputs on single windows, 1x1 maps, as one row per window."""
        if not self.spec.dense_stride:
            return outputs
        return [out.reshape(out.shape[:2]) if out.ndim == 4 and out.shape[2:] == (1, 1) else out
                for out in map(np.asarray, outputs)]

    def _forward_list(self, batch: np.ndarray) -> list:
        outputs = self.forward(batch)
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    def forward(self, batch: np.ndarray):
        """The network alone on its input (:meth:`core.contract.ModelSpec.network_input`).

        Returns its outputs in the model's order: the class scores, then box deltas if any
        (one array, or a list).
        """
        raise NotImplementedError
