"""deploytool's core package pip-installed and run on aarch64 (QEMU user-mode), compared with the host.

The project's wheel and its aarch64 dependencies (PyPI's manylinux aarch64 wheels) are installed by
pip running in the emulated Python; inspect, slice, quantize --int8, pack and bench --profile run
there. The files written on aarch64 must be byte-identical to the host's, and the bench JSON must say
the machine was aarch64 and the timings emulated.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from deploytool.errors import UnavailableError

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    from deploytool.arm64 import ensure_emulator
    from deploytool.settings import default_arm64_home
    from deploytool.arm64.core import download_wheels, install_core

    if shutil.which("apt-get") is None and not (default_arm64_home() / "READY").exists():
        pytest.skip("ARM64 emulator cannot be set up here: no apt-get (scripts/setup_arm64.sh needs Debian/Ubuntu)")
    try:
        emu = ensure_emulator()
        work = tmp_path_factory.mktemp("arm64_core")
        wheels = download_wheels(ROOT, work / "wheels")
        venv = install_core(emu, None, wheels)  # dependencies cached in the emulator's home
    except UnavailableError as e:
        pytest.skip(f"deploytool cannot be installed into the ARM64 emulator here: {e}")
    return emu, venv


_GUEST_SCRIPT = """
import json, sys
from click.testing import CliRunner
from deploytool.cli import main
jobs = json.loads(sys.argv[1])
out = {}
for name, args, env in jobs:
    res = CliRunner().invoke(main, args, env=env)
    out[name] = {"code": res.exit_code, "stdout": res.stdout, "stderr": res.stderr}
print("RESULT " + json.dumps(out))
"""


def _run_all(emu, venv, jobs, tmp_cwd, timeout=1200) -> dict:
    """Run several deploytool commands in ONE emulated Python (each start-up costs ~30 s under QEMU)."""
    from deploytool.arm64.core import guest_env, guest_python

    e = guest_env()
    jobs = [(n, [str(a) for a in args], env or {}) for n, args, env in jobs]
    r = subprocess.run([*guest_python(emu, venv), "-c", _GUEST_SCRIPT, json.dumps(jobs)], capture_output=True,
                       text=True, env=e, timeout=timeout, cwd=tmp_cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_core_commands_on_aarch64_match_the_host(guest, tiny_onnx, tmp_path):
    from deploytool.arm64.core import bench_python
    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.passes.quantize_int8 import Int8Config
    from deploytool.passes.slice_subnetwork import SliceConfig

    emu, venv = guest
    model = tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64)
    arm, host = tmp_path / "arm", tmp_path / "host"
    arm.mkdir()
    host.mkdir()
    bench = ["bench", arm / "s.onnx", arm / "q.onnx", "--seq-len", "8", "--runs", "2", "--warmup", "1",
             "--threads", "1", "--profile", "raspberry-pi-5", "--quiet"]
    res = _run_all(emu, venv, tmp_cwd=tmp_path, jobs=[
        ("inspect", ["inspect", model, "--json"], None),
        ("slice", ["slice", model, "--width", "0.5", "--depth", "0.5", "-o", arm / "s.onnx"], None),
        ("int8", ["quantize", arm / "s.onnx", "--int8", "-o", arm / "q.onnx"], None),
        ("pack", ["pack", arm / "s.onnx", "--weights", "ternary", "-o", arm / "t.onnx"], None),
        # the worker runs through QEMU too (an emulated Python cannot exec another one by itself)
        ("bench", [*bench, "-o", arm / "pi.json"], {"DEPLOYTOOL_BENCH_PYTHON": bench_python(emu, venv)}),
        ("bench-no-worker", [*bench, "-o", arm / "no.json"], None),
    ])
    for name in ("inspect", "slice", "int8", "pack", "bench"):
        assert res[name]["code"] == 0, (name, res[name]["stderr"])
    info = json.loads(res["inspect"]["stdout"])
    assert info["family"] == "bert" and info["num_layers"] == 2 and info["heads_per_layer"] == [4, 4]
    # each pass on aarch64 wrote exactly the host's bytes
    transform(model, host / "s.onnx", SliceConfig(width=0.5, depth=0.5))
    transform(host / "s.onnx", host / "q.onnx", Int8Config())
    transform(host / "s.onnx", host / "t.onnx", PackConfig(weights="ternary"))
    for out in ("s.onnx", "q.onnx", "t.onnx"):
        assert (arm / out).read_bytes() == (host / out).read_bytes(), f"{out}: the aarch64 output differs"
    data = json.loads((arm / "pi.json").read_text())
    assert data["host"]["arch"] == "aarch64" and data["host"]["emulated"] is True
    assert [m["variant"]["label"] for m in data["models"]] == ["w0.5-d0.5-fp32", "w0.5-d0.5-int8"]
    assert all(r["latency_ms"]["p50_ms"] > 0 for r in data["results"])
    # without the emulator command the worker cannot start: one line, exit 2, no JSON
    bad = res["bench-no-worker"]
    lines = bad["stderr"].strip().splitlines()
    assert bad["code"] == 2 and len(lines) == 1 and "cannot start the benchmark worker" in lines[0], bad
    assert "DEPLOYTOOL_BENCH_PYTHON" in lines[0] and not (arm / "no.json").exists()
