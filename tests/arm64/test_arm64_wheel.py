"""The project's wheel deploytool.arm64 installs in the emulated aarch64 Python is pure Python.

The install builds deploytool.quant._kernels for this machine's Python; a wheel carrying it is tagged for
x86-64 and pip refuses it on aarch64 (the arm64 tests then skipped with 'cannot be installed'). The wheel
for the guest is built without it (DEPLOYTOOL_PURE_PYTHON=1): the numpy code runs there, the same numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_download_wheels_builds_the_project_wheel_pure(monkeypatch, tmp_path):
    from deploytool.arm64 import core

    calls = []

    def fake_run(cmd, **kw):
        calls.append((cmd, kw.get("env")))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(core.subprocess, "run", fake_run)
    core.download_wheels(ROOT, tmp_path)
    wheel = [(c, env) for c, env in calls if "wheel" in c]
    assert len(wheel) == 1 and wheel[0][1] is not None and wheel[0][1].get("DEPLOYTOOL_PURE_PYTHON") == "1"
    assert all(env is None for c, env in calls if "download" in c)


def test_pure_python_wheel_has_no_compiled_module(tmp_path):
    env = {**os.environ, "DEPLOYTOOL_PURE_PYTHON": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, env=env, capture_output=True, timeout=600)
    (whl,) = tmp_path.glob("deploytool-*.whl")
    assert whl.name.endswith("-py3-none-any.whl"), whl.name
    names = zipfile.ZipFile(whl).namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd"))], names


def test_remote_setup_builds_the_wheel_pure(tmp_path):
    """``bench --remote-setup`` copies deploytool's wheel to the device (an aarch64 board, another Python):
    one built for this machine's Python would be refused by the device's pip."""
    from deploytool.remote.ssh import _build_wheel

    whl = _build_wheel(tmp_path)
    assert whl.name.endswith("-py3-none-any.whl"), whl.name
