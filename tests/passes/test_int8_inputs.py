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
    a node now stays an fp32 Attention, with a skip; a causal one becomes a QAttention that stays causal. Checked
    against the edited fp32 graph: the int8 output is nearer to it than to the unedited graph's."""
    pytest.importorskip("onnxruntime.transformers.optimizer")
    import onnx

    from deploytool.testing import conformance as C
    from deploytool.testing.fused import add_attention_bias, make_unidirectional

    case = C.MODEL_BY_NAME["bert"]
    base = C.optimize(C.export(case, "torchscript-17", tmp_path / "e"), 2, tmp_path / "o2.onnx", raw_mask=True)
    src = (add_attention_bias if edit == "attention-bias" else make_unidirectional)(base, tmp_path / "edited.onnx")
    layers = sum(n.op_type == "Attention" for n in onnx.load(str(src)).graph.node)
    dst = tmp_path / "q.onnx"
    res = quantize_int8_file(src, dst, Int8Config())
    ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
    if edit == "attention-bias":
        assert ops.count("Attention") == layers and "QAttention" not in ops
        assert sum("attention bias" in s.reason for s in res.skipped) == layers, res.skipped
    else:
        qatt = [n for n in onnx.load(str(dst)).graph.node if n.op_type == "QAttention"]
        assert len(qatt) == layers
        assert all(any(a.name == "unidirectional" and a.i == 1 for a in n.attribute) for n in qatt)
    feeds = C.feeds(case)

    def first(path):
        return next(iter(run_onnx(path, feeds).values())).ravel().astype(np.float64)

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    got, want, unedited = first(dst), first(src), first(base)
    assert cos(got, want) > cos(got, unedited) + 0.005
