"""Did a benchmark run on the hardware a device profile describes? (MEASURED vs PROJECTED)

A bench JSON records the machine it ran on (``host``: arch, and in ``host.cpu`` the vendor, family/model
or Arm implementer/part and the core types read from every processor in ``/proc/cpuinfo``). A device
profile declares its arch and its clusters' cores (``cpu[].core``). They match when:

- the run was not emulated (timings under QEMU are never a device's), and
- a profile built from a machine at run time (``host``, ``x86-host``) was built on that same CPU
  (arch, vendor, family and model / implementer and part), else
- the arch is the profile's, and the set of core types equals the set of the profile's cluster cores
  (a Kirin 990 is {cortex-a76, cortex-a55}; a Raspberry Pi 5 is {cortex-a76}).

The profile's name is never looked at.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from deploytool.profiles.schema import Profile

__all__ = ["HardwareMatch", "match_profile"]


@dataclasses.dataclass(frozen=True)
class HardwareMatch:
    matched: bool
    why: str  # one sentence: what matched, or the first thing that did not

    def __bool__(self) -> bool:
        return self.matched


def _same_cpu(cpu: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    keys = ("vendor", "family", "model")
    return all(cpu.get(k) == facts.get(k) for k in keys)


def match_profile(profile: Profile, host: Mapping[str, Any]) -> HardwareMatch:
    """Whether a bench run on ``host`` (a bench JSON's ``host`` record) measured ``profile``'s hardware."""
    arch = str(host.get("arch") or "?")
    cpu = host.get("cpu") if isinstance(host.get("cpu"), Mapping) else None
    if host.get("emulated"):
        return HardwareMatch(False, "the bench ran under emulation (QEMU): never a device measurement")
    if profile.from_host:
        facts = (profile.host or {}).get("facts") or {}
        if arch != facts.get("arch"):
            return HardwareMatch(False, f"arch {arch} != {facts.get('arch')} of the machine '{profile.name}' was built on")
        same = (_same_cpu(cpu, facts) if cpu is not None
                else str(host.get("cpu_model")) == facts.get("model_name"))  # a bench JSON without host.cpu
        if same:
            return HardwareMatch(True, f"'{profile.name}' was built on this CPU ({facts.get('model_name')})")
        return HardwareMatch(False, f"the bench CPU ({host.get('cpu_model')}) is not the one '{profile.name}' "
                                    f"was built on ({facts.get('model_name')})")
    if arch != profile.arch.value:
        return HardwareMatch(False, f"arch {arch} != the profile's {profile.arch.value}")
    if cpu is None or not cpu.get("core_types"):
        return HardwareMatch(False, "the bench JSON does not record the core types (host.cpu): cannot tell")
    ran = set(cpu["core_types"])
    want = {c.core for c in profile.cpu}
    if "unknown" in ran:
        return HardwareMatch(False, f"core type unknown ({cpu.get('vendor')} part {cpu.get('model')}): cannot tell")
    if ran != want:
        return HardwareMatch(False, f"cores {'+'.join(sorted(ran))} != the profile's {'+'.join(sorted(want))}")
    return HardwareMatch(True, f"{arch}, cores {'+'.join(sorted(ran))} as the profile declares")
