"""The native streaming int8 writer: dynamic int8 with fused attention, without ONNX Runtime's tools.

What it writes (the default int8 recipe, :class:`~deploytool.passes.quantize_int8.Int8Config`):

- Each encoder layer's self-attention (Q/K/V projections, the scaled scores, the padding mask, the
  softmax, the context and its merge back to ``[B, S, H*d]``) becomes one ``com.microsoft.QAttention``:
  the layer's attention input ``x`` is quantized once by ``DynamicQuantizeLinear`` (uint8,
  ``s_x = (max(x, 0) - min(x, 0)) / 255``, zero point ``round(-min / s_x)``), the weight is
  ``Wqkv = [Wq | Wk | Wv]`` (``[in, 3A]``, ``A`` = heads x head size, columns head-major within each
  part) stored int8, the bias ``[bq | bk | bv]`` stays fp32, the mask is the model's own 2-D
  ``attention_mask`` input cast to int32 (ORT's raw-mask format: 1 keeps a key, 0 masks it with -10000),
  ``num_heads`` from the graph, and ``scale`` only when the graph's score scale is not ``1/sqrt(d)``.
  QAttention's output feeds every reader of the merged context (the O projection).
- With ``Int8Config(fusion="onnx")`` each such layer becomes instead one ``DynamicQuantizeMatMul`` over the same
  ``Wqkv`` with the bias, a ``Split`` into Q, K and V, and ONNX's own ``Attention`` (opset 23, ``q_num_heads`` =
  ``kv_num_heads``, the same scale) with a float ``[B, 1, S, S]`` mask built once from ``attention_mask``: 0 where
  it is > 0, -10000 where it is 0 (what QAttention adds). The model is upgraded to opset 23 first
  (``int8_pipeline``). Measured on MiniLM (``benchmarks/int8_bench.py``, ``ours_onnx_attention``): faster than
  QAttention on AMD Zen 4 at 8 and 128 tokens, the same outputs on a batch of one.
- A layer whose attention is already ONNX's ``Attention`` (torch's opset-23 export) keeps it; its Q, K, V and O
  projections become ``DynamicQuantizeMatMul`` like every other.
- Every other ``MatMul`` (and ``Gemm`` with ``alpha = 1``, ``transA = 0``) with a constant 2-D fp32 weight
  becomes ``com.microsoft.DynamicQuantizeMatMul`` (fp32 input quantized at run time, int8 weight, its
  scales, the bias ``Add`` that followed folded in as the op's bias).
- The word embedding table is stored int8 by the same rule (per hidden feature when ``per_channel``), read
  by ``Gather`` and turned back into fp32 rows by ``Cast`` and ``Mul`` by its scales (when only row Gathers
  read it, opset >= 13): the numbers of a per-axis ``DequantizeLinear`` with zero point 0, which ORT 1.32
  runs several times slower at 128 rows (``benchmarks/int8_bench.py``, ``kernel_micro_us["word_rows"]``). Position and
  token-type tables, LayerNorms, GELU and residuals stay as exported (fp32).

Weights (symmetric int8, zero point 0, so none is stored): per output column ``n`` (``per_channel``)
``s[n] = max_k |W[k, n]| / 127`` (1.0 for an all-zero column), else one ``s`` over the whole matrix;
``q = clip(round_half_even(W / s), -127, 127)``. This is what ``onnxruntime.quantization`` computes for
the same weights (``quantize_dynamic``, int8, per channel, symmetric, no reduced range).

Weight codes (``Int8Config.weights``, for x86 CPUs without VNNI, whose u8 x s8 kernel adds pairs of products
in a saturating int16: :mod:`deploytool.runtime.int8_kernel`): ``int7`` clips at 63 with ``s = max / 63``;
``uint8`` stores the int8 codes + 128 (their bytes with the top bit flipped) with zero points 128 (QAttention's
input 7, DynamicQuantizeMatMul's input 3); ``pairsafe`` takes ``s[n] = P[n] / 127`` with ``P[n]`` the largest
same-signed sum of rows ``2i`` and ``2i+1`` of column ``n``, so no such pair of codes adds past 128. The word
embedding rows (read by Gather, not by a GEMM) keep the int8 rule whatever the codes.

Streaming: nothing is quantized while the pass runs. Each int8 weight is an ``ir.LazyTensor`` whose
function reads the memory-mapped fp32 weight(s) row block by row block, twice (column maxima, then
the rounded codes) into one int8 array; its scales are computed by the same call and handed to the
scale tensor when the writer asks for it (whichever of the two is asked first computes both). The
file writer (:func:`deploytool.onnx_io.staged_model`) computes, writes and drops one tensor at a time,
so the pass holds at most one int8 weight beyond the input's memory map.

What it recognises (else :class:`NativeUnsupported` says where and why, and the int8 pass falls back
to ORT's quantizer): an unfused encoder (:func:`deploytool.graph.find_structure`) whose every layer
has separate Q/K/V projections as wide as the hidden state, all reading one value, no per-head score
bias, Q and K reshaped to ``[B, S, H, d]`` and transposed ``(0, 2, 1, 3)`` / ``(0, 2, 3, 1)``, V
``(0, 2, 1, 3)``, scalar score scales that are constants or computed from shapes only (SDPA exports scale
Q and K by ``Sqrt(1 / Sqrt(head_size))`` taken from ``Shape``: a probe evaluates them on two input shapes,
feeding the attention's activations as zeros of their known shapes), a padding mask that such a probe
(ONNX's reference evaluator on the mask's own subgraph, two padded batches) shows to be "0 where
``attention_mask`` is 1, at most -1e4 where it is 0" (an added mask, or a ``Where`` fill; a term that reads
no input and masks nothing is no mask), and a context transposed back ``(0, 2, 1, 3)`` and reshaped.

A layer whose attention has a value read outside it (its probabilities a graph output, as an export with
``output_attentions`` has; or read by another node) cannot be one fused op, which computes none of them: that
layer alone stays unfused (``NativePlan.unfused`` says which and why; the int8 pass reports a Skip for each):
its Q, K, V and O become ``DynamicQuantizeMatMul`` like every other projection, the attention core between them
(scores, mask, softmax, context) stays as exported in fp32, so its exposed values are still computed. Every other
layer is fused as above. Before, one such layer sent the whole model to ORT's quantizer, unfused
(``benchmarks/int8_exposed_attention.py`` compares the two). ORT's path (engine ``ort``) keeps the same layers out
of ORT's attention fusion, found by the same rule (:func:`exposed_attentions`).

Measured (Intel Xeon, Emerald Rapids, AVX-512 VNNI and AMX, 2 vCPU shared with other jobs):
``benchmarks/results/int8_bench_native.json`` (MiniLM, batch 1, 1 thread, three interleaved rounds at load
average 5.3-5.6): 0.71-0.73 of optimum's ORTQuantizer latency at 8 tokens and 0.76-0.78 at 128 (ORT's path
in the same rounds 0.72-0.80 and 0.78-0.81; a second run at load 7.5-7.8, ``int8_bench_native_run2.json``:
0.72-0.90 and 0.75-0.83 against 0.75-0.82 and 0.75-0.79, equal within that noise); Rotten Tomatoes test
accuracy 77.44% (ORT's path 77.21%, optimum 77.13%, fp32 77.52%), embedding cosine to fp32 0.9897 (0.9895).
``pass_speed_int8_engines.json`` (BERT-base shape, 436 MB, load 1.5-3.9): 4.4 s with the gate, 1.85 s
without, peak RSS 0.56x the file; ORT's path 34.7 s at 6.67x. ``int8_layout.json``: ORT runs
DynamicQuantizeMatMul and quantize_dynamic's MatMulInteger layout as the same fused kernel, in the same time.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import onnx_ir as ir

from deploytool.errors import DeployError
from deploytool.graph._util import const_tensor, shape_derived, unique_name

logger = logging.getLogger(__name__)

__all__ = ["ExposedAttention", "NativePlan", "NativeUnsupported", "apply_native", "exposed_attentions", "int8_weight",
           "plan_native"]

MS = "com.microsoft"
_DEFAULT = ("", "ai.onnx")
#: the opset of ONNX's Attention op, which ``apply_native(attention="onnx")`` writes
ONNX_ATTENTION_OPSET = 23
# rows of a weight processed at once (bounded temporaries; a block of BERT-base's FFN is 3 MB)
_ROW_BLOCK = 256
# the mask value a masked key must get at most (QAttention fills -10000; any value this low gives
# exp() == 0 in fp32 after the max-subtraction of the softmax)
_MASKED_AT_MOST = -1e4
_PROBE_NODES = 256
# the largest same-signed sum of two neighbouring codes whose product with uint8 activations fits an int16
# (255 x 128 = 32,640 <= 32,767): x86 without VNNI adds products in such pairs, rows 2i and 2i+1 of the weight
PAIR_LIMIT = 128


class NativeUnsupported(DeployError):
    """The graph is not one the native writer recognises (the message says which node and why)."""


class _Exposed(NativeUnsupported):
    """A layer's attention is one the writer recognises, but a value inside it is read outside it (a graph output:
    an export with output_attentions exposes the probabilities). That layer cannot be one fused op; the others can.
    ``softmax``: the layer's Softmax (every attention fusion matches it: ORT's path hides it from ORT's)."""

    def __init__(self, message: str, softmax: ir.Node) -> None:
        super().__init__(message)
        self.softmax = softmax


