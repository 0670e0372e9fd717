"""How to run a model, as data: the typed, validated :class:`SessionSpec` and its parts.

A spec holds what a device profile says about running a model: an ordered preference list of
execution providers (each with its options), thread counts, the graph optimization level, the
execution mode and session config entries. It is frozen and validated on construction, and can be
built, compared and serialised without onnxruntime (only ``GraphOptimization.to_ort`` and
``ExecutionMode.to_ort`` import it, when a session is made). :mod:`deploytool.runtime.session`
turns a spec into a session.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Any

from deploytool.choices import parse_enum
from deploytool.errors import ConfigError

__all__ = ["ExecutionMode", "ExecutionProvider", "GraphOptimization", "ProviderSpec", "SessionSpec"]


class ExecutionProvider(enum.Enum):
    """Execution providers by ONNX Runtime's own names. ``ExecutionProvider.parse`` takes either form."""

    CPU = "CPUExecutionProvider"
    XNNPACK = "XnnpackExecutionProvider"
    ACL = "ACLExecutionProvider"
    ARMNN = "ArmNNExecutionProvider"
    QNN = "QNNExecutionProvider"
    COREML = "CoreMLExecutionProvider"
    NNAPI = "NnapiExecutionProvider"
    CUDA = "CUDAExecutionProvider"
    TENSORRT = "TensorrtExecutionProvider"
    ROCM = "ROCMExecutionProvider"
    MIGRAPHX = "MIGraphXExecutionProvider"
    OPENVINO = "OpenVINOExecutionProvider"
    DNNL = "DnnlExecutionProvider"
    DML = "DmlExecutionProvider"
    WEBGPU = "WebGpuExecutionProvider"
    VITISAI = "VitisAIExecutionProvider"
    AZURE = "AzureExecutionProvider"

    @classmethod
    def parse(cls, value: str | ExecutionProvider, field: str = "execution provider") -> ExecutionProvider:
        """``"xnnpack"``, ``"XNNPACK"`` or ``"XnnpackExecutionProvider"`` -> ``XNNPACK``; else ConfigError
        ``field: expected one of CPU, XNNPACK, ..., got 'x' (did you mean ...?)``."""
        return parse_enum(cls, value, field, by_name=True)

    @property
    def is_plugin(self) -> bool:
        """Shipped as a separate plugin library (registered at run time), not built into the wheel."""
        return self is ExecutionProvider.QNN


#: the provider-option names ONNX Runtime reads for the EPs a profile may name, where it reads a fixed set: an
#: option outside it is ignored in silence (or fails only on the device), so a profile naming one is refused.
#: CPU and NNAPI read none through provider options (ORT's Python API builds the CPU EP from the session
#: options, and NNAPI takes flags only through its own append call, OrtSessionOptionsAppendExecutionProvider_Nnapi);
#: XNNPACK: xnnpack_provider_factory.cc; ACL: its ProviderOptions (ORT 1.20+); CoreML: coreml_provider_factory.h's
#: kCoremlProviderOption_* keys; QNN: the QNN EP's documented provider options. EPs missing here take any options.
EP_OPTIONS: dict[ExecutionProvider, frozenset[str]] = {
    ExecutionProvider.CPU: frozenset(),
    ExecutionProvider.NNAPI: frozenset(),
    ExecutionProvider.XNNPACK: frozenset({"intra_op_num_threads"}),
    ExecutionProvider.ACL: frozenset({"enable_fast_math"}),
    ExecutionProvider.COREML: frozenset({
        "ModelFormat", "MLComputeUnits", "RequireStaticInputShapes", "EnableOnSubgraphs", "SpecializationStrategy",
        "ProfileComputePlan", "AllowLowPrecisionAccumulationOnGPU", "ModelCacheDirectory"}),
    ExecutionProvider.QNN: frozenset({
        "backend_type", "backend_path", "profiling_level", "profiling_file_path", "rpc_control_latency", "vtcm_mb",
        "htp_performance_mode", "qnn_saver_path", "qnn_context_priority", "htp_graph_finalization_optimization_mode",
        "soc_model", "htp_arch", "device_id", "enable_htp_fp16_precision", "offload_graph_io_quantization",
        "enable_htp_spill_fill_buffer", "enable_htp_shared_memory_allocator", "dump_json_qnn_graph",
        "json_qnn_graph_dir", "op_packages", "enable_framework_op_trace", "framework_op_trace_dir"}),
}


class GraphOptimization(enum.Enum):
    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    LAYOUT = "layout"
    ALL = "all"

    @classmethod
    def parse(cls, value: str | GraphOptimization, field: str = "graph_optimization") -> GraphOptimization:
        return parse_enum(cls, value, field)

    def to_ort(self):
        import onnxruntime as ort

        return {
            GraphOptimization.DISABLE: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            GraphOptimization.BASIC: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            GraphOptimization.EXTENDED: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            GraphOptimization.LAYOUT: ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT,
            GraphOptimization.ALL: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self]


class ExecutionMode(enum.Enum):
    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"

    @classmethod
    def parse(cls, value: str | ExecutionMode, field: str = "execution_mode") -> ExecutionMode:
        return parse_enum(cls, value, field)


def _pairs(value: Mapping[str, Any] | Iterable[tuple[str, Any]] | None, field: str) -> tuple[tuple[str, str], ...]:
    """A mapping (or pairs) of options -> sorted tuple of (str, str), the form ORT takes them in."""
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    out: dict[str, str] = {}
    try:
        for k, v in items:
            if not isinstance(k, str) or not k:
                raise ConfigError(f"{field}: keys must be non-empty strings, got {k!r}")
            if isinstance(v, bool):
                v = "1" if v else "0"
            elif not isinstance(v, (str, int, float)):
                raise ConfigError(f"{field}[{k}]: values must be strings or numbers, got {type(v).__name__}")
            out[k] = str(v)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{field}: expected a mapping of option names to values, got {value!r}") from None
    return tuple(sorted(out.items()))


