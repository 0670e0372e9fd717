"""Write a device report: ``report.json``, ``report.md`` (+ PNG plots beside it) and a self-contained
``report.html`` (plots inlined as base64 PNG, no external files, scripts or fonts).

Plots (matplotlib, Agg backend):
- ``latency_accuracy.png``: per device, device latency (measured on the host device, projected
  elsewhere) against accuracy, one line per precision through the width/depth variants: the
  DynaBERT trade-off curve. Without accuracy figures the y axis is the kept-parameter fraction, an
  accuracy *proxy*, and the axis says so.
- ``size_accuracy.png``: model size against accuracy (or the proxy), one colour per precision.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploytool.report.rows import ReportConfig, ReportRow, collect_rows

__all__ = ["ReportResult", "build_report", "render_html", "render_markdown", "plots"]

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
        return (f"{len(self.rows)} rows ({passing} within budget) for {', '.join(self.info['profiles'])} -> "
                f"{self.html_path}, {self.markdown_path}, {self.json_path}")


def _fmt(v: Any, key: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.1f}" if key in ("peak_memory_mb", "accuracy") else f"{v:.2f}" if key != "size_mb" else f"{v:.1f}"
    return str(v)


def _cell(r: ReportRow, key: str) -> str:
    if key == "budget":
        return {True: "PASS", False: "FAIL", None: "-"}[r.budget_pass]
    if key == "ep_ran" and r.ep_requested.lower() != r.ep_ran.lower():
        return f"{r.ep_ran} (asked {r.ep_requested.lower()})"
    if key == "projected_ms" and r.projected_ms is not None and r.cost_model_error is not None:
        return f"{r.projected_ms:.2f} ({r.cost_model_error:+.0%} vs measured)"
    return _fmt(getattr(r, key), key)


def _accuracy_axis(rows: Sequence[ReportRow]) -> tuple[str, dict[int, float | None]]:
    if any(r.accuracy is not None for r in rows):
        return "accuracy (%)", {id(r): r.accuracy for r in rows}
    return ("kept-parameter fraction (accuracy PROXY: no accuracy given)",
            {id(r): r.param_fraction for r in rows})


def plots(rows: Sequence[ReportRow]) -> dict[str, bytes]:
    """name -> PNG bytes of the two plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    label, yval = _accuracy_axis(rows)
    seq = max(r.seq_len for r in rows)
    sel = [r for r in rows if r.seq_len == seq]
    devices = list(dict.fromkeys(r.device for r in sel))
    n = len(devices)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.8 * nrows), squeeze=False)
    for ax, dev in zip(axes.flat, devices):
        dr = [r for r in sel if r.device == dev]
        for prec in sorted({r.precision for r in dr}):
            pts = sorted(((r.device_latency_ms, yval[id(r)], r) for r in dr
                          if r.precision == prec and r.device_latency_ms is not None and yval[id(r)] is not None),
                         key=lambda t: t[0])
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=prec)
            for x, y, r in pts:
                ax.annotate(r.arch if r.arch != "-" else r.model, (x, y), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
        budget = next((r.budget_ms for r in dr if r.budget_ms is not None), None)
        if budget is not None:
            ax.axvline(budget, color="red", linestyle="--", linewidth=1, label=f"p90 budget {budget:g} ms")
        src = "measured" if any(r.device_latency_source.startswith("measured") for r in dr) else "projected"
        ax.set_title(f"{dev} (seq {seq}, {src})", fontsize=9)
        ax.set_xlabel(f"p90 latency, ms ({src})", fontsize=8)
        ax.set_ylabel(label if len(label) < 20 else "kept-param fraction (proxy)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Latency vs accuracy per device (DynaBERT width/depth trade-off)"
                 + ("" if label.startswith("accuracy") else " - y: accuracy PROXY"), fontsize=10)
    fig.tight_layout()
    out["latency_accuracy.png"] = _png(fig, plt)

    fig, ax = plt.subplots(figsize=(6, 4))
    first = devices[0]
    seen = {}
    for r in rows:
        if r.device != first or r.seq_len != seq or yval[id(r)] is None:
            continue
        seen.setdefault(r.precision, []).append((r.size_mb, yval[id(r)], r))
    for prec, pts in sorted(seen.items()):
        pts.sort(key=lambda t: t[0])
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=prec)
        for x, y, r in pts:
            ax.annotate(r.arch if r.arch != "-" else r.model, (x, y), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel("model size, MB")
    ax.set_ylabel(label if len(label) < 20 else "kept-param fraction (proxy)")
    ax.set_title("Size vs accuracy per precision" + ("" if label.startswith("accuracy") else " (y: PROXY)"))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out["size_accuracy.png"] = _png(fig, plt)
    return out


def _png(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _notes(rows: Sequence[ReportRow], info: dict[str, Any]) -> list[str]:
    notes = [
        f"Latency measured on: {', '.join(info['hosts'])} (ONNX Runtime, batch 1). 'projected ms (device)' is a "
        "roofline PROJECTION from the graph's FLOPs/bytes per op and the profile's peak compute and memory "
        "bandwidth (deploytool/bench/cost_model.py), not a measurement.",
    ]
    errs = info.get("cost_model_host_errors") or []
    if errs:
        txt = ", ".join(f"{e['model']}@{e['seq_len']}: {e['error']:+.0%}" for e in errs[:8])
        notes.append(f"Cost model error where the device is the host (projected vs measured p50): {txt}.")
    if info.get("calibration"):
        notes.append("Projections are HOST-CALIBRATED (x measured/projected on the host, per precision: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in info["calibration"].items())
                     + "), assuming each device reaches the same fraction of its roofline as the host.")
    notes += [f"fp16: {x}" for x in info.get("fp16", [])]
    falls = sorted({f"{r.device}: {r.ep_note}" for r in rows if r.ep_note})
    if falls:
        notes.append("Execution providers that fell back: " + " | ".join(falls[:6]))
    if not any(r.accuracy is not None for r in rows):
        notes.append("No accuracy given: plots use the kept-parameter fraction as an accuracy PROXY.")
    return notes


def render_markdown(rows: Sequence[ReportRow], info: dict[str, Any], title: str, images: Sequence[str]) -> str:
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [f"# {title}", "", head, sep]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r, k).replace("|", "/") for k, _ in COLUMNS) + " |")
    lines += ["", "## Budgets", ""]
    for r in rows:
        lines.append(f"- {r.device} / {r.model} / seq {r.seq_len}: "
                     f"{ {True: 'PASS', False: 'FAIL', None: 'no budget'}[r.budget_pass] } ({r.budget_why})")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in _notes(rows, info)] + [""]
    lines += [f"![{Path(i).stem}]({i})" for i in images] + [""]
    return "\n".join(lines)


