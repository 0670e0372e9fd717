"""Rewrites that put an equivalent graph into the form the structure finder reads, before a pass edits it.

ONNX Runtime's optimizer, saving a static-shape graph at level 1 or above, applies ``MatMulAddFusion``: a
projection ``MatMul(x, W) + b`` on ``x`` of shape [batch, seq, K] becomes::

    Reshape(x, [batch * seq, K]) -> Gemm(., W, b) -> Reshape(., [batch, seq, N])

with both targets constants. The finder reads projections on [batch, seq, K]; the flattened form hides the
FFN width, the head width of an attention output and the hidden size in those targets.
:func:`unfuse_flattened_gemms` turns each such triple back into ``MatMul(x, W) + b``: ONNX Runtime fuses it again
when it loads the pass's output, and the pass's verification gate compares that output with the unchanged
input file, so a graph where the rewrite were wrong is refused, never written.

Only ORT's form is rewritten: ``transA = 0``, ``alpha = beta = 1``, a constant 2-D ``W``, a
bias (if any) of N values, a first target [M, K] and a last one [d0, .., N] with ``d0 * .. = M``, and the Gemm's
output read by that Reshape alone. ``x`` is viewed as [d0, .., K] first unless the graph shows it has that shape, or
its rank (:func:`~deploytool.graph._util.value_rank`) is that of [d0, .., K]: ORT writes the output's target as
``x``'s own leading dimensions and N, so ``x`` then is [d0, .., K] (an attention context that ORT's optimizer flattened
straight from [batch, seq, heads, head_size] keeps the view, which is the merge of the heads the finder reads). ``W`` stored transposed (``transB = 1``, [N, K]: a Linear
written on a flattened input, or another tool's form) becomes a [K, N] initializer of its own, transposed
lazily as the output is written (one per weight, however many Gemms read it); ``W`` goes once nothing reads it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from deploytool.graph._util import const_tensor, small_const, static_shape, value_rank



def _namer(graph: ir.Graph):
    """A function giving a name no value, initializer, input or node of ``graph`` has: ``base``, else ``base_1``,
    ``base_2``, ... (each name it gave counts as taken)."""
    used = {v.name for v in graph.initializers.values()} | {n.name for n in graph} | {v.name for v in graph.inputs}
    for node in graph:
        used.update(o.name for o in node.outputs if o.name)

    def fresh(base: str) -> str:
        name, i = base, 1
        while name in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        return name

    return fresh

def _plain_gemm(node: ir.Node) -> bool:
    a = node.attributes
    return (node.op_type == "Gemm" and node.domain in ("", "ai.onnx") and a.get_int("transA", 0) == 0
            and a.get_int("transB", 0) in (0, 1) and a.get_float("alpha", 1.0) == 1.0
            and a.get_float("beta", 1.0) == 1.0)


TRANSPOSED_FROM = "deploytool.transposed_from"  # Value.meta key (not written): a [K, N] copy -> its [N, K] source


def _transposed(src: ir.Value, name: str) -> ir.Value:
    """A new initializer-to-be: ``src``'s constant [N, K] as [K, N], computed when it is first read."""
    t = src.const_value
    n, k = (int(d) for d in t.shape)

    def compute() -> ir.Tensor:
        return ir.Tensor(np.ascontiguousarray(t.numpy().T), name=name)

    value = ir.Value(name=name, shape=ir.Shape([k, n]), type=ir.TensorType(t.dtype),
                     const_value=ir.LazyTensor(compute, dtype=t.dtype, shape=ir.Shape([k, n]), name=name))
    value.meta[TRANSPOSED_FROM] = src  # the same parameters: a reader that counts them counts one of the two
    return value


@dataclasses.dataclass
class _Flat:
    first: ir.Node  # Reshape(x, [M, K])
    last: ir.Node  # Reshape(Gemm, t2)
    bias: ir.Value | None
    lead: tuple[int, ...]  # t2's leading dims whose product is M: the product's shape is lead + (N,)
    k: int
    n: int
    keep_last: bool  # t2 also splits N (ORT merged the head split [.., heads, head_size] into it): kept


