"""Write each residual ``Add`` that feeds a ``LayerNormalization`` as ``Sum`` (same result).

``Sum`` of two tensors is ``Add``, with the same broadcasting (opset >= 8), but ORT's
``SkipLayerNormFusion`` only matches ``Add``, so the pair stays ``Add`` + ``LayerNormalization`` instead
of becoming ``com.microsoft.SkipLayerNormalization``, whose CPU kernel (ORT 1.32) was measured ~5x
slower than the pair: 250 vs 47 us at [1, 128, 384], 1 thread (AVX512-VNNI host,
benchmarks/int8_bench.py). A residual ``Add`` is one whose two inputs are both computed (neither an
initializer nor a Constant node's output). int8 (unless ``skip_layernorm``) and the int8-activation
runtimes of ``pack`` run this pass last.
"""

from __future__ import annotations

import onnx_ir as ir

from deploytool import onnx_io
from deploytool.passes.base import DeployPass, DeployPassResult

__all__ = ["ResidualAddsToSumPass", "residual_adds_to_sum"]

_DEFAULT = ("", "ai.onnx")


def _constant(v: ir.Value | None) -> bool:
    if v is None:
        return False
    if v.is_initializer() or (v.const_value is not None and v.producer() is None):
        return True
    p = v.producer()
    return p is not None and p.op_type == "Constant" and p.domain in _DEFAULT


def _residual_adds(graph: ir.Graph) -> list[ir.Node]:
    found = []
    for node in graph:
        if node.op_type != "LayerNormalization" or node.domain not in _DEFAULT or not node.inputs:
            continue
        add = node.inputs[0].producer() if node.inputs[0] is not None else None
        if (add is None or add.op_type != "Add" or add.domain not in _DEFAULT or len(add.inputs) != 2
                or any(_constant(i) for i in add.inputs)):
            continue
        if add not in found:
            found.append(add)
    return found


class ResidualAddsToSumPass(DeployPass):
    """In place (see the module doc). Details: ``residual_add_as_sum`` (how many were rewritten)."""

    def call(self, model: ir.Model) -> DeployPassResult:
        if model.opset_imports.get("", 0) < 8:  # Sum broadcasts like Add from opset 8 on
            return DeployPassResult(model, modified=False, stats={"residual_add_as_sum": 0})
        adds = _residual_adds(model.graph)
        for add in adds:
            add.op_type = "Sum"
        return DeployPassResult(model, modified=bool(adds), stats={"residual_add_as_sum": len(adds)})

    def ensures(self, model: ir.Model) -> None:
        from deploytool.errors import VerificationError

        if model.opset_imports.get("", 0) >= 8 and _residual_adds(model.graph):
            raise VerificationError("ResidualAddsToSumPass left a residual Add before a LayerNormalization")


def residual_adds_to_sum(proto) -> int:
    """:class:`ResidualAddsToSumPass` on an ``onnx.ModelProto``, changed in place; returns how many Adds
    were rewritten (benchmarks apply it to other tools' files)."""
    model = ir.serde.deserialize_model(proto)
    result = ResidualAddsToSumPass()(model)
    if result.modified:
        proto.CopyFrom(onnx_io.serialize_model(model))
    return result.stats["residual_add_as_sum"]
