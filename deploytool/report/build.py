"""Write a device report: ``report.json``, ``report.md`` (+ PNG plots beside it) and a self-contained
``report.html`` (plots inlined as base64 PNG, no external files, scripts or fonts).

The page reads top to bottom like a device benchmark page:

1. a summary: per device, the best variant that fits its budget (:mod:`.summary`), or "none fits"
   and why; where and with what it was measured; that device latency is PROJECTED by the cost model
   except on the host that ran the benchmark;
2. the plots (:mod:`.plots`):
   - ``latency_accuracy.png``: per device, device p90 latency (measured on the host device, projected
     elsewhere) at the longest measured sequence length against accuracy, one colour per precision,
     one marker per depth, each precision's best-accuracy-for-latency frontier drawn as a line: the
     DynaBERT width/depth trade-off curve; the budget as a line, the pick as a star. Without accuracy
     figures the y axis is the kept-parameter fraction, an accuracy *proxy*, and the axis says so.
   - ``size_accuracy.png``: model size against accuracy (or the proxy), one colour per precision, with
     the devices' size budgets;
3. one table per device: the facts shared by its rows (SoC, cores, threads, execution provider asked
   for and the one that ran, budgets) in its header; one row per variant (sorted by precision, then
   width, then depth), the sequence lengths side by side, each with host p50/p90 (measured), the
   device p90 (projected, or measured on the host) and the budget verdict (the failed budget named;
   the full comparison as a tooltip);
4. notes: the cost model's own error on the host, calibration, fp16.

``report.json`` keeps one flat row per (device, model, sequence length): its ``rows`` only gain fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

from deploytool.errors import OutputPathError
from deploytool.onnx_io import atomic_path, atomic_write, check_output_path, check_writable
from deploytool.report.cells import _summary_records
from deploytool.report.html_report import render_html
from deploytool.report.markdown_report import render_markdown
from deploytool.report.plots import plots
from deploytool.report.rows import ReportConfig, ReportRow, collect_rows
from deploytool.report.summary import summarize

__all__ = ["COLUMNS", "ReportResult", "build_report"]

# the flat row columns, listed in report.json as before (the HTML/Markdown tables are grouped per device)
COLUMNS = [
    ("device", "device"), ("soc", "SoC"), ("core", "core"), ("ep_ran", "EP ran"), ("precision", "precision"),
    ("arch", "arch"), ("threads", "threads"), ("seq_len", "seq"), ("p50_ms", "p50 ms (host)"),
    ("p90_ms", "p90 ms (host)"), ("projected_ms", "projected ms (device threads)"), ("peak_memory_mb", "peak MB"),
    ("size_mb", "size MB"), ("accuracy", "accuracy %"), ("budget", "budget"),
]


@dataclasses.dataclass
class ReportResult:
    out_dir: Path
    json_path: Path
    markdown_path: Path
    html_path: Path
    plot_paths: list[Path]
    rows: list[ReportRow]
    info: dict[str, Any]

    def summary(self) -> str:
        passing = sum(1 for r in self.rows if r.budget_pass)
        unjudged = sum(1 for r in self.rows if r.latency_unjudged and r.budget_pass is not False)
        judged = f", {unjudged} not judged: no latency" if unjudged else ""
        lines = [f"{len(self.rows)} rows ({passing} within budget{judged}) for {', '.join(self.info['profiles'])} -> "
                 f"{self.html_path}, {self.markdown_path}, {self.json_path}"]
        for d in self.info.get("summary", []):
            lines.append(f"  {d['device']}: {d['verdict_short']}")
        return "\n".join(lines)


#: every file a report writes into its folder
OUTPUT_NAMES = ("report.json", "report.md", "report.html", "latency_accuracy.png", "size_accuracy.png")


def _refuse_overwriting_inputs(config: ReportConfig) -> None:
    """OutputPathError before any work when an input (a bench JSON, an accuracy file) is one of the files the
    report writes (``report report.json -o .``: the report would replace the bench JSON it was made from)."""
    outputs = {}
    for name in OUTPUT_NAMES:
        with contextlib.suppress(OSError):
            outputs[(config.out_dir / name).resolve()] = config.out_dir / name
    for p in (*config.results, *config.accuracy):
        with contextlib.suppress(OSError):
            hit = outputs.get(Path(p).resolve())
            if hit is not None:
                raise OutputPathError(f"{hit}: the report would overwrite its input {p}; choose another -o folder")


def build_report(config: ReportConfig) -> ReportResult:
    """Collect the rows and write report.json, report.md (+ PNGs) and report.html into ``config.out_dir``."""
    from deploytool.choices import require_config

    require_config(config, ReportConfig, "build_report")
    check_writable(config.out_dir / "report.json")  # before any work: a read-only folder fails in one line
    for name in OUTPUT_NAMES[1:]:  # and a folder (or a FIFO) where one of its files goes, before any is written
        check_output_path(config.out_dir / name)
    _refuse_overwriting_inputs(config)
    rows, info = collect_rows(config)
    summaries = summarize(rows)
    info["summary"] = _summary_records(summaries, info, rows)
    images = plots(rows, summaries, info)
    payload = {"schema": "deploytool.report/1", "title": config.title, "inputs": [str(p) for p in config.results],
               "accuracy_inputs": [str(p) for p in config.accuracy], **info,
               "columns": [k for k, _ in COLUMNS], "rows": [r.to_dict() for r in rows]}
    # everything rendered before the first file is written: a rendering failure leaves the folder as it was
    # (each file is written whole, by rename; a rerun into the same folder replaces them)
    texts = {"report.json": json.dumps(payload, indent=2),
             "report.md": render_markdown(rows, info, config.title, list(images), summaries),
             "report.html": render_html(rows, info, config.title, images, summaries)}
    out = config.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{out}: cannot create the report folder ({e.strerror})") from e
    plot_paths = []
    for name, data in images.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(data)
        plot_paths.append(out / name)
    for name, text in texts.items():
        with atomic_write(out / name) as f:
            f.write(text)
    return ReportResult(out, out / "report.json", out / "report.md", out / "report.html", plot_paths, rows, info)
