"""Two unrelated models in one bench: a plain tiny BERT export (2 layers, 4 heads) and a slice (width 0.5, depth
0.75) of another, 6-layer 12-head model. The report gave the tiny export width/depth 0.667/0.5: a model without a
variant record was measured against the largest model of the report (4 heads of the slice's 6, 2 layers of its 4),
a model it has nothing to do with. Each model is now compared with its own source only: the slice by its record,
the untouched export is its own source (1 / 1), and a file that names no source (an export by another tool, a slice
made before passes recorded variants) is 'unknown (no variant record)'. References below are written from how
each file was made."""

from __future__ import annotations

import json
import shutil

import onnx
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.passes import transform
from deploytool.passes.slice_subnetwork import SliceConfig

UNKNOWN = "unknown (no variant record)"


def _rewrite_metadata(src, dst, drop) -> None:
    m = onnx.load(str(src))
    keep = [(p.key, p.value) for p in m.metadata_props if not drop(p.key)]
    del m.metadata_props[:]
    for k, v in keep:
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(dst))


def test_unrelated_models_in_one_bench_each_get_their_own_width_and_depth(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = tmp_path / "tiny.onnx"
    shutil.copyfile(tiny_onnx("bert"), tiny)  # hidden 32, 2 layers, 4 heads: deploytool's export, no pass
    other = tiny_onnx("bert", layers=6, hidden=48, heads=12, ffn=96)  # another model, not benched itself
    sliced = tmp_path / "other_sliced.onnx"
    transform(other, sliced, SliceConfig(width=0.5, depth=0.75))  # 6 heads, layers [0, 1, 2, 4]
    foreign = tmp_path / "foreign.onnx"  # the tiny export as another tool writes it: no deploytool metadata
    _rewrite_metadata(tiny, foreign, lambda k: k.startswith("deploytool."))
    old_slice = tmp_path / "old_slice.onnx"  # a slice from before passes recorded variants: no record
    _rewrite_metadata(sliced, old_slice, lambda k: k == "deploytool.variant")

    runner = CliRunner()
    res = runner.invoke(main, ["bench", str(tiny), str(sliced), str(foreign), str(old_slice), "--runs", "2",
                               "--warmup", "1", "--seq-len", "8", "-o", "b.json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["report", "b.json", "-o", "rep", "--no-projection"])
    assert res.exit_code == 0, res.output

    rows = {r["model"]: r for r in json.loads((tmp_path / "rep" / "report.json").read_text())["rows"]}
    got = {m: (r["width"], r["depth"], r["variant"], r["variant_basis"]) for m, r in rows.items()}
    assert got == {
        "tiny": (1.0, 1.0, "w1-d1", "deploytool export: its own source"),
        "other_sliced": (0.5, 0.75, "w0.5-d0.75", "variant record"),
        "foreign": (None, None, "", UNKNOWN),
        "old_slice": (None, None, "", UNKNOWN),
    }
    assert rows["tiny"]["variant_record"] is None  # nothing is made up for the file's own record
    assert rows["other_sliced"]["variant_record"]["source"] == "tiny-bert"

    md = (tmp_path / "rep" / "report.md").read_text()
    cells = {ln.split("|")[1].strip().lstrip("★* ").rstrip("*"): ln.split("|")[3].strip()
             for ln in md.splitlines() if ln.startswith("| ") and ln.split("|")[1].strip().strip("★* ") in rows}
    assert cells == {"tiny": "1 / 1", "other_sliced": "0.5 / 0.75", "foreign": UNKNOWN, "old_slice": UNKNOWN}, md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert UNKNOWN in html and "0.667 / 0.5" not in html and "w0.667" not in html
