"""BinaryBERT's ternary weight splitting (TWS): the split, the two-plane pack, and `qat --tws` end to end.

References are independent of the code under test: the split is restated from BinaryBERT's public
``binary_model_init.py`` (``tws_split``) in torch float64 below; packed models are compared with numpy
matmuls of the two planes and with PyTorch.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

from deploytool.quant.quantizers import binarize, binarize_planes, dequantize, split_ternary, ternarize  # noqa: E402


def _binarybert_tws_split(v: torch.Tensor, layerwise: bool):
    """BinaryBERT's ``tws_split`` for one weight (``binary_model_init.py``), restated: float64 throughout."""
    v = v.double()
    if layerwise:
        m = v.norm(p=1).div(v.nelement())
        thres = 0.7 * m
        mask = (v.abs() > thres).double()
        alpha = (mask * v).abs().sum() / mask.sum()
        v_t = alpha * (v > thres).double() - alpha * (v < -thres).double()
        x = (v_t == 0).sum().double()
        small = torch.full_like(v, float((alpha * v.nelement() - v.abs().sum()) / (2.0 * x)))
    else:  # row-wise (BinaryBERT's word embeddings)
        n = v[0].nelement()
        m = v.norm(p=1, dim=1).div(n)
        thres = (0.7 * m).view(-1, 1).expand_as(v)
        mask = (v.abs() > thres).double()
        alpha = ((mask * v).abs().sum(dim=1) / mask.sum(dim=1)).view(-1, 1)
        v_t = alpha * (v > thres).double() - alpha * (v < -thres).double()
        x = (v_t == 0).sum(dim=1).double()
        small = ((torch.max(v_t, dim=1)[0] * n - v.abs().sum(dim=1)) / (2.0 * x)).view(-1, 1).expand_as(v)
    zero = torch.zeros_like(v)
    a11 = torch.where(v_t == 0, zero, v)
    a12 = torch.where(v_t == 0, torch.where(v > 0, v + small, small), zero)
    a22 = torch.where(v_t == 0, torch.where(v < 0, v - small, -small), zero)
    if layerwise:
        mm = (a11.abs().sum() + a22.abs().sum() - a12.abs().sum()) / (2 * a11.abs().sum())
    else:
        mm = ((a11.abs().sum(1) + a22.abs().sum(1) - a12.abs().sum(1)) / (2.0 * a11.abs().sum(1))).view(-1, 1)
    v1 = torch.where(v_t == 0, torch.where(v > 0, v + small, small), mm * v)
    v2 = torch.where(v_t == 0, torch.where(v < 0, v - small, -small), (1 - mm) * v)
    return v1.float().numpy(), v2.float().numpy(), v_t.float().numpy()


