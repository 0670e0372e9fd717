"""verify-arm64: a tiny BERT in fp32, fp16, int8, ternary and binary under QEMU aarch64 on four CPU
models, compared with the host. Sets the emulator up (scripts/setup_arm64.sh, cached in
$XDG_CACHE_HOME or ~/.cache/deploytool/arm64) when missing; skipped, with the reason, only where that cannot be done."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deploytool.arm64 import Tolerance, VerifyConfig, model_precision, tolerance_for
from deploytool.arm64.verify import _compare
from deploytool.cli import main
from deploytool.errors import ConfigError
from deploytool.profiles import load_profile

CPUS = ("cortex-a72", "neoverse-n1", "a64fx", "max")


# (the emulator fixture: tests/arm64/conftest.py)


@pytest.fixture(scope="module")
def variants(tiny_onnx, tmp_path_factory):
    """fp32 / fp16 / int8 / ternary / binary versions of one tiny BERT (hidden 64, FFN 256: K up to 256)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from deploytool.passes.pack_weights import PackConfig, pack_file

    src = tiny_onnx("bert", layers=2, hidden=64, heads=4, ffn=256)
    d = tmp_path_factory.mktemp("arm64_models")
    out = {"fp32": d / "fp32.onnx"}
    shutil.copy(src, out["fp32"])
    out["fp16"] = d / "fp16.onnx"
    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=False), str(out["fp16"]))
    out["int8"] = d / "int8.onnx"
    quantize_dynamic(str(src), str(out["int8"]), weight_type=QuantType.QInt8, per_channel=True)
    for scheme in ("ternary", "binary"):
        out[scheme] = d / f"{scheme}.onnx"
        pack_file(src, out[scheme], PackConfig(weights=scheme))
    return out


def test_precision_detection_and_tolerances(variants):
    for name, path in variants.items():
        precision, k = model_precision(path)
        assert precision == name
        assert k == 256
    fp16 = tolerance_for("fp16", 256)
    assert fp16.rtol == pytest.approx(4 * 16 * 2 ** -11)
    assert tolerance_for("fp32", 256).rtol < fp16.rtol < tolerance_for("int8", 256).rtol
    with pytest.raises(ConfigError):
        tolerance_for("int3", 1)


def test_compare_fails_on_a_real_mismatch():
    host = {"y": np.linspace(-3, 3, 600).astype(np.float32)}
    tol = Tolerance(1e-4, 1e-4, "fp32", 0.99999)
    assert _compare(host, {"y": host["y"] + 1e-5}, tol)[0].ok
    bad = _compare(host, {"y": host["y"] + np.float32(0.01)}, tol)[0]
    assert not bad.ok and bad.max_abs == pytest.approx(0.01, rel=1e-3)
    assert not _compare(host, {"y": np.full(600, np.nan, np.float32)}, tol)[0].ok
    assert not _compare(host, {"y": host["y"][:10]}, tol)[0].ok  # shape differs
    # int8: a sign flip of one feature block passes max-abs at rtol 0.1 only if small; cosine catches the rest
    y = host["y"].copy()
    y[:300] *= -1
    assert not _compare(host, {"y": y}, tolerance_for("int8", 64))[0].ok


