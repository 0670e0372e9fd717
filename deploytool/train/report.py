"""JSON and Markdown reports of a training pipeline run (teacher, DynaBERT, QAT, ONNX parity)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from deploytool.onnx_io import atomic_write

__all__ = ["write_train_report", "markdown"]


def _fmt(v, nd=2):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _ci(acc: float | None, n: int | None) -> str:
    """' [lo-hi]': the 95% Wilson interval of acc% of n examples (every row is on the same test split)."""
    if acc is None or not n:
        return ""
    from deploytool.stats import wilson_interval

    lo, hi = wilson_interval(min(n, max(0, int(round(acc * n / 100)))), n)
    return f" [{100 * lo:.1f}-{100 * hi:.1f}]"


def markdown(res: dict) -> str:
    t = res["teacher"]["test"]["accuracy"]
    n = res["teacher"]["test"].get("n") or res["dataset"]["sizes"].get("test")
    lines = [f"# Training benchmark: {res['dataset']['dataset']} ({res['schedule']} schedule)", "",
             f"Machine: {res.get('machine', '?')}; torch threads {res.get('threads')}; "
             f"total wall-clock {res['total_seconds']:.0f} s.",
             f"Split seed {res['dataset']['seed']}, sizes {res['dataset']['sizes']}, "
             f"test ids sha256 {res['dataset']['ids_sha256']['test']}.", "",
             f"Test accuracies carry their 95% Wilson interval at n = {n} (every row on the same test examples).", "",
             "| model | test accuracy % [95% CI] | of teacher | target | met | train s | notes |",
             "|---|---|---|---|---|---|---|"]
    for row in res["rows"]:
        acc = row["accuracy"]
        rel = None if acc is None else 100 * acc / t
        target = row.get("target")
        met = "-" if target is None or rel is None else ("yes" if rel >= target else "NO")
        lines.append(f"| {row['name']} | {_fmt(acc)}{_ci(acc, n)} | {_fmt(rel, 1)}% | {_fmt(target, 0) + '%' if target else '-'} "
                     f"| {met} | {_fmt(row.get('seconds'), 0)} | {row.get('notes', '')} |")
    if res.get("onnx"):
        lines += ["", "| ONNX model | test accuracy % | PyTorch % | difference (points) | within 0.2 | MB | "
                      "x smaller than its fp32 export |",
                  "|---|---|---|---|---|---|---|"]
        for row in res["onnx"]:
            if "error" in row:
                lines.append(f"| {row['name']} | - | - | - | {row['error']} | - | - |")
                continue
            d = row["accuracy"] - row["pytorch"]
            # lossy rows pack parts the PyTorch model kept in fp32: the difference is their cost
            within = "(lossy by design)" if row.get("lossy") else ("yes" if abs(d) <= 0.2 + 1e-9 else "NO")
            mb = f"{row['bytes'] / 1e6:.1f}" if row.get("bytes") else "-"
            lines.append(f"| {row['name']} | {row['accuracy']:.2f} | {row['pytorch']:.2f} | {d:+.2f} | {within} | "
                         f"{mb} | {_fmt(row.get('ratio_to_fp32_export'), 1)} |")
    if res.get("dynabert_test"):
        lines += ["", "DynaBERT sub-networks, test accuracy % [95% CI] and share of the teacher "
                      "(rows: width, columns: depth):", ""]
        depths = sorted({r["depth"] for r in res["dynabert_test"]})
        widths = sorted({r["width"] for r in res["dynabert_test"]})
        cell = {(r["width"], r["depth"]): r for r in res["dynabert_test"]}
        lines.append("| width \\ depth | " + " | ".join(f"{d:g}" for d in depths) + " |")
        lines.append("|---" * (len(depths) + 1) + "|")
        for w in widths:
            vals = []
            for d in depths:
                r = cell.get((w, d))
                vals.append("-" if r is None else
                            f"{r['accuracy']:.2f}{_ci(r['accuracy'], r.get('n') or n)} ({100 * r['accuracy'] / t:.1f}%)")
            lines.append(f"| {w:g} | " + " | ".join(vals) + " |")
    if res.get("dynabert_dev"):
        lines += ["", "DynaBERT sub-networks, dev accuracy % (rows: width, columns: depth):", ""]
        depths = sorted({r["depth"] for r in res["dynabert_dev"]})
        widths = sorted({r["width"] for r in res["dynabert_dev"]})
        grid = {(r["width"], r["depth"]): r["accuracy"] for r in res["dynabert_dev"]}
        lines.append("| width \\ depth | " + " | ".join(f"{d:g}" for d in depths) + " |")
        lines.append("|---" * (len(depths) + 1) + "|")
        for w in widths:
            lines.append(f"| {w:g} | " + " | ".join(_fmt(grid.get((w, d))) for d in depths) + " |")
    lines += ["", "Schedule:", "", "```", json.dumps(res["schedule_settings"], indent=1), "```"]
    if res.get("notes"):
        lines += [""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def write_train_report(res: dict, json_path: str | os.PathLike, md_path: str | os.PathLike) -> tuple[Path, Path]:
    with atomic_write(json_path) as f:
        json.dump(res, f, indent=2, default=str)
    with atomic_write(md_path) as f:
        f.write(markdown(res))
    return Path(json_path), Path(md_path)
