"""int8 quantization with ``onnxruntime.quantization``, on ORT's fused transformer graph.

Dynamic (default): weights ``W ~ s_w * q_w`` with ``q_w`` int8 symmetric, one scale per output
column when ``per_channel`` (``s_w[n] = max_k |W[k, n]| / 127``), else one per tensor; activations
are quantized per tensor at run time (uint8, ``s_a = (max - min) / 255``, zero point ``-min / s_a``),
so every MatMul becomes an integer GEMM (``DynamicQuantizeMatMul`` / ``MatMulIntegerToFloat`` after
ORT's own fusions) with an fp32 result ``s_a * s_w * (q_a - z_a) @ q_w``.

Static (``static=True``): activation ranges come from calibration batches (MinMax over texts of a
dataset, tokenized with the model's tokenizer), giving a QDQ graph with fixed activation scales.

Before quantizing, the graph is fused by ORT's transformer optimizer (``fusion``): ``attention`` (the
default) fuses the whole attention block into ``Attention`` (quantized to ``QAttention``: one int8
GEMM for Q/K/V on one quantized input) and the embeddings into ``EmbedLayerNormalization``
(``QEmbedLayerNormalization``); ``mha`` keeps Q/K/V/O as separate MatMuls around a fused
``MultiHeadAttention`` core; ``none`` quantizes the export as it is (Q/K/V then share one
``DynamicQuantizeLinear``, as ``quantize_dynamic`` arranges it). A layer whose attention has a value read outside
it (an export with output_attentions exposes some layers' probabilities, which a fused attention does not compute)
is kept out of ORT's attention fusion, found by the native writer's rule
(:func:`deploytool.passes.int8_native.exposed_attentions`; ORT's fusion removed such a Softmax with the rest): its
Q/K/V/O are quantized like every other MatMul around its fp32 attention core, a Skip per such layer, the stats'
``unfused_attention_layers`` listing them; the other layers are fused. When ORT's optimizer fails on a graph, or
its fusion would still remove a value something reads, the pass quantizes the unfused graph and records a Skip
(``benchmarks/int8_exposed_attention.py``: before, one exposed layer sent the whole model there). Fused graphs need
``DefaultTensorType=FLOAT`` (FACTS.md). ``quant_pre_process`` is not used (it fails on these exports
and leaves temp files behind). ORT's optimizer and quantizer are called through the runtime layer
(:func:`deploytool.runtime.fuse.optimize_proto`, :mod:`deploytool.runtime.ort_quant`).

The FFN bias stays in the int8 GEMM (``bias_gelu=False``): ORT's ``BiasGelu`` kernel cost ~2x a
plain ``Gelu`` at [1, 128, 1536] on the Xeon below (2.9 vs 1.5 ms for six layers), and
``DynamicQuantizeMatMul`` adds the bias for free. Residual ``Add`` -> ``LayerNormalization`` pairs are
written as ``Sum`` -> ``LayerNormalization`` (``skip_layernorm=False``) so that ORT does not fuse them
into ``SkipLayerNormalization``, whose CPU kernel (ORT 1.32) costs 250 us at [1, 128, 384] against
43 us for Sum + LayerNormalization (same result within 4e-6). ``static_reshape=True`` replaces the
run-time shape arithmetic of the attention Reshapes by constants (:mod:`static_reshape`; unfused
graphs only have them).

Measured (benchmarks/int8_bench.py, MiniLM, batch 1, 1 thread, Intel Xeon with AVX-512 VNNI and
AMX, 2 cores shared with other jobs at load average 5-9, interleaved with optimum's ORTQuantizer
avx512_vnni output, paired ratios, two runs of 3 rounds): the default 0.71-0.79 at seq 8 and
0.81-0.85 at seq 128; unfused 0.79-0.98 and 0.80-0.85; unfused + static_reshape 0.78-0.86 and
0.79-0.84; BiasGelu 0.71-0.89 and 0.88-0.91; static per-tensor activations (calibrated) fail the gate
(cosine 0.63-0.66). Rotten Tomatoes test accuracy of a fine-tuned MiniLM: 77.2% (optimum 77.1%, fp32
77.5%); embedding cosine to fp32 0.9895 (optimum 0.9865). So 1.25x (ratio 0.80) holds at seq 8, not
at 128: the remaining time is in kernels every file shares (the int8 GEMMs run the same MLAS kernel,
the attention core, Gelu, LayerNorm); what is left to remove is optimum's SkipLayerNormalization,
its int8 attention-score MatMuls and its extra nodes. Results file: benchmarks/results/int8_bench.json.

Memory (ORT's path, BERT-base shape, 435.7 MB; ``benchmarks/pass_speed.py --passes int8-ort``, results
``pass_speed_int8_ort.json`` against ``pass_speed_int8_ort_before.json``, run back to back at load 3.0-3.1):
peak 2.42 GB, 5.55x the file (was 3.34 GB, 7.66x). What is left is ORT's optimizer itself: from 0.59 GB (the
imports and the proto it needs) to 2.30 GB inside ``optimize_model`` (its symbolic shape inference works on
a copy of the model; collecting garbage between its fusions did not lower it); the quantizer then goes from
0.14 to 1.34 GB. Before, ORT's optimizer's garbage (1.1 GB in reference cycles, 0.3 GB of freed heap) stayed
resident through the quantizer, which read an inline input. The input model holds only memory maps here.

``fusion="onnx"`` (native engine only) writes each layer's attention as an int8 Q|K|V ``DynamicQuantizeMatMul``,
``Split`` and ONNX's own ``Attention`` op (opset 23: the file needs ONNX Runtime 1.23 or later, which is why it is
not the default); see :mod:`deploytool.passes.int8_native` and ``benchmarks/results/int8_bench_zen4.json``. A graph
that already has ONNX's ``Attention`` (torch's opset-23 export) keeps it on either engine: ORT's quantizer would
make it a contrib ``QAttention`` by its op type alone, an invalid model.

Engine (``engine``, default ``native``): ``native`` writes the default recipe (dynamic, fusion=attention)
itself, streamed, without ORT's optimizer or quantizer (:mod:`deploytool.passes.int8_native`: one
QAttention per layer, the other projections DynamicQuantizeMatMul, the word embeddings int8; a layer whose
attention probabilities are exposed as an output keeps its fp32 attention core between int8 projections, a Skip
per such layer, the stats' ``unfused_attention_layers`` listing them); a config or graph it does not take goes
to ORT's path (``ort``, what the figures above measure) with a Skip saying
why. Native measured as fast and as accurate as ORT's path on MiniLM and 8x faster to write a BERT-base
at 0.56x the file's memory (figures in :mod:`deploytool.passes.int8_native`).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import onnx_ir as ir
from pydantic import PlainValidator

from deploytool import onnx_io, scratch
from deploytool.errors import ConfigError, DeployError, PassRefusedError, UnavailableError, VerificationError
from deploytool.passes.base import QUANTIZED_OPS, DeployPass, DeployPassResult, Skip, release_free_memory, swap_in
from deploytool.choices import kind_of, require_config
from deploytool.validation import ColumnName, Flag, Integer, OneOf, check_calibration_columns, invalid, schema
from deploytool.units import MAX_SEQ_LEN

logger = logging.getLogger(__name__)

__all__ = ["Engine", "Fusion", "WeightCodes", "Int8Config", "Int8QuantizePass", "quantize_int8_file"]


class Fusion(str, enum.Enum):
    """How the attention block is written: ``attention`` one ``com.microsoft.QAttention`` per layer (any opset
    from 13, every ONNX Runtime with contrib ops); ``onnx`` an int8 Q|K|V ``DynamicQuantizeMatMul``, ``Split`` and
    ONNX's own ``Attention`` (opset 23: the file needs ONNX Runtime 1.23 or later; native engine only); ``mha``
    ORT's ``MultiHeadAttention`` around int8 Q/K/V/O; ``none`` the export's own ops."""

    MHA = "mha"
    ATTENTION = "attention"
    ONNX = "onnx"
    NONE = "none"


class WeightCodes(str, enum.Enum):
    """How the int8 GEMM weights are stored, which picks ONNX Runtime's integer kernel on x86.

    ``int8``: symmetric codes in [-127, 127] (uint8 activations x int8 weights, MLAS's U8S8 kernel). Exact on
    x86 with AVX-512 VNNI or AVX-VNNI and on ARM64; on x86 without VNNI (AVX2 only: Haswell to Skylake client,
    AMD Zen 1-3) MLAS multiplies with ``vpmaddubsw``, which adds two u8 x s8 products in a saturating int16,
    so a pair over 32767 is clipped. ``int7``: codes in [-63, 63] (``s = max / 63``, 7-bit signed codes; ORT's
    ``reduce_range`` is a different rule, [-64, 64]): no pair can saturate (2 x 255 x 63 < 32767), half the
    resolution, the same kernel. ``uint8``: the ``int8`` codes plus
    128, stored uint8 with zero point 128: the same integers through MLAS's U8U8 kernel, exact everywhere.
    ``pairsafe``: int8 codes with each column's scale chosen so that no two neighbouring codes along the input
    dimension (rows ``2i, 2i+1``: the pairs ``vpmaddubsw`` adds) add past 128 in magnitude, so nothing can
    saturate: the U8S8 kernel and speed of ``int8``, exact everywhere, a coarser step per column
    (``benchmarks/results/int8_codes.json``). On ORT's path (engine ort, static, a graph the native writer does
    not take) the int8 weights ORT's quantizer wrote are re-coded by the ``int7`` or ``pairsafe`` rule from their
    fp32 originals, so each name means the same codes whichever engine wrote the file."""

    INT8 = "int8"
    INT7 = "int7"
    UINT8 = "uint8"
    PAIRSAFE = "pairsafe"


class Engine(str, enum.Enum):
    """Who writes the dynamic fused-attention int8 graph: deploytool itself, streamed
    (:mod:`deploytool.passes.int8_native`), or ORT's transformer optimizer + ``quantize_dynamic``."""

    NATIVE = "native"
    ORT = "ort"


