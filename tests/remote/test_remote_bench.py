"""``deploytool bench --remote`` end to end against an OpenSSH server this test starts on 127.0.0.1.

The "device" is this machine (labelled so: its bench JSON records this machine's CPU, and the report
marks only the ``host`` profile MEASURED from it). The test makes a host key and a user key, writes a
temporary ``known_hosts`` holding the host key (host-key checking stays on), and starts Debian's
``/usr/sbin/sshd -D`` on a free port with its own config; ``scripts/test.sh`` installs
``openssh-server`` when it is missing (as root). Skipped, with the reason, without sshd.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploytool.cli import main

SSHD = Path("/usr/sbin/sshd")

pytestmark = pytest.mark.skipif(
    not (SSHD.exists() and shutil.which("ssh") and shutil.which("scp") and shutil.which("ssh-keygen")),
    reason="needs Debian's openssh-server (/usr/sbin/sshd) and the OpenSSH client (scripts/test.sh installs them as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("sshd for another user than root needs a home the test cannot make; run as root")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True, timeout=30)
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    port = _free_port()
    home = d / "device_home"  # the device user's home (SetEnv HOME): its ~/.cache/deploytool stays in here
    home.mkdir()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nSetEnv HOME={home}\n"
        "Subsystem sftp internal-sftp\n")
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (d / "empty_known_hosts").write_text("")
    # sshd's privilege-separation directory (a tmpfs path the Debian service creates at start)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(d / "sshd.log", "w"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"sshd did not start: {(d / 'sshd.log').read_text().strip()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.skip("sshd did not listen within 15 s")
    opts = ["--ssh-option", f"Port={port}", "--ssh-option", f"UserKnownHostsFile={d / 'known_hosts'}",
            "--ssh-option", f"IdentityFile={d / 'user_key'}", "--ssh-option", "IdentitiesOnly=yes",
            "--ssh-option", "GlobalKnownHostsFile=/dev/null", "--connect-timeout", "5"]
    yield {"dir": d, "port": port, "opts": opts, "root": home / ".cache" / "deploytool" / "remote"}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def model(tiny_onnx, tmp_path_factory):
    d = tmp_path_factory.mktemp("remote_model")
    m = d / "tiny.onnx"
    shutil.copy(tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64), m)
    return m


def _remote_dirs(sshd) -> set[str]:
    root = sshd["root"]
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def _bench(model: Path, out: Path, sshd, *extra: str, force: bool = True):
    # --force: the shared test machine is often busy; the bench JSON then records the warning
    args = ["bench", str(model), "--seq-len", "8,16", "--runs", "5", "--warmup", "1", "-q", "-o", str(out),
            *sshd["opts"], *extra] + (["--force", "--threads", "1"] if force else [])
    t0 = time.monotonic()
    r = CliRunner().invoke(main, args)
    return r, time.monotonic() - t0


def _err(r) -> str:
    lines = [ln for ln in (r.output or "").strip().splitlines() if ln.strip()]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.output
    return lines[0]


def test_bench_over_ssh_end_to_end(sshd, model, tmp_path):
    from deploytool.runtime.hardware import machine_identity

    before = _remote_dirs(sshd)
    out = tmp_path / "device.json"
    r, took = _bench(model, out, sshd, "--profile", "host", "--remote", "root@127.0.0.1",
                     "--remote-python", sys.executable)
    assert r.exit_code == 0, r.output
    assert took < 120
    data = json.loads(out.read_text())
    assert data["schema"] == "deploytool.bench/1"
    assert data["remote"]["host"] == "root@127.0.0.1" and data["remote"]["work_dir"].startswith(str(sshd["root"]))
    # the device is this machine: its record is this machine's, the models map back to the local file
    assert data["host"]["cpu"]["core_types"] == machine_identity()["core_types"] and data["host"]["emulated"] is False
    assert {x["model"] for x in data["results"]} == {str(model)}
    assert sorted(x["seq_len"] for x in data["results"]) == [8, 16]
    assert all(x["latency_ms"]["p50_ms"] > 0 and len(x["samples_ms"]) == 5 for x in data["results"])
    assert data["profile"]["name"] == "host"
    assert _remote_dirs(sshd) == before  # the work folder is gone from the device
    # the report: MEASURED on the host profile (this machine), PROJECTED on a phone
    rep = tmp_path / "rep"
    rr = CliRunner().invoke(main, ["report", str(out), "-o", str(rep), "--profile", "host",
                                   "--profile", "raspberry-pi-5"])
    assert rr.exit_code == 0, rr.output
    rows = json.loads((rep / "report.json").read_text())["rows"]
    assert {r["status"] for r in rows if r["device"] == "host"} == {"MEASURED"}
    assert {r["status"] for r in rows if r["device"] == "raspberry-pi-5"} == {"PROJECTED"}


def test_two_hosts_in_parallel(sshd, model, tmp_path):
    out = tmp_path / "multi.json"
    r, _ = _bench(model, out, sshd, "--remote", "root@127.0.0.1", "--remote", "127.0.0.1", "--remote-parallel",
                  "--remote-python", sys.executable)
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in tmp_path.glob("multi-*.json"))
    assert files == ["multi-127.0.0.1.json", "multi-root_127.0.0.1.json"]
    for f in files:
        assert len(json.loads((tmp_path / f).read_text())["results"]) == 2
    assert not out.exists()


def test_host_key_is_checked(sshd, model, tmp_path):
    out = tmp_path / "x.json"
    opts = [o.replace(str(sshd["dir"] / "known_hosts"), str(sshd["dir"] / "empty_known_hosts")) for o in sshd["opts"]]
    r, _ = _bench(model, out, dict(sshd, opts=opts), "--remote", "root@127.0.0.1", "--remote-python", sys.executable)
    assert "Host key verification failed" in _err(r)
    assert not out.exists()
    r, _ = _bench(model, out, sshd, "--remote", "root@127.0.0.1", "--ssh-option", "StrictHostKeyChecking=no")
    assert "host-key checking" in _err(r)


def test_unreachable_host_is_one_line_and_bounded(sshd, model, tmp_path):
    out = tmp_path / "x.json"
    closed = _free_port()
    opts = [o.replace(f"Port={sshd['port']}", f"Port={closed}") for o in sshd["opts"]]
    r, took = _bench(model, out, dict(sshd, opts=opts), "--remote", "root@127.0.0.1")
    line = _err(r)
    assert "cannot reach root@127.0.0.1" in line and "refused" in line
    assert took < 30 and not out.exists()


def test_device_without_python_39(sshd, model, tmp_path):
    old = tmp_path / "python3.8"
    old.write_text("#!/bin/sh\necho 3.8.10\n")
    old.chmod(0o755)
    out = tmp_path / "x.json"
    before = _remote_dirs(sshd)
    r, _ = _bench(model, out, sshd, "--remote", "root@127.0.0.1", "--remote-python", str(old))
    line = _err(r)
    assert "Python 3.8.10" in line and "3.11+" in line
    r, _ = _bench(model, out, sshd, "--remote", "root@127.0.0.1", "--remote-python", str(tmp_path / "nothing"))
    assert "no usable Python" in _err(r)
    assert not out.exists() and _remote_dirs(sshd) == before


def test_profile_arch_must_match_the_device(sshd, model, tmp_path):
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the mismatch case uses an aarch64 profile against an x86_64 device")
    out = tmp_path / "x.json"
    before = _remote_dirs(sshd)
    r, _ = _bench(model, out, sshd, "--profile", "raspberry-pi-5", "--remote", "root@127.0.0.1",
                  "--remote-python", sys.executable)
    assert "the device is x86_64 but profile 'raspberry-pi-5' is aarch64" in _err(r)
    assert not out.exists() and _remote_dirs(sshd) == before


def test_failure_on_the_device_leaves_nothing(sshd, model, tmp_path):
    out = tmp_path / "x.json"
    before = _remote_dirs(sshd)
    # more threads than the device's usable cores: its bench refuses after the models were copied
    r, _ = _bench(model, out, sshd, "--threads", "1000", "--remote", "root@127.0.0.1",
                  "--remote-python", sys.executable, force=False)
    line = _err(r)
    assert "root@127.0.0.1: the benchmark failed: threads: 1000" in line
    assert not out.exists() and _remote_dirs(sshd) == before
    assert not list(tmp_path.glob(".x.json*"))


@pytest.mark.slow
def test_remote_setup_installs_deploytool_in_its_own_venv(sshd, model, tmp_path):
    """--remote-setup: this checkout's wheel is built, copied and installed by the device's pip into
    ~/.cache/deploytool/remote/venv (dependencies from the machine's pip index/cache), then used."""
    if not shutil.which("python3"):
        pytest.skip("the device needs a python3 on PATH for its venv")
    venv = sshd["root"] / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    out = tmp_path / "setup.json"
    r, took = _bench(model, out, sshd, "--remote", "root@127.0.0.1", "--remote-setup")
    assert r.exit_code == 0, r.output
    assert took < 240  # about 70 s on a busy 2-core machine, mostly pip unpacking onnxruntime/matplotlib
    data = json.loads(out.read_text())
    assert data["remote"]["python"].endswith("venv/bin/python")
    assert (venv / "bin" / "python").exists()
    assert _remote_dirs(sshd) == {"venv"}  # the work folder is gone, the install stays


def _fake_python(path: Path, agent: str) -> Path:
    """A device "Python" that passes the probe (3.12, imports deploytool) and runs ``agent`` (sh) instead of
    deploytool's agent, in the work folder."""
    path.write_text("#!/bin/sh\nif [ \"$1\" = -c ]; then\n  case \"$2\" in *version_info*) echo 3.12.1;; esac\n"
                    f"  exit 0\nfi\n{agent}\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("answer", ["not json {", "", "[1, 2]", "{}", '{"schema": "deploytool.bench/1", "results": 3}'])
def test_a_device_answer_that_is_no_bench_result_is_one_line(sshd, model, tmp_path, answer):
    """garbage (an old or broken deploytool on the device) was an internal error, or ``{}`` a bench JSON written"""
    py = _fake_python(tmp_path / "py", f"printf '%s' '{answer}' > bench.json")
    out = tmp_path / "x.json"
    before = _remote_dirs(sshd)
    r, _ = _bench(model, out, sshd, "--remote", "root@127.0.0.1", "--remote-python", str(py))
    line = _err(r)
    assert line.startswith("error: root@127.0.0.1: the device's bench result is not usable (")
    assert not out.exists() and not list(tmp_path.glob(".x.json*")) and _remote_dirs(sshd) == before


def test_a_bench_cut_off_does_not_run_on_on_the_device(sshd, model, tmp_path):
    """a bench that times out (or is interrupted) had its work folder removed but went on running on the device"""
    from deploytool.bench import BenchConfig
    from deploytool.remote import RemoteConfig, RemoteError, bench_remote

    marker = f"{os.getpid() % 1000}.{time.time_ns() % 10**6:06d}"  # sleep's argument: this test's process
    py = _fake_python(tmp_path / "py", f"sleep 1{marker}\necho '{{}}' > bench.json")
    opts = tuple(v for k, v in zip(sshd["opts"], sshd["opts"][1:]) if k == "--ssh-option")
    cfg = RemoteConfig(hosts=("root@127.0.0.1",), ssh_options=opts, connect_timeout_s=5, remote_python=str(py),
                       timeout_s=3)
    before = _remote_dirs(sshd)
    with pytest.raises(RemoteError, match="the benchmark: no answer within 3 s"):
        bench_remote(BenchConfig(models=(model,), seq_lens=(8,), runs=3, warmup=1, threads=1), cfg, tmp_path / "x.json")
    assert _remote_dirs(sshd) == before and not (tmp_path / "x.json").exists()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", f"sleep 1{marker}"], capture_output=True, text=True).stdout.split()
        if not left:
            break
        time.sleep(0.2)
    assert not left, "the device still runs the bench that was cut off"


def test_a_device_whose_shell_greets_still_works(sshd, model, tmp_path):
    """a ~/.bashrc that prints a greeting (common on a Pi) came first on stdout: the probe read the greeting's
    words as the arch and Python version ("cannot read the device's Python version ('the')")"""
    rc = sshd["root"].parents[2] / ".bashrc"  # the device user's home (bash reads it for an ssh command)
    rc.write_text('echo "Welcome to the device"\n')
    try:
        out = tmp_path / "x.json"
        before = _remote_dirs(sshd)
        r, _ = _bench(model, out, sshd, "--remote", "root@127.0.0.1", "--remote-python", sys.executable)
        assert r.exit_code == 0, r.output
        data = json.loads(out.read_text())
        assert data["remote"]["work_dir"].startswith(str(sshd["root"])) and _remote_dirs(sshd) == before
    finally:
        rc.unlink()
