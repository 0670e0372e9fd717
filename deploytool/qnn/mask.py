"""Bound the additive attention mask so it does not swamp the quantized activation range.

A BERT export turns ``attention_mask`` (1 = token, 0 = padding) into an additive bias
``(1 - mask) * C`` added to the attention scores before Softmax, with ``C = finfo(float32).min``
(-3.4e38, transformers 4.x) or -10000 (older exports). Static QDQ quantization gives the tensor
``scores + bias`` one linear range: with C = -3.4e38 every real score falls into the same step and
attention collapses; with C = -10000 a uint8 step is about 40 (uint16: 0.15), still far coarser
than the scores themselves.

This pass replaces every such constant C (a scalar <= ``threshold`` reached from an attention-mask
input through Unsqueeze/Cast/Sub/Mul/Where/Expand/Reshape) by ``mask_value`` (default -30). A padded
position then gets ``score - 30``: after Softmax its weight is at most ``exp(-30 + spread)`` of the
largest score's, where ``spread`` is the row's score range (a few units in trained encoders), i.e.
nothing; the activation range grows by only 30. Unpadded inputs give identical outputs.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from deploytool.errors import ConfigError
from deploytool.passes.base import DeployPass, DeployPassResult, Skip

logger = logging.getLogger(__name__)

__all__ = ["BoundAttentionMaskPass"]

# ops the mask flows through between the graph input and the additive bias
_MASK_PATH_OPS = {"Unsqueeze", "Cast", "Sub", "Mul", "Where", "Expand", "Reshape", "Not", "Equal", "Neg",
                  "Squeeze", "Concat", "Less", "Greater"}


def _scalar_constant(v: ir.Value | None) -> float | None:
    """The value of a one-element float constant (initializer or Constant node), else None."""
    from deploytool.graph._util import const_tensor

    t = const_tensor(v)
    if t is None:
        return None
    arr = t.numpy()
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.floating):
        return None
    return float(arr.reshape(()))


class BoundAttentionMaskPass(DeployPass):
    """Replace the attention mask's huge negative constant by ``mask_value`` (see module doc)."""

    def __init__(self, mask_value: float = -30.0, threshold: float = -1000.0):
        super().__init__()
        if not (-1e4 <= mask_value <= -5):
            raise ConfigError(f"mask_value: must be in [-10000, -5] (a bias that masks after Softmax), "
                              f"got {mask_value}")
        self.mask_value = float(mask_value)
        self.threshold = float(threshold)

    def call(self, model: ir.Model) -> DeployPassResult:
        graph = model.graph
        starts = [v for v in graph.inputs if "mask" in (v.name or "").lower()]
        if not starts:
            return DeployPassResult(model, False, stats={"masks_bounded": 0},
                                    skipped=[Skip("<inputs>", "no graph input named *mask*: nothing to bound")])
        seen: set[int] = set()
        frontier = list(starts)
        changed: list[dict] = []
        while frontier:
            v = frontier.pop()
            for use in v.uses():
                node = use.node
                if id(node) in seen or node.op_type not in _MASK_PATH_OPS:
                    continue
                seen.add(id(node))
                for i, inp in enumerate(node.inputs):
                    c = _scalar_constant(inp)
                    if c is None or c > self.threshold or node.op_type not in ("Mul", "Where"):
                        continue
                    dtype = inp.const_value.dtype if inp.const_value is not None else ir.DataType.FLOAT
                    new = ir.Value(name=f"{node.name or 'mask'}_bounded_mask_value",
                                   const_value=ir.tensor(np.array(self.mask_value, dtype=dtype.numpy())))
                    graph.register_initializer(new)
                    node.replace_input_with(i, new)
                    changed.append({"node": node.name, "was": c, "now": self.mask_value})
                frontier.extend(node.outputs)
        # drop Constant nodes that fed only the replaced inputs
        for node in [n for n in graph if n.op_type == "Constant" and not any(o.uses() for o in n.outputs)]:
            if not any(o in graph.outputs for o in node.outputs):
                graph.remove(node, safe=True)
        skipped = [] if changed else [Skip(starts[0].name, f"no scalar constant <= {self.threshold:g} on the "
                                                           "mask path (already bounded or a different mask form)")]
        logger.info("bounded %d attention-mask constant(s) to %g", len(changed), self.mask_value)
        return DeployPassResult(model, bool(changed), stats={"masks_bounded": len(changed), "changes": changed},
                                skipped=skipped)
