"""Typed configs built from the library (not the CLI) with values of the wrong type: one DeployError naming the
field, at construction (found by a session calling the Python API with odd values, 2026-12-06: raw TypeError,
AttributeError and OverflowError, strings read letter by letter, "no" taken as true)."""

from __future__ import annotations

import numpy as np
import pytest

from deploytool.errors import DeployError


@pytest.fixture(scope="module")
def files(tiny_onnx, tmp_path_factory):
    import json

    d = tmp_path_factory.mktemp("cfg")
    model = tiny_onnx("bert", exporter="torch")
    bench = d / "b.json"
    from deploytool.bench import BenchConfig, run_benchmark, write_json

    write_json(run_benchmark(BenchConfig(models=(model,), seq_lens=(8,), runs=2, warmup=0)), bench)
    acc = d / "acc.json"
    acc.write_text(json.dumps({"unit": "percent", "models": {"x": 80}}))
    return {"model": model, "bench": bench, "acc": acc, "dir": d}


def _cases():
    from deploytool.bench.config import BenchConfig
    from deploytool.export import ExportConfig
    from deploytool.fit import FitConfig
    from deploytool.passes.prune_ffn import FFNPruneConfig
    from deploytool.passes.prune_heads import HeadPruneConfig
    from deploytool.report import ReportConfig

    H = 10 ** 5000
    return [
        (lambda f: FFNPruneConfig(neurons=[1]), "neurons: expected a mapping"),
        (lambda f: FFNPruneConfig(neurons={0: 5}), "neurons: layer 0: expected a list of neuron ids"),
        (lambda f: FFNPruneConfig(neurons="abc"), "neurons: expected a mapping"),
        (lambda f: HeadPruneConfig(heads={0: None}), "heads: layer 0: expected a list of head ids"),
        (lambda f: BenchConfig(models=(f["model"],), timeout_s=float("nan")), "timeout_s: expected a finite number, got nan"),
        (lambda f: BenchConfig(models=(f["model"],), timeout_s=H), "timeout_s: expected a finite number, got <about 5001 digits>"),
        # what a model may be, not only its type (3cc990b had lost the hint)
        (lambda f: ExportConfig(model=None), "model: expected a built-in model name (such as minilm) or a Hugging "
                                             "Face model folder, got nothing"),
        (lambda f: ExportConfig(model=" "), "model: expected a built-in model name (such as minilm)"),
        (lambda f: ExportConfig(model="x", validate="no"), "validate: expected true or false, got str 'no'"),
        (lambda f: ExportConfig(model="x", validate=None), "validate: expected true or false, got nothing"),
        (lambda f: ExportConfig(model="x", source=123), "source: expected a string, got int 123"),
        (lambda f: ExportConfig(model="x", atol=H), "atol: expected a finite number, got <about 5001 digits>"),
        (lambda f: FitConfig(model=f["model"], profile="x86-host", output=f["dir"] / "o.onnx", widths=None),
         "widths: expected numbers in (0, 1], got None"),
        (lambda f: FitConfig(model=f["model"], profile="x86-host", output=f["dir"] / "o.onnx", widths="0.5"),
         "widths: expected numbers in (0, 1], got '0.5'"),
        (lambda f: FitConfig(model=f["model"], profile=5, output=f["dir"] / "o.onnx"), "profile: expected a device"),
        (lambda f: FitConfig(model=None, profile="x86-host", output=f["dir"] / "o.onnx"), "model: expected a file path"),
        (lambda f: FitConfig(model=f["model"], profile="x86-host", output=f["dir"] / "o.onnx", accuracies=[1]),
         "accuracies: expected a mapping"),
        (lambda f: ReportConfig(results=None, out_dir=f["dir"] / "r"), "results: expected a list, got nothing"),
        (lambda f: ReportConfig(results=f["bench"], out_dir=None), "out_dir: expected a file path, got nothing"),
        (lambda f: ReportConfig(results=f["bench"], out_dir=f["dir"] / "r", profiles=[1]), "profiles: item 0: expected a string, got int 1"),
        (lambda f: ReportConfig(results=f["bench"], out_dir=f["dir"] / "r", project="no"), "project: expected true"),
        (lambda f: ReportConfig(results=f["bench"], out_dir=f["dir"] / "r", title=None), "title: expected"),
    ]


@pytest.mark.parametrize("i", range(22))
def test_a_wrong_type_is_one_deploy_error_naming_the_field(files, i):
    make, needle = _cases()[i]
    with pytest.raises(DeployError) as e:
        make(files)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_one_value_where_a_list_goes_is_that_value(files):
    """A single string for a list of names was split into letters ("profiles: i given twice", "precisions: unknown
    'i'", "a: no such accuracy file"); a numpy scalar width was a TypeError."""
    from deploytool.fit import FitConfig
    from deploytool.report import ReportConfig

    r = ReportConfig(results=files["bench"], out_dir=files["dir"] / "r", profiles="kirin990", accuracy=files["acc"])
    assert r.profiles == ("kirin990",) and r.accuracy == (files["acc"],)
    f = FitConfig(model=files["model"], profile="x86-host", output=files["dir"] / "o.onnx", precisions="int8",
                  widths=np.float32(0.5))
    assert f.precisions == ("int8",) and f.widths == (0.5,) and f.profile.name == "x86-host"
