"""The conformance matrix: every pass on ONNX files from other exporters, optimizers and families.

    .venv/bin/python benchmarks/conformance.py [--quick] [--chains] [--jobs 2] [-o benchmarks/results/conformance.json]

Family x exporter x ORT optimizer level x pass on random tiny models (4 layers, 6 heads, hidden 24,
FFN 40; see ``deploytool.testing.conformance`` for the exporters, the passes and the independent
PyTorch references). Each cell is "equal" (max |diff| <= 1e-4 on every output, padded batch),
"close" (int8 activations: int8, pack-densest, pack-speed; cosine to the reference within ``MIN_COSINE``),
"refused: reason", "n/a: reason" (the exporter or ORT's
optimizer itself failed) or "FAILED" (also: an equal or close output whose structure ``inspect`` no longer
reads where it reads the input's). Writes the JSON (machine, load, date, every cell) and a
Markdown table beside it (``conformance.md``) that the README quotes. ``--quick`` is the part CI
runs (tests/e2e/test_conformance.py): BERT and MPNet, optimum and TorchScript, optimizer off and 99.
Goal: 0 FAILED, at least 90% of the applicable cells equal.

``--chains``: the same graphs through two passes in a row (``CHAINS``: slice then pack-speed, int8 or
reorder; reorder then pack; a second prune-heads on a pruned file, numbered as that file; slice of a file
whose layers have different head counts; prune-ffn then slice or pack-speed; slice of an int8 file), each
against one composed PyTorch reference; written to ``conformance_chains.{json,md}``.

``--exporters`` also takes the export settings outside the default matrix (``SETTING_EXPORTERS``: weights also
graph inputs, no constant folding, int32 inputs, a fixed sequence, dynamo at opset 21, an fp16 model, renamed inputs
and outputs, external data, static batch 1, the fp32 export made fp16 by ONNX Runtime's transformer optimizer
``--float16``), written to ``-o conformance_export_settings.json`` (BERT, RoBERTa, MPNet, DeBERTa-v2 at levels 0 and
99) and, for every other family at level 0, ``-o conformance_export_settings_families.json``.

``--models``, ``--exporters``, ``--levels``, ``--passes``: a part of the matrix, or a pass run on its own
(``OPTION_PASSES``: ``int8-onnx``, ``quantize --int8 --fusion onnx``, written to ``-o``, e.g.
``conformance_int8_onnx.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _worker(args) -> list[dict]:
    names, exporters, levels, passes, work = args
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from deploytool.testing import conformance as C

    models = [C.MODEL_BY_NAME[n] for n in names]

    def show(c):
        print(f"{c.model:18s} {c.exporter:15s} O{c.opt_level:<3d} {c.pass_name:15s} {c.status:8s} "
              f"{c.detail[:110]}", flush=True)

    return [c.as_dict() for c in C.run_matrix(models, exporters, levels, passes, work=Path(work), progress=show)]


def _table(cells: list[dict], passes: tuple[str, ...]) -> str:
    """One row per (model, exporter, level): one letter per pass."""
    mark = {"equal": "=", "close": "~", "refused": "R", "n/a": "-", "FAILED": "**F**"}
    rows: dict[tuple, dict] = {}
    for c in cells:
        rows.setdefault((c["model"], c["exporter"], c["opt_level"]), {})[c["pass_name"]] = c
    head = "| model | exporter | ORT opt | " + " | ".join(passes) + " |"
    sep = "|" + "---|" * (3 + len(passes))
    lines = [head, sep]
    for (m, e, lv), by in rows.items():
        lines.append(f"| {m} | {e} | {lv or 'off'} | " + " | ".join(mark.get(by[p]["status"], "?") if p in by else ""
                                                             for p in passes) + " |")
    return "\n".join(lines)


def compact_table(cells: list[dict], exporters) -> str:
    """One row per model, one column per exporter: cells equal (or int8-close) / applicable, summed over
    the optimizer levels and passes; 'R' counts refusals, 'n/a' where the exporter itself failed."""
    agg: dict[tuple, dict[str, int]] = {}
    for c in cells:
        d = agg.setdefault((c["model"], c["exporter"]), {})
        d[c["status"]] = d.get(c["status"], 0) + 1
    models = list(dict.fromkeys(c["model"] for c in cells))
    lines = ["| model | " + " | ".join(exporters) + " |", "|---|" + "---|" * len(exporters)]
    for m in models:
        row = []
        for e in exporters:
            d = agg.get((m, e), {})
            ok = d.get("equal", 0) + d.get("close", 0)
            appl = sum(v for k, v in d.items() if k != "n/a")
            txt = f"{ok}/{appl}" if appl else "n/a"
            if d.get("refused"):
                txt += f" ({d['refused']} R)"
            if d.get("FAILED"):
                txt += f" **{d['FAILED']} F**"
            row.append(txt)
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the CI subset")
    ap.add_argument("--chains", action="store_true",
                    help="two passes in a row (deploytool.testing.conformance.CHAINS) instead of single passes; "
                         "default output benchmarks/results/conformance_chains.json")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--models", default=None, help="comma-separated model cases (default: all)")
    ap.add_argument("--skip-models", default=None, help="comma-separated model cases left out of --models")
    ap.add_argument("--exporters", default=None,
                    help="comma-separated exporters (default: all; 'settings': every one of SETTING_EXPORTERS)")
    ap.add_argument("--levels", default=None, help="comma-separated ORT optimizer levels (default: 0,1,2,99)")
    ap.add_argument("--passes", default=None,
                    help="comma-separated passes (default: every pass of the matrix; also an option's pass, "
                         "deploytool.testing.conformance.OPTION_PASSES: int8-onnx)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("-o", "--output", "--out", dest="out", default=None)
    ap.add_argument("--splice-into", default=None, metavar="FILE",
                    help="re-run this part of the matrix and replace its cells in an existing results FILE (its other "
                         "cells kept; the part's own run recorded under 'spliced', with --why)")
    ap.add_argument("--why", default="", help="with --splice-into: why the part was run again")
    args = ap.parse_args()
    args.out = args.out or str(ROOT / "benchmarks/results" / ("conformance_chains.json" if args.chains
                                                               else "conformance.json"))
    run = stamp()
    import tempfile

    from deploytool.testing import conformance as C

    if args.quick:
        names, exporters, levels = ["bert", "mpnet"], ("optimum", "torchscript-17"), (0, 99)
    else:
        names, exporters, levels = [m.name for m in C.MODELS], C.EXPORTERS, C.OPT_LEVELS
    if args.models:
        names = args.models.split(",")
    if args.skip_models:
        skip = args.skip_models.split(",")
        unknown = [m for m in skip if m not in names]
        if unknown:
            ap.error(f"--skip-models: not in the run's models: {', '.join(unknown)}")
        names = [m for m in names if m not in skip]
    if args.exporters:
        exporters = C.SETTING_EXPORTERS if args.exporters == "settings" else tuple(args.exporters.split(","))
    if args.levels:
        levels = tuple(int(x) for x in args.levels.split(","))
    work = Path(args.work or tempfile.mkdtemp(prefix="conformance-"))
    t0 = time.time()
    load0 = os.getloadavg()
    # models are independent: spread them over the worker processes, largest first
    jobs = max(1, min(args.jobs, len(names)))
    buckets = [names[i::jobs] for i in range(jobs)]
    passes = C.CHAINS if args.chains else C.PASSES
    if args.passes:
        passes = tuple(args.passes.split(","))
        known = C.CHAINS if args.chains else C.PASSES + C.OPTION_PASSES
        unknown = [p for p in passes if p not in known]
        if unknown:
            ap.error(f"--passes: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    tasks = [(b, exporters, levels, passes, str(work / f"w{i}")) for i, b in enumerate(buckets)]
    if jobs == 1:
        results = [_worker(tasks[0])]
    else:
        with mp.get_context("spawn").Pool(jobs) as pool:
            results = pool.map(_worker, tasks)
    cells = [c for r in results for c in r]
    if args.splice_into:
        _splice(Path(args.splice_into), cells, args.why, names, exporters, levels, passes, stamp(run), C)
        return
    order = {n: i for i, n in enumerate(names)}
    known_exporters = C.EXPORTERS + C.SETTING_EXPORTERS
    cells.sort(key=lambda c: (order[c["model"]], known_exporters.index(c["exporter"]), c["opt_level"],
                              passes.index(c["pass_name"])))
    report = {
        "benchmark": "conformance",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_start": load0, "load_average_at_end": os.getloadavg(),
        "wall_s": round(time.time() - t0, 1), "jobs": jobs, "quick": args.quick,
        "shape": {"layers": C.LAYERS, "heads": C.HEADS, "hidden": C.HIDDEN, "ffn": C.FFN},
        "models": names, "exporters": list(exporters), "opt_levels": list(levels), "passes": list(passes),
        "chains": args.chains,
        **_derived(cells, C),
        "cells": cells,
    }
    report["run"] = stamp(run)
    _write(Path(args.out), report)
    print(json.dumps(report["summary"]), f"{report['wall_s']} s ->", args.out)


def _derived(cells: list[dict], C) -> dict:
    """The fields computed from the cells: summary, references used, refusals, failures."""
    refs: dict[str, int] = {}
    for c in cells:
        if c["status"] in ("equal", "close") and c["reference"]:
            refs[c["reference"]] = refs.get(c["reference"], 0) + 1
    return {"summary": C.summarize([C.Cell(**c) for c in cells]), "references_used": refs,
            "refusals": sorted({f"{c['model']}: {c['detail'][:160]}" for c in cells if c["status"] == "refused"}),
            "failed": [c for c in cells if c["status"] == "FAILED"]}


def _write(out: Path, report: dict) -> None:
    """The results JSON and the Markdown table beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    cells, passes, exporters = report["cells"], report["passes"], report["exporters"]
    title = "Conformance matrix, two passes in a row" if report["chains"] else "Conformance matrix"
    what = "chains" if report["chains"] else "passes"
    spliced = "".join(f"\n\nCells run again and spliced in ({s['run']['finished_utc']}): {s['cells']} cells of "
                      f"{', '.join(s['models'])} x {', '.join(s['exporters'])} x levels "
                      f"{', '.join(map(str, s['opt_levels']))}: {s['why']}" for s in report.get("spliced", []))
    out.with_suffix(".md").write_text(
        f"# {title} ({report['date']}, {report['machine']['cpu']}, "
        f"{report['wall_s']} s)\n\n`=` equal to the reference (max diff <= 1e-4), `~` close (int8 "
        f"activations: int8, pack-densest, pack-speed; cosine), `R` refused with a reason, `-` exporter/optimizer "
        f"failed, **F** FAILED.{spliced}\n\n"
        f"Summary: {json.dumps(report['summary'])}\n\nPer model and exporter (equal or close / applicable cells, "
        f"over {len(report['opt_levels'])} optimizer settings x {len(passes)} {what}):\n\n"
        f"{compact_table(cells, exporters)}\n\nEvery cell:\n\n{_table(cells, passes)}\n")


