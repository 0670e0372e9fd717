"""`deploytool export` of folders laid out as the hub's own-code embedding models (jina-embeddings-v2,
nomic-embed-text, gte-*-v1.5: config.json's ``auto_map`` names modeling code in the folder).

Without ``--trust-remote-code`` the export refuses in one line: before, jina-embeddings-v2's folder (whose
config.json says ``model_type: "bert"``) was exported as a plain BERT with its FFN and position weights made up
at random, "validated" against that wrong model. With it, the folder's code runs, and the ONNX file equals the
restated architecture loaded straight from the folder's safetensors (not through the export's own loader)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from deploytool.cli import main
from deploytool.errors import ConfigError
from deploytool.export import ExportConfig, read_metadata
from deploytool.runtime.infer import run_onnx
from deploytool.testing.hub_folder import HUB_CODE, write_hub_folder

FAMILIES = {"jina-bert": "jina_bert", "nomic-bert": "nomic_bert", "gte": "gte"}


def _one_line(r) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_own_code_folder_refused_without_trust(tmp_path, family):
    folder = write_hub_folder(family, tmp_path / family)
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", "--model", str(folder), "-o", str(out)])
    assert r.exit_code == 2, r.output
    line = _one_line(r)
    assert "auto_map" in line and "--trust-remote-code" in line and "modeling_hub.py" in line, line
    assert not out.exists()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_own_code_folder_exported_with_trust(tmp_path, family):
    import importlib

    folder = write_hub_folder(family, tmp_path / family)
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", "--model", str(folder), "-o", str(out), "--trust-remote-code"])
    assert r.exit_code == 0, r.output
    meta = read_metadata(onnx.load(str(out)))
    assert meta["family"] == FAMILIES[family]  # by its module paths: jina-embeddings-v2's config says "bert"
    assert int(meta["hidden_size"]) == 32 and int(meta["num_layers"]) == 2
    # the reference: the restated architecture with the folder's weights, loaded here from its safetensors
    _, module, config_cls, model_cls, names = HUB_CODE[family]
    mod = importlib.import_module(module)
    cfg = json.loads((folder / "config.json").read_text())
    for ours, hub in names.items():
        cfg[ours] = cfg.pop(hub)
    ref = getattr(mod, model_cls)(getattr(mod, config_cls)(**{k: v for k, v in cfg.items()
                                                               if k not in ("auto_map", "architectures")})).eval()
    ref.load_state_dict(load_file(str(folder / "model.safetensors")))
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 90, size=(2, 9)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in [i.name for i in onnx.load(str(out)).graph.input]:
        feeds["token_type_ids"] = np.zeros_like(ids)
    got = run_onnx(out, feeds)["last_hidden_state"]
    with torch.no_grad():
        want = ref(**{k: torch.as_tensor(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    # and the structured passes read it
    r = CliRunner().invoke(main, ["prune-ffn", str(out), "--keep", "0.5", "-o", str(tmp_path / "p.onnx")])
    assert r.exit_code == 0, r.output


def test_a_checkpoint_missing_encoder_weights_is_refused(tmp_path):
    """jina-embeddings-v2's folder with its auto_map taken out: transformers builds a BertModel whose FFN and
    position embeddings the checkpoint does not have; the export refuses instead of making them up."""
    folder = write_hub_folder("jina-bert", tmp_path / "jina")
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["auto_map"]
    (folder / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", "--model", str(folder), "-o", str(out)])
    assert r.exit_code == 2, r.output
    line = _one_line(r)
    assert "encoder's tensors" in line and ("intermediate.dense" in line or "position_embeddings" in line), line
    assert "not the architecture its config.json names ('bert')" in line, line
    assert not out.exists()


def test_trust_remote_code_must_be_a_bool():
    with pytest.raises(ConfigError, match="trust_remote_code"):
        ExportConfig(model="minilm", trust_remote_code="yes")


def test_training_an_own_code_folder_is_refused(tmp_path):
    """Fine-tuning loads the folder with transformers (no own code): refused in one line, never a plain BERT."""
    from deploytool.errors import DeployError
    from deploytool.train.checkpoint import load_classifier

    folder = write_hub_folder("jina-bert", tmp_path / "jina")
    with pytest.raises(DeployError, match="trains transformers' own architectures only") as e:
        load_classifier(folder, num_labels=2)
    assert "\n" not in str(e.value)


def test_architecture_reads_gpt2_style_config_names():
    """NomicBERT's hub configuration is GPT-2 style (n_embd, n_head, n_layer, n_inner; n_inner None = 4 x n_embd)."""
    from types import SimpleNamespace

    from deploytool.export.hf import architecture

    cfg = SimpleNamespace(model_type="nomic_bert", n_embd=64, n_head=4, n_layer=3, n_inner=None, vocab_size=99,
                          max_position_embeddings=None, n_positions=2048)
    model = SimpleNamespace(config=cfg, named_parameters=lambda: iter(()))
    a = architecture(model)
    assert (a["hidden_size"], a["num_heads"], a["num_layers"], a["ffn_size"], a["head_size"]) == (64, 4, 3, 256, 16)
    assert a["max_position_embeddings"] == 2048


