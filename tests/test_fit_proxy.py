"""fit's accuracy proxy without --accuracy is the kept-parameter fraction: a candidate that keeps every layer, head
and neuron keeps all the parameters whatever its precision. On an untrained model (unit LayerNorm scales, zero
biases) TorchScript stores equal tensors once; the int8 writer stores some of them apart (its fused QKV bias), so
inspect counted more parameters in the int8 file (28,160) than in its fp32 source (27,968): fit printed 'accuracy
PROXY 1.007' for w1-d1-int8 and picked it over w1-d1-fp32, against its stated order (fp32 before int8)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deploytool.cli import main


def _untrained(tmp_path):
    import torch

    from deploytool.export import ExportConfig, export_loaded
    from deploytool.testing.tiny import tiny_model

    model = tiny_model("bert")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if "LayerNorm.weight" in name else 0.0)
    path = tmp_path / "untrained.onnx"
    export_loaded(model, path, ExportConfig(model="tiny-bert"))
    return path


def test_a_full_size_candidate_keeps_all_the_parameters_at_any_precision(tmp_path):
    src = _untrained(tmp_path)
    out = tmp_path / "best.onnx"
    res = CliRunner().invoke(main, ["fit", str(src), "--profile", "kirin990", "-o", str(out), "--widths", "1",
                                    "--depths", "1,0.5", "--precisions", "fp32,int8", "--runs", "2",
                                    "--seq-len", "8"])
    assert res.exit_code == 0, res.output
    why = json.loads((tmp_path / "best.onnx.fit.json").read_text())
    by = {c["name"]: c for c in why["candidates"]}
    assert by["w1-d1-fp32"]["param_fraction"] == 1.0 and by["w1-d1-int8"]["param_fraction"] == 1.0
    assert by["w1-d0.5-int8"]["param_fraction"] == by["w1-d0.5-fp32"]["param_fraction"] < 1.0
    assert why["chosen"] == "w1-d1-fp32"  # the largest proxy, then precision: fp32 before int8
