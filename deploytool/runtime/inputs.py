"""Seeded synthetic inputs from a model's declared inputs.

The parent process reads the graph once (:func:`plan_inputs`, needs onnx) and hands the worker a
plan; the worker makes the arrays (:func:`make_feeds`, numpy only). Rules:

- ``input_ids``: uniform integers in ``[0, vocab)``; ``vocab`` is the first dimension of the
  word-embedding table found by following ``input_ids`` into a ``Gather`` (or a fused
  ``EmbedLayerNormalization``), through Cast/DequantizeLinear/Identity, to an initializer or
  Constant; 1000 when no such table is found (the plan records which).
- ``attention_mask``: ones. ``token_type_ids`` and every other integer input: zeros. Integer inputs named
  otherwise are read by their role in the graph (:func:`input_roles`): the one indexing the word table is the
  ids, one indexing a small table the token types (zeros), one indexing none the mask (ones).
  Boolean inputs: True. Float inputs: standard normal.
- Symbolic dimension 0 is the batch, symbolic dimension 1 the sequence length; a fixed dimension
  must equal the requested batch / sequence length, else the plan refuses it.

The same seed and sequence length give the same arrays for every model, so models compared in
one call see identical inputs.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from deploytool.errors import ConfigError, InputFileError

__all__ = ["InputPlan", "InputSpec", "DEFAULT_VOCAB", "input_roles", "plan_inputs", "plan_inputs_proto",
           "make_feeds"]

DEFAULT_VOCAB = 1000
REQUIRED_INPUT = "input_ids"


@dataclasses.dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int | str | None, ...]  # ints fixed, str/None symbolic
    kind: str  # ids | mask | zeros | ones | normal
    high: int = 0  # exclusive upper bound of ids

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "kind": self.kind,
                "high": self.high}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(name=d["name"], dtype=d["dtype"], shape=tuple(d["shape"]), kind=d["kind"], high=d["high"])

    def resolve_shape(self, batch: int, seq: int) -> tuple[int, ...]:
        out = []
        for i, d in enumerate(self.shape):
            want = batch if i == 0 else seq if i == 1 else None
            if isinstance(d, int) and d > 0:
                if want is not None and d != want:
                    what = "batch" if i == 0 else "sequence length"
                    raise ConfigError(f"input {self.name} has fixed shape {list(self.shape)}: {what} {want} is not "
                                      f"possible (dimension {i} is {d})")
                out.append(d)
            elif want is not None:
                out.append(want)
            else:
                raise ConfigError(f"input {self.name}: dimension {i} of {list(self.shape)} is symbolic and is neither "
                                  "batch nor sequence; cannot make synthetic data")
        return tuple(out)


@dataclasses.dataclass(frozen=True)
class InputPlan:
    inputs: tuple[InputSpec, ...]
    vocab: int
    vocab_source: str  # initializer name, or "default"

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [i.to_dict() for i in self.inputs], "vocab": self.vocab, "vocab_source": self.vocab_source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputPlan:
        return cls(inputs=tuple(InputSpec.from_dict(i) for i in d["inputs"]), vocab=d["vocab"],
                   vocab_source=d["vocab_source"])

    def tokenizer_past_table(self, tok) -> str | None:
        """Why the tokenizer ``tok`` (its ``get_vocab()``) is another model's: it makes ids past the word table this
        plan found (ONNX Runtime's Gather fails on the first such token); None where it does not, or no table was
        found. The words follow whatever names the tokenizer."""
        vocab = tok.get_vocab() if hasattr(tok, "get_vocab") else {}
        top = max(vocab.values(), default=-1)
        if self.vocab_source == "default" or top < self.vocab:
            return None
        return (f"has token ids up to {top}, past the model's embedding table of {self.vocab} rows: it is another "
                "model's tokenizer")

    def check(self, batch: int, seq_lens: tuple[int, ...], model: str) -> None:
        """Refuse (ConfigError naming the model) a batch/sequence the model's fixed shapes cannot take."""
        for s in seq_lens:
            for spec in self.inputs:
                try:
                    spec.resolve_shape(batch, s)
                except ConfigError as e:
                    raise ConfigError(f"{model}: {e}") from None


_PASS_THROUGH = {"Cast", "DequantizeLinear", "Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten"}


def input_roles(graph) -> dict[str, str]:
    """What each integer graph input not named as the convention names it is, read off the graph: ``ids`` for the
    one that indexes the largest embedding table (``Gather``), ``zeros`` for one that indexes a small table (at most
    16 rows: token types), ``ones`` for one that indexes none (a padding mask). An encoder exported with other input
    names (``ids``, ``mask``, ``segments``) is then fed as one named by the convention (it was refused by bench, fit,
    bundle and verify-arm64, and the passes' gate fed it all-zero ids and mask)."""
    inits = {t.name: t for t in graph.initializer}
    ints = [i.name for i in graph.input if i.name not in inits and i.type.tensor_type.elem_type in (6, 7, 9, 12, 13)]
    unnamed = [n for n in ints if n not in (REQUIRED_INPUT, "attention_mask", "token_type_ids")]
    if not unnamed:
        return {}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    rows_of = {}
    for name in unnamed:  # through Cast/Identity/Squeeze to a Gather's indices
        frontier, seen, rows = [name], set(), None
        while frontier:
            v = frontier.pop()
            if v in seen:
                continue
            seen.add(v)
            for n in consumers.get(v, ()):
                if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == v:
                    t = inits.get(n.input[0])
                    if t is not None and len(t.dims) == 2:
                        rows = max(rows or 0, int(t.dims[0]))
                elif n.op_type in ("Cast", "Identity", "Squeeze", "Unsqueeze") and n.input and n.input[0] == v:
                    frontier.extend(n.output)
        rows_of[name] = rows
    tables = {n: r for n, r in rows_of.items() if r is not None}
    ids = max(tables, key=tables.get) if tables and REQUIRED_INPUT not in ints else None
    roles = {}
    for name in unnamed:
        if name == ids and tables[name] > 16:
            roles[name] = "ids"
        elif rows_of[name] is not None:
            roles[name] = "zeros"
        else:
            roles[name] = "ones"
    return roles


def _vocab_from_graph(graph, ids_name: str = "") -> tuple[int, str] | None:
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}

    def table_rows(name: str, depth: int = 0) -> tuple[int, str] | None:
        if name in inits:
            dims = list(inits[name].dims)
            return (int(dims[0]), name) if len(dims) == 2 and dims[0] > 0 else None
        node = producers.get(name)
        if node is None or depth > 4:
            return None
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    arr_shape = tuple(a.t.dims)
                    return (int(arr_shape[0]), node.name or name) if len(arr_shape) == 2 else None
            return None
        if node.op_type in _PASS_THROUGH and node.input:
            return table_rows(node.input[0], depth + 1)
        return None

    # ids may pass through a Cast (int64 -> int32) before the Gather
    id_names = {ids_name or REQUIRED_INPUT}
    for n in graph.node:
        if n.op_type == "Cast" and n.input and n.input[0] in id_names:
            id_names.update(n.output)
    for n in graph.node:
        if n.op_type == "Gather" and len(n.input) >= 2 and n.input[1] in id_names:
            found = table_rows(n.input[0])
            if found:
                return found
        # ORT's fused embedding, float or int8 (QEmbedLayerNormalization, `quantize --int8 --fusion`): table at input 2
        if n.op_type in ("EmbedLayerNormalization", "QEmbedLayerNormalization") and len(n.input) >= 3 \
                and n.input[0] in id_names:
            found = table_rows(n.input[2])
            if found:
                return found
    return None


