"""The verification gate of ``base.run_pass_file``: no pass writes a model ONNX Runtime cannot run.

Broken passes here write models that ``onnx.checker`` accepts (checked), so only the ORT gate can
catch them: refused with one line naming the pass and the node, nothing at the destination, no
temporary or external-data file left. ``verify=False`` / ``--no-verify`` writes them and says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from click.testing import CliRunner

from deploytool import onnx_io
from deploytool.cli import main
from deploytool.cli._verify import NO_VERIFY_NOTE
from deploytool.errors import DeployError, VerificationError
from deploytool.passes import transform
from deploytool.passes.base import DeployPass, DeployPassResult, run_pass_file
from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file
from deploytool.passes.reorder import ReorderConfig, ReorderPass, reorder_file
from deploytool.runtime.infer import run_onnx
from deploytool.testing.procs import alive, default_signals
from deploytool.testing.tiny import fixed_inputs

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=48, seed=8)  # shared with other tests' exports


@pytest.fixture(scope="module")
def src(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


# ------------------------------------------------------------------------------ broken passes


def _first(model: ir.Model, op: str) -> ir.Node:
    return next(n for n in model.graph if n.op_type == op)


class BadReshapePass(DeployPass):
    """Layer 0's first head-split Reshape gets head size 7 instead of 8: the shape [B, -1, 4, 7] does
    not divide [B, S, 32], which only shows at run time (the batch and sequence are symbolic)."""

    node_name = ""

    def call(self, model: ir.Model) -> DeployPassResult:
        reshape = _first(model, "Reshape")
        concat = reshape.inputs[1].producer()
        const = concat.inputs[3].producer()  # the torch export's Constant [8]
        assert const.op_type == "Constant" and const.attributes["value"].as_tensor().numpy().tolist() == [8]
        const.attributes["value"] = ir.AttrTensor("value", ir.tensor(np.array([7], dtype=np.int64)))
        type(self).node_name = reshape.name
        return DeployPassResult(model, modified=True)


class BadWeightPass(DeployPass):
    """The first MatMul weight loses 8 of its 32 output columns: its bias Add cannot broadcast (ORT
    finds it when it loads the model and infers shapes)."""

    def call(self, model: ir.Model) -> DeployPassResult:
        mm = next(n for n in model.graph if n.op_type == "MatMul" and n.inputs[1].const_value is not None)
        w = mm.inputs[1]
        w.const_value = ir.tensor(w.const_value.numpy()[:, :24].copy(), name=w.name)
        w.shape = ir.Shape(w.const_value.shape)
        return DeployPassResult(model, modified=True)


class NanBiasPass(DeployPass):
    """One bias becomes NaN: the model runs, its output is not finite."""

    def call(self, model: ir.Model) -> DeployPassResult:
        add = next(n for n in model.graph if n.op_type == "Add" and any(
            v.const_value is not None and v.const_value.numpy().ndim == 1 for v in n.inputs))
        b = next(v for v in add.inputs if v.const_value is not None)
        b.const_value = ir.tensor(np.full(b.const_value.shape.numpy(), np.nan, np.float32), name=b.name)
        return DeployPassResult(model, modified=True)


def _v_only_permutation(model: ir.Model, structure) -> None:
    """Reverse the head order of layer 0's V projection only (Q, K and O keep theirs): still a valid,
    runnable model, but no longer the same function. (Q alone would do too, but the tiny random
    model's attention scores are ~0, so its softmax barely notices.)"""
    q = structure.layers[0].attention.v
    d = structure.layers[0].attention.head_size
    h = structure.layers[0].attention.num_heads
    idx = np.concatenate([np.arange(k * d, (k + 1) * d) for k in reversed(range(h))])
    w = q.weight.const_value.numpy()
    q.weight.const_value = ir.tensor((w[:, idx] if q.layout == "in_out" else w[idx, :]).copy(), name=q.weight.name)
    if q.bias is not None:
        q.bias.const_value = ir.tensor(q.bias.const_value.numpy()[idx].copy(), name=q.bias.name)


def _bad_reorder_edit(self, model, structure):
    done = ReorderPass_edit(self, model, structure)
    _v_only_permutation(model, structure)
    done.changed = True
    return done


ReorderPass_edit = ReorderPass.edit


class BadReorderPass(ReorderPass):
    edit = _bad_reorder_edit


def _checker_accepts(src, pass_) -> None:
    """The broken model passes onnx.checker (what run_pass_file ran before the gate existed)."""
    model = onnx_io.load_model(src)
    onnx.checker.check_model(ir.serde.serialize_model(pass_(model).model), full_check=False)


def _assert_nothing_written(dst) -> None:
    assert not dst.exists()
    assert not (dst.parent / (dst.name + ".data")).exists()
    assert not list(dst.parent.glob(f".{dst.name}*")), list(dst.parent.iterdir())  # no temp file


# ------------------------------------------------------------------------------ (a) refused


def test_run_time_failure_is_refused_naming_pass_and_node(src, tmp_path):
    _checker_accepts(src, BadReshapePass())
    dst = tmp_path / "bad.onnx"
    with pytest.raises(VerificationError) as e:
        run_pass_file(BadReshapePass(), src, dst)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("BadReshapePass wrote a model ONNX Runtime cannot run: node "
                          f"'{BadReshapePass.node_name}' (Reshape): ")
    assert "cannot be reshaped" in msg and msg.endswith("; nothing written")
    assert "/onnxruntime_src" not in msg and "::" not in msg  # ORT's source location and C++ signature cut
    assert e.value.node == BadReshapePass.node_name and e.value.op == "Reshape"
    assert isinstance(e.value, DeployError)
    _assert_nothing_written(dst)


def test_load_time_failure_is_refused_naming_the_node(src, tmp_path):
    _checker_accepts(src, BadWeightPass())
    dst = tmp_path / "bad.onnx"
    with pytest.raises(VerificationError, match=r"^BadWeightPass wrote a model ONNX Runtime cannot load: node '[^']+"
                                                r"/query/Add' \(Add\): .*Incompatible dimensions; nothing written$"):
        run_pass_file(BadWeightPass(), src, dst)
    _assert_nothing_written(dst)


def test_non_finite_output_is_refused(src, tmp_path):
    dst = tmp_path / "nan.onnx"
    with pytest.raises(VerificationError, match=r"NanBiasPass wrote a model whose output '\w+' is not finite "
                                                r"\(\d+ NaN, 0 inf of \d+ values on a padded batch 2x8\)"):
        run_pass_file(NanBiasPass(), src, dst)
    _assert_nothing_written(dst)


def test_refusal_leaves_an_existing_output_alone(src, tmp_path):
    dst = tmp_path / "out.onnx"
    dst.write_bytes(b"previous")
    with pytest.raises(VerificationError):
        run_pass_file(BadReshapePass(), src, dst)
    assert dst.read_bytes() == b"previous"
    assert not list(tmp_path.glob(".out.onnx*"))


# ------------------------------------------------------------------------------ (b) identities


def test_preserves_outputs_is_declared():
    assert NanBiasPass().preserves_outputs() is False  # the default of DeployPass
    assert ReorderPass(ReorderConfig()).preserves_outputs() is True


def test_reorder_that_changes_outputs_is_refused(src, tmp_path):
    dst = tmp_path / "r.onnx"
    expected = (r"^reorder wrote a model whose output '\w+' differs from the input model's by [\d.e+-]+ "
                r"\(allowed [\d.e+-]+\), though the pass must preserve outputs; nothing written$")
    with pytest.raises(VerificationError, match=expected):
        run_pass_file(BadReorderPass(ReorderConfig()), src, dst)
    _assert_nothing_written(dst)
    # the same model without the gate runs fine: only the comparison with the input catches it
    res = run_pass_file(BadReorderPass(ReorderConfig()), src, dst, verify=False)
    feeds = fixed_inputs()
    a, b = run_onnx(dst, feeds), run_onnx(src, feeds)
    assert all(np.isfinite(v).all() for v in a.values())
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) > 1e-3
    assert res.gate.verified is False


