"""MEASURED vs PROJECTED by hardware match (issue #15 part 2): a bench JSON's recorded machine (arch, core
types from every processor's MIDR "CPU part") against the profile's arch and cluster cores; never by name.

The "Pi" run here is this machine's real bench JSON with its ``host`` record rewritten to what a
Raspberry Pi 5 reports (aarch64, four 0xd0b parts): a labelled stand-in, since no Arm board is at hand.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest
from click.testing import CliRunner

from deploytool.cli import main

PI5_CPUINFO = "".join(f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
                      "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
                      "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
                      for i in range(4))
KIRIN_CPUINFO = "".join(f"processor\t: {i}\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: {part}\n\n"
                        for i, part in enumerate(["0xd05"] * 4 + ["0xd0b"] * 4))


def test_core_types_read_every_processor():
    from deploytool.runtime.hardware import core_types, machine_identity

    assert core_types(PI5_CPUINFO, "aarch64") == ["cortex-a76"]
    assert set(core_types(KIRIN_CPUINFO, "aarch64")) == {"cortex-a55", "cortex-a76"}
    assert core_types("processor : 0\nCPU implementer : 0x41\nCPU part : 0xfff\n", "aarch64") == ["unknown"]
    ident = machine_identity(PI5_CPUINFO, "aarch64")
    assert ident["arch"] == "aarch64" and ident["family"] == 0x41 and ident["model"] == 0xd0b


def _host(cpuinfo: str, **extra) -> dict:
    from deploytool.runtime.hardware import machine_identity

    ident = machine_identity(cpuinfo, "aarch64")
    return {"arch": "aarch64", "cpu_model": "Raspberry Pi 5 stand-in", "cpu": ident, "emulated": False, **extra}


def test_match_profile_by_hardware_not_by_name(tmp_path):
    from deploytool.profiles import load_profile
    from deploytool.profiles.match import match_profile

    pi5, kirin, pi4 = (load_profile(n) for n in ("raspberry-pi-5", "kirin990", "raspberry-pi-4"))
    assert match_profile(pi5, _host(PI5_CPUINFO)).matched
    assert match_profile(kirin, _host(KIRIN_CPUINFO)).matched
    m = match_profile(kirin, _host(PI5_CPUINFO))  # A76 only: not a Kirin 990 (A76 + A55)
    assert not m.matched and "cortex-a55" in m.why
    assert not match_profile(pi4, _host(PI5_CPUINFO)).matched  # A72 profile
    m = match_profile(pi5, _host(PI5_CPUINFO, emulated=True))
    assert not m.matched and "emulat" in m.why
    m = match_profile(pi5, {"arch": "x86_64", "cpu": {"core_types": ["cortex-a76"]}})
    assert not m.matched and "arch" in m.why
    m = match_profile(pi5, {"arch": "aarch64", "cpu_model": "old"})  # a JSON from before host.cpu
    assert not m.matched and "host.cpu" in m.why
    # a board under any name matches by what it is
    text = (pi5.path and open(pi5.path).read()).replace("name: raspberry-pi-5", "name: my-board")
    (tmp_path / "my-board.yaml").write_text(text)
    assert match_profile(load_profile(tmp_path / "my-board.yaml"), _host(PI5_CPUINFO)).matched
    # the host profile matches this machine's own bench record, whatever its name
    from deploytool.runtime.session import host_info

    assert match_profile(load_profile("host"), dict(host_info(), emulated=False)).matched


@pytest.fixture(scope="module")
def two_runs(tiny_onnx, tmp_path_factory):
    """host.json: a real run here of two models; pi.json: the first model's results with a Pi 5's host
    record and latencies x3 (the second model is only measured here: projected for the Pi)."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json

    d = tmp_path_factory.mktemp("measured")
    model = d / "tiny.onnx"
    shutil.copy(tiny_onnx("bert", layers=2, hidden=64, heads=4, ffn=256), model)
    shutil.copy(tiny_onnx("bert", layers=1, hidden=64, heads=4, ffn=256), d / "other.onnx")
    rep = run_benchmark(BenchConfig(models=(model, d / "other.onnx"), seq_lens=(8, 16), runs=5, warmup=1))
    write_json(rep, d / "host.json")
    data = json.loads((d / "host.json").read_text())
    pi = copy.deepcopy(data)
    pi["host"] = _host(PI5_CPUINFO)
    pi["results"] = [r for r in pi["results"] if r["name"] == "tiny"]
    pi["models"] = [m for m in pi["models"] if m["name"] == "tiny"]
    for r in pi["results"]:
        r["latency_ms"] = {k: (v * 3 if k.endswith("_ms") else v) for k, v in r["latency_ms"].items()}
    (d / "pi.json").write_text(json.dumps(pi))
    emu = copy.deepcopy(pi)
    emu["host"]["emulated"] = True
    (d / "emu.json").write_text(json.dumps(emu))
    return d, data, pi


def _report(d, inputs, profiles, out):
    args = ["report", *[str(d / i) for i in inputs], "-o", str(out)] + sum((["--profile", p] for p in profiles), [])
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return json.loads((out / "report.json").read_text())


