"""fit's list options refuse an empty item (``1,,0.5``) with one line naming the option and the item, exit 2.

Before, ``--widths "1,,0.5"`` (and ``--depths``, ``--precisions``) dropped the empty item in silence and ran
another grid than the one typed; ``--seq-len 8,,128`` was already refused. One case per list-option family:
numbers (--widths, --depths), names (--precisions), sequence lengths (--seq-len)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main


@pytest.fixture(scope="module")
def model(tiny_onnx):
    return tiny_onnx("bert", layers=2, hidden=64, heads=4, ffn=256)


def _err_line(r) -> str:
    err = r.stderr if hasattr(r, "stderr") else r.output
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("option, value, named", [
    ("--widths", "1,,0.5", ["--widths", "item 2", "'1,,0.5'", "empty"]),
    ("--widths", "1,0.5,", ["--widths", "item 3", "empty"]),
    ("--depths", ",1", ["--depths", "item 1", "empty"]),
    ("--precisions", "fp32,,int8", ["--precisions", "item 2", "'fp32,,int8'", "empty"]),
    ("--seq-len", "8,,128", ["--seq-len", "'8,,128'"]),
])
def test_fit_refuses_an_empty_list_item(model, tmp_path, option, value, named):
    out = tmp_path / "o.onnx"
    r = CliRunner().invoke(main, ["fit", str(model), "--profile", "kirin990", "-o", str(out), option, value,
                                  "--runs", "3"])
    line = _err_line(r)
    assert r.exit_code == 2, r.output
    for word in named:
        assert word in line, line
    assert not out.exists() and not out.with_name(out.name + ".fit.json").exists()
