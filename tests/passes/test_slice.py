"""DynaBERT slicing: configs, layer selection, ONNX vs the PyTorch reference, file size, fusion afterwards."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from deploytool.errors import ConfigError
from deploytool.passes.slice_subnetwork import SliceConfig, depth_keep, slice_file, width_keep
from deploytool.testing import reference as ref
from deploytool.testing.prune_cases import max_diff, run_bytes
from deploytool.testing.tiny import fixed_inputs

# the same shapes as the sweep's bases, so the session-cached exports are shared
SHAPES = {"torch": dict(layers=3, hidden=32, heads=4, ffn=48, seed=1),
          "dynamo": dict(layers=3, hidden=24, heads=3, ffn=40, seed=2)}
SHAPE = SHAPES["torch"]
LENGTHS = [(8, 5, 3), (16, 1), (4,)]


@pytest.mark.parametrize("field,value", [("width", 0), ("width", 1.5), ("width", math.nan), ("width", -1),
                                         ("depth", 0), ("depth", 2), ("depth", math.inf), ("width", "0.5"),
                                         ("depth", True)])
def test_config_refuses(field, value):
    with pytest.raises(ConfigError) as e:
        SliceConfig(**{field: value})
    assert str(e.value).startswith(f"{field}: expected a number in (0, 1], got ")


def test_config_accepts_range():
    assert SliceConfig(0.5, 0.75) == SliceConfig(width=0.5, depth=0.75)
    assert SliceConfig(1, 1).width == 1


def test_depth_rule_matches_dynabert():
    assert depth_keep(0.5, 12) == [0, 2, 4, 6, 8, 10]
    assert depth_keep(0.75, 12) == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert depth_keep(1.0, 6) == list(range(6))
    assert depth_keep(0.25, 12) == [0, 4, 8]
    assert depth_keep(0.04, 12) == []
    assert depth_keep(0.75, 6) == [0, 1, 2, 4]  # round(4.5) = 4: Python's round, as DynaBERT's code
    for L in range(1, 25):
        for d in np.linspace(0.05, 1, 20):
            keep = depth_keep(float(d), L)
            assert keep == sorted(set(keep)) and all(0 <= i < L for i in keep)


def test_width_rounds_to_heads():
    assert [width_keep(w, 12) for w in (0.25, 0.5, 0.75, 1.0)] == [3, 6, 9, 12]
    # Python's round (ties to even), as DynaBERT's code: round(1.2) = 1, round(1.5) = 2, round(2.5) = 2
    assert width_keep(0.3, 4) == 1 and width_keep(0.375, 4) == 2 and width_keep(0.625, 4) == 2
    assert width_keep(0.625, 4, "half-up") == 3


@pytest.mark.parametrize("exporter", ["torch", "dynamo"])
@pytest.mark.parametrize("w,d", [(0.5, 0.75), (0.75, 1.0), (0.25, 0.5)])
def test_slice_file_matches_reference(tiny_onnx, tiny_torch_model, tmp_path, exporter, w, d):
    shape = SHAPES[exporter]
    src = tiny_onnx("bert", exporter=exporter, **shape)
    dst = tmp_path / "s.onnx"
    res = slice_file(src, dst, SliceConfig(w, d))
    proto = onnx.load(str(dst))
    onnx.checker.check_model(proto, full_check=True)
    model = tiny_torch_model("bert", **shape)
    sliced = ref.slice_reference(model, w, d)
    for lengths in LENGTHS:
        feeds = fixed_inputs(lengths=lengths, seed=len(lengths))
        assert max_diff(run_bytes(dst.read_bytes(), feeds), ref.torch_outputs(sliced, feeds)) <= 1e-4
    s = res.to_dict()  # the flat JSON form: typed counts, sizes and gate with the details
    assert s["layers_after"] == len(depth_keep(d, 3)) and s["layers_kept"] == depth_keep(d, 3)
    h = shape["heads"]
    assert s["heads_per_layer"] == [width_keep(w, h)] * s["layers_after"]
    assert s["width_effective"] == pytest.approx(width_keep(w, h) / h, abs=1e-6) and "DynaBERT" in s["width_note"]
    assert s["rounding"] == "dynabert" and s["layers_kept"] == ref.dynabert_kept_layers(d, 3)
    kh, kf = ref.slice_counts(w, h, shape["ffn"])  # the reference's copy of DynaBERT's rule
    n = len(s["layers_kept"])
    assert s["heads_per_layer"] == [kh] * n and s["neurons_per_layer"] == [kf] * n
    removed = ref.num_params(model) - ref.num_params(sliced)
    assert s["params_before"] - s["params_after"] == removed
    # the file shrinks by the removed fp32 parameters plus the removed nodes' own protobuf bytes
    shrink = s["bytes_before"] - s["bytes_after"]
    structure_bytes = _non_weight_bytes(onnx.load(str(src))) - _non_weight_bytes(proto)
    assert abs(shrink - 4 * removed - structure_bytes) <= 0.005 * 4 * removed + 256, (shrink, 4 * removed)
    # the architecture metadata follows the new shape
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["deploytool.num_layers"] == str(s["layers_after"])
    assert meta["deploytool.heads_per_layer"] == ",".join(map(str, s["heads_per_layer"]))


def _non_weight_bytes(proto) -> int:
    """Serialized size minus the float weights' data (node protos, names, shape constants...)."""
    big = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) > 1]
    return proto.ByteSize() - sum(len(t.raw_data) or 4 * len(t.float_data) for t in big)


