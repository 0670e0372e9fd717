"""pack knows whether the weights were trained for it: `qat` -> `export` -> `pack` carries the training's record
(mode, granularity, TWS) in the file's deploytool.variant; pack notes it, warns in one line when its settings differ
from the training's, and keeps the post-training note for a model without the record."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from deploytool.cli import main  # noqa: E402
from deploytool.export import ExportConfig, export  # noqa: E402
from deploytool.passes import transform  # noqa: E402
from deploytool.passes.pack_weights import PackConfig, pack_file  # noqa: E402
from deploytool.passes.slice_subnetwork import SliceConfig  # noqa: E402

# the note of a model with no training record, word for word (what pack always printed before)
POST_TRAINING = ("post-training ternary/binary weights lose accuracy without training; recover it with "
                 "quantization-aware distillation (`deploytool qat`, TernaryBERT/BinaryBERT)")
TASK = "sequence-classification"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A tiny BERT teacher fine-tuned for one epoch, `qat` ternary with row scales for one epoch, both exported."""
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv
    from deploytool.train.config import DataConfig, QATConfig, TrainConfig
    from deploytool.train.finetune import finetune
    from deploytool.train.qat import train_qat

    root = tmp_path_factory.mktemp("qatrec")
    data = DataConfig(data=str(toy_csv(root / "toy.csv", n=96)), max_length=16)
    tiny_classifier_folder(root / "tiny", layers=2, hidden=32, heads=4, ffn=64)
    finetune(TrainConfig(model=str(root / "tiny"), output=root / "teacher", data=data, epochs=1, lr=3e-3,
                         batch_size=16, threads=1))
    train_qat(QATConfig(teacher=root / "teacher", output=root / "qat", data=data, mode="ternary", granularity="row",
                        epochs=1, lr=1e-3, batch_size=16, threads=1))
    for name in ("teacher", "qat"):
        export(ExportConfig(model=str(root / name), task=TASK), root / f"{name}.onnx")
    return root


