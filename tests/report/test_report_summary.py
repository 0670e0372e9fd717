"""The report's per-device verdict (deploytool.report.summary) and its rendering, on hand-made rows:
which variant is picked, that a variant must fit at every length, and what "none fits" says."""

from __future__ import annotations

import dataclasses

import pytest

from deploytool.report.cells import _summary_records
from deploytool.report.html_report import render_html
from deploytool.report.markdown_report import render_markdown
from deploytool.report.rows import ReportRow, _variants
from deploytool.report.summary import group_variants, summarize


def row(model: str, seq: int, lat: float, *, acc: float | None = 80.0, device: str = "kirin990", size: float = 10.0,
        budget: float = 50.0, size_budget: float = 60.0, precision: str = "int8", arch: str = "L6 H12 F1536",
        params: int = 100) -> ReportRow:
    r = ReportRow(
        device=device, soc="SoC", core="cortex-a76", model=model, model_path=f"/m/{model}.onnx", precision=precision,
        arch=arch, params=params, param_fraction=params / 100, seq_len=seq, threads=1, ep_requested="XNNPACK",
        ep_ran="CPU", ep_note="XnnpackExecutionProvider: not in this build", measured_on="host", p50_ms=lat / 3,
        p90_ms=lat / 2, peak_memory_mb=100.0, size_mb=size, accuracy=acc, projected_ms=lat, projected_label="projected",
        device_latency_ms=lat, device_latency_source="projected", budget_ms=budget, budget_memory_mb=300.0,
        budget_size_mb=size_budget, budget_pass=None, budget_why="")
    # what the passes would have recorded in the file (the report reads that, never the name)
    import re

    m = re.search(r"w([\d.]+)[-_]d([\d.]+)", model)
    if m:
        r.variant_record = {"version": 1, "source": "m", "width": float(m.group(1)), "depth": float(m.group(2)),
                            "precision": precision, "chain": [], "label": model}
    r.budget_failed = [k for k, over in (("latency", lat > budget), ("size", size > size_budget)) if over]
    r.budget_pass = not r.budget_failed
    r.budget_why = "; ".join([f"projected {lat:.2f} ms {'>' if lat > budget else '<='} {budget:g} ms",
                              f"size {size:.1f} MB {'>' if size > size_budget else '<='} {size_budget:g} MB"])
    return r


def test_best_is_most_accurate_then_fastest_and_must_fit_every_length():
    rows = [
        row("q-w1-d1-fp32", 8, 5, acc=81, size=87), row("q-w1-d1-fp32", 128, 40, acc=81, size=87),  # too big
        row("q-w1-d1-int8", 8, 60, acc=80), row("q-w1-d1-int8", 128, 45, acc=80),  # over at seq 8 only
        row("q-w0.75-d1-int8", 8, 4, acc=79), row("q-w0.75-d1-int8", 128, 30, acc=79),
        row("q-w0.5-d1-int8", 8, 3, acc=79), row("q-w0.5-d1-int8", 128, 20, acc=79),  # same accuracy, faster
        row("q-w0.5-d0.5-int8", 8, 2, acc=60), row("q-w0.5-d0.5-int8", 128, 10, acc=60),
    ]
    _variants(rows)
    (s,) = summarize(rows)
    assert s.best is not None and s.best.model == "q-w0.5-d1-int8"
    assert [v.model for v in s.fitting] == ["q-w0.75-d1-int8", "q-w0.5-d1-int8", "q-w0.5-d0.5-int8"]
    assert not s.proxy and "3 of 5 variants fit" in s.verdict
    by = {v.model: v for v in s.variants}
    assert by["q-w1-d1-int8"].fits is False and by["q-w1-d1-int8"].failures() == [(8, "latency")]
    assert by["q-w1-d1-fp32"].failures() == [(8, "size"), (128, "size")]


