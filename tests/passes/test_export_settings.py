"""Export settings the conformance matrix does not vary: ``torch.onnx.export``'s ``keep_initializers_as_inputs=True``
(every weight also listed as a graph input) and ``do_constant_folding=False`` (each Linear's weight read through a
``Transpose`` node, shape arithmetic left as Constant/Unsqueeze/Concat nodes). Each pass's output is compared with the
independent PyTorch reference of ``deploytool.testing.conformance`` (transformers' ``prune_heads``, module surgery,
DynaBERT's rule restated, TWN restated) on its padded batch, as a conformance cell is. The other settings of
``SETTING_EXPORTERS`` (fp16, renamed inputs and outputs, external data, static batch 1) run as conformance cells
here once each; the whole grid is ``benchmarks/conformance.py --exporters`` (results/conformance_export_settings.*)."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import pytest

from deploytool.passes import transform
from deploytool.runtime.infer import run_onnx
from deploytool.testing import conformance as C

CASE = C.MODEL_BY_NAME["bert"]
PASSES = ("slice-0.5-0.75", "prune-heads", "prune-ffn", "reorder", "fp16", "int8", "pack", "pack-speed")


@pytest.fixture(scope="module")
def base():
    return C.build_model(CASE)


def _export(model, path: Path, **kw) -> Path:
    import torch

    f = C.feeds(CASE)
    names, outs = list(f), list(C.torch_outputs(model, f))
    dyn = {n: {0: "batch", 1: "sequence"} for n in names}
    dyn.update({"last_hidden_state": {0: "batch", 1: "sequence"}, "pooler_output": {0: "batch"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(torch.as_tensor(f[n]) for n in names), str(path), input_names=names,
                          output_names=outs, dynamic_axes=dyn, opset_version=17, dynamo=False, **kw)
    return path


def _check(src: Path, dst: Path, pass_name: str, base, work: Path) -> None:
    transform(src, dst, C.pass_config(CASE, pass_name, work))
    f = C.feeds(CASE)
    ref, _ = C.reference(CASE, pass_name, base)
    status, diff, detail = C.compare(run_onnx(dst, f), C.torch_outputs(ref, f), pass_name)
    assert status in ("equal", "close"), f"{pass_name}: {status} {diff} {detail}"


@pytest.mark.parametrize("pass_name", PASSES)
def test_weights_listed_as_graph_inputs(tmp_path, base, pass_name):
    """keep_initializers_as_inputs=True: fp16 refused ('the converter left no fp16 weight': it keeps graph inputs
    fp32), pack refused ('input onnx::MatMul_521 has fixed shape [24, 24]: batch 40 is not possible': its packed
    weights left their old names as inputs nothing fed), and a slice kept the dropped layer's weights in the file
    (graph inputs are never dead). Now the weights are weights: outputs equal the reference, the graph's inputs are
    the model's three, and nothing in the file is unread."""
    src = _export(base, tmp_path / "kiai.onnx", keep_initializers_as_inputs=True)
    g = onnx.load(src).graph
    assert len(g.input) > 3  # the setting this test is about
    dst = tmp_path / "out.onnx"
    _check(src, dst, pass_name, base, tmp_path)
    out = onnx.load(dst).graph
    assert [i.name for i in out.input] == ["input_ids", "attention_mask", "token_type_ids"]
    read = {x for n in out.node for x in n.input} | {x for n in out.node for a in n.attribute
                                                    for sub in ([a.g] if a.HasField("g") else [])
                                                    for m in sub.node for x in m.input}
    assert [t.name for t in out.initializer if t.name not in read] == []


@pytest.mark.parametrize("pass_name", PASSES)
def test_export_without_constant_folding(tmp_path, base, pass_name):
    """do_constant_folding=False: each Linear is MatMul(x, Transpose(W)) and the head split's target is
    Concat(Unsqueeze(batch), Unsqueeze(seq), Unsqueeze(Constant 6), Unsqueeze(Constant 4)). Every structured pass and
    pack refused ("weight '.../Transpose_output_0' has no static 2-D shape", then "cannot read the head count from
    the Q reshape"); now the transposed weights and the small shape pieces are read as the constants they are."""
    src = _export(base, tmp_path / "nofold.onnx", do_constant_folding=False)
    g = onnx.load(src).graph
    assert any(n.op_type == "Transpose" and n.input[0] in {t.name for t in g.initializer} for n in g.node)
    _check(src, tmp_path / "out.onnx", pass_name, base, tmp_path)


