"""Models with external data (over 2 GB in real life) through slice, prune and pack, on tiny models.

The big-model path is forced on a tiny export: the input is saved with external data (one data file,
or one file per tensor as ``torch.onnx.export`` writes above 2 GB) and/or the output threshold
``onnx_io.EXTERNAL_DATA_BYTES`` is lowered. What must hold (benchmarks/big_models.py measures the real
sizes): the output runs and equals an independent PyTorch reference; an output under the threshold
is one self-contained file, one over it has one external-data file; the input's files are never
modified (not even when the output's data file would take the input's data file name); the INT2
opset upgrade never serializes the weights (protobuf cannot serialize more than 2 GB).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from deploytool import onnx_io
from deploytool.errors import VerificationError
from deploytool.passes import base, transform
from deploytool.passes.pack_weights import PackConfig, upgrade_opset
from deploytool.passes.prune_ffn import FFNPruneConfig
from deploytool.passes.prune_heads import HeadPruneConfig
from deploytool.passes.slice_subnetwork import SliceConfig
from deploytool.runtime.infer import run_onnx
from deploytool.testing import big
from deploytool.testing.conformance import torch_outputs
from deploytool.testing.tiny import fixed_inputs

SHAPE = dict(layers=4, hidden=32, heads=4, ffn=48, seed=8)
HEADS = {0: [0, 1], 3: [3]}
FEEDS = fixed_inputs(lengths=(8, 5))
TOL = 1e-4


@pytest.fixture(scope="module")
def plain(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


@pytest.fixture(scope="module")
def torch_model(tiny_torch_model):
    return tiny_torch_model("bert", **SHAPE)


def _external_copy(src: Path, folder: Path, *, one_file: bool = True, data_name: str | None = None) -> Path:
    """``src`` saved again in ``folder`` with every initializer over 1 KiB in external data."""
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / "model.onnx"
    proto = onnx.load(str(src))
    onnx.save_model(proto, str(dst), save_as_external_data=True, all_tensors_to_one_file=one_file,
                    location=data_name or "model.onnx.data", size_threshold=1024)
    assert _data_files(dst)
    return dst


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _data_files(path: Path) -> list[str]:
    """Names of the external-data files the model at ``path`` refers to (read here, not by deploytool)."""
    proto = onnx.load(str(path), load_external_data=False)
    return sorted({e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"})


def _reference(pass_name: str, torch_model):
    if pass_name == "slice":
        return big.slice_reference(torch_model, 0.5, 0.75)
    if pass_name == "prune-heads":
        return big.head_prune_reference(torch_model, HEADS)
    return big.ffn_keep_reference(torch_model, 0.5)


def _force_external(monkeypatch) -> None:
    """Every output "over" the limit (the tiny model's weights are a few hundred KB)."""
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 0)
    monkeypatch.setattr(onnx_io, "_is_serializable_size", lambda model: False)


CONFIGS = {
    "slice": SliceConfig(width=0.5, depth=0.75),
    "prune-heads": HeadPruneConfig(heads=HEADS),
    "prune-ffn": FFNPruneConfig(keep=0.5),
}


@pytest.mark.parametrize("one_file", [True, False], ids=["one-data-file", "file-per-tensor"])
@pytest.mark.parametrize("pass_name", list(CONFIGS))
def test_external_input_structured_pass_equals_reference(plain, torch_model, tmp_path, pass_name, one_file):
    src = _external_copy(plain, tmp_path / "in", one_file=one_file)
    before = _digests(src.parent)
    dst = tmp_path / "out" / f"{pass_name}.onnx"
    res = transform(src, dst, CONFIGS[pass_name])
    assert _digests(src.parent) == before  # the input's files are untouched
    assert res.gate.verified is True
    assert res.bytes_before == sum((src.parent / n).stat().st_size for n in before)
    # the output is small: one self-contained file, whatever the input was
    assert _data_files(dst) == [] and sorted(p.name for p in dst.parent.iterdir()) == [dst.name]
    got = run_onnx(dst, FEEDS)["last_hidden_state"]
    want = torch_outputs(_reference(pass_name, torch_model), FEEDS)["last_hidden_state"]
    assert np.abs(got - want).max() <= TOL


