"""Where the checkout is: the one place that knows the project's root folder.

The defaults that live in the checkout (the bundled model, Spark's ``conf/``, the working
folder, the shared data beside it) are found from here, whatever the working directory.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess

__all__ = ["ROOT", "PACKAGED", "project_path", "resource_path", "project_relative", "checkout_commit",
           "installed_versions", "version_line"]

#: The checkout's root: the folder that holds the project's packages.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project_path(*parts: str) -> str:
    """A path inside the checkout, e.g. ``project_path("models", "default")``."""
    return os.path.join(ROOT, *parts)


#: What an installed wheel carries of the checkout (setup.py copies it there): the default
#: model and Spark's logging configuration.
PACKAGED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "packaged")


def resource_path(*parts: str) -> str:
    """A file or folder a run needs from the checkout (``"models", "default"`` or ``"conf"``):
    the checkout's own, else the copy an installed wheel carries.

    >>> resource_path("conf") == project_path("conf")  # in a checkout
    True
    """
    in_checkout = project_path(*parts)
    return in_checkout if os.path.exists(in_checkout) else os.path.join(PACKAGED, *parts)


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


def checkout_commit() -> str | None:
    """The git commit of the code running, when it runs from a checkout."""
    try:
        done = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def installed_versions(names) -> dict:
    """Python's version and each named distribution's (``None`` when not installed)."""
    return {"python": platform.python_version(), **{name: _installed_version(name) for name in names}}


@functools.lru_cache(maxsize=None)
def _installed_version(name: str) -> str | None:
    # Once per process: the code imported is the code that runs, even if another version is
    # installed meanwhile; and each lookup scans the environment's metadata (about a millisecond).
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def version_line() -> str:
    """``tilescan 0.1.0``, with the commit when it runs from a checkout."""
    version = installed_versions(["tilescan"])["tilescan"] or "(not installed)"
    commit = checkout_commit()
    return f"tilescan {version}" + (f" (commit {commit[:12]})" if commit else "")
