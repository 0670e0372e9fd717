"""An fp16 model as ONNX Runtime's own tool makes one (``SETTING_EXPORTERS``' torchscript-17-ortfp16):
``python -m onnxruntime.transformers.optimizer --model_type bert --float16`` on an fp32 TorchScript export fuses
Attention, EmbedLayerNormalization, SkipLayerNormalization and BiasGelu and converts the weights and those ops to
fp16, keeping the inputs and outputs fp32 behind Casts. Each structured pass and pack on it is a conformance cell
judged against the independent PyTorch reference (transformers' ``prune_heads``, DynaBERT's rule restated, TWN
restated) of the fp32 model with fp16-rounded weights, as close as fp16 allows; the fp16 pass refuses it (already
fp16) in one line."""

from __future__ import annotations

import onnx
import pytest

from deploytool.testing import conformance as C

CASE = C.MODEL_BY_NAME["bert"]


def test_ort_float16_export_is_fused_fp16_with_fp32_io(tmp_path):
    src = C.export(CASE, "torchscript-17-ortfp16", tmp_path / "exports")
    g = onnx.load(str(src)).graph
    ops = {n.op_type for n in g.node}
    assert {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization"} <= ops  # the tool's fusions ran
    big = [t for t in g.initializer if len(t.dims) == 2]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in g.output)  # keep_io_types

    passes = ("slice-0.5-0.75", "prune-heads", "prune-ffn", "pack", "fp16")
    cells = C.run_matrix([CASE], ("torchscript-17-ortfp16",), (0,), passes, work=tmp_path / "work")
    got = {c.pass_name: c.status for c in cells}
    assert got == {"slice-0.5-0.75": "close", "prune-heads": "close", "prune-ffn": "close", "pack": "close",
                   "fp16": "refused"}, cells
    assert "already has fp16 weights" in next(c.detail for c in cells if c.pass_name == "fp16")


# beyond bert and modernbert: XLM-RoBERTa-XL's and T5's first pre-LN layer (its norm reads the embeddings, the fused
# SkipLayerNormalization their fp16 Cast), XLM's padding mask between layers, MobileBERT's bottlenecks, JinaBERT's
# second norm of the attention block, NomicBERT's partial rotary, each through Casts; JinaBERT's QK norm still ties
# its heads (slice and prune-heads refused, as at level 0)
QK_NORM_REFUSED = ("slice-0.5-0.75", "prune-heads")


@pytest.mark.parametrize("name", ["bert", "modernbert", "xlm-roberta-xl", "t5", "xlm", "mobilebert-ln",
                                  "jina-bert-qknorm", "nomic-bert"])
def test_structured_passes_read_ort_level_99_of_the_fp16_model_through_its_casts(tmp_path, name):
    """ONNX Runtime's level 99 on CPU (conformance's ``optimize(src, 99, dst)``) of that fp16 file runs every op
    without an fp16 kernel in fp32 between ``InsertedPrecisionFreeCast_*`` Casts: the output projection's result is
    cast to fp16 for the SkipLayerNormalization, whose fp16 output the FFN reads cast back to fp32 (and ModernBERT's
    Wqkv reads its pre-LN norm's output cast to fp32). Every structured pass and pack was refused on bert ('... (Cast):
    the attention output projection result is not added to ...'); each is now as close to PyTorch as fp16 allows."""
    case = C.MODEL_BY_NAME[name]
    passes = ("slice-0.5-0.75", "prune-heads", "prune-ffn", "reorder", "pack")
    cells = C.run_matrix([case], ("torchscript-17-ortfp16",), (99,), passes, work=tmp_path / "work")
    src = tmp_path / "work" / "exports" / f"{name}-torchscript-17-ortfp16.O99.onnx"
    casts = [n for n in onnx.load(str(src)).graph.node if n.op_type == "Cast"]
    assert sum(n.name.startswith("InsertedPrecisionFreeCast_") for n in casts) > 8  # the level-99 graph this is about
    want = {p: "refused" if name == "jina-bert-qknorm" and p in QK_NORM_REFUSED else "close" for p in passes}
    assert {c.pass_name: c.status for c in cells} == want, cells
    if name == "jina-bert-qknorm":
        assert all("QK norm" in c.detail for c in cells if c.status == "refused"), cells
