"""Weights that several encoder layers read (ALBERT runs one layer's weights at several depths) and what a
structured edit did to that sharing, for the passes' results.

A projection's weight or bias is identified by its stored tensor: the value itself, or the one it is an
``Identity`` alias of (:func:`deploytool.graph._util.alias_root`). Two layers share it when both read that
tensor.

- Removing layers (slice ``depth``): a removed layer's weights stay in the file while a kept layer reads
  them, so the weights shrink only by those no kept layer shares (0 bytes when every removed layer shares
  all its weights with a kept one: the parameter count is unchanged although fewer layers run).
- Removing heads or neurons: layers given the same edit of a shared weight keep sharing the one edited copy
  (``_surgery``'s shared edits); layers given different edits each read their own copy. For every tensor
  the layers shared, the copies cost ``sum(sizes of the distinct tensors they now read) - the largest``
  bytes more than storing it once.

A tensor whose elements are all one value (an untrained model's zero biases and unit scales) is no tied weight:
the TorchScript exporter stores equal constants once, so every layer of a freshly initialised BERT reads one zero
bias. Such tensors are left out of both notes above; where an edit gave them copies, :func:`copies_stats` says so in
its own words (``merged_constants_note``), as constants the exporter had merged, not as shared weights.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import onnx_ir as ir

from deploytool.graph._util import alias_root
from deploytool.graph.structure import EncoderStructure
from deploytool.units import fmt_bytes

__all__ = ["Slots", "weight_slots", "stored_bytes", "dropped_sharing_note", "copies_stats"]

# (layer index, position among the layer's projections, "weight" | "bias") -> the stored tensor it reads
Slots = dict[tuple[int, int, str], ir.Value]


def weight_slots(structure: EncoderStructure) -> Slots:
    """Every projection weight and bias of every layer, as the stored tensor it reads."""
    out: Slots = {}
    for layer in structure.layers:
        for k, lin in enumerate(layer.linears()):
            for part, value in (("weight", lin.weight), ("bias", lin.bias)):
                root = alias_root(value) if value is not None else None
                if root is not None:
                    out[(layer.index, k, part)] = root
    return out


def _nbytes(value: ir.Value) -> int:
    t = value.const_value
    return int(t.nbytes) if t is not None else 0


def _constant(value: ir.Value) -> bool:
    """Whether every element of the stored tensor is one value (zeros, ones): equal constants an exporter merges,
    not a weight layers were made to share (a tensor whose values cannot be read counts as a weight)."""
    t = value.const_value
    if t is None:
        return False
    try:
        a = t.numpy()
    except Exception:  # low-bit dtypes numpy cannot show
        return False
    return a.size > 0 and bool(np.all(a == a.flat[0]))


def stored_bytes(graph: ir.Graph) -> int:
    """Bytes of the graph's floating-point initializers of rank >= 1 (its parameters)."""
    total = 0
    for v in graph.initializers.values():
        t = v.const_value
        if t is not None and t.dtype.is_floating_point() and len(t.shape) >= 1:
            total += int(t.nbytes)
    return total


def _layers(ids: Iterable[int]) -> str:
    ids = sorted(set(ids))
    return f"layer{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"


def dropped_sharing_note(before: Slots, num_layers: int, keep: list[int], freed: int) -> str | None:
    """The line saying what removing layers did where removed layers read weights a kept layer reads
    (``before``: the slots before the removal; ``freed``: bytes of weights the removal took out of the
    file), or None when no removed layer shares a weight with a kept one."""
    kept = set(keep)
    kept_roots = {id(v) for (i, _, _), v in before.items() if i in kept}
    # values read only where a removed layer shares the tensor (not every weight of the model)
    sharing = sorted({i for (i, _, _), v in before.items() if i not in kept and id(v) in kept_roots
                      and not _constant(v)})
    if not sharing:
        return None
    return (f"{num_layers - len(kept)} of {num_layers} layers run removed ({num_layers} -> {len(kept)}); removed "
            f"{_layers(sharing)} read weights that kept layers also read (shared across layers), which stay: the "
            f"weights shrink only by those no kept layer shares ({fmt_bytes(freed)})")


def copies_stats(before: Slots, after: Slots, what: str, remedy: str | None = None) -> dict[str, Any]:
    """What an edit did to tensors several layers read, as result statistics (empty when each is still stored once):

    - ``shared_weights_note`` and ``shared_weights_copied_bytes``: weights layers shared (ALBERT's) were copied
      because the layers' ``what`` (heads, neurons) now differ. ``remedy``: what keeps the weight shared (default:
      removing the same ``what`` from every layer that shares it).
    - ``merged_constants_note`` and ``merged_constants_copied_bytes``: all-equal tensors (an untrained model's zero
      biases, which the exporter stored once for every layer) were given copies of their own: no tied weight."""
    groups: dict[int, list[tuple[int, int, str]]] = {}
    for slot, v in before.items():
        groups.setdefault(id(v), []).append(slot)
    extra, layers = 0, set()
    merged, merged_extra = 0, 0
    for slots in groups.values():
        if len({i for i, _, _ in slots}) < 2:
            continue  # read by one layer only: not shared
        now = {id(after[s]): after[s] for s in slots if s in after}
        if len(now) < 2:
            continue
        sizes = [_nbytes(v) for v in now.values()]
        if _constant(before[slots[0]]):
            merged += 1
            merged_extra += sum(sizes) - max(sizes)
            continue
        extra += sum(sizes) - max(sizes)
        layers.update(i for i, _, _ in slots)
    out: dict[str, Any] = {}
    if layers:
        remedy = remedy or f"removing the same {what} from every layer that shares a weight"
        out["shared_weights_note"] = (
            f"the weights {_layers(layers)} share were copied for the layers whose {what} now differ: "
            f"{extra:,} bytes more than storing each once ({remedy} keeps it shared)")
        out["shared_weights_copied_bytes"] = extra
    if merged:
        out["merged_constants_note"] = (
            f"{merged} all-equal tensor{'s' if merged > 1 else ''} (zeros or ones: an untrained model's biases, which "
            f"the exporter stores once for every layer that reads them) {'were' if merged > 1 else 'was'} given "
            f"copies of {'their' if merged > 1 else 'its'} own for the layers whose {what} now differ: "
            f"{merged_extra:,} bytes more, each copy counted in the parameters; constants the exporter had merged, "
            "not tied weights")
        out["merged_constants_copied_bytes"] = merged_extra
    return out
