"""Small graph helpers for the structure finder: constants, producers, consumers (no torch, no ORT)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

MS_DOMAIN = "com.microsoft"

# ops whose weight input (index 1) is a projection matrix
LINEAR_OPS = {"MatMul", "Gemm", "FusedGemm", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulNBits", "FusedMatMul"}
# (RMSNormalization: ONNX's own RMS norm, opset 23; torch's dynamo writes T5's norm as it)
LAYER_NORM_OPS = {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                  "SkipSimplifiedLayerNormalization", "RMSNormalization"}


def is_op(node: ir.Node | None, *ops: str) -> bool:
    return node is not None and node.op_type in ops


def const_tensor(v: ir.Value | None) -> ir.TensorProtocol | None:
    """The tensor of an initializer or of a Constant node's output (also through Identity nodes);
    None when not a constant."""
    if v is None:
        return None
    for _ in range(8):  # the TorchScript exporter dedups equal initializers into Identity nodes
        if v.const_value is not None:
            return v.const_value
        p = v.producer()
        if p is None or p.op_type != "Identity" or p.domain not in ("", "ai.onnx") or not p.inputs:
            break
        v = p.inputs[0]
        if v is None:
            return None
    p = v.producer()
    if p is not None and p.op_type == "Constant" and p.domain in ("", "ai.onnx"):
        for key, attr in p.attributes.items():
            if key == "value":
                return attr.value
            if key in ("value_int", "value_ints", "value_float", "value_floats"):
                dtype = np.int64 if "int" in key else np.float32
                return ir.tensor(np.asarray(attr.value, dtype=dtype))
    return None


def alias_root(v: ir.Value | None) -> ir.Value | None:
    """``v`` itself, or the value it is an ``Identity`` alias of (the TorchScript exporter dedups equal
    tensors, ALBERT's shared weights, this way)."""
    for _ in range(8):
        p = v.producer() if v is not None else None
        if p is None or p.op_type != "Identity" or p.domain not in ("", "ai.onnx") or not p.inputs:
            return v
        v = p.inputs[0]
    return v


def small_const(v: ir.Value | None, max_size: int = 64) -> np.ndarray | None:
    """numpy value of a small constant (shape pieces, scalars); None for big or non-constant values."""
    t = const_tensor(v)
    if t is None or t.size > max_size:
        return None
    try:
        return t.numpy()
    except Exception:  # e.g. packed low-bit dtypes numpy cannot show
        return None


def const_kind(v: ir.Value) -> str:
    return "initializer" if v.const_value is not None and v.is_initializer() else (
        "constant_node" if v.producer() is not None else "initializer")


def uses(v: ir.Value | None) -> list[tuple[ir.Node, int]]:
    if v is None:
        return []
    return [(u.node, u.idx) for u in v.uses()]


def consumers(v: ir.Value | None) -> list[ir.Node]:
    seen: list[ir.Node] = []
    for n, _ in uses(v):
        if not any(n is s for s in seen):
            seen.append(n)
    return seen


def data_consumers(v: ir.Value | None) -> list[ir.Node]:
    """Consumers that read the value's data (Shape/Size only read its shape, and so does a Cast read by nothing else:
    ONNX Runtime's level-99 graph of an fp16 model takes the Shape of an fp16 copy of an fp32 value)."""
    return [n for n in consumers(v) if n.op_type not in ("Shape", "Size") and not _cast_for_shape(n)]


def _cast_for_shape(n: ir.Node, depth: int = 0) -> bool:
    """A Cast whose output only Shape/Size nodes read (through further such Casts), and not a graph output."""
    if n.op_type != "Cast" or n.domain not in ("", "ai.onnx") or len(n.outputs) != 1 or depth > 4:
        return False
    out = n.outputs[0]
    readers = consumers(out)
    return bool(readers) and not out.is_graph_output() and all(
        r.op_type in ("Shape", "Size") or _cast_for_shape(r, depth + 1) for r in readers)


def single_consumer(v: ir.Value | None) -> ir.Node | None:
    """The one node reading ``v``'s data (shape readers ignored), or None."""
    c = data_consumers(v)
    return c[0] if len(c) == 1 else None


# values per byte of the lookup tables ``deploytool pack`` unpacks 2-bit, 5-trit and 1-bit codes with
UNPACK_TABLE_WIDTHS = (4, 5, 8)


def is_unpack_lookup(node: ir.Node) -> bool:
    """A ``Gather`` that unpacks packed bytes (``deploytool pack``), its indices the bytes cast to int32:
    either its data a constant int8 [256, 4|5|8] table of each byte's values, or (a whole weight, since
    2026-12-03) its indices uint16 pairs of bytes and its data the [65536, 2 * per] pair table that
    ``Reshape(Concat(Expand(Unsqueeze(table))...))`` makes from such a byte table. Its stored tensor is the
    bytes (the indices), not the table: the table is format, not a parameter."""
    if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 2:
        return False
    table, idx = node.inputs
    cast = idx.producer() if idx is not None else None
    if cast is None or cast.op_type != "Cast" or cast.attributes.get("to") is None \
            or cast.attributes["to"].value != ir.DataType.INT32:
        return False
    t = const_tensor(table)
    if t is not None:
        return is_byte_table(t)
    stored = const_tensor(cast.inputs[0]) if cast.inputs else None
    return stored is not None and stored.dtype is ir.DataType.UINT16 and _made_from_byte_table(table)


def is_byte_table(t) -> bool:
    """``t`` (a tensor, or None) is an unpack lookup's byte table: int8 [256, 4|5|8]."""
    return t is not None and t.dtype is ir.DataType.INT8 and len(t.shape) == 2 and t.shape[0] == 256 \
        and t.shape[1] in UNPACK_TABLE_WIDTHS


def _made_from_byte_table(v: ir.Value | None) -> bool:
    """``v`` is the pair table: a Reshape of a Concat whose every input expands an unsqueezed byte table."""
    p = v.producer() if v is not None else None
    if p is None or p.op_type != "Reshape" or not p.inputs or p.inputs[0] is None:
        return False
    cat = p.inputs[0].producer()
    if cat is None or cat.op_type != "Concat" or len(cat.inputs) != 2:
        return False
    for half in cat.inputs:
        e = half.producer() if half is not None else None
        u = e.inputs[0].producer() if e is not None and e.op_type == "Expand" and e.inputs[0] is not None else None
        if u is None or u.op_type != "Unsqueeze" or not u.inputs:
            return False
        t = const_tensor(u.inputs[0])
        if not is_byte_table(t):
            return False
    return True


# how far back :class:`ConstCone` follows producers (an unpacking subgraph is ~6 deep; activations go back to the
# graph inputs, which the walk need not reach to know they are not constant)
CONE_DEPTH = 24


class ConstCone:
    """Memoised 'is this value computed from constants only' (weights unpacked by a subgraph).

    The walk stops :data:`CONE_DEPTH` producers back. A "not constant" found only because a walk stopped there
    is remembered with the depth it had left, and a later query with more left looks again: before
    2026-12-03 it was remembered as final, so once a walk from far downstream had reached a packed weight's
    unpacking nodes near its limit, the weight read as computed from data for the rest of the search (a
    packed MobileBERT's FFN intermediate, DynamicQuantizeMatMul, was then no projection at all)."""

    def __init__(self) -> None:
        # id -> (root, None when final, else the depth that was left when a stopped walk found no root)
        self._memo: dict[int, tuple[ir.Value | None, int | None]] = {}

    def root(self, v: ir.Value | None, depth: int = 0) -> ir.Value | None:
        """The largest constant tensor this value is computed from, or None if it depends on inputs."""
        return self._root(v, depth)[0]

    def _root(self, v: ir.Value | None, depth: int) -> tuple[ir.Value | None, bool]:
        if v is None:
            return None, True
        key = id(v)
        left = CONE_DEPTH - depth
        hit = self._memo.get(key)
        if hit is not None and (hit[1] is None or hit[1] >= left):
            return hit[0], hit[1] is None
        result: ir.Value | None = None
        final = True
        if const_tensor(v) is not None:
            result = v
        elif left <= 0:
            final = False  # not looked at: unknown, not "not constant"
        else:
            p = v.producer()
            if p is not None and p.inputs and not v.is_graph_input():
                got = [self._root(i, depth + 1) for i in p.inputs if i is not None]
                roots = [r for r, _ in got]
                if roots and all(r is not None for r in roots):
                    # an unpack lookup's stored tensor is its bytes, however small next to the table
                    result = roots[1] if is_unpack_lookup(p) else max(roots, key=lambda r: const_tensor(r).size)
                else:  # not constant for sure when some input surely is not
                    final = not roots or any(r is None and f for r, f in got)
        self._memo[key] = (result, None if final else left)
        return result, final

    def is_const(self, v: ir.Value | None) -> bool:
        return self.root(v) is not None


def shape_derived(v: ir.Value | None, memo: dict[int, bool] | None = None, depth: int = 0) -> bool:
    """True when ``v`` is computed from constants and tensor *shapes* only (``Shape``/``Size`` of
    activations), never from activation data: e.g. SDPA's run-time ``1/sqrt(head_size)`` scale, which
    transformers computes from ``query.shape[-1]`` and exporters keep as ``Sqrt(Cast(Shape(q)[-1:]))``."""
    if v is None:
        return False
    memo = {} if memo is None else memo
    key = id(v)
    if key in memo:
        return memo[key]
    memo[key] = False  # cycle guard
    if const_tensor(v) is not None:
        result = True
    else:
        p = v.producer()
        if p is None or v.is_graph_input() or depth > 24:
            result = False
        elif p.op_type in ("Shape", "Size"):
            result = True
        else:
            result = bool(p.inputs) and all(i is None or shape_derived(i, memo, depth + 1) for i in p.inputs)
            if result and p.op_type in ("If", "Loop", "Scan"):
                # its inputs are only the condition (shapes, as TorchScript's DeBERTa v1 uneven-size check):
                # what it returns also comes from the outer values its branches read
                result = all(shape_derived(i, memo, depth + 1) for i in _captured(p))
    memo[key] = result
    return result


def _captured(node: ir.Node) -> list[ir.Value]:
    """The outer values that the subgraphs of ``node`` (an If's branches, a Loop's body) read."""
    out: list[ir.Value] = []
    for attr in node.attributes.values():
        graphs = [attr.value] if isinstance(attr.value, ir.Graph) else \
            [g for g in (attr.value or ()) if isinstance(g, ir.Graph)] if attr.type == ir.AttributeType.GRAPHS else []
        for g in graphs:
            nodes = list(ir.traversal.RecursiveGraphIterator(g))
            inner = {id(n) for n in nodes}
            own = {id(g)} | {id(n.graph) for n in nodes}
            for n in nodes:
                for i in n.inputs:
                    p = i.producer() if i is not None else None
                    if i is None or (id(p) in inner if p is not None else id(i.graph) in own):
                        continue  # computed inside, or a subgraph's own input or initializer
                    out.append(i)
    return out


_SHAPE_UNARY = {"Cast", "Neg", "Not", "Identity", "Sqrt", "Exp", "Log", "Abs", "Relu", "Sigmoid", "Tanh", "Erf",
                "Dropout", "Softmax", "Clip", "CastLike"}
_SHAPE_BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow", "Where", "Equal", "Less", "Greater", "LessOrEqual",
                    "GreaterOrEqual", "And", "Or", "Xor", "Max", "Min", "Mod"}


