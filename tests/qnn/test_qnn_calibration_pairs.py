"""QNN calibration (qnn quantize, qnn check's fixed inputs) on sentence pairs: each pair one input
([CLS] a [SEP] b [SEP]) and token_type_ids fed its types; they were zeros whatever the text. No QNN runtime
needed: the feeds are built on the host. The reference is transformers' tokenizer called on (a, b)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")


@pytest.mark.parametrize("files", ["tokenizer.json", "vocab.txt only"])
def test_calibration_feeds_of_pairs_carry_their_token_types(tiny_onnx, tmp_path, files):
    import onnx
    from transformers import BertTokenizerFast

    from deploytool.qnn.quantize import calibration_inputs
    from deploytool.testing.toy_text import toy_rows, toy_tokenizer

    tok_dir = tmp_path / "tok"
    toy_tokenizer(tok_dir)
    if files == "vocab.txt only":  # the fallback WordPiece built from vocab.txt
        for f in tok_dir.iterdir():
            if f.name != "vocab.txt":
                f.unlink()
    rows = [(a[0], b[0]) for a, b in zip(toy_rows(12, seed=1, length=(3, 8)), toy_rows(12, seed=2))]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(f'{{"premise": "{a}", "hypothesis": "{b}"}}\n' for a, b in rows))
    model = onnx.load(str(tiny_onnx("bert", task="sequence-classification", layers=1)))
    feeds, note = calibration_inputs(model, seq_len=16, n=8, data=str(data), tokenizer=tok_dir)
    assert "8 " in note and "sentence pairs" in note
    ref = BertTokenizerFast(vocab_file=str(tmp_path / "tok" / "vocab.txt"), do_lower_case=True)(
        [a for a, _ in rows[:8]], [b for _, b in rows[:8]], truncation=True, max_length=16, padding="max_length")
    assert [f["input_ids"][0].tolist() for f in feeds] == ref["input_ids"]
    assert [f["token_type_ids"][0].tolist() for f in feeds] == ref["token_type_ids"]
    assert [f["attention_mask"][0].tolist() for f in feeds] == ref["attention_mask"]
    assert all(1 in f["token_type_ids"][0] for f in feeds)
