"""An untrained (freshly initialised) model's zero biases are one tensor in a TorchScript export: the exporter stores
equal constants once, so every layer reads the same zero vector. The structured passes must not call that weight
tying: prune-heads / prune-ffn / reorder say that the constants were given copies (in their own words, under their
own key) and slice says nothing, while ALBERT's real shared layers keep their shared-weights note."""

from __future__ import annotations

import onnx
import pytest
from click.testing import CliRunner

pytest.importorskip("transformers")

from deploytool.export import ExportConfig, export_loaded  # noqa: E402
from deploytool.passes.prune_ffn import FFNPruneConfig, prune_ffn_file  # noqa: E402
from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file  # noqa: E402
from deploytool.passes.reorder import ReorderConfig, reorder_file  # noqa: E402
from deploytool.passes.slice_subnetwork import SliceConfig, slice_file  # noqa: E402

HIDDEN, HEADS, FFN = 32, 4, 64


def _fresh(config, path):
    import torch
    import transformers as tr

    torch.manual_seed(0)
    model = tr.AutoModel.from_config(config, attn_implementation="eager").eval()  # zero biases, unit LN scales
    export_loaded(model, path, ExportConfig(model="fresh"))
    return path


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    from deploytool.testing.tiny import tiny_config

    path = _fresh(tiny_config("bert", layers=4, hidden=HIDDEN, heads=HEADS, ffn=FFN),
                  tmp_path_factory.mktemp("fresh") / "bert.onnx")
    # the premise: one stored zero vector read by the biases of several layers
    m = onnx.load(str(path))
    readers: dict[str, int] = {}
    for n in m.graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    zero = [t.name for t in m.graph.initializer if t.dims == [HIDDEN] and not onnx.numpy_helper.to_array(t).any()]
    assert len(zero) == 1 and readers[zero[0]] > 4, zero
    return path


def test_prune_heads_says_constants_were_copied_not_shared_weights(bert, tmp_path):
    r = prune_heads_file(bert, tmp_path / "p.onnx", HeadPruneConfig(heads={0: [1]}))
    assert "shared_weights_note" not in r.stats and "shared_weights_copied_bytes" not in r.stats
    note = r.stats["merged_constants_note"]
    assert note.startswith("1 all-equal tensor ") and "not tied weights" in note and "heads" in note
    # layer 0's Q, K and V biases, each now 3 heads of 8 float32s, beside the 32-float vector the others read
    assert r.stats["merged_constants_copied_bytes"] == 3 * (HIDDEN - HIDDEN // HEADS) * 4


def test_prune_ffn_says_constants_were_copied_not_shared_weights(bert, tmp_path):
    r = prune_ffn_file(bert, tmp_path / "f.onnx", FFNPruneConfig(neurons={0: [0, 1]}))
    assert "shared_weights_note" not in r.stats
    assert "FFN neurons" in r.stats["merged_constants_note"]
    # layer 0's intermediate bias, 62 of 64 zeros, beside the 64 zeros the other layers read
    assert r.stats["merged_constants_copied_bytes"] == (FFN - 2) * 4


def test_reorder_and_slice_do_not_call_merged_zeros_shared_weights(bert, tmp_path):
    r = reorder_file(bert, tmp_path / "r.onnx", ReorderConfig())
    assert "shared_weights_note" not in r.stats
    if r.stats.get("merged_constants_copied_bytes"):
        assert "not tied weights" in r.stats["merged_constants_note"]
    for cfg in (SliceConfig(depth=0.5), SliceConfig(width=0.5, depth=0.5)):
        r = slice_file(bert, tmp_path / "s.onnx", cfg)
        assert "shared_weights_note" not in r.stats, r.stats


def test_cli_prints_the_constants_note_not_the_shared_weights_one(bert, tmp_path):
    from deploytool.cli import main

    r = CliRunner().invoke(main, ["prune-heads", str(bert), "--heads", "0:1", "-o", str(tmp_path / "p.onnx")])
    assert r.exit_code == 0, r.output
    notes = [line for line in r.stdout.splitlines() if line.startswith("note: ")]
    assert any("all-equal tensor" in n for n in notes), r.stdout
    assert not any("were copied" in n or "share were" in n for n in notes), r.stdout


def test_real_shared_layers_keep_their_note_beside_merged_zeros(tmp_path):
    """An untrained ALBERT: layers 0 and 1 read one group's weights (real tying), and the zero biases are merged
    across all layers too. Different heads in layers 0 and 1: the shared-weights note names them."""
    import transformers as tr

    cfg = tr.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=HIDDEN, num_hidden_layers=4,
                          num_attention_heads=HEADS, intermediate_size=FFN, num_hidden_groups=2,
                          max_position_embeddings=64)
    path = _fresh(cfg, tmp_path / "albert.onnx")
    r = prune_heads_file(path, tmp_path / "p.onnx", HeadPruneConfig(heads={0: [1]}))
    assert r.stats["shared_weights_note"].startswith("the weights layers 0, 1 share were copied"), r.stats
    assert r.stats["shared_weights_copied_bytes"] > 0
    r = slice_file(path, tmp_path / "d.onnx", SliceConfig(depth=0.5))
    assert "shared across layers" in r.stats["shared_weights_note"]