@pytest.mark.parametrize("granularity", ["layer", "row"])
@pytest.mark.parametrize("shape", [(32, 64), (7, 5), (384, 1536)])
def test_split_ternary_is_binarybert_tws(granularity, shape):
    rng = np.random.default_rng(sum(shape))
    w = (rng.standard_normal(shape) * 0.04).astype(np.float32)
    w1, w2 = split_ternary(w, granularity)
    r1, r2, ref_t = _binarybert_tws_split(torch.from_numpy(w), layerwise=granularity == "layer")
    np.testing.assert_allclose(w1, r1, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(w2, r2, rtol=1e-5, atol=1e-8)
    # the point of the operator: the two binarized planes sum to the ternarized weight
    planes = dequantize(*binarize(w1, granularity)) + dequantize(*binarize(w2, granularity))
    np.testing.assert_allclose(planes, ref_t, rtol=0, atol=1e-6)
    np.testing.assert_allclose(planes, dequantize(*ternarize(w, granularity)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(w1 + w2, w, rtol=0, atol=1e-7)


@pytest.mark.parametrize("granularity", ["layer", "row"])
def test_binarize_planes_recovers_two_plane_weights_exactly(granularity):
    rng = np.random.default_rng(3)
    n, k = 48, 40
    s1, s2 = rng.choice([-1, 1], (n, k)), rng.choice([-1, 1], (n, k))
    a1 = rng.uniform(0.01, 0.05, (n, 1)) if granularity == "row" else np.full((n, 1), 0.031)
    a2 = rng.uniform(0.005, 0.04, (n, 1)) if granularity == "row" else np.full((n, 1), 0.017)
    w = (a1 * s1 + a2 * s2).astype(np.float32)  # what a TWS-trained model holds after freezing (fp32 sums)
    p1, p2, b1, b2, exact = binarize_planes(w, granularity)
    assert exact
    got = dequantize(p1, b1) + dequantize(p2, b2)
    np.testing.assert_allclose(got, w, rtol=0, atol=1e-6 * np.abs(w).max())  # float rounding of a1 +- a2
    # a matrix of any other form: greedy residual binarization, better than one plane
    g = (rng.standard_normal((n, k)) * 0.03).astype(np.float32)
    q1, q2, c1, c2, exact = binarize_planes(g, granularity)
    assert not exact
    two = dequantize(q1, c1) + dequantize(q2, c2)
    one = dequantize(*binarize(g, granularity))
    assert np.abs(two - g).mean() < 0.75 * np.abs(one - g).mean()
    # restated: s1 = sign(W), alpha1 = mean|W|, then the residual
    axis = None if granularity == "layer" else 1
    r1 = np.where(g >= 0, 1, -1)
    al1 = np.abs(g).mean(axis=axis, keepdims=True)
    res = g - al1 * r1
    np.testing.assert_array_equal(q1, r1)
    np.testing.assert_array_equal(q2, np.where(res >= 0, 1, -1))


def _two_plane_linear_model(path, k=72, n=40, gemm=False):
    rng = np.random.default_rng(5)
    s1, s2 = rng.choice([-1, 1], (n, k)), rng.choice([-1, 1], (n, k))
    w = (0.029 * s1 + 0.012 * s2).astype(np.float32)  # [N, K]
    bias = rng.standard_normal(n).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", n])
    if gemm:  # a 2-D Gemm with transB=1 and its own bias, behind a Reshape
        nodes = [helper.make_node("Reshape", ["x", "flat"], ["x2"]),
                 helper.make_node("Gemm", ["x2", "W", "bias"], ["g"], transB=1),
                 helper.make_node("Shape", ["x"], ["xs"], end=-1),
                 helper.make_node("Concat", ["xs", "nn"], ["ys"], axis=0),
                 helper.make_node("Reshape", ["g", "ys"], ["y"])]
        inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(bias, "bias"),
                 numpy_helper.from_array(np.array([-1, k], np.int64), "flat"),
                 numpy_helper.from_array(np.array([n], np.int64), "nn")]
    else:
        nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "bias"], ["y"])]
        inits = [numpy_helper.from_array(w.T.copy(), "W"), numpy_helper.from_array(bias, "bias")]
    g = helper.make_graph(nodes, "two_planes", [x], [y], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return w, bias


@pytest.mark.parametrize("runtime", ["speed", "memory", "densest"])
@pytest.mark.parametrize("gemm", [False, True])
def test_pack_split_binary_computes_the_two_planes(tmp_path, runtime, gemm):
    import onnxruntime as ort

    from deploytool.passes.pack_weights import PackConfig, pack_file

    src, dst = tmp_path / "m.onnx", tmp_path / "p.onnx"
    w, bias = _two_plane_linear_model(src, gemm=gemm)
    before = src.read_bytes()
    kw = {"accuracy_level": 0} if runtime == "memory" else {}
    res = pack_file(src, dst, PackConfig(weights="split-binary", runtime=runtime, **kw))
    assert src.read_bytes() == before
    xx = np.random.default_rng(9).standard_normal((2, 3, w.shape[1])).astype(np.float32)
    want = xx @ w.T + bias  # numpy, from the planes the model was built from
    got = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"x": xx})[0]
    tol = 1e-4 if runtime == "memory" else 0.05 * np.abs(want).max()  # int8 activations elsewhere
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    stats = res.stats if hasattr(res, "stats") else res["stats"]
    assert stats["weights"] == "split-binary"
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert ("MatMulNBits" if runtime == "memory" else "DynamicQuantizeMatMul") in ops
    assert "MatMul" not in ops and "Gemm" not in ops


