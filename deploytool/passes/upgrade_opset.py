"""Upgrade a model's default-domain opset with ``onnx.version_converter``, without its weights.

``pack``'s ``speed`` runtime stores ternary weights as ONNX ``INT2`` (opset >= 25); a model exported at
an older opset is converted first; ``repack`` lowers a file again (:func:`lower_opset`) when no INT2 weight is
left. The converter takes a serialized model, and protobuf cannot serialize more than 2 GB, so it gets the graph
without the weights (see :func:`upgrade_opset`).
"""

from __future__ import annotations

import onnx_ir as ir

from deploytool import onnx_io
from deploytool.errors import PassRefusedError
from deploytool.passes.base import DeployPass, DeployPassResult

__all__ = ["INPUT_OPSET_KEY", "INT2_MIN_OPSET", "PACK_MIN_OPSET", "UpgradeOpsetPass", "input_opset",
           "lower_opset", "needed_opset", "upgrade_opset"]

INT2_MIN_OPSET = 25
#: the opset packing's own subgraphs are written for (Split sizes, Unsqueeze and ReduceSum axes as inputs)
PACK_MIN_OPSET = 13
#: metadata: the default-domain opset and IR version a packed file had before any upgrade (JSON
#: ``{"opset": 17, "ir_version": 8}``), written by ``pack`` (and by ``repack`` when it upgrades a file without it);
#: ``repack`` lowers a file back to it when nothing the file stores needs more (see :func:`lower_opset`)
INPUT_OPSET_KEY = "deploytool.packing.input_opset"


def ir_floor(target: int) -> int:
    """The IR version an upgrade to opset ``target`` writes at least: 11 for INT2's opsets (the IR that has
    INT2), else the least IR version ``target`` needs (13: 7). An opset-11 export upgraded to 13 for packing
    was given IR 11, which ONNX Runtime before 1.20 (phones) refuses, for nothing it holds."""
    import onnx

    if target >= INT2_MIN_OPSET:
        return 11
    return onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", target)])


def _purpose(target: int) -> tuple[str, str]:
    """What an upgrade to ``target`` is for, and what to do when it fails (for a one-line refusal)."""
    if target >= INT2_MIN_OPSET:
        return "for INT2 weights", "use --runtime densest or memory"
    return "for packing", f"export the model at opset >= {target} (torch.onnx.export's opset_version)"

_HIDE_DOMAIN = "deploytool.unconverted"


# ORT's own ops that its transformer optimizer writes into the default domain (and ORT runs there)
_ORT_DEFAULT_DOMAIN_OPS = frozenset({"SimplifiedLayerNormalization"})


def _latest_opset() -> int:
    import onnx

    return onnx.defs.onnx_opset_version()


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

    def __init__(self, target: int = INT2_MIN_OPSET, *, purpose: tuple[str, str] | None = None,
                 record: bool = False) -> None:
        super().__init__()
        self.target = int(target)
        #: what the upgrade is for and what to do when it fails, for a refusal (default: by ``target``)
        self.purpose = purpose or _purpose(self.target)
        #: write the opset and IR version found into :data:`INPUT_OPSET_KEY` (unless it is there): pack's and
        #: repack's upgrades, so that repack can lower the file again when INT2 weights no longer need it
        self.record = record

    def call(self, model: ir.Model) -> DeployPassResult:
        if self.record:
            record_input_opset(model)
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
            model.ir_version = max(model.ir_version or 0, ir_floor(self.target))
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


def record_input_opset(model: ir.Model) -> None:
    """Write ``model``'s default-domain opset and IR version into :data:`INPUT_OPSET_KEY`, unless it holds them."""
    import json

    if input_opset(model) is None:
        model.metadata_props[INPUT_OPSET_KEY] = json.dumps(
            {"opset": model.opset_imports.get("", 0), "ir_version": int(model.ir_version or 0)}, sort_keys=True)


def input_opset(model: ir.Model) -> tuple[int, int] | None:
    """(opset, IR version) as :data:`INPUT_OPSET_KEY` records them, or None (absent or not pack's)."""
    import json

    try:
        data = json.loads(model.metadata_props.get(INPUT_OPSET_KEY, ""))
        opset, ir_version = data["opset"], data["ir_version"]
    except (ValueError, TypeError, KeyError):
        return None
    ok = all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in (opset, ir_version))
    return (opset, ir_version) if ok else None


# the first opset (and IR version) whose types include each element type (ONNX's IR and operator changelogs)
_DTYPE_NEEDS = {"FLOAT8E4M3FN": (19, 9), "FLOAT8E4M3FNUZ": (19, 9), "FLOAT8E5M2": (19, 9),
                "FLOAT8E5M2FNUZ": (19, 9), "INT4": (21, 10), "UINT4": (21, 10), "FLOAT4E2M1": (23, 11),
                "FLOAT8E8M0": (24, 12), "INT2": (INT2_MIN_OPSET, 11), "UINT2": (INT2_MIN_OPSET, 11)}