@dataclasses.dataclass(frozen=True)
class ExposedAttention:
    """A layer whose attention stays unfused because a value inside it is read outside it (:func:`plan_native`'s
    rule): ``index`` the layer, ``why`` which value and where it is read, ``softmax`` the layer's Softmax node."""

    index: int
    why: str
    softmax: ir.Node


def _name(node: ir.Node) -> str:
    return node.name or f"<{node.op_type}>"


# ----------------------------------------------------------------------------------------- weights

def _column_absmax(w: np.ndarray) -> np.ndarray:
    out = np.zeros(w.shape[1], dtype=np.float32)
    for i in range(0, w.shape[0], _ROW_BLOCK):
        np.maximum(out, np.abs(w[i:i + _ROW_BLOCK]).max(axis=0), out=out)
    return out


def _column_pair_max(w: np.ndarray) -> np.ndarray:
    """Per column, the largest sum of the same-signed parts of two neighbouring rows ``2i, 2i+1``:
    ``max_i max(w[2i]+ + w[2i+1]+, w[2i]- + w[2i+1]-)`` (``x+ = max(x, 0)``, ``x- = max(-x, 0)``)."""
    out = np.zeros(w.shape[1], dtype=np.float32)
    for i in range(0, w.shape[0], _ROW_BLOCK):  # _ROW_BLOCK is even: pairs never straddle two blocks
        b = w[i:i + _ROW_BLOCK]
        if b.shape[0] % 2:
            b = np.concatenate([b, np.zeros((1, b.shape[1]), b.dtype)])
        even, odd = b[0::2], b[1::2]
        np.maximum(out, (np.maximum(even, 0) + np.maximum(odd, 0)).max(axis=0), out=out)
        np.maximum(out, (np.maximum(-even, 0) + np.maximum(-odd, 0)).max(axis=0), out=out)
    return out


def _pairs_fit(q: np.ndarray) -> bool:
    """Whether no two neighbouring rows' same-signed codes add past 128 (``q`` whole rows from an even row)."""
    if q.shape[0] % 2:
        q = np.concatenate([q, np.zeros((1, q.shape[1]), q.dtype)])
    a, b = q[0::2].astype(np.int16), q[1::2].astype(np.int16)
    return bool((np.maximum(a, 0) + np.maximum(b, 0)).max(initial=0) <= PAIR_LIMIT
                and (np.maximum(-a, 0) + np.maximum(-b, 0)).max(initial=0) <= PAIR_LIMIT)


def _scales(absmax: np.ndarray, qmax: int = 127) -> np.ndarray:
    s = absmax.astype(np.float64) / float(qmax)
    return np.where(s < np.finfo(np.float32).tiny, 1.0, s).astype(np.float32)


