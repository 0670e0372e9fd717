"""A command whose process dies of a signal (a native crash in ONNX Runtime, PyTorch or numpy; the OOM killer)
ends in one ``error:`` line and exit 2, like every other failure, not a silent exit 139: the ``deploytool``
program runs each command in a forked child and reports how it ended (``deploytool.cli._supervise``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from deploytool.testing.procs import default_signals

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the supervisor needs fork (POSIX)")

# a command module of the test's own, registered in the lazy command table as a user's install would see a command
_COMMANDS = textwrap.dedent("""
    import os, signal, sys, time
    import click

    @click.command()
    @click.argument("how")
    @click.option("--pidfile", default=None)
    def cmd(how, pidfile):
        if pidfile:
            with open(pidfile, "w") as f:
                f.write(str(os.getpid()))
        if how == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif how == "abort":
            os.abort()
        elif how == "exit3":
            sys.exit(3)
        elif how == "sleep":
            time.sleep(60)
        elif how == "nap":
            with open(pidfile + ".ready", "w"):
                pass
            time.sleep(2)
        elif how == "count":  # note each SIGINT/SIGTERM received; after the first, a second of clean-up, then exit
            got = []

            def note(signum, frame):
                got.append(signum)
                with open(pidfile + ".signals", "a") as f:
                    f.write(f"{signum}\\n")

            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, note)
            with open(pidfile + ".ready", "w"):
                pass
            deadline = time.monotonic() + 60
            while not got and time.monotonic() < deadline:
                time.sleep(0.02)
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                time.sleep(0.02)
            sys.exit(128 + got[0] if got else 0)
        elif how.startswith("atexit-"):  # the signal comes as the process exits (torch's exit-time clean-up)
            import atexit

            num = getattr(signal, "SIG" + how.split("-", 1)[1])

            def late():
                os.kill(os.getpid(), num)
                time.sleep(0.5)  # its handler runs here, inside the atexit callback

            atexit.register(late)
        elif how.startswith("scratch-"):  # a temporary folder of deploytool's is left to the exit, which a signal cuts
            import atexit
            from deploytool import scratch

            num = getattr(signal, "SIG" + how.split("-", 1)[1])
            path = scratch.mkdtemp("deploytool-probe-")
            open(os.path.join(path, "f"), "w").close()
            atexit.register(scratch.remove, path)  # a removal at exit (a finalizer's): the signal comes before it

            def late():
                os.kill(os.getpid(), num)
                time.sleep(0.5)

            atexit.register(late)
        elif how == "thread":  # the exit waits for a thread that works in a temporary folder of deploytool's
            import threading
            from deploytool import scratch

            def work():
                with scratch.temporary_directory("deploytool-probe-") as path:
                    open(os.path.join(path, "f"), "w").close()
                    with open(pidfile + ".ready", "w"):
                        pass
                    time.sleep(30)

            threading.Thread(target=work).start()
            while not os.path.exists(pidfile + ".ready"):
                time.sleep(0.01)
        elif how == "killed":  # killed outright (the OOM killer) while it writes an output, a folder and in /tmp
            from deploytool import onnx_io, scratch

            out = os.path.join(os.path.dirname(pidfile), "out")
            scratch.mkdtemp("deploytool-probe-")
            onnx_io.make_staging_dir(os.path.join(out, "bundle"))
            with onnx_io.atomic_path(os.path.join(out, "m.onnx")) as tmp:
                with open(tmp, "wb") as f:
                    f.write(b"half a model")
                os.kill(os.getpid(), signal.SIGKILL)
        elif how.startswith("pack-"):  # the signal comes while pack builds its gate's reference in a temporary folder
            from deploytool.passes import pack_weights

            num = getattr(signal, "SIG" + how.split("-", 1)[1])

            def interrupted(*args, **kwargs):
                os.kill(os.getpid(), num)
                time.sleep(10)

            pack_weights.build_gate_reference = interrupted
            out = os.path.join(os.path.dirname(pidfile), "out.onnx")
            pack_weights.pack_file(os.environ["PROBE_MODEL"], out, pack_weights.PackConfig(weights="ternary"))
        click.echo("done")
