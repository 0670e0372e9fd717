"""The one validation mechanism (deploytool/validation.py) on a schema written here, and on pass configs.
Expected messages are spelled out in full: the format is ``file.yaml: key.path: problem``."""

from __future__ import annotations

import dataclasses
from typing import Optional

import pytest

from deploytool.errors import ConfigError
from deploytool.validation import Choice, Flag, Fraction, Integer, Number, Text, schema, validate


@schema
class Inner:
    runs: Integer(1, 100) = 5
    fast: Flag = False


@schema
class Outer:
    name: Text
    widths: tuple[Fraction, ...] = (1.0,)
    mode: Choice("speed", "memory") = "speed"
    inner: Inner = Inner()
    per_seq: dict[str, Number("ms")] = dataclasses.field(default_factory=dict)
    items: tuple[Inner, ...] = ()
    note: Optional[str] = None


@pytest.mark.parametrize("doc, message", [
    ({"name": "x", "widhts": [0.5]}, "f.yaml: widhts: unknown key (did you mean 'widths'?)"),
    ({"name": "x", "inner": {"rnus": 3}}, "f.yaml: inner.rnus: unknown key (did you mean 'runs'?)"),
    ({"name": "x", "items": [{}, {"fats": True}]}, "f.yaml: items[1].fats: unknown key (did you mean 'fast'?)"),
    ({"name": "x", "zzz": 1}, "f.yaml: zzz: unknown key (allowed: name, widths, mode, inner, per_seq, items, note)"),
    ({}, "f.yaml: name: required key is missing"),
    ({"name": "x", "widths": [0.5, 1.5]}, "f.yaml: widths[1]: expected a number in (0, 1], got 1.5"),
    ({"name": "x", "widths": ["half"]}, "f.yaml: widths[0]: expected a number in (0, 1], got str 'half'"),
    ({"name": "x", "inner": {"runs": 0}}, "f.yaml: inner.runs: expected an integer in [1, 100], got 0"),
    ({"name": "x", "inner": {"runs": True}}, "f.yaml: inner.runs: expected an integer in [1, 100], got bool True"),
    ({"name": "x", "inner": {"fast": "yes"}}, "f.yaml: inner.fast: expected true or false, got str 'yes'"),
    ({"name": "x", "mode": "sped"}, "f.yaml: mode: expected one of speed, memory, got 'sped' (did you mean 'speed'?)"),
    ({"name": "x", "per_seq": {"128": -1}}, "f.yaml: per_seq.128: expected a positive number (ms), got -1"),
    ({"name": "x", "inner": [1]}, "f.yaml: inner: expected a mapping, got list"),
    ({"name": ""}, "f.yaml: name: expected a non-empty string, got str ''"),
])
def test_messages_name_file_key_and_expectation(doc, message):
    with pytest.raises(ConfigError) as e:
        validate(Outer, doc, "f.yaml")
    assert str(e.value) == message


def test_good_document_and_python_construction():
    o = validate(Outer, {"name": "x", "widths": [0.5, 1], "inner": {"runs": 7}, "items": [{"fast": True}]}, "f.yaml")
    assert o.widths == (0.5, 1.0) and o.inner.runs == 7 and o.items[0].fast is True
    assert dataclasses.replace(o, mode="memory").mode == "memory"
    with pytest.raises(ConfigError, match=r"^mode: expected one of speed, memory, got 'fast'$"):
        dataclasses.replace(o, mode="fast")  # construction validates too, one line, no pydantic error
    with pytest.raises(ConfigError, match=r"^runs: expected an integer in \[1, 100\], got 500$"):
        Inner(runs=500)


def test_a_choice_is_taken_in_any_case_as_its_own_spelling():
    """A recipe's ``exporter: Dynamo``, a profile's ``precision: FP16``, SliceConfig's ``rounding='HALF-UP'``: one of a
    closed set in any case, as the enum-valued keys (``runtime: MEMORY``) and the CLI's options take it. Was refused
    ('expected one of speed, memory, got 'MEMORY' (did you mean 'memory'?)')."""
    from deploytool.passes.slice_subnetwork import SliceConfig

    assert validate(Outer, {"name": "x", "mode": "MEMORY"}, "f.yaml").mode == "memory"
    assert validate(Outer, {"name": "x", "mode": " Speed "}, "f.yaml").mode == "speed"
    assert SliceConfig(width=0.5, rounding="HALF-UP").rounding == "half-up"
    with pytest.raises(ConfigError, match=r"^f.yaml: mode: expected one of speed, memory, got 'MEMORYY' "
                                          r"\(did you mean 'memory'\?\)$"):
        validate(Outer, {"name": "x", "mode": "MEMORYY"}, "f.yaml")


def test_pass_configs_name_unknown_options():
    from deploytool.passes.quantize_int8 import Int8Config
    from deploytool.passes.slice_subnetwork import SliceConfig

    with pytest.raises(ConfigError, match=r"^widht: unknown key \(did you mean 'width'\?\)$"):
        SliceConfig(widht=0.5)
    with pytest.raises(ConfigError, match=r"^fusion: expected one of mha, attention, onnx, none, got 'atention' "
                                          r"\(did you mean 'attention'\?\)$"):
        Int8Config(fusion="atention")
    with pytest.raises(ConfigError, match="calib_data: static int8 needs calibration data"):
        Int8Config(static=True)  # a rule across fields, from the config's own __post_init__
    assert Int8Config(fusion="MHA").fusion.value == "mha"


