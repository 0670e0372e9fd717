"""DynaBERT slicing: FLOPs ratio vs measured latency ratio, file size, slicing time and memory.

    .venv/bin/python benchmarks/slice_bench.py [--models minilm,bert-base] [--runs 30] [--warmup 3]
        [--seq 128] [-o benchmarks/results/slice_bench.json] [--keep DIR]

Models: all-MiniLM-L6-v2 (6x384, 12 heads, FFN 1536) and a random BERT-base-shaped model (12 layers,
hidden 768, 12 heads, FFN 3072, vocab 30522, built with transformers and exported with the
TorchScript exporter). Each is sliced at width in {1, 0.75, 0.5, 0.25} x depth in {1, 0.75, 0.5}
with ``deploytool.passes.slice_subnetwork.slice_file``, every slice in a fresh subprocess that
reports its wall time, CPU time and peak RSS (``VmHWM``, which includes the interpreter and imports).
On a shared, oversubscribed machine the wall time is inflated; the CPU time shows the work itself.

Latency: all 12 variants of a model are timed interleaved (A, B, C, ..., A, B, C, ...) in one
clean ONNX Runtime worker without torch (``deploytool.bench.run_benchmark``), batch 1, 1 thread,
at ``--seq``; the latency ratio is the median of run-by-run ratios to the (1, 1) variant. FLOPs are
``deploytool.inspection``'s count (matmuls of projections, scores and context, FFN) at the same length.

Targets (issue 3): at (w=0.5, d=0.75) latency ratio <= 1.15 x FLOPs ratio at seq 128; slicing the
BERT-base-shaped model takes <= 10 s and its peak RSS <= 3x its file size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (1.0, 0.75, 0.5, 0.25)
DEPTHS = (1.0, 0.75, 0.5)
TARGET = (0.5, 0.75)

_SLICE_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from deploytool.passes.slice_subnetwork import SliceConfig, slice_file
t1 = time.perf_counter()
res = slice_file(sys.argv[1], sys.argv[2], SliceConfig(float(sys.argv[3]), float(sys.argv[4])))
t2 = time.perf_counter()
s = res.to_dict()
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the parent's peak
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"import_s": t1 - t0, "slice_s": t2 - t1, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_bytes": hwm,
                  "width_effective": s["width_effective"], "layers_kept": s["layers_kept"],
                  "params_before": s["params_before"], "params_after": s["params_after"],
                  "bytes_after": s["bytes_after"]}))
"""


def _export(name: str, path: Path) -> dict:
    from deploytool.export import ExportConfig, export, export_loaded

    t = time.perf_counter()
    if name == "minilm":
        res = export(ExportConfig(model="minilm", exporter="torch"), path)
    elif name == "bert-base":
        import torch
        import transformers as tr

        torch.manual_seed(0)
        cfg = tr.BertConfig(attn_implementation="eager")  # 12 x 768, 12 heads, FFN 3072, vocab 30522
        model = tr.BertModel(cfg, add_pooling_layer=False).eval()
        with torch.no_grad():  # non-zero biases/LayerNorms like a trained model (zeros get deduplicated on export)
            g = torch.Generator().manual_seed(1)
            for p in model.parameters():
                if p.dim() == 1:
                    p.add_(torch.randn(p.shape, generator=g) * 0.02)
        res = export_loaded(model, path, ExportConfig(model="random-bert-base", exporter="torch"))
    else:
        raise SystemExit(f"unknown model {name!r}; use minilm or bert-base")
    return {"export_s": round(time.perf_counter() - t, 2), "file_bytes": path.stat().st_size,
            "max_abs_diff_vs_pytorch": res.max_abs_diff}


