"""verify-arm64 --emulator-dir X where X is a file (or under one): refused in one line before any set-up.

It went on to scripts/setup_arm64.sh, whose ``mkdir -p X`` failed: the user read the shell's 'File exists'; with
--no-setup, 'ARM64 emulator is not set up in X ... run: bash scripts/setup_arm64.sh X', which fails the same way.
Nothing here runs QEMU or the set-up script: a subprocess started is recorded, and the test fails on it.
"""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from deploytool.cli import main


@pytest.fixture
def no_subprocess(monkeypatch):
    started = []

    def record(cmd, *args, **kwargs):
        started.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "not run by this test")

    monkeypatch.setattr(subprocess, "run", record)
    return started


@pytest.mark.parametrize("setup", [[], ["--no-setup"]], ids=["setup", "no-setup"])
@pytest.mark.parametrize("how", ["option", "env"])
@pytest.mark.parametrize("under", [False, True], ids=["the-file", "under-the-file"])
def test_emulator_dir_that_is_a_file(tiny_onnx, tmp_path, no_subprocess, monkeypatch, setup, how, under):
    f = tmp_path / "emu"
    f.write_text("not a folder\n")
    given = f / "sub" if under else f
    args = ["verify-arm64", str(tiny_onnx()), "--cpu", "max", *setup]
    if how == "option":
        args += ["--emulator-dir", str(given)]
    else:
        monkeypatch.setenv("DEPLOYTOOL_ARM64_HOME", str(given))
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    where = f"{given}: {f} is" if under else f"{given}: is"
    # a folder from the environment is named by its variable (it said '--emulator-dir', never typed), as run's
    # DEPLOYTOOL_CACHE_DIR is
    said = "--emulator-dir" if how == "option" else "$DEPLOYTOOL_ARM64_HOME"
    assert res.output == f"error: {said}: {where} a file, not a folder (the emulator folder)\n"
    assert no_subprocess == []
    assert f.read_text() == "not a folder\n"


def test_setup_itself_refuses_a_file(tmp_path, no_subprocess):
    """The library's set-up (the default folder comes here with no option to name) checks before running bash."""
    from deploytool.arm64.emulator import setup_emulator
    from deploytool.errors import ConfigError

    f = tmp_path / "emu"
    f.write_text("")
    with pytest.raises(ConfigError, match=r"^emulator folder: .*emu: is a file, not a folder \(the emulator folder\)$"):
        setup_emulator(f)
    assert no_subprocess == []
