"""deploytool inspect shows what quantization-aware training (`deploytool qat`) trained the weights for: the
`trained` record export writes into deploytool.variant from the folder's deploytool.json, one text line and the
JSON's `trained`; nothing for a model without the record."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from deploytool.cli import main  # noqa: E402
from deploytool.export import ExportConfig, export  # noqa: E402
from deploytool.inspection import inspect_model  # noqa: E402

TASK = "sequence-classification"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny classifier exported plain, and exported again with a qat section in its deploytool.json (the file
    train_qat writes beside the weights; written here by hand: the record is under test, not the training)."""
    from deploytool.testing.toy_text import tiny_classifier_folder

    root = tmp_path_factory.mktemp("trained")
    folder = tiny_classifier_folder(root / "tiny", layers=2, hidden=32, heads=4, ffn=64)
    export(ExportConfig(model=str(folder), task=TASK), root / "plain.onnx")
    (folder / "deploytool.json").write_text(json.dumps({"qat": {
        "command": "qat", "mode": "ternary", "granularity": "row", "act_bits": 8, "quantize_embeddings": True}}))
    export(ExportConfig(model=str(folder), task=TASK), root / "qat.onnx")
    (folder / "deploytool.json").write_text(json.dumps({"qat": {
        "command": "qat", "mode": "binary", "granularity": "layer", "act_bits": 0, "quantize_embeddings": False,
        "tws": {"width": 0.5, "ternary_share": 0.5}}}))
    export(ExportConfig(model=str(folder), task=TASK), root / "tws.onnx")
    return root


def _trained_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("trained")]


def test_text_shows_the_trained_record_in_one_line(models):
    lines = _trained_lines(inspect_model(models / "qat.onnx").to_text())
    assert len(lines) == 1, lines
    line = lines[0]
    for words in ("ternary, row scales", "tws no", "embeddings ternary", "int8 activations", "qat"):
        assert words in line, line
    tws = _trained_lines(inspect_model(models / "tws.onnx").to_text())
    assert len(tws) == 1
    for words in ("binary, layer scales", "tws yes", "embeddings fp32", "fp32 activations", "split-binary"):
        assert words in tws[0], tws[0]


def test_json_carries_the_record_and_null_without_one(models):
    d = inspect_model(models / "qat.onnx").to_dict()
    t = d["trained"]
    assert (t["method"], t["mode"], t["granularity"], t["tws"], t["embeddings"], t["act_bits"]) == \
        ("qat", "ternary", "row", False, True, 8)
    assert inspect_model(models / "plain.onnx").to_dict()["trained"] is None


def test_no_record_prints_nothing(models):
    assert _trained_lines(inspect_model(models / "plain.onnx").to_text()) == []


def test_a_slice_says_where_it_was_trained(models, tmp_path):
    from deploytool.passes import transform
    from deploytool.passes.slice_subnetwork import SliceConfig

    transform(models / "qat.onnx", tmp_path / "s.onnx", SliceConfig(width=0.5, depth=1.0))
    (line,) = _trained_lines(inspect_model(tmp_path / "s.onnx").to_text())
    assert "ternary, row scales" in line and "trained at w1-d1" in line, line


def test_cli_text_and_json(models):
    r = CliRunner().invoke(main, ["inspect", str(models / "qat.onnx")])
    assert r.exit_code == 0, r.output
    assert len(_trained_lines(r.stdout)) == 1 and "tws no" in r.stdout
    r = CliRunner().invoke(main, ["inspect", str(models / "qat.onnx"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["trained"]["mode"] == "ternary"
