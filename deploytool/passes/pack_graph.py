"""The ONNX pieces ``pack`` emits: a node builder, the unpacking subgraphs of standard ops, the
split-binary plane sum, and the node replacements."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from deploytool.graph._util import unique_name
from deploytool.passes.pack_codes import _UNPACK


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
        return unique_name(base, self.names)

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

    def ops(self, op_type: str, inputs: list, base: str, outputs: int, domain: str = "", **attrs: Any
            ) -> tuple[ir.Value, ...]:
        """:meth:`op` for a node with several outputs: all of them, named after the node."""
        node = ir.node(op_type, inputs, attributes=attrs, domain=domain, name=self.name(f"{base}_{op_type}"),
                       num_outputs=outputs)
        for i, v in enumerate(node.outputs):
            v.name = self.name(f"{node.name}_{i}")
        self.nodes.append(node)
        return tuple(node.outputs)

    def take(self) -> list[ir.Node]:
        nodes, self.nodes = self.nodes, []
        return nodes


def unpack_table(scheme: str) -> np.ndarray:
    """[256, per] int8: row ``b`` holds the values packed in a byte ``b`` of ``scheme`` (every byte value has a
    row, so a byte the packer never writes, e.g. 243-255 for 5 trits, still indexes the table)."""
    per, divs, mod, mult, off = _UNPACK[scheme]
    byte = np.arange(256, dtype=np.int32)[:, None]
    return ((byte // np.asarray(divs, np.int32)) % mod * mult - off).astype(np.int8)


def _unpack_ops(b: _Builder, packed: ir.Value, scheme: str, tag: str) -> ir.Value:
    """uint8 bytes -> int8 values, one new trailing axis of size per-byte: [..., bytes] -> [..., bytes, per].

    A lookup: ``Gather(table[256, per], Cast(bytes, int32))``, one copy of ``per`` bytes per packed byte. The
    arithmetic it replaces (int32 ``Div`` by the digit weights, ``Mod``, ``Sub``) made four int32 arrays of
    the unpacked size while ORT folded it (``benchmarks/pack_load.py`` loads both forms of each format)."""
    x = b.op("Cast", [packed], tag, to=ir.DataType.INT32)
    return b.op("Gather", [b.const(unpack_table(scheme)), x], tag, axis=0)


def pair_values(flat: np.ndarray) -> np.ndarray:
    """Packed bytes as little-endian uint16 pairs (a zero byte appended to an odd count): what
    :func:`_unpack_pairs` reads. The pad byte's values land past the weight's end, where its Slice cuts."""
    flat = np.ascontiguousarray(flat, dtype=np.uint8).reshape(-1)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    return flat.view("<u2")


def _pair_table(b: _Builder, scheme: str) -> ir.Value:
    """[65536, 2 * per] int8: row ``lo + 256 * hi`` holds byte ``lo``'s values, then byte ``hi``'s (a pair's two
    bytes in file order). Not stored: made from the [256, per] table by Unsqueeze, Expand, Concat and Reshape
    (constants only, so ONNX Runtime folds them once, 1 MB for binary), in nodes at the head of the graph, one
    set per scheme and graph."""
    key = ("pair_table", scheme)
    if key in b._consts:
        return b._consts[key]
    per = unpack_table(scheme).shape[1]
    pending, b.nodes = b.nodes, []
    table = b.const(unpack_table(scheme))
    grid = b.const(np.array([256, 256, per], np.int64))
    lo = b.op("Expand", [b.op("Unsqueeze", [table, b.const(np.array([0], np.int64))], "pk_pairs"), grid], "pk_pairs")
    hi = b.op("Expand", [b.op("Unsqueeze", [table, b.const(np.array([1], np.int64))], "pk_pairs"), grid], "pk_pairs")
    both = b.op("Concat", [lo, hi], "pk_pairs", axis=-1)  # [hi, lo, 2 * per]
    out = b.op("Reshape", [both, b.const(np.array([65536, 2 * per], np.int64))], "pk_pairs")
    nodes, b.nodes = b.nodes, pending
    first = next(iter(b.graph), None)
    if first is None:
        b.graph.extend(nodes)
    else:
        b.graph.insert_before(first, nodes)  # its inputs are constants: before every reader
    b._consts[key] = out
    return out


def _unpack_pairs(b: _Builder, pairs: ir.Value, scheme: str, tag: str) -> ir.Value:
    """uint16 pairs of packed bytes (:func:`pair_values`) -> int8 values, [n] -> [n, 2 * per]: the lookup of
    :func:`_unpack_ops` two bytes at a time, for a whole weight that ONNX Runtime unpacks once when the
    session is created. Its Gather copies per index, so half the indices fold in less time (BERT-base, a
    user's session: binary 0.38 -> 0.34 s, densest ternary 0.57 -> 0.50 s; ``benchmarks/results/pack_load.json``)."""
    x = b.op("Cast", [pairs], tag, to=ir.DataType.INT32)
    return b.op("Gather", [_pair_table(b, scheme), x], tag, axis=0)


def _sum_planes(b: "_Builder", y: ir.Value, n: int, tag: str) -> ir.Value:
    """[..., 2N] -> [..., N]: the two planes' outputs added."""
    def half(lo: int, hi: int) -> ir.Value:
        return b.op("Slice", [y, b.const(np.array([lo], np.int64)), b.const(np.array([hi], np.int64)),
                              b.const(np.array([-1], np.int64))], tag)

    return b.op("Add", [half(0, n), half(n, 2 * n)], tag)


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


def _folded_bias(node: ir.Node, n_out: int) -> tuple[ir.Node | None, ir.Value | None]:
    """The bias ``Add`` after ``node`` that its replacement kernel takes in (:func:`_bias_add`) and that bias,
    or (None, None): fewer elementwise passes, in every runtime."""
    add = _bias_add(node, n_out)
    return (add, next(v for v in add.inputs if v is not node.outputs[0])) if add is not None else (None, None)


def _replace_kernel(graph: ir.Graph, node: ir.Node, add: ir.Node | None, new_nodes: list[ir.Node],
                    out: ir.Value) -> None:
    """``node`` (with the bias ``add`` its replacement took in, if any) replaced by ``new_nodes``, ending in ``out``."""
    if add is None:
        _replace(graph, node, new_nodes, out)
        return
    graph.insert_before(node, new_nodes)
    ir.convenience.replace_nodes_and_values(graph, node, [node, add], [], [add.outputs[0]], [out])


def _drop_unused(graph: ir.Graph, values: list[ir.Value]) -> None:
    """Remove each of ``values`` that nothing reads any more: an initializer, or a Constant node's output."""
    for v in values:
        if v.uses() or v in graph.outputs:
            continue
        if v.name in graph.initializers:
            del graph.initializers[v.name]
        p = v.producer()
        if p is not None and p.op_type == "Constant" and p.graph is graph:
            graph.remove(p, safe=True)


def _replace_lazily(v: ir.Value, fn) -> None:
    """``v``'s tensor becomes ``fn(its array)`` (float32, same shape), computed when it is read."""
    src = v.const_value
    name = v.name

    def compute() -> ir.Tensor:
        return ir.Tensor(np.ascontiguousarray(fn(src.numpy()), dtype=np.float32), name=name)

    v.const_value = ir.LazyTensor(compute, dtype=ir.DataType.FLOAT, shape=ir.Shape(list(src.shape)), name=name)
