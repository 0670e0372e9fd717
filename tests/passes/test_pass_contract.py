"""The one pass contract (passes/base.py): requires before call, ensures after, pipelines as passes,
the one config-type table, typed results. Graphs are written here; references are onnx's own
ReferenceEvaluator and plain counts, never the code under test."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from deploytool.errors import ConfigError, PassRefusedError, VerificationError
from deploytool.passes import build_pass, config_class, pass_table, transform
from deploytool.passes.base import DeployPass, DeployPassResult, PassSequence
from deploytool.passes.pack_weights import PackConfig, PackWeightsPass
from deploytool.passes.quantize_int8 import Int8Config, Int8QuantizePass
from deploytool.passes.prune_heads import HeadPruneConfig, PruneHeadsPass
from deploytool.passes.residual_sum import ResidualAddsToSumPass
from deploytool.passes.slice_subnetwork import SliceConfig
from deploytool.passes.upgrade_opset import UpgradeOpsetPass


def _residual_graph(opset: int = 17, n: int = 8) -> onnx.ModelProto:
    """x -> MatMul(W) = h; Add(h, x) -> LayerNorm (a residual: both inputs computed);
    Add(h, bias) -> LayerNorm (a bias: one input constant, must stay Add)."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("W", TensorProto.FLOAT, [n, n], rng.standard_normal(n * n).astype(np.float32))
    b = helper.make_tensor("B", TensorProto.FLOAT, [n], rng.standard_normal(n).astype(np.float32))
    g = helper.make_tensor("G", TensorProto.FLOAT, [n], np.ones(n, np.float32))
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Add", ["h", "x"], ["r"], name="residual"),
             helper.make_node("LayerNormalization", ["r", "G"], ["y1"], axis=-1),
             helper.make_node("Add", ["h", "B"], ["c"], name="bias"),
             helper.make_node("LayerNormalization", ["c", "G"], ["y2"], axis=-1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, n])],
                              [helper.make_tensor_value_info("y1", TensorProto.FLOAT, [2, n]),
                               helper.make_tensor_value_info("y2", TensorProto.FLOAT, [2, n])], [w, b, g])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ReferenceEvaluator(proto).run(None, {"x": x})


def test_residual_sum_rewrites_only_residual_adds_and_keeps_the_outputs():
    proto = _residual_graph()
    x = np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)
    before = _run(proto, x)
    model = ir.serde.deserialize_model(proto)
    result = ResidualAddsToSumPass()(model)
    ops = {n.name: n.op_type for n in model.graph}
    assert ops["residual"] == "Sum" and ops["bias"] == "Add"
    assert result.modified and result.stats["residual_add_as_sum"] == 1
    after = _run(ir.serde.serialize_model(model), x)
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=0, atol=0)
    again = ResidualAddsToSumPass()(model)  # nothing left to rewrite
    assert not again.modified and again.stats["residual_add_as_sum"] == 0


def test_upgrade_opset_shares_the_weights_and_leaves_new_models_alone():
    model = ir.serde.deserialize_model(_residual_graph(17, n=32))  # W over 1 KiB: handed over, not serialized
    w = model.graph.initializers["W"].const_value
    result = UpgradeOpsetPass(25)(model)
    assert result.modified and result.model is model and model.opset_imports[""] == 25
    assert result.stats["opset"] == "17 -> 25"
    assert model.graph.initializers["W"].const_value is w  # the same tensor object, not a copy
    same = UpgradeOpsetPass(25)(model)
    assert not same.modified and same.stats["opset"] == 25


class _Recorder(DeployPass):
    def __init__(self, log: list, name: str, refuse_input: bool = False, bad_output: bool = False):
        super().__init__()
        self.log, self.tag, self.refuse_input, self.bad_output = log, name, refuse_input, bad_output

    def requires_input(self, model):
        self.log.append(f"{self.tag}.requires_input")
        if self.refuse_input:
            raise PassRefusedError(f"{self.tag} refuses this input")

    def requires(self, model):
        self.log.append(f"{self.tag}.requires")

    def call(self, model):
        self.log.append(f"{self.tag}.call")
        model.metadata_props[f"seen.{self.tag}"] = "1"
        return DeployPassResult(model, modified=True, stats={self.tag: 1})

    def ensures(self, model):
        self.log.append(f"{self.tag}.ensures")
        if self.bad_output:
            raise VerificationError(f"{self.tag} wrote a bad model")


