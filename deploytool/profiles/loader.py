"""Find and load device profiles (``device_profiles/*.yaml``).

A profile is named either by its name (looked up in the search folders, first match wins) or by a
path to a ``.yaml`` file. The default search folder is the project's ``device_profiles/``; callers
add their own folders explicitly (no environment variables are read here).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from deploytool.errors import ConfigError, InputFileError, not_a_file
from deploytool.profiles.host import HostOptions, build_host_profile, is_host_template
from deploytool.profiles.schema import Profile, parse_profile
from deploytool.validation import read_text_file, safe_load_yaml, without_extensions, yaml_error_at

logger = logging.getLogger(__name__)

__all__ = ["BUILTIN_PROFILE_DIR", "list_profiles", "load_profile", "load_profile_file", "profile_names"]

def _builtin_dir() -> Path:
    """The profiles shipped with deploytool: the repository's ``device_profiles/`` (a source checkout or
    an editable install), else ``<prefix>/share/deploytool/device_profiles`` where a wheel installs them."""
    import sys

    repo = Path(__file__).resolve().parents[2] / "device_profiles"
    if repo.is_dir():
        return repo
    return Path(sys.prefix) / "share" / "deploytool" / "device_profiles"


#: the profiles shipped with deploytool
BUILTIN_PROFILE_DIR = _builtin_dir()

#: the largest device profile file read (the built-in ones are near 2 KB)
MAX_PROFILE_BYTES = 1_000_000


def _dirs(dirs: Sequence[str | os.PathLike] | None) -> list[Path]:
    """The search folders: the caller's (each must be a folder), then the built-in one."""
    out = [Path(d) for d in (dirs or ())]
    for d in out:
        if not d.is_dir():
            raise ConfigError(f"profiles dir {d}: {'not a folder' if d.exists() else 'no such folder'}")
    if BUILTIN_PROFILE_DIR not in out:
        out.append(BUILTIN_PROFILE_DIR)
    return out


def _files(dirs: Iterable[Path], twins: dict[str, list[Path]] | None = None) -> dict[str, Path]:
    """Each profile name's file, the first folder's that has one. ``twins`` (when given) gets the names that folder
    holds twice (``board.yaml`` and ``board.yml``): which one is meant cannot be told."""
    found: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        here: dict[str, Path] = {}
        for f in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            if f.stem in here:
                if twins is not None and f.stem not in found:
                    twins.setdefault(f.stem, [here[f.stem]]).append(f)
                continue
            here[f.stem] = f
        for name, f in here.items():
            found.setdefault(name, f)
    return found


def _twin_error(name: str, files: list[Path]) -> ConfigError:
    return ConfigError(f"{files[0].parent}: {len(files)} device profile files named '{name}' "
                       f"({' and '.join(f.name for f in files)}); which one is meant cannot be told: keep one")


def load_profile_file(path: str | os.PathLike, *, host: HostOptions | None = None) -> Profile:
    """Load and validate one profile file; the profile's ``name`` must equal the file's stem.

    A host template (``from_host: true``) is built from this machine (:mod:`deploytool.profiles.host`):
    ``host`` says where its measurement is cached and whether loading may measure it.
    """
    p = Path(path)
    if not p.is_file():
        raise not_a_file(p, "device profile file")  # missing, a folder, or a device (said so, never read)
    text = read_text_file(p, "device profile", MAX_PROFILE_BYTES, "the built-in ones are near 2 KB")
    try:
        data = safe_load_yaml(text)
    except yaml.YAMLError as e:
        line, problem = yaml_error_at(e, text)
        raise ConfigError(f"{p}: not valid YAML{'' if line is None else f' at line {line}'} ({problem})") from None
    data = without_extensions(data)  # x-... keys: a home for YAML anchors
    if is_host_template(data):
        return build_host_profile(data, str(p), host)
    return parse_profile(data, str(p), expect_name=p.stem)


