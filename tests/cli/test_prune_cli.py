"""Bad input to slice / prune-heads / prune-ffn / reorder: exit 2, one `error:` line, no output, input untouched."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from deploytool.cli import main

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=48, seed=8)  # shared with other tests' exports


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """A small CNN (Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm): not an encoder."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], rng.normal(size=(4, 3, 3, 3)).astype(np.float32).ravel())
    fc = helper.make_tensor("fc", TensorProto.FLOAT, [2, 4], rng.normal(size=(2, 4)).astype(np.float32).ravel())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w, fc])
    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture()
def model(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", exporter="torch", **SHAPE)
    dst = tmp_path / "in.onnx"
    shutil.copy(src, dst)
    return dst


def _importance(tmp_path, heads, neurons):
    p = tmp_path / "imp.json"
    p.write_text(json.dumps({"format": "deploytool-importance/1", "heads": heads, "neurons": neurons,
                             "source": "test", "model": "tiny"}))
    return p


def _run_bad(args, src, out, *must_contain):
    before = _sha(src)
    res = CliRunner().invoke(main, [*args, "-o", str(out)])
    assert res.exit_code == 2, (res.exit_code, res.output, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output + res.stderr
    for s in must_contain:
        assert s in lines[0], lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no temp file left behind
    assert _sha(src) == before
    return lines[0]


@pytest.mark.parametrize("width,needle", [("0", "width"), ("1.5", "width"), ("nan", "width"), ("-0.5", "width")])
def test_slice_bad_width(model, tmp_path, width, needle):
    _run_bad(["slice", str(model), "--width", width], model, tmp_path / "o.onnx", needle, "width: expected a number in (0, 1], got ")


@pytest.mark.parametrize("depth", ["0", "1.01", "inf"])
def test_slice_bad_depth_range(model, tmp_path, depth):
    _run_bad(["slice", str(model), "--depth", depth], model, tmp_path / "o.onnx", "depth")


def test_slice_depth_leaving_no_layer(model, tmp_path):
    # round(0.2 * 2) = 0 layers
    _run_bad(["slice", str(model), "--depth", "0.2"], model, tmp_path / "o.onnx", "depth 0.2", "0 of 2 layers")


def test_slice_width_leaving_no_head(model, tmp_path):
    _run_bad(["slice", str(model), "--width", "0.1"], model, tmp_path / "o.onnx", "width 0.1", "0 heads")


def test_head_id_out_of_range(model, tmp_path):
    # in the option's words, as the spec's own checks are (the pass's check against the model said 'heads: ...')
    _run_bad(["prune-heads", str(model), "--heads", "0:1;1:4"], model, tmp_path / "o.onnx", "error: --heads: layer 1",
             "head id 4", "0..3")


def test_head_layer_out_of_range(model, tmp_path):
    _run_bad(["prune-heads", str(model), "--heads", "5:0"], model, tmp_path / "o.onnx", "error: --heads: layer 5", "0..1")


def test_all_heads_of_a_layer(model, tmp_path):
    _run_bad(["prune-heads", str(model), "--heads", "1:0,1,2,3"], model, tmp_path / "o.onnx", "error: --heads: layer 1",
             "all 4 heads")


@pytest.mark.parametrize("spec, words", [("0-1", []), ("a:b", []), ("", []), ("0:", ["'0:'", "no head"]),
                                         ("0:1;1: , ", ["'1: ,'", "no head of layer 1"])])
def test_bad_heads_spec(model, tmp_path, spec, words):
    _run_bad(["prune-heads", str(model), "--heads", spec], model, tmp_path / "o.onnx", "heads", *words)


@pytest.mark.parametrize("spec, words", [("0:1_0", ["'0:1_0'", "with integers"]),  # int() read it as head 10
                                         ("0:\uff11", ["with integers"]),  # a fullwidth 1, int() read it as 1
                                         ("\u0661:0", ["with integers"]),  # an Arabic-Indic 1 as the layer
                                         ("0:1,,2", ["'0:1,,2'", "empty head id"]),  # skipped: 1 and 2 removed
                                         ("0:,3", ["empty head id"])])
def test_heads_spec_ids_are_plain_integers(tiny_onnx, tmp_path, spec, words):
    """On a 12-head model each of these was a valid spec that removed heads the user did not write."""
    model = tmp_path / "in.onnx"
    shutil.copy(tiny_onnx("bert", layers=2, hidden=48, heads=12, ffn=32, seed=3), model)
    _run_bad(["prune-heads", str(model), "--heads", spec], model, tmp_path / "o.onnx", "error: --heads: ", *words)


def test_heads_spec_spacing_signs_and_trailing_separators_still_read(tiny_onnx, tmp_path):
    from deploytool.passes.prune_heads import parse_heads_spec

    assert parse_heads_spec(" 0: 1, 3 ;1:+2,;") == {0: (1, 3), 1: (2,)}


@pytest.mark.parametrize("args", [["--heads", "0:1", "--ratio", "0.5"], []])
def test_heads_and_ratio_together_or_neither(model, tmp_path, args):
    line = _run_bad(["prune-heads", str(model), *args], model, tmp_path / "o.onnx", "exactly one")
    assert line.startswith("error: --heads/--ratio: "), line  # the options typed, not the config's fields


@pytest.mark.parametrize("ratio", ["1", "-0.1", "nan"])
def test_bad_ratio(model, tmp_path, ratio):
    _run_bad(["prune-heads", str(model), "--ratio", ratio], model, tmp_path / "o.onnx", "ratio")


def test_importance_wrong_head_shape(model, tmp_path):
    imp = _importance(tmp_path, [[1.0] * 4, [1.0] * 3], [[1.0] * 48] * 2)
    _run_bad(["prune-heads", str(model), "--ratio", "0.5", "--importance", str(imp)], model, tmp_path / "o.onnx",
             "layer 1", "3 head scores", "expected 4")


def test_importance_wrong_layer_count(model, tmp_path):
    imp = _importance(tmp_path, [[1.0] * 4] * 3, [[1.0] * 48] * 3)
    _run_bad(["reorder", str(model), "--importance", str(imp)], model, tmp_path / "o.onnx", "3 layers",
             "2 layers")


def test_importance_wrong_neuron_shape(model, tmp_path):
    imp = _importance(tmp_path, [[1.0] * 4] * 2, [[1.0] * 48, [1.0] * 47])
    _run_bad(["prune-ffn", str(model), "--keep", "0.5", "--importance", str(imp)], model, tmp_path / "o.onnx",
             "layer 1", "47 neuron scores", "expected 48")


def test_importance_not_json(model, tmp_path):
    p = tmp_path / "imp.json"
    p.write_text("{not json")
    _run_bad(["reorder", str(model), "--importance", str(p)], model, tmp_path / "o.onnx", "imp.json")


def test_ffn_bad_keep_and_ids(model, tmp_path):
    _run_bad(["prune-ffn", str(model), "--keep", "0"], model, tmp_path / "o.onnx", "keep")
    p = tmp_path / "n.json"
    p.write_text(json.dumps({"0": [48]}))
    _run_bad(["prune-ffn", str(model), "--neurons", str(p)], model, tmp_path / "o.onnx", "error: --neurons: layer 0",
             "48", "0..47")
    p.write_text(json.dumps({"1": list(range(48))}))
    _run_bad(["prune-ffn", str(model), "--neurons", str(p)], model, tmp_path / "o.onnx", "error: --neurons: layer 1",
             "all 48")


def test_ffn_keep_rounding_to_no_neuron_says_one_is_kept(model, tmp_path):
    """48 neurons a layer: keep 0.01 asks floor(0.48 + 0.5) = 0 of them; each layer keeps one and says so, as
    prune-heads --ratio says it keeps one head (it said nothing: 'neurons 96 -> 2' alone)."""
    res = CliRunner().invoke(main, ["prune-ffn", str(model), "--keep", "0.01", "-o", str(tmp_path / "o.onnx")])
    assert res.exit_code == 0, res.output
    assert "neurons 96 -> 2  per layer [1, 1]" in res.output
    notes = [ln for ln in res.output.splitlines() if ln.startswith("note: ")]
    assert notes == ["note: keep 0.01 rounds to no FFN neuron of layer(s) 0, 1: each FFN there keeps its most "
                     "important neuron"], res.output
    res = CliRunner().invoke(main, ["prune-ffn", str(model), "--keep", "0.02", "-o", str(tmp_path / "p.onnx")])
    assert res.exit_code == 0 and "per layer [1, 1]" in res.output and "note:" not in res.output  # 0.96 -> 1


@pytest.mark.parametrize("cmd", [["slice", "--width", "0.5"], ["prune-heads", "--heads", "0:1"],
                                 ["prune-ffn", "--keep", "0.5"], ["reorder"]])
def test_not_an_encoder(cnn, tmp_path, cmd):
    line = _run_bad([cmd[0], str(cnn), *cmd[1:]], cnn, tmp_path / "o.onnx")
    assert "encoder" in line.lower() or "attention" in line.lower() or "layer" in line.lower(), line


def test_missing_input(tmp_path):
    res = CliRunner().invoke(main, ["slice", str(tmp_path / "nope.onnx"), "--width", "0.5", "-o",
                                    str(tmp_path / "o.onnx")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "no such file" in res.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_output_over_input_refused(model):
    res = CliRunner().invoke(main, ["slice", str(model), "--width", "0.5", "-o", str(model)])
    assert res.exit_code == 2 and "overwrite" in res.stderr


def test_commands_succeed(model, tmp_path):
    """The happy path of each command: exit 0, output written, counts printed, input untouched."""
    before = _sha(model)
    runs = [
        (["prune-heads", str(model), "--heads", "0:1,3;1:0"], "heads   8 -> 5"),
        (["prune-heads", str(model), "--ratio", "0.25"], "weight-magnitude (data-free)"),
        (["prune-ffn", str(model), "--keep", "0.5"], "neurons 96 -> 48"),
        (["reorder", str(model)], "heads   8 -> 8"),
    ]
    for i, (args, needle) in enumerate(runs):
        out = tmp_path / f"ok{i}.onnx"
        res = CliRunner().invoke(main, [*args, "-o", str(out)])
        assert res.exit_code == 0, res.output + res.stderr
        assert out.exists() and needle in res.output, res.output
    assert _sha(model) == before


def test_quantized_model_refused(model, tmp_path):
    """An int8 model's projections carry per-channel scales the surgery does not rewrite: refuse."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q = tmp_path / "q.onnx"
    quantize_dynamic(str(model), str(q), weight_type=QuantType.QInt8, per_channel=True)
    line = _run_bad(["slice", str(q), "--width", "0.5"], q, tmp_path / "o.onnx")
    assert "quantiz" in line or "encoder" in line.lower(), line