def needed_opset(model: ir.Model) -> int:
    """The lowest default-domain opset the element types ``model`` holds allow (0: any): each stored tensor's,
    each typed value's, each Cast's ``to`` (INT2 weights: 25, INT4: 21)."""
    best = 0

    def see(dtype) -> None:
        nonlocal best
        best = max(best, _DTYPE_NEEDS.get(getattr(dtype, "name", ""), (0, 0))[0])

    for graph in model.graphs():
        for v in graph.initializers.values():
            if v.const_value is not None:
                see(v.const_value.dtype)
        for v in graph.inputs:
            if v.dtype is not None:
                see(v.dtype)
        for node in graph:
            for v in node.outputs:
                if v.dtype is not None:
                    see(v.dtype)
            for attr in node.attributes.values():
                if attr.type is ir.AttributeType.TENSOR and attr.value is not None:
                    see(attr.value.dtype)
                elif attr.name in ("to", "output_dtype") and attr.type is ir.AttributeType.INT:
                    try:
                        see(ir.DataType(attr.value))
                    except ValueError:
                        pass
    return best


# ops whose newer versions change what a node computes without changing how it is written (GroupNormalization's
# scale per channel at 21, GridSample's mode names at 20): never passed through unconverted
_CHANGED_MEANING = frozenset({"GroupNormalization", "GridSample", "DFT", "QuantizeLinear", "DequantizeLinear",
                              "Resize", "Upsample"})


