"""The layout holds: each package imports only what docs/architecture.md allows, no module
uses another's private names, geometry stays pure, and executors get only what they run."""
from __future__ import annotations

import ast
import configparser
import io
import os
import pickle
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from core.project import ROOT
from scoring.shipping import EXECUTOR_PACKAGES, executor_modules, executor_zip

PACKAGES = ("app", "benchmarks", "bundling", "collage", "core", "engines", "evaluation", "localservices", "pixels",
            "scoring", "tilesets", "tiling", "training", "viewer")
#: What each package may import from the others (docs/architecture.md); app may import anything.
ALLOWED = {
    "tiling": set(),
    "core": {"tiling"},  # the bundle declares the box encoding tiling defines
    "engines": {"core"},
    "pixels": {"core"},
    "tilesets": {"core"},
    "viewer": {"core", "pixels"},
    "scoring": {"core", "engines", "pixels", "tiling", "viewer"},
    "collage": {"core", "pixels", "tilesets", "tiling"},
    "evaluation": {"collage", "core", "pixels", "scoring", "tilesets", "tiling"},
    "training": {"collage", "core", "engines", "pixels", "tilesets", "tiling"},
    "bundling": {"core", "engines", "evaluation", "pixels", "scoring", "tiling", "training"},
    "localservices": {"core"},
    "benchmarks": set(PACKAGES) - {"app"},
}


def project_files(packages=PACKAGES):
    for package in packages:
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in sorted(names):
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(folder, name), ROOT)


def parse(path: str) -> ast.Module:
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        return ast.parse(fh.read(), filename=path)


def imported_modules(tree: ast.Module) -> list[tuple[str, int]]:
    """``(module, line)`` of every import statement, those inside functions included."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, node.lineno))
    return found


def test_packages_import_only_what_the_architecture_allows():
    wrong = []
    for path in project_files():
        package = path.split(os.sep)[0]
        for module, line in imported_modules(parse(path)):
            top = module.split(".")[0]
            if top == "tests":  # nothing depends on the tests: what they share with others is in localservices
                wrong.append(f"{path}:{line} imports {module}")
            elif package != "app" and top in PACKAGES and top != package and top not in ALLOWED[package]:
                if package == "benchmarks" and module == "app.cli":  # the one logging set-up, not an entry point
                    continue
                wrong.append(f"{path}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def _private_names_defined() -> set[str]:
    """Private names the project defines: functions, classes, module globals and attributes."""
    names = set()
    for path in project_files():
        for node in ast.walk(parse(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_module_uses_another_modules_private_names():
    private = _private_names_defined()
    wrong = []
    for path in project_files((*PACKAGES, "tests")):
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                wrong += [f"{path}:{node.lineno} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
            elif (isinstance(node, ast.Attribute) and node.attr in private
                  and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                wrong.append(f"{path}:{node.lineno} uses .{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_every_package_is_checked_and_runs_its_doctests():
    found = {name for name in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, name, "__init__.py"))}
    assert found - {"tests"} == set(PACKAGES), "a package is missing from PACKAGES here, or one is listed that is gone"
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    testpaths = config["tool:pytest"]["testpaths"].split()
    assert "--doctest-modules" in config["tool:pytest"]["addopts"].split()
    assert set(testpaths) == {"tests", *PACKAGES}, "setup.cfg's testpaths leave a package's doctests out"


def test_tiling_imports_only_numpy_and_the_standard_library():
    # What `import tiling` adds to a process that has imported numpy (and what numpy brings).
    code = ("import sys, numpy; before = set(sys.modules); import tiling; "
            "print('\\n'.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    added = set(done.stdout.split())
    assert "tiling" in added
    outside = added - set(sys.stdlib_module_names) - {"tiling"}
    assert not outside, f"import tiling also loaded {sorted(outside)}"


@pytest.mark.parametrize("engine_module", ["engines.onnx_engine", "engines.mxnet_engine"])
def test_executor_zip_holds_the_executor_closure(engine_module):
    modules = executor_modules(engine_module)
    assert {"scoring.executor", engine_module, "tiling.strips"} <= set(modules)
    assert {m.split(".")[0] for m in modules} <= set(EXECUTOR_PACKAGES)
    # Executors score bands and finish pictures (merge, overlay, outputs); planning, the Spark
    # job itself and the command-line settings stay on the driver.
    assert {"scoring.merge", "scoring.finish", "pixels.bands"} <= set(modules)
    driver_only = {"scoring.pipeline", "scoring.job", "scoring.params", "scoring.inputs", "scoring.api",
                   "scoring.shipping"}
    assert not driver_only & set(modules)
    with zipfile.ZipFile(io.BytesIO(executor_zip(engine_module))) as archive:
        names = sorted(archive.namelist())
    assert len(names) == len(modules)
    assert all(n.endswith(".py") for n in names)


def test_executor_zip_is_built_again_only_when_the_code_changes(tmp_path, monkeypatch):
    import shutil

    from scoring import shipping

    for package in EXECUTOR_PACKAGES:
        shutil.copytree(os.path.join(shipping.ROOT, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(shipping, "ROOT", str(tmp_path))
    first = executor_zip("engines.onnx_engine")
    assert executor_zip("engines.onnx_engine") is first
    with open(tmp_path / "tiling" / "strips.py", "a") as fh:
        fh.write("\nCHANGED = True\n")
    changed = executor_zip("engines.onnx_engine")
    assert changed != first
    with zipfile.ZipFile(io.BytesIO(changed)) as archive:
        assert archive.read("tiling/strips.py").endswith(b"CHANGED = True\n")


# An executor's Python worker: no project checkout, no editable install, only the shipped zip
# and the installed third-party packages. It runs both of a job's stages as Spark tasks
# would: reads and scores the bands of one picture, then finishes and commits the picture.
_EXECUTOR = """
import pickle, sys
zip_path, site, inputs = sys.argv[1:4]
sys.path[:0] = [zip_path, site]  # -S: site-packages without its .pth files (the editable finder)
bundle, image, out = pickle.load(open(inputs, "rb"))