def _flattened(gemm: ir.Node) -> _Flat | None:
    """One flattened projection around ``gemm``, or None when ``gemm`` is not one."""
    if not _plain_gemm(gemm) or len(gemm.inputs) < 2 or gemm.inputs[0] is None:
        return None
    w = const_tensor(gemm.inputs[1])
    if w is None or len(w.shape) != 2:
        return None
    k, n = (int(d) for d in w.shape)
    if gemm.attributes.get_int("transB", 0):
        if not gemm.inputs[1].is_initializer():  # a Constant node's weight: not rewritten (rare)
            return None
        k, n = n, k
    bias = gemm.inputs[2] if len(gemm.inputs) > 2 else None
    if bias is not None:
        b = const_tensor(bias)
        if b is None or int(np.prod(b.shape)) != n or len(b.shape) > 2:
            return None
    first = gemm.inputs[0].producer()
    if first is None or first.op_type != "Reshape" or first.domain not in ("", "ai.onnx") or len(first.inputs) < 2:
        return None
    t1 = small_const(first.inputs[1])
    if t1 is None or t1.size != 2 or int(t1[1]) != k or int(t1[0]) <= 0:
        return None
    m = int(t1[0])
    out = gemm.outputs[0]
    uses = list(out.uses())
    if len(uses) != 1 or gemm.graph is None or out in gemm.graph.outputs:
        return None
    last = uses[0][0]
    if last.op_type != "Reshape" or last.domain not in ("", "ai.onnx") or last.inputs[0] is not out \
            or len(last.inputs) < 2:
        return None
    t2 = small_const(last.inputs[1])
    if t2 is None or t2.size < 3 or (t2 <= 0).any():
        return None
    dims = [int(d) for d in t2.reshape(-1)]
    for j in range(2, len(dims)):  # [batch, seq, ..] | [.., N]
        if int(np.prod(dims[:j])) == m and int(np.prod(dims[j:])) == n:
            return _Flat(first, last, bias, tuple(dims[:j]), k, n, keep_last=j != len(dims) - 1)
    return None


