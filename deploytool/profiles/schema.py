"""Device profile schema, version 1: what a target device is and what it must meet.

A profile is data (``device_profiles/<name>.yaml``), loaded with ``yaml.safe_load`` and validated
here into frozen dataclasses. Every failure is a :class:`deploytool.errors.ConfigError` whose one-line
message names the file, the key (dotted path) and what was expected; unknown keys are rejected with
a did-you-mean. The schema (``schema_version: 1``)::

    schema_version: 1
    name: kirin990                       # must equal the file's stem
    description: "..."
    soc: HiSilicon Kirin 990
    arch: aarch64                        # aarch64 | x86_64
    cpu:                                 # clusters, fastest first
      - {name: big, count: 2, core: cortex-a76, max_ghz: 2.86}
    features: [neon, fp16, dotprod]      # IsaFeature values (fp16 = fp16 *arithmetic*)
    memory_gb: 8
    compute:                             # over the `threads` cores the profile runs on
      peak_gops: {fp32: 183, fp16: 366, int8: 732}   # GFLOP/s (float), GOP/s (int8)
      memory_bandwidth_gbs: 34.1
      derivation: "2 x A76 @ 2.86 GHz x 16 fp32 FLOP/cycle (2x128-bit FMA) = ..."
    execution_providers:                 # preference order; the runtime falls back in order
      - {name: XNNPACK, options: {intra_op_num_threads: 2}}
      - CPU
    threads: 2
    budgets:
      p90_latency_ms: {8: 8, 128: 60}    # sequence length -> p90 latency budget (ms)
      peak_memory_mb: 300
      model_size_mb: 30
    qemu_cpu: cortex-a76                 # QEMU user-mode -cpu model, where one exists
    sources: ["Arm Cortex-A76 TRM ... https://..."]
    npu:                                 # optional, Snapdragon Hexagon HTP via QNN
      {backend: qnn, soc_model: 57, htp_arch: v75, soc_name: SM8650,
       activation_dtype: uint16, weight_dtype: uint8, precision: quantized}
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any

from deploytool.errors import ConfigError
from deploytool.runtime.session import ExecutionProvider  # imports onnxruntime lazily
from deploytool.variant import COMPUTE_PRECISIONS, Precision

SCHEMA_VERSION = 1

__all__ = [
    "SCHEMA_VERSION",
    "QEMU_CPUS",
    "Arch",
    "Budgets",
    "Compute",
    "CpuCluster",
    "EPChoice",
    "ExecutionProvider",
    "IsaFeature",
    "NpuSpec",
    "Precision",
    "Profile",
    "parse_ep_name",
    "parse_profile",
]


class Arch(str, enum.Enum):
    AARCH64 = "aarch64"
    X86_64 = "x86_64"


class IsaFeature(str, enum.Enum):
    """CPU features that change which kernels ONNX Runtime (MLAS/KleidiAI) can use."""

    NEON = "neon"
    FP16 = "fp16"  # Armv8.2 FP16 arithmetic (FEAT_FP16: fphp/asimdhp), not just conversion
    DOTPROD = "dotprod"  # SDOT/UDOT
    I8MM = "i8mm"  # SMMLA/UMMLA
    BF16 = "bf16"
    SVE = "sve"
    SVE2 = "sve2"
    SME = "sme"
    SME2 = "sme2"
    AVX2 = "avx2"
    AVX512 = "avx512"
    VNNI = "vnni"  # AVX512-VNNI / AVX-VNNI
    AMX = "amx"
    AVX10 = "avx10"


def parse_ep_name(text: Any, where: str = "execution provider") -> ExecutionProvider:
    """``XNNPACK``, ``xnnpack`` or ``XnnpackExecutionProvider`` -> the runtime's enum; else a did-you-mean."""
    key = str(text).strip()
    for ep in ExecutionProvider:
        if key.lower() in (ep.name.lower(), ep.value.lower()):
            return ep
    names = [ep.name for ep in ExecutionProvider if ep is not ExecutionProvider.AZURE]
    raise ConfigError(f"{where}: unknown execution provider '{text}'{_did_you_mean(key.upper(), names)}; "
                      f"expected one of {', '.join(names)}")


