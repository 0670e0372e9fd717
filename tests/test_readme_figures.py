"""The README's measured figures are rendered from benchmarks/results/*.json and cannot drift."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _renderer():
    spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "benchmarks" / "readme_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_figures_match_the_results_files():
    text = README.read_text()
    rendered = _renderer().render_readme(text)
    if rendered != text:
        diff = [f"README: {a!r}\nrender: {b!r}" for a, b in zip(text.splitlines(), rendered.splitlines()) if a != b]
        raise AssertionError("README figures differ from benchmarks/results (run benchmarks/readme_figures.py):\n"
                             + "\n".join(diff[:5]))


def test_blocks_are_marked_in_the_readme():
    text = README.read_text()
    for name in ("quickstart", "conformance", "embedding", "training-table", "tws", "measured", "performance",
                 "performance-reading", "cost-model", "hygiene", "pass-speed", "training-setup", "training-notes",
                 "fit-runtime", "published-devices", "big-models"):
        assert text.count(f"<!-- figures:{name} -->") == 1 and text.count(f"<!-- /figures:{name} -->") == 1, name


def test_a_changed_results_file_changes_the_readme(tmp_path):
    """The int8 figures come from int8_bench.json: new ratios there give new text (and a failing check)."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    p = results / "int8_bench.json"
    d = json.loads(p.read_text())
    n = len(d["latency_rounds"])
    assert n >= 2, "the test needs two rounds or more"
    for rnd, value in zip(d["latency_rounds"], [0.5 + 0.1 * i / (n - 1) for i in range(n)]):
        for row in rnd:
            if row["variant"] == "ours" and row["seq_len"] == 8:
                row["paired_ratio_to_optimum"] = value
    p.write_text(json.dumps(d))
    text = README.read_text()
    mod = _renderer()
    new = mod.render_readme(text, results)
    assert new != text
    assert "0.50-0.60 of optimum's latency at sequence 8" in " ".join(new.split())
    assert "0.50-0.60 of optimum's latency at sequence 8" not in " ".join(text.split())


def test_cited_results_files_exist():
    cited = set(re.findall(r"benchmarks/results/([\w./{},-]+?\.(?:json|md))", README.read_text()))
    assert cited
    for name in cited:
        if "{" in name:
            continue
        assert (ROOT / "benchmarks" / "results" / name).exists(), name


def test_a_fresh_training_run_changes_the_training_prose(tmp_path):
    """The Training section's prose comes from train_bench_standard.json: a run that trained every stage
    itself is timed against the schedule's goal, and the teacher's per-epoch dev accuracy is the file's."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    p = results / "train_bench_standard.json"
    d = json.loads(p.read_text())
    d["reused_stages"] = []
    d["total_seconds"] = 3456.0
    d["machine"] = "Some CPU, x86_64, 2 logical CPUs, load avg 0.4 at start, 2.1 at end"
    for e, acc in zip(d["teacher"]["train"]["per_epoch"], [70.0, 71.5, 72.3]):
        e["dev_accuracy"] = acc
    p.write_text(json.dumps(d))
    text = README.read_text()
    new = " ".join(_renderer().render_readme(text, results).split())
    assert "dev 70.0, 71.5, 72.3% after each: still improving" in new
    assert ("the whole run took 57.6 min wall-clock (3,456 s, load average 0.4 at the start and 2.1 at the end): "
            "within the schedule's 60-minute goal") in new
    d["total_seconds"] = 3700.0
    p.write_text(json.dumps(d))
    new = " ".join(_renderer().render_readme(text, results).split())
    assert "took 61.7 min wall-clock (3,700 s, load average 0.4 at the start and 2.1 at the end): over the" in new


def test_densest_block_shows_the_bert_base_sizes_from_pack_bench(tmp_path):
    """The densest-qat block's BERT-base rows come from pack_bench.json's ``<scheme>_<scope>`` variants: new
    sizes there give new cells, each the file's MB and its ratio to the fp32 export as the file states it."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    p = results / "pack_bench.json"
    d = json.loads(p.read_text())
    variants = d["models"]["bert-base"]["variants"]
    sizes = {"ternary_densest_head_int8pos": (23_456_789, 18.66), "binary_densest_head_int8pos": (15_111_111, 28.96),
             "binary_densest_all": (14_000_001, 31.26)}
    for name, (b, ratio) in sizes.items():
        variants[name] = {"bytes": b, "ratio_to_fp32": ratio, "config": {"granularity": "row"},
                          "reduced_run": {"created_utc": "2031-01-02T03:04:05+00:00", "cpuinfo_model_name": "Test CPU"}}
    for name in [k for k in variants if k.startswith(("ternary_densest", "binary_densest")) and k not in sizes]:
        del variants[name]
    p.write_text(json.dumps(d))
    block = _renderer().render_densest_qat(results)
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in block.splitlines()
            if ln.startswith("| BERT-base")}
    # columns: default, + pooler/classifier, + int8 position tables, everything
    assert rows["BERT-base shape, ternary (size only)"] == ["-", "-", "23.5 MB, 18.7x", "-"]
    assert rows["BERT-base shape, binary (size only)"] == ["-", "-", "15.1 MB, 29.0x", "14.0 MB, 31.3x"]
    text = " ".join(block.split())
    assert "2031-01-02" in text and "Test CPU" in text
    trained = json.loads((results / "train_bench_standard.json").read_text())["schedule_settings"]["qat_granularity"]
    assert ("NOT the QAT models'" in text) == (trained != "row")
    # the targets (18x ternary, 28x binary) first reached with int8 position tables in both schemes
    assert "ternary from '+ pooler, classifier; position tables int8' (18.7x)" in text
    assert "binary from '+ pooler, classifier; position tables int8' (29.0x)" in text
