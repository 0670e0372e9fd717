"""``inspect_model``: what an ONNX encoder is made of (structure, parameters, storage, ops, FLOPs).

Structure comes from :func:`deploytool.graph.find_structure` (roles by graph structure). When the
finder cannot read the graph, the report still lists sizes, dtypes, ops and I/O and carries the
finder's reason in ``structure_error`` (nothing is guessed).

Parameters. A *parameter* is a constant tensor (initializer or Constant node) that the model reads
as a weight: floating tensors of more than one element, every projection weight and bias, low-bit
integer weights (int8/uint8/int4/int2) feeding a projection or an embedding lookup, any tensor of more
than one element that a ``DequantizeLinear`` turns back into a weight (QDQ graphs: int32 biases), and tensors
listed in ``metadata_props["deploytool.packing"]`` (counted with their logical shape and real bits).
Index/shape tensors (int64/int32), scalars and quantization scales/zero points are not parameters;
scales and zero points still count in the bytes of their role. The role of a tensor is the role of
the node that reads it: *embeddings* (everything upstream of the first layer), *attention* (a layer
from its input to the LayerNorm after the attention residual), *ffn* (the rest of the layer),
*other* (pooler, classifier, anything after the last layer; everything when the structure is not
recognised, whose roles are unknown: the text says so instead of printing zeros). Constant-only subgraphs (e.g. weight
unpacking) take the role of the node their result feeds. A whole ALiBi table (JinaBERT's ``[1, heads, N, N]``
buffer, :mod:`deploytool.graph.alibi`) is a buffer, not a parameter: its bytes are reported apart
(``alibi_table_bytes``; every pass writes it as the computation of its values, whose per-head slopes are not
parameters either).

Each distinct weight is counted once: an Identity alias is its source, and a stored tensor whose values repeat
another's bytes (or its transpose's; a fused QKV is compared third by third) is a copy (:class:`_Distinct`: ALBERT's
shared layer stored per layer, ORT's per-layer concatenated QKV beside the Q, K and V it came from). Its bytes are
``duplicate_bytes``, apart from the roles'. All-equal tensors are never merged by value.

FLOPs (batch 1, ``seq_len`` tokens), one multiply-add = 2 FLOPs: every projection 2*T*in*out with
T = seq_len (T = 1 for heads after a CLS/mean pooling), plus per layer the attention scores Q.K^T
and the context P.V, 2*S*S*heads*head_size each. LayerNorm, softmax, activations, bias adds and
embedding lookups are not counted (a few % of the total at these sizes). Without a recognised structure the
FLOPs are unknown, not zero: ``flops`` and ``flops_by_part`` are None and ``flops_unknown_reason`` names the node.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from deploytool import onnx_io
from deploytool.choices import config
from deploytool.errors import ConfigError, StructureError
from deploytool.graph.alibi import alibi_table_bytes, computed_alibi_slopes
from deploytool.graph._util import (ConstCone, alias_root, const_tensor, is_byte_table, is_unpack_lookup, small_const,
                                    static_shape)
from deploytool.graph.canonical import TRANSPOSED_FROM, canonicalize
from deploytool.graph.roles import AttentionBlock
from deploytool.graph.structure import EncoderStructure, Linear, find_structure
from deploytool.graph.weights import identical

logger = logging.getLogger(__name__)

__all__ = ["InspectConfig", "InspectReport", "LayerInfo", "inspect_model", "inspect_loaded"]

ROLES = ("embeddings", "attention", "ffn", "other")
_DTYPE_NAMES = {"FLOAT": "fp32", "FLOAT16": "fp16", "BFLOAT16": "bf16", "DOUBLE": "fp64", "INT8": "int8",
                "UINT8": "uint8", "INT4": "int4", "UINT4": "uint4", "INT2": "int2", "UINT2": "uint2"}
_LOW_BIT = {"INT8", "UINT8", "INT4", "UINT4", "INT2", "UINT2"}
# (op_type, input index) pairs holding quantization scales / zero points, not weights
_QUANT_AUX = {("MatMulInteger", 2), ("MatMulInteger", 3), ("DynamicQuantizeMatMul", 2),
              ("DynamicQuantizeMatMul", 3), ("MatMulNBits", 2), ("MatMulNBits", 3), ("MatMulNBits", 4),
              ("DequantizeLinear", 1), ("DequantizeLinear", 2), ("QuantizeLinear", 1), ("QuantizeLinear", 2),
              ("MatMulIntegerToFloat", 2), ("MatMulIntegerToFloat", 3), ("MatMulIntegerToFloat", 4),
              ("MatMulIntegerToFloat", 5)}
_POOLING = {"ReduceMean", "ReduceSum", "ReduceMax", "GlobalAveragePool"}


@config
@dataclasses.dataclass(frozen=True)
class InspectConfig:
    """seq_len: tokens per sequence for the FLOPs count (batch 1)."""

    seq_len: int = 128

    def __post_init__(self) -> None:
        from deploytool.units import MAX_SEQ_LEN

        if not isinstance(self.seq_len, int) or isinstance(self.seq_len, bool) or not 1 <= self.seq_len <= MAX_SEQ_LEN:
            raise ConfigError(f"seq_len: must be an integer in [1, {MAX_SEQ_LEN}], got {self.seq_len!r}")


@dataclasses.dataclass
class LayerInfo:
    index: int
    num_heads: int
    head_size: int
    ffn_width: int
    activation: str
    fused_attention: bool
    # False where a LayerNorm normalizes all heads' Q or K features together (QK norm): heads can be reordered, not
    # removed
    heads_removable: bool = True
    # the width of each FFN where a layer stacks several (MobileBERT's num_feedforward_networks): ffn_width is their
    # sum (the layer's neurons, numbered across them); empty for one FFN
    ffn_stack: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class InspectReport:
    path: str
    file_bytes: int
    opset: dict[str, int]
    producer: str
    num_nodes: int
    num_initializers: int
    family: str | None
    exporter: str | None
    structure_error: str | None
    hidden_size: int | None
    layers: list[LayerInfo]
    params_by_role: dict[str, int]
    bytes_by_role: dict[str, int]
    weights_by_dtype: dict[str, dict[str, float]]  # dtype -> tensors, params, bytes, bits_per_param
    op_histogram: dict[str, int]
    seq_len: int
    # None (JSON null) when the FLOPs are unknown, not zero: flops_unknown_reason then says why
    flops: int | None
    flops_by_part: dict[str, int] | None
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    metadata: dict[str, str]
    # whole ALiBi tables (buffers of -slope * |i - j|, not weights): their bytes, counted apart from the parameters
    alibi_table_bytes: int = 0
    # why flops and flops_by_part are null (the node the structure finder could not read); null when they are known
    flops_unknown_reason: str | None = None
    # bytes of stored tensors that repeat values counted elsewhere in the file (see _Distinct): in file_bytes, not in
    # bytes_by_role
    duplicate_bytes: int = 0
    # what the figures cannot be taken for (a FLOPs length the model cannot run)
    notes: list[str] = dataclasses.field(default_factory=list)
    # parameters not in total_params: each further read of an all-equal tensor the exporter stored once (an
    # untrained model's unit LayerNorm scales and zero biases), as if it were a parameter of its own (see notes)
    merged_equal_params: int = 0
    # what the weights were trained for (``deploytool qat``'s record in deploytool.variant, variant.Trained's JSON:
    # method, mode, granularity, tws, embeddings, act_bits, width, depth); None for a model without one
    trained: dict[str, Any] | None = None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def total_params(self) -> int:
        return sum(self.params_by_role.values())

    @property
    def params_each_read(self) -> int:
        """``total_params`` with every read of a merged all-equal tensor counted: the same for files of one model
        however a writer stored its equal tensors (what fit and the report compare as the kept-parameter proxy)."""
        return self.total_params + self.merged_equal_params

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["num_layers"] = self.num_layers
        d["total_params"] = self.total_params
        d["heads_per_layer"] = [layer.num_heads for layer in self.layers]
        d["ffn_per_layer"] = [layer.ffn_width for layer in self.layers]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        return _render_text(self)


def inspect_model(path: str | os.PathLike, seq_len: int = 128) -> InspectReport:
    """Load ``path`` and describe it (see the module docstring for what is counted)."""
    from deploytool.choices import as_path

    seq_len = InspectConfig(seq_len).seq_len
    if isinstance(path, bytes):  # a bytes path names the file as a str does (transform takes one too)
        path = os.fsdecode(path)
    as_path(path, "path", "an .onnx file path")  # None or a number: ConfigError, not a TypeError
    data_files: list[Path] = []
    model = onnx_io.load_model(path, data_files=data_files)
    return inspect_loaded(model, seq_len=seq_len, path=path, data_files=data_files)


def inspect_loaded(model: ir.Model, seq_len: int = 128, path: str | os.PathLike | None = None,
                   data_files: list[Path] | None = None) -> InspectReport:
    """Describe an already loaded model (``path`` and its external-data files ``data_files`` only for the file
    size; the files are looked up when not given)."""
    graph = model.graph
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in graph)
    num_nodes, num_initializers = len(graph), len(graph.initializers)  # the file's, as are the ops
    structure: EncoderStructure | None = None
    error: str | None = None
    try:
        # the graph a pass reads (graph/canonical): ORT's static-shape Gemm as its MatMul + Add, the transposed
        # weights and shape arithmetic of an export without constant folding as a folded export stores them
        canonicalize(model)
        structure = find_structure(model)
    except StructureError as e:
        error = str(e)
    except Exception as e:  # a finder bug must not hide the rest of the report; say so in it
        logger.debug("structure finder failed", exc_info=True)
        error = f"structure finder failed on this graph ({type(e).__name__}: {e}); please report it"
    meta = dict(model.metadata_props)
    packing = packing_record(meta)
    roles = _node_roles(graph, structure)
    tables = alibi_table_bytes(model)
    params, nbytes, by_dtype, distinct = _parameters(graph, roles, packing, structure,
                                                     skip=set(tables) | computed_alibi_slopes(model))
    flops, parts = (_flops(structure, seq_len) if structure is not None else (None, None))
    notes = _length_notes(graph, structure, seq_len, meta)
    folded = _folded_position_projections(structure)
    if folded:
        notes.append(f"the relative-position projections are folded into {folded[0]} constant(s) ({folded[1]:,} "
                     "values, counted as parameters; ONNX Runtime's optimizer and torch's dynamo exporter fold them): "
                     "the relative-position table, its LayerNorm and any own position-projection weights they were "
                     "computed from are not in the file, so the parameter count is the file's, not the source "
                     "model's (a TorchScript or optimum export before ORT's optimizer has them)")
    equal, more = distinct.hidden_equal()
    if equal:
        notes.append(f"{equal} all-equal weight tensor(s) (unit LayerNorm scales, zero biases: an untrained model's) "
                     f"are stored once and read by several nodes, so they are counted once: if they were parameters "
                     f"of their own that the exporter merged for being equal, as TorchScript does, the model has "
                     f"{more:,} more ({sum(params.values()) + more:,} in all)")
    if distinct.duplicate_tensors:
        notes.append(f"{distinct.duplicate_tensors} stored tensor(s) repeat the values of weights stored elsewhere "
                     f"in the file ({_size(distinct.duplicate_bytes)}: a shared layer stored per layer, a fused QKV "
                     "beside its Q, K and V, a transposed copy): each weight is counted once")
    layers = []
    if structure is not None:
        for layer in structure.layers:
            a = layer.attention
            stack = [int(f.width) for f in layer.ffns] if len(layer.ffns) > 1 else []
            layers.append(LayerInfo(layer.index, a.num_heads, a.head_size, layer.ffn_width, layer.ffn.activation,
                                    a.fused is not None, not a.head_norms, stack))
    return InspectReport(
        path=str(path) if path is not None else "",
        file_bytes=_file_bytes(path, data_files) if path is not None else 0,
        opset=dict(model.opset_imports),
        producer=" ".join(x for x in (model.producer_name, model.producer_version) if x),
        num_nodes=num_nodes,
        num_initializers=num_initializers,
        family=structure.family if structure else None,
        exporter=structure.exporter if structure else None,
        structure_error=error,
        hidden_size=structure.hidden_size if structure else None,
        layers=layers,
        params_by_role=params,
        bytes_by_role=nbytes,
        weights_by_dtype=by_dtype,
        op_histogram=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        seq_len=seq_len,
        flops=flops,
        flops_by_part=parts,
        flops_unknown_reason=None if structure is not None else (
            f"the encoder structure was not recognised: {error}"),
        inputs=[_io(v) for v in graph.inputs],
        outputs=[_io(v) for v in graph.outputs],
        metadata={k: v for k, v in meta.items() if k.startswith("deploytool.") and k != "deploytool.packing"},
        alibi_table_bytes=sum(tables.values()),
        duplicate_bytes=distinct.duplicate_bytes,
        notes=notes,
        merged_equal_params=more,
        trained=_trained_record(meta),
    )


def _trained_record(meta: dict[str, str]) -> dict[str, Any] | None:
    from deploytool.variant import read_variant

    v = read_variant(meta)
    return v.trained.to_dict() if v is not None and v.trained is not None else None


def _trained_words(r: InspectReport) -> str | None:
    """One line on what ``deploytool qat`` trained the weights for (the settings ``pack`` packs them as trained)."""
    from deploytool.variant import Trained, read_variant, variant_label

    t = Trained.from_dict(r.trained)
    if t is None:
        return None
    acts = {8: "int8 activations", 0: "fp32 activations"}.get(t.act_bits, f"{t.act_bits}-bit activations")
    words = (f"{t.mode}, {t.granularity} scales, tws {'yes' if t.tws else 'no'}, embeddings "
             f"{t.weights if t.embeddings else 'fp32'}, {acts} (deploytool qat; pack --weights {t.weights})")
    v = read_variant(r.metadata)
    at = variant_label(t.width, t.depth, "")[:-1]
    if v is not None and variant_label(v.width, v.depth, "")[:-1] != at:
        words += f"; trained at {at}, this file is cut from it"
    return words


def position_table(structure: EncoderStructure | None,
                   meta: dict[str, str] | None = None) -> tuple[int, int] | None:
    """(rows, usable) of the model's absolute position-embedding table, or None (rotary or relative positions, no
    structure). RoBERTa-style models (RoBERTa, XLM-R, CamemBERT, MPNet) count positions from padding_idx + 1, so
    they run rows - padding_idx - 1 tokens: the offset is read from the graph (position ids ``CumSum(mask) * mask
    + padding_idx``) or, failing that, from the usable length deploytool's export recorded
    (``deploytool.max_position_embeddings``); else the table itself is the bound."""
    table = structure.embeddings.get("position") if structure is not None else None
    c = table.const_value if table is not None else None
    if c is None or len(c.shape) != 2:
        return None
    rows = int(c.shape[0])
    usable = rows - _position_offset(table)
    try:
        recorded = int((meta or {}).get("deploytool.max_position_embeddings", ""))
    except ValueError:
        recorded = 0
    return rows, max(0, min(usable, recorded) if recorded > 0 else usable)


_PASS_THROUGH = ("Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Expand", "Flatten")


def _position_offset(table: ir.Value) -> int:
    """padding_idx + 1 where the table's Gather reads ids made as ``CumSum(mask) * mask + padding_idx`` (HF's
    create_position_ids_from_input_ids, as the TorchScript and optimum exporters write it), else 0."""
    gathers, frontier = [], [table]
    for _ in range(4):  # the table through a dequantization or cast to its Gather
        nxt = []
        for v in frontier:
            for u in v.uses():
                n = u.node
                if n.op_type == "Gather" and u.idx == 0 and len(n.inputs) > 1:
                    gathers.append(n)
                elif n.op_type in ("DequantizeLinear", "Cast", "Identity") and u.idx == 0:
                    nxt.extend(n.outputs)
        frontier = nxt
    for g in gathers:
        v = g.inputs[1]
        for _ in range(8):
            p = v.producer() if v is not None else None
            if p is None or p.op_type not in _PASS_THROUGH or not p.inputs:
                break
            v = p.inputs[0]
        if p is None or p.op_type != "Add" or len(p.inputs) != 2:
            continue
        for a, b in ((p.inputs[0], p.inputs[1]), (p.inputs[1], p.inputs[0])):
            k = small_const(b, max_size=1)
            if k is not None and np.issubdtype(k.dtype, np.integer) and _reads_cumsum(a):
                return int(k.reshape(-1)[0]) + 1
    return 0


def _reads_cumsum(v: ir.Value | None, depth: int = 0) -> bool:
    """Whether ``v`` is computed from a CumSum within a few nodes (a running count of the tokens)."""
    p = v.producer() if v is not None else None
    if p is None or depth > 6:
        return False
    return p.op_type == "CumSum" or any(_reads_cumsum(x, depth + 1) for x in p.inputs)


def model_position_rows(model: ir.Model) -> int | None:
    """The longest sequence a loaded model's absolute position-embedding table takes (:func:`position_table`'s
    usable length, its metadata read too); None where the structure finder does not read it."""
    table = model_position_table(model)
    return table[1] if table is not None else None


def model_position_table(model: ir.Model) -> tuple[int, int] | None:
    """:func:`position_table` of a loaded model; None where the structure finder does not read it."""
    from deploytool.errors import DeployError

    try:
        return position_table(find_structure(model), dict(model.metadata_props))
    except (DeployError, ValueError, TypeError):
        return None


def _table_words(table: tuple[int, int]) -> str:
    """"128 positions", or "64 positions: 66 rows, RoBERTa-style ids start at padding_idx + 1 = 2"."""
    rows, usable = table
    if rows == usable:
        return f"{rows} positions"
    return f"{usable} positions: {rows} rows, RoBERTa-style ids start at padding_idx + 1 = {rows - usable}"


def check_position_table(model: ir.Model, seq_lens: int | tuple[int, ...], name: str | None,
                         option: str = "--seq-len") -> int | None:
    """The usable length of ``model``'s position table (:func:`model_position_rows`), after a ConfigError naming
    the file ``name`` (None: no file named) and ``option`` when a length of ``seq_lens`` is longer: what ONNX
    Runtime would only say as a broadcast error in the embeddings' Add, or an index error in the position Gather of
    a RoBERTa-style model. Commands call it before running the model anywhere (bench, verify-arm64, bundle's
    --seq-len and --qnn-seq-len): the one rule and wording of a length past the table."""
    table = model_position_table(model)
    for s in (seq_lens,) if isinstance(seq_lens, int) else seq_lens:
        if table is not None and s > table[1]:
            raise ConfigError(f"{name + ': ' if name else ''}{option} {s} is longer than the model's position table "
                              f"({_table_words(table)}); use a sequence length <= {table[1]}")
    return table[1] if table is not None else None


def _length_notes(graph: ir.Graph, structure: EncoderStructure | None, seq_len: int,
                  meta: dict[str, str] | None = None) -> list[str]:
    """A note when ``seq_len`` (the FLOPs' length) is one the model cannot run: longer than its absolute position
    table, or other than a fixed sequence length its inputs declare."""
    if structure is None:  # no FLOPs to qualify, and no telling which input dimension is a sequence
        return []
    notes = []
    table = position_table(structure, meta)
    if table is not None and seq_len > table[1]:
        notes.append(f"--seq-len {seq_len} is longer than the model's position table ({_table_words(table)}): "
                     "the FLOPs are for a length it cannot run")
    fixed = {int(v.shape[1]) for v in graph.inputs
             if v.shape is not None and len(v.shape) >= 2 and isinstance(v.shape[1], int) and v.shape[1] > 0}
    if fixed and seq_len not in fixed:
        notes.append(f"the inputs declare a fixed sequence length ({', '.join(map(str, sorted(fixed)))}): the FLOPs "
                     f"at --seq-len {seq_len} are for a length it cannot run")
    return notes


# ---------------------------------------------------------------------------------------------- parts
def packing_record(meta: dict[str, str]) -> dict[str, dict]:
    """``deploytool pack``'s record in a model's metadata (``deploytool.packing``): weight name -> its entry
    (scheme, bits, shape, role); empty when there is none or it is not a JSON object."""
    from deploytool.variant import packing_record as read

    record = read(meta)
    if not record and (meta.get("deploytool.packing") or "{}").strip() != "{}":
        logger.warning("metadata 'deploytool.packing' is not a JSON object; packed weights reported by storage dtype")
    return record


def _closure_back(start: list[ir.Node | None], allowed: set[int] | None = None) -> set[int]:
    seen: set[int] = set()
    stack = list(start)
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen or (allowed is not None and id(n) not in allowed):
            continue
        seen.add(id(n))
        for i in n.inputs:
            if i is not None and not i.is_graph_input():
                stack.append(i.producer())
    return seen


def _node_roles(graph: ir.Graph, s: EncoderStructure | None) -> dict[int, str]:
    """Role of every node; constant-only nodes take the role of the node they feed."""
    roles: dict[int, str] = {}
    if s is not None:
        for nid in _closure_back([s.layers[0].input.producer()]):
            roles[nid] = "embeddings"
        for layer in s.layers:
            ids = {id(n) for n in layer.nodes}
            h1 = layer.attention_output
            attn = _closure_back([h1.producer()], ids) if h1 is not None else set()
            for n in layer.nodes:
                roles[id(n)] = "attention" if id(n) in attn else "ffn"
            for lin in layer.attention_linears():
                roles[id(lin.node)] = "attention"
            for lin in layer.ffn_linears():
                roles[id(lin.node)] = "ffn"
    cone = ConstCone()
    for n in reversed(list(graph)):
        if id(n) in roles and not _const_only(n, cone):
            continue
        if _const_only(n, cone):
            users = [u.node for o in n.outputs for u in o.uses()]
            found = next((roles[id(u)] for u in users if id(u) in roles), None)
            if found is not None:
                roles[id(n)] = found
                continue
        roles.setdefault(id(n), "other")
    return roles


def _const_only(n: ir.Node, cone: ConstCone) -> bool:
    return all(i is None or cone.is_const(i) for i in n.inputs)


def _bits(dtype: ir.DataType) -> float:
    try:
        return float(dtype.bitwidth)
    except Exception:
        return float(dtype.itemsize * 8)


_ROLE_FROM_PACKING = {"embedding": "embeddings", "embeddings": "embeddings", "attention": "attention",
                      "ffn": "ffn", "other": "other"}


def _is_quant_aux(n: ir.Node, idx: int) -> bool:
    """A scale or zero point of a quantized op, or a packed format's unpack table (not a weight)."""
    if (n.op_type, idx) in _QUANT_AUX or (idx == 0 and is_unpack_lookup(n)):
        return True
    if n.op_type == "Unsqueeze" and idx == 0 and is_byte_table(const_tensor(n.inputs[0])):
        return True  # the byte table the two-byte lookup of packed weights is made from
    if n.op_type == "QAttention" and idx in (3, 4, 6, 7):
        return True
    if n.op_type == "QEmbedLayerNormalization" and idx >= 8:
        return True
    if n.op_type == "Mul" and len(n.inputs) == 2:  # per-channel weight scale times the dynamic input scale
        other = n.inputs[1 - idx]
        p = other.producer() if other is not None else None
        if p is not None and p.op_type == "DynamicQuantizeLinear" and other is not p.outputs[0]:
            return True
        # the scale of int8 rows gathered from a stored table and cast to float (the native int8 writer's word rows)
        g = p.inputs[0].producer() if p is not None and p.op_type == "Cast" and p.inputs[0] is not None else None
        table = const_tensor(g.inputs[0]) if g is not None and g.op_type == "Gather" and g.inputs else None
        if table is not None and table.dtype.name in _LOW_BIT:
            return True
        # ORT's quantize_dynamic on a MatMul whose input is constant (DeBERTa's relative-position embeddings): that
        # input is quantized statically, so its scale is a stored scalar, and the weight scale times it feeds the
        # Mul that rescales the MatMulInteger's cast output
        if other is not None and const_tensor(other) is not None and const_tensor(n.inputs[idx]) is not None:
            for use in n.outputs[0].uses():
                u, j = use.node, use.idx
                c = u.inputs[1 - j].producer() if u.op_type == "Mul" and len(u.inputs) == 2 else None
                src = c.inputs[0].producer() if c is not None and c.op_type == "Cast" and c.inputs[0] is not None \
                    else None
                if src is not None and src.op_type == "MatMulInteger":
                    return True
    return False


def _packed_key(name: str, packing: dict[str, dict], prefixes: dict[str, str]) -> str | None:
    if name in packing:
        return name
    for prefix, key in prefixes.items():
        if name.startswith(prefix):
            return key
    return None


def _parameters(graph: ir.Graph, roles: dict[int, str], packing: dict[str, dict], s: EncoderStructure | None,
                skip: set[str] = frozenset()):
    """Parameters and bytes by role, and weights by dtype (see the module doc); constants named in ``skip`` (ALiBi
    tables) are neither."""
    params = dict.fromkeys(ROLES, 0)
    nbytes = dict.fromkeys(ROLES, 0)
    by_dtype: dict[str, dict[str, float]] = {}

    def add(key: str, count: int, stored: float) -> None:
        entry = by_dtype.setdefault(key, {"tensors": 0, "params": 0, "bytes": 0, "bits_per_param": 0.0})
        entry["tensors"] += 1
        entry["params"] += count
        entry["bytes"] += stored

    structural: set[int] = set()  # weights and biases the finder identified (always parameters)
    if s is not None:
        linears: list[Linear] = list(s.other_linears)
        for layer in s.layers:
            linears += layer.linears()
        for lin in linears:
            structural.add(id(lin.weight))
            if lin.bias is not None:
                structural.add(id(lin.bias))
        structural.update(id(v) for v in s.embeddings.values())
    # packed tensors (deploytool pack) are named after the weight they replace: <name>_<suffix>
    live = {v.name for v in graph.initializers.values() if v.uses()}
    packed = {k: v for k, v in packing.items() if k not in live}
    prefixes = {k.replace("::", "_").replace("/", "_") + "_": k for k in packed}
    packed_role: dict[str, str] = {}
    packed_copy: dict[str, bool] = {}  # True where every stored part of a packed weight repeats another's
    # a transposed weight that something else also reads is kept beside its [K, N] copy (canonical.py): the file
    # stores it once, so it is counted once, as the copy, which the projection reads
    seen: set[int] = {id(src) for v in graph.initializers.values()
                      if (src := v.meta.get(TRANSPOSED_FROM)) is not None and v.uses()}
    buffers = _rotary_frequencies(graph, structural)
    distinct = _Distinct()
    for n in graph:
        if n.op_type == "Identity":  # an alias (deduplicated initializer): counted where it is read
            continue
        for idx, v in enumerate(n.inputs):
            if v is None or v.name in skip:
                continue
            # an Identity alias of a weight (the TorchScript exporter's dedup: ALBERT's shared layer, DeBERTa's
            # shared keys) is the same stored tensor: counted once, by the value it aliases
            root = alias_root(v)
            if id(v) in seen or id(root) in seen:
                if id(root) in distinct.equal_reads:
                    distinct.equal_reads[id(root)][1] += 1
                continue
            t = const_tensor(v)
            if t is None:
                continue
            seen.update((id(v), id(root)))
            role = roles.get(id(n), "other")
            size = int(t.size)
            stored = _nbytes(t)
            key = _packed_key(v.name or "", packed, prefixes)
            if key is not None:  # storage of a packed weight (codes, alpha): bytes here, params from metadata
                packed_role.setdefault(key, role)
                if distinct.repeated(t, stored):  # the codes of a weight packed once per layer that reads it
                    packed_copy.setdefault(key, True)
                    continue
                nbytes[role] += stored
                if size > 1:
                    packed_copy[key] = False
                continue
            if _is_quant_aux(n, idx) or id(root) in buffers or _exporter_zero_bias(n, idx, root, t):
                if distinct.repeated(t, stored):
                    continue
                nbytes[role] += stored  # stored, but no parameter of the model
                continue
            dname = t.dtype.name
            if id(v) in structural or id(root) in structural or (t.dtype.is_floating_point() and size > 1) or (
                    dname in _LOW_BIT and size > 1 and n.op_type not in ("Reshape", "Slice", "Expand", "Tile")) or (
                    n.op_type == "DequantizeLinear" and idx == 0 and size > 1):  # a weight stored quantized
                # (QDQ: int8 weights, int32 biases of LayerNorm / Gemm scaled by their input's scale)
                new = distinct.new_part(t, _fused_qkv_sizes(n, idx, t), stored)
                if new == 0:
                    continue
                params[role] += new
                if new == size and t.dtype.is_floating_point() and distinct.all_equal(t):
                    distinct.equal_reads[id(root)] = [size, 0]
                part = stored if new == size else int(round(stored * new / size))
                nbytes[role] += part
                add(_DTYPE_NAMES.get(dname, dname.lower()), new, part)
    for key, info in packed.items():
        shape = info.get("shape") or []
        count = int(math.prod(int(d) for d in shape)) if shape else 0
        role = packed_role.get(key) or _ROLE_FROM_PACKING.get(str(info.get("role", "")), "other")
        if key not in packed_role:
            logger.warning("packed weight %s from metadata not found in the graph", key)
            continue
        if packed_copy.get(key):  # every stored part repeats another packed weight's: the same weight
            continue
        params[role] += count
        try:
            stored = float(info["bytes"]) if "bytes" in info else float(info.get("bits", 0)) * count / 8
        except (TypeError, ValueError):
            stored = 0.0
        add(f"packed-{info.get('scheme', 'unknown')}", count, stored)
    for entry in by_dtype.values():
        entry["bytes"] = int(round(entry["bytes"]))
        entry["bits_per_param"] = round(8.0 * entry["bytes"] / entry["params"], 3) if entry["params"] else 0.0
    return params, nbytes, dict(sorted(by_dtype.items())), distinct


def _fused_qkv_sizes(n: ir.Node, idx: int, t) -> list[int] | None:
    """The Q, K and V widths along the last axis of a fused attention op's packed weight or bias (ORT's Attention
    and QAttention: inputs 1 and 2), else None."""
    if n.op_type not in ("Attention", "QAttention") or idx not in (1, 2) or not t.shape:
        return None
    width = int(t.shape[-1])
    if "qkv_hidden_sizes" in n.attributes:
        sizes = [int(x) for x in n.attributes["qkv_hidden_sizes"].value]
        return sizes if sum(sizes) == width else None
    return [width // 3] * 3 if width % 3 == 0 else None


class _Distinct:
    """Which stored tensors repeat values already counted: a layer shared by every layer (ALBERT) but stored per
    layer, a packed QKV beside the Q, K and V it was concatenated from (ORT's optimizer fuses some layers of a
    shared stack and not others), a weight stored again transposed. Two different weights of a model holding the
    same non-constant values is not a thing that happens; a tensor whose elements are all equal (an untrained
    model's zero biases and unit LayerNorm scales) is never taken for a copy: only an alias says that it is one.
    A copy is what the dedupe pass merges (:func:`deploytool.graph.weights.identical`: the same dtype,
    shape and bytes), here also a transposed one or one part of a fused QKV, which that pass cannot merge; an
    all-equal tensor it merges, as its bytes repeat, is counted here as the parameters it may be.
    ``duplicate_bytes`` and ``duplicate_tensors`` say what the file stores twice."""

    def __init__(self) -> None:
        # (dtype, sorted shape, sum, min, max) -> the tensors and parts registered under it: their values are read
        # again only on a match (a copy, or a rare coincidence of all five), so no array is kept alive
        self._seen: dict[tuple, list[tuple[Any, list[int] | None, int]]] = {}
        self.duplicate_bytes = 0
        self.duplicate_tensors = 0
        # id of an all-equal weight counted once -> [its size, further reads of it (other nodes, other aliases)]
        self.equal_reads: dict[int, list[int]] = {}

    @staticmethod
    def all_equal(t) -> bool:
        try:
            a = t.numpy()
        except Exception:
            return False
        return a.size > 1 and bool(a.min() == a.max())

    def hidden_equal(self) -> tuple[int, int]:
        """(tensors, elements): all-equal weights counted once but read by several nodes, and how many more
        parameters the model has if each read is a parameter of its own (the TorchScript exporter stores equal
        tensors once: an untrained model's unit LayerNorm scales and zero biases become one, read through aliases)."""
        hidden = [(size, reads) for size, reads in self.equal_reads.values() if reads]
        return len(hidden), sum(size * reads for size, reads in hidden)

    @staticmethod
    def _part(t, sizes: list[int] | None, i: int) -> np.ndarray:
        a = t.numpy()
        return np.split(a, np.cumsum(sizes)[:-1], axis=-1)[i] if sizes else a

    def _is_copy(self, a: np.ndarray, t, sizes: list[int] | None, i: int) -> bool:
        """Whether ``a`` (part ``i`` of ``t``) or its transpose equals a part registered before; registers it when
        not."""
        if a.size <= 1:
            return False
        lo, hi = a.min(), a.max()
        if not (lo < hi):  # constant (or NaN): not told apart from an equal tensor of the model's own
            return False
        key = (str(a.dtype), tuple(sorted(a.shape)), float(np.sum(a, dtype=np.float64)), float(lo), float(hi))
        bucket = self._seen.setdefault(key, [])
        for other in bucket:
            b = self._part(*other)
            # a copy by the dedupe pass's rule (same dtype, shape and bytes), or a transposed one
            if identical(a, b) or (a.ndim == 2 and identical(a, b.T)):
                return True
        bucket.append((t, sizes, i))
        return False

    def new_part(self, t, sizes: list[int] | None, stored: float) -> int:
        """Elements of ``t`` not seen before (all of them when its values cannot be read); ``sizes`` splits a
        packed QKV along the last axis into parts compared one by one."""
        try:
            a = t.numpy()
        except Exception:  # low-bit dtypes numpy cannot show: counted as stored
            return int(t.size)
        try:
            parts = np.split(a, np.cumsum(sizes)[:-1], axis=-1) if sizes else [a]
            new = sum(int(x.size) for i, x in enumerate(parts) if not self._is_copy(x, t, sizes, i))
        except (TypeError, ValueError):  # a dtype numpy cannot compare or sum: counted as stored
            logger.debug("values of %s not compared", t.name, exc_info=True)
            return int(t.size)
        if new < a.size:
            self.duplicate_bytes += int(round(stored * (a.size - new) / a.size))
            self.duplicate_tensors += 1
        return new

    def repeated(self, t, stored: float) -> bool:
        """Whether a tensor that is no parameter (a scale) repeats one seen before (its bytes then counted apart)."""
        return self.new_part(t, None, stored) == 0


def _folded_position_projections(s: EncoderStructure | None) -> tuple[int, int] | None:
    """(tensors, values) of the floating relative-position projections ORT's optimizer folded into constants
    (DeBERTa: ``AttentionBlock.rel_constants``), or None."""
    seen: dict[int, int] = {}
    for layer in s.layers if s is not None else ():
        for node, index, _ in layer.attention.rel_constants:
            t = const_tensor(node.inputs[index])
            if t is not None and t.dtype.is_floating_point():
                seen[id(t)] = int(t.size)
    return (len(seen), sum(seen.values())) if seen else None


def _exporter_zero_bias(n: ir.Node, idx: int, v: ir.Value, t) -> bool:
    """True for the all-zero bias an exporter writes as a Constant node where the model's LayerNorm has none
    (ModernBERT's ``bias=False``: opset 17's LayerNormalization is given one), also once ORT's optimizer has made
    that Constant an initializer named after its output (``/layers.0/mlp_norm/Constant_output_0``, read by a
    LayerNormalization or SkipLayerNormalization); a model's own bias is an initializer named after its parameter,
    even when it is zero (an untrained BERT's)."""
    if (n.op_type, idx) not in (("LayerNormalization", 2), ("SkipLayerNormalization", 3)) or \
            not t.dtype.is_floating_point():
        return False
    p = v.producer()
    made = (p is not None and p.op_type == "Constant") or (
        p is None and _CONSTANT_OUTPUT.search(v.name or "") is not None)
    return made and not t.numpy().any()


# the name the TorchScript exporter gives a Constant node's output (kept when ORT folds it into an initializer)
_CONSTANT_OUTPUT = re.compile(r"(^|/)Constant(_\d+)?_output_0$")


def _rotary_frequencies(graph: ir.Graph, structural: set[int]) -> set[int]:
    """ids of the constant vectors upstream of a Cos or Sin: rotary embeddings' inverse frequencies (a buffer
    computed from theta, ``inv_freq``), not parameters. The walk stops at Shape nodes (their input's values are
    not read) and is bounded; tensors the structure finder took for weights are never included."""
    out: set[int] = set()
    for node in graph:
        if node.op_type not in ("Cos", "Sin") or node.domain not in ("", "ai.onnx"):
            continue
        todo, seen = [node], set()
        while todo and len(seen) < 64:
            m = todo.pop()
            if id(m) in seen or m.op_type == "Shape":
                continue
            seen.add(id(m))
            for v in m.inputs:
                root = alias_root(v)
                t = const_tensor(root)
                if t is not None:
                    if (t.dtype.is_floating_point() and id(root) not in structural and id(v) not in structural
                            and sum(int(d) > 1 for d in t.shape) == 1):
                        out.add(id(root))
                    continue
                if root is not None and root.producer() is not None:
                    todo.append(root.producer())
    return out


def _nbytes(t) -> int:
    try:
        return int(t.nbytes)
    except Exception:
        return int(math.ceil(t.size * _bits(t.dtype) / 8))


def _tokens_after_pooling(lin: Linear, last: ir.Value, seq: int) -> int:
    """1 when the projection reads a pooled vector (CLS Gather/Slice, mean pooling), else seq."""
    v = lin.node.inputs[0]
    for _ in range(24):
        if v is None or v is last:
            return seq
        p = v.producer()
        if p is None:
            return seq
        if p.op_type == "Gather" and "axis" in p.attributes and p.attributes["axis"].value == 1:
            idx = const_tensor(p.inputs[1])
            if idx is not None and idx.size == 1:
                return 1
        if p.op_type in _POOLING:
            return 1
        if p.op_type == "Slice" and len(p.inputs) >= 3:
            starts, ends = const_tensor(p.inputs[1]), const_tensor(p.inputs[2])
            if starts is not None and ends is not None and starts.size == 1:
                if int(ends.numpy().reshape(-1)[0]) - int(starts.numpy().reshape(-1)[0]) == 1:
                    return 1
        data = [i for i in p.inputs if i is not None and const_tensor(i) is None]
        if not data:
            return seq
        v = data[0]
    return seq


def _span_rows(v: ir.Value | None, seq: int) -> int:
    """The rows of a relative-position projection's input: its static shape's, or (a dynamic export, DeBERTa v1:
    ``rel_embeddings[max_rel - span : max_rel + span]`` with ``span = min(seq, max_rel)``) the table's rows up to
    2 * seq; 0 when neither is known."""
    x = static_shape(v)
    if x is not None and len(x) >= 2:
        return int(x[-2])
    for _ in range(8):
        t = const_tensor(v) if v is not None else None
        if t is not None:
            return min(2 * seq, int(t.shape[0])) if len(t.shape) == 2 else 0
        p = v.producer() if v is not None else None
        # constant Slice bounds (DeBERTa v2's fixed rows) are static_shape's; here they follow the sequence
        if p is None or p.op_type not in ("Unsqueeze", "Slice", "Identity", "Cast", "Dropout") or not p.inputs:
            return 0
        v = p.inputs[0]
    return 0


def _relative_rows(a: AttentionBlock, seq: int) -> int:
    """The 2 * span relative positions a DeBERTa layer's c2p/p2c terms read: the rows of a position projection's
    input (:func:`_span_rows`), or of a constant ORT's optimizer folded ([heads, 2 * span, head_size], [.., 2 *
    span, heads * head_size], or v1's [1, heads, 2 * span, head_size] and its transpose)."""
    for lin in a.rel_linears:
        rows = _span_rows(lin.node.inputs[0], seq)
        if rows:
            return rows
    for node, index, axis in a.rel_constants:
        v = node.inputs[index]
        t = v.const_value if v is not None else None
        if t is not None and len(t.shape) >= 2:
            if axis == 1:  # [1, heads, 2 * span, head_size] or [1, heads, head_size, 2 * span]
                return int(t.shape[2] if t.shape[3] == a.head_size else t.shape[3])
            return int(t.shape[1] if axis == 0 else t.shape[-2])
    return 0


def _flops(s: EncoderStructure, seq: int) -> tuple[int, dict[str, int]]:
    parts = {"attention_projections": 0, "attention_scores_context": 0, "ffn": 0, "other": 0}
    for layer in s.layers:
        a = layer.attention
        rel = {id(x) for x in a.rel_linears}
        for lin in layer.attention_linears():
            if id(lin) not in rel:
                parts["attention_projections"] += 2 * seq * lin.in_features * lin.out_features
        # DeBERTa: each projection of the 2 * span relative-position embeddings is its own MatMul, also where it
        # shares Q's or K's weight (which attention_linears lists once)
        for lin in a.rel_linears:
            rows = _span_rows(lin.node.inputs[0], seq)
            parts["attention_projections"] += 2 * rows * lin.in_features * lin.out_features
        parts["attention_scores_context"] += 2 * (2 * seq * seq * a.num_heads * a.head_size)
        if a.relative:  # DeBERTa: each content-to-position / position-to-content term (one GatherElements each)
            # is Q or K times the 2 * span projected relative positions, per head
            parts["attention_scores_context"] += len(a.rel_gathers) * 2 * seq * _relative_rows(a, seq) * a.all_head_size
        for lin in layer.ffn_linears():
            parts["ffn"] += 2 * seq * lin.in_features * lin.out_features
    last = s.layers[-1].output
    for lin in s.other_linears:
        tokens = _tokens_after_pooling(lin, last, seq)
        parts["other"] += 2 * tokens * lin.in_features * lin.out_features
    return sum(parts.values()), parts


def _io(v: ir.Value) -> dict[str, Any]:
    shape = None
    if v.shape is not None:
        shape = [d if isinstance(d, int) else str(d) for d in v.shape]
    dtype = v.dtype.name.lower() if v.dtype is not None else None
    return {"name": v.name, "dtype": _DTYPE_NAMES.get(dtype.upper(), dtype) if dtype else None, "shape": shape}


def _file_bytes(path: str | os.PathLike, data_files: list[Path] | None = None) -> int:
    """The .onnx file plus the external-data files it names (``data_files``, as the loader found them; looked up
    here when not given). Not guessed from the weights' size: a file whose graph alone outweighs half its weights
    (a small model, one saved with every tensor external) was reported without its data."""
    p = Path(path)
    total = p.stat().st_size
    if data_files is None:
        try:
            data_files = onnx_io.external_data_files(p)
        except Exception:  # the model was loaded already; a size is no reason to fail
            return total
    for f in dict.fromkeys(Path(f) for f in data_files):
        if f.is_file():
            total += f.stat().st_size
    return total


# ---------------------------------------------------------------------------------------------- text
def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000 or suffix == "T":
            return f"{n:.0f}{suffix}{unit}" if suffix == "" else f"{n:.2f}{suffix}{unit}"
        n /= 1000.0
    return f"{n}"


def _size(b: int) -> str:
    from deploytool.units import fmt_bytes

    return fmt_bytes(b)


def _render_text(r: InspectReport) -> str:
    opsets = ", ".join(f"{k or 'ai.onnx'} {v}" for k, v in r.opset.items())
    lines = [f"model       {r.path}  ({_size(r.file_bytes)}, {r.num_nodes} nodes, "
             f"{r.num_initializers} initializers, opset {opsets})"]
    from deploytool.variant import read_variant

    v = read_variant(r.metadata)
    if v is not None:  # what deploytool's passes made of the source model
        lines.append(f"variant     {v.label} of {v.source or '?'}" + (f"  ({' -> '.join(v.chain)})" if v.chain else ""))
    trained = _trained_words(r)
    if trained is not None:  # what quantization-aware training made the weights for
        lines.append(f"trained     {trained}")
    if r.structure_error:
        lines.append(f"structure   not recognised: {r.structure_error}")
    else:
        heads = sorted({x.num_heads for x in r.layers})
        ffns = sorted({x.ffn_width for x in r.layers})
        stacks = {tuple(x.ffn_stack) for x in r.layers}
        same = len(heads) == 1 and len(ffns) == 1 and len(stacks) == 1
        stack = r.layers[0].ffn_stack if same else []
        ffn_words = f"FFN {ffns[0]}" + (
            f" ({len(stack)} stacked FFNs of {' + '.join(map(str, stack))})" if stack else "") if same else ""
        lines.append(f"family      {r.family}   exporter {r.exporter}")
        lines.append(f"encoder     {r.num_layers} layers, hidden {r.hidden_size}, "
                     + (f"{heads[0]} heads x {r.layers[0].head_size}, {ffn_words}" if same else
                        "heads/FFN differ per layer")
                     + f", activation {r.layers[0].activation}"
                     + (", fused attention" if any(x.fused_attention for x in r.layers) else ""))
        lines.append("  layer  heads  head_size  ffn    attention")
        for x in r.layers:
            lines.append(f"  {x.index:<5}  {x.num_heads:<5}  {x.head_size:<9}  {x.ffn_width:<5}  "
                         f"{'fused' if x.fused_attention else 'unfused'}")
        fixed = [x.index for x in r.layers if not x.heads_removable]
        if fixed:
            lines.append(f"  heads of {'every layer' if len(fixed) == len(r.layers) else f'layers {fixed}'} are "
                         "normalized together (QK norm): reorder only, no head can be removed")
    if r.structure_error:  # no layers, so no roles: every weight sits under "other", which is not a zero split
        lines.append(f"parameters  {r.total_params:,} total, {_size(sum(r.bytes_by_role.values()))} (by role: "
                     "unknown, the encoder structure was not recognised)")
    else:
        lines.append(f"parameters  {r.total_params:,} total")
        for role in ROLES:
            lines.append(f"  {role:<11} {r.params_by_role[role]:>14,}  {_size(r.bytes_by_role[role]):>12}")
    if r.duplicate_bytes:
        lines.append(f"  {'duplicates':<11} {'':>14}  {_size(r.duplicate_bytes):>12}  (stored again in the file: "
                     "values of weights counted once above)")
    if r.alibi_table_bytes:
        lines.append(f"  {'ALiBi table':<11} {'':>14}  {_size(r.alibi_table_bytes):>12}  (a buffer, not a parameter: "
                     "every pass writes it as the computation of its values)")
    lines.append("weights     dtype            tensors         params         bytes  bits/param")
    for k, e in r.weights_by_dtype.items():
        lines.append(f"  {'':<10}{k:<16} {int(e['tensors']):>7} {int(e['params']):>14,} {_size(int(e['bytes'])):>13}"
                     f"  {e['bits_per_param']:>9.3f}")
    if r.flops is not None:
        parts = ", ".join(f"{k} {_human(v)}" for k, v in (r.flops_by_part or {}).items())
        lines.append(f"FLOPs       {_human(r.flops)} at batch 1, seq {r.seq_len} ({parts})")
    else:
        lines.append(f"FLOPs       unknown ({r.flops_unknown_reason or 'not counted'})")
    lines += [f"note        {n}" for n in r.notes]
    lines.append("ops         " + ", ".join(f"{k} {v}" for k, v in r.op_histogram.items()))
    for label, vals in (("inputs", r.inputs), ("outputs", r.outputs)):
        lines.append(f"{label:<11} " + ", ".join(f"{v['name']} {v['dtype']}{v['shape']}" for v in vals))
    if r.metadata:
        lines.append("metadata    " + ", ".join(f"{k[len('deploytool.'):]}={v}" for k, v in r.metadata.items()))
    return "\n".join(lines)