# QEMU 10 user-mode aarch64 CPU models (``qemu-aarch64 -cpu help``), the ones a profile may name.
QEMU_CPUS = frozenset({
    "a64fx", "cortex-a35", "cortex-a53", "cortex-a55", "cortex-a57", "cortex-a72", "cortex-a76",
    "cortex-a710", "neoverse-n1", "neoverse-n2", "neoverse-v1", "max",
})

_ACT_DTYPES = ("uint8", "uint16")
_WEIGHT_DTYPES = ("uint8", "int8", "uint16", "int4", "uint4")
_NPU_PRECISIONS = ("quantized", "fp16")


@dataclasses.dataclass(frozen=True)
class CpuCluster:
    count: int
    core: str  # micro-architecture, e.g. cortex-a76, neoverse-n1, sapphire-rapids
    max_ghz: float
    name: str = ""


@dataclasses.dataclass(frozen=True)
class EPChoice:
    provider: ExecutionProvider
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.provider.name


@dataclasses.dataclass(frozen=True)
class Compute:
    peak_gops: Mapping[Precision, float]  # GFLOP/s for float precisions, GOP/s for int8
    memory_bandwidth_gbs: float
    derivation: str

    def peak(self, precision: Precision | str) -> float:
        """Peak for ``precision``; a precision the profile does not list runs at the fp32 rate."""
        p = Precision(precision)
        return self.peak_gops.get(p, self.peak_gops[Precision.FP32])


@dataclasses.dataclass(frozen=True)
class Budgets:
    p90_latency_ms: Mapping[int, float] = dataclasses.field(default_factory=dict)  # seq len -> ms
    peak_memory_mb: float | None = None
    model_size_mb: float | None = None

    def latency_ms(self, seq_len: int) -> float | None:
        """The p90 budget for ``seq_len``: its own entry, else the next longer one listed, else None."""
        if seq_len in self.p90_latency_ms:
            return self.p90_latency_ms[seq_len]
        longer = sorted(s for s in self.p90_latency_ms if s >= seq_len)
        return self.p90_latency_ms[longer[0]] if longer else None


