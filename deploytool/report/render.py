"""Write a device report: ``report.json``, ``report.md`` (+ PNG plots beside it) and a self-contained
``report.html`` (plots inlined as base64 PNG, no external files, scripts or fonts).

The page reads top to bottom like a device benchmark page:

1. a summary: per device, the best variant that fits its budget (:mod:`.summary`), or "none fits"
   and why; where and with what it was measured; that device latency is PROJECTED by the cost model
   except on the host that ran the benchmark;
2. the plots (matplotlib, Agg backend):
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

import base64
import dataclasses
import datetime as _dt
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploytool.report.rows import ReportConfig, ReportRow, collect_rows
from deploytool.report.summary import PRECISION_ORDER, DeviceSummary, ModelOnDevice, summarize

__all__ = ["ReportResult", "build_report", "render_html", "render_markdown", "plots"]

# the flat row columns, listed in report.json as before (the HTML/Markdown tables are grouped per device)
COLUMNS = [
    ("device", "device"), ("soc", "SoC"), ("core", "core"), ("ep_ran", "EP ran"), ("precision", "precision"),
    ("arch", "arch"), ("threads", "threads"), ("seq_len", "seq"), ("p50_ms", "p50 ms (host)"),
    ("p90_ms", "p90 ms (host)"), ("projected_ms", "projected ms (device threads)"), ("peak_memory_mb", "peak MB"),
    ("size_mb", "size MB"), ("accuracy", "accuracy %"), ("budget", "budget"),
]
_COLOURS = {"fp32": "#1f77b4", "fp16": "#17becf", "int8": "#ff7f0e", "ternary": "#2ca02c", "binary": "#9467bd"}
_MARKERS = ["o", "s", "^", "D", "v", "P"]


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
        lines = [f"{len(self.rows)} rows ({passing} within budget) for {', '.join(self.info['profiles'])} -> "
                 f"{self.html_path}, {self.markdown_path}, {self.json_path}"]
        for d in self.info.get("summary", []):
            lines.append(f"  {d['device']}: {d['verdict_short']}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ formatting
def _num(v: float | None, digits: int = 2) -> str:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "-"
    return f"{v:.{digits}f}"


def _fmt(v: Any, key: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return _num(v, 1 if key in ("peak_memory_mb", "accuracy", "size_mb") else 2)
    return str(v)


def _frac(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _budget_cell(r: ReportRow | None) -> tuple[str, str, str]:
    """(text, css class, tooltip) of a row's budget verdict."""
    if r is None:
        return "", "", ""
    if r.budget_pass is None:
        return "-", "", r.budget_why
    if getattr(r, "budget_uncertain", False):  # the projection's band straddles the budget
        return "uncertain", "uncertain", r.budget_why
    if r.budget_pass:
        return "PASS", "pass", r.budget_why
    return "FAIL " + "+".join(r.budget_failed or ["budget"]), "fail", r.budget_why


def _is_host(device: str, info: dict[str, Any], rows: Sequence[ReportRow]) -> bool:
    facts = info.get("devices", {}).get(device)
    if facts is not None:
        return bool(facts.get("is_host"))
    return any(r.device_latency_source.startswith("measured") for r in rows)


def _latency_kind(device: str, info: dict[str, Any], rows: Sequence[ReportRow]) -> str:
    if _is_host(device, info, rows):
        return "measured"
    if any(r.device_latency_source == "projected" for r in rows):
        return "projected"
    return "not measured"


def _device_lat(r: ReportRow | None) -> str:
    if r is None:
        return "-"
    lo, hi = getattr(r, "projected_low_ms", None), getattr(r, "projected_high_ms", None)
    if r.device_latency_source == "projected" and r.device_latency_ms is not None and lo is not None and hi is not None:
        return f"~{_num(r.device_latency_ms)} ({_num(lo)}-{_num(hi)})"  # the band from the model's measured error
    return _num(r.device_latency_ms)


def _budgets_text(facts: dict[str, Any] | None, seqs: Sequence[int]) -> str:
    if not facts:
        return "-"
    b = facts["budgets"]
    lat = {int(k): v for k, v in (b.get("p90_latency_ms") or {}).items()}
    parts = []
    for s in seqs:
        longer = sorted(k for k in lat if k >= s)  # the profile's rule: its own entry, else the next longer
        if longer:
            parts.append(f"p90 ≤ {lat[longer[0]]:g} ms @ seq {s}")
    if b.get("peak_memory_mb") is not None:
        parts.append(f"peak memory ≤ {b['peak_memory_mb']:g} MB")
    if b.get("model_size_mb") is not None:
        parts.append(f"size ≤ {b['model_size_mb']:g} MB")
    return ", ".join(parts) or "no budget"


