"""Excel's separator hint: a CSV saved by Excel in a semicolon locale may open with the line ``sep=;``, which Excel
reads as "the separator is ';'" and skips. deploytool took it for the header ("no column 'text' ...; columns are:
sep="); the hint is honoured now in .csv and .tsv files (its separator used, its line skipped, still counted in the
line numbers of messages)."""

from __future__ import annotations

import pytest

from deploytool.data import calibration_texts, load_dataset
from deploytool.errors import InputFileError

N = 40


def _rows(sep: str, end: str = "\n") -> str:
    # each text holds a comma: read with the default comma separator the rows would have three fields
    return "".join(f"text {i}, with a comma{sep}{('neg', 'pos')[i % 2]}{end}" for i in range(N))


@pytest.mark.parametrize("name, sep", [("d.csv", ";"), ("d.csv", "|"), ("d.tsv", ";"), ("d.csv", "\t")])
def test_the_separator_a_hint_line_names_is_used_and_the_line_skipped(tmp_path, name, sep):
    f = tmp_path / name
    f.write_text(f"sep={sep}\ntext{sep}label\n" + _rows(sep), encoding="utf-8")
    ds = load_dataset(f, whole=True)
    assert len(ds.test) == N
    assert sorted(ds.test.texts) == sorted(f"text {i}, with a comma" for i in range(N))
    assert ds.label_names == ("neg", "pos")


def test_excel_crlf_and_byte_order_mark(tmp_path):
    """Excel's own bytes: a UTF-8 byte-order mark ("CSV UTF-8"), the hint and CRLF line ends."""
    f = tmp_path / "excel.csv"
    f.write_bytes(b"\xef\xbb\xbf" + ("sep=;\r\ntext;label\r\n" + _rows(";", "\r\n")).encode("utf-8"))
    ds = load_dataset(f, whole=True)
    assert len(ds.test) == N and ds.label_names == ("neg", "pos")
    texts = calibration_texts(f, n=8)  # calibration reads the file through the same reader
    assert len(texts) == 8 and set(texts) <= {f"text {i}, with a comma" for i in range(N)}


def test_line_numbers_still_count_the_hint_line(tmp_path):
    f = tmp_path / "d.csv"
    # file lines: 1 the hint, 2 the header, 3 a row, 4 a row with one field too many
    f.write_text("sep=;\ntext;label\nt0;neg\nt1;pos;extra\n" + _rows(";"))
    with pytest.raises(InputFileError, match=f"^{f}: line 4 has 3 fields, the header 2 "):
        load_dataset(f)


def test_without_the_hint_nothing_changes(tmp_path):
    """A comma CSV whose first text is 'sep=;' is data, not a hint: only a line that is exactly sep=X is."""
    f = tmp_path / "d.csv"
    f.write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(N)))
    assert len(load_dataset(f, whole=True).test) == N
    g = tmp_path / "g.csv"
    g.write_text("sep=;;\ntext;label\n" + _rows(";"))  # not the hint's form: the first line is the header
    with pytest.raises(InputFileError, match="line 3 has 2 fields, the header 1 "):  # 'sep=;;' read as the header
        load_dataset(g)