def int8_weight(parts: list[np.ndarray], per_channel: bool = True, qmax: int = 127,
                pair_safe: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The int8 codes ``[in, sum of widths]`` of the column-concatenated fp32 matrices ``parts`` (each
    ``[in, n_i]``, the MatMul layout) and their scales (``[sum n_i]`` per channel, else a scalar),
    computed row block by row block (see the module doc for the rule; ``qmax`` 63 for 7-bit codes).

    ``pair_safe``: the scale is ``P / 127`` with ``P`` the column's largest same-signed sum of two neighbouring
    rows (:func:`_column_pair_max`, ``P >= max |W|``), so that ``q[2i] + q[2i+1] <= 128`` for the positive
    parts and for the negative parts (each code rounds up by at most 1/2): a uint8 activation pair then adds to
    at most 255 x 128 = 32,640 in magnitude, within the int16 that x86 without VNNI accumulates pairs in."""
    rows = parts[0].shape[0]
    maxima = [(_column_pair_max if pair_safe else _column_absmax)(p) for p in parts]
    if per_channel:
        scale = _scales(np.concatenate(maxima), qmax)
    else:
        scale = _scales(np.array(max(float(m.max()) if m.size else 0.0 for m in maxima), dtype=np.float32), qmax)
    out = np.empty((rows, sum(p.shape[1] for p in parts)), dtype=np.int8)
    col = 0
    for p in parts:
        n = p.shape[1]
        s = scale[col:col + n] if per_channel else scale
        tmp = np.empty((min(_ROW_BLOCK, rows), n), dtype=np.float32)
        for i in range(0, rows, _ROW_BLOCK):
            block = p[i:i + _ROW_BLOCK]
            t = tmp[:block.shape[0]]
            np.divide(block, s, out=t)
            np.rint(t, out=t)
            np.clip(t, -qmax, qmax, out=t)
            out[i:i + block.shape[0], col:col + n] = t
            if pair_safe and not _pairs_fit(out[i:i + block.shape[0], col:col + n]):  # the rule's promise
                raise DeployError(f"int8: pair-safe codes of rows {i}-{i + block.shape[0] - 1} add past "
                                  f"{PAIR_LIMIT} in a pair of rows (a bug: please report it); nothing written")
        col += n
    return out, scale


class _LazyInt8:
    """One int8 weight and its scales, computed together by the first of the two tensors the writer
    asks for; the other is kept until asked for (a scale vector, or one int8 weight), then dropped."""

    def __init__(self, sources: list[tuple[ir.TensorProtocol, bool]], per_channel: bool, name: str,
                 scale_name: str, codes: str = "int8") -> None:
        self.sources = sources  # (fp32 tensor, transposed: stored [out, in])
        self.per_channel = per_channel
        # int8, int7 (|q| <= 63), uint8 (the int8 codes + 128, zero point 128) or pairsafe (no neighbouring
        # pair of codes adds past 128: int8_weight's pair_safe)
        self.codes = codes
        self.name, self.scale_name = name, scale_name
        self._weight: np.ndarray | None = None
        self._scale: np.ndarray | None = None

    @property
    def rows(self) -> int:
        t, transposed = self.sources[0]
        return int(t.shape[1] if transposed else t.shape[0])

    @property
    def cols(self) -> int:
        return sum(int(t.shape[0] if tr else t.shape[1]) for t, tr in self.sources)

    def _compute(self) -> None:
        parts = []
        for t, transposed in self.sources:
            a = t.numpy()
            parts.append(a.T if transposed else a)
        self._weight, self._scale = int8_weight(parts, self.per_channel, 63 if self.codes == "int7" else 127,
                                                pair_safe=self.codes == "pairsafe")

    def weight(self) -> ir.Tensor:
        if self._weight is None:
            self._compute()
        w, self._weight = self._weight, None
        if self.codes == "uint8":  # q + 128 for q in [-127, 127]: the two's-complement bytes with the top bit flipped
            w = w.view(np.uint8)
            np.bitwise_xor(w, 0x80, out=w)
        return ir.Tensor(w, name=self.name)

    def scale(self) -> ir.Tensor:
        if self._scale is None:
            self._compute()
        s, self._scale = self._scale, None
        return ir.Tensor(s, name=self.scale_name)


# ----------------------------------------------------------------------------------------- the plan

@dataclasses.dataclass
class _Attention:
    index: int
    x: ir.Value  # what Q/K/V read
    q: ir.Node
    k: ir.Node
    v: ir.Node
    weights: list[tuple[ir.TensorProtocol, bool]]  # Q, K, V weights (tensor, stored transposed)
    biases: list[np.ndarray]
    merged: ir.Value  # the context merged back to [B, S, A]: what O reads
    num_heads: int
    head_size: int
    scale: float  # the scores' scale
    mask: ir.Value | None  # the 2-D graph input the padding mask is built from
    # the stored Q, K, V bias tensors (None: no bias): layers reading the same ones (ALBERT's shared layer) share one
    # packed bias, as they share the packed weight
    bias_sources: tuple[int | None, ...] = ()


@dataclasses.dataclass
class _Projection:
    node: ir.Node  # MatMul or Gemm
    weight: ir.TensorProtocol
    transposed: bool  # stored [out, in] (Gemm transB=1)
    bias: ir.Value | None  # fp32 [N] constant
    out: ir.Value  # the value the DynamicQuantizeMatMul replaces (the bias Add's output when folded)


@dataclasses.dataclass
class NativePlan:
    """What :func:`apply_native` writes (found by :func:`plan_native`, nothing edited yet)."""

    attentions: list[_Attention]
    projections: list[_Projection]
    embedding: tuple[ir.TensorProtocol, list[ir.Node]] | None  # the word table and the Gathers reading it
    left_fp32: list[tuple[str, str]]  # (node, why) for projections with a constant weight left in fp32
    # (layer index, why) for layers whose attention stays unfused (a value inside it read outside it): their Q, K, V
    # and O are among ``projections``, the attention core between them stays as exported (fp32)
    unfused: list[tuple[int, str]] = dataclasses.field(default_factory=list)


def _attr(node: ir.Node, name: str, default):
    a = node.attributes.get(name)
    return default if a is None else a.value


def _scalar(v: ir.Value | None) -> float | None:
    t = const_tensor(v)
    if t is None or t.size != 1:
        return None
    try:
        return float(np.asarray(t.numpy()).reshape(()))
    except (TypeError, ValueError):
        return None


def _uses(v: ir.Value) -> list[ir.Node]:
    out: list[ir.Node] = []
    for u in v.uses():
        if not any(u.node is n for n in out):
            out.append(u.node)
    return out


def _float_matrix(v: ir.Value | None) -> ir.TensorProtocol | None:
    t = const_tensor(v)
    if t is None or t.dtype != ir.DataType.FLOAT or len(t.shape) != 2:
        return None
    return t


def _compose(perms: list[list[int]]) -> list[int] | None:
    """The one permutation doing ``perms`` (in data-flow order) in turn."""
    p = list(range(len(perms[0]))) if perms else []
    for t in perms:
        if len(t) != len(p):
            return None
        p = [p[j] for j in t]
    return p


class _ProbeEvaluator:
    """Runs a probe subgraph (:meth:`_Planner._subgraph`) as ``run(None, feeds) -> [outputs]``: in ONNX
    Runtime with its graph optimizations off (imported anyway by the int8 pass, and ~0.1 s less to import
    than ONNX's reference evaluator, which the int8 pass otherwise loads for these few probes alone); in
    the reference evaluator where ONNX Runtime refuses the subgraph or fails on a probe (the reference is
    more lenient about untyped values): a subgraph ORT cannot run is judged as before. Both compute the same
    exact integer and float arithmetic on the probes' small masks and shapes."""

    def __init__(self, proto) -> None:
        self.proto = proto
        self._reference = None
        self._session = self._ort_session(proto)
        if self._session is None:  # the reference evaluator's own refusal is the caller's NativeUnsupported
            self._reference_evaluator()

    @staticmethod
    def _ort_session(proto):
        """A one-thread ONNX Runtime session of ``proto`` (the runtime layer's ``make_session``), nothing
        optimized; None where ORT refuses it."""
        try:
            from deploytool.runtime.infer import make_session

            return make_session(proto.SerializeToString(), optimize=False)
        except Exception:  # noqa: BLE001 - ORT missing or refusing it: the reference evaluator decides
            return None

    def _reference_evaluator(self):
        if self._reference is None:
            from onnx.reference import ReferenceEvaluator

            self._reference = ReferenceEvaluator(self.proto)
        return self._reference

    def run(self, names, feeds: dict[str, np.ndarray]) -> list:
        if self._session is not None:
            try:
                return self._session.run(names, feeds)
            except Exception:  # noqa: BLE001 - e.g. a kernel ORT lacks for a type: the reference's turn
                pass
        return self._reference_evaluator().run(names, feeds)


class _Planner:
    def __init__(self, model: ir.Model, per_channel: bool) -> None:
        self.model = model
        self.graph = model.graph
        self.per_channel = per_channel
        self.position = {id(n): i for i, n in enumerate(self.graph)}
        self._mask_ok: dict[tuple, ir.Value | None] = {}

    # ------------------------------------------------------------------ attention
    def attention(self, layer) -> tuple[_Attention, list[ir.Node]]:
        att = layer.attention
        where = f"layer {layer.index}"
        if att.fused is not None:
            raise NativeUnsupported(f"{where}: attention already fused by ORT ('{_name(att.fused)}')")
        if att.q is None or att.k is None or att.v is None:
            raise NativeUnsupported(f"{where}: packed QKV projection (not separate Q, K and V)")
        if att.score_bias:
            raise NativeUnsupported(f"{where}: a per-head score bias ('{_name(att.score_bias[0][0])}'); "
                                    "QAttention has no input for it")
        if att.relative:
            raise NativeUnsupported(f"{where}: disentangled attention (DeBERTa's relative-position terms on the "
                                    "scores); QAttention has no input for them")
        width = att.num_heads * att.head_size
        hidden = att.q.in_features
        if width != hidden:
            raise NativeUnsupported(f"{where}: attention {width} wide in a {hidden}-wide layer (sliced or pruned "
                                    "heads)")
        q, k, v = att.q, att.k, att.v
        x = q.node.inputs[0]
        if k.node.inputs[0] is not x or v.node.inputs[0] is not x:
            raise NativeUnsupported(f"{where}: Q, K and V do not read one value")
        weights, biases, bias_sources, outs = [], [], [], []
        for name, lin in (("Q", q), ("K", k), ("V", v)):
            node = lin.node
            if node.op_type != "MatMul" or node.domain not in _DEFAULT:
                raise NativeUnsupported(f"{where}: {name} projection '{_name(node)}' is a {node.op_type}")
            t = _float_matrix(node.inputs[1])
            if t is None or tuple(t.shape) != (hidden, width):
                raise NativeUnsupported(f"{where}: {name} weight of '{_name(node)}' is not a constant fp32 "
                                        f"[{hidden}, {width}] matrix")
            weights.append((t, False))
            out = node.outputs[0]
            if lin.bias is not None:
                if lin.bias_node is None or lin.bias_node.op_type != "Add" or lin.bias_node.domain not in _DEFAULT:
                    raise NativeUnsupported(f"{where}: {name} bias is not added by an Add")
                b = const_tensor(lin.bias)
                if b is None or b.size != width or b.dtype != ir.DataType.FLOAT:
                    raise NativeUnsupported(f"{where}: {name} bias is not a constant fp32 [{width}] vector")
                biases.append(np.asarray(b.numpy(), dtype=np.float32).reshape(width))
                bias_sources.append(id(b))
                out = lin.bias_node.outputs[0]
                path = [node, lin.bias_node]
            else:
                biases.append(np.zeros(width, np.float32))
                bias_sources.append(None)
                path = [node]
            outs.append((out, path))
        # context: merged <- Reshape <- Transpose(0, 2, 1, 3) <- MatMul(probs, V')
        merged = att.o.node.inputs[0]
        path: list[ir.Node] = [n for _, p in outs for n in p]
        ctx, perms, reshapes, cur = None, [], 0, merged
        for _ in range(8):
            p = cur.producer()
            if p is None or p.domain not in _DEFAULT:
                break
            if p.op_type == "Transpose":
                if reshapes == 0:
                    raise NativeUnsupported(f"{where}: context transposed after its merge ('{_name(p)}')")
                perms.insert(0, list(_attr(p, "perm", [])))
            elif p.op_type == "Reshape":
                if perms:
                    raise NativeUnsupported(f"{where}: context reshaped twice around a transpose ('{_name(p)}')")
                reshapes += 1
            elif p.op_type == "Identity":
                pass
            elif p.op_type == "MatMul":
                ctx = p
                break
            else:
                break
            path.append(p)
            cur = p.inputs[0]
        if ctx is None or reshapes != 1 or _compose(perms) != [0, 2, 1, 3]:
            raise NativeUnsupported(f"{where}: the context reaching O '{_name(att.o.node)}' is not "
                                    "MatMul -> Transpose(0, 2, 1, 3) -> Reshape")
        path.append(ctx)
        heads, hs = att.num_heads, att.head_size
        # every activation of the attention with its shape in symbols of (batch, sequence): a mask may read
        # their shapes (never their values); the probe feeds zeros of these shapes
        shapes: dict[int, tuple[ir.Value, tuple]] = {id(x): (x, ("b", "s", hidden))}
        for out, nodes in outs:
            for n in nodes:
                shapes[id(n.outputs[0])] = (n.outputs[0], ("b", "s", width))
        shapes[id(ctx.outputs[0])] = (ctx.outputs[0], ("b", heads, "s", hs))
        shapes[id(merged)] = (merged, ("b", "s", width))
        self._head_path(ctx.inputs[1], outs[2][0], [0, 2, 1, 3], False, where, "V", path, shapes, heads, hs)
        # probabilities: ctx input 0 <- [Cast/Identity/Dropout] <- Softmax
        cur, softmax = ctx.inputs[0], None
        for _ in range(4):
            p = cur.producer() if cur is not None else None
            if p is None or p.domain not in _DEFAULT:
                break
            path.append(p)
            if p.op_type == "Softmax":
                softmax = p
                break
            if p.op_type not in ("Cast", "Identity", "Dropout"):
                break
            cur = p.inputs[0]
        if softmax is None:
            raise NativeUnsupported(f"{where}: the context MatMul '{_name(ctx)}' does not read a Softmax")
        axis = _attr(softmax, "axis", -1 if self.model.opset_imports.get("", 13) >= 13 else 1)
        if axis not in (-1, 3):
            raise NativeUnsupported(f"{where}: Softmax '{_name(softmax)}' is not over the last axis")
        # scores: Softmax input <- scale / mask / casts <- MatMul(Q', K')
        scale, mask_terms, cur, score = 1.0, [], softmax.inputs[0], None
        pending: list[tuple[ir.Value, int]] = []  # scale factors computed from shapes at run time
        chain_values: list[ir.Value] = []
        for _ in range(12):
            chain_values.append(cur)
            p = cur.producer()
            if p is None or p.domain not in _DEFAULT:
                break
            path.append(p)
            if p.op_type == "MatMul":
                score = p
                break
            if p.op_type in ("Cast", "Identity", "Dropout"):
                cur = p.inputs[0]
                continue
            if p.op_type in ("Div", "Mul") and len(p.inputs) == 2:
                c1 = _scalar(p.inputs[1])
                c0 = _scalar(p.inputs[0]) if p.op_type == "Mul" else None
                if c1 is not None:
                    scale, cur = (scale / c1 if p.op_type == "Div" else scale * c1), p.inputs[0]
                    continue
                if c0 is not None:
                    scale, cur = scale * c0, p.inputs[1]
                    continue
                if shape_derived(p.inputs[1]):  # computed from shapes only: evaluated once shapes are known
                    pending.append((p.inputs[1], -1 if p.op_type == "Div" else 1))
                    cur = p.inputs[0]
                    continue
                if p.op_type == "Mul" and shape_derived(p.inputs[0]):
                    pending.append((p.inputs[0], 1))
                    cur = p.inputs[1]
                    continue
                raise NativeUnsupported(f"{where}: score scale '{_name(p)}' is not a constant or shape-derived scalar")
            if p.op_type == "Add" and len(p.inputs) == 2:
                # the chain is the operand that leads back to the scores (computed from x), the other the mask
                a, b = p.inputs
                chain, term = (a, b) if self._from_scores(a) else (b, a)
                if not self._from_scores(chain) or self._from_scores(term):
                    raise NativeUnsupported(f"{where}: score Add '{_name(p)}' is not scores + mask")
                mask_terms.append(("add", term, None))
                cur = chain
                continue
            if p.op_type == "Where" and len(p.inputs) == 3:
                c, a, b = p.inputs
                fa, fb = _scalar(a), _scalar(b)
                if fa is not None and fa <= _MASKED_AT_MOST and self._from_scores(b):
                    mask_terms.append(("where_fill_true", c, None))
                    cur = b
                    continue
                if fb is not None and fb <= _MASKED_AT_MOST and self._from_scores(a):
                    mask_terms.append(("where_keep_true", c, None))
                    cur = a
                    continue
                raise NativeUnsupported(f"{where}: score Where '{_name(p)}' is not a masked fill")
            break
        if score is None:
            raise NativeUnsupported(f"{where}: no Q.K^T MatMul found before Softmax '{_name(softmax)}'")
        if len(mask_terms) > 1:
            raise NativeUnsupported(f"{where}: {len(mask_terms)} mask terms on the scores")
        for operand, (out, _), want, what in ((score.inputs[0], outs[0], [0, 2, 1, 3], "Q"),
                                              (score.inputs[1], outs[1], [0, 2, 3, 1], "K")):
            scale *= self._head_path(operand, out, want, True, where, what, path, shapes, heads, hs, pending)
        for val in chain_values + list(softmax.outputs):
            shapes[id(val)] = (val, ("b", heads, "s", "s"))
        if pending:
            scale *= self.scale_values(pending, shapes, where)
        if not scale > 0 or not math.isfinite(scale):
            raise NativeUnsupported(f"{where}: score scale {scale} is not positive")
        mask = None
        if mask_terms:
            kind, term, _ = mask_terms[0]
            mask = self.mask_input(term, kind, heads, where, shapes)
        # nothing between x and the merged context may be read from outside the attention: the fused op computes
        # none of it (this layer alone then stays unfused: plan_native)
        inside = {id(n) for n in path}
        for n in path:
            for o in n.outputs:
                if o is merged:
                    continue
                if o in self.graph.outputs:
                    raise _Exposed(f"{where}: attention intermediate '{o.name}' of '{_name(n)}' ({n.op_type}) is a "
                                   "graph output", softmax)
                for u in _uses(o):
                    if id(u) not in inside and not self._dies_with(u, inside):
                        raise _Exposed(f"{where}: attention intermediate '{o.name}' of '{_name(n)}' ({n.op_type}) "
                                       f"is also read by '{_name(u)}' ({u.op_type})", softmax)
        plan = _Attention(index=layer.index, x=x, q=q.node, k=k.node, v=v.node, weights=weights, biases=biases,
                          merged=merged, num_heads=att.num_heads, head_size=att.head_size, scale=scale, mask=mask,
                          bias_sources=tuple(bias_sources))
        return plan, path

    def _dies_with(self, node: ir.Node, inside: set[int]) -> bool:
        """True when ``node`` reads only a shape (Shape/Size) and everything computed from it feeds only
        nodes in ``inside`` (so it dies with the attention: the shape arithmetic of its Reshapes and masks)."""
        if node.op_type not in ("Shape", "Size"):
            return False
        stack, seen = [node], set()
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if len(seen) > 64:
                return False
            for o in n.outputs:
                if o in self.graph.outputs:
                    return False
                stack.extend(u for u in _uses(o) if id(u) not in inside)
        return True

    def _from_scores(self, v: ir.Value | None, depth: int = 0) -> bool:
        """True when ``v`` is computed from a MatMul of two activations (the scores) through the ops a
        score chain has."""
        for _ in range(12):
            p = v.producer() if v is not None else None
            if p is None:
                return False
            if p.op_type == "MatMul":
                return const_tensor(p.inputs[0]) is None and const_tensor(p.inputs[1]) is None
            if p.op_type in ("Cast", "Identity", "Dropout"):
                v = p.inputs[0]
            elif p.op_type in ("Div", "Mul") and len(p.inputs) == 2:
                v = p.inputs[0] if _scalar(p.inputs[1]) is not None or shape_derived(p.inputs[1]) else p.inputs[1]
            elif p.op_type == "Add" and len(p.inputs) == 2 and depth < 2:
                return self._from_scores(p.inputs[0], depth + 1) or self._from_scores(p.inputs[1], depth + 1)
            elif p.op_type == "Where" and len(p.inputs) == 3 and depth < 2:
                return self._from_scores(p.inputs[1], depth + 1) or self._from_scores(p.inputs[2], depth + 1)
            else:
                return False
        return False

    def _head_path(self, v: ir.Value, target: ir.Value, want: list[int], scaled: bool, where: str, what: str,
                   path: list[ir.Node], shapes: dict, heads: int, head_size: int,
                   pending: list | None = None) -> float:
        """Walk from an attention operand back to its projection's output: one Reshape to heads, then
        Transposes composing to ``want`` (and, for Q and K, constant scalar scales). Returns the scale;
        records each value's shape in symbols of (batch, sequence) in ``shapes``."""
        perms: list[list[int]] = []
        reshapes, scale = 0, 1.0
        walked: list[tuple[ir.Value, ir.Node]] = []
        for _ in range(12):
            if v is target:
                break
            p = v.producer() if v is not None else None
            if p is None or p.domain not in _DEFAULT:
                raise NativeUnsupported(f"{where}: the {what} operand does not lead back to its projection")
            path.append(p)
            walked.append((v, p))
            if p.op_type == "Transpose":
                if reshapes:
                    raise NativeUnsupported(f"{where}: {what} transposed before its split into heads ('{_name(p)}')")
                perms.insert(0, list(_attr(p, "perm", [])))
            elif p.op_type == "Reshape":
                reshapes += 1
            elif p.op_type == "Identity":
                pass
            elif scaled and p.op_type in ("Div", "Mul") and len(p.inputs) == 2 and _scalar(p.inputs[1]) is not None:
                c = _scalar(p.inputs[1])
                scale = scale / c if p.op_type == "Div" else scale * c
            elif scaled and p.op_type == "Mul" and len(p.inputs) == 2 and _scalar(p.inputs[0]) is not None:
                scale *= _scalar(p.inputs[0])
                v = p.inputs[1]
                continue
            elif scaled and pending is not None and p.op_type in ("Div", "Mul") and len(p.inputs) == 2 \
                    and shape_derived(p.inputs[1]):
                pending.append((p.inputs[1], -1 if p.op_type == "Div" else 1))
            elif scaled and pending is not None and p.op_type == "Mul" and len(p.inputs) == 2 \
                    and shape_derived(p.inputs[0]):
                pending.append((p.inputs[0], 1))
                v = p.inputs[1]
                continue
            else:
                raise NativeUnsupported(f"{where}: {what} path node '{_name(p)}' ({p.op_type}) not recognised")
            v = p.inputs[0]
        else:
            raise NativeUnsupported(f"{where}: the {what} operand does not lead back to its projection")
        if reshapes != 1 or _compose(perms) != want:
            raise NativeUnsupported(f"{where}: {what} is not split into heads as Reshape -> Transpose{tuple(want)}")
        sym: tuple = ("b", "s", heads * head_size)
        shapes[id(target)] = (target, sym)
        for val, p in reversed(walked):
            if p.op_type == "Reshape":
                sym = ("b", "s", heads, head_size)
            elif p.op_type == "Transpose":
                perm = list(_attr(p, "perm", []))
                sym = tuple(sym[i] for i in perm)
            shapes[id(val)] = (val, sym)
        return scale

    def _subgraph(self, targets: list[ir.Value], dummies: dict, where: str, what: str):
        """A :class:`_ProbeEvaluator` of the subgraph computing ``targets`` from graph inputs and constants.
        ``dummies``: id -> (activation, its shape in symbols "b", "s" and ints) for activations whose shape
        only the subgraph may read (a mask expanded to the scores' shape, a scale from a head size); they
        are fed as zeros of that shape. Returns (evaluator, graph inputs read, dummies read, inputs whose
        values are read)."""
        import onnx

        nodes: dict[int, ir.Node] = {}
        inits: dict[str, ir.Value] = {}
        inputs: dict[str, ir.Value] = {}
        shaped: dict[str, tuple[ir.Value, tuple]] = {}
        data_read: set[str] = set()
        stack, seen = list(targets), set()
        while stack:
            val = stack.pop()
            if val is None or id(val) in seen:
                continue
            seen.add(id(val))
            if val.is_graph_input():
                inputs[val.name] = val
                continue
            if id(val) in dummies and not any(val is t for t in targets):
                shaped[val.name] = dummies[id(val)]
                continue
            p = val.producer()
            if p is None:
                t = val.const_value
                if t is None or t.nbytes > 4096:
                    raise NativeUnsupported(f"{where}: the {what} reads '{val.name}', not a small constant or input")
                inits[val.name] = val
                continue
            if id(p) in nodes:
                continue
            if p.domain not in _DEFAULT or p.op_type in ("MatMul", "Gemm", "Softmax", "LayerNormalization") or any(
                    a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in p.attributes.values()):
                raise NativeUnsupported(f"{where}: the {what} is computed by '{_name(p)}' ({p.op_type})")
            nodes[id(p)] = p
            if len(nodes) > _PROBE_NODES:
                raise NativeUnsupported(f"{where}: the {what}'s subgraph has over {_PROBE_NODES} nodes")
            for i in p.inputs:
                if i is None or p.op_type in ("Shape", "Size"):
                    stack.append(i)
                    continue
                if i.is_graph_input():
                    data_read.add(i.name)
                elif id(i) in dummies:
                    raise NativeUnsupported(f"{where}: the {what} reads the values of activation '{i.name}'")
                stack.append(i)
        for nm, val in inputs.items():
            if val.shape is None or len(val.shape) != 2 or val.dtype is None:
                raise NativeUnsupported(f"{where}: input '{nm}' of the {what} is not a typed 2-D input")
        if any(not t.name for t in targets) or any(not nm for nm in shaped):
            raise NativeUnsupported(f"{where}: a value of the {what}'s subgraph has no name")
        ordered = sorted(nodes.values(), key=lambda n: self.position.get(id(n), 0))
        graph = onnx.helper.make_graph(
            [ir.serde.serialize_node(n) for n in ordered], "probe",
            [onnx.helper.make_tensor_value_info(nm, int(val.dtype), ["b", "s"]) for nm, val in inputs.items()]
            + [onnx.helper.make_tensor_value_info(nm, int(val.dtype or ir.DataType.FLOAT), None)
               for nm, (val, _) in shaped.items()],
            [onnx.ValueInfoProto(name=t.name) for t in targets],
            [ir.serde.serialize_tensor(v.const_value) for v in inits.values()])
        for t, v in zip(graph.initializer, inits.values()):
            t.name = v.name
        proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, int(vv)) for d, vv in
                                                             self.model.opset_imports.items() if d in _DEFAULT])
        proto.ir_version = min(self.model.ir_version or 8, 10)
        try:
            ev = _ProbeEvaluator(proto)
        except Exception as e:  # noqa: BLE001 - any failure means: not something we can check
            raise NativeUnsupported(f"{where}: the {what}'s subgraph cannot be evaluated ({type(e).__name__})") from e
        return ev, inputs, shaped, data_read

    @staticmethod
    def _feeds(inputs: dict, shaped: dict, b: int, s: int) -> dict[str, np.ndarray]:
        feeds = {nm: np.zeros((b, s), dtype=ir.DataType(val.dtype).numpy()) for nm, val in inputs.items()}
        for nm, (val, sym) in shaped.items():
            dims = tuple(b if d == "b" else s if d == "s" else int(d) for d in sym)
            feeds[nm] = np.zeros(dims, dtype=ir.DataType(val.dtype or ir.DataType.FLOAT).numpy())
        return feeds

    def scale_values(self, pending: list[tuple[ir.Value, int]], dummies: dict, where: str) -> float:
        """The product of scale factors computed at run time from shapes only (SDPA exports scale Q and K
        each by ``Sqrt(1 / Sqrt(head_size))`` taken from ``Shape``): evaluated on two probe shapes, each must
        be one number that does not change with batch and sequence. ``pending``: (value, +1 multiply / -1
        divide)."""
        ev, inputs, shaped, data_read = self._subgraph([v for v, _ in pending], dummies, where, "score scale")
        if data_read:
            raise NativeUnsupported(f"{where}: the score scale reads input values ({', '.join(sorted(data_read))})")
        seen = []
        for b, s in ((2, 5), (3, 2)):
            try:
                outs = ev.run(None, self._feeds(inputs, shaped, b, s))
            except Exception as e:  # noqa: BLE001
                raise NativeUnsupported(f"{where}: the score scale fails on a probe ({type(e).__name__})") from e
            if any(np.asarray(o).size != 1 for o in outs):
                raise NativeUnsupported(f"{where}: a score scale is not one number")
            seen.append([float(np.asarray(o).reshape(())) for o in outs])
        if not np.allclose(seen[0], seen[1], rtol=1e-6):
            raise NativeUnsupported(f"{where}: a score scale changes with the input's shape")
        factor = 1.0
        for (_, power), value in zip(pending, seen[0]):
            factor *= value if power > 0 else 1.0 / value
        return factor

    # ------------------------------------------------------------------ mask
    def mask_input(self, term: ir.Value, kind: str, heads: int, where: str, dummies: dict) -> ir.Value | None:
        key = (id(term), kind)
        if key not in self._mask_ok:
            self._mask_ok[key] = self._probe_mask(term, kind, heads, where, dummies)
        return self._mask_ok[key]

    def _probe_mask(self, term: ir.Value, kind: str, heads: int, where: str, dummies: dict) -> ir.Value | None:
        """Run the mask's own subgraph on padded probe batches (:meth:`_subgraph`): it must be the 2-D
        ``attention_mask`` input's padding mask (see the module doc). Returns that input; None for a term
        that reads no input and masks nothing (an all-ones mask made from shapes)."""
        ev, inputs, shaped, data_read = self._subgraph([term], dummies, where, "mask")
        if not data_read:  # a mask of ones made from shapes (a model without a mask input): no mask at all
            for b, s in ((2, 5), (3, 2)):
                try:
                    m = np.asarray(ev.run(None, self._feeds(inputs, shaped, b, s))[0])
                except Exception as e:  # noqa: BLE001
                    raise NativeUnsupported(f"{where}: the mask's subgraph fails on a probe "
                                            f"({type(e).__name__})") from e
                empty = not m.any() if kind == "add" else bool(np.all(m.astype(bool) == (kind == "where_keep_true")))
                if not empty:
                    raise NativeUnsupported(f"{where}: a score term that reads no input masks some keys")
            return None
        if len(data_read) != 1:
            raise NativeUnsupported(f"{where}: the mask reads {len(data_read)} graph inputs' values "
                                    f"({', '.join(sorted(data_read)) or 'none'}), not one attention mask")
        mask_name = next(iter(data_read))
        for keep in (np.array([[1, 1, 1, 1, 1], [1, 1, 0, 1, 0]]), np.array([[1, 1], [1, 0], [0, 1]])):
            b, s = keep.shape
            feeds = self._feeds(inputs, shaped, b, s)
            feeds[mask_name] = keep.astype(ir.DataType(inputs[mask_name].dtype).numpy())
            try:
                m = np.asarray(ev.run(None, feeds)[0])
            except Exception as e:  # noqa: BLE001
                raise NativeUnsupported(f"{where}: the mask's subgraph fails on a probe ({type(e).__name__})") from e
            ok = (m.ndim == 4 and m.shape[0] == b and m.shape[1] in (1, heads) and m.shape[2] in (1, s)
                  and m.shape[3] == s)
            if ok:
                kept = np.broadcast_to(keep.astype(bool)[:, None, None, :], m.shape)
                if kind == "add":
                    m = m.astype(np.float64)
                    ok = bool(np.all(m[kept] == 0) and np.all(m[~kept] <= _MASKED_AT_MOST))
                else:
                    c = m.astype(bool)
                    ok = bool(np.array_equal(c, ~kept if kind == "where_fill_true" else kept))
            if not ok:
                raise NativeUnsupported(f"{where}: the score mask is not the padding mask of input '{mask_name}' "
                                        f"(probe shape {list(m.shape)})")
        return inputs[mask_name]

    # ------------------------------------------------------------------ other projections
    def projection(self, node: ir.Node) -> _Projection | str | None:
        """A MatMul/Gemm with a constant 2-D fp32 weight as a :class:`_Projection`; a reason string when it
        has such a weight the writer cannot take; None when it has none."""
        if node.domain not in _DEFAULT or node.op_type not in ("MatMul", "Gemm") or len(node.inputs) < 2:
            return None
        a, w = node.inputs[0], node.inputs[1]
        if a is None or const_tensor(a) is not None:
            return None
        t = const_tensor(w)
        if t is None:
            return None
        if t.dtype != ir.DataType.FLOAT or len(t.shape) != 2:
            return f"weight is {t.dtype.name} of rank {len(t.shape)}"
        out = node.outputs[0]
        bias = None
        if node.op_type == "Gemm":
            if _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "transA", 0) != 0:
                return "Gemm with alpha != 1 or transA"
            transposed = bool(_attr(node, "transB", 0))
            n_out = int(t.shape[0] if transposed else t.shape[1])
            if len(node.inputs) > 2 and node.inputs[2] is not None:
                c = const_tensor(node.inputs[2])
                if c is None or c.dtype != ir.DataType.FLOAT or list(c.shape) != [n_out] or \
                        _attr(node, "beta", 1.0) != 1.0:
                    return f"Gemm bias is not a constant fp32 [{n_out}] vector"
                bias = node.inputs[2]
            return _Projection(node=node, weight=t, transposed=transposed, bias=bias, out=out)
        n_out = int(t.shape[1])
        users = _uses(out)
        if len(users) == 1 and out not in self.graph.outputs:
            add = users[0]
            if add.op_type == "Add" and add.domain in _DEFAULT and len(add.inputs) == 2 and \
                    add.inputs[0] is not add.inputs[1]:
                other = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
                c = const_tensor(other)
                if c is not None and c.dtype == ir.DataType.FLOAT and list(c.shape) == [n_out]:
                    bias, out = other, add.outputs[0]
        return _Projection(node=node, weight=t, transposed=False, bias=bias, out=out)


