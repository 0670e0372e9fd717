"""The one enum parser (deploytool/choices.py): a member by its value (or name), in any case; a subset; one
message naming the field, the choices, the value and the nearest choice. Expected messages are spelled out."""

from __future__ import annotations

import enum

import pytest

from deploytool.choices import enum_choices, match_enum, not_one_of, parse_enum
from deploytool.errors import ConfigError


class Color(enum.Enum):
    RED = "red"
    DARK_BLUE = "DarkBlue"
    GREEN = "green"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


def _message(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as e:
        parse_enum(*args, **kwargs)
    return str(e.value)


def test_a_value_in_any_case_or_a_member():
    assert parse_enum(Color, " RED ", "color") is Color.RED
    assert parse_enum(Color, "darkblue", "color") is Color.DARK_BLUE
    assert parse_enum(Color, Color.GREEN, "color") is Color.GREEN


def test_names_only_when_asked():
    assert match_enum(Color, "dark_blue") is None
    assert parse_enum(Color, "Dark_Blue", "color", by_name=True) is Color.DARK_BLUE
    assert parse_enum(Color, "DARKBLUE", "color", by_name=True) is Color.DARK_BLUE  # the value still works


def test_the_message_names_field_choices_value_and_the_nearest():
    assert _message(Color, "gren", "paint.color") == \
        "paint.color: expected one of red, DarkBlue, green, got 'gren' (did you mean 'green'?)"
    assert _message(Color, "darkblu", "color", by_name=True) == \
        "color: expected one of RED, DARK_BLUE, GREEN, got 'darkblu' (did you mean 'DARK_BLUE'?)"
    assert _message(Color, "purple", "color") == "color: expected one of red, DarkBlue, green, got 'purple'"
    assert _message(Color, 3, "color") == "color: expected one of red, DarkBlue, green, got 3"
    assert _message(Color, None, "color") == "color: expected one of red, DarkBlue, green, got None"


def test_a_subset_of_the_members():
    sub = [Color.GREEN, Color.RED]
    assert enum_choices(Color, allowed=sub) == ["green", "red"]
    assert parse_enum(Color, "RED", "c", allowed=sub) is Color.RED
    assert _message(Color, Color.DARK_BLUE, "c", allowed=sub) == "c: expected one of green, red, got 'DarkBlue'"
    assert _message(Color, "darkblue", "c", allowed=sub) == "c: expected one of green, red, got 'darkblue'"


def test_non_string_values():
    assert parse_enum(Level, 2, "level") is Level.HIGH
    assert parse_enum(Level, " 1", "level") is Level.LOW
    assert match_enum(Level, True) is None  # a bool is not the number 1
    assert _message(Level, 3, "level") == "level: expected one of 1, 2, got 3"


def test_the_hint_ignores_case_and_keeps_the_choice_s_spelling():
    assert not_one_of(["CPU", "XNNPACK"], "xnnpak") == "expected one of CPU, XNNPACK, got 'xnnpak' (did you mean 'XNNPACK'?)"
    assert not_one_of(["speed", "memory"], " SPED ") == "expected one of speed, memory, got ' SPED ' (did you mean 'speed'?)"


def test_the_configs_use_it():
    """Closed sets in configs across the package say the same thing the same way."""
    from deploytool.qnn.quantize import QnnQuantConfig
    from deploytool.quant.quantizers import ternarize
    from deploytool.runtime.spec import ExecutionMode, ExecutionProvider, GraphOptimization, SessionSpec
    from deploytool.train.config import QATConfig

    assert ExecutionProvider.parse("xnnpack") is ExecutionProvider.XNNPACK
    assert ExecutionProvider.parse("XnnpackExecutionProvider") is ExecutionProvider.XNNPACK
    assert GraphOptimization.parse(" Basic") is GraphOptimization.BASIC
    assert ExecutionMode.parse("PARALLEL") is ExecutionMode.PARALLEL
    cases = [
        (lambda: SessionSpec(graph_optimization="max"),
         "graph_optimization: expected one of disable, basic, extended, layout, all, got 'max'"),
        (lambda: SessionSpec(providers=["xnnpak"]), "execution provider: expected one of CPU, XNNPACK, ACL, "),
        (lambda: QnnQuantConfig(activation_dtype="int8"), "activation_dtype: expected one of uint8, uint16, got 'int8'"),
        (lambda: QnnQuantConfig(mask="drop"), "mask: expected one of bound, keep, got 'drop'"),
        (lambda: ternarize([[1.0]], "rows"), "granularity: expected one of layer, row, got 'rows' (did you mean 'row'?)"),
        (lambda: QATConfig(mode="tenary"), "mode: expected one of ternary, binary, got 'tenary' (did you mean 'ternary'?)"),
    ]
    for make, start in cases:
        with pytest.raises(ConfigError) as e:
            make()
        assert str(e.value).startswith(start), str(e.value)


def test_a_recipe_quantize_step_names_its_precisions():
    """bf16 is a compute precision, not one a pass stores weights at: refused with the four that are."""
    from deploytool.recipes.schema import PassKind, PassStep
    from deploytool.recipes.steps import pass_config

    assert type(pass_config(PassStep(kind=PassKind.QUANTIZE, params={"precision": "INT8"}), "r.yaml")).__name__ == \
        "Int8Config"
    with pytest.raises(ConfigError) as e:
        pass_config(PassStep(kind=PassKind.QUANTIZE, params={"precision": "bf16"}), "r.yaml: passes[0]")
    assert str(e.value) == ("r.yaml: passes[0]: precision: expected one of fp16, int8, ternary, binary, got 'bf16' "
                            "(did you mean 'fp16'?)")