def _run_facts(info: dict[str, Any]) -> str:
    runs = info.get("runs") or []
    if not runs:
        return "Measured on: " + ", ".join(info.get("hosts", [])) + "."
    parts = []
    for run in runs:
        when = run.get("created_utc") or "?"
        try:
            when = _dt.datetime.fromisoformat(when).strftime("%Y-%m-%d %H:%M UTC")
        except (TypeError, ValueError):
            pass
        cores = f", {run['usable_cores']} usable cores" if run.get("usable_cores") else ""
        parts.append(f"{run.get('cpu_model', '?')} ({run.get('arch') or '?'}{cores}), onnxruntime "
                     f"{run.get('onnxruntime') or '?'}, {run.get('threads') or 1} thread(s), "
                     f"{run.get('runs') or '?'} timed runs per model and length, on {when}")
    return "Measured on " + "; ".join(dict.fromkeys(parts)) + "."


def _projection_note(summaries: Sequence[DeviceSummary], info: dict[str, Any], rows: Sequence[ReportRow]) -> str:
    kinds = {d.device: _latency_kind(d.device, info, [r for v in d.variants for r in v.by_seq.values()])
             for d in summaries}
    host = [d for d, k in kinds.items() if k == "measured"]
    projected = [d for d, k in kinds.items() if k == "projected"]
    neither = [d for d, k in kinds.items() if k not in ("measured", "projected")]
    txt = ("Device latency is PROJECTED by deploytool's cost model (a per-op roofline from the graph's FLOPs "
           "and bytes and the profile's peak compute and memory bandwidth, deploytool/bench/cost_model.py), "
           "not measured on the device")
    txt += f": {', '.join(projected)}" if projected else " (no device here is projected)"
    if host:
        txt += f". Only on {', '.join(host)}, the machine that ran the benchmark, is it the MEASURED p90"
    if neither:
        txt += f". No device latency (neither measured nor projected) for {', '.join(neither)}"
    return txt + ". Host p50/p90 columns are measurements on the benchmark host."


def _summary_records(summaries: Sequence[DeviceSummary], info: dict[str, Any],
                     rows: Sequence[ReportRow]) -> list[dict[str, Any]]:
    out = []
    for d in summaries:
        drows = [r for v in d.variants for r in v.by_seq.values()]
        kind = _latency_kind(d.device, info, drows)
        rec: dict[str, Any] = {"device": d.device, "fits": d.best is not None, "variants": len(d.variants),
                               "fitting": len(d.fitting), "latency": kind, "ranked_by_proxy": d.proxy,
                               "verdict": d.verdict}
        if d.best is not None:
            b = d.best
            lat = ", ".join(f"{_num(r.device_latency_ms)} ms @ seq {s}" for s, r in sorted(b.by_seq.items()))
            acc = b.longest.accuracy_label()
            rec.update({"model": b.model, "model_path": b.model_path, "precision": b.first.precision,
                        "variant": b.first.variant, "accuracy": b.first.accuracy, "size_mb": b.first.size_mb,
                        "accuracy_label": acc, "accuracy_note": d.accuracy_note, "tied_with_best": d.tied,
                        "device_latency_ms": {s: r.device_latency_ms for s, r in sorted(b.by_seq.items())}})
            rec["verdict_short"] = f"{b.model} ({acc}, {lat} {kind}, {b.first.size_mb:.1f} MB)"
        else:
            rec["verdict_short"] = d.verdict
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------------- plots
def _accuracy_axis(rows: Sequence[ReportRow]) -> tuple[str, dict[int, float | None]]:
    if any(r.accuracy is not None for r in rows):
        return "accuracy (%)", {id(r): r.accuracy for r in rows}
    return ("kept-parameter fraction (accuracy PROXY)", {id(r): r.param_fraction for r in rows})