def plan_native(model: ir.Model, *, per_channel: bool = True) -> NativePlan:
    """Find what :func:`apply_native` writes; raises :class:`NativeUnsupported` (nothing is edited) when
    the graph is not one the writer recognises."""
    from deploytool.graph import find_structure

    if model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0)) < 11:
        raise NativeUnsupported("opset below 11 (DynamicQuantizeLinear needs 11)")
    try:
        structure = find_structure(model)
    except DeployError as e:
        raise NativeUnsupported(f"encoder structure not recognised ({e})") from e
    planner = _Planner(model, per_channel)
    attentions, inside, unfused = [], set(), []
    for layer in structure.layers:
        core = layer.attention.fused
        if core is not None and core.op_type == "Attention" and core.domain in _DEFAULT:
            continue  # ONNX's own Attention stays as it is; its Q/K/V/O become DynamicQuantizeMatMul below
        try:
            a, path = planner.attention(layer)
        except _Exposed as e:
            # only this layer loses the fused op: its projections are quantized below like any other MatMul and
            # its exposed values are computed as exported (every other refusal still refuses the whole graph)
            unfused.append((layer.index, str(e)))
            continue
        attentions.append(a)
        inside.update(id(n) for n in path)
    projections, left = [], []
    for node in model.graph:
        if id(node) in inside:
            continue
        p = planner.projection(node)
        if isinstance(p, str):
            left.append((_name(node), p))
        elif p is not None:
            projections.append(p)
    return NativePlan(attentions=attentions, projections=projections, embedding=_word_table(model, structure),
                      left_fp32=left, unfused=unfused)


