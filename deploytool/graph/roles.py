"""The roles the structure finder returns: an encoder's layers and their Q/K/V/O and FFN weights.

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
- Packed QKV without a fused op (ModernBERT's ``Wqkv``: one projection viewed as
  ``[.., 3, heads, head_size]`` and unbound into Q, K, V): ``qkv`` is that projection and ``q``/``k``/``v``
  are None. Its output features are ``part * all_head_size + h * head_size + d`` (part 0 = Q, 1 = K,
  2 = V), so head h owns features ``[h*d, (h+1)*d)`` of each part. Rotary position embeddings on Q and
  K (``x * cos + rotate_half(x) * sin``, cos/sin per head_size and broadcast over heads) are looked
  through; they hold no head count.
- Packed QKV viewed per head (DeBERTa v1's ``in_proj``: one projection viewed as ``[.., heads, 3 *
  head_size]`` and chunked into Q, K, V along the last axis): ``AttentionBlock.qkv_interleaved`` is True and
  the output features are ``h * 3 * head_size + part * head_size + d``, so head h owns the contiguous rows
  ``[3hd, 3(h+1)d)``. :meth:`AttentionBlock.part_features` gives a part's features for any layout.
- Per-head constants added to Q, K or V after their view (DeBERTa v1's ``q_bias``/``v_bias``, viewed
  ``[1, heads, 1, head_size]``): ``AttentionBlock.head_constants`` lists (the Add, its input index, the
  constant's head axis); a pass that keeps heads takes the same selection along that axis.
- Gated FFN (GLU: ModernBERT's GeGLU ``Wo(act(x @ Wi[:F]) * (x @ Wi[F:]))``): ``FFNBlock.gated`` is
  True and the intermediate projection has ``2 * F`` output features: neuron j owns features j (the
  activation's input) and ``F + j`` (the gate). ``FFNBlock.width`` is F. Constant split sizes of the
  chunk (a ``Split``'s sizes, a ``Slice``'s starts/ends) are ``FFNBlock.sites``; sizes computed from
  the tensor's shape at run time need no edit.
- Pre-LayerNorm layers (``h1 = x + attn(LN(x))``, ``y = h1 + ffn(LN(h1))``; ModernBERT):
  ``EncoderLayer.pre_norm`` is True, ``input``/``attention_output``/``output`` are the un-normalised
  residual stream and ``attention_input`` is the value the Q/K/V projections read (LN(input), or the
  input itself when the layer has no norm there). In ORT-fused graphs the residual Add and the next
  LayerNorm are one ``SkipLayerNormalization``: its output 3 is the sum (the residual stream) and its
  output 0 the next block's normalised input. The one that ends a layer (its norm belongs to the next
  layer, or is the final norm) is ``EncoderLayer.output_norm``; when it does not expose the sum (the
  last layer), ``output`` is its output 0.
- Bottleneck layers (MobileBERT): the layer input x (the wide stream) feeds an input bottleneck
  projection + norm r (the attention residual: ``h1 = norm(O + r)``), optionally a second bottleneck
  that Q and K share (V then reads x), several FFNs in a row (``EncoderLayer.ffns``, each
  ``h = norm(h + ffn(h))``) and an output bottleneck ``y = norm(P(h) + x)`` back to x's width. The
  norms may be MobileBERT's ``NoNorm`` (``h * gamma + beta``). ``EncoderLayer.bottlenecks`` lists the
  bottleneck projections.
- When the graph is not an encoder the finder recognises, it raises
  :class:`deploytool.errors.StructureError` naming the node and why.
- ``Linear.bias_node`` is normally the ``Add`` after the product; in ORT-fused graphs the bias can
  sit on the fused consumer instead (``BiasGelu``/``FastGelu`` input 1, ``SkipLayerNormalization``
  input 4), and then ``bias_node`` is that node. Fused ``Attention`` carries its QKV bias as input 2
  (``qkv.bias``, ``bias_node=None``); ``MultiHeadAttention`` keeps Q/K/V biases packed in its input 3
  (their ``Linear.bias`` is None). Quantized projections (``MatMulInteger`` + Cast + scale Mul,
  ``DynamicQuantizeMatMul``, ``MatMulNBits``) are Linears too; ``weight`` is then the stored
  (int8 / INT2 / packed uint8) tensor, and ``layout``/features describe the logical matrix.
- Disentangled attention (DeBERTa-v2/v3): Q, K and V are viewed per head and flattened to
  [batch * heads, S, head_size]; the scores (and the context) are viewed back as [batch, heads, ...]
  around the mask (those views are head sites); the content-to-position ``Q.(P_k)^T`` and
  position-to-content ``K.(P_q)^T`` terms added to the scores read projections P of the relative-position
  embeddings (``AttentionBlock.rel_linears``: Q's/K's own weight or their own ``pos_*_proj``; or, after
  ORT's optimizer, folded ``rel_constants``), repeated ``query.size(0) // heads`` times (a head site in
  the integer Div) and gathered by relative position (``rel_gathers``). DeBERTa v1 keeps them
  [batch, heads, ...] (no flattening): its gather index is one table expanded to every head
  (``rel_gather_axis`` 1), and its position projections are its own ``pos_proj``/``pos_q_proj``.
- ``AttentionBlock.score_bias``: additive terms on the attention scores that do not come from a
  graph input (the padding mask does): a relative-position bias with one slice per head.
- A bias or weight may be an ``Identity`` alias of a shared initializer (the TorchScript exporter
  deduplicates equal tensors): copy before editing in place.

Implementation: :mod:`deploytool.graph.finder` (how each role is recognised); the public face that
puts both together: :mod:`deploytool.graph.structure`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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
    factor: int = 1  # the element holds factor x the count (a static [S, batch * heads, .] view: the batch)
    # nodes from the one that reads ``node``'s output to the layer's own view (a Concat of shape pieces the
    # dynamo exporter shares among layers): each made the layer's own, in order, before ``node`` is
    via: tuple = ()


@dataclasses.dataclass
class AttentionBlock:
    num_heads: int
    head_size: int
    q: Linear | None
    k: Linear | None
    v: Linear | None
    o: Linear
    head_sites: list[HeadSite] = dataclasses.field(default_factory=list)
    fused: ir.Node | None = None  # com.microsoft Attention / MultiHeadAttention, or ONNX's Attention (opset 23)
    # additive per-head score terms that are not the padding mask (MPNet's relative-position bias
    # [B, H, S, S], computed once and added in every layer): (the Add node, the input index). A pass
    # that keeps heads must give this layer its own selection of the bias's head axis (-3).
    score_bias: list[tuple[ir.Node, int]] = dataclasses.field(default_factory=list)
    qkv: Linear | None = None  # packed QKV weight (fused Attention, or an unfused packed projection)
    # DeBERTa's disentangled attention (content-to-position and position-to-content terms): the
    # relative-position embeddings' projections, viewed per head like Q and K. ``rel_linears``: those
    # still computed in the graph (MatMul of the embeddings' constant cone with Q's or K's own weight, or
    # their own pos_*_proj); their output features are head-major like Q's. ``rel_constants``: ones ORT's
    # optimizer folded into constants, as (the node reading it, input index, head axis): axis 0 for a
    # [heads, 2*span, head_size] constant, -1 for a [.., heads * head_size] one, 1 for DeBERTa v1's
    # relative-position index folded to [1, heads, S, S]. ``rel_gathers``: the
    # GatherElements picking each query's relative positions, whose index is a [batch * heads, S, S]
    # broadcast of one [1, S, S] table. A pass that keeps heads slices all three with Q/K/V.
    rel_linears: list[Linear] = dataclasses.field(default_factory=list)
    rel_constants: list[tuple[ir.Node, int, int]] = dataclasses.field(default_factory=list)
    # for each of ``rel_constants``, whose projection of the positions it would be if it shares Q's or K's weight
    # (DeBERTa-v2/v3's share_att_key): "k" for the content-to-position term (Q times it), "q" for the
    # position-to-content term (K times it); None with one packed QKV
    rel_constant_proj: list[str | None] = dataclasses.field(default_factory=list)
    rel_gathers: list[ir.Node] = dataclasses.field(default_factory=list)
    # the head axis of the gathers' index: 0 for [batch * heads, S, S] (DeBERTa v2/v3), 1 for [batch, heads,
    # S, S] (DeBERTa v1, whose index every head shares: a pass keeping fewer heads cuts it at run time)
    rel_gather_axis: int = 0
    # no constant holds the head count: every view of Q/K/V to [.., heads, head_size] gives the head axis as
    # -1 and every merge of the context gives its width as -1 (ESM's exports), so a pass that keeps heads
    # has no site to rewrite and needs none
    heads_inferred: bool = False
    # the packed QKV viewed as [.., heads, 3 * head_size] and chunked on its last axis (DeBERTa v1): feature
    # h * 3 * head_size + part * head_size + d (see the module docstring); False: part * all_head_size + ..
    qkv_interleaved: bool = False
    # per-head constants added to Q/K/V after the head view: (the Add, its input index, the head axis)
    head_constants: list[tuple[ir.Node, int, int]] = dataclasses.field(default_factory=list)
    # NeZha's functional relative positions: terms on the scores and the context that read a fixed table with
    # no head axis (the same for every head: a head edit leaves them alone; their views are head sites)
    position_terms: int = 0
    # LayerNormalization nodes over all heads' features of Q or K (or V) between the projection and its head view
    # (JinaBERT's qk-post-norm): each head's values depend on every head's through the norm's mean and variance.
    # A pass may reorder heads (the statistics do not depend on the order; the norm's scale and bias are permuted
    # with the features) but not remove any
    head_norms: list[ir.Node] = dataclasses.field(default_factory=list)
    # their per-feature constants (scale, bias) as (the node reading it, input index): LayerNormalization's inputs 1
    # and 2, or the decomposed form's Mul by gamma and Add of beta
    head_norm_params: list[tuple[ir.Node, int]] = dataclasses.field(default_factory=list)

    @property
    def relative(self) -> bool:
        """True for disentangled (DeBERTa) attention."""
        return bool(self.rel_linears or self.rel_constants)

    @property
    def all_head_size(self) -> int:
        return self.num_heads * self.head_size

    def part_features(self, part: int, heads: Sequence[int] | None = None) -> list[int]:
        """The output features of Q (part 0), K (1) or V (2) for ``heads`` (all, in order, by default), in
        head-major order: of the part's own projection, or of the packed QKV in its layout."""
        d = self.head_size
        hs = range(self.num_heads) if heads is None else heads
        if self.qkv is None or self.q is not None:
            return [h * d + e for h in hs for e in range(d)]
        if self.qkv_interleaved:
            return [h * 3 * d + part * d + e for h in hs for e in range(d)]
        return [part * self.all_head_size + h * d + e for h in hs for e in range(d)]


