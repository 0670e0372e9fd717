"""Found by a session of trying to break the pass commands (2026-12-06): the files a pass reads besides its model,
the inputs a static calibration feeds, a folder-like output path and a full disk.

- ``-o`` naming a side input (``--neurons``, ``--importance``, ``--calib-data``, ``--tokenizer``) replaced it
  with the model, exit 0; now refused like ``-o`` naming the model.
- ``--neurons`` with a layer given twice (or as "00", "-0") was merged silently; ``--heads`` refused it.
- an importance score beyond float's range was an internal error (exit 1).
- ``--tokenizer`` naming a file that is not a tokenizer was an internal error (exit 1) that did not name it.
- static int8 fed int64 ``input_ids``/``attention_mask``/``token_type_ids`` of shape [1, n] to every model: an
  export with int32 ids, a bool mask or a fixed batch and length failed with ORT's type or shape error.
- ``-o out/`` wrote a file named ``out``.
- a full disk was "internal error OSError", exit 1.

Commands run as a user runs them (``deploytool`` in a subprocess) unless the case needs a stand-in.
"""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from deploytool.errors import ConfigError


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploytool", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _one_error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny BERT classifier export, its tokenizer folder and a calibration CSV."""
    from deploytool.export import export
    from deploytool.export.config import ExportConfig, Task
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv

    root = tmp_path_factory.mktemp("side")
    folder = tiny_classifier_folder(root / "clf", layers=2, hidden=32, heads=4, ffn=64)
    model = root / "clf.onnx"
    export(ExportConfig(model=str(folder), task=Task.SEQUENCE_CLASSIFICATION), model)
    return model, folder, toy_csv(root / "toy.csv", n=40)


@pytest.mark.parametrize("option", ["--neurons", "--importance", "--calib-data", "--tokenizer"])
def test_the_output_may_not_replace_a_file_the_pass_reads(classifier, tmp_path, option):
    model, folder, csv = classifier
    if option == "--neurons":
        side = tmp_path / "n.json"
        side.write_text('{"0": [1, 2]}')
        args = ["prune-ffn", model, "--neurons", side]
    elif option == "--importance":
        side = tmp_path / "imp.json"
        side.write_text(json.dumps({"format": "deploytool-importance/1", "heads": [[1, 2, 3, 4]] * 2,
                                    "neurons": [list(range(64))] * 2}))
        args = ["reorder", model, "--importance", side]
    elif option == "--calib-data":
        side = tmp_path / "c.csv"
        side.write_bytes(csv.read_bytes())
        args = ["quantize", model, "--int8", "--static", "--calib-data", side, "--tokenizer", folder]
    else:
        side = tmp_path / "tokenizer.json"
        side.write_bytes((folder / "tokenizer.json").read_bytes())
        args = ["quantize", model, "--int8", "--static", "--calib-data", csv, "--tokenizer", side]
    before = _sha(side)
    line = _one_error_line(_run(*args, "-o", side))
    assert "would overwrite the input" in line
    assert _sha(side) == before


@pytest.mark.parametrize("text", ['{"0": [1], "0": [2]}', '{"0": [1], "00": [2]}', '{"-0": [1]}', '{" 1": [1]}',
                                  '[]', '[[0, [1]]]'])
def test_a_neurons_file_names_each_layer_once_as_a_plain_index(tmp_path, text):
    from deploytool.passes.prune_ffn import load_neurons_file

    p = tmp_path / "n.json"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_neurons_file(p)
    assert str(e.value).startswith(f"{p}: ") and "\n" not in str(e.value)
    p.write_text('{"0": [1], "1": [2, 3]}')
    assert load_neurons_file(p) == {0: (1,), 1: (2, 3)}


@pytest.mark.parametrize("value, why", [(10**400, "too large"), ("3", "non-number"), (None, "non-number"),
                                        (True, "boolean")])
