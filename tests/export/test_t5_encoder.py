"""T5 encoders (T5EncoderModel: sentence-t5, GTR, flan-T5's encoder): exported, inspected and quantized; the
structured passes refuse them in one line naming T5.

The reference is the PyTorch model itself (transformers' ``T5EncoderModel`` on the same batch), never a pass's own
rule; the T5 graphs are torch's own exports (TorchScript and dynamo) of a random tiny model, both FFN kinds (ReLU;
gated GELU, as flan-T5 and T5 v1.1).
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


def test_export_matches_pytorch_and_names_t5(t5):
    from deploytool.inspection import inspect_model

    model, res, _ = t5
    assert res.metadata["family"] == "t5" and res.metadata["head_size"] == "4" and res.metadata["ffn_size"] == "37"
    ids, mask = _batch()
    diff = np.abs(_ort_out(res.path, ids, mask) - _torch_out(model, ids, mask))[mask.astype(bool)].max()
    assert diff < 1e-4, diff
    report = inspect_model(res.path)
    assert report.family == "t5" or "t5" in str(report.structure_error), report


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
    result = transform(res.path, tmp_path / "pack.onnx", PackConfig(weights="ternary", pack_head=True))
    assert result.gate.verified
    assert len(onnx.load(str(tmp_path / "pack.onnx")).graph.initializer) < len(onnx.load(str(res.path)).graph.initializer) * 3


@pytest.mark.parametrize("config", ["slice", "prune-heads", "pack"])
def test_structured_passes_refuse_in_one_line_naming_t5(t5, config, tmp_path):
    from deploytool.passes import transform
    from deploytool.passes.pack_config import PackConfig
    from deploytool.passes.prune_heads import HeadPruneConfig
    from deploytool.passes.slice_subnetwork import SliceConfig

    _, res, _ = t5
    cfg = {"slice": SliceConfig(width=0.5), "prune-heads": HeadPruneConfig(heads={0: [0]}),
           "pack": PackConfig(weights="ternary")}[config]
    with pytest.raises(DeployError) as e:
        transform(res.path, tmp_path / "out.onnx", cfg)
    assert "\n" not in str(e.value) and "t5" in str(e.value).lower(), str(e.value)
    assert not (tmp_path / "out.onnx").exists()


def test_a_full_t5_checkpoint_exports_its_encoder_and_refuses_a_classifier(tmp_path):
    from deploytool.export import ExportConfig, Task, export

    _t5_folder(tmp_path / "hf", "relu", encoder_only=False)  # T5Model: encoder and decoder weights
    res = export(ExportConfig(model=str(tmp_path / "hf")), tmp_path / "enc.onnx")
    assert [i.name for i in onnx.load(str(res.path)).graph.input] == ["input_ids", "attention_mask"]
    with pytest.raises(DeployError, match="encoder-decoder model .*t5.*feature-extraction"):
        export(ExportConfig(model=str(tmp_path / "hf"), task=Task.SEQUENCE_CLASSIFICATION), tmp_path / "cls.onnx")
    assert not (tmp_path / "cls.onnx").exists()
