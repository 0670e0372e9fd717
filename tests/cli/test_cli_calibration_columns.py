"""A column option's error through the command line names the options the user typed, inside the sentence too.

``GrammarCommand`` turned the config field an error starts with into its option (``calibration_text_col`` ->
``--calib-text-col``), but the sentence still named a field: ``qnn quantize --calib-data none --calib-text-col
claim`` said "--calib-text-col: names a column of the calibration file, and no calibration_data is given", and
``bundle --qnn-calib-text-col claim`` "... and no qnn_calibration is given" (2026-12-07). A recipe names
``Int8Config``'s fields as its keys (``calib_data``), so there the field's name is the right one.

Each case: one line, exit 2, nothing written, the options named and no config field's name anywhere in it.
The expected lines are written out here.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main

# every config field name a column error of these commands could leak
FIELDS = ("calibration_data", "calibration_text_col", "calibration_text_pair_col", "qnn_calibration", "calib_data",
          "calib_text_col", "calib_text_pair_col", "text_col", "text_pair_col", "label_col")


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "claims.csv").write_text("id,claim,evidence\n0,a claim,some evidence\n")
    (tmp_path / "m.onnx").write_bytes(b"not read: the options are refused first")
    return tmp_path


@pytest.mark.parametrize("args, line", [
    (["qnn", "quantize", "m.onnx", "--profile", "snapdragon-sm8650", "--calib-data", "none",
      "--calib-text-col", "claim", "-o", "out.onnx"],
     "--calib-text-col: names a column of the calibration file, and no --calib-data is given"),
    (["qnn", "quantize", "m.onnx", "--profile", "snapdragon-sm8650", "--calib-data", "none",
      "--calib-text-pair-col", "evidence", "-o", "out.onnx"],
     "--calib-text-pair-col: names a column of the calibration file, and no --calib-data is given"),
    (["bundle", "m.onnx", "--profile", "snapdragon-sm8650", "--qnn-calib-text-col", "claim", "-o", "out"],
     "--qnn-calib-text-col: names a column of the calibration file, and no --qnn-calib-data is given"),
    (["bundle", "m.onnx", "--profile", "snapdragon-sm8650", "--qnn-calib-text-pair-col", "evidence", "-o", "out"],
     "--qnn-calib-text-pair-col: names a column of the calibration file, and no --qnn-calib-data is given"),
    # quantize --static: no column without --calib-data gets that far (static needs the data first)
    (["quantize", "m.onnx", "--int8", "--static", "--calib-text-col", "claim", "-o", "out.onnx"],
     "--calib-data: static int8 needs calibration data (--calib-data DATASET or file)"),
    (["quantize", "m.onnx", "--int8", "--static", "--calib-data", "claims.csv", "--calib-text-col", "claim",
      "--calib-text-pair-col", "claim", "-o", "out.onnx"],
     "--calib-text-pair-col: 'claim' is also the text column; the second text is another one"),
    (["quantize", "m.onnx", "--int8", "--static", "--calib-data", "claims.csv", "--calib-text-col", " ",
      "-o", "out.onnx"],
     "--calib-text-col: expected a column name, got str ' '"),
    # the training and eval commands' columns: the same words (they said 'an empty column name', or took it)
    (["eval", "m.onnx", "--data", "claims.csv", "--text-col", "", "--label-col", "evidence"],
     "--text-col: expected a column name, got str ''"),
    (["eval", "m.onnx", "--data", "claims.csv", "--text-col", "claim", "--label-col", " "],
     "--label-col: expected a column name, got str ' '"),
    (["train", "--data", "claims.csv", "--text-col", "claim", "--text-pair-col", "", "-o", "out"],
     "--text-pair-col: expected a column name, got str ''"),
], ids=["qnn-text", "qnn-pair", "bundle-text", "bundle-pair", "int8-no-data", "int8-pair-is-text", "int8-blank",
        "eval-text-empty", "eval-label-blank", "train-pair-empty"])
def test_the_error_names_the_options_not_the_fields(files, args, line):
    r = CliRunner().invoke(main, args)
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert r.exit_code == 2 and lines == [f"error: {line}"], r.output
    assert not any(f in r.output for f in FIELDS), r.output
    assert sorted(p.name for p in files.iterdir()) == ["claims.csv", "m.onnx"]


def test_a_calibration_size_without_static_is_refused(files):
    """``quantize --int8 --calib-size 8`` (no --static) was accepted and ignored: a dynamic model written as if the
    option meant something, while --calib-data and --calib-text-col without --static were refused."""
    for size in (["--calib-size", "8"], ["--calib-size", "64"]):  # the default's value typed counts too
        r = CliRunner().invoke(main, ["quantize", "m.onnx", "--int8", *size, "-o", "out.onnx"])
        lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
        assert r.exit_code == 2 and lines == ["error: --calib-size: calibration texts are only used with static "
                                              "quantization (--static)"], r.output
    assert sorted(p.name for p in files.iterdir()) == ["claims.csv", "m.onnx"]
