"""``deploytool run RECIPE.yaml``: parse, load the recipe, run it, print where the report is."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: runs/<recipe name>). Steps already there are reused.")
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option("--check", is_flag=True, help="Validate the recipe and every step's options, print the plan, run nothing.")
def run(recipe: Path, out_dir: Path | None, quiet: bool, check: bool) -> None:
    """Run RECIPE (a recipes/*.yaml file): export, passes, sweep, benchmarks, report."""
    from deploytool.recipes import load_recipe
    from deploytool.recipes.console import print_headline, step_printer
    from deploytool.recipes.runner import check_recipe, run_recipe

    rec = load_recipe(recipe)
    if check:
        for line in check_recipe(rec):
            click.echo(line)
        click.echo(f"{recipe}: ok")
        return
    out = out_dir or Path("runs") / rec.name
    result = run_recipe(rec, out, progress=None if quiet else step_printer(sys.stderr))
    print_headline(result)
