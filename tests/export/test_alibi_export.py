"""`deploytool export` of a model whose ALiBi table is one whole buffer (JinaBERT v2: ``[1, heads, N, N]`` for N =
max_position_embeddings, 3.2 GB in jina-embeddings-v2-base-en, which no TorchScript export could hold:
huggingface/optimum#1800). The export traces a small corner of it and writes the table as the computation of its
values; the file must equal PyTorch with the whole buffer beyond that corner, for every exporter. References: the
PyTorch model itself (its own forward, its own buffer), never the rewrite."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import DeployError
from deploytool.export import ExportConfig, export_loaded
from deploytool.export.alibi_buffers import EXPORT_SIZE
from deploytool.runtime.infer import run_onnx
from deploytool.testing.hub_folder import write_hub_folder
from deploytool.testing.jina_bert import JinaBertConfig, JinaBertModel

N, HEADS = 160, 4


def _model(seed: int = 0) -> JinaBertModel:
    torch.manual_seed(seed)
    return JinaBertModel(JinaBertConfig(vocab_size=99, hidden_size=32, num_attention_heads=HEADS, intermediate_size=40,
                                        num_hidden_layers=2, max_position_embeddings=N)).eval()


def _square_tables(path) -> list[list[int]]:
    """The 4-D [1, H, n, n] float constants of the file (read with onnx, not deploytool)."""
    m = onnx.load(str(path))
    dims = [list(t.dims) for t in m.graph.initializer]
    dims += [list(a.t.dims) for n in m.graph.node if n.op_type == "Constant" for a in n.attribute if a.t.dims]
    return [d for d in dims if len(d) == 4 and d[0] == 1 and d[2] == d[3] and d[2] > 1]


def _agrees(model, path, seq: int) -> float:
    rng = np.random.default_rng(seq)
    ids = rng.integers(3, 90, size=(2, seq)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, seq // 2:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    out = run_onnx(path, feeds)["last_hidden_state"]
    return float(np.abs(out - ref)[0].max())  # the unpadded row (the padded one's pad positions are free)


def _exported_whole(model, tmp_path, seq: int) -> None:
    """The export holds the whole table as a constant (not computed, not the corner) and equals PyTorch at ``seq``."""
    out = tmp_path / "m.onnx"
    r = export_loaded(model, out, ExportConfig(model="jina"))
    assert r.alibi_table_bytes_computed == 0
    assert _square_tables(out) == [[1, HEADS, N, N]]
    assert _agrees(model, out, seq) < 1e-4


@pytest.mark.parametrize("exporter", ["torch", "dynamo", "optimum"])
def test_whole_buffer_exported_as_its_computation(tmp_path, exporter):
    """As users export it: a hub folder of Jina's own code (its config says "bert", which optimum exports)."""
    from deploytool.export import export

    model = _model()
    folder = write_hub_folder("jina-bert", tmp_path / "jina", model=model)
    out = tmp_path / "m.onnx"
    r = export(ExportConfig(model=str(folder), exporter=exporter, trust_remote_code=True), out)
    buffer = model.encoder.alibi
    assert r.alibi_table_bytes_computed == buffer.numel() * buffer.element_size() == HEADS * N * N * 4
    assert _square_tables(out) == []  # neither the whole table nor the traced corner
    for seq in (EXPORT_SIZE + 37, N):  # beyond the corner the trace saw, up to the buffer's end
        assert _agrees(model, out, seq) < 1e-4


def test_the_models_own_buffer_is_back(tmp_path):
    model = _model()
    buffer = model.encoder.alibi
    export_loaded(model, tmp_path / "m.onnx", ExportConfig(model="jina"))
    assert model.encoder.alibi is buffer
    assert "alibi" in model.encoder._non_persistent_buffers_set


def test_a_buffer_that_is_not_alibi_is_exported_whole(tmp_path):
    model = _model()
    with torch.no_grad():
        # one value off the slope * |i - j| rule, beyond the corner the trace sees (which alone would pass)
        model.encoder.alibi[0, 1, EXPORT_SIZE + 36, EXPORT_SIZE + 66] += 5.0
    _exported_whole(model, tmp_path, seq=EXPORT_SIZE + 76)


def test_a_corner_the_rewrite_cannot_read_is_exported_whole(tmp_path, monkeypatch):
    """Were the traced corner left in the file, the export would stop at its length: then the whole buffer is
    exported instead (the rewrite is made to find nothing here)."""
    from deploytool.export import api

    monkeypatch.setattr(api, "_compute_tables", lambda proto: (proto, 0))
    _exported_whole(_model(), tmp_path, seq=EXPORT_SIZE + 37)


def test_an_exporter_failing_on_the_corner_gets_the_whole_buffer(tmp_path, monkeypatch):
    from deploytool.export import api

    real = api._export_raw
    seen = []

    def export_raw(model, raw, config):
        seen.append(tuple(model.encoder.alibi.shape))
        if model.encoder.alibi.shape[-1] != N:
            raise DeployError("exporter torch failed on bert (a constraint on the corner)")
        return real(model, raw, config)

    monkeypatch.setattr(api, "_export_raw", export_raw)
    model = _model()
    out = tmp_path / "m.onnx"
    r = export_loaded(model, out, ExportConfig(model="jina"))
    assert seen == [(1, HEADS, EXPORT_SIZE, EXPORT_SIZE), (1, HEADS, N, N)]
    assert r.alibi_table_bytes_computed == HEADS * N * N * 4  # the whole buffer's export, written as computation
    assert _square_tables(out) == []
    assert _agrees(model, out, EXPORT_SIZE + 37) < 1e-4


def test_cli_says_so(tmp_path):
    folder = write_hub_folder("jina-bert", tmp_path / "jina", {"max_position_embeddings": N})
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", "--model", str(folder), "--trust-remote-code", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "ALiBi table (" in r.output and "written as the computation of its values" in r.output, r.output
