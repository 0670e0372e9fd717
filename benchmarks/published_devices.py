"""Published device figures beside deploytool's projections of the same shapes.

    .venv/bin/python benchmarks/published_devices.py [--host-cache DIR] [-o benchmarks/results/published_devices.json]

The only public per-device BERT-family latencies this session could cite with the exact source are
Bolt's (Huawei Noah's Ark, https://github.com/huawei-noah/bolt), ``docs/BENCHMARK.md`` at commit
331a83312b3a8f9d2eda12577d04626e4570bb20 ("We have tested ... with Bolt(v0.2.0) on HUAWEI 810 mobile
phone and HUAWEI 990 mobile phone"): model ``tinybert`` (caffe), Ubuntu 16.04 userland, gcc 8.3 or
llvm, 1 thread, input size ``32+32+32`` (read here as three inputs of 32 tokens: sequence length 32),
``avg_time`` per sequence. The table below copies the Kirin 990 Cortex-A76 rows (the only core the
repository's ``kirin990`` profile describes); the Kirin 810 rows and the A55 rows have no profile here
and are listed as published, without a projection.

What is compared, and how it differs (said plainly):

- The ENGINES DIFFER. Bolt is its own inference library (hand-written Armv8.2 fp16/fp32 kernels,
  its own graph fusions); deploytool projects ONNX Runtime's CPU provider (MLAS/KleidiAI). A gap
  between the columns is engine plus model error, not the cost model's alone.
- The model shape is ASSUMED: BENCHMARK.md names "tinybert" without a shape; the TinyBERT paper's
  4-layer model (hidden 312, 12 heads, FFN 1200, vocabulary 30522) is used, with random weights
  (latency does not depend on the values).
- SANITY CHECK, printed per row: the published time at the assumed shape implies a FLOP rate; where
  that exceeds the core's peak (16 fp32 / 32 fp16 FLOP per cycle on an A76 at 2.86 GHz), the model
  Bolt timed must have been smaller than the assumed shape, and the comparison says so instead of
  blaming the cost model.
- One thread: the profile's peaks cover its 4 Cortex-A76 cores (2 at 2.86 GHz, 2 at 2.09 GHz), so
  one thread gets a quarter (a 2.48 GHz-equivalent core); Bolt most likely ran on a 2.86 GHz core,
  so the projection is expected up to 15% slow on that count alone.
- Two projections: ``roofline`` (the profile's peaks x deploytool's round efficiencies) and
  ``host-efficiencies`` (the efficiencies ONNX Runtime reaches on THIS host, per op class and size,
  applied to the A76's peaks; needs the host measurement, ``deploytool profiles show host``).

Not found / not cited: absolute ONNX Runtime or KleidiAI BERT latencies for Graviton or Raspberry Pi
(the AWS ML blog on ORT for Graviton gives relative speed-ups in charts, not ms tables), so there are
no rows for them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import tempfile
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parents[1]

SOURCE = ("huawei-noah/bolt docs/BENCHMARK.md @ 331a83312b3a8f9d2eda12577d04626e4570bb20 "
          "(https://github.com/huawei-noah/bolt/blob/331a83312b3a8f9d2eda12577d04626e4570bb20/docs/BENCHMARK.md)")
# (soc, core, compiler, precision, avg ms per sequence) as published, tinybert, 1 thread, 32+32+32
PUBLISHED = [
    ("Kirin 990", "A76", "gcc8.3", "fp32", 3.69189), ("Kirin 990", "A76", "gcc8.3", "fp16", 2.2041),
    ("Kirin 990", "A76", "llvm", "fp32", 3.84497), ("Kirin 990", "A76", "llvm", "fp16", 2.3479),
    ("Kirin 990", "A55", "gcc8.3", "fp32", 16.9138), ("Kirin 990", "A55", "gcc8.3", "fp16", 8.96313),
    ("Kirin 810", "A76", "gcc8.3", "fp32", 4.48315), ("Kirin 810", "A76", "gcc8.3", "fp16", 2.6499),
    ("Kirin 810", "A55", "gcc8.3", "fp32", 17.5701), ("Kirin 810", "A55", "gcc8.3", "fp16", 9.3479),
]
SHAPE = {"layers": 4, "hidden": 312, "heads": 12, "ffn": 1200, "vocab": 30522, "max_pos": 512}
SEQ = 32


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host-cache", type=Path, default=None)
    ap.add_argument("-o", "--output", "--out", dest="out", type=Path, default=ROOT / "benchmarks/results/published_devices.json")
    args = ap.parse_args()
    run = stamp()

    from deploytool.bench.cost_model import HostRates, op_costs, project_latency
    from deploytool.export import ExportConfig, export_loaded
    from deploytool.onnx_io import atomic_write
    from deploytool.passes.fp16 import Fp16Config, convert_fp16_file
    from deploytool.profiles import HostOptions, load_profile
    from deploytool.testing.tiny import tiny_model

    kirin = load_profile("kirin990")
    host = load_profile("host", host=HostOptions(cache_dir=args.host_cache, measure=True))
    rates = HostRates.from_profile(host, 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "tinybert4.onnx"
        export_loaded(tiny_model("bert", **SHAPE), fp32, ExportConfig(model="tinybert-4l-312d", task="feature-extraction"))
        fp16 = Path(tmp) / "tinybert4_fp16.onnx"
        convert_fp16_file(fp32, fp16, Fp16Config(check_host=False))
        costs = {"fp32": op_costs(fp32, SEQ, optimized=True), "fp16": op_costs(fp16, SEQ, optimized=True)}
        for soc, core, compiler, prec, ms in PUBLISHED:
            row = {"soc": soc, "core": core, "engine": f"Bolt v0.2.0 ({compiler})", "precision": prec, "seq_len": SEQ,
                   "threads": 1, "published_ms": ms, "source": SOURCE}
            flops = sum(c.flops for c in costs[prec])
            row["flops_at_assumed_shape"] = flops
            row["implied_gflops_at_assumed_shape"] = round(flops / ms / 1e6, 2)
            if soc == "Kirin 990" and core == "A76":
                # the profile's peak spread over its A76 core-GHz, on the 2.86 GHz big core
                left, core_ghz = kirin.threads, 0.0
                for c in kirin.cpu:
                    n = min(left, c.count)
                    core_ghz += n * c.max_ghz
                    left -= n
                big = kirin.compute.peak(prec) / core_ghz * kirin.cpu[0].max_ghz
                row["big_core_peak_gflops"] = round(big, 2)
                row["implied_over_peak"] = round(flops / ms / 1e6 / big, 3)
                roof = project_latency(costs[prec], kirin, seq_len=SEQ, threads=1, use_host_rates=False)
                row.update(profile="kirin990", projected_engine="ONNX Runtime CPU EP (projected)",
                           roofline_ms=round(roof.latency_ms, 3),
                           roofline_over_published=round(roof.latency_ms / ms, 3))
                if rates is not None:
                    eff = project_latency(costs[prec], kirin, seq_len=SEQ, threads=1, host_rates=rates)
                    row.update(host_efficiencies_ms=round(eff.latency_ms, 3),
                               host_efficiencies_over_published=round(eff.latency_ms / ms, 3))
            else:
                row["note"] = f"no device profile for the {soc} {core} here: published figure only"
            rows.append(row)
            proj = (f"roofline {row['roofline_ms']:7.2f} ms ({row['roofline_over_published']:.2f}x)"
                    + (f", host-efficiencies {row['host_efficiencies_ms']:7.2f} ms "
                       f"({row['host_efficiencies_over_published']:.2f}x)" if "host_efficiencies_ms" in row else "")
                    if "roofline_ms" in row else row["note"])
            implied = (f" [implies {row['implied_gflops_at_assumed_shape']:.0f} G(FL)OP/s = "
                       f"{row['implied_over_peak']:.2f}x the core's peak at the assumed shape]"
                       if "implied_over_peak" in row else "")
            print(f"{soc} {core} {compiler:6s} {prec}: Bolt {ms:7.2f} ms | {proj}{implied}")
    result = {"benchmark": "published_devices",
              "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "model_assumed": {"name": "TinyBERT-4 (General_TinyBERT_4L_312D shape), random weights", **SHAPE},
              "seq_len_assumed": SEQ, "host_measurement": (host.host or {}).get("measurement", {}) and {
                  "created_utc": host.host["measurement"]["created_utc"], "cpu": host.soc},
              "engines_differ": "published: Bolt v0.2.0 (own kernels); projected: ONNX Runtime CPU provider. A gap is "
                                "engine difference plus model error.",
              "not_found": "absolute ONNX Runtime/KleidiAI BERT latencies for Graviton or Raspberry Pi with a citable "
                           "source; none tabulated",
              "rows": rows, "run": stamp(run)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
