"""T5 encoders (T5EncoderModel: sentence-t5, GTR, flan-T5's encoder): exported, inspected, and every pass run on
them, each output checked against the PyTorch model edited by transformers itself.

T5's layers differ from BERT's in four ways the finder reads: pre-norm layers with T5's RMS norm
(``w * x / sqrt(mean(x^2) + eps)``, decomposed in the export, fused by ORT's optimizer), no biases and no score
scale, a relative-position bias computed in the first layer with the padding mask added to it once and the sum
added to every layer's scores (a head edit gathers each layer's kept heads of it), and, in T5 v1.1 / flan-T5, a
gated FFN with two projections ``wo(gelu(wi_0 x) * wi_1 x)``. References: transformers' own ``prune_heads``
(``T5Attention.prune_heads``, which masks the shared bias per layer the same way), ``prune_linear_layer`` on
``wi``/``wi_0``/``wi_1``/``wo`` for FFN neurons, and DynaBERT's rule restated for slicing (heads ``round(w H)``,
neurons ``int(round(w H) / H * F)``, layers ``floor(i / d)`` for ``i < round(d L)``): never a pass's own rule.
The graphs are torch's own exports (TorchScript and dynamo) of a random tiny model, both FFN kinds, as exported
and after ONNX Runtime's optimizer (level 99: its fused RMS norm).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from deploytool.errors import DeployError

torch = pytest.importorskip("torch")
tr = pytest.importorskip("transformers")

VOCAB = 120


def _t5_folder(path, ff: str, encoder_only: bool = True):
    cfg = tr.T5Config(vocab_size=VOCAB, d_model=24, d_kv=4, d_ff=37, num_layers=3, num_heads=6,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj=ff,
                      dropout_rate=0.0)
    torch.manual_seed(0)
    model = (tr.T5EncoderModel if encoder_only else tr.T5Model)(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(path)
    return tr.T5EncoderModel.from_pretrained(path).eval()


def _batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (2, 11)).astype(np.int64)
    mask = np.ones((2, 11), np.int64)
    mask[1, 7:] = 0
    return ids, mask


def _torch_out(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()


def _ort_out(path, ids, mask):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def _min_cosine(a, b, mask):
    a, b = a[mask.astype(bool)], b[mask.astype(bool)]
    return float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).min())


@pytest.fixture(scope="module", params=[("relu", "torch"), ("gated-gelu", "dynamo")], ids=lambda p: "-".join(p))
def t5(request, tmp_path_factory):
    from deploytool.export import ExportConfig, export

    ff, exporter = request.param
    work = tmp_path_factory.mktemp(f"t5-{ff}")
    model = _t5_folder(work / "hf", ff)
    res = export(ExportConfig(model=str(work / "hf"), exporter=exporter), work / "t5.onnx")
    return model, res, work


def _ort_optimized(src, dst):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return dst


def _keep_neurons(model, keep: dict[int, list[int]]) -> None:
    from transformers.pytorch_utils import prune_linear_layer

    for i, kept in keep.items():
        ff = model.encoder.block[i].layer[1].DenseReluDense
        idx = torch.tensor(kept)
        for name in ("wi", "wi_0", "wi_1"):
            if hasattr(ff, name):
                setattr(ff, name, prune_linear_layer(getattr(ff, name), idx, 0))
        ff.wo = prune_linear_layer(ff.wo, idx, 1)


def _sliced(model, width: float, depth: float):
    """DynaBERT's sub-network, restated: the first round(w H) heads, int(round(w H) / H F) neurons, and layers
    floor(i / d) for i < round(d L)."""
    import copy
    import math

    m = copy.deepcopy(model)
    cfg = m.config
    heads, ffn, layers = cfg.num_heads, cfg.d_ff, cfg.num_layers
    kh = round(width * heads)
    if kh < heads:
        m.prune_heads({i: list(range(kh, heads)) for i in range(layers)})
    _keep_neurons(m, {i: list(range(int(kh / heads * ffn))) for i in range(layers)})
    m.encoder.block = torch.nn.ModuleList([m.encoder.block[math.floor(i / depth)] for i in range(round(depth * layers))])
    return m


def test_export_matches_pytorch_and_names_t5(t5):
    from deploytool.inspection import inspect_model

    model, res, _ = t5
    assert res.metadata["family"] == "t5" and res.metadata["head_size"] == "4" and res.metadata["ffn_size"] == "37"
    ids, mask = _batch()
    diff = np.abs(_ort_out(res.path, ids, mask) - _torch_out(model, ids, mask))[mask.astype(bool)].max()
    assert diff < 1e-4, diff
    report = inspect_model(res.path)
    assert report.family == "t5" and report.structure_error is None, report.structure_error


@pytest.mark.parametrize("fusion", ["attention", "onnx"])
def test_int8_runs_is_standard_onnx_and_stays_near_pytorch(t5, fusion, tmp_path):
    """ORT's optimizer fuses T5's RMS norm into its own ``SimplifiedLayerNormalization`` (which ``onnx.checker``
    rejects: int8 failed on every T5); the written file has standard ops, which ORT fuses again on load."""
    from deploytool.passes import transform
    from deploytool.passes.quantize_int8 import Int8Config

    model, res, _ = t5
    out = tmp_path / "int8.onnx"
    result = transform(res.path, out, Int8Config(fusion=fusion))
    assert result.gate.verified
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert not any(n.op_type == "SimplifiedLayerNormalization" for n in proto.graph.node)
    assert sum(n.op_type in ("DynamicQuantizeMatMul", "MatMulInteger", "QAttention") for n in proto.graph.node) > 0
    ids, mask = _batch()
    assert _min_cosine(_ort_out(out, ids, mask), _torch_out(model, ids, mask), mask) > 0.97


def test_fp16_and_pack_run(t5, tmp_path):
    from deploytool.passes import transform
    from deploytool.passes.fp16 import Fp16Config
    from deploytool.passes.pack_config import PackConfig

    model, res, _ = t5
    ids, mask = _batch()
    transform(res.path, tmp_path / "fp16.onnx", Fp16Config())
    assert _min_cosine(_ort_out(tmp_path / "fp16.onnx", ids, mask), _torch_out(model, ids, mask), mask) > 0.999
    # pack checks itself against the input with the quantizer's weights (its gate); every projection packed
    result = transform(res.path, tmp_path / "pack.onnx", PackConfig(weights="ternary"))
    assert result.gate.verified
    assert len(onnx.load(str(tmp_path / "pack.onnx")).graph.initializer) < len(onnx.load(str(res.path)).graph.initializer) * 3


@pytest.mark.parametrize("optimized", [False, True], ids=["export", "ort99"])
def test_structure_passes_equal_transformers_own_surgery(t5, optimized, tmp_path):
    """prune-heads (layer 0, whose attention computes the shared bias, and a later one), prune-ffn, reorder and
    four slices, each output equal to the PyTorch model edited by transformers (see the module docstring)."""
    import copy

    from deploytool.passes import transform
    from deploytool.passes.prune_ffn import FFNPruneConfig
    from deploytool.passes.prune_heads import HeadPruneConfig
    from deploytool.passes.reorder import ReorderConfig
    from deploytool.passes.slice_subnetwork import SliceConfig

    model, res, _ = t5
    src = _ort_optimized(res.path, tmp_path / "ort99.onnx") if optimized else res.path
    ids, mask = _batch()
    rows = mask.astype(bool)

    def check(name, cfg, reference):
        out = tmp_path / f"{name}.onnx"
        transform(src, out, cfg)
        diff = np.abs(_ort_out(out, ids, mask) - _torch_out(reference, ids, mask))[rows].max()
        assert diff < 1e-4, (name, diff)

    heads = copy.deepcopy(model)
    heads.prune_heads({0: [2, 5], 1: [0]})
    check("prune-heads", HeadPruneConfig(heads={0: [2, 5], 1: [0]}), heads)
    neurons = copy.deepcopy(model)
    _keep_neurons(neurons, {0: [j for j in range(37) if j not in (0, 5, 7)], 2: list(range(20, 37))})
    check("prune-ffn", FFNPruneConfig(neurons={0: [0, 5, 7], 2: list(range(20))}), neurons)
    check("reorder", ReorderConfig(), model)
    for w, d in [(0.5, 0.75), (0.75, 0.5), (1.0, 0.5), (0.5, 1.0)]:
        check(f"slice-{w}-{d}", SliceConfig(width=w, depth=d), _sliced(model, w, d))


def test_a_full_t5_checkpoint_exports_its_encoder_and_refuses_a_classifier(tmp_path):
    from deploytool.export import ExportConfig, Task, export

    _t5_folder(tmp_path / "hf", "relu", encoder_only=False)  # T5Model: encoder and decoder weights
    res = export(ExportConfig(model=str(tmp_path / "hf")), tmp_path / "enc.onnx")
    assert [i.name for i in onnx.load(str(res.path)).graph.input] == ["input_ids", "attention_mask"]
    with pytest.raises(DeployError, match="encoder-decoder model .*t5.*feature-extraction"):
        export(ExportConfig(model=str(tmp_path / "hf"), task=Task.SEQUENCE_CLASSIFICATION), tmp_path / "cls.onnx")
    assert not (tmp_path / "cls.onnx").exists()