def _name_or_file(v: Any) -> str:
    """A dataset name or a file: a non-empty string, or a path object (``pathlib.Path``) held as its string, so that
    ``calib_data=Path("c.csv")`` and ``"c.csv"`` make equal configs."""
    s = os.fspath(v) if isinstance(v, os.PathLike) else v
    if not isinstance(s, str) or not s.strip():
        raise invalid(f"expected a non-empty string or a file path, got {kind_of(v)}")
    return s


#: a dataset name or a file path (``calib_data``), or a file path (``tokenizer``), held as a string
NameOrFile = Annotated[str, PlainValidator(_name_or_file)]


@schema
class Int8Config:
    """int8 quantization. ``calib_data``: a dataset name or CSV/JSONL path (static only); ``calib_size``: how many
    of its texts calibrate; ``calib_text_col`` / ``calib_text_pair_col``: the file's column of texts and of a
    sentence pair's second texts (default: ``text``, or a GLUE pair of columns found by name). The names are the
    CLI's (``--calib-data``, ``--calib-size``, ``--calib-text-col``, ``--calib-text-pair-col``) and a recipe's
    keys."""

    per_channel: Flag = True
    static: Flag = False
    calib_data: Optional[NameOrFile] = None
    calib_size: Integer(1, 10_000) = 64
    calib_text_col: ColumnName = "text"
    calib_text_pair_col: Optional[ColumnName] = None
    calib_seq_len: Integer(2, MAX_SEQ_LEN) = 128
    # static's tokenizer: a tokenizer.json or vocab.txt, or a folder holding one; None: models.find_tokenizer's rule
    tokenizer: Optional[NameOrFile] = None
    # measured fastest on MiniLM at seq 8 and 128 with bias_gelu off (benchmarks/int8_bench.py); falls back
    # to the unfused graph when ORT's optimizer fails on a model
    fusion: OneOf(Fusion) = Fusion.ATTENTION
    bias_gelu: Flag = False  # let ORT fuse the FFN bias Add + Gelu into BiasGelu (measured slower; see doc)
    skip_layernorm: Flag = False  # let ORT fuse residual Add + LayerNormalization into SkipLayerNormalization
    static_reshape: Flag = False  # constant Reshape shapes (0 / -1 keep batch and sequence dynamic)
    num_heads: Integer(0, 4096, what="0 = detect") = 0  # 0: from metadata / detected by ORT
    hidden_size: Integer(0, 1 << 20, what="0 = detect") = 0
    # native: the streaming writer (dynamic, per-channel or per-tensor, fusion=attention); anything it does not
    # take (static, fusion mha/none, bias_gelu, skip_layernorm, static_reshape, num_heads/hidden_size given, a
    # graph it cannot read) falls back to ORT's quantizer with a Skip saying why. Default native: as fast as
    # the ORT path and as accurate on MiniLM (benchmarks/results/int8_bench_native.json), streamed
    engine: OneOf(Engine) = Engine.NATIVE
    # int8 (default; exact on VNNI x86 and ARM64); pairsafe, uint8 or int7 for x86 CPUs without VNNI (WeightCodes)
    weights: OneOf(WeightCodes) = WeightCodes.INT8

    def __post_init__(self) -> None:
        if self.fusion is Fusion.ONNX and self.engine is Engine.ORT:
            raise ConfigError("fusion: 'onnx' (ONNX's Attention op) is written by the native engine only; "
                              "drop --engine ort or use --fusion attention")
        if self.fusion is Fusion.ONNX and self.static:
            raise ConfigError("fusion: 'onnx' is dynamic int8 (the native engine); static int8 takes --fusion "
                              "attention, mha or none")
        if self.static and not self.calib_data:
            raise ConfigError("calib_data: static int8 needs calibration data (--calib-data DATASET or file)")
        if not self.static and self.calib_data:
            raise ConfigError("calib_data: calibration data is only used with static quantization (--static)")
        for name, default in (("calib_text_col", "text"), ("calib_text_pair_col", None)):
            if not self.static and getattr(self, name) != default:
                raise ConfigError(f"{name}: calibration columns are only used with static quantization (--static)")
        if not self.static and self.tokenizer is not None:  # was taken and ignored: dynamic int8 reads no text
            raise ConfigError("tokenizer: the tokenizer is only used with static quantization (--static), "
                              "which tokenizes its calibration texts")
        check_calibration_columns(self.calib_text_col, self.calib_text_pair_col,
                                  names=("calib_text_col", "calib_text_pair_col"), data=self.calib_data,
                                  data_name="calib_data")


