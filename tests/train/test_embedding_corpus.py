"""The corpus an embedding model is evaluated on (train/embedding.corpus_texts): a user file is read as train and
eval read one."""

from __future__ import annotations

import json

import pytest

from deploytool.errors import InputFileError
from deploytool.train.embedding import corpus_texts


def test_a_corpus_file_is_read_as_a_dataset_file_is(tmp_path):
    """corpus_texts read CSV/JSONL with a reader of its own: Excel's byte-order mark made the first column
    '\\ufefftext' ("no column 'text'"), latin-1 letters came out as U+FFFD (in a .txt corpus too), a JSON list of
    records was refused, a JSON object was embedded as its Python repr, and a missing column did not list the
    columns there are."""
    want = [f"café {i}" for i in range(20)]
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbftext,label\n" + "".join(f"{t},x\n" for t in want).encode())
    latin = tmp_path / "latin.csv"
    latin.write_bytes(("text\n" + "".join(f"{t}\n" for t in want)).encode("latin-1"))
    txt = tmp_path / "latin.txt"
    txt.write_bytes("\n".join(want).encode("latin-1"))
    records = tmp_path / "records.json"
    records.write_text(json.dumps([{"text": t} for t in want]))
    for f in (bom, latin, txt, records):
        assert corpus_texts(str(f))[0] == want, f
    objects = tmp_path / "objects.jsonl"
    objects.write_text("".join(json.dumps({"text": {"a": i}}) + "\n" for i in range(20)))
    with pytest.raises(InputFileError, match=f"^{objects}: row 1: 'text' is a JSON object, expected a string$"):
        corpus_texts(str(objects))
    with pytest.raises(InputFileError, match=f"^{latin}: no column 'body' \\(--text-col\\); columns are: text$"):
        corpus_texts(str(latin), text_col="body")


def test_a_mistyped_corpus_name_is_suggested_and_a_folder_named(tmp_path, monkeypatch):
    """`eval --corpus rotten_tomatos` said only "no such corpus file" (a dataset name typed wrong is read as a
    file's, as `--dataset` is, which suggests the name), and a folder was called "no such corpus file"."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputFileError) as e:
        corpus_texts("rotten_tomatos")
    assert str(e.value).startswith("rotten_tomatos: no such corpus file (did you mean 'rotten-tomatoes'?)"), e.value
    with pytest.raises(InputFileError) as e:
        corpus_texts("texts/rotten_tomatos")  # a path: no name suggested
    assert "did you mean" not in str(e.value)
    (tmp_path / "corpus").mkdir()
    with pytest.raises(InputFileError, match=r"^corpus: is a directory, expected a corpus file"):
        corpus_texts("corpus")