def test_real_reorder_passes_the_comparison(src, tmp_path):
    res = reorder_file(src, tmp_path / "r.onnx", ReorderConfig())
    assert res.modified and res.gate.verified is True and res.gate.seconds > 0
    # reordering an already sorted model changes nothing: a byte copy, nothing of the pass's to run
    again = reorder_file(tmp_path / "r.onnx", tmp_path / "r2.onnx", ReorderConfig())
    assert not again.modified and (tmp_path / "r2.onnx").read_bytes() == (tmp_path / "r.onnx").read_bytes()
    assert again.gate.verified is True and again.gate.note == "the output is a byte copy of the input"


def test_other_passes_record_the_gate(src, tmp_path):
    res = prune_heads_file(src, tmp_path / "h.onnx", HeadPruneConfig(heads={0: [1]}))
    assert res.gate.verified is True and isinstance(res.gate.seconds, float)
    res = prune_heads_file(src, tmp_path / "h2.onnx", HeadPruneConfig(heads={0: [1]}), verify=False)
    assert res.gate.verified is False and res.gate.seconds == 0.0


# ------------------------------------------------------------------------------ (c) verify=False


def test_verify_false_writes_the_broken_model(src, tmp_path):
    dst = tmp_path / "bad.onnx"
    res = run_pass_file(BadReshapePass(), src, dst, verify=False)
    assert dst.exists() and res.gate.verified is False and res.gate.seconds == 0.0
    with pytest.raises(DeployError, match="Reshape"):
        run_onnx(dst, fixed_inputs())


def test_transform_forwards_verify(src, tmp_path):
    from deploytool.passes.slice_subnetwork import SliceConfig

    res = transform(src, tmp_path / "t.onnx", ReorderConfig(), verify=False)
    assert res.gate.verified is False
    res = transform(src, tmp_path / "t2.onnx", ReorderConfig())
    assert res.gate.verified is True
    res = transform(src, tmp_path / "s.onnx", SliceConfig(width=0.5), verify=False)
    assert res.gate.verified is False


# ------------------------------------------------------------------------------ external data


def test_external_data_output_is_verified_before_it_is_done(src, tmp_path, monkeypatch):
    # force the big-model branch: weights "over" the limit and saved with an external-data file
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 0)
    monkeypatch.setattr(onnx_io, "_is_serializable_size", lambda model: False)
    dst = tmp_path / "big.onnx"
    with pytest.raises(VerificationError, match="BadReshapePass wrote a model ONNX Runtime cannot run"):
        run_pass_file(BadReshapePass(), src, dst)
    _assert_nothing_written(dst)
    res = reorder_file(src, dst, ReorderConfig())
    assert res.gate.verified is True
    assert (tmp_path / "big.onnx.data").exists() and not list(tmp_path.glob(".big.onnx*"))
    assert res.bytes_after > dst.stat().st_size  # the data file is counted
    run_onnx(dst, fixed_inputs())