def exposed_attentions(model: ir.Model) -> list[ExposedAttention]:
    """The layers :func:`plan_native` leaves unfused because a value inside their attention is read outside it, by
    the same rule (``_Planner.attention``), for ORT's path, which keeps them out of ORT's attention fusion. A layer
    the native writer refuses for another reason (a packed QKV, a score bias, already fused) is not listed: its
    attention is not one the rule can read; nor is any layer of a graph whose encoder is not recognised."""
    from deploytool.graph import find_structure

    try:
        structure = find_structure(model)
    except DeployError:
        return []
    planner = _Planner(model, per_channel=True)
    found = []
    for layer in structure.layers:
        if layer.attention.fused is not None:
            continue
        try:
            planner.attention(layer)
        except _Exposed as e:
            found.append(ExposedAttention(layer.index, str(e), e.softmax))
        except DeployError:  # not a layer the rule reads (NativeUnsupported, a probe that cannot run)
            continue
    return found


def _word_table(model: ir.Model, structure) -> tuple[ir.TensorProtocol, list[ir.Node]] | None:
    """The word embedding table (a constant fp32 [V, H]) when only row Gathers read it; else None (it stays
    fp32: a tied output projection, say). Kept at opset >= 13 as when it was read by a per-axis DequantizeLinear."""
    word = structure.embeddings.get("word")
    if word is None or model.opset_imports.get("", 0) < 13:
        return None
    t = _float_matrix(word)
    if t is None or word.producer() is not None or word in model.graph.outputs:
        return None
    gathers = _uses(word)
    for g in gathers:
        if g.op_type != "Gather" or g.domain not in _DEFAULT or g.inputs[0] is not word or _attr(g, "axis", 0) != 0:
            return None
    return (t, gathers) if gathers else None


