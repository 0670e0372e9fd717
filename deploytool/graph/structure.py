"""Find an encoder's layers and their Q/K/V/O and FFN weights in an ONNX graph, by structure.

CONTRACT (shared by inspect, the structured passes and the precision passes). The finder works on an
``onnx_ir.Model`` and returns references to the IR's own nodes and values, so a pass can edit the
graph in place through them. It never relies on initializer names (exporters rename linear weights
to ``onnx::MatMul_518`` or ``val_58``); it may use the ``deploytool.*`` metadata that
``deploytool export`` writes as a hint, but must work without it.

Conventions
- ``Linear.weight`` is the initializer (or Constant output) holding the weight. ``layout`` says how
  it is stored: ``"in_out"`` (MatMul B, shape [in, out], a transposed copy of the PyTorch weight)
  or ``"out_in"`` (Gemm with transB=1, the PyTorch layout). ``bias`` is the initializer added to the
  product (Add's other input, or Gemm's C), if any.
- Output features of Q/K/V and of the FFN intermediate are ordered head-major: head h owns output
  features [h*head_size, (h+1)*head_size).
- ``HeadSite`` is one place in the graph that encodes a layer's head count (a Reshape shape
  initializer or Constant, a Concat'ed shape piece, a fused op's ``num_heads`` attribute, ...);
  a pass that removes heads rewrites every site of that layer. Sites shared between layers (the
  dynamo exporter shares one constant across all layers) are flagged ``shared=True``: a pass must
  give the layer its own copy before changing it.
- Fused graphs (ORT transformer optimizer): ``AttentionBlock.fused`` is the com.microsoft
  ``Attention``/``MultiHeadAttention`` node; its packed QKV weight appears as ``qkv``.
- When the graph is not an encoder the finder recognises, it raises
  :class:`deploytool.errors.StructureError` naming the node and why.
- ``Linear.bias_node`` is normally the ``Add`` after the product; in ORT-fused graphs the bias can
  sit on the fused consumer instead (``BiasGelu``/``FastGelu`` input 1, ``SkipLayerNormalization``
  input 4), and then ``bias_node`` is that node. Fused ``Attention`` carries its QKV bias as input 2
  (``qkv.bias``, ``bias_node=None``); ``MultiHeadAttention`` keeps Q/K/V biases packed in its input 3
  (their ``Linear.bias`` is None). Quantized projections (``MatMulInteger`` + Cast + scale Mul,
  ``DynamicQuantizeMatMul``, ``MatMulNBits``) are Linears too; ``weight`` is then the stored
  (int8 / INT2 / packed uint8) tensor, and ``layout``/features describe the logical matrix.
- ``AttentionBlock.score_bias``: additive terms on the attention scores that do not come from a
  graph input (the padding mask does): a relative-position bias with one slice per head.
- A bias or weight may be an ``Identity`` alias of a shared initializer (the TorchScript exporter
  deduplicates equal tensors): copy before editing in place.

Implementation: :mod:`deploytool.graph.finder` (how each role is recognised).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import onnx_ir as ir


@dataclasses.dataclass
class Linear:
    """One linear projection: y = x @ W (+ b)."""

    node: ir.Node  # the MatMul or Gemm
    weight: ir.Value  # initializer or Constant output
    layout: Literal["in_out", "out_in"]
    in_features: int
    out_features: int
    bias: ir.Value | None = None  # initializer added after the product (or Gemm's C)
    bias_node: ir.Node | None = None  # the Add node (None for Gemm)


@dataclasses.dataclass
class HeadSite:
    """A graph location encoding a layer's attention head count (or heads*head_size)."""

    node: ir.Node  # the node that consumes / carries it (Reshape, Concat, Attention, ...)
    kind: Literal["initializer", "constant_node", "attribute"]
    value: ir.Value | None  # the tensor holding it (None for an attribute)
    attribute: str | None  # attribute name when kind == "attribute" (e.g. "num_heads")
    index: int | None  # element index inside the tensor (None for a scalar / attribute)
    meaning: Literal["num_heads", "all_head_size"]
    shared: bool = False  # also used by another layer (must be copied before an edit)


@dataclasses.dataclass
class AttentionBlock:
    num_heads: int
    head_size: int
    q: Linear | None
    k: Linear | None
    v: Linear | None
    o: Linear
    head_sites: list[HeadSite] = dataclasses.field(default_factory=list)
    fused: ir.Node | None = None  # com.microsoft Attention / MultiHeadAttention
    # additive per-head score terms that are not the padding mask (MPNet's relative-position bias
    # [B, H, S, S], computed once and added in every layer): (the Add node, the input index). A pass
    # that keeps heads must give this layer its own selection of the bias's head axis (-3).
    score_bias: list[tuple[ir.Node, int]] = dataclasses.field(default_factory=list)
    qkv: Linear | None = None  # packed QKV weight of a fused Attention

    @property
    def all_head_size(self) -> int:
        return self.num_heads * self.head_size


@dataclasses.dataclass
class FFNBlock:
    intermediate: Linear
    output: Linear
    activation: str  # "gelu", "relu", ... as recognised

    @property
    def width(self) -> int:
        return self.intermediate.out_features


@dataclasses.dataclass
class EncoderLayer:
    index: int
    attention: AttentionBlock
    ffn: FFNBlock
    input: ir.Value  # hidden state entering the layer
    output: ir.Value  # hidden state leaving the layer (after its last LayerNorm)
    nodes: list[ir.Node] = dataclasses.field(default_factory=list)  # every node of the layer
    # (contract extension) hidden state between attention and FFN, after the attention residual's
    # LayerNorm: the FFN intermediate reads it and the FFN residual adds it back
    attention_output: ir.Value | None = None


@dataclasses.dataclass
class EncoderStructure:
    family: str  # "bert", "roberta", "distilbert", "electra", ... or "unknown-encoder"
    hidden_size: int
    layers: list[EncoderLayer]
    embeddings: dict[str, ir.Value]  # "word", "position", "token_type" -> initializers (when found)
    fused: bool  # ORT transformer optimizer fused attention present
    exporter: str  # "torch", "dynamo", "optimum", "ort-fused" or "unknown" (a best guess)
    other_linears: list[Linear] = dataclasses.field(default_factory=list)  # pooler, classifier, ...

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def find_structure(model: ir.Model) -> EncoderStructure:
    """Locate every encoder layer's attention and FFN. Raises StructureError when it cannot."""
    from deploytool.graph.finder import find_structure as _find

    return _find(model)
