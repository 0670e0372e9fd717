"""deploytool pack / quantize from the command line: a good run, and bad input (exit 2, one line, no output)."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from deploytool.cli import main

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=64, seed=3)


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture()
def model(tiny_onnx, tmp_path):
    dst = tmp_path / "in.onnx"
    shutil.copy(tiny_onnx("bert", exporter="torch", **SHAPE), dst)
    return dst


@pytest.fixture(scope="module")
def no_weights(tmp_path_factory):
    """x + b -> Relu: a valid model without any MatMul/Gemm weight."""
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], np.ones(4, np.float32))
    g = helper.make_graph([helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [b])
    path = tmp_path_factory.mktemp("nw") / "add.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _run_bad(args, src, out, *must_contain):
    before = _sha(src)
    res = CliRunner().invoke(main, [*args, "-o", str(out)])
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    for s in must_contain:
        assert s in lines[0], lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))
    assert _sha(src) == before


def test_pack_cli_writes_and_reports(model, tmp_path):
    out = tmp_path / "t.onnx"
    res = CliRunner().invoke(main, ["pack", str(model), "--weights", "ternary", "--runtime", "densest",
                                    "--granularity", "row", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.exists() and "attention: 8 weights" in res.output and "deploytool qat" in res.output


def test_pack_already_packed(model, tmp_path):
    packed = tmp_path / "packed.onnx"
    assert CliRunner().invoke(main, ["pack", str(model), "--weights", "binary", "-o", str(packed)]).exit_code == 0
    _run_bad(["pack", str(packed), "--weights", "ternary"], packed, tmp_path / "o.onnx", "already packed")


def test_pack_no_weights(no_weights, tmp_path):
    _run_bad(["pack", str(no_weights), "--weights", "ternary", "--runtime", "densest"], no_weights,
             tmp_path / "o.onnx", "no MatMul/Gemm")


@pytest.mark.parametrize("args,needle", [
    (["--weights", "3bit"], "weights"),
    (["--weights", "ternary", "--embeddings", "int4"], "embeddings"),
    (["--weights", "ternary", "--runtime", "fastest"], "runtime"),
    (["--weights", "binary", "--granularity", "column"], "granularity"),
])
def test_pack_bad_options(model, tmp_path, args, needle):
    _run_bad(["pack", str(model), *args], model, tmp_path / "o.onnx", needle)


def test_pack_opset_too_old_refused(tmp_path):
    """An opset-7 model with ImageScaler (removed from ONNX; the version converter cannot lift it to
    opset 25, which INT2 needs) is refused in one line, not broken."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"]),
                           helper.make_node("ImageScaler", ["m"], ["y"], scale=1.0)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    src = tmp_path / "old.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 7)]), str(src))
    _run_bad(["pack", str(src), "--weights", "ternary", "--embeddings", "fp32"], src, tmp_path / "o.onnx",
             "cannot upgrade opset 7 to 25")


