"""``deploytool export`` through click: a working export and each bad input (exit 2, one line)."""

from __future__ import annotations

import os
import shutil

import onnx
import pytest
from click.testing import CliRunner

from deploytool.cli import main


def _run(*args: str):
    return CliRunner().invoke(main, ["export", *args])


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_exports_a_local_folder(tiny_hf_folder, tmp_path):
    out = tmp_path / "sub" / "m.onnx"
    result = _run("--model", str(tiny_hf_folder("bert", "sequence-classification")), "--task",
                  "sequence-classification", "-o", str(out), "--opset", "18", "--atol", "1e-5")
    assert result.exit_code == 0, result.output
    assert result.output.count("validation ") == 3 and "max abs diff" in result.output
    assert str(out) in result.output
    proto = onnx.load(str(out))
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.opset_import[0].version == 18
    assert sorted(os.listdir(out.parent)) == ["m.onnx"]  # no temp files left


def test_cli_no_validate(tiny_hf_folder, tmp_path):
    out = tmp_path / "m.onnx"
    result = _run("--model", str(tiny_hf_folder("bert")), "-o", str(out), "--no-validate")
    assert result.exit_code == 0, result.output
    assert "validation skipped" in result.output and out.exists()


def _bad_folder_without_weights(tmp_path, tiny_hf_folder):
    folder = tmp_path / "no_weights"
    folder.mkdir()
    shutil.copy(tiny_hf_folder("bert") / "config.json", folder)
    return folder


@pytest.mark.parametrize("case", ["unknown-name", "missing-folder", "no-weights", "under-a-file",
                                  "read-only-dir", "read-only-fs", "opset-range", "opset-old", "opset-dynamo",
                                  "opset-text", "atol-text", "atol-negative", "atol-huge", "atol-no-validate",
                                  "corrupt-weights"])
def test_cli_bad_input(case, tmp_path, tiny_hf_folder, unwritable_folder):
    good = str(tiny_hf_folder("bert"))
    out = tmp_path / "out" / "m.onnx"
    args = ["--model", good, "-o", str(out)]
    needles: tuple[str, ...]
    if case == "unknown-name":
        args[1], needles = "bert-huge", ("unknown model 'bert-huge'",)
    elif case == "missing-folder":
        args[1], needles = str(tmp_path / "nothere"), ("does not exist",)
    elif case == "no-weights":
        args[1], needles = str(_bad_folder_without_weights(tmp_path, tiny_hf_folder)), ("no weights",)
    elif case == "corrupt-weights":
        folder = tmp_path / "corrupt"
        shutil.copytree(tiny_hf_folder("bert"), folder)
        (folder / "model.safetensors").write_bytes(b"not safetensors at all")
        args[1], needles = str(folder), ("cannot load model from", str(folder))
    elif case == "under-a-file":
        blocker = tmp_path / "afile"
        blocker.write_text("x")
        out = blocker / "deeper" / "m.onnx"
        args[3], needles = str(out), ("is a file",)
    elif case == "read-only-dir":
        out = unwritable_folder(case) / "m.onnx"
        args[3], needles = str(out), ("not writable",)
    elif case == "read-only-fs":
        out = unwritable_folder(case) / "deploytool-test.onnx"
        args[3], needles = str(out), ("/proc/self", "writ")  # "not writable" or "cannot write"
    elif case == "opset-range":  # the option's name and the range (was 'opset=99 out of range ...')
        args += ["--opset", "99"]
        needles = ("error: --opset: ", "[14, 20]", "got 99")
    elif case == "opset-old":
        args += ["--opset", "5"]
        needles = ("error: --opset: ", "[14, 20] for exporter torch", "got 5")
    elif case == "opset-dynamo":
        args += ["--exporter", "dynamo", "--opset", "17"]
        needles = ("error: --opset: ", "[18, 23] for exporter dynamo", "got 17")
    elif case == "atol-negative":
        args += ["--atol", "-1"]
        needles = ("error: --atol: ", "[0, 1e6]", "got -1.0")
    elif case == "atol-no-validate":  # a tolerance nothing is compared with (it exported, unvalidated, exit 0)
        args += ["--no-validate", "--atol", "0.1"]
        needles = ("error: --atol: ", "--no-validate")
    elif case == "atol-huge":
        args += ["--atol", "1e9"]
        needles = ("error: --atol: ", "[0, 1e6]")
    elif case == "opset-text":
        args += ["--opset", "seventeen"]
        needles = ("--opset", "not a valid integer")
    else:
        args += ["--atol", "tight"]
        needles = ("--atol", "not a valid float")
    result = _run(*args)
    _assert_one_line_error(result, *needles)
    assert not out.exists()
    if out.parent.is_dir() and out.parent != tmp_path and str(out.parent).startswith(str(tmp_path)):
        assert os.listdir(out.parent) == []


