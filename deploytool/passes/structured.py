"""The contract of the structured passes (slice, prune-heads, prune-ffn, reorder) on top of DeployPass.

A structured pass finds the encoder's structure (:func:`deploytool.graph.find_structure`), refuses
before touching anything when a projection is quantized or packed, lets :meth:`StructuredPass.edit`
change the graph through :mod:`deploytool.passes._surgery`, and reports the counts before and after
(layers, heads, neurons, parameters) with the edit's own statistics. ``edit`` returns an
:class:`Edit`: its statistics, and whether it changed the model in a way the per-layer counts do not
show (a permutation of heads or neurons; a slice whose counts round back to the full model).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import onnx_ir as ir

from deploytool.graph.structure import EncoderStructure, find_structure
from deploytool.passes._surgery import (
    _SHARED_EDITS,
    _check_sliceable,
    _update_metadata,
    clear_intermediate_shapes,
    count_params,
    layer_counts,
)
from deploytool.passes.base import DeployPass, DeployPassResult

__all__ = ["Edit", "StructuredPass"]


@dataclasses.dataclass
class Edit:
    """What :meth:`StructuredPass.edit` did: its statistics, and ``changed`` for a change that the
    per-layer head and neuron counts do not show."""

    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    changed: bool = False


class StructuredPass(DeployPass):
    """Find the structure, edit it, report before/after counts. Subclasses implement :meth:`edit`."""

    def edit(self, model: ir.Model, structure: EncoderStructure) -> Edit:  # pragma: no cover - abstract
        raise NotImplementedError

    #: the pass's name in a variant's chain (:mod:`deploytool.variant`)
    step_name = "structured"

    def variant_step(self, stats: dict) -> dict:
        """Width scales by the heads per layer kept, depth by the layers kept."""
        lb, la = stats.get("layers_before") or 0, stats.get("layers_after") or 0
        hb, ha = stats.get("heads_before") or 0, stats.get("heads_after") or 0
        width = (ha / la) / (hb / lb) if la and lb and hb else 1.0
        return {"step": self.step_name, "width_factor": width, "depth_factor": la / lb if lb else 1.0}

    def call(self, model: ir.Model) -> DeployPassResult:
        structure = find_structure(model)
        for layer in structure.layers:  # refuse before touching anything
            for lin in layer.linears():
                _check_sliceable(lin, f"layer {layer.index}")
        before = layer_counts(structure)
        params_before = count_params(model.graph)
        try:
            done = self.edit(model, structure)
        finally:
            model.graph.meta.pop(_SHARED_EDITS, None)
        if not isinstance(done, Edit):
            raise TypeError(f"{type(self).__name__}.edit must return an Edit, not {type(done).__name__}")
        after = layer_counts(structure)
        changed = before != after or done.changed
        if changed:
            # tensors every user now reads an edited copy of (weights shared by layers, as in ALBERT)
            from onnx_ir.passes.common import RemoveUnusedNodesPass

            RemoveUnusedNodesPass()(model)
            clear_intermediate_shapes(model.graph)
            _update_metadata(model, after)
        # ORT's transformer optimizer writes com.microsoft nodes without importing the domain
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            if node.domain and node.domain not in model.opset_imports:
                model.opset_imports[node.domain] = 1
        stats = {
            "family": structure.family,
            "exporter": structure.exporter,
            "layers_before": before["layers"], "layers_after": after["layers"],
            "heads_before": sum(before["heads"]), "heads_after": sum(after["heads"]),
            "neurons_before": sum(before["neurons"]), "neurons_after": sum(after["neurons"]),
            "params_before": params_before, "params_after": count_params(model.graph),
            "heads_per_layer": after["heads"], "neurons_per_layer": after["neurons"],
        }
        stats.update(done.stats)
        return DeployPassResult(model=model, modified=changed, stats=stats)
