"""Static int8 calibrates on the columns the user names (``--calib-text-col``, ``--calib-text-pair-col``; a recipe's
``calib_text_col``/``calib_text_pair_col``). Before, a calibration file whose texts were not in a ``text`` column
(or a GLUE pair of columns) was refused ("... rename it"), whatever the user's data looked like; QNN's calibration
had the options, static int8 did not. The reference for the feeds is transformers' tokenizer called on the named
columns' texts, read here with the csv module."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from deploytool.errors import ConfigError
from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

pytest.importorskip("torch")

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=64, seed=5)


def _pair_file(path, n=24):
    from deploytool.testing.toy_text import toy_rows

    rows = [(a[0], b[0]) for a, b in zip(toy_rows(n, seed=3), toy_rows(n, seed=4))]
    with open(path, "w", newline="", encoding="utf-8") as f:  # neither 'text' nor a GLUE pair of names
        w = csv.writer(f)
        w.writerow(["id", "claim", "evidence"])
        w.writerows([(i, a, b) for i, (a, b) in enumerate(rows)])
    return path


def _read(path, *cols):
    with open(path, newline="", encoding="utf-8") as f:
        return [tuple(r[c] for c in cols) for r in csv.DictReader(f)]


@pytest.fixture
def setup(tiny_onnx, tmp_path):
    from deploytool.testing.toy_text import toy_tokenizer

    tok = tmp_path / "tok"
    toy_tokenizer(tok)
    return tiny_onnx("bert", exporter="torch", **SHAPE), tok, _pair_file(tmp_path / "claims.csv")


def _fed(monkeypatch):
    import deploytool.passes.quantize_int8 as q

    seen = []
    real = q._calibration_feeds
    monkeypatch.setattr(q, "_calibration_feeds", lambda *a: seen.extend(real(*a)) or seen)
    return seen


def _rows_of(seen):
    got = []
    for f in seen:
        for ids, tt, m in zip(f["input_ids"], f["token_type_ids"], f["attention_mask"]):
            n = int(m.sum())
            got.append((ids[:n].tolist(), tt[:n].tolist()))
    return got


@pytest.mark.parametrize("pair", [False, True])
def test_static_int8_calibrates_on_the_named_columns(setup, tmp_path, monkeypatch, pair):
    from transformers import AutoTokenizer

    src, tok, data = setup
    seen = _fed(monkeypatch)
    cfg = Int8Config(static=True, calib_data=str(data), tokenizer=str(tok), calib_size=12, calib_seq_len=24,
                     fusion="none", calib_text_col="claim", calib_text_pair_col="evidence" if pair else None)
    res = quantize_int8_file(src, tmp_path / "s.onnx", cfg)
    assert res.stats["calibration_samples"] == 12
    rows = _read(data, "claim", "evidence")[:12]
    ref_tok = AutoTokenizer.from_pretrained(tok)
    ref = (ref_tok([a for a, _ in rows], [b for _, b in rows], truncation=True, max_length=24) if pair
           else ref_tok([a for a, _ in rows], truncation=True, max_length=24))
    assert _rows_of(seen) == [(i, t) for i, t in zip(ref["input_ids"], ref["token_type_ids"])]
    assert any(1 in t for _, t in _rows_of(seen)) == pair


def test_the_columns_are_static_options():
    with pytest.raises(ConfigError, match="calib_text_col: calibration columns are only used with static"):
        Int8Config(calib_text_col="claim")
    with pytest.raises(ConfigError, match="calib_text_pair_col: calibration columns are only used with static"):
        Int8Config(calib_text_pair_col="evidence")


def test_a_tokenizer_without_static_is_refused_not_ignored(tmp_path):
    """Dynamic int8 reads no text: ``quantize --int8 --tokenizer T`` took T and did nothing with it."""
    with pytest.raises(ConfigError, match="tokenizer: the tokenizer is only used with static quantization"):
        Int8Config(tokenizer="some/tokenizer.json")
    Int8Config(static=True, calib_data="rotten-tomatoes", tokenizer="some/tokenizer.json")  # where it is read
    src = tmp_path / "m.onnx"
    src.write_bytes(b"not read: the options are checked first")
    r = _cli("quantize", src, "--int8", "--tokenizer", tmp_path, "-o", tmp_path / "q.onnx")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "only used with static quantization" in lines[0], r.stderr
    assert not (tmp_path / "q.onnx").exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "deploytool", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_cli_takes_the_columns_and_refuses_a_missing_one_in_one_line(setup, tmp_path):
    src, tok, data = setup
    out = tmp_path / "cli.onnx"
    base = ["quantize", src, "--int8", "--static", "--engine", "ort", "--fusion", "none", "--calib-data", data,
            "--calib-size", "8", "--tokenizer", tok, "-o", out]
    r = _cli(*base, "--calib-text-col", "claim", "--calib-text-pair-col", "evidence")
    assert r.returncode == 0, r.stderr
    assert out.exists()
    out.unlink()
    r = _cli(*base)  # the default 'text' column is not there
    assert r.returncode == 2 and not out.exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "text" in lines[0] and "claim" in lines[0], r.stderr
    r = _cli(*base, "--calib-text-col", "claim", "--calib-text-pair-col", "evidense")
    assert r.returncode == 2 and not out.exists()
    assert len(r.stderr.strip().splitlines()) == 1 and "evidense" in r.stderr, r.stderr
    r = _cli("quantize", src, "--int8", "--calib-text-col", "claim", "-o", out)  # not static: not used
    assert r.returncode == 2 and not out.exists()
    assert "calib_text_col" in r.stderr or "--calib-text-col" in r.stderr, r.stderr
    r = _cli("quantize", src, "--fp16", "--calib-text-col", "claim", "-o", out)
    assert r.returncode == 2 and "--calib-text-col" in r.stderr and not out.exists()

