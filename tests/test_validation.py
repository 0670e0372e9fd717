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


def test_pass_configs_name_unknown_options():
    from deploytool.passes.quantize_int8 import Int8Config
    from deploytool.passes.slice_subnetwork import SliceConfig

    with pytest.raises(ConfigError, match=r"^widht: unknown key \(did you mean 'width'\?\)$"):
        SliceConfig(widht=0.5)
    with pytest.raises(ConfigError, match=r"^fusion: expected one of mha, attention, onnx, none, got 'atention' "
                                          r"\(did you mean 'attention'\?\)$"):
        Int8Config(fusion="atention")
    with pytest.raises(ConfigError, match="calib: static int8 needs calibration data"):
        Int8Config(static=True)  # a rule across fields, from the config's own __post_init__
    assert Int8Config(fusion="MHA").fusion.value == "mha"
