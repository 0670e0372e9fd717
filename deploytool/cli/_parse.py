"""Option values parsed by deploytool rather than click, so a bad value is one ``error:`` line."""

from __future__ import annotations

from deploytool.choices import items
from deploytool.errors import ConfigError

__all__ = ["items", "numbers"]


def numbers(text: str, option: str, kind: type = float) -> tuple:
    """``"1,0.75,0.5"`` -> (1.0, 0.75, 0.5)."""
    out = []
    for x in items(text, option):
        try:
            out.append(kind(x))
        except ValueError:
            raise ConfigError(f"{option}: expected comma-separated numbers like 1,0.75,0.5, got {text!r}") from None
    return tuple(out)
