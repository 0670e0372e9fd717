"""Option values parsed by deploytool rather than click, so a bad value is one ``error:`` line."""

from __future__ import annotations

from deploytool.errors import ConfigError


def items(text: str, option: str) -> tuple[str, ...]:
    """``"fp32, int8"`` -> ("fp32", "int8"): a comma-separated list, each item stripped. An empty item
    (``1,,0.5``, a trailing comma, a blank value) is refused, naming the option and the item, as ``--seq-len``
    refuses one: dropping it in silence ran a different grid from the one typed."""
    parts = [p.strip() for p in str(text).split(",")]
    for i, p in enumerate(parts, 1):
        if not p:
            raise ConfigError(f"{option}: item {i} of {text!r} is empty (expected a comma-separated list "
                              f"with no empty items)")
    return tuple(parts)


def numbers(text: str, option: str, kind: type = float) -> tuple:
    """``"1,0.75,0.5"`` -> (1.0, 0.75, 0.5)."""
    out = []
    for x in items(text, option):
        try:
            out.append(kind(x))
        except ValueError:
            raise ConfigError(f"{option}: expected comma-separated numbers like 1,0.75,0.5, got {text!r}") from None
    return tuple(out)
