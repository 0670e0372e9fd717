"""The report's two plots as PNG bytes (matplotlib figures of their own, not pyplot's: the caller's backend and
open figures are left alone).

- ``latency_accuracy.png``: per device, device p90 latency (measured on the host device, projected
  elsewhere) at the longest measured sequence length against accuracy, one colour per precision, one
  marker per depth, each precision's best-accuracy-for-latency frontier drawn as a line: the DynaBERT
  width/depth trade-off curve; the budget as a line, the pick as a star. Without accuracy figures the
  y axis is the kept-parameter fraction of each model's own source, an accuracy *proxy*, and the axis says so (a
  model whose source is unknown has none and is not drawn; :func:`deploytool.report.rows._proxies`).
- ``size_accuracy.png``: model size against accuracy (or the proxy), one colour per precision, with the
  devices' size budgets.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from deploytool.report.cells import _latency_kind
from deploytool.report.rows import ReportRow
from deploytool.report.summary import PRECISION_ORDER, DeviceSummary, summarize

__all__ = ["plots"]

_COLOURS = {"fp32": "#1f77b4", "fp16": "#17becf", "int8": "#ff7f0e", "ternary": "#2ca02c", "binary": "#9467bd"}
_MARKERS = ["o", "s", "^", "D", "v", "P"]


def _accuracy_axis(rows: Sequence[ReportRow]) -> tuple[str, dict[int, float | None]]:
    if any(r.accuracy is not None for r in rows):
        return "accuracy (%)", {id(r): r.accuracy for r in rows}
    return ("kept-parameter fraction of own source (accuracy PROXY)", {id(r): r.param_fraction for r in rows})


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
    # figures of their own, never pyplot's: matplotlib.use("Agg") switched a notebook's backend (its plots showed
    # no more) and closed the program's open figures
    from matplotlib.figure import Figure
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
    fig = Figure(figsize=(5.6 * cols, 4.4 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
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
    out["latency_accuracy.png"] = _png(fig)

    # size does not depend on the device or the sequence length: one point per model file
    models: dict[str, ReportRow] = {}
    for r in rows:
        if yval[id(r)] is not None and r.size_mb:
            models.setdefault(r.model_path, r)
    fig = Figure(figsize=(9.5, 4.8))
    ax = fig.subplots()
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
    out["size_accuracy.png"] = _png(fig)
    return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
