"""fit packs ternary/binary candidates for the runtime measured fastest per device and sequence length."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploytool.fit import pack_runtime
from deploytool.profiles import load_profile


@pytest.mark.parametrize("seq,expected", [(1, "memory"), (8, "speed"), (128, "speed")])
def test_x86_host_uses_nbits_only_where_it_won(seq, expected):
    runtime, why = pack_runtime(load_profile("x86-host"), seq)
    assert runtime == expected
    assert "x86" in why and "measured" in why


@pytest.mark.parametrize("name", ["raspberry-pi-5", "graviton3"])
def test_arm64_keeps_int8_kernels_without_device_timing(name):
    for seq in (1, 128):
        runtime, why = pack_runtime(load_profile(name), seq)
        assert runtime == "speed" and "QEMU" in why



def test_int8_codes_follow_the_devices_kernel(monkeypatch):
    import deploytool.runtime.int8_kernel as kernel
    from deploytool.fit import int8_codes

    for name in ("raspberry-pi-4", "kirin990", "graviton3"):
        codes, why = int8_codes(load_profile(name))
        assert codes == "int8" and "aarch64" in why
    host = load_profile("x86-host")
    for exact, want in ((True, "int8"), (False, "pairsafe")):
        monkeypatch.setattr(kernel, "u8s8_exact", lambda e=exact: e)
        codes, why = int8_codes(host)
        assert codes == want and "probed" in why


def test_fit_on_the_host_builds_int8_its_cpu_computes_exactly(tiny_onnx, tmp_path):
    """On x86 without VNNI the host's int8 candidates are pair-safe, full width (the native writer) and sliced
    (ORT's path, re-coded); elsewhere the default codes."""
    import json

    from click.testing import CliRunner

    from deploytool.cli import main
    from deploytool.runtime.int8_kernel import u8s8_exact
    from deploytool.variant import file_variant

    src = tiny_onnx("bert", layers=2, hidden=64, heads=4, ffn=256)
    out = tmp_path / "best.onnx"
    r = CliRunner().invoke(main, ["fit", str(src), "--profile", "x86-host", "-o", str(out), "--widths", "1,0.5",
                                  "--depths", "1", "--precisions", "int8", "--runs", "3", "--seq-len", "16",
                                  "--keep-candidates", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    cands = {c["name"]: c for c in json.loads((tmp_path / "best.onnx.fit.json").read_text())["candidates"]}
    full, half = cands["w1-d1-int8"], cands["w0.5-d1-int8"]
    if u8s8_exact():
        assert full["int8_codes"] == half["int8_codes"] == "int8"
    else:
        assert full["int8_codes"] == half["int8_codes"] == "pairsafe", (full, half)
        assert "without VNNI" in full["int8_codes_why"]
        chain = file_variant(tmp_path / "c" / "w1-d1-int8.onnx").chain
        assert chain[-1] == "int8(pairsafe)", chain


def test_fit_for_a_phone_weighs_the_bundles_model_ort(tiny_onnx, tmp_path, monkeypatch):
    """On a profile with a mobile EP the size budget is compared with the ``model.ort`` that ``deploytool bundle``
    ships, converted by fit. A binary candidate (runtime speed on aarch64) whose .ort holds its weights as int8
    and is over the budget is repacked for ``--runtime memory`` (the same codes; MatMulNBits keeps 2 bits in the
    .ort) and fits, saying why; under a budget nothing meets, the refusal names the .ort; on a profile without a mobile EP (no
    bundle: the .onnx file ships) the speed file's own size counts."""
    import json

    from click.testing import CliRunner

    import deploytool.profiles as profiles
    from deploytool.cli import main

    src = tiny_onnx("bert", layers=1, hidden=128, heads=4, ffn=512, vocab=100)
    real = profiles.load_profile

    def run(name: str, budget_mb: float) -> dict:
        def patched(n, *a, **k):
            p = real(n, *a, **k)
            if n == name:
                import dataclasses
                p = dataclasses.replace(p, budgets=dataclasses.replace(p.budgets, model_size_mb=budget_mb))
            return p
        monkeypatch.setattr(profiles, "load_profile", patched)
        import deploytool.cli as cli_pkg
        for mod in list(vars(cli_pkg).values()):
            if getattr(mod, "load_profile", None) is real:
                monkeypatch.setattr(mod, "load_profile", patched)
        out = tmp_path / f"{name}-{budget_mb:g}.onnx"
        r = CliRunner().invoke(main, ["fit", str(src), "--profile", name, "-o", str(out), "--widths", "1",
                                      "--depths", "1", "--precisions", "fp32,binary", "--runs", "3", "--seq-len",
                                      "8", "--budget-ms", "10000"])
        if r.exit_code:  # nothing fits: one line naming the fastest candidate's reasons
            assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
            return {"error": r.output.strip()}
        return {c["name"]: c for c in json.loads(Path(f"{out}.fit.json").read_text())["candidates"]}

    b = run("snapdragon-sm8650", 1000.0)["w1-d1-binary"]
    assert b["size_of"] == "model.ort" and b["size_mb"] > 1.2 * b["file_mb"], b  # the weights unpacked in the .ort
    assert b["pack_runtime"] == "speed"  # within the budget: the runtime measured fastest stays
    budget = (b["file_mb"] + b["size_mb"]) / 2  # the speed file fits it, its .ort does not
    cands = run("snapdragon-sm8650", budget)
    m = cands["w1-d1-binary"]
    assert m["pack_runtime"] == "memory" and "over the size budget" in m["pack_runtime_why"], m
    assert "repacked with the same codes" in m["pack_runtime_why"], m
    assert m["size_of"] == "model.ort" and m["size_mb"] < budget and m["fits"], m
    refused = run("snapdragon-sm8650", 0.01)
    assert re.search(r"fastest: w1-d1-(binary|fp32), size [\d.]+ MB \(model.ort\) >", refused["error"]), refused
    b = run("graviton3", budget)["w1-d1-binary"]
    assert b["size_of"] == "file" and b["size_mb"] == b["file_mb"] < budget and b["pack_runtime"] == "speed", b
    assert not any("size" in r for r in b["reasons"]), b["reasons"]


def test_fit_weighs_the_file_when_the_ort_conversion_fails(tiny_onnx, tmp_path, monkeypatch):
    """A candidate ONNX Runtime cannot convert to the ORT format is weighed as its file, and fit says why."""
    import json

    from click.testing import CliRunner

    import deploytool.bundle as bundle_module
    from deploytool.cli import main
    from deploytool.errors import DeployError

    def refuse(path, style, work=None):
        raise DeployError(f"{path}: ONNX Runtime cannot convert it to the ORT format (a test)")

    monkeypatch.setattr(bundle_module, "ort_size_mb", refuse)
    src = tiny_onnx("bert", layers=1, hidden=64, heads=4, ffn=128)
    out = tmp_path / "best.onnx"
    r = CliRunner().invoke(main, ["fit", str(src), "--profile", "snapdragon-sm8650", "-o", str(out), "--widths", "1",
                                  "--depths", "1", "--precisions", "fp32", "--runs", "3", "--seq-len", "8",
                                  "--budget-ms", "10000"])
    assert r.exit_code == 0, r.output
    c = json.loads(Path(f"{out}.fit.json").read_text())["candidates"][0]
    assert c["size_of"].startswith("file (model.ort not made: ") and c["size_mb"] == c["file_mb"] > 0, c
