"""A whole ALiBi table cut to the sequence (JinaBERT's buffer: 3.2 GB in jina-embeddings-v2-base-en's export,
huggingface/optimum#1800) is written as the run-time computation of the same float32 values by every pass; a
table that is not exactly ``slope_h * |i - j|`` is left as it is. Checked on a TorchScript export of the restated
JinaBERT with a 512-position table, against ONNX Runtime's outputs of the input file."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper

from deploytool.cli import main
from deploytool.runtime.infer import run_onnx
from deploytool.testing.jina_bert import JinaBertConfig, JinaBertModel

N, HEADS = 512, 6


@pytest.fixture(scope="module")
def jina():
    torch.manual_seed(0)
    return JinaBertModel(JinaBertConfig(vocab_size=99, hidden_size=24, num_attention_heads=HEADS, intermediate_size=40,
                                        num_hidden_layers=2, max_position_embeddings=N)).eval()


@pytest.fixture(scope="module")
def export(tmp_path_factory, jina):
    model = jina
    path = tmp_path_factory.mktemp("alibi") / "jina.onnx"
    ids = torch.randint(3, 90, (2, 7))
    torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path),
                      input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state", "pooler_output"], opset_version=17, dynamo=False,
                      dynamic_axes={n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask", "token_type_ids")})
    return path


def _feeds(seq=9):
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 90, size=(2, seq)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _tables(path):
    m = onnx.load(str(path))
    found = [list(t.dims) for t in m.graph.initializer if list(t.dims) == [1, HEADS, N, N]]
    found += [list(a.t.dims) for n in m.graph.node if n.op_type == "Constant" for a in n.attribute
              if list(a.t.dims) == [1, HEADS, N, N]]
    return found


def test_table_written_as_its_computation(export, tmp_path):
    assert _tables(export)  # the export stores the whole table
    dst = tmp_path / "out.onnx"
    r = CliRunner().invoke(main, ["reorder", str(export), "-o", str(dst)])
    assert r.exit_code == 0, r.output
    assert "ALiBi table (6.29 MB) written as the computation" in r.output, r.output
    assert not _tables(dst)
    assert dst.stat().st_size < export.stat().st_size / 4
    for seq in (9, 40):
        a, b = run_onnx(export, _feeds(seq)), run_onnx(dst, _feeds(seq))
        np.testing.assert_allclose(b["last_hidden_state"], a["last_hidden_state"], atol=1e-5)


def test_another_table_is_left_alone(export, tmp_path):
    m = onnx.load(str(export))
    node = next(n for n in m.graph.node if n.op_type == "Constant" and any(list(a.t.dims) == [1, HEADS, N, N]
                                                                           for a in n.attribute))
    t = numpy_helper.to_array(node.attribute[0].t).copy()
    t[0, 3, 100, 7] += 0.5  # one value off the rule
    node.attribute[0].t.CopyFrom(numpy_helper.from_array(t, node.attribute[0].t.name))
    edited = tmp_path / "edited.onnx"
    onnx.save(m, str(edited))
    dst = tmp_path / "out.onnx"
    r = CliRunner().invoke(main, ["reorder", str(edited), "-o", str(dst)])
    assert r.exit_code == 0, r.output
    assert "ALiBi" not in r.output
    assert _tables(dst)


def test_a_table_that_is_a_graph_input_is_left_alone(export):
    """An initializer listed among the graph's inputs (a caller may feed another table) keeps its place."""
    import onnx_ir as ir

    from deploytool.graph.alibi import compute_alibi_tables

    m = onnx.load(str(export))
    node = next(n for n in m.graph.node if n.op_type == "Constant" and any(list(a.t.dims) == [1, HEADS, N, N]
                                                                           for a in n.attribute))
    t = numpy_helper.to_array(node.attribute[0].t)
    m.graph.node.remove(node)
    m.graph.initializer.append(numpy_helper.from_array(t, node.output[0]))
    m.graph.input.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, list(t.shape)))
    model = ir.serde.deserialize_model(m)
    assert compute_alibi_tables(model) == 0
    m2 = onnx.load(str(export))
    assert compute_alibi_tables(ir.serde.deserialize_model(m2)) == t.nbytes  # the same table as a Constant: rewritten


def test_inspect_counts_the_table_apart_from_the_parameters(export, jina, tmp_path):
    """PyTorch's own count: the table is a buffer (``register_buffer``), not a parameter."""
    from deploytool.inspection import inspect_model

    buffers = dict(jina.named_buffers())
    r = inspect_model(export)
    assert r.alibi_table_bytes == buffers["encoder.alibi"].numel() * 4 == HEADS * N * N * 4
    # PyTorch's parameters, each distinct tensor once: the TorchScript exporter stores equal tensors (this random
    # model's LayerNorm weights) once, read through Identity aliases, and inspect counts what the file stores
    distinct = {(tuple(p.shape), p.detach().numpy().tobytes()): p.numel() for p in jina.parameters()}
    assert r.total_params == sum(distinct.values())
    assert r.params_by_role["attention"] < r.params_by_role["ffn"] * 2  # the 1.5M-value table is not attention's
    text = CliRunner().invoke(main, ["inspect", str(export)]).output
    assert "ALiBi table" in text and "6.29 MB" in text, text
    dst = tmp_path / "out.onnx"
    assert CliRunner().invoke(main, ["reorder", str(export), "-o", str(dst)]).exit_code == 0
    after = inspect_model(dst)
    # the reorder writes each alias of an equal tensor as its own permuted copy: the parameters are what its file
    # stores (numpy over its float initializers; the table, now computed, is none of them)
    from onnx import numpy_helper

    out = onnx.load(str(dst))
    # the computed table's per-head slopes ([1, heads, 1, 1]) are part of the table, not a parameter
    slopes = {t.name for t in out.graph.initializer if list(t.dims) == [1, HEADS, 1, 1]}
    assert len(slopes) == 1
    stored = sum(numpy_helper.to_array(t).size for t in out.graph.initializer
                 if t.data_type == onnx.TensorProto.FLOAT and numpy_helper.to_array(t).size > 1 and t.name not in slopes)
    assert (after.alibi_table_bytes, after.total_params) == (0, stored)
    assert r.total_params <= after.total_params <= sum(p.numel() for p in jina.parameters())
    assert "ALiBi table" not in CliRunner().invoke(main, ["inspect", str(dst)]).output
