"""Head and FFN-neuron importance scores: the file format shared by training and the pruning passes.

File format (JSON, version ``deploytool-importance/1``)::

    {"format": "deploytool-importance/1",
     "heads":   [[float] * num_heads] * num_layers,      # larger = more important
     "neurons": [[float] * ffn_width] * num_layers,
     "source":  "gradient (Michel et al. 2019) on rotten_tomatoes" | "weight-magnitude (data-free)" | ...,
     "model":   "what the scores were computed for"}

Scores are relative within a layer; a higher score means "keep". ``load_importance`` checks the
scores against a model's structure (layer count, per-layer head count and FFN width) and names the
first layer whose shape differs.

The data-free fallback :func:`magnitude_importance` scores head h of a layer by the L2 norm of the
Q/K/V output rows and O input columns it owns, and FFN neuron j by the L2 norm of its intermediate
row (weight and bias; a gated FFN: rows j and F + j) and output column. It is named ``"weight-magnitude (data-free)"`` wherever it is
used, because it is a much weaker signal than gradient-based importance.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from deploytool.errors import ConfigError, InputFileError
from deploytool.graph.roles import EncoderStructure
from deploytool.graph.weights import qkv_square_sums, square_sums, weight_array

FORMAT = "deploytool-importance/1"
MAGNITUDE_SOURCE = "weight-magnitude (data-free)"

__all__ = ["FORMAT", "MAGNITUDE_SOURCE", "Importance", "load_importance", "save_importance",
           "magnitude_importance", "importance_from_dict"]


@dataclasses.dataclass(frozen=True)
class Importance:
    """Per-layer head scores and FFN-neuron scores (higher = more important)."""

    heads: tuple[tuple[float, ...], ...]
    neurons: tuple[tuple[float, ...], ...]
    source: str = "unknown"
    model: str = ""

    @property
    def num_layers(self) -> int:
        return len(self.heads)

    def head_order(self, layer: int) -> list[int]:
        """Head indices of ``layer``, most important first (ties keep the current order)."""
        return _descending(self.heads[layer])

    def neuron_order(self, layer: int) -> list[int]:
        return _descending(self.neurons[layer])

    def to_dict(self) -> dict:
        return {"format": FORMAT, "heads": [list(r) for r in self.heads],
                "neurons": [list(r) for r in self.neurons], "source": self.source, "model": self.model}


def _descending(scores: Sequence[float]) -> list[int]:
    # stable: equal scores keep their current relative order
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")]


def _matrix(obj, key: str, where: str) -> tuple[tuple[float, ...], ...]:
    rows = obj.get(key)
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise ConfigError(f"{where}: '{key}' must be a list of per-layer lists of numbers")
    out = []
    for i, r in enumerate(rows):
        if any(isinstance(x, bool) for x in r):
            raise ConfigError(f"{where}: '{key}' layer {i} holds a boolean, expected numbers")
        if not all(isinstance(x, (int, float)) for x in r):  # JSON numbers only (not "3", not null)
            raise ConfigError(f"{where}: '{key}' layer {i} holds a non-number")
        try:
            vals = tuple(float(x) for x in r)
        except OverflowError:  # an integer beyond float's range (10**400)
            raise ConfigError(f"{where}: '{key}' layer {i} holds a number too large for a float") from None
        if not all(math.isfinite(v) for v in vals):
            raise ConfigError(f"{where}: '{key}' layer {i} holds nan or inf")
        out.append(vals)
    return tuple(out)


def importance_from_dict(obj, where: str = "importance") -> Importance:
    """Validate the JSON object of an importance file (format, types; not yet the model's shape)."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object with format {FORMAT!r}")
    fmt = obj.get("format")
    if fmt != FORMAT:
        raise ConfigError(f"{where}: 'format' is {fmt!r}, expected {FORMAT!r}")
    heads = _matrix(obj, "heads", where)
    neurons = _matrix(obj, "neurons", where)
    if len(heads) != len(neurons):
        raise ConfigError(f"{where}: 'heads' has {len(heads)} layers but 'neurons' has {len(neurons)}")
    return Importance(heads=heads, neurons=neurons, source=str(obj.get("source", "unknown")),
                      model=str(obj.get("model", "")))


def check_shape(imp: Importance, structure: EncoderStructure, where: str = "importance") -> Importance:
    """Raise ConfigError naming the first layer whose head/neuron count differs from the model's."""
    n = structure.num_layers
    if imp.num_layers != n:
        raise ConfigError(f"{where}: scores for {imp.num_layers} layers, the model has {n} layers "
                          f"(expected 'heads' shape [{n}][heads] and 'neurons' shape [{n}][ffn])")
    for i, layer in enumerate(structure.layers):
        h, f = layer.attention.num_heads, layer.ffn_width
        if len(imp.heads[i]) != h:
            raise ConfigError(f"{where}: layer {i} has {len(imp.heads[i])} head scores, expected {h} "
                              f"(the model's layer {i} has {h} heads)")
        if len(imp.neurons[i]) != f:
            raise ConfigError(f"{where}: layer {i} has {len(imp.neurons[i])} neuron scores, expected {f} "
                              f"(the model's layer {i} has FFN width {f})")
    return imp


def load_importance(path: str | os.PathLike, structure: EncoderStructure | None = None) -> Importance:
    """Read an importance file; with ``structure``, check its shape against the model's."""
    p = Path(path)
    if not p.is_file():
        from deploytool.errors import not_a_file

        raise not_a_file(p, "importance file")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputFileError(f"{p}: not a readable JSON importance file ({type(e).__name__})") from e
    imp = importance_from_dict(obj, where=str(p))
    if structure is not None:
        check_shape(imp, structure, where=str(p))
    return imp


def save_importance(path: str | os.PathLike, heads: Sequence[Sequence[float]], neurons: Sequence[Sequence[float]],
                    *, source: str, model: str = "") -> Path:
    """Write an importance file atomically (validated first)."""
    from deploytool.onnx_io import atomic_write

    imp = importance_from_dict({"format": FORMAT, "heads": [[float(x) for x in r] for r in heads],
                                "neurons": [[float(x) for x in r] for r in neurons],
                                "source": source, "model": model})
    with atomic_write(path) as f:
        json.dump(imp.to_dict(), f)
    return Path(path)


def _layer_magnitudes(layer) -> tuple[list[float], list[float]]:
    """One layer's head and neuron scores for :func:`magnitude_importance`."""
    att = layer.attention
    hs, nh = att.head_size, att.num_heads
    sq = np.zeros(nh)
    for rows in qkv_square_sums(att):  # Q, K, V: each output row's squares (weight and bias)
        sq += rows.reshape(nh, hs).sum(axis=1)
    sq += square_sums(att.o, 0).reshape(nh, hs).sum(axis=1)  # O's input columns
    scores: list[float] = []
    for ffn in layer.ffns:  # neurons numbered across the layer's FFNs, in order
        b1 = weight_array(ffn.intermediate.bias).astype(np.float64) if ffn.intermediate.bias is not None else 0
        rows = square_sums(ffn.intermediate, 1) + b1 ** 2  # [ffn]
        if ffn.gated:  # GLU: neuron j owns the activation-input row j and the gate row F + j
            f = ffn.width
            rows = rows[:f] + rows[f:]
        if ffn.gate is not None:  # T5 v1.1: and row j of its own gate projection
            b2 = weight_array(ffn.gate.bias).astype(np.float64) if ffn.gate.bias is not None else 0
            rows = rows + square_sums(ffn.gate, 1) + b2 ** 2
        nsq = rows + square_sums(ffn.output, 0)  # the output linear's input columns
        scores += [float(v) for v in np.sqrt(nsq)]
    return [float(v) for v in np.sqrt(sq)], scores


def magnitude_importance(structure: EncoderStructure, model: str = "") -> Importance:
    """Data-free fallback: L2 norms of the weights each head / neuron owns (see the module docstring).

    Layers are scored two at a time (numpy's einsum releases the GIL; BERT-base: ~0.06 s instead of ~0.11 s
    with the second core free; in reorder, where the gate's process runs on it meanwhile, the whole process
    gained ~0.01-0.03 s); each layer's sums are the same computation either way, so the scores do not depend
    on it (reorder and prune-ffn outputs byte-identical to before)."""
    layers = list(structure.layers)
    if len(layers) > 1 and (os.cpu_count() or 1) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="deploytool-importance") as pool:
            per_layer = list(pool.map(_layer_magnitudes, layers))
    else:
        per_layer = [_layer_magnitudes(layer) for layer in layers]
    heads = [h for h, _ in per_layer]
    neurons = [n for _, n in per_layer]
    return Importance(heads=tuple(map(tuple, heads)), neurons=tuple(map(tuple, neurons)),
                      source=MAGNITUDE_SOURCE, model=model)
