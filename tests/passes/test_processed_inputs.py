"""Already-processed inputs: int8 (QOperator and QDQ), fp16 and packed models as users bring them.

The conformance tiny BERT (4 layers, hidden 24, 6 heads, FFN 40) exported by optimum, as exported
and after ONNX Runtime's transformer optimizer at opt_level 99, is processed by deploytool's own
passes and by ONNX Runtime's tools:

- int8: ``Int8Config()`` (QOperator: MatMulInteger / DynamicQuantizeMatMul, QAttention after fusion),
  ``quantize_dynamic`` (QOperator, per-channel scales) and ``quantize_static`` in the QDQ format
  (DequantizeLinear feeding the MatMul weights, calibrated on random padded batches);
- fp16: ``Fp16Config()`` and ORT's ``convert_float_to_float16(keep_io_types=True)``;
- packed: ternary for speed (INT2 + DynamicQuantizeMatMul), ternary for memory (MatMulNBits), binary.

For each: ``inspect`` reads the same structure and the same parameter counts by role as the fp32
export (stored int8 / INT2 / packed / fp16 weights count as their logical parameters) with the
storage bits each format really has; slicing, head and FFN pruning and reorder either work and
match an independent PyTorch reference (fp16: within 1e-2 of the fp32 reference) or are refused in
one line naming the reason (quantized and packed projections), never with a traceback or a wrong
model; the input file is never modified. Each variant is built once per module.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import warnings

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import DeployError
from deploytool.passes import transform
from deploytool.passes.fp16 import Fp16Config
from deploytool.passes.pack_weights import PackConfig
from deploytool.passes.prune_ffn import FFNPruneConfig
from deploytool.passes.prune_heads import HeadPruneConfig
from deploytool.passes.quantize_int8 import Int8Config
from deploytool.passes.reorder import ReorderConfig
from deploytool.passes.slice_subnetwork import SliceConfig
from deploytool.runtime.infer import run_onnx
from deploytool.testing import conformance as C

CASE = C.MODEL_BY_NAME["bert"]
BASES = ("optimum", "optimum-O99")
QOPERATOR = ("deploytool-int8", "ort-dynamic")
QDQ = ("ort-qdq",)
FP16 = ("deploytool-fp16", "ort-fp16")
PACKED = ("ternary-speed", "ternary-memory", "binary")
VARIANTS = QOPERATOR + QDQ + FP16 + PACKED
PASSES = ("slice", "prune-heads", "prune-ffn", "reorder")
# encoder projection weights: Q, K, V, O [H, H] and the two FFN matrices [H, F] per layer
ENCODER_WEIGHTS = C.LAYERS * (4 * C.HIDDEN * C.HIDDEN + 2 * C.HIDDEN * C.FFN)
FP16_TOL = 1e-2
FP16_MEAN_TOL = 2e-3
# storage bits per parameter of each reported dtype (the report's bits_per_param for plain tensors)
PLAIN_BITS = {"fp32": 32.0, "fp16": 16.0, "int8": 8.0, "uint8": 8.0, "int32": 32.0}
HEADS_REMOVED = {0: [1]}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Calibration:
    """A few random padded batches (what a user's CalibrationDataReader yields)."""

    def __init__(self, names: list[str]) -> None:
        batches = [C.feeds(CASE, lengths=lengths, seed=seed)
                   for seed, lengths in enumerate([(8, 5, 3), (6, 6), (7, 2, 4, 1)])]
        self._it = iter([{k: v for k, v in f.items() if k in names} for f in batches])

    def get_next(self):
        return next(self._it, None)


def _make(src, name: str, dst) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.transformers.float16 import convert_float_to_float16

    configs = {"deploytool-int8": Int8Config(), "deploytool-fp16": Fp16Config(check_host=False),
               "ternary-speed": PackConfig(weights="ternary"),
               "ternary-memory": PackConfig(weights="ternary", runtime="memory"),
               "binary": PackConfig(weights="binary")}
    if name in configs:
        transform(src, dst, configs[name])
        return
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # ORT's fused graphs need it (FACTS.md)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT's quantizer logs "consider pre-processing" on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "ort-dynamic":
                quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                                 extra_options=extra)
            elif name == "ort-qdq":
                names = [i.name for i in onnx.load(str(src)).graph.input]
                quantize_static(str(src), str(dst), _Calibration(names), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                extra_options=extra)
            elif name == "ort-fp16":
                onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))
            else:
                raise ValueError(name)
    finally:
        root.setLevel(level)


