"""The check of every host before a ``--remote`` bench (the probe), without an SSH server: a fake ``ssh`` on PATH
answers for made-up hosts, ``down-*`` as an unreachable host does (exit 255, ssh's own message), the others as a
device with deploytool does, each after 1 s, and logs when it started and ended.

A sweep over several devices named only the first unreachable one (found one run at a time), and with
``--remote-parallel`` checked the hosts one after another (the wait was the sum of the hosts', not the slowest)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploytool.cli import main

_FAKE_SSH = """#!{python}
import json, sys, time
log, start = {log!r}, time.time()
args = sys.argv[1:]
host = args[args.index("--") - 1]
time.sleep(1.0)
with open(log, "a") as f:
    f.write(json.dumps({{"host": host, "start": start, "end": time.time(), "script": args[-1]}}) + "\\n")
if host.startswith("down-"):
    sys.stderr.write(f"ssh: connect to host {{host}} port 22: Connection refused\\n")
    sys.exit(255)
print("--deploytool-answer--\\nx86_64\\n/home/pi/venv/bin/python\\n3.11.2\\ndeploytool")
"""


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "ssh.log"
    ssh = bin_dir / "ssh"
    ssh.write_text(_FAKE_SSH.format(python=sys.executable, log=str(log)))
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return log


def _calls(log: Path) -> list[dict]:
    return [json.loads(ln) for ln in log.read_text().splitlines()]


def _bench(model: Path, out: Path, *args: str):
    return CliRunner().invoke(main, ["bench", str(model), "--seq-len", "8", "-q", "-o", str(out), *args])


def _one_line_error(r) -> str:
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.output
    return lines[0]


def test_parallel_hosts_are_checked_at_once_and_every_unreachable_one_is_named(fake_ssh, tiny_onnx, tmp_path):
    out = tmp_path / "b.json"
    r = _bench(tiny_onnx(), out, "--remote", "pi@up", "--remote", "down-a", "--remote", "down-b",
               "--remote-parallel")
    line = _one_line_error(r)
    assert "cannot reach down-a: ssh: connect to host down-a port 22: Connection refused" in line
    assert "cannot reach down-b: ssh: connect to host down-b port 22: Connection refused" in line
    assert "2 of 3 hosts" in line and "pi@up" not in line
    calls = _calls(fake_ssh)
    # only the three probes ran (no work folder, nothing copied), and they overlapped: each was still running
    # when the last one started (one after another, the second started after the first ended, 1 s later)
    assert sorted(c["host"] for c in calls) == ["down-a", "down-b", "pi@up"]
    assert all("uname -m" in c["script"] for c in calls)
    assert max(c["start"] for c in calls) < min(c["end"] for c in calls)
    assert max(c["end"] for c in calls) - min(c["start"] for c in calls) < 2.5  # the sum is 3 s
    assert not list(tmp_path.glob("b*.json"))


def test_hosts_in_turn_are_checked_in_turn_and_still_all_named(fake_ssh, tiny_onnx, tmp_path):
    out = tmp_path / "b.json"
    r = _bench(tiny_onnx(), out, "--remote", "down-a", "--remote", "down-b")
    line = _one_line_error(r)
    assert "cannot reach down-a" in line and "cannot reach down-b" in line and "2 of 2 hosts" in line
    a, b = sorted(_calls(fake_ssh), key=lambda c: c["start"])
    assert b["start"] >= a["end"]  # without --remote-parallel nothing runs at once, the checks included


def test_one_unreachable_host_is_the_message_it_was(fake_ssh, tiny_onnx, tmp_path):
    r = _bench(tiny_onnx(), tmp_path / "b.json", "--remote", "down-a", "--remote", "pi@up", "--remote-parallel")
    assert _one_line_error(r) == "error: cannot reach down-a: ssh: connect to host down-a port 22: Connection refused"
