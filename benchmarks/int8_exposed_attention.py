"""int8 on an export exposing some layers' attention probabilities: per-layer fusion (both engines) vs the old fallback.

A random MiniLM-shaped BERT (6 layers, hidden 384, 12 heads, FFN 1536, vocab 30522; nothing downloads) is exported
with ``last_hidden_state`` and the probabilities of the layers in ``--exposed`` (default: layer 3) as outputs
(:func:`deploytool.testing.attentions.export_exposing_attentions`). Compared, batch 1, one thread, interleaved run
by run in one process (20 warm-up runs each, then each run in a new random order), median and fastest (the
uncontended cost where other jobs share the CPU) latency per round:

- ``native``: ``Int8Config(engine="native")`` now: QAttention in every layer but the exposed ones, whose Q/K/V/O are
  ``DynamicQuantizeMatMul`` around their fp32 attention core.
- ``ort``: ``Int8Config(engine="ort")`` now: ORT's fused Attention (QAttention) in every layer but the exposed ones,
  which are kept out of ORT's attention fusion (their Q/K/V/O quantized by ORT's quantizer around their fp32 core).
- ``old_fallback``: what either engine wrote for such a file before (the whole model sent to ORT's quantizer,
  unfused: its attention fusion would drop the exposed Softmax): ``Int8Config(engine="ort", fusion="none")``, the
  same path (``engine="ort"`` measured this until ORT's path fused per layer too).
- ``native_unexposed``: the same model exported without exposed probabilities, native int8 (every layer fused):
  the bound per-layer fusion can reach; ``ort_unexposed`` the same with ``engine="ort"``.
- ``fp32``: the export itself.

Also the largest difference of each output from fp32. Run: ``python benchmarks/int8_exposed_attention.py``
(``--out FILE`` writes the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file
from deploytool.runtime.infer import make_session
from deploytool.testing.attentions import export_exposing_attentions
from deploytool.testing.tiny import fixed_inputs, tiny_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exposed", default="3", help="comma-separated layers whose probabilities are outputs")
    ap.add_argument("--seq", default="8,128")
    ap.add_argument("--runs", type=int, default=200, help="runs of each file per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    exposed = [int(x) for x in args.exposed.split(",") if x != ""]
    result: dict = {"model": "random bert, 6 layers, hidden 384, 12 heads, ffn 1536", "exposed": exposed,
                    "batch": 1, "threads": 1, "cpu_count": os.cpu_count(), "seq": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tiny_model("bert", layers=6, hidden=384, heads=12, ffn=1536, vocab=30522, max_pos=512, seed=0)
        src = export_exposing_attentions(model, tmp / "fp32.onnx", exposed)
        files = {"fp32": src}
        plain = export_exposing_attentions(model, tmp / "plain.onnx", [])
        for name, engine in (("native_unexposed", "native"), ("ort_unexposed", "ort")):
            quantize_int8_file(plain, tmp / f"{name}.onnx", Int8Config(engine=engine))
            files[name] = tmp / f"{name}.onnx"
        for name, cfg in (("native", Int8Config(engine="native")), ("ort", Int8Config(engine="ort")),
                          ("old_fallback", Int8Config(engine="ort", fusion="none"))):
            r = quantize_int8_file(src, tmp / f"{name}.onnx", cfg)
            files[name] = tmp / f"{name}.onnx"
            result[f"{name}_ops"] = r.stats.get("quantized_ops")
            result[f"{name}_skips"] = [f"{s.node}: {s.reason}" for s in r.skipped]
        sessions = {k: make_session(str(p), threads=1) for k, p in files.items()}
        for seq in (int(s) for s in args.seq.split(",")):
            feeds = fixed_inputs(vocab=30522, lengths=(seq,), seed=1)
            outs = {k: dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds))) for k, s in sessions.items()}
            err = {k: {o: float(np.abs(outs[k][o] - outs["fp32"][o]).max()) for o in outs["fp32"] if o in outs[k]}
                   for k in ("native", "ort", "old_fallback", "native_unexposed", "ort_unexposed")}
            for s in sessions.values():
                for _ in range(20):
                    s.run(None, feeds)
            rounds = []
            order = random.Random(seq)
            for _ in range(args.rounds):
                times: dict[str, list[float]] = {k: [] for k in sessions}
                for _ in range(args.runs):
                    # a fixed order favours or penalises a file by what ran before it (caches, frequency)
                    for k in order.sample(list(sessions), len(sessions)):
                        s = sessions[k]
                        t = time.perf_counter()
                        s.run(None, feeds)
                        times[k].append(time.perf_counter() - t)
                med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
                best = {k: min(v) * 1e3 for k, v in times.items()}
                rounds.append({"median_ms": med, "native_over_old": med["native"] / med["old_fallback"],
                               "ort_over_old": med["ort"] / med["old_fallback"],
                               "min_ms": best, "native_over_old_min": best["native"] / best["old_fallback"],
                               "ort_over_old_min": best["ort"] / best["old_fallback"],
                               "load_average": os.getloadavg()[0]})
            result["seq"][seq] = {"rounds": rounds, "max_abs_diff_to_fp32": err}
            print(f"seq {seq}: " + "; ".join(
                f"native {r['median_ms']['native']:.3f} ms, ort {r['median_ms']['ort']:.3f} ms, old "
                f"{r['median_ms']['old_fallback']:.3f} ms, unexposed native {r['median_ms']['native_unexposed']:.3f} "
                f"ort {r['median_ms']['ort_unexposed']:.3f} ms, fp32 {r['median_ms']['fp32']:.3f} ms, ratio to old "
                f"native {r['native_over_old']:.2f} ort {r['ort_over_old']:.2f}, fastest native "
                f"{r['min_ms']['native']:.3f} ort {r['min_ms']['ort']:.3f} old {r['min_ms']['old_fallback']:.3f} "
                f"unexposed native {r['min_ms']['native_unexposed']:.3f} ort {r['min_ms']['ort_unexposed']:.3f}, "
                f"ratio to old native {r['native_over_old_min']:.2f} ort {r['ort_over_old_min']:.2f} "
                f"(load {r['load_average']:.1f})"
                for r in rounds))
            print(f"  max |diff| to fp32: {json.dumps(err)}")
    print("native ops:", result["native_ops"], "skips:", result["native_skips"])
    print("ort ops:", result["ort_ops"], "skips:", result["ort_skips"])
    print("old ops:", result["old_fallback_ops"])
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
