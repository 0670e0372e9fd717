"""Option values parsed by deploytool rather than click, so a bad value is one ``error:`` line."""

from __future__ import annotations

from deploytool.errors import ConfigError


def numbers(text: str, option: str, kind: type = float) -> tuple:
    """``"1,0.75,0.5"`` -> (1.0, 0.75, 0.5)."""
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated numbers like 1,0.75,0.5, got {text!r}") from None
