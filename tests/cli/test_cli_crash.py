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
        click.echo("done")
""")

_ENTRY = ("import sys; import deploytool.cli as c; c.COMMANDS['probe'] = ('probe_cmd:cmd', 'probe'); "
          "sys.argv = ['deploytool'] + sys.argv[1:]; c.entry()")


def _cli(tmp_path, *args, **kw):
    (tmp_path / "probe_cmd.py").write_text(_COMMANDS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
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
