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
- Fused attention: a com.microsoft ``Attention`` node (packed QKV weight [hidden, 3*hidden],
  ``num_heads`` attribute), its output feeding O.
- Post-LayerNorm residual: O's output is added to the layer input and normalised
  (``LayerNormalization``, ``SkipLayerNormalization`` or the decomposed ReduceMean/Sub/Pow/... form);
  that value feeds exactly one projection (FFN intermediate), whose output goes through an
  activation into a second projection (FFN output), added back to the same value and normalised: the
  layer's output.
- Head counts come from the Reshape that splits Q/K/V into [B, S, heads, head_size] (a constant shape
  or a Concat of shape pieces; positions are counted from the end, so leading dynamic dims are fine)
  and the Reshape that merges the context back to [B, S, heads*head_size].
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

import json
import logging
from collections import deque

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
    shape_derived,
    single_consumer,
    small_const,
)
from deploytool.graph.structure import (
    AttentionBlock,
    EncoderLayer,
    EncoderStructure,
    FFNBlock,
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
_MASK_OPS = {"Add", "Sub", "Mul", "Div", "Where", "Cast", "Identity", "Max", "Min", "Clip", "Dropout",
             "QuantizeLinear", "DequantizeLinear"}
_ACT_OPS = {"Gelu", "FastGelu", "BiasGelu", "Relu", "Erf", "Tanh", "Sigmoid", "Div", "Mul", "Add", "Pow",
            "Sqrt", "Cast", "Identity", "Dropout", "QuickGelu", "Sub"} | _QUANT_IN
_MAX_ACT_NODES = 40


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
        try:
            self.packing = json.loads(self.meta.get("deploytool.packing", "{}")) or {}
        except ValueError:
            self.packing = {}
        if not isinstance(self.packing, dict):
            self.packing = {}
        # packed initializers are named after the original weight (``<name>_trit5``, ``<name>_int2``)
        self._packed_prefix = {k.replace("::", "_").replace("/", "_") + "_": v for k, v in self.packing.items()
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

    def tail(self, node: ir.Node) -> ir.Value:
        """The float product of a projection: after MatMulInteger's Cast and scale Mul (or a QDQ pair)."""
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
    def linear(self, node: ir.Node | None) -> Linear | None:
        """A Linear for ``node`` if it is a projection with a constant weight, else None."""
        if node is None or node.op_type not in LINEAR_OPS or len(node.inputs) < 2:
            return None
        x, w = node.inputs[0], node.inputs[1]
        if x is None or w is None or self.cone.is_const(x) or not self.cone.is_const(w):
            return None
        weight = self._weight_root(w)
        layout, in_f, out_f = self._weight_geometry(node, w, weight)
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
        plumbing: list[ir.Node] = []
        for _ in range(16):
            if v is None:
                return None, plumbing
            p = v.producer()
            if p is None:
                return None, plumbing
            if p.op_type in LINEAR_OPS:
                return self.linear(p), plumbing
            if p.op_type == "Add" and len(p.inputs) == 2:
                a, b = p.inputs
                if self.cone.is_const(b) and not self.cone.is_const(a):
                    v = a
                elif self.cone.is_const(a) and not self.cone.is_const(b):
                    v = b
                else:
                    return None, plumbing
                continue
            if p.op_type == "Mul" and len(p.inputs) == 2:  # MatMulInteger's dequantizing scale
                mmi = next((self._integer_matmul(i) for i in p.inputs if self._integer_matmul(i) is not None), None)
                if mmi is not None and self.tail(mmi) is v:
                    return self.linear(mmi), plumbing
            if p.op_type in _SCALE and len(p.inputs) == 2:
                # a scalar scale: a constant (eager attention) or computed from shapes only (SDPA
                # exports scale Q and K each by Sqrt(1/sqrt(head_size)) taken from Shape at run time)
                a, b = p.inputs
                if self._is_scale(b):
                    v = a
                elif self._is_scale(a) and p.op_type == "Mul":
                    v = b
                else:
                    return None, plumbing
                plumbing.append(p)
                continue
            if p.op_type in _PLUMBING:
                plumbing.append(p)
                v = p.inputs[0]
                continue
            return None, plumbing
        return None, plumbing

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
            if len(pieces) >= 2 and pieces[-2][0] == num_heads and pieces[-2][1] is not None:
                add(pieces[-2][1], "num_heads")
        for r in merge_reshapes:
            pieces = self.shape_pieces(r)
            if pieces and pieces[-1][0] == all_head and pieces[-1][1] is not None:
                add(pieces[-1][1], "all_head_size")
        return sites

    # ------------------------------------------------------------------ attention
    def score_matmul(self, softmax: ir.Node) -> ir.Node | None:
        stack = [(softmax.inputs[0], 0)]
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
            if p.op_type in _MASK_OPS and depth < 6:
                for i in p.inputs:
                    if i is not None and not self.cone.is_const(i):
                        stack.append((i, depth + 1))
        return None

    def context_matmul(self, softmax: ir.Node) -> ir.Node | None:
        frontier = [softmax.outputs[0]]
        for _ in range(4):
            nxt = []
            for v in frontier:
                for c in consumers(v):
                    if c.op_type == "MatMul" and c.inputs[0] is v:
                        return c
                    if c.op_type in ("Cast", "Identity", "Dropout", "Where", "QuantizeLinear", "DequantizeLinear"):
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
            raise StructureError(f"node '{_name(softmax)}' (Softmax): attention scores found but no MatMul "
                                 f"applies the probabilities to V")
        q, q_pl = self.trace_back(score.inputs[0])
        k, k_pl = self.trace_back(score.inputs[1])
        v, v_pl = self.trace_back(ctx.inputs[1])
        for name, lin, at in (("Q", q, score), ("K", k, score), ("V", v, ctx)):
            if lin is None:
                raise StructureError(f"node '{_name(at)}' (MatMul): cannot trace the {name} operand back to a "
                                     f"projection with constant weights")
        x = self.source(q.node.inputs[0])
        if self.source(k.node.inputs[0]) is not x or self.source(v.node.inputs[0]) is not x:
            raise StructureError(f"node '{_name(score)}' (MatMul): Q, K and V do not read the same hidden state "
                                 f"(cross-attention or a decoder is not supported)")
        # context -> Transpose/Reshape -> O
        cur, ctx_pl, o = ctx.outputs[0], [], None
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
            break
        if o is None:
            raise StructureError(f"node '{_name(ctx)}' (MatMul): the attention context does not reach an output "
                                 f"projection through Transpose/Reshape")
        heads, head_size = self.head_counts(q, q_pl, score)
        all_head = heads * head_size
        if k.out_features != all_head or v.out_features != all_head or o.in_features != all_head:
            raise StructureError(f"node '{_name(score)}' (MatMul): Q/K/V/O widths {q.out_features}/"
                                 f"{k.out_features}/{v.out_features}/{o.in_features} disagree with "
                                 f"{heads} heads x {head_size}")
        split = [n for n in q_pl + k_pl + v_pl if n.op_type == "Reshape"]
        merge = [n for n in ctx_pl if n.op_type == "Reshape"]
        sites = self.head_sites(split, merge, heads, all_head)
        block = AttentionBlock(num_heads=heads, head_size=head_size, q=q, k=k, v=v, o=o, head_sites=sites,
                               score_bias=self.score_bias(score, softmax))
        return block, x

    def score_bias(self, score: ir.Node, softmax: ir.Node) -> list[tuple[ir.Node, int]]:
        """Additive terms between the score MatMul and the Softmax that are neither a scale nor derived
        from a graph input's data (the padding mask is): a per-head position bias (MPNet)."""
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
                if other is not None and small_const(other) is None and self._has_table(other) \
                        and not self._reads_input_data(other):
                    out.append((n, i))
            v = n.outputs[0]
        return out

    @staticmethod
    def _has_table(v: ir.Value) -> bool:
        """True when a constant matrix (a bias table such as [buckets, heads]) feeds ``v``."""
        stack, seen = [v], set()
        while stack and len(seen) < 200:
            x = stack.pop()
            if x is None or id(x) in seen:
                continue
            seen.add(id(x))
            t = const_tensor(x)
            if t is not None:
                if len(t.shape) >= 2 and t.size > 1:
                    return True
                continue
            p = x.producer()
            if p is not None:
                stack.extend(p.inputs)
        return False

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
            lins = [self.trace_back(node.inputs[i])[0] if len(node.inputs) > i else None for i in range(3)]
            if any(lin is None for lin in lins):
                raise StructureError(f"node '{_name(node)}' (MultiHeadAttention): Q/K/V inputs do not come from "
                                     f"separate projections (packed QKV is not supported)")
            q, k, v = lins
            x = self.source(q.node.inputs[0])
            if self.source(k.node.inputs[0]) is not x or self.source(v.node.inputs[0]) is not x:
                raise StructureError(f"node '{_name(node)}' (MultiHeadAttention): Q, K and V do not read the same "
                                     f"hidden state (cross-attention or a decoder is not supported)")
            qkv = None
            all_head = q.out_features
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
        block = AttentionBlock(num_heads=heads, head_size=all_head // heads, q=q, k=k, v=v, o=o,
                               head_sites=sites, fused=node, qkv=qkv)
        return block, x

    # ------------------------------------------------------------------ residual + norm
    def residual_norm(self, y: ir.Value, residual: ir.Value, at: ir.Node, what: str) -> ir.Value:
        """``LayerNorm(y + residual)``'s output value; y is a projection's output."""
        y = self.past_qdq(y)
        c = single_consumer(y)
        if c is None:
            raise StructureError(f"node '{_name(at)}' ({at.op_type}): the {what} result has "
                                 f"{len(data_consumers(y))} readers, expected one residual Add")
        # the residual may be read through its activation quantization (QDQ graphs)
        if c.op_type in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
            if residual not in (self.source(c.inputs[0]), self.source(c.inputs[1])):
                raise StructureError(f"node '{_name(c)}' ({c.op_type}): the {what} result is not added to the "
                                     f"normalised layer input (pre-LayerNorm blocks are not supported)")
            return c.outputs[0]
        if c.op_type not in ("Add", "Sum") or len(c.inputs) != 2 or \
                residual not in tuple(self.source(i) for i in c.inputs):  # Sum: int8
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
        sub = next((c for c in cs if c.op_type == "Sub"), None)
        if sub is not None and any(c.op_type == "ReduceMean" for c in cs):
            div = next((c for c in consumers(sub.outputs[0]) if c.op_type == "Div"), None)
            mul = single_consumer(div.outputs[0]) if div is not None else None
            add = single_consumer(mul.outputs[0]) if mul is not None and mul.op_type == "Mul" else None
            if add is not None and add.op_type == "Add":
                return add.outputs[0]
        raise StructureError(f"node '{_name(at)}' ({at.op_type}): residual sum is not followed by a LayerNorm")

    # ------------------------------------------------------------------ FFN
    def ffn(self, h1: ir.Value, at: ir.Node) -> tuple[FFNBlock, ir.Value]:
        inters = [lin for lin in (self.linear(c) for c in self.readers(h1))
                  if lin is not None and self.source(lin.node.inputs[0]) is h1]
        if len(inters) != 1:
            raise StructureError(f"node '{_name(at)}' ({at.op_type}): attention output feeds {len(inters)} "
                                 f"projections, expected one FFN intermediate")
        inter = inters[0]
        start = [inter.node.outputs[0]]
        ops: list[ir.Node] = []
        found: list[Linear] = []
        seen: set[int] = {id(inter.node)}
        queue = deque(start)
        while queue:
            val = queue.popleft()
            for c in consumers(val):
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
        y = self.residual_norm(self.linear_output(out), h1, out.node, "FFN output projection")
        return FFNBlock(intermediate=inter, output=out, activation=act), y

    # ------------------------------------------------------------------ whole graph
    def layer_nodes(self, x: ir.Value, y: ir.Value) -> list[ir.Node]:
        """Nodes on a path from the layer input x to its output y, plus constants only they use."""
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
                if i is not None and i is not x and not i.is_graph_input():
                    stack.append(i.producer())
        fwd: set[int] = set()
        stack = consumers(x)
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

    def find(self) -> EncoderStructure:
        found: list[tuple[int, AttentionBlock, ir.Value]] = []
        fused_any = False
        for node in self.graph:
            if node.op_type == "Softmax":
                r = self.unfused_attention(node)
                if r is not None:
                    found.append((self.position[id(node)], *r))
            elif node.op_type in ("Attention", "MultiHeadAttention", "QAttention") and node.domain == "com.microsoft":
                found.append((self.position[id(node)], *self.fused_attention(node)))
                fused_any = True
        if not found:
            raise StructureError(_no_attention_reason(self.graph))
        found.sort(key=lambda t: t[0])
        layers: list[EncoderLayer] = []
        for i, (_, att, x) in enumerate(found):
            anchor = att.fused or att.o.node
            h1 = self.residual_norm(self.linear_output(att.o), x, att.o.node, "attention output projection")
            ffn, y = self.ffn(h1, anchor)
            layer = EncoderLayer(index=i, attention=att, ffn=ffn, input=x, output=y)
            layer.attention_output = h1
            layer.nodes = self.layer_nodes(x, y)
            layers.append(layer)
        self._mark_shared(layers)
        in_layer = {id(n) for layer in layers for n in layer.nodes}
        for layer in layers:  # projections must be inside their layer (guards against odd wiring)
            for lin in _layer_linears(layer):
                in_layer.add(id(lin.node))
        other = [lin for lin in (self.linear(n) for n in self.graph if id(n) not in in_layer) if lin is not None]
        embeddings = self.embeddings(layers[0].input)
        hidden = layers[0].attention.o.out_features
        return EncoderStructure(family=self.family(embeddings, other), hidden_size=hidden, layers=layers,
                                embeddings=embeddings, fused=fused_any, exporter=self.exporter(fused_any),
                                other_linears=other)

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
            while idx is not None and idx.producer() is not None and idx.producer().op_type in ("Cast", "Identity"):
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
            return "optimum"
        return "unknown"


# families recognised from module paths that exporters keep in node or initializer names (only to
# name the family and say what is missing; roles are always found by structure)
_FAMILY_SIGNATURES = (
    ("modernbert", ("wqkv", "mlp.wi", "mlp/wi", "attn_norm", "mlp_norm", "tok_embeddings", "final_norm")),
    ("deberta-v2", ("rel_embeddings", "pos_key_proj", "pos_query_proj", "pos_proj", "rel_attn", "query_proj",
                    "key_proj", "value_proj")),
    ("mobilebert", ("bottleneck",)),
    ("albert", ("albert_layer_groups", "albert_layers")),
    ("mpnet", ("relative_attention_bias", "attention/attn/", "attention.attn.")),
    ("distilbert", ("q_lin", "transformer/layer", "transformer.layer")),
    ("electra", ("embeddings_project",)),
)
# what the structured passes lack for a family they refuse
_UNSUPPORTED = {
    "modernbert": "its packed Wqkv projection with rotary position embeddings, GeGLU FFN and local/global "
                  "attention are not supported by the structured passes",
    "deberta-v2": "its disentangled attention (content-to-position and position-to-content terms from shared "
                  "relative-position projections) is not supported by the structured passes",
    "mobilebert": "its bottleneck layers (Q and K read a shared bottleneck, V the layer input; stacked FFNs) "
                  "are not supported by the structured passes",
}


def family_hint(model: ir.Model) -> str | None:
    """The family named by the export's module paths (or deploytool's metadata), if any."""
    meta = dict(model.metadata_props).get("deploytool.family")
    if meta:
        return meta
    names = [(n.name or "").lower() for n in model.graph]
    names += [(k or "").lower() for k in model.graph.initializers]
    for fam, keys in _FAMILY_SIGNATURES:
        if any(k in nm for nm in names for k in keys):
            return fam
    return None


def _layer_linears(layer: EncoderLayer) -> list[Linear]:
    a = layer.attention
    return [lin for lin in (a.q, a.k, a.v, a.o, a.qkv, layer.ffn.intermediate, layer.ffn.output) if lin is not None]


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
    hint = family_hint(model)
    if hint in _UNSUPPORTED:
        # refuse in one line naming the family and the missing piece, rather than guess
        try:
            node = next(n for n in model.graph if n.op_type == "Softmax")
            where = f" (first attention at node '{_name(node)}')"
        except StopIteration:
            where = ""
        raise StructureError(f"{hint}: {_UNSUPPORTED[hint]}{where}")
    return _Finder(model).find()
