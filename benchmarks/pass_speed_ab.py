"""Passes at file speed, before and after a change, in one run: the same passes from a base git revision and from
this working tree, interleaved, each in a fresh process.

``benchmarks/pass_speed.py`` measures one tree against ``cp``; between two of its runs the machine changes (on
this project's shared VMs the same pass has moved by 20-40% within an hour), so a change's effect cannot be read
off two results files. This script runs, per round and per pass, ``cp`` of the file, the pass from the base
revision (checked out into a temporary ``git worktree``, imported from there), ``cp`` again and the pass from
this tree, swapping which tree goes first every round; both sides run this tree's ``_pass_worker.py`` (the
one-pass process ``pass_speed.py`` times) with that tree's ``deploytool`` first on the path, so both sides time the
same harness. Reported per pass: both sides'
median process wall, each over the cp timed right before it, and the median over rounds of the paired
ratio this tree / base.

Usage: ``python benchmarks/pass_speed_ab.py --base REV --model BERT_BASE.onnx [--passes pack,fp16] [--rounds 5]
[-o results/pass_speed_ab.json]``. The model is a BERT-base-shaped file (``pass_speed.py --work DIR`` exports
one). The base revision's tree is removed afterwards.
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

from _stamp import stamp  # beside this script: the results file's "run" block
# pass_speed.py's own: the environment without PYTHONDONTWRITEBYTECODE (bytecode cached in both trees, compiled
# first), a cp timed after a sync, a file read into the page cache
from pass_speed import _ENV, _read_through, _timed_cp

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
DEFAULT_PASSES = ("fp16", "pack", "pack-densest", "pack-binary", "pack-split-binary", "reorder", "slice")


def _run_pass(tree: Path, name: str, src: Path, dst: Path) -> dict:
    """``name`` through this tree's one-pass worker, importing deploytool from ``tree``."""
    if dst.exists():
        dst.unlink()
    os.sync()
    env = dict(_ENV, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(ROOT / "_pass_worker.py"),
                        json.dumps({"pass": name, "src": str(src), "dst": str(dst)})],
                       capture_output=True, text=True, cwd=str(tree), env=env)
    wall = time.perf_counter() - t0
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith("{")), None)
    out = json.loads(line) if p.returncode == 0 and line else {
        "ok": False, "error": " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])[:400]}
    out["process_wall_s"] = round(wall, 3)
    return out


def _which_deploytool(tree: Path) -> str:
    env = dict(_ENV, PYTHONPATH=str(tree))
    p = subprocess.run([sys.executable, "-c", "import deploytool, sys; sys.stdout.write(deploytool.__file__)"],
                       capture_output=True, text=True, cwd=str(tree), env=env, check=True)
    return p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the git revision to compare with (e.g. HEAD~3)")
    ap.add_argument("--model", required=True, type=Path, help="a BERT-base-shaped .onnx")
    ap.add_argument("--passes", default=",".join(DEFAULT_PASSES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "results" / "pass_speed_ab.json")
    args = ap.parse_args()
    run = stamp()
    passes = [p for p in args.passes.split(",") if p]
    src = args.model.resolve()
    if not src.is_file():
        ap.error(f"--model {args.model}: no such file")
    rev = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"], capture_output=True,
                         text=True, cwd=REPO)
    if rev.returncode:
        ap.error(f"--base {args.base}: not a commit of this repository")
    base_rev = rev.stdout.strip()
    import compileall

    with tempfile.TemporaryDirectory(prefix="pass-speed-ab-") as tmp:
        tmp = Path(tmp)
        base = tmp / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), base_rev], cwd=REPO, check=True)
        try:
            for tree in (base, REPO):
                compileall.compile_dir(str(tree / "deploytool"), quiet=1)
                if (tree / "setup.py").is_file():  # its compiled module, as the install builds it (a worktree has
                    # none: the base would run the numpy code where a user's install runs the kernels)
                    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, check=True,
                                   capture_output=True)
                where = _which_deploytool(tree)
                if not where.startswith(str(tree)):
                    raise SystemExit(f"{tree}: deploytool imports from {where}, not from the tree")
            _read_through(src)  # in the page cache, as after an export
            trees = {"base": base, "this": REPO}
            runs: dict[str, dict[str, list[dict]]] = {p: {"base": [], "this": []} for p in passes}
            for r in range(args.rounds):
                order = ("base", "this") if r % 2 == 0 else ("this", "base")
                for name in passes:
                    for side in order:
                        cp = _timed_cp(src, tmp / "paired-copy.onnx")
                        out = _run_pass(trees[side], name, src, tmp / f"out-{side}.onnx")
                        out["cp_paired_s"] = round(cp, 3)
                        out["round"] = r
                        runs[name][side].append(out)
                        (tmp / "paired-copy.onnx").unlink()
                        print(f"[round {r + 1}/{args.rounds}] {name:18s} {side:4s} {out['process_wall_s']:.2f} s "
                              f"(cp {cp:.3f} s){'' if out.get('ok') else ' FAILED ' + out.get('error', '')}",
                              flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False)
    summary = []
    for name in passes:
        row: dict = {"pass": name}
        for side in ("base", "this"):
            rs = [x for x in runs[name][side] if x.get("ok")]
            row[side] = {"ok": len(rs) == len(runs[name][side]),
                         "median_wall_s": round(statistics.median(x["process_wall_s"] for x in rs), 3) if rs else None,
                         "median_x_copy": round(statistics.median(x["process_wall_s"] / x["cp_paired_s"] for x in rs), 2)
                         if rs else None,
                         "median_pass_s": round(statistics.median(x["pass_s"] for x in rs), 3) if rs else None,
                         "median_gate_s": round(statistics.median((x.get("stats") or {}).get("verify_s") or 0 for x in rs), 3)
                         if rs else None}
        pairs = [(b["process_wall_s"], t["process_wall_s"]) for b, t in zip(runs[name]["base"], runs[name]["this"])
                 if b.get("ok") and t.get("ok")]
        row["ratio_this_over_base"] = [round(t / b, 3) for b, t in pairs]
        row["median_ratio"] = round(statistics.median(t / b for b, t in pairs), 3) if pairs else None
        summary.append(row)
        print(f"{name:18s} base {row['base']['median_wall_s']} s ({row['base']['median_x_copy']}x cp)  "
              f"this {row['this']['median_wall_s']} s ({row['this']['median_x_copy']}x cp)  "
              f"this/base {row['median_ratio']}")
    report = {"benchmark": "pass_speed_ab", "model": {"path": str(src), "bytes": src.stat().st_size},
              "base": {"rev": args.base, "commit": base_rev}, "rounds": args.rounds, "passes": passes,
              "basis": "process wall of this tree's _pass_worker.py with each tree's deploytool (fresh process: interpreter, imports, "
                       "load, pass, write, gate), interleaved per round with the tree order swapped every round; "
                       "x_copy over a cp of the file timed right before each run; ratio: this tree's wall over the "
                       "base's in the same round",
              "summary": summary, "runs": runs}
    report["run"] = stamp(run)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