def test_none_fits_names_the_budgets_and_the_closest_miss():
    rows = [row(f"q-w{w}-d1-int8", s, lat * w, acc=80 - 10 * (1 - w), budget=5.0)
            for w in (1, 0.5) for s, lat in ((8, 8.0), (128, 30.0))]
    rows += [row("q-w1-d1-fp32", s, 50.0, size=90.0, budget=5.0) for s in (8, 128)]
    (s,) = summarize(rows)
    assert s.best is None and s.verdict.startswith("none fits: ")
    assert "3 of 3 over the p90 latency budget at seq 128, 2 of 3 over the p90 latency budget at seq 8" in s.verdict
    assert "1 of 3 over the model size budget" in s.verdict and "size budget at seq" not in s.verdict
    assert "closest: q-w0.5-d1-int8: seq 8: projected 4.00 ms" not in s.verdict  # 4 ms fits the 5 ms budget
    assert "closest: q-w0.5-d1-int8: seq 128: projected 15.00 ms > 5 ms" in s.verdict
    info = {"summary": _summary_records([s], {}, rows), "hosts": ["host"], "profiles": ["kirin990"]}
    md = render_markdown(rows, info, "t", ["latency_accuracy.png"], [s])
    assert "| kirin990 | none fits: " in md and "0 of 3 |" in md
    html = render_html(rows, info, "t", {}, [s])
    assert "class='nofit' data-device='kirin990'" in html and "none fits: " in html
    assert "FAIL latency+size" in html  # the fp32 row breaks both, named in its budget cell


def test_a_phones_size_column_says_it_weighs_the_model_ort():
    """A phone profile's rows weigh the bundle's model.ort: its table's header says "size MB (.ort)" in Markdown
    and HTML (it said "size MB", the file's header); a row whose .ort could not be made says "(file)"; in the
    summary, over devices of both kinds, the .ort sizes say so in their cells."""
    phone = [row(m, 128, 10, size=s, acc=a, device="kirin990")
             for m, s, a in (("q-w1-d1-int8", 30.0, 81.0), ("q-w0.5-d1-int8", 20.0, 80.0))]
    phone[0].size_of, phone[1].size_of = "model.ort", "file (model.ort not made: no converter)"
    server = [row("q-w1-d1-int8", 128, 10, size=25.0, device="graviton3")]
    rows = phone + server
    summaries = summarize(rows)
    info = {"summary": _summary_records(summaries, {}, rows), "hosts": ["host"], "profiles": ["kirin990", "graviton3"]}
    md = render_markdown(rows, info, "t", [], summaries)
    phone_md, server_md = md.split("## kirin990")[1].split("## ")[0], md.split("## graviton3")[1].split("## ")[0]
    assert "| size MB (.ort) |" in phone_md and "| 30.0 |" in phone_md and "| 20.0 (file) |" in phone_md
    assert "| size MB |" in server_md and ".ort" not in server_md and "(file)" not in server_md
    summary_md = md.split("## Summary")[1].split("## ")[0]
    assert "| size MB |" in summary_md and "| 30.0 (.ort) |" in summary_md and "| 25.0 |" in summary_md
    html = render_html(rows, info, "t", {}, summaries)
    phone_html = html.split("id='device-kirin990'")[1].split("id='device-")[0]
    server_html = html.split("id='device-graviton3'")[1].split("id='device-")[0]
    assert ">size MB (.ort)</th>" in phone_html and "<td>20.0 (file)</td>" in phone_html
    assert ">size MB</th>" in server_html and ".ort" not in server_html
    # every device a phone: the summary's header says so
    (s,) = summarize(phone[:1])
    info = {"summary": _summary_records([s], {}, phone[:1]), "hosts": ["host"], "profiles": ["kirin990"]}
    assert "| size MB (.ort) |" in render_markdown(phone[:1], info, "t", [], [s]).split("## Summary")[1]
    assert "<th>size MB (.ort)</th>" in render_html(phone[:1], info, "t", {}, [s])


def test_without_accuracy_the_proxy_ranks_and_says_so():
    rows = [row("a-w1-d1-int8", 8, 5, acc=None, params=100), row("a-w0.5-d1-int8", 8, 3, acc=None, params=60),
            row("a-w1-d1-ternary", 8, 2, acc=None, params=100, precision="ternary")]
    (s,) = summarize(rows)
    assert s.proxy and s.best.model == "a-w1-d1-int8" and "PROXY" in s.verdict


def _proxy(r: ReportRow, fraction: float | None, source: str = "", basis: str = "") -> ReportRow:
    r.param_fraction, r.proxy_source, r.proxy_basis = fraction, source, basis
    return r


