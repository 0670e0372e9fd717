"""Snapdragon NPU (Hexagon HTP) through ONNX Runtime's QNN execution provider.

``check_model`` answers "does this model run entirely on the HTP of this SoC, and how accurately";
``compile_model`` writes the offline context binary for that SoC; ``quantize_for_qnn`` makes the QDQ
model QNN wants. Targets come from ``device_profiles/snapdragon-*.yaml`` (``load_target``).

Optional: ``onnxruntime-qnn`` is imported only when a function needs it; where it cannot be loaded
every entry point raises one :class:`deploytool.errors.UnavailableError`. On x86 the HTP backend is
Qualcomm's emulator: results are coverage and numerics, never device latency (labelled EMULATED).
"""

from deploytool.qnn.check import QnnCheckConfig, QnnCheckReport, check_model
from deploytool.qnn.compile import QnnCompileConfig, QnnCompileResult, compile_model
from deploytool.qnn.ep import EMULATED_LABEL, QnnStrictError, require_qnn
from deploytool.qnn.mask import BoundAttentionMaskPass
from deploytool.qnn.quantize import MaskHandling, QnnQuantConfig, quantize_for_qnn
from deploytool.qnn.target import KNOWN_SOCS, NpuPrecision, QnnTarget, QuantDtype, load_target

__all__ = [
    "EMULATED_LABEL",
    "KNOWN_SOCS",
    "BoundAttentionMaskPass",
    "MaskHandling",
    "NpuPrecision",
    "QnnCheckConfig",
    "QnnCheckReport",
    "QnnCompileConfig",
    "QnnCompileResult",
    "QnnQuantConfig",
    "QnnStrictError",
    "QnnTarget",
    "QuantDtype",
    "check_model",
    "compile_model",
    "load_target",
    "quantize_for_qnn",
    "require_qnn",
]
