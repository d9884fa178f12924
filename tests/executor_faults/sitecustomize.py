"""Makes the Python it starts with answer a little off: ONNX Runtime's first output moved by 0.01.

tests/test_engine_checks.py starts Spark's Python workers with this folder on PYTHONPATH and
TILESCAN_TEST_ENGINES_OFF set, where Python imports this file as ``sitecustomize`` as it
starts: the executors' engines then disagree with the model's reference while the driver's
agrees, as on an executor of another CPU. Anywhere else it does nothing (tests/conftest.py
also keeps pytest from collecting it).
"""
import os

if __name__ == "sitecustomize" and os.environ.get("TILESCAN_TEST_ENGINES_OFF") == "1":
    import onnxruntime

    _run = onnxruntime.InferenceSession.run

    def _a_little_off(self, output_names, input_feed, run_options=None):
        outputs = _run(self, output_names, input_feed, run_options)
        return [outputs[0] + 0.01, *outputs[1:]]

    onnxruntime.InferenceSession.run = _a_little_off
