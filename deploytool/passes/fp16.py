"""fp16 weights and activations, with an honest statement of what the host actually runs.

``onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)`` turns every float
initializer and float computation into fp16 (values beyond +-65504 clamp; |x| < 5.96e-8 flush to
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

import dataclasses
import logging
import os
from typing import Any

import onnx_ir as ir

from deploytool.errors import ConfigError, DeployError, PassRefusedError
from deploytool.passes.base import DeployPass, DeployPassResult, run_pass_file
from deploytool.passes.quantize_int8 import _QUANT_OPS, _swap_in

logger = logging.getLogger(__name__)

__all__ = ["Fp16Config", "Fp16ConvertPass", "convert_fp16_file", "ARM_NOTE"]

ARM_NOTE = ("fp16 pays on ARM64 cores with fp16 arithmetic (Armv8.2-A FP16, e.g. Cortex-A76, Neoverse-N1), "
            "where ONNX Runtime's MLAS runs fp16 GEMMs natively")


@dataclasses.dataclass(frozen=True)
class Fp16Config:
    keep_io_types: bool = True  # inputs/outputs stay int64/fp32; Casts inside the graph
    op_block_list: tuple[str, ...] = ()  # op types kept in fp32 (besides ORT's default list)
    check_host: bool = True  # build a session here and count ORT-inserted precision casts

    def __post_init__(self) -> None:
        ops = self.op_block_list
        if isinstance(ops, str) or not all(isinstance(o, str) and o for o in ops):
            raise ConfigError(f"op_block_list: expected a list of op type names, got {ops!r}")
        object.__setattr__(self, "op_block_list", tuple(ops))


class Fp16ConvertPass(DeployPass):
    def __init__(self, config: Fp16Config) -> None:
        super().__init__()
        self.config = config

    def variant_step(self, stats: dict) -> dict:
        return {"step": "fp16", "precision": "fp16"}

    def min_output_cosine(self) -> float | None:
        return 0.99  # the gate refuses an output this far from the input's (a broken model, not rounding)

    def requires(self, model: ir.Model) -> None:
        if "deploytool.packing" in model.metadata_props:
            raise PassRefusedError("model is packed (metadata 'deploytool.packing'); convert the fp32 model to fp16")
        for node in model.graph.all_nodes():
            if node.op_type in _QUANT_OPS:
                raise PassRefusedError(f"model is quantized (it contains {node.op_type} node {node.name!r}); "
                                       "convert the fp32 model to fp16")
        for v in model.graph.initializers.values():
            if v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT16:
                raise PassRefusedError(f"model already has fp16 weights ({v.name!r})")

    def call(self, model: ir.Model) -> DeployPassResult:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        proto = ir.serde.serialize_model(model)
        n_float = sum(v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT
                      for v in model.graph.initializers.values())
        block = list(DEFAULT_OP_BLOCK_LIST) + list(self.config.op_block_list)
        ort_logger = logging.getLogger("onnxruntime.transformers.float16")
        level = ort_logger.level
        ort_logger.setLevel(logging.ERROR)
        try:
            out = convert_float_to_float16(proto, keep_io_types=self.config.keep_io_types, op_block_list=block)
        except Exception as e:
            raise DeployError(f"fp16: conversion failed ({type(e).__name__}: {e})") from e
        finally:
            ort_logger.setLevel(level)
        new = ir.serde.deserialize_model(out)
        n_half = sum(v.const_value is not None and v.const_value.dtype is ir.DataType.FLOAT16
                     for v in new.graph.initializers.values())
        _swap_in(model, new)
        stats: dict[str, Any] = {"float_initializers": n_float, "fp16_initializers": n_half,
                                 "keep_io_types": self.config.keep_io_types}
        return DeployPassResult(model, modified=True, stats=stats)


def convert_fp16_file(src: str | os.PathLike, dst: str | os.PathLike, config: Fp16Config, *,
                      verify: bool = True) -> DeployPassResult:
    """Convert ``src`` to fp16 into ``dst`` (atomic) and, with ``check_host``, say what this CPU runs."""
    result = run_pass_file(Fp16ConvertPass(config), src, dst, verify=verify)
    result.stats["arm_note"] = ARM_NOTE
    if config.check_host:
        from deploytool.runtime.session import inserted_precision_casts

        casts = inserted_precision_casts(dst)
        result.stats["inserted_precision_casts"] = len(casts)
        if casts:
            result.stats["host_note"] = (
                f"this CPU runs the model in fp32: ONNX Runtime inserted {len(casts)} precision casts "
                "(InsertedPrecisionFreeCast_*) because its kernels here have no fp16 arithmetic; "
                "the file is half the size, the speed is not better")
        else:
            result.stats["host_note"] = "ONNX Runtime inserted no precision casts: this host runs the fp16 kernels"
    return result