def _meta(model: ir.Model, key: str) -> str | None:
    return model.metadata_props.get("deploytool." + key)


def _graph_heads(model: ir.Model, heads: int, hidden: int) -> tuple[int, int]:
    """(num_heads, hidden_size) for ORT's fusion from the encoder's structure: the one head count and
    the hidden size when every layer has the same heads; (0, 0) (ORT reads each layer's from its
    shapes) when they differ; the given values when the graph cannot be read. Raises DeployError (the
    caller quantizes the unfused graph) when a layer's attention is narrower than the hidden state."""
    from deploytool.graph import find_structure

    try:
        st = find_structure(model)
    except DeployError:
        return heads, hidden
    shapes = {(layer.attention.num_heads, layer.attention.head_size) for layer in st.layers}
    narrow = sorted({nh * hs for nh, hs in shapes if nh * hs != st.hidden_size})
    if narrow:
        # ORT's Attention fusion assumes Q/K/V as wide as the hidden state: with num_heads 0 it still
        # fused a width-0.75 MiniLM (9 x 32 = 288 of 384) into wrong attention (cosine 0.76)
        raise DeployError(f"attention {narrow[0]} wide in a {st.hidden_size}-wide model (sliced or pruned "
                          "heads): ORT's attention fusion cannot take it")
    if len(shapes) == 1:
        return shapes.pop()[0], st.hidden_size
    return 0, 0


# the domain and op type a held Softmax carries through ORT's optimizer (below): no fusion matches it
_HELD_DOMAIN = "deploytool.held"
_HELD_OP = "HeldSoftmax"


def _hold_exposed_attentions(proto, model: ir.Model) -> list:
    """Hide from ORT's attention fusion, in ``proto`` (serialized from ``model``), each layer whose attention has a
    value read outside it (:func:`deploytool.passes.int8_native.exposed_attentions`, the rule by which the native
    writer leaves a layer unfused): its Softmax becomes a ``HeldSoftmax`` of a private domain, which every attention
    pattern of ORT's fusion fails to match (they all start from a Softmax; an Identity or Cast put in the way would
    be removed by the optimizer first). ORT's fusion does not check whether the nodes it removes are read
    elsewhere: it dropped the exposed probabilities, so one exposed layer sent the whole model to the unfused
    path. :func:`_release_held` restores them. Returns the layers held (ExposedAttention)."""
    from deploytool.passes.int8_native import exposed_attentions

    exposed = {e.softmax.outputs[0].name: e for e in exposed_attentions(model) if e.softmax.outputs[0].name}
    held = []
    for n in proto.graph.node:
        if n.op_type == "Softmax" and n.domain in ("", "ai.onnx") and len(n.output) == 1 and n.output[0] in exposed:
            n.op_type, n.domain = _HELD_OP, _HELD_DOMAIN
            held.append(exposed[n.output[0]])
    if held:
        proto.opset_import.add(domain=_HELD_DOMAIN, version=1)
    return sorted(held, key=lambda e: e.index)


def _release_held(proto) -> None:
    """Undo :func:`_hold_exposed_attentions` in ``proto`` (the held nodes are the Softmax they were, attributes
    kept)."""
    for n in proto.graph.node:
        if n.domain == _HELD_DOMAIN and n.op_type == _HELD_OP:
            n.op_type, n.domain = "Softmax", ""
    kept = [o for o in proto.opset_import if o.domain != _HELD_DOMAIN]
    if len(kept) != len(proto.opset_import):
        del proto.opset_import[:]
        proto.opset_import.extend(kept)


def _fuse(proto, config: Int8Config, model: ir.Model):
    """ORT's transformer optimizer on ``proto`` (serialized from ``model``), the layers whose attention is exposed
    kept out of its attention fusion. Returns (the fused proto, those layers: ExposedAttention)."""
    from deploytool.runtime.fuse import optimize_proto

    heads = config.num_heads or int(_meta(model, "num_heads") or 0)
    hidden = config.hidden_size or int(_meta(model, "hidden_size") or 0)
    if not config.num_heads:
        # the export's metadata names the source's heads: a sliced or pruned model has fewer (and an
        # attention narrower than its hidden state), and fusing with the source's count computes wrong
        # attention (a width-0.75 MiniLM: cosine 0.89 to the fp32 model). Read the graph instead.
        heads, hidden = _graph_heads(model, heads, hidden)
    if heads == 0:  # per-layer head counts (pruned models): ORT detects each layer's own from its shapes
        hidden = 0
    held = _hold_exposed_attentions(proto, model)
    try:
        out = optimize_proto(proto, num_heads=heads, hidden_size=hidden, what="int8",
                             fusions={"use_multi_head_attention": config.fusion is Fusion.MHA,
                                      "enable_skip_layer_norm": config.skip_layernorm,
                                      "enable_bias_skip_layer_norm": config.skip_layernorm,
                                      "enable_bias_gelu": config.bias_gelu})
    finally:
        _release_held(proto)  # ORT's optimizer edits the proto it is given: its output is this proto
    _release_held(out)
    seen = {i.name for i in out.graph.input} | {t.name for t in out.graph.initializer}
    for node in out.graph.node:
        for name in node.output:
            if name and name in seen:
                # ORT's optimizer on a graph it already fused (level 1, static shapes) adds a second Cast of the
                # mask under the name of the first; such a graph is invalid
                raise DeployError(f"ORT's optimizer wrote a graph that defines '{name}' twice")
            seen.add(name)
    lost = [o.name for o in out.graph.output if o.name not in seen]
    lost += [x for n in out.graph.node for x in n.input if x and x not in seen and x not in lost]
    if lost:
        # an export with output_attentions exposes each layer's attention probabilities: ORT's attention fusion
        # removes the Softmax that computes them and leaves the output undefined (its quantizer then failed with
        # "Invalid model with unknown initializers/tensors")
        # (a layer whose exposed value this pass found is held out of the fusion above; this is the rest)
        what = "graph output" if lost[0] in {o.name for o in out.graph.output} else "value"
        raise DeployError(f"ORT's attention fusion removes the nodes that compute {what} '{lost[0]}'"
                          + (f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""))
    if not any(o.domain == "com.microsoft" for o in out.opset_import):
        out.opset_import.add(domain="com.microsoft", version=1)
    _lift_opset_for_layernorm(out)
    return out, held