def _broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    rank = max(len(s) for s in shapes)
    out = []
    for k in range(rank):
        dims = {s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0} - {1}
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


_SMALL_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Equal": np.equal, "Less": np.less,
                 "Greater": np.greater, "Max": np.maximum, "Min": np.minimum, "And": np.logical_and,
                 "Or": np.logical_or}


def small_value(v: ir.Value | None, depth: int = 0, max_size: int = 64) -> np.ndarray | None:
    """The value of a small tensor the graph computes from constants and fixed shapes (shape arithmetic: the
    target of an ``Expand`` that an exporter writes as ``Where(Equal(dims, -1), ones, dims)``), computed with
    numpy; None when it depends on data or is not small."""
    c = small_const(v, max_size)
    if c is not None or v is None or depth > 32:
        return c
    p = v.producer()
    if p is None or p.domain not in ("", "ai.onnx") or not p.inputs:
        return None
    op = p.op_type
    try:
        if op == "Shape":
            shape = static_shape(p.inputs[0], depth + 1)
            if shape is None:
                return None
            start = int(p.attributes["start"].value) if "start" in p.attributes else 0
            end = int(p.attributes["end"].value) if "end" in p.attributes else len(shape)
            return np.asarray(shape[start:end], np.int64)
        # the first operand first: an activation ends the walk there, before its other operands are read
        a = small_value(p.inputs[0], depth + 1, max_size)
        if a is None:
            return None
        args = [a] + [small_value(i, depth + 1, max_size) if i is not None else None for i in p.inputs[1:]]
        if op == "Identity":
            return a
        if op == "Cast":
            to = ir.DataType(int(p.attributes["to"].value))
            return a.astype(to.numpy()) if to.numpy() is not None else None
        if op in _SMALL_BINARY and len(args) == 2 and args[1] is not None:
            return _SMALL_BINARY[op](a, args[1])
        if op == "Where" and len(args) == 3 and all(x is not None for x in args):
            return np.where(a, args[1], args[2])
        if op == "ConstantOfShape":
            fill = p.attributes["value"].value.numpy() if "value" in p.attributes else np.zeros(1, np.float32)
            dims = [int(x) for x in a.reshape(-1)]
            return np.full(dims, fill.reshape(-1)[0], fill.dtype) if int(np.prod(dims)) <= max_size else None
        if op == "Concat" and all(x is not None for x in args):
            return np.concatenate(args, axis=int(p.attributes["axis"].value))
        if op == "Unsqueeze" and len(args) == 2 and args[1] is not None:
            return np.expand_dims(a, tuple(int(x) for x in args[1].reshape(-1)))
        if op == "Gather" and len(args) == 2 and args[1] is not None:
            axis = int(p.attributes["axis"].value) if "axis" in p.attributes else 0
            return np.take(a, args[1], axis=axis)
    except Exception:  # noqa: BLE001 - a form this reader does not know: not a fixed value
        return None
    return None