# ----------------------------------------------------------------------------------------- the edit

class _Names:
    def __init__(self, graph: ir.Graph) -> None:
        self.used = set(graph.initializers) | {v.name for v in graph.inputs if v.name}
        for node in graph:
            self.used.update(o.name for o in node.outputs if o.name)
            if node.name:
                self.used.add(node.name)

    def __call__(self, base: str) -> str:
        return unique_name(base.replace("::", "_").replace("/", "_").strip("_") or "q8", self.used)


def _initializer(graph: ir.Graph, name: str, tensor, dtype: ir.DataType, shape: list[int]) -> ir.Value:
    v = ir.Value(name=name, const_value=tensor, shape=ir.Shape(shape), type=ir.TensorType(dtype))
    graph.register_initializer(v)
    return v


def _lazy_pair(graph: ir.Graph, names: _Names, base: str, sources: list[tuple[ir.TensorProtocol, bool]],
               per_channel: bool, codes: str = "int8") -> tuple[ir.Value, ir.Value, ir.Value | None]:
    """The weight, its scales and (``codes`` uint8) its zero points (128, shaped as the scales)."""
    wname = names(f"{base}_{'uint8' if codes == 'uint8' else 'int8'}")
    sname = names(f"{base}_scale")
    lazy = _LazyInt8(sources, per_channel, wname, sname, codes)
    rows, cols = lazy.rows, lazy.cols
    dtype = ir.DataType.UINT8 if codes == "uint8" else ir.DataType.INT8
    w = _initializer(graph, wname, ir.LazyTensor(lazy.weight, dtype=dtype, shape=ir.Shape([rows, cols]),
                                                 name=wname), dtype, [rows, cols])
    sshape = [cols] if per_channel else []
    s = _initializer(graph, sname, ir.LazyTensor(lazy.scale, dtype=ir.DataType.FLOAT, shape=ir.Shape(sshape),
                                                 name=sname), ir.DataType.FLOAT, sshape)
    z = None
    if codes == "uint8":
        zname = names(f"{base}_zero_point")
        z = _initializer(graph, zname, ir.Tensor(np.full(sshape, 128, np.uint8), name=zname), ir.DataType.UINT8,
                         sshape)
    return w, s, z


