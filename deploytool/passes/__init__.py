"""Graph passes on ONNX encoders: one transform per module, one contract (see base.py).

``transform(src, dst, config)`` is the one verb: it dispatches on the config's type (as torchao's
``quantize_(model, config)`` does), so every pass is reached the same way from Python, the CLI and
recipes.
"""

from __future__ import annotations

import importlib
import os

# config class name -> (module, file function); resolved lazily so no pass module loads early
_FILE_FUNCTIONS = {
    "SliceConfig": ("deploytool.passes.slice_subnetwork", "slice_file"),
    "HeadPruneConfig": ("deploytool.passes.prune_heads", "prune_heads_file"),
    "FFNPruneConfig": ("deploytool.passes.prune_ffn", "prune_ffn_file"),
    "ReorderConfig": ("deploytool.passes.reorder", "reorder_file"),
    "Int8Config": ("deploytool.passes.quantize_int8", "quantize_int8_file"),
    "Fp16Config": ("deploytool.passes.fp16", "convert_fp16_file"),
    "PackConfig": ("deploytool.passes.pack_weights", "pack_file"),
}


def transform(src: str | os.PathLike, dst: str | os.PathLike, config, *, verify: bool = True):
    """Apply the pass that ``config`` configures to the model in ``src`` and write ``dst`` atomically.

    Returns the pass's :class:`~deploytool.passes.base.DeployPassResult` (stats, sizes, skips).
    ``verify`` (default True): run the output once in ONNX Runtime before it is written (the gate of
    ``base.run_pass_file``); False skips it and the stats say ``verified: False``.
    """
    entry = _FILE_FUNCTIONS.get(type(config).__name__)
    if entry is None or type(config).__module__ != entry[0]:
        known = ", ".join(sorted(_FILE_FUNCTIONS))
        raise TypeError(f"transform() takes one of {known}; got {type(config).__name__}")
    module, fn = entry
    return getattr(importlib.import_module(module), fn)(src, dst, config, verify=verify)


__all__ = ["transform"]