# ------------------------------------------------------------------------------ ORT's messages


def test_short_reason_cuts_source_location_and_signature():
    from deploytool.runtime.verify import _ort_failure

    run = RuntimeError(
        "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while running Add node. "
        "Name:'/encoder/layer.0/attention/attn/Add' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/"
        "math/element_wise_ops.h:560 void onnxruntime::BroadcastIterator::Append(ptrdiff_t, ptrdiff_t) axis == 1 "
        "|| axis == largest was false. Attempting to broadcast an axis by a dimension other than 1. 4 by 2\n")
    e = _ort_failure("run", run)
    assert str(e) == ("ONNX Runtime cannot run: node '/encoder/layer.0/attention/attn/Add' (Add): Attempting to "
                      "broadcast an axis by a dimension other than 1. 4 by 2")
    assert (e.node, e.op) == ("/encoder/layer.0/attention/attn/Add", "Add")
    load = RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Node (/m/query/Add) Op (Add) [ShapeInferenceError] "
                        "Incompatible dimensions")
    assert str(_ort_failure("load", load)) == ("ONNX Runtime cannot load: node '/m/query/Add' (Add): "
                                               "[ShapeInferenceError] Incompatible dimensions")
    other = RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH : This is an invalid model. In Node, something")
    assert str(_ort_failure("load", other)) == "ONNX Runtime cannot load: This is an invalid model. In Node, something"
    helper = RuntimeError("/onnxruntime_src/onnxruntime/core/providers/cpu/math/matmul_helper.h:142 onnxruntime::"
                          "common::Status onnxruntime::MatMulComputeHelper::Compute(const onnxruntime::TensorShape&, "
                          "bool) left operand cannot broadcast on dim 0")
    assert str(_ort_failure("run", helper)) == "ONNX Runtime cannot run: left operand cannot broadcast on dim 0"
    nested = RuntimeError(  # ORT 1.32 on its own level-1 ALBERT static file: the inner status says why
        "[ONNXRuntimeError] : 1 : FAIL : Exception during initialization: /onnxruntime_src/onnxruntime/core/graph/"
        "graph_utils.cc:479 onnxruntime::NodeArg& onnxruntime::graph_utils::AddInitializerWithOrtValue(onnxruntime::"
        "Graph&, const onnx::TensorProto&, onnxruntime::Tensor&&) [ONNXRuntimeError] : 1 : FAIL : graph.cc:4164 "
        "AddInitializedOrtValue Attempt to replace the existing tensor")
    assert str(_ort_failure("load", nested)) == "ONNX Runtime cannot load: Attempt to replace the existing tensor"


def test_gate_feeds_pad_the_second_row():
    from deploytool.bench.inputs import InputPlan, InputSpec
    from deploytool.runtime.verify import gate_feeds

    plan = InputPlan(inputs=(InputSpec("input_ids", "int64", ("batch", "seq"), "ids", high=50),
                             InputSpec("attention_mask", "int64", ("batch", "seq"), "ones"),
                             InputSpec("token_type_ids", "int64", ("batch", "seq"), "zeros")),
                     vocab=50, vocab_source="w")
    f = gate_feeds(plan)
    assert f["input_ids"].shape == (2, 8) and f["input_ids"].max() < 50
    assert f["attention_mask"].tolist() == [[1] * 8, [1] * 5 + [0] * 3]
    assert f["input_ids"][1, 5:].tolist() == [0, 0, 0] and not f["token_type_ids"].any()
    fixed = InputPlan(inputs=(InputSpec("input_ids", "int64", (1, 16), "ids", high=50),), vocab=50, vocab_source="w")
    assert gate_feeds(fixed)["input_ids"].shape == (1, 16)  # a fixed batch/sequence wins


# ------------------------------------------------------------------------------ (d) the CLI


def test_cli_no_verify_prints_the_note(src, tmp_path):
    r = CliRunner().invoke(main, ["reorder", str(src), "-o", str(tmp_path / "r.onnx"), "--no-verify"])
    assert r.exit_code == 0, r.output
    assert NO_VERIFY_NOTE in r.output.splitlines()
    r = CliRunner().invoke(main, ["reorder", str(src), "-o", str(tmp_path / "r2.onnx")])
    assert r.exit_code == 0, r.output
    assert NO_VERIFY_NOTE not in r.output and "verified: ran in ONNX Runtime" in r.output
    for args in (["slice", "--width", "0.5"], ["prune-heads", "--heads", "0:1"], ["quantize", "--int8"],
                 ["pack", "--weights", "ternary"]):
        out = tmp_path / f"{args[0]}.onnx"
        r = CliRunner().invoke(main, [args[0], str(src), *args[1:], "-o", str(out), "--no-verify"])
        assert r.exit_code == 0 and out.exists(), (args, r.output)
        assert NO_VERIFY_NOTE in r.output.splitlines(), args


def test_cli_help_says_what_no_verify_skips():
    for cmd in ("reorder", "prune-heads", "prune-ffn", "slice", "quantize", "pack"):
        r = CliRunner().invoke(main, [cmd, "--help"])
        assert "--no-verify" in r.output and "not run in ONNX" in " ".join(r.output.split()), cmd


