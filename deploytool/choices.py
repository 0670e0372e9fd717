"""The one parser of a closed set (an enum) from user input, for every typed config."""

from __future__ import annotations

import difflib
import enum
from typing import Any, Sequence, TypeVar

from deploytool.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)

__all__ = ["did_you_mean", "parse_enum"]


def did_you_mean(value: str, allowed: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``allowed``, or ``""``."""
    near = difflib.get_close_matches(value, list(allowed), n=1)
    return f" (did you mean '{near[0]}'?)" if near else ""


def parse_enum(cls: type[E], value: Any, field: str) -> E:
    """``value`` as a member of ``cls`` (a member, or its value in any case with surrounding spaces);
    otherwise ConfigError ``field: expected one of a, b, got 'x' (did you mean 'a'?)``."""
    if isinstance(value, cls):
        return value
    allowed = [str(m.value) for m in cls]
    text = str(value).strip().lower() if isinstance(value, str) else value
    for m in cls:
        if m.value == text:
            return m
    hint = did_you_mean(str(text), allowed) if isinstance(value, str) else ""
    raise ConfigError(f"{field}: expected one of {', '.join(allowed)}, got {value!r}{hint}")