def test_sequence_runs_each_pass_contract_in_order_and_merges_results():
    log: list[str] = []
    seq = PassSequence([_Recorder(log, "a"), _Recorder(log, "b"), _Recorder(log, "c")], main=1)
    result = seq(ir.serde.deserialize_model(_residual_graph()))
    assert log == ["b.requires_input", "a.requires", "a.call", "a.ensures", "b.requires", "b.call", "b.ensures",
                   "c.requires", "c.call", "c.ensures"]
    assert result.stats == {"a": 1, "b": 1, "c": 1} and result.modified
    assert seq.name == "_Recorder"


class _ShapeArithmetic(DeployPass):
    """Writes ``Concat(Constant [2], Constant [8])`` as a Reshape's target (the opset upgrade writes Constant
    nodes too) when ``write``; records whether its input holds such a Concat (the canonical rewrites fold it into
    an initializer before a pass reads the graph)."""

    def __init__(self, seen: list, write: bool) -> None:
        super().__init__()
        self.seen, self.write = seen, write

    def call(self, model):
        self.seen.append(any(n.op_type == "Concat" for n in model.graph))
        if not self.write:
            return DeployPassResult(model, modified=False)
        g = model.graph
        pieces = [ir.node("Constant", [], attributes={"value": ir.tensor(np.array([v], np.int64))}) for v in (2, 8)]
        cat = ir.node("Concat", [p.outputs[0] for p in pieces], attributes={"axis": 0})
        y1 = next(o for o in g.outputs if o.name == "y1")
        reshape = ir.node("Reshape", [y1, cat.outputs[0]])
        for n in (*pieces, cat, reshape):
            g.append(n)
        reshape.outputs[0].name = "y3"
        g.outputs.append(reshape.outputs[0])
        return DeployPassResult(model, modified=True)


def test_sequence_rewrites_to_canonical_form_again_only_after_a_sub_pass_changed_the_model(monkeypatch):
    seen: list[bool] = []
    seq = PassSequence([_ShapeArithmetic(seen, write=False), _ShapeArithmetic(seen, write=True),
                        _ShapeArithmetic(seen, write=False)])
    model = ir.serde.deserialize_model(_residual_graph())
    seq(model)
    # the third pass reads the second's Concat of constants folded; the sequence's output still computes y3
    assert seen == [False, False, False]
    x = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
    y1, _, y3 = _run(ir.serde.serialize_model(model), x)
    np.testing.assert_array_equal(y3, y1.reshape(2, 8))

    import deploytool.graph.canonical as canonical

    calls: list[int] = []
    fold = canonical.fold_small_constants

    def counting(m, *a, **k):
        calls.append(1)
        return fold(m, *a, **k)

    monkeypatch.setattr(canonical, "fold_small_constants", counting)
    # the sequence's own input once; again only after the writing pass
    PassSequence([_ShapeArithmetic([], write=False), _ShapeArithmetic([], write=False)])(
        ir.serde.deserialize_model(_residual_graph()))
    assert len(calls) == 1
    PassSequence([_ShapeArithmetic([], write=True), _ShapeArithmetic([], write=False)])(
        ir.serde.deserialize_model(_residual_graph()))
    assert len(calls) == 3


def test_sequence_refuses_on_its_main_pass_input_before_anything_runs():
    log: list[str] = []
    model = ir.serde.deserialize_model(_residual_graph())
    with pytest.raises(PassRefusedError, match="b refuses this input"):
        PassSequence([_Recorder(log, "a"), _Recorder(log, "b", refuse_input=True)], main=1)(model)
    assert log == ["b.requires_input"] and "seen.a" not in model.metadata_props


def test_ensures_failure_surfaces_as_the_deploy_error():
    log: list[str] = []
    with pytest.raises(VerificationError, match="a wrote a bad model"):
        _Recorder(log, "a", bad_output=True)(ir.serde.deserialize_model(_residual_graph()))
    assert log == ["a.requires", "a.call", "a.ensures"]


class _Buggy(DeployPass):
    """A pass whose precondition check has a bug of its own (not a refusal)."""

    def requires(self, model):
        return {}["no such key"]

    def call(self, model):  # pragma: no cover - never reached
        return DeployPassResult(model, modified=False)


def test_a_bug_in_requires_surfaces_as_itself_not_as_onnx_irs_bare_precondition_failure():
    with pytest.raises(KeyError, match="no such key") as info:
        _Buggy()(ir.serde.deserialize_model(_residual_graph()))
    assert not isinstance(info.value, ir.passes.PreconditionError)


