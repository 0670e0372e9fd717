"""fp16 weights and activations, with an honest statement of what the host actually runs.

ONNX Runtime's ``convert_float_to_float16(keep_io_types=True)`` (:mod:`deploytool.runtime.float16`) turns every
float initializer and float computation into fp16 (values beyond +-65504 clamp; |x| < 5.96e-8 flush to
the smallest subnormal) and puts Casts at the graph inputs/outputs, so callers still feed int64 ids
and read fp32 outputs. The file halves.

Whether it runs faster depends on the CPU: after session creation ORT replaces fp16 nodes that its
provider has no fp16 kernel for by ``InsertedPrecisionFreeCast_*`` + fp32 node. On an x86 CPU
without fp16 arithmetic that is most of the model, i.e. it runs in fp32 (plus casts); ARM64 cores
with fp16 arithmetic (Armv8.2-A FP16: Cortex-A76, Neoverse-N1 and later) run MLAS's fp16 GEMM
natively (it accumulates in fp16: error ~2e-2 at K=384). :func:`convert_fp16_file` counts the
inserted casts on this host and says so in the result.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

import numpy as np
import onnx
import onnx_ir as ir
from pydantic import PlainValidator

from deploytool import onnx_io
from deploytool.choices import require_config
from deploytool.errors import DeployError, PassRefusedError, VerificationError
from deploytool.passes.base import QUANTIZED_OPS, DeployPass, DeployPassResult, Skip, swap_in
from deploytool.validation import Flag, invalid, schema

logger = logging.getLogger(__name__)

__all__ = ["Fp16Config", "Fp16ConvertPass", "convert_fp16_file", "ARM_NOTE"]

ARM_NOTE = ("fp16 pays on ARM64 cores with fp16 arithmetic (Armv8.2-A FP16, e.g. Cortex-A76, Neoverse-N1), "
            "where ONNX Runtime's MLAS runs fp16 GEMMs natively")


def _op_types(v: Any) -> tuple[str, ...]:
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(o, str) and o for o in v):
        raise invalid(f"expected a list of op type names, got {v!r}")
    return tuple(v)


@schema
class Fp16Config:
    keep_io_types: Flag = True  # inputs/outputs stay int64/fp32; Casts inside the graph
    op_block_list: Annotated[tuple[str, ...], PlainValidator(_op_types)] = ()  # op types kept in fp32 too
    check_host: Flag = True  # count the precision casts ORT inserts, in the gate's session of the output


class Fp16ConvertPass(DeployPass):
    label = "fp16"  # how messages name it: its command

    def __init__(self, config: Fp16Config) -> None:
        super().__init__()
        require_config(config, Fp16Config, "Fp16ConvertPass")  # not an AttributeError in call()
        self.config = config

    def variant_step(self, result) -> dict:
        return {"step": "fp16", "precision": "fp16"}

    def gate_counts_casts(self) -> bool:
        return bool(self.config.check_host)  # the gate's own session of the output counts them: no second one

    def gate_session_bytes(self, model: ir.Model) -> int:
        """ONNX Runtime on a CPU without fp16 kernels casts the fp16 weights back to fp32 as it loads the
        output: about the input's fp32 weights (BERT-base: 437 MB of 107k fresh pages), those under the
        gate's limit (BERT-base: all but the 94 MB word embeddings)."""
        from deploytool.runtime.verify import WARM_TENSOR_LIMIT

        return sum(v.const_value.nbytes for v in model.graph.initializers.values()
                   if v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT
                   and 1024 < v.const_value.nbytes < WARM_TENSOR_LIMIT)

    def min_output_cosine(self) -> float | None:
        return 0.99  # the gate refuses an output this far from the input's (a broken model, not rounding)

    def requires(self, model: ir.Model) -> None:
        if "deploytool.packing" in model.metadata_props:
            raise PassRefusedError("model is packed (metadata 'deploytool.packing'); convert the fp32 model to fp16")
        for node in model.graph.all_nodes():
            if node.op_type in QUANTIZED_OPS:
                raise PassRefusedError(f"model is quantized (it contains {node.op_type} node {node.name!r}); "
                                       "convert the fp32 model to fp16")
        for v in model.graph.initializers.values():
            if v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT16:
                raise PassRefusedError(f"model already has fp16 weights ({v.name!r})")
        if not any(v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT
                   for v in model.graph.initializers.values()):  # else ensures() found no fp16 weight, as if the gate
            raise PassRefusedError("model has no float32 weight to convert to fp16 (no float initializer)")

    def ensures(self, model: ir.Model) -> None:
        if not any(v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT16
                   for v in model.graph.initializers.values()):
            raise VerificationError("Fp16ConvertPass: the converter left no fp16 weight; nothing written")

    def after_write(self, dst: str | os.PathLike, result: DeployPassResult) -> None:
        """With ``check_host``: say whether this CPU runs the fp16 kernels, by the precision casts ORT inserted
        in the gate's session of the output (counted there from its run). Without a gate (verify=False) nothing is
        counted: no ONNX Runtime session of the output is made, as the caller asked (one made here, in this
        process, would also be unguarded: ORT 1.32 crashed building sessions of some fp16 graphs, the reason
        a user skips the gate)."""
        result.stats["arm_note"] = ARM_NOTE
        if not self.config.check_host:
            return
        casts = result.gate.inserted_casts if result.gate is not None else None
        result.stats["inserted_precision_casts"] = casts
        if casts is None:
            result.stats["host_note"] = ("whether this CPU runs the fp16 kernels was not checked: without the gate no "
                                         "ONNX Runtime session of the output is made (the gate counts the precision "
                                         "casts ONNX Runtime inserts where its kernels here have no fp16 arithmetic)")
            return
        if casts:
            result.stats["host_note"] = (
                f"this CPU runs the model in fp32: ONNX Runtime inserted {casts} precision casts "
                "(InsertedPrecisionFreeCast_*) because its kernels here have no fp16 arithmetic; "
                "the file is half the size, the speed is not better")
        else:
            result.stats["host_note"] = "ONNX Runtime inserted no precision casts: this host runs the fp16 kernels"

    def call(self, model: ir.Model) -> DeployPassResult:
        from deploytool.runtime.float16 import convert_graph_to_float16

        # streaming: ORT's converter gets the graph without the big weights (no data: it only retypes them)
        # and each weight it retyped becomes a lazy fp16 copy, made as the file is written with ORT's
        # rounding and clamping (to_float16) and the converter's own bounds
        proto, held = onnx_io.skeleton_proto(model)
        for t in proto.graph.initializer:  # no data at all: shape inference reads types and dims only
            if t.name in held:
                del t.external_data[:]
                t.ClearField("data_location")
        n_float = sum(v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT
                      for v in model.graph.initializers.values())
        kept = batch_transposes_into_weights(proto)
        out, bounds = convert_graph_to_float16(proto, keep_io_types=self.config.keep_io_types,
                                               op_block_list=self.config.op_block_list, node_block_list=kept)
        for t in out.graph.initializer:
            if t.name in held:  # back to a placeholder the IR reads as "data elsewhere"
                t.data_location = onnx.TensorProto.EXTERNAL
                e = t.external_data.add()
                e.key, e.value = "location", "deploytool-placeholder"
        new = ir.serde.deserialize_model(out)
        for name, v in new.graph.initializers.items():
            if name not in held:
                continue
            src = held[name]
            if v.const_value.dtype is src.dtype:
                v.const_value = src
            elif v.const_value.dtype is ir.DataType.FLOAT16 and src.dtype is ir.DataType.FLOAT:
                v.const_value = _lazy_fp16(src, name, to_float16, bounds)
            else:
                raise DeployError(f"fp16: the converter retyped {name!r} from {src.dtype.name} to "
                                  f"{v.const_value.dtype.name}; not supported")
        n_half = sum(v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT16
                     for v in new.graph.initializers.values())
        skipped = self._unmatched_block_list(model)
        swap_in(model, new)
        stats: dict[str, Any] = {"float_initializers": n_float, "fp16_initializers": n_half,
                                 "keep_io_types": self.config.keep_io_types}
        if kept:
            stats["fp32_transposes"] = len(kept)
            stats["fp32_transposes_note"] = (
                f"{len(kept)} Transpose node(s) that move a batch axis into a weight MatMul stay fp32 (a Cast "
                "to fp16 after each): ONNX Runtime 1.32 crashes building a session of that pattern in fp16")
        return DeployPassResult(model, modified=True, stats=stats, skipped=skipped)

    def _unmatched_block_list(self, model: ir.Model) -> list[Skip]:
        """One :class:`Skip` for each ``op_block_list`` entry no node of ``model`` has as its op type: op types
        are case-sensitive, so ``"softmax"`` or a typo kept nothing in fp32, without a word."""
        from deploytool.choices import did_you_mean

        present = sorted({n.op_type for n in ir.traversal.RecursiveGraphIterator(model.graph)})
        return [Skip(op, "op_block_list: no node of this model has this op type (op types are case-sensitive)"
                         f"{did_you_mean(op, present)}; nothing was kept in fp32 for it")
                for op in self.config.op_block_list if op not in present]


