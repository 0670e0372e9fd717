"""Which layout of an int8 projection runs faster: ``DynamicQuantizeMatMul`` as the native int8 writer writes it
(int8 weight, per-column scales, bias, no zero point) or ORT's ``quantize_dynamic`` layout
(``DynamicQuantizeLinear`` + ``MatMulInteger`` with per-column int8 zero points + ``Cast`` + scale ``Mul``s + bias
``Add``), the same weights, one thread, timed interleaved (400 runs each, median after 50) at 8 and 128 tokens,
with the op histogram of the graph ONNX Runtime runs for each (default optimization level).

Usage: ``.venv/bin/python benchmarks/int8_layout.py [-o benchmarks/results/int8_layout.json]``
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "int8_layout.json"
SHAPES = ((384, 1536), (768, 3072))  # MiniLM's and BERT-base's FFN intermediate


def _model(layout: str, q, s, bias, k: int):
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    n = q.shape[1]
    inits = [nh.from_array(q, "Wq"), nh.from_array(s, "ws"), nh.from_array(bias, "b")]
    if layout == "dynamic_quantize_matmul":
        nodes = [h.make_node("DynamicQuantizeMatMul", ["a", "Wq", "ws", "", "b"], ["y"], domain="com.microsoft")]
    else:
        inits.append(nh.from_array(np.zeros(n, np.int8), "wzp"))
        nodes = [h.make_node("DynamicQuantizeLinear", ["a"], ["aq", "as", "azp"]),
                 h.make_node("MatMulInteger", ["aq", "Wq", "azp", "wzp"], ["yi"]),
                 h.make_node("Cast", ["yi"], ["yf"], to=T.FLOAT),
                 h.make_node("Mul", ["as", "ws"], ["sc"]),
                 h.make_node("Mul", ["yf", "sc"], ["ys"]),
                 h.make_node("Add", ["ys", "b"], ["y"])]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("a", T.FLOAT, [1, "s", k])],
                     [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    m.ir_version = 9
    return m


def measure(k: int, n: int, runs: int = 400) -> dict:
    import onnx
    import onnxruntime as ort

    rs = np.random.default_rng(0)
    w = rs.standard_normal((k, n)).astype(np.float32) * 0.05
    bias = rs.standard_normal(n).astype(np.float32)
    s = (np.abs(w).max(0) / 127).astype(np.float32)
    q = np.clip(np.rint(w / s), -127, 127).astype(np.int8)
    sess, hist = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("dynamic_quantize_matmul", "ort_quantize_dynamic_layout"):
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            so.optimized_model_filepath = f"{tmp}/{layout}.onnx"
            ort.InferenceSession(_model(layout, q, s, bias, k).SerializeToString(), so,
                                 providers=["CPUExecutionProvider"])
            hist[layout] = dict(collections.Counter(x.op_type for x in onnx.load(f"{tmp}/{layout}.onnx").graph.node))
            run = ort.SessionOptions()
            run.intra_op_num_threads = 1
            sess[layout] = ort.InferenceSession(_model(layout, q, s, bias, k).SerializeToString(), run,
                                                providers=["CPUExecutionProvider"])
    out: dict = {"shape_in_out": [k, n], "ort_runs_extended": hist}
    for seq in (8, 128):
        a = rs.standard_normal((1, seq, k)).astype(np.float32)
        t: dict[str, list[float]] = {x: [] for x in sess}
        for _ in range(runs):
            for name, x in sess.items():
                t0 = time.perf_counter()
                x.run(None, {"a": a})
                t[name].append(time.perf_counter() - t0)
        ys = {name: x.run(None, {"a": a})[0] for name, x in sess.items()}
        row = {name: {"p50_us": round(float(np.median(v[50:])) * 1e6, 1), "min_us": round(float(np.min(v)) * 1e6, 1)}
               for name, v in t.items()}
        row["max_abs_diff"] = float(np.abs(ys["dynamic_quantize_matmul"] - ys["ort_quantize_dynamic_layout"]).max())
        out[f"seq{seq}"] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(RESULTS))
    args = ap.parse_args()
    run = stamp()
    import onnxruntime as ort

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    report = {"created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "cpu": cpu, "logical_cores": os.cpu_count(), "onnxruntime": ort.__version__, "threads": 1,
              "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    report["shapes"] = [measure(k, n) for k, n in SHAPES]
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["run"] = stamp(run)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["shapes"]))


if __name__ == "__main__":
    main()
