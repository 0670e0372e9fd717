"""What the report says, shared by its Markdown and HTML pages: number formats, budget verdict cells,
the run and projection notes, the per-device facts, the summary records and the table columns.

Text only: no plotting, no markup beyond the cell strings themselves.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from typing import Any

from deploytool.report.rows import VARIANT_UNKNOWN, ReportRow
from deploytool.report.summary import DeviceSummary, ModelOnDevice
from deploytool.units import fmt_mb


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
    if getattr(r, "latency_unjudged", False) and r.budget_pass is not False:  # no latency: never PASS
        return "not judged", "uncertain", r.budget_why
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


def _method_text(rows: Sequence[ReportRow]) -> str:
    """How this report's projections were made, from their labels (host efficiencies where the host was measured,
    the roofline without a host measurement)."""
    labels = {r.projected_label for r in rows if r.projected_label and r.device_latency_source == "projected"}
    parts = []
    if any("host efficiencies" in x for x in labels):
        parts.append("each op at the fraction of peak ONNX Runtime reached for its class and size in this host's "
                     "microbenchmark, scaled to the profile's peak compute and memory bandwidth")
    if any("efficiencies" not in x and "host rates" not in x for x in labels):
        parts.append("a per-op roofline from the graph's FLOPs and bytes and the profile's peak compute and memory "
                     "bandwidth")
    return "; ".join(parts or ["a per-op model of the graph and the profile's peaks"]) + ", deploytool/bench/cost_model.py"


def _projection_note(summaries: Sequence[DeviceSummary], info: dict[str, Any], rows: Sequence[ReportRow]) -> str:
    kinds = {d.device: _latency_kind(d.device, info, [r for v in d.variants for r in v.by_seq.values()])
             for d in summaries}
    host = [d for d, k in kinds.items() if k == "measured"]
    projected = [d for d, k in kinds.items() if k == "projected"]
    neither = [d for d, k in kinds.items() if k not in ("measured", "projected")]
    if projected:
        txt = (f"Device latency is PROJECTED by deploytool's cost model ({_method_text(rows)}), not measured on the "
               f"device: {', '.join(projected)}")
    else:  # (it once opened "Device latency is PROJECTED ..." and then said no device was)
        txt = "No device latency here is projected"
    if host:
        txt += (f". On {', '.join(host)} it is the MEASURED p90: a benchmark ran on hardware matching the profile "
                "(arch and core types)")
    if neither:
        txt += f". No device latency (neither measured nor projected) for {', '.join(neither)}"
        if info.get("latency_missing"):
            txt += f" ({info['latency_missing']})"
    return txt + ". Host p50/p90 columns are measurements on the benchmark host."


def _summary_records(summaries: Sequence[DeviceSummary], info: dict[str, Any],
                     rows: Sequence[ReportRow]) -> list[dict[str, Any]]:
    out = []
    for d in summaries:
        drows = [r for v in d.variants for r in v.by_seq.values()]
        kind = _latency_kind(d.device, info, drows)
        rec: dict[str, Any] = {"device": d.device, "fits": d.best is not None, "variants": len(d.variants),
                               "fitting": len(d.fitting), "latency": kind, "ranked_by_proxy": d.proxy and not d.proxy_unranked,
                               "verdict": d.verdict}
        if d.proxy_unranked:
            rec["proxy_unranked"] = d.proxy_unranked
        if d.best is not None:
            b = d.best
            lat = ", ".join(f"{_num(r.device_latency_ms)} ms @ seq {s}" for s, r in sorted(b.by_seq.items()))
            acc = b.longest.accuracy_label()
            rec.update({"model": b.model, "model_path": b.model_path, "precision": b.first.precision,
                        "variant": b.first.variant, "accuracy": b.first.accuracy, "size_mb": b.first.size_mb,
                        "size_of": b.first.size_of,
                        "accuracy_label": acc, "accuracy_note": d.accuracy_note, "tied_with_best": d.tied,
                        "device_latency_ms": {s: r.device_latency_ms for s, r in sorted(b.by_seq.items())}})
            of = " (.ort)" if b.first.size_of == ORT_SIZE else ""
            size = "size unknown" if b.first.size_mb is None else f"{fmt_mb(b.first.size_mb)} MB{of}"
            rec["verdict_short"] = f"{b.model} ({acc}, {lat} {kind}, {size})"
        else:
            rec["verdict_short"] = d.verdict
        out.append(rec)
    return out


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
        # "projected (host efficiencies)" -> " (host efficiencies)": the word PROJECTED is said once
        label = label.removeprefix("projected").strip()
        label = f" {label}" if label.startswith("(") else f" ({label})" if label else ""
        out.append(("Device latency", f"PROJECTED{label} by the cost model for {pt} thread(s) on this device, "
                                      "not measured"))
    elif kind == "measured":
        on = ", ".join((facts or {}).get("measured_on") or []) or "this device"
        err = (facts or {}).get("projection_error_median")
        med = f", median projection error {err:+.0%}" if err is not None else ""
        measured = sorted({r.threads for r in drows if r.threads})
        pt = (facts or {}).get("threads")
        at = (f", at {'/'.join(map(str, measured))} thread(s) where the profile runs {pt}: its budget is judged on "
              "that measurement" if pt and measured and measured != [pt] else "")
        out.append(("Device latency", f"MEASURED on {on} (the bench machine's arch and cores match this profile), "
                                      f"p90{at}; the cost-model column shows the projection and its error against "
                                      f"the measured p50{med}"))
    else:
        out.append(("Device latency", "not measured or projected here (see the rows' source)"))
    out += [("Execution provider", t) for t in _ep_lines(drows)]
    out.append(("Budgets", _budgets_text(facts, d.seq_lens) if facts else
                (first.budget_why if first.budget_pass is None else "from the rows' profile")))
    return out


# ------------------------------------------------------------------------------------- markdown
def _notes(rows: Sequence[ReportRow], info: dict[str, Any]) -> list[str]:
    notes = [
        f"'projected' latency is a PROJECTION ({_method_text(rows)}), not a measurement. Budgets are checked "
        "against the measured p90 on the host and the projection elsewhere (a projection has no run-to-run spread).",
    ]
    for key, who in (("projection_band", "the host"), ("device_projection_band", "other devices"),
                     ("calibrated_device_projection_band", "other devices' calibrated projections")):
        b = info.get(key)
        if b:
            notes.append(f"Projection band for {who}: the measured latency is expected within projected/(1{b['high']:+.0%}) "
                         f"to projected/(1{b['low']:+.0%}) ({b['source']}); a budget inside the band reads 'uncertain'.")
    res = info.get("device_projection_resolution") or {}
    if res:
        txt = "; ".join(f"seq {k}: " + ", ".join(f"{p} {r - 1:.0%}" for p, r in v.items())
                        for k, v in sorted(res.items(), key=lambda kv: int(kv[0])))
        notes.append(f"Projections closer than the cost model's resolution on other devices ({txt}: the spread of its "
                     "errors on this report's host rows of the precisions compared at that length, against each row's "
                     "p10, the statistic the host microbenchmark's figures are, where its runs were kept; doubled as "
                     "the band is) are not ranked: of accuracy-tied variants projected that close to the fastest, the "
                     "smallest is picked.")
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
    notes += [f"int8: {x}" for x in info.get("int8", [])]
    if not any(r.accuracy is not None for r in rows):
        notes.append("No accuracy given: plots and the summary use the kept-parameter fraction as an accuracy PROXY: "
                     "a model's parameters over its own source model's (1 for an export; a variant's source must be "
                     "in the report), never over another model's. A model whose source is unknown has none (the "
                     "accuracy column says why), and models of different sources are not ranked by it.")
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


_SEQ_TIPS = {"p50 ms": "MEASURED on this device's hardware",
             "p90 ms (device)": "MEASURED on this device's hardware: the device latency",
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
        if getattr(r, "status", "") == "PROJECTED":  # this model was only measured on another machine
            return ["-", f"{_device_lat(r)} PROJECTED", proj, _budget_cell(r)[0]]
        return [_num(r.p50_ms), _num(r.p90_ms), proj, _budget_cell(r)[0]]
    dev = _device_lat(r) if r.device_latency_source != "measured p90" else _num(r.device_latency_ms)
    return [_num(r.p50_ms), _num(r.p90_ms), dev, _budget_cell(r)[0]]


_STATIC = [("model", "model"), ("precision", "precision"), ("wd", "width / depth"), ("arch", "arch"),
           ("size", "size MB"), ("mem", "peak MB"), ("acc", "accuracy % [95% CI] n")]
_STATIC_TIPS = {"acc": "accuracy on the evaluation examples with its 95% Wilson interval and n (recall@10 of the "
                       "reference's neighbours for embedding models); 'of ref': share of the reference (teacher)",
                "wd": "DynaBERT width (kept heads and FFN) / depth (kept layers) of the model's own source, from "
                      "its variant record (1 / 1: a deploytool export no pass has changed)", "arch": "layers, heads, FFN size",
                "mem": "peak resident memory of the ONNX Runtime process, measured on the host (max over lengths)",
                "size": "model file size"}


#: what a row's size weighs on a phone profile (``ReportRow.size_of``): the model.ort ``deploytool bundle`` ships
ORT_SIZE = "model.ort"
_ORT_HEADER = "size MB (.ort)"
_ORT_TIP = ("size of the model.ort deploytool bundle ships for this phone profile (what its size budget weighs; "
            "'(file)': no .ort could be made, the model file's size)")


def _ort_sizes(d: DeviceSummary) -> bool:
    """Whether the device's size column weighs the bundle's model.ort (a phone profile), not the model file."""
    return any(r.size_of == ORT_SIZE for v in d.variants for r in v.by_seq.values())


def _static_columns(d: DeviceSummary) -> list[tuple[str, str, str | None]]:
    """(key, header, tooltip) of the device table's model columns; the size column says what it weighs."""
    ort = _ort_sizes(d)
    return [(k, _ORT_HEADER if ort and k == "size" else h, _ORT_TIP if ort and k == "size" else _STATIC_TIPS.get(k))
            for k, h in _STATIC]


