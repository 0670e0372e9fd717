"""``report.html``: one self-contained page (plots inlined as base64 PNG, style and script inline from
:mod:`.assets`), the same content as the Markdown report with tooltips and per-device anchors."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploytool.report.assets import CSS, SCRIPT
from deploytool.report.cells import (
    _SEQ_TIPS,
    _budget_cell,
    _budgets_text,
    _device_facts,
    _ep_column,
    _fmt,
    _is_host,
    _latency_kind,
    _notes,
    _num,
    _ort_sizes,
    _projection_note,
    _run_facts,
    _seq_cells,
    _seq_headers,
    _size_cell,
    _static_cells,
    _static_columns,
    _summary_records,
    _summary_size_header,
)
from deploytool.report.rows import ReportRow
from deploytool.report.summary import DeviceSummary, summarize

__all__ = ["render_html"]


def _summary_html(recs: Sequence[dict[str, Any]], summaries: Sequence[DeviceSummary], info: dict[str, Any]) -> str:
    e = html.escape
    size_head, ort = _summary_size_header(recs)
    head = ("<tr><th class='txt'>device</th><th class='txt'>SoC</th><th class='txt'>budget</th>"
            "<th class='txt'>best fit</th><th>precision</th><th>accuracy %</th><th>device p90 ms</th>"
            f"<th>{e(size_head)}</th><th>fitting variants</th></tr>")
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
                        f"<td{cls}>{lat}<br><small>{e(kind)}</small></td><td>{e(_size_cell(s['size_mb'], s.get('size_of'), ort))}</td>"
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
    columns = _static_columns(d)
    row1 = "".join(f"<th rowspan='2' class='{'txt' if k in ('model', 'arch') else ''}'"
                   f"{f' title={chr(39)}{e(tip)}{chr(39)}' if tip else ''}>{e(h)}</th>"
                   for k, h, tip in columns)
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
            static = _static_cells(v, best, _ort_sizes(d), d.proxy)
            tds = [f"<td class='txt' title='{e(v.model_path)}'>{e(static[0])}</td>"]
            tds += [f"<td{' class=txt' if k == 'arch' else ''}>{e(c)}</td>"
                    for (k, _, _), c in zip(columns[1:], static[1:])]
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
<style>{CSS}</style></head>
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
{SCRIPT}
</body></html>
"""