def _frontier(pts: list[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """Points not beaten by a faster (smaller x) point of at least the same accuracy."""
    out, best = [], -math.inf
    for p in sorted(pts, key=lambda t: (t[0], -t[1])):
        if p[1] > best:
            out.append(p)
            best = p[1]
    return out


def _short(r: ReportRow) -> str:
    return r.variant or (r.arch if r.arch != "-" else r.model)


def plots(rows: Sequence[ReportRow], summaries: Sequence[DeviceSummary] | None = None,
          info: dict[str, Any] | None = None) -> dict[str, bytes]:
    """name -> PNG bytes of the two plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    summaries = list(summaries) if summaries is not None else summarize(rows)
    info = info or {}
    out: dict[str, bytes] = {}
    label, yval = _accuracy_axis(rows)
    precisions = [p for p in PRECISION_ORDER if any(r.precision == p for r in rows)]
    precisions += sorted({r.precision for r in rows} - set(precisions))
    depths = sorted({r.depth for r in rows if r.depth is not None}, reverse=True)
    marker = {d: _MARKERS[i % len(_MARKERS)] for i, d in enumerate(depths)}

    def legend_handles(extra: list) -> list:
        hs = [Line2D([], [], color=_COLOURS.get(p, "grey"), marker="o", linestyle="-", label=p) for p in precisions]
        if len(depths) > 1:
            hs += [Line2D([], [], color="black", marker=marker[d], linestyle="none", markerfacecolor="white",
                          label=f"depth {d:g}") for d in depths]
        return hs + extra

    n = max(len(summaries), 1)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.6 * cols, 4.4 * nrows), squeeze=False)
    for ax, d in zip(axes.flat, summaries):
        seq = max(d.seq_lens) if d.seq_lens else 0
        dr = [v.by_seq[seq] for v in d.variants if seq in v.by_seq]
        kind = _latency_kind(d.device, info, dr)
        xs = []
        for prec in precisions:
            pts = [(r.device_latency_ms, yval[id(r)], r) for r in dr if r.precision == prec
                   and r.device_latency_ms is not None and yval[id(r)] is not None]
            if not pts:
                continue
            colour = _COLOURS.get(prec, "grey")
            for x, y, r in pts:
                ax.scatter([x], [y], color=colour, marker=marker.get(r.depth, "o"), s=36, zorder=3,
                           alpha=0.9 if r.budget_pass is not False else 0.45, edgecolors="black", linewidths=0.4)
                lo, hi = getattr(r, "projected_low_ms", None), getattr(r, "projected_high_ms", None)
                if r.device_latency_source == "projected" and lo is not None and hi is not None:
                    ax.errorbar([x], [y], xerr=[[max(x - lo, 0)], [max(hi - x, 0)]], color=colour, alpha=0.35,
                                linewidth=1, capsize=2, zorder=1)  # the projection's band
            front = _frontier(pts)
            ax.plot([p[0] for p in front], [p[1] for p in front], color=colour, linewidth=1.4, zorder=2)
            for x, y, r in front:
                ax.annotate(_short(r), (x, y), fontsize=8, xytext=(4, -10), textcoords="offset points", color=colour)
            xs += [p[0] for p in pts]
        extra = []
        budget = next((r.budget_ms for r in dr if r.budget_ms is not None), None)
        if xs:
            right = max(xs) * 1.12
            if budget is not None and budget <= 2.5 * max(xs):
                right = max(right, budget * 1.08)
                ax.axvspan(0, budget, color="#2ca02c", alpha=0.06, zorder=0)
                ax.axvline(budget, color="red", linestyle="--", linewidth=1.2, zorder=1)
                ax.annotate(f"p90 budget {budget:g} ms", xy=(budget, 0.02), xycoords=("data", "axes fraction"),
                            xytext=(-3, 0), textcoords="offset points", rotation=90, ha="right", va="bottom",
                            fontsize=8, color="red")
            elif budget is not None:
                ax.annotate(f"p90 budget {budget:g} ms ->", xy=(0.98, 0.03), xycoords="axes fraction", ha="right",
                            fontsize=8, color="red")
            ax.set_xlim(0, right)
        if d.best is not None and seq in d.best.by_seq:
            b = d.best.by_seq[seq]
            if b.device_latency_ms is not None and yval[id(b)] is not None:
                ax.scatter([b.device_latency_ms], [yval[id(b)]], marker="*", s=320, facecolors="none",
                           edgecolors="black", linewidths=1.3, zorder=4)
                lo, hi = ax.get_ylim()
                x0, x1 = ax.get_xlim()
                below = yval[id(b)] > (lo + hi) / 2
                left = b.device_latency_ms > (x0 + x1) / 2
                ax.annotate(f"best fit: {_short(b)} {b.precision}", (b.device_latency_ms, yval[id(b)]),
                            xytext=(-12 if left else 12, -22 if below else 12), textcoords="offset points",
                            ha="right" if left else "left", fontsize=9, fontweight="bold",
                            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "black", "lw": 0.6, "alpha": 0.9},
                            arrowprops={"arrowstyle": "-", "lw": 0.6})
        elif d.best is None:
            ax.annotate("none fits the budget", xy=(0.97, 0.5), xycoords="axes fraction", ha="right", va="center",
                        fontsize=10, color="#a00", fontweight="bold",
                        bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#a00", "lw": 0.8, "alpha": 0.9})
        ax.set_title(f"{d.device}: {kind} p90 latency, seq {seq}", fontsize=12)
        ax.set_xlabel(f"device p90 latency, ms ({kind.upper()})", fontsize=11)
        ax.set_ylabel(label if len(label) < 24 else "kept-param fraction (PROXY)", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    star = Line2D([], [], marker="*", color="black", markerfacecolor="none", linestyle="none", markersize=12,
                  label="best fit (see summary)")
    handles = legend_handles([star])
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=10, frameon=False)
    fig.suptitle("Latency vs accuracy per device: the DynaBERT width/depth trade-off "
                 "(lines: best accuracy reachable at that latency, per precision; faded: over budget)"
                 + ("" if label.startswith("accuracy") else "; y: accuracy PROXY"), fontsize=12)
    fig.tight_layout(rect=(0, 0.07 / nrows, 1, 1))
    out["latency_accuracy.png"] = _png(fig, plt)

    # size does not depend on the device or the sequence length: one point per model file
    models: dict[str, ReportRow] = {}
    for r in rows:
        if yval[id(r)] is not None and r.size_mb:
            models.setdefault(r.model_path, r)
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for prec in precisions:
        pts = [(r.size_mb, yval[id(r)], r) for r in models.values() if r.precision == prec]
        if not pts:
            continue
        colour = _COLOURS.get(prec, "grey")
        for x, y, r in pts:
            ax.scatter([x], [y], color=colour, marker=marker.get(r.depth, "o"), s=40, zorder=3,
                       edgecolors="black", linewidths=0.4)
        front = _frontier(pts)
        ax.plot([p[0] for p in front], [p[1] for p in front], color=colour, linewidth=1.4, zorder=2)
        for x, y, r in front:
            ax.annotate(_short(r), (x, y), fontsize=8, xytext=(4, -10), textcoords="offset points", color=colour)
    extra = []
    sizes = [r.size_mb for r in models.values()]
    for i, d in enumerate(summaries):
        lim = (info.get("devices", {}).get(d.device) or {}).get("budgets", {}).get("model_size_mb")
        if lim is not None and sizes and lim <= 3 * max(sizes):
            ls = [":", "-.", "--"][i % 3]
            ax.axvline(lim, color="grey", linestyle=ls, linewidth=1)
            extra.append(Line2D([], [], color="grey", linestyle=ls, label=f"{d.device} size budget {lim:g} MB"))
    if sizes and max(sizes) / max(min(sizes), 1e-9) > 8:
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
        ticks = [m * 10 ** e for e in range(-3, 6) for m in (1, 2, 5) if lo <= m * 10 ** e <= hi]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("model file size, MB" + (" (log scale)" if ax.get_xscale() == "log" else ""), fontsize=9)
    ax.set_ylabel(label if len(label) < 24 else "kept-param fraction (PROXY)", fontsize=9)
    ax.set_title("Size vs accuracy per precision (lines: best accuracy reachable at that size)"
                 + ("" if label.startswith("accuracy") else "; y: PROXY"), fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(handles=legend_handles(extra), fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5),
              frameon=False)
    fig.tight_layout()
    out["size_accuracy.png"] = _png(fig, plt)
    return out


def _png(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------------------- per-device facts
def _ep_lines(drows: Sequence[ReportRow]) -> list[str]:
    combos = list(dict.fromkeys((r.ep_requested, r.ep_ran, r.ep_note) for r in drows))
    out = []
    for asked, ran, note in combos:
        n = sum(1 for r in drows if (r.ep_requested, r.ep_ran, r.ep_note) == (asked, ran, note))
        txt = f"asked for {asked or '-'}, ran {ran or '-'}"
        if asked and ran and asked.lower() != ran.lower().split(" ")[0].lower():
            txt += " (fell back)"
        if note:
            txt += f": {note}"
        if len(combos) > 1:
            txt += f" [{n} row{'s' if n != 1 else ''}]"
        out.append(txt)
    return out


def _device_facts(d: DeviceSummary, info: dict[str, Any], rows: Sequence[ReportRow]) -> list[tuple[str, str]]:
    drows = [r for v in d.variants for r in v.by_seq.values()]
    facts = info.get("devices", {}).get(d.device)
    first = drows[0]
    kind = _latency_kind(d.device, info, drows)
    out = []
    if facts:
        out.append(("CPU", f"{facts['cores']} ({facts['arch']}, {facts['memory_gb']:g} GB)"))
    else:
        out.append(("CPU", f"{first.soc} {first.core}".strip() or "-"))
    measured_on = ", ".join(dict.fromkeys(r.measured_on for r in drows if r.measured_on)) or "-"
    threads = ", ".join(str(t) for t in sorted({r.threads for r in drows if r.threads})) or "-"
    out.append(("Host measurement", f"{measured_on}, {threads} thread(s): p50/p90 columns"))
    if kind == "projected":
        pt = facts["threads"] if facts else "?"
        label = next((r.projected_label for r in drows if r.projected_label), "projected")
        label = f" ({label})" if label != "projected" else ""
        out.append(("Device latency", f"PROJECTED{label} by the cost model for {pt} thread(s) on this device, "
                                      "not measured"))
    elif kind == "measured":
        out.append(("Device latency", "MEASURED: this device is the benchmark host (p90); the cost-model column "
                                      "shows the projection and its error against the measured p50"))
    else:
        out.append(("Device latency", "not measured or projected here (see the rows' source)"))
    out += [("Execution provider", t) for t in _ep_lines(drows)]
    out.append(("Budgets", _budgets_text(facts, d.seq_lens) if facts else
                (first.budget_why if first.budget_pass is None else "from the rows' profile")))
    return out


# ------------------------------------------------------------------------------------- markdown
def _notes(rows: Sequence[ReportRow], info: dict[str, Any]) -> list[str]:
    notes = [
        "'projected' latency is a roofline PROJECTION from the graph's FLOPs/bytes per op and the profile's peak "
        "compute and memory bandwidth (deploytool/bench/cost_model.py), not a measurement. Budgets are checked "
        "against the measured p90 on the host and the projection elsewhere (a projection has no run-to-run spread).",
    ]
    for key, who in (("projection_band", "the host"), ("device_projection_band", "other devices")):
        b = info.get(key)
        if b:
            notes.append(f"Projection band for {who}: the measured latency is expected within projected/(1{b['high']:+.0%}) "
                         f"to projected/(1{b['low']:+.0%}) ({b['source']}); a budget inside the band reads 'uncertain'.")
    errs = info.get("cost_model_host_errors") or []
    if errs:
        by_seq: dict[int, list[float]] = {}
        for x in errs:
            by_seq.setdefault(int(x["seq_len"]), []).append(float(x["error"]))
        txt = "; ".join(f"seq {s}: median {sorted(v)[len(v) // 2]:+.0%}, range {min(v):+.0%} to {max(v):+.0%} "
                        f"over {len(v)} models" for s, v in sorted(by_seq.items()))
        notes.append(f"Cost model error on the benchmark host (projected vs measured p50): {txt}. Per model in the "
                     "host's 'cost model' column and in report.json (cost_model_host_errors).")
    if info.get("calibration"):
        notes.append("Projections are HOST-CALIBRATED (x measured/projected on the host, per precision: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in info["calibration"].items())
                     + "), assuming each device reaches the same fraction of its roofline as the host.")
    notes += [f"fp16: {x}" for x in info.get("fp16", [])]
    if not any(r.accuracy is not None for r in rows):
        notes.append("No accuracy given: plots and the summary use the kept-parameter fraction as an accuracy PROXY.")
    else:
        notes += _accuracy_notes(rows, info)
    return notes


def _accuracy_notes(rows: Sequence[ReportRow], info: dict[str, Any]) -> list[str]:
    out = []
    ref = info.get("accuracy_reference")
    if ref:
        out.append(f"Reference: {ref['name']}, {ref['label']} on the same examples; 'of ref' is each variant's "
                   "accuracy as a share of it.")
    metrics = sorted({r.accuracy_metric for r in rows if r.accuracy is not None})
    if any(m.startswith("recall@") for m in metrics):
        out.append("Embedding models: the accuracy column is recall@10, the share of the reference model's 10 "
                   "nearest neighbours (cosine of mean-pooled embeddings) that the variant also finds, over a "
                   "corpus, with a 95% interval over the queries.")
    if any(r.accuracy_n is not None for r in rows if r.accuracy is not None):
        out.append("Accuracies carry n and a 95% Wilson interval. Variants on the same examples are compared with "
                   "the exact McNemar test on their per-example predictions: a difference with p >= 0.05 is a tie, "
                   "and among tied variants the faster, then smaller, one is picked (the verdict says which tied).")
    else:
        out.append("Accuracies were given without n: no interval, and differences between variants are not tested.")
    return out


def _seq_headers(host: bool, projected: bool = True) -> list[str]:
    if host:
        return ["p50 ms", "p90 ms (device)", "cost model ms (err)", "budget"]
    return ["host p50 ms", "host p90 ms", "device p90 ms (PROJECTED)" if projected else "device p90 ms", "budget"]


_SEQ_TIPS = {"p50 ms": "measured on this host", "p90 ms (device)": "measured on this host: the device latency",
             "cost model ms (err)": "the cost model's projection for this host, (projected - p50) / measured p50",
             "host p50 ms": "measured on the benchmark host, not on this device",
             "host p90 ms": "measured on the benchmark host, not on this device",
             "device p90 ms (PROJECTED)": "projected for this device by the cost model, not measured",
             "device p90 ms": "as given by the rows' source (not projected here)",
             "budget": "within the profile's budgets? hover a cell for the comparison"}


def _seq_cells(r: ReportRow | None, host: bool) -> list[str]:
    if r is None:
        return ["", "", "", ""]
    if host:
        proj = _num(r.projected_ms)
        if r.projected_ms is not None and r.cost_model_error is not None:
            proj += f" ({r.cost_model_error:+.0%})"
        return [_num(r.p50_ms), _num(r.p90_ms), proj, _budget_cell(r)[0]]
    dev = _device_lat(r) if r.device_latency_source != "measured p90" else _num(r.device_latency_ms)
    return [_num(r.p50_ms), _num(r.p90_ms), dev, _budget_cell(r)[0]]


_STATIC = [("model", "model"), ("precision", "precision"), ("wd", "width / depth"), ("arch", "arch"),
           ("size", "size MB"), ("mem", "peak MB"), ("acc", "accuracy % [95% CI] n")]
_STATIC_TIPS = {"acc": "accuracy on the evaluation examples with its 95% Wilson interval and n (recall@10 of the "
                       "reference's neighbours for embedding models); 'of ref': share of the reference (teacher)",
                "wd": "DynaBERT width (kept heads and FFN) / depth (kept layers)", "arch": "layers, heads, FFN size",
                "mem": "peak resident memory of the ONNX Runtime process, measured on the host (max over lengths)",
                "size": "model file size"}


def _static_cells(v: ModelOnDevice, best: bool) -> list[str]:
    r = v.first
    mem = max((x.peak_memory_mb for x in v.by_seq.values() if x.peak_memory_mb is not None), default=None)
    wd = "-" if r.width is None and r.depth is None else f"{_frac(r.width)} / {_frac(r.depth)}"
    return [("★ " if best else "") + v.model, r.precision, wd, r.arch,
            _fmt(r.size_mb, "size_mb"), _fmt(mem, "peak_memory_mb"), v.longest.accuracy_label()]


def _ep_column(d: DeviceSummary) -> bool:
    return len({r.ep_ran for v in d.variants for r in v.by_seq.values()}) > 1


def _summary_md(recs: Sequence[dict[str, Any]], info: dict[str, Any]) -> list[str]:
    lines = ["| device | best fit | precision | accuracy % | device p90 ms | size MB | fitting variants |",
             "|---|---|---|---|---|---|---|"]
    for s in recs:
        if s["fits"]:
            lat = ", ".join(f"{_num(v)} @ seq {k}" for k, v in s["device_latency_ms"].items())
            lines.append(f"| {s['device']} | **{s['model']}** | {s['precision']} | "
                         f"{s.get('accuracy_label') or _fmt(s['accuracy'], 'accuracy')} | "
                         f"{lat} ({s['latency']}) | {_fmt(s['size_mb'], 'size_mb')} | "
                         f"{s['fitting']} of {s['variants']} |")
        else:
            lines.append(f"| {s['device']} | {s['verdict'].replace('|', '/')} | - | - | - | - | "
                         f"0 of {s['variants']} |")
    return lines


def render_markdown(rows: Sequence[ReportRow], info: dict[str, Any], title: str, images: Sequence[str],
                    summaries: Sequence[DeviceSummary] | None = None) -> str:
    summaries = list(summaries) if summaries is not None else summarize(rows)
    recs = info.get("summary") or _summary_records(summaries, info, rows)
    lines = [f"# {title}", "", _run_facts(info), "", f"> {_projection_note(summaries, info, rows)}", "",
             "## Summary", "",
             "Best variant per device that fits ALL its budgets (p90 latency at every measured sequence length, "
             "peak memory, model size): largest accuracy, then lowest latency.", ""]
    lines += _summary_md(recs, info)
    ref = info.get("accuracy_reference")
    if ref:
        lines += ["", f"Reference (the model the variants were made from): **{ref['name']}**, {ref['label']}."]
    lines += ["", "## Plots", ""] + [f"![{Path(i).stem}]({i})" for i in images] + [""]
    for d in summaries:
        drows = [r for v in d.variants for r in v.by_seq.values()]
        host = _is_host(d.device, info, drows)
        projected = _latency_kind(d.device, info, drows) == "projected"
        facts = info.get("devices", {}).get(d.device)
        soc = facts["soc"] if facts else d.variants[0].first.soc
        lines += [f"## {d.device}: {soc}", ""] + [f"- **{k}**: {v}" for k, v in _device_facts(d, info, rows)]
        lines += [f"- **Verdict**: {d.verdict}", ""]
        ep = _ep_column(d)
        head = [h for _, h in _STATIC] + (["EP ran"] if ep else [])
        for s in d.seq_lens:
            head += [f"{h} @{s}" for h in _seq_headers(host, projected)]
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for v in d.variants:
            cells = _static_cells(v, v is d.best) + ([v.first.ep_ran] if ep else [])
            if v is d.best:
                cells[0] = f"**{cells[0]}**"
            for s in d.seq_lens:
                cells += _seq_cells(v.by_seq.get(s), host)
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        lines.append("")
    lines += ["## Notes", ""] + [f"- {n}" for n in _notes(rows, info)] + [""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- html
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1500px;
       padding: 0 1em; color: #222; line-height: 1.35; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: 0.2em; }
h2 small { font-weight: normal; color: #666; font-size: 0.7em; }
p.meta { color: #555; margin-top: 0; }
p.callout { background: #fff7e0; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; }
table { border-collapse: collapse; font-size: 12px; margin: 0.6em 0; }
th, td { border: 1px solid #d0d0d0; padding: 2px 5px; text-align: right; white-space: nowrap; }
div.scroll { overflow-x: auto; } th[title] { cursor: help; }
table.device-table thead th { white-space: normal; max-width: 7.5em; vertical-align: bottom; }
table.device-table thead th.seq { max-width: none; }
th { background: #f2f4f7; } thead th { position: sticky; top: 0; }
td.txt, th.txt { text-align: left; }
td.pass { background: #dcf2dc; } td.fail { background: #f8dada; cursor: help; } td.uncertain { background: #fff0c8; cursor: help; }
td.proj { background: #eef3fb; font-style: italic; } th.proj { background: #dfe8f7; }
th.seq { background: #e6e9ef; border-bottom: 2px solid #999; }
td.seqstart, th.seqstart { border-left: 2px solid #999; }
tbody.prec { border-top: 2px solid #999; }
tr.best td { font-weight: bold; background-color: #fffbe0; } tr.best td.pass { background: #c6ebc6; }
tr.nofit td.txt:first-child { color: #777; }
table.summary td, table.summary th { font-size: 14px; padding: 5px 9px; vertical-align: top; }
table.summary td.budget { white-space: normal; font-size: 12px; color: #444; min-width: 14em; }
td.nofits { color: #a00; text-align: left; white-space: normal; max-width: 60em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; font-size: 13px; margin: 0.4em 0; }
dl.facts dt { font-weight: bold; color: #444; } dl.facts dd { margin: 0; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { color: #555; font-size: 13px; }
ul.notes li { margin: 0.2em 0; font-size: 13px; }
"""


def _summary_html(recs: Sequence[dict[str, Any]], summaries: Sequence[DeviceSummary], info: dict[str, Any]) -> str:
    e = html.escape
    head = ("<tr><th class='txt'>device</th><th class='txt'>SoC</th><th class='txt'>budget</th>"
            "<th class='txt'>best fit</th><th>precision</th><th>accuracy %</th><th>device p90 ms</th>"
            "<th>size MB</th><th>fitting variants</th></tr>")
    body = []
    for s, d in zip(recs, summaries):
        facts = info.get("devices", {}).get(d.device)
        soc = facts["soc"] if facts else d.variants[0].first.soc
        budget = "<br>".join(e(b) for b in _budgets_text(facts, d.seq_lens).split(", "))
        dev = f"<td class='txt'><a href='#device-{e(d.device)}'>{e(d.device)}</a></td><td class='txt'>{e(soc)}</td>"
        dev += f"<td class='txt budget'>{budget}</td>"
        if s["fits"]:
            lat = "<br>".join(f"{_num(v)} @ seq {k}" for k, v in s["device_latency_ms"].items())
            kind = s["latency"]
            cls = " class='proj'" if kind == "projected" else ""
            body.append(f"<tr class='fits' data-device='{e(d.device)}'>{dev}<td class='txt'><b>{e(s['model'])}</b>"
                        f"</td><td>{e(s['precision'])}</td>"
                        f"<td>{e(s.get('accuracy_label') or _fmt(s['accuracy'], 'accuracy'))}</td>"
                        f"<td{cls}>{lat}<br><small>{e(kind)}</small></td><td>{_fmt(s['size_mb'], 'size_mb')}</td>"
                        f"<td>{s['fitting']} of {s['variants']}</td></tr>")
        else:
            body.append(f"<tr class='nofit' data-device='{e(d.device)}'>{dev}<td class='nofits' colspan='5'>"
                        f"{e(s['verdict'])}</td><td>0 of {s['variants']}</td></tr>")
    return f"<table id='summary-table' class='summary'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _device_html(d: DeviceSummary, info: dict[str, Any], rows: Sequence[ReportRow]) -> str:
    e = html.escape
    drows = [r for v in d.variants for r in v.by_seq.values()]
    host = _is_host(d.device, info, drows)
    facts = info.get("devices", {}).get(d.device)
    soc = facts["soc"] if facts else d.variants[0].first.soc
    core = facts["core"] if facts else d.variants[0].first.core
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _device_facts(d, info, rows))
    verdict_cls = "" if d.best is not None else " style='color:#a00'"
    dl += f"<dt>Verdict</dt><dd{verdict_cls}>{e(d.verdict)}</dd>"
    ep = _ep_column(d)
    sh = _seq_headers(host, _latency_kind(d.device, info, drows) == "projected")
    budget_lat = {s: next((r.budget_ms for r in drows if r.seq_len == s and r.budget_ms is not None), None)
                  for s in d.seq_lens}
    row1 = "".join(f"<th rowspan='2' class='{'txt' if k in ('model', 'arch') else ''}'"
                   f"{f' title={chr(39)}{e(_STATIC_TIPS[k])}{chr(39)}' if k in _STATIC_TIPS else ''}>{e(h)}</th>"
                   for k, h in _STATIC)
    row1 += "<th rowspan='2' class='txt'>EP ran</th>" if ep else ""
    row2 = ""
    for s in d.seq_lens:
        b = f" · p90 budget {budget_lat[s]:g} ms" if budget_lat[s] is not None else ""
        row1 += f"<th colspan='{len(sh)}' class='seq seqstart'>seq {s}{e(b)}</th>"
        for i, h in enumerate(sh):
            cls = ["seqstart" if i == 0 else "", "proj" if "PROJECTED" in h else ""]
            row2 += f"<th class='{' '.join(c for c in cls if c)}' title='{e(_SEQ_TIPS.get(h, h))}'>{e(h)}</th>"
    bodies = []
    for prec in dict.fromkeys(v.first.precision for v in d.variants):
        trs = []
        for v in (v for v in d.variants if v.first.precision == prec):
            best = v is d.best
            cls = "row" + (" best" if best else "") + ("" if v.fits is not False else " nofit")
            static = _static_cells(v, best)
            tds = [f"<td class='txt' title='{e(v.model_path)}'>{e(static[0])}</td>"]
            tds += [f"<td{' class=txt' if k == 'arch' else ''}>{e(c)}</td>"
                    for (k, _), c in zip(_STATIC[1:], static[1:])]
            if ep:
                tds.append(f"<td class='txt'>{e(v.first.ep_ran)}</td>")
            for s in d.seq_lens:
                r = v.by_seq.get(s)
                cells = _seq_cells(r, host)
                text, bcls, tip = _budget_cell(r)
                for i, c in enumerate(cells):
                    cl = ["seqstart" if i == 0 else ""]
                    if i == 2 and not host and r is not None and r.device_latency_source == "projected":
                        cl.append("proj")
                    title = ""
                    if i == 3:
                        cl.append(bcls)
                        title = f" title='{e(tip)}'" if tip else ""
                    elif i == 2 and r is not None:
                        title = f" title='{e(r.device_latency_source)}'"
                    cattr = " ".join(x for x in cl if x)
                    tds.append(f"<td{f' class={chr(39)}{cattr}{chr(39)}' if cattr else ''}{title}>{e(c)}</td>")
            trs.append(f"<tr class='{cls}' data-model='{e(v.model)}'>" + "".join(tds) + "</tr>")
        bodies.append(f"<tbody class='prec' data-precision='{e(prec)}'>" + "".join(trs) + "</tbody>")
    table = (f"<div class='scroll'><table class='device-table' id='table-{e(d.device)}' data-device='{e(d.device)}'>"
             f"<thead><tr>{row1}</tr><tr>{row2}</tr></thead>{''.join(bodies)}</table></div>")
    return (f"<section class='device' id='device-{e(d.device)}' data-device='{e(d.device)}'>"
            f"<h2>{e(d.device)} <small>{e(soc)} · {e(core)}</small></h2><dl class='facts'>{dl}</dl>{table}</section>")


def render_html(rows: Sequence[ReportRow], info: dict[str, Any], title: str, images: dict[str, bytes],
                summaries: Sequence[DeviceSummary] | None = None) -> str:
    e = html.escape
    summaries = list(summaries) if summaries is not None else summarize(rows)
    recs = info.get("summary") or _summary_records(summaries, info, rows)
    captions = {
        "latency_accuracy": "Latency vs accuracy per device at the longest measured sequence length "
                            "(x: measured on the host device, PROJECTED elsewhere).",
        "size_accuracy": "Model file size vs accuracy, per precision, with the devices' size budgets.",
    }
    imgs = "".join(
        f'<figure><img id="plot-{e(Path(n).stem)}" alt="{e(Path(n).stem)}" '
        f'src="data:image/png;base64,{base64.b64encode(b).decode()}"><figcaption>'
        f'{e(captions.get(Path(n).stem, Path(n).stem))}</figcaption></figure>'
        for n, b in images.items())
    notes = "".join(f"<li>{e(n)}</li>" for n in _notes(rows, info))
    devices = "\n".join(_device_html(d, info, rows) for d in summaries)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{e(title)}</h1>
<p class="meta">{e(_run_facts(info))}</p>
<p class="callout" id="projection-note">{e(_projection_note(summaries, info, rows))}</p>
<section id="summary"><h2>Summary</h2>
<p>Best variant per device that fits ALL its budgets (p90 latency at every measured sequence length, peak memory,
model size): largest accuracy, then lowest latency. Click a device for its table.</p>
{_summary_html(recs, summaries, info)}
</section>
<section id="plots"><h2>Plots</h2>
{imgs}
</section>
<section id="devices"><h2>Per device</h2>
<p>One row per variant (sorted by precision, then width and depth); ★ marks the best fit. Budget cells name the
budget a row breaks; hover for the comparison. <span style="background:#eef3fb"><i>Italic blue</i></span>:
projected by the cost model, not measured.</p>
{devices}
</section>
<section id="notes"><h2>Notes</h2><ul class="notes">{notes}</ul></section>
<script>/* marks each plot as rendered once decoded (checked by tests in headless Chromium) */
window.addEventListener("load", function () {{
  for (const img of document.images) img.dataset.rendered = img.naturalWidth > 0 ? "yes" : "no";
  document.body.dataset.plots = String(document.images.length);
  document.body.dataset.deviceTables = String(document.querySelectorAll("table.device-table").length);
}});</script>
</body></html>
"""


def build_report(config: ReportConfig) -> ReportResult:
    """Collect the rows and write report.json, report.md (+ PNGs) and report.html into ``config.out_dir``."""
    from deploytool.onnx_io import atomic_path, atomic_write

    rows, info = collect_rows(config)
    summaries = summarize(rows)
    info["summary"] = _summary_records(summaries, info, rows)
    images = plots(rows, summaries, info)
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
        f.write(render_markdown(rows, info, config.title, list(images), summaries))
    with atomic_write(out / "report.html") as f:
        f.write(render_html(rows, info, config.title, images, summaries))
    return ReportResult(out, out / "report.json", out / "report.md", out / "report.html", plot_paths, rows, info)
