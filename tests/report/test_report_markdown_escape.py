"""A model name with Markdown or HTML in it ('<i>x', 'a*b*') is literal text in report.md, as it is in report.html.

report.md escaped only '|' (so a name stays in its cell); '<i>' went in raw and turned the rest of the cell italic
in any renderer, '*b*' bold-ish. The reference is written by hand: CommonMark's backslash before the character."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

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


class _Blocks(HTMLParser):
    """The text of each h1, h2, li and td of rendered HTML, by tag (the markup inside them dropped, its text kept)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[str, list[str]] = {"h1": [], "h2": [], "li": [], "td": [], "blockquote": []}
        self.open: list[str] = []
        self.tags: list[str] = []  # every start tag seen inside a block

    def handle_starttag(self, tag, attrs):
        if tag in self.blocks:
            self.open.append(tag)
            self.blocks[tag].append("")
        elif self.open:
            self.tags.append(tag)

    def handle_endtag(self, tag):
        if self.open and tag == self.open[-1]:
            self.open.pop()

    def handle_data(self, data):
        for tag in self.open:
            self.blocks[tag][-1] += data


def test_profile_soc_and_model_names_in_headings_facts_and_notes_render_literally():
    """report.md put profile and model names raw into the '## <device>: <SoC>' headings, the device facts, the
    projection note and the notes (only the tables, the reference line and the verdicts were escaped): a profile
    '_lab_ *phone*' rendered italic, a SoC ending in ' #' lost its '#' (a heading's closing sequence), '<b>' became a
    tag, backticks code. The reference is an independent CommonMark renderer (markdown-it-py): each name must come
    out as the same text, and no markup but the report's own (**Key** in the facts) may appear."""
    markdown_it = pytest.importorskip("markdown_it")
    dev, soc = "_lab_ *phone* `x` <b>y|z #", "Snap_ *8* `gen` <i>3</i> #"
    model = "bert_*tiny*_ `v2` <u>q|w #1 _x_"
    rows = [row(model, 128, 10.0, acc=85.0, device=dev), row("other", 128, 12.0, acc=80.0, device=dev)]
    for r in rows:
        r.soc = soc
    (s,) = summarize(rows)
    info = {"hosts": ["host"], "profiles": [dev], "fp16": [f"{model} runs fp16 as fp32 on {dev}"],
            "accuracy_reference": {"name": model, "label": "90.0%"}}
    md = render_markdown(rows, info, "t", [], [s])
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    got = _Blocks()
    got.feed(html)
    devices = [h for h in got.blocks["h2"] if h not in ("Summary", "Plots", "Notes")]
    assert devices == [f"{dev}: {soc}"], devices  # the whole heading, '#' and all
    assert any(f"CPU: {soc}" in li for li in got.blocks["li"]), got.blocks["li"]  # the device facts
    assert any(li == f"fp16: {model} runs fp16 as fp32 on {dev}" for li in got.blocks["li"]), got.blocks["li"]
    assert any(li.startswith(f"Reference: {model}, 90.0%") for li in got.blocks["li"]), got.blocks["li"]
    assert dev in got.blocks["blockquote"][0]  # the projection note names the projected device
    assert dev in got.blocks["td"] and model in got.blocks["td"]  # the tables, as before
    assert set(got.tags) <= {"strong", "p"}, sorted(set(got.tags))  # no <em>, <code>, <b>, <i>, <u> from a name


def test_the_title_renders_literally():
    """The '# <title>' line (deploytool report --title) went in raw while every other user text was escaped: a
    title '*Q3* _phones_' rendered italic, a trailing ' #' was dropped as the heading's closing sequence, '<b>' became
    a tag, '[x](y)' a link. Rendered with markdown-it-py, the h1 must be the title's own text and hold no markup."""
    markdown_it = pytest.importorskip("markdown_it")
    title = "*Q3* _phones_ `v2` <b>lab</b> [x](y) & a|b ~~c~~ \\d #1 #"
    rows = [row("m", 128, 10.0, acc=85.0)]
    (s,) = summarize(rows)
    md = render_markdown(rows, {"hosts": ["host"], "profiles": ["kirin990"]}, title, [], [s])
    html = markdown_it.MarkdownIt("commonmark").enable("table").enable("strikethrough").render(md)
    got = _Blocks()
    got.feed(html)
    assert got.blocks["h1"] == [title], got.blocks["h1"]
    h1 = html[html.index("<h1>") + 4:html.index("</h1>")]
    assert "<" not in h1, h1  # no <em>, <code>, <b>, <a>, <s> from the title



@pytest.mark.parametrize("title, shown", [("a\n- b\n---", "a - b ---"), ("a\r\nb", "a b"), ("r\n", "r")])
def test_a_title_of_several_lines_is_one_heading(title, shown):
    """report.md's title is the one line '# <title>': 'a\n- b\n---' went in as a heading, a list item and a rule; a
    recipe's YAML block title ('title: >') ends in a line break. Its line breaks are spaces, as in report.html's
    <h1>; rendered with markdown-it-py, the whole title is the h1 and nothing else comes before '## Summary'."""
    markdown_it = pytest.importorskip("markdown_it")
    rows = [row("m", 128, 10.0, acc=85.0)]
    (s,) = summarize(rows)
    md = render_markdown(rows, {"hosts": ["host"], "profiles": ["kirin990"]}, title, [], [s])
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    got = _Blocks()
    got.feed(html)
    assert got.blocks["h1"] == [shown], got.blocks["h1"]
    head = html[:html.index("<h2>")]
    assert "<ul>" not in head and "<hr" not in head and head.count("<h1>") == 1, head