# every default-domain op that changed between opsets 13 and 17 only gained types or optional attributes
# whose defaults keep the old behaviour (Reshape's allowzero=0, ScatterND's reduction=none, ...), so a
# graph valid at 13-16 computes the same at 17; below 13 (Squeeze/ReduceSum axes as attributes) it does not
_LN_SAFE_FROM = 13


def _attention_bias_as_mha(proto) -> int:
    """Rewrite, in ``proto``, each fused ``Attention`` that reads an attention bias (input 5) and nothing else
    QAttention lacks (no past state, no present read, no rotary) as ``MatMul`` (x by the QKV weight), ``Add`` (its
    bias), ``Split`` into Q, K and V and ``MultiHeadAttention`` with the node's mask (ORT's mask_index forms, as
    it read them), attention bias, heads, scale, mask value and causality. ORT's quantizer then quantizes that
    MatMul as every other, where it would make the Attention a QAttention without the bias. Returns how many."""
    from onnx import helper, numpy_helper

    from deploytool.graph._util import ATTENTION_SHARED_ATTRS as kept_attrs

    inits = {t.name: t for t in proto.graph.initializer}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    nodes = list(proto.graph.node)
    read = {i for n in nodes for i in n.input} | {o.name for o in proto.graph.output}
    out, done = [], 0
    for i, n in enumerate(nodes):
        inputs = list(n.input) + [""] * (6 - len(n.input))
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type != "Attention" or n.domain != "com.microsoft" or len(n.input) < 6 or not inputs[5] or \
                inputs[4] or len(n.input) > 6 or any(o in read for o in n.output[1:] if o) or \
                set(attrs) - set(kept_attrs) - {"qkv_hidden_sizes"}:
            out.append(n)
            continue
        sizes = [int(v) for v in attrs.get("qkv_hidden_sizes", [])]
        w = inits.get(inputs[1])
        if not sizes and w is not None and len(w.dims) == 2 and w.dims[1] % 3 == 0:
            sizes = [int(w.dims[1]) // 3] * 3
        if len(sizes) != 3 or len(set(sizes)) != 1:  # MultiHeadAttention's Q, K and V are one width
            out.append(n)
            continue
        p = f"deploytool_mha{i}_"
        made = [helper.make_node("MatMul", [inputs[0], inputs[1]], [p + "qkv"], name=p + "MatMul")]
        qkv = p + "qkv"
        if inputs[2]:
            made.append(helper.make_node("Add", [qkv, inputs[2]], [p + "qkv_bias"], name=p + "Add"))
            qkv = p + "qkv_bias"
        if opset >= 13:
            proto.graph.initializer.append(numpy_helper.from_array(np.array(sizes, np.int64), p + "split"))
            made.append(helper.make_node("Split", [qkv, p + "split"], [p + "q", p + "k", p + "v"], name=p + "Split",
                                         axis=-1))
        else:
            made.append(helper.make_node("Split", [qkv], [p + "q", p + "k", p + "v"], name=p + "Split", axis=-1,
                                         split=sizes))
        kept = {k: v for k, v in attrs.items() if k in kept_attrs}
        made.append(helper.make_node("MultiHeadAttention", [p + "q", p + "k", p + "v", "", inputs[3], inputs[5]],
                                     [n.output[0]], name=n.name or p + "MultiHeadAttention", domain="com.microsoft",
                                     **kept))
        out.extend(made)
        done += 1
    if done:
        del proto.graph.node[:]
        proto.graph.node.extend(out)
    return done


def _lift_opset_for_layernorm(proto) -> None:
    """ORT's optimizer writes ``LayerNormalization`` (an opset-17 op) into graphs of any opset; an
    opset-14 export would then be refused by onnx.checker although ORT runs it. Declare opset 17 where
    that changes nothing else (13-16: see above)."""
    opset = next((o for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not _LN_SAFE_FROM <= opset.version < 17:
        return
    if any(n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx") for n in proto.graph.node):
        logger.info("int8: ORT's fusion wrote LayerNormalization into an opset-%d graph; declaring opset 17",
                    opset.version)
        opset.version = 17


def _find_tokenizer(config: Int8Config, model: ir.Model, model_path: str | os.PathLike | None):
    """Static int8's tokenizer by the one rule (:func:`deploytool.models.find_tokenizer`): ``tokenizer`` given, else
    beside the model's file (where the pass knows it), else in the model folder the export recorded; found
    nowhere, a one-line ConfigError naming every place looked at."""
    from deploytool.models import export_source, find_tokenizer

    look = find_tokenizer(model_path, config.tokenizer, export_source(model))
    if look.path is None:
        raise ConfigError(f"tokenizer: {look.missing('static int8 calibration')}")
    return look


def _calibration_feeds(config: Int8Config, tokenizer: Path, proto) -> list[dict[str, np.ndarray]]:
    """The calibration batches for static int8: the calibration texts tokenized and fed as the model declares its
    inputs (names, element types, a fixed batch or sequence length): ``input_ids`` the token ids, an attention
    mask 1 on tokens and 0 on padding, token types (``token_type_ids``, ``segment_ids``) the tokenizer's (of
    sentence pairs: 0 on the first text, 1 on the second), other integer inputs zeros. A model whose inputs cannot
    be fed from text is refused in one line (dynamic int8 needs no calibration)."""
    from deploytool.data import calibration_texts
    from deploytool.models import load_tokenizer
    from deploytool.runtime.inputs import REQUIRED_INPUT, plan_inputs_proto

    tok = load_tokenizer(tokenizer)
    plan = plan_inputs_proto(proto, "the model", require_ids=False)
    past = plan.tokenizer_past_table(tok)
    if past is not None:  # ORT's Gather failed on it mid-calibration
        raise ConfigError(f"tokenizer: {tokenizer} {past}; give the one the model was exported from")
    names = [s.name for s in plan.inputs]
    if REQUIRED_INPUT not in names:
        raise PassRefusedError(f"static int8 calibrates on text fed as '{REQUIRED_INPUT}'; this model's inputs are "
                               f"{', '.join(names) or 'none'} (dynamic int8, the default, needs no calibration)")
    batch, seq = 1, None
    for spec in plan.inputs:
        if spec.kind == "normal" and spec.name != "attention_mask":
            raise PassRefusedError(f"static int8 calibrates on text: the model's float input '{spec.name}' cannot be "
                                   "made from it (dynamic int8, the default, needs no calibration)")
        if len(spec.shape) != 2:
            raise PassRefusedError(f"static int8 calibrates on [batch, sequence] inputs; '{spec.name}' has the shape "
                                   f"{list(spec.shape)} (dynamic int8, the default, needs no calibration)")
        if isinstance(spec.shape[0], int) and spec.shape[0] > 0:
            batch = spec.shape[0]
        if isinstance(spec.shape[1], int) and spec.shape[1] > 0:
            seq = spec.shape[1]
    pad = next((i for i in (tok.token_to_id(t) for t in ("[PAD]", "<pad>")) if i is not None), 0)
    tok.enable_truncation(seq if seq is not None else config.calib_seq_len)
    encodings = tok.encode_batch(calibration_texts(config.calib_data, n=config.calib_size,
                                                      text_col=config.calib_text_col,
                                                      text_pair_col=config.calib_text_pair_col))
    if len(encodings) < batch:  # a fixed batch larger than the texts: the texts again, in order
        encodings = [encodings[i % len(encodings)] for i in range(batch)]
    feeds = []
    for start in range(0, len(encodings) - batch + 1, batch):
        group = encodings[start:start + batch]
        width = seq if seq is not None else max(len(e.ids) for e in group)
        ids = np.full((batch, width), pad, dtype=np.int64)
        mask = np.zeros((batch, width), dtype=np.int64)
        types = np.zeros((batch, width), dtype=np.int64)
        for r, e in enumerate(group):
            ids[r, :len(e.ids)] = e.ids
            mask[r, :len(e.ids)] = 1
            types[r, :len(e.type_ids)] = e.type_ids  # a pair's second text is type 1 (they were fed all zeros)
        feed = {}
        for spec in plan.inputs:
            low = spec.name.lower()
            value = ids if spec.name == REQUIRED_INPUT else mask if spec.name == "attention_mask" else \
                types if ("type" in low or "segment" in low) else np.zeros_like(ids)
            feed[spec.name] = value.astype(spec.dtype)
        feeds.append(feed)
    return feeds


class Int8QuantizePass(DeployPass):
    """Fuse (optional) and quantize to int8 with onnxruntime.quantization (see module docstring)."""
    label = "int8"  # how messages name it: its command

    def __init__(self, config: Int8Config, *, model_path: str | os.PathLike | None = None) -> None:
        """``model_path``: the file the model was read from, where static int8 looks for the tokenizer first
        when ``config.tokenizer`` is not given (:func:`deploytool.models.find_tokenizer`)."""
        super().__init__()
        require_config(config, Int8Config, "Int8QuantizePass")  # not an AttributeError in call()
        self.config = config
        self.model_path = model_path

    def input_files(self) -> tuple[str, ...]:
        files = super().input_files()
        tok = self.config.tokenizer
        if tok and Path(tok).is_dir():  # a folder: the file read there (the lookup's: tokenizer.json, else vocab.txt)
            from deploytool.models import find_tokenizer

            try:
                files += (str(find_tokenizer(None, tok).path),)
            except DeployError:  # the pass refuses it when it runs
                pass
        return files

    def variant_step(self, result) -> dict:
        codes = self.config.weights
        return {"step": "int8" if codes is WeightCodes.INT8 else f"int8({codes.value})", "precision": "int8"}

    def gate_session_bytes(self, model: ir.Model) -> int:
        """ONNX Runtime prepacks each int8 MatMul weight of the output into a buffer of its own as it loads it:
        about a byte per weight of the input's float MatMul/Gemm weights (BERT-base: 85 MB), for those under
        the gate's limit."""
        from deploytool.passes.base import matmul_weight_elements

        return matmul_weight_elements(model)

    def min_output_cosine(self) -> float | None:
        return 0.9  # the gate refuses an output this far from the input's (a broken model, not rounding)

    def requires(self, model: ir.Model) -> None:
        from deploytool.runtime.ort_quant import onnxruntime_missing, quantization_missing

        if self.config.engine is Engine.NATIVE:
            # the native writer needs no ORT to write (the gate runs it, a fallback imports its quantizer)
            if onnxruntime_missing():
                raise UnavailableError("int8 quantization needs onnxruntime (not installed)")
        else:
            why = quantization_missing()
            if why is not None:
                raise UnavailableError(f"int8 quantization needs onnxruntime ({why})")
        for node in model.graph.all_nodes():
            if node.op_type in QUANTIZED_OPS:
                raise PassRefusedError(f"model is already quantized (it contains {node.op_type} node {node.name!r})")
        if "deploytool.packing" in model.metadata_props:
            raise PassRefusedError("model is already packed (metadata 'deploytool.packing'); quantize the fp32 model")
        if not any(n.op_type in ("MatMul", "Gemm") for n in model.graph.all_nodes()):
            raise PassRefusedError("no MatMul/Gemm in the model: nothing to quantize")
        for v in model.graph.initializers.values():
            if v.dtype == ir.DataType.FLOAT16:  # int8_pipeline upcasts an fp16 input first
                raise PassRefusedError(f"model has fp16 weights (e.g. {v.name!r}); upcast it first "
                                       "(UpcastFp16Pass, which int8_pipeline runs) or quantize the fp32 model")

    def ensures(self, model: ir.Model) -> None:
        if not any(n.op_type in QUANTIZED_OPS for n in model.graph.all_nodes()):
            raise VerificationError("int8 wrote no int8 op; nothing written")

    def call(self, model: ir.Model) -> DeployPassResult:
        result = self._call(model)
        if self.config.weights is WeightCodes.INT8:
            from deploytool.runtime.int8_kernel import saturation_note

            note = saturation_note("the gate's int8 outputs")
            if note:
                result.stats["host_note"] = note
        return result

    def _call(self, model: ir.Model) -> DeployPassResult:
        from deploytool.passes.dedupe_initializers import dedupe_initializers

        skipped: list[Skip] = []
        # a weight stored once per reader (a dynamo export of ALBERT) would be quantized once per copy
        merged = dedupe_initializers(model)
        result = self._call_engine(model, skipped)
        if merged.tensors:
            result.stats["deduplicated_input"] = {"tensors": merged.tensors, "bytes": merged.bytes}
        return result

    def _call_engine(self, model: ir.Model, skipped: list[Skip]) -> DeployPassResult:
        if self.config.engine is Engine.NATIVE:
            from deploytool.passes.int8_native import NativeUnsupported

            why = _native_refusal(self.config)
            if why is not None:
                # an option only ORT's path has was asked for: not a skip, what the user chose
                result = self._call_ort(model, skipped)
                result.stats["engine_note"] = f"{why}: written by ORT's path"
                return result
            try:
                return self._call_native(model)
            except NativeUnsupported as e:
                skipped.append(Skip("engine", f"native int8 writer: {e}; quantized by ORT's quantizer instead"))
                if self.config.fusion is Fusion.ONNX:  # ORT's path has no ONNX Attention: its QAttention then
                    skipped.append(Skip("fusion", "ONNX's Attention is written by the native writer only; "
                                        "ORT's path fused attention into QAttention"))
                    return self._call_ort(model, skipped, dataclasses.replace(self.config, fusion=Fusion.ATTENTION,
                                                                              engine=Engine.ORT))
        return self._call_ort(model, skipped)

    def _call_native(self, model: ir.Model) -> DeployPassResult:
        from deploytool.passes.int8_native import apply_native, plan_native

        cfg = self.config
        plan = plan_native(model, per_channel=cfg.per_channel)  # raises NativeUnsupported; nothing edited yet
        stats: dict[str, Any] = {"mode": "dynamic", "per_channel": cfg.per_channel, "fusion": cfg.fusion.value,
                                 "engine": Engine.NATIVE.value}
        stats.update(apply_native(model, plan, per_channel=cfg.per_channel, codes=cfg.weights.value,
                                  attention="onnx" if cfg.fusion is Fusion.ONNX else "qattention"))
        skipped = [Skip(node, f"left in fp32 by the native int8 writer: {why}") for node, why in plan.left_fp32]
        if plan.unfused:
            stats["unfused_attention_layers"] = [i for i, _ in plan.unfused]
            skipped += [Skip(f"layer {i}", f"attention not fused: {why.split(': ', 1)[-1]}, which a fused attention "
                             "op does not compute; its Q/K/V/O projections are DynamicQuantizeMatMul, the attention "
                             "core between them stays fp32") for i, why in plan.unfused]
        return DeployPassResult(model, modified=True, stats=stats, skipped=skipped)

    def _call_ort(self, model: ir.Model, skipped: list[Skip], cfg: Int8Config | None = None) -> DeployPassResult:
        from deploytool.runtime.ort_quant import quantize_file

        cfg = cfg or self.config
        # the tokenizer before any work: none found is refused in one line naming where it was looked for
        look = _find_tokenizer(cfg, model, self.model_path) if cfg.static else None
        for i, n in enumerate(model.graph):  # named, to be excluded from ORT's quantizer by name (below)
            if n.op_type == "Attention" and n.domain in ("", "ai.onnx") and not n.name:
                n.name = f"deploytool_onnx_attention_{i}"
        # streaming: without fusion the quantizer's input is written from the model's memory maps tensor by
        # tensor and only the graph (its skeleton) is read here; ORT's optimizer needs the whole proto
        proto = onnx_io.serialize_model(model) if cfg.fusion is not Fusion.NONE else onnx_io.skeleton_proto(model)[0]
        stats: dict[str, Any] = {"mode": "static" if cfg.static else "dynamic", "per_channel": cfg.per_channel,
                                 "fusion": cfg.fusion.value, "engine": Engine.ORT.value,
                                 "weight_codes": cfg.weights.value}
        # ORT's own rules: uint8 is its QUInt8 weights, asymmetric uint8 (its zero points per column), not the int8
        # codes shifted as the native writer stores them; int7 and pairsafe start from ORT's int8 codes and are
        # re-coded below by deploytool's rules (ORT's reduce_range would give [-64, 64], not int7's [-63, 63])
        ort_codes = "uint8" if cfg.weights is WeightCodes.UINT8 else "int8"
        fusion = cfg.fusion
        held = []
        if fusion is not Fusion.NONE:
            try:
                proto, held = _fuse(proto, cfg, model)
            except DeployError as e:  # a graph ORT's optimizer cannot read: int8 still works without it
                skipped.append(Skip("fusion", f"{e}; quantized the unfused graph"))
                fusion = Fusion.NONE
                stats["fusion"] = "none"
                proto = onnx_io.serialize_model(model)  # ORT's optimizer edits the proto it is given in place
        if fusion is not Fusion.NONE:
            fused = {op: sum(n.op_type == op for n in proto.graph.node)
                     for op in ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "BiasGelu",
                                "EmbedLayerNormalization")}
            stats["fused_ops"] = {k: v for k, v in fused.items() if v}
            if held:
                stats["unfused_attention_layers"] = [e.index for e in held]
                skipped += [Skip(f"layer {e.index}", f"attention not fused: {e.why.split(': ', 1)[-1]}, which a fused "
                                 "attention op does not compute; kept out of ORT's attention fusion: its Q/K/V/O "
                                 "projections are quantized like the other MatMuls, the attention core between them "
                                 "stays fp32") for e in held]
            # every Softmax left is an unfused attention; the held ones are accounted for above
            unfused = sum(n.op_type == "Softmax" and n.domain in ("", "ai.onnx") for n in proto.graph.node)
            if not fused["Attention"] and not fused["MultiHeadAttention"] \
                    and (not held or unfused > len(held)):
                skipped.append(Skip("attention", "ORT did not fuse attention (SDPA or dynamo export?); "
                                    "MatMuls are still quantized"))
        # ORT's QEmbedLayerNormalization has no position_ids input: an EmbedLayerNormalization that
        # takes one (RoBERTa's positions from the mask, as ORT's optimizer fuses them) stays fp32
        keep_fp32 = [n.name for n in proto.graph.node if n.op_type == "EmbedLayerNormalization"
                     and len(n.input) > 8 and n.input[8]]
        if keep_fp32:
            skipped += [Skip(nm, "EmbedLayerNormalization with position_ids: ORT's QEmbedLayerNormalization "
                             "cannot take them; stays fp32") for nm in keep_fp32]
        # ONNX's own Attention (opset 23) shares its op type with ORT's contrib Attention, which ORT's quantizer
        # turns into QAttention by op type alone (an invalid model: QAttention's inputs are not ONNX Attention's):
        # it stays as it is; the projections around it are quantized
        keep_fp32 += [n.name for n in proto.graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]
        # a MatMul whose constant B is not a matrix (DeBERTa's relative-position keys, [heads, head_size, 2 * span],
        # which ORT's optimizer folds to a constant on a static-shape export) is a batched product, not a
        # projection: ORT's quantizer gives it per-column zero points that MatMulIntegerToFloat rejects at load
        ranks = {t.name: len(t.dims) for t in proto.graph.initializer}
        for i, n in enumerate(proto.graph.node):
            if n.op_type == "MatMul" and n.domain in ("", "ai.onnx") and len(n.input) > 1 \
                    and ranks.get(n.input[1], 2) != 2:
                n.name = n.name or f"deploytool_matmul_{i}"
                keep_fp32.append(n.name)
                skipped.append(Skip(n.name, f"MatMul with a rank-{ranks[n.input[1]]} constant B (a batched product, "
                                    "not a projection): stays fp32"))
        # ORT's quantizer makes a fused Attention a QAttention whatever it reads: a past state or an attention bias
        # (a relative position bias, input 5), for which QAttention has no input, would be dropped silently. One
        # with an attention bias becomes MatMul, Split and MultiHeadAttention (which takes the bias): the MatMul is
        # quantized like any other; one with a past state stays fp32 (as do all with fusion "none", whose quantizer
        # input is written from the model, not from this proto)
        as_mha = _attention_bias_as_mha(proto) if cfg.fusion is not Fusion.NONE else 0
        if as_mha:
            stats["attention_bias_as_mha"] = as_mha
        for i, n in enumerate(proto.graph.node):
            extra = [k for k in range(4, len(n.input)) if n.input[k]]
            if n.op_type == "Attention" and n.domain == "com.microsoft" and extra:
                n.name = n.name or f"deploytool_attention_{i}"
                keep_fp32.append(n.name)
                what = "an attention bias" if extra == [5] else "a past state"
                skipped.append(Skip(n.name, f"fused Attention with {what}: ORT's QAttention has no input for it "
                                    "(its quantizer would drop it); stays fp32"))
        feeds = _calibration_feeds(cfg, look.path, proto) if look is not None else []
        with scratch.temporary_directory("deploytool-int8-") as tmp:
            src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
            # the quantizer's input always has external data: onnx writes the fused proto's tensors out one at
            # a time, clearing each (no serialized copy of the whole model beside the proto), and ORT's shape
            # inference then reads the graph only. Over protobuf's 2 GB limit its output needs external data too
            if cfg.fusion is not Fusion.NONE:
                big = onnx_io.weight_bytes(proto) > onnx_io.EXTERNAL_DATA_BYTES
                onnx_io.save_proto(proto, src, external=True)
            else:
                big = True
                onnx_io.save_streamed(model, src, external=True)
            del proto
            # nothing of ours is left for the quantizer to run beside: the proto is gone, and ORT's optimizer
            # leaves garbage in reference cycles (its symbolic shape inference holds a copy of the model and
            # refers to itself through its table of bound methods) that only a full collection frees. BERT-base:
            # 1.6 GB resident here; the collection frees 1.1 GB and malloc_trim returns 0.3 GB more (135 MB left)
            release_free_memory(collect=True)
            quantize_file(src, dst, per_channel=cfg.per_channel, weight_codes=ort_codes, nodes_to_exclude=keep_fp32,
                          external=big, feeds=feeds if cfg.static else None)
            if look is not None:
                stats["calibration_samples"] = len(feeds)
                stats["tokenizer"] = look.described()
            # the output's weights stay memory maps (valid after the folder is removed)
            if cfg.static_reshape:
                # probing the Reshape shapes runs the model: this option reads the output whole
                qproto = onnx_io.load_proto(dst)
                from deploytool.passes.static_reshape import constant_reshape_shapes

                stats["static_reshape"] = constant_reshape_shapes(qproto)
                out = ir.serde.deserialize_model(qproto)
                del qproto
            else:
                out = onnx_io.load_model(dst)
            if cfg.weights in (WeightCodes.PAIRSAFE, WeightCodes.INT7):  # while the quantizer's fp32 input is there
                stats[f"{cfg.weights.value}_weights"] = _recode_ort_weights(out, onnx_io.load_model(src), cfg.per_channel,
                                                                            cfg.weights)
        # a weight shared by layers comes out once per layer (ORT's optimizer packs each layer's Q|K|V from the
        # shared Q, K, V; its quantizer codes each copy): ALBERT-base 31.0 MB, 13.1 MB stored once (the native
        # writer: 11.4 MB). After the re-coding above, which finds ORT's tensors by name
        from deploytool.passes.dedupe_initializers import dedupe_initializers
        merged = dedupe_initializers(out)
        if merged.tensors:
            stats["deduplicated"] = {"tensors": merged.tensors, "bytes": merged.bytes}
        counts: dict[str, int] = {}
        for n in out.graph.all_nodes():
            if n.op_type in QUANTIZED_OPS:
                counts[n.op_type] = counts.get(n.op_type, 0) + 1
        stats["quantized_ops"] = counts
        left = sum(n.op_type in ("MatMul", "Gemm") and len(n.inputs) > 1 and n.inputs[1] is not None
                   and n.inputs[1].is_initializer() for n in out.graph.all_nodes())
        if left:
            skipped.append(Skip("MatMul", f"{left} MatMul/Gemm with constant weights left in fp32 by ORT's quantizer"))
        swap_in(model, out)
        return DeployPassResult(model, modified=True, stats=stats, skipped=skipped)


def _native_refusal(cfg: Int8Config) -> str | None:
    """Why the native writer does not take this config (None: it does)."""
    if cfg.static:
        return "static quantization (calibrated QDQ) is written by ORT's quantize_static"
    if cfg.fusion not in (Fusion.ATTENTION, Fusion.ONNX):
        return f"fusion={cfg.fusion.value} is ORT's graph (the native writer fuses attention)"
    if cfg.bias_gelu:
        return "bias_gelu is ORT's BiasGelu fusion"
    if cfg.skip_layernorm:
        return "skip_layernorm is ORT's SkipLayerNormalization fusion"
    if cfg.static_reshape:
        return "static_reshape rewrites ORT's unfused graph"
    if cfg.num_heads or cfg.hidden_size:
        return "num_heads/hidden_size steer ORT's fusion (the native writer reads them from the graph)"
    return None


_ORT_SUFFIX = "_quantized"
# a Gemm with transB: ORT's quantizer stores the transposed weight, named <original>_Transposed
_ORT_TRANSPOSED = "_Transposed"


def _recode_ort_weights(out: ir.Model, src: ir.Model, per_channel: bool, codes: WeightCodes) -> int:
    """Re-code, in place, every int8 GEMM weight ORT's quantizer wrote into ``out`` by the pair-safe or the
    7-bit rule (``codes``: :func:`deploytool.passes.int8_native.int8_weight`), from its fp32 original in the quantizer's input
    ``src`` (ORT names the codes ``<original>_quantized`` and the scales ``<original>_scale``; its int8 zero
    points are 0, as the rule's are). Returns how many weights were re-coded; a weight it cannot map to its
    original is a PassRefusedError naming it."""
    from deploytool.passes.int8_native import int8_weight
    from deploytool.runtime.int8_kernel import GEMM_WEIGHT_SLOTS

    inits = out.graph.initializers
    originals = src.graph.initializers
    done: set[str] = set()
    for node in out.graph.all_nodes():
        slots = GEMM_WEIGHT_SLOTS.get(node.op_type)  # (weight, scale or None: found by name, zero point)
        if slots is None:
            continue
        wi, si, zi = slots
        w = node.inputs[wi] if len(node.inputs) > wi else None
        if w is None or w.const_value is None or w.dtype is not ir.DataType.INT8 or w.name in done:
            continue
        if node.op_type == "DequantizeLinear" and not any(u.node.op_type in ("MatMul", "Gemm") and u.idx == 1
                                                          for u in node.outputs[0].uses()):
            continue  # not a GEMM weight (an embedding table read by Gather): no pairs to keep
        where = f"weights={codes.value}: {node.op_type} {node.name!r}"
        base = w.name[:-len(_ORT_SUFFIX)] if w.name.endswith(_ORT_SUFFIX) else None
        orig = originals.get(base) if base else None
        transposed = orig is None and base is not None and base.endswith(_ORT_TRANSPOSED)
        if transposed:
            orig = originals.get(base[:-len(_ORT_TRANSPOSED)])
        scale = (node.inputs[si] if si is not None and len(node.inputs) > si else inits.get(f"{base}_scale"))
        zero = node.inputs[zi] if zi is not None and len(node.inputs) > zi else None
        if orig is None or orig.const_value is None or scale is None or scale.const_value is None:
            raise PassRefusedError(f"{where}: its weight {w.name!r} does not name an fp32 original in the "
                                   "quantizer's input; use --weights uint8 (exact on every CPU)")
        fp32 = orig.const_value.numpy()
        if transposed:  # ORT's [K, N] copy of the Gemm's [N, K] weight
            fp32 = np.ascontiguousarray(fp32.T) if fp32.ndim == 2 else fp32
        cols = int(fp32.shape[-1]) if fp32.ndim == 2 else -1
        s_size = int(np.prod(scale.const_value.shape.numpy())) if scale.const_value.shape.rank() else 1
        if fp32.ndim != 2 or tuple(fp32.shape) != tuple(w.shape.numpy()) or s_size not in (1, cols) \
                or (s_size == cols) != per_channel \
                or (node.op_type == "DequantizeLinear" and s_size > 1 and node.attributes.get_int("axis", 1) not in (1, -1)) \
                or (zero is not None and zero.const_value is not None and np.any(zero.const_value.numpy())):
            raise PassRefusedError(f"{where}: its weight {w.name!r} is not a [K, N] matrix with per-column (or one) "
                                   "scale and zero points 0; use --weights uint8 (exact on every CPU)")
        q, scales = int8_weight([fp32], per_channel=per_channel, qmax=63 if codes is WeightCodes.INT7 else 127,
                                pair_safe=codes is WeightCodes.PAIRSAFE)
        w.const_value = ir.Tensor(q, name=w.name)
        scale.const_value = ir.Tensor(np.asarray(scales, np.float32).reshape(scale.const_value.shape.numpy()),
                                      name=scale.name)
        done.add(w.name)
    if not done:
        raise PassRefusedError(f"weights={codes.value}: ORT's quantizer wrote no int8 GEMM weight to re-code; use "
                               "--weights uint8")
    return len(done)


def int8_pipeline(config: Int8Config, *, model_path: str | os.PathLike | None = None) -> DeployPass:
    """An fp16 input upcast to fp32 first (exact: :mod:`deploytool.passes.upcast_fp16`; nothing done on an fp32
    model), an export below opset 13 upgraded to 13 (ORT's fusions write LayerNormalization, an opset-17 op,
    which only a graph at 13 or later may declare: :func:`_lift_opset_for_layernorm`; a torch opset-11 export of
    RoFormer or ESM was refused), the int8 pass, then (unless ``skip_layernorm``) the residual Add->Sum
    rewrite (see the module doc)."""
    from deploytool.passes.base import PassSequence
    from deploytool.passes.residual_sum import ResidualAddsToSumPass
    from deploytool.passes.upcast_fp16 import UpcastFp16Pass
    from deploytool.passes.upgrade_opset import UpgradeOpsetPass

    if config.fusion is Fusion.ONNX:
        from deploytool.passes.int8_native import ONNX_ATTENTION_OPSET

        upgrade = UpgradeOpsetPass(ONNX_ATTENTION_OPSET, purpose=("for ONNX's Attention op (--fusion onnx)",
                                                                  "use --fusion attention (QAttention)"))
    else:
        upgrade = UpgradeOpsetPass(_LN_SAFE_FROM, purpose=("for int8", f"export the model at opset >= {_LN_SAFE_FROM}"))
    passes: list[DeployPass] = [UpcastFp16Pass(), upgrade, Int8QuantizePass(config, model_path=model_path)]
    if not config.skip_layernorm:
        passes.append(ResidualAddsToSumPass())
    return PassSequence(passes, main=2)


def quantize_int8_file(src: str | os.PathLike, dst: str | os.PathLike, config: Int8Config, *,
                       verify: bool = True) -> DeployPassResult:
    """Quantize ``src`` to int8 into ``dst`` (atomic; ``src`` untouched): :func:`deploytool.passes.transform`, and
    static int8 looks for the tokenizer beside ``src`` too (:func:`deploytool.models.find_tokenizer`)."""
    require_config(config, Int8Config, "quantize_int8_file")
    from deploytool.passes.base import run_pass_file

    return run_pass_file(int8_pipeline(config, model_path=src), src, dst, verify=verify)
