"""The QNN execution provider: availability, sessions for one HTP target, where each node ran.

Sessions are built with the runtime layer's :func:`deploytool.runtime.session.build_session` (which
registers the ``onnxruntime-qnn`` plugin and adds it with ``add_provider_for_devices``; the old
``providers=[("QNNExecutionProvider", ...)]`` silently runs on the CPU). This module adds what QNN
needs on top: the target's provider options, strict mode (``session.disable_cpu_ep_fallback``), the
per-node EP assignment (``session.record_ep_graph_assignment_info``) and QNN's own reasons for each
unsupported node (provider option ``enable_framework_op_trace``, a JSON written to a folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import platform
from pathlib import Path

from deploytool.errors import DeployError, UnavailableError
from deploytool.qnn.target import QnnTarget

logger = logging.getLogger(__name__)

__all__ = ["EMULATED_LABEL", "Coverage", "NodeOnCpu", "is_emulated", "qnn_session", "require_qnn", "sdk_info",
           "short_reason"]

EMULATED_LABEL = ("EMULATED: x86 HTP emulator (onnxruntime-qnn), coverage and numerics only; "
                  "timings are not device latency")


class QnnStrictError(DeployError):
    """The model does not run entirely on the HTP (strict mode: no CPU fallback)."""


def short_reason(error: BaseException | str, limit: int = 300) -> str:
    """An error's message as one line for a reason: whitespace collapsed and, past ``limit`` characters, cut at
    the last word boundary with "..." (a message cut mid-word reads as a wrong word: "tensor(float16) and te")."""
    text = " ".join(str(error).split())
    if len(text) <= limit:
        return text
    head = text[:limit - 3]
    if " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ,;:(") + "..."


def require_qnn():
    """The ``onnxruntime_qnn`` module, or a one-line UnavailableError saying it cannot be loaded."""
    try:
        import onnxruntime_qnn
    except (ImportError, OSError) as e:
        raise UnavailableError(f"onnxruntime-qnn is not installed or cannot be loaded ({type(e).__name__}: "
                               f"{short_reason(e, 120)}); the QNN commands need "
                               "pip install 'deploytool[qnn]' (onnxruntime-qnn==2.7.0, Linux x86_64/aarch64)") from e
    return onnxruntime_qnn


def is_emulated() -> bool:
    """On x86 the HTP backend is Qualcomm's emulator: no timing from it is a device latency (the runtime layer's
    rule, which its benchmark sessions apply too)."""
    from deploytool.runtime.session import qnn_htp_emulated

    return qnn_htp_emulated()


def sdk_info() -> dict:
    """Versions that identify what compiled a context binary."""
    import onnxruntime as ort

    q = require_qnn()
    from onnxruntime_qnn import build_and_package_info as info

    return {"onnxruntime": ort.__version__, "onnxruntime_qnn": getattr(q, "__version__", "?"),
            "qnn_sdk": getattr(info, "qnn_version", "?"), "host": platform.machine(), "emulated": is_emulated()}


def qnn_session(model_path: str | Path, target: QnnTarget, *, strict: bool = False, record: bool = True,
                trace_dir: str | Path | None = None, provider_options: dict | None = None,
                config_entries: dict | None = None):
    """An ORT session with the QNN HTP EP for ``target`` (CPU EP as fallback unless ``strict``).

    Returns ``(session, SessionInfo)``; session creation failures raise the runtime layer's one-line
    DeployError (strict mode failing is one of them).
    """
    require_qnn()
    from deploytool.runtime.session import build_session
    from deploytool.runtime.spec import ProviderSpec, SessionSpec

    opts = target.provider_options()
    if trace_dir is not None:
        opts.update({"enable_framework_op_trace": "1", "framework_op_trace_dir": str(trace_dir)})
    opts.update(provider_options or {})
    entries = {"session.disable_cpu_ep_fallback": "1" if strict else "0"}
    if record:
        entries["session.record_ep_graph_assignment_info"] = "1"
    entries.update(config_entries or {})
    # log level 4 (fatal only): ORT/QNN would print their own multi-line errors for what the
    # caller turns into one line (strict-mode refusals, unsupported nodes)
    spec = SessionSpec(providers=(ProviderSpec("qnn", opts),), config_entries=tuple(entries.items()),
                       strict=True, intra_op_threads=1, log_severity_level=4)
    with native_stdout_to_log():
        return build_session(model_path, spec)


@contextlib.contextmanager
def native_stdout_to_log():
    """Whatever native code writes to the process's standard output meanwhile goes to the log instead.

    The QNN HTP libraries print a line of their own when they load (``# LIBNATIVE: No alternate
    configuration present ...``) straight to file descriptor 1, where it would mix with ``--json``
    output; it is captured at the descriptor and logged at INFO."""
    import os
    import sys
    import tempfile

    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real descriptor 1 (an embedded interpreter): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield
        finally:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace").strip()
            if text:
                logger.info("QNN libraries wrote to stdout: %s", " | ".join(text.splitlines()))


@dataclasses.dataclass(frozen=True)
class NodeOnCpu:
    name: str
    op_type: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Coverage:
    """Where the nodes of a session ran (after ORT's graph optimizations), with QNN's reasons."""

    qnn_nodes: int
    cpu_nodes: int
    qnn_subgraphs: int
    on_cpu: tuple[NodeOnCpu, ...]
    trace_summary: dict

    @property
    def total(self) -> int:
        return self.qnn_nodes + self.cpu_nodes

    @property
    def fraction(self) -> float:
        return self.qnn_nodes / self.total if self.total else 0.0

    @property
    def io_offloaded(self) -> tuple[NodeOnCpu, ...]:
        """Quantize/Dequantize of graph inputs/outputs that QNN leaves to the CPU on purpose
        (provider option offload_graph_io_quantization, on by default); strict mode allows them."""
        return tuple(n for n in self.on_cpu if _is_io_offload(n))

    @property
    def unsupported(self) -> tuple[NodeOnCpu, ...]:
        """The CPU nodes QNN itself refused (not I/O offload, not the ones partitioning left behind)."""
        return tuple(n for n in self.on_cpu if not n.reason.startswith("left on CPU") and not _is_io_offload(n))

    @property
    def fallback(self) -> tuple[NodeOnCpu, ...]:
        """CPU nodes other than the graph-I/O (de)quantization: the real CPU fallback."""
        return tuple(n for n in self.on_cpu if not _is_io_offload(n))

    def to_dict(self) -> dict:
        return {"qnn_nodes": self.qnn_nodes, "cpu_nodes": self.cpu_nodes, "total_nodes": self.total,
                "cpu_fallback_nodes": len(self.fallback), "io_quantization_on_cpu": len(self.io_offloaded),
                "fraction_on_qnn": round(self.fraction, 4), "qnn_subgraphs": self.qnn_subgraphs,
                "on_cpu": [dataclasses.asdict(n) for n in self.on_cpu], "qnn_trace_summary": self.trace_summary}

    def describe_unsupported(self, limit: int = 3) -> str:
        nodes = self.unsupported or self.fallback or self.on_cpu
        parts = [f"{n.op_type} '{n.name}' ({n.reason})" for n in nodes[:limit]]
        more = f" and {len(nodes) - limit} more" if len(nodes) > limit else ""
        return "; ".join(parts) + more


def probe_coverage(model_path: str | Path, target: QnnTarget) -> Coverage:
    """Coverage of ``model_path`` on ``target`` from a non-strict session (QNN's reasons included)."""
    from deploytool import scratch

    with scratch.temporary_directory("deploytool-qnn-trace-") as trace:
        sess, _ = qnn_session(model_path, target, strict=False, trace_dir=trace)
        return coverage_of(sess, trace)


def _is_io_offload(n: NodeOnCpu) -> bool:
    return n.op_type in ("QuantizeLinear", "DequantizeLinear") and ("graph output" in n.reason
                                                                     or "graph input" in n.reason)


def coverage_of(session, trace_dir: str | Path | None) -> Coverage:
    """Read the EP assignment of ``session`` and QNN's op trace (reasons) from ``trace_dir``."""
    qnn = cpu = subgraphs = 0
    cpu_nodes: list[tuple[str, str]] = []
    for sg in session.get_provider_graph_assignment_info():
        nodes = sg.get_nodes()
        if sg.ep_name == "QNNExecutionProvider":
            qnn += len(nodes)
            subgraphs += 1
        else:
            cpu += len(nodes)
            cpu_nodes.extend((n.name, n.op_type) for n in nodes)
    reasons: dict[str, str] = {}
    summary: dict = {}
    trace = Path(trace_dir, "qnn_op_trace.json") if trace_dir is not None else None
    if trace is not None and trace.is_file():
        try:
            data = json.loads(trace.read_text())
            summary = data.get("summary", {})
            for u in data.get("unsupported_nodes", []):
                reasons[u.get("node_name", "")] = " ".join(str(u.get("reason", "")).split())
        except (OSError, ValueError) as e:
            logger.warning("cannot read QNN op trace %s: %s", trace, e)
    on_cpu = tuple(NodeOnCpu(name, op, reasons.get(name, "left on CPU by partitioning (a neighbour is not on QNN)"))
                   for name, op in cpu_nodes)
    # put QNN's refusals first: they are the cause, the rest follows from them
    on_cpu = tuple(sorted(on_cpu, key=lambda n: n.reason.startswith("left on CPU")))
    return Coverage(qnn, cpu, subgraphs, on_cpu, summary)
