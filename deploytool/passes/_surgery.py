"""Row/column/head/layer surgery on an ``onnx_ir`` encoder graph, shared by the structured passes.

Everything here works through :mod:`deploytool.graph.structure` references (never initializer names):

- ``keep_out(lin, idx)``: keep output features ``idx`` of a linear (weight rows of the PyTorch
  ``[out, in]`` matrix, i.e. columns of a MatMul's ``[in, out]`` B; and the bias entries).
- ``keep_in(lin, idx)``: keep input features ``idx`` (PyTorch columns, MatMul B rows). The bias of
  such a linear is untouched: it belongs to the output features.
- ``keep_heads(layer, heads)``: head h owns features ``[h*d, (h+1)*d)`` of Q, K and V (``d`` = head
  size); Q/K/V keep those output rows in the given head order, O keeps the matching input columns,
  and every :class:`HeadSite` of the layer is rewritten to the new head count. A packed QKV weight
  ``[hidden, 3*H*d]`` (a fused Attention's, or an unfused one such as ModernBERT's ``Wqkv``) keeps
  features ``idx``, ``A + idx`` and ``2A + idx`` (``A = H*d``) and a fused op's ``num_heads`` attribute
  is updated; rotary cos/sin (per head size, broadcast over heads) need no edit. A packed QKV viewed per
  head (DeBERTa v1's ``[.., heads, 3d]`` ``in_proj``) keeps each kept head's ``3d`` rows, and per-head
  constants added after the view (its ``q_bias``/``v_bias``) the same heads along their head axis.
  Given a permutation of all heads, it reorders without changing the function.
- ``keep_neurons(layer, idx)``: the FFN intermediate keeps output rows ``idx`` (and bias), the FFN
  output keeps input columns ``idx``. A gated FFN (GLU) keeps intermediate features ``idx`` and
  ``F + idx`` and its constant chunk sizes (:class:`FFNSite`) are rewritten.
- ``drop_layers(model, structure, keep)``: each dropped layer's output is rewired to its input (so
  the next kept layer reads the previous kept layer's output; pre-LN: the residual stream passes
  through), then dead nodes and initializers go. A pre-LN layer ending in ORT's fused
  ``SkipLayerNormalization`` (which also applies the next block's LayerNorm) is replaced by a plain
  ``LayerNormalization`` of its input with that node's gamma/beta/epsilon. Where the kept graph still reads a
  dropped layer's tensor for its shape (TorchScript's DeBERTa export shares one layer's Shape reads among later
  layers), it reads the same tensor of a kept layer of the same build, so the dropped layer's weights go too.

Any tensor that another layer (or another node) also uses gets a private copy first, so an edit of
one layer never leaks into another (the dynamo exporter shares one head-count constant across all
layers).
"""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np
import onnx_ir as ir

from deploytool.errors import PassRefusedError, StructureError
from deploytool.graph._util import (  # the naming helpers live with the graph's (graph.alibi makes nodes too)
    _new_node_name,
    _new_value_name,
    _unique_name,
    alias_root,
    const_tensor,
    consumers,
    new_initializer,
)
from deploytool.graph.structure import (
    AttentionBlock,
    EncoderLayer,
    EncoderStructure,
    FFNBlock,
    HeadSite,
    Linear,
)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- tensors

def _is_own_constant(value: ir.Value) -> bool:
    """An initializer or a Constant node's output (editable in place), not an Identity of one."""
    prod = value.producer()
    if prod is None:
        return value.const_value is not None
    return prod.op_type == "Constant" and prod.domain in ("", "ai.onnx")


def get_array(value: ir.Value) -> np.ndarray:
    """The numpy array of an initializer or Constant output (through Identity nodes: the TorchScript
    exporter dedups equal weights, e.g. zero biases, this way)."""
    t = const_tensor(value)
    if t is None:
        raise StructureError(f"tensor '{value.name}' is computed in the graph, not a constant; cannot slice it")
    return t.numpy()


def _const_tensor(value: ir.Value) -> ir.TensorProtocol | None:
    """The stored tensor of an initializer ``value`` (through Identity nodes), None for anything else
    (a Constant node's output included)."""
    root = alias_root(value)
    return root.const_value if root is not None and root.producer() is None else None


# tensors above this many bytes are edited lazily: the edit runs when the file is written (one tensor at
# a time, onnx_io.staged_model), not when the pass runs
LAZY_BYTES = 1024


def set_taken(value: ir.Value, source: ir.Value, take, shape: Sequence[int]) -> None:
    """``value`` becomes ``take(array of source)`` (shape ``shape``): computed lazily, when the file is
    written, for an initializer over :data:`LAZY_BYTES` (the source stays a memory map until then);
    at once otherwise."""
    base = _const_tensor(source)
    prod = value.producer()
    if base is None or prod is not None or base.nbytes <= LAZY_BYTES:
        set_array(value, take(get_array(source)))
        return
    name = value.name

    def compute() -> ir.Tensor:
        return ir.Tensor(np.ascontiguousarray(take(base.numpy())), name=name)

    value.const_value = ir.LazyTensor(compute, dtype=base.dtype, shape=ir.Shape(list(shape)), name=name)
    value.shape = ir.Shape(list(shape))


def get_shape(value: ir.Value) -> tuple[int, ...]:
    """The shape of an initializer or Constant output without reading its data when it is stored."""
    t = _const_tensor(value)
    if t is not None:
        return tuple(int(d) for d in t.shape)
    return tuple(get_array(value).shape)


def set_array(value: ir.Value, arr: np.ndarray) -> None:
    """Replace the data of an initializer or Constant output (its consumers see the new tensor)."""
    arr = np.asarray(arr, order="C")  # not ascontiguousarray: it turns a scalar (a head count) into [1]
    tensor = ir.Tensor(arr, name=value.name)
    prod = value.producer()
    if prod is not None and prod.op_type == "Constant":
        for key in list(prod.attributes):
            del prod.attributes[key]
        prod.attributes["value"] = ir.AttrTensor("value", tensor)
    value.const_value = tensor
    value.shape = ir.Shape(arr.shape)


