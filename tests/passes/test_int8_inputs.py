"""int8 on inputs other passes produce: head-pruned models (per-layer heads), fp16 models (refused)."""

from __future__ import annotations

import numpy as np
import pytest

from deploytool.errors import PassRefusedError
from deploytool.passes.fp16 import Fp16Config, convert_fp16_file
from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file
from deploytool.passes.quantize_int8 import Fusion, Int8Config, quantize_int8_file
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs


def test_fused_int8_of_a_head_pruned_model(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", "torch", layers=2)
    pruned = tmp_path / "p.onnx"
    prune_heads_file(src, pruned, HeadPruneConfig(heads={0: [1, 3]}))
    q = tmp_path / "q.onnx"
    quantize_int8_file(pruned, q, Int8Config(fusion=Fusion.ATTENTION))
    feeds = fixed_inputs()
    a = run_onnx(pruned, feeds)["last_hidden_state"]
    b = run_onnx(q, feeds)["last_hidden_state"]
    cos = float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos > 0.98


def test_fp16_model_is_refused(tiny_onnx, tmp_path):
    h = tmp_path / "h.onnx"
    convert_fp16_file(tiny_onnx("bert", "torch", layers=2), h, Fp16Config(check_host=False))
    with pytest.raises(PassRefusedError, match="fp16 weights"):
        quantize_int8_file(h, tmp_path / "q.onnx", Int8Config())
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("edit", ["attention-bias", "causal"])
def test_int8_of_an_ort_fused_attention_with_a_bias_or_causal(tmp_path, edit):
    """ONNX Runtime's quantizer turns every fused Attention into a QAttention, which has no input for an attention
    bias: it used to drop the bias silently (the output then matched the unbiased graph's int8 output exactly). Such
    a node now runs as MatMul (quantized like every projection), Split and MultiHeadAttention with the bias (until
    2026-12-03 it stayed an fp32 Attention); a causal one becomes a QAttention that stays causal. Checked against
    the edited fp32 graph: the int8 output is nearer to it than to the unedited graph's."""
    pytest.importorskip("onnxruntime.transformers.optimizer")
    import onnx

    from deploytool.testing import conformance as C
    from deploytool.testing.fused import add_attention_bias, make_unidirectional

    case = C.MODEL_BY_NAME["bert"]
    base = C.optimize(C.export(case, "torchscript-17", tmp_path / "e"), 2, tmp_path / "o2.onnx", raw_mask=True)
    # a bias table large enough to move the output well past this tiny random model's int8 error (cosine ~0.965)
    src = (add_attention_bias(base, tmp_path / "edited.onnx", scale=2.0) if edit == "attention-bias"
           else make_unidirectional(base, tmp_path / "edited.onnx"))
    fused = [n for n in onnx.load(str(src)).graph.node if n.op_type == "Attention"]
    layers = len(fused)
    dst = tmp_path / "q.onnx"
    res = quantize_int8_file(src, dst, Int8Config())
    out = onnx.load(str(dst))
    ops = [n.op_type for n in out.graph.node]
    if edit == "attention-bias":
        assert "Attention" not in ops and "QAttention" not in ops and ops.count("MultiHeadAttention") == layers
        mha = [n for n in out.graph.node if n.op_type == "MultiHeadAttention"]
        assert {n.input[5] for n in mha} == {n.input[5] for n in fused}  # each layer's own slice of the table
        # one mask for all (ORT's optimizer, run again before quantizing, may hand it over from the embeddings it
        # fuses); the padded rows below check it masks
        assert len({n.input[4] for n in mha}) == 1 and all(n.input[4] for n in mha)
        # every projection is int8, the QKV ones too: one integer GEMM per layer's QKV, O and two FFN, and the pooler
        assert ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") == 4 * layers + 1, ops
        assert res.stats["attention_bias_as_mha"] == layers
        # the finder reads the int8 QKV (MatMulInteger, its scale, the bias Add) before the Split as the layer's
        # packed QKV projection, with the fused node's bias
        from onnx import numpy_helper

        from deploytool import onnx_io
        from deploytool.graph import find_structure
        from deploytool.graph._util import const_tensor

        s = find_structure(onnx_io.load_model(dst))
        inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(src)).graph.initializer}
        assert s.num_layers == layers
        for layer, n in zip(s.layers, fused):
            a = layer.attention
            assert a.fused.op_type == "MultiHeadAttention" and a.qkv.node.op_type == "MatMulInteger"
            assert a.qkv.out_features == 3 * a.num_heads * a.head_size
            np.testing.assert_array_equal(const_tensor(a.qkv.bias).numpy(), inits[n.input[2]])
        assert not [s for s in res.skipped if "attention bias" in s.reason], res.skipped
    else:
        qatt = [n for n in out.graph.node if n.op_type == "QAttention"]
        assert len(qatt) == layers
        assert all(any(a.name == "unidirectional" and a.i == 1 for a in n.attribute) for n in qatt)
    feeds = C.feeds(case)

    def first(path):
        return next(iter(run_onnx(path, feeds).values())).ravel().astype(np.float64)

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    got, want, unedited = first(dst), first(src), first(base)
    assert cos(got, want) > cos(got, unedited) + (0.05 if edit == "attention-bias" else 0.005)


def test_attention_bias_as_multihead_attention_is_the_fused_attention(tmp_path):
    """The rewrite int8 quantizes (MatMul, Add, Split, MultiHeadAttention) computes what ORT's fused Attention
    computes with the same attention bias, raw mask and weights (fp32, before any quantizing)."""
    pytest.importorskip("onnxruntime.transformers.optimizer")
    import onnx

    from deploytool.passes.quantize_int8 import _attention_bias_as_mha
    from deploytool.testing import conformance as C
    from deploytool.testing.fused import add_attention_bias

    case = C.MODEL_BY_NAME["distilbert"]
    base = C.optimize(C.export(case, "optimum", tmp_path / "e"), 2, tmp_path / "o2.onnx", raw_mask=True)
    src = add_attention_bias(base, tmp_path / "edited.onnx")
    m = onnx.load(str(src))
    layers = sum(n.op_type == "Attention" for n in m.graph.node)
    assert _attention_bias_as_mha(m) == layers >= 2
    assert [n.op_type for n in m.graph.node].count("MultiHeadAttention") == layers
    onnx.save(m, str(tmp_path / "mha.onnx"))
    feeds = C.feeds(case)
    for name, want in run_onnx(src, feeds).items():
        np.testing.assert_allclose(run_onnx(tmp_path / "mha.onnx", feeds)[name], want, atol=1e-5)
