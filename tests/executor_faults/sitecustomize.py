"""Makes the Python it starts with answer a little off (ONNX Runtime's first output moved by 0.01),
crash as it opens a given picture, or score slowly.

tests/test_engine_checks.py and tests/test_hardening2.py start Spark's Python workers with this
folder on PYTHONPATH and TILESCAN_TEST_ENGINES_OFF (or TILESCAN_TEST_CRASH_ON) set, where Python
imports this file as ``sitecustomize`` as it starts: the executors' engines then disagree with
the model's reference while the driver's agrees, as on an executor of another CPU (or a worker
dies). tests/test_progress.py sets TILESCAN_TEST_SLOW_BATCH_S: each batch then takes that many
seconds more, whatever the CPU, so that a task runs long enough to be seen going. Anywhere else
it does nothing (tests/conftest.py also keeps pytest from collecting it).
"""
import os

if __name__ == "sitecustomize" and os.environ.get("TILESCAN_TEST_ENGINES_OFF") == "1":
    import onnxruntime

    _run = onnxruntime.InferenceSession.run

    def _a_little_off(self, output_names, input_feed, run_options=None):
        outputs = _run(self, output_names, input_feed, run_options)
        return [outputs[0] + 0.01, *outputs[1:]]

    onnxruntime.InferenceSession.run = _a_little_off

if __name__ == "sitecustomize" and os.environ.get("TILESCAN_TEST_CRASH_ON"):
    # A Python worker that dies as it opens a picture whose path holds this text, as one the OOM
    # killer or a decoder's segfault ends: no exception, no goodbye.
    import builtins

    _open, _crash_on = builtins.open, os.environ["TILESCAN_TEST_CRASH_ON"]
    _once = os.environ.get("TILESCAN_TEST_CRASH_MARKER")  # with it, only the first worker to get there dies

    def _open_or_crash(file, *args, **kwargs):
        if _crash_on in str(file):
            if _once is None:
                os._exit(139)
            try:
                os.close(os.open(_once, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os._exit(139)
        return _open(file, *args, **kwargs)

    builtins.open = _open_or_crash

if __name__ == "sitecustomize" and os.environ.get("TILESCAN_TEST_SLOW_BATCH_S"):
    import time

    import onnxruntime

    _run_fast, _pause = onnxruntime.InferenceSession.run, float(os.environ["TILESCAN_TEST_SLOW_BATCH_S"])

    def _slowly(self, *args, **kwargs):
        time.sleep(_pause)
        return _run_fast(self, *args, **kwargs)

    onnxruntime.InferenceSession.run = _slowly