@dataclasses.dataclass(frozen=True)
class ProviderSpec:
    """One execution provider with its options (``ProviderSpec("xnnpack", {"intra_op_num_threads": 2})``)."""

    provider: ExecutionProvider
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider", ExecutionProvider.parse(self.provider))
        object.__setattr__(self, "options", _pairs(self.options, f"{self.provider.name.lower()} options"))

    @classmethod
    def coerce(cls, value: Any) -> ProviderSpec:
        """Accept a ProviderSpec, an enum, a name, a (name, options) pair or {"name":..., "options":...}."""
        if isinstance(value, ProviderSpec):
            return value
        if isinstance(value, (str, ExecutionProvider)):
            return cls(value)  # type: ignore[arg-type]
        if isinstance(value, Mapping):
            unknown = set(value) - {"name", "provider", "options"}
            if unknown:
                raise ConfigError(f"execution provider entry: unknown key(s) {sorted(unknown)}: "
                                  "expected name and options")
            name = value.get("name", value.get("provider"))
            if name is None:
                raise ConfigError(f"execution provider entry {dict(value)!r} has no name")
            return cls(name, value.get("options") or ())
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(value[0], value[1] or ())
        raise ConfigError(f"execution provider entry {value!r}: expected a name or (name, options)")

    @property
    def name(self) -> str:
        """ONNX Runtime's name of the provider (``XnnpackExecutionProvider``)."""
        return self.provider.value

    def options_dict(self) -> dict[str, str]:
        return dict(self.options)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.provider.name.lower(), "options": self.options_dict()}


MAX_THREADS = 1024


@dataclasses.dataclass(frozen=True)
class SessionSpec:
    """How to build an ONNX Runtime session; frozen and validated on construction.

    providers: ordered preference list; entries are coerced by :meth:`ProviderSpec.coerce`, so
      ``SessionSpec(providers=["xnnpack", ("cpu", {})])`` works. Providers not in this build are
      skipped in order (``strict=True`` makes a skip an :class:`UnavailableError` instead).
    intra_op_threads / inter_op_threads: 0 lets ONNX Runtime choose; 1..1024 otherwise.
    config_entries: ``SessionOptions.add_session_config_entry`` pairs.
    """

    providers: tuple[ProviderSpec, ...] = (ProviderSpec(ExecutionProvider.CPU),)
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: GraphOptimization = GraphOptimization.ALL
    execution_mode: ExecutionMode = ExecutionMode.SEQUENTIAL
    config_entries: tuple[tuple[str, str], ...] = ()
    strict: bool = False
    log_severity_level: int = 3
    shared_thread_pool: bool = False

    def __post_init__(self) -> None:
        provs = self.providers
        if isinstance(provs, (str, ExecutionProvider, ProviderSpec, Mapping)):
            provs = (provs,)
        try:
            provs = tuple(ProviderSpec.coerce(p) for p in provs)
        except TypeError:
            raise ConfigError(f"providers: expected a list of execution providers, got {self.providers!r}") from None
        if not provs:
            raise ConfigError("providers: the list is empty; give at least one execution provider (e.g. cpu)")
        seen = set()
        for p in provs:
            if p.provider in seen:
                raise ConfigError(f"providers: {p.provider.name.lower()} is listed twice")
            seen.add(p.provider)
        object.__setattr__(self, "providers", provs)
        for field in ("intra_op_threads", "inter_op_threads"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_THREADS:
                raise ConfigError(f"{field}: must be an integer in [0, {MAX_THREADS}] (0 = ONNX Runtime decides), "
                                  f"got {v!r}")
        object.__setattr__(self, "graph_optimization", GraphOptimization.parse(self.graph_optimization))
        object.__setattr__(self, "execution_mode", ExecutionMode.parse(self.execution_mode))
        object.__setattr__(self, "config_entries", _pairs(self.config_entries, "config_entries"))
        if not isinstance(self.strict, bool):
            raise ConfigError(f"strict: must be true or false, got {self.strict!r}")
        if not isinstance(self.shared_thread_pool, bool):
            raise ConfigError(f"shared_thread_pool: must be true or false, got {self.shared_thread_pool!r}")
        lv = self.log_severity_level
        if isinstance(lv, bool) or not isinstance(lv, int) or not 0 <= lv <= 4:
            raise ConfigError(f"log_severity_level: must be an integer in [0, 4], got {lv!r}")

    # -- (de)serialisation: benchmark worker protocol, JSON reports, device profiles ------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "providers": [p.to_dict() for p in self.providers],
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "graph_optimization": self.graph_optimization.value,
            "execution_mode": self.execution_mode.value,
            "config_entries": dict(self.config_entries),
            "strict": self.strict,
            "log_severity_level": self.log_severity_level,
            "shared_thread_pool": self.shared_thread_pool,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionSpec:
        """Inverse of :meth:`to_dict`; unknown keys are a ConfigError naming them."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"session spec: expected a mapping, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ConfigError(f"session spec: unknown key(s) {sorted(unknown)}: expected some of {sorted(fields)}")
        return cls(**dict(data))

    def with_threads(self, threads: int) -> SessionSpec:
        """The same spec with ``intra_op_threads`` replaced (the ``--threads`` option)."""
        return dataclasses.replace(self, intra_op_threads=threads)

    @property
    def provider_names(self) -> list[str]:
        return [p.name for p in self.providers]