def render_html(rows: Sequence[ReportRow], info: dict[str, Any], title: str, images: dict[str, bytes]) -> str:
    e = html.escape
    th = "".join(f"<th>{e(h)}</th>" for _, h in COLUMNS)
    body = []
    for r in rows:
        tds = []
        for k, _ in COLUMNS:
            v = _cell(r, k)
            cls = ' class="pass"' if v == "PASS" else ' class="fail"' if v == "FAIL" else ""
            tip = f' title="{e(r.budget_why)}"' if k == "budget" else ""
            tds.append(f"<td{cls}{tip}>{e(v)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    imgs = "".join(
        f'<figure><img id="plot-{e(Path(n).stem)}" alt="{e(Path(n).stem)}" '
        f'src="data:image/png;base64,{base64.b64encode(b).decode()}"><figcaption>{e(Path(n).stem)}</figcaption></figure>'
        for n, b in images.items())
    notes = "".join(f"<li>{e(n)}</li>" for n in _notes(rows, info))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f0f0f0; }} td:nth-child(-n+6) {{ text-align: left; }}
td.pass {{ background: #d9f2d9; }} td.fail {{ background: #f8d7d7; }}
figure {{ display: inline-block; margin: 1em; }} img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{e(title)}</h1>
<table id="device-table"><thead><tr>{th}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<h2>Notes</h2><ul>{notes}</ul>
<h2>Plots</h2>
{imgs}
<script>/* marks each plot as rendered once decoded (checked by tests in headless Chromium) */
window.addEventListener("load", function () {{
  for (const img of document.images) img.dataset.rendered = img.naturalWidth > 0 ? "yes" : "no";
  document.body.dataset.plots = String(document.images.length);
}});</script>
</body></html>
"""


def build_report(config: ReportConfig) -> ReportResult:
    """Collect the rows and write report.json, report.md (+ PNGs) and report.html into ``config.out_dir``."""
    from deploytool.onnx_io import atomic_path, atomic_write

    rows, info = collect_rows(config)
    images = plots(rows)
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    plot_paths = []
    for name, data in images.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(data)
        plot_paths.append(out / name)
    payload = {"schema": "deploytool.report/1", "title": config.title, "inputs": [str(p) for p in config.results],
               "accuracy_inputs": [str(p) for p in config.accuracy], **info,
               "columns": [k for k, _ in COLUMNS], "rows": [r.to_dict() for r in rows]}
    with atomic_write(out / "report.json") as f:
        json.dump(payload, f, indent=2)
    with atomic_write(out / "report.md") as f:
        f.write(render_markdown(rows, info, config.title, list(images)))
    with atomic_write(out / "report.html") as f:
        f.write(render_html(rows, info, config.title, images))
    return ReportResult(out, out / "report.json", out / "report.md", out / "report.html", plot_paths, rows, info)