def test_cli_failing_gate_is_exit_2_one_error_line(src, tmp_path, monkeypatch):
    monkeypatch.setattr(ReorderPass, "edit", _bad_reorder_edit)
    out = tmp_path / "r.onnx"
    r = CliRunner().invoke(main, ["reorder", str(src), "-o", str(out)])
    assert r.exit_code == 2, (r.output, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: reorder wrote a model whose output"), r.stderr
    assert lines[0].endswith("; nothing written") and "Traceback" not in r.output
    _assert_nothing_written(out)
    # --no-verify writes it, and says it was not run
    r = CliRunner().invoke(main, ["reorder", str(src), "-o", str(out), "--no-verify"])
    assert r.exit_code == 0 and out.exists() and NO_VERIFY_NOTE in r.output


def test_verify_file_runs_and_compares(src, tmp_path):
    from deploytool.runtime.verify import verify_file

    rep = verify_file(src, reference=src)
    assert rep.max_diff == 0.0 and rep.feeds["input_ids"] == (2, 8) and rep.seconds > 0
    run_pass_file(BadReshapePass(), src, tmp_path / "bad.onnx", verify=False)
    with pytest.raises(VerificationError, match=r"bad\.onnx: a model ONNX Runtime cannot run: node '[^']+' \(Reshape\)"):
        verify_file(tmp_path / "bad.onnx")


# ------------------------------------------------------------------------------ lossy passes


class _ScaleLastNorm(DeployPass):
    """Multiplies the last LayerNorm's scale (and bias) by ``factor``: a lossy pass that promises its
    outputs stay within int8-like distance of the input's (``min_output_cosine``)."""

    factor = -1.0

    def min_output_cosine(self) -> float | None:
        return 0.9

    def call(self, model: ir.Model) -> DeployPassResult:
        ln = [n for n in model.graph if n.op_type == "LayerNormalization"][-1]
        for v in ln.inputs[1:]:
            v.const_value = ir.tensor((v.const_value.numpy() * self.factor).astype(np.float32), name=v.name)
        return DeployPassResult(model, modified=True)


def test_lossy_pass_that_breaks_outputs_is_refused(src, tmp_path):
    # e.g. ORT's QEmbedLayerNormalization silently dropping position_ids gave MPNet cosine 0.64
    dst = tmp_path / "neg.onnx"
    with pytest.raises(VerificationError, match=r"_ScaleLastNorm wrote a model whose output .* cosine -1"):
        run_pass_file(_ScaleLastNorm(), src, dst)
    assert not dst.exists()


def test_lossy_pass_within_its_bound_is_written(src, tmp_path):
    class Slight(_ScaleLastNorm):
        factor = 1.01

    dst = tmp_path / "ok.onnx"
    r = run_pass_file(Slight(), src, dst)
    assert dst.exists() and r.gate.verified is True


# ------------------------------------------------------------------------------ pack vs fake-quantized weights


@pytest.mark.parametrize("runtime,accuracy_level", [("memory", 0), ("memory", 4), ("speed", 4)])
def test_pack_is_compared_with_the_fake_quantized_model(src, tmp_path, runtime, accuracy_level):
    from deploytool.passes.pack_weights import PackConfig

    cfg = PackConfig(weights="ternary", runtime=runtime, accuracy_level=accuracy_level)
    r = transform(src, tmp_path / "t.onnx", cfg)
    assert r.gate.verified is True


def test_pack_with_wrong_codes_is_refused(src, tmp_path, monkeypatch):
    # a packer bug (codes negated) still runs, and only the comparison with the fake-quantized fp32
    # model (exact with fp32 activations) can see it
    from deploytool.passes import pack_weights
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.quant import packing

    real = packing.pack_2bit
    monkeypatch.setattr(pack_weights.packing, "pack_2bit", lambda t: real(-np.asarray(t)))
    dst = tmp_path / "bad.onnx"
    with pytest.raises(VerificationError, match=r"pack wrote a model whose output .* differs from the "
                                                r"fake-quantized fp32 model's by"):
        transform(src, dst, PackConfig(weights="ternary", runtime="memory", accuracy_level=0))
    _assert_nothing_written(dst)


def test_lossy_gate_judges_classifier_logits_by_their_probabilities():
    """Small-logit classifier outputs a lossy pass moved a little pass (probabilities within 0.15); a flipped
    or wild output fails; a wide hidden-state output gets no such leeway."""
    from deploytool.runtime.verify import _probs_close

    ref = np.array([[0.176, -0.204], [0.178, -0.213]])
    moved = np.array([[0.372, -0.449], [0.130, -0.155]])  # cosine 0.89, |diff| 0.25: what int8 did
    assert _probs_close(moved, ref)
    assert not _probs_close(-ref * 5, ref)  # the opposite class, confidently
    assert not _probs_close(ref + np.array([[2.0, -2.0], [0.0, 0.0]]), ref)
    hidden = np.zeros((2, 4, 384))
    assert not _probs_close(hidden + 0.01, hidden)  # not logits: 384 "classes"


# ------------------------------------------------------------------------------ an input ORT's optimizer refuses


def _optimizer_refuses(path) -> None:
    """A file ONNX Runtime loads only with its graph optimizations off: a static [2, 3, 4] MatMul + Add, which
    MatMulAddFusion rewrites with a new initializer named ``gemm_input_shape``, beside an initializer of the
    file's own of that name ("Attempt to replace the existing tensor", as ORT's own level-1 ALBERT static file)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B"),
             numpy_helper.from_array(np.array([2, 12], np.int64), "gemm_input_shape")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "B"], ["y"]),
             helper.make_node("Reshape", ["x", "gemm_input_shape"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 12])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, path)


class RenameShapePass(DeployPass):
    """Renames the colliding initializer: the output loads with ORT's optimizations, the function is the same."""

    def preserves_outputs(self) -> bool:
        return True

    def call(self, model: ir.Model) -> DeployPassResult:
        model.graph.initializers["gemm_input_shape"].name = "shape_of_z"
        return DeployPassResult(model, modified=True)


def test_an_input_that_loads_only_unoptimized_is_compared_and_the_user_told(tmp_path):
    import onnxruntime as ort

    from deploytool.cli._verify import gate_line
    from deploytool.runtime.verify import verify_model_isolated

    src, dst = tmp_path / "in.onnx", tmp_path / "out.onnx"
    _optimizer_refuses(src)
    with pytest.raises(Exception, match="Attempt to replace the existing tensor"):  # the premise, by ORT itself
        ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    res = run_pass_file(RenameShapePass(), src, dst)
    ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])  # the output loads as users load it
    note = res.gate.input_note
    assert res.gate.verified and note is not None and res.gate.process is None
    assert note.startswith("the input does not load in ONNX Runtime with its default graph optimizations")
    assert "replace the existing tensor" in note and res.to_dict()["gate_input_note"] == note
    assert gate_line(res.gate).splitlines()[1] == f"  note: {note}"
    # the gate's own process (big inputs) says the same
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)}
    report = verify_model_isolated(dst, feeds, reference=src)
    assert report.reference_note == note and report.max_diff == 0.0
    # an input that loads as it is gets no note
    assert verify_model_isolated(dst, feeds, reference=dst).reference_note is None


