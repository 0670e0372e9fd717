"""Permute attention heads and FFN neurons by importance, without changing the model's outputs.

For each layer, heads are sorted by descending importance (ties keep their order) and Q/K/V output
rows and O input columns are permuted in whole-head blocks; FFN neurons are sorted the same way and
the intermediate output rows (and bias) and the output linear's input columns permuted. Attention is
a sum over heads and the FFN a sum over neurons, so the function is unchanged (up to float rounding
of the reordered sums). Afterwards "the first k heads / neurons" means "the k most important", which
is what DynaBERT width slicing keeps.

Importance comes from a file (``deploytool-importance/1``) or, without one, the data-free
weight-magnitude fallback, named as such in the result.

A layer whose per-head values are themselves graph outputs (an export with output_attentions exposes each
layer's attention probabilities, [batch, heads, S, S]) keeps its head order: permuting the heads would permute
that output, which then means something else. Likewise a layer whose FFN activation is an output keeps its
neuron order. Each such layer is a Skip naming the output; the other layers are reordered.
"""

from __future__ import annotations

import os
from typing import Optional

import onnx_ir as ir

from deploytool.choices import require_config
from deploytool.graph.structure import EncoderStructure
from deploytool.passes import _surgery as S
from deploytool.passes._sharing import copies_stats, weight_slots
from deploytool.passes.base import Edit, Skip, StructuredPass
from deploytool.passes.base import DeployPassResult, run_pass_file
from deploytool.validation import FilePath, Flag, schema

__all__ = ["ReorderConfig", "ReorderPass", "reorder_file"]


@schema
class ReorderConfig:
    """Sort heads and neurons by ``importance`` (a file); None -> weight-magnitude (data-free)."""

    importance: Optional[FilePath] = None
    heads: Flag = True
    neurons: Flag = True

    def __post_init__(self):
        from deploytool.errors import ConfigError

        if not (self.heads or self.neurons):
            raise ConfigError("heads/neurons: at least one of them must be reordered")


class ReorderPass(StructuredPass):
    label = "reorder"  # how messages name it: its command

    step_name = "reorder"

    def __init__(self, config: ReorderConfig):
        super().__init__()
        require_config(config, ReorderConfig, "ReorderPass")  # not an AttributeError in call()
        self.config = config

    def preserves_outputs(self) -> bool:
        return True  # a permutation of whole heads / neurons: the file runner's gate compares outputs

    def edit(self, model: ir.Model, structure: EncoderStructure) -> Edit:
        from deploytool.importance import load_importance, magnitude_importance

        cfg = self.config
        imp = magnitude_importance(structure) if cfg.importance is None else load_importance(cfg.importance, structure)
        moved = 0
        slots = weight_slots(structure)
        skipped: list[Skip] = []
        head_orders = []
        for i, layer in enumerate(structure.layers):
            order = imp.head_order(i)
            if cfg.heads:
                order = _unless_exposed(order, lambda: _exposed_heads(model.graph, layer), i, skipped,
                                        "heads", "per-head values (its attention probabilities or scores)")
                moved += order != sorted(order)
                S.keep_heads(model.graph, layer, order)
            head_orders.append(order)
            if cfg.neurons:
                order = _unless_exposed(imp.neuron_order(i), lambda: _exposed_neurons(model.graph, layer), i,
                                        skipped, "FFN neurons", "per-neuron values (an FFN activation)")
                moved += order != sorted(order)
                S.keep_neurons(model.graph, layer, order)
        stats = {"importance": imp.source, "head_order": head_orders}
        # layers sharing weights (ALBERT) given different orders; constants the exporter merged apart
        stats.update(copies_stats(slots, weight_slots(structure), "head or neuron orders",
                                  remedy="giving every layer that shares a weight the same order"))
        return Edit(stats, changed=moved > 0, skipped=skipped)


def _unless_exposed(order: list[int], exposed_outputs, layer: int, skipped: list, what: str, values: str) -> list[int]:
    """``order``, or the identity order with a Skip when the layer's ``values`` are graph outputs
    (``exposed_outputs()``, asked only when ``order`` moves anything): reordering would reorder those outputs."""
    exposed = exposed_outputs() if order != sorted(order) else []
    if not exposed:
        return order
    skipped.append(Skip(f"layer {layer}", f"{what} not reordered: graph output '{exposed[0]}' holds the layer's "
                        f"{values}; reordering the {what.split()[-1]} would reorder that output"))
    return sorted(order)


def _exposed_heads(graph: ir.Graph, layer) -> list[str]:
    """Graph outputs computed between the layer's Q/K/V projections and O (one entry per head, in head order)."""
    a = layer.attention
    starts = [x.node for x in (a.q, a.k, a.v, a.qkv, *a.rel_linears) if x is not None]
    return S.exposed_inside(graph, starts + ([a.fused] if a.fused is not None else []), [a.o.node])


def _exposed_neurons(graph: ir.Graph, layer) -> list[str]:
    """Graph outputs computed between an FFN's intermediate projection(s) and its output projection."""
    found: list[str] = []
    for ffn in layer.ffns:
        starts = [x.node for x in (ffn.intermediate, ffn.gate) if x is not None]
        found += S.exposed_inside(graph, starts, [ffn.output.node])
    return found


def reorder_file(src: str | os.PathLike, dst: str | os.PathLike, config: ReorderConfig, *,
                 verify: bool = True) -> DeployPassResult:
    """Load ``src``, reorder heads/neurons by importance, check and save ``dst`` atomically.

    ``verify``: run the output in ONNX Runtime and compare it with the input before writing it
    (see ``base.run_pass_file``).
    """
    require_config(config, ReorderConfig, "reorder_file")
    return run_pass_file(ReorderPass(config), src, dst, verify=verify)
