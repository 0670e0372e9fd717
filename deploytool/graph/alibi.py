"""ALiBi tables stored whole, written back as the computation they hold.

JinaBERT v2 (jina-embeddings-v2) keeps one buffer ``alibi = -slope_h * |i - j|`` of ``[1, heads, N, N]`` for ``N =
max_position_embeddings`` and cuts ``[:, :, :S, :S]`` from it in each forward. An export stores that buffer as a
constant: 12 x 8192 x 8192 float32 values, 3.2 GB beside 0.55 GB of weights for jina-embeddings-v2-base-en
(huggingface/optimum#1800: "Cannot export jinaai models to onnx format because the model is > 2Gb").

:func:`compute_alibi_tables` finds such a constant read only through Slices that cut its last two axes from 0, checks
that every value is ``t[0, h, 0, 1] * |i - j|`` exactly in float32 (the per-head slope read from the table itself;
any other table is left alone), and replaces the cut by ``Cast(|Range(S2) - Range(S1)^T|) * slopes`` of the same
``[1, heads, S1, S2]``: the same float32 products, computed at run time from the cut's own ends, and the table is
gone from the file. An end beyond N, where the cut table fails to broadcast against the scores, now gives the
longer table (as Jina's code rebuilds it for longer inputs).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import onnx_ir as ir

from deploytool.graph._util import _new_node_name, _new_value_name, const_tensor, new_initializer, small_const

__all__ = ["alibi_table_bytes", "compute_alibi_tables", "computed_alibi_slopes", "table_slopes"]

_ROWS = 256  # rows of one head checked at a time (8192-wide rows: 8 MB of float32)


class _End(NamedTuple):
    """Where a cut's end along one axis is: the Slice's ``ends`` input, and the element of it for this axis (one
    Slice cutting both axes has a 2-element ``ends``) or None (a Slice of this axis alone: its one element)."""

    value: ir.Value
    index: int | None = None


def _cut(value: ir.Value) -> tuple[list[ir.Node], dict[int, _End], ir.Value] | None:
    """(the Slices, {axis 2/3: its end value}, the cut's output) when ``value`` ([1, H, N, N]) is read by one Slice
    (or a chain of two) cutting axes 2 and 3 from 0 in steps of 1; else None."""
    nodes: list[ir.Node] = []
    ends: dict[int, _End] = {}
    v = value
    while len(ends) < 2:
        readers = list(v.consumers())
        if len(readers) != 1 or readers[0].op_type != "Slice" or readers[0].inputs[0] is not v:
            return None
        s = readers[0]
        if len(s.inputs) < 4 or s.inputs[3] is None:
            return None
        starts, axes = small_const(s.inputs[1]), small_const(s.inputs[3])
        steps = small_const(s.inputs[4]) if len(s.inputs) > 4 and s.inputs[4] is not None else None
        if starts is None or axes is None or starts.size != axes.size:
            return None
        if steps is not None and (steps.size != axes.size or np.any(steps != 1)):
            return None
        axes_list = [int(a) + 4 if int(a) < 0 else int(a) for a in axes.reshape(-1)]
        if np.any(starts != 0) or any(a not in (2, 3) or a in ends for a in axes_list):
            return None
        if len(axes_list) == 1:
            ends[axes_list[0]] = _End(s.inputs[2])
        else:  # one Slice for both axes: its ends are a 2-element tensor, taken apart below
            ends.update({a: _End(s.inputs[2], k) for k, a in enumerate(axes_list)})
        nodes.append(s)
        v = s.outputs[0]
    return nodes, ends, v


def table_slopes(t: np.ndarray) -> np.ndarray | None:
    """The per-head factors of ``t`` ([1, H, N, N] float32) when ``t[0, h, i, j] == f_h * |i - j|`` exactly for
    every value (float32 products); else None."""
    if t.shape[2] < 2:
        return None
    f = np.ascontiguousarray(t[0, :, 0, 1]).astype(np.float32)
    n = t.shape[2]
    cols = np.arange(n, dtype=np.int64)
    want = np.empty((_ROWS, n), np.float32)
    for i in range(0, n, _ROWS):  # each block of distances once, for every head
        rows = np.arange(i, min(i + _ROWS, n), dtype=np.int64)
        d = np.abs(cols[None, :] - rows[:, None]).astype(np.float32)
        w = want[: len(rows)]
        for h in range(t.shape[1]):
            np.multiply(d, f[h], out=w)
            if not np.array_equal(t[0, h, i:i + len(rows)], w):
                return None
    return f


def _named(graph: ir.Graph, nodes: list[ir.Node]) -> list[ir.Node]:
    """``nodes`` with node and output names no node or value of ``graph`` has yet (an export's own ``val_N``
    names would otherwise collide with the ones onnx_ir makes up)."""
    for n in nodes:
        n.name = _new_node_name(graph, n.name)
        for o in n.outputs:
            o.name = _new_value_name(graph, f"{n.name}_out")
    return nodes


def _scalar(graph: ir.Graph, node: ir.Node, end: _End, tag: str, n: int) -> ir.Value:
    """The end as a scalar int64 value, computed before ``node`` (the cut's last Slice: every end is known there):
    a constant end as Slice reads it (negative from the back, clamped to the table's ``n``); else a 1-element end
    reshaped to [], the k-th element of a 2-element end gathered. (ORT's transformer optimizer drops a Reshape of
    a constant [1] to [] as useless: a constant end is never reshaped.)"""
    c = small_const(end.value)
    if c is not None:
        e = int(c.reshape(-1)[end.index or 0])
        e = min(max(e + n if e < 0 else e, 0), n)
        return new_initializer(graph, f"{tag}_end", np.asarray(e, dtype=np.int64))
    new: list[ir.Node] = []
    if end.index is not None:
        k = end.index
        idx = new_initializer(graph, f"{tag}_k{k}", np.asarray(k, dtype=np.int64))
        g = ir.node("Gather", [end.value, idx], attributes={"axis": 0}, name=f"{tag}_end{k}")
        new.append(g)
        out = g.outputs[0]
    else:
        shape = new_initializer(graph, f"{tag}_scalar", np.zeros(0, dtype=np.int64))
        r = ir.node("Reshape", [end.value, shape], name=f"{tag}_end")
        new.append(r)
        out = r.outputs[0]
    graph.insert_before(node, _named(graph, new))
    return out


class _Table(NamedTuple):
    """A whole ALiBi table found in a graph: the constant, its tensor, its per-head factors, and its cut."""

    value: ir.Value
    tensor: ir.TensorProtocol
    slopes: np.ndarray
    slices: list[ir.Node]
    ends: dict[int, _End]
    out: ir.Value


def _tables(graph: ir.Graph) -> list[_Table]:
    """Every constant of ``graph`` that holds a whole ALiBi table cut to ``[:, :, :S1, :S2]`` (see the module doc)."""
    candidates: list[ir.Value] = [v for v in graph.initializers.values()]
    candidates += [n.outputs[0] for n in graph if n.op_type == "Constant" and n.outputs]
    found = []
    for value in candidates:
        if value.is_graph_input() or value.is_graph_output():
            continue  # a table a caller may feed (an initializer listed as an input) or reads stays as it is
        shape = value.shape
        if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape):
            t = const_tensor(value)
            shape = tuple(t.shape) if t is not None else None
        if shape is None or len(shape) != 4 or shape[0] != 1 or shape[2] != shape[3] or shape[2] < 2 or shape[1] < 1:
            continue
        cut = _cut(value)
        if cut is None:
            continue
        t = const_tensor(value)
        if t is None or t.dtype != ir.DataType.FLOAT:
            continue
        f = table_slopes(t.numpy())
        if f is not None:
            found.append(_Table(value, t, f, *cut))
    return found


def alibi_table_bytes(model: ir.Model) -> dict[str, int]:
    """The whole ALiBi tables of ``model`` that :func:`compute_alibi_tables` would compute at run time: {constant's
    name: its bytes}. A buffer, not a weight (``deploytool inspect`` counts it apart from the parameters)."""
    return {tb.value.name: int(tb.tensor.nbytes) for tb in _tables(model.graph) if tb.value.name}


def _made_by(value: ir.Value | None, op: str) -> ir.Node | None:
    p = value.producer() if value is not None else None
    return p if p is not None and p.op_type == op and p.domain in ("", "ai.onnx") else None


def computed_alibi_slopes(model: ir.Model) -> set[str]:
    """The per-head slopes of the tables :func:`compute_alibi_tables` wrote as their computation: the ``[1, H, 1, 1]``
    constant of each ``Cast(|Range - Range^T|) * slopes`` (found by that structure, whatever its names). Part of a
    buffer, not weights."""
    found = set()
    for n in model.graph:
        if n.op_type != "Mul" or n.domain not in ("", "ai.onnx") or len(n.inputs) != 2:
            continue
        for k in (0, 1):
            cast, slopes = _made_by(n.inputs[k], "Cast"), n.inputs[1 - k]
            a = _made_by(cast.inputs[0], "Abs") if cast is not None else None
            d = _made_by(a.inputs[0], "Sub") if a is not None else None
            if d is None or slopes is None or slopes.name is None:
                continue
            ranges = [_made_by(r.inputs[0], "Range") for r in (_made_by(x, "Reshape") for x in d.inputs) if r is not None]
            shape = slopes.shape
            if len(ranges) == 2 and all(ranges) and shape is not None and len(shape) == 4 and \
                    [shape[0], shape[2], shape[3]] == [1, 1, 1]:
                found.add(slopes.name)
    return found


def compute_alibi_tables(model: ir.Model) -> int:
    """Replace each whole ALiBi table of ``model`` cut to ``[:, :, :S1, :S2]`` by its run-time computation (see the
    module doc); returns how many bytes of constants it removed."""
    graph = model.graph
    removed = 0
    for k, tb in enumerate(_tables(graph)):
        value, t, nodes, ends, out = tb.value, tb.tensor, tb.slices, tb.ends, tb.out
        shape = tuple(t.shape)
        last = nodes[-1]
        tag = f"alibi{k}"
        s_rows = _scalar(graph, last, ends[2], f"{tag}_rows", shape[2])
        s_cols = _scalar(graph, last, ends[3], f"{tag}_cols", shape[3])
        zero = new_initializer(graph, f"{tag}_zero", np.asarray(0, dtype=np.int64))
        one = new_initializer(graph, f"{tag}_one", np.asarray(1, dtype=np.int64))
        col_shape = new_initializer(graph, f"{tag}_colshape", np.asarray([-1, 1], dtype=np.int64))
        row_shape = new_initializer(graph, f"{tag}_rowshape", np.asarray([1, -1], dtype=np.int64))
        factors = new_initializer(graph, f"{tag}_slopes", tb.slopes.reshape(1, -1, 1, 1))
        r_rows = ir.node("Range", [zero, s_rows, one], name=f"{tag}_range_rows")
        r_cols = ir.node("Range", [zero, s_cols, one], name=f"{tag}_range_cols")
        i = ir.node("Reshape", [r_rows.outputs[0], col_shape], name=f"{tag}_i")
        j = ir.node("Reshape", [r_cols.outputs[0], row_shape], name=f"{tag}_j")
        d = ir.node("Sub", [j.outputs[0], i.outputs[0]], name=f"{tag}_sub")
        a = ir.node("Abs", [d.outputs[0]], name=f"{tag}_abs")
        c = ir.node("Cast", [a.outputs[0]], attributes={"to": int(ir.DataType.FLOAT)}, name=f"{tag}_cast")
        m = ir.node("Mul", [c.outputs[0], factors], name=f"{tag}_mul")
        graph.insert_before(last, _named(graph, [r_rows, r_cols, i, j, d, a, c, m]))
        out.replace_all_uses_with(m.outputs[0])
        inputs = [v for n in nodes for v in n.inputs[1:] if v is not None]
        for n in reversed(nodes):
            graph.remove(n, safe=True)
        for v in inputs:  # the cut's starts/ends/axes/steps nothing reads now (ORT warns of each one left)
            if not v.uses() and not v.is_graph_input() and not v.is_graph_output():
                if v.producer() is not None and v.producer().op_type == "Constant":
                    graph.remove(v.producer(), safe=True)
                elif v.name in graph.initializers:
                    graph.initializers.pop(v.name)
        if not list(value.consumers()):
            removed += int(t.nbytes)
            producer = value.producer()
            if producer is not None:
                graph.remove(producer, safe=True)
            elif value.name in graph.initializers:
                graph.initializers.pop(value.name)
    return removed
