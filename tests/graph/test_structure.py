"""The structure finder against the PyTorch models that built the graphs (roles by weight values)."""

from __future__ import annotations

import numpy as np
import pytest

from deploytool import onnx_io
from deploytool.errors import StructureError
from deploytool.graph import find_structure
from deploytool.graph._util import const_tensor
from deploytool.testing.graphs import attention_layer_model, cnn_model, mlp_model


def _load_plain(path):
    """The model without deploytool metadata: the finder must work from structure alone."""
    model = onnx_io.load_model(path)
    model.metadata_props.clear()
    return model


def _torch_weights(torch_model, family):
    """Per layer: {role: (weight [out,in], bias)} from the PyTorch modules (the test's oracle)."""
    base = getattr(torch_model, "base_model", torch_model)
    out = []
    if family == "distilbert":
        for lyr in base.transformer.layer:
            a = lyr.attention
            out.append({"q": a.q_lin, "k": a.k_lin, "v": a.v_lin, "o": a.out_lin,
                        "inter": lyr.ffn.lin1, "out": lyr.ffn.lin2})
    else:
        for lyr in base.encoder.layer:
            s = lyr.attention.self
            out.append({"q": s.query, "k": s.key, "v": s.value, "o": lyr.attention.output.dense,
                        "inter": lyr.intermediate.dense, "out": lyr.output.dense})
    return [{k: (m.weight.detach().numpy(), m.bias.detach().numpy()) for k, m in d.items()} for d in out]


def _as_out_in(lin):
    w = const_tensor(lin.weight).numpy()
    return w.T if lin.layout == "in_out" else w


# >= 2 families x 3 exporters, plus the other two families; classification models (their heads are
# other_linears), shared with tests/test_inspection.py through the session cache of ``tiny_onnx``
CASES = [("bert", "torch"), ("bert", "dynamo"), ("bert", "optimum"),
         ("distilbert", "torch"), ("distilbert", "dynamo"), ("distilbert", "optimum"),
         ("roberta", "torch"), ("electra", "torch")]
TASK = "sequence-classification"


@pytest.mark.parametrize("family,exporter", CASES)
def test_roles_match_pytorch_weights(tiny_onnx, tiny_torch_model, family, exporter):
    path = tiny_onnx(family, exporter, task=TASK)
    s = find_structure(_load_plain(path))
    ref = _torch_weights(tiny_torch_model(family, task=TASK), family)
    assert s.num_layers == 2 and s.hidden_size == 32 and not s.fused
    # ELECTRA's encoder is BERT's without a pooler: without metadata only the hint in names can tell
    assert s.family == family or (family, s.family) == ("electra", "bert")
    assert find_structure(onnx_io.load_model(path)).family == family  # with the export's metadata
    # without metadata: optimum's names are TorchScript's, as a plain torch.onnx.export's are (not told apart)
    assert s.exporter == {"optimum": "torchscript"}.get(exporter, exporter)
    assert {"word", "position"} <= set(s.embeddings)
    assert ("token_type" in s.embeddings) == (family in ("bert", "electra", "roberta"))
    for layer, r in zip(s.layers, ref):
        a = layer.attention
        assert (a.num_heads, a.head_size, a.all_head_size) == (4, 8, 32)
        assert layer.ffn.width == 64 and layer.ffn.activation == "gelu"
        for role, lin in (("q", a.q), ("k", a.k), ("v", a.v), ("o", a.o),
                          ("inter", layer.ffn.intermediate), ("out", layer.ffn.output)):
            w, b = r[role]
            np.testing.assert_allclose(_as_out_in(lin), w, atol=1e-6, err_msg=f"layer {layer.index} {role}")
            np.testing.assert_allclose(const_tensor(lin.bias).numpy(), b, atol=1e-6)
            assert lin.bias_node is not None and lin.bias_node.op_type == "Add"
        # head-count sites: every one holds the right number, at least one of each meaning
        meanings = {h.meaning for h in a.head_sites}
        assert meanings == {"num_heads", "all_head_size"}
        for h in a.head_sites:
            val = const_tensor(h.value).numpy().reshape(-1)[h.index]
            assert val == (4 if h.meaning == "num_heads" else 32)
            assert h.shared == (exporter == "dynamo")  # dynamo shares one constant across layers
        assert layer.input in tuple(a.q.node.inputs) and layer.attention_output is not None
        assert layer.ffn.intermediate.node in layer.nodes and a.o.node in layer.nodes
    assert s.layers[0].output is s.layers[1].input
    names = {id(n) for lyr in s.layers for n in lyr.nodes}
    assert len(names) == sum(len(lyr.nodes) for lyr in s.layers)  # layers do not overlap
    # classification head: (pooler|pre_classifier|dense) 32x32 then 32x2
    assert [(lin.in_features, lin.out_features) for lin in s.other_linears] == [(32, 32), (32, 2)]