def private_value(graph: ir.Graph, value: ir.Value, owners: Iterable[ir.Node], tag: str) -> ir.Value:
    """Return ``value`` if only ``owners`` use it; otherwise a copy that ``owners`` now use instead."""
    owners = list(owners)
    owner_ids = {id(n) for n in owners}
    uses = list(value.uses())
    if all(id(u.node) in owner_ids for u in uses) and not value.is_graph_output() and _is_own_constant(value):
        return value
    base = _const_tensor(value)
    if base is not None and base.nbytes > LAZY_BYTES:  # a big weight: shared read-only, edited lazily later
        new = ir.Value(name=_unique_name(graph, f"{value.name or 'const'}__{tag}"), shape=ir.Shape(base.shape),
                       type=ir.TensorType(base.dtype))
        new.const_value = ir.LazyTensor(lambda: ir.Tensor(base.numpy(), name=new.name), dtype=base.dtype,
                                        shape=ir.Shape(base.shape), name=new.name)
    else:
        arr = get_array(value).copy()
        new = ir.Value(name=_unique_name(graph, f"{value.name or 'const'}__{tag}"), shape=ir.Shape(arr.shape),
                       type=ir.TensorType(ir.DataType.from_numpy(arr.dtype)))
        new.const_value = ir.Tensor(arr, name=new.name)
    graph.register_initializer(new)
    for u in uses:
        if id(u.node) in owner_ids:
            u.node.replace_input_with(u.idx, new)
    return new


# ----------------------------------------------------------------------------- linears

def _lin_owners(lin: Linear) -> list[ir.Node]:
    return [n for n in (lin.node, lin.bias_node) if n is not None]


_SLICEABLE_OPS = {("", "MatMul"), ("", "Gemm"), ("com.microsoft", "Attention")}


def check_sliceable(lin: Linear, tag: str) -> None:
    """Only float weights of plain MatMul/Gemm (or a fused Attention's packed QKV) are sliced.

    A quantized or packed projection (MatMulInteger, DynamicQuantizeMatMul, MatMulNBits, ...) carries
    per-channel scales and packed layouts this surgery does not rewrite: refuse rather than write a
    wrong model.
    """
    node = lin.node
    if (node.domain or "", node.op_type) not in _SLICEABLE_OPS and (
            node.domain not in ("ai.onnx",) or node.op_type not in ("MatMul", "Gemm")):
        raise PassRefusedError(f"{tag}: projection '{node.name}' is a {node.op_type} (quantized or packed); "
                               "prune or slice the float model before quantizing or packing it")
    for what, value in (("weight", lin.weight), ("bias", lin.bias)):
        dtype = value.dtype if value is not None else None
        if dtype is not None and not dtype.is_floating_point():
            # QDQ graphs: an int8 weight / int32 bias read through DequantizeLinear with per-channel
            # scales; packed graphs: INT2 / uint8 codes unpacked by a subgraph
            qdq = any(u.node.op_type == "DequantizeLinear" for u in value.uses())
            how = "QDQ-quantized: DequantizeLinear" if qdq else "quantized or packed"
            raise PassRefusedError(f"{tag}: {what} of '{node.name}' is stored as {dtype.name} ({how}); "
                                   "prune or slice the float model before quantizing or packing it")


def _privatize_linear(graph: ir.Graph, lin: Linear, tag: str, out: bool = True,
                      readers: Sequence[ir.Node] = ()) -> None:
    check_sliceable(lin, tag.replace("L", "layer ", 1) if tag.startswith("L") else tag)
    owners = [*_lin_owners(lin), *readers]
    lin.weight = private_value(graph, lin.weight, owners, tag)
    if lin.bias is not None and out:  # an edit of the input features leaves the bias as it is: no copy
        lin.bias = private_value(graph, lin.bias, owners, tag)


def _own_casts(graph: ir.Graph, reader: ir.Node | None, stored: ir.Value | None) -> ir.Node | None:
    """The node that reads ``stored`` on ``reader``'s behalf: ``reader`` itself, or the first of the Casts it reads
    ``stored`` through (ONNX Runtime's level-99 graph of an fp16 model reads an fp16 weight or bias through a Cast to
    float32, one Cast for every projection sharing it: DeBERTa's Q and its projection of the relative positions).
    Casts that other nodes also read are copied for ``reader`` alone, so that an edit of ``stored`` for ``reader``
    reaches ``reader`` and no one else."""
    if reader is None or stored is None:
        return reader
    for i, v in enumerate(reader.inputs):
        chain: list[ir.Node] = []
        x = v
        while x is not None and x is not stored:
            p = x.producer()
            if p is None or p.op_type != "Cast" or p.domain not in ("", "ai.onnx") or not p.inputs:
                break
            chain.append(p)
            x = p.inputs[0]
        if not chain or x is not stored:
            continue
        if all(len(list(c.outputs[0].uses())) == 1 and not c.outputs[0].is_graph_output() for c in chain):
            return chain[-1]  # already its own
        prev = stored
        first = None
        for c in reversed(chain):
            new = ir.node("Cast", inputs=[prev], attributes={"to": int(c.attributes["to"].value)},
                          name=_new_node_name(graph, f"{c.name or 'cast'}__{reader.name or 'own'}"))
            new.outputs[0].type, new.outputs[0].shape = c.outputs[0].type, c.outputs[0].shape
            new.outputs[0].name = _new_value_name(graph, f"{c.outputs[0].name or 'cast'}__own")
            graph.insert_before(reader, new)
            first = first or new
            prev = new.outputs[0]
        reader.replace_input_with(i, prev)
        return first
    return reader


# Layers that share one set of weights (ALBERT) and get the same edit keep sharing the edited copy:
# graph.meta[SHARED_EDITS] maps (stored tensor, edit) to the value the first such edit produced.
SHARED_EDITS = "deploytool.surgery.shared_edits"


def _edit_key(value: ir.Value, kind: str, idx: np.ndarray) -> tuple:
    return id(alias_root(value)), kind, np.asarray(idx, dtype=np.int64).tobytes()


def _reuse(node: ir.Node | None, old: ir.Value, new: ir.Value) -> None:
    if node is None:
        return
    for i, v in enumerate(node.inputs):
        if v is old:
            node.replace_input_with(i, new)


