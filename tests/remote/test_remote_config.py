"""``RemoteConfig``: what it refuses before any ssh runs (no server needed)."""

from __future__ import annotations

import pytest

from deploytool.errors import ConfigError
from deploytool.remote import RemoteConfig


@pytest.mark.parametrize("option", ["StrictHostKeyChecking=no", "StrictHostKeyChecking=false", "stricthostkeychecking OFF",
                                    'StrictHostKeyChecking="no"', "StrictHostKeyChecking='accept-new'",
                                    "UserKnownHostsFile=/dev/null", 'UserKnownHostsFile="/dev/null"',
                                    'StrictHostKeyChecking="no'])
def test_every_spelling_that_turns_host_key_checking_off_is_refused(option):
    """ssh reads "false" as off, and strips quotes: StrictHostKeyChecking=false or "no" got through"""
    with pytest.raises(ConfigError, match="does not switch host-key checking off"):
        RemoteConfig(hosts=("pi@raspberrypi",), ssh_options=(option,))


@pytest.mark.parametrize("option", ["StrictHostKeyChecking=yes", "StrictHostKeyChecking ask", "Port=2222",
                                    "UserKnownHostsFile=/tmp/kh /tmp/kh2", 'UserKnownHostsFile="/tmp/a b"'])
def test_options_that_keep_host_key_checking_are_taken(option):
    assert RemoteConfig(hosts=("pi@raspberrypi",), ssh_options=(option,)).ssh_options == (option,)


def test_one_string_where_a_list_goes_is_a_list_of_one():
    """``ssh_options="Port=2222"`` was read letter by letter (ssh option 'P': expected Key=Value); pip_args alike"""
    cfg = RemoteConfig(hosts="pi@raspberrypi", ssh_options="Port=2222", pip_args="--pre")
    assert cfg.ssh_options == ("Port=2222",) and cfg.pip_args == ("--pre",)
    with pytest.raises(ConfigError, match="does not switch host-key checking off"):  # still checked as one option
        RemoteConfig(hosts="pi@raspberrypi", ssh_options="StrictHostKeyChecking=no")


@pytest.mark.parametrize("args,expect", [([], 3600.0), (["--remote-timeout", "90"], 90.0),
                                         (["--remote-timeout", "0"], None), (["--remote-timeout", "nan"], None)])
def test_bench_remote_timeout_option(tiny_onnx, tmp_path, monkeypatch, args, expect):
    """``--remote-timeout SECONDS`` (as --connect-timeout SECONDS) is RemoteConfig.timeout_s, which was only settable
    from Python; no ssh runs here: bench_remote is replaced."""
    from click.testing import CliRunner

    import deploytool.remote as remote
    from deploytool.cli import main

    seen = []
    monkeypatch.setattr(remote, "bench_remote", lambda config, rc, output: seen.append(rc) or [])
    r = CliRunner().invoke(main, ["bench", str(tiny_onnx()), "--remote", "pi@raspberrypi", "-o",
                                  str(tmp_path / "b.json"), *args])
    if expect is None:
        assert r.exit_code == 2 and "--remote-timeout" in r.output and not seen
    else:
        assert r.exit_code == 0, r.output
        assert seen[0].timeout_s == expect


def test_remote_timeout_without_remote_is_refused(tiny_onnx):
    from click.testing import CliRunner

    from deploytool.cli import main

    r = CliRunner().invoke(main, ["bench", str(tiny_onnx()), "--remote-timeout", "60"])
    assert r.exit_code == 2 and "--remote-timeout: only used with --remote" in r.output


def test_a_length_past_the_position_table_is_refused_before_any_ssh(tiny_onnx, tmp_path, monkeypatch):
    """bench --remote with --seq-len past the model's position table: refused here, by bench's own check, before a
    device is probed or anything copied (it was found only on the device, by ONNX Runtime's broadcast error)."""
    from deploytool.bench import BenchConfig
    from deploytool.remote import bench_remote, ssh

    def no_ssh(*a, **k):
        raise AssertionError("ssh ran")

    monkeypatch.setattr(ssh, "_probe", no_ssh)
    model = tiny_onnx("bert", max_pos=128)
    with pytest.raises(ConfigError, match=r"--seq-len 200 is longer than the model's position table \(128 positions"):
        bench_remote(BenchConfig(models=(model,), seq_lens=(8, 200), runs=2, warmup=1),
                     RemoteConfig(hosts=("pi@raspberrypi",)), tmp_path / "x.json")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["read-only-dir", "read-only-fs", "file-as-folder"])
def test_an_unwritable_output_is_refused_before_any_ssh(tiny_onnx, tmp_path, monkeypatch, unwritable_folder, where):
    """bench --remote -o where no file can be written: one line naming the path, exit 2, before a device is probed
    (a local bench checks it before measuring; --remote probed, copied, ran the whole bench on the device and only
    then failed writing its JSON)."""
    from click.testing import CliRunner

    from deploytool.cli import main
    from deploytool.remote import ssh

    def no_ssh(*a, **k):
        raise AssertionError("ssh ran")

    monkeypatch.setattr(ssh, "_probe", no_ssh)
    if where == "file-as-folder":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "b.json"
    else:
        out = unwritable_folder(where) / "sub" / "b.json"
    r = CliRunner().invoke(main, ["bench", str(tiny_onnx()), "--seq-len", "8", "--remote", "pi@raspberrypi",
                                  "-o", str(out)])
    err = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(err) == 1 and err[0].startswith(f"error: {out}"), r.output
    assert "Traceback" not in r.output and not out.exists()


def test_json_with_remote_prints_the_device_json(tiny_onnx, tmp_path, monkeypatch):
    """bench --remote pi -o pi.json --json: stdout is the device's bench JSON (a list of them for several hosts), the
    summary and 'wrote' lines go to stderr, as a local --json -o; --json was ignored (stdout had the summary lines,
    which no JSON reader takes). No ssh runs here: bench_remote is replaced."""
    import json

    from click.testing import CliRunner

    import deploytool.remote as remote
    from deploytool.cli import main
    from deploytool.remote import RemoteRun

    def fake(config, rc, output):
        return [RemoteRun(h, tmp_path / f"b-{h}.json",
                          {"schema": "deploytool.bench/1", "host": {"cpu_model": "Cortex", "arch": "aarch64"},
                           "results": [{"name": "m", "seq_len": 8, "latency_ms": {"p50_ms": 1.0, "p90_ms": 2.0}}],
                           "device": h}) for h in rc.hosts]

    monkeypatch.setattr(remote, "bench_remote", fake)
    args = ["bench", str(tiny_onnx()), "--seq-len", "8", "-o", str(tmp_path / "b.json"), "--json"]
    r = CliRunner().invoke(main, [*args, "--remote", "pi@one"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["device"] == "pi@one"
    assert "wrote" in r.stderr and "p50" in r.stderr
    r = CliRunner().invoke(main, [*args, "--remote", "pi@one", "--remote", "pi@two"])
    assert r.exit_code == 0, r.output
    assert [d["device"] for d in json.loads(r.stdout)] == ["pi@one", "pi@two"]
    r = CliRunner().invoke(main, [*args[:-1], "--remote", "pi@one"])  # without --json: the summary on stdout
    assert r.exit_code == 0 and "wrote" in r.stdout and "p50 1.000 ms" in r.stdout, r.output
