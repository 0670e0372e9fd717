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
