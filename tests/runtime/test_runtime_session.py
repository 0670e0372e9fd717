"""SessionSpec validation, provider fallback with reasons, inserted fp16 casts, host info."""

from __future__ import annotations

import importlib.util
import platform

import numpy as np
import pytest
from onnx import TensorProto

from deploytool.errors import ConfigError, InputFileError, UnavailableError
from deploytool.runtime.session import (
    ExecutionProvider,
    GraphOptimization,
    ProviderSpec,
    SessionSpec,
    build_session,
    host_info,
    inserted_precision_casts,
)
from deploytool.testing.bench_models import encoder_like, float_input_model

CPU = "CPUExecutionProvider"


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    return encoder_like(tmp_path_factory.mktemp("rt") / "enc.onnx")


def test_spec_coerces_and_round_trips():
    spec = SessionSpec(providers=["XNNPACK", ("acl", {"enable_fast_math": True}), "CPUExecutionProvider"],
                       intra_op_threads=2, graph_optimization="extended", config_entries={"a.b": 1})
    assert [p.provider for p in spec.providers] == [ExecutionProvider.XNNPACK, ExecutionProvider.ACL,
                                                   ExecutionProvider.CPU]
    assert spec.providers[1].options_dict() == {"enable_fast_math": "1"}
    assert spec.graph_optimization is GraphOptimization.EXTENDED
    assert spec.config_entries == (("a.b", "1"),)
    assert SessionSpec.from_dict(spec.to_dict()) == spec
    assert spec.with_threads(4).intra_op_threads == 4
    with pytest.raises(Exception):
        spec.intra_op_threads = 3  # frozen


@pytest.mark.parametrize("kwargs, match", [
    (dict(providers=["tpu9000"]), r"execution provider: expected one of CPU, XNNPACK, .*, got 'tpu9000'$"),
    (dict(providers=["xnnpak"]), r"got 'xnnpak' \(did you mean 'XNNPACK'\?\)"),
    (dict(providers=[]), "providers: the list is empty"),
    (dict(providers=["cpu", "CPU"]), "listed twice"),
    (dict(intra_op_threads=-1), r"intra_op_threads: must be an integer in \[0, 1024\]"),
    (dict(inter_op_threads=1.5), "inter_op_threads"),
    (dict(graph_optimization="max"), r"^graph_optimization: expected one of disable, basic, extended, layout, all, got 'max'$"),
    (dict(execution_mode="async"), r"^execution_mode: expected one of sequential, parallel, got 'async'$"),
    (dict(providers=[{"name": "cpu", "opts": {}}]), "unknown key"),
    (dict(config_entries={"k": [1]}), r"config_entries\[k\]"),
])
def test_spec_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SessionSpec(**kwargs)


def test_from_dict_names_unknown_key():
    with pytest.raises(ConfigError, match="unknown key.*threads"):
        SessionSpec.from_dict({"threads": 2})


def test_fallback_records_what_ran_and_why(enc):
    sess, info = build_session(enc, SessionSpec(providers=["xnnpack", "acl", "cpu"]))
    assert info.requested == ("XnnpackExecutionProvider", "ACLExecutionProvider", CPU)
    assert info.providers == tuple(sess.get_providers())
    assert info.primary == CPU and info.fell_back
    reasons = dict(info.skipped)
    assert set(reasons) == {"XnnpackExecutionProvider", "ACLExecutionProvider"}
    assert all(r.startswith("not in this onnxruntime build: available are [") and CPU in r for r in reasons.values())
    out = sess.run(None, {"input_ids": np.ones((1, 4), np.int64), "attention_mask": np.ones((1, 4), np.int64),
                          "token_type_ids": np.zeros((1, 4), np.int64)})
    assert out[0].shape == (1, 4, 16)
    d = info.to_dict()
    assert d["skipped"][0]["provider"] == "XnnpackExecutionProvider" and d["create_ms"] >= 0


def test_no_requested_provider_available_says_cpu_ran(enc):
    _, info = build_session(enc, SessionSpec(providers=["nnapi"]))
    assert info.providers == (CPU,)
    assert info.notes and "CPU" in info.notes[0]


def test_strict_refuses_fallback(enc):
    with pytest.raises(UnavailableError, match="XnnpackExecutionProvider unavailable: not in this onnxruntime"):
        build_session(enc, SessionSpec(providers=["xnnpack", "cpu"], strict=True))


def test_threads_and_config_entries_reach_ort(enc):
    sess, _ = build_session(enc, SessionSpec(intra_op_threads=2, config_entries={"session.intra_op.allow_spinning": 0}))
    opts = sess.get_session_options()
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_bad_model_files(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        build_session(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx model at all")
    # read as every command reads a file (before ONNX Runtime, which checks its external data too)
    with pytest.raises(InputFileError, match="junk.onnx: not a readable ONNX model"):
        build_session(junk)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime_qnn") is None, reason="onnxruntime-qnn not installed")
def test_qnn_goes_through_the_plugin_path(enc):
    _, info = build_session(enc, SessionSpec(providers=["qnn", "cpu"]))
    # the plugin is registered and really in the session (not the silent CPU-only legacy path)
    assert info.providers[0] == "QNNExecutionProvider", info.to_dict()
    assert CPU in info.providers


def test_inserted_precision_casts(tmp_path, enc):
    f16 = float_input_model(tmp_path / "f16.onnx", dtype=TensorProto.FLOAT16)
    casts = inserted_precision_casts(f16)
    if platform.machine() in ("x86_64", "AMD64"):  # MLAS has no fp16 MatMul on x86: ORT casts to fp32
        assert casts and all(c.startswith("InsertedPrecisionFreeCast_") for c in casts)
    assert inserted_precision_casts(enc) == []


def test_host_info_fields():
    h = host_info()
    assert h["arch"] == platform.machine()
    assert h["logical_cores"] >= 1 and h["onnxruntime"]
    assert CPU in h["available_providers"]
    assert isinstance(h["isa"], dict) and all(isinstance(v, bool) for v in h["isa"].values())
    if h["arch"] == "x86_64":
        assert {"avx2", "avx512f", "avx512_vnni", "amx_tile"} <= set(h["isa"])


def test_provider_spec_coerce_forms():
    assert ProviderSpec.coerce({"name": "qnn", "options": {"soc_model": 57}}).options == (("soc_model", "57"),)
    assert ProviderSpec.coerce(ExecutionProvider.CPU).name == CPU
    with pytest.raises(ConfigError):
        ProviderSpec.coerce(42)


def test_the_optimized_graph_of_a_model_with_external_data_carries_its_own(tmp_path, enc):
    """ORT wrote an input's external tensors as references to the input's data file, relative to the optimized
    model's folder, where it was not: costing a model with external data (any over 2 GB) failed in the report."""
    import onnx

    from deploytool.onnx_io import load_proto
    from deploytool.runtime.session import optimize_model

    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(onnx.load(str(enc)), str(src / "m.onnx"), save_as_external_data=True, location="m.onnx.data")
    (tmp_path / "opt").mkdir()
    out = optimize_model(src / "m.onnx", tmp_path / "opt" / "o.onnx")
    (src / "m.onnx.data").rename(src / "gone")  # nothing of the input is read back
    proto = load_proto(out)
    assert {i.name for i in proto.graph.initializer} and (out.parent / "o.onnx.data").is_file()
