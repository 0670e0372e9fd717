"""The runtime layer: the only place that imports onnxruntime.

``infer.run_onnx`` is the minimal call that runs a model once (validation, tests); ``fuse`` wraps
ORT's transformer optimizer; ``session`` builds sessions from device profiles for benchmarks.
"""