def _initializers_fp16(g) -> bool:
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in g.initializer)


@pytest.mark.parametrize("setting,holds", [
    ("torchscript-17-fp16", lambda src, g: _initializers_fp16(g)
     and g.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16),
    ("torchscript-17-renamed", lambda src, g: [i.name for i in g.input] == ["ids", "mask", "segment_ids"]
     and [o.name for o in g.output] == ["embeddings", "pooled"]),
    ("torchscript-17-external", lambda src, g: (src.parent / f"{src.name}.data").is_file()
     and all(t.data_location == onnx.TensorProto.EXTERNAL for t in g.initializer if len(t.dims) == 2)),
    ("torchscript-17-batch1", lambda src, g: all([d.dim_value for d in i.type.tensor_type.shape.dim] == [1, 8]
                                                  for i in g.input)),
])
def test_setting_exporters_run_as_conformance_cells(tmp_path, setting, holds):
    """The settings that ran in a scratch harness only (2026-12-06) are SETTING_EXPORTERS now: each export has the
    property it is named for, and a cell of it is judged against PyTorch (fed and read under the renamed names; on
    one row for the batch-1 export; as close as fp16 allows for the fp16 one)."""
    assert setting in C.SETTING_EXPORTERS
    src = C.export(CASE, setting, tmp_path / "exports")
    assert holds(src, onnx.load(str(src), load_external_data=False).graph)
    (cell,) = C.run_matrix([CASE], (setting,), (0,), ("prune-heads",), work=tmp_path / "work")
    assert cell.status == ("close" if setting in C.FP16_EXPORTERS else "equal"), cell
    assert ("on 1 row(s)" in cell.detail) == (setting == "torchscript-17-batch1")


@pytest.mark.parametrize("model", ["bert", "deberta-v2", "deberta"])
def test_structured_passes_run_on_an_fp16_export_after_ort_level_99(tmp_path, model):
    """ONNX Runtime's level-99 graph of an fp16 export writes each Softmax out as ReduceMax, Sub, Exp, ReduceSum and
    Div (no fp16 Softmax kernel on CPU) and computes in fp32 between Casts (LayerNorms in fp16, biases read through
    Casts): the structure finder read no attention there, and slice, prune-heads, prune-ffn, reorder and pack refused
    ('no self-attention found'). Now each is a conformance cell judged against its PyTorch reference (transformers'
    prune_heads, module surgery, DynaBERT's rule restated, the unchanged model, TWN restated) at fp16's cosine.
    DeBERTa v1: its position-to-content term reaches the scores as Cast(If(shape check)); the finder took that Cast
    of an If for a shape computation and missed the term, so slice and prune-heads left pos_q_proj at all heads
    (a model ORT could not run: 'MatMul_2: left operand cannot broadcast') and reorder did not permute it."""
    from deploytool.graph.finder import find_structure

    case = C.MODEL_BY_NAME[model]
    src = C.optimize(C.export(case, "torchscript-17-fp16", tmp_path / "exports"), 99, tmp_path / "fp16.O99.onnx")
    ops = [n.op_type for n in onnx.load(str(src)).graph.node]
    assert "Softmax" not in ops and ops.count("Exp") == 4 and "Cast" in ops  # the graph this test is about
    assert [la.attention.num_heads for la in find_structure(src).layers] == [6, 6, 6, 6]
    passes = ("slice-0.5-0.75", "prune-heads", "prune-ffn", "reorder", "pack")
    cells = C.run_matrix([case], ("torchscript-17-fp16",), (99,), passes, work=tmp_path / "work")
    assert {c.pass_name: c.status for c in cells} == dict.fromkeys(passes, "close"), cells


