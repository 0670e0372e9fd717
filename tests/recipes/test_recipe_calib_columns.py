"""A recipe's static int8 names its calibration columns (``calib_text_col``, ``calib_text_pair_col``: the CLI's
``--calib-text-col``/``--calib-text-pair-col``) and ``--check`` reads the file with them (it read the calibration
file with the default 'text' column, and Int8Config had no such keys)."""

from __future__ import annotations

import csv

import pytest
import yaml

from deploytool.errors import ConfigError


def _pair_file(path, n=24):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "claim", "evidence"])
        w.writerows([(i, f"claim number {i} is short", f"evidence {i} says so") for i in range(n)])
    return path


def test_a_recipe_names_the_columns_and_check_reads_them(workspace, tmp_path, monkeypatch):
    from deploytool.recipes import load_recipe
    from deploytool.recipes.runner import check_recipe
    from deploytool.variant import Precision

    _pair_file(workspace / "claims.csv")

    def recipe(name, **opts):
        doc = {"schema_version": 1, "name": name, "model": {"path": "model"}, "task": "sequence-classification",
               "train": [], "eval": {"data": "toy.csv", "split": "test", "max_length": 16},
               "sweep": {"precision": ["int8"], "options": {"int8": {
                   "static": True, "calib_data": "claims.csv", "calib_size": 8, **opts}}}}
        p = workspace / f"{name}.yaml"
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        return p

    monkeypatch.chdir(tmp_path)
    good = load_recipe(recipe("good", calib_text_col="claim", calib_text_pair_col="evidence"))
    assert good.sweep.options[Precision.INT8]["calib_text_col"] == "claim"
    check_recipe(good)
    with pytest.raises(ConfigError, match="sweep.options.int8: calib_data: .*'text'"):
        check_recipe(load_recipe(recipe("default")))
    with pytest.raises(ConfigError, match="sweep.options.int8: calib_data: .*evidense"):
        check_recipe(load_recipe(recipe("typo", calib_text_col="claim", calib_text_pair_col="evidense")))

