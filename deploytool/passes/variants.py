"""The one way to make a (width, depth, precision) variant of a model: used by ``fit`` and recipe sweeps.

A variant is a DynaBERT slice (none at width = depth = 1) followed by the pass that stores the
weights at the precision asked for (none for fp32): ``fp16`` -> :class:`Fp16Config`, ``int8`` ->
:class:`Int8Config`, ``ternary``/``binary`` -> :class:`PackConfig`. Each pass records what it did in
the file (:mod:`deploytool.variant`), so the result names itself ``w0.5-d0.75-int8`` wherever it goes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from deploytool.choices import parse_enum
from deploytool.errors import ConfigError
from deploytool.variant import PRECISIONS, Precision, variant_label

__all__ = ["slice_config", "slice_shape", "precision_pass_config", "build_variant", "variant_label"]


def slice_config(width: float, depth: float, rounding: str = "dynabert"):
    """The slice of a variant, or None at width = depth = 1 (the model itself)."""
    from deploytool.passes.slice_subnetwork import SliceConfig

    if (float(width), float(depth)) == (1.0, 1.0):
        return None
    return SliceConfig(width=width, depth=depth, rounding=rounding)


def slice_shape(structure, width: float, depth: float, rounding: str = "dynabert"):
    """What variant (width, depth) keeps of the model ``structure`` describes (the slice pass's
    :class:`~deploytool.passes.slice_subnetwork.SliceShape`; everything at width = depth = 1): two widths (or depths)
    of equal shapes make the same file."""
    from deploytool.passes.slice_subnetwork import SliceConfig
    from deploytool.passes.slice_subnetwork import slice_shape as shape

    return shape(structure, SliceConfig(width=width, depth=depth, rounding=rounding))


def precision_pass_config(precision: str, options: Mapping[str, Any] | None = None):
    """The typed config of the pass that stores weights at ``precision`` (None for fp32); ``options``
    are that config's own fields (e.g. ``{"per_channel": False}`` for int8)."""
    opts = dict(options or {})
    precision = parse_enum(Precision, precision, "precision", allowed=[Precision(p) for p in PRECISIONS]).value
    if precision == "fp32":
        if opts:
            raise ConfigError(f"precision fp32 takes no options (got {', '.join(sorted(opts))})")
        return None
    from deploytool.passes import config_class

    # the precision's pass in the one table (passes.pass_table): ternary/binary are pack's weight schemes
    kind = {"fp16": "fp16", "int8": "int8"}.get(precision, "pack")
    cls = config_class(kind)
    if kind == "pack":
        opts = {"weights": precision, **opts}
    try:
        return cls(**opts)
    except TypeError as e:  # an unknown field: "got an unexpected keyword argument 'x'"
        raise ConfigError(str(e).split("__init__() ")[-1]) from None


def build_variant(src: str | os.PathLike, work: str | os.PathLike, width: float, depth: float, precision: str, *,
                  options: Mapping[str, Any] | None = None, sliced: dict | None = None,
                  rounding: str = "dynabert", of: tuple[float, float] = (1.0, 1.0)) -> Path:
    """Write variant (width, depth, precision) of ``src`` into the folder ``work`` and return its path
    (``src`` itself for the full fp32 model). ``sliced`` caches slices between calls (one slice feeds
    every precision of the same width and depth). ``of``: ``src``'s own width and depth relative to its original
    model (a slice's): the files are named as their variant records name them (``w0.5`` of a ``w0.5`` is ``w0.25``)."""
    from deploytool.passes import transform

    work = Path(work)
    sliced = {} if sliced is None else sliced
    key = (float(width), float(depth), rounding)
    cut = slice_config(width, depth, rounding)
    if key not in sliced:
        if cut is None:
            sliced[key] = Path(src)
        else:
            dst = work / f"{variant_label(width * of[0], depth * of[1], 'fp32')}.onnx"
            transform(src, dst, cut)
            sliced[key] = dst
    base = sliced[key]
    conv = precision_pass_config(precision, options)
    if conv is None:
        return base
    out = work / f"{variant_label(width * of[0], depth * of[1], precision)}.onnx"
    transform(base, out, conv)
    return out
