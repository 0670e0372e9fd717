"""The calibration file's column options are one rule in one set of words, whichever config takes them:
``QnnQuantConfig`` (``qnn quantize --calib-text-col``), ``BundleConfig`` (``bundle --qnn-calib-text-col``) and
``Int8Config`` (``quantize --static --calib-text-col``, a recipe's ``calib_text_col``). Each had its own check
(2026-12-07): an empty name was 'expected a column name, got ''', 'must be a column name, got ''' or 'expected a
non-empty string, got str ''', and only QnnQuantConfig refused a second-text column equal to the text column
(bundle and int8 took it; a file without a label column was then calibrated on each text paired with itself).
The same bad input through all three, and through the training and eval commands' ``DataConfig`` (``--text-col``,
``--text-pair-col``, ``--label-col``: its own words until the same day), must give the same line, bar the
field's name."""

from __future__ import annotations

import pytest

from deploytool.errors import ConfigError

_ABSENT = object()  # the option not given


@pytest.fixture(scope="module")
def calib_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("calib") / "claims.csv"
    p.write_text("id,claim,evidence\n0,a claim,some evidence\n")
    return str(p)


def _qnn(data, text, pair):
    from deploytool.qnn.quantize import QnnQuantConfig

    kw = {k: v for k, v in (("calibration_text_col", text), ("calibration_text_pair_col", pair)) if v is not _ABSENT}
    QnnQuantConfig(calibration_data=data, **kw)


def _bundle(data, text, pair):
    from deploytool.bundle import BundleConfig
    from deploytool.profiles import load_profile

    kw = {k: v for k, v in (("qnn_calibration_text_col", text), ("qnn_calibration_text_pair_col", pair))
          if v is not _ABSENT}
    BundleConfig(profile=load_profile("snapdragon-sm8650", ()), qnn_calibration=data, **kw)


def _int8(data, text, pair):
    from deploytool.passes.quantize_int8 import Int8Config

    kw = {k: v for k, v in (("calib_text_col", text), ("calib_text_pair_col", pair)) if v is not _ABSENT}
    Int8Config(static=True, calib_data=data, **kw)


def _data(data, text, pair):
    """The training and eval commands' columns (--text-col, --text-pair-col), which said an empty second text
    'text_pair_col: an empty column name', took an empty or blank --text-col (and failed later on "no column ''")
    and answered a number with @config's 'expected a string, got int 5'."""
    from deploytool.train.config import DataConfig

    kw = {k: v for k, v in (("text_col", text), ("text_pair_col", pair)) if v is not _ABSENT}
    DataConfig(data=data, **kw)


_FIELDS = {_qnn: ("calibration_text_col", "calibration_text_pair_col", "calibration_data"),
           _bundle: ("qnn_calibration_text_col", "qnn_calibration_text_pair_col", "qnn_calibration"),
           _int8: ("calib_text_col", "calib_text_pair_col", "calib_data"),
           _data: ("text_col", "text_pair_col", "data")}
_CONFIGS = pytest.mark.parametrize("make", list(_FIELDS), ids=["qnn", "bundle", "int8", "data"])


@_CONFIGS
@pytest.mark.parametrize("text, pair, field, problem", [
    ("", _ABSENT, 0, "expected a column name, got str ''"),
    ("   ", _ABSENT, 0, "expected a column name, got str '   '"),
    (5, _ABSENT, 0, "expected a column name, got int 5"),
    ("claim", "", 1, "expected a column name, got str ''"),
    ("claim", " \t", 1, r"expected a column name, got str ' \t'"),
    ("claim", ["evidence"], 1, "expected a column name, got list"),
    ("claim", "claim", 1, "'claim' is also the text column; the second text is another one"),
    # no text column named: the default one, 'text', is the text column
    (_ABSENT, "text", 1, "'text' is also the text column; the second text is another one"),
], ids=["empty", "blank", "number", "pair-empty", "pair-blank", "pair-list", "pair-is-text", "pair-is-default"])
def test_the_same_bad_columns_give_the_same_line_in_every_config(make, calib_file, text, pair, field, problem):
    with pytest.raises(ConfigError) as e:
        make(calib_file, text, pair)
    assert str(e.value) == f"{_FIELDS[make][field]}: {problem}"


@_CONFIGS
def test_good_columns_pass_every_config(make, calib_file):
    make(calib_file, "claim", "evidence")
    make(calib_file, _ABSENT, "evidence")  # the default 'text' column and a second text
    make(calib_file, "claim", _ABSENT)


@pytest.mark.parametrize("make", [_qnn, _bundle], ids=["qnn", "bundle"])
@pytest.mark.parametrize("text, pair, field", [("claim", _ABSENT, 0), (_ABSENT, "evidence", 1)],
                         ids=["text", "pair"])
def test_a_column_without_calibration_data_is_refused(make, text, pair, field):
    """A column of no file does nothing: refused (bundle did; QnnQuantConfig took it with calibration_data None,
    ``qnn quantize --calib-data none --calib-text-col claim``). Int8Config refuses it as a static-only option
    (tests/passes/test_int8_calibration_columns.py)."""
    t, p, data = _FIELDS[make]
    with pytest.raises(ConfigError) as e:
        make(None, text, pair)
    assert str(e.value) == f"{(t, p)[field]}: names a column of the calibration file, and no {data} is given"


@pytest.mark.parametrize("kw, line", [
    ({"label_col": ""}, "label_col: expected a column name, got str ''"),
    ({"label_col": "  "}, "label_col: expected a column name, got str '  '"),
    ({"label_col": 3}, "label_col: expected a column name, got int 3"),
    ({"text_pair_col": "label"}, "text_pair_col: 'label' is also the label column; the second text is another one"),
    ({"text_col": "claim", "text_pair_col": "gold", "label_col": "gold"},
     "text_pair_col: 'gold' is also the label column; the second text is another one"),
    ({"text_col": "claim", "label_col": "claim"},
     "text_col/label_col: both name the column 'claim'; the labels are another column"),
], ids=["label-empty", "label-blank", "label-number", "pair-is-default-label", "pair-is-label", "label-is-text"])
def test_the_label_column_is_a_column_name_too(calib_file, kw, line):
    """DataConfig's label column: the same words for a bad name; its rules against the texts as before."""
    from deploytool.train.config import DataConfig

    with pytest.raises(ConfigError) as e:
        DataConfig(data=calib_file, **kw)
    assert str(e.value) == line