def _vocab_from_packing_record(model) -> tuple[int, str] | None:
    """The packed word table's rows from ``pack``'s metadata record: a table that ORT's fused
    ``EmbedLayerNormalization`` reads is unpacked by a subgraph in front of it, which the graph walk above
    does not follow."""
    from deploytool.variant import packing_record

    record = packing_record({p.key: p.value for p in model.metadata_props})
    for name, info in record.items():
        shape = info.get("shape")
        if info.get("role") == "embedding" and isinstance(shape, list) and len(shape) == 2 \
                and isinstance(shape[0], int) and shape[0] > 0:
            return int(shape[0]), f"{name} (packing record)"
    return None


def plan_inputs(model_path: str | os.PathLike) -> InputPlan:
    """Read ``model_path``'s declared inputs and decide how to synthesise each (see module doc)."""
    from deploytool.onnx_io import load_proto

    return plan_inputs_proto(load_proto(model_path, load_external_data=False), model_path)


def input_kind(name: str, dtype: np.dtype) -> str | None:
    """The synthetic data an input gets (an :class:`InputSpec` kind) by its name and type; None when there is none."""
    if name == REQUIRED_INPUT:
        return "ids"
    if name == "attention_mask":
        return "ones" if dtype.kind in "iufb" else "zeros"
    return {"b": "ones", "i": "zeros", "u": "zeros", "f": "normal"}.get(dtype.kind)


