"""Physically remove attention heads from an ONNX encoder.

Head h of a layer with head size d owns output features ``[h*d, (h+1)*d)`` of Q, K and V. Removing
a set of heads deletes those output rows (weights and biases) of Q, K and V and the matching input
columns of the attention output projection O; the O bias, the hidden size, LayerNorms and
everything outside the attention block are unchanged. Every place that encodes the layer's head
count (Reshape shape constants, Concat'ed shape pieces, a fused ``num_heads`` attribute) is rewritten
for that layer alone, so layers may end up with different head counts. This is exactly what
``transformers``' ``PreTrainedModel.prune_heads`` does to the PyTorch model.

Which heads: either an explicit ``{layer: [head ids]}`` or a ratio: each layer loses the
``round(ratio * heads)`` least important heads (importance from a file, or the data-free
weight-magnitude fallback, named as such in the result). A layer never loses all its heads: that is
refused with an error naming the layer.

Layers that share their weights (ALBERT) and lose the same heads keep sharing the one pruned copy; layers
that share them and lose different heads each read their own copy, which the result states with the bytes
it costs (``shared_weights_note``, ``shared_weights_copied_bytes``). All-equal tensors several layers read only
because the exporter stored equal constants once (an untrained model's zero biases) are said apart, as such
(``merged_constants_note``, ``merged_constants_copied_bytes``; :mod:`deploytool.passes._sharing`).
"""

from __future__ import annotations

import math
import numbers
import os
import re
from typing import Any, Mapping, Optional

import numpy as np
import onnx_ir as ir

from deploytool.choices import require_config
from deploytool.choices import FrozenMap, kind_of
from deploytool.errors import ConfigError, PassRefusedError
from deploytool.graph.structure import EncoderStructure
from deploytool.passes import _surgery as S
from deploytool.passes._sharing import copies_stats, weight_slots
from deploytool.passes.base import Edit, StructuredPass
from deploytool.passes.base import DeployPassResult, run_pass_file
from deploytool.validation import FilePath, schema

__all__ = ["HeadPruneConfig", "PruneHeadsPass", "prune_heads_file", "parse_heads_spec"]


_DIGITS = re.compile(r"[+-]?[0-9]+")  # a sign: the config says why -1 is no id


def parse_heads_spec(spec: str) -> dict[int, tuple[int, ...]]:
    """``"0:1,3;2:0"`` -> ``{0: (1, 3), 2: (0,)}`` (layer: head ids to remove)."""
    out: dict[int, tuple[int, ...]] = {}
    text = spec.strip()
    if not text:
        raise ConfigError("heads: empty spec; expected 'LAYER:HEAD,HEAD;LAYER:HEAD' e.g. '0:1,3;2:0'")
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        layer_s, sep, heads_s = part.partition(":")
        if not sep:
            raise ConfigError(f"heads: '{part}' lacks ':'; expected 'LAYER:HEAD,HEAD' e.g. '0:1,3'")
        # ASCII digits only: int() also reads '1_0' as 10 and other scripts' digits, a typo then removing another head
        items = [h.strip() for h in heads_s.split(",")]
        if not _DIGITS.fullmatch(layer_s.strip()) or not all(_DIGITS.fullmatch(h) for h in items if h):
            raise ConfigError(f"heads: '{part}' is not 'LAYER:HEAD,HEAD' with integers")
        layer = int(layer_s)
        heads = tuple(int(h) for h in items if h)
        if not heads:
            raise ConfigError(f"heads: '{part}' lists no head of layer {layer}; expected 'LAYER:HEAD,HEAD' e.g. '0:1,3'")
        if "" in items[:-1]:  # '1,,3': an id left out, not a separator to skip (a trailing ',' is one)
            raise ConfigError(f"heads: '{part}' has an empty head id (',,' or a leading ','); expected 'LAYER:HEAD,HEAD' "
                              "e.g. '0:1,3'")
        if layer in out:
            raise ConfigError(f"heads: layer {layer} given twice")
        out[layer] = heads
    if not out:  # only separators (';;;')
        raise ConfigError(f"heads: {spec!r} names no layer; expected 'LAYER:HEAD,HEAD;LAYER:HEAD' e.g. '0:1,3;2:0'")
    return out


