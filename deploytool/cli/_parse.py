"""Option values parsed by deploytool rather than click, so a bad value is one ``error:`` line."""

from __future__ import annotations

from deploytool.choices import items
from deploytool.errors import ConfigError

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


def refuse_link_to_nothing(path, *, dangling_ok: bool = False) -> None:
    """An output ``path`` that is a symbolic link leading to no file or folder, or under one that loops: refused before
    any work (OutputPathError), as the same link given as an input is named (errors.no_such).

    A link that loops (``ln -s loop1 loop1``) was replaced by the output file after all the work; a dangling link
    (``ln -s nowhere out.onnx``) likewise, its target never written. Neither is written through: ``cp`` refuses
    both ('not writing through dangling symlink', 'Too many levels of symbolic links'), and where the user meant
    the output to go is not ours to guess (a target on a volume not mounted, a link left from an old run). A link
    to an existing file or folder is the output's business as before. ``dangling_ok``: a command whose output is
    a folder made where the link points (bundle, qnn compile) takes a link to one not made yet; a loop is still
    refused."""
    import errno
    import os
    from pathlib import Path

    from deploytool.errors import LINK_LOOP, OutputPathError, looping_link

    if path is None:
        return
    loop = looping_link(path)
    if loop is not None:
        raise OutputPathError(f"{path}: {LINK_LOOP}" if loop == Path(path) else f"{path}: {loop} is {LINK_LOOP}")
    if dangling_ok or not os.path.islink(path):
        return
    try:
        os.stat(path)
    except OSError as e:
        if e.errno != errno.ENOENT:  # what else stops it is the output's own check's to say
            return
        raise OutputPathError(f"{path}: is a link to {os.readlink(path)}, which leads to nothing; remove the link or "
                              "give another path") from None
