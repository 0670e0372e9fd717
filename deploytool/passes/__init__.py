"""Graph passes on ONNX encoders: one transform per module, one contract (see base.py).

``transform(src, dst, config)`` is the one verb: it dispatches on the config's type (as torchao's
``quantize_(model, config)`` does) through :func:`pass_table`, the one table from a config type to the
pass (or pipeline of passes) it configures, so every pass is reached the same way from Python, the
CLI, recipes and ``fit`` (through :mod:`deploytool.passes.variants`).
"""

from __future__ import annotations

import dataclasses
import functools
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


@functools.cache
def pass_table() -> Mapping[type, PassEntry]:
    """config type -> :class:`PassEntry` (read-only; built on first use so no pass module loads early)."""
    from deploytool.passes.fp16 import Fp16Config, Fp16ConvertPass
    from deploytool.passes.pack_weights import PackConfig, pack_pipeline
    from deploytool.passes.prune_ffn import FFNPruneConfig, PruneFFNPass
    from deploytool.passes.prune_heads import HeadPruneConfig, PruneHeadsPass
    from deploytool.passes.quantize_int8 import Int8Config, int8_pipeline
    from deploytool.passes.reorder import ReorderConfig, ReorderPass
    from deploytool.passes.slice_subnetwork import SliceConfig, SlicePass

    entries = [
        PassEntry("reorder", ReorderConfig, ReorderPass),
        PassEntry("slice", SliceConfig, SlicePass),
        PassEntry("prune-heads", HeadPruneConfig, PruneHeadsPass),
        PassEntry("prune-ffn", FFNPruneConfig, PruneFFNPass),
        PassEntry("int8", Int8Config, int8_pipeline),
        PassEntry("fp16", Fp16Config, Fp16ConvertPass),
        PassEntry("pack", PackConfig, pack_pipeline),
    ]
    return types.MappingProxyType({e.config: e for e in entries})


def config_class(kind: str) -> type:
    """The config type of the pass that recipes call ``kind`` (``slice``, ``prune-heads``, ``pack``, ...)."""
    for entry in pass_table().values():
        if entry.kind == kind:
            return entry.config
    known = ", ".join(e.kind for e in pass_table().values())
    raise KeyError(f"no pass named {kind!r}; known: {known}")


def build_pass(config):
    """The pass (or :class:`~deploytool.passes.base.PassSequence`) that ``config`` configures."""
    entry = pass_table().get(type(config))
    if entry is None:
        known = ", ".join(sorted(c.__name__ for c in pass_table()))
        raise TypeError(f"transform() takes one of {known}; got {type(config).__name__}")
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
