"""The one parser of a closed set (an enum) from user input, for every typed config.

Every config field that takes one of a few names goes through :func:`parse_enum` (the pydantic schemas
through :func:`match_enum` and :func:`not_one_of`), so each says the same thing the same way:
``field: expected one of a, b, got 'x' (did you mean 'a'?)``.
"""

from __future__ import annotations

import difflib
import enum
import math
import reprlib
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

from deploytool.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)

__all__ = ["did_you_mean", "enum_choices", "match_enum", "not_one_of", "parse_enum"]


def did_you_mean(value: str, allowed: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``allowed``, or ``""``."""
    near = difflib.get_close_matches(value, list(allowed), n=1)
    return f" (did you mean '{near[0]}'?)" if near else ""


def enum_choices(cls: type[E], *, by_name: bool = False, allowed: Iterable[E] | None = None) -> list[str]:
    """The spellings a message offers: the members' values, or their names with ``by_name``."""
    return [m.name if by_name else str(m.value) for m in (cls if allowed is None else allowed)]


def match_enum(cls: type[E], value: Any, *, by_name: bool = False, allowed: Iterable[E] | None = None) -> E | None:
    """The member of ``cls`` that ``value`` is or spells (its value, or with ``by_name`` also its name, in any
    case and with surrounding spaces), restricted to ``allowed`` when given; ``None`` when none is."""
    members = list(cls if allowed is None else allowed)
    if isinstance(value, cls):
        return value if value in members else None
    if isinstance(value, str):
        key = value.strip().lower()
        for m in members:
            if key == str(m.value).lower() or (by_name and key == m.name.lower()):
                return m
        return None
    for m in members:  # a non-string value (a number) only as itself
        if not isinstance(value, bool) and m.value == value:
            return m
    return None


def not_one_of(choices: Sequence[str], value: Any) -> str:
    """``expected one of a, b, got 'x' (did you mean 'a'?)``; the hint ignores case and spaces, and a member
    of an enum is shown by its value."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (dict, list, tuple, set, frozenset)):  # named by its kind: its repr may be huge
        return f"expected one of {', '.join(choices)}, got {'mapping' if isinstance(value, dict) else 'list'}"
    hint = ""
    if isinstance(value, str):
        value = value[:160]  # a hint for a long string is no hint, and matching it all would take long
        lowered = {c.lower(): c for c in choices}
        near = difflib.get_close_matches(value.strip().lower(), list(lowered), n=1)
        hint = f" (did you mean '{lowered[near[0]]}'?)" if near else ""
    return f"expected one of {', '.join(choices)}, got {show(value)}{hint}"


def parse_enum(cls: type[E], value: Any, field: str, *, by_name: bool = False,
               allowed: Iterable[E] | None = None) -> E:
    """``value`` as a member of ``cls`` (see :func:`match_enum`); otherwise ConfigError
    ``field: expected one of a, b, got 'x' (did you mean 'a'?)`` listing the values (the names with
    ``by_name``) of ``allowed`` or of every member."""
    allowed = None if allowed is None else list(allowed)
    m = match_enum(cls, value, by_name=by_name, allowed=allowed)
    if m is None:
        raise ConfigError(f"{field}: {not_one_of(enum_choices(cls, by_name=by_name, allowed=allowed), value)}")
    return m


def show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (``'abc...``), for messages that echo a bad value.

    Bounded in time and memory too: a container is summarised by :mod:`reprlib` (a few items, a few levels),
    never fully expanded (a YAML alias bomb's repr is hundreds of MB), and an int too long for ``repr`` is
    described by its size."""
    if isinstance(value, str):
        s = repr(value[: 2 * limit])  # the same first characters as the whole repr, and as long when cut
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 8 * limit:
        return f"<about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    else:
        r = reprlib.Repr()
        r.maxlevel, r.maxstring, r.maxother, r.maxlong = 3, limit, limit, limit
        r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 8
        try:
            s = r.repr(value)
        except Exception:  # noqa: BLE001 - a value whose repr fails is still named
            s = f"<{type(value).__name__}>"
    return s if len(s) <= limit else s[: limit - 3] + "..."


def as_path(value: Any, name: str, what: str = "a file path") -> Path:
    """``value`` as a Path (str or os.PathLike; bytes decoded as the file system does); ConfigError naming ``name``
    for anything else (None, a number, an empty string) instead of a TypeError from deep inside."""
    import os

    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not isinstance(value, (str, os.PathLike)) or not str(os.fspath(value)):
        raise ConfigError(f"{name}: expected {what}, got {show(value)}")
    return Path(value)


def first_repeat(items: Iterable[Any], key=lambda x: x) -> tuple[int, Any, Any] | None:
    """(index, item, the earlier item with the same ``key``) of the first item given twice, or None: a config list
    that names a file, a profile or a sweep value once each."""
    seen: dict[Any, Any] = {}
    for i, x in enumerate(items):
        k = key(x)
        if k in seen:
            return i, x, seen[k]
        seen[k] = x
    return None


def refuse_repeats(items: Iterable[Any], what: str, key=lambda x: x) -> None:
    """ConfigError ``what: x given twice (as y)`` for the first item given twice (see :func:`first_repeat`)."""
    rep = first_repeat(items, key)
    if rep is not None:
        _, x, earlier = rep
        raise ConfigError(f"{what}: {x} given twice" + (f" (as {earlier})" if str(earlier) != str(x) else ""))