def _edit_linear(graph: ir.Graph, lin: Linear, idx: np.ndarray, tag: str, out: bool) -> None:
    memo = graph.meta.setdefault(SHARED_EDITS, {})
    wkey = _edit_key(lin.weight, f"{'out' if out else 'in'}:{lin.layout}", idx)
    bkey = _edit_key(lin.bias, "bias", idx) if (out and lin.bias is not None) else None
    wnode = _own_casts(graph, lin.node, lin.weight)
    bnode = _own_casts(graph, lin.bias_node or lin.node, lin.bias) if bkey is not None else None
    if wkey in memo and (bkey is None or bkey in memo):
        check_sliceable(lin, tag)
        _reuse(wnode, lin.weight, memo[wkey])
        lin.weight = memo[wkey]
        if bkey is not None:
            _reuse(bnode, lin.bias, memo[bkey])
            lin.bias = memo[bkey]
    else:
        _privatize_linear(graph, lin, tag, out, [n for n in (wnode, bnode) if n is not None])
        shape = list(get_shape(lin.weight))
        n = len(idx)
        idx = np.asarray(idx, dtype=np.int64)
        cols = (lin.layout == "in_out") == out  # the kept features are the weight's columns
        if cols:
            shape[1] = n
            # np.take, not w[:, idx]: a C-ordered result at once (fancy indexing of columns gives a
            # strided one that must be copied again; BERT-base FFN matrix ~15 ms instead of ~100 ms)
            set_taken(lin.weight, lin.weight, _column_take(idx), shape)
        else:
            shape[0] = n
            set_taken(lin.weight, lin.weight, lambda w: w[idx, :], shape)
        if out and lin.bias is not None:
            set_taken(lin.bias, lin.bias, lambda b: b[idx], [n])
        memo[wkey] = lin.weight
        if bkey is not None:
            memo[bkey] = lin.bias
    if out:
        lin.out_features = len(idx)
    else:
        lin.in_features = len(idx)


def _column_blocks(idx: np.ndarray) -> int:
    """The largest b > 1 such that ``idx`` is whole aligned blocks of b consecutive columns (a head
    permutation or subset: b a multiple of ``head_size``), else 1."""
    if idx.size < 2:
        return 1
    starts = np.concatenate([[0], np.flatnonzero(np.diff(idx) != 1) + 1])  # where each run of consecutive ids begins
    lengths = np.diff(np.append(starts, idx.size))
    b = int(np.gcd.reduce(np.concatenate([lengths, idx[starts]])))
    if b < 2 or idx.size % b:
        return 1
    firsts = idx[::b]
    ok = not np.any(firsts % b) and np.array_equal(idx.reshape(-1, b), firsts[:, None] + np.arange(b))
    return b if ok else 1