def test_pack_unknown_op_named(tmp_path):
    """An opset-17 model with an op ONNX does not define (a typo, 'Tanhh') is refused naming the node and the op;
    before, pack's upgrade to opset 25 passed on the converter's failed assertion, which names no op
    ("Assertion `schema_it != all_schemas.end()` failed: Op '%s")."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"]),
                           helper.make_node("Tanhh", ["m"], ["y"], name="act")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    src = tmp_path / "typo.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    _run_bad(["pack", str(src), "--weights", "ternary", "--embeddings", "fp32"], src, tmp_path / "o.onnx",
             "cannot upgrade opset 17 to 25", "node 'act' (Tanhh) is an operator ONNX does not define")


def test_quantize_bad_input(model, tmp_path):
    # the options, not the word 'precision:' (no such option)
    _run_bad(["quantize", str(model)], model, tmp_path / "o.onnx", "error: --int8/--fp16: give exactly one")
    _run_bad(["quantize", str(model), "--int8", "--fp16"], model, tmp_path / "o.onnx",
             "error: --int8/--fp16: give exactly one")
    _run_bad(["quantize", str(model), "--int8", "--static"], model, tmp_path / "o.onnx", "calib")
    _run_bad(["quantize", str(model), "--int8", "--fusion", "all"], model, tmp_path / "o.onnx", "fusion")
    _run_bad(["quantize", str(model), "--int8", "--engine", "onnx"], model, tmp_path / "o.onnx", "engine")
    _run_bad(["quantize", str(model), "--int8", "--engine", "native", "--fusion", "none"], model,
             tmp_path / "o.onnx", "--engine ort")
    _run_bad(["quantize", str(model), "--fp16", "--engine", "ort"], model, tmp_path / "o.onnx", "--engine")
    _run_bad(["quantize", str(model), "--int8", "--fusion", "onnx", "--engine", "ort"], model, tmp_path / "o.onnx",
             "native engine only")
    _run_bad(["quantize", str(model), "--int8", "--fusion", "onnx", "--static", "--calib-data", "x.csv"], model,
             tmp_path / "o.onnx", "dynamic int8")
    packed = tmp_path / "packed.onnx"
    assert CliRunner().invoke(main, ["pack", str(model), "--weights", "binary", "-o", str(packed)]).exit_code == 0
    _run_bad(["quantize", str(packed), "--int8"], packed, tmp_path / "o.onnx", "already")
    _run_bad(["quantize", str(packed), "--fp16"], packed, tmp_path / "o.onnx", "packed")


def test_pack_of_an_fp16_model_packs_its_weights_as_fp32(model, tmp_path):
    """An fp16 file is upcast first (exact): its packed codes are the quantizer's codes of the fp16 weights read
    as fp32, and nothing of fp16 is left in the output."""
    import onnx
    from onnx import numpy_helper

    from deploytool.quant import ternarize

    half = tmp_path / "half.onnx"
    assert CliRunner().invoke(main, ["quantize", str(model), "--fp16", "-o", str(half)]).exit_code == 0
    out = tmp_path / "p.onnx"
    r = CliRunner().invoke(main, ["pack", str(half), "--weights", "ternary", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "upcast_from_fp16" in r.output and "verified: ran in ONNX Runtime" in r.output
    # by the stem the packed tensor is named after ("onnx::MatMul_12" -> "onnx_MatMul_12_int2")
    halves = {t.name.replace("::", "_").replace("/", "_"): numpy_helper.to_array(t)
              for t in onnx.load(str(half)).graph.initializer}
    packed = onnx.load(str(out))
    assert not [t.name for t in packed.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    checked = 0
    for t in packed.graph.initializer:
        name = t.name.removesuffix("_int2")
        if t.data_type == onnx.TensorProto.INT2 and name in halves and halves[name].ndim == 2:
            w = halves[name].astype(np.float32)  # MatMul B [K, N], as fp32
            codes, _ = ternarize(w.T)
            np.testing.assert_array_equal(numpy_helper.to_array(t).astype(np.int8), codes.T)
            checked += 1
    assert checked >= 8


def test_quantize_engines(model, tmp_path):
    """The native writer is the default; --engine ort and ORT-only options go through ORT's path, without
    a skip line (what the user chose is not a skip)."""
    outs = {}
    for name, extra in [("native", []), ("ort", ["--engine", "ort"]), ("none", ["--fusion", "none"]),
                        ("onnx", ["--fusion", "onnx"])]:
        dst = tmp_path / f"{name}.onnx"
        r = CliRunner().invoke(main, ["quantize", str(model), "--int8", *extra, "-o", str(dst)])
        assert r.exit_code == 0, r.output
        assert "skipped engine" not in r.output
        ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
        outs[name] = (r.output, ops)
    assert "engine: native" in outs["native"][0] and "QAttention" in outs["native"][1]
    assert "engine: ort" in outs["ort"][0]
    assert "engine_note: fusion=none" in outs["none"][0] and "QAttention" not in outs["none"][1]
    assert "engine: native" in outs["onnx"][0] and "opset: 17 -> 23" in outs["onnx"][0]
    assert "Attention" in outs["onnx"][1] and "QAttention" not in outs["onnx"][1]
