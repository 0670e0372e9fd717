"""Device profile schema, version 1: what a target device is and what it must meet.

A profile is data (``device_profiles/<name>.yaml``), loaded with ``yaml.safe_load`` and validated
here into frozen dataclasses by deploytool's one validation mechanism (:mod:`deploytool.validation`).
Every failure is a :class:`deploytool.errors.ConfigError` whose one-line message names the file, the
key path and what was expected (``kirin990.yaml: budgets.p90_latency_ms.128: expected a positive number
(milliseconds), got -5``); unknown keys are rejected with a did-you-mean. The schema (``schema_version: 1``)::

    schema_version: 1
    name: kirin990                       # must equal the file's stem
    description: "..."
    soc: HiSilicon Kirin 990
    arch: aarch64                        # aarch64 | x86_64
    cpu:                                 # clusters, fastest first
      - {name: big, count: 2, core: cortex-a76, max_ghz: 2.86}   # core: one of KNOWN_CORES[arch]
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
      peak_memory_mb: 300                # at most memory_gb * 1000
      model_size_mb: 30
    qemu_cpu: cortex-a76                 # QEMU user-mode -cpu model, where one exists
    sources: ["Arm Cortex-A76 TRM ... https://..."]
    npu:                                 # optional, Snapdragon Hexagon HTP via QNN
      {backend: qnn, soc_model: 57, htp_arch: v75, soc_name: SM8650,
       activation_dtype: uint16, weight_dtype: uint8, precision: quantized}
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Optional

from pydantic import BeforeValidator, Field, PlainValidator, ValidationInfo, model_validator

from deploytool.choices import did_you_mean, enum_choices, first_repeat, match_enum, not_one_of
from deploytool.errors import ConfigError
from deploytool.runtime.spec import EP_OPTIONS, ExecutionProvider
from deploytool.units import MAX_SEQ_LEN
from deploytool.validation import (Choice, Integer, Number, OneOf, Text, invalid, kind_of, schema, show, validate,
                                   without_extensions)
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
    "KNOWN_CORES",
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
    """``XNNPACK``, ``xnnpack`` or ``XnnpackExecutionProvider`` -> the runtime's enum (``ExecutionProvider.parse``,
    the one parser: ``where: expected one of CPU, XNNPACK, ..., got 'x' (did you mean ...?)``)."""
    return ExecutionProvider.parse(text, where)


# QEMU 10 user-mode aarch64 CPU models (``qemu-aarch64 -cpu help``), the ones a profile may name.
QEMU_CPUS = frozenset({
    "a64fx", "cortex-a35", "cortex-a53", "cortex-a55", "cortex-a57", "cortex-a72", "cortex-a76",
    "cortex-a710", "neoverse-n1", "neoverse-n2", "neoverse-v1", "max",
})


def _known_cores() -> dict[str, frozenset[str]]:
    """Core names a profile's ``cpu[].core`` may take, per arch: every name deploytool's CPU detection gives a
    machine (:mod:`deploytool.runtime.hardware`, :mod:`deploytool.runtime.host`), which is what a measurement is
    matched by (:mod:`deploytool.profiles.match`), and the cores it knows but cannot detect (a profile of such a
    device is always projected). Anything else is a typo until added here."""
    from deploytool.runtime.hardware import ARM_PARTS
    from deploytool.runtime.host import _X86_UARCH

    x86 = (set(_X86_UARCH.values()) - {"zen3/zen4"}) | {"zen3", "zen4"}  # detection splits family 19h
    # Arm Ltd cores without a detection entry (Linux's arch/arm64/include/asm/cputype.h names), Qualcomm's Oryon
    undetected = {"cortex-a34", "cortex-a35", "cortex-a65", "cortex-a73", "cortex-a75", "cortex-a76ae",
                  "cortex-a78ae", "cortex-a78c", "cortex-x1c", "cortex-x2", "cortex-a725", "cortex-x925",
                  "neoverse-e1", "neoverse-v3", "oryon-v1", "oryon-v2"}
    return {"aarch64": frozenset(set(ARM_PARTS.values()) | {"a64fx"} | undetected), "x86_64": frozenset(x86)}


#: arch -> the core names a profile file of that arch may give (``cpu[].core``); see :func:`_known_cores`
KNOWN_CORES = _known_cores()


def _core_list(names) -> str:
    """``cortex-{a53,a55}, a64fx``: the names grouped by their first word, in natural order."""
    def order(n: str):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]

    groups: dict[str, list[str]] = {}
    for n in sorted(names, key=order):
        head, sep, tail = n.partition("-")
        groups.setdefault(head if sep and "/" not in n else n, []).append(tail if sep and "/" not in n else "")
    return ", ".join(h if tails == [""] else f"{h}-{tails[0]}" if len(tails) == 1 else f"{h}-{{{','.join(tails)}}}"
                     for h, tails in groups.items())


_ACT_DTYPES = ("uint8", "uint16")
_WEIGHT_DTYPES = ("uint8", "int8", "uint16", "int4", "uint4")
_NPU_PRECISIONS = ("quantized", "fp16")


def _list_of(what: str):
    """A non-empty YAML list (``what`` names it in the message)."""
    def check(v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or not v:
            got = "an empty list" if isinstance(v, (list, tuple)) else kind_of(v)
            raise invalid(f"expected a non-empty list of {what}, got {got}")
        return v

    return BeforeValidator(check)


def _mapping_of(what: str):
    def check(v: Any) -> Any:
        if not isinstance(v, Mapping) and not dataclasses.is_dataclass(v):
            raise invalid(f"expected a mapping ({what}), got {kind_of(v)}")
        return v

    return BeforeValidator(check)


@schema
class CpuCluster:
    count: Integer(1, what="cores")
    core: Annotated[Text, BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v)]
    max_ghz: Number("GHz")
    name: str = ""  # micro-architecture above, e.g. cortex-a76, neoverse-n1, sapphire-rapids


def _scalar_options(v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping):
        raise invalid(f"expected a mapping of options, got {kind_of(v)}")
    out: dict[str, str] = {}
    for k, x in v.items():
        if not isinstance(k, str) or isinstance(x, (list, dict)) or x is None:
            raise invalid(f"expected a scalar option value (string, number or bool), got {kind_of(x)}", f".{k}")
        out[k] = ("1" if x else "0") if isinstance(x, bool) else str(x)
    return out


def _provider(v: Any, at: str = "") -> ExecutionProvider:
    if not isinstance(v, (str, ExecutionProvider)):
        raise invalid(f"expected an execution provider name, got {kind_of(v)}", at)
    ep = match_enum(ExecutionProvider, v, by_name=True)
    if ep is None:
        raise invalid(not_one_of(enum_choices(ExecutionProvider, by_name=True), v), at)
    return ep


@schema
class EPChoice:
    provider: Annotated[ExecutionProvider, PlainValidator(lambda v: _provider(v))]
    options: Annotated[Mapping[str, str], PlainValidator(_scalar_options)] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, v: Any) -> Any:
        """``CPU`` or ``{name: XNNPACK, options: {...}}`` in a profile."""
        if isinstance(v, str):
            return {"provider": _provider(v)}
        if isinstance(v, Mapping) and "provider" not in v:
            extra = [k for k in v if k not in ("name", "options")]
            if extra:
                raise invalid(f"unknown key{did_you_mean(str(extra[0]), ['name', 'options'])}", f".{extra[0]}")
            if "name" not in v:
                raise invalid("required key is missing", ".name")
            return {"provider": _provider(v["name"], ".name"), "options": v.get("options") or {}}
        if isinstance(v, (list, tuple, int, float)) or v is None:
            raise invalid(f"expected an execution provider name or {{name, options}}, got {kind_of(v)}")
        return v  # an EPChoice, or EPChoice(...)'s own arguments

    @model_validator(mode="after")
    def _known_options(self) -> EPChoice:
        """An option ONNX Runtime does not read for this EP (:data:`~deploytool.runtime.spec.EP_OPTIONS`) is refused:
        it would be passed on and ignored in silence. EPs without a known set take any options."""
        allowed = EP_OPTIONS.get(self.provider)
        if allowed is None:
            return self
        for key in self.options:
            if key not in allowed:
                takes = (f"{self.name} takes {', '.join(sorted(allowed))}" if allowed else
                         f"{self.name} takes no provider options")
                raise invalid(f"unknown {self.name} option{did_you_mean(key, sorted(allowed))}; {takes}",
                              f".options.{key}")
        return self

    @property
    def name(self) -> str:
        return self.provider.name


_COMPUTE = [Precision(p) for p in COMPUTE_PRECISIONS]


def _peaks(v: Any) -> dict[Precision, float]:
    if not isinstance(v, Mapping):
        raise invalid(f"expected a mapping of precision -> GFLOP/s or GOP/s, got {kind_of(v)}")
    out: dict[Precision, float] = {}
    for k, x in v.items():
        key = k.value if isinstance(k, enum.Enum) else k
        p = match_enum(Precision, key, allowed=_COMPUTE) if isinstance(key, str) else None
        if p is None:
            raise invalid(not_one_of(COMPUTE_PRECISIONS, key if not isinstance(key, str) or len(key) <= 80
                                     else key[:77] + "..."), f".{key}")
        if not _positive_finite(x):
            raise invalid(f"expected a positive number (GFLOP/s or GOP/s), got {kind_of(x)}", f".{key}")
        out[p] = float(x)
    if Precision.FP32 not in out:
        raise invalid("expected the fp32 peak (GFLOP/s); other precisions are optional", ".fp32")
    return out


@schema
class Compute:
    peak_gops: Annotated[Mapping[Precision, float], PlainValidator(_peaks)]  # GFLOP/s for float, GOP/s for int8
    memory_bandwidth_gbs: Number("GB/s")
    derivation: Text

    def peak(self, precision: Precision | str) -> float:
        """Peak for ``precision``; a precision the profile does not list runs at the fp32 rate."""
        p = Precision(precision)
        return self.peak_gops.get(p, self.peak_gops[Precision.FP32])


def _positive_finite(x: Any) -> bool:
    """A positive int or float that a float holds finitely (not a bool, not NaN, not infinity)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x) and x > 0
    except OverflowError:  # an int too large for a float
        return False