# ------------------------------------------------------------------ finite numbers, bounded messages
@pytest.mark.parametrize("value, message", [
    (float("inf"), "f.yaml: per_seq.128: expected a number (ms), got float inf"),
    (float("-inf"), "f.yaml: per_seq.128: expected a number (ms), got float -inf"),
    (float("nan"), "f.yaml: per_seq.128: expected a number (ms), got float nan"),
])
def test_numbers_are_finite(value, message):
    """``.inf`` in a document is no measure of anything, and would reach JSON output as ``Infinity``."""
    with pytest.raises(ConfigError) as e:
        validate(Outer, {"name": "x", "per_seq": {"128": value}}, "f.yaml")
    assert str(e.value) == message


BOMB = ("[&a [lol, lol, lol, lol, lol, lol, lol, lol, lol], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a], "
        "&c [*b, *b, *b, *b, *b, *b, *b, *b, *b], &d [*c, *c, *c, *c, *c, *c, *c, *c, *c], "
        "&e [*d, *d, *d, *d, *d, *d, *d, *d, *d], &f [*e, *e, *e, *e, *e, *e, *e, *e, *e], "
        "&g [*f, *f, *f, *f, *f, *f, *f, *f, *f], &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]]")  # 9**8 values


@pytest.mark.parametrize("doc, start", [
    ({"name": "x", "mode": "s" * 100_000}, "f.yaml: mode: expected one of speed, memory, got 'sssss"),
    ({"name": "x", "mode": [["deep"] * 1000] * 1000}, "f.yaml: mode: expected one of speed, memory, got list"),
    ({"name": "x", "widths": [10 ** 5000]}, "f.yaml: widths[0]: expected a number in (0, 1], got int <about 5001 digits>"),
    ({"name": "x", "per_seq": {"k" * 100_000: -1}}, "f.yaml: per_seq.kkkk"),
    ({"name": "x", "k" * 100_000: 1}, "f.yaml: kkkk"),
])
def test_messages_never_echo_an_unbounded_value(doc, start):
    with pytest.raises(ConfigError) as e:
        validate(Outer, doc, "f.yaml")
    msg = str(e.value)
    assert msg.startswith(start) and len(msg) < 300 and "\n" not in msg, msg[:300]


def test_show_is_a_bounded_repr():
    from deploytool.validation import show

    assert show("abc") == "'abc'" and show(1.5) == "1.5" and show(-5) == "-5"
    assert show("x" * 1000) == "'" + "x" * 76 + "..." and len(show(list(range(10 ** 6)))) <= 80
    nested: list = ["lol"] * 9
    for _ in range(8):
        nested = [nested] * 9  # 9**9 values if expanded; reprlib never does
    assert len(show(nested)) <= 80


# ------------------------------------------------------------------------------------ YAML loading
def test_yaml_alias_bomb_is_refused_before_it_is_built():
    import time

    import yaml

    from deploytool.validation import MAX_YAML_NODES, safe_load_yaml

    t0 = time.perf_counter()
    with pytest.raises(yaml.YAMLError) as e:
        safe_load_yaml("x:\n  y: " + BOMB + "\n")
    assert time.perf_counter() - t0 < 2
    assert f"more than {MAX_YAML_NODES:,} values with its aliases (*name) expanded" in e.value.problem
    assert e.value.problem_mark.line == 1  # where the bomb is
    # a long list written out is as large as it looks, and anchors used as anchors are, keep working
    assert len(safe_load_yaml("[" + ", ".join(["1"] * 50_000) + "]")) == 50_000
    doc = safe_load_yaml("base: &b {x: 1, y: [1, 2]}\nother: {<<: *b, y: 3}\nlist: [*b, *b]\n")
    assert doc == {"base": {"x": 1, "y": [1, 2]}, "other": {"x": 1, "y": 3}, "list": [doc["base"]] * 2}


@pytest.mark.parametrize("text, problem", [
    ("a: &a [1, *a]\n", "an alias refers to a node that contains it (a recursive document)"),
    ("x: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply to read"),
    ("x: " + "1" * 5000 + "\n", "a value Python cannot read (Exceeds the limit (4300 digits)"),
])
def test_yaml_python_cannot_hold_is_a_yaml_error(text, problem):
    """Not an internal error (RecursionError, ValueError): the loaders turn a YAMLError into one line naming the file."""
    import yaml

    from deploytool.validation import safe_load_yaml

    with pytest.raises(yaml.YAMLError) as e:
        safe_load_yaml(text)
    assert e.value.problem.startswith(problem)


def test_a_number_in_exponent_notation_is_a_number():
    """YAML 1.1 (PyYAML) reads 5e-1, 1e5 and 1.0e5 as text: a recipe's ``width: [5e-1]`` was refused as "got str
    '5e-1'" (a step option of type float was converted, a sweep's width, a bench or profile number was not)."""
    from deploytool.recipes.schema import parse_recipe
    from deploytool.validation import safe_load_yaml

    doc = safe_load_yaml("a: 5e-1\nb: 1e5\nc: 1.0e5\nd: -2E+3\ne: .5e1\nf: '1e-4'\ng: 1e5x\nh: 1.0e-4\ni: 12\n")
    assert doc == {"a": 0.5, "b": 1e5, "c": 1e5, "d": -2000.0, "e": 5.0, "f": "1e-4", "g": "1e5x", "h": 1e-4, "i": 12}
    assert type(doc["i"]) is int
    recipe = parse_recipe(safe_load_yaml("schema_version: 1\nname: e\nmodel: minilm\nsweep: {width: [1, 5e-1]}\n"
                                         "devices: [x86-host]\n"))
    assert recipe.sweep.width == (1, 0.5)