def test_pack_refuses_an_expanded_softmax_it_cannot_read(tmp_path):
    """An Exp read by more than its softmax's ReduceSum and Div (here also a graph output) is not taken for a
    softmax's private intermediate: the finder reads no attention in that layer, and pack refuses the attention
    graph whose pooler it cannot tell apart (before ff33f78 it packed the pooler: BERT pack FAILED at cosine 0.925);
    with pack_head it packs every weight, as asked."""
    from deploytool.errors import PassRefusedError
    from deploytool.passes.pack_weights import PackConfig

    src = C.optimize(C.export(CASE, "torchscript-17-fp16", tmp_path), 99, tmp_path / "fp16.O99.onnx")
    m = onnx.load(str(src))
    exps = [n for n in m.graph.node if n.op_type == "Exp"]
    assert len(exps) == 4
    for e in exps:  # every layer's Exp also read outside: no layer is readable
        m.graph.output.append(onnx.helper.make_tensor_value_info(e.output[0], onnx.TensorProto.FLOAT, None))
    onnx.save(m, str(tmp_path / "exposed.onnx"))
    with pytest.raises(PassRefusedError, match="cannot tell the pooler"):
        transform(tmp_path / "exposed.onnx", tmp_path / "packed.onnx", PackConfig())
    assert not (tmp_path / "packed.onnx").exists()
    result = transform(tmp_path / "exposed.onnx", tmp_path / "packed.onnx", PackConfig(pack_head=True))
    assert result.to_dict()["weights_packed"] == 26  # 4 layers x 6 matrices, the pooler and the word embeddings


def test_depth_slice_of_an_fp16_export_after_ort_level_99_keeps_the_output_type(tmp_path):
    """Jina BERT's level-99 graph of an fp16 export: the last layer ends in an fp16 LayerNorm, the others in ORT's
    fused SkipLayerNormalization in fp32 (its output's type read off a GLU's Slice and MatMul with an fp32 weight,
    none declared). A depth slice wired the fp32 value to the fp16 graph output ('Type (tensor(float16)) of output
    arg (last_hidden_state) of node (node_Identity_0) does not match expected type (tensor(float))', refused by the
    gate); now it is cast back, and the cell is close to DynaBERT's PyTorch slice."""
    case = C.MODEL_BY_NAME["jina-bert"]
    (cell,) = C.run_matrix([case], ("torchscript-17-fp16",), (99,), ("slice-0.5-0.75",), work=tmp_path / "work")
    assert cell.status == "close", cell


@pytest.mark.parametrize("model", ["roformer", "esm", "gte", "megatron-bert", "mobilebert-ln"])
def test_structured_passes_read_fp16_level_99_norms_and_rotary_through_casts(tmp_path, model):
    """ONNX Runtime's level-99 graph of an fp16 export computes in fp32 between Casts and keeps unfused LayerNorms in
    fp16, and its transpose optimizer puts a Cast on either side of a Transpose. The finder compared values by
    identity and refused every structured pass: rotary embeddings (RoFormer's interleaved rotation, ESM's
    rotate_half: Neg, Slices and the rotated operand each behind Casts: 'cannot trace the Q operand back to a
    projection with constant weights'; GTE's packed QKV split after a Cast of its projection), pre-LN layers whose fp16 LayerNorm reads a Cast of the fp32 residual
    stream that ORT's SkipLayerNormalization adds ('added to a value that is neither the attention input nor the
    stream it normalises': ESM, Megatron-BERT), and MobileBERT's input bottleneck norm behind a Cast ('layer 1 does
    not read the hidden state layer 0 writes'). Now each cell is close to its PyTorch reference."""
    case = C.MODEL_BY_NAME[model]
    passes = ("slice-0.5-0.75", "prune-heads", "reorder")
    cells = C.run_matrix([case], ("torchscript-17-fp16",), (99,), passes, work=tmp_path / "work")
    assert {c.pass_name: c.status for c in cells} == dict.fromkeys(passes, "close"), cells


@pytest.mark.parametrize("level", [0, 99])
def test_structured_passes_read_t5s_fp16_clamp(tmp_path, level):
    """transformers' T5 in fp16 clamps each residual sum (``clamp(h, -c, c)``, ``c`` just below fp16's largest
    value, lower where ``h`` holds an inf: a Clip whose bounds are computed from the sum itself), and the stream
    goes on from the Clip: every structured pass refused ('the residual sum of a pre-LayerNorm layer is not read by
    one LayerNorm (readers: ['Cast', 'Clip'])'). At ORT's level 99 the sums are fp32 and the clamped stream fp16
    between Casts, and the first layer's norm reads another Cast of the embeddings than its residual Add (its head
    counts were left out of the layer: prune-heads wrote a model ORT could not run). Now each cell is close."""
    case = C.MODEL_BY_NAME["t5"]
    passes = ("slice-0.5-0.75", "prune-heads", "reorder")
    cells = C.run_matrix([case], ("torchscript-17-fp16",), (level,), passes, work=tmp_path / "work")
    assert {c.pass_name: c.status for c in cells} == dict.fromkeys(passes, "close"), cells
