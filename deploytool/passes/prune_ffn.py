"""Physically remove FFN (intermediate) neurons from an ONNX encoder.

Neuron j of a layer's FFN is output feature j of the intermediate linear (row j of the PyTorch
weight ``[ffn, hidden]`` and bias entry j) and input feature j of the output linear (column j of
``[hidden, ffn]``). Removing it deletes both; the output bias, the hidden size and everything else
are unchanged. Because the activation is elementwise, the function of the remaining neurons is
unchanged.

Which neurons: an explicit ``{layer: [neuron ids to remove]}`` (``--neurons FILE.json``) or, per
layer, keep the ``round(keep * ffn)`` most important (importance file, or the data-free
weight-magnitude fallback, named as such). A layer keeps at least one neuron.
"""

from __future__ import annotations

from collections.abc import Mapping

import json
import math
import numbers
import re
import os
from pathlib import Path
from typing import Any, Optional

import onnx_ir as ir

from deploytool.choices import require_config
from deploytool.choices import FrozenMap, kind_of
from deploytool.errors import ConfigError, InputFileError, PassRefusedError, not_a_file
from deploytool.graph.structure import EncoderStructure
from deploytool.passes import _surgery as S
from deploytool.passes._sharing import copies_stats, weight_slots
from deploytool.passes.base import Edit, StructuredPass
from deploytool.passes.base import DeployPassResult, run_pass_file
from deploytool.passes.prune_heads import _id_list, _is_index
from deploytool.validation import FilePath, schema

__all__ = ["FFNPruneConfig", "PruneFFNPass", "prune_ffn_file", "load_neurons_file"]


class _Pairs(list):
    """A JSON object's (key, value) pairs in file order (``object_pairs_hook``)."""


def load_neurons_file(path: str | os.PathLike) -> dict[int, tuple[int, ...]]:
    """Read ``{"<layer>": [neuron ids to remove], ...}`` from a JSON file."""
    p = Path(path)
    if not p.is_file():
        raise not_a_file(p, "neurons file")  # missing, a folder, or a device (said so, never read)
    try:
        # the pairs in file order: a key given twice (or two spellings of one layer) is refused, not merged
        obj = json.loads(p.read_text(encoding="utf-8"), object_pairs_hook=_Pairs)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputFileError(f"{p}: not a readable JSON file ({type(e).__name__})") from e
    if not isinstance(obj, _Pairs):
        raise ConfigError(f"{p}: expected a JSON object {{\"layer\": [neuron ids to remove]}}")
    out = {}
    for k, v in obj:
        if not re.fullmatch(r"0|[1-9][0-9]{0,5}", k):  # a plain decimal index: not "-0", " 0", "00", "٠"
            raise ConfigError(f"{p}: key {k!r} is not a layer index (expected 0, 1, 2, ...)")
        layer = int(k)
        if layer in out:
            raise ConfigError(f"{p}: layer {layer} given twice")
        if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
            raise ConfigError(f"{p}: layer {k} must map to a list of integer neuron ids")
        out[layer] = tuple(v)
    return out


@schema
class FFNPruneConfig:
    """Remove ``neurons`` ({layer: [ids]}) or keep the ``keep`` fraction of most important neurons."""

    # the range of keep and the mapping's layer and neuron ids are checked below (messages name the layer)
    keep: Optional[Any] = None
    neurons: Optional[Any] = None  # {layer: [neuron ids]}
    importance: Optional[FilePath] = None

    def __post_init__(self):
        if (self.keep is None) == (self.neurons is None):
            raise ConfigError("keep/neurons: give exactly one of keep (fraction per layer) or neurons (explicit ids)")
        if self.keep is not None:
            k = self.keep
            if isinstance(k, bool) or not isinstance(k, numbers.Real):
                raise ConfigError(f"keep: expected a fraction 0 < keep <= 1 of each layer's neurons, got {kind_of(k)}")
            if not math.isfinite(k) or not 0 < k <= 1:
                raise ConfigError(f"keep: {k!r} out of range; expected a fraction 0 < keep <= 1 of each layer's neurons")
            object.__setattr__(self, "keep", k if type(k) in (int, float) else float(k))
        if self.neurons is not None:
            if not isinstance(self.neurons, Mapping):
                raise ConfigError(f"neurons: expected a mapping {{layer: [neuron ids]}}, got {type(self.neurons).__name__}")
            norm = {}
            for layer, given in self.neurons.items():
                if not _is_index(layer):
                    raise ConfigError(f"neurons: layer index {layer!r} must be an integer >= 0")
                layer = int(layer)  # numpy's integers (an argsort's) as the Python int they are
                ids = _id_list(given)
                if ids is None:
                    raise ConfigError(f"neurons: layer {layer}: expected a list of neuron ids, got {type(given).__name__}")
                if not all(_is_index(i) for i in ids):
                    raise ConfigError(f"neurons: layer {layer} ids must be integers >= 0")
                ids = tuple(int(i) for i in ids)
                if len(set(ids)) != len(ids):
                    raise ConfigError(f"neurons: layer {layer} lists a neuron twice")
                norm[layer] = ids
            object.__setattr__(self, "neurons", FrozenMap(norm))  # immutable and hashable: the config is a value
            if self.importance is not None:
                raise ConfigError("importance: only used with keep (explicit neurons need no scores)")


