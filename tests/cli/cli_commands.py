"""The deploytool commands, walked from the CLI group itself (a command added later is found without a list here),
for the tests that check a rule on every command (tests/cli/test_cli_grammar.py, test_cli_choices.py,
test_cli_stdout_dash.py, test_cli_link_loops.py).

A module, not a fixture of a conftest.py: the tests parametrize over the commands when they are collected, before
any fixture exists (and ``import conftest`` finds whichever of tests/**/conftest.py was imported last).
"""

from __future__ import annotations

import click

from deploytool.cli import main


def cli_commands(*, groups: bool = False) -> list[tuple[tuple[str, ...], click.Command]]:
    """``(path, command)`` for every command of ``deploytool``, ``path`` as typed after it (``("qnn", "check")``);
    with ``groups=True`` each group too (``("qnn",)``), before its commands. Each command is got in a context whose
    parent is its group's, as when it runs."""

    def walk(group: click.Group, ctx: click.Context, prefix: tuple[str, ...]):
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            assert cmd is not None, prefix + (name,)  # listed but not importable: a broken lazy entry
            if isinstance(cmd, click.Group):
                if groups:
                    yield prefix + (name,), cmd
                yield from walk(cmd, click.Context(cmd, parent=ctx, info_name=name), prefix + (name,))
            else:
                yield prefix + (name,), cmd

    return list(walk(main, click.Context(main, info_name="deploytool"), ()))


def output_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    """The commands whose output is ``-o/--output``."""
    return [(path, cmd) for path, cmd in cli_commands() if any(p.name == "output" for p in cmd.params)]


def placeholder(p: click.Parameter) -> str:
    """A value click accepts for a required parameter (nothing is read: the tests' refusals come first)."""
    choices = getattr(p.type, "choices", None)
    if choices:
        return str(list(choices)[0])
    if isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType)):
        return "1"
    return "x"
