"""The export's architecture metadata (deploytool.num_layers / num_heads / head_size / hidden_size / ffn_size) of
families whose config names mislead: each checked against the PyTorch modules that compute the model (the oracle),
and what the passes then do with the export."""

from __future__ import annotations

import onnx
import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.export import ExportConfig, export_loaded, read_metadata
from deploytool.export.hf import architecture

SMALL = dict(vocab_size=100, hidden_size=32, num_attention_heads=4, max_position_embeddings=64)


def _configs():
    import transformers as tr

    return {
        # attention in a 16-wide bottleneck: head size 16 / 4, not 32 / 4; two FFNs a layer
        "mobilebert": tr.MobileBertConfig(**SMALL, embedding_size=16, true_hidden_size=16, intra_bottleneck_size=16,
                                          num_hidden_layers=2, intermediate_size=32, num_feedforward_networks=2),
        # head_ratio 2: half the heads are self-attention, half span-based convolutions
        "convbert": tr.ConvBertConfig(**SMALL, embedding_size=32, num_hidden_layers=2, intermediate_size=64,
                                      head_ratio=2, conv_kernel_size=3),
        # 2 steps of 2 layers each (one group): 4 layers run, on 2 layers' weights
        "albert-inner": tr.AlbertConfig(**SMALL, embedding_size=16, num_hidden_layers=2, intermediate_size=64,
                                        inner_group_num=2),
        # 4 steps over 2 groups of weights
        "albert-groups": tr.AlbertConfig(**SMALL, embedding_size=16, num_hidden_layers=4, intermediate_size=64,
                                         num_hidden_groups=2),
    }


def _oracle(model) -> dict[str, int]:
    """The figures read off the PyTorch modules that run (not the config)."""
    mt = model.config.model_type
    if mt == "albert":
        enc = model.encoder
        steps = model.config.num_hidden_layers
        layers = [la for i in range(steps)
                  for la in enc.albert_layer_groups[int(i / (steps / model.config.num_hidden_groups))].albert_layers]
        att, ffn = layers[0].attention, layers[0].ffn.out_features
    else:
        layers = list(model.encoder.layer)
        att = layers[0].attention.self
        ffn = layers[0].intermediate.dense.out_features
        if mt == "mobilebert":  # the stacked FFNs before the layer's own, counted together as the finder does
            ffn += sum(f.intermediate.dense.out_features for f in layers[0].ffn)
    return {"num_layers": len(layers), "num_heads": att.num_attention_heads, "head_size": att.attention_head_size,
            "hidden_size": model.config.hidden_size, "ffn_size": ffn}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch
    import transformers as tr

    work = tmp_path_factory.mktemp("metadata")
    out = {}
    for name, cfg in _configs().items():
        torch.manual_seed(0)
        model = tr.AutoModel.from_config(cfg, attn_implementation="eager").eval()
        path = work / f"{name}.onnx"
        export_loaded(model, path, ExportConfig(model=name))
        out[name] = (path, model)
    return out


@pytest.mark.parametrize("name", ["mobilebert", "convbert", "albert-inner", "albert-groups"])
def test_metadata_is_what_the_modules_compute(exported, name):
    path, model = exported[name]
    want = _oracle(model)
    meta = read_metadata(onnx.load(str(path), load_external_data=False))
    assert {k: int(meta[k]) for k in want} == want
    # the config's own reading agrees (it stands where the graph is not read: ConvBERT)
    assert {k: architecture(model)[k] for k in want} == want


def test_mobilebert_head_size_oracle_is_the_bottleneck():
    """The oracle itself: MobileBERT's heads tile its 16-wide bottleneck (true_hidden_size), not hidden_size."""
    import transformers as tr

    model = tr.MobileBertModel(_configs()["mobilebert"])
    assert _oracle(model)["head_size"] == 4 and _oracle(model)["ffn_size"] == 64


@pytest.mark.parametrize("args", [["slice", "--width", "0.5"], ["prune-heads", "--heads", "0:1"],
                                  ["prune-ffn", "--keep", "0.5"], ["reorder"]])
def test_convbert_is_refused_in_one_line_naming_why(exported, tmp_path, args):
    """A plain refusal naming ConvBERT's mixed convolution attention: no form of ConvBERT is edited, so neither
    the node the finder stopped at nor "in this form" (which promised a form that is) belongs in it."""
    path, _ = exported["convbert"]
    out = tmp_path / "out.onnx"
    r = CliRunner().invoke(main, [args[0], str(path), *args[1:], "-o", str(out)])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert lines == ["error: convbert: ConvBERT's mixed convolution attention (span-based dynamic convolution heads "
                     "beside its self-attention heads, head_ratio) is not supported by the structured passes "
                     "(slice, prune-heads, prune-ffn, reorder)"]
    assert not out.exists()


def test_albert_inner_groups_slice_by_the_layers_that_run(exported, tmp_path):
    """inner_group_num 2 runs 4 layers: depth 0.5 keeps 2 of those 4 (the metadata said 2 layers in all)."""
    path, _ = exported["albert-inner"]
    out = tmp_path / "d.onnx"
    r = CliRunner().invoke(main, ["slice", str(path), "--depth", "0.5", "-o", str(out)])
    assert r.exit_code == 0, r.output
    meta = read_metadata(onnx.load(str(out), load_external_data=False))
    assert meta["num_layers"] == "2" and meta["heads_per_layer"] == "4,4"