def profile_names(dirs: Sequence[str | os.PathLike] | None = None) -> list[str]:
    """Names of all profiles in the search folders (without loading them)."""
    return sorted(_files(_dirs(dirs)))


def load_profile(name_or_path: str | os.PathLike | Profile,
                 dirs: Sequence[str | os.PathLike] | None = None, *, host: HostOptions | None = None) -> Profile:
    """A profile by name (``kirin990``, ``host``) or by path (``my/board.yaml``), validated.

    ``host``: options for profiles built from this machine (cache folder, may measure); default:
    ``$XDG_CACHE_HOME/deploytool/host`` (else ``~/.cache/deploytool/host``), measuring once when nothing is
    cached.
    """
    if isinstance(name_or_path, Profile):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(os.fspath(name_or_path)).strip():
        from deploytool.choices import kind_of

        # None or a number was looked up by its spelling: "unknown device profile 'None'"
        raise ConfigError(f"profile: expected a device profile's name (such as kirin990) or its .yaml file path, "
                          f"got {kind_of(name_or_path)}")
    from deploytool.choices import did_you_mean, match_name, name_key

    text = str(name_or_path)
    search = _dirs(dirs)  # checked also when a path names the profile
    yaml_name = text.lower().endswith((".yaml", ".yml"))  # 'board.YAML' is a file too, not a name to look up
    if yaml_name or os.sep in text:
        if not os.path.lexists(text):  # 'kirin990.yaml' typed for the profile kirin990: say it is a name
            known = sorted(_files(search))
            stem = Path(text).stem if yaml_name else Path(text).name
            if match_name(stem, known):
                raise InputFileError(f"{text}: no such device profile file; '{match_name(stem, known)}' is a known "
                                  f"profile name: give it without the path and .yaml")
            near = did_you_mean(name_key(stem), known)  # " (did you mean 'kirin990'?)" or ""
            if near:
                raise InputFileError(f"{text}: no such device profile file{near.replace('mean ', 'mean the profile ')}")
        return load_profile_file(text, host=host)
    twins: dict[str, list[Path]] = {}
    files = _files(search, twins)
    # a name is a choice: matched in any case and with spaces around (choices.match_name), as every closed-set
    # option is ('--profile Kirin990' was unknown); one spelled exactly as a file's stem is that file
    name = text if text in files else match_name(text, sorted(files)) or text
    if name in twins:  # the .yml read while the .yaml beside it was the one edited, or the other way round
        raise _twin_error(name, twins[name])
    if name not in files:
        # a close match only (difflib's 0.6, as every other did-you-mean): at 0.5 'nonexist' was offered 'host'
        raise ConfigError(f"unknown device profile '{text}'{did_you_mean(name_key(text), sorted(files))}; known: "
                          f"{', '.join(sorted(files)) or 'none'}")
    return load_profile_file(files[name], host=host)


def list_profiles(dirs: Sequence[str | os.PathLike] | None = None, *, host: HostOptions | None = None,
                  problems: list[tuple[Path, str]] | None = None) -> list[Profile]:
    """All profiles in the search folders, validated.

    An invalid file raises, unless ``problems`` is given: then each invalid file is appended to it as
    ``(path, reason)`` and the valid profiles are still returned (a listing shows what it can).
    Host profiles use a cached measurement if there is one and do not measure (``host`` default
    ``HostOptions(measure=False)``): listing stays instant.
    """
    host = host if host is not None else HostOptions(measure=False)
    out = []
    twins: dict[str, list[Path]] = {}
    for name, p in sorted(_files(_dirs(dirs), twins).items()):
        try:
            if name in twins:
                raise _twin_error(name, twins[name])
            out.append(load_profile_file(p, host=host))
        # invalid, or no file to read (a folder, a FIFO, a link to nothing): each named beside the valid ones
        except (ConfigError, InputFileError) as e:
            if problems is None:
                raise
            problems.append((p, str(e)))
    return out
