"""eval of an ONNX classifier reads the tokenizer as README's CLI grammar says every --tokenizer does: a tokenizer.json or
vocab.txt file, or a folder holding one. A bare vocab.txt (or tokenizer.json) beside the model, with no config.json or
tokenizer_config.json, was "no usable tokenizer (... Unrecognized model in ... aimv2, aimv2_vision_model, al)" while
``quantize --static`` read the same file; and a tokenizer of another model (ids past the embedding table) ended in an
internal error from ONNX Runtime's Gather (exit 1)."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from deploytool.cli import main

WORDS = ["good", "bad", "film", "movie", "great", "awful", "plot", "fine"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from deploytool.export import ExportConfig, export
    from deploytool.testing.tiny import tiny_model

    d = tmp_path_factory.mktemp("evaltok")
    tiny_model("bert", task="sequence-classification", vocab=len(SPECIAL) + len(WORDS)).save_pretrained(d / "hf")
    export(ExportConfig(model=str(d / "hf"), task="sequence-classification"), d / "c.onnx")
    (d / "data.csv").write_text("text,label\n" + "".join(f"{a} {b},{i % 2}\n" for i, (a, b) in
                                                         enumerate(zip(WORDS, reversed(WORDS)))))
    return d


def _eval(model, data):
    return CliRunner().invoke(main, ["eval", str(model), "--data", str(data), "--split", "all"])


@pytest.mark.parametrize("form", ["vocab.txt", "tokenizer.json"])
def test_a_bare_tokenizer_file_beside_the_model_is_read(classifier, tmp_path, form):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(classifier / "c.onnx", folder / "c.onnx")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS) + "\n")
    if form == "tokenizer.json":
        from deploytool.models import load_tokenizer

        load_tokenizer(vocab).save(str(folder / "tokenizer.json"))
        vocab.unlink()
    r = _eval(folder / "c.onnx", classifier / "data.csv")
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.stdout and "n=8" in r.stdout


def test_another_models_tokenizer_is_one_line(classifier, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(classifier / "c.onnx", folder / "c.onnx")
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + WORDS + [f"w{i}" for i in range(50)]) + "\n")
    (tmp_path / "data.csv").write_text("text,label\nw40 w41,0\nw42 good,1\n")
    r = _eval(folder / "c.onnx", tmp_path / "data.csv")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == (f"error: {folder / 'c.onnx'}: its tokenizer has token ids up to 62, past the model's embedding "
                        "table of 13 rows: it is another model's tokenizer; use the one the model was exported from")