def test_fused_attention_graph(tiny_onnx, tiny_torch_model, tmp_path):
    from deploytool.runtime.fuse import fuse_transformer

    fused = tmp_path / "fused.onnx"
    result = fuse_transformer(tiny_onnx("bert", "torch", task=TASK), fused)
    assert result.fused_ops["Attention"] == 2
    s = find_structure(_load_plain(fused))
    ref = _torch_weights(tiny_torch_model("bert", task=TASK), "bert")
    assert s.fused and s.exporter == "ort-fused" and s.num_layers == 2
    assert set(s.embeddings) == {"word", "position", "token_type"}  # from EmbedLayerNormalization
    for layer, r in zip(s.layers, ref):
        a = layer.attention
        assert a.fused is not None and a.fused.op_type == "Attention" and a.q is None
        assert (a.num_heads, a.head_size) == (4, 8)
        assert [(h.kind, h.attribute, h.meaning) for h in a.head_sites] == [("attribute", "num_heads", "num_heads")]
        packed = const_tensor(a.qkv.weight).numpy()  # [hidden, 3*hidden] = [Wq^T | Wk^T | Wv^T]
        np.testing.assert_allclose(packed, np.concatenate([r[k][0].T for k in "qkv"], axis=1), atol=1e-6)
        np.testing.assert_allclose(const_tensor(a.qkv.bias).numpy(), np.concatenate([r[k][1] for k in "qkv"]),
                                   atol=1e-6)
        np.testing.assert_allclose(_as_out_in(a.o), r["o"][0], atol=1e-6)
        assert a.o.bias_node.op_type == "SkipLayerNormalization"
        np.testing.assert_allclose(const_tensor(a.o.bias).numpy(), r["o"][1], atol=1e-6)
        assert layer.ffn.intermediate.bias_node.op_type == "BiasGelu" and layer.ffn.activation == "gelu"
        np.testing.assert_allclose(_as_out_in(layer.ffn.output), r["out"][0], atol=1e-6)


def test_int8_graph_keeps_roles(tiny_onnx, tmp_path):
    """Dynamic int8 (MatMulInteger + scale Mul) of the plain export: same layers, weights int8."""
    from deploytool.passes.quantize_int8 import Fusion, Int8Config, quantize_int8_file

    q8 = tmp_path / "q8.onnx"
    quantize_int8_file(tiny_onnx("bert", "torch", task=TASK), q8, Int8Config(fusion=Fusion.NONE))
    s = find_structure(_load_plain(q8))
    assert s.num_layers == 2
    for layer in s.layers:
        a = layer.attention
        assert (a.num_heads, a.head_size, layer.ffn.width) == (4, 8, 64)
        for lin in (a.q, a.k, a.v, a.o, layer.ffn.intermediate, layer.ffn.output):
            assert lin.node.op_type == "MatMulInteger" and const_tensor(lin.weight).dtype.name == "INT8"
            assert lin.bias is not None


