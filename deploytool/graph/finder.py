"""The structure finder: encoder layers, Q/K/V/O, FFN and head-count sites found by graph structure.

How roles are recognised (names are never used for roles):

- A *projection* is a ``MatMul``/``Gemm`` (or a quantized matmul: ``MatMulInteger``,
  ``DynamicQuantizeMatMul``, ``MatMulNBits``) whose weight input is computed from constants only and
  whose data input is not; its bias is the constant operand of the ``Add`` that follows (or Gemm's C,
  or the bias input of a fused ``BiasGelu``/``FastGelu``/``SkipLayerNormalization`` that consumes it).
- Unfused self-attention is found from each ``Softmax``: walking back through the mask/scale ops
  (Add, Where, Div, Mul, Cast) reaches the *score* MatMul of two activations. Its first operand leads
  (through Transpose/Reshape/scale) back to Q, its second (the transposed one) to K. The MatMul that
  consumes the softmax output is the *context* MatMul; its second operand leads back to V. The
  context goes through Transpose/Reshape into O. Q, K and V must read the same hidden state.
  A Softmax over the last axis written out as ``Div(Exp(x), ReduceSum(Exp(x)))``, ``x`` possibly less its
  ``ReduceMax`` (ONNX Runtime's level-99 graph of an fp16 model on CPU, which has no fp16 Softmax kernel) is read
  as the Softmax of ``x``; such a graph computes in fp32 between Casts (a Cast read only by Shape is a shape read,
  a layer's input may be the fp32 Cast of the previous layer's fp16 LayerNorm).
- Fused attention: a com.microsoft ``Attention`` node (packed QKV weight [hidden, 3*hidden],
  ``num_heads`` attribute), its output feeding O.
- ONNX's own ``Attention`` (opset 23; torch's exporter writes SDPA as it from opset 23 on): on 4-D
  ``[B, heads, S, head_size]`` Q, K and V it is read as an unfused layer's score and context MatMuls in one
  node (Q, K and V traced back through their views, the context forward through its merge into O, head counts
  from the views); on 3-D inputs as ORT's ``MultiHeadAttention`` (separate projections or one ``Split`` in
  three), its head count in ``q_num_heads`` / ``kv_num_heads``. A causal one, one with a cache (past key/value
  inputs or present outputs read) or with fewer key/value heads than query heads is refused. Its mask input is
  a per-head score bias when built from a table and no input's data.
- Packed QKV (ModernBERT's ``Wqkv``): Q, K and V each trace back to the same projection through a
  ``Split`` into 3 / ``Slice [i:i+1]`` / ``Gather i`` (part i = 0 Q, 1 K, 2 V) whose axis, followed back
  through Transposes, is the ``3`` of a ``[.., 3, heads, head_size]`` Reshape (the view). Rotary
  position embeddings ``x * cos + rotate_half(x) * sin`` (cos/sin not derived from any input's data;
  rotate_half = Slice/Neg/Concat of x) are looked through on the way back from Q and K, also on the first r
  features of each head with the rest concatenated back (``rotary_emb_fraction``), and a ``torch.stack`` of the
  rotated Q and K with V taken apart again (NomicBERT: a Concat of Unsqueezes indexed by a Gather, or by a Split
  and Squeezes after ORT's optimizer) is the stacked tensor itself. A packed projection may also be split into its
  three parts along its last axis before any view, each part viewed [.., heads, head_size] on its own (GTE's
  ``qkv_proj(x).split(A, -1)``): the same part-major features, the Split's sizes (or Slice bounds) head sites.
- Post-LayerNorm residual: O's output is added to the layer input and normalised
  (``LayerNormalization``, ``SkipLayerNormalization`` or the decomposed ReduceMean/Sub/Pow/... form);
  that value feeds exactly one projection (FFN intermediate), whose output goes through an
  activation into a second projection (FFN output), added back to the same value and normalised: the
  layer's output.
- Bottleneck layers (MobileBERT): O's output is added to ``r = norm(P_in(x))``, a projection of the layer
  input x (Q and K read r, x, or a second bottleneck ``norm(P_qk(x))``; V reads x or r); the norm may be
  ``x * gamma + beta`` (NoNorm) or ORT's SkipLayerNormalization. After that come one or more FFNs, each
  added back to its own input and normalised, and then an output bottleneck ``norm(P_out(h) + x)``: the
  layer's output. Where Q, K and V read r itself, the layer is a bottleneck layer only if that output
  bottleneck is found. Every layer must read what the layer before it writes.
- Pre-LayerNorm residual (ModernBERT): O's output is added to the un-normalised stream x whose
  LayerNorm the attention read (or to x itself where the layer has no norm there, ModernBERT's first
  layer); that sum h1 is read by a LayerNorm (``LayerNormalization``, the decomposed form with or
  without bias, ORT's ``SimplifiedLayerNormalization`` of ``h1 - mean(h1)``) feeding the FFN
  intermediate, AND by the FFN residual, whose sum is the layer's output. ORT's
  ``SkipLayerNormalization`` with its output 3 (the sum) used is the Add and the next LayerNorm in
  one node. A sum that is only normalised (mixed pre/post) is refused at that Add.
- Gated FFN (GLU): the intermediate's output is read only by a ``Split`` in two along the last axis, or
  two ``Slice``s of its halves; the halves (one through the activation, multiplied together) reach
  the output projection, which reads half the intermediate's width. Constant split sizes / slice
  bounds equal to F or 2F are recorded as sites; bounds computed from the shape need no edit.
- Disentangled attention (DeBERTa): the walk from the Softmax back to the score MatMul also passes the
  [batch, heads, S, S] view of the scores; a term added to the scores that is made of MatMuls of Q (or K)
  with an operand traced back (through Transpose/Tile/Expand/Reshape) to a projection of constants (the
  relative-position embeddings) or to a folded constant is a relative-position term (see roles).
- Functional relative positions (NeZha): a term added to the scores (Q viewed [S, batch * heads, d] times a
  table) and one added to the context (the probabilities so viewed times a table), each one batched MatMul
  with a constant table cut by lengths read from shapes, holding no head axis: the same for every head.
  Their views' head count, where the graph writes it, is a head site: a constant (a static export's batch x
  heads: ``HeadSite.factor``), or a product of a length read from a shape and the count, in shape pieces the
  dynamo exporter shares among layers (``HeadSite.via``).
- Head counts come from the Reshape that splits Q/K/V into [B, S, heads, head_size] (a constant shape
  or a Concat of shape pieces; positions are counted from the end, so leading dynamic dims are fine;
  packed: the [B, S, 3, heads, head_size] view) and the Reshape that merges the context back to
  [B, S, heads*head_size].
- QDQ graphs (ORT's ``quantize_static`` with ``QuantFormat.QDQ``): a weight, bias or embedding table
  read through ``DequantizeLinear`` is the stored int8 / uint8 / int32 tensor behind it, and the
  ``QuantizeLinear`` -> ``DequantizeLinear`` pair after each activation is looked through (a residual is
  recognised by the float value it quantizes).
- Embeddings: the Gathers on 2-D constant tables upstream of the first layer. word = the largest
  table indexed directly by a graph input; token_type = a table of at most 16 rows; position = the
  rest. A fused ``EmbedLayerNormalization`` names its inputs.

The finder never imports torch or onnxruntime and walks each node a bounded number of times.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque

import numpy as np
import onnx_ir as ir

from deploytool.errors import StructureError
from deploytool.graph._util import (
    LAYER_NORM_OPS,
    LINEAR_OPS,
    ConstCone,
    const_kind,
    const_tensor,
    consumers,
    data_consumers,
    is_op,
    qkv_split,
    safe_name,
    shape_derived,
    single_consumer,
    small_const,
    static_shape,
    value_rank,
)
from deploytool.graph.roles import (
    AttentionBlock,
    EncoderLayer,
    EncoderStructure,
    FFNBlock,
    FFNSite,
    HeadSite,
    Linear,
)

logger = logging.getLogger(__name__)

_PLUMBING = {"Transpose", "Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze", "Dropout", "QuantizeLinear",
             "DequantizeLinear"}
# activation (re)quantization in front of a projection: the projection reads the value before it
_QUANT_IN = {"DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"}
_FUSION_OPS = {"Attention", "MultiHeadAttention", "QAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
               "QEmbedLayerNormalization", "BiasGelu", "FastGelu", "SkipSimplifiedLayerNormalization"}
_SCALE = {"Div", "Mul"}
# what a padding mask applied to the hidden state between layers is made with (see Finder._masked)
_MASK_ONLY_OPS = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Expand", "Identity", "Equal", "Not", "Greater", "Less",
                  "Where", "Shape", "Gather", "Slice", "Concat", "Constant", "ConstantOfShape", "Range", "Sub", "Mul",
                  "Neg"}
_FLOATS = {1, 10, 11, 16}  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _precision_root(v: ir.Value | None) -> ir.Value | None:
    """``v`` before any Casts between float types (ONNX Runtime's level-99 graph of an fp16 model computes in
    fp32 between such Casts, and its transpose optimizer puts one on either side of a Transpose)."""
    for _ in range(8):
        p = v.producer() if v is not None else None
        if p is None or p.op_type != "Cast" or "to" not in p.attributes or p.attributes["to"].value not in _FLOATS:
            return v
        v = p.inputs[0]
    return v


def _producer_past_casts(v: ir.Value | None) -> ir.Node | None:
    v = _precision_root(v)
    return v.producer() if v is not None else None


def _same_data(a: ir.Value | None, b: ir.Value | None) -> bool:
    """True when ``a`` and ``b`` are one value up to float Casts, also Transpose(Cast(y)) and Cast(Transpose(y))
    with one perm."""
    a, b = _precision_root(a), _precision_root(b)
    if a is None or b is None:
        return False
    if a is b:
        return True
    pa, pb = a.producer(), b.producer()
    if (pa is not None and pb is not None and pa.op_type == pb.op_type == "Transpose" and "perm" in pa.attributes
            and "perm" in pb.attributes and list(pa.attributes["perm"].value) == list(pb.attributes["perm"].value)):
        return _same_data(pa.inputs[0], pb.inputs[0])
    return False
# the unbind of a packed QKV view into Q, K and V (torch's ``unbind``, ``chunk`` or indexing)
_UNBIND = {"Split", "Slice", "Gather"}
_MASK_OPS = {"Add", "Sub", "Mul", "Div", "Where", "Cast", "Identity", "Max", "Min", "Clip", "Dropout",
             "QuantizeLinear", "DequantizeLinear"}
_ACT_OPS = {"Gelu", "FastGelu", "BiasGelu", "Relu", "Erf", "Tanh", "Sigmoid", "Div", "Mul", "Add", "Pow",
            "Sqrt", "Cast", "Identity", "Dropout", "QuickGelu", "Sub"} | _QUANT_IN
_MAX_ACT_NODES = 40
# products of two activations that attention scores and their application to V may be written as
_ACT_PRODUCTS = {"MatMul", "FusedMatMul", "Einsum"}


def _unwrapped(v: ir.Value | None) -> ir.Value | None:
    """``v`` with the Unsqueezes, Reshapes and Casts in front of it looked through (one length in several views)."""
    for _ in range(8):
        p = v.producer() if v is not None else None
        if p is None or p.op_type not in ("Unsqueeze", "Reshape", "Cast", "Squeeze") or not p.inputs:
            return v
        v = p.inputs[0]
    return v


def _is_one(c) -> bool:
    return c is not None and c.size == 1 and int(c.reshape(-1)[0]) == 1


def _last_axis_reduce(node: ir.Node, x: ir.Value | None) -> bool:
    """``node`` (ReduceSum/ReduceMax) reduces ``x`` over its last axis only, keeping dims (axes from the attribute or,
    from opset 18 (ReduceSum 13), the second input)."""
    if len(node.inputs) < 1 or node.inputs[0] is not x:
        return False
    if "keepdims" in node.attributes and int(node.attributes["keepdims"].value) != 1:
        return False
    if "axes" in node.attributes:
        axes = list(node.attributes["axes"].value)
    elif len(node.inputs) > 1 and node.inputs[1] is not None:
        a = small_const(node.inputs[1])
        if a is None:
            return False
        axes = [int(i) for i in np.asarray(a).reshape(-1)]
    else:
        return False  # no axes: every axis
    if len(axes) != 1:
        return False
    rank = value_rank(x)
    return axes[0] == -1 or (rank is not None and axes[0] == rank - 1)


def expanded_softmax_input(node: ir.Node) -> ir.Value | None:
    """The scores ``x`` when ``node`` is the ``Div`` of a Softmax over the last axis written out as
    ``Div(Exp(y), ReduceSum(Exp(y)))`` with ``y = x`` or ``y = Sub(x, ReduceMax(x))`` (ONNX Runtime's level-99 graph
    of an fp16 model on CPU inlines Softmax's function body so: no fp16 Softmax kernel); else None. The Exp must be
    read by that Div and ReduceSum only, and not a graph output (an Exp read elsewhere is not a softmax's private
    intermediate)."""
    if node.op_type != "Div" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 2:
        return None
    e, s = node.inputs
    ex = e.producer() if e is not None else None
    rs = s.producer() if s is not None else None
    if ex is None or rs is None or ex.op_type != "Exp" or rs.op_type != "ReduceSum" or not ex.inputs:
        return None
    if not _last_axis_reduce(rs, e) or {id(u) for u, _ in e.uses()} != {id(node), id(rs)} or e.is_graph_output():
        return None
    y = ex.inputs[0]
    sub = y.producer() if y is not None else None
    if sub is not None and sub.op_type == "Sub" and len(sub.inputs) == 2 and sub.inputs[1] is not None:
        mx = sub.inputs[1].producer()
        if mx is not None and mx.op_type == "ReduceMax" and _last_axis_reduce(mx, sub.inputs[0]):
            return sub.inputs[0]
    return y


def softmax_like_input(node: ir.Node) -> ir.Value | None:
    """The ``x`` of ``Div(Exp(x), ReduceSum(Exp(x)))`` over any axes, however else the Exp is read (a softmax
    :func:`expanded_softmax_input` does not take for one; :meth:`_Finder._unread_attention` and pack ask whether
    it still looks like attention), else None."""
    if node.op_type != "Div" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 2:
        return None
    e, s = node.inputs
    ex = e.producer() if e is not None else None
    rs = s.producer() if s is not None else None
    if ex is None or rs is None or ex.op_type != "Exp" or rs.op_type != "ReduceSum" or not ex.inputs \
            or not rs.inputs or rs.inputs[0] is not e:
        return None
    return ex.inputs[0]


def softmax_input(node: ir.Node) -> ir.Value | None:
    """The scores a Softmax node (or the Div of an expanded one, :func:`expanded_softmax_input`) normalises."""
    if node.op_type == "Softmax":
        return node.inputs[0] if node.inputs else None
    return expanded_softmax_input(node)


def is_softmax(node: ir.Node) -> bool:
    return node.op_type == "Softmax" or expanded_softmax_input(node) is not None


def _name(node: ir.Node) -> str:
    return node.name or f"<{node.op_type}>"


class _Finder:
    def __init__(self, model: ir.Model) -> None:
        self.model = model
        self.graph = model.graph
        self.cone = ConstCone()
        self._shape_memo: dict[int, bool] = {}
        self._input_memo: dict[int, bool] = {}
        self.position = {id(n): i for i, n in enumerate(self.graph)}
        self.meta = dict(model.metadata_props)
        self._rel_nodes: dict[int, list[ir.Node]] = {}  # DeBERTa: per attention block, its position branch
        self._rotary_views: list[ir.Node] = []  # interleaved rotations traced through (unfused_attention reads them)
        self._rotary_ops: list[ir.Node] = []  # ONNX's RotaryEmbedding nodes traced through (their num_heads)
        # norms over all heads traced through (AttentionBlock.head_norms): (input, per-feature constants, width)
        self._head_norms: list[tuple[ir.Value, list[tuple[ir.Node, int]], int]] = []
        from deploytool.variant import packing_record

        self.packing = packing_record(self.meta)
        # packed initializers are named after the original weight (``<name>_trit5``, ``<name>_int2``)
        self._packed_prefix = {safe_name(k) + "_": v for k, v in self.packing.items()
                               if isinstance(v, dict)}

    def packing_info(self, v: ir.Value | None) -> dict | None:
        if v is None or not v.name:
            return None
        info = self.packing.get(v.name)
        if isinstance(info, dict):
            return info
        for prefix, info in self._packed_prefix.items():
            if v.name.startswith(prefix):
                return info
        return None

    # ------------------------------------------------------------------ quantized activations
    @staticmethod
    def source(v: ir.Value | None) -> ir.Value | None:
        """The float value a projection really reads (through activation quantize/dequantize)."""
        for _ in range(4):
            p = v.producer() if v is not None else None
            if p is None or p.op_type not in _QUANT_IN or not p.inputs:
                return v
            v = p.inputs[0]
        return v

    @staticmethod
    def readers(v: ir.Value | None) -> list[ir.Node]:
        """Data consumers of ``v``, looking through activation quantization nodes."""
        out: list[ir.Node] = []
        stack = data_consumers(v)
        seen: set[int] = set()
        while stack:
            n = stack.pop(0)
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.op_type in _QUANT_IN:
                stack.extend(data_consumers(n.outputs[0]))
            else:
                out.append(n)
        return out

    def _readers_past_casts(self, v: ir.Value | None) -> list[ir.Node]:
        """:meth:`readers` of ``v``, a float Cast among them replaced by the readers of its output (ONNX Runtime's
        level 99 of an fp16 model casts a value computed in fp16 to fp32 for each kernel without fp16)."""
        out: list[ir.Node] = []
        for n in self.readers(v):
            if n.op_type == "Cast" and "to" in n.attributes and n.attributes["to"].value in _FLOATS and n.outputs \
                    and not n.outputs[0].is_graph_output():
                out += [r for r in self._readers_past_casts(n.outputs[0]) if r not in out]
            elif n not in out:
                out.append(n)
        return out

    @staticmethod
    def past_qdq(v: ir.Value) -> ir.Value:
        """``v`` after its activation fake-quantization (``QuantizeLinear`` -> ``DequantizeLinear``, as
        ORT's QDQ format puts after every quantized op's output), or ``v`` itself when there is none."""
        for _ in range(4):
            q = single_consumer(v)
            if q is None or q.op_type != "QuantizeLinear":
                return v
            dq = single_consumer(q.outputs[0])
            if dq is None or dq.op_type != "DequantizeLinear":
                return v
            v = dq.outputs[0]
        return v

    @staticmethod
    def plane_sum(node: ir.Node | None) -> ir.Node | None:
        """pack's split-binary form of a projection: one kernel over both binary planes (``[.., 2N]``), its
        two halves (``Slice`` of ``[0, N)`` and ``[N, 2N)`` along the last axis) added. Returns that ``Add``
        for the kernel ``node``, None for any other node."""
        if node is None or node.op_type not in LINEAR_OPS or not node.outputs:
            return None
        halves = consumers(node.outputs[0])
        if len(halves) != 2 or node.outputs[0].is_graph_output():
            return None
        ranges = []
        for sl in halves:
            if sl.op_type != "Slice" or sl.domain not in ("", "ai.onnx") or len(sl.inputs) < 4 or \
                    sl.inputs[0] is not node.outputs[0]:
                return None
            starts, ends, axes = (small_const(sl.inputs[i]) for i in (1, 2, 3))
            steps = small_const(sl.inputs[4]) if len(sl.inputs) > 4 and sl.inputs[4] is not None else None
            if starts is None or ends is None or axes is None or starts.size != 1 or ends.size != 1 or \
                    axes.size != 1 or int(axes.reshape(-1)[0]) != -1 or \
                    (steps is not None and (steps.size != 1 or int(steps.reshape(-1)[0]) != 1)):
                return None
            ranges.append((int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0])))
        ranges.sort()
        (a0, a1), (b0, b1) = ranges
        if not (a0 == 0 and a1 == b0 and b1 == 2 * a1 and a1 > 0):
            return None
        add = single_consumer(halves[0].outputs[0])
        if add is None or add is not single_consumer(halves[1].outputs[0]) or add.op_type != "Add" or \
                add.domain not in ("", "ai.onnx") or len(add.inputs) != 2 or \
                {id(v) for v in add.inputs} != {id(halves[0].outputs[0]), id(halves[1].outputs[0])}:
            return None
        return add

    def _plane_kernel(self, add: ir.Node) -> ir.Node | None:
        """The kernel whose :meth:`plane_sum` ``add`` is, None when ``add`` is not one."""
        a = add.inputs[0] if add.op_type == "Add" and len(add.inputs) == 2 else None
        sl = a.producer() if a is not None else None
        kernel = sl.inputs[0].producer() if sl is not None and sl.op_type == "Slice" and sl.inputs[0] is not None \
            else None
        return kernel if kernel is not None and self.plane_sum(kernel) is add else None

    def tail(self, node: ir.Node) -> ir.Value:
        """The float product of a projection: after MatMulInteger's Cast and scale Mul (or a QDQ pair), or
        after the two planes' sum of pack's split-binary form (:meth:`plane_sum`)."""
        ps = self.plane_sum(node)
        if ps is not None:
            return self.past_qdq(ps.outputs[0])
        y = node.outputs[0]
        if node.op_type == "MatMulInteger":
            c = single_consumer(y)
            if c is not None and c.op_type == "Cast":
                y = c.outputs[0]
                c = single_consumer(y)
            if c is not None and c.op_type == "Mul":
                y = c.outputs[0]
        return self.past_qdq(y)

    # ------------------------------------------------------------------ projections
    def linear(self, node: ir.Node | None, const_data: bool = False) -> Linear | None:
        """A Linear for ``node`` if it is a projection with a constant weight, else None. ``const_data``: its
        input may be a constant too (DeBERTa's projection of the relative-position embeddings)."""
        if node is None or node.op_type not in LINEAR_OPS or len(node.inputs) < 2:
            return None
        x, w = node.inputs[0], node.inputs[1]
        if x is None or w is None or (self.cone.is_const(x) and not const_data) or not self.cone.is_const(w):
            return None
        weight = self._weight_root(w)
        layout, in_f, out_f = self._weight_geometry(node, w, weight)
        ps = self.plane_sum(node)
        if ps is not None:
            # both planes' outputs side by side: the projection has half the kernel's width (a kernel whose
            # geometry comes from pack's record already has the projection's)
            half = min(int(small_const(i.producer().inputs[2]).reshape(-1)[0]) for i in ps.inputs)
            if out_f == 2 * half:
                out_f = half
            elif out_f != half:
                return None
        lin = Linear(node=node, weight=weight, layout=layout, in_features=in_f, out_features=out_f)
        lin.bias, lin.bias_node = self._bias(node, out_f)
        return lin

    def _weight_root(self, w: ir.Value) -> ir.Value:
        """The stored tensor behind a weight input (itself, or the packed/int initializer it is unpacked from)."""
        if const_tensor(w) is not None:
            return w
        v = w
        for _ in range(8):  # shape-preserving conversions first (Cast of INT2, DequantizeLinear of int8)
            p = v.producer()
            if p is None or p.op_type not in ("Cast", "DequantizeLinear", "Identity") or not p.inputs:
                break
            v = p.inputs[0]
            if const_tensor(v) is not None:
                return v
        return self.cone.root(w)

    def _weight_geometry(self, node: ir.Node, w: ir.Value, weight: ir.Value) -> tuple[str, int, int]:
        attrs = node.attributes
        if node.op_type == "MatMulNBits":
            return "out_in", int(attrs["K"].value), int(attrs["N"].value)
        dims = None
        if w.shape is not None and w.shape.is_static() and len(w.shape) == 2:
            dims = [int(d) for d in w.shape]
        else:
            info = self.packing_info(weight)
            t = const_tensor(weight)
            if isinstance(info, dict) and len(info.get("shape", [])) == 2:
                dims = [int(d) for d in info["shape"]]
            elif t is not None and len(t.shape) == 2 and (weight is w or self._shape_preserving(w, weight)):
                dims = [int(d) for d in t.shape]
        if dims is None:
            raise StructureError(f"node '{_name(node)}' ({node.op_type}): weight '{w.name}' has no static 2-D shape")
        trans_b = False
        if node.op_type in ("Gemm", "FusedGemm") and "transB" in attrs:
            trans_b = bool(attrs["transB"].value)
        if node.op_type == "FusedMatMul" and "transB" in attrs:
            trans_b = bool(attrs["transB"].value)
        if trans_b:
            return "out_in", dims[1], dims[0]
        return "in_out", dims[0], dims[1]

    def _stored_const(self, v: ir.Value | None) -> ir.Value | None:
        """The stored tensor behind a constant operand: itself, or the tensor it is cast or dequantized from
        (same shape); None when ``v`` is not a constant."""
        if v is None or not self.cone.is_const(v):
            return None
        if const_tensor(v) is not None:
            return v
        root = self._weight_root(v)
        return root if root is not None and self._shape_preserving(v, root) else None

    @staticmethod
    def _fake_quant_source(v: ir.Value) -> ir.Value | None:
        """The float value behind ``DequantizeLinear(QuantizeLinear(x))`` (None for anything else). ORT's QDQ
        ``quantize_static`` quantizes a bias it does not see as an initializer (an ``Identity`` alias: TorchScript
        stores an untrained model's equal zero biases once) as an activation, so the bias Add reads that pair."""
        dq = v.producer()
        if dq is None or dq.op_type != "DequantizeLinear" or not dq.inputs or dq.inputs[0] is None:
            return None
        q = dq.inputs[0].producer()
        if q is None or q.op_type != "QuantizeLinear" or not q.inputs:
            return None
        return q.inputs[0]

    @staticmethod
    def _shape_preserving(w: ir.Value, root: ir.Value) -> bool:
        v = w
        while v is not root:
            p = v.producer()
            if p is None or p.op_type not in ("Cast", "DequantizeLinear", "Identity"):
                return False
            v = p.inputs[0]
        return True

    def _bias(self, node: ir.Node, out_f: int) -> tuple[ir.Value | None, ir.Node | None]:
        if node.op_type in ("Gemm", "FusedGemm"):
            c = node.inputs[2] if len(node.inputs) > 2 else None
            return (c, None) if c is not None else (None, None)
        if node.op_type == "DynamicQuantizeMatMul" and len(node.inputs) > 4 and node.inputs[4] is not None:
            return node.inputs[4], None
        y = self.tail(node)
        c = single_consumer(y)
        if c is None:
            return None, None
        if c.op_type == "Add" and c.domain in ("", "ai.onnx") and len(c.inputs) == 2:
            other = c.inputs[1] if c.inputs[0] is y else c.inputs[0]
            stored = self._stored_const(other)  # the bias itself, or the int32 tensor a QDQ bias dequantizes
            if stored is None:
                stored = self._stored_const(self._fake_quant_source(other))
            t = const_tensor(stored) if stored is not None else None
            if t is not None and t.size == out_f and max(t.shape, default=1) == out_f:
                return stored, c
        if c.op_type in ("BiasGelu", "FastGelu") and len(c.inputs) > 1 and c.inputs[0] is y:
            b = c.inputs[1]
            if b is not None and const_tensor(b) is not None:
                return b, c
        if c.op_type in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization") and len(c.inputs) > 4:
            b = c.inputs[4]
            if b is not None and const_tensor(b) is not None:
                return b, c
        return None, None

    def linear_output(self, lin: Linear) -> ir.Value:
        """The value after the projection and its bias Add (fused bias consumers excluded)."""
        if lin.bias_node is not None and lin.bias_node.op_type == "Add":
            return lin.bias_node.outputs[0]
        return self.tail(lin.node)

    def trace_back(self, v: ir.Value | None) -> tuple[Linear | None, list[ir.Node]]:
        """From an attention operand back to its projection, through head plumbing and scaling."""
        lin, plumbing, _ = self.trace(v)
        return lin, plumbing

    def _head_norm(self, v: ir.Value) -> tuple[ir.Value, list[tuple[ir.Node, int]], int] | None:
        """(the normalized value, its per-feature constants as (node, input index), their width) when ``v`` is a
        LayerNorm over the last axis alone with constant 1-D scale (and bias): a LayerNormalization node, or the
        decomposed ``Sub(x, ReduceMean(x)) / Sqrt(..) * gamma [+ beta]`` (opset 11/14 exports); else None."""
        p = v.producer()
        if p is None:
            return None
        if p.op_type == "LayerNormalization":
            axis = p.attributes["axis"].value if "axis" in p.attributes else -1
            if p.domain not in ("", "ai.onnx") or axis != -1 or len(p.inputs) < 2 or p.inputs[0] is None:
                return None
            params = [(p, i) for i in (1, 2) if len(p.inputs) > i and p.inputs[i] is not None]
        elif p.op_type in ("Add", "Mul") and len(p.inputs) == 2:
            x = self._norm_input(v)
            if x is None or not any(c.op_type == "Sub" for c in consumers(x)) or not self._normalizes(v, x):
                return None  # not the decomposed LayerNorm (NoNorm: no centring Sub)
            params, n = [], v.producer()
            while n is not None and n.op_type in ("Add", "Mul") and len(n.inputs) == 2:
                i = next((j for j in (0, 1) if self._feature_const(n.inputs[j])), None)
                if i is None:
                    break
                params.append((n, i))
                n = n.inputs[1 - i].producer()
            v_in = x
        else:
            return None
        consts = [const_tensor(node.inputs[i]) for node, i in params]  # stored as they are (a pass permutes them)
        if not params or any(c is None or c.size != max(c.shape, default=1) for c in consts):
            return None
        widths = {int(c.size) for c in consts}
        if len(widths) != 1:
            return None
        if p.op_type == "LayerNormalization":
            v_in = p.inputs[0]
        return v_in, params, widths.pop()

    def trace(self, v: ir.Value | None, const_data: bool = False) -> tuple[Linear | None, list[ir.Node], dict | None]:
        """``trace_back`` that also looks through rotary position embeddings and the unbind of a packed
        QKV projection. The third element describes the unbind when there is one: ``{"index": part
        (0 Q, 1 K, 2 V), "node": the Split/Slice/Gather, "axis": the unbound axis counted from the end
        of the view (-3 for [.., 3, heads, head_size]) or None when unknown, "view": the Reshape}``."""
        plumbing: list[ir.Node] = []
        part: dict | None = None
        axis: int | None = None  # the unbound axis, followed back through Transposes to the view
        for _ in range(32):
            if v is None:
                return None, plumbing, part
            p = v.producer()
            if p is None:
                return None, plumbing, part
            if p.op_type in LINEAR_OPS:
                return self.linear(p, const_data), plumbing, part
            if p.op_type == "Add" and (kernel := self._plane_kernel(p)) is not None:
                return self.linear(kernel, const_data), plumbing, part
            if part is None and p.op_type in ("LayerNormalization", "Add", "Mul") and \
                    (norm := self._head_norm(v)) is not None:
                # a norm over the projection's whole output, before its head view (QK norm): looked through, kept
                # on the block (AttentionBlock.head_norms): heads may be reordered, not removed
                self._head_norms.append(norm)
                v = norm[0]
                continue
            if p.op_type == "Add" and len(p.inputs) == 2:
                a, b = p.inputs
                if self.cone.is_const(b) and not self.cone.is_const(a):
                    plumbing.append(p)  # a bias: the projection's own (Linear.bias_node) or one after the view
                    v = a
                elif self.cone.is_const(a) and not self.cone.is_const(b):
                    plumbing.append(p)
                    v = b
                elif const_data and (self._stored_const(a) is None) != (self._stored_const(b) is None):
                    # product of constants + a stored bias (or its Cast: ORT's fp32 copy of an fp16 bias)
                    v = a if self._stored_const(b) is not None else b
                else:
                    x = self._rotary_source(p) if part is None else None
                    if x is None:
                        return None, plumbing, part
                    v = x  # q * cos + rotate_half(q) * sin: per head_size, broadcast over heads
                continue
            if p.op_type == "Mul" and len(p.inputs) == 2:  # MatMulInteger's dequantizing scale
                mmi = next((self._integer_matmul(i) for i in p.inputs if self._integer_matmul(i) is not None), None)
                if mmi is not None and self.tail(mmi) is v:
                    return self.linear(mmi, const_data), plumbing, part
            if p.op_type in _SCALE and len(p.inputs) == 2:
                # a scalar scale: a constant (eager attention) or computed from shapes only (SDPA
                # exports scale Q and K each by Sqrt(1/sqrt(head_size)) taken from Shape at run time)
                a, b = p.inputs
                if self._is_scale(b):
                    v = a
                elif self._is_scale(a) and p.op_type == "Mul":
                    v = b
                else:
                    return None, plumbing, part
                plumbing.append(p)
                continue
            if p.op_type == "RotaryEmbedding" and p.domain in ("", "ai.onnx") and p.inputs and v is p.outputs[0]:
                # ONNX's rotary op (opset 23; torch's exporter writes rotary embeddings as it): per position and
                # head_size, alike for every head; its num_heads attribute (given for 3-D inputs, and by torch for
                # 4-D ones too) is a head site
                self._rotary_ops.append(p)
                v = p.inputs[0]
                continue
            if p.op_type in ("Gather", "Squeeze") and (x := self._stacked(p)) is not None:
                plumbing.append(p)  # torch.stack taken apart again: the stacked tensor itself (NomicBERT)
                v = x
                continue
            if p.op_type == "Concat" and part is None and (x := self._partial_rotary(p)) is not None:
                v = x  # rotary embeddings on the first features of each head, the rest passed on
                continue
            if p.op_type in _UNBIND and part is None:
                u = self._unbind(p, v)
                if u is None:
                    return None, plumbing, part
                part = {"index": u[0], "node": p, "axis": None, "view": None, "unit": u[2], "raw_axis": u[1]}
                axis = u[1]
                plumbing.append(p)
                v = p.inputs[0]
                continue
            if p.op_type in _PLUMBING or (p.op_type == "Concat" and len(p.inputs) == 1):
                # a Concat of one tensor: an empty key/value cache concatenated in front (XLM's attention)
                if part is not None and part["view"] is None and axis is not None:
                    if p.op_type == "Transpose" and "perm" in p.attributes:
                        perm = list(p.attributes["perm"].value)
                        a = axis + len(perm) if axis < 0 else axis
                        axis = perm[a] if 0 <= a < len(perm) else None
                    elif p.op_type == "Reshape":
                        rank = self._reshape_rank(p)
                        if axis >= 0:
                            axis = axis - rank if rank is not None else None
                        part["axis"], part["view"] = axis, p
                    elif p.op_type in ("Squeeze", "Unsqueeze"):
                        axis = None  # the rank changes before the view: not a packed QKV unbind
                plumbing.append(p)
                v = p.inputs[0]
                continue
            return None, plumbing, part
        return None, plumbing, part

    # ------------------------------------------------------------------ packed QKV, rotary embeddings
    @staticmethod
    def _one_axis(node: ir.Node) -> int | None:
        """The one axis of an ``Unsqueeze`` or ``Squeeze`` (its constant ``axes`` input, or the attribute before
        opset 13)."""
        axes = small_const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else (
            np.asarray(list(node.attributes["axes"].value)) if "axes" in node.attributes else None)
        return int(axes.reshape(-1)[0]) if axes is not None and axes.size == 1 else None

    def _stacked(self, take: ir.Node) -> ir.Value | None:
        """t_i for ``Gather(stack([t_0, .., t_n-1], axis), i, axis)``: ``torch.stack`` as exporters write it, a
        Concat of Unsqueezes on one new axis, indexed back on that axis (NomicBERT stacks its rotated Q and K with V
        into [B, S, 3, heads, head_size] and takes them apart again), or ``Squeeze(Split(stack, axis)[i], axis)``
        into parts of one (ORT's optimizer turns such Gathers into one Split); else None. Axes are compared in the
        stacked tensor's rank (each part's rank + 1, where a part's rank is known; else only equal axes match)."""
        if not take.inputs or take.inputs[0] is None:
            return None
        if take.op_type == "Gather":
            ind = small_const(take.inputs[1]) if len(take.inputs) == 2 else None
            if ind is None or ind.ndim != 0:
                return None
            i, stack = int(ind), take.inputs[0]
            taken = {int(take.attributes["axis"].value) if "axis" in take.attributes else 0}
        else:  # Squeeze of one Split output
            split = take.inputs[0].producer()
            if split is None or split.op_type != "Split" or not split.inputs or split.inputs[0] is None:
                return None
            outs = list(split.outputs)
            i = next((k for k, o in enumerate(outs) if o is take.inputs[0]), None)
            sizes = small_const(split.inputs[1]) if len(split.inputs) > 1 and split.inputs[1] is not None else (
                np.asarray(list(split.attributes["split"].value)) if "split" in split.attributes else None)
            if i is None or (sizes is not None and set(sizes.reshape(-1).tolist()) != {1}):
                return None
            squeezed = self._one_axis(take)
            stack = split.inputs[0]
            taken = {int(split.attributes["axis"].value) if "axis" in split.attributes else 0, squeezed}
        cat = stack.producer()
        if cat is None or cat.op_type != "Concat" or not cat.inputs:
            return None
        n = len(cat.inputs)
        if not -n <= i < n or (take.op_type == "Squeeze" and len(list(take.inputs[0].producer().outputs)) != n):
            return None
        parts = [x.producer() if x is not None else None for x in cat.inputs]
        if any(u is None or u.op_type != "Unsqueeze" or u.inputs[0] is None for u in parts):
            return None
        ranks = {len(u.inputs[0].shape) for u in parts if u.inputs[0].shape is not None}
        rank = ranks.pop() + 1 if len(ranks) == 1 else None

        def norm(a: int | None) -> int | None:
            return a + rank if a is not None and a < 0 and rank is not None else a

        axes = {norm(self._one_axis(u)) for u in parts} | {norm(a) for a in taken}
        axes.add(norm(int(cat.attributes["axis"].value) if "axis" in cat.attributes else None))
        if len(axes) != 1 or None in axes:
            return None
        return parts[i].inputs[0]

    def _partial_rotary(self, cat: ir.Node) -> ir.Value | None:
        """y for ``Concat([rotary(y[..., :r]), y[..., r:]], -1)``: rotary position embeddings on the first r
        features of each head and the rest passed on (NomicBERT's and GPT-NeoX's ``rotary_emb_fraction``; with r the
        head size the second part is empty), r the same constant or the same run-time value in both Slices, else
        None."""
        if len(cat.inputs) != 2 or any(x is None for x in cat.inputs):
            return None
        # (through float Casts: ONNX Runtime's level 99 of an fp16 model rotates in fp32 between Casts)
        add, tail = _producer_past_casts(cat.inputs[0]), _producer_past_casts(cat.inputs[1])
        if add is None or add.op_type != "Add" or len(add.inputs) != 2 or tail is None or tail.op_type != "Slice":
            return None
        lo = self._rotary_source(add)
        head = _producer_past_casts(lo)
        if head is None or head.op_type != "Slice" or head.inputs[0] is None or \
                not _same_data(head.inputs[0], tail.inputs[0]):
            return None
        y = head.inputs[0]
        rank = self._rank(y)
        last = (-1,) if rank is None else (-1, rank - 1)  # the head_size axis

        def bounds(sl: ir.Node):
            if len(sl.inputs) < 4 or (len(sl.inputs) > 4 and sl.inputs[4] is not None
                                      and not _is_one(small_const(sl.inputs[4]))):
                return None
            ax = small_const(sl.inputs[3])
            if ax is None or ax.size != 1 or int(ax.reshape(-1)[0]) not in last:
                return None
            return sl.inputs[1], sl.inputs[2]

        b_head, b_tail = bounds(head), bounds(tail)
        axis = int(cat.attributes["axis"].value) if "axis" in cat.attributes else 0
        if b_head is None or b_tail is None or axis not in last:
            return None
        start, r = b_head
        r_tail, end = b_tail
        c0, ce = small_const(start), small_const(end)
        if c0 is None or c0.size != 1 or int(c0.reshape(-1)[0]) != 0 or ce is None or ce.size != 1 \
                or int(ce.reshape(-1)[0]) < 2 ** 31 - 1:
            return None
        cr, crt = small_const(r), small_const(r_tail)
        if cr is not None or crt is not None:
            same = (cr is not None and crt is not None and cr.size == crt.size == 1
                    and int(cr.reshape(-1)[0]) == int(crt.reshape(-1)[0]))
        else:  # one length read at run time (the cos table's), each Slice given its own Unsqueeze of it
            same = _unwrapped(r) is _unwrapped(r_tail)
        return y if same else None

    def _positional(self, v: ir.Value | None) -> bool:
        """True for a value that does not depend on any graph input's data (rotary cos/sin: computed
        from constants and sequence positions taken from shapes)."""
        return v is not None and not self._reads_input_data(v)

    def _non_positional(self, mul: ir.Node) -> ir.Value | None:
        """The data operand of ``x * cos`` (the other operand positional), or None."""
        if len(mul.inputs) != 2:
            return None
        a, b = mul.inputs
        pa, pb = self._positional(a), self._positional(b)
        if pa and not pb:
            return b
        if pb and not pa:
            return a
        return None

    @staticmethod
    def _rotate_half_source(r: ir.Value | None) -> ir.Value | None:
        """x for ``rotate_half(x) = Concat(-x[..., d/2:], x[..., :d/2])`` (two Slices, or one Split in two as
        ORT's optimizer fuses them on a static-shape export, then Neg and Concat), else None."""
        p = _producer_past_casts(r)  # (float Casts around each op: ORT's level 99 of an fp16 model)
        if p is not None and p.op_type == "Reshape":
            return _Finder._rotate_pairs_source(p)
        if p is None or p.op_type != "Concat" or len(p.inputs) != 2:
            return None
        neg = _producer_past_casts(p.inputs[0])
        if neg is None or neg.op_type != "Neg":
            return None
        second, first = _precision_root(neg.inputs[0]), _precision_root(p.inputs[1])
        s2 = second.producer() if second is not None else None
        s1 = first.producer() if first is not None else None
        if s1 is None or s1 is not s2 or s1.op_type != "Split":  # two Slices of one x
            if s1 is None or s2 is None or s1.op_type != "Slice" or s2.op_type != "Slice":
                return None
            if s1.inputs[0] is None or not _same_data(s1.inputs[0], s2.inputs[0]):
                return None
            return s1.inputs[0]
        # one Split of x in two equal halves along its last axis (where x's rank is known: ORT's optimizer
        # leaves no shapes): the first half Concat's second input, the second half negated
        outs = list(s1.outputs)
        if len(outs) != 2 or outs[0] is not first or outs[1] is not second:
            return None
        axis = int(s1.attributes["axis"].value) if "axis" in s1.attributes else 0
        x = s1.inputs[0]
        rank = len(x.shape) if x is not None and x.shape is not None else None
        if axis != -1 and rank is not None and axis != rank - 1:
            return None
        sizes = small_const(s1.inputs[1]) if len(s1.inputs) > 1 and s1.inputs[1] is not None else None
        halves = (sizes.reshape(-1).tolist() if sizes is not None
                  else list(s1.attributes["split"].value) if "split" in s1.attributes else None)
        if halves is not None and (len(halves) != 2 or int(halves[0]) != int(halves[1])):
            return None
        return x

    @staticmethod
    def _rotate_pairs_source(reshape: ir.Node) -> ir.Value | None:
        """x for the interleaved rotation of RoFormer (GPT-J style), ``stack([-x[..., 1::2], x[..., ::2]],
        -1).reshape_as(x)``: Reshape(Concat(Unsqueeze(Neg(Slice(x, 1, step 2))), Unsqueeze(Slice(x, 0, step
        2))) on a new last axis) back to x's shape, else None. The target is checked by
        :meth:`rotary_view_sites` (read from x at run time, or a head site)."""
        cat = _producer_past_casts(reshape.inputs[0])
        if cat is None or cat.op_type != "Concat" or len(cat.inputs) != 2 or len(reshape.inputs) < 2:
            return None

        def strided(v: ir.Value | None, start: int, neg: bool) -> ir.Value | None:
            # Unsqueeze(Neg?(Slice(x, start, end, last axis, step 2)), last axis): x
            u = v.producer() if v is not None else None
            if u is None or u.op_type != "Unsqueeze" or not u.inputs or u.inputs[0] is None:
                return None
            sl = _producer_past_casts(u.inputs[0])
            if neg:
                if sl is None or sl.op_type != "Neg":
                    return None
                sl = _producer_past_casts(sl.inputs[0])
            if sl is None or sl.op_type != "Slice" or len(sl.inputs) < 5:
                return None
            st, axes, step = small_const(sl.inputs[1]), small_const(sl.inputs[3]), small_const(sl.inputs[4])
            if st is None or axes is None or step is None or st.size != 1 or axes.size != 1 or step.size != 1:
                return None
            if int(st.reshape(-1)[0]) != start or int(step.reshape(-1)[0]) != 2:
                return None
            src = sl.inputs[0]
            rank = len(src.shape) if src is not None and src.shape is not None else 4  # else [B, H, S, d]
            if int(axes.reshape(-1)[0]) not in (-1, rank - 1):  # pairs along the head_size axis
                return None
            return src

        x = strided(cat.inputs[0], 1, True)
        if x is None or not _same_data(strided(cat.inputs[1], 0, False), x):
            return None
        return x

    @staticmethod
    def _shape_of(target: ir.Value | None, x: ir.Value) -> bool:
        """True when ``target`` is x's shape read at run time: ``Shape(x)``, or ``Gather(Shape(y), perm)`` for
        ``x = Transpose(y, perm)`` (ORT's transpose optimizer moves the Shape before the Transpose)."""
        p = target.producer() if target is not None else None
        if p is not None and p.op_type == "Gather" and len(p.inputs) == 2:
            perm = small_const(p.inputs[1])
            xp = x.producer()
            sh = p.inputs[0].producer() if p.inputs[0] is not None else None
            if (perm is None or xp is None or xp.op_type != "Transpose" or "perm" not in xp.attributes
                    or sh is None or perm.reshape(-1).tolist() != list(xp.attributes["perm"].value)):
                return False
            p, x = sh, xp.inputs[0]
        return (p is not None and p.op_type == "Shape" and p.inputs[0] is x and not set(p.attributes) - {"start"}
                and int(p.attributes["start"].value if "start" in p.attributes else 0) == 0)

    def rotary_view_sites(self, views: list[ir.Node], heads: int) -> list[HeadSite]:
        """Head sites of the interleaved rotations' views back to Q's or K's [batch, heads, seq, head_size]
        layout: none where the target is the operand's own shape, read at run time; else position 1 of a
        four-element target (a constant on a static export, the dynamo exporter's [batch, heads, seq,
        head_size] of shape pieces and constants), which must hold the head count."""
        sites: list[HeadSite] = []
        for r in views:
            x = self._rotate_pairs_source(r)
            if x is not None and self._shape_of(r.inputs[1], x):
                continue
            lay = x.producer() if x is not None else None
            perm = list(lay.attributes["perm"].value) if lay is not None and lay.op_type == "Transpose" and \
                "perm" in lay.attributes else None
            site = self._unflatten_front_site(r, heads) if perm == [0, 2, 1, 3] else None
            if site is None:
                raise StructureError(f"node '{_name(r)}' (Reshape): the rotary view of Q or K does not give its "
                                     f"head count ({heads}) at a place this finder can rewrite")
            sites.append(site)
        return sites

    def _rotary_source(self, add: ir.Node) -> ir.Value | None:
        """x for ``x * cos + rotate_half(x) * sin`` (rotary position embedding), else None; also where ORT's
        transpose optimizer wrote the cos term ``Transpose(y * cos')`` for ``x = Transpose(y)``."""
        a, b = add.inputs
        for m1v, m2v in ((a, b), (b, a)):
            m1, m2 = _producer_past_casts(m1v), _producer_past_casts(m2v)
            if m1 is None or m2 is None or m2.op_type != "Mul":
                continue
            outer = None  # ORT's transpose optimizer: the cos term Transpose(y * cos') of x = Transpose(y)
            if m1.op_type == "Transpose" and "perm" in m1.attributes and m1.inputs[0] is not None:
                outer, m1 = m1, _producer_past_casts(m1.inputs[0])
                if m1 is None:
                    continue
            if m1.op_type != "Mul":
                continue
            x, r = self._non_positional(m1), self._non_positional(m2)
            if x is None or r is None:
                continue
            if outer is not None:  # x must be the rotated operand: Transpose(y) with the cos term's perm
                rx = self._rotate_half_source(r)
                rxp = _producer_past_casts(rx)
                if (rxp is None or rxp.op_type != "Transpose" or not _same_data(rxp.inputs[0], x)
                        or "perm" not in rxp.attributes
                        or list(rxp.attributes["perm"].value) != list(outer.attributes["perm"].value)):
                    continue
                x = rx
            if _same_data(self._rotate_half_source(r), x) or self._rotated_under(r, x):
                rp = _producer_past_casts(r)
                if rp is not None and rp.op_type == "Reshape":  # the interleaved rotation's view back to x
                    self._rotary_views.append(rp)
                return x
        return None

    def _rotated_under(self, r: ir.Value, x: ir.Value) -> bool:
        """True for ``r = Transpose(rotate_half(y))`` and ``x = Transpose(y)`` with one perm that keeps the last
        axis last: ORT's transpose optimizer moves the Transpose of Q or K after the rotate_half of it."""
        rp, xp = _producer_past_casts(r), _producer_past_casts(x)
        if rp is None or xp is None or rp.op_type != "Transpose" or xp.op_type != "Transpose":
            return False
        perm_r = list(rp.attributes["perm"].value) if "perm" in rp.attributes else None
        perm_x = list(xp.attributes["perm"].value) if "perm" in xp.attributes else None
        if perm_r is None or perm_r != perm_x or perm_r[-1] != len(perm_r) - 1:
            return False
        y = xp.inputs[0]
        return y is not None and _same_data(self._rotate_half_source(rp.inputs[0]), y)

    def _unbind(self, p: ir.Node, v: ir.Value) -> tuple[int, int, bool | None] | None:
        """(part, axis, unit) when ``v`` is one of three equal parts of its input along one axis: the unbind
        of a packed [.., 3, heads, head_size] QKV view (``unit`` True: a Split into sizes 1, a Slice [i:i+1] or
        a Gather of index i) or the chunk of a [.., heads, 3 * head_size] one into thirds (``unit`` False: a
        Split into three equal sizes, or a Slice [i*c:(i+1)*c] with c a constant or the axis' length / 3
        computed at run time); None: a Split into 3 with no sizes, either."""
        attrs = p.attributes
        axis = int(attrs["axis"].value) if "axis" in attrs else 0
        if p.op_type == "Split":
            outs = list(p.outputs)
            idx = next((i for i, o in enumerate(outs) if o is v), None)
            if idx is None or len(outs) != 3:
                return None
            sizes = small_const(p.inputs[1]) if len(p.inputs) > 1 and p.inputs[1] is not None else None
            if sizes is None and "split" in attrs:
                sizes = list(attrs["split"].value)
            if sizes is None:
                return idx, axis, None
            vals = [int(x) for x in (sizes.reshape(-1).tolist() if hasattr(sizes, "reshape") else list(sizes))]
            if len(vals) != 3 or len(set(vals)) != 1:
                return None
            return idx, axis, vals[0] == 1
        if p.op_type == "Gather":
            ind = small_const(p.inputs[1]) if len(p.inputs) > 1 else None
            if ind is None or ind.ndim != 0 or not 0 <= int(ind) < 3:
                return None
            return int(ind), axis, True
        if p.op_type == "Slice":
            if len(p.inputs) < 4:
                return None
            axes = small_const(p.inputs[3])
            steps = small_const(p.inputs[4]) if len(p.inputs) > 4 and p.inputs[4] is not None else None
            if axes is None or axes.size != 1:
                return None
            if steps is not None and (steps.size != 1 or int(steps.reshape(-1)[0]) != 1):
                return None
            ax = int(axes.reshape(-1)[0])
            starts, ends = small_const(p.inputs[1]), small_const(p.inputs[2])
            if starts is not None and ends is not None:
                if starts.size != 1 or ends.size != 1:
                    return None
                s0, e0 = int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0])
                if 0 <= s0 < 3 and (e0 == s0 + 1 or (s0 == 2 and e0 >= 3)):
                    return s0, ax, True
                if s0 > 2 and s0 % 2 == 0 and e0 >= 2 ** 31 - 1:
                    return 2, ax, False  # [2c:], the last third to the end (its c checked with the other parts')
                c = e0 - s0
                if c > 1 and s0 % c == 0 and s0 // c < 3:
                    return s0 // c, ax, False  # a constant third (the axis' length checked by the caller)
                return None
            lo, hi = self._third_bound(p.inputs[1]), self._third_bound(p.inputs[2])
            if lo is None or hi is None or hi[1] != lo[1] + 1 or not 0 <= lo[1] < 3:
                return None
            if lo[0] is not None and lo[0] is not hi[0]:
                return None
            return lo[1], ax, False
        return None

    def _third_bound(self, b: ir.Value | None) -> tuple[ir.Value | None, int] | None:
        """A Slice bound of ``chunk(3)`` computed at run time: (the one-third length, k) for ``k * third``
        (k = 0: a constant 0, base None; k = 1: the third itself) where the third is a length read from
        shapes."""
        c = small_const(b)
        if c is not None:
            return (None, 0) if c.size == 1 and int(c.reshape(-1)[0]) == 0 else None
        p = b.producer() if b is not None else None
        if p is not None and p.op_type == "Mul" and len(p.inputs) == 2:
            for x, k in ((p.inputs[0], p.inputs[1]), (p.inputs[1], p.inputs[0])):
                kc = small_const(k)
                if kc is not None and kc.size == 1 and x is not None and shape_derived(x, self._shape_memo):
                    return x, int(kc.reshape(-1)[0])
        if b is not None and shape_derived(b, self._shape_memo):
            return b, 1  # 1 * third, the Mul removed by ORT's optimizer
        return None

    def _reshape_rank(self, reshape: ir.Node) -> int | None:
        """Rank of a Reshape's output: the length of its target shape (constant, or a Concat of pieces)."""
        out = reshape.outputs[0].shape
        if out is not None:
            return len(out)
        s = reshape.inputs[1] if len(reshape.inputs) > 1 else None
        arr = small_const(s)
        if arr is not None:
            return int(arr.size)
        p = s.producer() if s is not None else None
        if p is None or p.op_type != "Concat":
            return None
        total = 0
        for piece in p.inputs:
            n = self._piece_len(piece)
            if n is None:
                return None
            total += n
        return total

    @staticmethod
    def _piece_len(piece: ir.Value | None) -> int | None:
        if piece is None:
            return None
        c = small_const(piece)
        if c is not None:
            return int(c.size)
        if piece.shape is not None and len(piece.shape) == 1 and isinstance(piece.shape[0], int):
            return int(piece.shape[0])
        p = piece.producer()
        if p is None:
            return None
        if p.op_type == "Shape" and "end" in p.attributes:
            start = int(p.attributes["start"].value) if "start" in p.attributes else 0
            end = int(p.attributes["end"].value)
            if 0 <= start <= end:
                return end - start
        if p.op_type == "Unsqueeze" and p.inputs and p.inputs[0] is not None:
            src = p.inputs[0]
            if src.shape is not None and len(src.shape) == 0:
                return 1
            axes = small_const(p.inputs[1]) if len(p.inputs) > 1 else None
            if axes is None and "axes" in p.attributes:
                axes = np.asarray(p.attributes["axes"].value)
            if axes is not None and axes.size == 1:
                return 1  # a piece of a 1-D shape: one axis added to a scalar
            g = src.producer()
            if g is not None and g.op_type == "Gather" and len(g.inputs) > 1:
                ind = small_const(g.inputs[1])
                if ind is not None and ind.ndim == 0:
                    return 1
        if p.op_type == "Reshape" and len(p.inputs) > 1:  # one number viewed as [1] (dynamo: batch x heads)
            target = small_const(p.inputs[1])
            if target is not None and target.size == 1 and (int(target.reshape(-1)[0]) == 1 or (
                    int(target.reshape(-1)[0]) == -1 and _one_element(p.inputs[0]))):
                return 1
        return None

    def packed_head_counts(self, qkv: Linear, view: ir.Node, at: ir.Node, interleaved: bool = False
                           ) -> tuple[int, int]:
        """(heads, head_size) from the [.., 3, heads, head_size] view of a packed QKV projection, or from its
        [.., heads, 3 * head_size] view (``interleaved``)."""
        pieces = self.shape_pieces(view)
        a3 = qkv.out_features
        if interleaved:
            if len(pieces) >= 2 and a3 % 3 == 0:
                h, w = pieces[-2][0], pieces[-1][0]
                if h is not None and h > 0 and (a3 // 3) % h == 0 and w in (-1, a3 // h):
                    return h, a3 // (3 * h)
            raise StructureError(f"node '{_name(at)}' ({at.op_type}): cannot read the head count from the packed "
                                 f"QKV view '{_name(view)}' (no constant [.., heads, 3 * head_size] shape)")
        if len(pieces) >= 3 and pieces[-3][0] == 3 and a3 % 3 == 0:
            h, d, a = pieces[-2][0], pieces[-1][0], a3 // 3
            if h is not None and h > 0 and d is not None and d > 0 and h * d == a:
                return h, d
            if h is not None and h > 0 and d in (-1, 0, None) and a % h == 0:
                return h, a // h
            if d is not None and d > 0 and h in (-1, None) and a % d == 0:
                return a // d, d
        raise StructureError(f"node '{_name(at)}' ({at.op_type}): cannot read the head count from the packed QKV "
                             f"view '{_name(view)}' (no constant [.., 3, heads, head_size] shape)")

    def _split_before_views(self, parts, qkv: Linear, plumbing) -> bool:
        """True when a packed QKV projection's output is cut into its three parts along its last axis first and
        each part viewed [.., heads, head_size] on its own (GTE's ``qkv_proj(x).split(all_head_size, -1)``): a
        Split into three (equal sizes, or ``num_outputs``) or three Slices, on the projection's output (or its bias
        Add), no view before them. Part i then owns the features [i A, (i + 1) A), as with one [.., 3, heads,
        head_size] view."""
        outs = {id(self.tail(qkv.node))}
        if qkv.bias_node is not None:
            outs.add(id(qkv.bias_node.outputs[0]))
        for pt, pl in zip(parts, plumbing):
            node = pt["node"]
            if pt["view"] is not None or pt["unit"] is True or node.op_type not in ("Split", "Slice"):
                return False
            src = node.inputs[0]
            if id(src) not in outs and id(_precision_root(src)) not in outs:  # (or a float Cast of it: fp16 at O99)
                return False
            # the part's own view [.., heads, head_size] of it: one axis more than the projection's output
            views = [r for r in pl if r.op_type == "Reshape" and r.inputs[0] is not None
                     and r.inputs[0].producer() is node]
            rank = self._rank(src)
            if rank is None and len(views) == 1:
                vr = self._reshape_rank(views[0])
                rank = vr - 1 if vr is not None else None
            raw = pt.get("raw_axis")
            if len(views) != 1 or (raw != -1 and (rank is None or raw != rank - 1)):
                return False
        return True

    @staticmethod
    def _third_sites(parts, all_head: int) -> list[HeadSite]:
        """Head sites of a split-first packed QKV (:meth:`_split_before_views`): a Split's constant sizes [A, A, A]
        (each element, as ``all_head_size``; an opset-11 ``split`` attribute element by element), a Slice's
        constant bounds (start i A and end (i + 1) A: the count times i, times i + 1). Sizes or bounds read from
        shapes at run time follow the kept width and need none."""
        sites: list[HeadSite] = []
        done: set[int] = set()
        for pt in parts:
            node = pt["node"]
            if id(node) in done:
                continue
            done.add(id(node))
            if node.op_type == "Split":
                sizes = node.inputs[1] if len(node.inputs) > 1 else None
                t = const_tensor(sizes) if sizes is not None else None
                if t is not None:
                    vals = np.asarray(t.numpy()).reshape(-1)
                    if vals.size != 3 or any(int(x) != all_head for x in vals):
                        raise StructureError(f"node '{_name(node)}' (Split): sizes {vals.tolist()} are not three "
                                             f"thirds of {3 * all_head}")
                    sites += [HeadSite(node=node, kind=const_kind(sizes), value=sizes, attribute=None, index=i,
                                       meaning="all_head_size") for i in range(3)]
                elif "split" in node.attributes:
                    sites += [HeadSite(node=node, kind="attribute", value=None, attribute="split", index=i,
                                       meaning="all_head_size") for i in range(3)]
                continue
            i = int(pt["index"])
            for k, factor in ((1, i), (2, i + 1)):  # Slice starts, ends
                bound = node.inputs[k]
                c = small_const(bound)
                if c is None:
                    continue  # computed from the shape: follows the kept width
                if k == 2 and factor == 3 and c.size == 1 and int(c.reshape(-1)[0]) >= 2 ** 31 - 1:
                    continue  # the last third's open end
                if c.size != 1 or int(c.reshape(-1)[0]) != factor * all_head:
                    raise StructureError(f"node '{_name(node)}' (Slice): bound {c.reshape(-1).tolist()} is not "
                                         f"{factor} x {all_head}")
                if factor:
                    sites.append(HeadSite(node=node, kind=const_kind(bound), value=bound, attribute=None, index=0,
                                          meaning="all_head_size", factor=factor))
        return sites

    @staticmethod
    def _check_thirds(parts, head_size: int) -> None:
        """A chunk of a [.., heads, 3 * head_size] view given by constant Slice bounds must cut head_size wide
        thirds (a constant [i*c:(i+1)*c] is read as a third before the view's width is known)."""
        for pt in parts:
            node = pt["node"]
            if node.op_type != "Slice":
                continue
            starts, ends = small_const(node.inputs[1]), small_const(node.inputs[2])
            if starts is not None and ends is not None:
                s0, e0 = int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0])
                if e0 - s0 != head_size or s0 != pt["index"] * head_size:
                    raise StructureError(f"node '{_name(node)}' (Slice): [{s0}:{e0}] is not a third of the "
                                         f"[.., heads, 3 x {head_size}] QKV view")

    def head_constants(self, plumbing: list[ir.Node], own: tuple[Linear | None, ...], heads: int,
                       head_size: int) -> list[tuple[ir.Node, int, int]]:
        """Constants added to Q, K or V on their way to the scores or the context other than a projection's own
        bias (DeBERTa v1's ``q_bias``/``v_bias``, viewed [1, heads, 1, head_size] after the head view): (the Add,
        the constant's input index, its head axis counted from the end). One the same for every head (each axis
        but the last 1) needs no entry; one whose head axis cannot be told is refused."""
        biases = {id(lin.bias_node) for lin in own if lin is not None and lin.bias_node is not None}
        out: list[tuple[ir.Node, int, int]] = []
        for add in dict.fromkeys(n for n in plumbing if n.op_type == "Add"):
            if id(add) in biases:
                continue
            i = 1 if self.cone.is_const(add.inputs[1]) else 0
            t = const_tensor(add.inputs[i])
            shape = tuple(int(x) for x in t.shape) if t is not None else None
            if shape is not None and all(x == 1 for x in shape[:-1]):
                continue  # the same for every head
            axes = [a for a in range(len(shape) - 1) if shape[a] == heads] if shape is not None else []
            if shape is None or len(axes) != 1 or shape[-1] not in (1, head_size):
                raise StructureError(f"node '{_name(add)}' (Add): a constant {list(shape) if shape else ''} added to "
                                     f"the attention's Q, K or V after its head view, with no single axis of "
                                     f"{heads} heads")
            out.append((add, i, axes[0] - len(shape)))
        return out

    def _is_scale(self, v: ir.Value | None) -> bool:
        c = small_const(v)
        if c is not None:
            return c.size == 1
        return v is not None and shape_derived(v, self._shape_memo)

    @staticmethod
    def _integer_matmul(v: ir.Value | None) -> ir.Node | None:
        p = v.producer() if v is not None else None
        if p is not None and p.op_type == "Cast" and p.inputs:
            p = p.inputs[0].producer() if p.inputs[0] is not None else None
        return p if p is not None and p.op_type == "MatMulInteger" else None

    # ------------------------------------------------------------------ shapes and head sites
    def shape_pieces(self, reshape: ir.Node) -> list[tuple[int | None, tuple | None]]:
        """Elements of a Reshape's target shape, aligned at the END (index -1 is the last dim).

        Each entry is (value, (site node, tensor value, element index)); a Concat contributes its
        trailing constant pieces only (a dynamic piece of unknown length stops the alignment).
        """
        s = reshape.inputs[1] if len(reshape.inputs) > 1 else None
        arr = small_const(s)
        if arr is not None:
            flat = arr.reshape(-1)
            return [(int(x), (reshape, s, i)) for i, x in enumerate(flat)]
        p = s.producer() if s is not None else None
        if p is None or p.op_type != "Concat":
            return []
        out: list[tuple[int | None, tuple | None]] = []
        for piece in reversed(p.inputs):
            a = small_const(piece)
            if a is None:
                break  # unknown-length dynamic piece: everything before it is unaligned
            flat = a.reshape(-1)
            out = [(int(x), (p, piece, i)) for i, x in enumerate(flat)] + out
        return out

    def head_counts(self, q: Linear, reshapes: list[ir.Node], at: ir.Node) -> tuple[int, int]:
        out_f = q.out_features
        for r in reshapes:
            if r.op_type != "Reshape":
                continue
            pieces = self.shape_pieces(r)
            if len(pieces) >= 2:
                h, d = pieces[-2][0], pieces[-1][0]
                if h is not None and h > 0 and d is not None and d > 0 and h * d == out_f:
                    return h, d
                if h is not None and h > 0 and (d in (-1, 0, None)) and out_f % h == 0:
                    return h, out_f // h
                if d is not None and d > 0 and (h in (-1, None)) and out_f % d == 0:
                    return out_f // d, d
            shp = r.outputs[0].shape
            if shp is not None and len(shp) == 4 and isinstance(shp[2], int) and isinstance(shp[3], int):
                if shp[2] * shp[3] == out_f:
                    return int(shp[2]), int(shp[3])
        hint = self.meta.get("deploytool.num_heads") or self.meta.get("deploytool.heads")
        if hint and hint.isdigit() and out_f % int(hint) == 0:
            return int(hint), out_f // int(hint)
        raise StructureError(f"node '{_name(at)}' ({at.op_type}): cannot read the head count from the "
                             f"Q reshape (no constant [.., heads, head_size] shape)")

    def head_sites(self, split_reshapes: list[ir.Node], merge_reshapes: list[ir.Node],
                   num_heads: int, all_head: int) -> list[HeadSite]:
        sites: list[HeadSite] = []
        seen: set[tuple[int, int, int]] = set()

        def add(entry, meaning):
            node, value, idx = entry
            key = (id(node), id(value), idx)
            if key in seen:
                return
            seen.add(key)
            sites.append(HeadSite(node=node, kind=const_kind(value), value=value, attribute=None,
                                  index=idx, meaning=meaning))

        for r in split_reshapes:
            pieces = self.shape_pieces(r)
            # the unflatten first: its [batch, heads, head_size, seq] also has the head count at -2 when
            # head_size == heads (a pruned layer: [3, 4, 4, 8]), where the split's [batch, seq, heads,
            # head_size] has it; its input is a 3-D Transpose or Reshape, the split's a projection
            if self._unflattens_heads(r, pieces, num_heads):
                add(pieces[-3][1], "num_heads")
            elif len(pieces) >= 2 and pieces[-2][0] == num_heads and pieces[-2][1] is not None:
                add(pieces[-2][1], "num_heads")
        for r in merge_reshapes:
            pieces = self.shape_pieces(r)
            if pieces and pieces[-1][0] == all_head and pieces[-1][1] is not None:
                add(pieces[-1][1], "all_head_size")
            elif self._unflattens_heads(r, pieces, num_heads):
                add(pieces[-3][1], "num_heads")
        return sites

    def _views_infer_heads(self, split: list[ir.Node], merge: list[ir.Node], head_size: int, packed: bool) -> bool:
        """True when the head count is inferred at run time in every view of the block: each split of Q, K
        and V (three views, or one of a packed QKV) is to [.., -1, head_size] (``[.., 3, -1, head_size]``) and
        each merge of the context (at least one) to [.., -1], every other element of their targets being a
        batch or sequence length read from a shape or kept (0) from the input. Then no constant holds the
        head count or the width heads x head_size, and keeping fewer heads needs no rewrite."""
        if len(split) != (1 if packed else 3) or not merge:
            return False
        dims = {tuple(i.shape) for i in self.graph.inputs if i.shape is not None and len(i.shape) == 2}
        only = next(iter(dims)) if len(dims) == 1 else None
        static_bs = list(only) if only is not None and all(isinstance(d, int) for d in only) else None

        def known_rest(r: ir.Node, n_tail: int) -> bool:
            # the elements before the tail: a whole Concat whose other pieces are shape-derived scalars or 0
            s = r.inputs[1] if len(r.inputs) > 1 else None
            whole = small_const(s)
            if whole is not None:  # a constant target: the elements before the tail kept (0) from the input,
                # or a static export's own [batch, sequence] (the shape of every 2-D input)
                rest = whole.reshape(-1)[:max(0, whole.size - n_tail)].tolist()
                return whole.size > n_tail and (all(x == 0 for x in rest) or rest == static_bs)
            p = s.producer() if s is not None else None
            if p is None or p.op_type != "Concat":
                return False
            tail = 0
            for piece in reversed(p.inputs):
                c = small_const(piece)
                if c is not None and tail < n_tail:
                    tail += int(c.size)
                    continue
                if tail < n_tail:
                    return False
                if c is not None:
                    if not np.all(c.reshape(-1) == 0):
                        return False
                elif piece is None or not shape_derived(piece, self._shape_memo):
                    return False
            return tail == n_tail

        for r in split:
            pieces = [v for v, _ in self.shape_pieces(r)]
            tail = [3, -1, head_size] if packed else [-1, head_size]
            if pieces[-len(tail):] != tail or not known_rest(r, len(tail)):
                return False
        for r in merge:
            pieces = [v for v, _ in self.shape_pieces(r)]
            if pieces[-1:] != [-1] or not known_rest(r, 1):
                return False
        return True

    def _unflattens_heads(self, r: ir.Node, pieces: list, num_heads: int) -> bool:
        """True for a Reshape of a [batch * heads, a, b] operand back to [batch, heads, a, b] with a whole
        constant target (the dynamo exporter's SDPA decomposition flattens K to transpose it and, on a
        static-shape export, unflattens it to a constant [batch, heads, head_size, seq])."""
        if len(pieces) != 4 or pieces[-3][0] != num_heads or pieces[-3][1] is None:
            return False
        src = r.inputs[0]
        if src is not None and src.shape is not None:
            return len(src.shape) == 3
        p = src.producer() if src is not None else None
        if p is not None and p.op_type == "Transpose" and "perm" in p.attributes:
            return len(p.attributes["perm"].value) == 3
        return p is not None and p.op_type == "Reshape" and self._reshape_rank(p) == 3

    # ------------------------------------------------------------------ attention
    def score_matmul(self, softmax: ir.Node) -> ir.Node | None:
        stack = [(softmax_input(softmax), 0)]
        seen: set[int] = set()
        while stack:
            v, depth = stack.pop()
            if v is None or id(v) in seen:
                continue
            seen.add(id(v))
            p = v.producer()
            if p is None:
                continue
            if p.op_type in ("MatMul", "FusedMatMul") and len(p.inputs) >= 2 and not self.cone.is_const(
                    p.inputs[0]) and not self.cone.is_const(p.inputs[1]):
                return p
            # Reshape: DeBERTa views its [batch * heads, S, S] scores as [batch, heads, S, S] before the mask;
            # Flatten at the last axis: onnx's version converter keeps an opset-11 Softmax's 2-D semantics
            # as Reshape(Softmax(Flatten(x, axis)), Shape(x)) where it did not know x's rank
            if (p.op_type in _MASK_OPS or p.op_type == "Reshape" or self._flattens_last_axis(p)) and depth < 6:
                for i in p.inputs[:1] if p.op_type in ("Reshape", "Flatten") else p.inputs:
                    if i is not None and not self.cone.is_const(i):
                        stack.append((i, depth + 1))
        return None

    @staticmethod
    def _flattens_last_axis(node: ir.Node) -> bool:
        """A ``Flatten`` to [rows, last dimension] (its axis the input's last: what a Softmax over the last axis
        reads in the version converter's form of an opset-11 Softmax)."""
        if node.op_type != "Flatten" or not node.inputs:
            return False
        rank = value_rank(node.inputs[0])
        axis = int(node.attributes["axis"].value) if "axis" in node.attributes else 1
        return rank is not None and -rank <= axis < rank and axis % rank == rank - 1

    def context_matmul(self, softmax: ir.Node) -> ir.Node | None:
        frontier = [softmax.outputs[0]]
        for _ in range(4):
            nxt = []
            for v in frontier:
                for c in consumers(v):
                    if c.op_type == "MatMul" and c.inputs[0] is v:
                        return c
                    if c.op_type in ("Cast", "Identity", "Dropout", "Where", "QuantizeLinear", "DequantizeLinear") or (
                            c.op_type == "Reshape" and c.inputs[0] is v):  # DeBERTa: back to [batch * heads, S, S]
                        nxt.append(c.outputs[0])
            frontier = nxt
        return None

    def unfused_attention(self, softmax: ir.Node) -> tuple[AttentionBlock, ir.Value] | None:
        score = self.score_matmul(softmax)
        if score is None:
            logger.debug("Softmax %s is not attention (no activation x activation MatMul before it)", softmax.name)
            return None
        ctx = self.context_matmul(softmax)
        if ctx is None:
            raise StructureError(f"node '{_name(softmax)}' ({softmax.op_type}): attention scores found but no MatMul "
                                 f"applies the probabilities to V")
        return self._attention_from(score.inputs[0], score.inputs[1], ctx.inputs[1], ctx.outputs[0], score, ctx,
                                    softmax)

    def onnx_attention(self, node: ir.Node) -> tuple[AttentionBlock, ir.Value]:
        """ONNX's own ``Attention`` (opset 23; torch's exporter writes SDPA as it from opset 23 on): Q, K and V as
        ``[B, heads, S, head_size]`` views of their projections (4-D: read as an unfused layer's, the node in
        place of the score and context MatMuls) or the projections themselves with ``q_num_heads`` (3-D: like
        ORT's MultiHeadAttention, the head count in the attributes); its mask (input 3) is the padding mask, or
        a per-head score bias when it is built from a table and no input's data."""
        a = node.attributes

        def attr(name: str) -> int:
            return int(a[name].value) if name in a else 0

        if attr("is_causal"):
            raise StructureError(f"node '{_name(node)}' (Attention): causal attention (a decoder) is not supported")
        if any(i is not None for i in node.inputs[4:]):
            raise StructureError(f"node '{_name(node)}' (Attention): past key/value or sequence-length inputs (a "
                                 f"decoder's cache) are not supported")
        if len(node.outputs) > 1 and any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
            raise StructureError(f"node '{_name(node)}' (Attention): its present key/value or score outputs are "
                                 f"read (a decoder's cache) and are not supported")
        if attr("q_num_heads") != attr("kv_num_heads"):
            raise StructureError(f"node '{_name(node)}' (Attention): {attr('q_num_heads')} query heads over "
                                 f"{attr('kv_num_heads')} key/value heads (grouped-query attention) is not supported")
        if len(node.inputs) < 3 or any(i is None for i in node.inputs[:3]):
            raise StructureError(f"node '{_name(node)}' (Attention): Q, K and V are not all given")
        ranks = {self._rank(i) for i in node.inputs[:3]}
        if ranks == {4} or (ranks != {3} and not attr("q_num_heads")):
            block, x = self._attention_from(node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0], node,
                                            node, None)
            block.fused = node
        elif not attr("q_num_heads"):
            raise StructureError(f"node '{_name(node)}' (Attention): 3-D Q/K/V without q_num_heads (ONNX requires it "
                                 f"for 3-D inputs)")
        else:
            block, x = self._attention_3d(node, attr("q_num_heads"))
        mask = node.inputs[3] if len(node.inputs) > 3 else None
        if mask is not None and self._per_head_table(mask):
            block.score_bias = [(node, 3)]
        return block, x

    def _attention_3d(self, node: ir.Node, heads: int) -> tuple[AttentionBlock, ir.Value]:
        """ONNX's ``Attention`` on 3-D ``[B, S, heads * head_size]`` Q, K and V (``q_num_heads``), each a
        projection's output, or the three parts of one projection's ``Split`` (deploytool's int8 form)."""
        q, k, v, qkv, x, all_head = self._projections_3d(node)
        if heads <= 0 or all_head % heads:
            raise StructureError(f"node '{_name(node)}' (Attention): width {all_head} not divisible by "
                                 f"q_num_heads={heads}")
        outs = [lin for lin in (self.linear(c) for c in self.readers(node.outputs[0])) if lin is not None]
        if len(outs) != 1 or outs[0].in_features != all_head:
            raise StructureError(f"node '{_name(node)}' (Attention): output does not feed one output projection "
                                 f"{all_head} wide")
        sites = [HeadSite(node=node, kind="attribute", value=None, attribute=name, index=None, meaning="num_heads")
                 for name in ("q_num_heads", "kv_num_heads")]
        block = AttentionBlock(num_heads=heads, head_size=all_head // heads, q=q, k=k, v=v, o=outs[0],
                               head_sites=sites, fused=node, qkv=qkv)
        return block, x

    def _attention_from(self, q_in: ir.Value, k_in: ir.Value, v_in: ir.Value, ctx_out: ir.Value, score: ir.Node,
                        ctx: ir.Node, softmax: ir.Node | None) -> tuple[AttentionBlock, ir.Value]:
        """The attention block whose Q, K and V operands (views of projections) are ``q_in``, ``k_in`` and
        ``v_in`` and whose context (before its merge back) is ``ctx_out``: read from the score and context
        MatMuls of ``softmax``, or from ONNX's ``Attention`` node (``score`` and ``ctx``; no ``softmax``: no
        relative terms or score bias between them to read)."""
        self._rotary_views = []
        self._rotary_ops = []
        self._head_norms = []
        q, q_pl, q_part = self.trace(q_in)
        k, k_pl, k_part = self.trace(k_in)
        v, v_pl, v_part = self.trace(v_in)
        rotary_views = list(dict.fromkeys(self._rotary_views))
        rotary_ops = list(dict.fromkeys(self._rotary_ops))
        for name, lin, at in (("Q", q, score), ("K", k, score), ("V", v, ctx)):
            if lin is None:
                raise StructureError(f"node '{_name(at)}' ({at.op_type}): cannot trace the {name} operand back to a "
                                     f"projection with constant weights")
        qkv: Linear | None = None
        view: ir.Node | None = None
        interleaved = split_first = False
        if q.node is k.node and k.node is v.node:
            # one packed projection viewed as [.., 3, heads, head_size] and unbound into Q, K, V, or viewed as
            # [.., heads, 3 * head_size] and chunked into thirds on the last axis (DeBERTa v1's in_proj)
            parts = (q_part, k_part, v_part)
            if any(pt is None for pt in parts) or [pt["index"] for pt in parts] != [0, 1, 2]:
                raise StructureError(f"node '{_name(score)}' ({score.op_type}): Q, K and V come from one projection "
                                     f"'{_name(q.node)}' but are not its parts 0, 1, 2 of a [.., 3, heads, "
                                     f"head_size] view (packed QKV layout not recognised)")
            views = {id(pt["view"]) for pt in parts}
            unbound = all(pt["axis"] == -3 and pt["unit"] is not False for pt in parts)
            interleaved = all(pt["axis"] == -1 and pt["unit"] is not True for pt in parts)
            split_first = self._split_before_views(parts, q, (q_pl, k_pl, v_pl))
            if split_first:
                unbound = True  # part-major features, as the [.., 3, heads, head_size] view's
            elif any(pt["view"] is None for pt in parts) or len(views) != 1 or not (unbound or interleaved):
                raise StructureError(f"node '{_name(q_part['node'])}' ({q_part['node'].op_type}): the packed QKV "
                                     f"projection '{_name(q.node)}' is neither unbound along the '3' axis of one "
                                     f"[.., 3, heads, head_size] view nor chunked along the last axis of one "
                                     f"[.., heads, 3 * head_size] view")
            qkv, view = q, q_part["view"]
            q = k = v = None
        elif q.node is k.node or k.node is v.node or q.node is v.node or any(
                pt is not None for pt in (q_part, k_part, v_part)):
            raise StructureError(f"node '{_name(score)}' ({score.op_type}): Q, K and V share a projection in a way that is "
                                 f"not a packed [.., 3, heads, head_size] QKV view")
        x = self.source((qkv or q).node.inputs[0])
        # V may read another value than Q and K only in a bottleneck layer (MobileBERT: Q and K read a
        # shared bottleneck of the layer input, V the layer input); ``find`` checks that
        if qkv is None and self.source(k.node.inputs[0]) is not x:
            raise StructureError(f"node '{_name(score)}' ({score.op_type}): Q, K and V do not read the same hidden state "
                                 f"(cross-attention or a decoder is not supported)")
        # context -> Transpose/Reshape -> O; NeZha adds a position-value term to the context first
        cur, ctx_pl, o = ctx_out, [], None
        position_terms: list[list[ir.Node]] = []
        for _ in range(8):
            rs = self.readers(cur)
            c = rs[0] if len(rs) == 1 else None
            if c is None:
                break
            if c.op_type in LINEAR_OPS:
                o = self.linear(c)
                break
            if c.op_type in _PLUMBING:
                ctx_pl.append(c)
                cur = c.outputs[0]
                continue
            if c.op_type == "Add" and softmax is not None and not position_terms and len(c.inputs) == 2:
                term = self._position_term(c.inputs[1] if c.inputs[0] is cur else c.inputs[0],
                                           {id(softmax.outputs[0]), id(ctx.inputs[0])})
                if term is not None:
                    position_terms.append(term)
                    cur = c.outputs[0]
                    continue
            break
        if o is None:
            raise StructureError(f"node '{_name(ctx)}' ({ctx.op_type}): the attention context does not reach an output "
                                 f"projection through Transpose/Reshape")
        if qkv is not None and split_first:  # each third viewed [.., heads, head_size] on its own (GTE)
            heads, head_size = self.head_counts(dataclasses.replace(qkv, out_features=qkv.out_features // 3), q_pl,
                                                score)
            all_head = heads * head_size
            if o.in_features != all_head:
                raise StructureError(f"node '{_name(score)}' ({score.op_type}): packed QKV/O widths {qkv.out_features}/"
                                     f"{o.in_features} disagree with 3 x {heads} heads x {head_size}")
        elif qkv is not None:
            heads, head_size = self.packed_head_counts(qkv, view, score, interleaved)
            all_head = heads * head_size
            if qkv.out_features != 3 * all_head or o.in_features != all_head:
                raise StructureError(f"node '{_name(score)}' ({score.op_type}): packed QKV/O widths {qkv.out_features}/"
                                     f"{o.in_features} disagree with 3 x {heads} heads x {head_size}")
        else:
            heads, head_size = self.head_counts(q, q_pl, score)
            all_head = heads * head_size
            if k.out_features != all_head or v.out_features != all_head or o.in_features != all_head:
                raise StructureError(f"node '{_name(score)}' ({score.op_type}): Q/K/V/O widths {q.out_features}/"
                                     f"{k.out_features}/{v.out_features}/{o.in_features} disagree with "
                                     f"{heads} heads x {head_size}")
        split = [n for n in q_pl + k_pl + v_pl if n.op_type == "Reshape"]
        merge = [n for n in ctx_pl if n.op_type == "Reshape"]
        if interleaved:
            self._check_thirds((q_part, k_part, v_part), head_size)
        rel = (self.relative_terms(score, softmax, q or qkv, k or qkv, heads, head_size)
               if softmax is not None and (qkv is None or interleaved) else None)
        if rel is not None:
            split += rel["reshapes"]
        sites = self.head_sites(split, merge, heads, all_head)
        if split_first:
            sites += self._third_sites((q_part, k_part, v_part), all_head)
        known = {(id(st.node), id(st.value), st.index, ()) for st in sites}

        def add(more) -> None:  # each tensor element once (views may share one shape tensor), per chain to a view
            for st in more:
                key = (id(st.node), id(st.value), st.index, tuple(id(n) for n in st.via))
                if key not in known:
                    known.add(key)
                    sites.append(st)

        add(self.rotary_view_sites(rotary_views, heads))
        add(HeadSite(node=r, kind="attribute", value=None, attribute="num_heads", index=None, meaning="num_heads")
            for r in rotary_ops if "num_heads" in r.attributes)
        if position_terms:
            # its kind on the scores, from Q's views: Q.(table)^T. Neither term reads a head-indexed constant;
            # their [S, batch * heads, .] and [S, batch, heads, .] views hold the head count (head sites) where
            # they do not read it from a shape
            sources = {id(q_in)} | {id(n.outputs[0]) for n in q_pl}
            position_terms += [t for t in (self._position_term(x, sources) for x in self._score_terms(score, softmax))
                               if t is not None]
            for term in position_terms:
                for r in term:
                    if r.op_type == "Reshape":
                        add(self._position_view_sites(r, heads))
        if rel is not None:
            add(rel["sites"])
            if self._rank(score.inputs[0]) == 3:
                # scores and context are [batch * heads, S, .] products: their [batch, heads, ., .] views
                # (score -> Softmax, context -> O) hold the head count at position 1
                views = self._views_between(score, softmax) + [n for n in ctx_pl if n.op_type == "Reshape"]
                add(site for r in views if (site := self._unflatten_front_site(r, heads)) is not None)
        block = AttentionBlock(num_heads=heads, head_size=head_size, q=q, k=k, v=v, o=o, head_sites=sites,
                               score_bias=self.score_bias(score, softmax) if softmax is not None else [], qkv=qkv,
                               qkv_interleaved=interleaved)
        block.head_constants = self.head_constants(q_pl + k_pl + v_pl, (qkv, q, k, v), heads, head_size)
        seen: set[int] = set()
        for _, params, width in self._head_norms:
            first = params[0][0]
            if id(first) in seen:
                continue
            seen.add(id(first))
            if width != heads * head_size:  # e.g. each head normalized on its own after the view: not seen yet
                raise StructureError(f"node '{_name(first)}' ({first.op_type}): a norm of {width} features of a "
                                     f"projection viewed as {heads} heads x {head_size}")
            block.head_norms.append(first)
            block.head_norm_params += params
        block.position_terms = len(position_terms)
        block.heads_inferred = not sites and rel is None and self._views_infer_heads(split, merge, head_size,
                                                                                    qkv is not None)
        if rel is not None:
            block.rel_linears, block.rel_constants = rel["linears"], rel["constants"]
            block.rel_constant_proj = rel["constant_proj"]
            block.rel_gathers = rel["gathers"]
            block.rel_gather_axis = rel.get("gather_axis", 0)
            self._rel_nodes[id(block)] = rel["nodes"]
        return block, x

    # ------------------------------------------------------------------ functional relative positions (NeZha)
    _TERM_VIEWS = {"Transpose", "Reshape", "Cast", "Identity", "Dropout"}

    def _position_term(self, v: ir.Value | None, sources: set[int]) -> list[ir.Node] | None:
        """NeZha's relative-position term: the nodes from a value in ``sources`` (Q's views, or the attention
        probabilities) to ``v`` through views and one batched MatMul with a table that holds no head axis (a
        constant sliced by lengths read from shapes: ``[S, batch * heads, .] x [S, ., .]``, the same for
        every head); None when ``v`` is not such a term (the padding mask, say)."""
        nodes: list[ir.Node] = []
        matmul = None
        for _ in range(16):
            if v is None:
                return None
            if id(v) in sources:
                return nodes if matmul is not None else None
            p = v.producer()
            if p is None or not p.inputs:
                return None
            if p.op_type in self._TERM_VIEWS:
                nodes.append(p)
                v = p.inputs[0]
                continue
            if p.op_type == "MatMul" and matmul is None and len(p.inputs) == 2:
                table = [i for i in p.inputs if shape_derived(i, self._shape_memo)]
                if len(table) != 1:
                    return None
                x = p.inputs[1] if table[0] is p.inputs[0] else p.inputs[0]
                if self._rank(x) != 3 or _table_rank(table[0]) != 3:
                    return None
                matmul = p
                nodes.append(p)
                v = x
                continue
            return None
        return None

    def _score_terms(self, score: ir.Node, softmax: ir.Node) -> list[ir.Value]:
        """The values added to the scores on their way to ``softmax``."""
        return [n.inputs[1] if n.inputs[0] is v else n.inputs[0] for n, v in self._score_path(score, softmax)
                if n.op_type == "Add" and len(n.inputs) == 2]

    def _position_view_sites(self, r: ir.Node, heads: int) -> list[HeadSite]:
        """The head count in a view of a position term: ``[S, batch * heads, x]`` (at 1) or ``[S, batch, heads,
        x]`` (at 2), each element a constant (the head count; ``batch x heads`` in a static export), a
        product of a length read from a shape and the head count (the dynamo exporter), or read from a shape
        (TorchScript's: nothing to rewrite). Raises StructureError for anything else."""
        s = r.inputs[1] if len(r.inputs) > 1 else None
        if is_op(s.producer() if s is not None else None, "Shape") and not s.producer().attributes:
            return []  # back to another tensor's whole shape, read at run time
        pieces = self._front_pieces(r)
        at = {3: 1, 4: 2}.get(len(pieces)) if len(pieces) == self._reshape_rank(r) else None
        if at is None:
            raise StructureError(f"node '{_name(r)}' (Reshape): a view of a relative-position term that is neither "
                                 f"[S, batch * heads, .] nor [S, batch, heads, .]")
        value, where, computed = pieces[at]
        if where is not None:  # a constant: the head count, or batch x heads (a static export)
            if value <= 0 or value % heads:
                raise StructureError(f"node '{_name(r)}' (Reshape): a relative-position view whose head axis holds "
                                     f"{value}, not a multiple of {heads} heads")
            node, tensor, idx = where
            return [HeadSite(node=node, kind=const_kind(tensor), value=tensor, attribute=None, index=idx,
                             meaning="num_heads", factor=value // heads)]
        via: list[ir.Node] = [s.producer()]
        x = computed
        for _ in range(6):  # a length read from a shape times the head count, viewed as one element
            p = x.producer() if x is not None else None
            if p is None:
                break
            if p.op_type in ("Reshape", "Unsqueeze", "Squeeze", "Cast", "Identity") and p.inputs:
                via.append(p)
                x = p.inputs[0]
                continue
            if p.op_type == "Mul" and len(p.inputs) == 2:
                consts = [(i, small_const(i)) for i in p.inputs if small_const(i) is not None]
                if len(consts) == 1 and consts[0][1].size == 1:
                    tensor, a = consts[0]
                    if int(a.reshape(-1)[0]) != heads:
                        break
                    return [HeadSite(node=p, kind=const_kind(tensor), value=tensor, attribute=None, index=None,
                                     meaning="num_heads", via=tuple(via))]
            break
        if computed is not None and shape_derived(computed, self._shape_memo) and not _holds_constant(computed, heads):
            return []  # read from the shapes at run time: follows the head count kept
        raise StructureError(f"node '{_name(r)}' (Reshape): a relative-position view whose head count is computed "
                             f"in a way not read")

    # ------------------------------------------------------------------ disentangled attention (DeBERTa)
    _REL_WALK = {"Add", "Div", "Mul", "Transpose", "GatherElements", "Cast", "Identity", "Dropout"}
    _POS_PLUMBING = {"Transpose", "Reshape", "Tile", "Expand", "Unsqueeze", "Squeeze", "Identity", "Cast",
                     "Dropout"}

    def _rank(self, v: ir.Value | None) -> int | None:
        """Rank of an activation: its shape, or its view's or Transpose's, looked for through ops that keep the
        rank of their activation input (scales, biases, casts, a Split or Slice)."""
        for _ in range(8):
            if v is None:
                return None
            if v.shape is not None:
                return len(v.shape)
            p = v.producer()
            if p is None:
                return None
            if p.op_type == "Reshape":
                return self._reshape_rank(p)
            if p.op_type == "Transpose" and "perm" in p.attributes:
                return len(p.attributes["perm"].value)
            if p.op_type in ("Split", "Slice", "Cast", "Identity", "Dropout") and p.inputs:
                v = p.inputs[0]
                continue
            if p.op_type == "Gather" and len(p.inputs) == 2 and (ind := small_const(p.inputs[1])) is not None:
                r = self._rank(p.inputs[0])  # an index of rank k on one axis: rank - 1 + k
                return None if r is None else r - 1 + ind.ndim
            if p.op_type in ("Squeeze", "Unsqueeze") and p.inputs:
                axes = small_const(p.inputs[1]) if len(p.inputs) > 1 and p.inputs[1] is not None else (
                    np.asarray(list(p.attributes["axes"].value)) if "axes" in p.attributes else None)
                r = self._rank(p.inputs[0]) if axes is not None else None  # (a Squeeze of every 1: unknown)
                return None if r is None else r + (axes.size if p.op_type == "Unsqueeze" else -axes.size)
            if p.op_type in ("Add", "Sub", "Mul", "Div") and len(p.inputs) == 2:
                v = p.inputs[1] if self.cone.is_const(p.inputs[0]) else p.inputs[0]
                continue
            return None
        return None

    def _score_path(self, score: ir.Node, softmax: ir.Node) -> list[tuple[ir.Node, ir.Value]]:
        """The single-reader path from the score MatMul to ``softmax`` through mask and scale ops and views of
        the scores: each node with the value of the path it reads."""
        out, v = [], score.outputs[0]
        for _ in range(12):
            readers = data_consumers(v)
            if len(readers) != 1 or readers[0] is softmax:
                break
            n = readers[0]
            if not (n.op_type in _MASK_OPS or (n.op_type == "Reshape" and n.inputs[0] is v)):
                break
            out.append((n, v))
            v = n.outputs[0]
        return out

    def _views_between(self, score: ir.Node, softmax: ir.Node) -> list[ir.Node]:
        """Reshapes on the single-reader path from the score MatMul to the Softmax."""
        return [n for n, v in self._score_path(score, softmax) if n.op_type == "Reshape" and n.inputs[0] is v]

    def _front_pieces(self, reshape: ir.Node) -> list[tuple[int | None, tuple | None, ir.Value | None]]:
        """A Reshape's target shape from the FRONT: (value or None when computed, site or None, the computed
        one-element piece or None); stops at a computed piece of unknown length."""
        s = reshape.inputs[1] if len(reshape.inputs) > 1 else None
        arr = small_const(s)
        if arr is not None:
            return [(int(x), (reshape, s, i), None) for i, x in enumerate(arr.reshape(-1))]
        p = s.producer() if s is not None else None
        if p is None or p.op_type != "Concat":
            return []
        out: list[tuple[int | None, tuple | None, ir.Value | None]] = []
        for piece in p.inputs:
            a = small_const(piece)
            if a is not None:
                out += [(int(x), (p, piece, i), None) for i, x in enumerate(a.reshape(-1))]
                continue
            n = self._piece_len(piece)
            if n is None:
                break
            out += [(None, None, piece if n == 1 else None)] * n
        return out

    def _unflatten_front_site(self, r: ir.Node, heads: int) -> HeadSite | None:
        """The head count of a [batch * heads, a, b] -> [batch, heads, a, b] view (position 1 of 4)."""
        pieces = self._front_pieces(r)
        if len(pieces) != 4 or pieces[1][0] != heads or pieces[1][1] is None:
            return None
        node, value, idx = pieces[1][1]
        return HeadSite(node=node, kind=const_kind(value), value=value, attribute=None, index=idx,
                        meaning="num_heads")

    def _rel_products(self, start: ir.Value) -> tuple[list[ir.Node], list[ir.Node]] | None:
        """From a term added to the scores back to the MatMuls of two activations it is made of (through
        scales, Transposes and the GatherElements of relative positions): (those MatMuls, the
        GatherElements); None when it holds no such product."""
        mms: list[ir.Node] = []
        gathers: list[ir.Node] = []

        def visit(v: ir.Value):
            p = v.producer()
            if p is None or self.cone.is_const(v):
                return ()
            if p.op_type == "MatMul" and not (self.cone.is_const(p.inputs[0]) and self.cone.is_const(p.inputs[1])):
                mms.append(p)  # Q or K times the projected positions (constant where the batch size is fixed)
                return ()
            if p.op_type == "GatherElements":
                gathers.append(p)
                return p.inputs[:1]
            if p.op_type == "If":
                x = self._if_passes(p)
                return (x,) if x is not None else ()
            if p.op_type in self._REL_WALK:
                # an If's only input is its condition (from shapes): its branches' outer values are not
                return [i for i in p.inputs if i is not None and (is_op(i.producer(), "If")
                                                                  or not shape_derived(i, self._shape_memo))]
            return ()

        _walk_back(start, 64, visit)
        return (mms, gathers) if mms else None

    @staticmethod
    def _if_passes(node: ir.Node) -> ir.Value | None:
        """The one outer value both branches of an ``If`` return, looked at through Identity, Transpose, Cast
        and a GatherElements' data (TorchScript's export of DeBERTa v1's ``uneven_size_corrected``: a gather
        when the query and key lengths differ, else the term itself), or None."""
        found = []
        for name in ("then_branch", "else_branch"):
            attr = node.attributes.get(name)
            g = attr.value if attr is not None else None
            if g is None or len(g.outputs) != 1:
                return None
            v = g.outputs[0]
            for _ in range(8):
                p = v.producer()
                if p is None or p.graph is not g:
                    break
                if p.op_type not in ("Identity", "Transpose", "Cast", "GatherElements") or not p.inputs:
                    return None
                v = p.inputs[0]
            else:
                return None
            p = v.producer()
            if p is not None and p.graph is g:
                return None
            found.append(v)
        return found[0] if found[0] is found[1] else None

    def relative_terms(self, score: ir.Node, softmax: ir.Node, q: Linear, k: Linear, heads: int,
                       head_size: int) -> dict | None:
        """DeBERTa's content-to-position and position-to-content terms added to the scores, or None when
        the scores carry no such term. Each term is ``Q.(P_k)^T`` or ``K.(P_q)^T`` gathered by relative
        position, where P is a projection of the relative-position embeddings (a constant cone) viewed per
        head like Q and K: with Q's or K's own weight, its own weight, or a constant ORT's optimizer
        folded. Raises StructureError for such a term it cannot read."""
        v = score.outputs[0]
        terms: list[ir.Value] = []
        for _ in range(12):
            readers = data_consumers(v)
            if len(readers) != 1 or readers[0] is softmax:
                break
            n = readers[0]
            if n.op_type == "Add" and len(n.inputs) == 2:
                other = n.inputs[1] if n.inputs[0] is v else n.inputs[0]
                if other is not None and not self.cone.is_const(other):
                    terms.append(other)
            elif n.op_type not in _MASK_OPS and n.op_type != "Reshape":
                break
            v = n.outputs[0]
        mms: list[ir.Node] = []
        gathers: list[ir.Node] = []
        for t in terms:
            found = self._rel_products(t)
            if found is not None:
                mms += found[0]
                gathers += found[1]
        if not mms:
            return None
        out: dict = {"linears": [], "constants": [], "gathers": gathers, "reshapes": [], "sites": [], "nodes": []}
        out["constant_proj"] = []
        own = {id(q.node), id(k.node)}
        for mm in mms:
            sides = [self.trace(i)[0] for i in mm.inputs[:2]]
            content = [i for i, lin in enumerate(sides) if lin is not None and id(lin.node) in own]
            if len(content) != 1:
                raise StructureError(f"node '{_name(mm)}' (MatMul): a relative-position term on the scores that "
                                     f"is not a product of Q or K with projected position embeddings")
            # Q times projected positions is content-to-position (DeBERTa's P_k: K's projection when it shares
            # Q/K's weights), K times them position-to-content (P_q); unknown with one packed QKV
            c = sides[content[0]].node
            proj = None if q.node is k.node else ("k" if c is q.node else "q")
            self._relative_side(mm, 1 - content[0], heads, head_size, out, proj)
        if self._rank(score.inputs[0]) == 4:
            # [batch, heads, S, .] products (DeBERTa v1): each index is one [1, 1, S, S] table expanded to the
            # product's [batch, heads, S, S] (by sizes read at run time, by a shape holding the head count, which
            # the dynamo exporter shares among all layers, or folded to a constant): every head's rows the same,
            # so a pass that keeps fewer heads cuts the index to the product's head count at run time
            for g in gathers:
                idx = g.inputs[1]
                e = idx.producer() if idx is not None else None
                if e is not None and e.op_type == "Slice" and e.inputs and e.inputs[0] is not None:
                    idx = e.inputs[0]  # already cut to a pruned head count
                t = const_tensor(idx)
                if t is not None:
                    a = t.numpy()
                    if a.ndim != 4 or not bool(np.all(a == a[:, :1])):
                        raise StructureError(f"node '{_name(g)}' (GatherElements): a folded relative-position "
                                             f"index of shape {list(a.shape)} that differs between heads")
                    continue
                e = idx.producer() if idx is not None else None
                if e is None or e.op_type != "Expand":
                    raise StructureError(f"node '{_name(g)}' (GatherElements): its relative-position index is not an "
                                         f"Expand of one table over batch x heads")
            out["gather_axis"] = 1
            return out
        for g in gathers:
            idx = g.inputs[1]
            e = idx.producer() if idx is not None else None
            if e is not None and e.op_type == "Slice" and e.inputs:  # rows already cut to a pruned head count
                idx = e.inputs[0]
                e = idx.producer() if idx is not None else None
            t = const_tensor(idx) if e is None or e.op_type != "Expand" else None
            if t is not None and len(t.shape) >= 1:  # folded (static shapes): every row the same
                a = t.numpy()
                if bool(np.all(a == a[:1])):
                    continue
            if e is None or e.op_type != "Expand":
                raise StructureError(f"node '{_name(g)}' (GatherElements): its relative-position index is not an "
                                     f"Expand of one [1, S, S] table over batch x heads")
        return out

    def _relative_side(self, mm: ir.Node, i: int, heads: int, head_size: int, out: dict,
                       proj: str | None = None) -> None:
        """Follow operand ``i`` of a relative-position product back to its projection or folded constant;
        ``proj``: whose projection of the positions the product reads if it shares Q's or K's weight ("q", "k"),
        recorded for a folded constant (``out["constant_proj"]``)."""
        v = mm.inputs[i]
        nodes: list[ir.Node] = []
        split = False
        for _ in range(16):
            p = v.producer() if v is not None else None
            if p is not None and (p.op_type in LINEAR_OPS or p.op_type in ("Add", "Mul")):
                # the projection (float, quantized or packed) and its bias, read as Q/K/V are
                lin, pl, _ = self.trace(v, const_data=True)
                if lin is not None:
                    if lin.out_features != heads * head_size or not split:
                        raise StructureError(f"node '{_name(lin.node)}' ({lin.node.op_type}): a relative-position "
                                             f"projection {lin.out_features} wide, or not viewed per head, in an "
                                             f"attention of {heads} heads x {head_size}")
                    out["linears"].append(lin)
                    out["nodes"] += [*nodes, *pl, lin.node] + ([lin.bias_node] if lin.bias_node else [])
                    return
            if p is None or p.op_type == "Constant" or const_tensor(v) is not None:
                t = const_tensor(v)
                shape = tuple(int(d) for d in t.shape) if t is not None else ()
                reader = nodes[-1] if nodes else mm
                idx = next(j for j, x in enumerate(reader.inputs) if x is v)
                if split and shape and shape[-1] == heads * head_size:
                    out["constants"].append((reader, idx, -1))
                elif not split and len(shape) == 3 and shape[0] % heads == 0 and head_size in shape[1:] \
                        and self._tiled_heads(t, heads):
                    # [heads, 2 * span, head_size] (or its transpose), or that tiled over a fixed batch
                    out["constants"].append((reader, idx, 0))
                elif not split and len(shape) == 4 and shape[0] == 1 and shape[1] == heads and head_size in shape[2:]:
                    out["constants"].append((reader, idx, 1))  # DeBERTa v1: [1, heads, 2 * span, head_size] or ^T
                else:
                    raise StructureError(f"node '{_name(reader)}' ({reader.op_type}): a folded relative-position "
                                         f"constant of shape {list(shape)} with no head axis of {heads}")
                out["constant_proj"].append(proj)
                out["nodes"] += nodes
                return
            if p.op_type in _SCALE and len(p.inputs) == 2 and self._is_scale(p.inputs[1]):
                nodes.append(p)  # DeBERTa v1 scales the projected positions of its p2c term
                v = p.inputs[0]
                continue
            if p.op_type not in self._POS_PLUMBING:
                raise StructureError(f"node '{_name(p)}' ({p.op_type}): cannot follow a relative-position operand "
                                     f"of '{_name(mm)}' back to its projection")
            nodes.append(p)
            if p.op_type == "Reshape":
                pieces = self.shape_pieces(p)
                if len(pieces) >= 2 and pieces[-2][0] == heads:
                    split = True
                    out["reshapes"].append(p)
            if p.op_type in ("Tile", "Expand") and len(p.inputs) > 1:
                out["sites"] += self._count_sites(p.inputs[1], heads)
            v = p.inputs[0]
        raise StructureError(f"node '{_name(mm)}' (MatMul): a relative-position operand too deep to follow")

    @staticmethod
    def _tiled_heads(t, heads: int) -> bool:
        """True when a [k * heads, ..] constant is k copies of its first ``heads`` rows (k = 1: any)."""
        a = t.numpy()
        k = a.shape[0] // heads
        return k == 1 or all(np.array_equal(a[:heads], a[b * heads:(b + 1) * heads]) for b in range(1, k))

    def _count_sites(self, shape: ir.Value | None, heads: int) -> list[HeadSite]:
        """Integer ``x / heads`` (or ``heads * x``) of a run-time size in the shape computation feeding a
        Tile's repeats or an Expand's shape (``query.size(0) // heads``: the batch)."""
        sites: list[HeadSite] = []

        def visit(v: ir.Value):
            p = v.producer()
            if p is None:
                return ()
            if p.op_type in ("Div", "Mul") and len(p.inputs) == 2:
                for j in ((1,) if p.op_type == "Div" else (0, 1)):
                    c = p.inputs[j]
                    arr = small_const(c)
                    if arr is not None and arr.size == 1 and arr.dtype.kind in "iu" and int(arr.reshape(-1)[0]) == heads:
                        sites.append(HeadSite(node=p, kind=const_kind(c), value=c, attribute=None, index=None,
                                              meaning="num_heads"))
            if p.op_type in ("Unsqueeze", "Squeeze", "Reshape"):
                return p.inputs[:1]
            if p.op_type in ("Concat", "Cast", "Div", "Mul", "Floor", "Identity", "ConstantOfShape", "Shape"):
                return p.inputs
            return ()

        _walk_back(shape, 48, visit)
        return sites

    def score_bias(self, score: ir.Node, softmax: ir.Node) -> list[tuple[ir.Node, int]]:
        """Additive terms between the score MatMul and the Softmax that are neither a scale nor derived
        from a graph input's data (the padding mask is): a per-head position bias (MPNet). A term whose
        shape the graph fixes with one head (a mask an export without a mask input folded to a constant,
        [batch, 1, S, S]) is the same for every head: not one."""
        out: list[tuple[ir.Node, int]] = []
        v = score.outputs[0]
        for _ in range(12):
            readers = data_consumers(v)
            if len(readers) != 1 or readers[0] is softmax:
                break
            n = readers[0]
            if n.op_type not in _MASK_OPS:
                break
            if n.op_type in ("Add", "Sub") and len(n.inputs) == 2:
                i = 1 if n.inputs[0] is v else 0
                other = n.inputs[i]
                if other is not None and self._per_head_table(other):
                    out.append((n, i))
            v = n.outputs[0]
        return out

    def _per_head_table(self, v: ir.Value, depth: int = 0) -> bool:
        """True when ``v``, added to the scores, is a per-head bias: computed from a constant table, from no
        input's data (the padding mask is), and not fixed by the graph to one head broadcast to all; or the sum
        of such a bias and the padding mask (T5 adds the mask to its position bias once, in the first layer, and
        every layer adds that sum to its scores: its heads are the bias's, the mask is the same for each)."""
        if small_const(v) is not None or _same_for_all_heads(v):
            return False
        if self._has_table(v) and not self._reads_input_data(v):
            return True
        if depth:
            return False
        p = v.producer()
        # a head edit made before (a pass's Gather of each layer's kept heads, on the head axis: 1, or -3 from the
        # end of [batch, heads, S, S]) of such a sum
        while p is not None and p.op_type == "Gather" and len(p.inputs) == 2 and p.inputs[0] is not None and \
                int(p.attributes["axis"].value if "axis" in p.attributes else 0) in (1, -3) and \
                small_const(p.inputs[1], max_size=4096) is not None:
            p = p.inputs[0].producer()
        if p is None or p.op_type != "Add" or len(p.inputs) != 2 or any(i is None for i in p.inputs):
            return False
        a, b = p.inputs  # the bias and the mask (made of graph inputs through mask ops only), in either order
        return (self._per_head_table(a, 1) and self._mask_only(b)) or (self._per_head_table(b, 1) and self._mask_only(a))

    @staticmethod
    def _has_table(v: ir.Value) -> bool:
        """True when a constant matrix (a bias table such as [buckets, heads]) feeds ``v``."""
        found = []

        def visit(x: ir.Value):
            t = const_tensor(x)
            if t is not None:
                if len(t.shape) >= 2 and t.size > 1:
                    found.append(x)
                    return None
                return ()
            p = x.producer()
            return p.inputs if p is not None else ()

        _walk_back(v, 200, visit)
        return bool(found)

    def _masked(self, x: ir.Value, y: ir.Value) -> bool:
        """True when ``x`` is ``y * m`` (or ``y * m * m``...) with ``m`` made from graph inputs alone, through shape
        and cast ops (the padding mask, ``[batch, seq, 1]``): XLM zeroes the padded rows between layers (``tensor
        *= mask.unsqueeze(-1)``). Dropping a layer keeps it exact: the mask (0 or 1) applied twice is applied once.
        Through float Casts (ONNX Runtime's level 99 of an fp16 model multiplies in fp32 between Casts)."""
        for _ in range(len(self.graph)):  # a dropped layer leaves the mask applied twice in a row
            p = _producer_past_casts(x)
            if p is None or p.op_type != "Mul" or len(p.inputs) != 2:
                return False
            a, b = p.inputs
            if self._mask_only(b) and not self._mask_only(a):
                x = a
            elif self._mask_only(a) and not self._mask_only(b):
                x = b
            else:
                return False
            if _same_data(x, y):
                return True
        return False

    def _mask_only(self, v: ir.Value, depth: int = 0) -> bool:
        """``v`` computed from graph inputs and small constants through cast, shape and comparison ops only."""
        if v.is_graph_input():
            return True
        t = const_tensor(v)
        if t is not None:
            return t.size <= 16
        p = v.producer()
        if p is None or depth > 12 or p.op_type not in _MASK_ONLY_OPS:
            return False
        if p.op_type == "Shape":  # the shape of anything (the sequence length), not its values
            return True
        return all(i is None or self._mask_only(i, depth + 1) for i in p.inputs)

    def _reads_input_data(self, v: ir.Value, depth: int = 0) -> bool:
        """True when ``v`` depends on a graph input's values (not only on its shape)."""
        key = id(v)
        memo = self._input_memo
        if key in memo:
            return memo[key]
        memo[key] = False
        if v.is_graph_input():
            result = True
        else:
            p = v.producer()
            result = p is not None and p.op_type not in ("Shape", "Size") and depth < 64 and any(
                i is not None and self._reads_input_data(i, depth + 1) for i in p.inputs)
        memo[key] = result
        return result

    def fused_attention(self, node: ir.Node) -> tuple[AttentionBlock, ir.Value]:
        attrs = node.attributes
        if "num_heads" not in attrs:
            raise StructureError(f"node '{_name(node)}' ({node.op_type}): no num_heads attribute")
        heads = int(attrs["num_heads"].value)
        x = self.source(node.inputs[0])
        if node.op_type in ("Attention", "QAttention"):
            w = node.inputs[1] if len(node.inputs) > 1 else None
            if w is None or not self.cone.is_const(w):
                raise StructureError(f"node '{_name(node)}' (Attention): packed QKV weight is not a constant")
            weight = w if const_tensor(w) is not None else self.cone.root(w)
            _, in_f, out3 = self._weight_geometry(node, w, weight)
            if "qkv_hidden_sizes" in attrs:
                sizes = list(attrs["qkv_hidden_sizes"].value)
                if len(set(sizes)) != 1:
                    raise StructureError(f"node '{_name(node)}' (Attention): unequal qkv_hidden_sizes {sizes}")
                all_head = sizes[0]
            else:
                all_head = out3 // 3
            bias = node.inputs[2] if len(node.inputs) > 2 else None
            qkv = Linear(node=node, weight=weight, layout="in_out", in_features=in_f, out_features=out3,
                         bias=bias, bias_node=None)
            q = k = v = None
        elif node.op_type == "MultiHeadAttention":
            q, k, v, qkv, x, all_head = self._projections_3d(node)
        else:
            raise StructureError(f"node '{_name(node)}' ({node.op_type}): unsupported fused attention op")
        if all_head % heads:
            raise StructureError(f"node '{_name(node)}' ({node.op_type}): width {all_head} not divisible by "
                                 f"num_heads={heads}")
        outs = [lin for lin in (self.linear(c) for c in self.readers(node.outputs[0])) if lin is not None]
        o = outs[0] if len(outs) == 1 else None
        if o is None:
            raise StructureError(f"node '{_name(node)}' ({node.op_type}): output does not feed one output projection")
        sites = [HeadSite(node=node, kind="attribute", value=None, attribute="num_heads", index=None,
                          meaning="num_heads")]
        if "qkv_hidden_sizes" in attrs:
            sites.append(HeadSite(node=node, kind="attribute", value=None, attribute="qkv_hidden_sizes", index=None,
                                  meaning="all_head_size"))
        # an attention bias added to the scores (Attention's and MultiHeadAttention's input 5), a per-head table
        # such as a relative position bias: head surgery selects its heads (axis -3) as for an unfused graph's
        bias_in = node.inputs[5] if node.op_type != "QAttention" and len(node.inputs) > 5 else None
        score_bias = [(node, 5)] if bias_in is not None and small_const(bias_in) is None and \
            self._has_table(bias_in) and not self._reads_input_data(bias_in) else []
        block = AttentionBlock(num_heads=heads, head_size=all_head // heads, q=q, k=k, v=v, o=o,
                               head_sites=sites, fused=node, qkv=qkv, score_bias=score_bias)
        return block, x

    def _projections_3d(self, node: ir.Node) -> tuple[Linear | None, Linear | None, Linear | None, Linear | None,
                                                      ir.Value, int]:
        """(q, k, v, qkv, hidden state read, width of one part) of an attention node (ORT's MultiHeadAttention,
        ONNX's Attention on 3-D inputs) whose Q, K and V inputs are projections' outputs: three of them reading
        one value, or the three parts of one projection's ``Split`` (``qkv``; pack --runtime memory's form of a
        fused Attention: MatMulNBits, Split, MultiHeadAttention; int8 --fusion onnx's)."""
        what = f"node '{_name(node)}' ({node.op_type})"
        qkv = self._split_qkv(node)
        if qkv is not None:
            return None, None, None, qkv, self.source(qkv.node.inputs[0]), qkv.out_features // 3
        lins = [self.trace_back(node.inputs[i])[0] if len(node.inputs) > i else None for i in range(3)]
        if any(lin is None for lin in lins):
            raise StructureError(f"{what}: Q/K/V inputs do not come from separate projections with constant weights "
                                 f"(nor from one projection split in three)")
        q, k, v = lins
        if q.node is k.node or k.node is v.node or q.node is v.node:
            raise StructureError(f"{what}: Q, K and V share a projection in a way that is not one Split of it into "
                                 f"three equal parts along its last axis")
        x = self.source(q.node.inputs[0])
        if self.source(k.node.inputs[0]) is not x or self.source(v.node.inputs[0]) is not x:
            raise StructureError(f"{what}: Q, K and V do not read the same hidden state (cross-attention or a "
                                 f"decoder is not supported)")
        if not q.out_features == k.out_features == v.out_features:
            raise StructureError(f"{what}: Q/K/V widths {q.out_features}/{k.out_features}/{v.out_features} differ")
        return q, k, v, None, x, q.out_features

    def _split_qkv(self, node: ir.Node) -> Linear | None:
        """The projection whose output one ``Split`` hands to the MultiHeadAttention ``node`` as its query, key
        and value (:func:`~deploytool.graph._util.qkv_split`); None otherwise."""
        found = qkv_split(node)
        if found is None:
            return None
        split, part = found
        v = split.inputs[0]
        lin = self._linear_ending_at(v)
        if lin is None or (part is None and lin.out_features % 3) or (part is not None and lin.out_features != 3 * part):
            return None
        return lin

    def _linear_ending_at(self, v: ir.Value | None) -> Linear | None:
        """The projection whose output (:meth:`linear_output`: after its dequantizing Cast and Mul, the planes'
        sum, its bias Add) is ``v``, looking back a few nodes along non-constant inputs; None if there is none."""
        frontier = [v]
        for _ in range(5):
            nxt = []
            for u in frontier:
                p = u.producer() if u is not None else None
                if p is None:
                    continue
                kernel = p if p.op_type in LINEAR_OPS else self._plane_kernel(p) if p.op_type == "Add" else None
                if kernel is not None:
                    lin = self.linear(kernel)
                    return lin if lin is not None and self.linear_output(lin) is v else None
                if p.op_type in ("Add", "Mul", "Cast"):
                    nxt += [i for i in p.inputs if i is not None and not self.cone.is_const(i)]
            frontier = nxt
        return None

    # ------------------------------------------------------------------ residual + norm
    def residual_norm(self, y: ir.Value, residual: ir.Value, at: ir.Node, what: str) -> ir.Value:
        """``LayerNorm(y + residual)``'s output value; y is a projection's output. Through float Casts (ONNX
        Runtime's level 99 of an fp16 model: the projection in fp32, the residual and its norm in fp16)."""
        y = self._past_float_cast(self.past_qdq(y))
        c = single_consumer(y)
        if c is None:
            raise StructureError(f"node '{_name(at)}' ({at.op_type}): the {what} result has "
                                 f"{len(data_consumers(y))} readers, expected one residual Add")
        # the residual may be read through its activation quantization (QDQ graphs)
        if c.op_type in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
            if not any(_same_data(residual, self.source(i)) for i in c.inputs[:2]):
                raise StructureError(f"node '{_name(c)}' ({c.op_type}): the {what} result is not added to the "
                                     f"normalised layer input (pre-LayerNorm blocks are not supported)")
            return c.outputs[0]
        if c.op_type not in ("Add", "Sum") or len(c.inputs) != 2 or \
                not any(_same_data(residual, self.source(i)) for i in c.inputs):  # Sum: int8
            raise StructureError(f"node '{_name(c)}' ({c.op_type}): the {what} result is not added to the "
                                 f"normalised layer input (pre-LayerNorm blocks, as in GPT-style decoders, are not "
                                 f"supported)")
        return self.layer_norm_after(c.outputs[0], c)

    def layer_norm_after(self, v: ir.Value, at: ir.Node) -> ir.Value:
        v = self.past_qdq(v)
        cs = consumers(v)
        if len(cs) == 1 and cs[0].op_type in LAYER_NORM_OPS:
            return cs[0].outputs[0]
        # decomposed: ReduceMean(x); d = Sub(x, mean); Div(d, Sqrt(ReduceMean(Pow(d)) + eps)) * g + b
        # (DeBERTa: x cast to float32 first, and the division cast back)
        cs = consumers(self._past_float_cast(v))
        if len(cs) == 1 and cs[0].op_type in LAYER_NORM_OPS:
            return cs[0].outputs[0]
        sub = next((c for c in cs if c.op_type == "Sub"), None)
        if sub is not None and any(c.op_type == "ReduceMean" for c in cs):
            div = next((c for c in consumers(sub.outputs[0]) if c.op_type == "Div"), None)
            mul = single_consumer(self._past_float_cast(div.outputs[0])) if div is not None else None
            add = single_consumer(mul.outputs[0]) if mul is not None and mul.op_type == "Mul" else None
            if add is not None and add.op_type == "Add":
                return add.outputs[0]
        nonorm = self._no_norm_after(v)
        if nonorm is not None:
            return nonorm
        raise StructureError(f"node '{_name(at)}' ({at.op_type}): residual sum is not followed by a LayerNorm")

    def _no_norm_after(self, v: ir.Value) -> ir.Value | None:
        """``v * gamma + beta`` (MobileBERT's NoNorm: constant per-feature vectors) after ``v``, else None."""
        mul = single_consumer(v)
        if mul is None or mul.op_type != "Mul" or len(mul.inputs) != 2 or not self._feature_const(
                mul.inputs[1] if mul.inputs[0] is v else mul.inputs[0]):
            return None
        add = single_consumer(mul.outputs[0])
        if add is None or add.op_type != "Add" or len(add.inputs) != 2:
            return None
        other = add.inputs[1] if add.inputs[0] is mul.outputs[0] else add.inputs[0]
        return add.outputs[0] if self._feature_const(other) else None

    def _feature_const(self, v: ir.Value | None) -> bool:
        """A constant vector (or a [1, .., D] tensor) of per-feature values."""
        stored = self._stored_const(v)
        t = const_tensor(stored) if stored is not None else None
        return t is not None and t.size > 1 and max(t.shape, default=1) == t.size

    def _norm_input(self, r: ir.Value) -> ir.Value | None:
        """v when ``r`` is a norm of v: LayerNormalization (also in fp16 between float Casts, ONNX Runtime's level 99
        of an fp16 model), the decomposed form, or NoNorm (v * gamma + beta)."""
        p = r.producer()
        if p is None:
            return None
        if p.op_type == "Cast" and _precision_root(r) is not r:
            n = _precision_root(r).producer()
            if n is not None and n.op_type in ("LayerNormalization", "SimplifiedLayerNormalization",
                                               "RMSNormalization") and n.inputs and n.inputs[0] is not None:
                return _precision_root(self.source(n.inputs[0]))
        if p.op_type in ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization") and p.inputs and \
                p.inputs[0] is not None:
            return self.source(p.inputs[0])
        if p.op_type != "Add" or len(p.inputs) != 2:
            return None
        a, b = p.inputs
        data = a if self._feature_const(b) else b if self._feature_const(a) else None
        m = data.producer() if data is not None else None
        if m is None or m.op_type != "Mul" or len(m.inputs) != 2:
            return None
        x = m.inputs[0] if self._feature_const(m.inputs[1]) else m.inputs[1] if self._feature_const(
            m.inputs[0]) else None
        if x is None:
            return None
        d = x.producer()
        if d is not None and d.op_type == "Div" and d.inputs[0] is not None:  # decomposed LayerNorm
            sub = d.inputs[0].producer()
            if sub is not None and sub.op_type == "Sub" and self._normalizes(r, self.source(sub.inputs[0])):
                return self.source(sub.inputs[0])
        return self.source(x)  # NoNorm

    def bottleneck(self, r: ir.Value) -> tuple[Linear, ir.Value] | None:
        """(projection, its input) when ``r`` is ``norm(projection(input))``: a bottleneck (MobileBERT); the
        projection's output may reach the norm through float Casts (ONNX Runtime's level 99 of an fp16 model)."""
        v = _precision_root(self._norm_input(r))
        if v is None or v.producer() is None:
            return None
        # back through the bias Add (and an int8 projection's dequantizing Mul) to the projection
        lin, _, part = self.trace(v)
        if lin is None or part is not None or self.linear_output(lin) is not v:
            return None
        return lin, self.source(lin.node.inputs[0])

    def output_bottleneck(self, h: ir.Value, x: ir.Value) -> tuple[Linear, ir.Value] | None:
        """(projection, layer output) when ``h`` is read by one projection P only and ``norm(P(h) + x)``
        follows (MobileBERT's output bottleneck back to the layer input's width), else None."""
        rs = self._readers_past_casts(h)
        if len(rs) != 1:
            return None
        lin = self.linear(rs[0])
        if lin is None:
            return None
        y = self._past_float_cast(self.past_qdq(self.linear_output(lin)))
        c = single_consumer(y)
        if c is None or c.op_type not in ("Add", "Sum", "SkipLayerNormalization") or len(c.inputs) < 2:
            return None
        if not any(_same_data(x, self.source(i)) for i in c.inputs[:2]):
            return None
        if c.op_type == "SkipLayerNormalization":
            return lin, c.outputs[0]
        return lin, self.layer_norm_after(c.outputs[0], c)

    # ------------------------------------------------------------------ pre-LayerNorm residuals
    @staticmethod
    def _sum_output(skip: ir.Node) -> ir.Value | None:
        """A SkipLayerNormalization's output 3 (input + skip [+ bias], before the norm) when it is used."""
        if len(skip.outputs) > 3:
            s = skip.outputs[3]
            if s is not None and (list(s.uses()) or s.is_graph_output()):
                return s
        return None

    def _stream_continues(self, s: ir.Value) -> bool:
        """True when a residual sum is read by something besides its own LayerNorm (pre-LN: the next
        residual Add adds it back), also where that Add is ORT's SkipLayerNormalization, which reads the sum as
        one of its two summands (the last layer's FFN residual fused with the final LayerNorm, when ORT fused
        no other: a graph with ONNX's Attention at its levels 2 and 99)."""
        v = self._past_float_cast(s)
        rms = self._rms_parts(v)
        return any(((n.op_type not in LAYER_NORM_OPS and n.op_type not in ("ReduceMean", "Sub"))
                    or n.op_type in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization")) and id(n) not in rms
                   for n in self.readers(v))

    def _past_clamp(self, s: ir.Value) -> ir.Value:
        """``Clip(s, lo, hi)`` when the residual sum ``s`` is clamped with bounds computed from ``s`` itself and
        constants only (transformers' T5 in fp16: ``clamp(h, -c, c)``, ``c`` just below fp16's largest value, lower
        where ``h`` holds an inf), which the residual stream then carries (also of ``s`` cast to fp16 first: ORT's
        level 99 adds in fp32); else ``s``."""
        v = self._past_float_cast(s)
        clips = [n for n in consumers(v) if n.op_type == "Clip" and n.inputs and n.inputs[0] is v]
        if len(clips) != 1:
            return s
        clip, s = clips[0], v
        seen: set[int] = set()
        todo = [b for b in clip.inputs[1:] if b is not None]
        while todo:
            v = todo.pop()
            if v is s or id(v) in seen or self.cone.is_const(v):
                continue
            seen.add(id(v))
            p = v.producer()
            if p is None or len(seen) > 64:
                return s  # a bound read from a graph input, or too far to tell
            todo += [i for i in p.inputs if i is not None]
        return clip.outputs[0]

    @staticmethod
    def _past_float_cast(v: ir.Value) -> ir.Value:
        """``v`` cast to a float type when that Cast is its only reader (DeBERTa's LayerNorm computes in float32:
        ``x.float()`` before the mean, ``.to(dtype)`` after the division; fp16 keeps those Casts), else ``v``."""
        c = single_consumer(v)
        if c is not None and c.op_type == "Cast" and "to" in c.attributes and c.attributes["to"].value in _FLOATS \
                and len(consumers(v)) == 1:
            return c.outputs[0]
        return v

    @staticmethod
    def _uncast(v: ir.Value | None) -> ir.Value | None:
        """``v`` before its Casts to float types (see :meth:`_past_float_cast`; :func:`_precision_root`)."""
        return _precision_root(v)

    # ------------------------------------------------------------------ RMS norm (T5)
    def _rms_input(self, a: ir.Value | None) -> ir.Value | None:
        """``x`` (as the norm reads it) when ``a`` is T5's RMS norm of it, decomposed: ``w * (x * r)`` with ``r``
        = ``1 / sqrt(mean(x^2) + eps)`` (TorchScript: ``Div(1, Sqrt)``; dynamo: ``Reciprocal(Sqrt)``) or ``w * (x /
        sqrt(mean(x^2) + eps))`` (ORT's pattern), ``x^2`` as ``Pow(x, 2)`` or ``Mul(x, x)``, through float Casts
        (the norm computes in float32); else None. No mean is subtracted: a LayerNorm is not one."""
        p = self._uncast(a).producer() if a is not None else None
        if p is None or p.op_type != "Mul" or len(p.inputs) != 2:
            return None
        if self._feature_const(p.inputs[0]):
            normed = p.inputs[1]
        elif self._feature_const(p.inputs[1]):
            normed = p.inputs[0]
        else:
            return None
        n = self._uncast(normed).producer() if normed is not None else None
        if n is None or len(n.inputs) != 2 or any(i is None for i in n.inputs):
            return None
        if n.op_type == "Div":
            x, sqrt = n.inputs[0], n.inputs[1].producer()
        elif n.op_type == "Mul":
            x = sqrt = None
            for i, j in ((0, 1), (1, 0)):
                inv = n.inputs[j].producer()
                if inv is not None and inv.op_type == "Reciprocal":
                    x, sqrt = n.inputs[i], inv.inputs[0].producer()
                elif inv is not None and inv.op_type == "Div" and len(inv.inputs) == 2 and \
                        _is_scalar(inv.inputs[0], 1.0):
                    x, sqrt = n.inputs[i], inv.inputs[1].producer()
                if sqrt is not None:
                    break
        else:
            return None
        if x is None or sqrt is None or sqrt.op_type != "Sqrt":
            return None
        add = sqrt.inputs[0].producer()
        if add is None or add.op_type != "Add" or len(add.inputs) != 2:
            return None
        mean = next((i.producer() for i in add.inputs if i is not None and not self.cone.is_const(i)), None)
        if mean is None or mean.op_type != "ReduceMean" or not mean.inputs or mean.inputs[0] is None:
            return None
        sq = mean.inputs[0].producer()
        if sq is None or len(sq.inputs) != 2 or any(i is None for i in sq.inputs):
            return None
        if sq.op_type == "Pow" and _is_scalar(sq.inputs[1], 2.0):
            base = sq.inputs[0]
        elif sq.op_type == "Mul" and sq.inputs[0] is sq.inputs[1]:
            base = sq.inputs[0]
        else:
            return None
        same = self.source(self._uncast(base)) is self.source(self._uncast(x))
        centred = x.producer() is not None and x.producer().op_type == "Sub"  # x - mean(x): a LayerNorm's
        return x if same and not centred else None

    def _rms_after(self, v: ir.Value) -> ir.Value | None:
        """The output of T5's RMS norm of ``v`` (read directly or through a float Cast), or None."""
        frontier, seen = [v], set()
        for _ in range(8):
            nxt = []
            for val in frontier:
                for c in self.readers(val):
                    if id(c) in seen:
                        continue
                    seen.add(id(c))
                    if c.op_type == "Mul":
                        x = self._rms_input(c.outputs[0])
                        if x is not None and self._uncast(self.source(x)) in (v, self._uncast(v)):
                            out = c.outputs[0]
                            return self._past_float_cast(out) if self._uncast(out) is out else out
                    nxt.extend(c.outputs)
            frontier = nxt
        return None

    def _rms_parts(self, v: ir.Value) -> set[int]:
        """The nodes of T5's RMS norm of ``v`` (see :meth:`_rms_after`), as ids; empty when there is none."""
        out = self._rms_after(v)
        if out is None:
            return set()
        ids: set[int] = set()
        stack = [out]
        while stack:
            val = stack.pop()
            if val is None or val is v or val is self._uncast(v):
                continue
            p = val.producer()
            if p is None or id(p) in ids or self.cone.is_const(val):
                continue
            ids.add(id(p))
            stack.extend(p.inputs)
        return ids

    def _normalizes(self, a: ir.Value, r: ir.Value) -> bool:
        """True when ``a`` is ``LayerNorm(r)`` (a LayerNormalization, the normalised output 0 of a
        SkipLayerNormalization whose output 3 is ``r``, or the decomposed ReduceMean/Sub/.../Mul [+ Add]), or
        T5's RMS norm of ``r`` (:meth:`_rms_input`); through float Casts of either (ONNX Runtime's level 99 of an fp16
        model: the LayerNorm in fp16 between Casts, the residual Add in fp32)."""
        x = self._rms_input(a)
        if x is not None and self._uncast(self.source(x)) is self._uncast(r):
            return True
        a, r = _precision_root(a), _precision_root(r)
        p = a.producer() if a is not None else None
        if p is None:
            return False
        if p.op_type in ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization"):
            if not p.inputs or p.inputs[0] is None:
                return False
            if _precision_root(self.source(p.inputs[0])) is r:
                return True
            # ORT: a LayerNorm without bias as RMSNorm of the centred input, Sub(r, ReduceMean(r))
            sub = p.inputs[0].producer()
            return (p.op_type == "SimplifiedLayerNormalization" and sub is not None and sub.op_type == "Sub"
                    and self._centres(sub, r))
        if p.op_type in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
            return p.outputs[0] is a and self._sum_output(p) is r
        # decomposed: [Add(beta)] <- Mul(gamma) <- Div(Sub(r, ReduceMean(r)), Sqrt(...))
        if p.op_type == "Add" and len(p.inputs) == 2 and any(self.cone.is_const(i) for i in p.inputs):
            nxt = next((i for i in p.inputs if not self.cone.is_const(i)), None)
            p = nxt.producer() if nxt is not None else None
        if p is None or p.op_type != "Mul" or len(p.inputs) != 2:
            return False
        nxt = self._uncast(next((i for i in p.inputs if i is not None and not self.cone.is_const(i)), None))
        div = nxt.producer() if nxt is not None else None
        if div is None or div.op_type != "Div":
            return False
        sub = div.inputs[0].producer() if div.inputs[0] is not None else None
        if sub is None or sub.op_type != "Sub" or len(sub.inputs) != 2:
            return False
        return self._centres(sub, r)

    def _centres(self, sub: ir.Node, r: ir.Value) -> bool:
        """True for ``Sub(r, ReduceMean(r))``."""
        if len(sub.inputs) != 2 or sub.inputs[1] is None:
            return False
        mean = sub.inputs[1].producer()
        return (self.source(self._uncast(sub.inputs[0])) is r and mean is not None and mean.op_type == "ReduceMean"
                and self.source(self._uncast(mean.inputs[0])) is r)

    def norm_after(self, s: ir.Value, at: ir.Node) -> ir.Value:
        """The output of the one LayerNorm that reads the residual sum ``s`` (pre-LN: the FFN's norm)."""
        rs = self.readers(s)
        if len(rs) == 1 and rs[0].op_type == "Cast":
            rs = self.readers(self._past_float_cast(s)) or rs
        norms = ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization")
        lns = [n for n in rs if n.op_type in norms]
        if not lns:  # ORT's level 99 of an fp16 model: the stream read in fp32 by the next Add and by the norm
            lns = [n for c in rs if c.op_type == "Cast" and "to" in c.attributes and c.attributes["to"].value in
                   _FLOATS for n in self.readers(c.outputs[0]) if n.op_type in norms]
        if len(lns) == 1:
            return lns[0].outputs[0]
        if not lns:
            rms = self._rms_after(self._past_float_cast(s))
            if rms is not None:  # T5's RMS norm, decomposed
                return rms
        sub = next((n for n in rs if n.op_type == "Sub"), None)
        if not lns and sub is not None and any(n.op_type == "ReduceMean" for n in rs):
            rms = [c for c in consumers(sub.outputs[0]) if c.op_type == "SimplifiedLayerNormalization"]
            if len(rms) == 1:  # ORT: LayerNorm without bias = RMSNorm(s - mean(s))
                return rms[0].outputs[0]
            div = next((c for c in consumers(sub.outputs[0]) if c.op_type == "Div"), None)
            mul = single_consumer(self._past_float_cast(div.outputs[0])) if div is not None else None
            if mul is not None and mul.op_type == "Mul":
                add = single_consumer(mul.outputs[0])
                if add is not None and add.op_type == "Add" and any(self.cone.is_const(i) for i in add.inputs):
                    return add.outputs[0]
                return mul.outputs[0]
        raise StructureError(f"node '{_name(at)}' ({at.op_type}): the residual sum of a pre-LayerNorm layer is "
                             f"not read by one LayerNorm (readers: {sorted(n.op_type for n in rs)})")

    def attention_residual(self, y: ir.Value, a: ir.Value, at: ir.Node) -> tuple[bool, ir.Value, ir.Value, ir.Value]:
        """(pre_norm, layer input, residual stream after attention, value the FFN reads) for the
        attention output projection's result ``y``; ``a`` is what Q/K/V read.

        Post-LN: ``h1 = LN(a + y)``, the FFN reads h1. Pre-LN: ``h1 = x + y`` where ``a`` is ``LN(x)``
        (or x itself: ModernBERT's first layer has no norm there), the FFN reads ``LN(h1)``. Through a float Cast of
        y (ONNX Runtime's level 99 of an fp16 model: the projection in fp32, the residual and its norm in fp16)."""
        y = self._past_float_cast(self.past_qdq(y))
        c = single_consumer(y)
        what = "attention output projection"
        if c is None:
            raise StructureError(f"node '{_name(at)}' ({at.op_type}): the {what} result has "
                                 f"{len(data_consumers(y))} readers, expected one residual Add")
        if c.op_type in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization") and len(c.inputs) >= 2:
            i0, i1 = self.source(c.inputs[0]), self.source(c.inputs[1])
            r = i1 if i0 is y else i0
            s = self._sum_output(c)
            if s is None:
                if not _same_data(r, a):
                    raise StructureError(f"node '{_name(c)}' ({c.op_type}): the {what} result is not added to the "
                                         f"normalised layer input (nor to the un-normalised one of a pre-LayerNorm "
                                         f"block)")
                h1 = self._renormed(c.outputs[0], a)
                return False, a, h1, h1
            if not _same_data(r, a) and not self._normalizes(a, r):
                raise StructureError(f"node '{_name(c)}' ({c.op_type}): the {what} result is added to a value that "
                                     f"is neither the attention input nor the stream it normalises")
            return True, r, s, c.outputs[0]
        if c.op_type in ("Add", "Sum") and len(c.inputs) == 2:
            srcs = tuple(self.source(i) for i in c.inputs)
            r = srcs[1] if srcs[0] is y or c.inputs[0] is y else srcs[0]
            s = c.outputs[0]
            if r is a and not self._stream_continues(self.past_qdq(s)):
                h1 = self._renormed(self.residual_norm(y, a, at, what), a)  # post-LN
                return False, a, h1, h1
            if r is a or self._normalizes(a, r):
                s = self._past_clamp(self.past_qdq(s))
                if not self._stream_continues(s):
                    raise StructureError(f"node '{_name(c)}' ({c.op_type}): the {what} result is added to the "
                                         f"un-normalised layer input (pre-LayerNorm) but the sum is only "
                                         f"normalised, not carried on to the FFN residual (mixed pre/post-LayerNorm "
                                         f"blocks are not supported)")
                if r is not a and self._rms_input(a) is not None:
                    r = self._uncast(r)  # T5 (TorchScript): the residual reads its norm's float Cast of x
                return True, r, s, self.norm_after(s, c)
        # the post-LN finder's own message for anything else
        h1 = self._renormed(self.residual_norm(y, a, at, what), a)
        return False, a, h1, h1

    def _renormed(self, h1: ir.Value, a: ir.Value) -> ir.Value:
        """``LN(a + h1)`` where the post-LN attention block's output ``h1`` (``LN(a + y)``) is read only by a second
        residual Add of the layer input ``a`` and its LayerNorm (JinaBERT's qk-post-norm layers: the FFN reads,
        and adds back, that second norm's output); else ``h1``."""
        c = single_consumer(self.past_qdq(h1))
        if c is None or len(c.inputs) < 2:
            return h1
        i0, i1 = (self.source(i) for i in c.inputs[:2])  # (a through float Casts: ORT's level 99 of fp16)
        if not ((i0 is h1 and _same_data(i1, a)) or (i1 is h1 and _same_data(i0, a))):
            return h1
        if c.op_type in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
            return h1 if self._sum_output(c) is not None else c.outputs[0]
        if c.op_type not in ("Add", "Sum") or len(c.inputs) != 2:
            return h1
        try:
            return self.layer_norm_after(c.outputs[0], c)
        except StructureError:
            return h1

    def pre_norm_residual(self, y: ir.Value, h1: ir.Value, at: ir.Node) -> tuple[ir.Value, ir.Node | None]:
        """(layer output, fused norm ending the layer) for a pre-LN FFN output ``y`` added to ``h1`` (also through
        float Casts: ONNX Runtime's level 99 of an fp16 model, the projection in fp32 and the residual in fp16)."""
        y = self._past_float_cast(self.past_qdq(y))
        c = single_consumer(y)
        if c is None:
            raise StructureError(f"node '{_name(at)}' ({at.op_type}): the FFN output projection result has "
                                 f"{len(data_consumers(y))} readers, expected one residual Add")
        if c.op_type in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization") and len(c.inputs) >= 2:
            if not any(_same_data(h1, self.source(i)) for i in c.inputs[:2]):
                raise StructureError(f"node '{_name(c)}' ({c.op_type}): the FFN output is not added to the "
                                     f"layer's residual stream")
            s = self._sum_output(c)
            return (s if s is not None else c.outputs[0]), c
        if c.op_type in ("Add", "Sum") and len(c.inputs) == 2 and h1 in tuple(self.source(i) for i in c.inputs):
            return self._past_clamp(self.past_qdq(c.outputs[0])), None
        # T5 (TorchScript): the residual reads the float Cast its RMS norm made of h1 (a no-op in float32)
        if c.op_type in ("Add", "Sum") and len(c.inputs) == 2 and \
                h1 in tuple(self._uncast(self.source(i)) for i in c.inputs) and self._rms_after(h1) is not None:
            return self._past_clamp(self.past_qdq(c.outputs[0])), None
        # ORT's level 99 of an fp16 model: the residual Add reads h1 cast to fp32 (T5's clamped stream is fp16)
        if c.op_type in ("Add", "Sum") and len(c.inputs) == 2 and \
                _precision_root(h1) in tuple(_precision_root(self.source(i)) for i in c.inputs):
            return self._past_clamp(self.past_qdq(c.outputs[0])), None
        raise StructureError(f"node '{_name(c)}' ({c.op_type}): the FFN output is not added to the layer's "
                             f"residual stream (pre-LayerNorm block)")

    # ------------------------------------------------------------------ FFN
    def _glu_chunks(self, y: ir.Value, inter: Linear) -> tuple[list[ir.Value], list[FFNSite]] | None:
        """The two halves of a gated FFN's intermediate output ``y`` ([activation input | gate], split
        along the last axis by a Split or two Slices) and the constants that hold F, or None when the
        intermediate is not chunked."""
        rs = self.readers(y)
        if not rs or any(n.op_type not in ("Split", "Slice") for n in rs):
            return None
        f2 = inter.out_features
        if f2 % 2:
            raise StructureError(f"node '{_name(rs[0])}' ({rs[0].op_type}): the FFN intermediate "
                                 f"'{_name(inter.node)}' is chunked but has an odd width {f2}")
        f = f2 // 2
        rank = len(y.shape) if y.shape is not None else (2 if inter.node.op_type in ("Gemm", "FusedGemm") else 3)

        def last_axis(ax: int) -> bool:
            return ax == -1 or ax == rank - 1

        def bad(n: ir.Node, why: str) -> StructureError:
            return StructureError(f"node '{_name(n)}' ({n.op_type}): the gated FFN's chunk of "
                                  f"'{_name(inter.node)}' {why}")

        sites: list[FFNSite] = []
        if len(rs) == 1 and rs[0].op_type == "Split":
            sp = rs[0]
            ax = int(sp.attributes["axis"].value) if "axis" in sp.attributes else 0
            if len(sp.outputs) != 2 or not last_axis(ax):
                raise bad(sp, "is not a split in two halves along the last axis")
            sizes_v = sp.inputs[1] if len(sp.inputs) > 1 else None
            if sizes_v is not None:
                sizes = small_const(sizes_v)
                if sizes is None:
                    if not shape_derived(sizes_v, self._shape_memo):
                        raise bad(sp, "has split sizes computed from data")
                elif [int(x) for x in sizes.reshape(-1)] != [f, f]:
                    raise bad(sp, f"has sizes {sizes.reshape(-1).tolist()}, not two halves of {f2}")
                else:
                    sites += [FFNSite(node=sp, kind=const_kind(sizes_v), value=sizes_v, attribute=None, index=i,
                                      factor=1) for i in range(2)]
            elif "split" in sp.attributes:
                if [int(x) for x in sp.attributes["split"].value] != [f, f]:
                    raise bad(sp, "has unequal split sizes")
                sites += [FFNSite(node=sp, kind="attribute", value=None, attribute="split", index=i, factor=1)
                          for i in range(2)]
            return list(sp.outputs), sites
        if len(rs) != 2:
            raise bad(rs[0], f"has {len(rs)} Slice readers, expected two halves")
        halves: list[tuple[int, ir.Value]] = []
        for sl in rs:
            if sl.inputs[0] is not y or len(sl.inputs) < 3:
                raise bad(sl, "does not slice the intermediate's output")
            axes = small_const(sl.inputs[3]) if len(sl.inputs) > 3 and sl.inputs[3] is not None else None
            steps = small_const(sl.inputs[4]) if len(sl.inputs) > 4 and sl.inputs[4] is not None else None
            if axes is None or axes.size != 1 or not last_axis(int(axes.reshape(-1)[0])):
                raise bad(sl, "is not a slice along the last axis")
            if steps is not None and (steps.size != 1 or int(steps.reshape(-1)[0]) != 1):
                raise bad(sl, "has a step")
            bounds = []
            for j in (1, 2):
                bv = sl.inputs[j]
                c = small_const(bv)
                if c is None:
                    if not shape_derived(bv, self._shape_memo):
                        raise bad(sl, "has bounds computed from data")
                    bounds.append(None)  # computed from the intermediate's shape at run time
                    continue
                if c.size != 1:
                    raise bad(sl, "has more than one bound")
                val = int(c.reshape(-1)[0])
                if val in (f, f2):
                    sites.append(FFNSite(node=sl, kind=const_kind(bv), value=bv, attribute=None, index=0,
                                         factor=1 if val == f else 2))
                elif val != 0 and val < 2 ** 31 - 1:
                    raise bad(sl, f"has a bound {val} that is neither 0, {f} nor {f2}")
                bounds.append(val)
            start = bounds[0]
            halves.append((0 if start == 0 else 1, sl.outputs[0]))
        if sorted(h for h, _ in halves) != [0, 1]:
            raise bad(rs[0], "does not take the two halves (first slice must start at 0)")
        halves.sort(key=lambda t: t[0])
        return [v for _, v in halves], sites

    def ffn(self, ffn_in: ir.Value, h1: ir.Value, at: ir.Node, pre_norm: bool = False
            ) -> tuple[FFNBlock, ir.Value, ir.Node | None]:
        # (also through a float Cast: ONNX Runtime's level 99 of an fp16 model, the norm in fp16, the FFN in fp32)
        inters = [lin for lin in (self.linear(c) for c in self._readers_past_casts(ffn_in))
                  if lin is not None and _same_data(self.source(lin.node.inputs[0]), ffn_in)]
        gate = None
        if len(inters) == 2:
            inters, gate = self._own_gate(inters)
        if len(inters) != 1:
            raise StructureError(f"node '{_name(at)}' ({at.op_type}): attention output feeds {len(inters)} "
                                 f"projections, expected one FFN intermediate")
        inter = inters[0]
        chunk = self._glu_chunks(self.linear_output(inter), inter) if gate is None else None
        gated = chunk is not None
        ops: list[ir.Node] = []
        found: list[Linear] = []
        if gated:
            halves, sites = chunk
            seen: set[int] = {id(inter.node)} | {id(h.producer()) for h in halves}
            queue = deque(halves)
            # the chunk's shape arithmetic reads the intermediate through Shape only: not on the data path
            next_readers = data_consumers
        elif gate is not None:  # the activation's path; the gate's output joins it at the product
            sites = []
            seen = {id(inter.node), id(gate.node)}
            queue = deque()
            for lin in (inter, gate):
                ps = self.plane_sum(lin.node)
                if ps is not None:  # pack's split-binary planes: their sum is the projection's output
                    seen |= {id(ps)} | {id(i.producer()) for i in ps.inputs}
                queue.append(ps.outputs[0] if ps is not None else lin.node.outputs[0])
            next_readers = consumers
        else:
            sites = []
            seen = {id(inter.node)}
            queue = deque([inter.node.outputs[0]])
            ps = self.plane_sum(inter.node)
            if ps is not None:  # pack's split-binary planes: their sum is the intermediate's output
                seen |= {id(ps)} | {id(i.producer()) for i in ps.inputs}
                queue = deque([ps.outputs[0]])
            next_readers = consumers
        while queue:
            val = queue.popleft()
            for c in next_readers(val):
                if id(c) in seen:
                    continue
                seen.add(id(c))
                lin = self.linear(c)
                if lin is not None:
                    found.append(lin)
                    continue
                if c.op_type not in _ACT_OPS or len(ops) >= _MAX_ACT_NODES:
                    raise StructureError(f"node '{_name(c)}' ({c.op_type}): unexpected op between the FFN "
                                         f"intermediate '{_name(inter.node)}' and the FFN output projection")
                ops.append(c)
                # DynamicQuantizeLinear's scale / zero point feed the next projection's dequantization
                queue.extend(c.outputs[:1] if c.op_type == "DynamicQuantizeLinear" else c.outputs)
        if len(found) != 1:
            raise StructureError(f"node '{_name(inter.node)}' ({inter.node.op_type}): FFN intermediate reaches "
                                 f"{len(found)} projections, expected one FFN output")
        out = found[0]
        act = _activation_name(ops)
        if act is None:
            raise StructureError(f"node '{_name(inter.node)}' ({inter.node.op_type}): no recognised activation "
                                 f"between the FFN projections (ops: {sorted({n.op_type for n in ops})})")
        widths = {inter.out_features} | ({gate.out_features} if gate is not None else set())
        if not gated and (widths != {out.in_features} or inter.out_features == 0):
            raise StructureError(f"node '{_name(out.node)}' ({out.node.op_type}): the FFN output reads "
                                 f"{out.in_features} features where its intermediate '{_name(inter.node)}'"
                                 f"{' and gate' if gate is not None else ''} write {sorted(widths)} (a weight stored "
                                 f"the other way round, or an FFN without neurons: not a model that runs)")
        if gated and out.in_features * 2 != inter.out_features:
            raise StructureError(f"node '{_name(out.node)}' ({out.node.op_type}): gated FFN output reads "
                                 f"{out.in_features} features, expected half of the intermediate's "
                                 f"{inter.out_features}")
        if pre_norm:
            y, out_norm = self.pre_norm_residual(self.linear_output(out), h1, out.node)
        else:
            y, out_norm = self.residual_norm(self.linear_output(out), h1, out.node, "FFN output projection"), None
        block = FFNBlock(intermediate=inter, output=out, activation=act, gated=gated, sites=sites, gate=gate)
        return block, y, out_norm

    def _projected(self, lin: Linear) -> ir.Value:
        """What a projection hands on: its output after activation fake-quantization, or the sum of its two
        binary planes (pack's split-binary form, :meth:`plane_sum`)."""
        ps = self.plane_sum(lin.node)
        return ps.outputs[0] if ps is not None else self.past_qdq(self.linear_output(lin))

    def _own_gate(self, inters: list[Linear]) -> tuple[list[Linear], Linear | None]:
        """([the activation's intermediate], its gate) when two projections read the FFN input and their
        outputs meet in one elementwise product, one through an activation and the other directly (T5 v1.1,
        flan-T5: ``wo(act(wi_0 x) * wi_1 x)``); else (inters, None): the caller refuses two intermediates."""
        direct = []
        for lin in inters:
            out = self._projected(lin)
            c = single_consumer(out)
            if c is not None and c.op_type == "Mul" and len(c.inputs) == 2:
                direct.append((lin, c))
        if len(direct) == 1:
            gate, mul = direct[0]
            act = next(lin for lin in inters if lin is not gate)
            other = mul.inputs[1] if self._projected(gate) is mul.inputs[0] else mul.inputs[0]
            # the other factor is the activation of the other projection (a few elementwise ops from it)
            frontier, seen, depth = [self._projected(act)], set(), 0
            while frontier and depth < _MAX_ACT_NODES:
                if any(v is other for v in frontier):
                    return [act], gate
                nxt = []
                for v in frontier:
                    for c in consumers(v):
                        if id(c) not in seen and c.op_type in _ACT_OPS and c is not mul:
                            seen.add(id(c))
                            nxt.extend(c.outputs)
                frontier, depth = nxt, depth + 1
        return inters, None

    # ------------------------------------------------------------------ whole graph
    def layer_nodes(self, x: ir.Value, y: ir.Value, extra: tuple[ir.Value, ...] = ()) -> list[ir.Node]:
        """Nodes on a path from the layer input x (or a value in ``extra``: a fused pre-LN layer's
        normalised input, produced next to x) to its output y, plus constants only they use."""
        starts = (x, *extra)
        back: set[int] = set()
        stack = [y.producer()]
        const_candidates: list[ir.Node] = []
        while stack:
            n = stack.pop()
            if n is None or id(n) in back:
                continue
            back.add(id(n))
            if all(i is None or self.cone.is_const(i) for i in n.inputs):
                const_candidates.append(n)
            for i in n.inputs:
                if i is not None and not any(i is s for s in starts) and not i.is_graph_input():
                    stack.append(i.producer())
        fwd: set[int] = set()
        stack = [c for s in starts for c in consumers(s)]
        while stack:
            n = stack.pop()
            if id(n) in fwd or id(n) not in back:
                continue
            fwd.add(id(n))
            if y in n.outputs:
                continue
            for o in n.outputs:
                stack.extend(consumers(o))
        # constant producers (Constant nodes holding shape pieces, head counts) used only inside the layer
        changed = True
        while changed:
            changed = False
            for n in const_candidates:
                if id(n) in fwd:
                    continue
                users = [c for o in n.outputs for c in consumers(o)]
                if users and all(id(c) in fwd for c in users):
                    fwd.add(id(n))
                    changed = True
        return [n for n in self.graph if id(n) in fwd]

    def _unread_attention(self, softmax: ir.Node) -> str | None:
        """Why a Softmax that :meth:`score_matmul` did not read still looks like attention: a MatMul of two
        activations a few ops before it (through any ops) and a MatMul of its output with another activation a
        few ops after it. None when it does not (a pooling head's softmax over a MatMul by a constant)."""
        stack, seen, between = [(softmax_input(softmax) or softmax_like_input(softmax), 0)], set(), []
        score = None
        while stack and score is None:
            v, depth = stack.pop(0)
            p = v.producer() if v is not None else None
            if p is None or id(p) in seen or depth > 6:
                continue
            seen.add(id(p))
            data = [i for i in p.inputs if i is not None and not self.cone.is_const(i)]
            if p.op_type in _ACT_PRODUCTS and len(data) == 2 and len(p.inputs) >= 2:
                score = p
                break
            if p.op_type not in _MASK_OPS and p.op_type not in between:
                between.append(p.op_type)
            stack.extend((i, depth + 1) for i in data)
        if score is None:
            return None
        frontier, seen = [(softmax.outputs[0], 0)], set()
        while frontier:
            v, depth = frontier.pop(0)
            for c in consumers(v):
                if id(c) in seen or depth > 6:
                    continue
                seen.add(id(c))
                if c.op_type in _ACT_PRODUCTS and len(c.inputs) >= 2:
                    other = c.inputs[1] if c.inputs[0] is v else c.inputs[0]
                    if other is not None and not self.cone.is_const(other):
                        return (f"node '{_name(softmax)}' ({softmax.op_type}): it looks like attention (the MatMul "
                                f"'{_name(score)}' of two activations before it, '{_name(c)}' applying it to another "
                                f"after it) but its scores come through {', '.join(between) or 'ops'}, which the "
                                f"structure finder does not follow; refusing rather than reading the other layers "
                                f"alone (layers would be numbered wrongly)")
                frontier.extend((o, depth + 1) for o in c.outputs)
        return None

    def find(self) -> EncoderStructure:
        found: list[tuple[int, AttentionBlock, ir.Value]] = []
        fused_any = False
        for node in self.graph:
            if is_softmax(node):
                r = self.unfused_attention(node)
                if r is not None:
                    found.append((self.position[id(node)], *r))
                elif (why := self._unread_attention(node)) is not None:
                    raise StructureError(why)
            elif softmax_like_input(node) is not None and self._unread_attention(node) is not None:
                raise StructureError(f"node '{_name(node)}' (Div, output '{node.outputs[0].name}'): it looks like "
                                     f"attention's softmax written out as Exp/ReduceSum/Div, but not one over the last "
                                     f"axis whose Exp only it reads; refusing rather than reading the other layers "
                                     f"alone (layers would be numbered wrongly)")
            elif node.op_type in ("Attention", "MultiHeadAttention", "QAttention") and node.domain == "com.microsoft":
                found.append((self.position[id(node)], *self.fused_attention(node)))
                fused_any = True
            elif node.op_type == "Attention" and node.domain in ("", "ai.onnx"):
                found.append((self.position[id(node)], *self.onnx_attention(node)))
        if not found:
            raise StructureError(_no_attention_reason(self.graph))
        found.sort(key=lambda t: t[0])
        layers: list[EncoderLayer] = []
        for i, (_, att, a) in enumerate(found):
            anchor = att.fused or att.o.node
            layer = self.bottleneck_layer(i, att, a)
            if layer is None:
                if att.v is not None and self.source(att.v.node.inputs[0]) is not a:
                    raise StructureError(f"node '{_name(att.v.node)}' ({att.v.node.op_type}): V does not read the "
                                         f"hidden state Q and K read, and the layer is not a bottleneck layer "
                                         f"(cross-attention or a decoder is not supported)")
                pre, x, h1, ffn_in = self.attention_residual(self.linear_output(att.o), a, att.o.node)
            else:
                pre, x = False, layer.input
            if layers and layers[-1].pre_norm != pre:
                raise StructureError(f"node '{_name(anchor)}' ({anchor.op_type}): layer {i} is "
                                     f"{'pre' if pre else 'post'}-LayerNorm, layer {i - 1} is not")
            if layers and layers[-1].output is not x and self._uncast(x) is layers[-1].output:
                # ORT's level-99 graph of an fp16 model: the layer computes in fp32 between Casts, its output
                # LayerNorm in fp16; the Cast back to fp32 belongs to the next layer, which reads it
                x = self._uncast(x)
                if layer is not None:  # a bottleneck layer (MobileBERT) reads it with its input bottleneck
                    layer.input = x
            if layers and layers[-1].output is not x and not self._masked(x, layers[-1].output):
                kind = "pre-LayerNorm " if pre else ""
                raise StructureError(f"node '{_name(anchor)}' ({anchor.op_type}): {kind}layer {i} does not "
                                     f"read the hidden state layer {i - 1} writes (a layer structure not "
                                     f"recognised)")
            extra: tuple[ir.Value, ...] = ()
            if layer is None:
                ffn, y, out_norm = self.ffn(ffn_in, h1, anchor, pre)
                layer = EncoderLayer(index=i, attention=att, ffn=ffn, input=x, output=y, attention_output=h1,
                                     pre_norm=pre, attention_input=a, output_norm=out_norm)
                # a fused pre-LN layer reads LN(x) from the SkipLayerNormalization that also outputs x
                # (or a float Cast of that LN(x): ONNX Runtime's level 99 of an fp16 model, Q/K/V in fp32)
                if pre and a is not x and _producer_past_casts(a) is not None and \
                        _producer_past_casts(a) is x.producer():
                    extra = (a,)
                elif pre and _precision_root(x) is not x:
                    # ORT's level 99 of an fp16 model: the residual Add reads x cast to fp32 and the norm another
                    # float Cast of the same value (T5's first layer: of the embeddings), or the value itself (the
                    # first layer of ORT's own fp16 model: the norm in fp32 reads the embeddings, the fused
                    # SkipLayerNormalization their fp16 Cast)
                    extra = (_precision_root(x), *(c.outputs[0] for c in consumers(_precision_root(x))
                                                   if c.op_type == "Cast" and c.outputs[0] is not x
                                                   and "to" in c.attributes and c.attributes["to"].value in _FLOATS))
            layer.nodes = self.layer_nodes(x, layer.output, extra)
            rel_nodes = self._rel_nodes.get(id(att))
            if rel_nodes:  # DeBERTa: the position projections' view, Tile and Transpose belong to the layer
                ids = {id(n) for n in layer.nodes} | {id(n) for n in rel_nodes}
                layer.nodes = [n for n in self.graph if id(n) in ids]
            layers.append(layer)
        self._mark_shared(layers)
        in_layer = {id(n) for layer in layers for n in layer.nodes}
        for layer in layers:  # projections must be inside their layer (guards against odd wiring)
            for lin in layer.linears():
                in_layer.add(id(lin.node))
        other = [lin for lin in (self.linear(n) for n in self.graph if id(n) not in in_layer) if lin is not None]
        embeddings = self.embeddings(layers[0].input)
        bottlenecked = any(la.bottlenecks for la in layers)
        # the width of the stream between layers (a bottleneck layer's attention works at a narrower one)
        hidden = layers[0].bottlenecks[-1].out_features if bottlenecked else layers[0].attention.o.out_features
        family = self.family(embeddings, other)
        if bottlenecked and family_hint(self.model) is None:
            family = "mobilebert"
        if family_hint(self.model) is None and any(la.attention.qkv_interleaved and la.attention.head_constants
                                                   for la in layers):
            family = "deberta"  # v1's per-head in_proj and q/v biases, where the export kept no module path
        if family_hint(self.model) is None and any(la.attention.position_terms for la in layers):
            family = "nezha"  # its position terms on the scores and the context, where no module path names it
        return EncoderStructure(family=family, hidden_size=hidden, layers=layers,
                                embeddings=embeddings, fused=fused_any, exporter=self.exporter(fused_any),
                                other_linears=other)

    def bottleneck_layer(self, i: int, att: AttentionBlock, a: ir.Value) -> EncoderLayer | None:
        """Layer ``i`` as a bottleneck layer (MobileBERT, see the structure contract), or None when the
        attention's residual is not a bottleneck of the layer input. Through float Casts (ONNX Runtime's level 99
        of an fp16 model)."""
        y = self._past_float_cast(self.past_qdq(self.linear_output(att.o)))
        c = single_consumer(y)
        if c is None or c.op_type not in ("Add", "Sum", "SkipLayerNormalization") or len(c.inputs) < 2:
            return None
        srcs = tuple(self.source(v) for v in c.inputs[:2])
        r = srcs[1] if srcs[0] is y or c.inputs[0] is y else srcs[0]
        bn = self.bottleneck(r)
        if bn is None:
            return None
        try:
            return self._bottleneck_layer(i, att, a, c, r, bn)
        except StructureError:
            if r is a:
                # Q, K and V read the attention residual itself: a bottleneck layer only if the FFNs end in an
                # output bottleneck (an ordinary layer whose input happens to be norm(projection) does not)
                return None
            raise

    def _bottleneck_layer(self, i: int, att: AttentionBlock, a: ir.Value, c: ir.Node, r: ir.Value,
                          bn: tuple[Linear, ir.Value]) -> EncoderLayer:
        r_lin, x = bn
        anchor = att.o.node
        bottlenecks = [r_lin]
        if not _same_data(a, r) and not _same_data(a, x):  # Q and K share a bottleneck of their own
            qk = self.bottleneck(a)
            if qk is None or not _same_data(qk[1], x):
                raise StructureError(f"node '{_name(att.q.node)}' ({att.q.node.op_type}): in a bottleneck layer Q "
                                     f"and K read neither the layer input, its input bottleneck, nor a bottleneck "
                                     f"of it")
            bottlenecks.append(qk[0])
        vx = self.source(att.v.node.inputs[0]) if att.v is not None else a  # fused / packed QKV: one input
        if not any(_same_data(vx, v) for v in (x, r, a)):
            raise StructureError(f"node '{_name(att.v.node)}' ({att.v.node.op_type}): in a bottleneck layer V reads "
                                 f"neither the layer input nor one of its bottlenecks")
        # ORT's SkipLayerNormalization is the residual Add and its LayerNorm in one node
        h1 = c.outputs[0] if c.op_type == "SkipLayerNormalization" else self.layer_norm_after(c.outputs[0], c)
        ffns: list[FFNBlock] = []
        h = h1
        for _ in range(16):
            if ffns:
                ob = self.output_bottleneck(h, x)
                if ob is not None:
                    bottlenecks.append(ob[0])
                    out = ob[1]
                    break
            block, h, _ = self.ffn(h, h, anchor if not ffns else ffns[-1].output.node, False)
            ffns.append(block)
        else:
            raise StructureError(f"node '{_name(anchor)}' ({anchor.op_type}): bottleneck layer {i}: no output "
                                 f"bottleneck back to the layer input's width after 16 FFNs")
        return EncoderLayer(index=i, attention=att, ffn=ffns[-1], ffns=ffns, bottlenecks=bottlenecks, input=x,
                            output=out, attention_output=h1, pre_norm=False, attention_input=a)

    def _mark_shared(self, layers: list[EncoderLayer]) -> None:
        owner: dict[int, set[int]] = {}
        for layer in layers:
            for s in layer.attention.head_sites:
                for obj in (s.node, s.value):
                    if obj is not None:
                        owner.setdefault(id(obj), set()).add(layer.index)
        for layer in layers:
            # a site is private when every reader of its tensor (and of its Concat) is in this layer
            local = {id(n) for n in layer.nodes} | {id(s.node) for s in layer.attention.head_sites}
            for s in layer.attention.head_sites:
                if s.kind == "attribute":
                    continue
                shared = len(owner.get(id(s.node), ())) > 1 or len(owner.get(id(s.value), ())) > 1
                if any(id(c) not in local for c in consumers(s.value)):
                    shared = True
                if s.node.op_type == "Concat" and any(id(c) not in local for c in consumers(s.node.outputs[0])):
                    shared = True
                s.shared = shared

    def embeddings(self, first_input: ir.Value) -> dict[str, ir.Value]:
        p = first_input.producer()
        emb: dict[str, ir.Value] = {}
        # upstream region of the first layer
        region: list[ir.Node] = []
        seen: set[int] = set()
        stack = [p]
        while stack:
            n = stack.pop()
            if n is None or id(n) in seen:
                continue
            seen.add(id(n))
            region.append(n)
            for i in n.inputs:
                if i is not None and not i.is_graph_input():
                    stack.append(i.producer())
        for n in region:
            if n.op_type in ("EmbedLayerNormalization", "QEmbedLayerNormalization"):
                for key, idx in (("word", 2), ("position", 3), ("token_type", 4)):
                    if len(n.inputs) > idx and n.inputs[idx] is not None:
                        emb[key] = n.inputs[idx]
                return emb
        tables: list[tuple[ir.Value, bool, int]] = []
        for n in region:
            if n.op_type != "Gather" or not n.inputs or n.inputs[0] is None:
                continue
            axis = n.attributes["axis"].value if "axis" in n.attributes else 0
            table = self._stored_const(n.inputs[0])  # QDQ: the int8/uint8 table a DequantizeLinear reads
            t = const_tensor(table) if table is not None else None
            if axis != 0 or t is None or len(t.shape) != 2:
                continue
            if not t.dtype.is_floating_point() and self.packing_info(table) is None and \
                    t.dtype.name not in ("INT8", "UINT8"):
                continue
            idx = n.inputs[1]
            # the ids themselves, or a cast, a slice or a view of them (XLM: input_ids[:, -slen:] behind a key/value
            # cache; T5: input_ids.view(-1, seq))
            while idx is not None and idx.producer() is not None and idx.producer().op_type in ("Cast", "Identity",
                                                                                              "Slice", "Reshape"):
                idx = idx.producer().inputs[0]
            tables.append((table, idx is not None and idx.is_graph_input(), int(t.shape[0])))
        direct = [t for t in tables if t[1]]
        if direct:
            word = max(direct, key=lambda t: t[2])
            emb["word"] = word[0]
            tables = [t for t in tables if t[0] is not word[0]]
        small = [t for t in tables if t[2] <= 16]
        if small:
            tt = min(small, key=lambda t: t[2])
            emb["token_type"] = tt[0]
            tables = [t for t in tables if t[0] is not tt[0]]
        if tables:
            pos = max(tables, key=lambda t: t[2])
            emb["position"] = pos[0]
            for j, t in enumerate(t for t in tables if t[0] is not pos[0]):
                emb[f"extra_{j}"] = t[0]
        self._region_ops = {n.op_type for n in region}
        self._region_linears = sum(1 for n in region if self.linear(n) is not None)
        return emb

    def family(self, emb: dict[str, ir.Value], other: list[Linear]) -> str:
        hint = family_hint(self.model)
        if hint:
            return hint
        names = " ".join(v.name or "" for v in emb.values()).lower()
        for fam in ("distilbert", "roberta", "electra", "bert"):
            if fam in names:
                return fam
        ops = getattr(self, "_region_ops", set())
        if "CumSum" in ops:  # position ids computed from the padding mask
            return "roberta"
        if getattr(self, "_region_linears", 0):  # embedding_size != hidden: ELECTRA's embeddings_project
            return "electra"
        if "token_type" not in emb and emb:
            return "distilbert"
        return "bert" if emb else "unknown-encoder"

    def exporter(self, fused: bool) -> str:
        hint = self.meta.get("deploytool.exporter")
        if fused or any(n.domain == "com.microsoft" and n.op_type in _FUSION_OPS for n in self.graph):
            return "ort-fused"
        if hint:
            return hint
        names = [n.name or "" for n in self.graph]
        if names and sum(nm.startswith("node_") for nm in names) > len(names) // 2:
            return "dynamo"
        if names and sum(nm.startswith("/m/") for nm in names) > len(names) // 2:
            return "torch"
        if names and sum(nm.startswith("/") for nm in names) > len(names) // 2:
            # TorchScript's module-path names: optimum's export or a plain torch.onnx.export, which write the same
            return "torchscript"
        return "unknown"


# families recognised from module paths that exporters keep in node or initializer names (only to
# name the family and say what is missing; roles are always found by structure)
_FAMILY_SIGNATURES = (
    # NomicBERT (nomic-embed-text; Nomic's own code): before ModernBERT, whose fused QKV is also named Wqkv
    ("nomic_bert", ("mlp.fc11", "mlp/fc11", "mlp.fc12", "mlp/fc12", "emb_ln")),
    # GTE v1.5 / gte-multilingual (Alibaba's "NewModel" code): qkv_proj split in three before the head views
    ("gte", ("up_gate_proj", "attention/qkv_proj", "attention.qkv_proj", "attn_ln", "mlp_ln")),
    # JinaBERT v2 (jina-embeddings-v2; Jina's own code): BERT's module paths plus its GLU MLP's one projection to 2F
    # (gated_layers; up_gated_layer in the qk-post-norm variant, with layer_norm_q / layer_norm_k over all heads)
    ("jina_bert", ("mlp.gated_layers", "mlp/gated_layers", "mlp.up_gated_layer", "mlp/up_gated_layer",
                   "self.layer_norm_q", "self/layer_norm_q")),
    ("modernbert", ("wqkv", "mlp.wi", "mlp/wi", "attn_norm", "mlp_norm", "tok_embeddings", "final_norm")),
    # DeBERTa v1 (before v2: it also has rel_embeddings and pos_proj): one per-head packed in_proj, its own
    # q/v biases, the position-to-query projection pos_q_proj
    ("deberta", ("attention.self.in_proj", "attention/self/in_proj", "pos_q_proj", "self.q_bias", "self.v_bias")),
    ("deberta-v2", ("rel_embeddings", "pos_key_proj", "pos_query_proj", "pos_proj", "rel_attn", "query_proj",
                    "key_proj", "value_proj")),
    ("mobilebert", ("bottleneck",)),
    # ConvBERT: its attention concatenates span-based dynamic convolution heads to the self-attention heads
    ("convbert", ("conv_kernel_layer", "conv_out_layer", "key_conv_attn_layer")),
    ("albert", ("albert_layer_groups", "albert_layers")),
    # T5's encoder (T5EncoderModel, mT5, sentence-t5): before MPNet, whose keys include relative_attention_bias
    ("t5", ("densereludense", "selfattention.relative_attention_bias", "selfattention/relative_attention_bias",
            "encoder.final_layer_norm", "encoder/final_layer_norm")),
    ("mpnet", ("relative_attention_bias", "attention/attn/", "attention.attn.")),
    ("esm", ("emb_layer_norm_after", "rotary_embeddings")),
    ("roformer", ("embed_positions",)),
    ("rembert", ("embedding_hidden_mapping_in",)),
    ("nezha", ("relative_positions_encoding",)),  # its functional relative positions (a fixed table)
    # XLM / FlauBERT (before DistilBERT: both name their projections q_lin): layers as parallel lists
    ("xlm", ("attentions.0", "attentions/0", "layer_norm_emb", "ffns.0", "ffns/0")),
    ("distilbert", ("q_lin", "transformer/layer", "transformer.layer")),
    ("electra", ("embeddings_project",)),
)
# families whose MatMul constants are not all projection weights (DeBERTa's relative-position projections share
# the Q/K weights or are folded into constants): where the finder cannot read such a graph, packing every MatMul
# weight would quantize one use of a weight and not the other, so pack refuses
PACK_NEEDS_STRUCTURE = frozenset({"deberta", "deberta-v2"})

# families the finder reads by structure (pre-LN residuals, packed QKV, rotary embeddings, GLU FFN) whose
# refusals name the family: what a graph of that family may still lack
_NAMED_WHEN_REFUSED = {
    "modernbert": "this graph's pre-LayerNorm / packed Wqkv + rotary / GeGLU wiring is",
    "t5": "this graph's RMS-normalised pre-norm / shared position bias / gated FFN wiring is",
    "nomic_bert": "this graph's packed Wqkv with rotary Q/K stacked back with V / SwiGLU wiring is",
    "gte": "this graph's qkv_proj split before its head views / rotary / GLU wiring is",
    "jina_bert": "this graph's ALiBi bias / GLU wiring or a LayerNorm over all heads of Q and K (qk-post-norm) is",
}
# families no form of which the structured passes edit: refused by name, whatever node the finder stopped at
_NEVER_STRUCTURED = {
    # head_ratio of its heads are span-based dynamic convolutions whose outputs are concatenated to the
    # self-attention context: removing a head or a layer's width has no meaning the passes implement
    "convbert": "ConvBERT's mixed convolution attention (span-based dynamic convolution heads beside its "
                "self-attention heads, head_ratio) is not supported by the structured passes (slice, prune-heads, "
                "prune-ffn, reorder)",
}


def family_hint(model: ir.Model) -> str | None:
    """The family named by the export's module paths (or deploytool's metadata), if any."""
    meta = dict(model.metadata_props).get("deploytool.family")
    if meta:
        return meta
    return family_of_names([n.name or "" for n in model.graph] + [k or "" for k in model.graph.initializers])


def family_of_names(names) -> str | None:
    """The family whose module paths (:data:`_FAMILY_SIGNATURES`) appear in ``names`` (node, initializer or
    PyTorch parameter names), if any."""
    # one string searched per key (in C): a key is found in it exactly where it is in one of the names, none of
    # which holds the separator (a key holds no newline); a scan of every name for every key took 9 ms per call
    # on a 6-layer graph, and the finder asks several times per pass
    text = "\n".join(nm.lower().replace("\n", " ") for nm in names)
    for fam, keys in _FAMILY_SIGNATURES:
        if any(k in text for k in keys):
            return fam
    return None


def _walk_back(start: ir.Value | None, limit: int, visit) -> None:
    """Depth-first from ``start`` over values, each at most once and at most ``limit`` of them; ``visit(v)``
    returns the values to go on to (its producer's inputs it follows), or None to stop the walk."""
    stack, seen = [start], set()
    while stack and len(seen) < limit:
        v = stack.pop()
        if v is None or id(v) in seen:
            continue
        seen.add(id(v))
        nxt = visit(v)
        if nxt is None:
            return
        stack.extend(nxt)


def _table_rank(v: ir.Value | None) -> int | None:
    """Rank of a constant table read through Slices, Transposes and casts (NeZha's relative-position encodings
    cut to the sequence length), or None."""
    for _ in range(8):
        if v is None:
            return None
        t = const_tensor(v)
        if t is not None:
            return len(t.shape)
        p = v.producer()
        if p is None or p.op_type not in ("Slice", "Transpose", "Cast", "Identity") or not p.inputs:
            return None
        v = p.inputs[0]
    return None


def _one_element(v: ir.Value | None, depth: int = 0) -> bool:
    """True when ``v`` surely holds one number, read without shape annotations: a one-element constant, a
    length read from a shape, or arithmetic of such (a pass forgets the annotations it may have changed)."""
    if v is None or depth > 12:
        return False
    if v.shape is not None and all(isinstance(d, int) for d in v.shape):
        return int(np.prod([int(d) for d in v.shape])) == 1
    c = small_const(v)
    if c is not None:
        return c.size == 1
    p = v.producer()
    if p is None or not p.inputs:
        return False
    if p.op_type == "Shape":  # of one axis (start, end)
        return _Finder._piece_len(v) == 1
    if p.op_type == "Gather" and len(p.inputs) > 1:  # one element of a 1-D shape
        ind = small_const(p.inputs[1])
        src = p.inputs[0].producer() if p.inputs[0] is not None else None
        return ind is not None and ind.size == 1 and src is not None and src.op_type == "Shape"
    if p.op_type in ("Squeeze", "Unsqueeze", "Reshape", "Cast", "Identity"):
        return _one_element(p.inputs[0], depth + 1)
    if p.op_type in ("Mul", "Add", "Sub", "Div", "Mod", "Max", "Min", "Floor", "Ceil", "Neg"):
        return all(i is not None and _one_element(i, depth + 1) for i in p.inputs)
    return False


def _holds_constant(v: ir.Value, n: int) -> bool:
    """True when a Mul or Concat on the way to ``v`` (a value computed from shapes) takes a constant holding
    ``n``: a head count written into a computed view."""
    found = []

    def visit(x: ir.Value):
        p = x.producer()
        if p is None or p.op_type in ("Shape", "Size"):  # a length read at run time: not the data before it
            return ()
        if p.op_type in ("Mul", "Concat") and any(
                (a := small_const(i)) is not None and n in a.reshape(-1).tolist() for i in p.inputs):
            found.append(p)
            return None
        return p.inputs

    _walk_back(v, 64, visit)
    return bool(found)


def _same_for_all_heads(v: ir.Value) -> bool:
    """True when ``v``, a term added to [..., heads, S, S] scores, has a fixed shape that broadcasts over the
    head axis (rank below 3, or 1 at axis -3)."""
    shape = static_shape(v)
    return shape is not None and (len(shape) < 3 or shape[-3] == 1)


def _activation_name(ops: list[ir.Node]) -> str | None:
    types = {n.op_type for n in ops}
    for n in ops:
        if n.op_type == "Gelu":
            approx = n.attributes["approximate"].value if "approximate" in n.attributes else "none"
            return "gelu_tanh" if approx == "tanh" else "gelu"
    if "FastGelu" in types:
        return "gelu_tanh"
    if "BiasGelu" in types or "Erf" in types:
        return "gelu"
    if "Tanh" in types:
        return "gelu_tanh"
    if "QuickGelu" in types:
        return "quick_gelu"
    if "Relu" in types:
        return "relu"
    if "Sigmoid" in types:
        return "silu"
    return None


def _no_attention_reason(graph: ir.Graph) -> str:
    nodes = list(graph)
    if not nodes:
        return "graph has no nodes: not an encoder"
    odd = next((n for n in nodes if n.op_type in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LSTM", "GRU",
                                                     "RNN", "GlobalAveragePool")), None)
    if odd is not None:
        return (f"node '{_name(odd)}' ({odd.op_type}): not a Transformer encoder (no self-attention: "
                f"no Softmax over Q.K^T and no fused Attention node)")
    soft = next((n for n in nodes if n.op_type == "Softmax"), None)
    if soft is not None:
        return (f"node '{_name(soft)}' (Softmax): not attention scores (no MatMul of two activations before it); "
                f"no self-attention found")
    last = nodes[-1]
    return (f"no self-attention found (no Softmax over Q.K^T, no fused Attention); last node '{_name(last)}' "
            f"({last.op_type}): not a Transformer encoder")


def find_structure(model: ir.Model) -> EncoderStructure:
    """Locate every encoder layer's attention and FFN. Raises StructureError when it cannot.

    ``model``: an ``onnx_ir`` Model, or the path of an .onnx file (loaded here)."""
    if not isinstance(model, ir.Model):
        import os

        from deploytool.choices import as_path
        from deploytool.errors import ConfigError

        if not isinstance(model, (str, bytes, os.PathLike)):
            raise ConfigError(f"model: expected an onnx_ir Model or an .onnx file path, got {type(model).__name__}")
        from deploytool.onnx_io import load_model

        model = load_model(as_path(model, "model", "an .onnx file path"))
    hint = family_hint(model)
    if hint in _NEVER_STRUCTURED:  # refused before reading: a layer found in such a graph would be a wrong reading
        raise StructureError(f"{hint}: {_NEVER_STRUCTURED[hint]}")
    try:
        return _Finder(model).find()
    except StructureError as e:
        dropout = _training_dropout(model)
        if dropout is not None:  # the finder reads an inference graph; say what is wrong with this one
            raise StructureError(f"node '{dropout.name}' (Dropout) runs in training mode (training_mode true): the "
                                 "model was exported in training mode; export it again after model.eval()") from e
        causal = _causal_mask(model) if hint not in _NAMED_WHEN_REFUSED else None
        if causal is not None:  # a decoder exported with its mask written out (GPT-2, Llama): say so, not only how
            msg = " ".join(str(e).split())  # its attention differs from an encoder's
            raise StructureError(f"node '{causal.name}' ({causal.op_type}) compares key positions with query "
                                 "positions, as a causal mask does: this looks like a decoder, and the structured "
                                 f"passes read bidirectional encoders ({msg})") from e
        if hint in _NAMED_WHEN_REFUSED:
            # a graph of a family read by structure only in the forms seen so far: name the family and the
            # piece this graph lacks, in one line
            msg = " ".join(str(e).split())
            raise StructureError(f"{hint}: {msg} ({_NAMED_WHEN_REFUSED[hint]} not supported by the structured "
                                 f"passes in this form)") from e
        raise


def _training_dropout(model: ir.Model) -> ir.Node | None:
    """The first Dropout whose ``training_mode`` input is a constant true (an export of a module left in train
    mode), or None."""
    for node in model.graph.all_nodes():
        if node.op_type == "Dropout" and node.domain in ("", "ai.onnx") and len(node.inputs) > 2:
            c = small_const(node.inputs[2]) if node.inputs[2] is not None else None
            if c is not None and c.size == 1 and bool(c.reshape(-1)[0]):
                return node
    return None


_POSITION_OPS = frozenset({"Unsqueeze", "Reshape", "Cast", "Add", "Expand", "Slice", "Squeeze", "Identity",
                           "Transpose", "View"})


def _from_range(v: ir.Value | None, depth: int = 6) -> bool:
    """Whether ``v`` is positions: a ``Range``'s output through at most ``depth`` reshaping, casting or offsetting
    nodes (a Sub of two position tensors is a relative position, not positions: not followed)."""
    seen: set[int] = set()
    todo = [(v, 0)]
    while todo:
        x, d = todo.pop()
        node = x.producer() if x is not None else None
        if node is None or id(node) in seen or d > depth:
            continue
        seen.add(id(node))
        if node.op_type == "Range":
            return True
        if node.op_type in _POSITION_OPS:
            todo.extend((i, d + 1) for i in node.inputs if i is not None and small_const(i) is None)
    return False


def _causal_mask(model: ir.Model) -> ir.Node | None:
    """The first comparison of two position tensors (``kv_idx <= q_idx``: how transformers writes a decoder's causal
    mask without an attention op), or None. Asked only of a graph the finder could not read: it names why."""
    for node in model.graph.all_nodes():
        if (node.op_type in ("Less", "LessOrEqual", "Greater", "GreaterOrEqual") and len(node.inputs) == 2
                and all(i is not None and small_const(i) is None and _from_range(i) for i in node.inputs)):
            return node
    return None


def _is_scalar(v: ir.Value | None, value: float) -> bool:
    """True when ``v`` is a constant holding ``value`` alone (any shape of one element)."""
    c = small_const(v) if v is not None else None
    return c is not None and c.size == 1 and float(c.reshape(-1)[0]) == value
