"""Graph passes on ONNX encoders: one transform per module, one contract (see base.py).

``transform(src, dst, config)`` is the one verb: it dispatches on the config's type (as torchao's
``quantize_(model, config)`` does) through :func:`pass_table`, the one table from a config type to the
pass (or pipeline of passes) it configures, so every pass is reached the same way from Python, the
CLI, recipes and ``fit`` (through :mod:`deploytool.passes.variants`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import types
from typing import Any, Callable, Mapping


@dataclasses.dataclass(frozen=True)
class PassEntry:
    """One row of the table: the name recipes give the pass, its typed config, and how a config becomes
    the pass the file runner applies (a pass class or a function building a pipeline)."""

    kind: str
    config: type
    build: Callable[[Any], Any]


# the one table, by name: (kind, module, config class, pass class or pipeline builder). Kept as names so that a
# pass process imports only the module of the pass it runs (the eight modules together: ~30 ms of imports)
_ENTRIES: tuple[tuple[str, str, str, str], ...] = (
    ("reorder", "deploytool.passes.reorder", "ReorderConfig", "ReorderPass"),
    ("slice", "deploytool.passes.slice_subnetwork", "SliceConfig", "SlicePass"),
    ("prune-heads", "deploytool.passes.prune_heads", "HeadPruneConfig", "PruneHeadsPass"),
    ("prune-ffn", "deploytool.passes.prune_ffn", "FFNPruneConfig", "PruneFFNPass"),
    ("int8", "deploytool.passes.quantize_int8", "Int8Config", "int8_pipeline"),
    ("fp16", "deploytool.passes.fp16", "Fp16Config", "Fp16ConvertPass"),
    ("pack", "deploytool.passes.pack_weights", "PackConfig", "pack_pipeline"),
    ("repack", "deploytool.passes.repack", "RepackConfig", "repack_pipeline"),
)


def _entry(row: tuple[str, str, str, str]) -> PassEntry:
    kind, module, config, build = row
    mod = importlib.import_module(module)
    return PassEntry(kind, getattr(mod, config), getattr(mod, build))


@functools.cache
def pass_table() -> Mapping[type, PassEntry]:
    """config type -> :class:`PassEntry` (read-only; built on first use so no pass module loads early)."""
    entries = [_entry(row) for row in _ENTRIES]
    return types.MappingProxyType({e.config: e for e in entries})


def config_class(kind: str) -> type:
    """The config type of the pass that recipes call ``kind`` (``slice``, ``prune-heads``, ``pack``, ...)."""
    for row in _ENTRIES:
        if row[0] == kind:
            return _entry(row).config
    from deploytool.choices import did_you_mean
    from deploytool.errors import ConfigError

    names = [row[0] for row in _ENTRIES]
    raise ConfigError(f"no pass named {kind!r}{did_you_mean(str(kind), names)}; known: {', '.join(names)}")


def build_pass(config):
    """The pass (or :class:`~deploytool.passes.base.PassSequence`) that ``config`` configures."""
    cls = type(config)
    # the row named after the config's class first, without importing the other passes (a config may live in a
    # module of its own: PackConfig in pack_config, whose pass module then imports it)
    row = next((r for r in _ENTRIES if r[2] == cls.__qualname__), None)
    entry = _entry(row) if row is not None else None
    if entry is None or entry.config is not cls:
        entry = pass_table().get(cls)
    if entry is None:
        from deploytool.errors import ConfigError

        known = ", ".join(sorted(c.__name__ for c in pass_table()))
        raise ConfigError(f"config: transform() takes one of {known}; got {cls.__name__}")
    return entry.build(config)


def transform(src: str | os.PathLike, dst: str | os.PathLike, config, *, verify: bool = True):
    """Apply the pass that ``config`` configures to the model in ``src`` and write ``dst`` atomically.

    Returns the pass's :class:`~deploytool.passes.base.DeployPassResult` (details, sizes, skips, gate).
    ``verify`` (default True): run the output once in ONNX Runtime before it is written (the gate of
    ``base.run_pass_file``); False skips it and ``result.gate.verified`` is False.
    """
    from deploytool.passes.base import run_pass_file

    return run_pass_file(build_pass(config), src, dst, verify=verify)


__all__ = ["PassEntry", "build_pass", "config_class", "pass_table", "transform"]