def test_pack_refuses_a_quantized_model_before_the_opset_upgrade():
    proto = _residual_graph(17)
    proto.graph.node.append(helper.make_node("MatMulInteger", ["x", "W"], ["q"], name="already_int8"))
    model = ir.serde.deserialize_model(proto)
    with pytest.raises(PassRefusedError, match="already packed or quantized"):
        build_pass(PackConfig(weights="ternary", runtime="speed"))(model)
    assert model.opset_imports[""] == 17  # not upgraded: refused first


def test_the_table_is_keyed_by_config_type():
    table = pass_table()
    kinds = {e.kind for e in table.values()}
    # the recipe names of the passes (recipes' PassKind without quantize, plus the two precisions)
    assert kinds == {"reorder", "slice", "prune-heads", "prune-ffn", "int8", "fp16", "pack", "repack"}
    assert all(isinstance(c, type) and e.config is c for c, e in table.items())
    assert config_class("slice") is SliceConfig and config_class("prune-heads") is HeadPruneConfig
    with pytest.raises(ConfigError, match="no pass named 'shrink'"):
        config_class("shrink")
    with pytest.raises(ConfigError, match="no pass named 'slise' \\(did you mean 'slice'\\?\\)"):
        config_class("slise")

    class SliceConfigLookalike:  # same name, another type: not in the table
        pass

    SliceConfigLookalike.__name__ = "SliceConfig"
    with pytest.raises(ConfigError, match="transform\\(\\) takes one of"):
        build_pass(SliceConfigLookalike())


@pytest.mark.parametrize("module, config", [("reorder", "ReorderConfig()"),
                                            ("pack_config", "PackConfig(weights='ternary')")])
