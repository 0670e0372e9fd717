"""ORT's transformer optimizer on an exported encoder: the fused graph later passes and benches use.

Wraps ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert", opt_level=0)`` (python
fusions only, no ORT graph-level rewrites baked into the file). On a TorchScript/optimum export of an
eager-attention model it fuses each layer's attention subgraph into ``com.microsoft.Attention``, the
embeddings into ``EmbedLayerNormalization``, residual + LayerNorm into ``SkipLayerNormalization`` and
bias + GELU into ``BiasGelu``/``FastGelu``; on a dynamo export only the last two fire (FACTS.md).

The fused file holds no exporter provenance: the optimizer leaves each node it does not fuse as it was, with the
dynamo exporter's ``metadata_props`` (stack traces, class hierarchies, ...), which are left out as from every file
deploytool writes (:func:`deploytool.onnx_io.strip_exporter_metadata`; ``FuseResult.exporter_metadata_bytes_dropped``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from deploytool import onnx_io
from deploytool.errors import DeployError
from deploytool.quiet_logs import held_stdout, quiet_logs

logger = logging.getLogger(__name__)

__all__ = ["FuseResult", "fuse_transformer", "REPORTED_OPS"]

REPORTED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
                "BiasGelu", "FastGelu", "Gelu", "LayerNormalization")
_META_PREFIX = "deploytool."


@dataclasses.dataclass(frozen=True)
class FuseResult:
    """path: the fused model; fused_ops: op type -> count in the fused graph (REPORTED_OPS only);
    num_heads/hidden_size: what the optimizer was told (0 = it detected them itself);
    exporter_metadata_bytes_dropped: the exporter's node metadata not written (see the module doc)."""

    path: Path
    num_heads: int
    hidden_size: int
    fused_ops: dict[str, int]
    nodes_before: int
    nodes_after: int
    seconds: float
    exporter_metadata_bytes_dropped: int = 0

    @property
    def attention_fused(self) -> bool:
        return self.fused_ops.get("Attention", 0) + self.fused_ops.get("MultiHeadAttention", 0) > 0


