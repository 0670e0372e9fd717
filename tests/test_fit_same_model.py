"""fit builds and times a model once when two requested fractions cut the same model of this input: on a
6-layer model depths 0.9 and 0.85 both keep layers 0-4 (DynaBERT's rule: round(5.4) = round(5.1) = 5 layers,
floor(i / d) the same indices), on 4 heads widths 0.75 and 0.7 both keep 3 heads and 48 of 64 neurons. Before,
each was built, timed and listed under its own label as a different candidate. Depths that keep as many layers
but other ones (0.75: 4 layers, 0.8: 5) are different models and stay two candidates."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deploytool.cli import main


def test_fractions_that_cut_the_same_model_are_one_candidate(tiny_onnx, tmp_path):
    model = tiny_onnx("bert", layers=6, hidden=32, heads=4, ffn=64)
    out = tmp_path / "best.onnx"
    res = CliRunner().invoke(main, ["fit", str(model), "--profile", "kirin990", "-o", str(out),
                                    "--widths", "1,0.75,0.7", "--depths", "1,0.9,0.85,0.8,0.75",
                                    "--precisions", "fp32", "--runs", "2", "--seq-len", "8",
                                    "--keep-candidates", str(tmp_path / "cands")])
    assert res.exit_code == 0, res.output
    why = json.loads((tmp_path / "best.onnx.fit.json").read_text())
    names = sorted(c["name"] for c in why["candidates"])
    # 2 distinct widths x 4 distinct depths (0.85 is 0.9's model; 0.8 and 0.75 are not each other's)
    assert names == sorted(f"w{w}-d{d}-fp32" for w in ("1", "0.75") for d in ("1", "0.9", "0.8", "0.75"))
    assert sorted(p.stem for p in (tmp_path / "cands").glob("*.onnx")) == names  # each file built once
    by = {c["name"]: c for c in why["candidates"]}
    assert by["w1-d0.9-fp32"]["same_as"] == ["w1-d0.85-fp32"]
    assert sorted(by["w0.75-d0.9-fp32"]["same_as"]) == ["w0.7-d0.85-fp32", "w0.7-d0.9-fp32", "w0.75-d0.85-fp32"]
    assert by["w1-d0.8-fp32"]["same_as"] == [] and by["w1-d0.75-fp32"]["same_as"] == []
    depth = ("d0.85 is the same model as d0.9 on this 6-layer model: 5 of 6 layers (0, 1, 2, 3, 4) "
             "(built and timed once, as d0.9)")
    width = ("w0.7 is the same model as w0.75 on this model: 3 of 4 heads and 48 neurons per layer "
             "(built and timed once, as w0.75)")
    assert [x["message"] for x in why["collapsed"]] == [width, depth]
    assert f"  {depth}" in why["why"] and f"  {width}" in why["why"]
    assert depth in res.output and width in res.output
    assert why["chosen"] == "w1-d1-fp32"  # the pick is unaffected (the proxy's largest)