@dataclasses.dataclass
class FFNSite:
    """A constant that encodes a gated FFN's width F (or 2F): a chunk's split size or slice bound."""

    node: ir.Node  # the Split / Slice that reads it
    kind: Literal["initializer", "constant_node", "attribute"]
    value: ir.Value | None  # the tensor holding it (None for an attribute)
    attribute: str | None  # attribute name when kind == "attribute" (Split's ``split`` before opset 13)
    index: int  # element index inside the tensor / attribute list
    factor: int  # the element is factor * F (1 or 2)


@dataclasses.dataclass
class FFNBlock:
    intermediate: Linear
    output: Linear
    activation: str  # "gelu", "relu", ... as recognised
    # GLU: the intermediate's 2F outputs are [activation input | gate]; neuron j = features j and F + j
    gated: bool = False
    sites: list[FFNSite] = dataclasses.field(default_factory=list)  # constants holding F (gated only)
    # a gate of its own (T5 v1.1 / flan-T5: ``wo(act(wi_0 x) * wi_1 x)``): a second intermediate whose output
    # multiplies the activation; neuron j is output j of both and input j of ``output``
    gate: Linear | None = None

    @property
    def width(self) -> int:
        out = self.intermediate.out_features
        return out // 2 if self.gated else out


@dataclasses.dataclass
class EncoderLayer:
    index: int
    attention: AttentionBlock
    ffn: FFNBlock
    input: ir.Value  # hidden state entering the layer
    output: ir.Value  # hidden state leaving the layer (post-LN: after its last LayerNorm; pre-LN: the residual sum)
    nodes: list[ir.Node] = dataclasses.field(default_factory=list)  # every node of the layer
    # (contract extension) hidden state between attention and FFN, after the attention residual's
    # LayerNorm: the FFN intermediate reads it and the FFN residual adds it back (pre-LN: the residual
    # sum before the FFN's LayerNorm)
    attention_output: ir.Value | None = None
    # pre-LayerNorm layer (see the module docstring): input/output are the un-normalised residual stream
    pre_norm: bool = False
    attention_input: ir.Value | None = None  # what Q/K/V read (pre-LN: LN(input); else input)
    output_norm: ir.Node | None = None  # fused SkipLayerNormalization ending a pre-LN layer (ORT)
    # every FFN of the layer in data-flow order (``ffn`` is the last one; MobileBERT stacks several, each
    # with its own residual and norm). The layer's FFN neurons are numbered across them: FFN b owns
    # neurons [sum of the widths before it, + its width).
    ffns: list[FFNBlock] = dataclasses.field(default_factory=list)
    # bottleneck projections (MobileBERT): the input bottleneck feeding the attention residual, the shared
    # Q/K bottleneck and the output bottleneck back to the layer's width. They hold no heads or neurons.
    bottlenecks: list[Linear] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ffns:
            self.ffns = [self.ffn]

    @property
    def ffn_width(self) -> int:
        """FFN neurons of the layer (all its FFNs)."""
        return sum(f.width for f in self.ffns)

    def ffn_offsets(self) -> list[tuple[int, FFNBlock]]:
        """(first layer-neuron index, block) of each FFN."""
        out, start = [], 0
        for f in self.ffns:
            out.append((start, f))
            start += f.width
        return out

    def attention_linears(self) -> list[Linear]:
        """The projections on the attention side: Q/K/V/O (or packed QKV), the bottlenecks that feed the
        attention (all but the output bottleneck) and DeBERTa's relative-position projections with their own
        weights."""
        a = self.attention
        out = [x for x in (a.q, a.k, a.v, a.o, a.qkv, *self.bottlenecks[:-1]) if x is not None]
        # DeBERTa's position projections: their own weights (pos_*_proj), or Q's/K's, listed once
        return out + [x for x in a.rel_linears if all(x.weight is not y.weight for y in out)]

    def ffn_linears(self) -> list[Linear]:
        """The projections on the FFN side: every FFN's two and the output bottleneck."""
        return [x for f in self.ffns for x in (f.intermediate, f.gate, f.output) if x is not None] + \
            self.bottlenecks[-1:]

    def linears(self) -> list[Linear]:
        """Every projection of the layer (attention, FFNs, bottlenecks), each once."""
        return self.attention_linears() + self.ffn_linears()


@dataclasses.dataclass
class EncoderStructure:
    family: str  # "bert", "roberta", "distilbert", "electra", ... or "unknown-encoder"
    hidden_size: int
    layers: list[EncoderLayer]
    embeddings: dict[str, ir.Value]  # "word", "position", "token_type" -> initializers (when found)
    fused: bool  # ORT transformer optimizer fused attention present
    # the file's own record ("torch", "dynamo", "optimum": deploytool's export writes it), else a best guess from the
    # graph: "ort-fused", "dynamo", "torch" (names under /m/), "torchscript" (module-path names: optimum or a plain
    # torch.onnx.export, which cannot be told apart) or "unknown"
    exporter: str
    other_linears: list[Linear] = dataclasses.field(default_factory=list)  # pooler, classifier, ...

    @property
    def num_layers(self) -> int:
        return len(self.layers)