def _is_index(v: Any) -> bool:
    """An integer >= 0 (numpy's too; not a bool): a layer index or a head id."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0


def _id_list(ids: Any) -> list | None:
    """A layer's ids as a list: from a list, tuple or set, or a 1-D numpy array (``np.argsort(scores)[:2]``); None
    for anything else (a string, a mapping, one number)."""
    if isinstance(ids, np.ndarray):
        return ids.tolist() if ids.ndim == 1 else None
    if isinstance(ids, (list, tuple, set, frozenset)):
        return list(ids)
    return None


@schema
class HeadPruneConfig:
    """Remove ``heads`` ({layer: [head ids]}) or, per layer, the ``ratio`` least important heads."""

    # the mapping's layer and head ids and the ratio's range are checked below (messages name the layer)
    heads: Optional[Any] = None  # {layer: [head ids]}
    ratio: Optional[Any] = None
    importance: Optional[FilePath] = None  # importance file; None -> weight-magnitude fallback

    def __post_init__(self):
        if (self.heads is None) == (self.ratio is None):
            raise ConfigError("heads/ratio: give exactly one of heads (explicit ids) or ratio (fraction per layer)")
        if self.heads is not None:
            if not isinstance(self.heads, Mapping):
                raise ConfigError("heads: expected a mapping {layer: [head ids]}")
            norm = {}
            for layer, given in self.heads.items():
                if not _is_index(layer):
                    raise ConfigError(f"heads: layer index {layer!r} must be an integer >= 0")
                layer = int(layer)  # numpy's integers (an argsort's) as the Python int they are
                ids = _id_list(given)
                if ids is None:
                    raise ConfigError(f"heads: layer {layer}: expected a list of head ids, got {type(given).__name__}")
                for h in ids:
                    if not _is_index(h):
                        raise ConfigError(f"heads: layer {layer} head id {h!r} must be an integer >= 0")
                ids = tuple(int(h) for h in ids)
                if len(set(ids)) != len(ids):
                    raise ConfigError(f"heads: layer {layer} lists a head twice: {list(ids)}")
                norm[layer] = ids
            object.__setattr__(self, "heads", FrozenMap(norm))  # immutable and hashable: the config is a value
            if self.importance is not None:
                raise ConfigError("importance: only used with ratio (explicit heads need no scores)")
        if self.ratio is not None:
            r = self.ratio
            if isinstance(r, bool) or not isinstance(r, numbers.Real):
                raise ConfigError(f"ratio: expected a fraction 0 <= ratio < 1 of each layer's heads, got {kind_of(r)}")
            if not math.isfinite(r) or not 0 <= r < 1:
                raise ConfigError(f"ratio: {r!r} out of range; expected a fraction 0 <= ratio < 1 of each layer's heads")
            object.__setattr__(self, "ratio", r if type(r) in (int, float) else float(r))


class PruneHeadsPass(StructuredPass):
    label = "prune-heads"  # how messages name it: its command

    step_name = "prune-heads"

    def __init__(self, config: HeadPruneConfig):
        super().__init__()
        require_config(config, HeadPruneConfig, "PruneHeadsPass")  # not an AttributeError in call()
        self.config = config

    def check(self, structure: EncoderStructure) -> None:
        """Refuse explicit ids out of range, or a layer that would lose all its heads."""
        n = structure.num_layers
        for layer, ids in (self.config.heads or {}).items():
            if layer >= n:
                raise PassRefusedError(f"heads: layer {layer} out of range 0..{n - 1}")
            h = structure.layers[layer].attention.num_heads
            for i in ids:
                if i >= h:
                    raise PassRefusedError(f"heads: layer {layer} head id {i} out of range 0..{h - 1}")
            if len(set(ids)) >= h:
                raise PassRefusedError(f"heads: layer {layer} would lose all {h} heads; keep at least one "
                                       "(removing the whole attention block is not supported)")

    def _removal(self, structure: EncoderStructure) -> tuple[dict[int, tuple[int, ...]], str | None]:
        cfg = self.config
        if cfg.heads is not None:
            return dict(cfg.heads), None
        imp = _importance(cfg.importance, structure)
        out = {}
        self._capped = []
        for i, layer in enumerate(structure.layers):
            h = layer.attention.num_heads
            want = int(math.floor(cfg.ratio * h + 0.5))
            k = min(want, h - 1)
            if k < want:
                self._capped.append(i)
            order = imp.head_order(i)  # most important first
            out[i] = tuple(sorted(order[h - k:])) if k else ()
        return out, imp.source

    def edit(self, model: ir.Model, structure: EncoderStructure) -> Edit:
        removal, source = self._removal(structure)
        slots = weight_slots(structure)
        for i, layer in enumerate(structure.layers):
            drop = set(removal.get(i, ()))
            if drop:
                S.keep_heads(model.graph, layer, [h for h in range(layer.attention.num_heads) if h not in drop])
        stats = {"heads_removed": {str(k): list(v) for k, v in removal.items() if v}}
        if source is not None:
            stats["importance"] = source
        if getattr(self, "_capped", None):
            stats["note"] = (f"ratio {self.config.ratio} would remove every head of layer(s) "
                             f"{', '.join(map(str, self._capped))}: each keeps its most important head")
        # layers sharing weights (ALBERT) that keep different heads; constants the exporter merged apart
        stats.update(copies_stats(slots, weight_slots(structure), "heads"))
        return Edit(stats)


def _importance(path, structure):
    from deploytool.importance import load_importance, magnitude_importance

    if path is None:
        return magnitude_importance(structure)
    return load_importance(path, structure)


def prune_heads_file(src: str | os.PathLike, dst: str | os.PathLike, config: HeadPruneConfig, *,
                     verify: bool = True) -> DeployPassResult:
    """Load ``src``, remove heads as ``config`` says, check and save ``dst`` atomically."""
    require_config(config, HeadPruneConfig, "prune_heads_file")
    return run_pass_file(PruneHeadsPass(config), src, dst, verify=verify)
