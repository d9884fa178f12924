"""Doctest collection over every package: modules that import MXNet at the top (training's
networks and export) are left out where MXNet is not installed (the current-packages test line)."""
import importlib.util

collect_ignore = [] if importlib.util.find_spec("mxnet") else ["training/export.py", "training/resnet.py",
                                                                   "training/valid_net.py"]
