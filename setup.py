"""The build's one addition to setup.cfg: the wheel carries what a run needs from the checkout.

The default model (``models/default``), Spark's quiet logging configuration (``conf/``) and the
viewer's OpenSeadragon (from npm, in ``.tools/``) are copied into the built ``core`` package, as
``core/packaged/``, so that an installed tilescan
runs at README's defaults outside the checkout (``core.project.resource_path`` finds them).
Nothing else from the checkout is copied, and nothing from ``../shared``.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

#: Folders of the checkout the wheel carries, under core/packaged/ (see core/project.py).
PACKAGED = ("models/default", "conf")
#: Files the wheel carries, under core/packaged/: OpenSeadragon, which make setup installs from npm
#: and every run's viewer copies (viewer/assets.py finds it there).
PACKAGED_FILES = {".tools/node_modules/openseadragon/build/openseadragon/openseadragon.min.js":
                  "openseadragon/openseadragon.min.js"}


class BuildWithPackagedData(build_py):
    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        for folder in PACKAGED:
            target = os.path.join(self.build_lib, "core", "packaged", folder)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(os.path.join(here, folder), target,
                            ignore=shutil.ignore_patterns("checkpoints", "__pycache__"))
        if getattr(self, "editable_mode", False):  # an editable install runs from the checkout itself
            return
        for source, name in PACKAGED_FILES.items():
            if not os.path.isfile(os.path.join(here, source)):
                raise SystemExit(f"error: {source} is missing: run make setup (npm install) before building")
            target = os.path.join(self.build_lib, "core", "packaged", name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(here, source), target)


setup(cmdclass={"build_py": BuildWithPackagedData})
