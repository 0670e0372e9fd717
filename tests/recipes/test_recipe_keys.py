"""A recipe key is its CLI option's name with '-' -> '_' (README: "CLI grammar"). Static int8's calibration was
``calib`` / ``calib_samples`` in recipes and ``--calib-data`` / ``--calib-size`` on the command line; the recipe
keys are ``calib_data`` / ``calib_size`` now, the old ones read with one deprecation line naming the file and the
new key, and both spellings of one option together refused. So are eval's ``max_examples`` (``eval --max-eval``:
now ``max_eval``) and bench's ``batch`` (``bench --batch-size``: now ``batch_size``)."""

from __future__ import annotations

import logging

import click
import pytest

from deploytool.errors import ConfigError
from deploytool.recipes.schema import Precision, parse_recipe
from deploytool.recipes.steps import pass_config, precision_config

BASE = {"schema_version": 1, "name": "t", "model": "minilm", "devices": ["x86-host"]}


def _sweep(int8: dict) -> dict:
    return {**BASE, "sweep": {"precision": ["fp32", "int8"], "options": {"int8": int8}}}


def _passes(quantize: dict) -> dict:
    return {**BASE, "passes": [{"quantize": quantize}]}


def _int8_of(rec):
    if rec.passes:
        return pass_config(rec.passes[0], "passes[0]")
    return precision_config(Precision.INT8, dict(rec.sweep.options[Precision.INT8]), "sweep.options.int8")


@pytest.mark.parametrize("doc", [_sweep, _passes])
def test_the_recipe_takes_the_cli_names(doc, caplog):
    with caplog.at_level(logging.WARNING):
        rec = parse_recipe(doc({"static": True, "calib_data": "rotten-tomatoes", "calib_size": 8}), "r.yaml")
    cfg = _int8_of(rec)
    assert (cfg.static, cfg.calib_data, cfg.calib_size) == (True, "rotten-tomatoes", 8)
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]


@pytest.mark.parametrize("doc, where", [(_sweep, "sweep.options.int8"), (_passes, "passes[0].quantize")])
def test_the_old_keys_still_work_with_one_deprecation_line_each(doc, where, caplog):
    with caplog.at_level(logging.WARNING):
        rec = parse_recipe(doc({"static": True, "calib": "rotten-tomatoes", "calib_samples": 8}), "old.yaml")
    cfg = _int8_of(rec)
    assert (cfg.calib_data, cfg.calib_size) == ("rotten-tomatoes", 8)
    lines = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert lines == [f"deprecated: old.yaml: {where}.calib is now calib_data; the old spelling goes in the next release",
                     f"deprecated: old.yaml: {where}.calib_samples is now calib_size; the old spelling goes in the next "
                     "release"]


@pytest.mark.parametrize("doc, where", [(_sweep, "sweep.options.int8"), (_passes, "passes[0].quantize")])
@pytest.mark.parametrize("old, new, value", [("calib", "calib_data", "rotten-tomatoes"),
                                             ("calib_samples", "calib_size", 8)])
def test_old_and_new_key_together_are_refused_in_one_line(doc, where, old, new, value):
    with pytest.raises(ConfigError) as e:
        parse_recipe(doc({"static": True, "calib_data": "rotten-tomatoes", old: value, new: value}), "both.yaml")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"both.yaml: {where}.{old}: ")
    assert f"'{old}'" in msg and f"'{new}'" in msg


def test_quantize_options_are_named_as_their_config_fields():
    """The recipe reads int8's options by their config field's name; each quantize option's field is its name."""
    from deploytool.cli.quant_cmd import quantize

    for p in quantize.params:
        if isinstance(p, click.Option):
            longs = [o for o in p.opts if o.startswith("--")]
            assert p.name == longs[0][2:].replace("-", "_"), (p.opts, p.name)


# eval.max_examples was `deploytool eval --max-eval`, bench.batch `deploytool bench --batch-size`
@pytest.mark.parametrize("section, old, new, value", [("eval", "max_examples", "max_eval", 100),
                                                      ("bench", "batch", "batch_size", 2)])
def test_eval_and_bench_keys_are_the_cli_names(section, old, new, value, caplog):
    extra = {"data": "rotten-tomatoes"} if section == "eval" else {}
    rec = parse_recipe({**BASE, section: {**extra, new: value}}, "r.yaml")
    assert getattr(getattr(rec, section), new) == value
    with caplog.at_level(logging.WARNING):
        rec = parse_recipe({**BASE, section: {**extra, old: value}}, "old.yaml")
    assert getattr(getattr(rec, section), new) == value
    assert [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()] == [
        f"deprecated: old.yaml: {section}.{old} is now {new}; the old spelling goes in the next release"]
    with pytest.raises(ConfigError, match=rf"^both.yaml: {section}.{old}: both '{old}' \(the old name\) and '{new}' "):
        parse_recipe({**BASE, section: {**extra, old: value, new: value}}, "both.yaml")


def test_a_bad_value_is_named_by_the_new_key():
    with pytest.raises(ConfigError, match=r"^r.yaml: eval.max_eval: "):
        parse_recipe({**BASE, "eval": {"data": "rotten-tomatoes", "max_examples": 0}}, "r.yaml")
    with pytest.raises(ConfigError, match=r"^r.yaml: bench.batch_size: "):
        parse_recipe({**BASE, "bench": {"batch_size": 0}}, "r.yaml")


