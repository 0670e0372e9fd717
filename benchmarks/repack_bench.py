"""repack against pack: a packed BERT-base moved to another runtime from the packed file, against packing the
fp32 model again (the only way before ``deploytool repack``), in one run.

Model: a random BERT-base-shaped encoder with its pooler (``pass_speed.py``'s export: TorchScript, 437.9 MB), or
``--model``. Each case packs the fp32 file once for its source runtime (``deploytool pack``), then, ``--repeats``
rounds, interleaved with the order swapped every round, each in a fresh process: ``deploytool repack SOURCE
--runtime TARGET`` and its peer ``deploytool pack FP32 --runtime TARGET`` (the same weights and target): process
wall and the ``deploytool`` process's peak RSS (``ru_maxrss`` from ``wait4``; pack's gate runs in a process of its
own for an input over 50 MB, which that figure does not show, while repack's gate runs in the pass's process for
a packed file under 50 MB, so its sessions are in it), both with the verification gate on, as users run them. ``repack_over_pack`` is the median of the rounds' paired wall ratios.

Then, once: whether the repacked file computes what the peer computes (ONNX Runtime, default session, a fixed
[2, 16] batch: max abs difference of every output), the file sizes, and for the ``memory`` targets the size of the
phone bundle's ``model.ort`` (``deploytool.bundle.ort_size_mb``, runtime optimizations) of the source and of the
repacked file: what ``repack --runtime memory`` is for.

Usage: ``.venv/bin/python benchmarks/repack_bench.py [--model PATH] [--work DIR] [--repeats 3] [-o
benchmarks/results/repack_bench.json]``.
"""

from __future__ import annotations

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
RESULTS = ROOT / "results" / "repack_bench.json"
CASES = (("ternary", "speed", "memory"), ("ternary", "densest", "memory"), ("binary", "speed", "memory"),
         ("ternary", "speed", "densest"), ("ternary", "memory", "speed"))


def _timed(args: list[str]) -> dict:
    """``deploytool ARGS`` in a fresh process: wall seconds, the process's peak RSS (``wait4``), ok or the
    error's last lines."""
    exe = Path(sys.executable).with_name("deploytool")
    argv = ([str(exe)] if exe.exists() else [sys.executable, "-m", "deploytool"]) + args
    os.sync()
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=so, stderr=se, cwd=str(REPO))
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        se.seek(0)
        so.seek(0)
        err, out = se.read(), so.read()
    row = {"argv": ["deploytool"] + args, "ok": p.returncode == 0, "process_wall_s": round(wall, 3),
           "peak_rss_bytes": int(usage.ru_maxrss) * 1024}
    if p.returncode:
        row["error"] = " | ".join((err or out).strip().splitlines()[-2:])[:400]
    return row


def _outputs_diff(a: Path, b: Path) -> float:
    from deploytool.runtime.infer import run_onnx
    from deploytool.runtime.inputs import make_feeds, plan_inputs

    feeds = make_feeds(plan_inputs(a), 2, 16, 0)
    ya, yb = run_onnx(a, feeds), run_onnx(b, feeds)
    return max(float(abs(ya[k].astype("float64") - yb[k].astype("float64")).max()) for k in ya)


