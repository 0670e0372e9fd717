"""Ternary / binary weights, really packed, runnable in stock ONNX Runtime (TernaryBERT, BinaryBERT).

Which weights: every encoder linear weight (Q/K/V/O and both FFN matrices; found with
``deploytool.graph.find_structure``, or, where the finder cannot read the graph, every MatMul/Gemm
whose B input is a 2-D float initializer: with ``pack_head=True`` or in a graph without attention; an attention
graph the finder cannot read is refused otherwise, since its pooler and classifier could not be kept fp32) and
the word embeddings (row-wise, always). By default the
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
- ``densest`` (ternary): 5 trits per byte (1.6 bits per weight), the bytes stored in pairs as a uint16
  initializer (little-endian: the file's byte order; one zero byte pads an odd count), and an unpacking
  subgraph of standard ops that ORT constant-folds at session creation: ``Cast`` of the pairs to int32,
  ``Gather`` of each pair's row of a [65536, 10] int8 lookup table (its two bytes' values; the table is
  not stored but made from a [256, 5] one by ``Unsqueeze``/``Expand``/``Concat``/``Reshape``, folded once),
  ``Reshape`` (and ``Slice`` off the padding); then DynamicQuantizeMatMul as above. (Until 2026-12-02
  this was int32 ``Div`` by 3^i, ``Mod`` 3, ``Sub`` 1, several times slower to load and several times the
  memory; until 2026-12-03 a lookup of one byte at a time, whose Gather copies twice as many rows:
  ``benchmarks/pack_load.py`` measures the forms against each other.)
- binary (``speed`` or ``densest``): 1 bit per weight, in pairs of bytes, plus the same lookup
  ([65536, 16] made from [256, 8]: bit i -> +-1), then DynamicQuantizeMatMul.
- split-binary (BinaryBERT's ternary weight splitting, ``qat --mode binary --tws``): each weight is
  two binary planes, ``W = alpha1 s1 + alpha2 s2`` (recovered exactly from a TWS-trained model,
  greedily from any other, :func:`~deploytool.quant.quantizers.binarize_planes`). The planes are
  stored side by side as one binary ``[K, 2N]`` weight (1 bit each, 2 bits per weight) with scales
  ``[alpha1, alpha2]`` per column; one kernel (DynamicQuantizeMatMul, or MatMulNBits for ``memory``)
  computes both, and ``Slice + Add`` sums the halves. Tables (``--embeddings split-binary``, the
  default with these weights) keep each row's two planes side by side, 2 bits per value, and sum
  them after the Gather.

Embeddings (``Gather``; ORT's fused ``EmbedLayerNormalization`` is first replaced by the row Gathers and the
``SkipLayerNormalization`` it computes, see :func:`_unfuse_embed_layernorm`): the table is stored packed row-wise (2-bit codes, 5 trits, 1 bit, or int8
with a per-row scale); the rows are gathered from the packed table and unpacked at run time
(``Gather -> Cast -> Gather(lookup table) -> Reshape -> Slice -> Cast -> Mul(alpha[ids])``), so the
table is never expanded to fp32 and the embedding lookups stay exact in fp32. A table that something
other than a plain Gather reads (any other op than the ``EmbedLayerNormalization`` unfused first) is
unpacked whole, ``codes * alpha`` per row, by a subgraph of
constants in front of those readers: ORT folds it at session creation, so the file holds the packed table
and the session an fp32 one with the quantized values (the record's ``note`` says so).

Fused attention (ONNX Runtime's transformer optimizer: ``com.microsoft.Attention`` with a float QKV weight
``[K, 3A]``): Q, K and V are quantized as three matrices, as unfused, and the node becomes a kernel that reads
the packed codes with the same mask (both of the optimizer's forms: token counts or the raw 2-D mask), heads,
scale and mask value: ``DynamicQuantizeLinear`` + ``QAttention`` on the int8 codes (speed, densest: stored as
the other linear weights, unpacked to int8 at load) or ``MatMulNBits`` + ``Split`` + ``MultiHeadAttention``
(memory: 2 bits in memory). Two binary planes (split-binary), which no attention kernel sums, are computed by
the runtime's linear kernel over both planes (as a split-binary linear weight), their halves added, then ``Split``
and ``MultiHeadAttention``. Until 2026-12-03 the QKV was unpacked to fp32 at load in every runtime (a quarter
of the linear weights in fp32 in the session and a bundle's ``.ort``, on an fp32 GEMM); that form remains where
no kernel fits (a past state, rotary embeddings), and its record note says why. A causal (``unidirectional``)
Attention stays causal in either kernel; one with an attention bias (a relative position bias) runs on the
MultiHeadAttention form in every runtime (QAttention takes none). One QKV weight read by several fused Attention
nodes (ALBERT after the optimizer: every layer's copy is the same bytes, stored once by pack's input dedupe) is
packed once, and every node's kernel reads that one stored weight.

Every packed weight is recorded in ``metadata_props["deploytool.packing"]`` as JSON
``{name: {"scheme", "bits", "shape", "role"}}``. Post-training ternary/binary weights lose accuracy;
quantization-aware training (``deploytool qat``) recovers it.

The parts: :mod:`~deploytool.passes.pack_config` (the config), :mod:`~deploytool.passes.pack_targets`
(which weights), :mod:`~deploytool.passes.pack_codes` (their codes and scales),
:mod:`~deploytool.passes.pack_graph` (the ONNX pieces); this module emits the packed weights and is the pass.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import onnx_ir as ir

from deploytool.choices import require_config
from deploytool.errors import PassRefusedError
from deploytool.graph._util import ATTENTION_SHARED_ATTRS, alias_root
from deploytool.passes.base import DeployPass, DeployPassResult, Skip
from deploytool.passes.pack_codes import (  # noqa: F401 - fake_quantized_weight is re-exported
    _BITS,
    _EMBEDDING_CHUNK_ROWS,
    _UNPACK,
    _codes_and_alpha,
    _dequantized_embedding,
    _embedding_codes,
    _pack_codes,
    _qkv_codes,
    _qkv_fake_quantized,
    _quantize,
    fake_quantized_weight,
)
from deploytool.passes.pack_config import (
    PACKING_KEY,
    QAT_NOTE,
    PackConfig,
    Runtime,
    WeightScheme,
    training_note,
)
from deploytool.passes.pack_graph import (
    _Builder,
    _drop_unused,
    _first_in_graph,
    _folded_bias,
    _replace,
    _replace_kernel,
    _replace_lazily,
    _sum_planes,
    _unpack_ops,
    _unpack_pairs,
    pair_values,
)
from deploytool.passes.pack_targets import (  # noqa: F401 - _find_targets and _other_tables are re-exported
    _alias_uses,
    _already_packed,
    _drop_dead_aliases,
    _find_targets,
    _fused_qkv_nodes,
    _is_row_gather,
    _other_tables,
    _table_readers,
    _Target,
)
from deploytool.passes.upgrade_opset import INT2_MIN_OPSET, PACK_MIN_OPSET, upgrade_opset  # noqa: F401 - re-exported
from deploytool.passes.upgrade_opset import record_input_opset
from deploytool.quant import packing
from deploytool.quant.quantizers import Granularity, naming_weight

logger = logging.getLogger(__name__)

__all__ = ["FakeQuantWeightsPass", "Granularity", "PackConfig", "PackWeightsPass", "Runtime", "WeightScheme", "pack_file",
           "pack_pipeline", "PACKING_KEY", "QAT_NOTE"]


def nbits2_arrays(codes: np.ndarray, alpha: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``MatMulNBits`` bits=2 inputs of codes [N, K] (values in {-1, 0, 1}) and alpha (one scale, or one per
    row): B [N, blocks, bs / 4] uint8 (code + 2, the kernel's default zero point; K padded with zeros), the
    scales [N * blocks] (each row's alpha in every block of it) and the block size ``bs`` used (``block_size``,
    or the power of two at least 16 that covers a short K)."""
    n_out, k_in = codes.shape
    bs = min(block_size, max(16, 1 << (k_in - 1).bit_length()))
    nb = -(-k_in // bs)
    padded = np.zeros((n_out, nb * bs), np.int8)
    padded[:, :k_in] = codes
    blob = packing.pack_2bit(padded).reshape(n_out, nb, bs // 4)
    a = np.asarray(alpha, np.float32).reshape(-1)
    a_col = np.broadcast_to(a, (n_out,)) if a.size == 1 else a
    return blob, np.repeat(a_col, nb).astype(np.float32), bs


def dqmm_weight(b: _Builder, codes_kn: np.ndarray, scheme: str, base: str, tag: str) -> tuple[ir.Value, int]:
    """The int8 B [K, N] of a ``DynamicQuantizeMatMul`` from codes stored as ``scheme`` (ternary2: an INT2
    initializer and a Cast; trit5 / binary1: uint16 pairs of packed bytes and the pair lookup), its nodes left
    in ``b`` for the caller to place; returns (B, the stored bytes)."""
    k_in, n_out = codes_kn.shape
    if scheme == "ternary2":
        # packed now, four codes a byte (the bytes an INT2 ir.Tensor of the codes writes): the int8 codes are a
        # temporary whose memory the next weight reuses, not 85 MB of fresh pages held until the file is written
        # (BERT-base: ~21k page faults fewer in the pass's process, which is what it waits on before its output)
        from deploytool.onnx_io import pack_2bit_bytes

        name = b.name(f"{base}_int2")
        tensor = ir.PackedTensor(pack_2bit_bytes(codes_kn), ir.DataType.INT2, shape=codes_kn.shape, name=name)
        b_val = ir.Value(name=name, const_value=tensor, shape=ir.Shape(codes_kn.shape),
                         type=ir.TensorType(ir.DataType.INT2))
        b.graph.register_initializer(b_val)
        return b.op("Cast", [b_val], tag, to=ir.DataType.INT8), -(-codes_kn.size // 4)
    pairs = pair_values(_pack_codes(codes_kn.reshape(-1), scheme))
    b_val = b.init(f"{base}_{scheme}", pairs)
    x = _unpack_pairs(b, b_val, scheme, tag)
    if codes_kn.size != pairs.size * 2 * _UNPACK[scheme][0]:  # padding at the end: flatten and cut it off
        x = b.op("Reshape", [x, b.const(np.array([-1], np.int64))], tag)
        x = b.op("Slice", [x, b.const(np.array([0], np.int64)), b.const(np.array([codes_kn.size], np.int64))], tag)
    return b.op("Reshape", [x, b.const(np.array([k_in, n_out], np.int64))], tag), pairs.nbytes  # int8 already


def packed_kernel(b: _Builder, codes: np.ndarray, alpha: np.ndarray, scheme: str, base: str, tag: str, *,
                  block_size: int, accuracy_level: int):
    """The kernel that reads codes [N, K] (and their scale: one, or one per row) stored as ``scheme``
    (nbits2: ``MatMulNBits`` bits=2; ternary2 / trit5 / binary1: ``DynamicQuantizeMatMul`` on the unpacked int8
    weight, whose unpacking nodes are left in ``b``). Returns ``(make, stored bytes)``: ``make(x, bias)`` adds one
    kernel reading ``x`` (the bias taken in when given) and returns its output."""
    n_out, k_in = codes.shape
    if scheme == "nbits2":
        blob, scales, bs = nbits2_arrays(codes, alpha, block_size)
        b_val = b.init(f"{base}_nbits2", blob)
        s_val = b.init(f"{base}_scales", scales)

        def make(x: ir.Value, bias: ir.Value | None) -> ir.Value:
            return b.op("MatMulNBits", [x, b_val, s_val] + ([None, None, bias] if bias is not None else []), tag,
                        domain="com.microsoft", K=k_in, N=n_out, bits=2, block_size=bs, accuracy_level=accuracy_level)

        return make, blob.nbytes + scales.nbytes
    # DynamicQuantizeMatMul wants B as [K, N]
    wq, stored = dqmm_weight(b, np.ascontiguousarray(codes.T), scheme, base, tag)
    a = np.asarray(alpha, np.float32).reshape(-1)
    s_val = b.init(f"{base}_alpha", a)

    def make(x: ir.Value, bias: ir.Value | None) -> ir.Value:
        return b.op("DynamicQuantizeMatMul", [x, wq, s_val] + ([None, bias] if bias is not None else []), tag,
                    domain="com.microsoft")

    return make, stored + a.nbytes


def _nbits2_record_scheme(config: PackConfig) -> str:
    """The record's scheme of a weight on 2-bit MatMulNBits: what its codes are (two planes: binary2x2)."""
    return {WeightScheme.TERNARY: "ternary2", WeightScheme.BINARY: "binary2"}.get(config.weights, "binary2x2")


def _pack_linear(b: _Builder, model: ir.Model, t: _Target, config: PackConfig) -> dict[str, Any]:
    graph = model.graph
    codes, alpha, planes = _codes_and_alpha(t, config)  # [P*N, K]
    n_out, k_in = codes.shape
    n_real = n_out // planes  # the layer's output features (P*N columns are computed, P planes summed)
    n_weights = n_real * k_in
    scheme = config.linear_scheme
    first = _first_in_graph(graph, t.nodes)
    tag = b.tag()
    make, packed_bytes = packed_kernel(b, codes, alpha, scheme, t.weight.name or "weight", tag,
                                       block_size=config.block_size, accuracy_level=config.accuracy_level)
    prep = b.take()  # the weight's unpacking, once, before its first reader
    if prep:
        graph.insert_before(first, prep)
    for node in t.nodes:
        bias = node.inputs[2] if node.op_type == "Gemm" and len(node.inputs) > 2 else None
        add = None
        if bias is None and planes == 1:  # the bias Add goes into the kernel (one elementwise pass less)
            add, bias = _folded_bias(node, n_out)
        out = make(node.inputs[0], bias if planes == 1 else None)
        if planes > 1:
            out = _sum_planes(b, out, n_real, tag)
            if bias is not None:
                out = b.op("Add", [out, bias], tag)
        _replace_kernel(graph, node, add, b.take(), out)
    if scheme == "nbits2":
        scheme = _nbits2_record_scheme(config)
    elif planes > 1:
        scheme = f"{scheme}x{planes}"
    return {"scheme": scheme, "bits": packed_bytes * 8 / n_weights, "shape": [k_in, n_real], "bytes": packed_bytes}


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
    readers = _table_readers(table_v, gathers)
    a_val = b.init(f"{base}_alpha", alpha.astype(np.float32)) if gathers else None
    for g in gathers:
        ids = g.inputs[1]
        rows = b.op("Gather", [t_val, ids], tag, axis=0)
        if scheme == "int8":
            x = rows
        else:
            x = _unpack_ops(b, rows, bit_scheme, tag)
            # rows are ids.shape + [bytes]: Shape(ids), not Shape(rows, end=-1), which needs opset 15
            shape = b.op("Concat", [b.op("Shape", [ids], tag), b.const(np.array([-1], np.int64))], tag, axis=0)
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
    note = None
    if readers:  # fused EmbedLayerNormalization (or any other reader): the whole table, unpacked once
        full = _unpack_table(b, t_val, alpha, scheme, vocab, hidden, width, tag)
        graph.insert_before(_first_in_graph(graph, [n for n, _ in readers]), b.take())
        for n, idx in readers:
            n.replace_input_with(idx, full)
        ops = sorted({n.op_type for n, _ in readers})
        note = (f"read by {', '.join(ops)}: packed in the file, unpacked to fp32 when the session is created"
                + ("" if not gathers else "; its Gathers read packed rows"))
    nbytes += alpha.nbytes * ((a_val is not None) + bool(readers))  # row scales: one copy per access path
    info = {"scheme": scheme, "bits": nbytes * 8 / table.size, "shape": [vocab, hidden], "bytes": nbytes}
    if note:
        info["note"] = note
    return info


def _unpack_table(b: _Builder, t_val: ir.Value, alpha: np.ndarray, scheme: str, vocab: int, hidden: int,
                  width: int, tag: str) -> ir.Value:
    """The whole fp32 table ``codes * alpha`` (per row; split-binary: both planes summed) from the packed
    table: the same values as the gathered rows and as the fake-quantized reference, computed from
    constants only, so ORT folds it when the session is created."""
    planes = 2 if scheme == "binary1x2" else 1
    if scheme == "int8":
        x = t_val
    else:
        bit_scheme = "binary1" if planes > 1 else scheme
        x = _unpack_ops(b, t_val, bit_scheme, tag)  # [V, bytes, per]
        x = b.op("Reshape", [x, b.const(np.array([vocab, -1], np.int64))], tag)
        if width % _UNPACK[bit_scheme][0]:
            x = b.op("Slice", [x, b.const(np.array([0], np.int64)), b.const(np.array([width], np.int64)),
                               b.const(np.array([-1], np.int64))], tag)
    x = b.op("Cast", [x], tag, to=ir.DataType.FLOAT)
    a = b.init(f"{t_val.name}_rowscale", alpha.astype(np.float32).reshape(vocab, planes, 1) if planes > 1
               else alpha.astype(np.float32).reshape(vocab, 1))
    if planes > 1:  # [V, 2H] -> [V, 2, H] times [V, 2, 1], planes summed
        x = b.op("Reshape", [x, b.const(np.array([vocab, planes, hidden], np.int64))], tag)
        return b.op("ReduceSum", [b.op("Mul", [x, a], tag), b.const(np.array([1], np.int64))], tag, keepdims=0)
    return b.op("Mul", [x, a], tag)


def _unfuse_embed_layernorm(b: _Builder, model: ir.Model, node: ir.Node) -> None:
    """Replace ORT's fused ``EmbedLayerNormalization`` ``node`` by what it computes, in ops that read table rows:
    ``Gather`` of the word, position (``position_ids``, else ``0 .. S-1``) and segment rows, summed in the node's
    order (word + position, + segment) by ``SkipLayerNormalization`` with the node's gamma, beta and epsilon; its
    ``mask_index`` (the count of ones in each mask row, zeros without a mask) and ``embedding_sum`` where read.
    The word table is then read by a plain Gather, which gathers packed rows as in an unfused export, instead of
    being unpacked whole to fp32 at load (94 MB for BERT-base's, in the session and a bundle's ``.ort``)."""
    graph = model.graph
    ins = list(node.inputs) + [None] * (9 - len(node.inputs))
    ids, seg, word, pos, seg_table, gamma, beta, mask, pos_ids = ins[:9]
    eps = node.attributes["epsilon"].value if "epsilon" in node.attributes else 1e-12  # the op's default
    tag = b.tag()
    rows = b.op("Gather", [word, ids], tag, axis=0)
    if pos_ids is None:  # the node's positions: 0 .. S-1 for every row
        length = b.op("Gather", [b.op("Shape", [ids], tag), b.const(np.array(1, np.int64))], tag, axis=0)
        pos_ids = b.op("Range", [b.const(np.array(0, np.int64)), length, b.const(np.array(1, np.int64))], tag)
    positions = b.op("Gather", [pos, pos_ids], tag, axis=0)
    if seg is not None and seg_table is not None:
        x, skip = b.op("Add", [rows, positions], tag), b.op("Gather", [seg_table, seg], tag, axis=0)
    else:
        x, skip = rows, positions
    outs = node.outputs
    want_sum = len(outs) > 2 and (outs[2].uses() or outs[2].is_graph_output())
    sln = b.ops("SkipLayerNormalization", [x, skip, gamma, beta], tag, 4 if want_sum else 1, domain="com.microsoft",
                epsilon=float(eps))
    new = {0: sln[0]}
    if want_sum:
        new[2] = sln[3]
    if len(outs) > 1 and (outs[1].uses() or outs[1].is_graph_output()):
        if mask is not None:
            ones = b.op("Cast", [b.op("Equal", [mask, b.const(np.array(1, np.int32))], tag)], tag, to=ir.DataType.INT32)
            if model.opset_imports.get("", 0) >= 13:
                new[1] = b.op("ReduceSum", [ones, b.const(np.array([1], np.int64))], tag, keepdims=0)
            else:
                new[1] = b.op("ReduceSum", [ones], tag, axes=[1], keepdims=0)
        else:
            batch = b.op("Gather", [b.op("Shape", [ids], tag), b.const(np.array([0], np.int64))], tag, axis=0)
            new[1] = b.op("ConstantOfShape", [batch], tag, value=ir.tensor(np.array([0], np.int32)))
    nodes = b.take()
    graph.insert_before(node, nodes)
    for i, v in new.items():
        old = outs[i]
        v.shape, v.type = old.shape, old.type
        old.replace_all_uses_with(v)
        if old.is_graph_output():
            graph.outputs[list(graph.outputs).index(old)] = v
    graph.remove(node, safe=True)


#: the inputs of ORT's fused ``EmbedLayerNormalization`` that are tables: word, position, segment (token type)
_ELN_TABLES = {2: "word", 3: "position", 4: "token_type"}


def _eln_readers(table_v: ir.Value, key: str) -> list[ir.Node]:
    """ORT's fused ``EmbedLayerNormalization`` nodes that read ``table_v`` as their ``key`` table."""
    return [n for n, idx in _alias_uses(table_v)
            if n.op_type == "EmbedLayerNormalization" and n.domain == "com.microsoft" and _ELN_TABLES.get(idx) == key]


def _unfuse_packed_tables(b: _Builder, model: ir.Model, emb, tables: dict[str, ir.Value], config: PackConfig):
    """Every fused ``EmbedLayerNormalization`` that reads a table this pack packs (the word table, or with
    ``position_embeddings`` the position and token-type tables) unfused (:func:`_unfuse_embed_layernorm`), so
    that row Gathers read them packed; returns ``emb`` with the word table's row Gathers as they are now."""
    packed = []
    if emb is not None and config.embedding_scheme is not None:
        packed.append((emb[0], "word"))
    if config.position_scheme is not None:
        packed += [(tables[k], k) for k in ("position", "token_type") if tables.get(k) is not None]
    nodes: dict[int, ir.Node] = {}
    for v, key in packed:
        nodes.update((id(n), n) for n in _eln_readers(v, key))
    for node in nodes.values():
        _unfuse_embed_layernorm(b, model, node)
    if nodes and emb is not None:
        emb = (emb[0], [n for n, idx in _alias_uses(emb[0]) if _is_row_gather(n, idx)])
    return emb


# the attributes a fused Attention may carry and keep on QAttention / MultiHeadAttention (same meaning there);
# those these kernels have no form of (set: the fp32 form stays); and one whose equal sizes the finder checked
_ATTENTION_KEPT = ATTENTION_SHARED_ATTRS
_ATTENTION_UNSUPPORTED = ("do_rotary", "past_present_share_buffer", "rotary_embedding_dim")
_ATTENTION_CHECKED = ("qkv_hidden_sizes",)
_ATTENTION_BIAS = 5  # Attention's input added to the scores (MultiHeadAttention's too)


def _fused_kernel_blocker(node: ir.Node, config: PackConfig) -> str | None:
    """Why the fused ``Attention`` ``node`` keeps an fp32 QKV (unpacked at load) instead of reading the packed
    codes with a kernel (:func:`attention_kernels`' forms), or None."""
    extra = [i for i in range(4, len(node.inputs)) if node.inputs[i] is not None and i != _ATTENTION_BIAS]
    if extra:
        return "it reads a past state"
    if any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
        return "its present state is read"
    a = node.attributes
    for name in _ATTENTION_UNSUPPORTED:
        if name in a and a[name].value:
            return f"{name} is set"
    other = sorted(set(a).difference(_ATTENTION_KEPT, _ATTENTION_UNSUPPORTED, _ATTENTION_CHECKED))
    if other:
        return f"attribute {other[0]} is not known here"
    return None


def attention_attrs(node: ir.Node) -> dict[str, Any]:
    """The attributes of a fused attention node (Attention, QAttention, MultiHeadAttention) that the others
    take with the same meaning."""
    return {k: node.attributes[k].value for k in _ATTENTION_KEPT if k in node.attributes}


def attention_kernels(b: _Builder, codes: np.ndarray, alpha: np.ndarray, scheme: str, base: str, *,
                      block_size: int, accuracy_level: int, planes: int = 1, split: bool = False):
    """Fused self-attentions whose QKV weight is the packed codes [3A, K] (per-column scales ``alpha`` [3A],
    Q | K | V), stored as ``scheme``: ``DynamicQuantizeLinear`` and ``QAttention`` on the int8 codes (ternary2 /
    trit5 / binary1, unpacked to int8 at load: the attention ``quantize --int8`` writes), or ``MatMulNBits``
    (nbits2: 2 bits in memory), ``Split`` and ``MultiHeadAttention``. The codes are stored once, their unpacking
    nodes left in ``b`` now (for the caller to place before the first reader: ALBERT's layers share one QKV), and
    ``make(x, bias, mask, attrs, attention_bias=None)`` adds one attention over ``x`` reading them and returns its
    output: ``bias`` [3A], the ``mask`` (ORT's mask_index forms, as the fused Attention read it), ``attrs``
    (heads, scale, mask value, unidirectional) and an ``attention_bias`` added to the scores (MultiHeadAttention
    takes it, QAttention does not). ``split``: the ``DynamicQuantizeMatMul``, ``Split`` and MultiHeadAttention
    form even where QAttention fits (a reader has an attention bias).

    ``planes`` 2 (split-binary): ``codes`` [3 * 2A, K] hold each third's two binary planes (Q1 Q2 K1 K2 V1 V2,
    as :func:`~deploytool.passes.pack_codes._qkv_codes` makes them), which no attention kernel sums; they are
    computed by one linear kernel in the planes' order [Q1 K1 V1 | Q2 K2 V2] (``DynamicQuantizeMatMul`` on the
    1-bit codes, or ``MatMulNBits``), the halves added as for a plain split-binary linear weight, then the bias,
    ``Split`` and ``MultiHeadAttention``. Returns ``(make, stored bytes, a note for the record)``."""
    if planes > 1 or scheme == "nbits2" or split:
        return _split_attention(b, codes, alpha, scheme, base, block_size=block_size,
                                accuracy_level=accuracy_level, planes=planes)
    n3 = codes.shape[0]
    tag = b.tag()
    wq, stored = dqmm_weight(b, np.ascontiguousarray(codes.T), scheme, base, tag)
    s_val = b.init(f"{base}_alpha", np.asarray(alpha, np.float32).reshape(-1))  # one, or one per column
    stored += s_val.const_value.nbytes
    zero_bias: list[ir.Value] = []

    def make(x: ir.Value, bias: ir.Value | None, mask: ir.Value | None, attrs: dict[str, Any],
             attention_bias: ir.Value | None = None) -> ir.Value:
        if attention_bias is not None:
            raise ValueError("QAttention takes no attention bias: build with split=True")
        if bias is None:  # QAttention's bias is not optional
            if not zero_bias:
                zero_bias.append(b.init(f"{base}_bias", np.zeros(n3, np.float32)))
            bias = zero_bias[0]
        xq, xs, xzp = b.ops("DynamicQuantizeLinear", [x], tag, 3)
        return b.op("QAttention", [xq, wq, bias, xs, s_val, mask, xzp], tag, domain="com.microsoft", **attrs)

    return make, stored, "fused Attention: QAttention on int8 codes (unpacked to int8 at load)"


def _split_attention(b: _Builder, codes: np.ndarray, alpha: np.ndarray, scheme: str, base: str, *, block_size: int,
                     accuracy_level: int, planes: int):
    """:func:`attention_kernels`' MultiHeadAttention form: the QKV on the runtime's linear kernel (both planes
    summed where there are two), ``Split`` into Q, K and V, then MultiHeadAttention (see there)."""
    if planes not in (1, 2):
        raise ValueError(f"{planes} planes: one, or two summed")
    a = codes.shape[0] // (3 * planes)
    if planes > 1:
        # [Q1 Q2 K1 K2 V1 V2] -> [Q1 K1 V1 Q2 K2 V2]: each plane's Q | K | V side by side, one plane after the other
        order = lambda v: np.ascontiguousarray(v.reshape(3, planes, a, *v.shape[1:]).swapaxes(0, 1)  # noqa: E731
                                               .reshape(3 * planes * a, *v.shape[1:]))
        codes = order(codes)
        alpha = order(np.broadcast_to(np.asarray(alpha, np.float32).reshape(-1), (codes.shape[0],)))
    tag = b.tag()
    kernel, stored = packed_kernel(b, codes, alpha, scheme, base, tag, block_size=block_size,
                                   accuracy_level=accuracy_level)

    def make(x: ir.Value, bias: ir.Value | None, mask: ir.Value | None, attrs: dict[str, Any],
             attention_bias: ir.Value | None = None) -> ir.Value:
        if planes == 1:
            y = kernel(x, bias)  # the bias in the kernel
        else:
            y = _sum_planes(b, kernel(x, None), 3 * a, tag)  # [.., 2 * 3A] -> [.., 3A]: plane 1 + plane 2
            if bias is not None:
                y = b.op("Add", [y, bias], tag)
        q, k, v = b.ops("Split", [y, b.const(np.array([a, a, a], np.int64))], tag, 3, axis=-1)
        ins = [q, k, v, None, mask] + ([attention_bias] if attention_bias is not None else [])
        return b.op("MultiHeadAttention", ins, tag, domain="com.microsoft", **attrs)

    return make, stored, split_attention_note(scheme, planes)


def split_attention_note(scheme: str, planes: int) -> str:
    """The record note of a fused attention QKV run on a linear kernel storing its codes as ``scheme`` (``planes``
    of them summed), then Split and MultiHeadAttention."""
    kernel = "MatMulNBits (2 bits in memory)" if scheme == "nbits2" else "DynamicQuantizeMatMul on int8 codes"
    if planes > 1:
        return f"fused Attention: {kernel} over both binary planes, their sum, Split and MultiHeadAttention"
    return f"fused Attention: {kernel}, Split and MultiHeadAttention"


def _pack_fused_qkv(b: _Builder, model: ir.Model, w: ir.Value, nodes: list[ir.Node], config: PackConfig
                    ) -> dict[str, Any]:
    """Pack the QKV weight ``w`` of ORT's fused ``Attention`` ``nodes`` (Q, K and V quantized as three matrices):
    once, however many nodes read it (ALBERT's layers share one), every node reading the same codes.

    Where a kernel can read the codes (:func:`_fused_kernel_blocker`, for every reader), each node becomes one
    (:func:`attention_kernels`): int8 weights in the session (speed, densest) or 2-bit ones (memory), as every
    other linear weight. Otherwise the weight is stored packed (5 trits or 8 bits per byte) and unpacked to fp32
    once, in front of the first reader, for all of them (the Attention node only takes a float weight): ORT folds
    the unpacking at session creation, so the file shrinks and the computation is the fake-quantized fp32
    weight's, exactly."""
    graph = model.graph
    arr = np.asarray(w.const_value.numpy(), dtype=np.float32)  # read where it lies (nothing writes into it)
    k_in, n3 = arr.shape
    codes, alpha = _qkv_codes(arr, config)  # [3 * P * A, K]: Q's planes, K's, V's
    base = w.name or "qkv"
    why = next((r for r in (_fused_kernel_blocker(n, config) for n in nodes) if r is not None), None)
    first = _first_in_graph(graph, nodes)
    planes = 2 if config.weights is WeightScheme.SPLIT_BINARY else 1
    if why is None:
        scheme = config.linear_scheme
        att_biases = [n.inputs[_ATTENTION_BIAS] if len(n.inputs) > _ATTENTION_BIAS else None for n in nodes]
        make, stored, note = attention_kernels(b, codes, alpha, scheme, base, block_size=config.block_size,
                                               accuracy_level=config.accuracy_level, planes=planes,
                                               split=any(v is not None for v in att_biases))
        prep = b.take()  # the weight's unpacking, once, before its first reader
        if prep:
            graph.insert_before(first, prep)
        for node, att_bias in zip(nodes, att_biases):
            bias = node.inputs[2] if len(node.inputs) > 2 else None
            mask = node.inputs[3] if len(node.inputs) > 3 else None
            out = make(node.inputs[0], bias, mask, attention_attrs(node), att_bias)
            _replace(graph, node, b.take(), out)
        if scheme == "nbits2":
            scheme = _nbits2_record_scheme(config)
        elif planes > 1:
            scheme = f"{scheme}x{planes}"
        return {"scheme": scheme, "bits": stored * 8 / (k_in * n3), "shape": [k_in, n3], "bytes": stored,
                "note": note}
    codes_kn = np.ascontiguousarray(codes.T)
    scheme = "trit5" if config.weights is WeightScheme.TERNARY else "binary1"
    tag = b.tag()
    flat = pair_values(_pack_codes(codes_kn.reshape(-1), scheme))
    b_val = b.init(f"{base}_{scheme}", flat)
    x = _unpack_pairs(b, b_val, scheme, tag)
    x = b.op("Reshape", [x, b.const(np.array([-1], np.int64))], tag)
    if codes.size != flat.size * 2 * _UNPACK[scheme][0]:
        x = b.op("Slice", [x, b.const(np.array([0], np.int64)), b.const(np.array([codes.size], np.int64))], tag)
    x = b.op("Reshape", [x, b.const(np.array([k_in, n3 * planes], np.int64))], tag)
    x = b.op("Cast", [x], tag, to=ir.DataType.FLOAT)
    a_val = b.init(f"{base}_alpha", alpha)
    x = b.op("Mul", [x, a_val], tag)
    if planes > 1:  # [K, 3 * 2A] (Q1 Q2 K1 K2 V1 V2) -> [K, 3, 2, A] -> sum the planes -> [K, 3A]
        x = b.op("Reshape", [x, b.const(np.array([k_in, 3, planes, n3 // 3], np.int64))], tag)
        x = b.op("ReduceSum", [x, b.const(np.array([2], np.int64))], tag, keepdims=0)
        x = b.op("Reshape", [x, b.const(np.array([k_in, n3], np.int64))], tag)
    graph.insert_before(first, b.take())
    for node in nodes:
        node.replace_input_with(1, x)
    packed_bytes = flat.nbytes + alpha.nbytes
    return {"scheme": scheme if planes == 1 else f"{scheme}x{planes}", "bits": packed_bytes * 8 / (k_in * n3),
            "shape": [k_in, n3], "bytes": packed_bytes,
            "note": f"fused Attention QKV: packed in the file, unpacked to fp32 when the session is created ({why})"}


class PackWeightsPass(DeployPass):
    """Quantize encoder linear weights and word embeddings to ternary/binary and pack them (see module doc)."""
    label = "pack"  # how messages name it: its command

    reference_label = "the fake-quantized fp32 model's"  # the input with the quantizer's weights
    # the gate compares with the fake-quantized reference only below these input sizes (above them the output
    # must still load and run): in this process, a temporary fp32 file written tensor by tensor (one more copy of
    # the weights on disk); in the gate's own process, in memory (build_memory_reference: int8 codes, a quarter
    # of the weights, the tables mapped; BERT-base: gate peak 356 MB, 0.82x the file)
    GATE_REFERENCE_MAX_BYTES = 1_000_000_000
    GATE_MEMORY_REFERENCE_MAX_BYTES = 4_000_000_000

    def __init__(self, config: PackConfig) -> None:
        super().__init__()
        require_config(config, PackConfig, "PackWeightsPass")  # not an AttributeError in call()
        self.config = config
        self._reference_dir: str | None = None

    def variant_step(self, result) -> dict:
        c = self.config
        w = c.weights.value if isinstance(c.weights, WeightScheme) else str(c.weights)
        r = c.runtime.value if isinstance(c.runtime, Runtime) else str(c.runtime)
        # two binary planes are a binary model (2 bits per weight): the variant's precision is "binary"
        return {"step": f"pack({w},{r})", "precision": "binary" if c.weights is WeightScheme.SPLIT_BINARY else w}

    def _reference_cosine(self, src, limit: int) -> tuple[bool, float | None]:
        """(whether the gate compares with the fake-quantized model, the least cosine or None for equality);
        ``limit``: the largest input (external data included) it compares for."""
        from deploytool.passes.base import file_size

        try:
            if file_size(src) > limit:
                return False, None  # the output still has to load and run; the reference would be another full copy
        except OSError:
            return False, None
        exact = self.config.runtime is Runtime.MEMORY and self.config.accuracy_level == 0
        return True, (None if exact else 0.9)

    def gate_reference(self, src):
        """The input with its weights replaced by the quantizer's fp32 values (:class:`FakeQuantWeightsPass`):
        with fp32 activations (``memory``, accuracy level 0) the packed model must equal it; with int8
        activations it must keep cosine >= 0.9 to it (a wrong code or scale does not)."""
        compare, cosine = self._reference_cosine(src, self.GATE_REFERENCE_MAX_BYTES)
        if not compare:
            return None
        from deploytool import scratch

        self.gate_done()
        self._reference_dir = scratch.mkdtemp("deploytool-pack-ref-")
        return build_gate_reference(src, self._reference_dir, self.config), cosine

    def early_reference(self, src):
        """The same reference, built in memory by the gate's process while this pass runs
        (:func:`build_memory_reference`)."""
        from deploytool.passes.base import EarlyReference

        compare, cosine = self._reference_cosine(src, self.GATE_MEMORY_REFERENCE_MAX_BYTES)
        if not compare:
            return None
        return EarlyReference(build="deploytool.passes.pack_weights:build_memory_reference", argument=self.config,
                              min_cosine=cosine)

    def gate_done(self) -> None:
        if self._reference_dir is not None:
            from deploytool import scratch

            scratch.remove(self._reference_dir)
            self._reference_dir = None

    def requires_input(self, model: ir.Model) -> None:
        self._refuse_packed(model, fp16=False)  # pack_pipeline upcasts an fp16 model first

    def _refuse_packed(self, model: ir.Model, fp16: bool = True) -> None:
        why = _already_packed(model, fp16=fp16)
        if why:  # checked by pack_pipeline before its opset upgrade too
            again = (f"; to move a packed file to another runtime with the same codes: deploytool repack --runtime "
                     f"{self.config.runtime.value}") if PACKING_KEY in model.metadata_props else ""
            raise PassRefusedError(f"model is already packed or quantized ({why}); pack the fp32 model instead{again}")

    def requires(self, model: ir.Model) -> None:
        self._refuse_packed(model)
        opset = model.opset_imports.get("", 0)
        if self.config.needs_int2 and opset < INT2_MIN_OPSET:
            raise PassRefusedError(
                f"opset {opset} is too old for INT2 weights (runtime speed needs opset >= {INT2_MIN_OPSET}); "
                "let pack upgrade it (upgrade_opset=True) or use --runtime densest or memory")
        if opset < PACK_MIN_OPSET:
            # the unpacking subgraphs take Split sizes and Unsqueeze/ReduceSum axes as inputs (opset 13)
            raise PassRefusedError(f"opset {opset} is too old for packing (needs >= {PACK_MIN_OPSET}); let pack "
                                   "upgrade it (upgrade_opset=True)")

    def ensures(self, model: ir.Model) -> None:
        from deploytool.errors import VerificationError

        try:
            record = json.loads(model.metadata_props.get(PACKING_KEY, "{}"))
        except ValueError:
            record = {}
        if not record:
            raise VerificationError(f"pack wrote no '{PACKING_KEY}' record; nothing written")

    def call(self, model: ir.Model) -> DeployPassResult:
        from deploytool.passes.dedupe_initializers import dedupe_initializers

        cfg = self.config
        # a weight stored once per reader (a dynamo export of ALBERT, ORT's fused Attention QKV per layer) would be
        # packed once per copy: stored once first, it is packed once and read by every layer, as a TorchScript
        # export's shared layer is (the gate's reference merges them too: FakeQuantWeightsPass)
        merged = dedupe_initializers(model)
        targets, skipped, emb, notes, tables, folded = _find_targets(model, cfg.pack_head)
        refolded = _refold_positions(model, folded, targets, cfg)  # before the weights are packed
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
        for w, nodes in fused:
            info = _pack_fused_qkv(b, model, w, nodes, cfg)
            account("attention", w.const_value.nbytes, info.pop("bytes"))
            record[w.name] = {**info, "role": "attention"}
            old.append(w)
        emb = _unfuse_packed_tables(b, model, emb, tables, cfg)  # row Gathers of the packed tables
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
        record_input_opset(model)  # without an upgrade before (upgrade_opset=False): the opset is the input's
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
        }
        from deploytool.variant import read_variant

        # the input's record (the pass's own step joins it after this call): were these weights trained for this?
        stats["note"], warning = training_note(read_variant(model.metadata_props), cfg)
        if warning is not None:  # logged as the library's other warnings are (the CLI shows it once, on stderr)
            logger.warning("%s", warning)
            stats["warning"] = warning
        if notes:
            stats["structure"] = notes[0]
        if refolded:
            stats["relative_positions_refolded"] = refolded
        if merged.tensors:
            stats["deduplicated_input"] = {"tensors": merged.tensors, "bytes": merged.bytes}
        return DeployPassResult(model, modified=True, stats=stats, skipped=skipped)


class FakeQuantWeightsPass(DeployPass):
    """Reference for the proofs: replace the same weights by their fp32 quantized values (no packing).

    The packed model computes with exactly these weights; comparing the two isolates the packing.

    ``gather_tables``: an embedding table that only plain ``Gather`` nodes read keeps its int8 codes and
    one scale per row, and each Gather becomes ``Cast(Gather(codes, ids)) * Unsqueeze(Gather(scales, ids))``:
    the gathered rows are the very float32 products of the fp32 table (``code * scale``; a test checks the
    outputs are equal), without multiplying out the whole table (BERT-base's word embeddings: 94 MB that the
    gate's process computed and wrote before anything else, ~0.27 s). Two-plane rows (``binary1x2``) too:
    each plane's half of the gathered codes times its scale, the two products added.
    """

    def __init__(self, config: PackConfig, *, gather_tables: bool = False, codes_in_graph: bool = False) -> None:
        super().__init__()
        require_config(config, PackConfig, "FakeQuantWeightsPass")  # not an AttributeError in call()
        self.config = config
        self.gather_tables = gather_tables
        self.codes_in_graph = codes_in_graph

    def call(self, model: ir.Model) -> DeployPassResult:
        from deploytool.passes.dedupe_initializers import dedupe_initializers

        cfg = self.config
        # the copies merged as PackWeightsPass merges them, so that both pass over the same graph: a weight pack
        # finds shared (and packs once, or leaves fp32 for a reader it cannot rewrite) is shared here too
        dedupe_initializers(model)
        targets, skipped, emb, _, tables, folded = _find_targets(model, cfg.pack_head)
        _refold_positions(model, folded, targets, cfg)  # from the weights as they are, before they are replaced
        # lazily: each weight is quantized when the model is written (one at a time), not all at once
        # np.asarray: a float32 weight is read where it lies (the quantizers never write into their input)
        b = _Builder(model.graph) if self.codes_in_graph else None  # one for all: it reads every name once
        for t in targets:
            if b is not None and _codes_times_scale(model, t, cfg, b):
                continue
            _replace_lazily(t.weight, lambda w, layout=t.layout: fake_quantized_weight(
                np.asarray(w, dtype=np.float32), layout, cfg))
        fused, _ = _fused_qkv_nodes(model.graph)
        for w, _nodes in fused:  # once per weight, however many Attention nodes read it
            _replace_lazily(w, lambda a: _qkv_fake_quantized(np.asarray(a, dtype=np.float32), cfg))
        schemes = []
        if emb is not None and cfg.embedding_scheme is not None:
            schemes.append((emb[0], cfg.embedding_scheme))
        if cfg.position_scheme is not None:
            schemes += [(table_v, cfg.position_scheme) for _, table_v, _ in _other_tables(tables, emb)[0]]
        for table_v, scheme in schemes:
            if not (self.gather_tables and _gather_rows_of_codes(model, table_v, scheme)):
                _replace_lazily(table_v, lambda w, s=scheme: _dequantized_embedding(w, s))
        return DeployPassResult(model, modified=True, stats={"weights_replaced": len(targets)}, skipped=skipped)


class _ComputedOnce:
    """The arrays (codes and scales, of one or two planes) that ``compute()`` gives, computed once when the
    first of them is read (by either of :func:`~deploytool.runtime.verify.memory_reference`'s threads)."""

    def __init__(self, compute) -> None:
        import threading

        self.compute = compute
        self.lock = threading.Lock()
        self.result: tuple[np.ndarray, ...] | None = None

    def get(self) -> tuple[np.ndarray, ...]:
        with self.lock:
            if self.result is None:
                self.result = self.compute()
            return self.result

    def initializer(self, graph: ir.Graph, index: int, name: str, dtype: ir.DataType, shape: list[int]) -> ir.Value:
        """A new initializer ``name`` of ``graph`` whose tensor is ``get()[index]``, computed when read."""
        v = ir.Value(name=name, shape=ir.Shape(shape), type=ir.TensorType(dtype),
                     const_value=ir.LazyTensor(lambda: ir.Tensor(self.get()[index], name=name), dtype=dtype,
                                               shape=ir.Shape(shape), name=name))
        graph.register_initializer(v)
        return v


def _weight_codes(weight: ir.TensorProtocol, layout: str, config: PackConfig) -> tuple[np.ndarray, ...]:
    """A linear weight's int8 codes in the weight's own layout, and its scale shaped to broadcast over them;
    two planes (split-binary): ``(codes1, scale1, codes2, scale2)``, each plane's one scale per output row."""
    w = np.asarray(weight.numpy(), dtype=np.float32)  # read where it lies
    with naming_weight(getattr(weight, "name", None)):
        codes, alpha, planes = _quantize(w if layout == "out_in" else w.T, config)
    alpha = np.asarray(alpha, dtype=np.float32)
    out: list[np.ndarray] = []
    n = codes.shape[0] // planes
    for p in range(planes):
        c = codes[p * n:(p + 1) * n] if planes > 1 else codes
        a = alpha[p * n:(p + 1) * n] if planes > 1 else alpha
        if layout == "out_in":  # [N, K]: one scale per row N
            out += [np.ascontiguousarray(c), (a.reshape(-1, 1) if a.ndim else a)]
        else:  # [K, N] (the codes of w.T come in its memory order: .T is contiguous)
            out += [np.ascontiguousarray(c.T), a]
    return tuple(out)


def _refold_positions(model: ir.Model, folded: list, targets: list[_Target], config: PackConfig) -> int:
    """DeBERTa's relative-position projections folded into constants, computed again with the weights the
    packed model computes with (:mod:`deploytool.passes.pack_refold`); how many constants were replaced."""
    if not folded:
        return 0
    from deploytool.passes.pack_refold import refold

    by_weight = {id(t.weight): t for t in targets}

    def quantized(linear) -> np.ndarray | None:
        t = by_weight.get(id(alias_root(linear.weight)))
        if t is None:  # not packed: its constant stays as it is
            return None
        fq = fake_quantized_weight(np.asarray(t.weight.const_value.numpy(), dtype=np.float32), t.layout, config)
        return fq if t.layout == "in_out" else fq.T

    return refold(model.graph, folded, quantized)


def _codes_times_scale(model: ir.Model, target: _Target, config: PackConfig, b: _Builder) -> bool:
    """:class:`FakeQuantWeightsPass`'s ``codes_in_graph``: the weight becomes its int8 codes and scale, and
    ``Mul(Cast(codes), scale)`` before its first reader computes the fake-quantized weight when the model runs:
    the very float32 values (a code is -1, 0 or 1, so ``code * scale`` is exact), made one weight at a time
    in the session's reused buffers instead of all of them held as float32 arrays (BERT-base: 340 MB, whose
    fresh pages cost the gate's process 0.3-0.6 s). False, with nothing changed, for a
    weight that is a graph output, one without a tensor or readers, or one read inside a subgraph. Two planes
    (split-binary): ``Mul(Cast(codes1), scale1) + Mul(Cast(codes2), scale2)``, the sum of the planes' exact
    products rounded once, as :func:`~deploytool.passes.pack_codes.fake_quantized_weight` sums them."""
    w = target.weight
    if w.const_value is None or w.is_graph_output():
        return False
    graph = model.graph
    users = [node for node, _ in w.uses()]
    if not users or any(node.graph is not graph for node in users):  # none, or one in a subgraph
        return False
    first = _first_in_graph(graph, users)
    weight_v, layout = w.const_value, target.layout
    holder = _ComputedOnce(lambda: _weight_codes(weight_v, layout, config))
    name, shape = w.name, [int(d) for d in w.const_value.shape]
    rows = shape[0] if layout == "out_in" else shape[1]
    planes = 2 if config.weights is WeightScheme.SPLIT_BINARY else 1
    # two planes: one scale per row and plane (_quantize broadcasts a matrix's two scales over its rows)
    alpha_shape = [] if config.granularity is Granularity.LAYER and planes == 1 else (
        [rows, 1] if layout == "out_in" else [rows])
    tag = b.tag()
    weight = None
    for p in range(planes):
        suffix = "" if planes == 1 else str(p + 1)
        codes_v = holder.initializer(graph, 2 * p, b.name(f"{name}_codes{suffix}"), ir.DataType.INT8, shape)
        scale_v = holder.initializer(graph, 2 * p + 1, b.name(f"{name}_scale{suffix}"), ir.DataType.FLOAT,
                                     alpha_shape)
        values = b.op("Mul", [b.op("Cast", [codes_v], tag, to=ir.DataType.FLOAT), scale_v], tag)
        weight = values if weight is None else b.op("Add", [weight, values], tag)
    graph.insert_before(first, b.take())
    w.replace_all_uses_with(weight)
    graph.initializers.pop(name)
    return True


def _table_codes(table: ir.TensorProtocol, scheme: str) -> tuple[np.ndarray, ...]:
    """An embedding table's int8 row codes and its per-row scales (two planes, ``binary1x2``: codes
    [rows, 2H] = [plane 1 | plane 2] and each plane's scales)."""
    with naming_weight(getattr(table, "name", None)):
        codes, alpha = _embedding_codes(table.numpy(), scheme)
    codes = np.ascontiguousarray(codes, dtype=np.int8)
    alpha = np.asarray(alpha, dtype=np.float32)
    if scheme == "binary1x2":
        return codes, np.ascontiguousarray(alpha[:, 0]), np.ascontiguousarray(alpha[:, 1])
    return codes, np.ascontiguousarray(alpha.reshape(-1))


def _gather_rows_of_codes(model: ir.Model, table_v: ir.Value, scheme: str) -> bool:
    """``table_v`` becomes its int8 row codes and each of its Gathers dequantizes the rows it gathers
    (:class:`FakeQuantWeightsPass`'s ``gather_tables``); two planes (``binary1x2``): each half of the gathered
    codes times its plane's row scale, the two added (``_dequantized_embedding``'s sum, rounded once). False,
    with nothing changed, for a table that anything but a plain Gather reads."""
    from deploytool.passes.pack_targets import _is_row_gather

    uses = list(table_v.uses())
    if not uses or not all(_is_row_gather(n, i) for n, i in uses):
        return False
    if table_v.const_value is None or len(table_v.const_value.shape) != 2:
        return False
    rows, hidden = (int(d) for d in table_v.const_value.shape)
    planes = 2 if scheme == "binary1x2" else 1
    table = table_v.const_value
    codes = _ComputedOnce(lambda: _table_codes(table, scheme))
    graph = model.graph
    b = _Builder(graph)
    name = table_v.name
    table_v.const_value = ir.LazyTensor(lambda: ir.Tensor(codes.get()[0], name=name), dtype=ir.DataType.INT8,
                                        shape=ir.Shape([rows, planes * hidden]), name=name)
    table_v.dtype = ir.DataType.INT8
    table_v.shape = ir.Shape([rows, planes * hidden])
    scale_vs = [codes.initializer(graph, 1 + p, b.name(f"{name}_row_scale{'' if planes == 1 else p + 1}"),
                                  ir.DataType.FLOAT, [rows]) for p in range(planes)]
    new_axes = model.opset_imports.get("", 0) >= 13
    for node, _ in uses:
        out = node.outputs[0]
        users = list(out.uses())
        out.dtype = ir.DataType.INT8
        if out.shape is not None and planes > 1:
            out.shape = None  # [..., 2H] now
        tag = b.tag()
        values = b.op("Cast", [out], tag, to=ir.DataType.FLOAT)
        rows_v = None
        for p, scale_v in enumerate(scale_vs):
            part = values if planes == 1 else b.op(
                "Slice", [values, b.const(np.array([p * hidden], np.int64)),
                          b.const(np.array([(p + 1) * hidden], np.int64)), b.const(np.array([-1], np.int64))], tag)
            scales = b.op("Gather", [scale_v, node.inputs[1]], tag, axis=0)
            if new_axes:
                scales = b.op("Unsqueeze", [scales, b.const(np.array([-1], np.int64))], tag)
            else:
                scales = b.op("Unsqueeze", [scales], tag, axes=[-1])
            product = b.op("Mul", [part, scales], tag)
            rows_v = product if rows_v is None else b.op("Add", [rows_v, product], tag)
        graph.insert_after(node, b.take())
        for user, index in users:
            user.replace_input_with(index, rows_v)
        if out in graph.outputs:  # a graph output: the dequantized rows take its place and name
            out_name = out.name
            out.name = b.name(f"{out_name}_codes")
            rows_v.name = out_name
            graph.outputs[graph.outputs.index(out)] = rows_v
    return True


def _fake_quantized_model(src: str | os.PathLike, config: PackConfig, *, gather_tables: bool = False,
                          codes_in_graph: bool = False) -> ir.Model:
    """``src`` with its weights replaced by their fake-quantized fp32 values (:class:`FakeQuantWeightsPass`):
    memory maps, each replaced weight a lazy tensor computed when it is read."""
    from deploytool import onnx_io
    from deploytool.passes.upcast_fp16 import UpcastFp16Pass

    model = onnx_io.load_model(src)
    UpcastFp16Pass()(model)  # as pack_pipeline does first (nothing on an fp32 model)
    FakeQuantWeightsPass(config, gather_tables=gather_tables, codes_in_graph=codes_in_graph)(model)
    return model


def build_gate_reference(src: str | os.PathLike, folder: str | os.PathLike, config: PackConfig) -> str:
    """Write the gate's reference for packing ``src`` with ``config`` into ``folder``: the input with its
    weights replaced by their fake-quantized fp32 values (:class:`FakeQuantWeightsPass`), streamed, with its
    weights in a data file (4 KiB aligned: ONNX Runtime maps it instead of parsing and copying them)."""
    from deploytool import onnx_io

    model = _fake_quantized_model(src, config)  # the fake-quantized weights are computed as written
    return str(onnx_io.save_streamed(model, os.path.join(folder, "reference.onnx"), external=True))


def build_memory_reference(src: str | os.PathLike, folder: str | os.PathLike, config: PackConfig):
    """The same reference as :func:`build_gate_reference`, held in memory
    (:class:`~deploytool.runtime.verify.MemoryReference`: a graph file of a few KB in ``folder``, the
    fake-quantized weights as arrays that ONNX Runtime uses in place): the gate's process builds it while
    the pass runs, without writing and mapping a copy of the model."""
    from deploytool.runtime.verify import memory_reference

    return memory_reference(_fake_quantized_model(src, config, gather_tables=True, codes_in_graph=True), folder)


def pack_pipeline(config: PackConfig) -> DeployPass:
    """The passes ``pack`` runs, in order: an fp16 input upcast to fp32 (:mod:`deploytool.passes.upcast_fp16`),
    the opset upgrade (:class:`~deploytool.passes.upgrade_opset.UpgradeOpsetPass`, ``upgrade_opset=True``: to 25
    when INT2 weights need it, else to 13 for an older export, whose Split and axes take attributes), the packing,
    and for the int8-activation runtimes the residual Add->Sum rewrite, which keeps Add+LayerNorm out of
    ORT's slow SkipLayerNormalization CPU kernel as int8 does (:mod:`deploytool.passes.residual_sum`)."""
    from deploytool.passes.base import PassSequence
    from deploytool.passes.residual_sum import ResidualAddsToSumPass
    from deploytool.passes.upcast_fp16 import UpcastFp16Pass
    from deploytool.passes.upgrade_opset import UpgradeOpsetPass

    passes: list[DeployPass] = [UpcastFp16Pass()]  # an fp16 model to fp32 first, exactly (nothing on fp32)
    if config.upgrade_opset:  # INT2 weights need 25; packing's subgraphs 13 (an opset-11 export: 11 -> 13)
        # recording the input's opset first: repack lowers a file back to it when no INT2 weight needs 25
        passes.append(UpgradeOpsetPass(INT2_MIN_OPSET if config.needs_int2 else PACK_MIN_OPSET, record=True))
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
    require_config(config, PackConfig, "pack_file")
    from deploytool.passes import transform

    return transform(src, dst, config, verify=verify)
