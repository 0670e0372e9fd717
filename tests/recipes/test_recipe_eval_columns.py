"""A recipe's ``eval:`` names a user file's columns with the eval command's option names: ``text_col``,
``text_pair_col``, ``label_col`` (``deploytool eval --text-col/--text-pair-col/--label-col``). They were unknown keys,
so a CSV whose columns were not ``text``/``label`` (nor a GLUE pair) could not be evaluated by a recipe. Checked once
at load (the key path named), the file's columns at ``--check`` (the CLI's own line), and handed to the eval step's
data config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click
import pytest
import yaml

from deploytool.errors import ConfigError
from deploytool.recipes import load_recipe
from deploytool.recipes.schema import parse_recipe

WORKSPACE_ROWS = 60
BASE = {"schema_version": 1, "name": "t", "model": "minilm", "devices": ["x86-host"]}


def _renamed_csv(root: Path) -> Path:
    """The workspace's toy.csv (text, label) as reviews.csv with the columns 'review' and 'sentiment'."""
    with open(root / "toy.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    path = root / "reviews.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        w.writerows((r["text"], r["label"]) for r in rows)
    return path


def _recipe(root: Path, **eval_keys) -> Path:
    doc = {"schema_version": 1, "name": "cols", "model": {"path": "model"}, "task": "sequence-classification",
           "eval": {"data": "reviews.csv", "split": "test", "max_length": 16, **eval_keys}}
    p = root / f"recipe-{abs(hash(json.dumps(doc, sort_keys=True)))}.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_the_eval_keys_are_the_eval_commands_column_options():
    """Each of the eval command's column options is an eval key of the same name ('-' -> '_')."""
    from deploytool.cli.train_cmd import eval_

    options = {o[2:].replace("-", "_") for p in eval_.params if isinstance(p, click.Option) for o in p.opts
               if o.startswith("--") and o.endswith("-col")}
    assert options == {"text_col", "text_pair_col", "label_col"}
    rec = parse_recipe({**BASE, "eval": {"data": "pairs.csv", "text_col": "premise", "text_pair_col": "hypothesis",
                                         "label_col": "gold"}}, "r.yaml")
    assert (rec.eval.text_col, rec.eval.text_pair_col, rec.eval.label_col) == ("premise", "hypothesis", "gold")
    rec = parse_recipe({**BASE, "eval": {"data": "rotten-tomatoes"}}, "r.yaml")  # the CLI's defaults
    assert (rec.eval.text_col, rec.eval.text_pair_col, rec.eval.label_col) == ("text", None, "label")


@pytest.mark.parametrize("eval_keys, task, needle", [
    ({"data": "x.csv", "text_col": "a", "label_col": "a"}, "sequence-classification",
     "r.yaml: eval.label_col: text_col and label_col both name the column 'a'; the labels are another column"),
    ({"data": "x.csv", "text_col": "a", "text_pair_col": "a"}, "sequence-classification",
     "r.yaml: eval.text_pair_col: 'a' is also the text column"),
    ({"data": "x.csv", "text_pair_col": "label"}, "sequence-classification",
     "r.yaml: eval.text_pair_col: 'label' is also the label column"),
    ({"data": "rotten-tomatoes", "text_pair_col": "b"}, "sequence-classification",
     "r.yaml: eval.text_pair_col: the built-in dataset 'rotten-tomatoes' has one text an example"),
    ({"data": "x.csv", "text_pair_col": "b"}, "feature-extraction",
     "r.yaml: eval.text_pair_col: an embedding model's corpus is one text an example"),
    # the words of every column option (validation.ColumnName; it was Text's 'expected a non-empty string')
    ({"data": "x.csv", "text_col": ""}, "sequence-classification",
     "r.yaml: eval.text_col: expected a column name, got str ''"),
    ({"data": "x.csv", "text_pair_col": " "}, "sequence-classification",
     "r.yaml: eval.text_pair_col: expected a column name, got str ' '"),
    ({"data": "x.csv", "label_col": 3}, "sequence-classification",
     "r.yaml: eval.label_col: expected a column name, got int 3"),
])
def test_bad_columns_are_refused_at_load_naming_the_key(eval_keys, task, needle):
    with pytest.raises(ConfigError) as e:
        parse_recipe({**BASE, "task": task, "eval": eval_keys}, "r.yaml")
    assert str(e.value).startswith(needle), str(e.value)
    assert "\n" not in str(e.value)


def test_a_missing_column_is_the_clis_line_at_check(workspace):
    from deploytool.recipes.runner import check_recipe

    _renamed_csv(workspace)
    check_recipe(load_recipe(_recipe(workspace, text_col="review", label_col="sentiment")))
    with pytest.raises(ConfigError) as e:
        check_recipe(load_recipe(_recipe(workspace, text_col="review", label_col="stars")))
    msg = str(e.value)
    assert "eval: data: " in msg and "reviews.csv: no column 'stars' (--label-col); columns are: review, " \
        "sentiment" in msg, msg
    assert "\n" not in msg
    with pytest.raises(ConfigError, match=r"reviews\.csv: no column 'text' \(--text-col\)"):  # the defaults
        check_recipe(load_recipe(_recipe(workspace)))


def test_run_check_exits_2_with_one_line(workspace):
    from click.testing import CliRunner

    from deploytool.cli import main

    _renamed_csv(workspace)
    r = CliRunner().invoke(main, ["run", str(_recipe(workspace, text_col="review", label_col="stars")), "--check"])
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "no column 'stars' (--label-col)" in lines[0], r.output
    assert "Traceback" not in r.output


def test_the_eval_step_reads_the_named_columns(workspace, tmp_path):
    """The step evaluates the file's 'review' texts against its 'sentiment' labels, as `deploytool eval
    --text-col review --label-col sentiment` does: the same examples, the same accuracy."""
    from click.testing import CliRunner

    from deploytool.cli import main
    from deploytool.recipes.steps import eval_step

    data = _renamed_csv(workspace)
    rec = load_recipe(_recipe(workspace, text_col="review", label_col="sentiment"))
    out = eval_step(workspace / "model", workspace / "model", rec.eval, tmp_path)
    got = json.loads((tmp_path / out["metrics"]).read_text())
    cli = tmp_path / "cli.json"
    r = CliRunner().invoke(main, ["eval", str(workspace / "model"), "--data", str(data), "--text-col", "review",
                                  "--label-col", "sentiment", "--split", "test", "--max-length", "16", "-o", str(cli)])
    assert r.exit_code == 0, r.output
    want = json.loads(cli.read_text())
    assert got["n"] == want["n"] > 0
    assert got["accuracy"] == want["accuracy"]
    assert got["predictions"] == want["predictions"]