def _size_cell(size_mb: float | None, size_of: str | None, ort_column: bool) -> str:
    """A size in a column headed for model.ort sizes (``ort_column``) or for files; a size of the other kind says
    so: '12.3 (file)' (no .ort made), '12.3 (.ort)' (in a column of several devices' sizes)."""
    text = _fmt(size_mb, "size_mb")
    if size_mb is None or size_of is None:
        return text
    if ort_column and size_of != ORT_SIZE:
        return f"{text} (file)"
    if not ort_column and size_of == ORT_SIZE:
        return f"{text} (.ort)"
    return text


def _summary_size_header(recs: Sequence[dict[str, Any]]) -> tuple[str, bool]:
    """The summary's size header, and whether it is the model.ort one (every best fit's size is a model.ort)."""
    sized = [s.get("size_of") for s in recs if s.get("fits")]
    ort = bool(sized) and all(x == ORT_SIZE for x in sized)
    return (_ORT_HEADER if ort else "size MB"), ort


def _static_cells(v: ModelOnDevice, best: bool, ort_column: bool = False, proxy: bool = False) -> list[str]:
    """The model columns of a variant's row; ``proxy``: no accuracy given, the accuracy column shows the proxy, or
    why the model has none."""
    r = v.first
    mem = max((x.peak_memory_mb for x in v.by_seq.values() if x.peak_memory_mb is not None), default=None)
    wd = (VARIANT_UNKNOWN if r.variant_basis == VARIANT_UNKNOWN else
          "-" if r.width is None and r.depth is None else f"{_frac(r.width)} / {_frac(r.depth)}")
    return [("★ " if best else "") + v.model, r.precision, wd, r.arch,
            _size_cell(r.size_mb, r.size_of, ort_column), _fmt(mem, "peak_memory_mb"),
            v.longest.proxy_label() if proxy and v.longest.accuracy is None else v.longest.accuracy_label()]


def _ep_column(d: DeviceSummary) -> bool:
    return len({r.ep_ran for v in d.variants for r in v.by_seq.values()}) > 1