def main() -> None:
    import pass_speed  # beside this script: its command line and export make the same BERT-base-shaped file

    args, run, work, src, model_info = pass_speed.bert_base_run(__doc__, RESULTS, "repack_bench_")

    sources: dict[tuple[str, str], Path] = {}
    prep: dict[str, dict] = {}
    for weights, source, _ in CASES:
        if (weights, source) in sources:
            continue
        path = work / f"{weights}-{source}.onnx"
        path.unlink(missing_ok=True)
        prep[f"{weights}-{source}"] = r = _timed(["pack", str(src), "--weights", weights, "--runtime", source,
                                                  "-o", str(path)])
        print(f"source {weights}-{source}: pack {r['process_wall_s']} s{'' if r['ok'] else ' FAILED ' + r['error']}",
              flush=True)
        if r["ok"]:
            sources[(weights, source)] = path

    runs: dict[str, dict[str, list[dict]]] = {}
    for rnd in range(args.repeats):
        for weights, source, target in CASES:
            if (weights, source) not in sources:
                continue
            name = f"{weights}-{source}-to-{target}"
            out_r, out_p = work / f"{name}.repack.onnx", work / f"{weights}-{target}.pack.onnx"
            jobs = {"repack": ["repack", str(sources[(weights, source)]), "--runtime", target, "-o", str(out_r)],
                    "pack": ["pack", str(src), "--weights", weights, "--runtime", target, "-o", str(out_p)]}
            order = ["repack", "pack"] if rnd % 2 == 0 else ["pack", "repack"]
            for kind in order:
                (out_r if kind == "repack" else out_p).unlink(missing_ok=True)
                row = _timed(jobs[kind])
                runs.setdefault(name, {}).setdefault(kind, []).append(row)
                print(f"round {rnd + 1} {name} {kind}: {row['process_wall_s']} s, "
                      f"{row['peak_rss_bytes'] / 1e6:.0f} MB{'' if row['ok'] else ' FAILED ' + row['error']}", flush=True)

    from deploytool import bundle

    rows: dict[str, dict] = {}
    ort_of: dict[Path, float] = {}
    for weights, source, target in CASES:
        name = f"{weights}-{source}-to-{target}"
        if name not in runs:
            continue
        r, p = runs[name]["repack"], runs[name]["pack"]
        row = rows[name] = {"weights": weights, "source": source, "target": target,
                            "ok": all(x["ok"] for x in r + p), "repack_runs": r, "pack_runs": p}
        if not row["ok"]:
            continue
        row["repack_wall_s"] = round(statistics.median(x["process_wall_s"] for x in r), 2)
        row["pack_wall_s"] = round(statistics.median(x["process_wall_s"] for x in p), 2)
        row["repack_over_pack"] = round(statistics.median(a["process_wall_s"] / b["process_wall_s"]
                                                          for a, b in zip(r, p)), 2)
        row["repack_peak_rss_bytes"] = int(statistics.median(x["peak_rss_bytes"] for x in r))
        row["pack_peak_rss_bytes"] = int(statistics.median(x["peak_rss_bytes"] for x in p))
        out_r, out_p = work / f"{name}.repack.onnx", work / f"{weights}-{target}.pack.onnx"
        srcf = sources[(weights, source)]
        row["source_bytes"], row["repack_bytes"], row["pack_bytes"] = (srcf.stat().st_size, out_r.stat().st_size,
                                                                       out_p.stat().st_size)
        row["max_abs_diff_to_pack"] = _outputs_diff(out_r, out_p)
        if target == "memory":
            for f in (srcf, out_r):
                if f not in ort_of:
                    ort_of[f] = bundle.ort_size_mb(f, "runtime", work)
            row["ort_mb_source"], row["ort_mb_repacked"] = ort_of[srcf], ort_of[out_r]
        print(f"{name}: repack {row['repack_wall_s']} s vs pack {row['pack_wall_s']} s "
              f"({row['repack_over_pack']}x), outputs max abs diff {row['max_abs_diff_to_pack']:.3g}", flush=True)

    basis = ("process wall and the deploytool process's peak RSS (wait4 ru_maxrss; pack's gate process for an input "
             "over 50 MB is not in it, repack's in-process gate is) of `deploytool repack` from the packed file and of "
             "`deploytool pack` from the fp32 file to the same target, fresh processes, interleaved with the order "
             "swapped every round, the gate on; repack_over_pack: median of the paired ratios")
    write_results(args.output, {"benchmark": "repack_bench", "model": model_info, "repeats": args.repeats,
                                "basis": basis, "sources": prep, "cases": rows}, run)


if __name__ == "__main__":
    main()
