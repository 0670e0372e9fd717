"""Option values parsed by deploytool rather than click, so a bad value is one ``error:`` line."""

from __future__ import annotations

from deploytool.errors import ConfigError


def number(text: str | None, option: str, kind: type = int):
    """``"3"`` -> 3 (``kind`` int or float); ``None`` stays None; anything else is a ConfigError."""
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not {'an integer' if kind is int else 'a number'}") from None


def numbers(text: str, option: str, kind: type = float) -> tuple:
    """``"1,0.75,0.5"`` -> (1.0, 0.75, 0.5)."""
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated numbers like 1,0.75,0.5, got {text!r}") from None
