"""The runtime layer: the only place that imports onnxruntime.

``infer.run_onnx`` is the minimal call that runs a model once (validation, tests); ``fuse`` wraps
ORT's transformer optimizer, ``float16`` its fp16 converter and ``ort_quant`` its quantizer (the passes'
way to ORT's offline tools); ``spec`` says how to run a model (providers, threads: data, no
onnxruntime), ``session`` builds sessions from it; ``host_facts`` and ``hardware`` describe the machine,
``host`` profiles it.
"""
