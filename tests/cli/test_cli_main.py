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
