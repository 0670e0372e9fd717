"""The cost model's own error where real figures are known: the x86 host.

    .venv/bin/python benchmarks/cost_model_error.py [--model MODEL.onnx] [--runs 30]
        [--out benchmarks/results/cost_model_error.json]

Exports all-MiniLM-L6-v2 (unless --model is given), makes its int8 (dynamic, per channel) and fp16
versions with deploytool's passes, measures each with ``deploytool.bench`` (clean worker process,
batch 1, sequence lengths 8 and 128, 1 and 2 threads) and projects the same runs with
``deploytool.bench.cost_model`` on the ``x86-host`` profile. Writes measured p50, projected latency
and the relative error (projected - measured) / measured per (precision, seq, threads), plus the
host calibration factor (measured / projected, per precision) that ``deploytool report --calibrate``
would apply to other devices. The machine's load average is recorded: on a shared machine measured
latencies (and so the error) move with it; the error against the fastest run (``min``, the closest
to an unloaded core) is reported beside the one against the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cost_model_error.json")
    args = ap.parse_args()

    from deploytool.bench import BenchConfig, run_benchmark
    from deploytool.bench.cost_model import CostModel, op_costs, project_latency
    from deploytool.onnx_io import atomic_write
    from deploytool.passes.fp16 import Fp16Config, convert_fp16_file
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file
    from deploytool.profiles import load_profile

    host = load_profile("x86-host")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = args.model
        if src is None:
            src = tmp / "minilm.onnx"
            subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", "minilm", "--task",
                            "feature-extraction", "-o", str(src)], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        models = {"fp32": src, "int8": tmp / "int8.onnx", "fp16": tmp / "fp16.onnx"}
        quantize_int8_file(src, models["int8"], Int8Config())
        convert_fp16_file(src, models["fp16"], Fp16Config(check_host=False))
        rows = []
        ratios: dict[str, list[float]] = {}
        for threads in (int(t) for t in args.threads.split(",")):
            rep = run_benchmark(BenchConfig(models=tuple(models.values()), seq_lens=(8, 128), threads=threads,
                                            runs=args.runs, warmup=5))
            for i, (prec, path) in enumerate(models.items()):
                for seq in (8, 128):
                    lat = rep.result(i, seq).latency
                    measured, fastest = lat.p50_ms, lat.min_ms
                    proj = project_latency(op_costs(path, seq), host, seq_len=seq, threads=threads, model=CostModel())
                    err = (proj.latency_ms - measured) / measured
                    err_min = (proj.latency_ms - fastest) / fastest
                    ratios.setdefault(prec, []).append(measured / proj.latency_ms)
                    rows.append({"precision": prec, "seq_len": seq, "threads": threads,
                                 "measured_p50_ms": round(measured, 3), "measured_min_ms": round(fastest, 3),
                                 "projected_ms": round(proj.latency_ms, 3), "error_vs_min": round(err_min, 3),
                                 "compute_ms": round(proj.compute_ms, 3), "memory_ms": round(proj.memory_ms, 3),
                                 "overhead_ms": round(proj.overhead_ms, 3), "error": round(err, 3)})
                    print(f"{prec} seq {seq:3d} threads {threads}: measured p50 {measured:8.3f} ms (min {fastest:8.3f}), "
                          f"projected {proj.latency_ms:8.3f} ms, error {err:+.0%} (vs min {err_min:+.0%})")
    result = {"benchmark": "cost_model_error", "profile": "x86-host", "cost_model": vars(CostModel()),
              "host": rep.host, "load_average": os.getloadavg(), "rows": rows,
              "median_abs_error": round(statistics.median(abs(r["error"]) for r in rows), 3),
              "median_abs_error_vs_min": round(statistics.median(abs(r["error_vs_min"]) for r in rows), 3),
              "calibration_measured_over_projected": {k: round(statistics.median(v), 3) for k, v in ratios.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(result, f, indent=2)
    print(f"median |error| {result['median_abs_error']:.0%}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
