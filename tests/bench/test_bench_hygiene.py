"""Measurement hygiene: schedules, the shared thread pool, busy-machine detection, the recorded profile,
--profiles-dir / DEPLOYTOOL_PROFILES_DIR on bench. Timing *targets* live in benchmarks/bench_hygiene.py."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from deploytool.bench import BenchConfig, run_benchmark
from deploytool.bench.config import BusyPolicy, Schedule, ThreadPool
from deploytool.runtime.machine import LoadSample, busy_warnings, sample_load, usable_cores
from deploytool.bench.runner import SegmentWorker, _run_worker
from deploytool.bench.inputs import plan_inputs
from deploytool.cli import main
from deploytool.errors import ConfigError
from deploytool.profiles import BUILTIN_PROFILE_DIR, load_profile
from deploytool.testing.bench_models import encoder_like


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("hyg")
    return (encoder_like(d / "a.onnx", vocab=50, hidden=32, layers=2),
            encoder_like(d / "b.onnx", vocab=50, hidden=16, layers=1))


def _worker(models, **kw):
    from deploytool.runtime.session import SessionSpec

    req = {"models": [{"path": str(m), "plan": plan_inputs(m).to_dict()} for m in models], "seq_lens": [8],
           "batch": 1, "seed": 0, "warmup": 1, "runs": 6, "spec": SessionSpec(**kw.pop("spec", {})).to_dict(), **kw}
    return _run_worker(req, on_progress=lambda *a: None, timeout_s=120)


def _order(res):
    """Model index of every timed run, in the order the runs started."""
    return _order_of(res["started_ms"]["8"])


def _order_of(starts):
    return [i for _, i in sorted((t, i) for i, ts in enumerate(starts) for t in ts)]


def test_interleaved_alternates_and_blocks_group(pair):
    assert _order(_worker(pair, schedule="interleaved")) == [0, 1] * 6
    assert _order(_worker(pair, schedule="blocks", block_runs=3)) == [0, 0, 0, 1, 1, 1] * 2
    assert _order(_worker(pair, schedule="blocks", block_runs=4)) == [0] * 4 + [1] * 4 + [0, 0, 1, 1]


class _Recorder:
    """A stand-in session that records every run in ``calls`` as the model's letter."""

    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls = name, calls

    def run(self, outputs, feeds):
        self.calls.append(self.name)


def _timer_calls(monkeypatch, n_models: int, **request):
    """The timer's whole call order: each run as its model's letter, each clock read as ``|`` (a timed run is
    ``|A|``, an untimed one a bare ``A``), and the timed samples per model."""
    import time

    from deploytool.bench.worker import _Timer

    calls: list[str] = []
    clock = iter(range(1, 10**6))

    def read() -> int:
        calls.append("|")
        return next(clock)

    names = "ABC"[:n_models]
    req = {"models": [{"path": f"{n}.onnx"} for n in names], "batch": 1, "seed": 0, **request}
    timer = _Timer(req, [_Recorder(n, calls) for n in names], [None] * n_models, [["out"]] * n_models)
    timer.feeds[8] = [{}] * n_models  # no real inputs: the stand-ins take anything
    monkeypatch.setattr(time, "perf_counter_ns", read)
    samples, _ = timer.time(8, warmup=1, runs=4)
    return "".join(calls), [len(x) for x in samples]


def test_prime_runs_precede_each_timed_stretch_untimed(monkeypatch):
    # the warm-up round AB, then per block: the model's untimed primer runs, then its timed runs
    assert _timer_calls(monkeypatch, 2, schedule="blocks", block_runs=2, prime_runs=3) == (
        "AB" + "AAA|A||A|BBB|B||B|" * 2, [4, 4])
    assert _timer_calls(monkeypatch, 2, schedule="interleaved", prime_runs=1) == ("AB" + "A|A|B|B|" * 4, [4, 4])
    assert _timer_calls(monkeypatch, 2, schedule="interleaved", prime_runs=0) == ("AB" + "|A||B|" * 4, [4, 4])
    # one model: nothing to prime against, whatever the request says
    assert _timer_calls(monkeypatch, 1, schedule="blocks", block_runs=2, prime_runs=3) == ("A" + "|A|" * 4, [4])


def test_bench_command_passes_prime_runs(pair, tmp_path):
    out = tmp_path / "b.json"
    r = CliRunner().invoke(main, ["bench", *map(str, pair), "--seq-len", "8", "--warmup", "1", "--runs", "2",
                                  "--prime-runs", "1", "--schedule", "interleaved", "--force", "-q", "-o", str(out)])
    assert r.exit_code == 0, r.output
    cfg = json.loads(out.read_text())["config"]
    assert (cfg["prime_runs"], cfg["schedule"]) == (1, "interleaved")
    assert "2 runs interleaved run by run, each after 1 untimed run of its model" in r.output  # the table says so
    r = CliRunner().invoke(main, ["bench", *map(str, pair), "--prime-runs", "-1", "-q"])
    assert r.exit_code == 2 and "--prime-runs: must be" in r.output and "Traceback" not in r.output


