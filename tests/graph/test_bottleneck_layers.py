"""MobileBERT's bottleneck layers as the structure finder reads them, and what the passes do with them.

The numbers (every pass equal to transformers' ``prune_heads`` / module surgery / DynaBERT's rule) are
checked in ``tests/e2e/test_conformance.py``; here: the structure itself, the layer-wide numbering of the
stacked FFNs' neurons, refusals, and inspect's accounting of the bottleneck projections.
"""

from __future__ import annotations

import onnx_ir as ir
import pytest

from deploytool.errors import DeployError
from deploytool.graph.structure import find_structure
from deploytool.testing import conformance as C


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("mobilebert")
    out = {}
    for name in ("mobilebert", "mobilebert-ln"):
        case = C.MODEL_BY_NAME[name]
        out[name] = (C.export(case, "torchscript-17", work), C.build_model(case))
    return out


@pytest.mark.parametrize("name", ["mobilebert", "mobilebert-ln"])
def test_structure_matches_the_pytorch_modules(exported, name):
    path, model = exported[name]
    st = find_structure(ir.load(str(path)))
    cfg = model.config
    assert st.family == "mobilebert"
    assert st.num_layers == cfg.num_hidden_layers
    assert st.hidden_size == cfg.hidden_size  # the wide stream between layers, not the bottleneck
    for layer, mod in zip(st.layers, model.encoder.layer):
        att = layer.attention
        assert att.num_heads == cfg.num_attention_heads
        assert att.all_head_size == mod.attention.self.all_head_size
        assert len(layer.ffns) == cfg.num_feedforward_networks
        assert [f.width for f in layer.ffns] == [cfg.intermediate_size] * cfg.num_feedforward_networks
        assert layer.ffn is layer.ffns[-1] and layer.ffn_width == cfg.intermediate_size * len(layer.ffns)
        # input bottleneck (+ the shared Q/K bottleneck when Q/K do not read it) + the output bottleneck
        shared_qk = cfg.key_query_shared_bottleneck and not cfg.use_bottleneck_attention
        assert len(layer.bottlenecks) == (3 if shared_qk else 2)
        assert [(b.in_features, b.out_features) for b in layer.bottlenecks] == (
            [(cfg.hidden_size, cfg.intra_bottleneck_size)] * (2 if shared_qk else 1)
            + [(cfg.true_hidden_size, cfg.hidden_size)])
        # V reads the wide layer input when Q and K share their own bottleneck
        v_in = att.v.node.inputs[0]
        assert (v_in is layer.input) == shared_qk
    # every projection is in a layer except the embedding transformation and the pooler
    assert len(st.other_linears) == 2


def test_stacked_ffn_neurons_are_numbered_across_the_layer(exported, tmp_path):
    from deploytool.passes import transform
    from deploytool.passes.prune_ffn import FFNPruneConfig

    path, model = exported["mobilebert"]
    f = model.config.intermediate_size
    # every neuron of the first FFN of layer 0: refused in one line naming that FFN, nothing written
    dst = tmp_path / "x.onnx"
    with pytest.raises(DeployError, match=r"layer 0: removing all 40 neurons of FFN 0 \(neurons 0\.\.39\)"):
        transform(path, dst, FFNPruneConfig(neurons={0: list(range(f))}))
    assert not dst.exists()
    with pytest.raises(DeployError, match="out of range 0..79"):
        transform(path, dst, FFNPruneConfig(neurons={0: [2 * f]}))
    # a fraction keeps that share of each FFN of each layer
    transform(path, dst, FFNPruneConfig(keep=0.25))
    st = find_structure(ir.load(str(dst)))
    assert [[b.width for b in la.ffns] for la in st.layers] == [[10, 10]] * model.config.num_hidden_layers


def test_inspect_counts_bottlenecks_as_layer_parameters(exported):
    from deploytool.inspection import inspect_model

    path, model = exported["mobilebert"]
    rep = inspect_model(path)
    assert rep.structure_error is None and rep.family == "mobilebert"
    roles = rep.params_by_role
    layer_params = sum(p.numel() for p in model.encoder.parameters())
    assert roles.get("attention", 0) + roles.get("ffn", 0) == layer_params, roles
    assert [la.ffn_width for la in rep.layers] == [2 * model.config.intermediate_size] * model.config.num_hidden_layers


def test_int8_mobilebert_is_inspected_with_its_structure(exported, tmp_path):
    from deploytool.inspection import inspect_model
    from deploytool.passes import transform
    from deploytool.passes.quantize_int8 import Int8Config

    path, model = exported["mobilebert"]
    q = tmp_path / "q.onnx"
    transform(path, q, Int8Config())
    rep = inspect_model(q)
    assert rep.structure_error is None and rep.family == "mobilebert"
    assert [la.num_heads for la in rep.layers] == [model.config.num_attention_heads] * model.config.num_hidden_layers
    assert [la.ffn_width for la in rep.layers] == [2 * model.config.intermediate_size] * model.config.num_hidden_layers


@pytest.mark.parametrize("name", ["mobilebert", "mobilebert-ln"])
@pytest.mark.parametrize("runtime", ["speed", "densest", "memory"])
def test_packed_mobilebert_is_inspected_with_its_structure(exported, tmp_path, name, runtime):
    """Packed MobileBERTs keep their structure for ``inspect``: before 2026-12-03 the int8-kernel runtimes (speed,
    densest) lost it, because the search for constants remembered a packed weight's unpacking nodes as computed
    from data once a walk from far downstream had reached them at its depth limit."""
    from deploytool.inspection import inspect_model
    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig

    path, model = exported[name]
    cfg = model.config
    dst = tmp_path / "t.onnx"
    transform(path, dst, PackConfig(weights="ternary", runtime=runtime))
    rep = inspect_model(dst)
    assert rep.structure_error is None and rep.family == "mobilebert"
    assert [la.num_heads for la in rep.layers] == [cfg.num_attention_heads] * cfg.num_hidden_layers
    assert [la.ffn_width for la in rep.layers] == \
        [cfg.num_feedforward_networks * cfg.intermediate_size] * cfg.num_hidden_layers
