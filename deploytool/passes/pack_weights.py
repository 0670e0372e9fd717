"""Ternary / binary weights, really packed, runnable in stock ONNX Runtime (TernaryBERT, BinaryBERT).

Which weights: every encoder linear weight (Q/K/V/O and both FFN matrices; found with
``deploytool.graph.find_structure``, or, where the finder cannot read the graph, every MatMul/Gemm
whose B input is a 2-D float initializer) and the word embeddings (row-wise, always). By default the
pooler and classifier weights, position and token-type embeddings, LayerNorm parameters and biases
stay fp32, as in the papers. For the smallest files, ``pack_head=True`` packs the pooler/classifier
weights (every linear the finder does not place in a layer) with the encoder's scheme, and
``position_embeddings`` (``int8`` | ``ternary`` | ``binary``) packs the position and token-type tables
row-wise like the word embeddings (measured for accuracy in ``benchmarks/pack_bench.py``).

The maths (:mod:`deploytool.quant.quantizers`): TWN ternary ``W ~ alpha * t``, t in {-1,0,1},
``delta = 0.7 mean|W|``, ``alpha = mean(|W| : |W| > delta)``; BWN binary ``W ~ alpha * s``, s in
{-1,1}, ``alpha = mean|W|``; one alpha per matrix (``--granularity layer``) or per output feature
(``row``; a column of the ONNX MatMul weight ``[in, out]``).

How each runtime stores and runs a linear weight ``[K, N]`` (y = x @ W):

- ``speed`` (ternary): an ONNX ``INT2`` initializer (opset >= 25, 2 bits per weight on disk) ->
  ``Cast`` to INT8 (folded by ORT at session creation) -> ``com.microsoft.DynamicQuantizeMatMul``
  with B scale alpha (per tensor or per column): ternary values are exact in int8, so this runs on
  ORT's int8 kernels; activations are quantized to int8 dynamically (error ~1%).
- ``memory`` (ternary or binary): ``com.microsoft.MatMulNBits`` bits=2, our own packer (code
  ``t + 2``, 4 per byte, low bits first, default zero point 2, blocks along K with scale alpha), so
  the weight stays 2 bits in memory too. ``accuracy_level`` 4 quantizes activations to int8 (fast);
  0 keeps them fp32 (exact, slow).
- ``densest`` (ternary): 5 trits per byte in a uint8 initializer (1.6 bits per weight) and an
  unpacking subgraph of standard ops (Cast, Unsqueeze, Div by 3^i, Mod 3, Sub 1, Reshape, Slice,
  Cast to INT8) that ORT constant-folds at session creation, then DynamicQuantizeMatMul as above.
- binary (``speed`` or ``densest``): 1 bit per weight in a uint8 initializer plus the same kind of
  unpacking subgraph (Div by 2^i, Mod 2, *2 - 1), then DynamicQuantizeMatMul.
- split-binary (BinaryBERT's ternary weight splitting, ``qat --mode binary --tws``): each weight is
  two binary planes, ``W = alpha1 s1 + alpha2 s2`` (recovered exactly from a TWS-trained model,
  greedily from any other, :func:`~deploytool.quant.quantizers.binarize_planes`). The planes are
  stored side by side as one binary ``[K, 2N]`` weight (1 bit each, 2 bits per weight) with scales
  ``[alpha1, alpha2]`` per column; one kernel (DynamicQuantizeMatMul, or MatMulNBits for ``memory``)
  computes both, and ``Slice + Add`` sums the halves. Tables (``--embeddings split-binary``, the
  default with these weights) keep each row's two planes side by side, 2 bits per value, and sum
  them after the Gather.

Embeddings (``Gather``): the table is stored packed row-wise (2-bit codes, 5 trits, 1 bit, or int8
with a per-row scale); the rows are gathered from the packed table and unpacked at run time
(``Gather -> Cast -> Div -> Mod -> Sub -> Reshape -> Slice -> Cast -> Mul(alpha[ids])``), so the
table is never expanded to fp32 and the embedding lookups stay exact in fp32.

Every packed weight is recorded in ``metadata_props["deploytool.packing"]`` as JSON
``{name: {"scheme", "bits", "shape", "role"}}``. Post-training ternary/binary weights lose accuracy;
quantization-aware training (``deploytool qat``) recovers it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
from typing import Any, Optional

import numpy as np
import onnx_ir as ir

from deploytool.errors import ConfigError, PassRefusedError, StructureError
from deploytool.graph._util import alias_root
from deploytool.passes.base import DeployPass, DeployPassResult, Skip
from deploytool.passes.upgrade_opset import INT2_MIN_OPSET, upgrade_opset  # noqa: F401 - re-exported
from deploytool.quant import packing
from deploytool.quant.quantizers import (
    Granularity,
    binarize,
    binarize_planes,
    dequantize,
    quantize_int8_rows,
    ternarize,
)
from deploytool.validation import Flag, Integer, OneOf, schema

logger = logging.getLogger(__name__)

__all__ = [
    "FakeQuantWeightsPass",
    "Granularity",
    "PackConfig",
    "PackWeightsPass",
    "Runtime",
    "WeightScheme",
    "pack_file",
    "pack_pipeline",
    "PACKING_KEY",
    "QAT_NOTE",
]

PACKING_KEY = "deploytool.packing"
QAT_NOTE = ("post-training ternary/binary weights lose accuracy without training; recover it with "
            "quantization-aware distillation (`deploytool qat`, TernaryBERT/BinaryBERT)")
_PACKED_OPS = {"MatMulNBits", "DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QAttention",
               "QGemm", "QLinearMatMul", "DequantizeLinear"}
_LOW_BIT_TYPES = {ir.DataType.INT2, ir.DataType.UINT2, ir.DataType.INT4, ir.DataType.UINT4}


class WeightScheme(str, enum.Enum):
    TERNARY = "ternary"
    BINARY = "binary"
    SPLIT_BINARY = "split-binary"  # two binary planes per weight (BinaryBERT's TWS); tables: one plane
    INT8 = "int8"  # embeddings only
    FP32 = "fp32"  # embeddings only: leave them as they are


class Runtime(str, enum.Enum):
    SPEED = "speed"  # int8 kernels (DynamicQuantizeMatMul), INT2 / 1-bit on disk
    MEMORY = "memory"  # MatMulNBits bits=2: 2-bit in memory as well
    DENSEST = "densest"  # 5 trits per byte on disk (binary: 1 bit), int8 kernels


_LINEAR = ("ternary", "binary", "split-binary")
_TABLES = ("ternary", "binary", "split-binary", "int8", "fp32")


@schema
class PackConfig:
    """What to pack and how. ``embeddings=None`` means the same scheme as ``weights``."""

    weights: OneOf(WeightScheme, _LINEAR) = WeightScheme.TERNARY
    embeddings: Optional[OneOf(WeightScheme, _TABLES)] = None
    runtime: OneOf(Runtime) = Runtime.SPEED
    granularity: OneOf(Granularity) = Granularity.LAYER
    # MatMulNBits (runtime memory): 4 = int8 activations (fast), 0 = fp32 (exact)
    accuracy_level: Integer(0, 4, what="0 = fp32 activations, 4 = int8") = 4
    block_size: Integer(16, 256, what="a power of two") = 128  # MatMulNBits block along K
    upgrade_opset: Flag = True  # pack_file: upgrade models below opset 25 when INT2 is needed
    pack_head: Flag = False  # pooler/classifier weights too (with the encoder's scheme), not fp32
    position_embeddings: OneOf(WeightScheme, _TABLES) = WeightScheme.FP32  # position + token-type tables

    def __post_init__(self) -> None:
        if self.embeddings is None:
            object.__setattr__(self, "embeddings", self.weights)
        if self.accuracy_level not in (0, 4):
            raise ConfigError(f"accuracy_level: expected 0 (fp32 activations) or 4 (int8), got {self.accuracy_level!r}")
        if self.block_size & (self.block_size - 1):
            raise ConfigError(f"block_size: expected a power of two in [16, 256], got {self.block_size!r}")

    @property
    def linear_scheme(self) -> str:
        """The storage scheme of linear weights: ternary2 | trit5 | binary1 | nbits2."""
        if self.runtime is Runtime.MEMORY:
            return "nbits2"
        if self.weights in (WeightScheme.BINARY, WeightScheme.SPLIT_BINARY):
            return "binary1"
        return "trit5" if self.runtime is Runtime.DENSEST else "ternary2"

    @property
    def embedding_scheme(self) -> str | None:
        return self._table_scheme(self.embeddings)

    @property
    def position_scheme(self) -> str | None:
        """The storage scheme of the position and token-type tables (None: fp32)."""
        return self._table_scheme(self.position_embeddings)

    def _table_scheme(self, e: WeightScheme) -> str | None:
        if e is WeightScheme.FP32:
            return None
        if e is WeightScheme.INT8:
            return "int8"
        if e is WeightScheme.BINARY:
            return "binary1"
        if e is WeightScheme.SPLIT_BINARY:
            return "binary1x2"  # two binary planes per row, side by side
        return "trit5" if self.runtime is Runtime.DENSEST else "ternary2"

    @property
    def needs_int2(self) -> bool:
        return self.linear_scheme == "ternary2"


# --------------------------------------------------------------------------------------------------
# finding the weights


@dataclasses.dataclass
class _Target:
    """One linear weight to pack: the initializer and the MatMul/Gemm nodes using it as B."""

    weight: ir.Value
    nodes: list[ir.Node]
    layout: str  # "in_out" ([K, N]) or "out_in" ([N, K], Gemm transB=1)
    role: str


def _initializer_array(v: ir.Value | None) -> np.ndarray | None:
    if v is None or v.const_value is None or not v.is_initializer():
        return None
    if v.const_value.dtype is not ir.DataType.FLOAT:
        return None
    if len(v.const_value.shape) != 2:
        return None
    return v.const_value.numpy()


def _gemm_layout(node: ir.Node) -> str | None:
    """The B layout of a plain Gemm (alpha = beta = 1, no transA), or None when we do not rewrite it."""
    a = node.attributes
    if a.get_int("transA", 0) or a.get_float("alpha", 1.0) != 1.0 or a.get_float("beta", 1.0) != 1.0:
        return None
    return "out_in" if a.get_int("transB", 0) else "in_out"


def _roles_from_structure(model: ir.Model) -> tuple[dict[int, str], dict[str, ir.Value], str | None]:
    """Roles of linear weights (by id of the weight value) from the structure finder, if it works."""
    try:
        from deploytool.graph.structure import find_structure

        st = find_structure(model)
    except (NotImplementedError, StructureError, ImportError) as e:
        from deploytool.graph.finder import PACK_NEEDS_STRUCTURE, family_hint

        if family_hint(model) in PACK_NEEDS_STRUCTURE:
            # a family known to hold more than projections in its MatMul constants (DeBERTa's relative-
            # position projections, which ORT's optimizer folds into constants): do not guess
            raise PassRefusedError(f"{e}; packing needs that structure to tell projection weights from other "
                                   "MatMul constants") from e
        return {}, {}, f"structure finder unavailable ({type(e).__name__}: {e}); packing every MatMul/Gemm weight"
    roles: dict[int, str] = {}
    for layer in st.layers:
        for lin in layer.attention_linears():
            roles[id(lin.weight)] = "attention"
        for lin in layer.ffn_linears():
            roles[id(lin.weight)] = "ffn"
    for lin in st.other_linears:
        roles.setdefault(id(lin.weight), "other")
    return roles, dict(st.embeddings), None


def _word_embedding_gather(graph: ir.Graph, word: ir.Value | None) -> tuple[ir.Value, list[ir.Node]] | None:
    """The word-embedding table and its Gather nodes (from the finder, else the Gather fed by input_ids)."""
    if word is None:
        ids = {v.name: v for v in graph.inputs}.get("input_ids")
        if ids is None:
            return None
        for node in graph:
            if node.op_type == "Gather" and node.domain == "" and len(node.inputs) == 2 and node.inputs[1] is ids:
                if _initializer_array(node.inputs[0]) is not None:
                    word = node.inputs[0]
                    break
    if word is None:
        return None
    gathers = [n for n, idx in word.uses() if n.op_type == "Gather" and idx == 0 and n.domain == ""
               and n.attributes.get_int("axis", 0) == 0]
    return (word, gathers) if gathers else None


def _alias_uses(v: ir.Value) -> list[tuple[ir.Node, int]]:
    """Uses of ``v`` and of its ``Identity`` aliases (the aliases themselves not counted)."""
    out: list[tuple[ir.Node, int]] = []
    for n, idx in v.uses():
        if n.op_type == "Identity" and n.domain in ("", "ai.onnx"):
            out.extend(_alias_uses(n.outputs[0]))
        else:
            out.append((n, idx))
    return out


def _drop_dead_aliases(graph: ir.Graph, values: list[ir.Value]) -> None:
    for v in values:
        for n, _ in list(v.uses()):
            if n.op_type == "Identity" and not n.outputs[0].uses() and not n.outputs[0].is_graph_output():
                graph.remove(n, safe=True)


def _find_targets(model: ir.Model, pack_head: bool = False
                  ) -> tuple[list[_Target], list[Skip], tuple[ir.Value, list[ir.Node]] | None, list[str],
                             dict[str, ir.Value]]:
    graph = model.graph
    roles, tables, note = _roles_from_structure(model)
    notes = [note] if note else []
    emb = _word_embedding_gather(graph, tables.get("word"))
    emb_value = emb[0] if emb else None
    targets: dict[int, _Target] = {}
    skipped: list[Skip] = []
    for node in graph:
        if node.domain != "" or node.op_type not in ("MatMul", "Gemm") or len(node.inputs) < 2:
            continue
        alias = node.inputs[1]
        w = alias_root(alias)  # layers sharing weights (ALBERT) read one initializer through Identity
        if w is None or w is emb_value or _initializer_array(w) is None:
            continue
        layout = "in_out" if node.op_type == "MatMul" else _gemm_layout(node)
        if layout is None:
            skipped.append(Skip(node.name or node.op_type, "Gemm with transA/alpha/beta is not rewritten"))
            continue
        if roles and id(w) not in roles and id(alias) in roles:
            roles[id(w)] = roles[id(alias)]
        if roles and id(w) not in roles:
            skipped.append(Skip(node.name or node.op_type, f"weight {w.name} is not an encoder linear; stays fp32"))
            continue
        role = roles.get(id(w), "other")
        if role == "other" and roles and pack_head:
            role = "head"
        elif role == "other" and roles:
            skipped.append(Skip(node.name or node.op_type, f"{w.name} is a pooler/classifier weight; stays fp32 "
                                "as in TernaryBERT (pack_head / --pack-head packs it)"))
            continue
        t = targets.get(id(w))
        if t is None:
            targets[id(w)] = _Target(w, [node], layout, role)
        elif t.layout != layout:
            skipped.append(Skip(node.name or node.op_type, f"{w.name} is used with two layouts; left fp32"))
        else:
            t.nodes.append(node)
    result = []
    for t in targets.values():
        others = [n for n, idx in _alias_uses(t.weight) if n not in t.nodes or idx != 1]
        if others:
            skipped.append(Skip(t.nodes[0].name or "MatMul", f"{t.weight.name} also feeds {others[0].op_type}; left fp32"))
            continue
        result.append(t)
    return result, skipped, emb, notes, tables


def _other_tables(tables: dict[str, ir.Value], emb) -> tuple[list[tuple[str, ir.Value, list[ir.Node]]], list[Skip]]:
    """Position and token-type tables read only by plain Gathers (axis 0), with their Gathers."""
    out, skipped = [], []
    for key in ("position", "token_type"):
        v = tables.get(key)
        if v is None or (emb is not None and v is emb[0]):
            continue
        if _initializer_array(v) is None:
            skipped.append(Skip(f"{key}_embeddings", f"{v.name} is not a 2-D float initializer; stays fp32"))
            continue
        uses = _alias_uses(v)
        gathers = [n for n, idx in uses if n.op_type == "Gather" and n.domain == "" and idx == 0
                   and n.attributes.get_int("axis", 0) == 0]
        if not gathers or len(gathers) != len(uses):
            other = next((n.op_type for n, _ in uses if n not in gathers), "nothing")
            skipped.append(Skip(f"{key}_embeddings", f"{v.name} is read by {other}, not only by Gather; stays fp32"))
            continue
        out.append((key, v, gathers))
    return out, skipped


def _already_packed(model: ir.Model) -> str | None:
    if PACKING_KEY in model.metadata_props:
        return f"metadata '{PACKING_KEY}' is present"
    for node in model.graph.all_nodes():
        if node.op_type in _PACKED_OPS:
            return f"it contains {node.op_type} node {node.name!r}"
    for v in model.graph.initializers.values():
        if v.const_value is not None and v.const_value.dtype in _LOW_BIT_TYPES:
            return f"initializer {v.name!r} is {v.const_value.dtype.name}"
        if v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT16 and len(v.shape or ()) == 2:
            return f"initializer {v.name!r} is fp16 (a converted model)"
    return None


# --------------------------------------------------------------------------------------------------
# building the graph pieces


class _Builder:
    """Creates uniquely named initializers and nodes in one graph."""

    def __init__(self, graph: ir.Graph) -> None:
        self.graph = graph
        self.names = {v.name for v in graph.initializers.values()} | {v.name for v in graph.inputs}
        for node in graph:
            self.names.update(o.name for o in node.outputs if o.name)
        self.nodes: list[ir.Node] = []
        self._consts: dict[tuple, ir.Value] = {}
        self.count = 0

    def tag(self) -> str:
        """A short prefix for one packed weight's nodes (names cost bytes in a 1-bit file)."""
        self.count += 1
        return f"pk{self.count}"

    def const(self, array: np.ndarray) -> ir.Value:
        """A small constant initializer, shared by every subgraph that needs the same value."""
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(f"pk_c{len(self._consts)}", array)
        return self._consts[key]

    def name(self, base: str) -> str:
        base = base.replace("::", "_").replace("/", "_")
        n, i = base, 0
        while n in self.names:
            i += 1
            n = f"{base}_{i}"
        self.names.add(n)
        return n

    def init(self, base: str, array: np.ndarray, dtype: ir.DataType | None = None) -> ir.Value:
        name = self.name(base)
        tensor = ir.Tensor(array, dtype=dtype, name=name) if dtype is not None else ir.tensor(array, name=name)
        v = ir.Value(name=name, const_value=tensor, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype))
        self.graph.register_initializer(v)
        return v

    def op(self, op_type: str, inputs: list, base: str, domain: str = "", **attrs: Any) -> ir.Value:
        node = ir.node(op_type, inputs, attributes=attrs, domain=domain, name=self.name(f"{base}_{op_type}"))
        node.outputs[0].name = node.name
        self.nodes.append(node)
        return node.outputs[0]

    def take(self) -> list[ir.Node]:
        nodes, self.nodes = self.nodes, []
        return nodes