def lower_opset(model: ir.Model, target: int, ir_version: int) -> str | None:
    """Lower ``model``'s default-domain opset to ``target`` and its IR version to ``ir_version`` (at least what
    ``target`` needs), in place: None when done (or nothing to do), else why not, ``model`` left as it was.

    ``onnx.version_converter`` converts the graph (weights held back, as for an upgrade); what the upgrade to 18+
    rewrote (Reduce* axes as an input) goes back to its older form. The converter has adapters down for few ops:
    one it has none for, whose newer versions only added attributes or types (Shape's start and end at 15, Pow's
    bfloat16 at 15, Split's num_outputs at 18), passes through as it is, and the checker says whether the node is
    valid at ``target`` (a Split by ``num_outputs`` below 18 is not). The converted graph must pass
    ``onnx.checker`` with full type and shape checks at ``target``, or fail it as the graph at its own opset does
    (an ORT-optimized file declares outputs without shapes); then ``model`` takes its opset (and its nodes, where
    the converter changed any). The file runner's gate then runs it against the input."""
    import re

    import onnx

    old = model.opset_imports.get("", 0)
    if old <= target:
        return None
    if model.functions:
        return "the model has functions (not converted)"
    ir_version = max(int(ir_version), onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", target)]))
    held: dict[str, ir.TensorProtocol] = {}
    proto = _serialize_without_weights(model, held)
    default = [n for n in proto.graph.node if n.domain in ("", "ai.onnx")]
    kinds = {n.op_type for n in default}
    # hidden from the converter: ORT's own ops in the default domain (and from the checker: they are ORT's), and
    # the ops the converter has no adapter down for
    passed = set(_ORT_DEFAULT_DOMAIN_OPS & kinds)
    proto.opset_import.add(domain=_HIDE_DOMAIN, version=1)
    for _ in range(len(kinds) + 1):
        for n in default:
            n.domain = _HIDE_DOMAIN if n.op_type in passed else ""
        try:
            converted = onnx.version_converter.convert_version(proto, target)
            break
        except Exception as e:  # noqa: BLE001 - the converter's own reason, in one line
            why = str(e).splitlines()[0]
            found = re.search(r"No Adapter (?:From|To) Version \$\d+ for (\w+)", why)
            op = found.group(1) if found else None
            if op is None or op in passed or op in _CHANGED_MEANING or op not in kinds:
                return f"onnx.version_converter: {why[:160]}"
            passed.add(op)
    else:
        return "onnx.version_converter: no conversion"
    converted.ir_version = ir_version
    ort_ops = _ORT_DEFAULT_DOMAIN_OPS
    low = _node_error(converted, target, ort_ops) or _checker_error(converted, ort_ops)
    if low is not None and low != _checker_error(proto, ort_ops):
        return f"onnx.checker at opset {target}: {low[:160]}"
    _unhide(proto, converted)
    if not _same_nodes(proto, converted):
        try:
            new = _rebuild(converted, held, old, target, ("to lower the opset", "keep it"))
        except PassRefusedError as e:
            return str(e)
        model.graph = new.graph
    model.opset_imports[""] = target
    model.ir_version = ir_version
    if "deploytool.opset" in model.metadata_props:  # the export's record follows the file, as on an upgrade
        model.metadata_props["deploytool.opset"] = str(target)
    return None


def _node_error(proto, target: int, unchecked: frozenset) -> str | None:
    """What ``onnx.checker`` finds wrong with a default-domain node of ``proto`` (but ``unchecked`` ops) against its
    schema at ``target`` (attributes, number of inputs and outputs), in one line; None: nothing."""
    import onnx

    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = proto.ir_version
    ctx.opset_imports = {o.domain: o.version for o in proto.opset_import if o.domain != _HIDE_DOMAIN} | {"": target}
    for n in proto.graph.node:
        if n.domain in ("", "ai.onnx", _HIDE_DOMAIN) and n.op_type not in unchecked:
            node = onnx.NodeProto()
            node.CopyFrom(n)
            node.domain = ""
            try:
                onnx.checker.check_node(node, ctx)
            except Exception as e:  # noqa: BLE001 - the checker's reason, in one line
                return " ".join(str(e).split())
    return None


def _checker_error(proto, unchecked: frozenset) -> str | None:
    """What ``onnx.checker`` (full type and shape checks) finds wrong with ``proto`` (its held-back weights as
    inputs, its hidden nodes in the default domain again but those of ``unchecked``), in one line; None: nothing."""
    import onnx

    check = _weights_as_inputs(proto)
    for n in check.graph.node:
        if n.domain == _HIDE_DOMAIN and n.op_type not in unchecked:
            n.domain = ""
    try:
        onnx.checker.check_model(check, full_check=True)
    except Exception as e:  # noqa: BLE001 - the checker's reason, in one line
        return " ".join(str(e).split())
    return None


def _weights_as_inputs(proto):
    """A copy of ``proto`` whose placeholder initializers are graph inputs of the same type and shape: what the
    checker checks of them, without the files it would look for."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    held = [t for t in g.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    keep = [t for t in g.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    del g.initializer[:]
    g.initializer.extend(keep)
    g.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in held)
    return out


def _serialize_without_weights(model: ir.Model, held: dict[str, ir.TensorProtocol]):
    """``model`` serialized with every initializer over 1 KiB as an external-data placeholder (name, type and
    shape; the converter and the checker keep such references as they are), those tensors put in ``held`` by
    name; ``model`` is left as it was."""
    placeholders: dict[str, str] = {}
    for name, v in model.graph.initializers.items():
        t = v.const_value
        if t is None or t.nbytes <= 1024:
            continue
        held[name] = t
        placeholders[name] = f"deploytool-placeholder-{len(placeholders)}"
        v.const_value = ir.ExternalTensor(placeholders[name], 0, t.nbytes, t.dtype, shape=t.shape, name=name)
    try:
        return onnx_io.serialize_model(model)
    finally:
        for name, t in held.items():
            model.graph.initializers[name].const_value = t


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
    model.ir_version = max(model.ir_version or 0, converted.ir_version, ir_floor(target))
    values = {v.name: v for node in model.graph for v in node.outputs if v.name}
    for vi in converted.graph.value_info:
        v = values.get(vi.name)
        if v is None or not vi.type.HasField("tensor_type"):
            continue
        if v.type is None:
            v.type = ir.serde.deserialize_type_proto_for_type(vi.type)
        if v.shape is None and vi.type.tensor_type.HasField("shape"):
            v.shape = ir.serde.deserialize_type_proto_for_shape(vi.type)


def _unhide(*models) -> None:
    """Put the nodes hidden from the converter (domain :data:`_HIDE_DOMAIN`) back in the default domain of each
    model proto, and drop that domain's opset import."""
    for model in models:
        for n in model.graph.node:
            if n.domain == _HIDE_DOMAIN:
                n.domain = ""
        keep = [o for o in model.opset_import if o.domain != _HIDE_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(keep)


def _convert(src_model: ir.Model, target: int, purpose: tuple[str, str] | None = None):
    """(the graph handed to the converter, the converted graph, the big tensors held back by name), both
    graphs with their big tensors as placeholders and the hiding of unknown ops undone in the result."""
    import onnx

    old = src_model.opset_imports.get("", 0)
    held: dict[str, ir.TensorProtocol] = {}
    proto = _serialize_without_weights(src_model, held)
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
    # an op ONNX does not define (a typo, a custom op left in the default domain, an experimental op ONNX dropped):
    # the converter stops on it with a failed assertion that names no op ("Op '%s"); name the node instead
    bogus = next((n for n in proto.graph.node if n.domain in ("", "ai.onnx") and n.op_type not in unknown
                  and not _has_schema(n.op_type, old) and not _has_schema(n.op_type, _latest_opset())), None)
    if bogus is not None:
        purpose, advice = purpose or _purpose(target)
        raise PassRefusedError(f"cannot upgrade opset {old} to {target} {purpose}: node "
                               f"{bogus.name or '(unnamed)'!r} ({bogus.op_type}) is an operator ONNX does not define "
                               f"(at any opset up to {_latest_opset()}), which its converter cannot carry over; "
                               f"{advice}")
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
        _unhide(proto, converted)
    converted.ir_version = max(converted.ir_version, ir_floor(target))
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