def test_the_proxy_never_ranks_variants_of_different_sources():
    # a's whole model (int8) and half of another model b (fp32): 1.0 and 0.5 are fractions of two different models;
    # the old summary ranked a first by them. Without a common source: precision first (fp32), then latency
    rows = [_proxy(row("a-w1-d1-int8", 8, 5, acc=None), 1.0, "a, 100 parameters", "its own source"),
            _proxy(row("b-w0.5-d1-fp32", 8, 4, acc=None, precision="fp32"), 0.5, "b, 300 parameters",
                   "of its source in this report (b)")]
    (s,) = summarize(rows)
    assert s.best is not None and s.best.model == "b-w0.5-d1-fp32"
    assert s.proxy_unranked == "they come from 2 different source models (a, 100 parameters; b, 300 parameters)"
    assert "the kept-parameter PROXY does not rank them" in s.verdict and "best by precision" in s.verdict
    rec = _summary_records([s], {}, rows)[0]
    assert rec["ranked_by_proxy"] is False and rec["proxy_unranked"] == s.proxy_unranked


def test_a_variant_without_a_proxy_is_not_ranked_last_by_it():
    rows = [_proxy(row("a-w1-d1-int8", 8, 5, acc=None), 1.0, "a, 100 parameters", "its own source"),
            _proxy(row("c", 8, 6, acc=None, precision="fp32"), None, "", "proxy unknown (no variant record)")]
    (s,) = summarize(rows)
    assert s.best is not None and s.best.model == "c"  # fp32 before int8 (the old proxy put c last, as 0)
    assert "c: proxy unknown (no variant record)" in s.verdict
    md = render_markdown(rows, {"hosts": ["host"], "profiles": ["kirin990"]}, "t", [], [s])
    table = md.split("## kirin990")[1]
    assert "| proxy 1.000 |" in table and "| proxy unknown (no variant record) |" in table


def test_variants_sorted_by_precision_width_depth_and_named_from_the_record_only():
    rows = [row("x_w0.5_d1_int8", 8, 1), row("x_w1_d0.5_fp32", 8, 1, precision="fp32"),
            row("x_w1_d1_int8", 8, 1), row("plain", 8, 1, arch="L3 H6 F768", precision="ternary")]
    _variants(rows)
    by = {r.model: r for r in rows}
    half = by["x_w0.5_d1_int8"]
    assert (half.width, half.depth, half.variant) == (0.5, 1.0, "w0.5-d1")
    # no record: its source is unknown, so it is not measured against the largest model (L6 H12) in the report
    assert (by["plain"].width, by["plain"].depth, by["plain"].variant) == (None, None, "")
    assert by["plain"].variant_basis == "unknown (no variant record)"
    order = [v.model for v in group_variants(rows)["kirin990"]]
    assert order == ["x_w1_d0.5_fp32", "x_w1_d1_int8", "x_w0.5_d1_int8", "plain"]


def test_same_file_by_another_ep_is_its_own_variant():
    cpu = row("m", 16, 5)
    npu = dataclasses.replace(cpu, ep_ran="QNN (HTP v75, EMULATED)", device_latency_ms=None, budget_failed=[])
    (s,) = summarize([cpu, npu])
    assert len(s.variants) == 2


@pytest.mark.parametrize("name", ["quickstart-w0.75-d0.5-int8", "w1_d1_fp32", "draw1-d2"])
def test_width_depth_come_from_the_record_never_the_file_name(name):
    r = row(name, 8, 1, arch="-")
    r.variant_record = None  # a file no deploytool pass wrote, whatever its name says
    _variants([r])
    assert (r.width, r.depth, r.variant) == (None, None, "")
    r.variant_record = {"version": 1, "source": "m", "width": 0.5, "depth": 1.0, "precision": "int8", "chain": [],
                        "label": "w0.5-d1-int8"}
    _variants([r])
    assert (r.width, r.depth, r.variant) == (0.5, 1.0, "w0.5-d1")