@pytest.mark.slow
def test_qat_tws_trains_splits_equivalently_and_packs(tmp_path):
    """`qat --mode binary --tws`: the split keeps the ternary model's predictions, the saved weights are
    exact two-plane sums at half width, and the packed split-binary ONNX model computes what PyTorch does."""
    import onnxruntime as ort

    from deploytool.export import ExportConfig, export
    from deploytool.passes.pack_weights import PackConfig, pack_file
    from deploytool.testing.tiny import fixed_inputs
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv
    from deploytool.train.checkpoint import load_classifier
    from deploytool.train.config import DataConfig, QATConfig, TrainConfig
    from deploytool.train.finetune import finetune
    from deploytool.train.qat import fake_quant_act, train_qat
    from deploytool.train.subnet import encoder_linears, subnet_forward
    from deploytool.variant import read_variant

    data = DataConfig(data=str(toy_csv(tmp_path / "toy.csv", n=400)), max_length=32)
    tiny_classifier_folder(tmp_path / "tiny", layers=4, hidden=32, heads=4, ffn=64)
    finetune(TrainConfig(model=str(tmp_path / "tiny"), output=tmp_path / "teacher", data=data, epochs=4, lr=3e-3,
                         batch_size=16, threads=1))
    r = train_qat(QATConfig(teacher=tmp_path / "teacher", output=tmp_path / "tws", data=data, mode="binary",
                            tws=True, epochs=2, lr=1e-3, batch_size=16, threads=1))
    t = r["tws"]
    assert t["split_dev"]["accuracy"] == t["ternary_dev"]["accuracy"]  # an equivalent binary model
    assert max(t["split_max_abs_diff"].values()) < 1e-6
    assert t["heads_per_layer"] == [2, 2, 2, 2] and t["ffn_size"] == 32
    assert r["training"]["stages"]["binary"]["steps"] > 0 and r["dev"]["accuracy"] >= 75
    m = load_classifier(tmp_path / "tws")
    for name, lin in encoder_linears(m).items():
        w = lin.weight.detach().numpy()
        assert w.shape[0] in (16, 32) and w.shape[1] in (16, 32), (name, w.shape)  # half width
        assert len(np.unique(np.abs(w))) <= 2, name
        assert binarize_planes(w, "layer")[4], name  # exactly two planes
    emb = m.bert.embeddings.word_embeddings.weight.detach().numpy()
    assert max(len(np.unique(np.abs(row))) for row in emb) <= 2
    export(ExportConfig(model=str(tmp_path / "tws"), task="sequence-classification"), tmp_path / "tws.onnx")
    x = fixed_inputs()
    args = [torch.from_numpy(x[k]) for k in ("input_ids", "attention_mask", "token_type_ids")]
    with torch.no_grad():
        fp_acts = subnet_forward(m, *args).logits.numpy()
        q_acts = subnet_forward(m, *args, act_fn=fake_quant_act).logits.numpy()
    for runtime, ref, tol in [("memory", fp_acts, 1e-4), ("speed", q_acts, 1e-3)]:
        dst = tmp_path / f"tws_{runtime}.onnx"
        kw = {"accuracy_level": 0} if runtime == "memory" else {}
        pack_file(tmp_path / "tws.onnx", dst, PackConfig(weights="split-binary", runtime=runtime, **kw))
        sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
        feed = {i.name: x[i.name] for i in sess.get_inputs()}
        got = sess.run(["logits"], feed)[0]
        assert np.abs(got - ref).max() < tol, (runtime, np.abs(got - ref).max())
        assert "Gather" in {n.op_type for n in onnx.load(str(dst)).graph.node}
        v = read_variant({p.key: p.value for p in onnx.load(str(dst)).metadata_props})
        assert v is not None and v.precision == "binary" and v.chain[-1] == f"pack(split-binary,{runtime})"


def test_tws_config_refusals():
    from deploytool.errors import ConfigError
    from deploytool.train.config import QATConfig

    with pytest.raises(ConfigError, match="mode binary"):
        QATConfig(mode="ternary", tws=True)
    with pytest.raises(ConfigError, match="tws_width"):
        QATConfig(mode="binary", tws=True, tws_width=0)
    with pytest.raises(ConfigError, match="only used with tws"):
        QATConfig(mode="binary", init="x")