def _const(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    v = ir.Value(name=name, shape=ir.Shape(list(array.shape)), type=ir.TensorType(ir.DataType.INT64),
                 const_value=ir.tensor(array, name=name))
    graph.register_initializer(v)
    return v


def unfuse_flattened_gemms(model: ir.Model) -> int:
    """Rewrite every ``Reshape -> Gemm -> Reshape`` of ORT's ``MatMulAddFusion`` on a static-shape graph back to
    ``MatMul + Add`` on the unflattened input (see the module doc); returns how many. ``model`` is edited in
    place; a graph without that form is left as it was."""
    graph = model.graph
    found = [(g, f) for g in list(graph) if (f := _flattened(g)) is not None]
    if not found:
        return 0
    fresh = _namer(graph)

    targets = {id(v): v for _, f in found for v in (f.first.inputs[1], f.last.inputs[1])}  # ORT's, dropped below
    views: dict[tuple[int, tuple[int, ...]], ir.Value] = {}  # Q, K and V of one input read one view of it
    turned: dict[int, tuple[ir.Value, ir.Value]] = {}  # a transB weight -> (it, its [K, N] copy), one per weight
    dead: list[ir.Node] = []
    for gemm, f in found:
        x = f.first.inputs[0]
        name = gemm.name or "gemm"
        want = f.lead + (f.k,)
        dtype = ir.TensorType(const_tensor(gemm.inputs[1]).dtype)
        new = []
        # a view where x's shape is not lead + [K] (a 4-D attention context ORT flattened straight) or cannot be
        # told; none where x's rank is len(lead) + 1: ORT wrote the output's target as x's own leading dims plus N,
        # so x is lead + [K] then (an FFN's GLU product, whose shape ORT did not save)
        if static_shape(x) != want and value_rank(x) != len(want):
            key = (id(x), want)
            if key not in views:
                view = ir.node("Reshape", [x, _const(graph, fresh(f"{name}__shape"), np.asarray(want, np.int64))],
                               name=fresh(f"{name}__view"))
                view.outputs[0].name = fresh(f"{name}__view_out")
                view.outputs[0].shape, view.outputs[0].type = ir.Shape(list(want)), dtype
                new.append(view)
                views[key] = view.outputs[0]
            x = views[key]
        w = gemm.inputs[1]
        if gemm.attributes.get_int("transB", 0):
            if id(w) not in turned:
                wt = _transposed(w, fresh(f"{w.name}__in_out"))
                graph.register_initializer(wt)
                turned[id(w)] = (w, wt)
            w = turned[id(w)][1]
        mm = ir.node("MatMul", [x, w], name=fresh(f"{name}__matmul"))
        mm.outputs[0].name = fresh(f"{name}__matmul_out")
        new.append(mm)
        y = mm.outputs[0]
        if f.bias is not None:
            add = ir.node("Add", [y, f.bias], name=fresh(f"{name}__bias"))
            add.outputs[0].name = fresh(f"{name}__bias_out")
            new.append(add)
            y = add.outputs[0]
        for v in {id(y): y, id(mm.outputs[0]): mm.outputs[0]}.values():  # read by a later rewrite's static_shape
            v.shape, v.type = ir.Shape(list(f.lead) + [f.n]), dtype
        graph.insert_before(gemm, new)
        if f.keep_last:  # the head split ORT merged into the Gemm's output Reshape stays, on the product
            f.last.replace_input_with(0, y)
            # under a name of ours: ORT names the targets of its fusion at load after a counter, and refused
            # ("Attempt to replace the existing tensor") a file that already held one of its names
            target = small_const(f.last.inputs[1])
            f.last.replace_input_with(1, _const(graph, fresh(f"{name}__split_shape"), target.astype(np.int64)))
            dead.append(gemm)
            continue
        was = f.last.outputs[0]
        if was in graph.outputs:
            graph.outputs[graph.outputs.index(was)] = y
            y.name, was.name = was.name, fresh(f"{was.name}__unfused")
        was.replace_all_uses_with(y)
        dead += [f.last, gemm]
    graph.remove(dead, safe=True)
    for f in {id(f.first): f.first for _, f in found}.values():
        if not f.outputs[0].uses() and f.outputs[0] not in graph.outputs:
            graph.remove(f, safe=True)
    for w, _ in turned.values():  # a transposed weight nothing else reads
        if not w.uses() and w not in graph.outputs and not w.is_graph_input() and w.name in graph.initializers:
            del graph.initializers[w.name]
    for v in targets.values():  # the Reshape targets nothing reads now
        if v.uses() or v in graph.outputs:
            continue
        p = v.producer()
        if p is not None and p.op_type == "Constant":
            graph.remove(p, safe=True)
        elif v.is_initializer() and v.name in graph.initializers and not v.is_graph_input():
            del graph.initializers[v.name]
    return len(found)


def drop_initializer_inputs(model: ir.Model) -> list[str]:
    """Remove from the graph's inputs every value that is also an initializer; returns their names.

    Exporters run with ``keep_initializers_as_inputs=True`` (``torch.onnx.export``'s default before opset 9, many
    older files) list each weight as a graph input with the weight as its default. ONNX Runtime then treats the
    weights as overridable inputs (no constant folding), and a pass that slices or drops a weight left a graph input
    of the old shape or one nothing reads (a sliced model kept its removed layers' weights). A deployed model never
    feeds its weights, so they become plain initializers; the graph computes what it computed."""
    graph = model.graph
    dropped = [v for v in graph.inputs if v.name in graph.initializers and graph.initializers[v.name] is v]
    for v in dropped:
        graph.inputs.remove(v)
    return [v.name for v in dropped]


def fold_transposed_weights(model: ir.Model) -> int:
    """Replace every ``Transpose`` of a 2-D initializer (perm [1, 0] or none) by an initializer holding the
    transposed weight (computed lazily, when the output is written); returns how many.

    ``torch.onnx.export(..., do_constant_folding=False)`` and the dynamo exporter with ``optimize=False`` write each
    ``nn.Linear`` as ``MatMul(x, Transpose(W))``: the finder reads a projection's weight as a constant [K, N]
    initializer, and refused these graphs ("weight ... has no static 2-D shape"). The original [N, K] weight goes
    once nothing else reads it (a tied embedding that a Gather also reads stays)."""
    graph = model.graph
    found = []
    for node in graph:
        if node.op_type != "Transpose" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 1:
            continue
        w = node.inputs[0]
        perm = node.attributes.get_ints("perm", None)
        if (w is None or not w.is_initializer() or w.is_graph_input() or w.const_value is None
                or len(w.const_value.shape) != 2 or (perm is not None and list(perm) != [1, 0])
                or node.outputs[0] in graph.outputs):
            continue
        found.append(node)
    if not found:
        return 0
    fresh = _namer(graph)

    turned: dict[int, ir.Value] = {}  # one transposed copy per weight, however many Transposes read it
    for node in found:
        w = node.inputs[0]
        if id(w) not in turned:
            wt = _transposed(w, fresh(f"{w.name}__in_out"))
            graph.register_initializer(wt)
            turned[id(w)] = wt
        node.outputs[0].replace_all_uses_with(turned[id(w)])
    graph.remove(found, safe=True)
    for wt in turned.values():
        src = wt.meta[TRANSPOSED_FROM]
        if not src.uses() and src not in graph.outputs and src.name in graph.initializers:
            del graph.initializers[src.name]
    return len(found)


# shape arithmetic only: int64 pieces of targets (a packed weight's few bytes, a Cast of its codes, keep their form:
# the finder reads packed and quantized weights by it)
_FOLDABLE = ("Unsqueeze", "Squeeze", "Concat")


def _fold_one(node: ir.Node, args: list[np.ndarray]) -> np.ndarray | None:
    """``node`` computed on constant ``args`` (numpy), or None where this function does not know it exactly."""
    a = node.attributes
    op = node.op_type
    if op == "Concat":
        return np.concatenate(args, axis=a.get_int("axis", 0))
    x = args[0]
    if len(args) > 1:
        axes = [int(i) for i in args[1].reshape(-1)]
    else:
        axes = a.get_ints("axes", None)
        axes = None if axes is None else list(axes)
    if op == "Unsqueeze":
        if axes is None:
            return None
        rank = x.ndim + len(axes)
        out = x
        for ax in sorted(i % rank for i in axes):
            out = np.expand_dims(out, ax)
        return out
    # Squeeze
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(i % x.ndim for i in axes))