@pytest.mark.parametrize("case", ["gpt2", "llama", "unknown-type", "no-type"])
def test_decoders_and_unknown_model_types_are_named(tiny_hf_folder, tmp_path, case):
    """A decoder-only language model (GPT-2 failed inside the exporter with 'RuntimeError: unordered_map::at') and
    a model_type transformers does not know (its message was cut mid-sentence) are one plain line for export and
    train alike, before anything loads; nothing is written."""
    import json

    import transformers as tr

    folder = tmp_path / "x" / case.replace("-", "_")  # a path naming no model family (transformers guesses from it)
    if case == "gpt2":
        tr.GPT2Model(tr.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32)).save_pretrained(folder)
        needles = ("is a decoder-only language model (gpt2", "deploytool exports and trains encoders")
    elif case == "llama":
        tr.LlamaModel(tr.LlamaConfig(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                     num_key_value_heads=2, vocab_size=50)).save_pretrained(folder)
        needles = ("is a decoder-only language model (llama",)
    else:
        shutil.copytree(tiny_hf_folder("bert", "sequence-classification"), folder)
        cfg = json.loads((folder / "config.json").read_text())
        if case == "unknown-type":
            cfg["model_type"] = "bertt"
            needles = ("model_type 'bertt' is not one transformers", "(did you mean 'bert'?)", "auto_map")
        else:
            del cfg["model_type"]
            needles = ("config.json has no model_type, and the folder's path names no model family",)
        (folder / "config.json").write_text(json.dumps(cfg))
    before = sorted(p.name for p in tmp_path.iterdir())
    _assert_one_line_error(_run("--model", str(folder), "-o", str(tmp_path / "m.onnx")), *needles)
    if case == "no-type":  # an old checkpoint without model_type in a folder named after its family still loads
        named = tmp_path / "bert-old"
        shutil.copytree(folder, named)
        assert _run("--model", str(named), "-o", str(tmp_path / "old.onnx")).exit_code == 0
        (tmp_path / "old.onnx").unlink()
        shutil.rmtree(named)
    r = CliRunner().invoke(main, ["train", "--model", str(folder), "--data", "rotten-tomatoes",
                                  "-o", str(tmp_path / "trained")])
    _assert_one_line_error(r, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("family, pad, expected", [("mpnet", None, 62), ("roberta", 0, 63), ("roberta", None, 62),
                                                   ("bert", None, 64)])
def test_the_recorded_length_limit_follows_the_position_ids(tmp_path, family, pad, expected):
    """MPNet counts positions from padding_idx + 1 as RoBERTa does: its limit was recorded 2 too long and a small
    table crashed validation (IndexError, exit 1); RoBERTa with pad id 0 was recorded one too short."""
    import onnxruntime as ort
    import transformers as tr

    from deploytool.export import read_metadata

    cfg_cls, model_cls = {"mpnet": (tr.MPNetConfig, tr.MPNetModel), "roberta": (tr.RobertaConfig, tr.RobertaModel),
                          "bert": (tr.BertConfig, tr.BertModel)}[family]
    kw = {} if pad is None else {"pad_token_id": pad}
    folder = tmp_path / "x" / "m"
    model_cls(cfg_cls(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=100,
                      max_position_embeddings=64, **kw)).save_pretrained(folder)
    out = tmp_path / "m.onnx"
    r = _run("--model", str(folder), "-o", str(out))
    assert r.exit_code == 0, r.output
    meta = read_metadata(onnx.load(str(out), load_external_data=False))
    assert int(meta["max_position_embeddings"]) == expected
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    import numpy as np

    feeds = {i.name: np.ones((1, expected), np.int64) * (5 if "ids" in i.name and "type" not in i.name else 1)
             for i in sess.get_inputs()}
    feeds = {k: (np.zeros_like(v) if "type" in k else v) for k, v in feeds.items()}
    sess.run(None, feeds)  # the recorded length runs


def test_nan_weights_are_the_checkpoints_fault(tiny_hf_folder, tmp_path):
    """A checkpoint with a NaN weight: "exported model differs from PyTorch: max abs diff inf" blamed the export
    for what PyTorch itself computes."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "x" / "nan"
    shutil.copytree(tiny_hf_folder("bert", "feature-extraction"), folder)
    w = load_file(str(folder / "model.safetensors"))
    key = next(k for k in w if k.endswith("query.weight"))
    w[key] = w[key].clone()
    w[key][0, 0] = float("nan")
    save_file(w, str(folder / "model.safetensors"), metadata={"format": "pt"})
    _assert_one_line_error(_run("--model", str(folder), "-o", str(tmp_path / "m.onnx")),
                           "the model's own PyTorch output 'last_hidden_state' is not finite",
                           "NaN or inf in its weights?")
    assert not (tmp_path / "m.onnx").exists()


def test_a_position_table_shorter_than_the_trace_exports(tmp_path):
    """max_position_embeddings 6: the export traced 8 tokens and failed with the exporter's size mismatch."""
    import transformers as tr

    folder = tmp_path / "x" / "short"
    tr.BertModel(tr.BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                               vocab_size=100, max_position_embeddings=6)).save_pretrained(folder)
    r = _run("--model", str(folder), "-o", str(tmp_path / "m.onnx"))
    assert r.exit_code == 0, r.output
    assert "validation seq6" in r.output
