"""The command group itself: a command whose module cannot load fails in one line."""

from __future__ import annotations

from click.testing import CliRunner

from deploytool import cli


def test_unloadable_command_is_one_line_exit_2(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "ghost", ("deploytool.no_such_module:cmd", "A command that cannot load."))
    r = CliRunner().invoke(cli.main, ["ghost", "x"])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: command 'ghost' is not available")
    assert "ModuleNotFoundError" in lines[0]


_PROBE = """
import atexit, gc, os, sys, tempfile, weakref
from deploytool.cli import entry
seen = {}
# registered first, so it runs last of the atexit handlers: after every exit step but the interpreter's own
atexit.register(lambda: print(f"frozen={gc.get_freeze_count() > 0} tmp_left={os.path.exists(seen['tmp'])}"))
holder = tempfile.TemporaryDirectory()  # removed at exit by its weakref.finalize, frozen or not
seen["tmp"] = holder.name
sys.argv = ["deploytool", *sys.argv[1:]]
entry()
"""


def _probe(*argv: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=120)


def test_the_program_exits_with_the_collector_frozen_and_its_exit_steps_run(tmp_path):
    """``entry`` (the console script) freezes the collector as the command ends, on success and on a one-line
    error alike; the exit code stays the command's and atexit handlers and finalizers still run."""
    ok = _probe("profiles")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == "frozen=True tmp_left=False"
    bad = _probe("slice", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "out.onnx"), "--width", "0.5")
    assert bad.returncode == 2
    assert [ln for ln in bad.stderr.splitlines() if ln.strip()][0].startswith("error: ")
    assert len([ln for ln in bad.stderr.splitlines() if ln.strip()]) == 1
    assert bad.stdout.strip().splitlines()[-1] == "frozen=True tmp_left=False"
    assert not (tmp_path / "out.onnx").exists()


def test_main_itself_leaves_the_collector_alone():
    """Tests and scripts call ``main`` in a process that goes on: it never freezes the collector."""
    import gc

    from click.testing import CliRunner

    before = gc.get_freeze_count()
    r = CliRunner().invoke(cli.main, ["profiles"])
    assert r.exit_code == 0 and gc.get_freeze_count() == before



def test_the_librarys_warnings_read_as_the_commands_own_lines():
    """A warning logged by deploytool's library reaches a command's user as 'warning: ...' (as bench and report
    print theirs), not as logging's 'WARNING deploytool.data: ...'; another library's keeps its level and name,
    and deploytool's info lines (-v) their full form. The real program: test_pack_qat_record's subprocess."""
    import logging

    from deploytool.cli import _PlainWarnings

    fmt = _PlainWarnings("%(levelname)s %(name)s: %(message)s")

    def rec(name, level, msg):
        return logging.LogRecord(name, level, __file__, 1, msg, (), None)

    assert fmt.format(rec("deploytool.data", logging.WARNING, "3 rows have no label")) == "warning: 3 rows have no label"
    assert fmt.format(rec("deploytool", logging.ERROR, "x")) == "error: x"
    assert fmt.format(rec("onnxruntime", logging.WARNING, "y")) == "WARNING onnxruntime: y"
    assert fmt.format(rec("deploytool.data", logging.INFO, "z")) == "INFO deploytool.data: z"
    assert fmt.format(rec("deploytoolish", logging.WARNING, "w")) == "WARNING deploytoolish: w"


def test_debug_typed_after_the_command_is_the_programs_flag(tmp_path):
    """A failure says "rerun with --debug"; typed where a reader puts it, after the command's own options, it was
    "error: No such option '--debug'". It now shows the traceback there too (before a `--` only)."""
    import subprocess
    import sys

    missing = str(tmp_path / "nope.onnx")

    def run(*argv):
        return subprocess.run([sys.executable, "-m", "deploytool", *argv], capture_output=True, text=True,
                              timeout=120)

    r = run("inspect", missing, "--debug")
    assert "No such option" not in r.stderr
    assert "Traceback" in r.stderr and "InputFileError: " in r.stderr  # as `deploytool --debug inspect ...` shows
    plain = run("inspect", missing)
    assert plain.returncode == 2 and plain.stderr.strip().splitlines() == [f"error: {missing}: no such file"]
    dashes = run("inspect", "--", "--debug")  # after `--`, a file named --debug
    assert dashes.returncode == 2 and dashes.stderr.strip() == "error: --debug: no such file"
