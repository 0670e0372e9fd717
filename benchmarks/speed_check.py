"""Did a pass get slower or bigger? One ``pass_speed.py`` results file against an earlier one.

A speed regression can stand unseen when each run is only read against its own goal: session 11's
``pass_speed.json`` had ``pack-binary`` at 12.4x the copy against 10.2x the run before, from a change that
made binary packing walk every matrix transposed; it was found a day later, by chance. This script compares
each pass (and each ``deploytool`` command row) of a new run with the same pass of a base run:

- **time**, over the ``cp`` of the same file timed right before each round (``over_paired_copy``: the basis
  that carries over between runs on one kind of machine; a wall in seconds does not, on shared VMs whose
  speed moves 20-40% within an hour). A pass is *slower* when the median of its rounds rose by more than
  ``tolerance`` (default 15%) **and** its fastest round is more than half the tolerance above the base's
  median round (the whole new run sits above the base's typical run, not one noisy round); *faster* the
  other way round; else *same*. On this project's Zen 3 VMs the regression above was +22%, its fastest round
  14% above the base's median; in slow spells of the VM the same code moved a pass's median by more than 15%
  with its fastest round just above the base's median (two runs of 2026-12-03, flagged by a rule of "fastest
  round above the median", the code cleared by an A/B: ``pass_speed_ab_input_skeleton.json``).
- **memory**: the pass's peak RSS over the file, *bigger* when it rose by more than ``rss_tolerance``
  (default 25%) and by at least 0.05x the file (RSS is steadier than time but allocator noise is real).
- **failure**: a pass that ran in the base and fails now.

Runs on different kinds of CPU (vendor, family and model from each file's ``run`` block) or on files of
different sizes are not compared: their ratios to ``cp`` differ by more than the tolerance for reasons no
code change made (the check says so and exits 2).

A ``big_models.py`` results file (BERT-large, XLM-R-large) is checked on memory, its goal: each pass's
peak RSS over the input and the gate's (the gate's only between runs on one kind of CPU), and failures
(:func:`check_big_models`); ``big_models.py`` runs that check after each run too. The gate's peak of a pass
whose gate warms memory while it waits (fp16, int8) depends on when the output arrives: 2026-12-03's run
had XLM-R-large fp16's gate at 0.91x the input against 0.68x the run before, and two re-runs of that pass
alone gave 0.68x and 0.63x. Re-run a flagged gate before blaming the code.

Usage::

    python benchmarks/speed_check.py NEW.json [--base FILE | --base-rev REV] [--tolerance 0.15] [-o CHECK.json]

The base defaults to the committed ``benchmarks/results/pass_speed.json`` (``git show HEAD:...``, so a run that
has just overwritten the working copy is still compared with the last committed one). Exit 0: nothing slower,
bigger or failing; 1: something regressed (listed); 2: the files cannot be compared. ``pass_speed.py`` runs the
same check against the committed file after each run and records it in its output (``regression_check``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS_PATH = "benchmarks/results/pass_speed.json"
BIG_MODELS_PATH = "benchmarks/results/big_models.json"
TOLERANCE = 0.15
RSS_TOLERANCE = 0.25
RSS_MIN_STEP = 0.05  # of the file: below this a rise is allocator noise, whatever its ratio


def _cpu(result: dict) -> tuple | None:
    cpu = (result.get("run") or {}).get("cpu") or {}
    key = (cpu.get("vendor"), cpu.get("family"), cpu.get("model"))
    return key if any(k is not None for k in key) else None


def _cpu_text(result: dict) -> str:
    cpu = (result.get("run") or {}).get("cpu") or {}
    return (f"{cpu.get('model_name', '?')} (family {cpu.get('family', '?')} model {cpu.get('model', '?')}, "
            f"{cpu.get('microarchitecture') or '?'})")


def _runs(new: dict, base: dict) -> dict:
    """When each of the two results was made and from which commit (the head of a check's result)."""
    return {k: {"created_utc": d.get("created_utc"), "commit": ((d.get("run") or {}).get("code") or {}).get("commit")}
            for k, d in (("new", new), ("base", base))}


def comparable(new: dict, base: dict) -> str | None:
    """None when ``new`` and ``base`` (pass_speed results) can be compared, else why not (one line)."""
    a, b = _cpu(new), _cpu(base)
    if a is None or b is None:
        return "a file has no 'run' block naming its CPU"
    if a != b:
        return f"measured on another kind of CPU: {_cpu_text(new)} against {_cpu_text(base)}"
    nb, bb = (new.get("model") or {}).get("bytes"), (base.get("model") or {}).get("bytes")
    if not nb or not bb or abs(nb - bb) > 0.01 * bb:
        return f"measured on another model: {nb} bytes against {bb}"
    return None


def _rounds(row: dict) -> list[float]:
    """The row's ratios to the paired cp, one per round (a pass row keeps them under 'repeats', a CLI row beside)."""
    vals = (row.get("repeats") or {}).get("over_paired_copy") or row.get("over_paired_copy") or []
    return [float(v) for v in vals if v is not None]


def _time_verdict(new: list[float], base: list[float], tolerance: float) -> dict:
    nm, bm = statistics.median(new), statistics.median(base)
    ratio = nm / bm
    if ratio > 1 + tolerance and min(new) > bm * (1 + tolerance / 2):
        verdict = "slower"
    elif ratio < 1 - tolerance and max(new) < bm * (1 - tolerance / 2):
        verdict = "faster"
    else:
        verdict = "same"
    return {"verdict": verdict, "ratio": round(ratio, 3), "new_x_copy": round(nm, 2), "base_x_copy": round(bm, 2),
            "new_rounds": [round(v, 2) for v in new], "base_rounds": [round(v, 2) for v in base]}


def _rss_verdict(new: float | None, base: float | None, tolerance: float) -> dict | None:
    if not new or not base:
        return None
    bigger = new > base * (1 + tolerance) and new - base >= RSS_MIN_STEP
    return {"verdict": "bigger" if bigger else "same", "new_rss_x_file": new, "base_rss_x_file": base,
            "ratio": round(new / base, 3)}


def _compare_rows(new_rows: dict, base_rows: dict, tolerance: float, rss_tolerance: float) -> dict:
    out: dict = {}
    for name in sorted(set(new_rows) | set(base_rows)):
        n, b = new_rows.get(name), base_rows.get(name)
        if n is None or b is None:
            out[name] = {"verdict": "not in the new run" if n is None else "not in the base run"}
            continue
        if b.get("ok") and not n.get("ok"):
            out[name] = {"verdict": "fails now", "errors": n.get("errors") or n.get("error")}
            continue
        nr, br = _rounds(n), _rounds(b)
        row: dict = {}
        if nr and br:
            row["time"] = _time_verdict(nr, br, tolerance)
        rss = _rss_verdict(n.get("peak_rss_over_file"), b.get("peak_rss_over_file"), rss_tolerance)
        if rss is not None:
            row["memory"] = rss
        if not row:
            row["verdict"] = "no rounds to compare"
        out[name] = row
    return out


def check(new: dict, base: dict, *, tolerance: float = TOLERANCE, rss_tolerance: float = RSS_TOLERANCE) -> dict:
    """Compare two pass_speed results (parsed JSON). Returns ``{"comparable", "why_not", "passes", "cli",
    "regressed", "improved", ...}``; ``regressed`` lists ``"name: what"`` for every pass or command that is
    slower, bigger or failing."""
    why_not = comparable(new, base)
    result: dict = {"kind": "pass_speed", "comparable": why_not is None, "why_not": why_not, "tolerance": tolerance,
                    "rss_tolerance": rss_tolerance, **_runs(new, base), "regressed": [], "improved": []}
    if why_not is not None:
        return result
    result["passes"] = _compare_rows(new.get("passes") or {}, base.get("passes") or {}, tolerance, rss_tolerance)
    result["cli"] = _compare_rows(new.get("cli") or {}, base.get("cli") or {}, tolerance, rss_tolerance)
    for section in ("passes", "cli"):
        prefix = "deploytool " if section == "cli" else ""
        for name, row in result[section].items():
            label = f"{prefix}{name}"
            if row.get("verdict") == "fails now":
                result["regressed"].append(f"{label}: fails now")
            t, m = row.get("time") or {}, row.get("memory") or {}
            if t.get("verdict") == "slower":
                result["regressed"].append(f"{label}: {t['base_x_copy']}x -> {t['new_x_copy']}x the copy "
                                           f"(x{t['ratio']}; fastest round {min(t['new_rounds'])}x)")
            elif t.get("verdict") == "faster":
                result["improved"].append(f"{label}: {t['base_x_copy']}x -> {t['new_x_copy']}x the copy (x{t['ratio']})")
            if m.get("verdict") == "bigger":
                result["regressed"].append(f"{label}: peak RSS {m['base_rss_x_file']}x -> {m['new_rss_x_file']}x "
                                           "the file")
    return result


def _big_rows(result: dict) -> dict[tuple[str, str], dict]:
    return {(r.get("model"), r.get("step")): r for r in result.get("table") or [] if r.get("step") != "export"}


def check_big_models(new: dict, base: dict, *, rss_tolerance: float = RSS_TOLERANCE) -> dict:
    """Compare two ``big_models.py`` results (parsed JSON) on memory, the goal there (timings are for
    information): each (model, pass)'s peak RSS over the input, bigger when it rose by more than
    ``rss_tolerance`` and by at least 0.05x the input; the gate process's peak alike, but only between runs
    on the same kind of CPU (ONNX Runtime's prepacked weights differ between CPUs); and a pass that
    ran in the base and fails now. Returns the same shape as :func:`check` (``rows`` per "model pass")."""
    same_cpu = _cpu(new) is not None and _cpu(new) == _cpu(base)
    result: dict = {"kind": "big_models", "comparable": True, "why_not": None, "rss_tolerance": rss_tolerance,
                    "same_cpu": same_cpu, **_runs(new, base), "regressed": [], "improved": [], "rows": {}}
    nr, br = _big_rows(new), _big_rows(base)
    for key in sorted(set(nr) & set(br), key=str):
        n, b = nr[key], br[key]
        label = f"{key[0]} {key[1]}"
        row: dict = {}
        if b.get("ok") and n.get("ok") is False:
            row["verdict"] = "fails now"
            result["regressed"].append(f"{label}: fails now ({n.get('error')})")
        for field, what in (("rss_over_input", "peak RSS"), ("gate_rss_over_input", "gate peak RSS")):
            if field == "gate_rss_over_input" and not same_cpu:
                continue
            v = _rss_verdict(n.get(field), b.get(field), rss_tolerance)
            if v is None:
                continue
            row[field] = v
            if v["verdict"] == "bigger":
                result["regressed"].append(f"{label}: {what} {v['base_rss_x_file']}x -> {v['new_rss_x_file']}x "
                                           "the input")
        result["rows"][label] = row
    result["not_compared"] = [f"{m} {s}" for m, s in sorted(set(nr) ^ set(br), key=str)]
    return result


def committed(rev: str = "HEAD", path: str = RESULTS_PATH) -> dict | None:
    """``path`` as committed at ``rev`` (None when git or the file is not there)."""
    try:
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return json.loads(text)


def summary_lines(result: dict) -> list[str]:
    """The check in a few lines of text."""
    base = result["base"]
    head = f"against the run of {base.get('created_utc')} (commit {(base.get('commit') or '?')[:7]})"
    if not result["comparable"]:
        return [f"speed check {head}: not compared ({result['why_not']})"]
    if result.get("kind") == "big_models" or "tolerance" not in result:  # memory only
        lines = [f"memory check {head}, tolerance {result['rss_tolerance']:.0%}"
                 + ("" if result["same_cpu"] else " (another kind of CPU: the gate's peaks not compared)") + ": "
                 + ("REGRESSED" if result["regressed"] else "nothing bigger or failing")]
        return lines + [f"  bigger/failing: {r}" for r in result["regressed"]]
    lines = [f"speed check {head}, tolerance {result['tolerance']:.0%}: "
             + ("REGRESSED" if result["regressed"] else "nothing slower, bigger or failing")]
    lines += [f"  slower/bigger/failing: {r}" for r in result["regressed"]]
    lines += [f"  faster: {r}" for r in result["improved"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("new", help="a pass_speed.py results file")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--base", default=None, help="the earlier results file [default: the committed one]")
    g.add_argument("--base-rev", default="HEAD",
                   help="the git revision whose committed file of the same kind (benchmarks/results/pass_speed.json "
                        "or big_models.json) is the base")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE)
    ap.add_argument("--rss-tolerance", type=float, default=RSS_TOLERANCE)
    ap.add_argument("-o", "--output", default=None, help="write the check as JSON here")
    args = ap.parse_args(argv)
    try:
        new = json.loads(Path(args.new).read_text())
        big = "table" in new and "passes" not in new
        path = BIG_MODELS_PATH if big else RESULTS_PATH
        base = json.loads(Path(args.base).read_text()) if args.base else committed(args.base_rev, path)
    except (OSError, ValueError) as e:
        print(f"speed_check: cannot read {e}", file=sys.stderr)
        return 2
    if base is None:
        print(f"speed_check: no {path} at {args.base_rev}", file=sys.stderr)
        return 2
    result = (check_big_models(new, base, rss_tolerance=args.rss_tolerance) if big else
              check(new, base, tolerance=args.tolerance, rss_tolerance=args.rss_tolerance))
    print("\n".join(summary_lines(result)))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    if not result["comparable"]:
        return 2
    return 1 if result["regressed"] else 0


if __name__ == "__main__":
    sys.exit(main())
