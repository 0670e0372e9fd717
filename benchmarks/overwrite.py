"""A pass run again onto its previous output: what replacing the old file costs, and what deferring its removal saves.

Users run a pass again onto the same ``-o`` (a new importance file, another width, a fixed config). The
output is written beside the destination and renamed onto it at the end; the old file it replaces has
its data on disk by then (written back within ~30 s), and freeing a big file's blocks is slow on ext4
mounted with ``discard`` (this project's VMs), besides ``rename`` over an existing file making ext4 start
writing the new one out (``auto_da_alloc``). ``deploytool.onnx_io.replace_file`` renames the old file
aside and leaves its removal to a detached ``rm``.

On the BERT-base-shaped file (``pass_speed.py``'s export, or ``--model``), in rounds, each in a fresh
Python process as ``_pass_worker.py`` runs a pass (its wall as the driver sees it), for each pass:

- ``fresh``: no file at the destination;
- ``existing``: the previous output there, written back to disk first (``sync``), removal deferred (the
  default);
- ``existing_inline``: the same, with ``DEFERRED_REMOVAL_BYTES`` set out of reach in that process: a plain
  ``os.replace``, the behaviour before;

and, as the peer, ``cp`` of the input onto a missing and onto an existing, written-back file. Ratios are
paired within a round. At the end: no file renamed aside is left in the folder (the detached ``rm`` ran).

``python benchmarks/overwrite.py [--model M.onnx] [--repeats N] [-o benchmarks/results/overwrite.json]``
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pass_speed import bert_base_run  # noqa: E402  (beside this script)

RESULTS = HERE / "results" / "overwrite.json"
PASSES = ("reorder", "slice", "fp16")
MODES = ("fresh", "existing", "existing_inline")

_WORKER = """
import json, sys
spec = json.loads(sys.argv[1])
if spec.pop("inline", False):
    from deploytool import onnx_io
    onnx_io.DEFERRED_REMOVAL_BYTES = 1 << 62  # a plain os.replace, as before
sys.path.insert(0, spec.pop("here"))
from _pass_worker import run
print(json.dumps(run(spec)), flush=True)
"""


def _sync() -> None:
    subprocess.run(["sync"], check=True)


def _timed(argv: list[str]) -> tuple[float, str]:
    _sync()
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{argv[:3]} exited {p.returncode}: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return wall, p.stdout


def _pass(name: str, src: Path, dst: Path, inline: bool) -> dict:
    _settle(dst.parent)
    spec = {"pass": name, "src": str(src), "dst": str(dst), "inline": inline, "here": str(HERE)}
    wall, out = _timed([sys.executable, "-c", _WORKER, json.dumps(spec)])
    res = json.loads(next(ln for ln in reversed(out.splitlines()) if ln.startswith("{")))
    if not res.get("ok"):
        raise SystemExit(f"{name}: {res.get('error')}")
    return {"wall_s": round(wall, 3), "pass_s": res["pass_s"]}


def _aside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.old"))


def _settle(folder: Path, limit: float = 60.0) -> None:
    """Wait until the detached removal of the last step's old file has ended: no step pays for another's."""
    deadline = time.monotonic() + limit
    while _aside(folder) and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    args, started, work, src, info = bert_base_run(__doc__, RESULTS, "deploytool-overwrite-")
    from _stamp import stamp

    with open(src, "rb") as f:  # in the page cache, as after an export
        while f.read(16 << 20):
            pass
    out_dir = work / "outputs"
    out_dir.mkdir(exist_ok=True)
    rows: dict[str, dict[str, list]] = {p: {m: [] for m in MODES} for p in PASSES}
    cp_rows: dict[str, list[float]] = {"fresh": [], "existing": []}
    for r in range(args.repeats):
        for name in PASSES:
            dst = out_dir / f"{name}.onnx"
            for mode in MODES:
                if mode == "fresh":
                    dst.unlink(missing_ok=True)
                elif not dst.exists():
                    _pass(name, src, dst, inline=True)  # the previous output, then written back by _timed's sync
                rows[name][mode].append(_pass(name, src, dst, inline=(mode == "existing_inline")))
            print(f"[round {r + 1}] {name}: " + ", ".join(f"{m} {rows[name][m][-1]['wall_s']:.2f} s" for m in MODES),
                  flush=True)
        cdst = out_dir / "copy.onnx"
        cdst.unlink(missing_ok=True)
        _settle(out_dir)
        cp_rows["fresh"].append(round(_timed(["cp", str(src), str(cdst)])[0], 3))
        cp_rows["existing"].append(round(_timed(["cp", str(src), str(cdst)])[0], 3))
    _settle(out_dir)
    left = _aside(out_dir)

    summary = []
    for name in PASSES:
        w = {m: [x["wall_s"] for x in rows[name][m]] for m in MODES}
        summary.append({
            "pass": name, "output_bytes": (out_dir / f"{name}.onnx").stat().st_size,
            **{f"{m}_median_s": round(statistics.median(w[m]), 3) for m in MODES},
            "existing_over_fresh": round(statistics.median(a / b for a, b in zip(w["existing"], w["fresh"])), 3),
            "inline_over_fresh": round(statistics.median(a / b for a, b in zip(w["existing_inline"], w["fresh"])), 3),
            "saved_s": round(statistics.median(a - b for a, b in zip(w["existing_inline"], w["existing"])), 3),
        })
    report = {
        "created_utc": started["started_utc"], "model": info, "repeats": args.repeats,
        "what": "process wall of a pass onto a missing destination (fresh), onto its previous output written back to "
                "disk with the old file's removal deferred (existing, the default) and with a plain os.replace "
                "(existing_inline, the behaviour before); cp of the input onto a missing and an existing file",
        "passes": rows, "cp": cp_rows, "summary": summary,
        "cp_existing_over_fresh": round(statistics.median(a / b for a, b in zip(cp_rows["existing"], cp_rows["fresh"])), 3),
        "files_left_aside": left,
    }
    report["run"] = stamp(started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for s in summary:
        print(s)
    print(f"cp existing/fresh {report['cp_existing_over_fresh']}; left aside: {left or 'none'}; wrote {args.output}")


if __name__ == "__main__":
    main()
