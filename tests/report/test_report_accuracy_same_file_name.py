"""Two benchmarked models with one file name in two folders, da/m.onnx and db/m.onnx (found 2026-12-07). An
accuracy file names a model by path, file name or stem, and each name was also filed under its file name and
stem: {"da/m.onnx": 90} gave db/m.onnx 90 % too; {"da/m.onnx": 90, "db/m.onnx": 80}, a correct file, was refused
as "two different accuracies"; {"m": 90} gave both 90 % in silence. Now a name that is a benchmarked file's path is
that file's only; a bare name that fits two files is refused, naming both."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deploytool.cli import main


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.testing.bench_models import encoder_like

    d = tmp_path_factory.mktemp("same_file_name")
    (d / "da").mkdir()
    (d / "db").mkdir()
    a = encoder_like(d / "da" / "m.onnx", vocab=50, hidden=16, layers=1)
    b = encoder_like(d / "db" / "m.onnx", vocab=50, hidden=16, layers=2)
    write_json(run_benchmark(BenchConfig(models=(a, b), seq_lens=(8,), runs=2, warmup=1)), d / "b.json")
    return d


def _report(d, tmp_path, models):
    acc = d / f"acc-{len(models)}-{next(iter(models))[:2]}.json"
    acc.write_text(json.dumps({"unit": "percent", "models": models}))
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["report", str(d / "b.json"), "--accuracy", str(acc), "--profile", "kirin990",
                                    "--no-projection", "-o", str(out)])
    rows = json.loads((out / "report.json").read_text())["rows"] if res.exit_code == 0 else None
    return res, rows


def test_a_path_names_one_file(bench, tmp_path):
    res, rows = _report(bench, tmp_path, {"da/m.onnx": 90.0})
    assert res.exit_code == 0, res.output
    assert {r["model_path"].split("/")[-2]: r["accuracy"] for r in rows} == {"da": 90.0, "db": None}


def test_two_paths_with_two_values_are_two_files(bench, tmp_path):
    res, rows = _report(bench, tmp_path, {"da/m.onnx": 90.0, "db/m.onnx": 80.0})
    assert res.exit_code == 0, res.output
    assert {r["model_path"].split("/")[-2]: r["accuracy"] for r in rows} == {"da": 90.0, "db": 80.0}


def test_a_bare_name_of_two_files_is_refused(bench, tmp_path):
    res, _ = _report(bench, tmp_path, {"m": 90.0})
    assert res.exit_code == 2
    assert res.output == (f"error: --accuracy: 'm' matches 2 benchmarked models by file name or stem "
                          f"({bench}/da/m.onnx, {bench}/db/m.onnx); name each by its path\n")
    assert not (tmp_path / "r").exists()