""")

_ENTRY = ("import sys; import deploytool.cli as c; c.COMMANDS['probe'] = ('probe_cmd:cmd', 'probe'); "
          "sys.argv = ['deploytool'] + sys.argv[1:]; c.entry()")


def _cli(tmp_path, *args, env: dict | None = None, **kw):
    (tmp_path / "probe_cmd.py").write_text(_COMMANDS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    kw.setdefault("preexec_fn", default_signals)
    return subprocess.Popen([sys.executable, "-c", _ENTRY, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("how,sig", [("segv", "SIGSEGV"), ("abort", "SIGABRT")])
def test_a_native_crash_is_one_line_and_exit_2(tmp_path, how, sig):
    p = _cli(tmp_path, "probe", how)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: deploytool probe died of ") and f"({sig})" in lines[0]
    assert "Traceback" not in err


def test_exit_codes_and_output_pass_through(tmp_path):
    p = _cli(tmp_path, "probe", "ok")
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out.strip(), err) == (0, "done", "")
    p = _cli(tmp_path, "probe", "exit3")
    p.communicate(timeout=60)
    assert p.returncode == 3


def test_with_debug_the_command_runs_in_the_process_itself(tmp_path):
    """--debug: no fork, the crash is the process's own, and faulthandler says where it was."""
    p = _cli(tmp_path, "--debug", "probe", "segv")
    _, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in err and "probe_cmd.py" in err


def test_a_terminated_program_takes_its_command_with_it(tmp_path):
    """SIGTERM to the program (``timeout``, a job scheduler) reaches the command: no orphan keeps running."""
    pidfile = tmp_path / "child.pid"
    p = _cli(tmp_path, "probe", "sleep", "--pidfile", str(pidfile))
    deadline = time.monotonic() + 60
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert child != p.pid
    p.terminate()
    p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the command's process outlived the program")


def _wait_for(path, p, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline and p.poll() is None, "the command did not start"
        time.sleep(0.02)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("to", ["pid", "group"])
def test_a_signal_reaches_the_command_once_whoever_it_was_sent_to(tmp_path, sig, to):
    """kill -INT of the program's pid alone (a script, a supervisor) reaches the command as the terminal's ^C
    does (it was ignored: the program waited for ever); sent to the process group, which reaches the command
    itself, it is not passed on a second time (that would interrupt the command's clean-up)."""
    pidfile = tmp_path / "child.pid"
    p = _cli(tmp_path, "probe", "count", "--pidfile", str(pidfile), start_new_session=True)
    _wait_for(tmp_path / "child.pid.ready", p)
    num = getattr(signal, sig)
    start = time.monotonic()
    os.kill(p.pid, num) if to == "pid" else os.killpg(p.pid, num)
    try:
        p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"{sig} to the {to} did not stop the command")
    assert p.returncode == 128 + num
    assert time.monotonic() - start < 10
    assert (tmp_path / "child.pid.signals").read_text().split() == [str(int(num))]  # received once


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_while_the_command_exits_is_no_traceback(tmp_path, sig):
    """A signal that reaches the command's process once its work is done, while the interpreter runs its exit-time
    clean-up (atexit callbacks, weakref finalizers: torch's library registrations), printed a ``SystemExit: 143``
    (``KeyboardInterrupt``) traceback from inside that callback, 'Exception ignored in atexit callback'; now the
    process ends there at once, with the signal's exit code and nothing on stderr."""
    p = _cli(tmp_path, "probe", f"atexit-{sig[3:]}")
    out, err = p.communicate(timeout=60)
    num = getattr(signal, sig)
    assert (p.returncode, out.strip(), err) == (128 + num, "done", "")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_command_exits_leaves_no_temporary_folder(tmp_path, sig):
    """The exit that a signal ends at once (os._exit: what it had left to run never runs, a temporary folder's
    finalizer among them) removes deploytool's temporary folders first (deploytool.scratch): one stayed in /tmp."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = _cli(tmp_path, "probe", f"scratch-{sig[3:]}", env={"TMPDIR": str(tmp)})
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out.strip(), err) == (128 + getattr(signal, sig), "done", "")
    assert os.listdir(tmp) == []


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_while_the_exit_waits_for_a_thread_leaves_no_temporary_folder(tmp_path, sig):
    """^C while the exit waits for a thread that still works in a temporary folder of deploytool's: the process ends
    at once, and the folder is removed (the thread's own removal never runs)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    pidfile = tmp_path / "child.pid"
    p = _cli(tmp_path, "probe", "thread", "--pidfile", str(pidfile), env={"TMPDIR": str(tmp)},
             start_new_session=True)
    _wait_for(tmp_path / "child.pid.ready", p)
    time.sleep(1.0)  # the command is done: the interpreter exits and waits for the thread
    assert [f for f in os.listdir(tmp) if f.startswith("deploytool-probe-")]
    num = getattr(signal, sig)
    os.killpg(p.pid, num)
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"{sig} did not end the exit")
    assert (p.returncode, out.strip(), err) == (128 + num, "done", "")
    assert os.listdir(tmp) == []


