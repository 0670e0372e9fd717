"""Which weights ``pack`` packs: every encoder linear weight (by the structure finder, or every
MatMul/Gemm with a 2-D float initializer where it cannot read the graph), the word-embedding Gather,
the other tables, ORT's fused QKV weights, and whether a model is already packed or quantized."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from deploytool.errors import PassRefusedError, StructureError
from deploytool.graph._util import alias_root
from deploytool.passes.base import Skip
from deploytool.passes.pack_config import PACKING_KEY



_PACKED_OPS = {"MatMulNBits", "DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QAttention",
               "QGemm", "QLinearMatMul", "DequantizeLinear"}


_LOW_BIT_TYPES = {ir.DataType.INT2, ir.DataType.UINT2, ir.DataType.INT4, ir.DataType.UINT4}


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


def _roles_from_structure(model: ir.Model) -> tuple[dict[int, str], dict[str, ir.Value], str | None, list]:
    """Roles of linear weights (by id of the weight value) from the structure finder, if it works; else no
    roles and why not; and DeBERTa's folded relative-position projections (:mod:`deploytool.passes.pack_refold`:
    PassRefusedError where they cannot be computed again with the packed weights)."""
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
        return {}, {}, f"structure finder unavailable ({type(e).__name__}: {e})", []
    from deploytool.passes.pack_refold import folded_projections

    folded = folded_projections(st)
    roles: dict[int, str] = {}
    for layer in st.layers:
        for lin in layer.attention_linears():
            roles[id(lin.weight)] = "attention"
        for lin in layer.ffn_linears():
            roles[id(lin.weight)] = "ffn"
    for lin in st.other_linears:
        roles.setdefault(id(lin.weight), "other")
    return roles, dict(st.embeddings), None, folded


def _word_embedding_gather(graph: ir.Graph, word: ir.Value | None) -> tuple[ir.Value, list[ir.Node]] | None:
    """The word-embedding table and its plain Gather nodes (from the finder, else the Gather fed by
    input_ids). The Gathers may be none: ORT's fused ``EmbedLayerNormalization`` reads the table itself
    (BERT at O2/O99); :func:`_table_readers` tells the packer how every reader is served."""
    if word is None:
        ids = {v.name: v for v in graph.inputs}.get("input_ids")
        if ids is None:
            return None
        for node in graph:
            if node.op_type == "Gather" and node.domain == "" and len(node.inputs) == 2 and node.inputs[1] is ids:
                if _initializer_array(node.inputs[0]) is not None:
                    word = node.inputs[0]
                    break
    if word is None or _initializer_array(word) is None:
        return None
    gathers = [n for n, idx in word.uses() if _is_row_gather(n, idx)]
    return (word, gathers) if _alias_uses(word) else None


def _is_row_gather(node: ir.Node, idx: int) -> bool:
    """A plain ``Gather`` (axis 0) reading a table as its data input: it can gather packed rows."""
    return node.op_type == "Gather" and node.domain == "" and idx == 0 and node.attributes.get_int("axis", 0) == 0


def _table_readers(v: ir.Value, gathers: list[ir.Node]) -> list[tuple[ir.Node, int]]:
    """The nodes (and input indices) reading table ``v``, directly or through ``Identity`` aliases, that
    are not among ``gathers``: ORT's fused ``EmbedLayerNormalization`` (word, position and token-type
    tables at inputs 2, 3, 4; DistilBERT at O2 also keeps a Gather of the word table for its Shape), or
    anything else. They need the whole fp32 table, so the packer unpacks it once in front of them (ORT
    folds that at session creation), which is what the fake-quantized reference computes with: leaving
    them on the fp32 table, as before, made a DistilBERT O2 file compute with fp32 word embeddings while
    recording them packed (the gate's exact reference was off by 1.2 to 1.6)."""
    wanted = set(map(id, gathers))
    return [(n, idx) for n, idx in _alias_uses(v) if id(n) not in wanted]


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


_ATTENTION_OPS = frozenset({"Softmax", "Attention", "MultiHeadAttention", "QAttention", "GroupQueryAttention"})


def _has_attention(graph: ir.Graph) -> bool:
    """Whether ``graph`` computes attention: an attention op, or a Softmax written out as ``Div(Exp(x),
    ReduceSum(Exp(x)))`` over any axes (the finder's :func:`~deploytool.graph.finder.softmax_like_input`: ONNX
    Runtime's level-99 graph of an fp16 model expands Softmax so, having no fp16 Softmax kernel on CPU; pack took
    such a graph for one without attention and packed its pooler)."""
    from deploytool.graph.finder import softmax_like_input

    return any(n.op_type in _ATTENTION_OPS or softmax_like_input(n) is not None for n in graph)


def _find_targets(model: ir.Model, pack_head: bool = False
                  ) -> tuple[list[_Target], list[Skip], tuple[ir.Value, list[ir.Node]] | None, list[str],
                             dict[str, ir.Value], list]:
    graph = model.graph
    roles, tables, unread, folded = _roles_from_structure(model)
    if unread and not pack_head and _has_attention(graph):
        # an attention model the finder cannot read: every MatMul/Gemm weight would be packed, the pooler's and
        # classifier's too, which the default keeps fp32; refuse rather than pack what was not asked (a graph
        # without attention has no such head: every weight is packed, as the note says)
        raise PassRefusedError(f"{unread}: without it pack cannot tell the pooler and classifier (fp32 by "
                               "default) from the encoder's projections; --pack-head packs every MatMul/Gemm weight")
    notes = [f"{unread}; packing every MatMul/Gemm weight"] if unread else []
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
    if pack_head and roles and not any(t.role == "head" for t in targets.values()):
        # asked for and nothing there (a feature-extraction export): say so rather than report it as done
        skipped.append(Skip("pack_head", "no pooler or classifier weight to pack (a feature-extraction export has "
                            "none): --pack-head packed nothing"))
    result = []
    for t in targets.values():
        others = [n for n, idx in _alias_uses(t.weight) if n not in t.nodes or idx != 1]
        if others:
            skipped.append(Skip(t.nodes[0].name or "MatMul", f"{t.weight.name} also feeds {others[0].op_type}; left fp32"))
            continue
        result.append(t)
    return result, skipped, emb, notes, tables, folded


def _other_tables(tables: dict[str, ir.Value], emb) -> tuple[list[tuple[str, ir.Value, list[ir.Node]]], list[Skip]]:
    """Position and token-type tables (2-D float initializers) with their plain Gathers (axis 0); other
    readers (ORT's ``EmbedLayerNormalization``) are served by unpacking the whole table
    (:func:`_table_readers`)."""
    out, skipped = [], []
    for key in ("position", "token_type"):
        v = tables.get(key)
        if v is None or (emb is not None and v is emb[0]):
            continue
        if _initializer_array(v) is None:
            skipped.append(Skip(f"{key}_embeddings", f"{v.name} is not a 2-D float initializer; stays fp32"))
            continue
        uses = _alias_uses(v)
        if not uses:
            skipped.append(Skip(f"{key}_embeddings", f"{v.name} is read by nothing; stays fp32"))
            continue
        out.append((key, v, [n for n, idx in uses if _is_row_gather(n, idx)]))
    return out, skipped


def _already_packed(model: ir.Model, *, fp16: bool = True) -> str | None:
    """Why ``model`` is already packed or quantized, else None; ``fp16``: an fp16 weight counts (False where
    the fp16 model is to be upcast first: :func:`~deploytool.passes.pack_weights.pack_pipeline`)."""
    if PACKING_KEY in model.metadata_props:
        return f"metadata '{PACKING_KEY}' is present"
    for node in model.graph.all_nodes():
        if node.op_type in _PACKED_OPS:
            return f"it contains {node.op_type} node {node.name!r}"
    for v in model.graph.initializers.values():
        if v.const_value is not None and v.const_value.dtype in _LOW_BIT_TYPES:
            return f"initializer {v.name!r} is {v.const_value.dtype.name}"
        if fp16 and v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT16 and len(v.shape or ()) == 2:
            return f"initializer {v.name!r} is fp16 (a converted model)"
    return None


def _is_fused_attention(node: ir.Node) -> bool:
    return node.domain == "com.microsoft" and node.op_type == "Attention" and len(node.inputs) >= 2


def _fused_qkv_nodes(graph: ir.Graph) -> tuple[list[tuple[ir.Value, list[ir.Node]]], list[Skip]]:
    """com.microsoft ``Attention`` nodes (ORT's fused graphs) whose packed QKV weight [K, 3A] is a
    float initializer: Q, K and V are three matrices side by side. Grouped by weight: one weight read by several
    fused Attention nodes (ALBERT's shared layer, its copies stored once) is one group, packed once and read by
    all of them; a weight that anything else also reads stays fp32."""
    groups: dict[int, tuple[ir.Value, list[ir.Node]]] = {}
    skipped: list[Skip] = []
    for node in graph:
        if not _is_fused_attention(node):
            continue
        w = alias_root(node.inputs[1])
        arr = _initializer_array(w)
        sizes = node.attributes.get_ints("qkv_hidden_sizes", None)
        if arr is None or arr.shape[1] % 3 or (sizes and len(set(sizes)) != 1):
            skipped.append(Skip(node.name or "Attention", "fused Attention weight is not one float [K, 3A] "
                                "initializer with equal Q/K/V sizes; left fp32"))
            continue
        others = [n for n, idx in _alias_uses(w) if not (_is_fused_attention(n) and idx == 1)]
        if others:
            skipped.append(Skip(node.name or "Attention", f"{w.name} also feeds {others[0].op_type}; left fp32"))
            continue
        groups.setdefault(id(w), (w, []))[1].append(node)
    out = []
    for w, nodes in groups.values():
        readers = {id(n) for n, _ in _alias_uses(w)}
        if readers != {id(n) for n in nodes}:  # a reader among them was refused above: all stay fp32
            skipped += [Skip(n.name or "Attention", f"{w.name} is also the QKV of a fused Attention left fp32; "
                             "left fp32") for n in nodes]
            continue
        out.append((w, nodes))
    return out, skipped