def _replace_with_constant(graph: ir.Graph, out: ir.Value, value: np.ndarray, name: str) -> None:
    """Every reader of ``out`` reads a new initializer ``name`` holding ``value`` instead (the folded form)."""
    value = np.ascontiguousarray(value)
    v = ir.Value(name=name, shape=ir.Shape(list(value.shape)), type=ir.TensorType(ir.DataType.from_numpy(value.dtype)),
                 const_value=ir.tensor(value, name=name))
    graph.register_initializer(v)
    out.replace_all_uses_with(v)


def fold_small_constants(model: ir.Model, max_size: int = 64) -> int:
    """Replace each ``Unsqueeze``/``Squeeze``/``Concat`` whose inputs are all small int64 constants (Constant nodes or
    initializers of at most ``max_size`` values: shape arithmetic) by an initializer of its value; returns how many.

    ``torch.onnx.export(..., do_constant_folding=False)`` writes the head split's target as
    ``Concat(Unsqueeze(batch), Unsqueeze(seq), Unsqueeze(Constant 6), Unsqueeze(Constant 4))``: the finder reads the
    head count from a constant piece of that Concat and refused ("cannot read the head count from the Q reshape").
    A folded export stores each piece as a constant [6], which is what this makes."""
    graph = model.graph
    fresh = _namer(graph)

    done: list[ir.Node] = []
    for node in list(graph):
        if node.op_type not in _FOLDABLE or node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
            continue
        out = node.outputs[0]
        if out in graph.outputs or not node.inputs or any(v is None for v in node.inputs):
            continue
        args = [small_const(v, max_size) for v in node.inputs]
        if any(x is None or x.dtype != np.int64 for x in args):
            continue
        try:
            value = _fold_one(node, args)
        except Exception:  # noqa: BLE001 - an argument the op itself would refuse: left for ONNX Runtime to say
            continue
        if value is None or value.size > max_size:
            continue
        _replace_with_constant(graph, out, value, fresh(f"{out.name or node.name or 'folded'}__folded"))
        done.append(node)
    if done:
        graph.remove(done, safe=True)
        dead = [n for n in graph if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
                and not n.outputs[0].uses() and n.outputs[0] not in graph.outputs]
        graph.remove(dead, safe=True)  # the Constant nodes only folded nodes read
    return len(done)