_UNPACK = {  # scheme -> (values per byte, divisors, modulus, multiplier, offset): code -> value
    "ternary2": (4, [1, 4, 16, 64], 4, 1, 2),
    "trit5": (5, [1, 3, 9, 27, 81], 3, 1, 1),
    "binary1": (8, [1, 2, 4, 8, 16, 32, 64, 128], 2, 2, 1),
}
_BITS = {"ternary2": 2.0, "trit5": 8 / 5, "binary1": 1.0, "int8": 8.0}


def _pack_codes(codes: np.ndarray, scheme: str) -> np.ndarray:
    """Pack along the last axis in chunks (rows, or runs of whole bytes of a flat array): the same bytes
    as one call, with the packers' int32 temporaries a few MB instead of several times the codes."""
    fn = {"ternary2": packing.pack_2bit, "trit5": packing.pack_trit5}.get(scheme, packing.pack_bits)
    if codes.ndim >= 2 and codes.shape[0] > _EMBEDDING_CHUNK_ROWS:
        return np.concatenate([fn(codes[i:i + _EMBEDDING_CHUNK_ROWS])
                               for i in range(0, codes.shape[0], _EMBEDDING_CHUNK_ROWS)])
    step = packing.PER_BYTE[scheme] * (1 << 20)
    if codes.ndim == 1 and codes.size > step:
        return np.concatenate([fn(codes[i:i + step]) for i in range(0, codes.size, step)])
    return fn(codes)