def test_shared_pool_runs_every_session_on_it(pair):
    res = _worker(pair, spec={"intra_op_threads": 1, "shared_thread_pool": True})
    assert all(s["spec"]["shared_thread_pool"] for s in res["sessions"])
    assert all(len(x) == 6 for x in res["latencies_ms"]["8"])


def _cpu_ticks(pid: int) -> int:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime of the whole process (all threads)


def test_segment_worker_keeps_its_sessions_and_idles_between_segments(pair):
    cfg = BenchConfig(models=pair, seq_lens=(8,), threads=2, schedule="blocks", block_runs=3)
    with SegmentWorker(cfg) as w:
        assert [s["spec"]["shared_thread_pool"] for s in w.sessions] == [True, True]
        first = w.segment(8, 6)
        assert [len(x) for x in first] == [6, 6] and all(t > 0 for x in first for t in x)
        starts = w.last_segment["started_ms"]
        order = [i for _, i in sorted((t, i) for i, ts in enumerate(starts) for t in ts)]
        assert order == [0, 0, 0, 1, 1, 1] * 2  # the config's schedule, segment after segment
        assert [len(x) for x in w.segment(8, 4, warmup=0)] == [4, 4]
        assert min(w.last_segment["started_ms"][0]) > max(starts[1])  # the same process, later in time
        # a segment in another schedule, then the config's again
        w.segment(8, 4, warmup=0, schedule="interleaved")
        assert _order_of(w.last_segment["started_ms"]) == [0, 1] * 4
        w.segment(8, 6, warmup=0)
        assert _order_of(w.last_segment["started_ms"]) == [0, 0, 0, 1, 1, 1] * 2
        with pytest.raises(ConfigError, match="prime_runs: must be"):
            w.segment(8, 2, prime_runs=-1)
        with pytest.raises(ConfigError, match=r"seq_len: 16 is not one of this worker's \[8\]"):
            w.segment(16, 2)
        # between segments it waits on its input: no thread keeps spinning on the cores
        import time

        time.sleep(0.3)
        t0 = _cpu_ticks(w.pid)
        time.sleep(1.0)
        assert _cpu_ticks(w.pid) - t0 <= 5  # at most 5 of the 100+ clock ticks a spinning thread would use
        pid = w.pid
    assert w.result is not None and w.result["memory"]["peak_rss_bytes"] > 0
    assert not os.path.exists(f"/proc/{pid}/stat") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_config_defaults_and_validation(pair):
    cfg = BenchConfig(models=pair)
    assert (cfg.schedule, cfg.thread_pool, cfg.busy) == (Schedule.BLOCKS, ThreadPool.SHARED, BusyPolicy.WARN)
    assert (cfg.block_runs, cfg.prime_runs, cfg.primed_runs) == (10, 3, 3)
    assert BenchConfig(models=pair[:1]).primed_runs == 0  # one model: its runs already follow each other
    assert BenchConfig(models=pair[:1]).to_dict()["prime_runs"] == 0 and cfg.to_dict()["prime_runs"] == 3
    assert cfg.session_spec.shared_thread_pool  # several models share one pool
    assert not BenchConfig(models=pair[:1]).session_spec.shared_thread_pool  # one model: as deployed
    assert not BenchConfig(models=pair, thread_pool="session").session_spec.shared_thread_pool
    for kw, match in [(dict(schedule="zigzag"), "schedule: expected one of interleaved, blocks"),
                      (dict(thread_pool="global"), "thread_pool: expected one of session, shared"),
                      (dict(busy="ignore"), "busy: expected one of warn, refuse"),
                      (dict(block_runs=0), "block_runs: must be"), (dict(wait_quiet_s=-1), "wait_quiet_s"),
                      (dict(prime_runs=-1), "prime_runs: must be"), (dict(prime_runs=True), "prime_runs"),
                      (dict(profile="kirin990"), "profile: expected a device Profile")]:
        with pytest.raises(ConfigError, match=match):
            BenchConfig(models=pair, **kw)