class Counter:
    def add(self, n):
        pass

from scoring.executor import BandScorer, PictureFinisher, probe_picture
from scoring.finish import PictureJob, RunContext
from scoring.records import BandSettings
from tiling import WindowGrid
from tiling.plan import plan_tasks

info = probe_picture(image, window=32, max_pixels=10**8, storage_options=None)
grid = WindowGrid(info.height, info.width, 32, 16)
tasks = plan_tasks([grid], 3)
settings = BandSettings(engine="onnxruntime", window=32, stride=16, edge="align", batch_size=16, floor=0.0)
scorer = BandScorer(lambda: bundle, bundle.sha256, settings, {0: info}, storage_options=None, counter=Counter())
payloads = list(scorer(tasks))
import gc
assert gc.get_freeze_count() > 0  # what the worker keeps is out of PySpark's collections between tasks
classes = bundle.spec.classes
context = RunContext(classes=classes, background=bundle.spec.background, thresholds={c: 0.5 for c in classes},
                     merge="nms", merge_iou=0.3, keep=0.0, colors={}, window=32, overwrite=False,
                     run_id="zip", manifest={})
job = PictureJob(0, "small", info, out, grid.n_windows, len(payloads))
[summary] = PictureFinisher({0: job}, context, Counter())([(0, [p for _, p in payloads])])
assert summary.status == "scored", summary
project = {"core", "engines", "pixels", "scoring", "tiling", "viewer", "collage", "evaluation", "training", "tilesets",
           "app"}
print("\\n".join(sorted(m for m in sys.modules if m.split(".")[0] in project)))
"""


def test_an_executor_runs_from_the_zip_and_imports_all_of_it(tmp_path, random_bundle, small_image):
    zip_path = tmp_path / "executor.zip"
    zip_path.write_bytes(executor_zip("engines.onnx_engine"))
    inputs = tmp_path / "inputs.pickle"
    out = tmp_path / "run"
    inputs.write_bytes(pickle.dumps((random_bundle.subset(("onnx",)), str(small_image), str(out))))
    done = subprocess.run([sys.executable, "-S", "-c", _EXECUTOR, str(zip_path), sysconfig.get_paths()["purelib"],
                           str(inputs)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "_SUCCESS").exists() and (out / "manifest.json").exists()
    imported = set(done.stdout.split())
    with zipfile.ZipFile(zip_path) as archive:
        shipped = {name[:-3].replace("/", ".").removesuffix(".__init__") for name in archive.namelist()}
    assert imported == shipped, f"shipped but unused: {sorted(shipped - imported)}; used: {sorted(imported - shipped)}"
