"""The accuracy proxy (no accuracy given) is a model's kept-parameter fraction of its OWN source model. The report
divided every model's parameters by the largest model's of the whole report: two unrelated exports benched together
were ranked as if the smaller were a slice of the larger, a slice was measured against whatever model was largest,
and a file that names no source got a ratio too. References: parameter counts read from each file with
deploytool.inspection (what the proxy counts), and which file is whose source from how the test made it."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.inspection import inspect_model
from deploytool.passes import transform
from deploytool.passes.slice_subnetwork import SliceConfig

NO_RECORD = "proxy unknown (no variant record)"


def _params(path) -> int:
    return inspect_model(path, seq_len=8).params_each_read


def _export(path, name: str, **shape):
    from deploytool.export import ExportConfig, export_loaded
    from deploytool.testing.tiny import tiny_model

    export_loaded(tiny_model("bert", **shape), path, ExportConfig(model=name))
    return path


def _strip(src, dst) -> None:
    """The file as another tool writes it: no deploytool metadata (no record, no source)."""
    m = onnx.load(str(src))
    keep = [(p.key, p.value) for p in m.metadata_props if not p.key.startswith("deploytool.")]
    del m.metadata_props[:]
    for k, v in keep:
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(dst))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("proxy")
    tiny = _export(d / "tiny.onnx", "tiny-bert")  # 2 layers, hidden 32, 4 heads
    big = _export(d / "big.onnx", "big-bert", layers=4, hidden=48, heads=6, ffn=96)  # another model, larger
    sliced = d / "tiny_half.onnx"
    transform(tiny, sliced, SliceConfig(width=0.5, depth=0.5))  # a slice of tiny, benched beside it
    foreign = d / "foreign.onnx"
    _strip(tiny, foreign)
    runner = CliRunner()
    files = [str(p) for p in (tiny, big, sliced, foreign)]
    res = runner.invoke(main, ["bench", *files, "--runs", "2", "--warmup", "1", "--seq-len", "8",
                               "-o", str(d / "b.json")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["report", str(d / "b.json"), "-o", str(d / "rep"), "--no-projection"])
    assert res.exit_code == 0, res.output
    rows = {r["model"]: r for r in json.loads((d / "rep" / "report.json").read_text())["rows"]}
    return d, rows, (d / "rep" / "report.md").read_text()


def test_two_unrelated_exports_are_each_their_own_source(report):
    d, rows, _ = report
    assert _params(d / "tiny.onnx") < _params(d / "big.onnx")  # (the old report gave tiny their ratio)
    for name in ("tiny", "big"):
        assert rows[name]["param_fraction"] == 1.0, rows[name]
        assert rows[name]["proxy_basis"] == "its own source"
    assert rows["tiny"]["proxy_source"] != rows["big"]["proxy_source"]  # two sources, never compared


def test_a_slice_beside_its_source_gets_its_ratio_to_that_source(report):
    d, rows, md = report
    want = _params(d / "tiny_half.onnx") / _params(d / "tiny.onnx")
    assert 0 < want < 1
    assert rows["tiny_half"]["param_fraction"] == pytest.approx(want, abs=1e-4)  # (JSON rounds to 4 places)
    assert rows["tiny_half"]["proxy_source"] == rows["tiny"]["proxy_source"]
    assert "tiny-bert" in rows["tiny_half"]["proxy_basis"]
    assert f"proxy {want:.3f}" in md


def test_a_file_without_a_record_has_no_proxy_and_the_report_says_so(report):
    _, rows, md = report
    assert rows["foreign"]["param_fraction"] is None
    assert rows["foreign"]["proxy_basis"] == NO_RECORD
    line = next(ln for ln in md.splitlines() if ln.startswith("| foreign "))
    assert NO_RECORD in line, md


def test_a_slice_whose_source_is_not_in_the_report_has_no_proxy(tmp_path):
    tiny = _export(tmp_path / "tiny.onnx", "tiny-bert")
    other = _export(tmp_path / "other.onnx", "tiny-bert", layers=4, hidden=48, heads=6, ffn=96)  # same name
    sliced = tmp_path / "other_half.onnx"
    transform(other, sliced, SliceConfig(width=0.5, depth=0.5))
    runner = CliRunner()
    res = runner.invoke(main, ["bench", str(tiny), str(sliced), "--runs", "2", "--warmup", "1", "--seq-len", "8",
                               "-o", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["report", str(tmp_path / "b.json"), "-o", str(tmp_path / "rep"), "--no-projection"])
    assert res.exit_code == 0, res.output
    rows = {r["model"]: r for r in json.loads((tmp_path / "rep" / "report.json").read_text())["rows"]}
    assert rows["tiny"]["param_fraction"] == 1.0
    # the tiny-bert benched here is another model of that name: hidden 32, not the slice's 48
    assert rows["other_half"]["param_fraction"] is None
    assert rows["other_half"]["proxy_basis"].startswith("proxy unknown (the tiny-bert in this report is not its "
                                                        "source: hidden size 48"), rows["other_half"]
    shutil.rmtree(tmp_path / "rep")