def _node(names: _Names, op: str, inputs: list, base: str, *, domain: str = "", outputs: int = 1,
          **attrs) -> ir.Node:
    node = ir.node(op, inputs, attributes=attrs, domain=domain, name=names(f"{base}_{op}"), num_outputs=outputs)
    for i, o in enumerate(node.outputs):
        o.name = names(f"{node.name}_out{i}" if outputs > 1 else node.name)
    return node


def _replace(graph: ir.Graph, names: _Names, old: ir.Value, new: ir.Value) -> None:
    """Every reader of ``old`` (and the graph outputs) reads ``new``; a graph output keeps its name."""
    is_output = old in graph.outputs
    ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
    if is_output:
        name = old.name
        old.name = names(f"{name}_fp32")
        new.name = name
        new.type, new.shape = old.type, old.shape


def _additive_mask(graph: ir.Graph, names: _Names, first: ir.Node, mask: ir.Value) -> ir.Value:
    """The ``[B, 1, S, S]`` float mask ONNX's Attention adds to the scores, from the model's ``[B, S]``
    ``attention_mask``: 0 where it keeps a key (a value > 0), -10000 where it masks one (0), as QAttention reads
    its raw mask; built once, at the start of the graph (expanded over the queries: ONNX Runtime 1.32's Attention
    rejects the ``[B, 1, 1, S]`` broadcast the ONNX spec allows)."""
    base = "attention_mask_additive"
    const = {}
    for key, value, dtype in (("zero", 0.0, np.float32), ("masked", -10000.0, np.float32), ("axes", [1, 2], np.int64),
                              ("one", [1], np.int64)):
        name = names(f"{base}_{key}")
        arr = np.array(value, dtype)
        const[key] = _initializer(graph, name, ir.Tensor(arr, name=name), ir.DataType.from_numpy(arr.dtype),
                                  list(arr.shape))
    nodes = []
    if mask.dtype == ir.DataType.BOOL:  # True keeps a key
        kept = mask
    else:
        zname = names(f"{base}_int_zero")
        zero = _initializer(graph, zname, ir.Tensor(np.zeros((), mask.dtype.numpy()), name=zname), mask.dtype, [])
        nodes.append(_node(names, "Greater", [mask, zero], base))
        kept = nodes[-1].outputs[0]
    add2 = _node(names, "Where", [kept, const["zero"], const["masked"]], base)
    add4 = _node(names, "Unsqueeze", [add2.outputs[0], const["axes"]], base)
    batch = _node(names, "Shape", [mask], f"{base}_batch", end=1)
    seq = _node(names, "Shape", [mask], f"{base}_seq", start=1, end=2)
    shape = _node(names, "Concat", [batch.outputs[0], const["one"], seq.outputs[0], seq.outputs[0]], base, axis=0)
    full = _node(names, "Expand", [add4.outputs[0], shape.outputs[0]], base)
    graph.insert_before(first, [*nodes, add2, add4, batch, seq, shape, full])
    return full.outputs[0]


