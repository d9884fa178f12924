"""Where the checkout is: the one place that knows the project's root folder.

The defaults that live in the checkout (the bundled model, Spark's ``conf/``, the working
folder, the shared data beside it) are found from here, whatever the working directory.
"""
from __future__ import annotations

import os

__all__ = ["ROOT", "project_path", "project_relative"]

#: The checkout's root: the folder that holds the project's packages.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project_path(*parts: str) -> str:
    """A path inside the checkout, e.g. ``project_path("models", "default")``."""
    return os.path.join(ROOT, *parts)


def project_relative(path: str) -> str:
    """``path`` relative to the checkout when it lies inside it, else as given: a bundle's
    record and card must not name the folders of the machine that trained it.

    >>> project_relative(project_path("work", "run"))
    'work/run'
    >>> project_relative("/elsewhere/run")
    '/elsewhere/run'
    """
    relative = os.path.relpath(os.path.abspath(path), ROOT)
    inside = relative != os.pardir and not relative.startswith(os.pardir + os.sep)
    return relative if inside else path
