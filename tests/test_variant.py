"""Variants as data: passes record width, depth, precision and their chain in the file; the bench JSON
and the report read them from there, never from file names; fit and recipes name variants alike."""

from __future__ import annotations

import json
import shutil

import onnx
import onnx_ir as ir
import pytest

from deploytool.passes import transform
from deploytool.passes.fp16 import Fp16Config
from deploytool.passes.prune_heads import HeadPruneConfig
from deploytool.passes.quantize_int8 import Int8Config
from deploytool.passes.slice_subnetwork import SliceConfig, SlicePass
from deploytool.variant import KEY, Variant, file_variant, read_variant, variant_label


@pytest.fixture(scope="module")
def model(tiny_onnx):
    return tiny_onnx("bert", layers=4, hidden=32, heads=4, ffn=64)


def _meta(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_chain_is_recorded_in_the_file(model, tmp_path):
    assert KEY not in _meta(model)  # the export itself carries no record: the first pass seeds it
    source = _meta(model)["deploytool.source"]
    transform(model, tmp_path / "a.onnx", SliceConfig(width=0.5, depth=0.75))
    transform(tmp_path / "a.onnx", tmp_path / "b.onnx", Int8Config())
    v = file_variant(tmp_path / "b.onnx")
    assert v == Variant(source=source, width=0.5, depth=0.75, precision="int8",
                        chain=("slice(w=0.5,d=0.75)", "int8"))
    assert v.label == "w0.5-d0.75-int8" == variant_label(0.5, 0.75, "int8")
    # the layers really kept (DynaBERT: round(0.75 * 4) = 3) are the architecture metadata's business
    assert _meta(tmp_path / "b.onnx")["deploytool.num_layers"] == "3"


def test_pruning_records_the_share_kept_and_chains_multiply(model, tmp_path):
    # 2 of 4 heads removed in two layers, 1 in the others: 10 of 16 heads kept, every layer kept
    transform(model, tmp_path / "p.onnx", HeadPruneConfig(heads={0: [0, 1], 1: [2, 3], 2: [0], 3: [1]}))
    v = file_variant(tmp_path / "p.onnx")
    assert v.width == pytest.approx(10 / 16, abs=1e-4) and v.depth == 1.0 and v.chain == ("prune-heads",)
    transform(tmp_path / "p.onnx", tmp_path / "p2.onnx", SliceConfig(width=1.0, depth=0.5))
    v2 = file_variant(tmp_path / "p2.onnx")
    assert v2.width == pytest.approx(10 / 16, abs=1e-4) and v2.depth == 0.5
    assert v2.chain == ("prune-heads", "slice(w=1,d=0.5)")


def test_seed_takes_the_stored_precision(model, tmp_path):
    transform(model, tmp_path / "h.onnx", Fp16Config(check_host=False))
    transform(tmp_path / "h.onnx", tmp_path / "hs.onnx", SliceConfig(width=0.5, depth=1))
    v = file_variant(tmp_path / "hs.onnx")
    assert v.precision == "fp16" and v.chain == ("fp16", "slice(w=0.5,d=1)")


def test_in_memory_pass_records_too(model):
    m = ir.load(str(model))
    SlicePass(SliceConfig(width=0.5, depth=0.5))(m)
    v = read_variant(dict(m.metadata_props))
    assert (v.width, v.depth, v.precision) == (0.5, 0.5, "fp32")


def test_garbage_records_are_ignored():
    assert read_variant({KEY: "not json"}) is None
    assert read_variant({KEY: json.dumps({"version": 1, "width": 2, "depth": 1, "precision": "fp32"})}) is None
    assert read_variant({KEY: json.dumps({"version": 9})}) is None


def test_report_reads_the_record_not_the_file_name(model, tmp_path):
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.report import ReportConfig, collect_rows

    # a half-width slice saved under a name that claims full width, and the full model under a neutral name
    lying = tmp_path / "bert-w1-d1-fp32.onnx"
    transform(model, lying, SliceConfig(width=0.5, depth=1))
    full = tmp_path / "full.onnx"
    shutil.copyfile(model, full)
    report = run_benchmark(BenchConfig(models=(full, lying), seq_lens=(8,), runs=2, warmup=1))
    out = tmp_path / "bench.json"
    write_json(report, out)
    data = json.loads(out.read_text())
    recorded = {m["path"]: m["variant"] for m in data["models"]}
    assert recorded[str(full)] is None and recorded[str(lying)]["label"] == "w0.5-d1-fp32"
    lying.unlink()  # the report needs only the bench JSON for the record
    rows, _ = collect_rows(ReportConfig(results=(out,), out_dir=tmp_path / "r", project=False))
    by = {r.model_path: r for r in rows}
    assert (by[str(lying)].width, by[str(lying)].depth, by[str(lying)].variant) == (0.5, 1.0, "w0.5-d1")
    assert by[str(lying)].variant_record["chain"] == ["slice(w=0.5,d=1)"]


def test_fit_and_recipes_label_alike():
    from deploytool.fit import _name
    from deploytool.recipes.runner import SweepVariant

    rv = SweepVariant(Variant("m", 0.75, 0.5, "int8"), path=None, key="")
    assert _name(0.75, 0.5, "int8") == rv.label == "w0.75-d0.5-int8"
