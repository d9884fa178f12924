"""The build's one addition to setup.cfg: the wheel carries what a run needs from the checkout.

The default model (``models/default``) and Spark's quiet logging configuration (``conf/``) are
copied into the built ``core`` package, as ``core/packaged/``, so that an installed tilescan
runs at README's defaults outside the checkout (``core.project.resource_path`` finds them).
Nothing else from the checkout is copied, and nothing from ``../shared``.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

#: Folders of the checkout the wheel carries, under core/packaged/ (see core/project.py).
PACKAGED = ("models/default", "conf")


class BuildWithPackagedData(build_py):
    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        for folder in PACKAGED:
            target = os.path.join(self.build_lib, "core", "packaged", folder)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(os.path.join(here, folder), target,
                            ignore=shutil.ignore_patterns("checkpoints", "__pycache__"))


setup(cmdclass={"build_py": BuildWithPackagedData})
