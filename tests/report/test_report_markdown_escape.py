"""A model name with Markdown or HTML in it ('<i>x', 'a*b*') is literal text in report.md, as it is in report.html.

report.md escaped only '|' (so a name stays in its cell); '<i>' went in raw and turned the rest of the cell italic
in any renderer, '*b*' bold-ish. The reference is written by hand: CommonMark's backslash before the character."""

from __future__ import annotations

from test_report_summary import row

from deploytool.report.html_report import render_html
from deploytool.report.markdown_report import render_markdown
from deploytool.report.summary import summarize


def _table_lines(md: str) -> list[str]:
    return [ln for ln in md.splitlines() if ln.startswith("| ")]


def test_a_model_name_with_markup_is_escaped_in_the_markdown_tables():
    rows = [row("<i>x", 128, 10.0, acc=85.0), row("a*b*", 128, 12.0, acc=80.0), row("bert_tiny|v2", 128, 11.0, acc=70.0)]
    (s,) = summarize(rows)
    md = render_markdown(rows, {"hosts": ["host"], "profiles": ["kirin990"]}, "t", [], [s])
    table = "\n".join(_table_lines(md))
    assert "<i>" not in table and "a*b*" not in table, table
    assert "| **★ \\<i\\>x** |" in table  # the best, in its device table
    assert "| **\\<i\\>x** |" in table  # and in the summary
    assert "| a\\*b\\* |" in table
    assert "| bert_tiny\\|v2 |" in table  # '_' inside a word starts nothing: left as is; '|' as before
    html = render_html(rows, {"hosts": ["host"], "profiles": ["kirin990"]}, "t", {}, [s])
    assert "&lt;i&gt;x" in html and "<i>x" not in html  # the HTML, as it was


def test_a_verdict_naming_a_model_with_markup_is_escaped():
    rows = [row("<b>slow", 128, 90.0, budget=5.0), row("<b>slower", 128, 99.0, budget=5.0)]
    (s,) = summarize(rows)
    assert s.best is None and "<b>slow" in s.verdict  # the premise: the verdict names the closest model
    md = render_markdown(rows, {"hosts": ["host"], "profiles": ["kirin990"]}, "t", [], [s])
    assert "<b>" not in md, md
    assert "\\<b\\>slow" in md