def _column_take(idx: np.ndarray):
    """``w -> np.take(w, idx, axis=1)`` for a 2-D weight; where ``idx`` is whole aligned blocks
    (a head permutation or subset), one block copy per block instead of one per column: the same values in
    the same places (BERT-base Q/K/V: ~2x faster)."""
    b = _column_blocks(idx)
    if b == 1:
        return lambda w: np.take(w, idx, axis=1)
    blocks = idx[::b] // b
    n = idx.size

    def take(w: np.ndarray) -> np.ndarray:
        if w.ndim != 2 or w.shape[1] % b:
            return np.take(w, idx, axis=1)
        return np.take(w.reshape(w.shape[0], w.shape[1] // b, b), blocks, axis=1).reshape(w.shape[0], n)

    return take


def keep_out(graph: ir.Graph, lin: Linear, idx: np.ndarray, tag: str) -> None:
    """Keep output features ``idx`` (in that order) of ``lin``: weight and bias."""
    _edit_linear(graph, lin, idx, tag, out=True)


def keep_in(graph: ir.Graph, lin: Linear, idx: np.ndarray, tag: str) -> None:
    """Keep input features ``idx`` (in that order) of ``lin``; its bias is untouched."""
    _edit_linear(graph, lin, idx, tag, out=False)


def _as_out_in(lin: Linear) -> np.ndarray:
    w = get_array(lin.weight).astype(np.float64)
    return w.T if lin.layout == "in_out" else w


def qkv_parts(att: AttentionBlock) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """[(weight [out, in] float64, bias or None)] for Q, K, V, from separate or packed weights."""
    if att.q is not None and att.k is not None and att.v is not None:
        out = []
        for lin in (att.q, att.k, att.v):
            b = get_array(lin.bias).astype(np.float64) if lin.bias is not None else None
            out.append((_as_out_in(lin), b))
        return out
    if att.qkv is not None:
        w = _as_out_in(att.qkv)  # [3*A, hidden]
        b = get_array(att.qkv.bias).astype(np.float64) if att.qkv.bias is not None else None
        rows = [np.asarray(att.part_features(i), dtype=np.int64) for i in range(3)]
        return [(w[r], None if b is None else b[r]) for r in rows]
    raise StructureError(f"attention of output node '{att.o.node.name}' has neither Q/K/V nor a packed QKV weight")


# ----------------------------------------------------------------------------- heads

def head_features(heads: Sequence[int], head_size: int) -> np.ndarray:
    heads = np.asarray(list(heads), dtype=np.int64)
    return (heads[:, None] * head_size + np.arange(head_size)[None, :]).reshape(-1)


def _site_new_value(site: HeadSite, n_heads: int, head_size: int) -> int:
    return (n_heads if site.meaning == "num_heads" else n_heads * head_size) * site.factor


def _private_node(graph: ir.Graph, node: ir.Node, layer: EncoderLayer) -> ir.Node:
    """``node`` if only ``layer`` uses its outputs; else a copy that ``layer``'s nodes now read instead.

    The dynamo exporter computes one shape Concat for the Q/K/V Reshapes of every layer; changing
    one layer's head count needs that layer's own Concat.
    """
    layer_ids = {id(n) for n in layer.nodes}
    uses = [u for out in node.outputs for u in out.uses()]
    if id(node) in layer_ids or all(id(u.node) in layer_ids for u in uses):
        return node
    if not layer_ids:
        raise StructureError(f"layer {layer.index}: head-count node '{node.name}' is shared with other layers "
                             "and the layer's nodes are unknown; cannot change its head count alone")
    if not any(id(u.node) in layer_ids for u in uses):  # a copy would be read by nothing: the edit lost
        raise StructureError(f"layer {layer.index}: head-count node '{node.name}' is read by no node the structure "
                             "finder placed in this layer; cannot change its head count alone")
    clone = ir.Node(node.domain, node.op_type, inputs=list(node.inputs), attributes=list(node.attributes.values()),
                    num_outputs=len(node.outputs), name=_new_node_name(graph, f"{node.name}__L{layer.index}"),
                    version=node.version)
    for old, new in zip(node.outputs, clone.outputs):
        new.type, new.shape = old.type, old.shape
        new.name = _new_value_name(graph, f"{old.name}__L{layer.index}") if old.name else None
    graph.insert_after(node, clone)
    for i, out in enumerate(node.outputs):
        for u in list(out.uses()):
            if id(u.node) in layer_ids:
                u.node.replace_input_with(u.idx, clone.outputs[i])
    layer.nodes.append(clone)
    return clone


def _rewrite_sites(graph: ir.Graph, layer: EncoderLayer, n_heads: int) -> None:
    att = layer.attention
    cloned: dict[int, ir.Node] = {}
    for site in att.head_sites:
        below: ir.Node | None = None  # the chain's node nearest the view, the layer's own by now
        for n in (*site.via, site.node):  # a chain to the layer's view (see HeadSite.via), nearest the view first
            mine = cloned.get(id(n))
            if mine is None:
                mine = cloned[id(n)] = _private_node(graph, n, layer)
                if site.via and all(m is not mine for m in layer.nodes):
                    layer.nodes.append(mine)  # read by the layer alone: its own now, for the nodes above
            elif below is not None:  # made the layer's own for another chain: this one reads it too
                for i, x in enumerate(below.inputs):
                    for old, new in zip(n.outputs, mine.outputs):
                        if x is old:
                            below.replace_input_with(i, new)
            below = mine
        site.node = below
    owners = [s.node for s in att.head_sites]
    done: dict[int, ir.Value] = {}
    for site in att.head_sites:
        new_val = _site_new_value(site, n_heads, att.head_size)
        if site.kind == "attribute":
            if site.attribute is None:
                raise StructureError(f"head site at node '{site.node.name}' has no attribute name")
            if site.index is not None:  # one element of an ints attribute (an opset-11 Split's sizes)
                vals = list(site.node.attributes[site.attribute].value)
                vals[site.index] = int(new_val)
                site.node.attributes[site.attribute] = ir.AttrInt64s(site.attribute, vals)
                continue
            site.node.attributes[site.attribute] = ir.AttrInt64(site.attribute, int(new_val))
            continue
        if site.value is None:
            raise StructureError(f"head site at node '{site.node.name}' carries no tensor")
        key = id(site.value)
        if key not in done:
            done[key] = private_value(graph, site.value, owners, f"L{layer.index}")
        site.value = done[key]
        arr = get_array(site.value).copy()
        if site.index is None:
            arr.reshape(-1)[0] = new_val
        else:
            arr.reshape(-1)[site.index] = new_val
        set_array(site.value, arr)
        site.shared = False


_BROADCASTING = {"Where", "Add", "Mul", "Sub", "Div", "And", "Or"}


def _relax_head_expands(graph: ir.Graph, layer: EncoderLayer, old_heads: int) -> None:
    """Let a mask expanded to [batch, heads, q, k] broadcast over any head count instead.

    DistilBERT's ``mask.expand_as(scores)`` exported by dynamo expands the mask with a shape Concat
    that holds the head count (shared by all layers). Its consumers broadcast against the scores, so
    a head dimension of 1 gives the same result for every layer's own head count.
    """
    for node in list(layer.nodes):
        for inp in node.inputs:
            exp = inp.producer() if inp is not None else None
            if exp is None or exp.op_type != "Expand" or len(exp.inputs) < 2:
                continue
            if not all(u.node.op_type in _BROADCASTING for u in exp.outputs[0].uses()):
                continue
            shape = exp.inputs[1]
            cat = shape.producer()
            if cat is not None and cat.op_type == "Concat" and len(cat.inputs) == 4:
                piece = cat.inputs[1]
                try:
                    val = get_array(piece).reshape(-1)
                except StructureError:
                    continue
                if val.size == 1 and int(val[0]) == old_heads:
                    one = new_initializer(graph, f"{piece.name or 'const'}__one", np.ones(1, dtype=val.dtype))
                    cat.replace_input_with(1, one)
            elif shape.const_value is not None or (shape.producer() is not None
                                                   and shape.producer().op_type == "Constant"):
                arr = get_array(shape)
                if arr.ndim == 1 and arr.size == 4 and int(arr[1]) == old_heads:
                    new = private_value(graph, shape, [exp], f"L{layer.index}")
                    arr = arr.copy()
                    arr[1] = 1
                    set_array(new, arr)


def _select_score_bias(graph: ir.Graph, layer: EncoderLayer, heads: Sequence[int]) -> None:
    """This layer's Add of a per-head score bias ([B, H, S, S] or [H, S, S], shared by all layers)
    now reads ``Gather(bias, heads, axis=-3)``: its own heads, in the kept order."""
    for node, i in layer.attention.score_bias:
        bias = node.inputs[i]
        idx = new_initializer(graph, f"heads_L{layer.index}", np.asarray(list(heads), dtype=np.int64))
        gather = ir.node("Gather", inputs=[bias, idx], attributes={"axis": -3},
                         name=_new_node_name(graph, f"{node.name or 'score_bias'}__heads_L{layer.index}"))
        gather.outputs[0].type = bias.type
        gather.outputs[0].name = _new_value_name(graph, f"{bias.name or 'score_bias'}__heads_L{layer.index}")
        graph.insert_before(node, gather)
        node.replace_input_with(i, gather.outputs[0])
        layer.nodes.append(gather)


def _keep_relative_heads(graph: ir.Graph, layer: EncoderLayer, heads: Sequence[int], idx: np.ndarray) -> None:
    """DeBERTa: the relative-position projections keep the same heads as Q/K/V (a projection sharing Q's
    weight reuses Q's edited copy), a folded projection constant its own selection along its head axis,
    and each relative-position GatherElements an index cut to the product's batch x heads rows."""
    att = layer.attention
    if not att.relative:
        return
    tag = f"L{layer.index}"
    for lin in att.rel_linears:
        keep_out(graph, lin, idx, tag)
    for node, i, axis in att.rel_constants:
        value = node.inputs[i]
        if axis == 0:
            # [heads, ..], or that tiled over a static batch ([batch * heads, ..]): each copy keeps the heads
            n = get_shape(value)[0]
            keep = np.asarray([b * att.num_heads + h for b in range(n // att.num_heads) for h in heads],
                              dtype=np.int64)
        elif axis == -1:  # [.., heads * head_size]
            keep = np.asarray(idx, dtype=np.int64)
        else:  # [batch, heads, ..] (DeBERTa v1's folded relative-position index): one entry per head
            keep = np.asarray(heads, dtype=np.int64)
        kept = np.take(get_array(value), keep, axis=axis)
        node.replace_input_with(i, new_initializer(graph, f"{value.name or 'rel_const'}__{tag}", kept))
    if len(heads) == att.num_heads:
        return  # a permutation: the index's batch x heads rows are all the same row
    axis = att.rel_gather_axis
    for g in att.rel_gathers:
        # the index is one [1, S, S] table broadcast over the batch x heads rows of the product it reads (axis 0
        # of [batch * heads, S, S]; axis 1 of [batch, heads, S, S]); the product now has fewer heads: keep that
        # many of the index's (identical) rows
        data, index = g.inputs[0], g.inputs[1]
        if _rows_cut(g, axis):
            continue  # an earlier head edit's cut follows the product's rows at run time
        base = f"{g.name or 'rel_gather'}__rows_{tag}"
        zero = new_initializer(graph, f"{base}_zero", np.zeros(1, dtype=np.int64))
        at = zero if axis == 0 else new_initializer(graph, f"{base}_axis", np.full(1, axis, dtype=np.int64))
        # Shape's start/end need opset 15: Shape, then Gather of the element
        shape = ir.node("Shape", inputs=[data], name=_new_node_name(graph, f"{base}_shape"))
        shape.outputs[0].name = _new_value_name(graph, f"{base}_dims")
        rows = ir.node("Gather", inputs=[shape.outputs[0], at], attributes={"axis": 0},
                       name=_new_node_name(graph, f"{base}_rows"))
        rows.outputs[0].name = _new_value_name(graph, f"{base}_n")
        cut = ir.node("Slice", inputs=[index, zero, rows.outputs[0], at], name=_new_node_name(graph, f"{base}_slice"))
        cut.outputs[0].name = _new_value_name(graph, f"{base}_index")
        cut.outputs[0].type = index.type
        graph.insert_before(g, [shape, rows, cut])
        g.replace_input_with(1, cut.outputs[0])
        layer.nodes += [shape, rows, cut]


def _rows_cut(g: ir.Node, axis: int = 0) -> bool:
    """True when ``g``'s index is already ``Slice(index, 0, Shape(data)[axis], axis)`` of its own data."""
    cut = g.inputs[1].producer() if g.inputs[1] is not None else None
    if cut is None or cut.op_type != "Slice" or len(cut.inputs) < 4 or cut.inputs[2] is None:
        return False
    ax = get_array(cut.inputs[3]).reshape(-1) if cut.inputs[3] is not None and cut.inputs[3].const_value is not None \
        else None
    if ax is None or ax.size != 1 or int(ax[0]) != axis:
        return False
    rows = cut.inputs[2].producer()
    shape = rows.inputs[0].producer() if rows is not None and rows.op_type == "Gather" else None
    return shape is not None and shape.op_type == "Shape" and shape.inputs[0] is g.inputs[0]


def keep_heads(graph: ir.Graph, layer: EncoderLayer, heads: Sequence[int]) -> None:
    """Keep ``heads`` of ``layer`` in the given order (a permutation reorders, a subset prunes)."""
    att = layer.attention
    heads = [int(h) for h in heads]
    if not heads:
        raise PassRefusedError(f"layer {layer.index}: removing all {att.num_heads} heads would delete the "
                               "attention block; keep at least one head")
    bad = [h for h in heads if not 0 <= h < att.num_heads]
    if bad:
        raise PassRefusedError(f"layer {layer.index}: head id {bad[0]} out of range 0..{att.num_heads - 1}")
    if len(set(heads)) != len(heads):
        raise PassRefusedError(f"layer {layer.index}: head ids repeat: {heads}")
    if heads == list(range(att.num_heads)):
        return
    if att.head_norms and len(heads) != att.num_heads:
        norm = att.head_norms[0]
        raise PassRefusedError(f"layer {layer.index}: a LayerNorm over all {att.num_heads} heads' features of Q or K "
                               f"(QK norm, node '{norm.name}') ties the heads together: removing one would change "
                               "the others' values; reorder, FFN and depth passes apply")
    tag = f"L{layer.index}"
    idx = head_features(heads, att.head_size)
    for node, i in att.head_norm_params:  # a permutation: the norms' scale and bias follow their features
        value = node.inputs[i]
        arr = get_array(value)
        node.replace_input_with(i, new_initializer(graph, f"{value.name or 'head_norm'}__{tag}",
                                                   np.take(arr, idx, axis=arr.ndim - 1)))
    if att.q is not None and att.k is not None and att.v is not None:
        for lin in (att.q, att.k, att.v):
            keep_out(graph, lin, idx, tag)
        _keep_packed_bias(graph, layer, heads, tag)
    elif att.qkv is not None:
        if att.qkv_interleaved:  # [.., heads, 3 * head_size]: each kept head's Q, K, V rows together
            keep = [h * 3 * att.head_size + e for h in heads for e in range(3 * att.head_size)]
        else:
            keep = [f for part in range(3) for f in att.part_features(part, heads)]
        keep_out(graph, att.qkv, np.asarray(keep, dtype=np.int64), tag)
        fused = att.fused
        if fused is not None and "qkv_hidden_sizes" in fused.attributes:
            size = len(idx)
            fused.attributes["qkv_hidden_sizes"] = ir.AttrInt64s("qkv_hidden_sizes", [size, size, size])
    else:
        raise StructureError(f"layer {layer.index}: attention has no Q/K/V weights to slice")
    keep_in(graph, att.o, idx, tag)
    for node, i, axis in att.head_constants:  # DeBERTa v1's q_bias / v_bias viewed [1, heads, 1, head_size]
        value = node.inputs[i]
        kept = np.take(get_array(value), np.asarray(heads, dtype=np.int64), axis=axis)
        node.replace_input_with(i, new_initializer(graph, f"{value.name or 'head_const'}__{tag}", kept))
    _select_score_bias(graph, layer, heads)
    _keep_relative_heads(graph, layer, heads, idx)
    if len(heads) != att.num_heads:
        if not att.head_sites and not att.heads_inferred:
            raise StructureError(f"layer {layer.index}: no place in the graph encodes the head count; "
                                 "cannot change it safely")
        _relax_head_expands(graph, layer, att.num_heads)
        _rewrite_sites(graph, layer, len(heads))
        att.num_heads = len(heads)


def _keep_packed_bias(graph: ir.Graph, layer: EncoderLayer, heads: Sequence[int], tag: str) -> None:
    """ORT's ``MultiHeadAttention`` on separate Q, K and V projections (its transformer optimizer's
    ``use_multi_head_attention``) holds their three biases packed in its input 3, ``[3 * all_head_size]`` (Q's,
    K's, V's): each part keeps the kept heads' features, in their order, as Q/K/V's weights do."""
    att = layer.attention
    node = att.fused
    if node is None or node.op_type != "MultiHeadAttention" or len(node.inputs) < 4 or node.inputs[3] is None:
        return
    bias = node.inputs[3]
    arr = get_array(bias)
    a = att.num_heads * att.head_size
    if arr.shape != (3 * a,):
        raise StructureError(f"layer {layer.index}: node '{node.name}' (MultiHeadAttention): bias of shape "
                             f"{list(arr.shape)}, not Q's, K's and V's [{3 * a}]")
    d = att.head_size
    idx = np.asarray([part * a + h * d + e for part in range(3) for h in heads for e in range(d)], dtype=np.int64)
    node.replace_input_with(3, new_initializer(graph, f"{bias.name or 'qkv_bias'}__{tag}", arr[idx]))


def keep_neurons(graph: ir.Graph, layer: EncoderLayer, idx: Sequence[int]) -> None:
    """Keep FFN neurons ``idx`` of ``layer`` in the given order.

    Neurons are numbered across the layer's FFNs (``EncoderLayer.ffns``: FFN b owns the ids after those
    of the FFNs before it); each FFN keeps its own ids, in the order they appear in ``idx``, and must keep
    at least one."""
    width = layer.ffn_width
    idx = np.asarray([int(i) for i in idx], dtype=np.int64)
    if idx.size == 0:
        raise PassRefusedError(f"layer {layer.index}: removing all {width} FFN neurons; keep at least one")
    if idx.min() < 0 or idx.max() >= width:
        bad = int(idx[(idx < 0) | (idx >= width)][0])
        raise PassRefusedError(f"layer {layer.index}: FFN neuron id {bad} out of range 0..{width - 1}")
    # ids are in range here: a count per id says whether one repeats (np.unique would import numpy.ma, ~6-25 ms
    # of a pass process)
    if np.bincount(idx, minlength=width).max() > 1:
        raise PassRefusedError(f"layer {layer.index}: FFN neuron ids repeat")
    if np.array_equal(idx, np.arange(width)):
        return
    parts = layer.ffn_offsets()
    plan = []  # every FFN checked before any is edited
    for b, (start, ffn) in enumerate(parts):
        local = idx[(idx >= start) & (idx < start + ffn.width)] - start
        if local.size == 0:
            which = f"FFN {b} (neurons {start}..{start + ffn.width - 1}) of " if len(parts) > 1 else ""
            raise PassRefusedError(f"layer {layer.index}: removing all {ffn.width} neurons of {which}the layer's "
                                   f"FFN; keep at least one")
        plan.append((ffn, local))
    for ffn, local in plan:
        _keep_block_neurons(graph, layer, ffn, local)


def _keep_block_neurons(graph: ir.Graph, layer: EncoderLayer, ffn: FFNBlock, idx: np.ndarray) -> None:
    if np.array_equal(idx, np.arange(ffn.width)):
        return
    tag = f"L{layer.index}"
    if ffn.gated:  # GLU: neuron j is the activation input j and the gate F + j
        width = ffn.width
        keep_out(graph, ffn.intermediate, np.concatenate([idx, width + idx]), tag)
        keep_in(graph, ffn.output, idx, tag)
        _rewrite_ffn_sites(graph, layer, ffn, int(idx.size))
        return
    keep_out(graph, ffn.intermediate, idx, tag)
    if ffn.gate is not None:  # T5 v1.1: neuron j is output j of both intermediates
        keep_out(graph, ffn.gate, idx, tag)
    keep_in(graph, ffn.output, idx, tag)


def _rewrite_ffn_sites(graph: ir.Graph, layer: EncoderLayer, ffn: FFNBlock, width: int) -> None:
    """Every constant that holds a gated FFN's width F (or 2F) now holds the kept width."""
    done: dict[int, ir.Value] = {}
    owners: dict[int, list[ir.Node]] = {}  # a constant read by both halves' Slices: one copy for both
    for site in ffn.sites:
        if site.value is not None:
            owners.setdefault(id(site.value), []).append(site.node)
    for site in ffn.sites:
        new_val = site.factor * width
        if site.kind == "attribute":
            vals = list(site.node.attributes[site.attribute].value)
            vals[site.index] = new_val
            site.node.attributes[site.attribute] = ir.AttrInt64s(site.attribute, vals)
            continue
        key = id(site.value)
        if key not in done:
            done[key] = private_value(graph, site.value, owners[key], f"L{layer.index}")
        site.value = done[key]
        arr = get_array(site.value).copy()
        arr.reshape(-1)[site.index] = new_val
        set_array(site.value, arr)


# ----------------------------------------------------------------------------- layers

def drop_layers(model: ir.Model, structure: EncoderStructure, keep: Sequence[int]) -> None:
    """Remove every layer not in ``keep``; the next kept layer reads the previous kept one's output."""
    graph = model.graph
    keep_set = set(int(i) for i in keep)
    if not keep_set:
        raise PassRefusedError("no encoder layer would be left")
    dropped = [layer for layer in structure.layers if layer.index not in keep_set]
    if not dropped:
        return
    watched = [(layer, n) for layer in dropped for n in _data_nodes(layer)]
    # descending order: the input of layer i is the output of layer i-1, still valid when i-1 is dropped later
    for layer in sorted(dropped, key=lambda la: la.index, reverse=True):
        out, inp = layer.output, layer.input
        if layer.output_norm is not None:
            _bypass_fused_norm(graph, layer)
            continue
        _replace_value(graph, out, inp)
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    RemoveUnusedNodesPass()(model)
    _refuse_left_inside(graph, watched, sorted(keep_set))
    if _read_shapes_from_kept(graph, structure, dropped, keep_set):
        RemoveUnusedNodesPass()(model)
    # a rewired reader (a pooler reading the last hidden state) may now precede its new producer
    graph.sort()
    structure.layers = [la for la in structure.layers if la.index in keep_set]


def _read_shapes_from_kept(graph: ir.Graph, structure: EncoderStructure, dropped: Sequence[EncoderLayer],
                           keep: set[int]) -> int:
    """Where the kept graph still reads a dropped layer's tensor for its shape only (TorchScript's export of DeBERTa
    shares one layer's Shape of its Q among the later layers' reshapes), read the same tensor of a kept layer of the
    same build instead (the same op sequence: the same shape, the batch and sequence the input's), so that the
    dropped layer's projections and weights leave the file. A dropped layer with no such kept layer is left as it
    was (its nodes computed for the shape, as before). Returns how many inputs were rewired."""
    def signature(layer: EncoderLayer) -> list[tuple[str, int, int]]:
        return [(n.op_type, len(n.inputs), len(n.outputs)) for n in layer.nodes]

    kept = [la for la in structure.layers if la.index in keep]
    moved = 0
    for layer in dropped:
        alive = {id(n) for n in _data_nodes(layer) if n.graph is graph}
        if not alive:
            continue
        sig = signature(layer)
        twins = sorted((la for la in kept if signature(la) == sig),
                       key=lambda la: (la.index > layer.index, abs(la.index - layer.index)))
        if not twins:
            logger.info("layer %d: its tensors' shapes are read by the kept graph and no kept layer has its build; "
                        "its nodes stay for the shape", layer.index)
            continue
        twin = twins[0]
        own = {id(n) for n in layer.nodes}
        for n_l, n_k in zip(layer.nodes, twin.nodes):
            if n_l.graph is not graph or n_k.graph is not graph:
                continue
            for v_l, v_k in zip(n_l.outputs, n_k.outputs):
                if v_l is None or v_k is None or v_l.is_graph_output() or (
                        v_l.dtype is not None and v_k.dtype is not None and v_l.dtype is not v_k.dtype):
                    continue
                for use in list(v_l.uses()):
                    c = use.node
                    if id(c) in own or _depends_on(v_k, c):
                        continue
                    c.replace_input_with(use.idx, v_k)
                    moved += 1
    return moved


def _depends_on(value: ir.Value, node: ir.Node) -> bool:
    """True when ``value`` is computed from ``node``'s outputs (reading it from ``node`` would make a cycle)."""
    seen: set[int] = set()
    stack = [value.producer()]
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        if n is node:
            return True
        seen.add(id(n))
        stack.extend(i.producer() for i in n.inputs if i is not None)
    return False


def _data_nodes(layer: EncoderLayer) -> list[ir.Node]:
    """The layer's nodes that compute from its hidden-state input (not through a Shape or Size: shape pieces hold
    no data of the layer, and a kept layer may share them)."""
    data = {id(v) for v in (layer.input, layer.attention_input) if v is not None}
    out: list[ir.Node] = []
    for n in layer.nodes:  # in graph order: a node's data inputs come before it
        if n.op_type not in ("Shape", "Size") and any(i is not None and id(i) in data for i in n.inputs):
            data.update(id(o) for o in n.outputs if o is not None)
            out.append(n)
    return out


def _outputs_reached(value: ir.Value, graph: ir.Graph) -> list[str]:
    """The graph outputs computed from ``value``'s data (not only from its shape)."""
    outputs = {id(o) for o in graph.outputs}
    found, seen, stack = [], set(), [value]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if id(v) in outputs:
            found.append(v.name)
        stack.extend(o for c in consumers(v) if c.op_type not in ("Shape", "Size") for o in c.outputs if o is not None)
    return found


def exposed_inside(graph: ir.Graph, starts: Sequence[ir.Node], stops: Sequence[ir.Node]) -> list[str]:
    """The graph outputs computed from the data of ``starts``' outputs without passing through ``stops``: from a
    layer's Q/K/V projections up to O (its attention probabilities, scores, per-head context), or from an FFN's
    intermediate up to its output projection (an activation). Such an output has one entry per head or neuron, in
    the graph's order: a pass that permutes heads or neurons would permute it (a different output)."""
    outputs = {id(o) for o in graph.outputs}
    stop = {id(n) for n in stops}
    found: list[str] = []
    seen: set[int] = set()
    stack = [o for n in starts for o in n.outputs if o is not None]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if id(v) in outputs and v.name not in found:
            found.append(v.name)
        stack.extend(o for c in consumers(v) if c.op_type not in ("Shape", "Size") and id(c) not in stop
                     for o in c.outputs if o is not None)
    return found


def _refuse_left_inside(graph: ir.Graph, watched: Sequence[tuple[EncoderLayer, ir.Node]], keep: list[int]) -> None:
    """Refuse when a graph output is still computed from a dropped layer's data once the layer is gone (it exposed a
    tensor inside the layer: its attention probabilities, an FFN activation): it would now be computed, with the
    layer's full weights, from a hidden state the layer no longer reads in the sliced model. (A shape read from
    inside the layer by another layer's reshape is the same in the sliced model.)"""
    for layer, node in watched:
        if node.graph is not graph:  # removed with its layer
            continue
        for v in node.outputs:
            outs = _outputs_reached(v, graph) if v is not None else []
            if outs:
                raise PassRefusedError(
                    f"graph output{'s' if len(outs) > 1 else ''} {', '.join(repr(o) for o in outs)} "
                    f"{'are' if len(outs) > 1 else 'is'} computed inside layer {layer.index} (from {node.op_type} "
                    f"'{v.name}'), which is removed (layers kept: {keep}); remove that output from the model or "
                    f"keep layer {layer.index}")


# ops whose output has their first input's element type
_SAME_TYPE = {"Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Add", "Sub", "Mul", "Div", "MatMul",
              "LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
              "SkipSimplifiedLayerNormalization", "Gelu", "FastGelu", "BiasGelu", "Relu", "Tanh", "Erf", "Dropout",
              "Slice", "Gather", "Expand", "Concat", "Split", "Sigmoid", "Softmax", "Sqrt", "Neg", "Pow", "Clip",
              "QuickGelu", "FusedMatMul", "Gemm", "Tile", "Max", "Min", "Abs", "Exp"}
# of those, the ops whose every data input has the output's type (the first may be a value of unknown type)
_ALL_SAME = {"Add", "Sub", "Mul", "Div", "MatMul", "FusedMatMul", "Gemm", "Concat", "Max", "Min"}


def _float_dtype(v: ir.Value | None) -> ir.DataType | None:
    """``v``'s float element type: declared, or read off the Cast or type-keeping ops that compute it (ONNX Runtime's
    saved graphs declare no intermediate types; any operand of a binary op or MatMul tells, as a GLU's Slice or an
    fp32 bias ORT folded does); None when not a float or unknown."""
    if v is None or (v.dtype is not None and not v.dtype.is_floating_point()):
        return None
    todo, seen = [v], set()
    while todo and len(seen) < 64:
        v = todo.pop(0)
        if v is None or id(v) in seen:
            continue
        seen.add(id(v))
        if v.dtype is not None:
            if v.dtype.is_floating_point():
                return v.dtype
            continue
        p = v.producer()
        if p is None or not p.inputs:
            continue
        if p.op_type == "Cast" and p.domain in ("", "ai.onnx") and "to" in p.attributes:
            t = ir.DataType(int(p.attributes["to"].value))
            if t.is_floating_point():
                return t
            continue
        if p.op_type in _SAME_TYPE:
            todo += list(p.inputs) if p.op_type in _ALL_SAME else [p.inputs[0]]
    return None


def _replace_value(graph: ir.Graph, old: ir.Value, new: ir.Value) -> None:
    """Every reader of ``old`` reads ``new``; a graph output keeps its name (through an Identity). Where ``new`` has
    another float type than ``old`` (ONNX Runtime's level-99 graph of an fp16 model: a layer computes in fp32 between
    Casts, the last one ends in an fp16 LayerNorm), the readers read ``new`` cast to ``old``'s type."""
    want, have = _float_dtype(old), _float_dtype(new)
    if want is not None and have is not None and want != have:
        cast = ir.node("Cast", inputs=[new], attributes={"to": int(want)},
                       name=_new_node_name(graph, f"{new.name or 'value'}__cast"))
        cast.outputs[0].type, cast.outputs[0].shape = old.type, old.shape
        cast.outputs[0].name = _new_value_name(graph, f"{new.name or 'value'}__cast")
        graph.append(cast)
        new = cast.outputs[0]
    if old.is_graph_output():
        ident = ir.node("Identity", inputs=[new])
        graph.append(ident)
        rep = ident.outputs[0]
        rep.type, rep.shape = old.type, old.shape
        ir.convenience.replace_all_uses_with(old, rep, replace_graph_outputs=True)
        name = old.name
        old.name = f"{name}__dropped"
        rep.name = name
    else:
        ir.convenience.replace_all_uses_with(old, new)


def _bypass_fused_norm(graph: ir.Graph, layer: EncoderLayer) -> None:
    """Drop a pre-LN layer that ends in ORT's fused ``SkipLayerNormalization(h1, ffn_out)``: that node
    also applies the next block's LayerNorm (output 0), so the next block now reads ``LN(input)`` with
    the same gamma/beta/epsilon, and whoever read the sum (output 3) reads the layer input."""
    skip = layer.output_norm
    inp = layer.input
    attrs = {"axis": -1}
    if "epsilon" in skip.attributes:
        attrs["epsilon"] = float(skip.attributes["epsilon"].value)
    simplified = skip.op_type == "SkipSimplifiedLayerNormalization"
    ins = [inp, skip.inputs[2]]
    if not simplified and len(skip.inputs) > 3 and skip.inputs[3] is not None:
        ins.append(skip.inputs[3])
    op, domain = ("SimplifiedLayerNormalization", "") if simplified else ("LayerNormalization", "")
    ln = ir.node(op, inputs=ins, attributes=attrs, domain=domain,
                 name=_new_node_name(graph, f"{skip.name or 'skip_norm'}__dropped_layer{layer.index}"))
    normed = skip.outputs[0]
    ln.outputs[0].type, ln.outputs[0].shape = normed.type, normed.shape
    ln.outputs[0].name = _new_value_name(graph, f"{normed.name or 'normed'}__dropped_layer{layer.index}")
    graph.insert_after(skip, ln)
    _replace_value(graph, normed, ln.outputs[0])
    if len(skip.outputs) > 3 and skip.outputs[3] is not None:
        s = skip.outputs[3]
        if list(s.uses()) or s.is_graph_output():
            _replace_value(graph, s, inp)


# ----------------------------------------------------------------------------- bookkeeping

def count_params(graph: ir.Graph) -> int:
    """Elements of floating-point initializers of rank >= 1 (the model's parameters; scalar
    constants such as an attention scale are not counted)."""
    total = 0
    for v in graph.initializers.values():
        t = v.const_value
        if t is not None and t.dtype.is_floating_point() and len(t.shape) >= 1:
            total += int(np.prod(t.shape.numpy()))
    return total


def clear_intermediate_shapes(graph: ir.Graph) -> None:
    """Forget stale shape annotations of computed values (feature widths changed); dtypes stay. A graph output's
    declared shape is kept, with its last dimension made what the graph now computes where that can be read off
    the weight it comes from (an FFN activation or a projection exposed as an output: its width changed, and the
    stale declaration failed ONNX's shape check and made ONNX Runtime warn on every load)."""
    for node in ir.traversal.RecursiveGraphIterator(graph):
        for out in node.outputs:
            if not out.is_graph_output():
                out.shape = None
    for out in graph.outputs:
        shape = out.shape
        if shape is None or len(shape) == 0 or not isinstance(shape[-1], int):
            continue
        width = _computed_width(out)
        if width is not None and width != shape[-1]:
            out.shape = ir.Shape([*list(shape)[:-1], width])


# ops whose output has their (computed) input's last dimension; and the weight ops that set it
_WIDTH_KEEPING = {"Identity", "Cast", "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "Relu", "Erf", "Tanh", "Sigmoid",
                  "Softmax", "LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization", "Add",
                  "Sub", "Mul", "Div", "Dropout", "Neg", "Sqrt", "Pow"}


def _computed_width(value: ir.Value, depth: int = 0) -> int | None:
    """The last dimension of ``value`` read off the weight it comes from through width-keeping ops, or None."""
    node = value.producer()
    if node is None or depth > 16:
        return None
    if node.op_type in ("MatMul", "Gemm") and len(node.inputs) > 1 and node.inputs[1] is not None:
        w = node.inputs[1].const_value
        if w is None or len(w.shape) < 2:
            return None
        trans_b = node.op_type == "Gemm" and any(a.name == "transB" and a.as_int() for a in node.attributes.values())
        return int(w.shape[0] if trans_b else w.shape[-1])
    if node.op_type not in _WIDTH_KEEPING:
        return None
    for x in node.inputs:  # the computed operand (a bias, a scale or a constant is not the path)
        if x is None or x.const_value is not None or (x.producer() is not None and x.producer().op_type == "Constant"):
            continue
        found = _computed_width(x, depth + 1)
        if found is not None:
            return found
    return None


def layer_counts(structure: EncoderStructure) -> dict:
    return {
        "layers": structure.num_layers,
        "heads": [la.attention.num_heads for la in structure.layers],
        "neurons": [la.ffn_width for la in structure.layers],
    }


def update_metadata(model: ir.Model, counts: dict) -> None:
    """Keep the exporter's ``deploytool.*`` architecture metadata true after a structural edit.

    A count that now differs between layers is written as 0 ("per layer, see heads_per_layer"), so
    tools that read it (ORT's fusion through ``runtime.fuse``) detect each layer's own value.
    """
    props = model.metadata_props
    heads, neurons = counts["heads"], counts["neurons"]
    props["deploytool.num_layers"] = str(counts["layers"])
    props["deploytool.num_heads"] = str(heads[0] if len(set(heads)) == 1 else 0)
    props["deploytool.ffn_size"] = str(neurons[0] if len(set(neurons)) == 1 else 0)
    props["deploytool.heads_per_layer"] = ",".join(map(str, heads))
    props["deploytool.ffn_per_layer"] = ",".join(map(str, neurons))


# ----------------------------------------------------------------------------- file in, file out
