"""A recipe's training step on sentence pairs: ``text_pair_col`` is the step's key for the CLI's --text-pair-col,
checked against the file at ``--check`` as ``text_col`` is, and handed to the step's data config."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from deploytool.errors import ConfigError
from deploytool.recipes import load_recipe

WORKSPACE_ROWS = 40


def _pairs(root: Path) -> Path:
    path = root / "rte.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["premise", "hypothesis", "label"])
        w.writerows((f"w{i % 90 + 5} w{i % 7 + 5}", f"w{i % 11 + 5}", str(i % 2)) for i in range(40))
    return path


def _recipe(root: Path, step: dict) -> Path:
    doc = {"schema_version": 1, "name": "pairs", "model": {"path": "model"}, "task": "sequence-classification",
           "train": [{"finetune": {"data": "rte.csv", "max_train": 16, "max_length": 16, "epochs": 1, **step}}]}
    p = root / f"recipe-{abs(hash(json.dumps(doc, sort_keys=True)))}.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_a_missing_second_column_is_refused_at_check(workspace):
    from deploytool.recipes.runner import check_recipe

    _pairs(workspace)
    recipe = load_recipe(_recipe(workspace, {"text_col": "premise", "text_pair_col": "sentence2"}))
    with pytest.raises(ConfigError) as e:
        check_recipe(recipe)
    msg = str(e.value)
    assert re.search(r"train\[0\] finetune: data: .*rte\.csv: no column 'sentence2' \(--text-pair-col\); columns "
                     r"are: hypothesis, label, premise", msg), msg
    assert "\n" not in msg


def test_the_second_column_reaches_the_steps_data_config(workspace):
    from deploytool.recipes.runner import check_recipe
    from deploytool.recipes.steps import train_config

    _pairs(workspace)
    recipe = load_recipe(_recipe(workspace, {"text_col": "premise", "text_pair_col": "hypothesis"}))
    check_recipe(recipe)
    cfg, _ = train_config(recipe.train[0], workspace / "model", workspace / "tmp", "train[0] finetune")
    assert (cfg.data.text_col, cfg.data.text_pair_col) == ("premise", "hypothesis")