def _splice(path: Path, cells: list[dict], why: str, names, exporters, levels, passes, run: dict, C) -> None:
    """Replace the cells of ``path`` (a full results file) that this part ran again; every one of the part's
    cells must already be in it (a splice corrects cells, it does not add any), except those of a model the
    file does not have at all, run over the file's whole grid (its exporters, levels and passes): that model is
    added, so that the file stays one complete grid."""
    report = json.loads(path.read_text())

    def key(c):
        return c["model"], c["exporter"], c["opt_level"], c["pass_name"]

    new = {key(c): c for c in cells}
    added = [n for n in names if n not in report["models"]]
    if added and (list(exporters) != report["exporters"] or list(levels) != report["opt_levels"]
                  or list(passes) != report["passes"]):
        sys.exit(f"--splice-into {path}: {', '.join(added)} not in it; a model is added only when run over the "
                 "file's whole grid (its exporters, levels and passes)")
    missing = sorted(k for k in set(new) - {key(c) for c in report["cells"]} if k[0] not in added)
    if missing:
        sys.exit(f"--splice-into {path}: {len(missing)} cells of this part are not in it (e.g. {missing[0]})")
    report["cells"] = [new.get(key(c), c) for c in report["cells"]] + [c for c in cells if c["model"] in added]
    report["models"] = list(report["models"]) + added
    report.update(_derived(report["cells"], C))
    # an earlier splice of exactly this part is superseded: each of its cells comes from this run now
    report["spliced"] = [s for s in report.get("spliced", []) if (s["models"], s["exporters"], s["opt_levels"],
                         s["passes"]) != (list(names), list(exporters), list(levels), list(passes))]
    report["spliced"].append({"why": why, "models": list(names), "exporters": list(exporters),
                                             "opt_levels": list(levels), "passes": list(passes), "cells": len(cells),
                                             "run": run})
    _write(path, report)
    print(json.dumps(report["summary"]), f"{len(cells)} cells spliced into {path}")


if __name__ == "__main__":
    main()
