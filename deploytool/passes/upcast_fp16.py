"""An fp16 model back to fp32, exactly, so that int8 can start from it.

Users bring fp16 files (``deploytool quantize --fp16``'s, ONNX Runtime's transformer optimizer with
``--float16``, the ``model_fp16.onnx`` that model hubs ship beside the fp32 one). Every fp16 value is a float32
value too, so the fp32 model computes what the fp16 one would with fp32 arithmetic: nothing is lost. This
pass, run first by :func:`~deploytool.passes.quantize_int8.int8_pipeline` and
:func:`~deploytool.passes.pack_weights.pack_pipeline` (and in pack's gate reference), rewrites

- every fp16 initializer (a subgraph's included) as fp32 (lazily: computed as the output is written, one tensor at a time),
- every fp16 tensor attribute (``Constant``, ``ConstantOfShape``) as fp32,
- every ``Cast`` to fp16 as a cast to fp32, and every declared fp16 value type (graph inputs and outputs
  included) as fp32,

and then drops the casts that became no-ops (fp32 to fp32). A model without fp16 is left alone
(``modified`` False). The file's interface stays as it was: a graph input declared fp16 stays fp16 and is cast
to fp32 where the graph reads it, and a graph output declared fp16 is computed in fp32 and cast to fp16 at the
end (an application that feeds and reads fp16 keeps working with the int8 or packed file).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from deploytool.passes.base import DeployPass, DeployPassResult

__all__ = ["UpcastFp16Pass"]

FP16, FP32 = ir.DataType.FLOAT16, ir.DataType.FLOAT


def _lazy_fp32(src: ir.TensorProtocol, name: str) -> ir.LazyTensor:
    def compute() -> ir.Tensor:
        return ir.Tensor(np.asarray(src.numpy(), dtype=np.float32), name=name)

    return ir.LazyTensor(compute, dtype=FP32, shape=ir.Shape(list(src.shape)), name=name)


def _upcast_type(value: ir.Value) -> None:
    t = value.type
    if isinstance(t, ir.TensorType) and t.dtype is FP16:
        value.type = ir.TensorType(FP32)


def _upcast_attributes(node: ir.Node) -> None:
    for name, attr in list(node.attributes.items()):
        if attr.type is ir.AttributeType.TENSOR and attr.value is not None and attr.value.dtype is FP16:
            t = attr.value
            node.attributes[name] = ir.AttrTensor(name, ir.Tensor(np.asarray(t.numpy(), dtype=np.float32), name=t.name))
    if node.op_type == "Cast" and node.domain in ("", "ai.onnx"):
        to = node.attributes.get("to")
        if to is not None and to.value == FP16.value:
            node.attributes["to"] = ir.AttrInt64("to", FP32.value)


def _drop_noop_casts(graph: ir.Graph) -> int:
    """Casts to fp32 of a value declared fp32: its readers read the input instead (a graph output keeps its cast)."""
    dropped = 0
    outputs = set(map(id, graph.outputs))
    for node in list(graph):
        if node.op_type != "Cast" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 1:
            continue
        to = node.attributes.get("to")
        x, y = node.inputs[0], node.outputs[0]
        if to is None or to.value != FP32.value or x is None or x.dtype is not FP32 or id(y) in outputs:
            continue
        y.replace_all_uses_with(x)
        graph.remove(node, safe=True)
        dropped += 1
    return dropped


class UpcastFp16Pass(DeployPass):
    """fp16 weights, constants, casts and value types to fp32 (see the module doc)."""

    def call(self, model: ir.Model) -> DeployPassResult:
        graph = model.graph
        tensors = 0
        # a subgraph's own initializers too: ORT's optimizer leaves DeBERTa-v2's relative-position buckets in an If
        # branch with fp16 constants beside Casts to fp16; the casts were upcast and the constants not, and the
        # int8 file's Div read fp32 and fp16 (ORT refused to load it)
        for g in (graph, *graph.subgraphs()):
            for v in g.initializers.values():
                c = v.const_value
                if c is not None and c.dtype is FP16:
                    v.const_value = _lazy_fp32(c, v.name)
                    tensors += 1
                _upcast_type(v)
        if not tensors and not any(n.op_type == "Cast" and n.attributes.get("to") is not None
                                   and n.attributes["to"].value == FP16.value for n in graph.all_nodes()):
            return DeployPassResult(model, modified=False)
        fp16_inputs = [v for v in graph.inputs if v.dtype is FP16]
        fp16_outputs = [i for i, v in enumerate(graph.outputs) if v.dtype is FP16]
        for v in [*graph.inputs, *graph.outputs]:
            _upcast_type(v)
        for node in graph.all_nodes():
            _upcast_attributes(node)
            for v in [*node.inputs, *node.outputs]:
                if v is not None:
                    _upcast_type(v)
        dropped = _drop_noop_casts(graph)
        kept = _keep_fp16_interface(graph, fp16_inputs, fp16_outputs)
        result = DeployPassResult(model, modified=True)
        result.stats["upcast_from_fp16"] = {"weights": tensors, "casts_dropped": dropped, "fp16_inputs_outputs_kept": kept}
        return result


def _cast(x: ir.Value, to: ir.DataType, name: str) -> ir.Node:
    out = ir.Value(name=name, type=ir.TensorType(to), shape=x.shape)
    return ir.Node("", "Cast", inputs=[x], attributes=[ir.AttrInt64("to", to.value)], outputs=[out],
                   name=f"{name}/deploytool_cast")


def _unique(graph: ir.Graph, base: str) -> str:
    taken = {v.name for n in graph.all_nodes() for v in n.outputs if v is not None}
    taken |= {v.name for v in graph.inputs} | set(graph.initializers)
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def _keep_fp16_interface(graph: ir.Graph, inputs: list[ir.Value], outputs: list[int]) -> int:
    """Graph inputs ``inputs`` declared fp16 again, each cast to fp32 before the graph reads it; the graph outputs
    at ``outputs`` cast back to fp16 under their own names (the value computed in fp32 renamed). Returns how many."""
    kept = 0
    for x in inputs:
        uses = list(x.uses())
        x.type = ir.TensorType(FP16)
        if not uses:
            continue
        cast = _cast(x, FP32, _unique(graph, f"{x.name}_fp32"))
        if len(graph):
            graph.insert_before(graph[0], cast)
        else:
            graph.append(cast)
        for use in uses:
            use.node.replace_input_with(use.idx, cast.outputs[0])
        kept += 1
    for i in outputs:
        y = graph.outputs[i]
        if y.producer() is None or y.dtype is not FP32:  # an input passed through (kept fp16 above) or a constant
            continue
        name = y.name
        y.name = _unique(graph, f"{name}_fp32")
        cast = _cast(y, FP16, name)
        graph.append(cast)
        graph.outputs[i] = cast.outputs[0]
        kept += 1
    return kept