def _seq_len_key(k: Any) -> int | None:
    """A budget's key as a sequence length: a positive int, or a string of digits (JSON keys are strings);
    None otherwise (``8.7`` is refused, never truncated to 8)."""
    if isinstance(k, int) and not isinstance(k, bool):
        seq = k
    elif isinstance(k, str) and re.fullmatch(r"\s*\+?\d+\s*", k) and len(k) < 20:
        seq = int(k)
    else:
        return None
    return seq if seq >= 1 else None


def _latency_budgets(v: Any) -> dict[int, float]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise invalid(f"expected a mapping of sequence length -> milliseconds, got {kind_of(v)}")
    lat: dict[int, float] = {}
    keys: dict[int, Any] = {}  # each length's key as written
    for k, x in v.items():
        seq = _seq_len_key(k)
        if seq is None:
            raise invalid(f"expected a sequence length (positive integer) as key, got {kind_of(k)}", f".{k}")
        if seq > MAX_SEQ_LEN:  # the one length limit of every command (fit would blame its --seq-len)
            raise invalid(f"expected a sequence length of at most {MAX_SEQ_LEN}, got {seq}", f".{k}")
        if seq in lat:  # 8 and "8": YAML's duplicate-key check sees two keys, the budget one length
            raise invalid(f"sequence length {seq} appears twice ({show(keys[seq])} and {show(k)}); give one budget "
                          "per length", f".{k}")
        keys[seq] = k
        if not _positive_finite(x):
            got = show(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else kind_of(x)
            raise invalid(f"expected a positive number (milliseconds), got {got}", f".{k}")
        lat[seq] = float(x)
    return dict(sorted(lat.items()))


@schema
class Budgets:
    p90_latency_ms: Annotated[Mapping[int, float], PlainValidator(_latency_budgets)] = Field(default_factory=dict)
    peak_memory_mb: Optional[Number("MB")] = None
    model_size_mb: Optional[Number("MB")] = None

    def latency_ms(self, seq_len: int) -> float | None:
        """The p90 budget for ``seq_len``: its own entry, else the next longer one listed, else None."""
        if seq_len in self.p90_latency_ms:
            return self.p90_latency_ms[seq_len]
        longer = sorted(s for s in self.p90_latency_ms if s >= seq_len)
        return self.p90_latency_ms[longer[0]] if longer else None


def _htp_arch(v: Any) -> str:
    htp = f"v{v}" if isinstance(v, int) and not isinstance(v, bool) else v
    if not isinstance(htp, str) or not re.fullmatch(r"v\d{2}", htp):
        raise invalid(f'expected a Hexagon HTP architecture like "v73", "v75", "v79", got {show(v)}')
    return htp


@schema
class NpuSpec:
    backend: Choice("qnn")  # "qnn"
    soc_model: Integer(0, what="QNN soc_model id")
    htp_arch: Annotated[str, PlainValidator(_htp_arch)]  # "v73", "v75", "v79", ...
    soc_name: Text
    activation_dtype: Choice(*_ACT_DTYPES) = "uint16"
    weight_dtype: Choice(*_WEIGHT_DTYPES) = "uint8"
    precision: Choice(*_NPU_PRECISIONS) = "quantized"


_ARM_ONLY = {"neon", "fp16", "dotprod", "i8mm", "sve", "sve2", "sme", "sme2"}
_X86_ONLY = {"avx2", "avx512", "vnni", "amx", "avx10"}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def _name(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise invalid(f"expected a non-empty string, got {kind_of(v)}")
    v = v.strip()
    if not _NAME.fullmatch(v):
        raise invalid(f"expected a lower-case name of letters, digits, '.', '_' or '-', got {show(v)}")
    return v


#: what no device a profile describes exceeds (a written profile past one is refused, :func:`_at_most`): CPU clocks
#: stop near 6 GHz, a socket near 300 cores, servers near 30 TB of memory, an accelerator's int8 peak near 5 POP/s and
#: its memory near 5 TB/s; each limit is ~2x to 20x above, so only a unit slip or a stray digit meets it
_MAX_GHZ = 10.0
_MAX_CLUSTER_CORES = 1024
_MAX_MEMORY_GB = 100_000.0
_MAX_GOPS = 10_000_000.0
_MAX_BANDWIDTH_GBS = 100_000.0
#: what every device a profile describes exceeds (below one is refused, :func:`_at_least`): the smallest cores a
#: profile may name (cortex-a34/a35/a53, Atom-class x86) clock above 0.4 GHz and reach 2+ GFLOP/s on one core, the
#: smallest boards running ONNX Runtime have 64+ MB at 0.8+ GB/s (16-bit LPDDR); even a Cortex-M4 microcontroller at
#: 100 MHz does 0.2 GFLOP/s from 0.4 GB/s of SRAM. Each limit is ~4x to 20x below, so only a unit slip (a rate in
#: TFLOP/s, a size in TB) or a stray exponent meets it: at 1e-300 GFLOP/s the cost model projected years
_MIN_GHZ = 0.1
_MIN_MEMORY_GB = 0.01
_MIN_GOPS = 0.1
_MIN_BANDWIDTH_GBS = 0.1
#: the least a peak can be per core and cycle (over ``threads`` cores at the fastest cluster's clock): any core with
#: an FPU does 1+ FLOP a cycle (a Cortex-M4: 2, a Cortex-A35: 4); so a peak below half of one is a rate in TFLOP/s
#: of a device the absolute floor cannot tell from a small one (a Kirin 990's 158.4 GFLOP/s written 0.1584)
_MIN_OPS_PER_CYCLE = 0.5


def _at_most(x: float, limit: float, unit: str, slip: str, where: str) -> None:
    if x > limit:
        raise invalid(f"expected at most {limit:g} {unit} (more than any device has), got {x:.12g}"
                      f"{f': {slip}' if slip else ''}", where)


def _at_least(x: float, limit: float, unit: str, slip: str, where: str) -> None:
    if x < limit:
        raise invalid(f"expected at least {limit:g} {unit} (less than any device has), got {x:.12g}"
                      f"{f': {slip}' if slip else ''}", where)


def _within(x: float, low: float, high: float, unit: str, slips: tuple[str, str], where: str) -> None:
    """``x`` within what real devices have: past either side is a unit slip (``slips``: the low one, the high one)."""
    _at_least(x, low, unit, slips[0], where)
    _at_most(x, high, unit, slips[1], where)


def _once(items: Any, what: str, key, at: str = "", name_of=show) -> Any:
    """``items`` unchanged when no two have the same ``key`` (None: not compared, left to the item's own check); else
    the second is refused by its index, as every list of names in deploytool is (choices.refuse_repeats): a
    feature or provider given twice was collapsed in silence, a sign of a copied line meant as another one."""
    if isinstance(items, (list, tuple)):
        rep = first_repeat(enumerate(items), key=lambda ix: key(ix[1]) if key(ix[1]) is not None else ("#", ix[0]))
        if rep is not None:
            (i, x), (j, earlier) = rep[1], rep[2]
            as_ = f" as {name_of(earlier)}" if name_of(earlier) != name_of(x) else ""
            raise invalid(f"{name_of(x)} is given twice (also{as_} at [{j}]); list each {what} once", f"{at}[{i}]")
    return items


def _features(v: Any) -> Any:
    if not isinstance(v, (list, tuple, set, frozenset)):
        _not_a_list("ISA features", v)
    return _once(v, "feature", lambda x: match_enum(IsaFeature, x) if isinstance(x, (str, IsaFeature)) else None)


@schema
class Profile:
    name: Annotated[str, PlainValidator(_name)]
    description: Text
    soc: Text
    arch: OneOf(Arch)
    cpu: Annotated[tuple[CpuCluster, ...], _list_of("clusters {count, core, max_ghz[, name]}")]
    features: Annotated[frozenset[OneOf(IsaFeature)], BeforeValidator(_features)]
    memory_gb: Number("GB")
    compute: Compute
    execution_providers: Annotated[tuple[EPChoice, ...], _list_of("execution providers in preference order")]
    threads: Integer(1, what="intra-op threads")
    budgets: Annotated[Budgets, _mapping_of("p90_latency_ms, peak_memory_mb, model_size_mb")]
    sources: Annotated[tuple[Text, ...], _list_of("cited vendor sources"), BeforeValidator(
        lambda v: _once(v, "source", lambda x: x.strip() if isinstance(x, str) else None))]
    qemu_cpu: Optional[Choice(*sorted(QEMU_CPUS))] = None
    npu: Optional[NpuSpec] = None
    schema_version: int = SCHEMA_VERSION
    path: Optional[str] = None  # the file it was loaded from
    host: Optional[Mapping[str, Any]] = None  # built at run time from this machine: detected facts, measurement

    @model_validator(mode="before")
    @classmethod
    def _document(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is None or not isinstance(data, Mapping):  # built in Python (dataclasses.replace, tests)
            return data
        if "schema_version" not in data:
            raise invalid(f"required key is missing (this deploytool reads schema_version: {SCHEMA_VERSION})",
                          "schema_version")
        if type(data["schema_version"]) is not int or data["schema_version"] != SCHEMA_VERSION:  # not 1.0, not true
            raise invalid(f"expected {SCHEMA_VERSION} (the profile schema this deploytool reads), "
                          f"got {show(data['schema_version'])}", "schema_version")
        if "from_host" in data:  # true made a host template (profiles.host): 1 or 'true' was 'from_host: unknown key'
            got = data["from_host"]
            raise invalid(f"expected true (a profile built from this machine, as host.yaml is), or no from_host key "
                          f"for a written profile, got {str(got).lower() if isinstance(got, bool) else show(got)}",
                          "from_host")
        for k in data:  # checked here, not by the dataclass: its fields path and host are set by deploytool
            if k not in _DOCUMENT_KEYS:
                hint = did_you_mean(str(k), list(_DOCUMENT_KEYS)) or f" (allowed: {', '.join(_DOCUMENT_KEYS)})"
                raise invalid(f"unknown key{hint}", str(k))
        return {**data, "path": info.context.get("path")}

    @model_validator(mode="after")
    def _written(self, info: ValidationInfo) -> Profile:
        """What only a profile file states (not one built from this machine, whose memory and cores are detected):
        its cores are ones deploytool knows, and its peak-memory budget fits in its memory."""
        if info.context is None or info.context.get("detected"):
            return self
        known = KNOWN_CORES[self.arch.value]
        for i, c in enumerate(self.cpu):
            if c.core not in known:  # never matched to a measurement: the report would project in silence
                hint = did_you_mean(c.core, sorted(known)) or f" (known {self.arch.value} cores: {_core_list(known)})"
                raise invalid(f"unknown core {show(c.core)}{hint}", f"cpu[{i}].core")
        # a number past any device's is a unit slip (a clock in MHz, a rate in FLOP/s, a size in bytes) that the
        # projections and budget checks would take at its word: 'memory_gb: 8589934592' passed every budget
        # and one below any device's (1e-300 GFLOP/s, a rate in TFLOP/s) made the cost model project years
        for i, c in enumerate(self.cpu):
            _within(c.max_ghz, _MIN_GHZ, _MAX_GHZ, "GHz", ("", "a clock in MHz?"), f"cpu[{i}].max_ghz")
            _at_most(c.count, _MAX_CLUSTER_CORES, "cores in a cluster", "", f"cpu[{i}].count")
        _within(self.memory_gb, _MIN_MEMORY_GB, _MAX_MEMORY_GB, "GB", ("a size in TB?", "a size in MB or bytes?"),
                "memory_gb")
        for prec, rate in self.compute.peak_gops.items():
            _within(rate, _MIN_GOPS, _MAX_GOPS, "GFLOP/s or GOP/s", ("a rate in TFLOP/s?", "a rate in FLOP/s?"),
                    f"compute.peak_gops.{prec.value}")
        if self.cpu and isinstance(self.threads, int) and self.threads >= 1:
            ghz = max(c.max_ghz for c in self.cpu)
            for prec, rate in self.compute.peak_gops.items():
                per = rate / (self.threads * ghz)
                if per < _MIN_OPS_PER_CYCLE:
                    raise invalid(f"{rate:g} GFLOP/s or GOP/s over {self.threads} thread(s) at up to {ghz:g} GHz is "
                                  f"{per:.2g} per core and cycle, less than any core does (at least "
                                  f"{_MIN_OPS_PER_CYCLE:g}): a rate in TFLOP/s?", f"compute.peak_gops.{prec.value}")
        _within(self.compute.memory_bandwidth_gbs, _MIN_BANDWIDTH_GBS, _MAX_BANDWIDTH_GBS, "GB/s",
                ("a bandwidth in TB/s?", "a bandwidth in MB/s or B/s?"), "compute.memory_bandwidth_gbs")
        budget = self.budgets.peak_memory_mb
        if budget is not None and budget > self.memory_gb * 1000:  # decimal units, as the budgets (units.MB)
            raise invalid(f"{budget:g} MB is more than the device's memory_gb: {self.memory_gb:g} "
                          f"({self.memory_gb * 1000:g} MB)", "budgets.peak_memory_mb")
        return self

    @model_validator(mode="after")
    def _across(self, info: ValidationInfo) -> Profile:
        wrong = sorted(f.value for f in self.features
                       if f.value in (_X86_ONLY if self.arch is Arch.AARCH64 else _ARM_ONLY))
        if wrong:
            raise invalid(f"expected features of an {self.arch.value} CPU (not {', '.join(wrong)})", "features")
        fp16 = self.compute.peak_gops.get(Precision.FP16)
        if fp16 is not None and IsaFeature.FP16 not in self.features:
            # the cost model computes fp16 ops at the fp32 peak behind casts on such cores (as the host profile's
            # peaks say), yet took the listed rate: a Pi 4 given fp16: 115.2 projected fp16 compute 2x too fast
            add = ", or add fp16 to features if the cores have FP16 arithmetic" if self.arch is Arch.AARCH64 else ""
            raise invalid(f"a peak for fp16 ({fp16:g} GFLOP/s), but features has no fp16: these cores compute fp16 "
                          f"ops in fp32, at the fp32 peak; remove it{add}", "compute.peak_gops.fp16")
        seen = [e.provider for e in self.execution_providers]
        _once(seen, "execution provider", lambda e: e, "execution_providers", name_of=lambda e: show(e.name))
        total = sum(c.count for c in self.cpu)
        if self.threads > total:
            raise invalid(f"expected at most the {total} cores listed under cpu, got {self.threads}", "threads")
        for i, ep in enumerate(self.execution_providers):
            # XNNPACK's own thread pool: ORT parses the string only when the session is made, on the device
            # ('four' or '2.5' failed there, a bundle already shipped); 0 or past the cores is threads' mistake too
            n = ep.options.get("intra_op_num_threads") if ep.provider is ExecutionProvider.XNNPACK else None
            if n is not None and not (re.fullmatch(r"\d{1,6}", n) and 1 <= int(n) <= total):
                detected = (info.context or {}).get("detected")
                cores = "this machine's usable cores" if detected else "the cores listed under cpu"
                raise invalid(f"expected a whole number of threads from 1 to {total} ({cores}), "
                              f"got {show(n) if not re.fullmatch(r'-?[0-9.e+]+', n) else n}",
                              f"execution_providers[{i}].options.intra_op_num_threads")
        if self.qemu_cpu is not None and self.arch is not Arch.AARCH64:
            raise invalid(f"expected no qemu_cpu on a non-aarch64 profile (QEMU here emulates aarch64), "
                          f"got {show(self.qemu_cpu)}", "qemu_cpu")
        if self.npu is None and ExecutionProvider.QNN in seen:
            raise invalid("expected an npu section (soc_model, htp_arch, ...) when QNN is listed", "npu")
        return self

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
        from deploytool.runtime.spec import ProviderSpec, SessionSpec

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
def _not_a_list(what: str, v: Any):
    raise invalid(f"expected a list of {what}, got {kind_of(v)}")


_DOCUMENT_KEYS = ("schema_version", "name", "description", "soc", "arch", "cpu", "features", "memory_gb",
                  "compute", "execution_providers", "threads", "budgets", "sources", "qemu_cpu", "npu")


def parse_profile(data: Any, source: str = "<profile>", *, expect_name: str | None = None,
                  detected: bool = False) -> Profile:
    """Validate a profile mapping (from ``yaml.safe_load``) into a :class:`Profile`
    (:mod:`deploytool.validation`: ``file.yaml: key.path: problem``).

    ``source`` names the file in messages; ``expect_name`` (the file's stem) must equal ``name``. ``detected``:
    the mapping was built from this machine (:mod:`deploytool.profiles.host`): its cores and memory are what was
    detected, not written, and are not checked against the known cores and the memory budget.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a YAML mapping (a device profile), got {kind_of(data)}")
    if expect_name is not None and not _NAME.fullmatch(expect_name):
        # 'Board.yaml' asked for name: Board, which no name may be: the file is what has to change
        fixed = re.sub(r"[^a-z0-9._-]+", "-", expect_name.lower()).strip("-._") or "board"
        raise ConfigError(f"{source}: the file's name {show(expect_name)} is not a profile name (lower-case letters, "
                          f"digits, '.', '_' or '-'), which name: must equal: rename the file, e.g. to "
                          f"'{fixed}{os.path.splitext(source)[1]}'")
    context = {"path": None if source.startswith("<") else source, "detected": detected}
    prof = validate(Profile, without_extensions(data), source, context=context)
    if expect_name is not None and prof.name != expect_name:
        raise ConfigError(f"{source}: name: expected '{expect_name}' (the file's name), got {show(prof.name)}")
    return prof