def batch_transposes_into_weights(proto: onnx.ModelProto) -> tuple[str, ...]:
    """Names of the Transpose nodes of ``proto`` (its main graph) that the fp16 output must keep in fp32: a
    Transpose of rank >= 3 whose ``perm`` moves one of the leading (batch) axes, read by a MatMul whose other
    operand is a 2-D weight (an initializer or Constant). A sequence-first encoder has them: Longformer's
    ``hidden_states.transpose(0, 1)`` before its Q/K/V projections, ``nn.MultiheadAttention`` with
    ``batch_first=False``. In fp16, ONNX Runtime 1.32's CPU provider segfaults while it builds a session
    of that pattern at its default optimization level (``ORT_ENABLE_ALL``; seen for perms (1, 0, 2),
    (1, 2, 0), (1, 2, 0, 3), (1, 2, 3, 0) with symbolic axes, as exports have them; fp32, and BERT's
    (0, 2, 1, 3) before a Reshape, are fine), so no
    session could check, let alone run, the file. Unnamed ones are named here (the converter blocks by name)."""
    g = proto.graph
    rank2 = {t.name for t in g.initializer if len(t.dims) == 2}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value" \
                and len(n.attribute[0].t.dims) == 2:
            rank2.add(n.output[0])
    weight_matmul_inputs = set()
    for n in g.node:
        if n.op_type == "MatMul" and len(n.input) == 2:
            a, b = n.input
            if b in rank2:
                weight_matmul_inputs.add(a)
            if a in rank2:
                weight_matmul_inputs.add(b)
    kept = []
    names = {m.name for m in g.node}
    for i, n in enumerate(g.node):
        if n.op_type != "Transpose" or not n.output or n.output[0] not in weight_matmul_inputs:
            continue
        perm = next((list(a.ints) for a in n.attribute if a.name == "perm"), None)
        if perm is None or len(perm) < 3 or perm[:-2] == list(range(len(perm) - 2)):
            continue  # no perm (reversed axes: rank unknown here) or the batch axes stay where they are
        if not n.name:
            n.name = next(f"deploytool_fp32_transpose_{k}" for k in range(i, i + len(names) + 1)
                          if f"deploytool_fp32_transpose_{k}" not in names)
            names.add(n.name)
        kept.append(n.name)
    return tuple(kept)