def test_report_records_profile_machine_and_schedule(pair):
    prof = load_profile("kirin990")
    rep = run_benchmark(BenchConfig(models=pair, seq_lens=(8,), threads=1, warmup=1, runs=4, profile=prof,
                                    schedule="blocks", block_runs=2))
    d = rep.to_dict()
    assert d["profile"]["name"] == "kirin990" and d["profile"]["path"].endswith("kirin990.yaml")
    assert d["config"]["schedule"] == "blocks" and d["config"]["block_runs"] == 2
    assert d["config"]["session"]["providers"][0]["name"] == "xnnpack"  # the profile's spec was used
    m = d["machine"]
    assert m["before"]["usable_cores"] == usable_cores() and m["before"]["samples"] >= 1
    assert set(m["spread_p90_over_p50"]) == {"a@8", "b@8"} and isinstance(m["warnings"], list)
    assert m["busy"] == bool(m["warnings"])


def _sample(others: float, usable: int = 2) -> LoadSample:
    return LoadSample(time_utc="t", loadavg=(others, others, others), other_runnable_mean=others,
                      other_runnable_max=int(others + 0.99), usable_cores=usable, samples=10)


def test_busy_warnings():
    assert busy_warnings(2, _sample(0.0), _sample(0.1), [("m", 8, 0.05)]) == []
    w = busy_warnings(2, _sample(1.0), _sample(0.0), [("m", 8, 0.05)])
    assert len(w) == 1 and w[0].startswith("busy machine before the benchmark: 1.0 other runnable")
    w = busy_warnings(1, _sample(0.0), None, [("m", 8, 0.05), ("n", 128, 0.6)])
    assert len(w) == 1 and "spread" in w[0] and "n seq 128: 60%" in w[0] and "1 of 2" in w[0]


def test_sample_load_sees_a_busy_process():
    import subprocess
    import sys

    quiet = sample_load(samples=5, window_s=0.2)
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = sample_load(samples=10, window_s=0.5)
        assert busy.other_runnable_max >= 1  # the spinning child is someone else's runnable task
        mine = sample_load(samples=10, window_s=0.5, exclude_pids=(spin.pid,))
        assert mine.other_runnable_mean <= busy.other_runnable_mean
    finally:
        spin.kill()
        spin.wait()
    assert quiet.usable_cores == busy.usable_cores


def test_refuses_threads_above_usable_cores_unless_forced(pair):
    too_many = usable_cores() + 1
    with pytest.raises(ConfigError, match=rf"threads: {too_many} intra-op threads but this process may use"):
        run_benchmark(BenchConfig(models=pair[:1], seq_lens=(8,), threads=too_many, runs=2, busy="refuse"))
    res = CliRunner().invoke(main, ["bench", str(pair[0]), "--seq-len", "8", "--runs", "2", "--threads", str(too_many),
                                    "-q"])
    assert res.exit_code == 2 and "error: --threads:" in res.output and "bench --force" in res.output
    res = CliRunner().invoke(main, ["bench", str(pair[0]), "--seq-len", "8", "--runs", "2", "--warmup", "1",
                                    "--threads", str(too_many), "-q", "--force"])
    assert res.exit_code == 0, res.output
    assert "warning: busy machine" in res.output or "oversubscribed" in res.output


