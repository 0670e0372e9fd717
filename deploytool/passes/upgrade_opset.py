"""Upgrade a model's default-domain opset with ``onnx.version_converter``, without its weights.

``pack``'s ``speed`` runtime stores ternary weights as ONNX ``INT2`` (opset >= 25); a model exported at
an older opset is converted first. The converter takes a serialized model, and protobuf cannot
serialize more than 2 GB, so it gets the graph without the weights (see :func:`upgrade_opset`).
"""

from __future__ import annotations

import onnx_ir as ir

from deploytool import onnx_io
from deploytool.errors import PassRefusedError
from deploytool.passes.base import DeployPass, DeployPassResult

__all__ = ["INT2_MIN_OPSET", "PACK_MIN_OPSET", "UpgradeOpsetPass", "upgrade_opset"]

INT2_MIN_OPSET = 25
#: the opset packing's own subgraphs are written for (Split sizes, Unsqueeze and ReduceSum axes as inputs)
PACK_MIN_OPSET = 13


def _purpose(target: int) -> tuple[str, str]:
    """What an upgrade to ``target`` is for, and what to do when it fails (for a one-line refusal)."""
    if target >= INT2_MIN_OPSET:
        return "for INT2 weights", "use --runtime densest or memory"
    return "for packing", f"export the model at opset >= {target} (torch.onnx.export's opset_version)"

_HIDE_DOMAIN = "deploytool.unconverted"


# ORT's own ops that its transformer optimizer writes into the default domain (and ORT runs there)
_ORT_DEFAULT_DOMAIN_OPS = frozenset({"SimplifiedLayerNormalization"})


def _has_schema(op_type: str, opset: int) -> bool:
    import onnx

    try:
        onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return False
    return True


def _unknown_at(op_type: str, opset: int, target: int) -> bool:
    """An op the converter cannot adapt from ``opset`` but that is valid at ``target``: one defined later
    (LayerNormalization, 17) or ORT's own op in the default domain (SimplifiedLayerNormalization). An op
    no opset defines (ImageScaler, removed at 10) is not one: the converter's refusal stands."""
    if _has_schema(op_type, opset):
        return False
    return op_type in _ORT_DEFAULT_DOMAIN_OPS or _has_schema(op_type, target)


