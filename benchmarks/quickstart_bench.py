"""The quickstart as a benchmark: ``recipes/quickstart.yaml`` from an empty step store, into ``benchmarks/results/quickstart/``.

    .venv/bin/python benchmarks/quickstart_bench.py [--out-dir runs/quickstart-<UTC time>] [-o benchmarks/results/quickstart]

Runs ``python -m deploytool run recipes/quickstart.yaml -o OUT_DIR --cache-dir OUT_DIR-store -q`` in a child
process, the store a new folder so that every step runs (what the README's "from an empty store" says; it is
kept: the run's steps link into it),
then copies ``OUT_DIR/run.json`` and ``OUT_DIR/report/report.{json,md}`` into the results folder and writes
``meta.json`` beside them: the command, date, machine (CPU, cores), load average at the start and the end,
wall seconds, the recipe's own seconds, the number of steps and of cached ones, and the ``run`` block
(``_stamp.py``). Nothing is written to the results folder unless the run succeeds. The run's folder
(models, the fine-tuned classifier the int8/pack benchmarks evaluate) stays in OUT_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECIPE = ROOT / "recipes" / "quickstart.yaml"


def _cpu_label(run: dict) -> str:
    """"MODEL (family F, model M, AVX-512 VNNI, AMX)", the form meta.json has used, from the run block."""
    cpu = run.get("cpu") or {}
    feats = set(cpu.get("features") or [])
    parts = [f"family {cpu.get('family')}", f"model {cpu.get('model')}"] if cpu.get("family") is not None else []
    parts += [label for key, label in (("vnni", "AVX-512 VNNI" if "avx512" in feats else "VNNI"), ("amx", "AMX"))
              if key in feats]
    return cpu.get("model_name", "CPU not recorded") + (f" ({', '.join(parts)})" if parts else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", type=Path, default=None, help="the run's folder (default runs/quickstart-<UTC time>)")
    ap.add_argument("-o", "--output", "--out", dest="out", type=Path, default=HERE / "results" / "quickstart",
                    help="results folder (default %(default)s)")
    args = ap.parse_args(argv)
    out_dir = args.out_dir or Path("runs") / time.strftime("quickstart-%Y%m%dT%H%M%SZ", time.gmtime())
    folder = out_dir if out_dir.is_absolute() else ROOT / out_dir  # the run's cwd is the repository root
    store = folder.with_name(folder.name + "-store")
    for f in (folder, store):
        if f.exists():
            print(f"quickstart_bench: {f} exists; give a new --out-dir (steps there would be reused)", file=sys.stderr)
            return 2
    run = stamp()
    cmd = [sys.executable, "-m", "deploytool", "run", str(RECIPE), "-o", str(folder), "--cache-dir", str(store), "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        print(f"quickstart_bench: deploytool run exited {p.returncode}; {args.out} left as it was", file=sys.stderr)
        return 1
    result = json.loads((folder / "run.json").read_text())
    block = stamp(run)
    meta = {"benchmark": f"python benchmarks/quickstart_bench.py (deploytool run recipes/quickstart.yaml -o {out_dir} "
                         f"--cache-dir {out_dir}-store, a new store)",
            "date": block["started_utc"],
            "machine": {"cpu": _cpu_label(block), "cores": (block.get("cores") or {}).get("usable")},
            "load_average_at_start": block["load_average_start"], "load_average_at_end": block["load_average_end"],
            "wall_s": round(wall), "run_seconds": round(result["seconds"]), "steps": len(result["steps"]),
            "cached_steps": sum(bool(s.get("cached")) for s in result["steps"]), "out_dir": str(out_dir),
            "run": block}
    args.out.mkdir(parents=True, exist_ok=True)
    # every file staged first, then moved in: a failure leaves the old set whole
    staged = []
    for src, name in ((folder / "run.json", "run.json"), (folder / "report" / "report.json", "report.json"),
                      (folder / "report" / "report.md", "report.md")):
        if src.exists():
            tmp = args.out / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            staged.append((tmp, args.out / name))
    tmp = args.out / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    staged.append((tmp, args.out / "meta.json"))
    for tmp, dst in staged:
        tmp.replace(dst)
    print(f"quickstart: {meta['run_seconds']} s for {meta['steps']} steps ({meta['cached_steps']} cached); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
