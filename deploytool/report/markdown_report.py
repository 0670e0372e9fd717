"""``report.md``: the summary, the plots as image links, one table per device and the notes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploytool.report.cells import (
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

__all__ = ["render_markdown"]


def _row(cells: Sequence[str]) -> str:
    """One Markdown table row; a '|' inside a cell (a model named 'a|b') is escaped, GFM's way, so that it stays
    in its cell instead of starting a new one."""
    return "| " + " | ".join(" ".join(str(c).split()).replace("|", "\\|") for c in cells) + " |"


#: Markdown's and HTML's own characters in a name (a model named '<i>x</i>' or '*x*'): backslash-escaped, CommonMark's
#: way for ASCII punctuation; '_' only at a word's edge (inside a word, as in bert_tiny, it never starts emphasis);
#: '#' too (a heading's trailing ' #' is its closing sequence: a SoC named 'X #' lost its '#')
_MD_SPECIAL = re.compile(r"[\\`*\[\]<>&~#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _md_text(text: str) -> str:
    """A name as literal Markdown text: '<i>' stays '<i>' when rendered, not an italic tag ('|' is _row's)."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), str(text))


def _summary_md(recs: Sequence[dict[str, Any]], info: dict[str, Any]) -> list[str]:
    size_head, ort = _summary_size_header(recs)
    lines = [f"| device | best fit | precision | accuracy % | device p90 ms | {size_head} | fitting variants |",
             "|---|---|---|---|---|---|---|"]
    for s in recs:
        if s["fits"]:
            lat = ", ".join(f"{_num(v)} @ seq {k}" for k, v in s["device_latency_ms"].items())
            lines.append(_row([_md_text(s["device"]), f"**{_md_text(s['model'])}**", s["precision"],
                               s.get("accuracy_label") or _fmt(s["accuracy"], "accuracy"), f"{lat} ({s['latency']})",
                               _size_cell(s["size_mb"], s.get("size_of"), ort), f"{s['fitting']} of {s['variants']}"]))
        else:
            lines.append(_row([_md_text(s["device"]), _md_text(s["verdict"]), "-", "-", "-", "-",
                               f"0 of {s['variants']}"]))
    return lines


def render_markdown(rows: Sequence[ReportRow], info: dict[str, Any], title: str, images: Sequence[str],
                    summaries: Sequence[DeviceSummary] | None = None) -> str:
    summaries = list(summaries) if summaries is not None else summarize(rows)
    recs = info.get("summary") or _summary_records(summaries, info, rows)
    # every text made of names (profiles, SoCs, models, hosts) is escaped, as report.html escapes it
    note = _md_text(_projection_note(summaries, info, rows))
    # the title is one line, its line breaks spaces (as report.html's <h1> shows them): a recipe's YAML block title
    # ends in one, and '- b' on a line of its own was a list item
    head = _md_text(" ".join(title.splitlines()).strip())
    lines = [f"# {head}", "", _md_text(_run_facts(info)), "", f"> {note}", "", "## Summary", "",
             "Best variant per device that fits ALL its budgets (p90 latency at every measured sequence length, "
             "peak memory, model size): largest accuracy, then lowest latency.", ""]
    lines += _summary_md(recs, info)
    ref = info.get("accuracy_reference")
    if ref:
        lines += ["", f"Reference (the model the variants were made from): **{_md_text(ref['name'])}**, "
                      f"{ref['label']}."]
    lines += ["", "## Plots", ""] + [f"![{Path(i).stem}]({i})" for i in images] + [""]
    for d in summaries:
        drows = [r for v in d.variants for r in v.by_seq.values()]
        host = _is_host(d.device, info, drows)
        projected = _latency_kind(d.device, info, drows) == "projected"
        facts = info.get("devices", {}).get(d.device)
        soc = facts["soc"] if facts else d.variants[0].first.soc
        lines += [f"## {_md_text(d.device)}: {_md_text(soc)}", ""]
        lines += [f"- **{k}**: {_md_text(v)}" for k, v in _device_facts(d, info, rows)]
        lines += [f"- **Verdict**: {_md_text(d.verdict)}", ""]
        ep = _ep_column(d)
        ort = _ort_sizes(d)
        head = [h for _, h, _ in _static_columns(d)] + (["EP ran"] if ep else [])
        for s in d.seq_lens:
            head += [f"{h} @{s}" for h in _seq_headers(host, projected)]
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for v in d.variants:
            cells = _static_cells(v, v is d.best, ort, d.proxy) + ([v.first.ep_ran] if ep else [])
            cells[0] = f"**★ {_md_text(v.model)}**" if v is d.best else _md_text(v.model)
            for s in d.seq_lens:
                cells += _seq_cells(v.by_seq.get(s), host)
            lines.append(_row(cells))
        lines.append("")
    lines += ["## Notes", ""] + [f"- {_md_text(n)}" for n in _notes(rows, info)] + [""]
    return "\n".join(lines)
