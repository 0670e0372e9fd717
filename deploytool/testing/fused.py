"""Edits of a graph ONNX Runtime's transformer optimizer fused, for the pack / repack / bundle tests: fused
``Attention`` nodes with what an optimizer may also write (an attention bias, causal masking)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def add_attention_bias(src: str | Path, dst: str | Path, *, max_len: int = 64, seed: int = 0,
                       scale: float = 0.5) -> Path:
    """``src`` with each fused ``Attention`` reading an attention bias (input 5, as a relative position bias
    does): rows and columns ``[:S, :S]`` of one random ``[1, heads, max_len, max_len]`` table (normal, standard
    deviation ``scale``), S the node's input length (so any sequence up to ``max_len`` runs). Written to
    ``dst``; returns it."""
    m = onnx.load(str(src))
    att = [n for n in m.graph.node if n.op_type == "Attention"]
    if not att:
        raise ValueError(f"{src}: no fused Attention node")
    heads = next(a.i for a in att[0].attribute if a.name == "num_heads")
    rng = np.random.default_rng(seed)
    table = (rng.standard_normal((1, heads, max_len, max_len)) * scale).astype(np.float32)
    g = m.graph
    g.initializer.extend([numpy_helper.from_array(table, "attn_bias_table"),
                          numpy_helper.from_array(np.array([1], np.int64), "attn_bias_one"),
                          numpy_helper.from_array(np.array([0, 0], np.int64), "attn_bias_starts"),
                          numpy_helper.from_array(np.array([2, 3], np.int64), "attn_bias_axes")])
    for i, n in enumerate(att):
        p = f"attn_bias_{i}"
        nodes = [helper.make_node("Shape", [n.input[0]], [f"{p}_shape"]),
                 helper.make_node("Gather", [f"{p}_shape", "attn_bias_one"], [f"{p}_len"], axis=0),
                 helper.make_node("Concat", [f"{p}_len", f"{p}_len"], [f"{p}_ends"], axis=0),
                 helper.make_node("Slice", ["attn_bias_table", "attn_bias_starts", f"{p}_ends", "attn_bias_axes"],
                                  [p])]
        at = list(g.node).index(n)
        for k, node in enumerate(nodes):
            g.node.insert(at + k, node)
        inputs = list(n.input) + [""] * (5 - len(n.input))
        del n.input[:]
        n.input.extend(inputs[:5] + [p])
    onnx.save(m, str(dst))
    return Path(dst)


def make_unidirectional(src: str | Path, dst: str | Path) -> Path:
    """``src`` with every fused ``Attention`` causal (``unidirectional=1``). Written to ``dst``; returns it."""
    m = onnx.load(str(src))
    for n in m.graph.node:
        if n.op_type == "Attention":
            kept = [a for a in n.attribute if a.name != "unidirectional"]
            del n.attribute[:]
            n.attribute.extend(kept + [helper.make_attribute("unidirectional", 1)])
    onnx.save(m, str(dst))
    return Path(dst)