class PruneFFNPass(StructuredPass):
    label = "prune-ffn"  # how messages name it: its command

    step_name = "prune-ffn"

    def __init__(self, config: FFNPruneConfig):
        super().__init__()
        require_config(config, FFNPruneConfig, "PruneFFNPass")  # not an AttributeError in call()
        self.config = config

    def check(self, structure: EncoderStructure) -> None:
        """Refuse explicit ids out of range, or a layer that would lose all its neurons."""
        n = structure.num_layers
        for layer, ids in (self.config.neurons or {}).items():
            if layer >= n:
                raise PassRefusedError(f"neurons: layer {layer} out of range 0..{n - 1}")
            w = structure.layers[layer].ffn_width
            bad = [i for i in ids if i >= w]
            if bad:
                raise PassRefusedError(f"neurons: layer {layer} neuron id {bad[0]} out of range 0..{w - 1}")
            if len(ids) >= w:
                raise PassRefusedError(f"neurons: layer {layer} would lose all {w} FFN neurons; keep at least one")

    def edit(self, model: ir.Model, structure: EncoderStructure) -> Edit:
        cfg = self.config
        stats = {}
        if cfg.neurons is not None:
            keep = {}
            for layer, ids in cfg.neurons.items():
                w = structure.layers[layer].ffn_width
                drop = set(ids)
                keep[layer] = [j for j in range(w) if j not in drop]
        else:
            from deploytool.importance import load_importance, magnitude_importance

            imp = (magnitude_importance(structure) if cfg.importance is None
                   else load_importance(cfg.importance, structure))
            stats["importance"] = imp.source
            keep = {}
            raised = []  # layers where the fraction rounds to no neuron of an FFN: that FFN keeps its best one
            for i, layer in enumerate(structure.layers):
                scores = imp.neurons[i]
                keep[i] = []
                for start, f in layer.ffn_offsets():  # each FFN of the layer keeps its share
                    k = int(math.floor(cfg.keep * f.width + 0.5))
                    if k < 1:
                        k = 1
                        if i not in raised:
                            raised.append(i)
                    order = sorted(range(start, start + f.width), key=lambda j: -scores[j])  # stable on ties
                    keep[i] += sorted(order[:k])
            if raised:  # said as prune-heads says a ratio capped to keep one head
                stats["note"] = (f"keep {cfg.keep} rounds to no FFN neuron of layer(s) {', '.join(map(str, raised))}: "
                                 "each FFN there keeps its most important neuron")
        slots = weight_slots(structure)
        for i, idx in keep.items():
            S.keep_neurons(model.graph, structure.layers[i], idx)
        # layers sharing weights (ALBERT) that keep different neurons; constants the exporter merged apart
        stats.update(copies_stats(slots, weight_slots(structure), "FFN neurons"))
        return Edit(stats)


def prune_ffn_file(src: str | os.PathLike, dst: str | os.PathLike, config: FFNPruneConfig, *,
                   verify: bool = True) -> DeployPassResult:
    """Load ``src``, remove FFN neurons as ``config`` says, check and save ``dst`` atomically."""
    require_config(config, FFNPruneConfig, "prune_ffn_file")
    return run_pass_file(PruneFFNPass(config), src, dst, verify=verify)