def drop_identities(model: ir.Model) -> int:
    """Remove every ``Identity`` node of the main graph that copies a computed value (not a constant) into a value
    that is not a graph output: its readers read its input; returns how many.

    The dynamo exporter with ``optimize=False`` writes each ``Tensor.clone``/``contiguous`` of the PyTorch program as
    an ``Identity`` (17 in a 2-layer BERT), one between each attention's output projection and its residual ``Add``:
    the finder refused ("the attention output projection result is not added to the normalised layer input").
    onnxscript's optimizer, which the exporter runs by default, removes them; this does the same. The TorchScript
    exporter's ``Identity`` of an initializer (one per equal copy it merged: every LayerNorm's ones) stays: the
    finder reads constants through it, and each layer keeps a value of its own."""
    graph = model.graph
    found = [n for n in graph if n.op_type == "Identity" and n.domain in ("", "ai.onnx") and len(n.inputs) == 1
             and n.inputs[0] is not None and len(n.outputs) == 1 and n.outputs[0] not in graph.outputs
             and const_tensor(n.inputs[0]) is None]
    for node in found:
        node.outputs[0].replace_all_uses_with(node.inputs[0])
    graph.remove(found, safe=True)
    return len(found)


# view ops: the same values in another shape
_VIEWS = ("Unsqueeze", "Squeeze", "Reshape", "Transpose")


def _view_one(node: ir.Node, x: np.ndarray, args: list[np.ndarray]) -> np.ndarray | None:
    """``node`` (one of ``_VIEWS``) on the constant ``x``, its other inputs ``args``; None where not known exactly."""
    op = node.op_type
    if op in ("Unsqueeze", "Squeeze"):
        return _fold_one(node, [x, *args])
    if op == "Transpose":
        perm = node.attributes.get_ints("perm", None)
        return np.transpose(x, None if perm is None else list(perm))
    # Reshape: a 0 in the target copies x's dimension (allowzero = 0), -1 is inferred, as numpy does
    if len(args) != 1 or node.attributes.get_int("allowzero", 0):
        return None
    target = [int(d) for d in args[0].reshape(-1)]
    target = [x.shape[i] if d == 0 and i < x.ndim else d for i, d in enumerate(target)]
    return x.reshape(target)


def fold_vector_views(model: ir.Model, max_size: int = 1 << 16) -> int:
    """Replace each chain of ``Unsqueeze``/``Squeeze``/``Reshape``/``Transpose`` nodes that starts from a float
    initializer or Constant of rank 0 or 1 (a bias; at most ``max_size`` values), holds a ``Reshape``, and whose other
    inputs are small int64 constants, by one initializer holding its result; returns how many nodes were folded.

    ``torch.onnx.export(..., do_constant_folding=False)`` of DeBERTa (v1) writes each query and value bias, added
    after the head view, as ``Transpose(Reshape(Unsqueeze(Unsqueeze(q_bias)), [1, 1, heads, -1]))``: the finder
    reads a constant [1, heads, 1, head_size] there and refused ("a constant added to the attention's Q, K or V after
    its head view, with no single axis of N heads"); a folded export stores that constant, which is what this makes.
    Only vectors viewed through a Reshape are folded: no weight matrix is read into memory, a packed or quantized
    weight (integer codes) keeps its form, and so does a lone ``Unsqueeze`` of a scale. A link whose result is read
    outside the chain (or is a graph output) ends the chain there. Run after :func:`fold_small_constants` (the
    Reshape targets are Concats of shape pieces)."""
    graph = model.graph
    # id(value) -> (its value, the chain's nodes up to it, whether the chain holds a Reshape)
    chains: dict[int, tuple[np.ndarray, list[ir.Node], bool]] = {}
    for node in graph:
        if node.op_type not in _VIEWS or node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
            continue
        if not node.inputs or any(v is None for v in node.inputs) or node.outputs[0] in graph.outputs:
            continue
        head = node.inputs[0]
        if id(head) in chains:
            x, links, reshaped = chains[id(head)]
            if len(head.uses()) != 1:  # read elsewhere too: the chain ends at that link
                continue
        else:
            x, links, reshaped = small_const(head, max_size), [], False
            if x is None or x.ndim > 1 or x.dtype.kind != "f":
                continue
        args = [small_const(v) for v in node.inputs[1:]]
        if any(a is None or a.dtype != np.int64 for a in args):
            continue
        try:
            value = _view_one(node, x, args)
        except Exception:  # noqa: BLE001 - an argument the op itself would refuse: left for ONNX Runtime to say
            continue
        if value is None:
            continue
        chains[id(node.outputs[0])] = (value, [*links, node], reshaped or node.op_type == "Reshape")
    # the chains' last links: values no further link continues
    inner = {id(n.outputs[0]) for _, links, _ in chains.values() for n in links[:-1]}
    fresh = _namer(graph)
    done: list[ir.Node] = []
    sources: list[ir.Value] = []
    for value, links, reshaped in list(chains.values()):
        out = links[-1].outputs[0]
        if not reshaped or id(out) in inner:
            continue
        _replace_with_constant(graph, out, value, fresh(f"{out.name or links[-1].name or 'folded'}__folded"))
        done.extend(links)
        sources.append(links[0].inputs[0])
    if done:
        graph.remove(list(reversed(done)), safe=True)  # each chain's last link first: its readers are gone
        # the vectors only folded nodes read, and the Constants
        for src in sources:
            if (src.is_initializer() and not src.is_graph_input() and not src.uses() and src not in graph.outputs
                    and src.name in graph.initializers and graph.initializers[src.name] is src):
                del graph.initializers[src.name]
        dead = [n for n in graph if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
                and not n.outputs[0].uses() and n.outputs[0] not in graph.outputs]
        graph.remove(dead, safe=True)
    return len(done)


