"""``inspect`` reads the graph a pass reads (graph/canonical.canonicalize before the structure finder): exports
written without the exporter's constant folding (torch.onnx.export(..., do_constant_folding=False); the dynamo
exporter with optimize=False; DeBERTa v1 unfolded) are described as the PyTorch model they came from is configured,
not refused with a structure error and null FLOPs while every pass reads them. The reference is the model's own
config, never the finder."""

from __future__ import annotations

import pytest

from deploytool.inspection import inspect_model
from deploytool.testing import conformance as C


@pytest.mark.parametrize("name,exporter", [("bert", "torchscript-17-nofold"), ("bert", "dynamo-noopt-eager"),
                                           ("bert", "dynamo-noopt"), ("deberta", "torchscript-17-nofold")],
                         ids=["bert-nofold", "bert-eager-dynamo-noopt", "bert-sdpa-dynamo-noopt", "deberta-v1-nofold"])
def test_inspect_reads_an_export_without_constant_folding_as_its_config_says(name, exporter, tmp_path):
    case = C.MODEL_BY_NAME[name]
    model = C.build_model(case, attn="eager" if exporter in C.EAGER_EXPORTERS else None)  # what export() exports
    src = C.export(case, exporter, tmp_path)
    before = src.read_bytes()
    report = inspect_model(src, seq_len=16)
    cfg = model.config
    assert report.structure_error is None and report.flops_unknown_reason is None and report.flops > 0
    assert report.hidden_size == cfg.hidden_size
    assert [(li.num_heads, li.head_size, li.ffn_width) for li in report.layers] == [
        (cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads, cfg.intermediate_size)
    ] * cfg.num_hidden_layers
    # each weight once, as PyTorch counts it (a transposed or viewed copy is not a parameter of its own)
    assert sum(report.params_by_role.values()) == sum(p.numel() for p in model.parameters())
    assert src.read_bytes() == before  # inspect reads; the file is untouched
