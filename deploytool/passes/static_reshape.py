"""Replace run-time computed Reshape shapes by constants that keep batch and sequence dynamic.

Exported encoders build every attention Reshape's target shape at run time:
``Shape(x) -> Gather(0|1) -> Unsqueeze -> Concat(.., [num_heads], [head_dim])`` (FACTS.md), four to
six small nodes per Reshape, ~30 per MiniLM layer stack. ONNX ``Reshape`` (``allowzero=0``) already
says "copy this dimension from the input" with ``0`` and "infer it" with ``-1``, so a shape whose
entries are either constants or equal to the input's dimension at the same index, with at most one
entry that is neither, is the constant ``[c | 0 | -1, ...]`` for every batch and sequence length.

Which entry is which is found by evaluating the shape tensors (and the shapes of the Reshape data
inputs) for three probe inputs with different batch/sequence sizes (``PROBES``): an entry equal to the
same constant in every probe is that constant; one equal to the input's dimension at the same index
in every probe is ``0``; one entry of any other kind becomes ``-1``; a shape with two such entries
(or of another rank than its probes say) is left as it is. The rewritten model is checked against
the original on the probes' outputs. The dead shape arithmetic is removed afterwards.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["PROBES", "constant_reshape_shapes"]

# (batch, sequence) pairs: distinct primes, so a dimension equal to both in one probe is not mistaken
PROBES = ((2, 5), (3, 7), (1, 11))


def _feeds(proto, batch: int, seq: int) -> dict[str, np.ndarray]:
    rs = np.random.RandomState(batch * 100 + seq)
    feeds = {}
    for i in proto.graph.input:
        name = i.name
        if "mask" in name:
            feeds[name] = np.ones((batch, seq), np.int64)
        elif "type" in name:
            feeds[name] = np.zeros((batch, seq), np.int64)
        else:
            feeds[name] = rs.randint(1, 100, (batch, seq)).astype(np.int64)
    return feeds


def _probe(proto, names: list[str], feeds_list) -> list[dict[str, np.ndarray]]:
    import onnx

    from deploytool.runtime.infer import make_session

    p = onnx.ModelProto()
    p.CopyFrom(proto)
    for n in names:
        p.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    # one thread on the CPU provider, ORT's graph optimizations off: the shapes of the graph as written
    sess = make_session(p.SerializeToString(), threads=1, optimize=False)
    outs = [o.name for o in sess.get_outputs()]
    return [dict(zip(outs, sess.run(None, f))) for f in feeds_list]


def _dead_nodes(proto) -> int:
    """Remove nodes none of whose outputs is used (iteratively). Returns how many."""
    removed = 0
    graph_out = {o.name for o in proto.graph.output}
    while True:
        used = {i for n in proto.graph.node for i in n.input} | graph_out
        for n in proto.graph.node:  # subgraphs (If/Loop bodies) may read outer names
            for a in n.attribute:
                if a.g is not None and a.g.node:
                    used |= {i for m in a.g.node for i in m.input}
        dead = [n for n in proto.graph.node if not any(o in used for o in n.output if o)]
        if not dead:
            return removed
        for n in dead:
            proto.graph.node.remove(n)
        removed += len(dead)


def constant_reshape_shapes(proto) -> dict[str, int]:
    """Rewrite ``proto`` (fp32 or quantized; in place) as the module doc says.

    Returns ``{"reshapes": rewritten, "nodes_removed": dead shape-arithmetic nodes removed}``; both 0
    when nothing qualified or the check against the original failed (then ``proto`` is unchanged).
    """
    import onnx
    from onnx import numpy_helper

    constant = {i.name for i in proto.graph.initializer}
    constant |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    targets = [n for n in proto.graph.node if n.op_type == "Reshape" and n.domain in ("", "ai.onnx")
               and len(n.input) == 2 and n.input[1] not in constant
               and not any(a.name == "allowzero" and a.i for a in n.attribute)]
    if not targets:
        return {"reshapes": 0, "nodes_removed": 0}
    data_shape = {}
    extra = onnx.ModelProto()
    extra.CopyFrom(proto)
    # Shape of each Reshape's data input, as probe outputs
    for k, n in enumerate(targets):
        out = f"__dt_probe_shape_{k}"
        extra.graph.node.append(onnx.helper.make_node("Shape", [n.input[0]], [out]))
        data_shape[n.name or str(k)] = out
    names = sorted({n.input[1] for n in targets}) + list(data_shape.values())
    try:
        probes = _probe(extra, names, [_feeds(proto, b, s) for b, s in PROBES])
    except Exception as e:  # noqa: BLE001 - an unusual graph: leave it as it is
        logger.info("static_reshape: probing failed (%s: %s); shapes left as they are", type(e).__name__, e)
        return {"reshapes": 0, "nodes_removed": 0}
    new_shapes: dict[int, np.ndarray] = {}
    for k, n in enumerate(targets):
        shapes = [p[n.input[1]].astype(np.int64) for p in probes]
        ins = [p[data_shape[n.name or str(k)]] for p in probes]
        if len({s.shape for s in shapes}) != 1 or shapes[0].ndim != 1:
            continue
        out = []
        for i in range(shapes[0].size):
            vals = [int(s[i]) for s in shapes]
            if len(set(vals)) == 1 and vals[0] > 0 and not all(i < x.size and x[i] == vals[0] for x in ins):
                out.append(vals[0])  # a constant that is not (always) the copied dimension
            elif all(i < x.size and x[i] == v for x, v in zip(ins, vals)):
                out.append(0)
            elif len(set(vals)) == 1 and vals[0] > 0:
                out.append(vals[0])
            else:
                out.append(-1)
        if out.count(-1) > 1:
            continue
        new_shapes[k] = np.array(out, np.int64)
    if not new_shapes:
        return {"reshapes": 0, "nodes_removed": 0}
    backup = onnx.ModelProto()
    backup.CopyFrom(proto)
    existing = {i.name for i in proto.graph.initializer}
    for k, shape in new_shapes.items():
        n = targets[k]
        name, j = f"static_shape_{k}", 0
        while name in existing:
            j += 1
            name = f"static_shape_{k}_{j}"
        existing.add(name)
        proto.graph.initializer.append(numpy_helper.from_array(shape, name))
        n.input[1] = name
    removed = _dead_nodes(proto)
    # the rewritten graph must compute what the original computed, on every probe
    outs = [o.name for o in proto.graph.output]
    try:
        before = _probe(backup, [], [_feeds(proto, b, s) for b, s in PROBES])
        after = _probe(proto, [], [_feeds(proto, b, s) for b, s in PROBES])
        ok = all(np.array_equal(x[o], y[o]) for x, y in zip(before, after) for o in outs)
    except Exception as e:  # noqa: BLE001
        logger.info("static_reshape: the rewritten graph failed to run (%s: %s)", type(e).__name__, e)
        ok = False
    if not ok:
        proto.CopyFrom(backup)
        return {"reshapes": 0, "nodes_removed": 0}
    return {"reshapes": len(new_shapes), "nodes_removed": removed}
