"""``inspect`` reads the graph a pass reads (graph/canonical.canonicalize before the structure finder): exports
written without the exporter's constant folding (torch.onnx.export(..., do_constant_folding=False); the dynamo
exporter with optimize=False; DeBERTa v1 unfolded) are described as the PyTorch model they came from is configured,
not refused with a structure error and null FLOPs while every pass reads them. The reference is the model's own
config, never the finder."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from deploytool.inspection import inspect_model
from deploytool.testing import conformance as C


def _export(case: C.ModelCase, model, path: Path, dynamo: bool) -> Path:
    import torch

    f = C.feeds(case, lengths=(8, 6))
    names, outs = list(f), list(C.torch_outputs(model, f))
    args = tuple(torch.as_tensor(f[n]) for n in names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            b, s = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("sequence", min=2, max=C.MAX_POS - 4)
            torch.onnx.export(model, args, input_names=names, output_names=outs, opset_version=18,
                              dynamic_shapes={n: {0: b, 1: s} for n in names}, dynamo=True, optimize=False,
                              report=False, verbose=False).save(str(path))
        else:
            dyn = {n: {0: "batch", 1: "sequence"} for n in (*names, *outs)}
            torch.onnx.export(model, args, str(path), input_names=names, output_names=outs, dynamic_axes=dyn,
                              opset_version=17, dynamo=False, do_constant_folding=False)
    return path


@pytest.mark.parametrize("name,attn,dynamo", [("bert", None, False), ("bert", "eager", True), ("bert", None, True),
                                              ("deberta", None, False)],
                         ids=["bert-nofold", "bert-eager-dynamo-noopt", "bert-sdpa-dynamo-noopt", "deberta-v1-nofold"])
def test_inspect_reads_an_export_without_constant_folding_as_its_config_says(name, attn, dynamo, tmp_path):
    case = C.MODEL_BY_NAME[name]
    model = C.build_model(case, attn=attn)
    src = _export(case, model, tmp_path / f"{name}.onnx", dynamo)
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
