"""ONNX Runtime sessions built from a typed, validated :class:`SessionSpec`.

A spec holds what a device profile says about running a model: an ordered preference list of
execution providers (each with its options), thread counts, the graph optimization level, the
execution mode and session config entries. :func:`build_session` turns it into an
``onnxruntime.InferenceSession`` and a :class:`SessionInfo` that records which providers were
asked for, which really ran (``InferenceSession.get_providers()``) and, for each one skipped, why
(e.g. ``not in this onnxruntime build: available are [...]``). Providers fall back in the order
given; ONNX Runtime always keeps its CPU provider last, and the info says so. Nothing pretends:
the PyPI x86 and aarch64 wheels have the CPU provider only, so an XNNPACK/ACL/NNAPI preference on
this host runs on the CPU and the info shows it.

QNN (Snapdragon HTP) is a *plugin* provider shipped in ``onnxruntime-qnn``: it is registered with
``onnxruntime.register_execution_provider_library`` and added to the session with
``SessionOptions.add_provider_for_devices`` (the old ``providers=[("QNNExecutionProvider", ...)]``
silently runs on the CPU). ``onnxruntime_qnn`` is imported only when a spec asks for QNN. When a
plugin provider is used, every provider of the session is added through its EP devices, because
ORT ignores the devices once a ``providers=`` list is also passed.

This module imports onnxruntime lazily (inside functions): the dataclasses can be built, validated
and serialised without it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from deploytool.errors import ConfigError, InputFileError, UnavailableError

logger = logging.getLogger(__name__)

__all__ = [
    "ExecutionMode",
    "ExecutionProvider",
    "GraphOptimization",
    "ProviderSpec",
    "SessionInfo",
    "SessionSpec",
    "build_session",
    "host_info",
    "init_shared_thread_pool",
    "optimize_model",
    "inserted_precision_casts",
]


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
    def parse(cls, value: str | ExecutionProvider) -> ExecutionProvider:
        """``"xnnpack"``, ``"XNNPACK"`` or ``"XnnpackExecutionProvider"`` -> ``XNNPACK``."""
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise ConfigError(f"execution provider must be a name, got {type(value).__name__} {value!r}")
        key = value.strip()
        for ep in cls:
            if key.upper() == ep.name or key.lower() == ep.value.lower():
                return ep
        allowed = ", ".join(ep.name.lower() for ep in cls)
        raise ConfigError(f"unknown execution provider {value!r}: expected one of {allowed}")

    @property
    def is_plugin(self) -> bool:
        """Shipped as a separate plugin library (registered at run time), not built into the wheel."""
        return self is ExecutionProvider.QNN


class GraphOptimization(enum.Enum):
    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    LAYOUT = "layout"
    ALL = "all"

    @classmethod
    def parse(cls, value: str | GraphOptimization) -> GraphOptimization:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(f"graph_optimization: unknown level {value!r}: expected one of "
                              f"{', '.join(m.value for m in cls)}") from None

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
    def parse(cls, value: str | ExecutionMode) -> ExecutionMode:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(f"execution_mode: unknown mode {value!r}: expected sequential or parallel") from None


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


_MAX_THREADS = 1024


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
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _MAX_THREADS:
                raise ConfigError(f"{field}: must be an integer in [0, {_MAX_THREADS}] (0 = ONNX Runtime decides), "
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


@dataclasses.dataclass(frozen=True)
class SessionInfo:
    """What a session really is: providers asked for, the ones that ran, and why others were skipped."""

    model: str
    requested: tuple[str, ...]
    providers: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    create_s: float
    spec: SessionSpec
    notes: tuple[str, ...] = ()

    @property
    def primary(self) -> str:
        """The provider with the highest priority that ran (the one that got the nodes it supports)."""
        return self.providers[0] if self.providers else ""

    @property
    def fell_back(self) -> bool:
        return bool(self.requested) and self.primary != self.requested[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "requested": list(self.requested),
            "providers": list(self.providers),
            "skipped": [{"provider": n, "reason": r} for n, r in self.skipped],
            "create_ms": round(self.create_s * 1e3, 3),
            "spec": self.spec.to_dict(),
            "notes": list(self.notes),
        }


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - onnxruntime is a core dependency
        raise UnavailableError(f"onnxruntime is not installed ({e})") from e
    return ort


def _qnn_devices(ort) -> tuple[list, str | None]:
    """The EP devices of the QNN plugin, registering it (once per process) if needed.

    Returns (devices, reason-if-none).
    """
    ep = ExecutionProvider.QNN.value
    devices = [d for d in ort.get_ep_devices() if d.ep_name == ep]
    if devices:
        return devices, None
    try:
        import onnxruntime_qnn  # the plugin package; imported only when QNN is asked for
    except ImportError:
        return [], "onnxruntime-qnn is not installed (pip install 'deploytool[qnn]')"
    try:
        ort.register_execution_provider_library(ep, onnxruntime_qnn.get_library_path())
    except Exception as e:
        if "already registered" not in str(e):
            return [], f"onnxruntime-qnn plugin failed to register ({_one_line(e)})"
    devices = [d for d in ort.get_ep_devices() if d.ep_name == ep]
    if not devices:
        return [], "onnxruntime-qnn is registered but offers no device on this machine"
    return devices, None


def _session_options(ort, spec: SessionSpec, optimized_path: str | None = None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = spec.intra_op_threads
    so.inter_op_num_threads = spec.inter_op_threads
    so.graph_optimization_level = spec.graph_optimization.to_ort()
    so.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if spec.execution_mode is ExecutionMode.PARALLEL
                         else ort.ExecutionMode.ORT_SEQUENTIAL)
    so.log_severity_level = spec.log_severity_level
    if spec.shared_thread_pool:  # the process-wide pool of init_shared_thread_pool(); thread counts are its
        so.use_per_session_threads = False
    for k, v in spec.config_entries:
        so.add_session_config_entry(k, v)
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return so


def _plan_providers(ort, spec: SessionSpec):
    """Decide which providers to ask ORT for. Returns (chosen ProviderSpecs, skipped, plugin devices)."""
    available = list(ort.get_available_providers())
    chosen: list[ProviderSpec] = []
    skipped: list[tuple[str, str]] = []
    devices: dict[str, list] = {}
    for p in spec.providers:
        if p.provider.is_plugin:
            devs, reason = _qnn_devices(ort)
            if reason:
                skipped.append((p.name, reason))
                continue
            devices[p.name] = devs
            chosen.append(p)
            available = list(ort.get_available_providers())
        elif p.name not in available:
            shown = [a for a in available if a != ExecutionProvider.AZURE.value] or available
            skipped.append((p.name, f"not in this onnxruntime build: available are [{', '.join(shown)}]"))
        else:
            chosen.append(p)
    if devices:
        # plugin path: every provider goes in through its EP devices (ORT ignores devices when a
        # providers= list is also given)
        all_devices = ort.get_ep_devices()
        for p in list(chosen):
            if p.name in devices:
                continue
            devs = [d for d in all_devices if d.ep_name == p.name]
            if not devs:
                chosen.remove(p)
                skipped.append((p.name, f"cannot be combined with plugin provider(s) {sorted(devices)} in one "
                                        "session: it offers no EP device"))
            else:
                devices[p.name] = devs
    return chosen, skipped, devices


def _provider_options(p: ProviderSpec) -> dict[str, str]:
    opts = p.options_dict()
    if p.provider is ExecutionProvider.QNN and "backend_type" not in opts and "backend_path" not in opts:
        opts["backend_type"] = "htp"  # the only QNN backend onnxruntime-qnn ships for Linux x86 and aarch64
    return opts


def _create(ort, model_path: Path, spec: SessionSpec, optimized_path: str | None = None):
    chosen, skipped, devices = _plan_providers(ort, spec)
    if spec.strict and skipped:
        name, reason = skipped[0]
        raise UnavailableError(f"execution provider {name} unavailable: {reason}")
    so = _session_options(ort, spec, optimized_path)
    kwargs: dict[str, Any] = {}
    if devices:
        for p in chosen:
            so.add_provider_for_devices(devices[p.name], _provider_options(p))
    elif chosen:
        kwargs["providers"] = [(p.name, _provider_options(p)) for p in chosen]
    else:
        kwargs["providers"] = [ExecutionProvider.CPU.value]
    t0 = time.perf_counter()
    try:
        sess = ort.InferenceSession(str(model_path), sess_options=so, **kwargs)
    except Exception as e:
        raise _load_error(model_path, e) from e
    create_s = time.perf_counter() - t0
    ran = tuple(sess.get_providers())
    notes = []
    if not chosen:
        notes.append("none of the requested providers is available: running on ONNX Runtime's CPU provider")
    for p in chosen:  # asked, available, yet ORT dropped it (failed to initialise)
        if p.name not in ran:
            skipped.append((p.name, "in this build but ONNX Runtime did not use it (failed to initialise)"))
    info = SessionInfo(model=str(model_path), requested=tuple(spec.provider_names), providers=ran,
                       skipped=tuple(skipped), create_s=create_s, spec=spec, notes=tuple(notes))
    if info.fell_back:
        logger.info("%s: asked for %s, running on %s", model_path, info.requested[0], info.primary)
    return sess, info


def _load_error(model_path: Path, e: Exception) -> Exception:
    from deploytool.errors import DeployError

    name = type(e).__name__
    msg = _one_line(e)
    if name in ("InvalidProtobuf", "InvalidGraph", "NoSuchFile", "NotImplemented", "Fail", "InvalidArgument",
                "RuntimeException"):
        return InputFileError(f"{model_path}: ONNX Runtime cannot load the model ({msg})")
    return DeployError(f"{model_path}: ONNX Runtime cannot create a session ({name}: {msg})")


def _check_model_path(model_path: str | os.PathLike) -> Path:
    p = Path(model_path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if not p.is_file():
        raise InputFileError(f"{p}: not a file, expected an .onnx model")
    return p


def build_session(model_path: str | os.PathLike, spec: SessionSpec | None = None):
    """Create an ``InferenceSession`` for ``model_path`` from ``spec``.

    Returns ``(session, SessionInfo)``. Providers missing from this build are skipped in order with
    their reason; ``spec.strict`` turns a skip into :class:`UnavailableError`. A model ONNX Runtime
    cannot load raises :class:`InputFileError`.
    """
    spec = spec if spec is not None else SessionSpec()
    if not isinstance(spec, SessionSpec):
        raise ConfigError(f"spec: expected a SessionSpec, got {type(spec).__name__}")
    p = _check_model_path(model_path)
    return _create(_ort(), p, spec)


def init_shared_thread_pool(intra_op_threads: int, inter_op_threads: int = 1) -> None:
    """Create ONNX Runtime's process-wide thread pool, used by sessions with ``shared_thread_pool``.

    Call once per process, before the first session is created (ORT's environment is process
    global; a second call raises). Several sessions on one pool cannot slow each other down with
    spinning idle threads, which per-session pools do when runs alternate (see benchmarks/bench_hygiene.py).
    """
    for name, v in (("intra_op_threads", intra_op_threads), ("inter_op_threads", inter_op_threads)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= _MAX_THREADS:
            raise ConfigError(f"{name}: must be an integer in [1, {_MAX_THREADS}], got {v!r}")
    ort = _ort()
    try:
        ort.capi._pybind_state.set_global_thread_pool_sizes(intra_op_threads, inter_op_threads)
    except Exception as e:
        raise UnavailableError(f"cannot create ONNX Runtime's shared thread pool ({_one_line(e)}); it must be made "
                               "before any session in this process") from e


def optimize_model(model_path: str | os.PathLike, out_path: str | os.PathLike,
                   spec: SessionSpec | None = None) -> Path:
    """Write the graph ONNX Runtime runs for ``model_path`` (its fusions at ``spec``'s optimization level,
    default ``extended``: every fusion but hardware-specific layouts) to ``out_path``."""
    spec = spec if spec is not None else SessionSpec(graph_optimization=GraphOptimization.EXTENDED)
    p = _check_model_path(model_path)
    sess, _ = _create(_ort(), p, spec, optimized_path=str(out_path))
    del sess
    if not Path(out_path).exists():
        raise UnavailableError(f"{p}: ONNX Runtime wrote no optimized model")
    return Path(out_path)


CAST_PREFIX = "InsertedPrecisionFreeCast_"


def inserted_precision_casts(model_path: str | os.PathLike, spec: SessionSpec | None = None) -> list[str]:
    """Names of the ``InsertedPrecisionFreeCast_*`` nodes ORT adds when it builds a session.

    ORT inserts them where a kernel of the chosen provider has no fp16 implementation and runs that
    node in fp32 instead; a non-empty list means this host does not run the fp16 model in fp16.
    """
    import onnx

    spec = spec if spec is not None else SessionSpec()
    p = _check_model_path(model_path)
    with tempfile.TemporaryDirectory(prefix="deploytool-opt-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        sess, _ = _create(_ort(), p, spec, optimized_path=str(out))
        del sess
        if not out.exists():
            raise UnavailableError(f"{p}: ONNX Runtime wrote no optimized model; cannot list inserted casts")
        model = onnx.load(str(out), load_external_data=False)
    names = [n.name for n in model.graph.node if n.name.startswith(CAST_PREFIX)]
    for f in model.functions:
        names.extend(n.name for n in f.node if n.name.startswith(CAST_PREFIX))
    return names


# ISA features worth knowing for deployment (x86 and Arm names as /proc/cpuinfo spells them)
_X86_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16")
_ARM_FLAGS = ("asimd", "asimdhp", "fphp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme", "sme2")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return info
    for line in text.splitlines():
        if not line.strip():
            if info.get("flags") or info.get("Features"):
                break  # the first processor block is enough
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def _mem_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def host_info() -> dict[str, Any]:
    """The host a measurement ran on: CPU, ISA features, cores, memory, ONNX Runtime and its providers."""
    cpu = _cpuinfo()
    flags = set((cpu.get("flags") or cpu.get("Features") or "").split())
    arch = platform.machine()
    wanted = _ARM_FLAGS if arch in ("aarch64", "arm64") else _X86_FLAGS
    model = cpu.get("model name") or cpu.get("Hardware") or cpu.get("CPU part") or platform.processor() or "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": model,
        "arch": arch,
        "isa": {f: f in flags for f in wanted},
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "mem_total_bytes": _mem_total_bytes(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    from deploytool.runtime.hardware import machine_identity

    info["cpu"] = machine_identity()  # vendor, family/model (Arm: implementer/part) and core types, for profile matching
    try:
        ort = _ort()
        info["onnxruntime"] = ort.__version__
        info["available_providers"] = list(ort.get_available_providers())
    except UnavailableError:
        info["onnxruntime"] = None
        info["available_providers"] = []
    return info


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text or type(e).__name__)[:300]