def _slice(src: Path, dst: Path, w: float, d: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _SLICE_CHILD, str(src), str(dst), str(w), str(d)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"slicing {src} at ({w}, {d}) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_model(name: str, folder: Path, seq: int, runs: int, warmup: int) -> dict:
    from deploytool.bench.config import BenchConfig
    from deploytool.bench.runner import run_benchmark
    from deploytool.inspection import inspect_model

    src = folder / f"{name}.onnx"
    info = _export(name, src)
    print(f"[{name}] exported in {info['export_s']} s, {info['file_bytes'] / 1e6:.1f} MB", flush=True)
    variants = []
    for d in DEPTHS:
        for w in WIDTHS:
            dst = folder / f"{name}_w{w}_d{d}.onnx"
            sl = _slice(src, dst, w, d)
            rep = inspect_model(dst, seq_len=seq)
            variants.append({"width": w, "depth": d, "path": dst, "slice": sl, "flops": rep.flops,
                             "heads_per_layer": [la.num_heads for la in rep.layers],
                             "ffn_per_layer": [la.ffn_width for la in rep.layers]})
            print(f"[{name}] w={w} d={d}: sliced in {sl['slice_s']:.2f} s, peak RSS {sl['peak_rss_bytes'] / 1e6:.0f} MB, "
                  f"{sl['bytes_after'] / 1e6:.1f} MB", flush=True)
    cfg = BenchConfig(models=tuple(v["path"] for v in variants), seq_lens=(seq,), batch=1, threads=1,
                      warmup=warmup, runs=runs)
    t = time.perf_counter()
    report = run_benchmark(cfg)
    bench_s = time.perf_counter() - t
    full_flops = variants[0]["flops"]
    rows = []
    for i, v in enumerate(variants):
        r = report.result(i, seq)
        flops_ratio = v["flops"] / full_flops
        lat_ratio = r.paired_ratio_to_first
        rows.append({
            "width": v["width"], "depth": v["depth"],
            "width_effective": v["slice"]["width_effective"], "layers_kept": v["slice"]["layers_kept"],
            "heads_per_layer": v["heads_per_layer"][:1], "ffn_per_layer": v["ffn_per_layer"][:1],
            "flops": v["flops"], "flops_ratio": round(flops_ratio, 4),
            "latency_p50_ms": round(r.latency.p50_ms, 3), "latency_ratio": round(lat_ratio, 4),
            "latency_over_flops_ratio": round(lat_ratio / flops_ratio, 4),
            "file_bytes": v["slice"]["bytes_after"], "file_ratio": round(v["slice"]["bytes_after"] / info["file_bytes"], 4),
            "params": v["slice"]["params_after"],
            "slice_seconds": round(v["slice"]["slice_s"], 3),
            "slice_cpu_seconds_incl_imports": round(v["slice"].get("cpu_s", float("nan")), 3),
            "slice_peak_rss_bytes": v["slice"]["peak_rss_bytes"],
            "session_peak_rss_bytes": r.peak_rss_bytes,
        })
    target = next(r for r in rows if (r["width"], r["depth"]) == TARGET)
    slow = max(r["slice_seconds"] for r in rows)
    rss = max(r["slice_peak_rss_bytes"] for r in rows)
    checks = {
        "latency_within_1.15x_flops_at_w0.5_d0.75": {
            "latency_ratio": target["latency_ratio"], "flops_ratio": target["flops_ratio"],
            "value": target["latency_over_flops_ratio"], "limit": 1.15,
            "pass": target["latency_over_flops_ratio"] <= 1.15},
        # the issue sets these two for the BERT-base-sized model; on MiniLM (90 MB) the interpreter and
        # imports (~75 MB) weigh too much for an RSS-over-file-size ratio to mean much
        "slice_seconds_max": {"value": slow, "limit": 10.0, "pass": slow <= 10.0,
                              "target_applies": name == "bert-base"},
        "slice_peak_rss_over_file_size_max": {"value": round(rss / info["file_bytes"], 3), "limit": 3.0,
                                              "pass": rss / info["file_bytes"] <= 3.0,
                                              "target_applies": name == "bert-base"},
    }
    return {"model": name, **info, "seq_len": seq, "runs": runs, "warmup": warmup, "bench_seconds": round(bench_s, 1),
            "host": report.host, "onnxruntime": report.onnxruntime, "variants": rows, "checks": checks}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="minilm,bert-base")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(ROOT / "benchmarks" / "results" / "slice_bench.json"))
    ap.add_argument("--keep", default=None, help="keep the .onnx files in this folder")
    args = ap.parse_args(argv)
    run = stamp()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = []
    with tempfile.TemporaryDirectory(prefix="slice-bench-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            res = bench_model(name, folder, args.seq, args.runs, args.warmup)
            results.append(res)
            for r in res["variants"]:
                print(f"[{name}] w={r['width']:<4} d={r['depth']:<4} flops {r['flops_ratio']:.3f} "
                      f"latency {r['latency_ratio']:.3f} ({r['latency_p50_ms']:.2f} ms) "
                      f"file {r['file_bytes'] / 1e6:.1f} MB", flush=True)
            print(f"[{name}] checks: {json.dumps(res['checks'])}", flush=True)
    from deploytool.onnx_io import atomic_write

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump({"benchmark": "slice_bench", "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "results": results, "run": stamp(run)}, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