def _input_ort_rejects(src, path) -> None:
    """``src`` with one more output, ``input_ids + 1.5``: an Add of int64 and float, which onnx.checker (without
    its full check) accepts and ONNX Runtime refuses to load (what torch's opset-11 export of MPNet or DeBERTa
    writes in its relative-position bias)."""
    proto = onnx.load(src)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.5, np.float32), "bad_c"))
    proto.graph.node.append(onnx.helper.make_node("Add", ["input_ids", "bad_c"], ["bad"], name="bad_add"))
    proto.graph.output.append(onnx.helper.make_tensor_value_info("bad", onnx.TensorProto.FLOAT, ["batch", "seq"]))
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


@pytest.mark.parametrize("command", [["slice", "--width", "0.5"], ["quantize", "--int8"],
                                     ["pack", "--weights", "ternary"]])
def test_an_input_onnx_runtime_cannot_load_is_named_as_the_fault(src, tmp_path, command):
    """An output that does not load because its input does not either is the input's fault, said in one line:
    before, the pass was named as having written a model ONNX Runtime cannot load."""
    bad = tmp_path / "bad.onnx"
    _input_ort_rejects(src, bad)
    with pytest.raises(Exception, match="Type"):
        run_onnx(bad, fixed_inputs())
    dst = tmp_path / "out.onnx"
    r = CliRunner().invoke(main, [command[0], str(bad), *command[1:], "-o", str(dst)])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "the input itself does not load in ONNX Runtime" in lines[0], r.stderr
    assert str(bad) in lines[0] and "Traceback" not in r.output
    assert not dst.exists() and not list(tmp_path.glob("*.tmp*"))


def _input_runs_on_one_row_only(src, path) -> None:
    """``src`` with one more output, ``Reshape(input_ids, [1, -1]) + input_ids``: equal to ``2 * input_ids`` on
    a batch of one, a broadcast error on two rows (what torch's opset-23 export of ModernBERT does in ONNX's
    RotaryEmbedding: cos/sin caches kept with a batch of one)."""
    proto = onnx.load(src)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "one_row_shape"))
    proto.graph.node.extend([
        onnx.helper.make_node("Reshape", ["input_ids", "one_row_shape"], ["ids_one_row"], name="one_row_view"),
        onnx.helper.make_node("Add", ["ids_one_row", "input_ids"], ["one_row"], name="one_row_add")])
    proto.graph.output.append(onnx.helper.make_tensor_value_info("one_row", onnx.TensorProto.INT64, [1, "seq"]))
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


@pytest.mark.parametrize("big", [False, True], ids=["in-process", "gate-process"])
@pytest.mark.parametrize("command", [["slice", "--width", "0.5"], ["quantize", "--int8"],
                                     ["pack", "--weights", "ternary"], ["reorder"]])
def test_an_input_that_runs_on_one_row_only_is_checked_on_one_row(src, tmp_path, command, big, monkeypatch):
    """An input ONNX Runtime runs on a batch of one only (the gate's batch has two rows): the output is checked
    on one row, against the same reference, written, and the user told why in one note. Before, the pass refused
    it as the input's fault. ``big``: the gate in its own process with the early reference (made for two rows,
    so not reused)."""
    from deploytool.passes import base

    if big:
        monkeypatch.setattr(base, "BIG_MODEL_BYTES", 0)
    inp = tmp_path / "one_row.onnx"
    _input_runs_on_one_row_only(src, inp)
    with pytest.raises(Exception, match="one_row_add"):
        run_onnx(inp, fixed_inputs())  # two rows
    dst = tmp_path / "out.onnx"
    before = inp.read_bytes()
    r = CliRunner().invoke(main, [command[0], str(inp), *command[1:], "-o", str(dst)])
    assert r.exit_code == 0, r.output
    assert "note: checked on a batch of one: the input itself does not run in ONNX Runtime on a batch of 2" in r.output
    assert "one_row_add" in r.output and "(Add)" in r.output  # ORT's reason names the input's node
    assert inp.read_bytes() == before
    one = {k: v[:1] for k, v in fixed_inputs().items()}
    got, want = run_onnx(dst, one), run_onnx(inp, one)
    assert np.array_equal(got["one_row"], 2 * one["input_ids"])
    if command[0] == "reorder":  # outputs unchanged by design
        np.testing.assert_allclose(got["last_hidden_state"], want["last_hidden_state"], atol=1e-5)