def plan_inputs_proto(model, model_path: str | os.PathLike, *, require_ids: bool = True) -> InputPlan:
    """:func:`plan_inputs` of a ModelProto already in memory (``model_path`` only names it in errors).

    ``require_ids=False`` plans any model's inputs (no ``input_ids`` is then not an error).
    """
    from onnx import helper

    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    declared = [i for i in graph.input if i.name not in init_names]
    names = [i.name for i in declared]
    roles = input_roles(graph)
    ids_name = REQUIRED_INPUT if REQUIRED_INPUT in names else next((n for n, r in roles.items() if r == "ids"), "")
    if require_ids and not ids_name:
        raise InputFileError(f"{model_path}: model has no '{REQUIRED_INPUT}' input nor an integer input that indexes "
                             f"a word-embedding table (its inputs: {', '.join(names) or 'none'}); deploytool expects "
                             "a Transformer encoder")
    found = _vocab_from_graph(graph, ids_name) or _vocab_from_packing_record(model)
    vocab, source = found if found else (DEFAULT_VOCAB, "default")
    specs = []
    for i in declared:
        tt = i.type.tensor_type
        if not i.type.HasField("tensor_type") or tt.elem_type == 0:
            raise InputFileError(f"{model_path}: input {i.name} is not a tensor with a known element type")
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except Exception:
            raise InputFileError(f"{model_path}: input {i.name} has an unsupported element type "
                                 f"{tt.elem_type}") from None
        if not tt.HasField("shape"):
            raise InputFileError(f"{model_path}: input {i.name} declares no shape; cannot make synthetic data")
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        if i.name == REQUIRED_INPUT and dtype.kind not in "iu":
            raise InputFileError(f"{model_path}: input_ids has type {dtype}, expected an integer type")
        kind = roles.get(i.name) if dtype.kind in "iu" and i.name in roles else input_kind(i.name, dtype)
        if kind is None:
            raise InputFileError(f"{model_path}: input {i.name} has type {dtype}; cannot make synthetic data")
        specs.append(InputSpec(name=i.name, dtype=dtype.name, shape=shape, kind=kind,
                               high=vocab if kind == "ids" else 0))
    return InputPlan(inputs=tuple(specs), vocab=vocab, vocab_source=source)


def make_feeds(plan: InputPlan, batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    """The arrays for one (batch, seq): deterministic in (seed, seq), identical across models."""
    feeds = {}
    for spec in plan.inputs:
        rng = np.random.default_rng([seed, seq, batch, _stable_hash(spec.name)])
        shape = spec.resolve_shape(batch, seq)
        dtype = np.dtype(spec.dtype)
        if spec.kind == "ids":
            arr = rng.integers(0, max(spec.high, 1), size=shape).astype(dtype)
        elif spec.kind == "ones":
            arr = np.ones(shape, dtype=dtype)
        elif spec.kind == "zeros":
            arr = np.zeros(shape, dtype=dtype)
        else:
            arr = rng.standard_normal(shape).astype(dtype)
        feeds[spec.name] = np.ascontiguousarray(arr)
    return feeds


def _stable_hash(name: str) -> int:
    h = 2166136261
    for b in name.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h