@pytest.fixture(scope="module")
def torch_model():
    """The PyTorch model C.export exported (same seed): the fp32 reference."""
    return C.build_model(CASE)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("processed_inputs")


@pytest.fixture(scope="module")
def bases(work):
    src = C.export(CASE, "optimum", work / "exports")
    return {"optimum": src, "optimum-O99": C.optimize(src, 99, work / f"{src.stem}.O99.onnx")}


@pytest.fixture(scope="module")
def fp32_reports(bases):
    from deploytool.inspection import inspect_model

    return {b: inspect_model(p) for b, p in bases.items()}


@pytest.fixture(scope="module")
def variant(bases, work):
    """Factory: ``variant(base, name) -> Path``, built once per module; read-only for callers."""
    cache = {}

    def make(base: str, name: str):
        if (base, name) not in cache:
            dst = work / f"{bases[base].stem}.{name}.onnx"
            _make(bases[base], name, dst)
            cache[base, name] = dst
        return cache[base, name]

    return make


def _inspect_json(path) -> dict:
    res = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("base", BASES)
def test_inspect_reads_the_fp32_structure_and_counts(bases, fp32_reports, variant, base, name):
    path = variant(base, name)
    ref = fp32_reports[base]
    d = _inspect_json(path)
    assert d["structure_error"] is None
    assert (d["family"], d["num_layers"], d["hidden_size"]) == ("bert", C.LAYERS, C.HIDDEN)
    assert d["heads_per_layer"] == [C.HEADS] * C.LAYERS and d["ffn_per_layer"] == [C.FFN] * C.LAYERS
    assert ref.params_by_role["other"] == 0 and ref.total_params > ENCODER_WEIGHTS
    # stored int8 / int32 / INT2 / packed uint8 / fp16 weights count as their logical parameters
    assert d["params_by_role"] == ref.params_by_role
    assert d["total_params"] == ref.total_params
    dtypes = d["weights_by_dtype"]
    assert sum(e["params"] for e in dtypes.values()) == ref.total_params
    ops = _ops(path)
    packed = {k: e for k, e in dtypes.items() if k.startswith("packed-")}
    plain = {k: e for k, e in dtypes.items() if not k.startswith("packed-")}
    for k, e in plain.items():  # plain tensors: exactly their dtype's width
        assert e["bits_per_param"] == PLAIN_BITS[k], (k, e)
    if name in QOPERATOR:
        assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}, ops
        # every projection is int8 (the native int8 writer also stores the word embedding table int8)
        assert not packed and dtypes["int8"]["params"] in (ENCODER_WEIGHTS, ENCODER_WEIGHTS + C.VOCAB * C.HIDDEN)
    elif name in QDQ:
        assert "DequantizeLinear" in ops and "MatMulInteger" not in ops
        assert not packed and dtypes["int8"]["params"] > 0  # ORT leaves some fused-graph MatMuls in fp32
    elif name in FP16:
        assert "Cast" in ops  # keep_io_types: fp32 outputs, int64 ids
        assert set(dtypes) == {"fp16"} and dtypes["fp16"]["params"] == ref.total_params
    else:
        assert not (set(plain) - {"fp32"})  # LayerNorms, biases, position/token-type tables stay fp32
        assert sum(e["params"] for e in packed.values()) >= ENCODER_WEIGHTS
        if name == "ternary-memory":
            assert "MatMulNBits" in ops
        for k, e in packed.items():
            # nominal bits of the scheme plus one fp32 scale per matrix, row or block (and MatMulNBits'
            # padding of K=24/40 to blocks of 32/64: up to 4 bits at this tiny size); the word table has one
            # fp32 scale per row of HIDDEN values (32 / 24 = 1.33 bits each here), and since fused embedding
            # nodes get the packed table too (ORT O2/O99 graphs), it counts in every case
            nominal = {"packed-ternary2": 2.0, "packed-trit5": 1.6, "packed-binary1": 1.0}[k]
            most = {"ternary-speed": 3.0, "ternary-memory": 4.0, "binary": 1.0 + 32 / C.HIDDEN}[name]
            assert nominal <= e["bits_per_param"] <= most, (k, e)
        assert all(k.startswith("packed-binary") for k in packed) == (name == "binary")