def test_verify_file_checks_a_model_that_runs_on_one_row_only_on_one_row(src, tmp_path):
    """The library's file check falls back to one row like the pass runner's gate, and says so."""
    from deploytool.runtime.verify import verify_file

    inp = tmp_path / "one_row.onnx"
    _input_runs_on_one_row_only(src, inp)
    rep = verify_file(inp, reference=inp)
    assert rep.feeds["input_ids"][0] == 1 and rep.max_diff == 0.0
    assert rep.reference_note.startswith("checked on a batch of one: it does not run in ONNX Runtime on a batch of 2")
    assert "one_row_add" in rep.reference_note


def test_one_row_input_whose_output_fails_on_one_row_is_the_pass_fault(src, tmp_path):
    """The input runs on one row and the pass's output does not: the pass is named (not the input)."""
    inp = tmp_path / "one_row.onnx"
    _input_runs_on_one_row_only(src, inp)
    dst = tmp_path / "bad.onnx"
    with pytest.raises(VerificationError) as e:
        run_pass_file(BadReshapePass(), inp, dst)
    msg = str(e.value)
    assert msg.startswith("BadReshapePass wrote a model ONNX Runtime cannot run: node ") and "(Reshape)" in msg, msg
    assert e.value.failure == "run"
    _assert_nothing_written(dst)


def test_an_input_that_runs_on_no_batch_is_named_as_the_fault(src, tmp_path):
    """An input ONNX Runtime runs neither on the gate's batch nor on one row: the input's fault, one line,
    exit 2, nothing written (torch's opset-23 export of ESM: a [B, 1, 1, S] mask ORT's Attention rejects)."""
    proto = onnx.load(src)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1, 3], np.int64), "three_cols"))
    proto.graph.node.append(onnx.helper.make_node("Reshape", ["input_ids", "three_cols"], ["bad"], name="bad_view"))
    proto.graph.output.append(onnx.helper.make_tensor_value_info("bad", onnx.TensorProto.INT64, None))
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, bad)
    dst = tmp_path / "out.onnx"
    r = CliRunner().invoke(main, ["slice", str(bad), "--width", "0.5", "-o", str(dst)])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "the input itself does not run in ONNX Runtime on the gate's batch" in lines[0], r.stderr
    assert "bad_view" in lines[0]
    _assert_nothing_written(dst)


def test_verification_errors_say_what_failed(src, tmp_path):
    """The gate's errors carry what failed (load, run, the reference's load or run; None for a comparison),
    across the gate's process too: the runner dispatches on it, not on the message's words."""
    from deploytool.runtime.verify import verify_model, verify_model_isolated

    bad = tmp_path / "bad.onnx"
    _input_runs_on_one_row_only(src, bad)
    feeds = fixed_inputs()
    for check in (verify_model, verify_model_isolated):
        with pytest.raises(VerificationError) as e:
            check(bad, feeds)
        assert e.value.failure == "run", check
        with pytest.raises(VerificationError) as e:
            check(src, feeds, reference=bad)
        assert e.value.failure == "reference run", check
    with pytest.raises(ValueError, match="unknown failure"):
        VerificationError("x", failure="compare")