def test_an_importance_file_holds_json_numbers_that_fit_a_float(value, why):
    from deploytool.importance import importance_from_dict

    obj = {"format": "deploytool-importance/1", "heads": [[1.0, value]], "neurons": [[1.0, 2.0]]}
    with pytest.raises(ConfigError, match=why):
        importance_from_dict(obj, "imp.json")


def test_a_tokenizer_that_is_not_one_is_named_in_one_line(classifier, tmp_path):
    model, _, csv = classifier
    bad = tmp_path / "tok.txt"
    bad.write_text("not a tokenizer")
    out = tmp_path / "st.onnx"
    line = _one_error_line(_run("quantize", model, "--int8", "--static", "--calib-data", csv, "--tokenizer", bad,
                                "-o", out))
    assert str(bad) in line and "tokenizer" in line
    assert not out.exists()


def _retyped(src: Path, dst: Path, *, ids=onnx.TensorProto.INT32, mask=onnx.TensorProto.BOOL, fixed=(2, 8)) -> Path:
    """``src`` with its ids and mask declared ``ids``/``mask`` and every input of the fixed shape ``fixed``, each
    cast to int64 where the graph reads it (what an export of a wrapper taking other types gives)."""
    m = onnx.load(str(src))
    g = m.graph
    casts = []
    for inp in g.input:
        inner = f"{inp.name}_int64"
        for n in g.node:
            for k, name in enumerate(n.input):
                if name == inp.name:
                    n.input[k] = inner
        casts.append(onnx.helper.make_node("Cast", [inp.name], [inner], to=onnx.TensorProto.INT64))
        tt = inp.type.tensor_type
        tt.elem_type = ids if inp.name == "input_ids" else mask if inp.name == "attention_mask" else tt.elem_type
        for d, size in zip(tt.shape.dim, fixed):
            d.Clear()
            d.dim_value = size
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(m, str(dst))
    return dst


def test_static_int8_feeds_the_inputs_the_model_declares(classifier, tmp_path):
    """int32 ids, a bool mask, a fixed batch of 2 and length 8: the calibration batches follow them, the int8 file
    runs (gate) and its logits stay close to the fp32 file's on the same int32/bool batch (onnxruntime on both)."""
    import onnxruntime as ort

    model, folder, csv = classifier
    src = _retyped(model, tmp_path / "typed.onnx")
    out = tmp_path / "s.onnx"
    res = _run("quantize", src, "--int8", "--static", "--calib-data", csv, "--tokenizer", folder, "-o", out)
    assert res.returncode == 0, res.stderr
    assert "verified" in res.stdout
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(3, 90, (2, 8)).astype(np.int32), "attention_mask": np.ones((2, 8), bool)}
    names = [i.name for i in ort.InferenceSession(str(src)).get_inputs()]
    feeds = {k: v for k, v in feeds.items() if k in names}
    feeds.update({n: np.zeros((2, 8), np.int64) for n in names if n not in feeds})
    a = ort.InferenceSession(str(src)).run(None, feeds)[0]
    b = ort.InferenceSession(str(out)).run(None, feeds)[0]
    assert a.shape == b.shape and np.abs(a - b).max() < 0.25 * max(1.0, float(np.abs(a).max()))


def test_static_int8_refuses_a_model_without_text_inputs_in_one_line(classifier, tmp_path):
    model, folder, csv = classifier
    m = onnx.load(str(model))
    for old, new in (("input_ids", "tokens"), ("attention_mask", "msk")):
        for n in m.graph.node:
            n.input[:] = [new if i == old else i for i in n.input]
        for i in m.graph.input:
            if i.name == old:
                i.name = new
    src = tmp_path / "odd.onnx"
    onnx.save(m, str(src))
    out = tmp_path / "s.onnx"
    line = _one_error_line(_run("quantize", src, "--int8", "--static", "--calib-data", csv, "--tokenizer", folder,
                                "-o", out))
    assert "input_ids" in line and "tokens" in line and not out.exists()