def _fp32_reference(pass_name: str, torch_model, src, dst):
    """An independent PyTorch model computing what the pass should have produced."""
    if pass_name == "slice":
        return C.reference(CASE, "slice-0.5-0.75", torch_model)[0]
    m = copy.deepcopy(torch_model)
    if pass_name == "prune-heads":
        m.prune_heads(HEADS_REMOVED)  # transformers' own head removal
        return m
    if pass_name == "prune-ffn":  # which neurons the magnitude ranking kept, read from the two files
        import torch

        for layer, keep in zip(m.encoder.layer, _kept_neurons(src, dst)):
            assert len(keep) == round(0.5 * C.FFN) and keep == sorted(set(keep))
            idx = torch.as_tensor(keep)
            for path, dim in (("intermediate", 0), ("output", 1)):
                old = getattr(layer, path).dense
                new = torch.nn.Linear(old.in_features if dim == 0 else len(keep),
                                      len(keep) if dim == 0 else old.out_features)
                with torch.no_grad():
                    new.weight.copy_(old.weight.index_select(dim, idx))
                    new.bias.copy_(old.bias[idx] if dim == 0 else old.bias)
                getattr(layer, path).dense = new
        return m
    raise ValueError(pass_name)


def _kept_neurons(src, dst) -> list[list[int]]:
    """Per layer, the input FFN neurons whose intermediate weights appear in the output file."""
    from deploytool import onnx_io
    from deploytool.graph.structure import find_structure
    from deploytool.passes._surgery import get_array

    def rows(lin):  # [out, in]
        w = get_array(lin.weight)
        return w.T if lin.layout == "in_out" else w

    a, b = (find_structure(onnx_io.load_model(p)) for p in (src, dst))
    out = []
    for la, lb in zip(a.layers, b.layers):
        wa, wb = rows(la.ffn.intermediate), rows(lb.ffn.intermediate)
        out.append([int(np.flatnonzero((wa == r).all(axis=1))[0]) for r in wb])
    return out


def _config(pass_name: str):
    return {"slice": SliceConfig(0.5, 0.75), "prune-heads": HeadPruneConfig(heads=HEADS_REMOVED),
            "prune-ffn": FFNPruneConfig(keep=0.5), "reorder": ReorderConfig()}[pass_name]


def _diff(got: dict, want: dict) -> tuple[float, float]:
    """(max, mean) |got - want| over the outputs both have."""
    common = [k for k in want if k in got]
    assert "last_hidden_state" in common, (sorted(got), sorted(want))
    worst, mean = 0.0, 0.0
    for k in common:
        a, b = got[k].astype(np.float64), want[k].astype(np.float64)
        assert a.shape == b.shape, (k, a.shape, b.shape)
        assert np.all(np.isfinite(a)), k
        worst = max(worst, float(np.max(np.abs(a - b))))
        mean = max(mean, float(np.mean(np.abs(a - b))))
    return worst, mean


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("base", BASES)
def test_structured_passes_work_or_refuse(variant, torch_model, work, base, name, pass_name):
    src = variant(base, name)
    before = _sha(src)
    dst = work / f"{src.stem}.{pass_name}.onnx"
    if name not in FP16:  # quantized or packed projections: refused in one line, nothing written
        with pytest.raises(DeployError) as info:
            transform(src, dst, _config(pass_name))
        msg = str(info.value)
        assert "\n" not in msg and "Traceback" not in msg
        assert msg.startswith("layer 0: ") and "float model before quantizing" in msg, msg
        reason = {"ort-qdq": "INT8 (QDQ-quantized: DequantizeLinear)"}.get(name, "quantized or packed")
        assert reason in msg, msg
        assert not dst.exists()
        assert _sha(src) == before
        return
    result = transform(src, dst, _config(pass_name))
    assert _sha(src) == before
    assert result.gate.verified is True
    f = C.feeds(CASE)
    got = run_onnx(dst, f)
    assert next(iter(got.values())).dtype == np.float32  # keep_io_types: fp32 outputs
    if pass_name == "reorder":  # a permutation: the fp16 input's own outputs (the gate checked 1e-4 too)
        assert result.modified  # magnitude order differs from the stored order
        assert _diff(got, run_onnx(src, f))[0] <= 1e-3
        return
    want = C.torch_outputs(_fp32_reference(pass_name, torch_model, src, dst), f)
    worst, mean = _diff(got, want)
    # fp16 rounding: max <= 1e-2 of the fp32 reference; the mean separates a right from a wrong edit
    # (removing another head of layer 0 instead: mean 4e-3 to 6e-3, the right one 6e-4)
    assert worst <= FP16_TOL and mean <= FP16_MEAN_TOL, (worst, mean)
    heads = {"slice": [3] * 3, "prune-heads": [C.HEADS - 1] + [C.HEADS] * (C.LAYERS - 1),
             "prune-ffn": [C.HEADS] * C.LAYERS}[pass_name]
    assert result.counts.heads_per_layer == heads