def test_report_measured_and_projected(two_runs, tmp_path):
    d, host, pi = two_runs
    rep = _report(d, ["pi.json", "host.json"], ["raspberry-pi-5", "kirin990", "host"], tmp_path / "r")
    rows = rep["rows"]
    pi_rows = [r for r in rows if r["device"] == "raspberry-pi-5" and r["model"] == "tiny"]
    # one row per model and length: the measurement stands, the other machine's projection is dropped
    assert sorted(r["seq_len"] for r in pi_rows) == [8, 16]
    other = [r for r in rows if r["device"] == "raspberry-pi-5" and r["model"] == "other"]
    assert len(other) == 2 and all(r["status"] == "PROJECTED" and r["device_latency_source"] == "projected"
                                   for r in other)
    for r in pi_rows:
        want = next(x for x in pi["results"] if x["seq_len"] == r["seq_len"])["latency_ms"]
        assert r["status"] == "MEASURED" and r["measured_on"] == "Raspberry Pi 5 stand-in"
        assert r["device_latency_ms"] == pytest.approx(want["p90_ms"], rel=1e-3)
        assert r["projected_ms"] > 0  # both shown
        assert r["projection_error"] == pytest.approx((r["projected_ms"] - want["p50_ms"]) / want["p50_ms"], abs=2e-3)
    kirin = [r for r in rows if r["device"] == "kirin990"]
    assert len(kirin) == 6 and all(r["status"] == "PROJECTED" for r in kirin)  # 2 (pi) + 4 (host) rows
    assert all(r["device_latency_source"] == "projected" for r in kirin)
    here = [r for r in rows if r["device"] == "host"]
    assert len(here) == 4 and all(r["status"] == "MEASURED" for r in here)
    dev = rep["devices"]
    assert dev["raspberry-pi-5"]["measured"] and dev["raspberry-pi-5"]["measured_on"] == ["Raspberry Pi 5 stand-in"]
    errs = sorted(r["projection_error"] for r in pi_rows)
    assert dev["raspberry-pi-5"]["projection_error_median"] == pytest.approx(errs[1], abs=1e-4)
    assert not dev["kirin990"]["measured"]
    md = (tmp_path / "r" / "report.md").read_text()
    html = (tmp_path / "r" / "report.html").read_text()
    for text in (md, html):
        assert "MEASURED on Raspberry Pi 5 stand-in" in text and "median projection error" in text
    pi_md = md.split("## raspberry-pi-5")[1].split("\n## ")[0]
    # (other may be the pick: two unrelated exports, no accuracy, are not ranked by the proxy, and other is faster)
    other_line = next(ln for ln in pi_md.splitlines() if ln.startswith(("| other", "| **★ other")))
    assert "PROJECTED" in other_line  # the model measured elsewhere is marked in the measured device's table


def test_emulated_run_is_projected(two_runs, tmp_path):
    d, _, _ = two_runs
    rep = _report(d, ["emu.json"], ["raspberry-pi-5"], tmp_path / "r")
    assert {r["status"] for r in rep["rows"]} == {"PROJECTED"}
    assert "emulat" in rep["devices"]["raspberry-pi-5"]["match"][0]["why"]


def test_one_model_measured_twice_on_a_device_is_refused(two_runs, tmp_path):
    """Two Pi runs of the same model and length: the verdict took the first file's rows in silence (a second run
    over budget was dropped, or chosen, by the order of the arguments)."""
    d, _, pi = two_runs
    slow = copy.deepcopy(pi)
    for r in slow["results"]:
        r["latency_ms"] = {k: (v * 100 if k.endswith("_ms") else v) for k, v in r["latency_ms"].items()}
        r["samples_ms"] = [v * 100 for v in r.get("samples_ms") or []]
    (d / "pi-slow.json").write_text(json.dumps(slow))
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["report", str(d / "pi.json"), str(d / "pi-slow.json"), "-o", str(out),
                                  "--profile", "raspberry-pi-5"])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == (f"error: tiny at seq 8 is measured on raspberry-pi-5 in both {d / 'pi.json'} and "
                                f"{d / 'pi-slow.json'}; give one measurement of a model and length per device")
    assert not out.exists()
    # the two runs for a device neither measured stay two projections of one file, as before
    _report(d, ["pi.json", "pi-slow.json"], ["kirin990"], tmp_path / "k")


def test_a_report_of_measured_devices_only_does_not_call_its_latency_projected(two_runs, tmp_path):
    """Every device MEASURED: the header opened "Device latency is PROJECTED by deploytool's cost model (...), not
    measured on the device (no device here is projected)", contradicting itself and the rows."""
    d, host, pi = two_runs
    _report(d, ["pi.json"], ["raspberry-pi-5"], tmp_path / "r")
    for name in ("report.md", "report.html"):
        text = (tmp_path / "r" / name).read_text()
        assert "Device latency is PROJECTED" not in text and "no device here is projected" not in text
        assert "No device latency here is projected. On raspberry-pi-5 it is the MEASURED p90" in text
