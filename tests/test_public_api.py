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


def test_every_pass_config_is_public():
    """Each config ``transform`` takes is a name of the package, as the verb is (RepackConfig was reachable only
    from its module)."""
    from deploytool.passes import pass_table

    for config in pass_table():
        assert getattr(dt, config.__name__, None) is config, config.__name__


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


ENTRY_POINTS = [  # (module, function, the config class, how it is called with a config)
    ("deploytool.fit", "fit", "FitConfig", lambda f, c: f(c)),
    ("deploytool.train.finetune", "finetune", "TrainConfig", lambda f, c: f(c)),
    ("deploytool.train.dynabert", "train_dynabert", "DynaBertConfig", lambda f, c: f(c)),
    ("deploytool.train.qat", "train_qat", "QATConfig", lambda f, c: f(c)),
    ("deploytool.train.evaluate", "evaluate", "EvalConfig", lambda f, c: f(c)),
    ("deploytool.train.embedding", "evaluate_embedding", "EvalConfig", lambda f, c: f(c)),
    ("deploytool.train.importance", "compute_importance", "ImportanceConfig", lambda f, c: f(c)),
    ("deploytool.arm64.verify", "verify_arm64", "VerifyConfig", lambda f, c: f(c)),
    ("deploytool.qnn.check", "check_model", "QnnCheckConfig", lambda f, c: f("m.onnx", c)),
    ("deploytool.qnn.compile", "compile_model", "QnnCompileConfig", lambda f, c: f("m.onnx", "out", c)),
    ("deploytool.qnn.quantize", "quantize_file", "QnnQuantConfig", lambda f, c: f("m.onnx", "q.onnx", c)),
    ("deploytool.bundle", "make_bundle", "BundleConfig", lambda f, c: f("m.onnx", "out", c)),
    ("deploytool.remote.ssh", "bench_remote", "RemoteConfig",
     lambda f, c: f(dt.BenchConfig(models=("m.onnx",)), c, "b.json")),
]


@pytest.mark.parametrize(("module", "name", "cls", "call"), ENTRY_POINTS, ids=[e[1] for e in ENTRY_POINTS])
@pytest.mark.parametrize("wrong", ["path", "dict", "other-config"])
def test_every_entry_point_refuses_what_is_not_its_config(module, name, cls, call, wrong, tmp_path, monkeypatch):
    """fit(Path("m.onnx")), finetune({...}), verify_arm64(...), check_model(path, SliceConfig()) ... were
    AttributeErrors from inside ("'PosixPath' object has no attribute 'output'"); make_bundle and bench_remote
    raised TypeError: each is now the one line transform(), run_benchmark() and export_model() give."""
    import importlib
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    fn = getattr(importlib.import_module(module), name)
    given = {"path": Path("m.onnx"), "dict": {"model": "m.onnx"}, "other-config": dt.SliceConfig(width=0.5)}[wrong]
    with pytest.raises(ConfigError) as e:
        call(fn, given)
    article = "an" if cls[0] in "AEIOU" else "a"
    assert str(e.value) == f"{name}: config must be {article} {cls}, got {type(given).__name__}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("which", ["run_benchmark", "fit", "verify_arm64"])
