"""Sentence-pair data (GLUE's MRPC, RTE, QNLI, MNLI): two text columns a row, read by the one user-file reader.

A pair file was refused ("no column 'text'") or, with --text-col sentence1, read as its first sentences alone: the
second text never reached the model.
"""

from __future__ import annotations

import json
import logging

import pytest

from deploytool.data import calibration_texts, load_dataset
from deploytool.errors import ConfigError, InputFileError

ROWS = [(f"first {i} a", f"second {i} b", str(i % 2)) for i in range(40)]


def _tsv(path, header=("sentence1", "sentence2", "label"), rows=ROWS):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _pairs(split):
    return sorted(zip(split.ids, split.texts, split.pairs))


def test_named_pair_columns_are_read_as_pairs(tmp_path):
    p = tmp_path / "rte.jsonl"
    p.write_text("".join(json.dumps({"premise": a, "hypothesis": b, "y": int(c)}) + "\n" for a, b, c in ROWS))
    ds = load_dataset(p, text_col="premise", text_pair_col="hypothesis", label_col="y")
    got = _pairs(ds.split("all"))
    assert got == sorted((i, a, b) for i, (a, b, _) in enumerate(ROWS))
    assert all(len(s.pairs) == len(s) for s in (ds.train, ds.dev, ds.test))
    assert ds.info.text_pair_col == "hypothesis" and "sentence pairs 'premise' + 'hypothesis'" in ds.info.describe()
    # one text column still reads no pairs
    single = load_dataset(p, text_col="premise", label_col="y")
    assert single.train.pairs is None and single.info.text_pair_col is None


@pytest.mark.parametrize("cols", [("sentence1", "sentence2"), ("question", "sentence"), ("premise", "hypothesis"),
                                  ("question1", "question2"), ("text_a", "text_b")])
def test_glue_pair_columns_are_found_without_options(tmp_path, caplog, cols):
    p = _tsv(tmp_path / "d.tsv", header=(*cols, "label"))
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(p)
    assert (ds.info.text_col, ds.info.text_pair_col) == cols
    assert _pairs(ds.split("all")) == sorted((i, a, b) for i, (a, b, _) in enumerate(ROWS))
    assert f"read as sentence pairs of its '{cols[0]}' and '{cols[1]}' columns" in caplog.text


def test_a_file_with_a_text_column_is_not_read_as_pairs(tmp_path):
    p = _tsv(tmp_path / "d.tsv", header=("text", "sentence2", "label"))
    assert load_dataset(p).train.pairs is None


def test_a_missing_second_column_is_refused_with_the_column_hints(tmp_path):
    p = _tsv(tmp_path / "d.tsv", header=("sentence1", "Sentence2", "label"))
    with pytest.raises(InputFileError) as e:
        load_dataset(p, text_col="sentence1", text_pair_col="sentence2")
    msg = str(e.value)
    assert "no column 'sentence2' (--text-pair-col)" in msg and "--text-pair-col Sentence2" in msg, msg
    assert "\n" not in msg


def test_a_second_column_that_is_the_text_or_the_label_is_refused(tmp_path):
    p = _tsv(tmp_path / "d.tsv")
    for col in ("sentence1", "label"):
        with pytest.raises(ConfigError, match="text_pair_col: 'sentence1'|text_pair_col: 'label'"):
            load_dataset(p, text_col="sentence1", text_pair_col=col)
    with pytest.raises(ConfigError, match="one text an example"):
        load_dataset("rotten-tomatoes", text_pair_col="x")


def test_rows_without_a_second_text_are_skipped_and_counted(tmp_path, caplog):
    rows = [*ROWS[:-2], (ROWS[-2][0], "", "0"), (ROWS[-1][0], "  ", "1")]
    p = _tsv(tmp_path / "d.tsv", rows=rows)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(p, text_col="sentence1", text_pair_col="sentence2")
    assert len(ds.split("all")) == 38 and "2 of 40 examples skipped" in caplog.text
    p = tmp_path / "n.jsonl"
    p.write_text("".join(json.dumps({"sentence1": a, "sentence2": None if i == 0 else b, "label": c}) + "\n"
                         for i, (a, b, c) in enumerate(ROWS)))
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(p)
    assert len(ds.split("all")) == 39 and "1 of 40 rows skipped (no text or no label in 'sentence1'/'sentence2'" \
        in caplog.text


def test_calibration_reads_pairs_from_the_train_split_or_an_unlabelled_file(tmp_path):
    p = _tsv(tmp_path / "d.tsv")
    got = calibration_texts(p, n=8)
    train = load_dataset(p).train
    assert got == [(a, b) for a, b in zip(train.texts, train.pairs)][:8]
    unlabelled = _tsv(tmp_path / "u.tsv", header=("question", "sentence"), rows=[r[:2] for r in ROWS])
    assert calibration_texts(unlabelled, n=5) == [r[:2] for r in ROWS[:5]]
    with pytest.raises(InputFileError, match="calibration reads its texts from a 'hypothesis' column"):
        calibration_texts(unlabelled, n=5, text_col="question", text_pair_col="hypothesis")


def test_calibrations_pair_warning_names_no_training_option(tmp_path, caplog):
    """``quantize --static --calib-data pairs.csv`` warned "(--text-col sentence1 --text-pair-col sentence2)": options
    quantize does not have (its are --calib-text-col/--calib-text-pair-col, bundle's --qnn-calib-...). Calibration
    says which columns it read and names no option; training and eval still name theirs."""
    p = _tsv(tmp_path / "u.tsv", header=("sentence1", "sentence2"), rows=[r[:2] for r in ROWS])
    with caplog.at_level(logging.WARNING):
        calibration_texts(p, n=5)
    assert "read as sentence pairs of its 'sentence1' and 'sentence2' columns" in caplog.text
    assert "--text-col" not in caplog.text and "--text-pair-col" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_dataset(_tsv(tmp_path / "d.tsv", header=("sentence1", "sentence2", "label")))
    assert "(--text-col sentence1 --text-pair-col sentence2)" in caplog.text