def apply_native(model: ir.Model, plan: NativePlan, *, per_channel: bool = True, codes: str = "int8",
                 attention: str = "qattention") -> dict:
    """Write ``plan`` into ``model`` (in place; see the module doc). Returns the pass's stats (op counts).

    ``attention``: ``qattention`` (one ``com.microsoft.QAttention`` per layer) or ``onnx`` (an int8 Q|K|V
    ``DynamicQuantizeMatMul`` with the bias, ``Split`` and ONNX's ``Attention``, opset 23: the model must
    already declare it)."""
    if attention not in ("qattention", "onnx"):
        raise ValueError(f"attention: {attention!r}")
    if attention == "onnx" and model.opset_imports.get("", 0) < ONNX_ATTENTION_OPSET:
        raise ValueError(f"ONNX's Attention needs opset {ONNX_ATTENTION_OPSET} (int8_pipeline upgrades the model first)")
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    graph = model.graph
    names = _Names(graph)
    model.opset_imports.setdefault(MS, 1)
    first = next(iter(graph))
    masks: dict[int, ir.Value] = {}
    split_sizes: dict[int, ir.Value] = {}
    shared: dict[tuple, tuple[ir.Value, ir.Value]] = {}
    shared_bias: dict[tuple, ir.Value] = {}
    for a in plan.attentions:
        base = f"layer{a.index}_qkv"
        tag = f"L{a.index}_attention"
        key = tuple((id(t), tr) for t, tr in a.weights)
        if key not in shared:
            shared[key] = _lazy_pair(graph, names, base, a.weights, per_channel, codes)
        w, s, z = shared[key]
        # one packed bias per set of stored Q/K/V biases (ALBERT's shared layer: one, not one per layer); layers
        # whose own biases merely hold equal values (an untrained model's zeros) keep their own
        bkey = (key, a.bias_sources) if a.bias_sources and None not in a.bias_sources else (id(a),)
        if bkey not in shared_bias:
            bias = np.concatenate(a.biases).astype(np.float32)
            bname = names(f"{base}_bias")
            shared_bias[bkey] = _initializer(graph, bname, ir.Tensor(bias, name=bname), ir.DataType.FLOAT,
                                             [bias.size])
        b = shared_bias[bkey]
        mask_i32 = None
        scale = {"scale": float(a.scale)} if abs(a.scale * math.sqrt(a.head_size) - 1.0) > 1e-6 else {}
        if attention == "onnx":
            mask4 = None
            if a.mask is not None:
                if id(a.mask) not in masks:
                    masks[id(a.mask)] = _additive_mask(graph, names, first, a.mask)
                mask4 = masks[id(a.mask)]
            qkv = _node(names, "DynamicQuantizeMatMul", [a.x, w, s, z, b], f"{tag}_qkv", domain=MS)
            width = a.num_heads * a.head_size
            if width not in split_sizes:
                sname = names(f"qkv_split_{width}")
                split_sizes[width] = _initializer(graph, sname, ir.Tensor(np.array([width] * 3, np.int64), name=sname),
                                                  ir.DataType.INT64, [3])
            split = _node(names, "Split", [qkv.outputs[0], split_sizes[width]], tag, outputs=3, axis=-1)
            att = _node(names, "Attention", [*split.outputs, mask4] if mask4 is not None else list(split.outputs),
                        tag, q_num_heads=a.num_heads, kv_num_heads=a.num_heads, **scale)
            graph.insert_before(a.q, [qkv, split, att])
            _replace(graph, names, a.merged, att.outputs[0])
            continue
        if a.mask is not None:
            if id(a.mask) not in masks:
                if a.mask.dtype == ir.DataType.INT32:
                    masks[id(a.mask)] = a.mask
                else:
                    cast = _node(names, "Cast", [a.mask], "attention_mask_int32", to=ir.DataType.INT32)
                    graph.insert_before(first, cast)
                    masks[id(a.mask)] = cast.outputs[0]
            mask_i32 = masks[id(a.mask)]
        dql = _node(names, "DynamicQuantizeLinear", [a.x], tag, outputs=3)
        xq, xs, xzp = dql.outputs
        attrs = {"num_heads": a.num_heads, "unidirectional": 0, **scale}
        qatt = _node(names, "QAttention", [xq, w, b, xs, s, mask_i32, xzp, z] if z is not None else
                     [xq, w, b, xs, s, mask_i32, xzp], tag, domain=MS, **attrs)
        graph.insert_before(a.q, [dql, qatt])
        _replace(graph, names, a.merged, qatt.outputs[0])
    for p in plan.projections:
        base = (p.node.name or p.weight.name or "matmul")
        key = ((id(p.weight), p.transposed),)
        if key not in shared:
            shared[key] = _lazy_pair(graph, names, base, [(p.weight, p.transposed)], per_channel, codes)
        w, s, z = shared[key]
        dq = _node(names, "DynamicQuantizeMatMul", [p.node.inputs[0], w, s, z, p.bias], base, domain=MS)
        graph.insert_before(p.node, dq)
        _replace(graph, names, p.out, dq.outputs[0])
    if plan.embedding is not None:
        table, gathers = plan.embedding
        # rows are read by Gather, not by an integer GEMM: always int8 codes in [-127, 127]
        w, s, _ = _lazy_pair(graph, names, table.name or "word_embeddings", [(table, False)], per_channel)
        for g in gathers:
            # rows back to fp32 by Cast + Mul (the scale broadcasts over the last axis): the same numbers as
            # a per-axis DequantizeLinear (zero point 0), faster in ORT 1.32 (see the module doc)
            base = g.name or "word_embeddings"
            g8 = _node(names, "Gather", [w, g.inputs[1]], base, axis=0)
            cast = _node(names, "Cast", [g8.outputs[0]], base, to=ir.DataType.FLOAT)
            mul = _node(names, "Mul", [cast.outputs[0], s], base)
            graph.insert_before(g, [g8, cast, mul])
            _replace(graph, names, g.outputs[0], mul.outputs[0])
    RemoveUnusedNodesPass()(model)
    if attention == "onnx":
        ops = {"Attention": len(plan.attentions), "DynamicQuantizeMatMul": len(plan.projections) + len(plan.attentions)}
    else:
        ops = {"QAttention": len(plan.attentions), "DynamicQuantizeMatMul": len(plan.projections),
               "DynamicQuantizeLinear": len(plan.attentions)}
    if plan.embedding is not None:
        ops["Cast+Mul (int8 word rows)"] = len(plan.embedding[1])
    return {"quantized_ops": ops, "int8_word_embeddings": plan.embedding is not None, "weight_codes": codes}