def test_torch_export_has_one_site_per_reshape(tiny_onnx):
    s = find_structure(_load_plain(tiny_onnx("bert", "torch", task=TASK)))
    for layer in s.layers:
        kinds = sorted(h.meaning for h in layer.attention.head_sites)
        assert kinds == ["all_head_size", "num_heads", "num_heads", "num_heads"]
        assert all(h.node.op_type == "Concat" and h.kind == "constant_node" for h in layer.attention.head_sites)


def test_head_size_equal_to_head_count_is_read_by_position(tiny_onnx):
    # hidden 16 with 4 heads: head_size == num_heads == 4, the shape [B, -1, 4, 4] is ambiguous by value
    s = find_structure(_load_plain(tiny_onnx("bert", "torch", task=TASK, hidden=16, heads=4, ffn=24)))
    a = s.layers[0].attention
    assert (a.num_heads, a.head_size, s.layers[0].ffn.width) == (4, 4, 24)
    assert [h.index for h in a.head_sites if h.meaning == "num_heads"] == [0, 0, 0]


def test_cnn_raises_structure_error_naming_a_node(tmp_path):
    import onnx_ir as ir

    with pytest.raises(StructureError, match=r"node 'conv1' \(Conv\)"):
        find_structure(ir.serde.deserialize_model(cnn_model()))


def test_mlp_raises_structure_error(tmp_path):
    import onnx_ir as ir

    with pytest.raises(StructureError, match=r"no self-attention found.*node 'mm2'"):
        find_structure(ir.serde.deserialize_model(mlp_model()))


def test_hand_built_layer_with_constant_shapes():
    import onnx_ir as ir

    s = find_structure(ir.serde.deserialize_model(attention_layer_model(hidden=8, heads=2, ffn=16)))
    (layer,) = s.layers
    a = layer.attention
    assert (a.num_heads, a.head_size, layer.ffn.width, layer.ffn.activation) == (2, 4, 16, "relu")
    assert (a.q.weight.name, a.k.weight.name, a.v.weight.name, a.o.weight.name) == ("q.w", "k.w", "v.w", "o.w")
    assert (layer.ffn.intermediate.weight.name, layer.ffn.output.weight.name) == ("ffn_in.w", "ffn_out.w")
    # one Reshape shape initializer read by Q, K and V: three sites on it, private to the layer
    sites = [(h.node.name, h.kind, h.value.name, h.index, h.meaning, h.shared) for h in a.head_sites]
    assert sites == [("q/Reshape", "initializer", "split_shape", 2, "num_heads", False),
                     ("k/Reshape", "initializer", "split_shape", 2, "num_heads", False),
                     ("v/Reshape", "initializer", "split_shape", 2, "num_heads", False),
                     ("context/Reshape", "initializer", "merge_shape", 2, "all_head_size", False)]
    assert s.family == "unknown-encoder" and s.embeddings == {}


def test_pre_layernorm_block_is_refused_naming_the_residual():
    import onnx_ir as ir

    with pytest.raises(StructureError, match=r"node 'attention/residual' \(Add\).*pre-LayerNorm"):
        find_structure(ir.serde.deserialize_model(attention_layer_model(pre_ln=True)))


def test_finder_and_inspect_import_neither_torch_nor_onnxruntime():
    import subprocess
    import sys

    code = ("import sys, deploytool.graph, deploytool.inspection, deploytool.cli.inspect_cmd; "
            "bad = [m for m in ('torch', 'onnxruntime') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("family,exporter,fuse", [("bert", "torch", False), ("distilbert", "optimum", False),
                                                  ("bert", "torch", True)])
