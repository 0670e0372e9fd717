"""``deploytool run RECIPE.yaml``: parse, load the recipe, run it, print where the report is."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from deploytool.cli._grammar import FiniteFloatRange, GrammarCommand, json_flag


def default_store() -> Path:
    """The shared step store: ``$DEPLOYTOOL_CACHE_DIR`` (read here, in the CLI layer only), else
    :func:`deploytool.settings.default_step_store` (``$XDG_CACHE_HOME/deploytool/steps``, else
    ``~/.cache/deploytool/steps``), read on each call."""
    explicit = os.environ.get("DEPLOYTOOL_CACHE_DIR")
    if explicit and not explicit.strip():  # as --cache-dir ' ' and the other variables: not a folder named ' '
        from deploytool.errors import ConfigError

        raise ConfigError(f"DEPLOYTOOL_CACHE_DIR={explicit!r}: blank path (unset it for the default store)")
    if explicit:
        if Path(explicit).exists() and not Path(explicit).is_dir():  # as --cache-dir: a folder, or none yet
            from deploytool.errors import ConfigError

            raise ConfigError(f"DEPLOYTOOL_CACHE_DIR={explicit}: not a folder")
        return Path(explicit)
    from deploytool.settings import default_step_store

    return default_step_store()


_GB = 1_000_000_000


@click.command("run", cls=GrammarCommand, renamed={"--out": "--output"})
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: runs/<recipe name>]. Steps already there are reused.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.option("--check", is_flag=True, help="Validate the recipe and every step's options, print the plan, run nothing.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Store of finished steps shared by every recipe and output folder "
                   "[default: $DEPLOYTOOL_CACHE_DIR, else $XDG_CACHE_HOME/deploytool/steps, else "
                   "~/.cache/deploytool/steps].")
@click.option("--no-shared-cache", is_flag=True, help="Keep steps under the output folder only (as before 0.2).")
@click.option("--cache-max-gb", type=FiniteFloatRange(min=0, min_open=True), default=20.0, show_default=True,
              metavar="GB",
              help="Size cap of the shared store in GB; least recently used steps of other runs go first.")
def run(recipe: Path, out_dir: Path | None, quiet: bool, check: bool, cache_dir: Path | None,
        no_shared_cache: bool, cache_max_gb: float) -> None:
    """Run RECIPE (a recipes/*.yaml file): export, passes, sweep, benchmarks, report."""
    if no_shared_cache and cache_dir is not None:  # one would be ignored: the store named, or the flag
        from deploytool.errors import ConfigError

        raise ConfigError(f"--cache-dir {cache_dir}: names the shared step store, which --no-shared-cache turns "
                          "off; the two exclude each other (nothing run)")
    if no_shared_cache and click.get_current_context().get_parameter_source("cache_max_gb") \
            is not click.core.ParameterSource.DEFAULT:  # the cap of a store the run does not use
        from deploytool.errors import ConfigError

        raise ConfigError(f"--cache-max-gb {cache_max_gb:g}: caps the shared step store, which --no-shared-cache "
                          "turns off; the two exclude each other (nothing run)")
    from deploytool.recipes import load_recipe
    from deploytool.recipes.console import print_headline, step_printer
    from deploytool.recipes.runner import check_recipe, check_run_paths, run_recipe

    rec = load_recipe(recipe)
    out = out_dir or Path("runs") / rec.name
    store = None if no_shared_cache else _store(cache_dir)
    if check:
        plan = check_recipe(rec)
        check_run_paths(rec, out, store)  # the folders the run would use, too: nothing made
        for line in plan:
            click.echo(line)
        click.echo(f"{recipe}: ok")
        return
    result = run_recipe(rec, out, progress=None if quiet else step_printer(sys.stderr), store=store,
                        max_store_bytes=int(cache_max_gb * _GB) if store is not None else None)
    print_headline(result)


@click.group("cache")
def cache() -> None:
    """The shared store of finished recipe steps: list or clear it."""


_dir = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                    help="The store [default: $DEPLOYTOOL_CACHE_DIR, else $XDG_CACHE_HOME/deploytool/steps, else "
                         "~/.cache/deploytool/steps].")


def _store(cache_dir: Path | None) -> Path:
    """The store ``run`` and ``cache ls|clear`` use, refused in one line where it cannot be a folder, naming where
    it was given (a store from the environment was said to be --cache-dir's)."""
    from deploytool.onnx_io import check_folder_path

    if cache_dir is not None:
        return check_folder_path(cache_dir, "step store, --cache-dir")
    return check_folder_path(default_store(), "step store, $DEPLOYTOOL_CACHE_DIR" if os.environ.get(
        "DEPLOYTOOL_CACHE_DIR") else "step store")


@cache.command("ls", cls=GrammarCommand)
@_dir
@json_flag("Print the store's entries as JSON to stdout.")
def cache_ls(cache_dir: Path | None, as_json: bool) -> None:
    """List finished steps, most recently used first, with their size and what made them; a damaged one (a file
    truncated, removed or replaced since the step finished: a run makes it again) is marked with what is wrong."""
    import json
    import time

    from deploytool.recipes.cache import not_a_store, store_entries

    store = _store(cache_dir)
    entries = store_entries(store)
    foreign = not_a_store(store)
    if foreign is not None:  # a mistyped --cache-dir listed as an empty store ('0 steps') looked like one
        click.echo(f"note: {foreign}; only entries the store made are listed", err=True)
    if as_json:
        click.echo(json.dumps({"store": str(store), "bytes": sum(e.bytes for e in entries),
                               # what made an entry (its .about.json) never overrides what the store measured
                               "entries": [{**e.about, "name": e.name, "kind": e.kind, "bytes": e.bytes,
                                            "last_used": e.last_used, "damaged": e.damage} for e in entries]},
                              indent=1))
        return
    total = sum(e.bytes for e in entries)
    bad = sum(e.damage is not None for e in entries)
    click.echo(f"{store}: {len(entries)} step{'' if len(entries) == 1 else 's'}, {total / 1e6:.1f} MB"
               + (f", {bad} damaged" if bad else ""))
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        made = " ".join(f"{e.about.get('recipe', '?')}: {e.about.get('step', '?')}".split())[:80] if e.about else ""
        click.echo(f"  {e.name:<40} {e.bytes / 1e6:>9.1f} MB  {when}  {made}"
                   + (f"  DAMAGED: {e.damage}" if e.damage is not None else ""))
    if bad:
        click.echo(f"note: {bad} damaged step{'' if bad == 1 else 's'} (made again when a run next needs "
                   f"{'it' if bad == 1 else 'them'}); 'deploytool cache clear --damaged' removes "
                   f"{'it' if bad == 1 else 'them'}", err=True)


@cache.command("clear", cls=GrammarCommand)
@_dir
@click.option("--older-than-days", type=FiniteFloatRange(min=0), default=None, metavar="DAYS",
              help="Only steps not used for this many days.")
@click.option("--kind", default=None, help="Only steps of this kind (e.g. train-finetune, export, slice).")
@click.option("--damaged", is_flag=True, help="Only damaged steps (those 'cache ls' marks DAMAGED).")
def cache_clear(cache_dir: Path | None, older_than_days: float | None, kind: str | None, damaged: bool) -> None:
    """Remove finished steps from the store (all of them unless filtered). Outputs already published
    into run folders are hard links and stay."""
    from deploytool.recipes.cache import check_store, clear_store, store_entries

    store = _store(cache_dir)
    check_store(store)  # a folder the store did not make is named as such before any --kind is judged
    kinds = sorted({e.kind for e in store_entries(store)}) if kind is not None and store.is_dir() else []
    if kind is not None and kind not in kinds:
        from deploytool.choices import did_you_mean
        from deploytool.errors import ConfigError
        from deploytool.recipes.runner import step_kinds

        known = step_kinds()
        if kind not in known:  # a kind no run makes (a typo): nothing is removed, nothing could ever match
            raise ConfigError(f"--kind {kind}: no step has this kind{did_you_mean(kind, sorted({*known, *kinds}))}; "
                              f"the store's kinds: {', '.join(kinds) or 'none'} (nothing removed)")
    removed = clear_store(store, older_than_s=None if older_than_days is None else older_than_days * 86400,
                          kind=kind, damaged=damaged)
    click.echo(f"{store}: removed {len(removed)} step{'' if len(removed) == 1 else 's'}")
    if kind is not None and kind not in kinds:  # a kind runs make, of which the store holds none: say so
        click.echo(f"note: --kind {kind}: no step of this kind in the store; its kinds: {', '.join(kinds) or 'none'}",
                   err=True)