class UpgradeOpsetPass(DeployPass):
    """In place: a model below opset ``target`` becomes the converted model (the same tensors, shared, not
    copied); one at or above it is left as it is. Details: ``opset`` ("17 -> 25", or the opset kept)."""

    def __init__(self, target: int = INT2_MIN_OPSET, *, purpose: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.target = int(target)
        #: what the upgrade is for and what to do when it fails, for a refusal (default: by ``target``)
        self.purpose = purpose or _purpose(self.target)

    def call(self, model: ir.Model) -> DeployPassResult:
        result = self._upgrade(model)
        if result.modified and "deploytool.opset" in model.metadata_props:  # the export's record follows the file
            model.metadata_props["deploytool.opset"] = str(self.target)
        return result

    def _upgrade(self, model: ir.Model) -> DeployPassResult:
        old = model.opset_imports.get("", 0)
        if old >= self.target:
            return DeployPassResult(model, modified=False, stats={"opset": old})
        if _no_adapter_applies(model, self.target):
            # every kind of node converts to itself (see _no_adapter_applies): the opset alone changes, without
            # serializing and converting the whole graph (BERT-base: ~0.1 s less)
            model.opset_imports[""] = self.target
            model.ir_version = max(model.ir_version or 0, 11)
            return DeployPassResult(model, modified=True, stats={"opset": f"{old} -> {self.target}"})
        proto, converted, held = _convert(model, self.target, self.purpose)
        if not model.functions and _same_nodes(proto, converted):
            # the usual case (BERT-family exports at 14-17 need no adapter): nothing but the opset changes, so
            # the model is upgraded where it is instead of rebuilt from the converted graph (BERT-base: ~0.05
            # s less); it gets the converter's inferred shapes as the rebuilt one would
            del proto
            _adopt_opset(model, converted, self.target)
            return DeployPassResult(model, modified=True, stats={"opset": f"{old} -> {self.target}"})
        del proto
        new = _rebuild(converted, held, old, self.target, self.purpose)
        model.graph = new.graph
        model.ir_version = new.ir_version
        model.functions.clear()
        model.functions.update(new.functions)
        return DeployPassResult(model, modified=True, stats={"opset": f"{old} -> {self.target}"})

    def ensures(self, model: ir.Model) -> None:
        got = model.opset_imports.get("", 0)
        if got < self.target:
            raise PassRefusedError(f"opset upgrade left opset {got}, below {self.target}")


def upgrade_opset(src_model: ir.Model, target: int = INT2_MIN_OPSET) -> ir.Model:
    """``src_model`` converted to opset ``target`` with onnx.version_converter (PassRefusedError if it fails).

    The converter takes a serialized model, and protobuf cannot serialize more than 2 GB, so it gets
    the graph without the weights: every initializer over 1 KiB is handed over as an external-data
    placeholder (name, type and shape; the converter keeps such references as they are) and the
    converted model gets the very same tensor objects back (no copy of the weights is made; the input
    model is left as it was). ``src_model`` and the result share those tensors.
    """
    _, converted, held = _convert(src_model, target)
    return _rebuild(converted, held, src_model.opset_imports.get("", 0), target)


def _same_nodes(before, after) -> bool:
    """True when the converter changed no node, graph input, output or initializer (it only adds shapes)."""
    g, h = before.graph, after.graph
    fields = ("node", "input", "output", "initializer", "sparse_initializer")
    return all(len(getattr(g, f)) == len(getattr(h, f)) and
               all(a.SerializeToString() == b.SerializeToString() for a, b in zip(getattr(g, f), getattr(h, f)))
               for f in fields)


def _no_adapter_applies(model: ir.Model, target: int) -> bool:
    """True when ``onnx.version_converter`` would change no node of ``model`` on the way to ``target``, asked of
    one node of each kind: a graph of one node per distinct (op, attribute names and non-tensor values) of the
    default domain, with inputs and outputs of their own, converted and compared node by node. The converter's
    adapters from opset 13 on are written per op and attribute (an attribute made an input, an attribute
    renamed; GroupNormalization's 20 -> 21, which reads shapes, is left to the full conversion), so a kind of
    node that converts to itself does so wherever it is. False (the whole graph is converted, as before) for
    models with functions or subgraphs, for old opsets, and whenever the small conversion fails or changes
    anything."""
    import onnx

    old = model.opset_imports.get("", 0)
    if old < 13 or model.functions:
        return False
    kinds: dict[tuple, ir.Node] = {}
    for node in model.graph:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in _SHAPE_ADAPTERS:
            return False
        key = [node.op_type, len(node.inputs), len(node.outputs)]
        for name, attr in sorted(node.attributes.items()):
            if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
                return False
            key.append((name, attr.type.value, attr.value.dtype.value if attr.type is ir.AttributeType.TENSOR
                        else repr(attr.value)))
        kinds.setdefault(tuple(key), node)
    nodes, inputs, outputs = [], [], []
    for k, node in enumerate(kinds.values()):
        if _unknown_at(node.op_type, old, target):  # passes through the full conversion unchanged too
            continue
        n = ir.serde.serialize_node(node)
        n.name = f"n{k}"
        n.ClearField("metadata_props")  # the converter drops a node's metadata (the dynamo exporter's stack traces)
        n.ClearField("doc_string")
        for j, x in enumerate(n.input):
            if x:
                n.input[j] = f"i{k}_{j}"
                inputs.append(onnx.ValueInfoProto(name=n.input[j]))
        for j, y in enumerate(n.output):
            if y:
                n.output[j] = f"o{k}_{j}"
                outputs.append(onnx.ValueInfoProto(name=n.output[j]))
        nodes.append(n)
    graph = onnx.GraphProto(name="kinds", node=nodes, input=inputs, output=outputs)
    small = onnx.ModelProto(ir_version=max(model.ir_version or 0, 8), graph=graph)
    small.opset_import.add(domain="", version=old)
    try:
        converted = onnx.version_converter.convert_version(small, target)
    except Exception:  # noqa: BLE001 - the full conversion says why, or succeeds where this could not
        return False
    # the nodes only: the converter's shape inference may type the graph's untyped outputs
    return len(small.graph.node) == len(converted.graph.node) and all(
        a.SerializeToString() == b.SerializeToString() for a, b in zip(small.graph.node, converted.graph.node))


# adapters of the version converter that read input shapes (not decidable on a node of each kind)
_SHAPE_ADAPTERS = frozenset({"GroupNormalization"})


def _adopt_opset(model: ir.Model, converted, target: int) -> None:
    """``model`` at opset ``target``, with the shapes and types the converter inferred for values that had none."""
    model.opset_imports[""] = target
    model.ir_version = max(model.ir_version or 0, converted.ir_version, 11)
    values = {v.name: v for node in model.graph for v in node.outputs if v.name}
    for vi in converted.graph.value_info:
        v = values.get(vi.name)
        if v is None or not vi.type.HasField("tensor_type"):
            continue
        if v.type is None:
            v.type = ir.serde.deserialize_type_proto_for_type(vi.type)
        if v.shape is None and vi.type.tensor_type.HasField("shape"):
            v.shape = ir.serde.deserialize_type_proto_for_shape(vi.type)


def _convert(src_model: ir.Model, target: int, purpose: tuple[str, str] | None = None):
    """(the graph handed to the converter, the converted graph, the big tensors held back by name), both
    graphs with their big tensors as placeholders and the hiding of unknown ops undone in the result."""
    import onnx

    old = src_model.opset_imports.get("", 0)
    held: dict[str, ir.TensorProtocol] = {}
    placeholders: dict[str, str] = {}
    for name, v in src_model.graph.initializers.items():
        t = v.const_value
        if t is None or t.nbytes <= 1024:
            continue
        held[name] = t
        placeholders[name] = f"deploytool-placeholder-{len(placeholders)}"
        v.const_value = ir.ExternalTensor(placeholders[name], 0, t.nbytes, t.dtype, shape=t.shape, name=name)
    try:
        proto = onnx_io.serialize_model(src_model)
    finally:
        for name, t in held.items():
            src_model.graph.initializers[name].const_value = t
    if old < 13:
        _declare_softmax_ranks(src_model, proto)
    size = proto.ByteSize()
    if size > 2_000_000_000:
        purpose, advice = purpose or _purpose(target)
        raise PassRefusedError(f"cannot upgrade opset {old} to {target} {purpose}: the graph without its "
                               f"weights is still {size / 1e9:.2f} GB, over protobuf's 2 GB limit; {advice}")
    # ORT's transformer optimizer writes LayerNormalization (an opset-17 op) and its own
    # SimplifiedLayerNormalization into the default domain of older graphs, and ORT runs them; the converter
    # has no adapter for them. Hidden in a domain of its own, such a node passes through unchanged and comes
    # back as it was (LayerNormalization's definition at 17 is still the current one).
    unknown = {op for op in {n.op_type for n in proto.graph.node if n.domain in ("", "ai.onnx")}
               if _unknown_at(op, old, target)}
    hidden = [n for n in proto.graph.node if n.domain in ("", "ai.onnx") and n.op_type in unknown]
    for n in hidden:
        n.domain = _HIDE_DOMAIN
    if hidden:
        proto.opset_import.add(domain=_HIDE_DOMAIN, version=1)
    try:
        converted = onnx.version_converter.convert_version(proto, target)
    except Exception as e:
        purpose, advice = purpose or _purpose(target)
        raise PassRefusedError(f"cannot upgrade opset {old} to {target} {purpose} ({str(e).splitlines()[0][:120]}); "
                               f"{advice}") from e
    if hidden:
        for graph in (proto, converted):
            for n in graph.graph.node:
                if n.domain == _HIDE_DOMAIN:
                    n.domain = ""
        keep = [o for o in converted.opset_import if o.domain != _HIDE_DOMAIN]
        del converted.opset_import[:]
        converted.opset_import.extend(keep)
    converted.ir_version = max(converted.ir_version, 11)
    return proto, converted, held


_SOFTMAX_FAMILY = frozenset({"Softmax", "LogSoftmax", "Hardmax"})


def _declare_softmax_ranks(model: ir.Model, proto) -> None:
    """Before opset 13 a Softmax (LogSoftmax, Hardmax) flattens its input to 2-D at ``axis``; the converter's
    12 -> 13 adapter keeps that by wrapping the node in Flatten, Shape and Reshape unless it knows the input's
    rank and the axis is the last one (then it only writes ``axis=-1``). Exporters declare no intermediate
    shapes at opset 11 and ONNX's shape inference leaves the attention scores' rank unknown behind a Reshape
    to a computed shape, so the attention Softmax came out wrapped, and the finder no longer saw attention
    scores (every opset-11 export's pack at runtime speed was refused). The rank is read from the graph here
    (:func:`~deploytool.graph._util.value_rank`) and declared, as a shape of unknown dimensions, in
    ``proto`` (the serialized copy the converter gets), for each such input whose node's axis is its last."""
    import onnx

    from deploytool.graph._util import value_rank

    declared = {vi.name: vi for vi in proto.graph.value_info}
    memo: dict = {}
    for node in model.graph:
        if node.op_type not in _SOFTMAX_FAMILY or node.domain not in ("", "ai.onnx") or not node.inputs:
            continue
        x = node.inputs[0]
        if x is None or not x.name:
            continue
        rank = value_rank(x, memo=memo)
        axis = int(node.attributes["axis"].value) if "axis" in node.attributes else 1
        if rank is None or not -rank <= axis < rank or axis % rank != rank - 1:  # (rank 0: the range is empty)
            continue
        vi = declared.get(x.name)
        if vi is None:
            vi = proto.graph.value_info.add(name=x.name)
            declared[x.name] = vi
        tt = vi.type.tensor_type
        if tt.HasField("shape") and len(tt.shape.dim) == rank:
            continue
        if not tt.elem_type and x.dtype is not None:
            tt.elem_type = int(x.dtype)
        tt.shape.CopyFrom(onnx.TensorShapeProto(dim=[onnx.TensorShapeProto.Dimension() for _ in range(rank)]))


def _rebuild(converted, held: dict[str, ir.TensorProtocol], old: int, target: int,
             purpose: tuple[str, str] | None = None) -> ir.Model:
    """The IR model of the converted graph, with the held tensors put back (the same objects)."""
    out = ir.serde.deserialize_model(converted)
    for name, t in held.items():
        v = out.graph.initializers.get(name)
        if v is None:
            purpose, advice = purpose or _purpose(target)
            raise PassRefusedError(f"cannot upgrade opset {old} to {target} {purpose} (the converter dropped "
                                   f"initializer {name!r}); {advice}")
        v.const_value = t
    return out
