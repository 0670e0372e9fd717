"""The host a measurement ran on, as facts for a benchmark's JSON: CPU model, ISA features, cores,
memory, OS, Python, ONNX Runtime and its providers (:func:`host_info`).

Matching a host to a device profile uses :func:`deploytool.runtime.hardware.machine_identity`
(recorded here under ``"cpu"``); the host *profile* (detection and microbenchmarks) is
:mod:`deploytool.runtime.host`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from deploytool.runtime.hardware import machine_identity

__all__ = ["host_info"]


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
    info["cpu"] = machine_identity()  # vendor, family/model (Arm: implementer/part) and core types, for profile matching
    try:
        import onnxruntime as ort  # the runtime layer; optional here: host facts are useful without it
    except ImportError:
        ort = None
    if ort is not None:
        info["onnxruntime"] = ort.__version__
        info["available_providers"] = list(ort.get_available_providers())
        from deploytool.runtime.int8_kernel import u8s8_exact

        # whether its uint8 x int8 GEMM kernel is exact (False on x86 without VNNI: saturating int16 pairs)
        info["int8_u8s8_exact"] = u8s8_exact()
    else:
        info["onnxruntime"] = None
        info["available_providers"] = []
    return info