def test_a_command_killed_outright_leaves_no_temporary_file_or_folder(tmp_path):
    """SIGKILL (the OOM killer) leaves the command no exit to clean up in: its hidden file beside an output, a staged
    output folder (bundle's: 60 MB) and its folders in /tmp stayed. The program removes them after it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = _cli(tmp_path, "probe", "killed", "--pidfile", str(tmp_path / "probe.pid"), env={"TMPDIR": str(tmp)})
    out, err = p.communicate(timeout=60)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "(SIGKILL)" in lines[0], (out, err)
    assert os.listdir(tmp) == [] and os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_while_pack_builds_its_reference_leaves_no_temporary_folder(tmp_path, tiny_onnx, sig):
    """A signal while pack built its gate's reference (in a folder of its own in /tmp) left that folder behind: it
    was made before the gate's clean-up was in force. Nothing is written either."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = _cli(tmp_path, "probe", f"pack-{sig[3:]}", "--pidfile", str(tmp_path / "probe.pid"),
             env={"TMPDIR": str(tmp), "PROBE_MODEL": str(tiny_onnx("bert"))})
    out, err = p.communicate(timeout=120)
    assert p.returncode in (130, 143) and p.returncode == 128 + getattr(signal, sig), (out, err)
    assert "done" not in out and "Traceback" not in err, err
    assert [f for f in os.listdir(tmp) if f.startswith(("deploytool", "tmp"))] == []
    assert sorted(os.listdir(tmp_path)) == ["probe.pid", "probe_cmd.py", "tmp"]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGHUP"])
def test_a_signal_ignored_from_the_start_stays_ignored(tmp_path, sig):
    """``nohup deploytool run ...`` (SIGHUP ignored) and ``deploytool run ... &`` in a script (SIGINT ignored): the
    command's process kept its own handler for them (SIGHUP ended a nohup'ed run as the terminal closed, 129)."""
    pidfile = tmp_path / "child.pid"
    num = getattr(signal, sig)

    def ignore():
        signal.signal(num, signal.SIG_IGN)
        os.setsid()

    p = _cli(tmp_path, "probe", "nap", "--pidfile", str(pidfile), preexec_fn=ignore)
    _wait_for(tmp_path / "child.pid.ready", p)
    os.killpg(p.pid, num)
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out.strip(), err) == (0, "done", "")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the program's processes in /proc")
@pytest.mark.parametrize("sig,to", [("SIGINT", "pid"), ("SIGINT", "group"), ("SIGTERM", "pid")])
def test_an_interrupted_bench_stops_in_seconds_and_writes_nothing(tmp_path, sig, to):
    """The report's case: `deploytool bench` with its benchmark worker running, interrupted by a signal to the
    program's pid only (it timed out) or to its process group (^C): exit 130 (SIGTERM: 143) in seconds, no
    output, no temporary file, no process left."""
    from deploytool.testing.bench_models import encoder_like

    model = encoder_like(tmp_path / "m.onnx")
    out = tmp_path / "x.json"
    entry = "import sys; from deploytool.cli import entry; sys.argv = ['deploytool'] + sys.argv[1:]; entry()"
    p = subprocess.Popen([sys.executable, "-c", entry, "bench", str(model), "--runs", "2000000", "-q", "-o", str(out),
                          "--force"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, preexec_fn=default_signals)
    deadline = time.monotonic() + 120
    while len(_session(p.pid)) < 3:  # the program, the command and the benchmark worker
        assert time.monotonic() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.1)
    time.sleep(1.0)  # the worker timing its runs
    num = getattr(signal, sig)
    start = time.monotonic()
    os.kill(p.pid, num) if to == "pid" else os.killpg(p.pid, num)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"{sig} to the {to} did not stop the bench")
    assert p.returncode == (130 if num == signal.SIGINT else 143), err
    assert time.monotonic() - start < 10
    if num == signal.SIGINT:
        assert err.strip().splitlines()[-1] == "error: interrupted"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.onnx"]
    deadline = time.monotonic() + 10
    while _session(p.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _session(p.pid)


def _session(sid: int) -> list[int]:
    """The live processes of session ``sid`` (a process started with start_new_session leads its own)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(d))
    return pids
