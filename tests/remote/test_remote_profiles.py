"""The profile a ``--remote`` bench sends to the device, without an SSH server: a fake ``ssh`` runs its script here
with ``sh`` (HOME: a folder standing for the device user's home) and a fake ``scp`` copies ``host:path`` as a local
path, so the device side (:mod:`deploytool.remote.agent`) really loads the profile it was sent.

A user's profile file went to the device as ``profile.yaml``, which the loader refuses (a profile's name must be
its file's name: "name: expected 'profile'"); a user's profile of the machine itself (``from_host: true``, e.g.
``host-strict`` with stricter budgets) went by its name only, unknown to the device's deploytool."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.profiles import BUILTIN_PROFILE_DIR

_SSH = """#!{python}
import os, subprocess, sys
args = sys.argv[1:]
env = dict(os.environ, HOME={home!r})
sys.exit(subprocess.run(["sh", "-c", args[-1]], env=env).returncode)
"""

_SCP = """#!{python}
import shutil, sys
args, files = sys.argv[1:], []
i = 0
while i < len(args):
    if args[i] in ("-o", "-F"):
        i += 2
        continue
    if not args[i].startswith("-"):
        files.append(args[i].split(":", 1)[1] if ":" in args[i] else args[i])
    i += 1
for f in files[:-1]:
    shutil.copy(f, files[-1])
"""


@pytest.fixture
def loopback(tmp_path, monkeypatch):
    bin_dir, home = tmp_path / "bin", tmp_path / "device_home"
    bin_dir.mkdir()
    home.mkdir()
    for name, text in (("ssh", _SSH), ("scp", _SCP)):
        (bin_dir / name).write_text(text.format(python=sys.executable, home=str(home)))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return home


def _bench(model: Path, out: Path, profile: Path):
    return CliRunner().invoke(main, ["bench", str(model), "--seq-len", "8", "--runs", "2", "--warmup", "1", "-q",
                                     "--force", "--threads", "1", "-o", str(out), "--profile", str(profile),
                                     "--remote", "pi@board", "--remote-python", sys.executable])


def test_a_users_profile_of_this_machine_reaches_the_device(loopback, tiny_onnx, tmp_path):
    text = (BUILTIN_PROFILE_DIR / "host.yaml").read_text()
    assert "name: host\n" in text
    (tmp_path / "mine").mkdir()
    strict = tmp_path / "mine" / "host-strict.yaml"
    strict.write_text(text.replace("name: host\n", "name: host-strict\n"))
    out = tmp_path / "b.json"
    r = _bench(tiny_onnx(), out, strict)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["profile"]["name"] == "host-strict" and data["remote"]["host"] == "pi@board"
    assert not any((loopback / ".cache" / "deploytool" / "remote").iterdir())  # the work folder is gone


_BOARD = """schema_version: 1
name: my-board
description: "A user's x86 board"
soc: some x86 SoC
arch: x86_64
cpu:
  - {count: 4, core: zen4, max_ghz: 3.0}
features: [avx2]
memory_gb: 8
compute:
  peak_gops: {fp32: 384, int8: 768}
  memory_bandwidth_gbs: 40
  derivation: "4 cores x 3 GHz x 32 fp32 FLOP/cycle"
execution_providers: [CPU]
threads: 4
budgets:
  p90_latency_ms: {8: 15}
  peak_memory_mb: 800
  model_size_mb: 100
sources: ["the user's measurements"]
"""


@pytest.mark.skipif(__import__("platform").machine() != "x86_64", reason="the board profile is x86_64, as the device "
                    "(this machine) must be")
def test_a_users_board_profile_file_reaches_the_device(loopback, tiny_onnx, tmp_path):
    """A board described by the user (not built from the machine), of the device's arch: sent as its file."""
    (tmp_path / "mine").mkdir()
    board = tmp_path / "mine" / "my-board.yaml"
    board.write_text(_BOARD)
    out = tmp_path / "b.json"
    r = _bench(tiny_onnx(), out, board)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["profile"]["name"] == "my-board"