@pytest.mark.parametrize("runtime", ["speed", "memory"])
def test_external_input_pack_equals_single_file_input(plain, tmp_path, runtime):
    src = _external_copy(plain, tmp_path / "in")
    before = _digests(src.parent)
    cfg = PackConfig(weights="ternary", runtime=runtime)
    a = transform(src, tmp_path / "a" / "packed.onnx", cfg)
    transform(plain, tmp_path / "b" / "packed.onnx", cfg)
    assert _digests(src.parent) == before
    assert a.gate.verified is True
    if runtime == "speed":
        assert a.stats["opset"] == "17 -> 25"
    assert _data_files(tmp_path / "a" / "packed.onnx") == []
    got = run_onnx(tmp_path / "a" / "packed.onnx", FEEDS)
    want = run_onnx(tmp_path / "b" / "packed.onnx", FEEDS)
    assert got.keys() == want.keys()
    for k in got:
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("pass_name", ["slice", "pack-speed"])
def test_big_output_gets_one_data_file_and_a_fresh_one(plain, torch_model, tmp_path, monkeypatch, pass_name):
    _force_external(monkeypatch)
    src = _external_copy(plain, tmp_path / "in", one_file=False)
    before = _digests(src.parent)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "m.onnx"
    (out / "m.onnx.data").write_bytes(b"stale bytes of an earlier output" * 100)  # replaced, never appended to
    cfg = SliceConfig(width=0.5, depth=0.75) if pass_name == "slice" else PackConfig(weights="ternary")
    res = transform(src, dst, cfg)
    assert _digests(src.parent) == before
    assert _data_files(dst) == ["m.onnx.data"]
    assert sorted(p.name for p in out.iterdir()) == ["m.onnx", "m.onnx.data"]  # no temporary files
    assert b"stale" not in (out / "m.onnx.data").read_bytes()
    proto = onnx.load(str(dst), load_external_data=False)
    ends = [int(e.value) for t in proto.graph.initializer for e in t.external_data if e.key in ("offset", "length")]
    assert max(ends[i] + ends[i + 1] for i in range(0, len(ends), 2)) <= (out / "m.onnx.data").stat().st_size
    assert res.bytes_after == dst.stat().st_size + (out / "m.onnx.data").stat().st_size
    # the returned model reads its external tensors from beside dst, whatever the current directory
    w = next(v for v in res.model.graph.initializers.values() if v.const_value is not None and v.const_value.size > 256)
    assert w.const_value.numpy().size == w.const_value.size
    got = run_onnx(dst, FEEDS)["last_hidden_state"]
    if pass_name == "slice":
        want = torch_outputs(_reference("slice", torch_model), FEEDS)["last_hidden_state"]
        assert np.abs(got - want).max() <= TOL
    else:
        monkeypatch.undo()
        transform(plain, tmp_path / "single.onnx", cfg)
        np.testing.assert_array_equal(got, run_onnx(tmp_path / "single.onnx", FEEDS)["last_hidden_state"])


def test_output_data_file_never_takes_the_inputs_name(plain, torch_model, tmp_path, monkeypatch):
    # the input's data file is called what the output's would be: b.onnx -> b.onnx.data
    _force_external(monkeypatch)
    src = _external_copy(plain, tmp_path, data_name="b.onnx.data")
    before = _digests(tmp_path)
    dst = tmp_path / "b.onnx"
    transform(src, dst, SliceConfig(width=0.5, depth=0.75))
    assert _digests(tmp_path)["b.onnx.data"] == before["b.onnx.data"]
    assert _digests(tmp_path)["model.onnx"] == before["model.onnx"]
    assert _data_files(dst) == ["b.onnx.1.data"]
    want = torch_outputs(_reference("slice", torch_model), FEEDS)["last_hidden_state"]
    assert np.abs(run_onnx(dst, FEEDS)["last_hidden_state"] - want).max() <= TOL
    # the input still runs as before
    np.testing.assert_array_equal(run_onnx(src, FEEDS)["last_hidden_state"],
                                  run_onnx(plain, FEEDS)["last_hidden_state"])


def test_failed_pass_leaves_the_inputs_data_file_alone(plain, tmp_path, monkeypatch):
    # a gate failure used to unlink "<dst>.data", which here is the input's data file
    _force_external(monkeypatch)
    src = _external_copy(plain, tmp_path, data_name="b.onnx.data")
    before = _digests(tmp_path)
    monkeypatch.setattr(base, "_gate", lambda *a, **k: (_ for _ in ()).throw(VerificationError("boom")))
    with pytest.raises(VerificationError):
        transform(src, tmp_path / "b.onnx", SliceConfig(width=0.5))
    assert _digests(tmp_path) == before  # nothing written, nothing removed


