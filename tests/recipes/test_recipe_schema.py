"""Recipe schema validation and the step cache (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploytool.errors import ConfigError, InputFileError
from deploytool.recipes.cache import StepCache, step_key
from deploytool.recipes.schema import PassKind, Precision, load_recipe, parse_recipe

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "schema_version": 1,
    "name": "t",
    "model": "minilm",
    "passes": [{"reorder": {"importance": "magnitude"}}],
    "sweep": {"width": [1.0, 0.5], "depth": [1.0, 0.75], "precision": ["fp32", "int8"]},
    "devices": ["x86-host"],
    "bench": {"seq_len": [8], "runs": 3},
}


def _bad(**changes):
    d = dict(GOOD)
    d.update(changes)
    return d


def test_good_recipe_parses_and_expands_grid():
    r = parse_recipe(GOOD, "r.yaml")
    assert r.passes[0].kind is PassKind.REORDER
    grid = r.sweep.grid()
    assert len(grid) == 2 * 2 * 2
    assert (0.5, 0.75, Precision.INT8) in grid


@pytest.mark.parametrize(
    "doc, needle",
    [
        (_bad(schema_version=2), "schema_version: expected 1"),
        (_bad(passes=[{"slise": {"width": 0.5}}]), "did you mean 'slice'"),
        (_bad(sweep={"width": [1.5]}), "sweep.width[0]: expected a number in (0, 1], got 1.5"),
        (_bad(sweep={"width": ["half"]}), "sweep.width[0]"),
        (_bad(sweep={"precision": ["int4"]}), "sweep.precision[0]: expected one of"),
        (_bad(bench={"runs": "many"}), "bench.runs: expected an integer"),
        (_bad(bench={"seq_lenz": [8]}), "bench.seq_lenz: unknown key (did you mean 'seq_len'?)"),
        (_bad(devicez=["x"]), "devicez: unknown key (did you mean 'devices'?)"),
        (_bad(model={"name": "minilm", "path": "x"}), "model: give exactly one"),
        ({k: v for k, v in GOOD.items() if k != "model"}, "model: required key is missing"),
        (_bad(eval={"data": "rotten-tomatoes", "split": "validation"}), "eval.split"),
        # options of a precision the sweep does not build were read by nothing and never checked (a typo passed)
        (_bad(sweep={"precision": ["fp32", "int8"], "options": {"ternary": {"runtime": "densestt"}}}),
         "sweep.options.ternary: options for ternary, which sweep.precision (fp32, int8) does not build"),
    ],
)
def test_bad_recipes_name_file_key_and_expectation(doc, needle):
    with pytest.raises(ConfigError) as e:
        parse_recipe(doc, "bad.yaml")
    msg = str(e.value)
    assert msg.startswith("bad.yaml: ")
    assert needle in msg
    assert "\n" not in msg


def test_load_recipe_errors(tmp_path):
    with pytest.raises(InputFileError):
        load_recipe(tmp_path / "missing.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_recipe(p)
    # a key given twice is a typo to report, not the last one silently winning (yaml.safe_load's way)
    twice = tmp_path / "twice.yaml"
    twice.write_text(yaml.safe_dump(GOOD, sort_keys=False) + "name: other\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: not valid YAML at line \d+: key 'name' appears twice"):
        load_recipe(twice)
    # a merge key's values may be overridden: that is not a duplicate
    merged = tmp_path / "merged.yaml"
    merged.write_text(yaml.safe_dump({k: v for k, v in GOOD.items() if k != "bench"}, sort_keys=False)
                      + "defaults: &b {seq_len: [8], runs: 9}\nbench:\n  <<: *b\n  runs: 3\n")
    assert "defaults" not in GOOD
    with pytest.raises(ConfigError, match="defaults"):  # an unknown top-level key, read past the merge
        load_recipe(merged)


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    from deploytool.recipes.runner import check_recipe

    r = load_recipe(path)
    assert r.name
    assert yaml.safe_load(path.read_text())["schema_version"] == 1
    plan = check_recipe(r)  # every training/pass/precision config builds with the recipe's options
    assert plan[0].startswith("model ") and any(line.startswith("sweep: ") for line in plan)


@pytest.mark.parametrize("changes, needle", [
    ({"train": [{"finetune": {"epochz": 1}}]}, "train[0] finetune: epochz: unknown key (did you mean 'epochs'?)"),
    ({"train": [{"dynabert": {"widths": [0.5, 1.5]}}]}, "train[0] dynabert: widths"),
    ({"passes": [{"slice": {"width": 1.5}}]}, "passes[0] slice: width"),
    ({"passes": [{"quantize": {"precision": "int4"}}]}, "passes[0] quantize: precision"),
    ({"sweep": {"precision": ["ternary"], "options": {"ternary": {"runtime": "warp"}}}}, "sweep.options.ternary"),
    ({"devices": ["kirin99"]}, "kirin99"),
    ({"passes": [{"pack": {"weights": "ternary"}}, {"repack": {"runtime": "fastest"}}]}, "passes[1] repack: runtime"),
    # what the steps read: checked by --check too, not when the run gets there
    ({"model": "minilmm"}, "model: unknown model 'minilmm': not a known name"),
    ({"model": {"path": "/nonexistent/model"}}, "model: model folder /nonexistent/model does not exist"),
    ({"passes": [{"reorder": {"importance": "/tmp/no-such-importance.json"}}]},
     "passes[0] reorder: importance: /tmp/no-such-importance.json does not exist"),
    ({"eval": {"data": "/tmp/no-such-reviews.csv"}}, "eval: data: /tmp/no-such-reviews.csv does not exist"),
])
def test_check_names_the_step_with_a_bad_option(changes, needle):
    from deploytool.recipes.runner import check_recipe

    with pytest.raises(ConfigError) as e:
        check_recipe(parse_recipe(_bad(**changes), "r.yaml"))
    assert needle in str(e.value)


def test_step_key_changes_with_config_and_inputs():
    a = step_key("slice", {"width": 0.5}, ["k0"])
    assert a == step_key("slice", {"width": 0.5}, ["k0"])
    assert a != step_key("slice", {"width": 0.75}, ["k0"])
    assert a != step_key("slice", {"width": 0.5}, ["k1"])
    assert a != step_key("prune", {"width": 0.5}, ["k0"])


def test_step_key_changes_with_deploytool_code(monkeypatch):
    """A store shared across versions must not hand back what older code made: the key covers the source."""
    from deploytool.recipes import cache

    a = step_key("slice", {"width": 0.5}, ["k0"])
    real = cache.code_fingerprint()
    assert len(real) == 64 and real == cache.code_fingerprint()  # stable within a process
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "0" * 64)
    assert step_key("slice", {"width": 0.5}, ["k0"]) != a


def test_cache_commits_only_successful_steps(tmp_path):
    c = StepCache(tmp_path)
    with pytest.raises(RuntimeError):
        with c.building("x", "abc") as tmp:
            (tmp / "half.onnx").write_text("partial")
            raise RuntimeError("boom")
    assert not c.done("x", "abc")
    assert not any((tmp_path / "steps").iterdir())
    with c.building("x", "abc") as tmp:
        (tmp / "m.onnx").write_text("ok")
    assert c.done("x", "abc")
    assert (c.dir_for("x", "abc") / "m.onnx").read_text() == "ok"


def test_empty_step_lists_mean_no_steps_but_empty_grids_are_refused():
    r = parse_recipe(dict(GOOD, passes=[], train=None), "r.yaml")
    assert r.passes == () and r.train == ()
    with pytest.raises(ConfigError, match=r"^r.yaml: sweep.width: expected a non-empty list, got list$"):
        parse_recipe(dict(GOOD, sweep={"width": []}), "r.yaml")


def test_a_recipe_can_repack_what_it_packed():
    """``repack`` is a recipe pass like the others: its typed config comes from the one pass table."""
    from deploytool.passes.repack import RepackConfig
    from deploytool.recipes.runner import check_recipe
    from deploytool.recipes.steps import pass_config

    sweep = {"width": [1.0], "depth": [1.0], "precision": ["ternary"]}  # a packed model is not sliced again
    r = parse_recipe(_bad(passes=[{"pack": {"weights": "ternary"}}, {"repack": {"runtime": "memory"}}], sweep=sweep),
                     "r.yaml")
    check_recipe(r)
    assert r.passes[1].kind is PassKind.REPACK
    cfg = pass_config(r.passes[1], "r.yaml: passes[1]")
    assert isinstance(cfg, RepackConfig) and cfg.runtime.value == "memory"


@pytest.mark.parametrize("passes, sweep, needle", [
    ([{"quantize": {"precision": "int8"}}], None,
     "sweep: passes[0] quantize leaves an int8 model, which cannot be sliced or converted again "
     "(width/depth 0.5, 0.75 asked)"),
    ([{"pack": {"weights": "split-binary"}}], {"precision": ["fp32", "int8"]},
     "sweep: passes[0] pack leaves a binary model, which cannot be sliced or converted again (precision int8 "
     "asked)"),
    ([{"quantize": {"precision": "int8"}}, {"repack": {"runtime": "memory"}}], {"precision": ["int8"]},
     "passes[1] repack: passes[0] quantize before it leaves an int8 model, which no pass takes"),
    ([{"pack": {}}, {"reorder": {"importance": "magnitude"}}], {"precision": ["ternary"]},
     "passes[1] reorder: passes[0] pack before it leaves a ternary model, which only repack takes"),
])
def test_check_refuses_a_sweep_or_pass_over_a_quantized_model(passes, sweep, needle):
    from deploytool.recipes.runner import check_recipe

    with pytest.raises(ConfigError) as e:
        check_recipe(parse_recipe(_bad(passes=passes, **({"sweep": sweep} if sweep else {})), "r.yaml"))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_the_plan_counts_an_fp16_base_and_fp16_in_the_sweep_as_one_precision():
    from deploytool.recipes.runner import check_recipe

    r = parse_recipe(_bad(passes=[{"quantize": {"precision": "fp16"}}],
                          sweep={"width": [1.0, 0.5], "precision": ["fp32", "fp16", "int8"]}), "r.yaml")
    assert "sweep: 4 variants (2 widths x 1 depths x 2 precisions)" in check_recipe(r)


def test_a_recipe_alias_bomb_is_refused_naming_the_file(tmp_path):
    """Recipes and profiles share the one YAML loader (deploytool.validation.safe_load_yaml)."""
    bomb = "[&a [x, x, x, x, x, x, x, x, x, x]" + "".join(
        f", &{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in zip("abcdefgh", "bcdefghi")) + "]"  # 10**9 values
    p = tmp_path / "bomb.yaml"
    p.write_text(yaml.safe_dump(GOOD, sort_keys=False).replace("name: t\n", f"name: {bomb}\n"))
    with pytest.raises(ConfigError, match=r"^.*bomb.yaml: not valid YAML at line 2: the document holds more than "
                                          r"100,000 values with its aliases \(\*name\) expanded"):
        load_recipe(p)


def test_x_keys_hold_anchors_and_are_read_by_nothing_else(tmp_path):
    """A top-level ``x-...`` key is a home for YAML anchors (as in Compose files): the recipe reads what the
    aliases point at, and nothing of the x- key itself; any other unknown top-level key is still refused."""
    p = tmp_path / "anchors.yaml"
    p.write_text("schema_version: 1\nname: t\nmodel: minilm\n"
                 "x-lengths: &lengths [8, 32]\n"
                 "x-bench: &bench {runs: 3, warmup: 1}\n"
                 "sweep: {width: [1.0, 0.5]}\n"
                 "devices: [x86-host]\n"
                 "bench: {<<: *bench, seq_len: *lengths}\n")
    text = p.read_text()
    r = load_recipe(p)
    assert tuple(r.bench.seq_len) == (8, 32) and r.bench.runs == 3 and r.bench.warmup == 1
    assert p.read_text() == text
    assert parse_recipe(dict(GOOD, **{"x-notes": {"anything": [1, "two"]}}), "r.yaml") == parse_recipe(GOOD, "r.yaml")
    with pytest.raises(ConfigError, match=r"r.yaml: y-bench: unknown key"):
        parse_recipe(dict(GOOD, **{"y-bench": {}}), "r.yaml")
    with pytest.raises(ConfigError, match=r"bench.x-runs: unknown key"):  # only the top level: a typo below is one
        parse_recipe(dict(GOOD, bench={"seq_len": [8], "x-runs": 3}), "r.yaml")


def test_a_numpy_array_is_the_list_of_numbers_it_holds():
    """A recipe built in Python (parse_recipe of a dict) with ``seq_len: np.array([8, 128])`` was refused
    ("bench.seq_len: expected a non-empty list, got ndarray ...") as the configs were; a 1-D array of numbers is
    that list, a 2-D one or floats where integers go are one line naming the key."""
    import numpy as np

    r = parse_recipe(_bad(sweep={"width": np.array([1.0, 0.5], dtype=np.float32), "depth": np.array([1, 0.75])},
                          bench={"seq_len": np.array([8, 128], dtype=np.int32)}), "r.yaml")
    assert (r.sweep.width, r.sweep.depth, r.bench.seq_len) == ((1.0, 0.5), (1.0, 0.75), (8, 128))
    assert [type(x) for x in (*r.sweep.width, *r.bench.seq_len)] == [float, float, int, int]
    for changes, line in [
        ({"bench": {"seq_len": np.array([8.0, 128.0])}},
         "r.yaml: bench.seq_len: expected a list of integers, got an array of float64 [8.0, 128.0]"),
        ({"sweep": {"width": np.array([[1.0, 0.5]])}},
         "r.yaml: sweep.width: expected a list of numbers (a 1-D array), got a 2-D array of shape (1, 2)"),
    ]:
        with pytest.raises(ConfigError) as e:
            parse_recipe(_bad(**changes), "r.yaml")
        assert str(e.value) == line


def test_a_model_path_written_as_the_model_is_relative_to_the_recipe(tmp_path, monkeypatch):
    """``model: ../hf-folder`` was read as an embedded name, found from the working directory, while ``model: {path:
    ../hf-folder}``, the recipe's data files and its device profile files are found from the recipe's folder: the
    same recipe run from elsewhere said "model folder ../hf-folder does not exist". A value that is a path (a '/'
    in it, or a leading '.') is the path form; a bare name stays a name."""
    (tmp_path / "recipes").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    base = tmp_path / "recipes"
    for written in ("../hf-folder", "./sub/hf-folder"):
        rec = parse_recipe({**GOOD, "model": written}, "r.yaml", base_dir=base)
        assert rec.model.name is None and Path(rec.model.path) == base / written
        assert rec.model == parse_recipe({**GOOD, "model": {"path": written}}, "r.yaml", base_dir=base).model
    assert parse_recipe(GOOD, "r.yaml", base_dir=base).model.name == "minilm"
