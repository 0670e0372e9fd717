"""Device commands: ``profiles``, ``verify-arm64``, ``report``, ``fit``.

Each command parses options, builds one typed config, calls one library function and prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

_dir_option = click.option("--profiles-dir", "profiles_dirs", multiple=True, type=click.Path(path_type=Path),
                           help="Extra folder of device profile YAML files (searched before the built-in ones).")


# ----------------------------------------------------------------------------- profiles
@click.group("profiles", invoke_without_command=True)
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def profiles(ctx: click.Context, profiles_dirs: tuple[Path, ...], as_json: bool) -> None:
    """List the device profiles (``profiles show NAME`` prints one)."""
    ctx.ensure_object(dict)
    ctx.obj["profiles_dirs"] = profiles_dirs
    if ctx.invoked_subcommand is not None:
        return
    from deploytool.profiles import list_profiles
    from deploytool.profiles.render import profiles_table

    profs = list_profiles(profiles_dirs)
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in profs], indent=2))
    else:
        click.echo(profiles_table(profs))


@profiles.command("show")
@click.argument("name")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.pass_context
def profiles_show(ctx: click.Context, name: str, profiles_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Print one device profile (NAME or a path to a .yaml file), validated."""
    from deploytool.profiles import load_profile
    from deploytool.profiles.render import profile_text

    dirs = tuple(profiles_dirs) + tuple((ctx.obj or {}).get("profiles_dirs", ()))
    prof = load_profile(name, dirs)
    click.echo(json.dumps(prof.to_dict(), indent=2) if as_json else profile_text(prof))