def test_slice_cli_prints_counts(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", exporter="torch", **SHAPE)
    out = tmp_path / "cli.onnx"
    res = CliRunner().invoke(__import__("deploytool.cli", fromlist=["main"]).main,
                             ["slice", str(src), "--width", "0.5", "--depth", "0.75", "-o", str(out)])
    assert res.exit_code == 0, res.output + res.stderr
    assert out.exists()
    assert "heads   12 -> 4" in res.output and "layers  3 -> 2" in res.output
    assert "multiple of 1/heads" in res.output


def test_sliced_model_still_fuses(tiny_onnx, tiny_torch_model, tmp_path):
    """ORT's transformer optimizer fuses every sliced layer into Attention, with per-layer head counts."""
    from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file
    from deploytool.runtime.fuse import fuse_transformer

    src = tiny_onnx("bert", exporter="torch", **SHAPE)
    pruned = tmp_path / "p.onnx"
    heads = {0: [1], 1: [0, 2, 3]}  # 3, 1, 4 heads left
    prune_heads_file(src, pruned, HeadPruneConfig(heads=heads))
    fused = tmp_path / "f.onnx"
    # num_heads=0: ORT detects each layer's head count from its own Reshape constants
    fres = fuse_transformer(pruned, fused, num_heads=0, hidden_size=0)
    attn = [n for n in onnx.load(str(fused)).graph.node if n.op_type == "Attention"]
    assert len(attn) == 3, fres.fused_ops
    got = sorted(a.i for n in attn for a in n.attribute if a.name == "num_heads")
    assert got == [1, 3, 4]
    model = ref.prune_heads_reference(tiny_torch_model("bert", **SHAPE), heads)
    feeds = fixed_inputs(lengths=(8, 5, 3))
    assert max_diff(run_bytes(fused.read_bytes(), feeds), ref.torch_outputs(model, feeds)) <= 1e-4


def test_slice_with_deduplicated_zero_biases(tmp_path, tiny_torch_model):
    """A freshly initialised model has equal (zero) biases; the TorchScript exporter then feeds them
    through Identity nodes of one shared initializer. Each layer must get its own sliced copy."""
    import torch

    from deploytool.export import ExportConfig, export_loaded

    shape = dict(layers=2, hidden=32, heads=4, ffn=48, seed=8)
    model = tiny_torch_model("bert", **shape)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
    src = tmp_path / "zero_bias.onnx"
    export_loaded(model, src, ExportConfig(model="tiny", exporter="torch"))
    assert any(n.op_type == "Identity" for n in onnx.load(str(src)).graph.node)
    dst = tmp_path / "s.onnx"
    slice_file(src, dst, SliceConfig(0.5, 0.5))
    feeds = fixed_inputs(lengths=(8, 5, 3))
    want = ref.torch_outputs(ref.slice_reference(model, 0.5, 0.5), feeds)
    assert max_diff(run_bytes(dst.read_bytes(), feeds), want) <= 1e-4


def test_inspect_reports_sliced_counts(tiny_onnx, tmp_path):
    from deploytool.inspection import inspect_model

    src = tiny_onnx("bert", exporter="torch", **SHAPE)
    from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file

    prune_heads_file(src, tmp_path / "h.onnx", HeadPruneConfig(heads={1: [0, 1]}))
    slice_file(tmp_path / "h.onnx", tmp_path / "s.onnx", SliceConfig(width=0.75, depth=0.75))
    rep = inspect_model(tmp_path / "s.onnx").to_dict()
    # layer 0: 4 heads -> round(0.75*4) = 3; layer 1 (2 heads left) -> round(1.5) = 2 (ties to even);
    # layer 2 dropped (round(0.75*3) = 2 layers). FFN follows each layer's applied head width, as
    # DynaBERT's round_to_nearest(F, w, H): int(3/4*48) = 36 in layer 0, int(2/2*48) = 48 in layer 1
    assert rep["heads_per_layer"] == [3, 2]
    assert rep["ffn_per_layer"] == [36, 48]


def test_depth_slice_of_deberta_torchscript_drops_the_layers_weights(tmp_path):
    """TorchScript's export of DeBERTa (v1) shares layer 1's Shape reads of its Q among the later layers' reshapes:
    a depth slice dropping layer 1 kept its in_proj MatMul (and weights) to compute that shape. The kept graph now
    reads the same tensor of a kept layer of the same build: no weight of a dropped layer is left, and the outputs
    are those of the smaller PyTorch model."""
    import onnx
    import torch

    from deploytool.passes import transform
    from deploytool.runtime.infer import run_onnx
    from deploytool.testing import conformance as C

    case = C.MODEL_BY_NAME["deberta"]
    base = C.build_model(case)
    src = C.export(case, "torchscript-17", tmp_path / "x")
    m = onnx.load(str(src))
    dropped_weights = {n.input[1] for n in m.graph.node if n.op_type == "MatMul"
                       and any(f"layer.{i}/" in n.name for i in (1, 3))} & {t.name for t in m.graph.initializer}
    assert any("layer.1/attention/self/in_proj/MatMul" in n.name for n in m.graph.node) and dropped_weights
    dst = tmp_path / "sliced.onnx"
    transform(src, dst, C.step_config(case, "slice-1-0.5", 0, tmp_path))
    out = onnx.load(str(dst))
    assert not [n.name for n in out.graph.node if "in_proj/MatMul" in n.name and "layer.1/" in n.name]
    assert not dropped_weights & {t.name for t in out.graph.initializer}
    f = C.feeds(case, declared=C.declared_inputs(src))
    ref, _ = C.reference(case, "slice-1-0.5", base)
    with torch.no_grad():
        status, diff, detail = C.compare(run_onnx(dst, f), C.torch_outputs(ref, f), "slice-1-0.5")
    assert status == "equal", (diff, detail)
