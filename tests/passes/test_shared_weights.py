"""Structured passes on ALBERT, whose layers share weights: 4 layers run over 2 groups of weights (layers 0, 1
read group 0; layers 2, 3 group 1). What the results say about that sharing, and what stays shared."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from deploytool.export import ExportConfig, export_loaded
from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file
from deploytool.passes.slice_subnetwork import SliceConfig, slice_file

pytest.importorskip("transformers")

IDS = np.array([[2, 15, 37, 8, 91, 4, 60, 3]], dtype=np.int64)


def _config(**kw):
    import transformers as tr

    return tr.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=4,
                           num_attention_heads=4, intermediate_size=64, num_hidden_groups=2,
                           max_position_embeddings=64, **kw)


@pytest.fixture(scope="module")
def albert(tmp_path_factory):
    """The exported model and its PyTorch module. Biases drawn at random: zero biases (a fresh model's) are
    stored once for the whole graph by the exporter, which would make every layer share them; weights x10 so
    that attention is far from uniform and a wrong head shows."""
    import torch
    import transformers as tr

    torch.manual_seed(0)
    model = tr.AutoModel.from_config(_config(), attn_implementation="eager").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(10)
    path = tmp_path_factory.mktemp("albert") / "albert.onnx"
    export_loaded(model, path, ExportConfig(model="albert"))
    return path, model


def _run(path) -> np.ndarray:
    from deploytool.runtime.infer import run_onnx

    feeds = {"input_ids": IDS, "attention_mask": np.ones_like(IDS), "token_type_ids": np.zeros_like(IDS)}
    return run_onnx(path, feeds)["last_hidden_state"]


def _torch(model, **kw) -> np.ndarray:
    import torch

    with torch.no_grad():
        ids = torch.from_numpy(IDS)
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids),
                     **kw).last_hidden_state.numpy()


def _float_inits(path) -> list[tuple[int, ...]]:
    m = onnx.load(str(path))
    return sorted(tuple(t.dims) for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and t.dims)


def test_depth_slice_says_the_shared_weights_stay(albert, tmp_path):
    """Depth 0.5 runs layers 0 and 2, which read both groups: 2 of 4 layers are removed, no weight leaves the
    file, and the result says so (it said "nothing was removed" from the unchanged parameter count)."""
    import copy

    path, model = albert
    out = tmp_path / "d.onnx"
    r = slice_file(path, out, SliceConfig(depth=0.5))
    c = r.counts
    assert (c.layers_before, c.layers_after) == (4, 2) and r.stats["layers_kept"] == [0, 2]
    assert c.params_after == c.params_before
    assert r.stats["shared_weights_note"] == (
        "2 of 4 layers run removed (4 -> 2); removed layers 1, 3 read weights that kept layers also read (shared "
        "across layers), which stay: the weights shrink only by those no kept layer shares (0 B)")
    assert _float_inits(out) == _float_inits(path)
    # the sliced model is ALBERT run 2 steps over its 2 groups (step i reads group i): layers 0 and 2
    short = copy.deepcopy(model)
    short.config.num_hidden_layers = 2
    np.testing.assert_allclose(_run(out), _torch(short), rtol=1e-4, atol=1e-5)


def test_depth_slice_counts_the_weights_it_frees(albert, tmp_path):
    """Depth 0.25 keeps layer 0 only: group 1's weights leave the file (layers 2, 3 read them alone); layer 1
    reads group 0, which layer 0 keeps."""
    path, _ = albert
    r = slice_file(path, tmp_path / "d.onnx", SliceConfig(depth=0.25))
    freed = (r.counts.params_before - r.counts.params_after) * 4
    assert freed > 0
    note = r.stats["shared_weights_note"]
    assert "removed layer 1 read weights" in note and note.endswith(f"({freed / 1e3:.1f} kB)")


def test_a_model_without_shared_weights_has_no_sharing_note(tmp_path):
    from deploytool.testing.tiny import tiny_model

    path = tmp_path / "bert.onnx"
    export_loaded(tiny_model(layers=4, seed=3), path, ExportConfig(model="tiny"))
    r = slice_file(path, tmp_path / "d.onnx", SliceConfig(depth=0.5))
    assert "shared_weights_note" not in r.stats
    r = prune_heads_file(path, tmp_path / "p.onnx", HeadPruneConfig(heads={0: [1]}))
    assert "shared_weights_note" not in r.stats


def test_same_heads_in_every_sharing_layer_stay_shared(albert, tmp_path):
    """Layers 0 and 1 (group 0) lose head 1 both: they read one pruned copy of Q/K/V/O and of their biases,
    the output projection's bias untouched included; the model shrinks by exactly the head's weights."""
    path, model = albert
    out = tmp_path / "p.onnx"
    r = prune_heads_file(path, out, HeadPruneConfig(heads={0: [1], 1: [1]}))
    head = 32 // 4
    # Q/K/V rows and biases, O columns of one head, stored once for both layers
    assert r.counts.params_before - r.counts.params_after == 4 * 32 * head + 3 * head
    assert "shared_weights_note" not in r.stats
    inits = _float_inits(out)
    assert inits.count((32, 32 - head)) == 3 and inits.count((32 - head, 32)) == 1
    np.testing.assert_allclose(_run(out), _without_heads(model, {0: [1], 1: [1]}), rtol=1e-4, atol=1e-5)


def test_different_heads_copy_the_shared_weights_and_say_so(albert, tmp_path):
    """Only layer 0 loses head 1: layer 1 still reads group 0 whole, so layer 0 reads a pruned copy. The
    output is right; the result says the copy costs the bytes the model grew by."""
    path, model = albert
    out = tmp_path / "p.onnx"
    r = prune_heads_file(path, out, HeadPruneConfig(heads={0: [1]}))
    grown = (r.counts.params_after - r.counts.params_before) * 4
    head = 32 // 4
    assert grown == (4 * 32 * (32 - head) + 3 * (32 - head)) * 4  # the copy: Q/K/V/O and Q/K/V biases, fp32
    assert r.stats["shared_weights_copied_bytes"] == grown
    assert r.stats["shared_weights_note"] == (
        f"the weights layers 0, 1 share were copied for the layers whose heads now differ: {grown:,} bytes more "
        "than storing each once (removing the same heads from every layer that shares a weight keeps it shared)")
    np.testing.assert_allclose(_run(out), _without_heads(model, {0: [1]}), rtol=1e-4, atol=1e-5)


def _without_heads(model, heads: dict[int, list[int]]) -> np.ndarray:
    """The PyTorch model's output with ``heads`` ({layer run: head ids}) removed: their context columns zeroed
    before the output projection, in the layers named alone. (transformers' head_mask cannot say it: ALBERT
    applies the mask of a group's first layer to every layer run on that group.)"""
    group_of = {i: i // 2 for i in range(4)}  # 4 layers run over 2 groups
    calls = {0: 0, 1: 0}
    d = 32 // 4

    def hook(group):
        def pre(_module, args):
            layer = [i for i, g in group_of.items() if g == group][calls[group]]
            calls[group] += 1
            x = args[0].clone()
            for h in heads.get(layer, ()):
                x[..., h * d:(h + 1) * d] = 0
            return (x,)
        return pre

    handles = [g.albert_layers[0].attention.dense.register_forward_pre_hook(hook(k))
               for k, g in enumerate(model.encoder.albert_layer_groups)]
    try:
        return _torch(model)
    finally:
        for h in handles:
            h.remove()


def test_cli_summary_says_what_was_removed_not_nothing(albert, tmp_path):
    """The command's summary: layers removed with the parameters unchanged is not "nothing was removed"; a slice
    that keeps everything still is."""
    from click.testing import CliRunner

    from deploytool.cli import main

    path, _ = albert
    r = CliRunner().invoke(main, ["slice", str(path), "--depth", "0.5", "-o", str(tmp_path / "d.onnx")])
    assert r.exit_code == 0, r.output
    assert "nothing was removed" not in r.output
    assert ("note: 2 of 4 layers run removed (4 -> 2); removed layers 1, 3 read weights that kept layers also read "
            "(shared across layers), which stay: the weights shrink only by those no kept layer shares (0 B)\n"
            in r.output)
    r = CliRunner().invoke(main, ["prune-heads", str(path), "--heads", "0:1", "-o", str(tmp_path / "p.onnx")])
    assert r.exit_code == 0, r.output
    notes = [line for line in r.output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and notes[0].startswith("note: the weights layers 0, 1 share were copied")
    r = CliRunner().invoke(main, ["slice", str(path), "--width", "1.0", "-o", str(tmp_path / "s.onnx")])
    assert r.exit_code == 0, r.output
    assert "note: nothing was removed" in r.output


def test_reorder_copying_shared_weights_says_what_differs(albert, tmp_path):
    """Layers 0 and 1 (group 0) given different head orders: layer 0 reads a permuted copy. The note names the
    orders and says what keeps the weight shared; nothing is removed by a reorder, so it does not say
    'removing the same orders'."""
    from deploytool.importance import save_importance
    from deploytool.passes.reorder import ReorderConfig, reorder_file

    path, _ = albert
    heads = [[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]]
    imp = save_importance(tmp_path / "imp.json", heads, [[1.0] * 64] * 4, source="test")
    r = reorder_file(path, tmp_path / "r.onnx", ReorderConfig(importance=imp, neurons=False))
    grown = r.stats["shared_weights_copied_bytes"]
    assert grown > 0
    assert r.stats["shared_weights_note"] == (
        f"the weights layers 0, 1 share were copied for the layers whose head or neuron orders now differ: "
        f"{grown:,} bytes more than storing each once (giving every layer that shares a weight the same order "
        "keeps it shared)")
