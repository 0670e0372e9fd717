"""The curated public API: lazy, complete, and one verb for every pass."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import deploytool as dt
from deploytool.errors import ConfigError
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs


def test_import_is_light():
    code = ("import sys, deploytool, deploytool.passes, deploytool.graph, deploytool.inspection; "
            "print('torch' in sys.modules, 'onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_every_public_name_resolves():
    for name in dt.__all__:
        assert getattr(dt, name) is not None, name


def test_transform_dispatches_on_the_config(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", "torch", layers=2)
    feeds = fixed_inputs()
    r = dt.transform(src, tmp_path / "s.onnx", dt.SliceConfig(width=0.5, depth=1.0))
    info = dt.inspect_model(tmp_path / "s.onnx").to_dict()
    assert info["heads_per_layer"] == [2, 2] and info["ffn_per_layer"] == [32, 32]
    assert r.counts.heads_after == 4 and r.gate.verified and r.bytes_after < r.bytes_before
    dt.transform(src, tmp_path / "r.onnx", dt.ReorderConfig())
    a = run_onnx(src, feeds)["last_hidden_state"]
    b = run_onnx(tmp_path / "r.onnx", feeds)["last_hidden_state"]
    assert np.abs(a - b).max() < 1e-4
    with pytest.raises(ConfigError, match="transform\\(\\) takes one of"):  # a DeployError, one line
        dt.transform(src, tmp_path / "x.onnx", object())


@pytest.mark.parametrize(("call", "needle"), [
    (lambda: dt.inspect_model(None), "path: expected an .onnx file path, got None"),
    (lambda: dt.inspect_model(5), "path: expected an .onnx file path, got 5"),
    (lambda: dt.find_structure(None), "model: expected an onnx_ir Model or an .onnx file path, got NoneType"),
    (lambda: dt.find_structure("/no/such/model.onnx"), "/no/such/model.onnx: no such file"),
    (lambda: dt.load_recipe(None), "path: expected a recipe file path, got None"),
    (lambda: dt.run_benchmark({"models": ["a.onnx"]}), "run_benchmark: config must be a BenchConfig, got dict"),
    (lambda: dt.build_report(None), "build_report: config must be a ReportConfig, got NoneType"),
    (lambda: dt.export_model("minilm", "m.onnx"), "export_model: config must be an ExportConfig, got str"),
    (lambda: dt.export_model(dt.ExportConfig(model="minilm"), None), "out_path: expected an .onnx file path, got None"),
], ids=["inspect-none", "inspect-int", "structure-none", "structure-missing", "recipe-none", "bench-dict",
        "report-none", "export-str", "export-out-none"])
def test_public_functions_refuse_wrong_types_with_one_deploy_error(call, needle):
    """Wrong types given to the public functions were TypeErrors and AttributeErrors from deep inside."""
    with pytest.raises(dt.DeployError) as e:
        call()
    assert str(e.value) == needle


def test_find_structure_takes_a_path(tiny_onnx):
    s = dt.find_structure(tiny_onnx("bert", "torch", layers=2))
    assert s.num_layers == 2