def test_the_guarded_gate_turns_a_crash_into_a_refusal(tmp_path, monkeypatch):
    """verify_model_guarded: the checks run in a forked copy of the process; one that dies of a signal (here the
    copy kills itself where ONNX Runtime would crash) is a VerificationError naming it ("crash"), and the caller
    goes on; a refusal in the copy comes back as the same VerificationError (node, op, failure); a report comes
    back whole."""
    import os
    import signal

    from onnx import TensorProto, helper, numpy_helper

    import deploytool.runtime.verify as V

    rng = np.random.default_rng(0)
    path = tmp_path / "mm.onnx"
    w = rng.standard_normal((4, 3)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    feeds = {"x": rng.standard_normal((2, 4)).astype(np.float32)}
    report = V.verify_model_guarded(path, feeds, reference=path)
    assert report.outputs == ("y",) and report.max_diff == 0.0
    parent = os.getpid()
    monkeypatch.setattr(V, "verify_model", lambda *a, **k: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(VerificationError, match=r"could not check: ONNX Runtime crashed \(segmentation fault\), "
                                                r"SIGSEGV") as e:
        V.verify_model_guarded(path, feeds)
    assert e.value.failure == "crash" and os.getpid() == parent

    def refuse(*a, **k):
        raise VerificationError("whose output 'y' is not finite", node="mm", op="MatMul", failure="run")

    monkeypatch.setattr(V, "verify_model", refuse)
    with pytest.raises(VerificationError, match="^whose output 'y' is not finite$") as e:
        V.verify_model_guarded(path, feeds)
    assert (e.value.node, e.value.op, e.value.failure) == ("mm", "MatMul", "run")
    monkeypatch.setattr(V, "verify_model", lambda *a, **k: __import__("time").sleep(30))
    with pytest.raises(VerificationError, match=r"no answer within 0.5 s"):
        V.verify_model_guarded(path, feeds, timeout=0.5)


def _matmul_model(path, seed: int = 0):
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return {"x": np.random.default_rng(9).standard_normal((2, 4)).astype(np.float32)}


def test_the_guarded_gate_does_not_fork_on_macos(tmp_path, monkeypatch):
    """On macOS a forked copy of a process that has used the system's BLAS (numpy's Accelerate) crashes in it, which
    the guarded gate would read as ONNX Runtime crashing on the model: there it checks in a fresh process instead
    (no fork at all), with the same report and the same refusals; elsewhere it forks. DEPLOYTOOL_NO_FORK: here."""
    import os
    import sys

    import deploytool.runtime.verify as V

    path, other = tmp_path / "mm.onnx", tmp_path / "other.onnx"
    feeds = _matmul_model(path)
    _matmul_model(other, seed=1)
    assert V.fork_is_safe() == hasattr(os, "fork")  # this test runs on Linux (CI): a fork is safe here

    forks = []
    real_fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real_fork())
    assert V.verify_model_guarded(path, feeds, reference=path).max_diff == 0.0 and forks == [1]

    monkeypatch.setattr(sys, "platform", "darwin")
    assert not V.fork_is_safe()
    report = V.verify_model_guarded(path, feeds, reference=path)
    assert report.outputs == ("y",) and report.max_diff == 0.0
    assert report.peak_rss_bytes and forks == [1]  # from a process of its own (it reports its peak), not a fork
    with pytest.raises(VerificationError, match="differ") as e:  # a refusal there comes back the same
        V.verify_model_guarded(path, feeds, reference=other)
    assert "\n" not in str(e.value) and forks == [1]
    # a serialized model goes to that process too
    assert V.verify_model_guarded(path.read_bytes(), feeds).outputs == ("y",) and forks == [1]

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("DEPLOYTOOL_NO_FORK", "1")
    assert not V.fork_is_safe()
    assert V.verify_model_guarded(path, feeds).peak_rss_bytes is None and forks == [1]  # in this process


def test_a_gate_process_that_dies_of_a_signal_is_a_crash(tmp_path):
    """The gate's own process (big models) dying of a signal it was not sent by its caller (ONNX Runtime crashing,
    the OOM killer) is a refusal with failure "crash" in the forked gate's words, so the pass asks whether the input
    crashes too; one killed for not answering in time is not a crash."""
    import os
    import signal

    import deploytool.runtime.verify as V

    path = tmp_path / "mm.onnx"
    feeds = _matmul_model(path)
    g = V.GateProcess()
    try:
        os.kill(g.pid, signal.SIGSEGV)
        g._proc.wait(timeout=30)
        with pytest.raises(VerificationError) as e:
            g.verify(path, feeds)
    finally:
        g.close()
    assert e.value.failure == "crash"
    assert V.crash_cause(e.value) == "ONNX Runtime crashed (segmentation fault), SIGSEGV"
    assert str(e.value) == ("that the verification gate could not check: ONNX Runtime crashed (segmentation fault), "
                            "SIGSEGV, loading or running it on a padded batch 2x4")
    g = V.GateProcess()
    try:
        os.kill(g.pid, signal.SIGSTOP)  # it never answers
        with pytest.raises(VerificationError, match=r"no answer within 0.3 s") as e:
            g.verify(path, feeds, timeout=0.3)
    finally:
        g.close()
    assert e.value.failure is None


def test_the_gate_process_is_a_forked_copy_where_that_is_safe(tmp_path):
    """A big model's gate process is a forked copy of the caller (its imports not made again) where no other Python
    thread runs, a fresh interpreter otherwise, or when asked; both give the same reports and the same refusals."""
    import os
    import threading

    import deploytool.runtime.verify as V

    path, other = tmp_path / "mm.onnx", tmp_path / "other.onnx"
    feeds = _matmul_model(path)
    _matmul_model(other, seed=1)
    mine = Path(f"/proc/{os.getpid()}/cmdline").read_bytes()
    reports, refusals = {}, {}
    for fork in (True, False):
        with V.GateProcess(fork=fork) as g:
            assert (Path(f"/proc/{g.pid}/cmdline").read_bytes() == mine) is fork
            reports[fork] = g.verify(path, feeds, reference=path)
        with V.GateProcess(fork=fork) as g, pytest.raises(VerificationError) as e:
            g.verify(path, feeds, reference=other)
        refusals[fork] = (str(e.value), e.value.failure)
    assert reports[True].outputs == reports[False].outputs == ("y",)
    assert reports[True].max_diff == reports[False].max_diff == 0.0
    assert reports[True].peak_rss_bytes and reports[False].peak_rss_bytes
    assert refusals[True] == refusals[False] and "differ" in refusals[True][0]

    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not V.gate_may_fork()  # a lock another thread holds would stay held in the copy
        with V.GateProcess() as g:
            assert Path(f"/proc/{g.pid}/cmdline").read_bytes() != mine
    finally:
        stop.set()
        t.join()


# a gate that takes its time: the checks (``verify._verify``) of every process of the test's command, the forked copy
# of a small model's gate and a big model's gate process alike, note their process's pid and wait a minute
_SLOW_GATE = """
import os
import sys

if os.environ.get("DEPLOYTOOL_TEST_SLOW_GATE"):
    import time

    import deploytool.runtime.verify as V

    if os.environ.get("DEPLOYTOOL_TEST_BIG"):
        import deploytool.passes.base as B

        B.BIG_MODEL_BYTES = 0

    def _slow(*a, **k):
        with open(os.environ["DEPLOYTOOL_TEST_SLOW_GATE"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)

    V._verify = _slow
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self") or not hasattr(os, "fork"), reason="POSIX: /proc, fork")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("size", ["small", "big"])
def test_an_interrupted_command_takes_its_gate_with_it(src, tmp_path, sig, size):
    """``kill -TERM`` (or ``-INT``) of the deploytool program's pid while a pass's output is being verified: the
    signal reaches the command's process only (the supervising parent passes it on; the gate's process does not get
    it). The command stops in seconds, 143 (130), nothing written, and its gate goes with it: the forked copy that
    checks a model under ``base.BIG_MODEL_BYTES`` was waited for until it finished on its own (a minute here; at
    worst the gate's 900 s timeout, or for ever on a hung ONNX Runtime); a bigger model's gate process was killed."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SLOW_GATE)
    pidfile, dst = tmp_path / "gate.pid", tmp_path / "out.onnx"
    root = str(Path(onnx_io.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), root, os.environ.get("PYTHONPATH", "")]),
           "DEPLOYTOOL_TEST_SLOW_GATE": str(pidfile)}
    env.pop("DEPLOYTOOL_NO_FORK", None)
    if size == "big":
        env["DEPLOYTOOL_TEST_BIG"] = "1"
    entry = "import sys; from deploytool.cli import entry; sys.argv = ['deploytool'] + sys.argv[1:]; entry()"
    p = subprocess.Popen([sys.executable, "-c", entry, "slice", str(src), "--width", "0.5", "-o", str(dst)],
                         env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, preexec_fn=default_signals)
    deadline = time.monotonic() + 120
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.05)
    gate = int(pidfile.read_text())
    assert gate != p.pid
    num = getattr(signal, sig)
    start = time.monotonic()
    os.kill(p.pid, num)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"{sig} to the program did not stop it while its gate ran")
    assert p.returncode == 128 + num, err
    assert time.monotonic() - start < 10
    assert "Traceback" not in err
    _assert_nothing_written(dst)
    deadline = time.monotonic() + 10
    while alive(gate) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(gate), "the gate outlived its command"