@pytest.mark.parametrize("runtime", ["speed", "memory", "densest"])
def test_split_binary_packed_graph_keeps_roles(tiny_onnx, tiny_torch_model, tmp_path, family, exporter, fuse,
                                               runtime):
    """pack's split-binary form (one kernel over both binary planes, its two halves sliced and added, then the
    bias): each projection is read with the PyTorch module's width (not the kernel's doubled one) and its bias,
    so ``inspect`` shows the structure of such a file (before 2026-12-03: "not recognised")."""
    import onnx

    from deploytool.passes.pack_weights import PACKING_KEY, PackConfig, pack_file

    def load(path):  # the packing record stays (it is the packed weights' format), the export's hints go
        model = onnx_io.load_model(path)
        for key in [k for k in model.metadata_props if k != PACKING_KEY]:
            del model.metadata_props[key]
        return model

    src = tiny_onnx(family, exporter, task=TASK)
    if fuse:
        from deploytool.runtime.fuse import fuse_transformer

        fuse_transformer(src, tmp_path / "fused.onnx")
        src = tmp_path / "fused.onnx"
    dst = tmp_path / "sb.onnx"
    pack_file(src, dst, PackConfig(weights="split-binary", runtime=runtime, embeddings="fp32"))
    kernel = "MatMulNBits" if runtime == "memory" else "DynamicQuantizeMatMul"
    s = find_structure(load(dst))
    ref = _torch_weights(tiny_torch_model(family, task=TASK), family)
    assert s.num_layers == 2 and s.hidden_size == 32
    for layer, r in zip(s.layers, ref):
        a = layer.attention
        assert (a.num_heads, a.head_size, layer.ffn.width) == (4, 8, 64)
        if fuse:
            assert a.fused is not None and a.fused.op_type == "MultiHeadAttention"
            pairs = [(a.qkv, (96, 32), np.concatenate([r[k][1] for k in "qkv"]))]
        else:
            pairs = [(getattr(a, k), r[k][0].shape, r[k][1]) for k in "qkvo"]
        pairs += [(a.o, r["o"][0].shape, r["o"][1])] if fuse else []
        pairs += [(layer.ffn.intermediate, r["inter"][0].shape, r["inter"][1]),
                  (layer.ffn.output, r["out"][0].shape, r["out"][1])]
        for lin, (out_f, in_f), bias in pairs:
            assert lin.node.op_type == kernel, lin.node.op_type
            assert (lin.out_features, lin.in_features) == (out_f, in_f)
            np.testing.assert_allclose(const_tensor(lin.bias).numpy(), bias, atol=1e-6)
    names = {id(n) for lyr in s.layers for n in lyr.nodes}
    assert len(names) == sum(len(lyr.nodes) for lyr in s.layers)  # layers do not overlap

    # the planes' sum is what makes the projection: with their halves subtracted it is no projection of the model
    m = onnx.load(str(dst))
    halves = {o: n for n in m.graph.node if n.op_type == "Slice" for o in n.output}
    sums = [n for n in m.graph.node if n.op_type == "Add" and len(n.input) == 2 and all(i in halves for i in n.input)]
    assert len(sums) == 2 * (4 if fuse else 6)  # every projection of the two layers (QKV packed in one if fused)
    for n in sums:
        n.op_type = "Sub"
    bad = tmp_path / "sub.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(StructureError):
        find_structure(load(bad))


def _hide_attention(src, dst, layer: int) -> None:
    """``src`` with layer ``layer``'s scores passed through a Transpose pair (a no-op) before their Softmax: a
    form the finder's walk from the Softmax does not follow."""
    import onnx
    from onnx import helper

    m = onnx.load(src)
    sm = [n for n in m.graph.node if n.op_type == "Softmax"][layer]
    x = sm.input[0]
    pair = [helper.make_node("Transpose", [x], [x + "_t"], perm=[0, 1, 3, 2], name=f"hide{layer}_a"),
            helper.make_node("Transpose", [x + "_t"], [x + "_tt"], perm=[0, 1, 3, 2], name=f"hide{layer}_b")]
    sm.input[0] = x + "_tt"
    at = list(m.graph.node).index(sm)
    for n in reversed(pair):
        m.graph.node.insert(at, n)
    onnx.save(m, dst)