def test_a_tokenizer_of_its_own_code_leaves_the_model_exportable(tmp_path, tiny_hf_folder):
    """auto_map naming only AutoTokenizer (a standard architecture with a tokenizer of its own code): exported as is."""
    import shutil

    folder = tmp_path / "bert"
    shutil.copytree(tiny_hf_folder("bert"), folder)  # the shared folder stays as it is
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}
    (folder / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", "--model", str(folder), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.exists()


def test_an_exporter_failure_is_one_line_without_torchs_graph_dump(tiny_torch_model, tmp_path, capfd, caplog):
    """TorchScript's exporter prints its whole graph ("Torch IR graph at exception: ...") on standard output
    before it raises; the export says what failed in its error alone, and keeps the dump for --debug (the log)."""
    import logging

    from deploytool.errors import DeployError
    from deploytool.export import export_loaded

    model = tiny_torch_model("bert")
    norm = model.embeddings.LayerNorm
    plain = norm.forward

    def with_eigvalsh(x):  # an operator TorchScript's ONNX exporter has no symbolic for, adding zero
        return plain(x) + 0 * torch.linalg.eigvalsh(x[..., :2, None] @ x[..., None, :2]).sum(-1, keepdim=True)

    norm.forward = with_eigvalsh
    out = tmp_path / "m.onnx"
    with caplog.at_level(logging.DEBUG, logger="deploytool.export.api"):
        with pytest.raises(DeployError, match=r"exporter torch failed on bert .*linalg_eigvalsh"):
            export_loaded(model, out, ExportConfig(model="tiny"))
    printed = capfd.readouterr()
    assert "Torch IR graph" not in printed.out + printed.err and "aten::" not in printed.out, printed.out[:500]
    assert "Torch IR graph at exception" in caplog.text
    assert not out.exists()


def test_what_a_successful_exporter_prints_still_shows(capfd):
    import os

    from deploytool.export.api import _held_output

    with _held_output():
        os.write(1, b"a note from the exporter\n")
        os.write(2, b"a warning from the exporter\n")
    assert capfd.readouterr() == ("a note from the exporter\n", "a warning from the exporter\n")


@pytest.mark.parametrize("missing", ["modeling_hub.py", "configuration_hub.py"])
def test_own_code_the_folder_lacks_is_one_line(tmp_path, missing):
    folder = write_hub_folder("jina-bert", tmp_path / "jina")
    (folder / missing).unlink()
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", "--model", str(folder), "-o", str(out), "--trust-remote-code"])
    assert r.exit_code == 2, r.output
    line = _one_line(r)
    assert f"names {missing}" in line and "not in the folder" in line and "huggingface.co" not in line, line
    assert not out.exists()
