"""A JSONL record is one line ended by a newline (LF or CRLF), whatever Unicode line separators its texts hold.

``json.dumps(..., ensure_ascii=False)`` (HF datasets' and pandas' ``to_json(force_ascii=False)`` likewise) writes
U+2028/U+2029, U+0085 and form feeds inside a string as they are, which JSON allows. The reader cut lines with
``str.splitlines``, which cuts at those too: such a record was refused as "line 1 is not JSON (Unterminated
string ...)", and a file of one such record as "is one JSON object ..., not records". A ``.txt`` corpus (one text a
line) cut one text in two there.
"""

from __future__ import annotations

import json

from deploytool.data import load_dataset
from deploytool.train.embedding import corpus_texts

ODD = ["\u2028", "\u2029", "\u0085", "\x0c", "\x1c", "\x0b"]


def _texts_by_hand(raw: str) -> list[str]:
    """The reference: records cut at LF only, each parsed alone."""
    return [json.loads(line)["text"] for line in raw.split("\n") if line.strip()]


def test_jsonl_texts_with_unicode_line_separators_are_one_record_each(tmp_path):
    rows = [{"text": f"first half{sep}second half {i}", "label": "pos" if i % 2 else "neg"}
            for i, sep in enumerate(ODD)]
    for ending in ("\n", "\r\n"):
        raw = "".join(json.dumps(r, ensure_ascii=False) + ending for r in rows)
        p = tmp_path / f"sep{len(ending)}.jsonl"
        p.write_bytes(raw.encode("utf-8"))
        ds = load_dataset(p, whole=True)
        got = ds.split("all")
        by_id = dict(zip(got.ids, got.texts))
        assert [by_id[i] for i in sorted(by_id)] == _texts_by_hand(raw)
        assert sorted(by_id) == list(range(len(rows)))
        names = ds.label_names
        assert {i: names[y] for i, y in zip(got.ids, got.labels)} == {i: r["label"] for i, r in enumerate(rows)}


def test_a_file_of_one_such_record_is_a_record(tmp_path):
    p = tmp_path / "one.jsonl"
    p.write_bytes((json.dumps({"text": "a\u2028b", "label": "pos"}, ensure_ascii=False) + "\n").encode("utf-8"))
    ds = load_dataset(p, whole=True)
    assert ds.split("all").texts == ("a\u2028b",) and ds.label_names == ("pos",)


def test_a_txt_corpus_is_cut_at_newlines_only(tmp_path):
    want = [f"text {i}{ODD[i % len(ODD)]}still text {i}" for i in range(20)]
    p = tmp_path / "corpus.txt"
    p.write_bytes("\r\n".join(want).encode("utf-8"))
    assert corpus_texts(str(p))[0] == want