@pytest.mark.arm64
@pytest.mark.slow
def test_verify_arm64_all_precisions_on_four_cpus(emulator, variants, tmp_path):
    out = tmp_path / "verify.json"
    models = [str(variants[k]) for k in ("fp32", "fp16", "int8", "ternary", "binary")]
    args = ["verify-arm64", *models, "--profile", "raspberry-pi-4", *sum((["--cpu", c] for c in CPUS[1:]), []),
            "--emulator-dir", str(emulator.home), "--no-setup", "-o", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["ok"] and res["cpus"] == list(CPUS)
    assert len(res["checks"]) == 5 * 4
    by = {(Path(c["model"]).stem, c["cpu"]): c for c in res["checks"]}
    for c in res["checks"]:
        assert c["ok"] and c["error"] is None
        assert c["providers"][0] == "CPUExecutionProvider"
        # the profile asked for XNNPACK first: the aarch64 wheel lacks it, and the check says so
        assert c["skipped"][0]["provider"] == "XnnpackExecutionProvider"
        assert "not in this onnxruntime build" in c["skipped"][0]["reason"]
    hw = {cpu: set(by[("fp32", cpu)]["hwcaps"]) for cpu in CPUS}
    assert "asimdhp" not in hw["cortex-a72"] and {"asimdhp", "asimddp"} <= hw["neoverse-n1"]
    assert "sve" in hw["a64fx"] and "sme" in hw["max"]
    # fp16: cortex-a72 has no fp16 arithmetic -> ORT casts everything to fp32 like the x86 host;
    # cores with fp16 arithmetic run the MatMuls in fp16 (fewer inserted casts), with fp16 rounding
    a72, n1 = by[("fp16", "cortex-a72")], by[("fp16", "neoverse-n1")]
    assert a72["inserted_casts"] == a72["host_inserted_casts"] > 0 and a72["fp16_native"] is False
    assert n1["inserted_casts"] < n1["host_inserted_casts"] and n1["fp16_native"] is True
    assert by[("fp32", "neoverse-n1")]["outputs"][0]["max_abs"] < 1e-4
    # int8: where this host's u8 x s8 kernel saturates (x86 without VNNI) its reference is the uint8 twin (the
    # same integers, exact kernel), which a NEON/dot-product core reproduces; else the model itself
    from deploytool.runtime.int8_kernel import u8s8_exact

    for cpu in CPUS:
        c = by[("int8", cpu)]
        assert c["host_reference"] == ("model" if u8s8_exact() else "uint8 twin"), cpu
        if cpu != "max":  # SME (-cpu max): KleidiAI quantizes activations per row (module doc of arm64/verify.py)
            assert c["outputs"][0]["max_abs"] < 1e-4, (cpu, c["outputs"][0])
    assert 0 < n1["outputs"][0]["max_abs"] <= n1["outputs"][0]["limit"]


def _err_line(r) -> str:
    err = r.stderr if hasattr(r, "stderr") else r.output
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_verify_arm64_cannot_start_is_one_line_exit_2(variants, tmp_path):
    out = tmp_path / "v.json"
    # not set up, and told not to set it up
    r = CliRunner().invoke(main, ["verify-arm64", str(variants["fp32"]), "--profile", "graviton2",
                                  "--emulator-dir", str(tmp_path / "none"), "--no-setup", "-o", str(out)])
    assert r.exit_code == 2 and "ARM64 emulator is not set up" in _err_line(r)
    # set up, but QEMU cannot start
    home = tmp_path / "broken"
    for sub in ("qemu", "rootfs/usr/bin", "site/onnxruntime"):
        (home / sub).mkdir(parents=True)
    (home / "READY").write_text("x")
    (home / "rootfs/usr/bin/python3.11").write_text("")
    qemu = home / "qemu/qemu-aarch64"
    qemu.write_text("#!/bin/sh\necho 'qemu: could not open ELF interpreter' >&2\nexit 1\n")
    os.chmod(qemu, 0o755)
    r = CliRunner().invoke(main, ["verify-arm64", str(variants["fp32"]), "--cpu", "neoverse-n1",
                                  "--emulator-dir", str(home), "--no-setup", "-o", str(out)])
    assert r.exit_code == 2 and "ARM64 emulator cannot start on -cpu neoverse-n1" in _err_line(r)
    assert not out.exists()


@pytest.mark.parametrize("args, expected", [
    (["--profile", "x86-host"], "profile 'x86-host' has no qemu_cpu"),
    (["--cpu", "cortex-a99"], "unknown QEMU aarch64 CPU model 'cortex-a99'"),
    (["--profile", "kirin99"], "unknown device profile 'kirin99' (did you mean 'kirin990'?)"),
    ([], "give a device profile (--profile) or QEMU CPU models (--cpu)"),
    # refused before QEMU starts (the emulator is not even set up here): it ran, then failed with ORT's broadcast error
    (["--profile", "raspberry-pi-4", "--seq-len", "500"],
     "fp32.onnx: --seq-len 500 is longer than the model's position table (160 positions)"),
])
def test_verify_arm64_bad_input(variants, tmp_path, args, expected):
    r = CliRunner().invoke(main, ["verify-arm64", str(variants["fp32"]), *args, "--emulator-dir", str(tmp_path),
                                  "--no-setup"])
    assert r.exit_code == 2 and expected in _err_line(r)


def test_verify_config_uses_the_profiles_cpu(variants):
    cfg = VerifyConfig(models=(variants["fp32"],), profile=load_profile("a64fx"))
    assert cfg.cpus == ("a64fx",)
    assert VerifyConfig(models=(variants["fp32"],), cpus=("max,sme=off",)).cpus == ("max,sme=off",)


def test_verify_config_one_cpu_as_a_string(variants):
    """cpus="max" was read letter by letter (unknown QEMU aarch64 CPU model 'm')"""
    assert VerifyConfig(models=variants["fp32"], cpus="max").cpus == ("max",)
    assert VerifyConfig(models=variants["fp32"], cpus="max,sme=off").cpus == ("max,sme=off",)


@pytest.mark.parametrize("ok", [True, False])
@pytest.mark.parametrize("as_json", [False, True])
def test_verify_arm64_says_what_it_wrote(tiny_onnx, tmp_path, monkeypatch, ok, as_json):
    """-o FILE: 'wrote FILE' as bench -o and qnn check -o say it (on stderr with --json, so stdout stays JSON), also
    when a check failed (the file is written then too); it said nothing. The emulator's run is replaced by a result."""
    import deploytool.arm64
    from deploytool.arm64.verify import ModelCheck, VerifyResult

    model = tiny_onnx("bert")
    check = ModelCheck(model=str(model), cpu="neoverse-n1", precision="fp32", tolerance=tolerance_for("fp32", 64),
                       ok=ok)
    monkeypatch.setattr(deploytool.arm64, "verify_arm64", lambda config: VerifyResult(
        checks=[check], cpus=config.cpus, profile=None, onnxruntime="1.0", wall_s=1.0))
    out = tmp_path / "v.json"
    r = CliRunner().invoke(main, ["verify-arm64", str(model), "--cpu", "neoverse-n1", "--no-setup",
                                  "--emulator-dir", str(tmp_path), "-o", str(out), *(["--json"] if as_json else [])])
    assert r.exit_code == (0 if ok else 1), r.output
    assert json.loads(out.read_text())["ok"] is ok
    said = r.stderr if as_json else r.stdout
    assert f"wrote {out}" in said.splitlines(), (r.stdout, r.stderr)
    if as_json:
        assert json.loads(r.stdout)["ok"] is ok


def test_verify_arm64_refuses_a_model_given_twice(tiny_onnx, tmp_path, monkeypatch):
    """The same file twice (also by another spelling of its path) is one line, as bench says it; it was run twice
    under QEMU and shown twice. Refused before the emulator is looked for."""
    import deploytool.arm64

    monkeypatch.setattr(deploytool.arm64, "verify_arm64", lambda config: pytest.fail("ran"))
    model = tiny_onnx("bert")
    again = model.parent / ".." / model.parent.name / model.name
    r = CliRunner().invoke(main, ["verify-arm64", str(model), str(again), "--cpu", "max", "--no-setup",
                                  "--emulator-dir", str(tmp_path), "-o", str(tmp_path / "v.json")])
    assert r.exit_code == 2 and _err_line(r) == f"error: models: {again} given twice (as {model})"
    assert not (tmp_path / "v.json").exists()


@pytest.mark.parametrize("where", ["read-only-fs", "dash"])
def test_verify_arm64_refuses_an_output_it_cannot_write_before_running(tiny_onnx, tmp_path, monkeypatch,
                                                                        unwritable_folder, where):
    """-o in a folder that cannot be created (/proc/self/sub/v.json) ran every model under QEMU, printed the table, then
    failed writing; -o - wrote a file named '-'. Both are one line, exit 2, before the emulator runs."""
    import deploytool.arm64

    monkeypatch.setattr(deploytool.arm64, "verify_arm64", lambda config: pytest.fail("ran"))
    monkeypatch.chdir(tmp_path)
    out = "-" if where == "dash" else str(unwritable_folder(where) / "sub" / "v.json")
    r = CliRunner().invoke(main, ["verify-arm64", str(tiny_onnx("bert")), "--cpu", "max", "--no-setup",
                                  "--emulator-dir", str(tmp_path), "-o", out])
    assert r.exit_code == 2 and _err_line(r).startswith(f"error: {'-o -' if where == 'dash' else out}:"), r.output
    assert "Traceback" not in r.output and not list(tmp_path.iterdir())


def test_a_set_up_folder_missing_a_part_is_set_up_again(variants, tmp_path, monkeypatch):
    """A set-up folder whose READY stamp is current but whose qemu-aarch64 was removed since: verify-arm64 ran
    scripts/setup_arm64.sh, which trusted READY and did nothing, then said 'not set up ... run: bash
    scripts/setup_arm64.sh DIR', the command that had just done nothing. Now the script sets the missing part up
    again (here it cannot: no apt-get on PATH, and it says so)."""
    from deploytool.arm64.emulator import SETUP_SCRIPT

    bash = shutil.which("bash")
    if bash is None or shutil.which("flock") is None:
        pytest.skip("needs bash and flock")
    tools = tmp_path / "bin"  # what the script's first lines use, and no apt-get
    tools.mkdir()
    for t in ("bash", "dirname", "cat", "mkdir", "flock", "rm", "id", "sed", "head"):
        if shutil.which(t):
            (tools / t).symlink_to(shutil.which(t))
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setenv("ORT_VERSION", "9.9.9")
    monkeypatch.setenv("NUMPY_VERSION", "8.8.8")
    home = tmp_path / "emu"
    for sub in ("qemu", "rootfs/usr/bin", "site/onnxruntime"):
        (home / sub).mkdir(parents=True)
    (home / "READY").write_text("ort=9.9.9 numpy=8.8.8 qemu=bookworm-backports python=3.11 v1\n")
    for exe in ("qemu/qemu-aarch64", "rootfs/usr/bin/python3.11"):
        (home / exe).write_text("#!/bin/sh\nexit 1\n")
        os.chmod(home / exe, 0o755)
    import subprocess

    # every part there: the stamp is taken as done (nothing fetched; this is the stamp the script writes)
    done = subprocess.run([bash, str(SETUP_SCRIPT), str(home)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == str(home), done.stderr
    (home / "qemu/qemu-aarch64").unlink()
    out = tmp_path / "v.json"
    r = CliRunner().invoke(main, ["verify-arm64", str(variants["fp32"]), "--cpu", "cortex-a72",
                                  "--emulator-dir", str(home), "-o", str(out)])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]  # the 'setting up ...' notice, then the error
    line = lines[-1]
    assert "Traceback" not in r.output and [ln for ln in lines if ln.startswith("error")] == [line]
    assert r.exit_code == 2 and line.startswith(f"error: ARM64 emulator cannot be set up in {home}: "), line
    assert "needs 'apt-get'" in line and not out.exists()


def test_a_model_refused_before_set_up_is_one_line(variants, tmp_path):
    """verify-arm64 without --no-setup, the emulator missing, a --seq-len past the model's position table: it printed
    'setting up the ARM64 emulator ...' and then the one-line error, with no set-up run at all (the models are checked
    first). Now the error alone, and the emulator folder is not made."""
    home = tmp_path / "emu"
    r = CliRunner().invoke(main, ["verify-arm64", str(variants["fp32"]), "--cpu", "max", "--seq-len", "500",
                                  "--emulator-dir", str(home)])
    assert r.exit_code == 2
    assert _err_line(r).startswith(f"error: {variants['fp32']}: --seq-len 500 is longer than the model's position")
    assert not home.exists()