def _meta(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_export_records_the_quantization_aware_training(chain):
    record = json.loads(_meta(chain / "qat.onnx")["deploytool.variant"])
    assert record["trained"]["method"] == "qat"
    assert (record["trained"]["mode"], record["trained"]["granularity"], record["trained"]["tws"]) == \
        ("ternary", "row", False)
    assert record["width"] == record["depth"] == 1 and record["chain"] == [] and record["precision"] == "fp32"
    # a fine-tuned folder has no training record: its export stays as it was (the first pass seeds the variant)
    assert "deploytool.variant" not in _meta(chain / "teacher.onnx")


def test_pack_of_the_trained_model_says_trained_not_post_training(chain, tmp_path):
    res = pack_file(chain / "qat.onnx", tmp_path / "p.onnx", PackConfig(weights="ternary", granularity="row"))
    note = res.stats["note"]
    assert note != POST_TRAINING and "post-training" not in note
    assert "trained for" in note and "ternary" in note and "row" in note
    assert "warning" not in res.stats
    # the packed file keeps the record (a repack or a later pass still knows)
    assert json.loads(_meta(tmp_path / "p.onnx")["deploytool.variant"])["trained"]["mode"] == "ternary"


@pytest.mark.parametrize("weights,granularity,words", [
    ("binary", "row", ("trained ternary", "packed binary")),
    ("ternary", "layer", ("per row", "layer")),
    ("split-binary", "layer", ("packed split-binary", "per row")),
])
def test_pack_with_other_settings_warns_in_one_line(chain, tmp_path, weights, granularity, words):
    res = pack_file(chain / "qat.onnx", tmp_path / "p.onnx", PackConfig(weights=weights, granularity=granularity))
    warning = res.stats["warning"]
    assert "\n" not in warning and all(w in warning for w in words), warning
    assert "post-training" not in res.stats["note"]
    assert (tmp_path / "p.onnx").is_file()  # a warning, not a refusal


def test_trained_layer_scales_packed_per_row_is_no_mismatch(chain, tmp_path):
    """Per-row scales of a matrix trained with one scale are that scale in every row: the same numbers."""
    shutil.copy(chain / "qat.onnx", tmp_path / "q.onnx")
    m = onnx.load(str(tmp_path / "q.onnx"))
    for p in m.metadata_props:
        if p.key == "deploytool.variant":
            rec = json.loads(p.value)
            rec["trained"]["granularity"] = "layer"
            p.value = json.dumps(rec)
    onnx.save(m, str(tmp_path / "q.onnx"))
    res = pack_file(tmp_path / "q.onnx", tmp_path / "p.onnx", PackConfig(weights="ternary", granularity="row"))
    assert "warning" not in res.stats and "trained for" in res.stats["note"]


def test_plain_export_keeps_the_post_training_note(chain, tmp_path):
    res = pack_file(chain / "teacher.onnx", tmp_path / "p.onnx", PackConfig(weights="ternary"))
    assert res.stats["note"] == POST_TRAINING and "warning" not in res.stats


def test_slice_keeps_the_record_and_pack_says_the_cut_was_not_trained(chain, tmp_path):
    transform(chain / "qat.onnx", tmp_path / "s.onnx", SliceConfig(width=0.5, depth=1.0))
    rec = json.loads(_meta(tmp_path / "s.onnx")["deploytool.variant"])
    assert rec["width"] == 0.5 and rec["trained"]["width"] == 1 and rec["trained"]["mode"] == "ternary"
    res = pack_file(tmp_path / "s.onnx", tmp_path / "p.onnx", PackConfig(weights="ternary", granularity="row"))
    note = res.stats["note"]
    assert "post-training" not in note and "w0.5-d1" in note and "w1-d1" in note and "not" in note
    assert "warning" not in res.stats


def test_tws_record_from_the_folder_and_a_ternary_pack_warns(chain, tmp_path):
    """A BinaryBERT (TWS) folder: its deploytool.json's qat section as train_qat writes it (mode binary, a tws
    section), written here by hand on the fine-tuned weights (the record is what is under test, not the training)."""
    folder = tmp_path / "tws"
    shutil.copytree(chain / "teacher", folder)
    (folder / "deploytool.json").write_text(json.dumps({"qat": {
        "command": "qat", "mode": "binary", "granularity": "layer", "act_bits": 8, "quantize_embeddings": True,
        "tws": {"width": 0.5, "ternary_share": 0.5}}}))
    export(ExportConfig(model=str(folder), task=TASK), tmp_path / "tws.onnx")
    trained = json.loads(_meta(tmp_path / "tws.onnx")["deploytool.variant"])["trained"]
    assert (trained["mode"], trained["tws"]) == ("binary", True)
    ok = pack_file(tmp_path / "tws.onnx", tmp_path / "ok.onnx", PackConfig(weights="split-binary"))
    assert "warning" not in ok.stats and "split-binary" in ok.stats["note"]
    bad = pack_file(tmp_path / "tws.onnx", tmp_path / "bad.onnx", PackConfig(weights="ternary"))
    assert "trained split-binary" in bad.stats["warning"] and "packed ternary" in bad.stats["warning"]


def test_the_warning_reaches_a_python_caller_through_the_logger(chain, tmp_path, caplog):
    """A library user sees the warning as the library's other warnings, on the pass module's logger: one record,
    the stats' line; none where the settings are the training's."""
    name = "deploytool.passes.pack_weights"
    with caplog.at_level("WARNING", logger=name):
        res = transform(chain / "qat.onnx", tmp_path / "p.onnx", PackConfig(weights="binary", granularity="row"))
    records = [r for r in caplog.records if r.name == name and r.levelname == "WARNING"]
    assert [r.getMessage() for r in records] == [res.stats["warning"]]
    caplog.clear()
    with caplog.at_level("WARNING", logger=name):
        pack_file(chain / "qat.onnx", tmp_path / "t.onnx", PackConfig(weights="ternary", granularity="row"))
    assert not [r for r in caplog.records if r.name == name]


def test_cli_prints_the_note_and_the_warning_once_on_stderr(chain, tmp_path):
    """The real program (its own logging set-up, which CliRunner under pytest does not get): the warning is one
    line on stderr, the logger's, not printed a second time by the command."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "deploytool", "pack", str(chain / "qat.onnx"), "--weights", "binary",
                        "--granularity", "row", "-o", str(tmp_path / "p.onnx")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert "note: the weights were trained for" in r.stdout and "post-training" not in r.stdout
    said = [line for line in r.stderr.splitlines() if "pack settings differ" in line]
    assert len(said) == 1 and said[0].startswith("warning: pack settings differ"), r.stderr  # as bench and report say theirs
    assert "packed binary" in said[0] and "pack settings differ" not in r.stdout
    r = CliRunner().invoke(main, ["pack", str(chain / "teacher.onnx"), "--weights", "ternary",
                                  "-o", str(tmp_path / "t.onnx")])
    assert r.exit_code == 0, r.output
    assert f"note: {POST_TRAINING}" in r.stdout and "pack settings differ" not in r.output