def test_upgrade_opset_never_serializes_the_weights(plain, monkeypatch):
    model = onnx_io.load_model(plain)
    tensors = {n: v.const_value for n, v in model.graph.initializers.items()}
    seen = {}
    real = onnx.version_converter.convert_version

    def spy(proto, target):
        seen["raw"] = max(len(t.raw_data) for t in proto.graph.initializer)
        seen["size"] = proto.ByteSize()
        return real(proto, target)

    monkeypatch.setattr(onnx.version_converter, "convert_version", spy)
    up = upgrade_opset(model)
    assert seen["raw"] <= 1024  # the converter saw placeholders, not weights
    assert up.opset_imports[""] == 25
    # the input model is left as it was; the upgraded one holds the very same tensors (no copy)
    assert all(model.graph.initializers[n].const_value is t for n, t in tensors.items())
    big_ones = [n for n, t in tensors.items() if t.nbytes > 1024]
    assert big_ones and all(up.graph.initializers[n].const_value is tensors[n] for n in big_ones)


def test_save_proto_threshold_decides_external_data(plain, tmp_path, monkeypatch):
    proto = onnx.load(str(plain))
    onnx_io.save_proto(proto, tmp_path / "small.onnx")
    assert _data_files(tmp_path / "small.onnx") == []
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 1000)
    onnx_io.save_proto(onnx.load(str(plain)), tmp_path / "big.onnx")
    assert _data_files(tmp_path / "big.onnx") == ["big.onnx.data"]
    np.testing.assert_array_equal(run_onnx(tmp_path / "big.onnx", FEEDS)["last_hidden_state"],
                                  run_onnx(plain, FEEDS)["last_hidden_state"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data", "small.onnx"]


def test_save_proto_with_external_data_into_the_working_folder(plain, tmp_path, monkeypatch):
    """onnx's save_model looks for its external-data file relative to the working folder, and refuses one that
    exists: an output over the limit written into the folder the command runs in (``deploytool export ... -o
    m.onnx``) once failed with "FileExistsError: External data file exists"."""
    monkeypatch.chdir(tmp_path)
    onnx_io.save_proto(onnx.load(str(plain)), "m.onnx", external=True)
    assert _data_files(tmp_path / "m.onnx") == ["m.onnx.data"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    np.testing.assert_array_equal(run_onnx(tmp_path / "m.onnx", FEEDS)["last_hidden_state"],
                                  run_onnx(plain, FEEDS)["last_hidden_state"])


def test_int8_over_the_limit_goes_through_external_data(plain, tmp_path, monkeypatch):
    from deploytool.passes.quantize_int8 import Int8Config

    # ORT's quantizer's own files (the native writer streams through onnx_io: tests/passes/test_int8_native.py)
    transform(plain, tmp_path / "small.onnx", Int8Config(engine="ort"))
    seen = {}
    import onnxruntime.quantization as q

    real = q.quantize_dynamic

    def spy(*a, **k):
        seen["external"] = k.get("use_external_data_format")
        seen["input_data"] = _data_files(Path(a[0]))
        return real(*a, **k)

    monkeypatch.setattr(q, "quantize_dynamic", spy)
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 0)  # the quantizer's files "over" 2 GB
    src = _external_copy(plain, tmp_path / "in")
    res = transform(src, tmp_path / "big.onnx", Int8Config(engine="ort"))
    assert seen == {"external": True, "input_data": ["in.onnx.data"]}
    assert res.gate.verified is True
    np.testing.assert_array_equal(run_onnx(tmp_path / "big.onnx", FEEDS)["last_hidden_state"],
                                  run_onnx(tmp_path / "small.onnx", FEEDS)["last_hidden_state"])


def test_export_over_the_limit_is_validated_and_saved_with_external_data(tiny_torch_model, tmp_path, monkeypatch):
    # protobuf cannot serialize a model over 2 GB: the exporter's validation used to need those bytes
    from deploytool.export import ExportConfig, export_loaded

    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 0)
    dst = tmp_path / "big.onnx"
    res = export_loaded(tiny_torch_model("bert", **SHAPE), dst, ExportConfig(model="tiny-bert", exporter="torch"))
    assert res.validated and res.max_abs_diff and max(res.max_abs_diff.values()) <= res.atol
    assert _data_files(dst) == ["big.onnx.data"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    assert res.file_size == dst.stat().st_size + (tmp_path / "big.onnx.data").stat().st_size
