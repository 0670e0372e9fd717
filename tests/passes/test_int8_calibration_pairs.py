"""Static int8 calibrated on sentence pairs: each pair tokenized as one input ([CLS] a [SEP] b [SEP]) and the
model's token_type_ids fed the pair's types. The calibration feeds gave every text's token types as zeros, and a
pair file (sentence1/sentence2) was refused ("calibration reads its texts from a 'text' column"). The reference is
transformers' tokenizer called on (a, b)."""

from __future__ import annotations

import numpy as np
import pytest

from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

pytest.importorskip("torch")

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=64, seed=3)


def test_static_int8_calibrates_on_pairs_with_their_token_types(tiny_onnx, tmp_path, monkeypatch):
    import deploytool.passes.quantize_int8 as q
    from transformers import AutoTokenizer

    from deploytool.testing.toy_text import toy_rows, toy_tokenizer

    src = tiny_onnx("bert", exporter="torch", **SHAPE)
    tok_dir = tmp_path / "tok"
    toy_tokenizer(tok_dir)
    rows = [(a[0], b[0]) for a, b in zip(toy_rows(24, seed=1), toy_rows(24, seed=2))]
    data = tmp_path / "pairs.tsv"  # no labels: calibration reads the pairs in file order
    data.write_text("question\tsentence\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    seen = []
    real = q._calibration_feeds
    monkeypatch.setattr(q, "_calibration_feeds", lambda *a: seen.extend(real(*a)) or seen)
    res = quantize_int8_file(src, tmp_path / "s.onnx", Int8Config(static=True, calib_data=str(data),
                                                                  tokenizer=str(tok_dir), calib_size=16,
                                                                  calib_seq_len=20, fusion="none"))
    assert res.stats["calibration_samples"] == 16
    assert "token_type_ids" in seen[0]
    got = []
    for f in seen:
        for ids, tt, m in zip(f["input_ids"], f["token_type_ids"], f["attention_mask"]):
            n = int(m.sum())
            assert not np.asarray(tt[n:]).any()
            got.append((ids[:n].tolist(), tt[:n].tolist()))
    ref = AutoTokenizer.from_pretrained(tok_dir)([a for a, _ in rows[:16]], [b for _, b in rows[:16]],
                                                 truncation=True, max_length=20)
    assert got == [(i, t) for i, t in zip(ref["input_ids"], ref["token_type_ids"])]
    assert all(1 in t for _, t in got)