def to_float16(a: np.ndarray, min_positive_val: float, max_finite_val: float) -> np.ndarray:
    """ORT's ``convert_np_to_float16`` (same values, ``tests/passes/test_stream.py`` checks it) without its
    debug-only scans: magnitudes in (0, min) become +-min, in (max, inf) +-max; 0, NaN, +-inf stay;
    then float16.

    Fast path: one vectorized cast of the whole tensor (:func:`deploytool.runtime.cast.float32_to_float16`,
    the plain IEEE cast), then a scan of the float16 bits per chunk. Rounding is monotonic, so a value the
    clamping changes (``|x| < min`` or ``|x| > max``) casts to a magnitude at most float16(min) or at least
    float16(max) (NaN and inf lie above too): only values with such a magnitude are redone, by
    :func:`_to_float16_exact` (BERT-base: ~0.2 s instead of ~2 s)."""
    from deploytool.runtime.cast import float32_to_float16

    a = np.asarray(a)
    lo = int(np.float16(np.float32(min_positive_val)).view(np.uint16)) & 0x7FFF if min_positive_val > 0 else -1
    hi = int(np.float16(np.float32(max_finite_val)).view(np.uint16)) & 0x7FFF if max_finite_val > 0 else -1
    if a.dtype != np.float32 or lo < 0 or hi <= lo + 1:
        return _to_float16_exact(a, min_positive_val, max_finite_val)
    flat = a.reshape(-1)
    result = np.empty(flat.shape, dtype=np.float16)
    for i, x in onnx_io.row_chunks(flat, 1 << 22):  # 16 MB of a mapped input at a time, then dropped
        float32_to_float16(x, out=result[i:i + len(x)])
    bits = result.view(np.uint16)
    step = 1 << 16  # 128 KiB of float16: the scan stays in cache
    scratch = np.empty(min(step, flat.size), dtype=np.uint16)
    for i in range(0, flat.size, step):
        part = bits[i:i + step]
        s = scratch[:len(part)]
        # magnitude bits m: flag m <= lo or m >= hi; (m - lo - 1) wraps round for m <= lo, so one max says it
        np.bitwise_and(part, 0x7FFF, out=s)
        np.subtract(s, lo + 1, out=s)
        if s.max() >= hi - lo - 1:  # redo just those values (the chunk of a random init has a few)
            idx = np.flatnonzero(s >= hi - lo - 1) + i
            result[idx] = _to_float16_exact(flat[idx], min_positive_val, max_finite_val)
    return result.reshape(a.shape)


