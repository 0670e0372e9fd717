"""Store each constant once: initializers with the same dtype, shape and bytes become one.

:func:`~deploytool.graph.weights.identical` (re-exported here) is the one rule for "this tensor is a copy of that
one", used here and by ``deploytool inspect``
(``inspection._Distinct``, which counts the copies a file stores): the same dtype, the same shape and the same
bytes. Bytes, not values: -0.0 is not 0.0 (they differ in the file and, for a division, in what a node computes).

Some writers store a shared weight once per reader: torch's dynamo exporter writes ALBERT's shared layer once per
layer, and ONNX Runtime's quantizer writes a quantized copy per reading node. For every graph (subgraphs too, each
on its own) the readers of a copy are repointed to the first initializer holding those bytes and the copy is
removed. The values every node reads are unchanged, bit for bit: only the storage shrinks.

Left as they are:

- an initializer that is also a graph input (a caller may feed another value) or a graph output (its name is the
  output's);
- a value without its data (no ``const_value``).

Cost: initializers are grouped by (dtype, shape); only a group of two or more is read, by a digest of
:data:`CHUNKS` runs of :data:`CHUNK_BYTES` bytes per tensor (a memory-mapped tensor is touched in a few pages),
and the whole bytes are compared only where dtype, shape and digest match. BERT-base (436 MB, no copies):
0.05 s on the memory-mapped model a pass reads, 0.22 s on an export's proto (reading it into ``onnx_ir``
included); every weight of 2.4 MB or more made a copy of the first of its shape (69 tensors, 318 MB, compared in
full): 0.32 s.

Where it runs: on a dynamo export, on the input of int8 and pack (before any edit: a merged value is read by
several nodes, which the passes handle as they do the TorchScript exporter's own shared tensors, copying it before
an edit that differs between readers), and on the output of ORT's int8 quantizer after deploytool's re-coding of
its weights (which finds ORT's tensors by name).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np
import onnx_ir as ir

from deploytool.graph.weights import identical  # the rule, shared with inspect

logger = logging.getLogger(__name__)

__all__ = ["DedupeStats", "DedupeInitializersPass", "dedupe_initializers", "identical"]

#: the digest reads this many evenly spaced runs of :data:`CHUNK_BYTES` bytes of a tensor (all of a small one)
CHUNKS = 16
CHUNK_BYTES = 4096
SAMPLE_BYTES = CHUNKS * CHUNK_BYTES


@dataclasses.dataclass
class DedupeStats:
    """What :func:`dedupe_initializers` merged: ``tensors`` removed and the ``bytes`` they held."""

    tensors: int = 0
    bytes: int = 0


def _raw(t) -> np.ndarray | None:
    """The tensor's bytes as a flat uint8 view (None: not readable, or a string tensor: left alone)."""
    if t.dtype is ir.DataType.STRING:
        return None
    try:
        data = t.tobytes() if t.dtype.bitwidth < 8 else None  # packed 4-bit / 2-bit types: numpy() unpacks them
        if data is not None:
            return np.frombuffer(data, np.uint8)
        a = np.ascontiguousarray(t.numpy())
        return a.reshape(-1).view(np.uint8)
    except Exception:  # a dtype numpy cannot show
        logger.debug("initializer %s not read for deduplication", t.name, exc_info=True)
        return None


def _digest(raw: np.ndarray) -> bytes:
    """A digest of a few pages' worth of the tensor: contiguous runs, so a memory-mapped tensor is read in at most
    :data:`CHUNKS` places (a strided sample would touch every page)."""
    h = hashlib.blake2b(digest_size=16)
    if raw.size <= SAMPLE_BYTES:
        h.update(raw)
    else:
        for start in np.linspace(0, raw.size - CHUNK_BYTES, CHUNKS).astype(np.int64):
            h.update(raw[start:start + CHUNK_BYTES])
    return h.digest()


def _mergeable(v: ir.Value) -> bool:
    return v.const_value is not None and not v.is_graph_input() and not v.is_graph_output()


def _dedupe_graph(graph: ir.Graph, stats: DedupeStats) -> None:
    groups: dict[tuple, list[ir.Value]] = {}
    for v in graph.initializers.values():
        if _mergeable(v):
            t = v.const_value
            groups.setdefault((t.dtype, tuple(int(d) for d in t.shape)), []).append(v)
    for values in groups.values():
        if len(values) < 2:
            continue
        # digest -> the values kept under it (several only on a sample collision); no bytes are held between
        # tensors: a lazy tensor's are computed again on a digest match only
        kept: dict[bytes, list[ir.Value]] = {}
        for v in values:
            raw = _raw(v.const_value)
            if raw is None:
                continue
            bucket = kept.setdefault(_digest(raw), [])
            first = next((k for k in bucket if identical(_raw(k.const_value), raw)), None)
            if first is None:
                bucket.append(v)
                continue
            v.replace_all_uses_with(first)
            graph.initializers.pop(v.name)
            stats.tensors += 1
            stats.bytes += int(raw.size)
            logger.debug("initializer %s is a copy of %s: its readers read %s", v.name, first.name, first.name)


def dedupe_initializers(model: ir.Model) -> DedupeStats:
    """Merge, in place, every graph's initializers holding the same dtype, shape and bytes (see the module)."""
    stats = DedupeStats()
    for graph in model.graphs():
        _dedupe_graph(graph, stats)
    return stats


class DedupeInitializersPass(ir.passes.InPlacePass):
    """:func:`dedupe_initializers` as an ``onnx_ir`` pass; ``self.stats`` holds the last call's figures."""

    def __init__(self) -> None:
        super().__init__()
        self.stats = DedupeStats()

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.stats = dedupe_initializers(model)
        return ir.passes.PassResult(model=model, modified=self.stats.tensors > 0)