@pytest.mark.skipif(not os.path.isdir("/proc/self") or not hasattr(os, "fork"), reason="POSIX: /proc, fork")
def test_the_guarded_gates_copy_dies_with_a_caller_killed_outright(tmp_path):
    """A caller of verify_model_guarded killed outright (SIGKILL, the OOM killer: no clean-up of its runs) takes the
    forked copy with it, as the gate's own process goes with its parent; it checked on (here for a minute)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SLOW_GATE)
    pidfile = tmp_path / "gate.pid"
    feeds = tmp_path / "feeds.npy"
    np.save(feeds, np.zeros((2, 4), np.float32))
    _matmul_model(tmp_path / "mm.onnx")
    code = (f"import numpy as np; from deploytool.runtime.verify import verify_model_guarded; "
            f"verify_model_guarded({str(tmp_path / 'mm.onnx')!r}, {{'x': np.load({str(feeds)!r})}})")
    root = str(Path(onnx_io.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), root, os.environ.get("PYTHONPATH", "")]),
           "DEPLOYTOOL_TEST_SLOW_GATE": str(pidfile)}
    env.pop("DEPLOYTOOL_NO_FORK", None)
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True, preexec_fn=default_signals)
    try:
        deadline = time.monotonic() + 120
        while not pidfile.exists() or not pidfile.read_text():
            assert time.monotonic() < deadline and p.poll() is None, p.communicate()
            time.sleep(0.05)
        copy = int(pidfile.read_text())
        assert copy != p.pid
        p.kill()
        p.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while alive(copy) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(copy), "the forked copy outlived its caller"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)


def test_a_gate_killed_while_it_profiles_leaves_no_folder(tmp_path, monkeypatch):
    """The fp16 gate counts ORT's inserted casts from its profiler's record, written in a temporary folder; a copy
    that ONNX Runtime killed while that folder existed (the crash tests, a user's fp16 file that crashes it) left
    ``deploytool-gate-profile-*`` in /tmp, one a test suite run. The folder is now made in one its caller removes."""
    import os
    import signal
    import tempfile

    import deploytool.runtime.verify as V

    path = tmp_path / "mm.onnx"
    feeds = _matmul_model(path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    real = V._session

    def crash_once_profiling(model, session_config=None, profile_prefix=None, **kw):
        if profile_prefix is not None:  # inside the profiler's folder
            assert os.path.isdir(os.path.dirname(profile_prefix))
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(model, session_config, profile_prefix=profile_prefix, **kw)

    monkeypatch.setattr(V, "_session", crash_once_profiling)
    with pytest.raises(VerificationError) as e:
        V.verify_model_guarded(path, feeds, count_casts=True)
    assert e.value.failure == "crash" and list(tmp.iterdir()) == []
    with V.GateProcess(fork=True) as g, pytest.raises(VerificationError) as e:
        g.verify(path, feeds, count_casts=True)
    assert e.value.failure == "crash" and list(tmp.iterdir()) == []
    assert V.verify_model_guarded(path, feeds).outputs == ("y",)  # no profiling: nothing made, nothing crashed
    assert list(tmp.iterdir()) == []
