"""Option values parsed by deploytool rather than click, so a bad value is one ``error:`` line."""

from __future__ import annotations

from deploytool.choices import items
from deploytool.errors import ConfigError, refuse_link_to_nothing

__all__ = ["items", "numbers", "refuse_link_to_nothing", "refuse_stdout_dash"]


def numbers(text: str, option: str, kind: type = float) -> tuple:
    """``"1,0.75,0.5"`` -> (1.0, 0.75, 0.5)."""
    out = []
    for x in items(text, option):
        try:
            out.append(kind(x))
        except ValueError:
            raise ConfigError(f"{option}: expected comma-separated numbers like 1,0.75,0.5, got {text!r}") from None
    return tuple(out)


def refuse_stdout_dash(path, command: str, writes: str = "its JSON to a file",
                       instead: str = "for the JSON on stdout use --json") -> None:
    """``-o -`` (stdout by the usual convention) where ``command`` writes ``writes`` (its JSON to a file; report: its
    files into a folder): it measured, then wrote a file (or folder) named '-'; refused before any work, saying what
    to give ``instead``."""
    if path is not None and str(path) == "-":
        from deploytool.errors import OutputPathError

        raise OutputPathError(f"-o -: {command} writes {writes}; {instead}")
