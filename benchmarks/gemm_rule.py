"""The cost model's GEMM rule alone, on GEMM shapes the host microbenchmark did not measure.

    .venv/bin/python benchmarks/gemm_rule.py [--footprint-mib 8] [--remeasure] [--host-cache DIR]
        [--out benchmarks/results/gemm_rule.json]

The host microbenchmark (``deploytool/runtime/host.py``) times chains of 384 x 192, 384 x 384, 384 x 1536 and
768 x 3072 weights (the first and the last since 2026-12-06, microbenchmark versions 6 and 7);
the cost model (``HostRates.gemm_ms``) times any other GEMM from them: at each measured M a per-call cost plus
a per-weight cost, log-log in M, log-linear in the model's weight footprint. Before 2026-12-06 it timed a GEMM
by its FLOPs alone on its footprint's curve. This script checks both rules where the models' errors cannot
tell them apart from the other op classes: chains of one GEMM shape each, in the shapes of the quickstart's
MiniLM slices (attention 384 x 288 at width 0.75, FFN 384 x 768 and 384 x 1152 at 0.5 and 0.75), BERT-base's
attention (768 x 768: as many weights as 384 x 1536) and BERT-large's (1024 x 1024, 1024 x 4096: larger than any
measured), beside the measured shapes themselves; fp32
(MatMul) and int8 (DynamicQuantizeMatMul, per-channel scales, as deploytool's int8 emits), M = 8 and 128.

Each chain (the shape and its transpose alternating, distinct weights together about ``--footprint-mib``: a
real model's footprint lies between the measured levels) is built and timed by the microbenchmark's own code
(``deploytool.runtime.host``: ``gemm_chain_model``, its session at 1 thread and its timer, the 10th percentile
of the runs), less the run overhead of a one-GEMM 16 x 16 graph, per GEMM.
Both rules project from the same host measurement; errors are (projected - measured) / measured.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {  # name -> the chain's alternating (K, N)
    "minilm-w0.5-attention (measured)": [(384, 192), (192, 384)],
    "minilm-w0.75-attention": [(384, 288), (288, 384)],
    "minilm-attention (measured)": [(384, 384)],
    "minilm-w0.5-ffn": [(384, 768), (768, 384)],
    "minilm-w0.75-ffn": [(384, 1152), (1152, 384)],
    "minilm-ffn (measured)": [(384, 1536), (1536, 384)],
    "bert-base-attention": [(768, 768)],
    "bert-base-ffn (measured)": [(768, 3072), (3072, 768)],
    "bert-large-attention": [(1024, 1024)],
    "bert-large-ffn": [(1024, 4096), (4096, 1024)],
}


def _summary(rows: list[dict], key: str) -> dict:
    errs = [abs(r[key]) for r in rows]
    return {"median_abs_error": round(statistics.median(errs), 4), "worst_abs_error": round(max(errs), 4)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--footprint-mib", type=float, default=8.0)
    ap.add_argument("--ms", default="8,128")
    ap.add_argument("--host-cache", type=Path, default=None)
    ap.add_argument("--remeasure", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gemm_rule.json")
    args = ap.parse_args()
    run = stamp()

    import numpy as np

    from deploytool.bench.cost_model import HostRates
    from deploytool.onnx_io import atomic_write
    from deploytool.profiles import HostOptions, load_profile

    host = load_profile("host", host=HostOptions(cache_dir=args.host_cache, refresh=args.remeasure))
    rates = HostRates.from_profile(host, 1)
    from deploytool.runtime.host import _session, _timeit, gemm_chain_model

    rng = np.random.default_rng(0)
    run_ms = _timeit(_session(gemm_chain_model("fp32", [(16, 16)], rng), 1), {"x": np.ones((1, 16), np.float32)})[0]
    ms_list = [int(m) for m in args.ms.split(",")]
    rows = []
    for prec in ("int8", "fp32"):
        for name, shape in SHAPES.items():
            per = shape[0][0] * shape[0][1] * (1 if prec == "int8" else 4)
            n = max(len(shape), round(args.footprint_mib * 2**20 / per / len(shape)) * len(shape))
            dims = (shape * n)[:n]
            sess = _session(gemm_chain_model(prec, dims, rng), 1)
            footprint = float(per * n)
            for m in ms_list:
                x = rng.standard_normal((m, dims[0][0])).astype(np.float32)
                measured = (_timeit(sess, {"x": x})[0] - run_ms) / n
                k, nn = shape[0]
                flops = 2.0 * m * k * nn
                new = rates.gemm_ms(prec, flops, footprint, float(k * nn))
                by_flops = rates.gemm_ms(prec, flops, footprint, 0.0)
                rows.append({"shape": name, "precision": prec, "k": k, "n": nn, "m": m, "chain": n,
                             "footprint_mib": round(footprint / 2**20, 2), "measured_ms": round(measured, 6),
                             "projected_ms": round(new, 6), "error": round((new - measured) / measured, 4),
                             "flops_curve_ms": round(by_flops, 6),
                             "flops_curve_error": round((by_flops - measured) / measured, 4)})
                print(f"{prec} {name:28s} M {m:4d}: measured {measured * 1e3:8.2f} us, rule {new * 1e3:8.2f} "
                      f"({rows[-1]['error']:+.0%}), by FLOPs {by_flops * 1e3:8.2f} ({rows[-1]['flops_curve_error']:+.0%})",
                      flush=True)
            del sess
    # the machine drifts between the microbenchmark and this run (a shared VM: 10-15% in minutes): each row's error
    # also against the measured shapes' own error in this run at the same precision and M, which the rule cannot
    # do better than
    for r in rows:
        ref = [x for x in rows if "(measured)" in x["shape"] and x["precision"] == r["precision"] and x["m"] == r["m"]]
        for key in ("error", "flops_curve_error"):
            base = statistics.median(1.0 + x["error"] for x in ref)
            r[key.replace("error", "error_net_of_drift")] = round((1.0 + r[key]) / base - 1.0, 4)
    unmeasured = [r for r in rows if "(measured)" not in r["shape"]]
    groups = {f"{p} M={m}": [r for r in unmeasured if r["precision"] == p and r["m"] == m]
              for p in ("int8", "fp32") for m in ms_list}
    m = (host.host or {}).get("measurement") or {}
    result = {
        "benchmark": "gemm_rule",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host_measurement": {"created_utc": m.get("created_utc"), "onnxruntime": m.get("onnxruntime")},
        "method": "chains of one GEMM shape (and its transpose), ~%g MiB of distinct weights, 1 thread, built and "
                  "timed by the host microbenchmark's own code; per-GEMM time = (p10 of the runs - a one-GEMM "
                  "16x16 graph's p10) / chain length" % args.footprint_mib,
        "rules": {"rows_and_weights": "HostRates.gemm_ms with the weight's K x N (deploytool since 2026-12-06)",
                  "flops_curve": "HostRates.gemm_ms by FLOPs alone on the footprint's curves (before)"},
        "run_overhead_ms": round(run_ms, 6),
        "drift_note": "error_net_of_drift: (1 + error) / (1 + the measured shapes' median error at that precision "
                      "and M in this run) - 1, i.e. against what the machine does now rather than during the "
                      "microbenchmark",
        "unmeasured_shapes": {"rows_and_weights": _summary(unmeasured, "error"),
                              "flops_curve": _summary(unmeasured, "flops_curve_error"),
                              "rows_and_weights_net_of_drift": _summary(unmeasured, "error_net_of_drift"),
                              "flops_curve_net_of_drift": _summary(unmeasured, "flops_curve_error_net_of_drift"),
                              "by_group": {g: {"rows_and_weights": _summary(rs, "error"),
                                               "flops_curve": _summary(rs, "flops_curve_error")}
                                           for g, rs in groups.items() if rs}},
        "measured_shapes": {"rows_and_weights": _summary([r for r in rows if "(measured)" in r["shape"]], "error"),
                            "flops_curve": _summary([r for r in rows if "(measured)" in r["shape"]],
                                                    "flops_curve_error")},
        "rows": rows,
    }
    result["run"] = stamp(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(result, f, indent=2)
    u = result["unmeasured_shapes"]
    print(f"unmeasured shapes: rule median |error| {u['rows_and_weights']['median_abs_error']:.0%}, worst "
          f"{u['rows_and_weights']['worst_abs_error']:.0%}; by FLOPs {u['flops_curve']['median_abs_error']:.0%}, "
          f"worst {u['flops_curve']['worst_abs_error']:.0%}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