def test_verdict_never_claims_a_paired_test_that_did_not_run():
    """One variant with an accuracy figure, the others without one, or with figures but no per-example
    predictions: no paired test ran, and the verdict must not say that the others are significantly worse."""
    rows = [row("bert", 32, 10, acc=80.0), row("q8", 32, 5, acc=None), row("tern", 32, 4, acc=None)]
    _variants(rows)
    (s,) = summarize(rows)
    assert s.best.model == "bert"
    assert "significantly worse" not in s.verdict and "no accuracy for q8, tern: not compared" in s.verdict
    rows = [row("bert", 32, 10, acc=80.0), row("q8", 32, 5, acc=70.0), row("tern", 32, 4, acc=None)]
    (s,) = summarize(rows)
    assert "significantly worse" not in s.verdict
    assert "differences with q8 not tested (no per-example predictions)" in s.verdict
    assert "no accuracy for tern" in s.verdict


def test_verdict_says_why_a_paired_test_did_not_run():
    """Per-example predictions on other examples (another test file of as many rows): the verdict said "not tested
    (no per-example predictions)" though both records had them; it names the reason of each untested variant."""
    from deploytool.accuracy import AccuracyRecord

    rows = [row("bert", 32, 10, acc=90.0), row("q8", 32, 5, acc=85.0), row("tern", 32, 4, acc=80.0)]
    same = AccuracyRecord.from_correct([1] * 18 + [0] * 2, ids=range(20))
    other = AccuracyRecord.from_correct([1] * 17 + [0] * 3, ids=range(100, 120))
    rows[0].accuracy_record, rows[1].accuracy_record = same, other
    rows[2].accuracy_record = AccuracyRecord(80.0, 20)  # a figure and its n, no predictions
    _variants(rows)
    (s,) = summarize(rows)
    assert s.best.model == "bert" and "significantly worse" not in s.verdict
    assert "differences with q8 not tested (evaluated on different examples)" in s.verdict
    assert "differences with tern not tested (no per-example predictions)" in s.verdict


def test_accuracy_and_recall_at_10_do_not_rank_one_model_against_another():
    """A classifier (accuracy 99%) and a sentence encoder (recall@10 37%) benched and reported together: the verdict
    picked the classifier for 'the highest accuracy', ranking two different measures on one scale. Now, as for
    proxies of different sources, it says so and picks by precision, then latency."""
    from deploytool.accuracy import AccuracyRecord

    rows = [row("clf", 32, 10, acc=99.0, precision="fp32"), row("enc", 32, 5, acc=37.0, precision="fp32"),
            row("enc-int8", 32, 4, acc=36.0)]
    rows[0].accuracy_record = AccuracyRecord(99.0, 600)
    rows[1].accuracy_record = AccuracyRecord(37.0, 150, metric="recall@10")
    rows[2].accuracy_record = AccuracyRecord(36.0, 150, metric="recall@10")
    _variants(rows)
    (s,) = summarize(rows)
    assert s.best.model == "enc"  # fp32 before int8, then the lower latency (not the classifier's 99)
    assert s.verdict == ("enc: 3 of 3 variants fit; best by precision (fp32 = fp16 > int8 > ternary > binary), then "
                         "latency: their figures are different measures (accuracy, recall@10), which do not rank one "
                         "model against another")
    # one measure: ranked by it as before
    rows = rows[1:]
    (s,) = summarize(rows)
    assert s.best.model == "enc" and "has the highest recall@10" in s.verdict


def test_markdown_tables_keep_a_pipe_in_a_model_name_in_its_cell():
    """A model named 'a|b' split its summary row into one cell too many (the device table turned it into 'a/b')."""
    import re

    rows = [row("a|b-w1-d1-int8", s, 3.0) for s in (8, 128)] + [row("c-w0.5-d1-int8", s, 4.0) for s in (8, 128)]
    _variants(rows)
    (s,) = summarize(rows)
    info = {"summary": _summary_records([s], {}, rows), "hosts": ["host"], "profiles": ["kirin990"]}
    md = render_markdown(rows, info, "t", [], [s])
    tables, table = [], []
    for ln in md.splitlines() + [""]:
        if ln.startswith("|"):
            table.append(ln)
        elif table:
            tables, table = tables + [table], []
    assert [len(t) for t in tables] == [3, 4]  # the summary; the device table of two variants
    for t in tables:  # every row has its header's number of cells
        assert {len(re.findall(r"(?<!\\)\|", ln)) for ln in t} == {t[0].count("|")}, t
    assert "| **a\\|b-w1-d1-int8** |" in tables[0][2]
    assert any("| **★ a\\|b-w1-d1-int8** |" in ln for ln in tables[1])