def cast_likes_to_casts(model: ir.Model) -> int:
    """Replace each ``CastLike(x, y)`` of the main graph whose ``y`` has a known element type by ``Cast(x, to=that
    type)`` (the same values: ``y`` only gives the type); returns how many.

    The dynamo exporter with ``optimize=False`` writes SDPA's run-time scale ``sqrt(1 / sqrt(head_size))`` with
    ``CastLike(., q)`` nodes, which read Q itself: the scale then looked computed from Q's data, not from its shape
    alone, and the finder refused ("cannot trace the Q operand back to a projection with constant weights").
    onnxscript's optimizer, which the exporter runs by default, folds them away."""
    graph = model.graph
    found = []
    for node in graph:
        if (node.op_type != "CastLike" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 2
                or node.inputs[0] is None or node.inputs[1] is None or len(node.outputs) != 1
                or node.outputs[0] in graph.outputs):
            continue
        like = node.inputs[1].type
        dtype = like.dtype if isinstance(like, ir.TensorType) else None
        if dtype is None or dtype == ir.DataType.UNDEFINED:
            continue
        found.append((node, dtype))
    for node, dtype in found:
        old = node.outputs[0]
        cast = ir.node("Cast", [node.inputs[0]], attributes={"to": dtype}, name=node.name)
        graph.insert_before(node, cast)
        out = cast.outputs[0]
        out.shape, out.type = old.shape, old.type
        old.replace_all_uses_with(out)
        graph.remove(node, safe=True)
        out.name = old.name
    return len(found)


def canonicalize(model: ir.Model) -> dict[str, int]:
    """Every rewrite of this module on ``model``, in place, in the order the finder needs them; returns what each
    did (the pass result's stats keys, those that did something). Run before every pass reads a graph
    (:class:`~deploytool.passes.base.DeployPass`) and by ``inspect``, so both read the same structure."""
    # weights listed as graph inputs too (keep_initializers_as_inputs=True) are weights only; MatMul(x,
    # Transpose(W)) of an export without constant folding reads a [K, N] weight, as the finder expects
    done = {"weights_no_longer_inputs": len(drop_initializer_inputs(model)),
            "transposed_weights_folded": fold_transposed_weights(model)}
    fold_small_constants(model)  # and its head split's target Concat(Unsqueeze(Constant 6), ..) as constants
    # DeBERTa's q/v biases viewed per head (Transpose(Reshape(Unsqueeze(bias)))) as the constants a folded export
    # holds; a dynamo export's clones (Identity, optimize=False) gone, and its CastLike(., q) of SDPA's scale a Cast
    # (it read Q's data only for its type), as its optimizer would have done
    done["bias_view_nodes_folded"] = fold_vector_views(model)
    done["identities_dropped"] = drop_identities(model)
    done["cast_likes_made_casts"] = cast_likes_to_casts(model)
    # ORT's static-shape Reshape -> Gemm -> Reshape back to the MatMul + Add the finder reads (equivalent; ORT fuses
    # it again at load, and the gate compares with the input file)
    done["unfused_gemms"] = unfuse_flattened_gemms(model)
    return {k: v for k, v in done.items() if v}