def test_bench_profiles_dir_and_env_var(pair, tmp_path):
    boards = tmp_path / "boards"
    boards.mkdir()
    text = (BUILTIN_PROFILE_DIR / "raspberry-pi-4.yaml").read_text().replace("name: raspberry-pi-4", "name: myboard")
    (boards / "myboard.yaml").write_text(text)
    out = tmp_path / "b.json"
    args = ["bench", str(pair[1]), "--seq-len", "8", "--runs", "2", "--warmup", "1", "--threads", "1", "-q", "--force",
            "--profile", "myboard", "-o", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "unknown device profile 'myboard'" in res.output
    res = CliRunner().invoke(main, args + ["--profiles-dir", str(boards)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["profile"]["name"] == "myboard"
    out.unlink()
    (tmp_path / "empty").mkdir()  # a missing folder is an error (tests/profiles): an empty one is searched
    env = {"DEPLOYTOOL_PROFILES_DIR": os.pathsep.join([str(tmp_path / "empty"), str(boards)])}
    res = CliRunner(env=env).invoke(main, args)
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["profile"]["path"] == str(boards / "myboard.yaml")
    for cmd in (["profiles", "show", "myboard"], ["profiles"]):
        res = CliRunner(env=env).invoke(main, cmd)
        assert res.exit_code == 0 and "myboard" in res.output, res.output
    shutil.rmtree(boards)


def test_oversubscription_note_and_refusal_name_where_the_threads_came_from(pair):
    """More intra-op threads than usable cores: the table's note said '(--threads N overrides the profile's)' also
    for --threads given with no profile; now 'use --threads N' there and the profile's words only for a profile's
    threads. The refusal of a profile's threads names the profile (it said '--threads: 4 intra-op threads' to a
    user who gave no --threads)."""
    import dataclasses

    from deploytool.bench.table import format_table

    report = run_benchmark(BenchConfig(models=pair[:1], seq_lens=(8,), runs=1, warmup=0, busy="warn"))
    pi = load_profile("raspberry-pi-4")  # 4 threads
    host = {**report.host, "usable_cores": 2}
    given = format_table(dataclasses.replace(report, host=host, config=dataclasses.replace(report.config, threads=8)))
    assert "note: 8 intra-op threads on 2 usable cores: oversubscribed" in given
    assert "profile" not in given and "use --threads 2" in given
    cfg = dataclasses.replace(report.config, profile=pi)
    from_profile = format_table(dataclasses.replace(report, host=host, config=cfg))
    assert "4 intra-op threads on 2 usable cores" in from_profile
    assert "--threads 2 overrides the profile raspberry-pi-4's" in from_profile
    a64fx = load_profile("a64fx")  # 12 threads
    if usable_cores() >= a64fx.threads:
        pytest.skip(f"{usable_cores()} usable cores run the a64fx profile's {a64fx.threads} threads")
    with pytest.raises(ConfigError, match=rf"threads: {a64fx.threads} intra-op threads \(device profile a64fx's\) "
                                          "but this process may use"):
        run_benchmark(BenchConfig(models=pair[:1], seq_lens=(8,), profile=a64fx, runs=1, busy="refuse"))


def test_wait_quiet_never_waits_for_more_cores_than_the_process_may_use(pair, monkeypatch):
    """--threads above the usable cores with --wait-quiet 600 waited the whole 600 s for free cores that cannot exist
    (free <= usable), then refused; now refused at once, and with --force it waits for the usable cores only."""
    import deploytool.runtime.machine as machine

    asked = []

    class Stop(Exception):
        pass

    def fake_wait(cores, *, timeout_s, **k):
        asked.append(cores)
        raise Stop

    monkeypatch.setattr(machine, "wait_for_free_cores", fake_wait)
    too_many = usable_cores() + 1
    with pytest.raises(ConfigError, match=rf"threads: {too_many} intra-op threads but this process may use"):
        run_benchmark(BenchConfig(models=pair[:1], seq_lens=(8,), threads=too_many, runs=1, busy="refuse",
                                  wait_quiet_s=600))
    assert asked == []
    with pytest.raises(Stop):
        run_benchmark(BenchConfig(models=pair[:1], seq_lens=(8,), threads=too_many, runs=1, busy="warn",
                                  wait_quiet_s=600))
    assert asked == [usable_cores()]


def test_a_worker_command_that_exits_at_once_is_one_line_naming_it(pair, monkeypatch):
    """DEPLOYTOOL_BENCH_PYTHON=/bin/false (a worker command that exits before reading its request): writing the request
    hit EPIPE, which the CLI takes for 'the reader of stdout left' and exited 141 with no word; or, when the write
    won the race, 'internal error RuntimeError: benchmark worker exited with code 1'. Now one line naming the command
    and its exit code, exit 2. The child is waited for before the request is written, so the pipe is always broken."""
    import subprocess

    from deploytool.bench import runner
    from deploytool.errors import DeployError

    real = subprocess.Popen

    def exited_first(*a, **k):
        p = real(*a, **k)
        p.wait()
        return p

    monkeypatch.setattr(runner.subprocess, "Popen", exited_first)
    with pytest.raises(DeployError, match=r"benchmark worker \(/bin/sh -c 'exit 3' .*\) exited with code 3 without a "
                                          "result"):
        run_benchmark(BenchConfig(models=pair[:1], seq_lens=(8,), runs=1, warmup=0, busy="warn",
                                  worker_python=("/bin/sh", "-c", "exit 3")))
    r = CliRunner().invoke(main, ["bench", str(pair[0]), "--seq-len", "8", "--runs", "1", "-q", "--force"],
                           env={"DEPLOYTOOL_BENCH_PYTHON": "/bin/sh -c 'exit 3'"})
    err = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(err) == 1 and "exited with code 3" in err[0], r.output
    assert "internal error" not in err[0]
    with pytest.raises(RuntimeError, match=r"benchmark worker exited \(code 3\) before its request"):
        SegmentWorker(BenchConfig(models=pair[:1], seq_lens=(8,), runs=1, worker_python=("/bin/sh", "-c", "exit 3")))


def test_a_worker_command_that_is_no_command_line_is_one_line():
    r = CliRunner().invoke(main, ["bench", "m.onnx"], env={"DEPLOYTOOL_BENCH_PYTHON": '"qemu-aarch64 python'})
    err = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and err == ["error: DEPLOYTOOL_BENCH_PYTHON: not a command line (No closing quotation): "
                                        "'\"qemu-aarch64 python'"], r.output
