"""``deploytool export`` leaves the dynamo exporter's per-node provenance out of the file it writes.

torch's dynamo exporter writes ``metadata_props`` on every node, value and graph (stack traces naming the
exporting machine's paths, class hierarchies, FX node text, name scopes, export signatures). Measured on the raw
exports of this file's tiny models (2026-12-07, torch 2.13): BERT 160,889 of 277,909 bytes (58 %), ALBERT 216,621
of 300,031 (72 %). The exported file holds none of it, is smaller by at least those bytes, and computes exactly
what the raw export computes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from deploytool.export import ExportConfig, export_loaded, read_metadata
from deploytool.export.config import Exporter, Task
from deploytool.export.torch_export import export_torch
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs, tiny_model


def _albert():
    import torch
    import transformers as tr

    torch.manual_seed(0)
    cfg = tr.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=64, max_position_embeddings=160)
    return tr.AutoModel.from_config(cfg, attn_implementation="eager").eval()


def provenance_bytes(model: onnx.ModelProto) -> tuple[int, set[str]]:
    """The serialized bytes of every metadata_props entry below the model level, and their keys."""
    total, keys = 0, set()

    def props(entries):
        nonlocal total
        for p in entries:
            n = p.ByteSize()
            total += n + 1 + (1 if n < 128 else 2 if n < 16384 else 3)  # tag, length, entry
            keys.add(p.key)

    def graph(g):
        props(g.metadata_props)
        for n in g.node:
            props(n.metadata_props)
            for a in n.attribute:
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    graph(sub)
        for v in (*g.input, *g.output, *g.value_info):
            props(v.metadata_props)
        for t in g.initializer:
            props(t.metadata_props)

    graph(model.graph)
    for f in model.functions:
        for n in f.node:
            props(n.metadata_props)
    return total, keys


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "albert"])
def test_dynamo_export_writes_no_node_provenance(tmp_path, family):
    """Before: the exported file was the raw export plus deploytool's records (278,274 bytes for BERT, of which
    160,889 stack traces and the like; ALBERT 283,701 after its copies were merged, 216,406 of them metadata)."""
    model = _albert() if family == "albert" else tiny_model(family)
    raw = tmp_path / "raw.onnx"
    export_torch(model, raw, task=Task.FEATURE_EXTRACTION, exporter=Exporter.DYNAMO)
    raw_proto = onnx.load(str(raw))
    measured, keys = provenance_bytes(raw_proto)
    assert "pkg.torch.onnx.stack_trace" in keys and measured > 0.5 * raw.stat().st_size  # what this test is about

    out = tmp_path / "model.onnx"
    result = export_loaded(model, out, ExportConfig(model=f"tiny-{family}", exporter="dynamo"))
    proto = onnx.load(str(out))
    left, left_keys = provenance_bytes(proto)
    assert (left, left_keys) == (0, set())
    # plus the value_info entries that only carried metadata for a weight (BERT: 163,250 reported)
    assert measured <= result.exporter_metadata_bytes_dropped <= 1.03 * measured
    # smaller than the raw export by at least the metadata (deploytool adds ~370 bytes of its own records; ALBERT's
    # merged weight copies take off more)
    assert raw.stat().st_size - out.stat().st_size >= measured - 400
    assert read_metadata(proto)["exporter"] == "dynamo"  # the model-level records stay
    assert proto.producer_name == raw_proto.producer_name == "pytorch"
    assert max(result.max_abs_diff.values()) < 1e-4
    feeds = fixed_inputs(token_type_ids=family != "distilbert")
    want, got = run_onnx(raw, feeds), run_onnx(out, feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
