"""Recipes: typed YAML pipelines from a model to a device report (schema, cache, runner)."""

from deploytool.recipes.schema import Recipe, load_recipe, parse_recipe

__all__ = ["Recipe", "load_recipe", "parse_recipe", "run_recipe"]


def run_recipe(*args, **kwargs):
    from deploytool.recipes.runner import run_recipe as _run

    return _run(*args, **kwargs)