def _to_float16_exact(a: np.ndarray, min_positive_val: float, max_finite_val: float) -> np.ndarray:
    """:func:`to_float16`'s values computed elementwise as ORT's function does (the slow path)."""
    a = np.asarray(a)
    flat = a.reshape(-1)
    result = np.empty(flat.shape, dtype=np.float16)
    step = 1 << 20  # elementwise, so chunks give the same values with a few MB of temporaries
    for i, x in onnx_io.row_chunks(flat, step):
        mag = np.abs(x)
        x = np.where((mag > 0) & (mag < min_positive_val), np.copysign(min_positive_val, x), x)
        x = np.where((mag > max_finite_val) & (mag < float("inf")), np.copysign(max_finite_val, x), x)
        result[i:i + step] = np.float16(x)
    return result.reshape(a.shape)


def _lazy_fp16(src: ir.TensorProtocol, name: str, convert, bounds: tuple[float, float]) -> ir.LazyTensor:
    def compute() -> ir.Tensor:
        arr = convert(src.numpy(), *bounds)
        return ir.Tensor(np.ascontiguousarray(arr, dtype=np.float16), name=name)

    return ir.LazyTensor(compute, dtype=ir.DataType.FLOAT16, shape=ir.Shape(list(src.shape)), name=name)


def convert_fp16_file(src: str | os.PathLike, dst: str | os.PathLike, config: Fp16Config, *,
                      verify: bool = True) -> DeployPassResult:
    """Convert ``src`` to fp16 into ``dst`` (atomic) and, with ``check_host``, say what this CPU runs:
    :func:`deploytool.passes.transform`."""
    require_config(config, Fp16Config, "convert_fp16_file")
    from deploytool.passes import transform

    return transform(src, dst, config, verify=verify)
