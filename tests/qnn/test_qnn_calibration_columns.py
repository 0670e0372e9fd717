"""QNN calibration reads a file's texts from the columns it is told (``--calib-text-col``, ``--calib-text-pair-col``,
beside ``--calib-data``/``--calib-size``): a calibration file whose text column was not 'text' (nor a GLUE pair) was
refused ('calibration reads its texts from a 'text' column ... rename it'), with no option to name it. The feeds are
built on the host (no QNN runtime); the reference is transformers' tokenizer on the file's texts."""

from __future__ import annotations

import csv

import pytest

from deploytool.errors import ConfigError

pytest.importorskip("transformers")


def _file(tmp_path, pairs: bool):
    from deploytool.testing.toy_text import toy_rows

    rows = [(a[0], b[0]) for a, b in zip(toy_rows(12, seed=1, length=(3, 8)), toy_rows(12, seed=2))]
    path = tmp_path / "calib.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["claim", "evidence", "gold"])
        w.writerows((a, b, "x") for a, b in rows)
    return path, rows


@pytest.mark.parametrize("pairs", [False, True])
def test_calibration_reads_the_named_columns(tiny_onnx, tmp_path, pairs):
    import onnx
    from transformers import BertTokenizerFast

    from deploytool.qnn.quantize import calibration_inputs
    from deploytool.testing.toy_text import toy_tokenizer

    toy_tokenizer(tmp_path / "tok")
    path, rows = _file(tmp_path, pairs)
    model = onnx.load(str(tiny_onnx("bert", task="sequence-classification", layers=1)))
    feeds, note = calibration_inputs(model, seq_len=16, n=8, data=str(path), tokenizer=tmp_path / "tok",
                                     text_col="claim", text_pair_col="evidence" if pairs else None)
    assert note.startswith("8 ") and ("sentence pairs" in note) == pairs, note
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "tok" / "vocab.txt"), do_lower_case=True)
    args = ([a for a, _ in rows[:8]], [b for _, b in rows[:8]]) if pairs else ([a for a, _ in rows[:8]],)
    ref = tok(*args, truncation=True, max_length=16, padding="max_length")
    assert [f["input_ids"][0].tolist() for f in feeds] == ref["input_ids"]
    assert [f["token_type_ids"][0].tolist() for f in feeds] == ref["token_type_ids"]


def test_the_default_column_is_still_text_and_a_missing_one_is_named(tiny_onnx, tmp_path):
    import onnx

    from deploytool.qnn.quantize import calibration_inputs
    from deploytool.testing.toy_text import toy_tokenizer

    toy_tokenizer(tmp_path / "tok")
    path, _ = _file(tmp_path, False)
    model = onnx.load(str(tiny_onnx("bert", task="sequence-classification", layers=1)))
    with pytest.raises(Exception, match=r"calib\.csv: no column 'text'"):
        calibration_inputs(model, seq_len=16, n=8, data=str(path), tokenizer=tmp_path / "tok")
    with pytest.raises(Exception, match=r"calib\.csv: no column 'claims'"):
        calibration_inputs(model, seq_len=16, n=8, data=str(path), tokenizer=tmp_path / "tok", text_col="claims")


def test_the_config_takes_and_checks_the_columns():
    from deploytool.qnn import QnnQuantConfig

    cfg = QnnQuantConfig(calibration_text_col="claim", calibration_text_pair_col="evidence")
    assert (cfg.calibration_text_col, cfg.calibration_text_pair_col) == ("claim", "evidence")
    assert (QnnQuantConfig().calibration_text_col, QnnQuantConfig().calibration_text_pair_col) == ("text", None)
    for kw, needle in (({"calibration_text_col": ""}, "calibration_text_col: expected a column name"),
                       ({"calibration_text_pair_col": " "}, "calibration_text_pair_col: expected a column name"),
                       ({"calibration_text_col": "a", "calibration_text_pair_col": "a"},
                        "calibration_text_pair_col: 'a' is also the text column")):
        with pytest.raises(ConfigError, match=needle):
            QnnQuantConfig(**kw)


def test_the_cli_options_sit_beside_calib_data():
    import click

    from deploytool.cli.qnn_cmd import check, compile_, quantize_

    for cmd in (check, quantize_, compile_):
        opts = {o: p.name for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
        assert opts["--calib-text-col"] == "calibration_text_col", cmd.name
        assert opts["--calib-text-pair-col"] == "calibration_text_pair_col", cmd.name
        assert opts["--calib-data"] == "calibration_data", cmd.name