def static_shape(v: ir.Value | None, depth: int = 0, memo: dict | None = None) -> tuple[int, ...] | None:
    """``v``'s shape when the graph fixes it: from its declared shape, a constant, or the shapes and constant
    operands of the ops that build a mask or bias term (elementwise ops, Expand, Unsqueeze, Reshape, Transpose,
    Gather, Slice, ConstantOfShape) and of those that keep their first input's shape (LayerNorm, SkipLayerNorm, Gelu)
    or project it (MatMul by a constant matrix, ORT's fused Attention); None when any dimension is not known without running the
    graph."""
    if v is None or depth > 64:
        return None
    memo = {} if memo is None else memo
    if id(v) in memo:
        return memo[id(v)]
    memo[id(v)] = None  # cycle guard
    memo[id(v)] = out = _static_shape(v, depth, memo)
    return out


_SHAPE_OF_FIRST = {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                   "SkipSimplifiedLayerNormalization", "RMSNormalization", "Gelu", "FastGelu", "BiasGelu", "QuickGelu"}


def _static_shape(v: ir.Value, depth: int, memo: dict) -> tuple[int, ...] | None:
    if v.shape is not None and all(isinstance(d, int) for d in v.shape):
        return tuple(int(d) for d in v.shape)
    t = const_tensor(v)
    if t is not None:
        return tuple(int(d) for d in t.shape)
    p = v.producer()
    if p is None or not p.inputs:
        return None
    op = p.op_type

    def arg(i: int) -> tuple[int, ...] | None:
        return static_shape(p.inputs[i], depth + 1, memo) if i < len(p.inputs) and p.inputs[i] is not None \
            else None

    if op in _SHAPE_OF_FIRST and p.domain in ("", "ai.onnx", MS_DOMAIN) and v is p.outputs[0]:
        first = arg(0)
        if first is None and op.startswith("Skip"):  # the skip input has the same shape
            return arg(1)
        return first
    if op == "Attention" and p.domain == MS_DOMAIN and v is p.outputs[0]:
        # ORT's fused Attention: [batch, seq, v_hidden] for an input [batch, seq, hidden] and a packed [hidden,
        # 3 * v_hidden] weight (or the V width its qkv_hidden_sizes gives)
        a, w = arg(0), const_tensor(p.inputs[1]) if len(p.inputs) > 1 else None
        if a is None or len(a) != 3 or w is None or len(w.shape) != 2:
            return None
        sizes = list(p.attributes["qkv_hidden_sizes"].value) if "qkv_hidden_sizes" in p.attributes else None
        if sizes is not None:
            return a[:2] + (int(sizes[2]),) if len(sizes) == 3 and sum(sizes) == int(w.shape[1]) else None
        return a[:2] + (int(w.shape[1]) // 3,) if int(w.shape[1]) % 3 == 0 else None
    if p.domain not in ("", "ai.onnx"):
        return None
    if op == "MatMul":
        a, w = arg(0), const_tensor(p.inputs[1]) if len(p.inputs) > 1 else None
        if a is None or w is None or len(w.shape) != 2 or len(a) < 2 or a[-1] != int(w.shape[0]):
            return None
        return a[:-1] + (int(w.shape[1]),)

    def ints(i: int) -> list[int] | None:
        c = small_value(p.inputs[i], depth + 1) if i < len(p.inputs) else None
        return None if c is None else [int(x) for x in np.asarray(c).reshape(-1)]

    if op in _SHAPE_UNARY or op == "CumSum":  # CumSum: RoBERTa's position ids, the running count of tokens
        return arg(0)
    if op in _SHAPE_BROADCAST:
        shapes = [arg(i) for i in range(len(p.inputs))]
        return None if any(s is None for s in shapes) else _broadcast(shapes)
    if op == "Expand":
        a, dims = arg(0), ints(1)
        return None if a is None or dims is None else _broadcast([a, tuple(dims)])
    if op == "ConstantOfShape":
        dims = ints(0)
        return None if dims is None else tuple(dims)
    if op in ("Unsqueeze", "Squeeze"):
        a = arg(0)
        axes = ints(1) if len(p.inputs) > 1 else (list(p.attributes["axes"].value) if "axes" in p.attributes
                                                     else None)
        if a is None or axes is None:
            return None
        if op == "Squeeze":
            axes = [x % len(a) for x in axes]
            return tuple(d for k, d in enumerate(a) if k not in axes)
        rank = len(a) + len(axes)
        axes = sorted(x % rank for x in axes)
        out, it = [], iter(a)
        for k in range(rank):
            out.append(1 if k in axes else next(it))
        return tuple(out)
    if op == "Transpose":
        a = arg(0)
        if a is None:
            return None
        perm = list(p.attributes["perm"].value) if "perm" in p.attributes else list(range(len(a)))[::-1]
        return tuple(a[k] for k in perm)
    if op == "Reshape":
        dims = ints(1)
        if dims is not None and all(d > 0 for d in dims):  # the target alone fixes it
            return tuple(dims)
        a = arg(0)
        if a is None or dims is None:
            return None
        dims = [a[k] if d == 0 and k < len(a) else d for k, d in enumerate(dims)]
        if dims.count(-1) == 1:
            known = int(np.prod([d for d in dims if d != -1]))
            dims[dims.index(-1)] = int(np.prod(a)) // known if known else 0
        return tuple(dims)
    if op == "Slice":  # constant bounds (DeBERTa's rel_embeddings[0:2 * span])
        a, starts, ends = arg(0), ints(1), ints(2)
        axes = ints(3) if len(p.inputs) > 3 and p.inputs[3] is not None else None
        steps = ints(4) if len(p.inputs) > 4 and p.inputs[4] is not None else None
        if a is None or starts is None or ends is None:
            return None
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        if not (len(starts) == len(ends) == len(axes) == len(steps)) or 0 in steps:
            return None
        out = list(a)
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            ax %= len(a)
            out[ax] = len(range(*slice(st, en, sp).indices(a[ax])))
        return tuple(out)
    if op == "Gather":
        a, idx = arg(0), arg(1)
        if a is None or idx is None:
            return None
        axis = int(p.attributes["axis"].value) % len(a) if "axis" in p.attributes else 0
        return a[:axis] + idx + a[axis + 1:]
    return None


_RANK_KEEPING = _SHAPE_UNARY | _SHAPE_OF_FIRST | {"LogSoftmax", "Hardmax", "Reciprocal", "Floor", "Ceil", "Round",
                                                  "Sign", "Sin", "Cos", "Gelu", "LeakyRelu", "Elu", "Selu", "Softplus",
                                                  "HardSigmoid", "Mish", "CumSum", "Slice", "Pad", "Tile",
                                                  "IsNaN", "IsInf", "BiasGelu", "FastGelu", "Trilu"}


def value_rank(v: ir.Value | None, depth: int = 0, memo: dict | None = None) -> int | None:
    """The rank of ``v`` when the graph fixes it, though its dimensions may be unknown: from its declared shape,
    a constant, or the ops that build it (elementwise ops broadcast, MatMul, Reshape to a target of known
    length, Transpose, Unsqueeze/Squeeze, Gather, Flatten, Shape, ...); None when no rule reaches it. For an
    old-opset graph, whose exporter declared no intermediate shapes (torch's opset-11 export: the rank of the
    attention scores, which ONNX's own shape inference leaves unknown behind a Reshape to a computed shape)."""
    if v is None or depth > 256:
        return None
    memo = {} if memo is None else memo
    if id(v) in memo:
        return memo[id(v)]
    memo[id(v)] = None  # cycle guard
    memo[id(v)] = out = _value_rank(v, depth, memo)
    return out


def _value_rank(v: ir.Value, depth: int, memo: dict) -> int | None:
    if v.shape is not None:
        return len(v.shape)
    t = const_tensor(v)
    if t is not None:
        return len(t.shape)
    p = v.producer()
    if p is None or not p.inputs:
        return None
    op = p.op_type

    def arg(i: int) -> int | None:
        return value_rank(p.inputs[i], depth + 1, memo) if i < len(p.inputs) and p.inputs[i] is not None else None

    def attr_ints(name: str) -> list[int] | None:
        return [int(x) for x in p.attributes[name].value] if name in p.attributes else None

    def length(i: int) -> int | None:  # elements of a 1-D shape or axes input
        return _vector_length(p.inputs[i], depth + 1, memo) if i < len(p.inputs) else None

    if p.domain not in ("", "ai.onnx", MS_DOMAIN):
        return None
    if op in _RANK_KEEPING and v is p.outputs[0] or op in ("Split", "Dropout"):  # every output of these
        return arg(0)
    if op in _SHAPE_BROADCAST:
        ranks = [arg(i) for i in range(len(p.inputs))]
        return None if any(r is None for r in ranks) else max(ranks)
    if op in ("Shape", "Size", "Range"):
        return 0 if op == "Size" else 1
    if op in ("MatMul", "FusedMatMul"):
        a, b = arg(0), arg(1)
        if a is None or b is None:
            return None
        if a == 1 or b == 1:
            return a + b - 2
        return max(a, b)
    if op in ("Gemm", "FusedGemm", "Flatten"):
        return 2
    if op == "Transpose":
        perm = attr_ints("perm")
        return len(perm) if perm is not None else arg(0)
    if op == "Reshape":
        return length(1)
    if op in ("Expand", "ConstantOfShape"):
        n = length(1 if op == "Expand" else 0)
        a = arg(0) if op == "Expand" else 0
        return None if n is None or a is None else max(n, a)
    if op in ("Unsqueeze", "Squeeze"):
        a = arg(0)
        axes = attr_ints("axes") if "axes" in p.attributes else (length(1) if len(p.inputs) > 1 else None)
        n = len(axes) if isinstance(axes, list) else axes
        if a is None or n is None:
            return None
        return a + n if op == "Unsqueeze" else a - n
    if op == "Gather":
        a, i = arg(0), arg(1)
        return None if a is None or i is None else a + i - 1
    if op in ("Concat", "GatherElements", "ScatterND", "ScatterElements"):
        return arg(0)
    if op.startswith("Reduce"):
        a = arg(0)
        if a is None:
            return None
        if "keepdims" not in p.attributes or int(p.attributes["keepdims"].value):
            return a
        if "axes" in p.attributes:
            return a - len(attr_ints("axes"))
        if len(p.inputs) > 1 and p.inputs[1] is not None:
            n = length(1)
            return None if n is None else a - n
        noop = "noop_with_empty_axes" in p.attributes and int(p.attributes["noop_with_empty_axes"].value)
        return a if noop else 0  # no axes: every axis reduced
    return None


def _vector_length(v: ir.Value | None, depth: int, memo: dict) -> int | None:
    """The number of elements of a 1-D shape vector (a Reshape's or Expand's target): fixed by its static
    shape, or built from ``Shape`` of a value of known rank (``Expand(mask, Shape(scores))``), ``Concat`` of
    such pieces, a Cast, or a ``Gather`` of some of its entries."""
    if v is None or depth > 256:
        return None
    s = static_shape(v)
    if s is not None:
        return int(np.prod(s))
    p = v.producer()
    if p is None or p.domain not in ("", "ai.onnx") or not p.inputs:
        return None
    if p.op_type == "Shape":
        rank = value_rank(p.inputs[0], depth + 1, memo)
        if rank is None:
            return None
        start = int(p.attributes["start"].value) if "start" in p.attributes else 0
        end = int(p.attributes["end"].value) if "end" in p.attributes else rank
        return len(range(rank)[slice(start, end)])
    if p.op_type in ("Cast", "Identity", "Abs", "Neg"):
        return _vector_length(p.inputs[0], depth + 1, memo)
    if p.op_type == "Unsqueeze" and value_rank(p.inputs[0], depth + 1, memo) == 0:  # one dimension made a vector
        return 1
    if p.op_type == "Reshape" and len(p.inputs) > 1:  # a vector viewed as [-1] (ONNX's Expand shape arithmetic)
        target = small_const(p.inputs[1])
        if target is not None and target.size == 1:
            return int(target.reshape(-1)[0]) if int(target.reshape(-1)[0]) > 0 else \
                _vector_length(p.inputs[0], depth + 1, memo)
        return None
    if p.op_type == "ConstantOfShape":  # [n]: n from a constant, or the length of the vector n is Shape of
        dims = small_value(p.inputs[0])
        if dims is not None:
            return int(dims.reshape(-1)[0]) if dims.size == 1 else None
        q = p.inputs[0].producer()
        if q is not None and q.op_type == "Shape" and not q.attributes and \
                value_rank(q.inputs[0], depth + 1, memo) == 1:
            return _vector_length(q.inputs[0], depth + 1, memo)
        return None
    if p.op_type == "Concat":
        parts = [_vector_length(x, depth + 1, memo) for x in p.inputs]
        return None if any(n is None for n in parts) else sum(parts)
    if p.op_type == "Gather" and len(p.inputs) == 2:
        idx = static_shape(p.inputs[1])
        return None if idx is None else int(np.prod(idx))
    if p.op_type in _SHAPE_BROADCAST:  # vectors broadcast: one length over 1 is the result's (an unknown is 1 or it)
        parts = [_vector_length(x, depth + 1, memo) for x in p.inputs]
        longer = {n for n in parts if n is not None} - {1}
        if len(longer) == 1:
            return longer.pop()
        return 1 if not longer and None not in parts else None
    return None


#: the attributes ORT's fused attention ops (Attention, QAttention, MultiHeadAttention) share with one meaning
ATTENTION_SHARED_ATTRS = ("num_heads", "scale", "mask_filter_value", "unidirectional")


def qkv_split(mha: ir.Node) -> tuple[ir.Node, int | None] | None:
    """``(split, A)`` when a ``Split`` into three equal parts ``A`` (None: ``num_outputs=3``, no sizes) along the
    last axis hands its outputs to
    ``mha`` (a MultiHeadAttention) as query, key and value, in that order, and to nothing else: one packed
    QKV projection read as three (``pack --runtime memory``'s form of ORT's fused Attention); else None."""
    ins = [mha.inputs[i] if len(mha.inputs) > i else None for i in range(3)]
    split = ins[0].producer() if ins[0] is not None else None
    if split is None or split.op_type != "Split" or split.domain not in ("", "ai.onnx") or list(split.outputs) != ins:
        return None
    if any(len(o.uses()) != 1 or o.is_graph_output() for o in split.outputs):
        return None
    axis = int(split.attributes["axis"].value) if "axis" in split.attributes else 0
    sizes = small_const(split.inputs[1]) if len(split.inputs) > 1 and split.inputs[1] is not None else None
    if axis != -1:
        return None
    if sizes is None and "num_outputs" in split.attributes and int(split.attributes["num_outputs"].value) == 3:
        return split, None  # opset 18's equal parts: the caller reads A from the projection's width
    if sizes is None or sizes.size != 3 or len(set(int(v) for v in sizes.reshape(-1))) != 1:
        return None
    return split, int(sizes.reshape(-1)[0])


def safe_name(base: str) -> str:
    """``base`` with ``::`` and ``/`` made ``_``: how a pass names what it adds after an existing value
    (pack's ``<weight>_<form>``, which the finder and repack map back to the weight)."""
    return base.replace("::", "_").replace("/", "_")


def unique_name(base: str, used: set[str]) -> str:
    """:func:`safe_name` of ``base``, suffixed ``_1``, ``_2``, ... until no name in ``used`` has it;
    the name returned is added to ``used``."""
    base = safe_name(base)
    n, i = base, 0
    while n in used:
        i += 1
        n = f"{base}_{i}"
    used.add(n)
    return n


def _unique_name(graph: ir.Graph, base: str) -> str:
    return _free_name(graph.initializers, base)


def _free_name(taken, base: str) -> str:
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _new_node_name(graph: ir.Graph, base: str) -> str:
    """``base``, or ``base_1``, ... : a name no node of ``graph`` has (a pass run on another pass's output meets
    the names the first one made: ONNX Runtime refuses two nodes of one name)."""
    return _free_name({n.name for n in graph.all_nodes() if n.name}, base)


def _new_value_name(graph: ir.Graph, base: str) -> str:
    """``base``, or ``base_1``, ... : a name no value of ``graph`` has (inputs, initializers, node outputs)."""
    taken = {v.name for v in graph.inputs if v.name} | set(graph.initializers)
    taken |= {o.name for n in graph.all_nodes() for o in n.outputs if o.name}
    return _free_name(taken, base)


def new_initializer(graph: ir.Graph, base: str, arr: np.ndarray) -> ir.Value:
    """A new initializer holding ``arr``, named ``base`` (or ``base_1``, ... when taken)."""
    arr = np.asarray(arr, order="C")
    v = ir.Value(name=_unique_name(graph, base), shape=ir.Shape(arr.shape),
                 type=ir.TensorType(ir.DataType.from_numpy(arr.dtype)))
    v.const_value = ir.Tensor(arr, name=v.name)
    graph.register_initializer(v)
    return v