def _unpack_ops(b: _Builder, packed: ir.Value, scheme: str, tag: str) -> ir.Value:
    """int32 codes -> values, one new trailing axis of size per-byte: [..., bytes] -> [..., bytes, per]."""
    per, divs, mod, mult, off = _UNPACK[scheme]
    x = b.op("Cast", [packed], tag, to=ir.DataType.INT32)
    x = b.op("Unsqueeze", [x, b.const(np.array([-1], np.int64))], tag)
    x = b.op("Div", [x, b.const(np.array(divs, np.int32))], tag)
    x = b.op("Mod", [x, b.const(np.array(mod, np.int32))], tag)
    if mult != 1:
        x = b.op("Mul", [x, b.const(np.array(mult, np.int32))], tag)
    return b.op("Sub", [x, b.const(np.array(off, np.int32))], tag)


def _quantize(w_out_in: np.ndarray, config: PackConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes [P*N, K], alpha (scalar, or [P*N]) and the number of planes P of a [N, K] weight.

    split-binary stacks its two planes along N (rows of plane 1, then of plane 2), each row with its
    own scale; ternary and binary are one plane."""
    if config.weights is WeightScheme.SPLIT_BINARY:
        s1, s2, a1, a2, _ = binarize_planes(w_out_in, config.granularity)
        n = w_out_in.shape[0]
        alpha = np.concatenate([np.broadcast_to(a1, (n,)), np.broadcast_to(a2, (n,))]).astype(np.float32)
        return np.concatenate([s1, s2], 0), alpha, 2
    fn = binarize if config.weights is WeightScheme.BINARY else ternarize
    codes, alpha = fn(w_out_in, config.granularity)
    return codes, alpha, 1


def _codes_and_alpha(target: _Target, config: PackConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes in the PyTorch layout [P*N, K], alpha (scalar or [P*N]) and the planes P."""
    w = target.weight.const_value.numpy().astype(np.float32)
    return _quantize(w if target.layout == "out_in" else w.T, config)


def _planes_sum(deq: np.ndarray, planes: int) -> np.ndarray:
    """[P*N, K] dequantized planes -> [N, K], their sum."""
    return deq if planes == 1 else deq.reshape(planes, -1, deq.shape[1]).sum(axis=0, dtype=np.float32)


def fake_quantized_weight(target_weight: np.ndarray, layout: str, config: PackConfig) -> np.ndarray:
    """The fp32 weight the packed model computes with (same layout as the input weight)."""
    w_out_in = target_weight if layout == "out_in" else target_weight.T
    codes, alpha, planes = _quantize(w_out_in, config)
    deq = _planes_sum(dequantize(codes, alpha), planes)
    return deq if layout == "out_in" else deq.T.copy()


def _sum_planes(b: "_Builder", y: ir.Value, n: int, tag: str) -> ir.Value:
    """[..., 2N] -> [..., N]: the two planes' outputs added."""
    def half(lo: int, hi: int) -> ir.Value:
        return b.op("Slice", [y, b.const(np.array([lo], np.int64)), b.const(np.array([hi], np.int64)),
                              b.const(np.array([-1], np.int64))], tag)

    return b.op("Add", [half(0, n), half(n, 2 * n)], tag)


# rows of an embedding table quantized at once (each row has its own scale, so chunks give the same
# codes): bounds the float temporaries to a few MB instead of several copies of the table
_EMBEDDING_CHUNK_ROWS = 4096


def _embedding_codes(table: np.ndarray, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    if table.shape[0] > _EMBEDDING_CHUNK_ROWS:
        from deploytool.onnx_io import row_chunks

        parts = [_embedding_codes(part, scheme) for _, part in row_chunks(table, _EMBEDDING_CHUNK_ROWS)]
        return np.concatenate([c for c, _ in parts]), np.concatenate([a for _, a in parts])
    table = np.asarray(table, dtype=np.float32)
    if scheme == "int8":
        return quantize_int8_rows(table)
    if scheme == "binary1":
        return binarize(table, Granularity.ROW)
    if scheme == "binary1x2":  # codes [rows, 2H] = [s1 | s2], alpha [rows, 2]
        s1, s2, a1, a2, _ = binarize_planes(table, Granularity.ROW)
        return np.concatenate([s1, s2], 1), np.stack([a1, a2], 1).astype(np.float32)
    return ternarize(table, Granularity.ROW)


def _replace(graph: ir.Graph, old: ir.Node, new_nodes: list[ir.Node], new_out: ir.Value) -> None:
    if len(new_nodes) > 1:
        graph.insert_before(old, new_nodes[:-1])
    ir.convenience.replace_nodes_and_values(graph, old, [old], [new_nodes[-1]], [old.outputs[0]], [new_out])


def _first_in_graph(graph: ir.Graph, nodes: list[ir.Node]) -> ir.Node:
    """The node of ``nodes`` that comes first in ``graph`` (``graph.index`` walks the node list from the
    start on every call: with one call per weight that was ~14 s for a 24-layer model)."""
    if len(nodes) == 1:
        return nodes[0]
    wanted = set(map(id, nodes))
    return next(n for n in graph if id(n) in wanted)


def _pack_linear(b: _Builder, model: ir.Model, t: _Target, config: PackConfig) -> dict[str, Any]:
    graph = model.graph
    codes, alpha, planes = _codes_and_alpha(t, config)  # [P*N, K]
    n_out, k_in = codes.shape
    n_real = n_out // planes  # the layer's output features (P*N columns are computed, P planes summed)
    n_weights = n_real * k_in
    base = t.weight.name or "weight"
    tag = b.tag()
    scheme = config.linear_scheme
    first = _first_in_graph(graph, t.nodes)
    if scheme == "nbits2":
        bs = min(config.block_size, max(16, 1 << (k_in - 1).bit_length()))
        nb = -(-k_in // bs)
        padded = np.zeros((n_out, nb * bs), np.int8)
        padded[:, :k_in] = codes
        blob = packing.pack_2bit(padded).reshape(n_out, nb, bs // 4)
        b_val = b.init(f"{base}_nbits2", blob)
        a_col = np.broadcast_to(alpha, (n_out,)) if alpha.ndim == 0 else alpha
        s_val = b.init(f"{base}_scales", np.repeat(a_col, nb).astype(np.float32))
        packed_bytes = blob.nbytes + n_out * nb * 4
        for node in t.nodes:
            bias = node.inputs[2] if node.op_type == "Gemm" and len(node.inputs) > 2 else None
            fold = bias if planes == 1 else None
            inputs = [node.inputs[0], b_val, s_val] + ([None, None, fold] if fold is not None else [])
            out = b.op("MatMulNBits", inputs, tag, domain="com.microsoft", K=k_in, N=n_out, bits=2,
                       block_size=bs, accuracy_level=config.accuracy_level)
            if planes > 1:
                out = _sum_planes(b, out, n_real, tag)
                if bias is not None:
                    out = b.op("Add", [out, bias], tag)
            _replace(graph, node, b.take(), out)
        scheme = {WeightScheme.TERNARY: "ternary2", WeightScheme.BINARY: "binary2"}.get(config.weights, "binary2x2")
        return {"scheme": scheme, "bits": packed_bytes * 8 / n_weights, "shape": [k_in, n_real],
                "bytes": packed_bytes}
    codes_kn = np.ascontiguousarray(codes.T)  # DynamicQuantizeMatMul wants B as [K, N]
    if scheme == "ternary2":
        b_val = b.init(f"{base}_int2", codes_kn, dtype=ir.DataType.INT2)
        wq = b.op("Cast", [b_val], tag, to=ir.DataType.INT8)
        packed_bytes = -(-codes.size // 4)
    else:
        flat = _pack_codes(codes_kn.reshape(-1), scheme)
        b_val = b.init(f"{base}_{scheme}", flat)
        x = _unpack_ops(b, b_val, scheme, tag)
        if codes.size % _UNPACK[scheme][0]:  # padding at the end: flatten and cut it off
            x = b.op("Reshape", [x, b.const(np.array([-1], np.int64))], tag)
            x = b.op("Slice", [x, b.const(np.array([0], np.int64)), b.const(np.array([codes.size], np.int64))], tag)
        x = b.op("Reshape", [x, b.const(np.array([k_in, n_out], np.int64))], tag)
        wq = b.op("Cast", [x], tag, to=ir.DataType.INT8)
        packed_bytes = flat.nbytes
    s_val = b.init(f"{base}_alpha", np.asarray(alpha, np.float32).reshape(-1))
    prep = b.take()
    graph.insert_before(first, prep)
    for node in t.nodes:
        bias = node.inputs[2] if node.op_type == "Gemm" and len(node.inputs) > 2 else None
        add = _bias_add(node, n_out) if bias is None and planes == 1 else None
        if add is not None:  # fold the bias Add into the kernel (one elementwise pass less)
            bias = next(v for v in add.inputs if v is not node.outputs[0])
        fold = bias if planes == 1 else None
        inputs = [node.inputs[0], wq, s_val] + ([None, fold] if fold is not None else [])
        out = b.op("DynamicQuantizeMatMul", inputs, tag, domain="com.microsoft")
        if planes > 1:
            out = _sum_planes(b, out, n_real, tag)
            if bias is not None:
                out = b.op("Add", [out, bias], tag)
        if add is not None:
            graph.insert_before(node, b.take())
            ir.convenience.replace_nodes_and_values(graph, node, [node, add], [], [add.outputs[0]], [out])
        else:
            _replace(graph, node, b.take(), out)
    packed_bytes += alpha.size * 4
    if planes > 1:
        scheme = f"{scheme}x{planes}"
    return {"scheme": scheme, "bits": packed_bytes * 8 / n_weights, "shape": [k_in, n_real], "bytes": packed_bytes}


def _bias_add(node: ir.Node, n_out: int) -> ir.Node | None:
    """The ``Add(MatMul, bias)`` right after ``node`` when bias is a float [N] initializer and the sole use."""
    uses = list(node.outputs[0].uses())
    if len(uses) != 1 or node.outputs[0] in node.graph.outputs:
        return None
    add, _ = uses[0]
    if add.op_type != "Add" or add.domain != "" or len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] is node.outputs[0] else add.inputs[0]
    if other is None or other is node.outputs[0] or not other.is_initializer() or other.const_value is None:
        return None
    if other.const_value.dtype is not ir.DataType.FLOAT or list(other.const_value.shape) != [n_out]:
        return None
    return add


def _pack_embedding(b: _Builder, model: ir.Model, table_v: ir.Value, gathers: list[ir.Node],
                    scheme: str) -> dict[str, Any]:
    graph = model.graph
    table = table_v.const_value.numpy()  # float32 row chunks are made inside _embedding_codes
    vocab, hidden = table.shape
    codes, alpha = _embedding_codes(table, scheme)
    base = table_v.name or "word_embeddings"
    tag = b.tag()
    planes = 2 if scheme == "binary1x2" else 1
    bit_scheme = "binary1" if planes > 1 else scheme
    width = codes.shape[1]  # hidden, or 2 * hidden for two planes
    if scheme == "int8":
        t_val = b.init(f"{base}_int8", codes)
        nbytes = codes.nbytes
    else:
        packed = _pack_codes(codes, bit_scheme)
        t_val = b.init(f"{base}_{scheme}", packed)
        nbytes = packed.nbytes
    a_val = b.init(f"{base}_alpha", alpha.astype(np.float32))
    for g in gathers:
        ids = g.inputs[1]
        rows = b.op("Gather", [t_val, ids], tag, axis=0)
        if scheme == "int8":
            x = rows
        else:
            x = _unpack_ops(b, rows, bit_scheme, tag)
            lead = b.op("Shape", [rows], tag, end=-1)
            shape = b.op("Concat", [lead, b.const(np.array([-1], np.int64))], tag, axis=0)
            x = b.op("Reshape", [x, shape], tag)
            if width % _UNPACK[bit_scheme][0]:
                x = b.op("Slice", [x, b.const(np.array([0], np.int64)), b.const(np.array([width], np.int64)),
                                   b.const(np.array([-1], np.int64))], tag)
        x = b.op("Cast", [x], tag, to=ir.DataType.FLOAT)
        a = b.op("Gather", [a_val, ids], tag, axis=0)
        a = b.op("Unsqueeze", [a, b.const(np.array([-1], np.int64))], tag)
        if planes > 1:  # [..., 2H] -> [..., 2, H], times [..., 2, 1], planes summed -> [..., H]
            lead = b.op("Shape", [ids], tag)
            shape = b.op("Concat", [lead, b.const(np.array([planes, hidden], np.int64))], tag, axis=0)
            x = b.op("Reshape", [x, shape], tag)
            out = b.op("ReduceSum", [b.op("Mul", [x, a], tag), b.const(np.array([-2], np.int64))], tag, keepdims=0)
        else:
            out = b.op("Mul", [x, a], tag)
        _replace(graph, g, b.take(), out)
    nbytes += alpha.nbytes
    return {"scheme": scheme, "bits": nbytes * 8 / table.size, "shape": [vocab, hidden], "bytes": nbytes}


def _fused_qkv_nodes(graph: ir.Graph) -> tuple[list[ir.Node], list[Skip]]:
    """com.microsoft ``Attention`` nodes (ORT's fused graphs) whose packed QKV weight [K, 3A] is a
    float initializer: Q, K and V are three matrices side by side."""
    out: list[ir.Node] = []
    skipped: list[Skip] = []
    for node in graph:
        if node.domain != "com.microsoft" or node.op_type != "Attention" or len(node.inputs) < 2:
            continue
        w = alias_root(node.inputs[1])
        arr = _initializer_array(w)
        sizes = node.attributes.get_ints("qkv_hidden_sizes", None)
        if arr is None or arr.shape[1] % 3 or (sizes and len(set(sizes)) != 1):
            skipped.append(Skip(node.name or "Attention", "fused Attention weight is not one float [K, 3A] "
                                "initializer with equal Q/K/V sizes; left fp32"))
            continue
        if any(n is not node for n, _ in _alias_uses(w)):
            skipped.append(Skip(node.name or "Attention", f"{w.name} also feeds another node; left fp32"))
            continue
        out.append(node)
    return out, skipped


def _qkv_codes(arr: np.ndarray, config: PackConfig) -> tuple[np.ndarray, np.ndarray]:
    """Codes [3A, K] and per-column alpha [3A]: Q, K and V quantized as three matrices (as unfused)."""
    a = arr.shape[1] // 3
    codes, alphas = [], []
    for i in range(3):
        c, al, _ = _quantize(np.ascontiguousarray(arr[:, i * a:(i + 1) * a].T), config)
        codes.append(c)
        alphas.append(np.broadcast_to(al, (c.shape[0],)) if al.ndim == 0 else al)
    return np.concatenate(codes, 0), np.concatenate(alphas).astype(np.float32)


def _qkv_fake_quantized(arr: np.ndarray, config: PackConfig) -> np.ndarray:
    """The fp32 [K, 3A] QKV weight the packed Attention computes with."""
    deq = dequantize(*_qkv_codes(arr, config))  # [3 * P * A, K]
    planes = 2 if config.weights is WeightScheme.SPLIT_BINARY else 1
    if planes > 1:
        deq = deq.reshape(3, planes, -1, deq.shape[1]).sum(axis=1, dtype=np.float32).reshape(-1, deq.shape[1])
    return deq.T.copy()


def _pack_fused_qkv(b: _Builder, model: ir.Model, node: ir.Node, config: PackConfig) -> dict[str, Any]:
    """Store the QKV weight packed (5 trits or 8 bits per byte) and unpack it to fp32 in front of the
    Attention node, which only takes a float weight: ORT folds the unpacking at session creation, so
    the file shrinks and the computation is the fake-quantized fp32 weight's, exactly."""
    graph = model.graph
    w = alias_root(node.inputs[1])
    arr = w.const_value.numpy().astype(np.float32)
    k_in, n3 = arr.shape
    codes, alpha = _qkv_codes(arr, config)  # [3 * P * A, K]: Q's planes, K's, V's
    planes = 2 if config.weights is WeightScheme.SPLIT_BINARY else 1
    codes_kn = np.ascontiguousarray(codes.T)
    scheme = "trit5" if config.weights is WeightScheme.TERNARY else "binary1"
    tag = b.tag()
    flat = _pack_codes(codes_kn.reshape(-1), scheme)
    b_val = b.init(f"{w.name or 'qkv'}_{scheme}", flat)
    x = _unpack_ops(b, b_val, scheme, tag)
    x = b.op("Reshape", [x, b.const(np.array([-1], np.int64))], tag)
    if codes.size % _UNPACK[scheme][0]:
        x = b.op("Slice", [x, b.const(np.array([0], np.int64)), b.const(np.array([codes.size], np.int64))], tag)
    x = b.op("Reshape", [x, b.const(np.array([k_in, n3 * planes], np.int64))], tag)
    x = b.op("Cast", [x], tag, to=ir.DataType.FLOAT)
    a_val = b.init(f"{w.name or 'qkv'}_alpha", alpha)
    x = b.op("Mul", [x, a_val], tag)
    if planes > 1:  # [K, 3 * 2A] (Q1 Q2 K1 K2 V1 V2) -> [K, 3, 2, A] -> sum the planes -> [K, 3A]
        x = b.op("Reshape", [x, b.const(np.array([k_in, 3, planes, n3 // 3], np.int64))], tag)
        x = b.op("ReduceSum", [x, b.const(np.array([2], np.int64))], tag, keepdims=0)
        x = b.op("Reshape", [x, b.const(np.array([k_in, n3], np.int64))], tag)
    graph.insert_before(node, b.take())
    node.replace_input_with(1, x)
    packed_bytes = flat.nbytes + alpha.nbytes
    return {"scheme": scheme if planes == 1 else f"{scheme}x{planes}", "bits": packed_bytes * 8 / (k_in * n3),
            "shape": [k_in, n3], "bytes": packed_bytes,
            "note": "fused Attention QKV: packed in the file, unpacked to fp32 when the session is created"}


def _drop_unused(graph: ir.Graph, values: list[ir.Value]) -> None:
    for v in values:
        if not v.uses() and v.name in graph.initializers and v not in graph.outputs:
            del graph.initializers[v.name]


# --------------------------------------------------------------------------------------------------
# the passes


class PackWeightsPass(DeployPass):
    """Quantize encoder linear weights and word embeddings to ternary/binary and pack them (see module doc)."""

    reference_label = "the fake-quantized fp32 model's"  # the input with the quantizer's weights
    # the gate builds the fake-quantized fp32 reference (a temporary file, written tensor by tensor) only
    # below this input size: above it the output must still load and run
    GATE_REFERENCE_MAX_BYTES = 1_000_000_000

    def __init__(self, config: PackConfig) -> None:
        super().__init__()
        self.config = config
        self._reference_dir: str | None = None

    def variant_step(self, result) -> dict:
        c = self.config
        w = c.weights.value if isinstance(c.weights, WeightScheme) else str(c.weights)
        r = c.runtime.value if isinstance(c.runtime, Runtime) else str(c.runtime)
        # two binary planes are a binary model (2 bits per weight): the variant's precision is "binary"
        return {"step": f"pack({w},{r})", "precision": "binary" if c.weights is WeightScheme.SPLIT_BINARY else w}

    def gate_reference(self, src):
        """The input with its weights replaced by the quantizer's fp32 values (:class:`FakeQuantWeightsPass`):
        with fp32 activations (``memory``, accuracy level 0) the packed model must equal it; with int8
        activations it must keep cosine >= 0.9 to it (a wrong code or scale does not)."""
        from deploytool import onnx_io
        from deploytool.passes.base import file_size

        try:
            if file_size(src) > self.GATE_REFERENCE_MAX_BYTES:  # external data included
                return None  # the output still has to load and run; the reference would be another full copy
        except OSError:
            return None
        import tempfile

        model = onnx_io.load_model(src)  # memory maps; the fake-quantized weights are computed as written
        FakeQuantWeightsPass(self.config)(model)
        self.gate_done()
        self._reference_dir = tempfile.mkdtemp(prefix="deploytool-pack-ref-")
        ref = onnx_io.save_streamed(model, os.path.join(self._reference_dir, "reference.onnx"))
        exact = self.config.runtime is Runtime.MEMORY and self.config.accuracy_level == 0
        return ref, (None if exact else 0.9)

    def gate_done(self) -> None:
        if self._reference_dir is not None:
            import shutil

            shutil.rmtree(self._reference_dir, ignore_errors=True)
            self._reference_dir = None

    def requires_input(self, model: ir.Model) -> None:
        why = _already_packed(model)
        if why:  # checked by pack_pipeline before its opset upgrade too
            raise PassRefusedError(f"model is already packed or quantized ({why}); pack the fp32 model instead")

    def requires(self, model: ir.Model) -> None:
        self.requires_input(model)
        opset = model.opset_imports.get("", 0)
        if self.config.needs_int2 and opset < INT2_MIN_OPSET:
            raise PassRefusedError(
                f"opset {opset} is too old for INT2 weights (runtime speed needs opset >= {INT2_MIN_OPSET}); "
                "let pack upgrade it (upgrade_opset=True) or use --runtime densest or memory")
        if opset < 15 and {self.config.embedding_scheme, self.config.position_scheme} - {None, "int8"}:
            raise PassRefusedError(f"opset {opset} is too old for packed embeddings (needs >= 15)")

    def ensures(self, model: ir.Model) -> None:
        from deploytool.errors import VerificationError

        try:
            record = json.loads(model.metadata_props.get(PACKING_KEY, "{}"))
        except ValueError:
            record = {}
        if not record:
            raise VerificationError(f"PackWeightsPass wrote no '{PACKING_KEY}' record; nothing written")

    def call(self, model: ir.Model) -> DeployPassResult:
        cfg = self.config
        targets, skipped, emb, notes, tables = _find_targets(model, cfg.pack_head)
        fused, fused_skips = _fused_qkv_nodes(model.graph)
        skipped += fused_skips
        if not targets and not fused:
            raise PassRefusedError("no MatMul/Gemm with a 2-D float weight initializer to pack "
                                   "(is this an encoder exported to ONNX?)")
        graph = model.graph
        b = _Builder(graph)
        record: dict[str, dict[str, Any]] = {}
        per_role: dict[str, dict[str, int]] = {}

        def account(role: str, before: int, after: int) -> None:
            r = per_role.setdefault(role, {"bytes_before": 0, "bytes_after": 0, "weights": 0})
            r["bytes_before"] += before
            r["bytes_after"] += after
            r["weights"] += 1

        old = []
        for t in targets:
            info = _pack_linear(b, model, t, cfg)
            before = t.weight.const_value.nbytes
            account(t.role, before, info.pop("bytes"))
            record[t.weight.name] = {**info, "role": t.role}
            old.append(t.weight)
        for node in fused:
            w = alias_root(node.inputs[1])
            info = _pack_fused_qkv(b, model, node, cfg)
            account("attention", w.const_value.nbytes, info.pop("bytes"))
            record[w.name] = {**info, "role": "attention"}
            old.append(w)
        if emb is not None and cfg.embedding_scheme is not None:
            table_v, gathers = emb
            info = _pack_embedding(b, model, table_v, gathers, cfg.embedding_scheme)
            account("embedding", table_v.const_value.nbytes, info.pop("bytes"))
            record[table_v.name] = {**info, "role": "embedding"}
            old.append(table_v)
        elif emb is None:
            skipped.append(Skip("word_embeddings", "no word-embedding Gather found; embeddings stay fp32"))
        else:
            skipped.append(Skip(emb[0].name, "--embeddings fp32: word embeddings stay fp32"))
        if cfg.position_scheme is not None:
            others, why = _other_tables(tables, emb)
            skipped += why
            for key, table_v, gathers in others:
                before = table_v.const_value.nbytes
                info = _pack_embedding(b, model, table_v, gathers, cfg.position_scheme)
                account(key, before, info.pop("bytes"))
                record[table_v.name] = {**info, "role": key}
                old.append(table_v)
        _drop_dead_aliases(graph, old)
        _drop_unused(graph, old)
        if any(n.domain == "com.microsoft" for n in graph):
            model.opset_imports.setdefault("com.microsoft", 1)
        model.metadata_props[PACKING_KEY] = json.dumps(record, sort_keys=True)
        n_w = sum(int(np.prod(r["shape"])) for r in record.values())
        bits = sum(r["bits"] * int(np.prod(r["shape"])) for r in record.values()) / max(n_w, 1)
        stats: dict[str, Any] = {
            "weights_packed": len(record),
            "params_packed": n_w,
            "bits_per_weight": round(bits, 3),
            "weights": cfg.weights.value,
            "embeddings": cfg.embeddings.value,
            "position_embeddings": cfg.position_embeddings.value,
            "pack_head": cfg.pack_head,
            "runtime": cfg.runtime.value,
            "granularity": cfg.granularity.value,
            "by_role": per_role,
            "note": QAT_NOTE,
        }
        if notes:
            stats["structure"] = notes[0]
        return DeployPassResult(model, modified=True, stats=stats, skipped=skipped)


class FakeQuantWeightsPass(DeployPass):
    """Reference for the proofs: replace the same weights by their fp32 quantized values (no packing).

    The packed model computes with exactly these weights; comparing the two isolates the packing.
    """

    def __init__(self, config: PackConfig) -> None:
        super().__init__()
        self.config = config

    def call(self, model: ir.Model) -> DeployPassResult:
        cfg = self.config
        targets, skipped, emb, _, tables = _find_targets(model, cfg.pack_head)
        # lazily: each weight is quantized when the model is written (one at a time), not all at once
        for t in targets:
            _replace_lazily(t.weight, lambda w, layout=t.layout: fake_quantized_weight(
                w.astype(np.float32), layout, cfg))
        fused, _ = _fused_qkv_nodes(model.graph)
        for node in fused:
            _replace_lazily(alias_root(node.inputs[1]), lambda w: _qkv_fake_quantized(w.astype(np.float32), cfg))
        if emb is not None and cfg.embedding_scheme is not None:
            _replace_lazily(emb[0], lambda w: _dequantized_embedding(w, cfg.embedding_scheme))
        if cfg.position_scheme is not None:
            for _, table_v, _ in _other_tables(tables, emb)[0]:
                _replace_lazily(table_v, lambda w: _dequantized_embedding(w, cfg.position_scheme))
        return DeployPassResult(model, modified=True, stats={"weights_replaced": len(targets)}, skipped=skipped)


def _dequantized_embedding(table: np.ndarray, scheme: str) -> np.ndarray:
    """``dequantize(*_embedding_codes(table, scheme))`` row chunk by row chunk (each row has its own
    scale: the same values, with temporaries of a few MB instead of three copies of the table)."""
    from deploytool.onnx_io import row_chunks

    out = np.empty(table.shape, dtype=np.float32)
    for i, part in row_chunks(table, _EMBEDDING_CHUNK_ROWS):
        codes, alpha = _embedding_codes(part, scheme)
        if scheme == "binary1x2":
            h = part.shape[1]
            out[i:i + len(part)] = codes[:, :h] * alpha[:, :1] + codes[:, h:] * alpha[:, 1:]
        else:
            out[i:i + len(part)] = dequantize(codes, alpha)
    return out


def _replace_lazily(v: ir.Value, fn) -> None:
    """``v``'s tensor becomes ``fn(its array)`` (float32, same shape), computed when it is read."""
    src = v.const_value
    name = v.name

    def compute() -> ir.Tensor:
        return ir.Tensor(np.ascontiguousarray(fn(src.numpy()), dtype=np.float32), name=name)

    v.const_value = ir.LazyTensor(compute, dtype=ir.DataType.FLOAT, shape=ir.Shape(list(src.shape)), name=name)


def pack_pipeline(config: PackConfig) -> DeployPass:
    """The passes ``pack`` runs, in order: the opset upgrade when INT2 weights need it
    (:class:`~deploytool.passes.upgrade_opset.UpgradeOpsetPass`, ``upgrade_opset=True``), the packing,
    and for the int8-activation runtimes the residual Add->Sum rewrite, which keeps Add+LayerNorm out of
    ORT's slow SkipLayerNormalization CPU kernel as int8 does (:mod:`deploytool.passes.residual_sum`)."""
    from deploytool.passes.base import PassSequence
    from deploytool.passes.residual_sum import ResidualAddsToSumPass
    from deploytool.passes.upgrade_opset import UpgradeOpsetPass

    passes: list[DeployPass] = []
    if config.needs_int2 and config.upgrade_opset:
        passes.append(UpgradeOpsetPass(INT2_MIN_OPSET))
    main = len(passes)
    passes.append(PackWeightsPass(config))
    if config.runtime is not Runtime.MEMORY or config.accuracy_level == 4:
        passes.append(ResidualAddsToSumPass())
    return PassSequence(passes, main=main)


def pack_file(src: str | os.PathLike, dst: str | os.PathLike, config: PackConfig, *,
              verify: bool = True) -> DeployPassResult:
    """Pack ``src`` into ``dst`` (atomic; the input is never modified): :func:`deploytool.passes.transform`
    runs :func:`pack_pipeline` through the one file runner. See the module docstring.

    ``verify``: run the output once in ONNX Runtime before writing it (see ``base.run_pass_file``).
    """
    from deploytool.passes import transform

    return transform(src, dst, config, verify=verify)
