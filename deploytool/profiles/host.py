"""The ``host`` profile: built at run time from the machine that runs deploytool.

A host profile file (``device_profiles/host.yaml``) is a *template*: it says ``from_host: true`` and
holds only what is a choice, not a fact of the machine (description, execution providers, threads,
budgets). Everything else is filled in here, every time it is loaded:

- soc, arch, cpu (usable cores, micro-architecture, clock), ISA features, memory: detected
  (:func:`deploytool.runtime.host.detect_host`);
- ``compute.peak_gops``: the ISA's nominal peaks (FLOP per cycle x clock x cores), like every other
  profile's vendor figures; ``memory_bandwidth_gbs``: measured (an Add over 32 MiB tensors);
- ``host``: the detected facts and the ONNX Runtime microbenchmark
  (:func:`deploytool.runtime.host.host_measurement`, cached once per machine): what ORT achieves
  per op class and size, i.e. the cost model's efficiencies against those nominal peaks.

Template schema (version 1)::

    schema_version: 1
    name: host
    from_host: true
    description: "..."
    execution_providers: [CPU]
    threads: auto            # auto = the usable cores, or an integer
    budgets: {p90_latency_ms: {8: 5, 128: 40}, peak_memory_mb: 2000, model_size_mb: 500}
    sources: [...]           # optional; the measurement is always cited
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator

from deploytool.choices import match_name
from deploytool.errors import ConfigError
from deploytool.validation import invalid, kind_of, schema, validate

__all__ = ["HostOptions", "build_host_profile", "is_host_template"]

def _threads(v: Any) -> Any:
    if match_name(v, ["auto"]) or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        return v  # 'Auto' too: a keyword is a choice, matched as every choice is (choices.match_name)
    raise invalid(f"expected 'auto' (the usable cores) or a positive integer, got {kind_of(v)}")


@schema
class HostTemplate:
    """A ``from_host: true`` template: the keys it may have (the rest of the profile is detected and
    measured, then the whole profile is validated by :func:`~deploytool.profiles.schema.parse_profile`)."""

    schema_version: Any
    name: Any
    from_host: Any
    description: Any
    execution_providers: Any
    threads: Annotated[Any, PlainValidator(_threads)]
    budgets: Any
    sources: Any = None




@dataclasses.dataclass(frozen=True)
class HostOptions:
    """Where the host measurement is cached and whether loading may run it (about 20 s, once)."""

    cache_dir: Path | None = None  # None: settings.default_host_cache() ($XDG_CACHE_HOME or ~/.cache)/deploytool/host
    measure: bool = True
    refresh: bool = False

    def __post_init__(self) -> None:
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        for f in ("measure", "refresh"):
            if not isinstance(getattr(self, f), bool):
                raise ConfigError(f"{f}: must be true or false, got {getattr(self, f)!r}")

    @property
    def cache(self) -> Path:
        from deploytool.settings import default_host_cache

        return self.cache_dir if self.cache_dir is not None else default_host_cache()


def is_host_template(data: Any) -> bool:
    return isinstance(data, Mapping) and data.get("from_host") is True


def _nominal_fp32_per_cycle(facts) -> tuple[float, str]:
    """fp32 FLOP per cycle per core from the ISA (two FMA pipes assumed; vendor optimization guides)."""
    f = set(facts.features)
    if "avx512" in f:
        if facts.microarchitecture in ("zen4", "zen3/zen4"):
            return 32.0, "AVX-512 on two 256-bit FMA pipes (Zen 4): 32 fp32 FLOP/cycle"
        return 64.0, "AVX-512, two 512-bit FMA pipes: 64 fp32 FLOP/cycle"
    if "avx2" in f:
        return 32.0, "AVX2, two 256-bit FMA pipes: 32 fp32 FLOP/cycle"
    if "neon" in f:
        return 16.0, "two 128-bit ASIMD FMA pipes: 16 fp32 FLOP/cycle"
    return 8.0, "no vector FMA known: 8 fp32 FLOP/cycle"


def build_host_profile(data: Mapping[str, Any], source: str, options: HostOptions | None = None,
                       *, facts=None, measurement=None):
    """A validated :class:`~deploytool.profiles.schema.Profile` of this machine from a template mapping."""
    from deploytool.profiles.schema import parse_profile
    from deploytool.runtime.host import detect_host, host_measurement

    options = options or HostOptions()
    validate(HostTemplate, dict(data) if isinstance(data, Mapping) else data, source)
    facts = facts or detect_host()
    threads = data["threads"]
    if match_name(threads, ["auto"]):
        threads = facts.usable_cores
    if threads > facts.usable_cores:
        raise ConfigError(f"{source}: threads: expected at most the {facts.usable_cores} usable core(s) of this "
                          f"machine, got {threads}")
    if measurement is None:
        measurement = host_measurement(options.cache, measure=options.measure, refresh=options.refresh, facts=facts)
    ghz = facts.max_ghz
    cpu = [{"count": facts.usable_cores, "core": facts.microarchitecture if facts.microarchitecture != "unknown"
            else f"{facts.arch}-unknown", "max_ghz": round(ghz, 3) if ghz else 1.0}]
    features = [f for f in facts.features]
    cited = [f"detected at run time: /proc/cpuinfo ({facts.vendor}, family {facts.family}, model {facts.model}, "
             f"stepping {facts.stepping}: {facts.model_name}), sched_getaffinity + cgroup quota "
             f"({facts.usable_cores} usable of {facts.logical_cores} logical cores), clock from {facts.ghz_source}"]
    # peaks are the ISA's nominal ones (as every other profile's are vendor figures); what ONNX Runtime
    # achieves of them, per op class and size, is the measurement (the cost model's efficiencies)
    per_cycle, why = _nominal_fp32_per_cycle(facts)
    fp32 = per_cycle * (ghz or 1.0) * threads
    int8_mult = 4.0 if ("vnni" in features or "dotprod" in features or "amx" in features) else 2.0
    peaks = {"fp32": round(fp32, 3), "int8": round(fp32 * int8_mult, 3)}
    if "fp16" in features:
        peaks["fp16"] = round(fp32 * 2, 3)
    # the clock as max_ghz holds it: /proc/cpuinfo's MHz / 1000 printed whole read '2.5961480000000003 GHz'
    nominal = (f"nominal peaks: {why} x {f'{round(ghz, 3):g}' if ghz else 'unknown (1.0 assumed)'} GHz "
               f"({facts.ghz_source}) x {threads} "
               f"core(s) = {fp32:.1f} GFLOP/s fp32; int8 {int8_mult:g}x fp32 (VNNI/SDOT rate; AMX, where present, "
               "shows up as int8 efficiency above 1); fp16 "
               + ("2x fp32 (fp16 arithmetic)." if "fp16" in features else "at the fp32 rate (ORT casts to fp32 here)."))
    if measurement is not None:
        r = measurement.at(threads)
        bw = float(r["bandwidth_gbs"])
        best = {p: max(x["gops"] for x in rows) for p, rows in r["gemm"].items() if rows}
        busy = (measurement.load or {}).get("busy")
        derivation = (f"{nominal} Memory bandwidth MEASURED: Add over two 32 MiB tensors. ONNX Runtime "
                      f"microbenchmark v{measurement.version} (onnxruntime {measurement.onnxruntime}, "
                      f"{measurement.created_utc}, {threads} thread(s)) achieved best GEMM "
                      + ", ".join(f"{p} {v:.0f}" for p, v in best.items())
                      + f" G(FL)OP/s at encoder shapes; run-to-run spread {r.get('spread', 0):.0%}"
                      + ("; the machine was BUSY while measuring (deploytool profiles show host --remeasure)"
                         if busy else "") + ".")
        cited.append(f"deploytool host microbenchmark v{measurement.version} ({measurement.created_utc})")
    else:
        bw = 10.0 * threads
        derivation = (f"{nominal} NOT MEASURED (no cached host measurement; `deploytool profiles show host` "
                      "measures it): memory bandwidth a placeholder of 10 GB/s per core.")
    profile_data = {
        "schema_version": data["schema_version"], "name": data["name"], "description": data["description"],
        "soc": f"{facts.model_name} ({facts.microarchitecture}), {facts.usable_cores} usable core(s)",
        "arch": facts.arch if facts.arch in ("x86_64", "aarch64") else "x86_64",
        "cpu": cpu, "features": features,
        "memory_gb": round((facts.memory_bytes or 0) / 1e9, 3) or 1.0,
        "compute": {"peak_gops": peaks, "memory_bandwidth_gbs": round(bw, 3), "derivation": derivation},
        "execution_providers": data["execution_providers"], "threads": threads, "budgets": data["budgets"],
        "sources": list(data.get("sources") or []) + cited,
    }
    prof = parse_profile(profile_data, source, expect_name=Path(source).stem if not source.startswith("<") else None,
                         detected=True)
    host = {"facts": facts.to_dict(), "measured": measurement is not None,
            "measurement": measurement.to_dict() if measurement is not None else None}
    return dataclasses.replace(prof, host=host)