def test_an_output_path_ending_in_a_slash_is_a_folder_not_a_file(tiny_onnx, tmp_path):
    out = tmp_path / "outdir"
    line = _one_error_line(_run("slice", tiny_onnx("bert", layers=2), "--width", "0.5", "-o", f"{out}/"))
    assert "directory" in line
    assert not out.exists()


def test_a_full_disk_is_one_line_naming_the_output(tiny_onnx, tmp_path, monkeypatch):
    """A stand-in for the disk: the writer raises ENOSPC as a full file system does (mounting one needs root)."""
    from click.testing import CliRunner

    from deploytool import onnx_io
    from deploytool.cli import main

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    src = tiny_onnx("bert", layers=2)  # made before the disk fills (the fixture writes through atomic_path too)
    monkeypatch.setattr(onnx_io, "atomic_path", full)
    out = tmp_path / "o.onnx"
    res = CliRunner().invoke(main, ["slice", str(src), "--width", "0.5", "-o", str(out)])
    assert res.exit_code == 2, res.output
    text = res.output + (res.stderr if hasattr(res, "stderr") and res.stderr_bytes is not None else "")
    assert "No space left on device" in text and str(out) in text and "internal error" not in text
    assert not out.exists()


def test_a_model_exported_in_training_mode_is_named_as_such(tmp_path):
    """A module left in train mode exports Dropout with training_mode true: the structured passes say so (they
    said a residual was missing, as for a pre-LayerNorm decoder)."""
    import torch

    from deploytool.testing.tiny import tiny_model

    m = tiny_model("bert", layers=2).train()

    class W(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    src = tmp_path / "train.onnx"
    axes = {0: "b", 1: "s"}
    torch.onnx.export(W(m), (torch.randint(3, 90, (2, 8)), torch.ones(2, 8, dtype=torch.long)), str(src),
                      opset_version=17, input_names=["input_ids", "attention_mask"], output_names=["y"],
                      dynamic_axes={"input_ids": axes, "attention_mask": axes}, dynamo=False,
                      training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    out = tmp_path / "s.onnx"
    line = _one_error_line(_run("slice", src, "--width", "0.5", "-o", out))
    assert "training mode" in line and "model.eval()" in line and not out.exists()


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"w": {"shape": "big"}}'])
def test_repack_names_a_damaged_packing_record(tiny_onnx, tmp_path, damage):
    """A record that is there but unreadable was reported as no record at all (and a bad entry was carried over)."""
    from deploytool.passes.pack_weights import PackConfig, pack_file

    packed = tmp_path / "p.onnx"
    pack_file(tiny_onnx("bert", layers=2), packed, PackConfig(weights="ternary"))
    m = onnx.load(str(packed))
    for p in m.metadata_props:
        if p.key == "deploytool.packing":
            p.value = damage if not damage.startswith('{"w"') else p.value[:-1] + ', "w": {"shape": "big"}}'
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    out = tmp_path / "r.onnx"
    line = _one_error_line(_run("repack", bad, "--runtime", "memory", "-o", out))
    assert "'deploytool.packing' record" in line and ("damaged" in line) and not out.exists()


def test_the_exports_opset_record_follows_an_upgrade(tiny_onnx, tmp_path):
    """pack upgrades to opset 25 for INT2 weights; `inspect` showed the export's opset=17 beside the file's 25."""
    from deploytool.passes.pack_weights import PackConfig, pack_file

    src = tiny_onnx("bert", layers=2)
    before = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    assert before.get("deploytool.opset") == "17"
    packed = tmp_path / "p.onnx"
    pack_file(src, packed, PackConfig(weights="ternary"))
    m = onnx.load(str(packed))
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    assert opset > 17 and {p.key: p.value for p in m.metadata_props}["deploytool.opset"] == str(opset)
