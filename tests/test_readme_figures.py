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
                 "performance-reading", "cost-model", "hygiene", "pass-speed"):
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
