"""Training the car/boat classifier: CIFAR-10 data, canvases, the ResNet, export.

Training runs on MXNet, which is an extra (``pip install 'tilescan[train]'``): its last
release imports only with numpy < 1.24 on Python <= 3.11, which scoring need not accept.
"""
import os

from core.errors import TilescanError

__all__ = ["require_mxnet", "MXNET_MISSING"]

MXNET_MISSING = ("training needs MXNet 1.9.1, which is not installed here: pip install 'tilescan[train]' "
                 "(Python 3.10 or 3.11, numpy < 1.24; scoring needs none of it)")


def require_mxnet() -> None:
    """Raise the one-line :class:`TilescanError` saying how to install MXNet, when it cannot be imported.

    Called by the trainers before MXNet is first imported: unless told otherwise, its OpenMP pool
    then uses every core this process may run on. Left to itself it took one of two here, and
    training ran 1.6 times slower."""
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    try:
        import mxnet  # noqa: F401
    except ImportError:
        raise TilescanError(MXNET_MISSING) from None