def test_a_pass_process_imports_only_its_own_pass(tiny_onnx, tmp_path, module, config):
    """transform() with one config loads that pass's module, not the others (nor numpy.ma, which np.unique pulls
    in): a fresh interpreter runs a reorder, or a pack (whose config lives in a module of its own), and lists what
    it imported."""
    import json
    import subprocess
    import sys

    src = tiny_onnx("bert", "torch", layers=2)
    code = (
        "import json, sys\n"
        "from deploytool.passes import transform\n"
        f"from deploytool.passes.{module} import {config.split('(')[0]}\n"
        f"r = transform({str(src)!r}, {str(tmp_path / 'r.onnx')!r}, {config})\n"
        "print(json.dumps({'modified': r.modified, 'verified': r.gate.verified, 'modules': sorted(sys.modules)}))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["modified"] and out["verified"]
    mine = {"reorder": "reorder", "pack_config": "pack_weights"}[module]
    others = {"deploytool.passes." + m for m in ("reorder", "slice_subnetwork", "prune_heads", "prune_ffn",
                                                 "quantize_int8", "fp16", "pack_weights", "repack") if m != mine}
    assert "deploytool.passes." + mine in out["modules"]
    assert others.isdisjoint(out["modules"]), sorted(others & set(out["modules"]))
    assert "numpy.ma" not in out["modules"]


def test_pack_pipeline_is_the_passes_the_runtime_needs():
    def kinds(cfg):
        p = build_pass(cfg)
        return [type(x).__name__ for x in (p.passes if isinstance(p, PassSequence) else [p])]

    up = "UpcastFp16Pass"  # an fp16 input to fp32 first; nothing on an fp32 one
    opset = "UpgradeOpsetPass"  # to 25 for INT2 weights, else to 13 (an opset-11 export); nothing at or above it
    assert kinds(PackConfig(runtime="speed")) == [up, opset, "PackWeightsPass", "ResidualAddsToSumPass"]
    assert kinds(PackConfig(runtime="speed", upgrade_opset=False)) == [up, "PackWeightsPass", "ResidualAddsToSumPass"]
    assert kinds(PackConfig(runtime="densest")) == [up, opset, "PackWeightsPass", "ResidualAddsToSumPass"]
    assert kinds(PackConfig(runtime="memory", accuracy_level=0)) == [up, opset, "PackWeightsPass"]
    assert [p.target for p in build_pass(PackConfig(runtime="speed")).passes if type(p).__name__ == opset] == [25]
    assert [p.target for p in build_pass(PackConfig(runtime="densest")).passes if type(p).__name__ == opset] == [13]
    assert isinstance(build_pass(PackConfig()).main, PackWeightsPass)
    assert kinds(Int8Config()) == [up, opset, "Int8QuantizePass", "ResidualAddsToSumPass"]
    assert isinstance(build_pass(Int8Config()).main, Int8QuantizePass)


def test_structured_refusal_happens_in_requires_and_touches_nothing(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", "torch", layers=2)
    from deploytool import onnx_io

    model = onnx_io.load_model(src)
    before = [(n.op_type, tuple(v.name for v in n.inputs if v is not None)) for n in model.graph]
    p = PruneHeadsPass(HeadPruneConfig(heads={5: [0]}))
    with pytest.raises(PassRefusedError, match="layer 5 out of range 0..1"):
        p(model)
    assert [(n.op_type, tuple(v.name for v in n.inputs if v is not None)) for n in model.graph] == before
    with pytest.raises(PassRefusedError, match="layer 5 out of range"):
        p.requires(model)  # the refusal is requires()'s, not call()'s
    dst = tmp_path / "x.onnx"
    with pytest.raises(PassRefusedError):
        transform(src, dst, HeadPruneConfig(heads={5: [0]}))
    assert not dst.exists()


def test_typed_result_of_a_structured_pass(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", "torch", layers=2)
    res = transform(src, tmp_path / "p.onnx", HeadPruneConfig(heads={0: [1, 3]}))
    c = res.counts
    assert (c.heads_before, c.heads_after, c.heads_per_layer) == (8, 6, [2, 4])
    assert res.gate.verified and res.gate.seconds > 0 and res.bytes_after < res.bytes_before
    assert res.variant is not None and res.variant.endswith("-fp32")
    flat = res.to_dict()
    assert flat["heads_after"] == 6 and flat["verified"] is True and flat["heads_removed"] == {"0": [1, 3]}


def _skeleton(model) -> bytes:
    from deploytool import onnx_io

    proto, _ = onnx_io.skeleton_proto(model)
    return proto.SerializeToString()


def _node_bytes(model) -> list[bytes]:
    out = []
    for n in ir.serde.serialize_model(model).graph.node:
        n.ClearField("metadata_props")
        out.append(n.SerializeToString())
    return out


def _reduce_mean_graph() -> onnx.ModelProto:
    """ReduceMean with an ``axes`` attribute (opset 17): at 18 the converter moves it to an input."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [8, 40], np.ones(320, np.float32))  # over 1 KiB: held back
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("ReduceMean", ["h"], ["y"], axes=[-1], keepdims=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("source", ["bert/torch", "roberta/dynamo", "distilbert/optimum", "reduce_mean"])
def test_upgrade_opset_in_place_is_the_rebuilt_graph(source, tiny_onnx):
    """UpgradeOpsetPass bumps the opset in place when the converter would change no kind of node (a real export:
    the usual case; tests/passes/test_upgrade_opset.py) and rebuilds from the converted graph when it does
    (ReduceMean's axes at 18): the nodes and opset are upgrade_opset's rebuilt ones (the in-place model without
    the converter's inferred shapes, which nothing needs, and with the node metadata the converter drops), the
    rebuilt model serializes exactly as upgrade_opset's, and the big tensors stay the same objects."""
    from deploytool import onnx_io
    from deploytool.passes.upgrade_opset import upgrade_opset

    def load():
        if source == "reduce_mean":
            return ir.serde.deserialize_model(_reduce_mean_graph())
        family, exporter = source.split("/")
        return onnx_io.load_model(tiny_onnx(family, exporter))

    model = load()
    if model.opset_imports.get("", 0) >= 25:
        pytest.skip("the export is already at opset 25")
    big = {n: v.const_value for n, v in model.graph.initializers.items() if v.const_value.nbytes > 1024}
    result = UpgradeOpsetPass(25)(model)
    rebuilt = upgrade_opset(load(), 25)
    assert result.modified and model.opset_imports[""] == 25
    if source == "reduce_mean":
        assert _skeleton(model) == _skeleton(rebuilt)
    else:
        assert _node_bytes(model) == _node_bytes(rebuilt) and model.ir_version == rebuilt.ir_version
    assert big and all(model.graph.initializers[n].const_value is t for n, t in big.items())
    ops = [n.op_type for n in model.graph]
    if source == "reduce_mean":
        node = next(n for n in model.graph if n.op_type == "ReduceMean")
        assert len(node.inputs) == 2 and "axes" not in node.attributes  # converted, not just relabelled
    assert ops


def test_file_functions_take_their_own_config_and_file_paths(tiny_onnx, tmp_path):
    """pack_file given a SliceConfig ran the slice (and quantize_int8_file a PackConfig packed); slice_file given a
    PackConfig failed inside the pass with AttributeError; bytes/None/int paths were TypeErrors from deep inside."""
    from deploytool.passes.fp16 import convert_fp16_file
    from deploytool.passes.pack_weights import PackConfig, pack_file
    from deploytool.passes.quantize_int8 import quantize_int8_file
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file

    src = tiny_onnx("bert", exporter="torch")
    out = tmp_path / "o.onnx"
    for fn, cfg, want in ((pack_file, SliceConfig(width=0.5), "a PackConfig"),
                          (quantize_int8_file, PackConfig(), "an Int8Config"),
                          (convert_fp16_file, SliceConfig(width=0.5), "a Fp16Config"),
                          (slice_file, PackConfig(), "a SliceConfig"),
                          (slice_file, None, "a SliceConfig")):
        with pytest.raises(ConfigError, match=f"{fn.__name__}: config must be {want}, got "):
            fn(src, out, cfg)
    for a, b, what in ((None, out, "src"), (3, out, "src"), (src, None, "dst")):
        with pytest.raises(ConfigError, match=f"{what}: expected a file path, got "):
            slice_file(a, b, SliceConfig(width=0.5))
    assert not out.exists()
    slice_file(str(src).encode(), bytes(out), SliceConfig(width=0.5))  # bytes paths are file paths
    assert out.is_file()


@pytest.mark.parametrize("verify", ["no", "false", None, 0, 1])
def test_verify_is_true_or_false(tiny_onnx, tmp_path, verify):
    """transform(..., verify="no") ran the gate ("no" is true) and verify=None or 0 skipped it without a word, where
    every config's flag takes only true or false (validation.Flag): now one line naming the value, no file written."""
    from deploytool.passes.slice_subnetwork import slice_file

    src = tiny_onnx("bert", exporter="torch")
    out = tmp_path / "o.onnx"
    for call in (lambda: transform(src, out, SliceConfig(width=0.5), verify=verify),
                 lambda: slice_file(src, out, SliceConfig(width=0.5), verify=verify)):
        with pytest.raises(ConfigError, match=r"^verify: expected true or false, got "):
            call()
    assert not out.exists()
    assert not transform(src, out, SliceConfig(width=0.5), verify=False).gate.verified


def test_a_pass_called_on_what_is_not_an_onnx_ir_model_says_what_it_takes(tiny_onnx):
    """build_pass(config)(onnx.load(path)) raised AttributeError 'inputs' from inside onnx_ir, and a path
    "'str' object has no attribute 'graph'": the passes take an onnx_ir Model, and the message says how to get one."""
    src = tiny_onnx("bert", exporter="torch")
    for config, name in ((SliceConfig(width=0.5), "slice"), (PackConfig(), "pack")):
        p = build_pass(config)
        for given, kind in ((onnx.load(str(src)), "onnx.ModelProto"), (str(src), "str"), (None, "NoneType")):
            with pytest.raises(ConfigError) as e:
                p(given)
            assert str(e.value) == (f"{name}: expected an onnx_ir Model (onnx_ir.load(path), "
                                    f"onnx_ir.from_proto(proto)), got {kind}")
        assert p(ir.from_proto(onnx.load(str(src)))).modified


def test_a_pass_built_with_what_is_not_its_config_is_refused_at_once():
    """SlicePass({"width": 0.5}) or SlicePass(PackConfig()) was built, then failed when called with AttributeError
    "'dict' object has no attribute 'width'" from inside the pass; now the constructor says what it takes."""
    from deploytool.passes.fp16 import Fp16ConvertPass
    from deploytool.passes.prune_ffn import PruneFFNPass
    from deploytool.passes.reorder import ReorderPass
    from deploytool.passes.repack import RepackPass
    from deploytool.passes.slice_subnetwork import SlicePass

    for cls, want in ((SlicePass, "a SliceConfig"), (PruneHeadsPass, "a HeadPruneConfig"),
                      (PruneFFNPass, "an FFNPruneConfig"), (ReorderPass, "a ReorderConfig"),
                      (Int8QuantizePass, "an Int8Config"), (Fp16ConvertPass, "a Fp16Config"),
                      (PackWeightsPass, "a PackConfig"), (RepackPass, "a RepackConfig")):
        for given in ({"width": 0.5}, PackConfig() if cls is not PackWeightsPass else SliceConfig(width=0.5), None):
            with pytest.raises(ConfigError) as e:
                cls(given)
            assert str(e.value) == f"{cls.__name__}: config must be {want}, got {type(given).__name__}"
    assert SlicePass(SliceConfig(width=0.5)).config == SliceConfig(width=0.5)