@dataclasses.dataclass(frozen=True)
class NpuSpec:
    backend: str  # "qnn"
    soc_model: int
    htp_arch: str  # "v73", "v75", "v79", ...
    soc_name: str
    activation_dtype: str = "uint16"
    weight_dtype: str = "uint8"
    precision: str = "quantized"


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    description: str
    soc: str
    arch: Arch
    cpu: tuple[CpuCluster, ...]
    features: frozenset[IsaFeature]
    memory_gb: float
    compute: Compute
    execution_providers: tuple[EPChoice, ...]
    threads: int
    budgets: Budgets
    sources: tuple[str, ...]
    qemu_cpu: str | None = None
    npu: NpuSpec | None = None
    schema_version: int = SCHEMA_VERSION
    path: str | None = None  # the file it was loaded from
    host: Mapping[str, Any] | None = None  # built at run time from this machine: detected facts, measurement

    @property
    def from_host(self) -> bool:
        """True for a profile built from the running machine (its latency is measured, not projected)."""
        return self.host is not None

    @property
    def measured_rates(self) -> Mapping[str, Any] | None:
        """The host microbenchmark's rates per thread count (None unless a measured host profile)."""
        m = (self.host or {}).get("measurement")
        return m["rates"] if m else None

    # ---------------------------------------------------------------- derived facts
    @property
    def core(self) -> str:
        """The micro-architecture of the fastest cluster (the one ``threads`` run on first)."""
        return self.cpu[0].core

    @property
    def total_cores(self) -> int:
        return sum(c.count for c in self.cpu)

    @property
    def fp16_arithmetic(self) -> bool:
        """True when the cores compute in fp16 natively (ORT then needs no inserted fp32 casts)."""
        return IsaFeature.FP16 in self.features

    def has(self, feature: IsaFeature | str) -> bool:
        return IsaFeature(feature) in self.features

    def ep_names(self) -> list[str]:
        return [ep.provider.value for ep in self.execution_providers]

    def session_spec(self, *, threads: int | None = None, **overrides: Any):
        """The runtime's :class:`~deploytool.runtime.session.SessionSpec` for this profile: the ordered
        EP preference list with each EP's options, and ``threads`` intra-op threads. ``threads``
        overrides the profile's; other ``overrides`` go to the SessionSpec unchanged (e.g.
        ``graph_optimization="basic"``). ``build_session`` falls back in order and records why.
        """
        from deploytool.runtime.session import ProviderSpec, SessionSpec

        providers = tuple(ProviderSpec(ep.provider, self.provider_options(ep)) for ep in self.execution_providers)
        return SessionSpec(providers=providers, intra_op_threads=self.threads if threads is None else threads,
                           **overrides)

    def provider_options(self, ep: EPChoice) -> dict[str, str]:
        """Options for ``ep``; QNN gets ``backend_type``/``soc_model`` from the ``npu`` section by default."""
        opts = dict(ep.options)
        if ep.provider is ExecutionProvider.QNN and self.npu is not None:
            opts.setdefault("backend_type", "htp")
            opts.setdefault("soc_model", str(self.npu.soc_model))
            if self.npu.precision == "fp16":
                opts.setdefault("enable_htp_fp16_precision", "1")
        return opts

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-serialisable view (enums as their YAML spelling)."""
        d: dict[str, Any] = {
            "schema_version": self.schema_version,
            "name": self.name,
            "description": self.description,
            "soc": self.soc,
            "arch": self.arch.value,
            "cpu": [dataclasses.asdict(c) for c in self.cpu],
            "features": sorted(f.value for f in self.features),
            "memory_gb": self.memory_gb,
            "compute": {
                "peak_gops": {p.value: v for p, v in self.compute.peak_gops.items()},
                "memory_bandwidth_gbs": self.compute.memory_bandwidth_gbs,
                "derivation": self.compute.derivation,
            },
            "execution_providers": [{"name": ep.name, "options": dict(ep.options)} for ep in self.execution_providers],
            "threads": self.threads,
            "budgets": {
                "p90_latency_ms": dict(self.budgets.p90_latency_ms),
                "peak_memory_mb": self.budgets.peak_memory_mb,
                "model_size_mb": self.budgets.model_size_mb,
            },
            "qemu_cpu": self.qemu_cpu,
            "sources": list(self.sources),
        }
        if self.npu is not None:
            d["npu"] = dataclasses.asdict(self.npu)
        if self.host is not None:
            d["host"] = _host_summary(self.host)
        return d


def _host_summary(host: Mapping[str, Any]) -> dict[str, Any]:
    """Detected facts and, per thread count, the measured rates in brief (the cache file has every point)."""
    m = host.get("measurement")
    out: dict[str, Any] = {"facts": dict(host.get("facts") or {}), "measured": bool(m)}
    if m:
        out["measured_utc"] = m.get("created_utc")
        out["onnxruntime"] = m.get("onnxruntime")
        out["load"] = m.get("load")
        out["rates"] = {}
        for t, r in m["rates"].items():
            gemm = {p: {"best_gops": max(x["gops"] for x in rows),
                        "at_m8_gops": round(sum(x["gops"] for x in rows if x["m"] == 8)
                                            / max(1, sum(1 for x in rows if x["m"] == 8)), 3)}
                    for p, rows in r["gemm"].items() if rows}
            out["rates"][f"{t}_threads"] = {"gemm": gemm,
                                            "attention_gops": {f"s{x['s']}": x["gops"] for x in r["attention"]},
                                            "bandwidth_gbs": r["bandwidth_gbs"], "op_overhead_us": r["op_overhead_us"],
                                            "run_overhead_us": r.get("run_overhead_us"), "spread": r.get("spread")}
    return out


# ======================================================================= validation
class _Where:
    """A file name plus the dotted key path, for messages."""

    def __init__(self, source: str, path: str = ""):
        self.source, self.path = source, path

    def __truediv__(self, key: Any) -> _Where:
        return _Where(self.source, f"{self.path}.{key}" if self.path else str(key))

    def fail(self, expected: str, got: Any = dataclasses.MISSING) -> ConfigError:
        got_s = "" if got is dataclasses.MISSING else f", got {_short(got)}"
        key = f"key '{self.path}'" if self.path else "top level"
        return ConfigError(f"{self.source}: {key}: expected {expected}{got_s}")


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _did_you_mean(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(d: Mapping, w: _Where, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    allowed = list(required) + list(optional)
    for k in d:
        if k not in allowed:
            where = f"key '{(w / k).path}'"
            raise ConfigError(f"{w.source}: unknown {where}{_did_you_mean(str(k), allowed)}; "
                              f"allowed here: {', '.join(allowed)}")
    for k in required:
        if k not in d:
            raise ConfigError(f"{w.source}: missing required key '{(w / k).path}'")


def _mapping(v: Any, w: _Where) -> Mapping:
    if not isinstance(v, Mapping):
        raise w.fail("a mapping", v)
    return v


def _str(v: Any, w: _Where, *, empty_ok: bool = False) -> str:
    if not isinstance(v, str) or (not empty_ok and not v.strip()):
        raise w.fail("a non-empty string", v)
    return v.strip()


def _num(v: Any, w: _Where, unit: str, *, positive: bool = True, allow_zero: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise w.fail(f"a number ({unit})", v)
    if v < 0 or (v == 0 and not allow_zero):
        raise w.fail(f"a {'non-negative' if allow_zero else 'positive'} number ({unit})", v)
    return float(v)


def _int(v: Any, w: _Where, what: str, *, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise w.fail(f"an integer >= {minimum} ({what})", v)
    return v


def _enum(cls: type[enum.Enum], v: Any, w: _Where, values: Sequence[str] | None = None) -> Any:
    values = [e.value for e in cls] if values is None else list(values)
    if isinstance(v, str):
        for e in cls:
            if v.strip().lower() == e.value and e.value in values:
                return e
    hint = _did_you_mean(str(v).lower(), values) if isinstance(v, str) else ""
    raise w.fail(f"one of {', '.join(values)}{hint}", v)


def _choice(v: Any, w: _Where, choices: tuple[str, ...]) -> str:
    if not isinstance(v, str) or v not in choices:
        hint = _did_you_mean(str(v), list(choices)) if isinstance(v, str) else ""
        raise w.fail(f"one of {', '.join(choices)}{hint}", v)
    return v


def _scalar_options(v: Any, w: _Where) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, x in _mapping(v, w).items():
        if not isinstance(k, str) or isinstance(x, (list, dict)) or x is None:
            raise (w / k).fail("a scalar option value (string, number or bool)", x)
        out[k] = ("1" if x else "0") if isinstance(x, bool) else str(x)
    return out


def _parse_cpu(v: Any, w: _Where) -> tuple[CpuCluster, ...]:
    if not isinstance(v, list) or not v:
        raise w.fail("a non-empty list of clusters {count, core, max_ghz[, name]}", v)
    out = []
    for i, c in enumerate(v):
        wi = w / i
        c = _mapping(c, wi)
        _check_keys(c, wi, ("count", "core", "max_ghz"), ("name",))
        out.append(CpuCluster(count=_int(c["count"], wi / "count", "cores"),
                              core=_str(c["core"], wi / "core").lower(),
                              max_ghz=_num(c["max_ghz"], wi / "max_ghz", "GHz"),
                              name=_str(c.get("name", ""), wi / "name", empty_ok=True)))
    return tuple(out)


def _parse_ep(v: Any, w: _Where) -> EPChoice:
    if isinstance(v, str):
        return EPChoice(parse_ep_name(v, f"{w.source}: key '{w.path}'"))
    d = _mapping(v, w)
    _check_keys(d, w, ("name",), ("options",))
    if not isinstance(d["name"], str):
        raise (w / "name").fail("an execution provider name", d["name"])
    ep = parse_ep_name(d["name"], f"{w.source}: key '{(w / 'name').path}'")
    return EPChoice(ep, _scalar_options(d.get("options") or {}, w / "options"))


def _parse_budgets(v: Any, w: _Where) -> Budgets:
    d = _mapping(v, w)
    _check_keys(d, w, (), ("p90_latency_ms", "peak_memory_mb", "model_size_mb"))
    lat: dict[int, float] = {}
    wl = w / "p90_latency_ms"
    for k, x in _mapping(d.get("p90_latency_ms") or {}, wl).items():
        try:
            seq = int(k)
        except (TypeError, ValueError):
            raise (wl / k).fail("a sequence length (positive integer) as key", k) from None
        if seq < 1:
            raise (wl / k).fail("a sequence length (positive integer) as key", k)
        lat[seq] = _num(x, wl / k, "milliseconds")
    mem = d.get("peak_memory_mb")
    size = d.get("model_size_mb")
    return Budgets(p90_latency_ms=dict(sorted(lat.items())),
                   peak_memory_mb=None if mem is None else _num(mem, w / "peak_memory_mb", "MB"),
                   model_size_mb=None if size is None else _num(size, w / "model_size_mb", "MB"))


def _parse_compute(v: Any, w: _Where) -> Compute:
    d = _mapping(v, w)
    _check_keys(d, w, ("peak_gops", "memory_bandwidth_gbs", "derivation"))
    peaks: dict[Precision, float] = {}
    wp = w / "peak_gops"
    for k, x in _mapping(d["peak_gops"], wp).items():
        peaks[_enum(Precision, k, wp / k, COMPUTE_PRECISIONS)] = _num(x, wp / k, "GFLOP/s or GOP/s")
    if Precision.FP32 not in peaks:
        raise (wp / "fp32").fail("the fp32 peak (GFLOP/s); other precisions are optional")
    return Compute(peak_gops=peaks,
                   memory_bandwidth_gbs=_num(d["memory_bandwidth_gbs"], w / "memory_bandwidth_gbs", "GB/s"),
                   derivation=_str(d["derivation"], w / "derivation"))


def _parse_npu(v: Any, w: _Where) -> NpuSpec:
    d = _mapping(v, w)
    _check_keys(d, w, ("backend", "soc_model", "htp_arch", "soc_name"),
                ("activation_dtype", "weight_dtype", "precision"))
    htp = d["htp_arch"]
    if isinstance(htp, int):
        htp = f"v{htp}"
    if not isinstance(htp, str) or not re.fullmatch(r"v\d{2}", htp):
        raise (w / "htp_arch").fail('a Hexagon HTP architecture like "v73", "v75", "v79"', d["htp_arch"])
    return NpuSpec(backend=_choice(d["backend"], w / "backend", ("qnn",)),
                   soc_model=_int(d["soc_model"], w / "soc_model", "QNN soc_model id", minimum=0),
                   htp_arch=htp,
                   soc_name=_str(d["soc_name"], w / "soc_name"),
                   activation_dtype=_choice(d.get("activation_dtype", "uint16"), w / "activation_dtype", _ACT_DTYPES),
                   weight_dtype=_choice(d.get("weight_dtype", "uint8"), w / "weight_dtype", _WEIGHT_DTYPES),
                   precision=_choice(d.get("precision", "quantized"), w / "precision", _NPU_PRECISIONS))


_TOP_REQUIRED = ("schema_version", "name", "description", "soc", "arch", "cpu", "features", "memory_gb",
                 "compute", "execution_providers", "threads", "budgets", "sources")
_TOP_OPTIONAL = ("qemu_cpu", "npu")


def parse_profile(data: Any, source: str = "<profile>", *, expect_name: str | None = None) -> Profile:
    """Validate a profile mapping (from ``yaml.safe_load``) into a :class:`Profile`.

    ``source`` names the file in messages; ``expect_name`` (the file's stem) must equal ``name``.
    """
    w = _Where(source)
    if not isinstance(data, Mapping):
        raise w.fail("a YAML mapping (a device profile)", data)
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        if "schema_version" not in data:
            raise ConfigError(f"{source}: missing required key 'schema_version' (this deploytool reads "
                              f"schema_version: {SCHEMA_VERSION})")
        raise (w / "schema_version").fail(f"{SCHEMA_VERSION} (the profile schema this deploytool reads)", version)
    _check_keys(data, w, _TOP_REQUIRED, _TOP_OPTIONAL)

    name = _str(data["name"], w / "name")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise (w / "name").fail("a lower-case name of letters, digits, '.', '_' or '-'", name)
    if expect_name is not None and name != expect_name:
        raise (w / "name").fail(f"'{expect_name}' (the file's name)", name)
    arch = _enum(Arch, data["arch"], w / "arch")
    cpu = _parse_cpu(data["cpu"], w / "cpu")

    wf = w / "features"
    if not isinstance(data["features"], list):
        raise wf.fail("a list of ISA features", data["features"])
    features = frozenset(_enum(IsaFeature, f, wf / i) for i, f in enumerate(data["features"]))
    arm_only = {IsaFeature.NEON, IsaFeature.FP16, IsaFeature.DOTPROD, IsaFeature.I8MM, IsaFeature.SVE,
                IsaFeature.SVE2, IsaFeature.SME, IsaFeature.SME2}
    x86_only = {IsaFeature.AVX2, IsaFeature.AVX512, IsaFeature.VNNI, IsaFeature.AMX, IsaFeature.AVX10}
    wrong = sorted(f.value for f in features & (x86_only if arch is Arch.AARCH64 else arm_only))
    if wrong:
        raise wf.fail(f"features of an {arch.value} CPU (not {', '.join(wrong)})")

    wep = w / "execution_providers"
    if not isinstance(data["execution_providers"], list) or not data["execution_providers"]:
        raise wep.fail("a non-empty list of execution providers in preference order", data["execution_providers"])
    eps = tuple(_parse_ep(e, wep / i) for i, e in enumerate(data["execution_providers"]))
    seen = [e.provider for e in eps]
    if len(set(seen)) != len(seen):
        raise wep.fail("each execution provider at most once")

    threads = _int(data["threads"], w / "threads", "intra-op threads")
    total = sum(c.count for c in cpu)
    if threads > total:
        raise (w / "threads").fail(f"at most the {total} cores listed under cpu", threads)

    qemu = data.get("qemu_cpu")
    if qemu is not None:
        if arch is not Arch.AARCH64:
            raise (w / "qemu_cpu").fail("no qemu_cpu on a non-aarch64 profile (QEMU here emulates aarch64)", qemu)
        qemu = _choice(qemu, w / "qemu_cpu", tuple(sorted(QEMU_CPUS)))

    ws = w / "sources"
    if not isinstance(data["sources"], list) or not data["sources"]:
        raise ws.fail("a non-empty list of cited vendor sources", data["sources"])
    sources = tuple(_str(s, ws / i) for i, s in enumerate(data["sources"]))

    npu = None if data.get("npu") is None else _parse_npu(data["npu"], w / "npu")
    if npu is None and any(e.provider is ExecutionProvider.QNN for e in eps):
        raise (w / "npu").fail("an npu section (soc_model, htp_arch, ...) when QNN is listed")

    return Profile(
        name=name,
        description=_str(data["description"], w / "description"),
        soc=_str(data["soc"], w / "soc"),
        arch=arch,
        cpu=cpu,
        features=features,
        memory_gb=_num(data["memory_gb"], w / "memory_gb", "GB"),
        compute=_parse_compute(data["compute"], w / "compute"),
        execution_providers=eps,
        threads=threads,
        budgets=_parse_budgets(data["budgets"], w / "budgets"),
        sources=sources,
        qemu_cpu=qemu,
        npu=npu,
        schema_version=SCHEMA_VERSION,
        path=None if source.startswith("<") else source,
    )