def test_a_callback_that_cannot_be_called_is_refused_before_any_work(which, tiny_onnx, tmp_path, monkeypatch):
    """``run_benchmark(config, progress=3)`` started its worker, ``fit(config, progress="x")`` built a candidate,
    and both then died of ``TypeError: 'int' object is not callable``; now one line first, nothing written."""
    from deploytool.arm64.verify import VerifyConfig, verify_arm64
    from deploytool.fit import FitConfig, fit

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(tiny_onnx("bert").read_bytes())
    call = {"run_benchmark": lambda: dt.run_benchmark(dt.BenchConfig(models=("m.onnx",)), progress=3),
            "fit": lambda: fit(FitConfig(model="m.onnx", profile="x86-host", output="o.onnx"), progress="x"),
            "verify_arm64": lambda: verify_arm64(VerifyConfig(models=("m.onnx",), cpus=("max",)), on_setup=1)}[which]
    with pytest.raises(ConfigError) as e:
        call()
    assert str(e.value) in ("progress: expected a function taking a ProgressEvent (or None), got int 3",
                            "progress: expected a function taking one line of text (or None), got str 'x'",
                            "on_setup: expected a function of no arguments (or None), got int 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_find_structure_takes_a_path(tiny_onnx):
    s = dt.find_structure(tiny_onnx("bert", "torch", layers=2))
    assert s.num_layers == 2


# ------------------------------------------------------------------ a user's process is left as it was
#
# deploytool is imported by programs and notebooks with their own logging set-up, random state and thread count:
# a call may change them while it runs, never after it returned or raised.

_ORT_INT8_LOGGING = r"""
import logging, sys
import deploytool as dt
from deploytool.passes.quantize_int8 import Engine
dt.transform(sys.argv[1], sys.argv[2], dt.Int8Config(engine=Engine.ORT))
root = logging.getLogger()
print(len(root.handlers), root.level)
logging.basicConfig(level=logging.INFO, format="USER %(message)s")
logging.getLogger("user").info("configured")
"""


def test_int8_through_ort_leaves_the_users_logging_alone(tiny_onnx, tmp_path):
    """ONNX Runtime's quantizer logs through logging.warning(), which gave the root logger a handler of its own
    (basicConfig() on a root without one): the user's own basicConfig(level=INFO) after it did nothing."""
    src = tiny_onnx("bert", "torch", layers=2)
    p = subprocess.run([sys.executable, "-c", _ORT_INT8_LOGGING, str(src), str(tmp_path / "q.onnx")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["0", "30"]  # no handler, WARNING: as Python starts
    assert "USER configured" in p.stderr


def test_export_model_keeps_the_callers_random_state_and_logging(tiny_hf_folder, tmp_path):
    """export_model seeded torch's global generator (torch.manual_seed(0) for weights a folder lacks): a
    program's random numbers after an export were the same whatever its own seed."""
    import torch
    import transformers

    folder = tiny_hf_folder("bert", layers=2)
    torch.manual_seed(1234)
    state = torch.random.get_rng_state()
    verbosity = transformers.logging.get_verbosity()
    dt.export_model(dt.ExportConfig(model=str(folder)), tmp_path / "m.onnx")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert transformers.logging.get_verbosity() == verbosity


def test_loaders_leave_transformers_verbosity_alone(tmp_path):
    """load_tokenizer / load_classifier set transformers' verbosity to errors for good: a program's transformers
    warnings were gone after its first evaluation."""
    import transformers

    from deploytool.testing.toy_text import tiny_classifier_folder, toy_tokenizer
    from deploytool.train.checkpoint import load_classifier, load_tokenizer

    toy_tokenizer(tmp_path / "tok")
    folder = tiny_classifier_folder(tmp_path / "clf")
    transformers.logging.set_verbosity_warning()
    try:
        load_tokenizer(tmp_path / "tok")
        assert transformers.logging.get_verbosity() == transformers.logging.WARNING
        load_classifier(folder, num_labels=2)
        assert transformers.logging.get_verbosity() == transformers.logging.WARNING
    finally:
        transformers.logging.set_verbosity_warning()


@pytest.mark.parametrize("what", ["evaluate", "importance"])
def test_evaluate_and_importance_restore_torch_threads(what, tmp_path):
    """evaluate() and compute_importance() set torch's thread count and left it set, also when they raised."""
    import torch

    from deploytool.errors import DeployError
    from deploytool.train.config import EvalConfig, ImportanceConfig

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    if what == "evaluate":
        from deploytool.train.evaluate import evaluate

        call = lambda: evaluate(EvalConfig(model=tmp_path / "none.onnx", threads=other))  # noqa: E731
    else:
        from deploytool.train.importance import compute_importance

        call = lambda: compute_importance(ImportanceConfig(model=tmp_path / "none", output=tmp_path / "i.json",  # noqa: E731
                                                           threads=other))
    with pytest.raises(DeployError):
        call()
    assert torch.get_num_threads() == before
