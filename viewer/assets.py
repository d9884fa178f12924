"""The viewer's files, read once on the driver and sent to the executors with the run's
context: its page template (``page.html`` beside this module) and OpenSeadragon's script.

OpenSeadragon comes from the npm registry: ``make setup`` installs it into the checkout's
``.tools/`` (``cluster_scripts/npm-package.json`` pins it), and the wheel carries a copy
(``core/packaged/openseadragon/``, copied by setup.py). Each run copies it beside its tiles,
so that a viewer opens offline, from a disk or from the lake.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from core.errors import TilescanError
from core.project import PACKAGED, project_path

__all__ = ["ViewerAssets", "load_assets", "openseadragon_path", "SCRIPT_NAME", "OPENSEADRAGON_IN_CHECKOUT"]

SCRIPT_NAME = "openseadragon.min.js"
#: Where npm puts it in the checkout (relative to the checkout's root).
OPENSEADRAGON_IN_CHECKOUT = os.path.join(".tools", "node_modules", "openseadragon", "build", "openseadragon",
                                         SCRIPT_NAME)
_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")


@dataclass(frozen=True)
class ViewerAssets:
    """The page template (text with ``{{NAME}}`` slots) and OpenSeadragon's script (bytes)."""

    template: str = field(repr=False)
    script: bytes = field(repr=False)


def openseadragon_path() -> str | None:
    """The checkout's OpenSeadragon, else the wheel's copy; None when neither is there."""
    for path in (project_path(OPENSEADRAGON_IN_CHECKOUT), os.path.join(PACKAGED, "openseadragon", SCRIPT_NAME)):
        if os.path.isfile(path):
            return path
    return None


def load_assets() -> ViewerAssets:
    """The viewer's files, or one line saying how to get them.

    Raises
    ------
    TilescanError
        When OpenSeadragon is not installed (a checkout before ``make setup``).
    """
    script = openseadragon_path()
    if script is None:
        raise TilescanError("the viewer's OpenSeadragon is not installed (make setup installs it from npm into "
                            ".tools/); pass --no-viewer to score without the viewer")
    with open(_TEMPLATE, encoding="utf-8") as fh, open(script, "rb") as js:
        return ViewerAssets(fh.read(), js.read())