@pytest.mark.parametrize("layer", [0, 2])
def test_an_attention_softmax_the_finder_cannot_read_is_refused_not_skipped(tiny_onnx, tmp_path, layer):
    """A layer whose attention the walk from its Softmax does not follow was skipped: the model was read with
    one layer fewer (its first layer's projections taken for an embedding projection when it was layer 0), and
    ``prune-heads --heads 0:0`` pruned the next layer. It is refused in one line, naming that Softmax."""
    from click.testing import CliRunner

    from deploytool.cli import main

    src = tiny_onnx("bert", "torch", layers=3)
    assert len(find_structure(_load_plain(src)).layers) == 3
    bad = tmp_path / "hidden.onnx"
    _hide_attention(src, bad, layer)
    with pytest.raises(StructureError, match=rf"layer\.{layer}/attention/self/Softmax.*looks like attention.*"
                                             r"Transpose"):
        find_structure(_load_plain(bad))
    out = tmp_path / "pruned.onnx"
    r = CliRunner().invoke(main, ["prune-heads", str(bad), "--heads", "0:0", "-o", str(out)])
    assert r.exit_code == 2 and "looks like attention" in r.stderr and not out.exists(), r.output


def _fp16_level_99(tmp_path, model: str = "bert"):
    """ONNX Runtime's level-99 graph of an fp16 export (conformance's 'torchscript-17-fp16' at level 99): each
    Softmax written out as ReduceMax/Sub/Exp/ReduceSum/Div (no fp16 Softmax kernel on CPU), the layers in fp32
    between Casts, their LayerNorms in fp16."""
    from deploytool.testing import conformance as C

    case = C.MODEL_BY_NAME[model]
    src = C.optimize(C.export(case, "torchscript-17-fp16", tmp_path / "exports"), 99, tmp_path / "fp16.O99.onnx")
    return src, C.build_model(case)


def test_roles_of_an_fp16_export_after_ort_level_99_match_pytorch_weights(tmp_path):
    """The finder read no attention in that graph ('no self-attention found'): every structured pass refused it.
    Now each layer's Q/K/V/O and FFN are the PyTorch modules' weights (rounded to fp16, as exported)."""
    import onnx

    src, torch_model = _fp16_level_99(tmp_path)
    ops = [n.op_type for n in onnx.load(str(src)).graph.node]
    assert "Softmax" not in ops and ops.count("Exp") == 4  # the graph this test is about
    s = find_structure(_load_plain(src))
    assert s.num_layers == 4 and s.hidden_size == 24 and [la.attention.num_heads for la in s.layers] == [6] * 4
    ref = _torch_weights(torch_model, "bert")
    for layer, want in zip(s.layers, ref):
        got = {"q": layer.attention.q, "k": layer.attention.k, "v": layer.attention.v, "o": layer.attention.o,
               "inter": layer.ffn.intermediate, "out": layer.ffn.output}
        for role, (w, _) in want.items():
            np.testing.assert_array_equal(_as_out_in(got[role]).astype(np.float32),
                                          w.astype(np.float16).astype(np.float32), err_msg=f"{layer.index} {role}")


def test_a_written_out_softmax_not_over_the_last_axis_is_refused_not_skipped(tmp_path):
    """A Div(Exp(x), ReduceSum(Exp(x))) that is not a softmax over the last axis (here layer 0's ReduceSum made to
    sum axis 1) is not read as the attention's softmax; the layer still looks like attention, so the finder refuses
    in one line rather than reading layers 1-3 as layers 0-2."""
    import onnx
    from onnx import numpy_helper

    src, _ = _fp16_level_99(tmp_path)
    m = onnx.load(str(src))
    axes = next(n for n in m.graph.node if n.op_type == "ReduceSum").input[1]
    init = next(i for i in m.graph.initializer if i.name == axes)
    assert numpy_helper.to_array(init).tolist() == [-1]
    init.CopyFrom(numpy_helper.from_array(np.array([1], np.int64), axes))
    onnx.save(m, str(tmp_path / "axis1.onnx"))
    with pytest.raises(StructureError, match=r"layer\.0/attention/self/Softmax_output_0.*written out as "
                                             r"Exp/ReduceSum/Div, but not one over the last axis"):
        find_structure(_load_plain(tmp_path / "axis1.onnx"))
