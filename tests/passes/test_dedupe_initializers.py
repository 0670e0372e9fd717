"""Initializers stored more than once become one: a graph written here (inputs, outputs and a subgraph among the
copies), ALBERT through the dynamo exporter, and ALBERT through ORT's int8 quantizer. References: ONNX Runtime's
outputs of the input model, file sizes and transformers' num_parameters()."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_ir as ir

from deploytool.passes.dedupe_initializers import dedupe_initializers

IDS = np.array([[2, 15, 37, 8, 91, 4, 60, 3]], dtype=np.int64)


def _ort(model_bytes: bytes, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"]).run(None, feeds)


def _graph() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    other = rng.standard_normal((4, 4)).astype(np.float32)
    row = rng.standard_normal(4).astype(np.float32)
    init = lambda a, n: numpy_helper.from_array(a, n)  # noqa: E731
    then_g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w_copy2"], ["t0"]), helper.make_node("Add", ["t0", "sub_a"], ["t1"]),
         helper.make_node("Add", ["t1", "sub_b"], ["then_out"])], "then", [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [1, 4])],
        initializer=[init(row, "sub_a"), init(row.copy(), "sub_b")])
    else_g = helper.make_graph([helper.make_node("MatMul", ["x", "w_copy1"], ["else_out"])], "else", [],
                               [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [1, 4])])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("MatMul", ["a", "w_copy1"], ["b"]),
             helper.make_node("MatMul", ["b", "w_input"], ["c"]), helper.make_node("MatMul", ["c", "other"], ["d"]),
             helper.make_node("If", ["cond"], ["e"], then_branch=then_g, else_branch=else_g),
             helper.make_node("Add", ["d", "e"], ["y"])]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("w_input", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("w_output", TensorProto.FLOAT, [4, 4])],
        initializer=[init(w, "w"), init(w.copy(), "w_copy1"), init(w.copy(), "w_copy2"), init(w.copy(), "w_input"),
                     init(w.copy(), "w_output"), init(other, "other"),
                     init(w.astype(np.float64).astype(np.float32).reshape(2, 8), "w_other_shape")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_copies_merged_outputs_bit_identical():
    proto = _graph()
    before = proto.SerializeToString()
    model = ir.serde.deserialize_model(proto)
    stats = dedupe_initializers(model)
    after = ir.serde.serialize_model(model)
    onnx.checker.check_model(after, full_check=True)
    # merged: w_copy1 and w_copy2 (read in the main graph and from the subgraph) into w; sub_b into sub_a. Kept: the
    # graph input (a caller may feed another value), the graph output, and the same bytes under another shape
    assert sorted(i.name for i in after.graph.initializer) == ["other", "w", "w_input", "w_other_shape", "w_output"]
    then_g = next(a.g for a in after.graph.node[4].attribute if a.name == "then_branch")
    assert [i.name for i in then_g.initializer] == ["sub_a"]
    assert (stats.tensors, stats.bytes) == (3, 2 * 64 + 16)
    round_trip = ir.serde.serialize_model(ir.serde.deserialize_model(proto)).SerializeToString()
    assert len(round_trip) - len(after.SerializeToString()) >= 2 * 64 + 16
    x = np.arange(4, dtype=np.float32).reshape(1, 4) / 7
    for cond in (True, False):
        for w_in in (None, np.eye(4, dtype=np.float32)):
            feeds = {"x": x, "cond": np.array(cond)}
            if w_in is not None:
                feeds["w_input"] = w_in
            ref, got = _ort(before, feeds), _ort(after.SerializeToString(), feeds)
            for r, g in zip(ref, got):
                assert r.tobytes() == g.tobytes()


def _albert(tmp_path, exporter="torch"):
    import torch
    import transformers as tr

    from deploytool.export import ExportConfig, export_loaded

    torch.manual_seed(0)
    cfg = tr.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=64, num_hidden_layers=6,
                          num_attention_heads=4, intermediate_size=256, max_position_embeddings=64)
    model = tr.AutoModel.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)  # zero biases would be equal tensors of their own
    path = tmp_path / f"albert-{exporter}.onnx"
    export_loaded(model, path, ExportConfig(model="albert", exporter=exporter))
    return path, model


def _feeds():
    return {"input_ids": IDS, "attention_mask": np.ones_like(IDS), "token_type_ids": np.zeros_like(IDS)}


def _stored(path) -> int:
    return sum(len(t.raw_data) or t.ByteSize() for t in onnx.load(str(path)).graph.initializer)


def test_dynamo_export_stores_albert_shared_layer_once(tmp_path, monkeypatch):
    pytest.importorskip("onnxscript")
    from deploytool.export import api

    path, model = _albert(tmp_path, "dynamo")
    fp32 = model.num_parameters() * 4
    # one layer's weights run at 6 depths: stored once, the weights are at most the parameters' bytes (the exporter
    # folds a few small constants of its own; num_parameters() counts the shared layer once)
    assert _stored(path) <= fp32
    monkeypatch.setattr(api, "_dedupe", lambda proto: proto)
    (tmp_path / "raw").mkdir()
    raw, _ = _albert(tmp_path / "raw", "dynamo")
    assert _stored(raw) > 2 * fp32  # the exporter's own copies (failed before: 543 KB of 232 KB parameters)
    assert raw.stat().st_size - path.stat().st_size >= _stored(raw) - _stored(path) > fp32
    ref = _ort(raw.read_bytes(), _feeds())
    got = _ort(path.read_bytes(), _feeds())
    assert all(r.tobytes() == g.tobytes() for r, g in zip(ref, got))


def test_ort_int8_stores_shared_codes_once(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime.quantization")
    from deploytool.passes import dedupe_initializers as mod
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    src, model = _albert(tmp_path)
    cfg = Int8Config(engine="ort")
    quantize_int8_file(src, tmp_path / "q.onnx", cfg)
    monkeypatch.setattr(mod, "dedupe_initializers", lambda m: mod.DedupeStats())
    quantize_int8_file(src, tmp_path / "q_copies.onnx", cfg)
    q, copies = tmp_path / "q.onnx", tmp_path / "q_copies.onnx"
    # about a byte per parameter stored once (int8 codes; the embeddings stay fp32): ORT's quantizer wrote the
    # shared layer's codes per reading layer (failed before: 131 KB stored for 58 K parameters)
    params = model.num_parameters()
    assert _stored(q) < 1.5 * params
    assert _stored(copies) > 2 * params
    assert copies.stat().st_size - q.stat().st_size >= _stored(copies) - _stored(q)
    ref = _ort((tmp_path / "q_copies.onnx").read_bytes(), _feeds())
    got = _ort((tmp_path / "q.onnx").read_bytes(), _feeds())
    assert all(r.tobytes() == g.tobytes() for r, g in zip(ref, got))


@pytest.mark.parametrize("step", ["pack", "int8-native"])
def test_pass_on_export_with_copies_stores_them_once(tmp_path, monkeypatch, step):
    """A file that stores ALBERT's shared weights per layer (the dynamo export as it was written before, or by
    another tool) packs and quantizes to what the TorchScript export (the shared layer stored once) gives."""
    pytest.importorskip("onnxscript")
    from deploytool.export import api
    from deploytool.passes import dedupe_initializers as mod
    from deploytool.passes.pack_config import PackConfig
    from deploytool.passes.pack_weights import pack_file
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    def run(src, dst):
        return pack_file(src, dst, PackConfig()) if step == "pack" else quantize_int8_file(src, dst, Int8Config())

    torch_src, model = _albert(tmp_path, "torch")
    run(torch_src, tmp_path / "from_torch.onnx")
    with monkeypatch.context() as m:
        m.setattr(api, "_dedupe", lambda proto: proto)
        copies_src, _ = _albert(tmp_path, "dynamo")
    assert _stored(copies_src) > 2 * model.num_parameters() * 4
    res = run(copies_src, tmp_path / "once.onnx")
    # failed before: pack 47.1 KB against 25.9 KB from the TorchScript export, int8 153.5 KB against 62.1 KB
    assert _stored(tmp_path / "once.onnx") < 1.05 * _stored(tmp_path / "from_torch.onnx")
    assert res.stats["deduplicated_input"]["tensors"] > 0
    monkeypatch.setattr(mod, "dedupe_initializers", lambda m: mod.DedupeStats())
    run(copies_src, tmp_path / "copies.onnx")
    assert _stored(tmp_path / "copies.onnx") > 1.5 * _stored(tmp_path / "once.onnx")
    ref = _ort((tmp_path / "copies.onnx").read_bytes(), _feeds())
    got = _ort((tmp_path / "once.onnx").read_bytes(), _feeds())
    assert all(r.tobytes() == g.tobytes() for r, g in zip(ref, got))


def test_structured_edits_after_merge_differ_per_layer(tmp_path):
    """The merged copies of ALBERT's shared layer are read by every layer: removing different heads in each layer,
    or a slice, edits a copy of each layer's own. Reference: the same edits on the TorchScript export (which stores
    the shared layer once by itself), under ONNX Runtime."""
    pytest.importorskip("onnxscript")
    from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file

    heads = {0: [1], 1: [0, 2], 2: [3], 5: [0, 1, 2]}
    out = {}
    for exporter in ("torch", "dynamo"):
        (tmp_path / exporter).mkdir()
        src, model = _albert(tmp_path / exporter, exporter)
        prune_heads_file(src, tmp_path / exporter / "heads.onnx", HeadPruneConfig(heads=heads))
        slice_file(src, tmp_path / exporter / "slice.onnx", SliceConfig(width=0.5, depth=0.5))
        out[exporter] = [_ort((tmp_path / exporter / f"{k}.onnx").read_bytes(), _feeds())[0]
                         for k in ("heads", "slice")]
        full = _ort(src.read_bytes(), _feeds())[0]
        assert all(np.abs(o - full).max() > 1e-3 for o in out[exporter])  # the edits change the outputs
    assert _stored(tmp_path / "dynamo" / "albert-dynamo.onnx") <= model.num_parameters() * 4  # merged
    for a, b in zip(out["torch"], out["dynamo"]):
        np.testing.assert_allclose(b, a, atol=1e-5)
