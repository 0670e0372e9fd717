"""pack on a fused-attention graph (ONNX Runtime's transformer optimizer): the QKV on a packed-code kernel
(QAttention on int8 codes for speed, MatMulNBits + MultiHeadAttention for memory) against the form before
(the QKV unpacked to fp32 at load, in front of the fused Attention), in one run.

Model: the BERT-base-shaped export of ``pass_speed.py`` (TorchScript, 12 x 768, pooler), or ``--model``, fused by
``deploytool.runtime.fuse.fuse_transformer`` (Attention, SkipLayerNormalization, BiasGelu,
EmbedLayerNormalization). Packed with ternary weights for ``speed`` and ``memory`` by this tree ("this") and by
``--base`` (a git worktree of that revision, default the commit before the change: "base"); the unfused export
packed by this tree is a third row per runtime ("unfused", what the same weights give without the optimizer).

Measured for each file in a fresh process (ONNX Runtime, CPU, 1 intra-op thread, default optimizations), over
``--rounds`` rounds, files in a rotated order each round: session creation seconds, resident memory after the
session and after the first run (``VmRSS``), p50 latency of batch 1 at 1, 8 and 128 tokens (``--runs`` timed runs
after 3 warm-ups). Then once: the file size, the phone bundle's ``model.ort`` size
(``deploytool.bundle.ort_size_mb``, runtime optimizations), and the cosine of each file's output with the base
file's of the same runtime on a fixed padded batch ([2, 16], the second row 9 tokens).

``--weights split-binary`` (two binary planes per weight, BinaryBERT's TWS form) packs with those instead of
ternary; its form before is the commit before 2026-12-03's two-plane kernel (``--base`` default ``ac32b98``), its
results ``fused_attention_bench_split_binary.json``.

``--weights int8`` measures ``quantize --int8`` instead, on the fused graph with an attention bias (input 5 of every
Attention: a random ``[1, heads, 128, 128]`` relative-position table, ``deploytool.testing.fused.add_attention_bias``):
the form before (``--base`` default ``96404fe``) keeps each such Attention in fp32, this one runs MatMul (int8),
Split and MultiHeadAttention; no unfused row (the export has no attention bias); results
``fused_attention_bench_int8_bias.json``.

Usage: ``.venv/bin/python benchmarks/fused_attention_bench.py [--model PATH] [--weights ternary|split-binary|int8]
[--base REV] [--rounds 3] [-o benchmarks/results/fused_attention_bench.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stamp import write_results  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
# per --weights: the last commit before pack ran a fused Attention's QKV on the packed codes, and its results file
BASES = {"ternary": "3e1723f", "split-binary": "ac32b98", "int8": "96404fe"}
OUTPUTS = {"ternary": ROOT / "results" / "fused_attention_bench.json",
           "split-binary": ROOT / "results" / "fused_attention_bench_split_binary.json",
           "int8": ROOT / "results" / "fused_attention_bench_int8_bias.json"}
RUNTIMES = ("speed", "memory")
SEQS = (1, 8, 128)
_ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _rss_mb() -> float:
    from deploytool.runtime.procstat import rss_bytes

    return round(rss_bytes() / 2**20, 1)


def _latency_worker(path: str, runs: int, out_npy: str) -> dict:
    """In a fresh process: one session of ``path`` and its numbers (see the module doc)."""
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    t0 = time.perf_counter()
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    row = {"session_s": round(time.perf_counter() - t0, 3), "rss_after_session_mb": _rss_mb()}
    names = {i.name for i in sess.get_inputs()}
    rng = np.random.default_rng(0)

    def feeds(ids, mask):
        f = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return {k: v for k, v in f.items() if k in names}

    for seq in SEQS:
        ids = rng.integers(1000, 20000, (1, seq)).astype(np.int64)
        f = feeds(ids, np.ones_like(ids))
        for _ in range(3):
            sess.run(None, f)
        if seq == SEQS[0]:
            row["rss_after_run_mb"] = _rss_mb()
        ts = []
        for _ in range(runs if seq < 128 else max(5, runs // 3)):
            t = time.perf_counter()
            sess.run(None, f)
            ts.append(time.perf_counter() - t)
        row[f"p50_ms_{seq}"] = round(statistics.median(ts) * 1e3, 3)
    ids = rng.integers(1000, 20000, (2, 16)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 9:] = 0
    ids[1, 9:] = 0
    np.save(out_npy, sess.run(None, feeds(ids, mask))[0])
    return row


def _pack(tree: Path, src: Path, dst: Path, runtime: str, weights: str) -> dict:
    env = dict(_ENV, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    cmd = (["quantize", str(src), "--int8"] if weights == "int8" else
           ["pack", str(src), "--weights", weights, "--runtime", runtime])
    p = subprocess.run([sys.executable, "-m", "deploytool", *cmd, "-o", str(dst)], capture_output=True, text=True,
                       cwd=str(tree), env=env)
    if p.returncode:
        raise SystemExit(f"pack {runtime} in {tree}: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return {"seconds": round(time.perf_counter() - t0, 2), "bytes": dst.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="a BERT-base-shaped fp32 .onnx (default: made)")
    ap.add_argument("--weights", choices=sorted(BASES), default="ternary")
    ap.add_argument("--base", default=None, help=f"the revision of the form before (default per --weights: {BASES})")
    ap.add_argument("--work", type=Path, default=None, help="folder for the files (default: a temporary one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("-o", "--output", type=Path, default=None, help=f"default per --weights: {OUTPUTS}")
    ap.add_argument("--_worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        path, runs, npy = args._worker
        print(json.dumps(_latency_worker(path, int(runs), npy)))
        return
    from _stamp import stamp
    from pass_speed import bert_base_file

    run = stamp()
    args.base = args.base or BASES[args.weights]
    args.output = args.output or OUTPUTS[args.weights]
    rev = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"], capture_output=True,
                         text=True, cwd=REPO)
    if rev.returncode:
        ap.error(f"--base {args.base}: not a commit of this repository")
    with tempfile.TemporaryDirectory(prefix="fused-att-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        src, info = bert_base_file(args.model, work)
        fused = work / "bert-base.fused.onnx"
        if not fused.exists():
            from deploytool.runtime.fuse import fuse_transformer

            fr = fuse_transformer(src, fused)
            info["fused_ops"] = fr.fused_ops
        runtimes = RUNTIMES
        if args.weights == "int8":
            from deploytool.testing.fused import add_attention_bias

            biased = work / "bert-base.fused.bias.onnx"
            add_attention_bias(fused, biased, max_len=max(SEQS))
            fused, runtimes = biased, ("int8",)
            info["attention_bias"] = "every Attention: a random [1, heads, 128, 128] table (std 0.5), seed 0"
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), rev.stdout.strip()], cwd=REPO,
                       check=True)
        files: dict[str, Path] = {}
        packs: dict[str, dict] = {}
        try:
            for rt in runtimes:
                sides = (("base", base, fused), ("this", REPO, fused), ("unfused", REPO, src))
                for side, tree, model in sides[:2] if args.weights == "int8" else sides:
                    name = f"{rt}/{side}"
                    files[name] = work / f"{rt}-{side}.onnx"
                    packs[name] = _pack(tree, model, files[name], rt, args.weights)
                    print(f"packed {name}: {packs[name]}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False)
        rows: dict[str, list[dict]] = {k: [] for k in files}
        order = list(files)
        for r in range(args.rounds):
            k = r % len(order)
            for name in order[k:] + order[:k]:
                p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_worker", str(files[name]),
                                    str(args.runs), str(work / f"{name.replace('/', '-')}.npy")],
                                   capture_output=True, text=True, env=_ENV)
                line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith("{")), None)
                if p.returncode or line is None:
                    raise SystemExit(f"{name}: {p.stderr.strip().splitlines()[-1:]}")
                rows[name].append(json.loads(line))
                print(f"[round {r + 1}/{args.rounds}] {name:16s} {rows[name][-1]}", flush=True)
        import numpy as np

        from deploytool.bundle import ort_size_mb

        summary = {}
        for name, rs in rows.items():
            rt, side = name.split("/")
            s = {key: round(statistics.median(x[key] for x in rs), 3) for key in rs[0]}
            s["file_mb"] = round(packs[name]["bytes"] / 2**20, 2)
            s["ort_mb"] = round(ort_size_mb(files[name], "runtime", work), 2)
            y = np.load(work / f"{name.replace('/', '-')}.npy").ravel().astype(np.float64)
            ref = np.load(work / f"{rt}-base.npy").ravel().astype(np.float64)
            s["cosine_to_base_output"] = round(float(y @ ref / np.linalg.norm(y) / np.linalg.norm(ref)), 6)
            summary[name] = s
        ratios = {}
        for rt in runtimes:
            b, t = rows[f"{rt}/base"], rows[f"{rt}/this"]
            ratios[rt] = {f"p50_ms_{seq}": [round(y[f"p50_ms_{seq}"] / x[f"p50_ms_{seq}"], 3) for x, y in zip(b, t)]
                          for seq in SEQS}
            ratios[rt]["rss_after_run"] = [round(y["rss_after_run_mb"] / x["rss_after_run_mb"], 3) for x, y in zip(b, t)]
            ratios[rt]["ort_size"] = round(summary[f"{rt}/this"]["ort_mb"] / summary[f"{rt}/base"]["ort_mb"], 3)
    doc = {"benchmark": "fused_attention_bench", "model": info, "weights": args.weights, "base": args.base,
           "threads": 1, "rounds": args.rounds,
           "runs": args.runs, "packs": packs, "rounds_raw": rows, "summary": summary,
           "this_over_base": ratios}
    write_results(args.output, doc, run)
    print(json.dumps({"summary": summary, "this_over_base": ratios}, indent=1))


if __name__ == "__main__":
    main()
