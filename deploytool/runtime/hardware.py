"""What CPU a measurement ran on, as a profile names it: arch and core types (no onnxruntime needed).

``/proc/cpuinfo`` is read for *every* processor: a phone or a big.LITTLE board lists several "CPU part"
values (MIDR_EL1.PartNum, e.g. 0xd0b = Cortex-A76, 0xd05 = Cortex-A55), and a device profile lists
its clusters' cores; the two sets are compared by :func:`deploytool.profiles.match.match_profile`. On
x86 the core type is the micro-architecture of (vendor, family, model) from the first processor
(:func:`deploytool.runtime.host.parse_cpuinfo`'s table). Unknown parts stay ``"unknown"``: a machine
whose cores cannot be named never matches a profile.
"""

from __future__ import annotations

import platform
from typing import Any

__all__ = ["ARM_PARTS", "core_types", "machine_identity"]


def _arm_parts() -> dict[int, str]:
    from deploytool.runtime.host import _ARM_PARTS

    # Cortex-X3 / A715 (Snapdragon 8 Gen 2), from their TRMs' MIDR_EL1 PartNum
    return {**_ARM_PARTS, 0xd4d: "cortex-a715", 0xd4e: "cortex-x3"}


#: Arm Ltd (implementer 0x41) "CPU part" -> core name as profiles spell it
ARM_PARTS = _arm_parts()


def _blocks(text: str) -> list[dict[str, str]]:
    out, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur = {}
            continue
        k, _, v = line.partition(":")
        cur.setdefault(k.strip(), v.strip())
    if cur:
        out.append(cur)
    return out


def _num(v: str | None) -> int | None:
    try:
        return int(v, 0) if v is not None else None
    except ValueError:
        return None


def core_types(cpuinfo: str, arch: str) -> list[str]:
    """The distinct core types of the processors listed in ``cpuinfo`` (first seen first)."""
    from deploytool.runtime.host import parse_cpuinfo

    if arch not in ("aarch64", "arm64"):
        return [parse_cpuinfo(cpuinfo, arch)["microarchitecture"]]
    seen: dict[str, None] = {}
    for b in _blocks(cpuinfo):
        if "CPU part" not in b:
            continue
        impl, part = _num(b.get("CPU implementer")), _num(b.get("CPU part"))
        if impl == 0x41 and part in ARM_PARTS:
            name = ARM_PARTS[part]
        elif (impl, part) == (0x46, 0x001):
            name = "a64fx"
        else:
            name = "unknown"
        seen.setdefault(name, None)
    return list(seen) or ["unknown"]


def machine_identity(cpuinfo: str | None = None, arch: str | None = None) -> dict[str, Any]:
    """``{"arch", "vendor", "family", "model", "model_name", "core_types"}`` of this machine (or of the
    given ``/proc/cpuinfo`` text); family/model are the Arm implementer/part on aarch64."""
    from deploytool.runtime.host import parse_cpuinfo, read_cpuinfo

    arch = arch or platform.machine()
    if cpuinfo is None:
        cpuinfo = read_cpuinfo()
    first = parse_cpuinfo(cpuinfo, arch)
    return {"arch": arch, "vendor": first["vendor"], "family": first["family"], "model": first["model"],
            "model_name": first["model_name"], "core_types": core_types(cpuinfo, arch)}