# bench.seq_lens was `deploytool bench --seq-len` (a list: --seq-len 8,128), a ternary/binary step's
# quantize_embeddings `deploytool qat --embeddings/--no-embeddings`
def test_bench_seq_len_is_the_cli_name(caplog):
    from deploytool.cli.bench_cmd import bench

    assert "--seq-len" in [o for p in bench.params for o in p.opts]
    rec = parse_recipe({**BASE, "bench": {"seq_len": [8, 32]}}, "r.yaml")
    assert tuple(rec.bench.seq_len) == (8, 32)
    with caplog.at_level(logging.WARNING):
        rec = parse_recipe({**BASE, "bench": {"seq_lens": [8, 32]}}, "old.yaml")
    assert tuple(rec.bench.seq_len) == (8, 32)
    assert [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()] == [
        "deprecated: old.yaml: bench.seq_lens is now seq_len; the old spelling goes in the next release"]
    with pytest.raises(ConfigError, match=r"^both.yaml: bench.seq_lens: both 'seq_lens' \(the old name\) and "
                                          r"'seq_len' given for the same option: keep 'seq_len' only$"):
        parse_recipe({**BASE, "bench": {"seq_lens": [8], "seq_len": [8]}}, "both.yaml")
    with pytest.raises(ConfigError, match=r"^r.yaml: bench.seq_len\[0\]: "):
        parse_recipe({**BASE, "bench": {"seq_lens": [0]}}, "r.yaml")


def _qat(kind: str, params: dict) -> dict:
    return {**BASE, "train": [{"finetune": {"data": "rotten-tomatoes"}}, {kind: {"data": "rotten-tomatoes", **params}}]}


@pytest.mark.parametrize("kind", ["ternary", "binary"])
def test_qat_embeddings_is_the_cli_name(kind, caplog, tmp_path):
    from deploytool.cli.train_cmd import qat
    from deploytool.recipes.steps import train_config

    assert [p.name for p in qat.params if "--embeddings" in p.opts] == ["quantize_embeddings"]  # the CLI's flag
    for params, old in (({"embeddings": False}, False), ({"quantize_embeddings": False}, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rec = parse_recipe(_qat(kind, params), "r.yaml")
        cfg, _ = train_config(rec.train[1], tmp_path, tmp_path, f"train[1] {kind}")
        assert cfg.quantize_embeddings is False
        lines = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
        assert lines == ([f"deprecated: r.yaml: train[1].{kind}.quantize_embeddings is now embeddings; the old spelling "
                          "goes in the next release"] if old else [])
    with pytest.raises(ConfigError, match=rf"^both.yaml: train\[1\].{kind}.quantize_embeddings: both "
                                          r"'quantize_embeddings' \(the old name\) and 'embeddings' given"):
        parse_recipe(_qat(kind, {"embeddings": False, "quantize_embeddings": False}), "both.yaml")
    # a typo is offered the recipe's key, and the allowed list names it so
    rec = parse_recipe(_qat(kind, {"embedings": False}), "r.yaml")
    with pytest.raises(ConfigError) as e:
        train_config(rec.train[1], tmp_path, tmp_path, f"train[1] {kind}")
    assert "did you mean 'embeddings'" in str(e.value) and "quantize_embeddings" not in str(e.value), str(e.value)


def test_the_shipped_recipes_and_readme_use_no_old_key(caplog):
    """recipes/*.yaml load without a deprecation line, and the README shows no old key."""
    import re
    from pathlib import Path

    from deploytool.recipes import load_recipe
    from deploytool.recipes.schema import BENCH_RENAMED_KEYS, EVAL_RENAMED_KEYS, QAT_RENAMED_KEYS, RENAMED_KEYS

    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "recipes").glob("*.yaml"))
    assert files
    with caplog.at_level(logging.WARNING):
        for f in files:
            load_recipe(f)
    assert not [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    readme = (root / "README.md").read_text(encoding="utf-8")
    # a recipe's bench or qat keys as the README writes them (BenchConfig(seq_lens=...) is the Python API's field)
    for old in BENCH_RENAMED_KEYS:
        assert not re.search(rf"bench: *\{{[^}}]*\b{old}:|recipe's `{old}`", readme), old
    for old in QAT_RENAMED_KEYS:
        assert not re.search(rf"\b{old}:", readme), old  # as a YAML key (the deprecation list names it)
    for old in (*RENAMED_KEYS, *EVAL_RENAMED_KEYS):
        assert not re.search(rf"\b{old}: ", readme), old


def test_a_quantize_pass_names_precision_among_its_keys():
    """A typo of ``precision`` in a ``quantize`` pass was refused with a list of the int8 config's fields alone (no
    ``precision`` in it, no did-you-mean): the reader could not learn the key's spelling from the message."""
    rec = parse_recipe(_passes({"precison": "fp16"}), "r.yaml")
    with pytest.raises(ConfigError) as e:
        pass_config(rec.passes[0], "r.yaml: passes[0] quantize")
    msg = str(e.value)
    assert msg.startswith("r.yaml: passes[0] quantize: precison: unknown key (did you mean 'precision'?) (allowed: "
                          "precision, ")
    assert "per_channel" in msg  # the int8 pass's own keys are listed too


def test_a_prune_heads_pass_takes_the_heads_as_the_option_spells_them():
    """``prune-heads: {heads: "0:1,3;2:0"}``, the README's ``--heads`` value, was refused ("heads: expected a mapping
    {layer: [head ids]}"); it is the same pass as the mapping now, and a bad spec is named in the recipe's words."""
    def heads(value):
        rec = parse_recipe({**BASE, "passes": [{"prune-heads": {"heads": value}}]}, "r.yaml")
        return pass_config(rec.passes[0], "r.yaml: passes[0] prune-heads")

    assert heads("0:1,3;2:0") == heads({0: [1, 3], 2: [0]})
    assert dict(heads("0:1,3;2:0").heads) == {0: (1, 3), 2: (0,)}
    with pytest.raises(ConfigError, match=r"^r.yaml: passes\[0\] prune-heads: heads: '0:a' is not 'LAYER:HEAD,HEAD'"):
        heads("0:a")