def _heads_hidden(proto) -> tuple[int, int]:
    meta = {p.key[len(_META_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(_META_PREFIX)}
    try:
        return int(meta["num_heads"]), int(meta["hidden_size"])
    except (KeyError, ValueError):
        pass
    # no metadata (exported elsewhere): ask the structure finder, else let ORT detect them (0)
    try:
        import onnx_ir as ir

        from deploytool.graph.structure import find_structure

        s = find_structure(ir.serde.deserialize_model(proto))
        return int(s.layers[0].attention.num_heads), int(s.hidden_size)
    except Exception as e:  # not implemented yet, or not an encoder it recognises
        logger.info("heads/hidden not in metadata and structure finder failed (%s); ORT will detect them", e)
        return 0, 0


def fuse_transformer(src: str | os.PathLike, dst: str | os.PathLike, *, num_heads: int | None = None,
                     hidden_size: int | None = None, model_type: str = "bert") -> FuseResult:
    """Fuse ``src`` with ORT's BERT optimizer and save atomically to ``dst`` (``src`` untouched).

    num_heads/hidden_size default to the ``deploytool.*`` metadata, then the structure finder.
    Metadata is carried over, with ``deploytool.fused`` set to ``ort-<model_type>``.
    """
    start = time.perf_counter()
    dst = onnx_io.check_output_path(dst, inputs=(src,))
    proto = onnx_io.load_proto(src)
    meta_heads, meta_hidden = (0, 0) if num_heads is not None and hidden_size is not None else _heads_hidden(proto)
    heads = int(num_heads if num_heads is not None else meta_heads)
    hidden = int(hidden_size if hidden_size is not None else meta_hidden)
    if heads < 0 or hidden < 0 or (heads and hidden and hidden % heads):
        raise DeployError(f"fuse: hidden_size {hidden} is not a multiple of num_heads {heads}")
    if heads == 0:  # per-layer head counts (pruned models): ORT detects each layer's own from its shapes
        hidden = 0
    before = len(proto.graph.node)
    props = [(p.key, p.value) for p in proto.metadata_props]
    # ORT's default fusions for the model type; its logs kept quiet (e.g. "word_embedding_table size <= position
    # table" on tiny models)
    out = optimize_proto(proto, num_heads=heads, hidden_size=hidden, model_type=model_type, what=f"fuse: {src}")
    counts = {op: 0 for op in REPORTED_OPS}
    for node in out.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
    del out.metadata_props[:]
    for k, v in props:
        if k != _META_PREFIX + "fused":
            out.metadata_props.add(key=k, value=v)
    out.metadata_props.add(key=_META_PREFIX + "fused", value=f"ort-{model_type}")
    # ORT's optimizer adds com.microsoft nodes without importing the domain; onnx tools need it
    domains = {n.domain for n in out.graph.node if n.domain not in ("", "ai.onnx")}
    have = {o.domain for o in out.opset_import}
    for d in sorted(domains - have):
        out.opset_import.add(domain=d, version=1)
    dropped = onnx_io.strip_exporter_metadata(out)  # save_proto would drop it too; counted here for the result
    onnx_io.save_proto(out, dst)
    logger.info("fused %s: %s", src, {k: v for k, v in counts.items() if v})
    return FuseResult(path=Path(dst), num_heads=heads, hidden_size=hidden, fused_ops=counts, nodes_before=before,
                      nodes_after=len(out.graph.node), seconds=time.perf_counter() - start,
                      exporter_metadata_bytes_dropped=dropped)


# ORT's fusion modules log under their own names (fusion_attention, ...), not under one parent
_FUSION_LOGGERS = ("onnxruntime.transformers", "fusion_attention", "fusion_base", "fusion_utils", "onnx_model",
                   "onnx_model_bert", "fusion_options")


def optimize_proto(proto, *, num_heads: int, hidden_size: int, model_type: str = "bert",
                   fusions: dict[str, bool] | None = None, what: str = "fuse"):
    """ORT's transformer optimizer (``opt_level=0``: python fusions only) on an in-memory ``proto``: its
    default fusions for ``model_type``, with ``fusions`` (``FusionOptions`` attribute -> value, e.g.
    ``use_multi_head_attention``, ``enable_skip_layer_norm``, ``enable_bias_gelu``) set over them. Returns
    the optimized proto; ORT's fusion logs stay quiet; a failure is one :class:`DeployError` line starting
    with ``what``."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions(model_type)
    for name, value in (fusions or {}).items():
        if not hasattr(options, name):
            raise DeployError(f"{what}: ORT's FusionOptions has no {name!r}")
        setattr(options, name, value)
    # ORT's fusion scripts log under their module names (fusion_embedlayer, fusion_skiplayernorm, ...): quiet for
    # this thread only, their levels untouched (a level saved and restored by two threads at once stays changed)
    names = [*_FUSION_LOGGERS, *(n for n in list(logging.root.manager.loggerDict)
                                 if n.startswith(("fusion_", "onnx_model", "onnxruntime.transformers.")))]
    try:
        # held_stdout: ORT's OnnxModel prints "failed in shape inference <class 'AssertionError'>" to stdout when its
        # symbolic shape inference gives up (ALiBi and QK-norm graphs), which it then does without
        with quiet_logs(names), held_stdout():
            opt = optimize_model(proto, model_type=model_type, num_heads=num_heads, hidden_size=hidden_size,
                                 opt_level=0, optimization_options=options, use_gpu=False)
    except Exception as e:
        raise DeployError(f"{what}: ORT transformer optimizer failed ({type(e).__name__}: {e})") from e
    out = opt.model
    standard_rms_norms(out)
    return out


def standard_rms_norms(proto) -> int:
    """Rewrite, in ``proto``, each ``SimplifiedLayerNormalization`` in the default domain (ORT's RMSNorm, which ORT
    registers there and ``onnx.checker`` and every other runtime reject; ORT's optimizer fuses a decomposed RMS norm,
    T5's ``x * rsqrt(mean(x^2) + eps) * w``, into it) back into standard ops: ``Pow(x, 2)``, ``ReduceMean`` over
    the last axis, ``Add`` of epsilon, ``Sqrt``, ``Div``, ``Mul`` by the scale: the pattern ORT fuses again when
    it loads the file (its level-2 ``SimplifiedLayerNormFusion``). Nodes normalising over another axis than the
    last, or whose inverse-std output is read, are left alone. Returns how many were rewritten."""
    import numpy as np
    from onnx import helper, numpy_helper

    from deploytool.graph._util import unique_name

    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    read = {name for n in proto.graph.node for name in n.input} | {o.name for o in proto.graph.output}
    names = {name for n in proto.graph.node for name in (*n.input, *n.output, n.name)}
    names |= {t.name for t in proto.graph.initializer} | {i.name for i in proto.graph.input}

    def fresh(base: str) -> str:
        return unique_name(base, names)

    nodes, done = [], 0
    for node in proto.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "SimplifiedLayerNormalization" or node.domain not in ("", "ai.onnx")
                or len(node.input) < 2 or attrs.get("axis", -1) != -1 or any(o in read for o in node.output[1:])):
            nodes.append(node)
            continue
        x, scale, y = node.input[0], node.input[1], node.output[0]
        base = node.name or "rms_norm"
        two, eps = fresh(f"{base}_two"), fresh(f"{base}_epsilon")
        proto.graph.initializer.extend([numpy_helper.from_array(np.array(2.0, np.float32), two),
                                        numpy_helper.from_array(np.array(attrs.get("epsilon", 1e-5), np.float32),
                                                                eps)])
        sq, mean, var, std, normed = (fresh(f"{base}_{t}") for t in ("squared", "mean", "plus_eps", "std", "normed"))
        if opset >= 18:  # ReduceMean's axes became an input
            axes = fresh(f"{base}_axes")
            proto.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), axes))
            reduce = helper.make_node("ReduceMean", [sq, axes], [mean], name=fresh(f"{base}_ReduceMean"), keepdims=1)
        else:
            reduce = helper.make_node("ReduceMean", [sq], [mean], name=fresh(f"{base}_ReduceMean"), axes=[-1],
                                      keepdims=1)
        nodes += [helper.make_node("Pow", [x, two], [sq], name=fresh(f"{base}_Pow")), reduce,
                  helper.make_node("Add", [mean, eps], [var], name=fresh(f"{base}_Add")),
                  helper.make_node("Sqrt", [var], [std], name=fresh(f"{base}_Sqrt")),
                  helper.make_node("Div", [x, std], [normed], name=fresh(f"{base}_Div")),
                  helper.make_node("Mul", [normed, scale], [y], name=fresh(f"{base}_Mul"))]
        done += 1
    if done:
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
    return done
