"""``-o -`` (stdout by the usual convention) on every command whose output option is ``-o/--output``: no command
writes its output to stdout, and 'importance M -o -' scored the model, then wrote a file named '-' (exit 0), as
slice, pack, eval and the others did with their file or folder. Each is refused before any work, in one line that
says where the output can go (commands walked from the CLI group itself, so a new one is covered)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from cli_commands import output_commands, placeholder
from deploytool.cli import main


CASES = output_commands()


def test_the_walk_finds_the_commands():
    names = {" ".join(path) for path, _ in CASES}
    assert {"slice", "pack", "importance", "eval", "train", "export", "qnn compile"} <= names, names


@pytest.mark.parametrize("path, cmd", CASES, ids=[" ".join(p) for p, _ in CASES])
def test_dash_output_is_refused_before_any_work(path, cmd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = list(path)
    for p in cmd.params:
        if p.required and p.name != "output":
            args += [placeholder(p)] if isinstance(p, click.Argument) else [p.opts[0], placeholder(p)]
    res = CliRunner().invoke(main, [*args, "-o", "-"])
    assert res.exit_code == 2, (res.exit_code, res.output, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    # eval alone writes its -o only when asked and prints its JSON with --json instead
    hint = "for JSON on stdout leave -o out and use --json" if path == ("eval",) else "give a path"
    assert lines == [f"error: -o -: {' '.join(path)} writes to a file or folder, not to stdout; {hint}"], res.stderr
    assert list(tmp_path.iterdir()) == []  # no file or folder named '-'
