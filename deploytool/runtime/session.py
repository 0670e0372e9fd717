"""ONNX Runtime sessions built from a typed, validated :class:`~deploytool.runtime.spec.SessionSpec`.

The spec (providers, threads, optimization level, ...) lives in :mod:`deploytool.runtime.spec`; host
facts in :mod:`deploytool.runtime.host_facts`. :func:`build_session` turns a spec into an
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

This module imports onnxruntime lazily (inside functions).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from deploytool import scratch
from deploytool.errors import ConfigError, InputFileError, UnavailableError, no_such
# re-exported: the spec and host facts are still imported from here by profiles/schema.py,
# bench/cost_model.py, bench/runner.py, passes/fp16.py and tests (their owners move them to
# deploytool.runtime.spec / .host_facts)
from deploytool.runtime.host_facts import host_info
from deploytool.runtime.spec import (
    MAX_THREADS,
    ExecutionMode,
    ExecutionProvider,
    GraphOptimization,
    ProviderSpec,
    SessionSpec,
)

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


#: why a timed session leaves QNN out on x86 (the qnn package's EMULATED rule, deploytool/qnn/ep.py)
QNN_EMULATED_REASON = ("on x86 the QNN HTP backend is Qualcomm's emulator: its timings are no device latency "
                       "(deploytool qnn check runs it for coverage and numerics)")


def qnn_htp_emulated(machine: str | None = None) -> bool:
    """Whether QNN's HTP backend here (or on a machine of arch ``machine``, as a bench JSON records it) is
    Qualcomm's x86 emulator (no timing from it is a device latency): the one rule, which
    :func:`deploytool.qnn.ep.is_emulated` states for the qnn package and the report applies to old bench files."""
    return (platform.machine() if machine is None else str(machine)).lower() in ("x86_64", "amd64", "i686")


def _plan_providers(ort, spec: SessionSpec, timing: bool = False):
    """Decide which providers to ask ORT for. Returns (chosen ProviderSpecs, skipped, plugin devices).

    ``timing``: the session is for a benchmark; QNN is skipped where its HTP backend is an emulator.
    """
    available = list(ort.get_available_providers())
    chosen: list[ProviderSpec] = []
    skipped: list[tuple[str, str]] = []
    devices: dict[str, list] = {}
    for p in spec.providers:
        if timing and p.provider is ExecutionProvider.QNN and qnn_htp_emulated():
            skipped.append((p.name, QNN_EMULATED_REASON))
            continue
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


def _create(ort, model_path: Path, spec: SessionSpec, optimized_path: str | None = None, timing: bool = False):
    chosen, skipped, devices = _plan_providers(ort, spec, timing)
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
        raise InputFileError(f"{p}: {no_such(p)}")
    if not p.is_file():
        raise InputFileError(f"{p}: not a file, expected an .onnx model")
    from deploytool.onnx_io import check_external_data

    check_external_data(p)  # one line, not ONNX Runtime's "External data path validation failed ..."
    return p


def build_session(model_path: str | os.PathLike, spec: SessionSpec | None = None, *, timing: bool = False):
    """Create an ``InferenceSession`` for ``model_path`` from ``spec``.

    Returns ``(session, SessionInfo)``. Providers missing from this build are skipped in order with
    their reason; ``spec.strict`` turns a skip into :class:`UnavailableError`. A model ONNX Runtime
    cannot load raises :class:`InputFileError`. ``timing=True`` (a benchmark's session) also skips QNN
    on x86, where its HTP backend is Qualcomm's emulator, with that reason.
    """
    spec = spec if spec is not None else SessionSpec()
    if not isinstance(spec, SessionSpec):
        raise ConfigError(f"spec: expected a SessionSpec, got {type(spec).__name__}")
    p = _check_model_path(model_path)
    return _create(_ort(), p, spec, timing=timing)


def init_shared_thread_pool(intra_op_threads: int, inter_op_threads: int = 1) -> None:
    """Create ONNX Runtime's process-wide thread pool, used by sessions with ``shared_thread_pool``.

    Call once per process, before the first session is created (ORT's environment is process
    global; a second call raises). Several sessions on one pool cannot slow each other down with
    spinning idle threads, which per-session pools do when runs alternate (see benchmarks/bench_hygiene.py).
    """
    for name, v in (("intra_op_threads", intra_op_threads), ("inter_op_threads", inter_op_threads)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_THREADS:
            raise ConfigError(f"{name}: must be an integer in [1, {MAX_THREADS}], got {v!r}")
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
    from deploytool.onnx_io import external_data_files

    if external_data_files(p):
        # ONNX Runtime writes the input's external tensors as references to the input's data file, relative to
        # out_path's folder, where it is not (every report of a model over 2 GB failed costing it): its own
        # data file beside out_path instead
        own = {"session.optimized_model_external_initializers_file_name": f"{Path(out_path).name}.data",
               "session.optimized_model_external_initializers_min_size_in_bytes": "1024"}
        spec = dataclasses.replace(spec, config_entries=tuple({**own, **dict(spec.config_entries)}.items()))
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
    # the optimized model's weights go to a data file beside it instead of into one protobuf (BERT-base fp16:
    # 3.2 s and 1.2 GB of memory -> 0.6 s and 0.7 GB), and the kernels' weight prepacking, which inserts and
    # counts nothing, is skipped; the casts are the same nodes
    probe = {"session.optimized_model_external_initializers_file_name": "optimized.onnx.data",
             "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
             "session.disable_prepacking": "1"}
    entries = dict(spec.config_entries)
    spec = dataclasses.replace(spec, config_entries=tuple({**probe, **entries}.items()))
    p = _check_model_path(model_path)
    with scratch.temporary_directory("deploytool-opt-") as tmp:
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


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text or type(e).__name__)[:300]
