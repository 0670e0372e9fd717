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


def test_without_the_inputs_parameter_count_no_candidate_is_ranked_by_a_proxy(tmp_path, monkeypatch):
    """The proxy is each candidate's parameters over the input's. Where the input's cannot be counted fit divided by
    the largest candidate's instead (here w1-d1, 1.0 against d0.5's half) and ranked by that; a grid without width 1
    and depth 1 has no candidate that is the input. Now no candidate has a proxy, fit says why and picks by precision,
    then latency; and its text no longer fails on a candidate without one."""
    import deploytool.inspection as inspection
    from deploytool.fit import FitConfig, fit
    from deploytool.errors import InputFileError

    src = _untrained(tmp_path)
    real = inspection.inspect_model

    def inspect_model(path, *a, **k):
        if str(path) == str(src):
            raise InputFileError(f"{path}: not counted here")
        return real(path, *a, **k)

    monkeypatch.setattr(inspection, "inspect_model", inspect_model)
    res = fit(FitConfig(model=src, profile="kirin990", output=tmp_path / "best.onnx", widths=(1.0,),
                        depths=(1.0, 0.5), precisions=("fp32",), runs=2, seq_len=8))
    assert [c.param_fraction for c in res.candidates] == [None, None]
    by = {c.name: c for c in res.candidates}
    # (w1-d1-fp32 is the input file itself: its own count fails too)
    assert by["w1-d1-fp32"].proxy_unknown.startswith("proxy unknown (its parameters could not be counted")
    assert by["w1-d0.5-fp32"].proxy_unknown.startswith("proxy unknown (the input's parameters could not be counted")
    assert res.ranking.startswith("no accuracy given and the kept-parameter proxy ranks nothing: ")
    fastest = min(res.candidates, key=lambda c: c.device_p90_ms)  # both fp32: latency decides
    assert res.chosen is fastest
    text = res.why()
    assert "accuracy PROXY proxy unknown (the input's parameters could not be counted" in text
    assert "the highest precision (fp32 = fp16 > int8 > ternary > binary) wins, then the lowest latency" in text
