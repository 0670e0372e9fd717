"""The machine deploytool runs on: what it is (detected) and how fast ONNX Runtime runs on it (measured).

Detection (:func:`detect_host`, no onnxruntime needed) reads ``/proc/cpuinfo``, ``/proc/meminfo``,
``sched_getaffinity`` and the cgroup CPU quota: vendor, family/model/stepping (x86) or implementer/
part (Arm), the micro-architecture where the (vendor, family, model) or (implementer, part) pair is
in the table below, usable cores, ISA features as deploytool names them (``avx2``, ``avx512``,
``vnni``, ``amx``, ``avx10``; ``neon``, ``dotprod``, ``i8mm``, ``sve``, ``sme``, ``fp16``, ...),
the clock (``cpuinfo_max_freq`` where the kernel exposes it, else ``cpu MHz``) and memory.

Measurement (:func:`measure_host`) runs a short microbenchmark *with ONNX Runtime itself*, in a
clean ``python -m deploytool.runtime.host`` process (torch never loaded), at 1 thread and at the
usable core count:

- GEMM ``[M,K] x [K,N]`` at encoder shapes (K x N = 384x1536 and 1536x384 alternating, 384x384,
  384x192 and 192x384 alternating: a sliced model's narrower weights, where the int8 kernels lose
  efficiency at large M, and BERT-base's 768x3072 and 3072x768, more efficient per weight, at the
  footprints that hold two of them; M = 8, 32, 128, 512), each timed as a chain of distinct weights that together take 4, 16
  or 64 MiB (``GEMM_FOOTPRINTS``; M = 512 at 4 MiB only): a model streams all its weights every run,
  and whether they stay in cache between runs decides a small-M GEMM's time (a lone GEMM keeps its
  weights in cache; a 42 MB fp32 MiniLM does not), in fp32 (MatMul), int8 (``com.microsoft.DynamicQuantizeMatMul``, the op deploytool's int8 and
  ternary passes emit) and fp16 (MatMul on fp16 tensors: on a CPU without fp16 arithmetic ONNX
  Runtime casts to fp32 and back, which is what an fp16 model gets);
- attention's batched MatMuls ``[12,S,32] x [12,32,S]`` at S = 8, 32, 128;
- element-wise (Add, Erf, Softmax, LayerNormalization) at encoder activation sizes;
- memory bandwidth: an Add over two 32 MiB tensors (read 2, write 1);
- per-op overhead: a chain of 64 Adds on 16 floats, time per op (shape-only ops pay it).

Each figure is the 10th percentile of at least 20 runs (robust to other processes on a shared
machine), with the median spread recorded. Results are cached as JSON in a
folder the caller passes (by default :func:`deploytool.settings.default_host_cache`:
``$XDG_CACHE_HOME/deploytool/host``, else ``~/.cache/deploytool/host``) under a key of the CPU, the
usable cores, the onnxruntime version and this microbenchmark's version: measured once per machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploytool.errors import ConfigError, DeployError

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_CACHE_DIR", "MICROBENCH_VERSION", "HostFacts", "HostMeasurement", "detect_host",  # noqa: F822 - module __getattr__
           "host_measurement", "measure_host", "parse_cpuinfo"]

MICROBENCH_VERSION = 7  # 2: p10 per point; 3: GEMMs in chains of distinct weights; 4: every op class in chains;
# 5: GEMM chains at several weight footprints; 6: a third GEMM shape, 384 x 192 (a width-0.5 slice's attention);
# 7: BERT-base's FFN, 768 x 3072, at the footprints that hold two of its weights
GEMM_FOOTPRINTS = (4 << 20, 16 << 20, 64 << 20)  # bytes of distinct weights per GEMM chain (cache-resident .. streamed)
# DEFAULT_CACHE_DIR (``$XDG_CACHE_HOME/deploytool/host``, else ``~/.cache/deploytool/host``) is read when asked for
# (module __getattr__ below), not at import: a program that sets HOME or XDG_CACHE_HOME after importing gets its
# folder; host_measurement's default resolves it on each call.


def __getattr__(name: str) -> Path:
    if name == "DEFAULT_CACHE_DIR":
        from deploytool.settings import default_host_cache

        return default_host_cache()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Default:
    """``host_measurement``'s default ``cache_dir``: :func:`deploytool.settings.default_host_cache` at the call."""

    def __repr__(self) -> str:
        return "DEFAULT_CACHE_DIR"


_DEFAULT_CACHE = _Default()

# (vendor, family, model) -> micro-architecture; models from the vendors' documentation
# (Intel SDM vol. 4 "CPUID signature" tables; AMD family 19h/1Ah PPRs). Unknown pairs stay "unknown".
_X86_UARCH: dict[tuple[str, int, int | None], str] = {
    ("GenuineIntel", 6, 85): "skylake-server/cascade-lake",
    ("GenuineIntel", 6, 106): "ice-lake-server",
    ("GenuineIntel", 6, 143): "sapphire-rapids",
    ("GenuineIntel", 6, 207): "emerald-rapids",
    ("GenuineIntel", 6, 173): "granite-rapids",
    ("GenuineIntel", 6, 175): "sierra-forest",
    ("AuthenticAMD", 23, None): "zen2",
    ("AuthenticAMD", 25, None): "zen3/zen4",
    ("AuthenticAMD", 26, None): "zen5",
}
# Arm "CPU part" under implementer 0x41 (Arm Ltd), from the cores' TRMs (MIDR_EL1.PartNum)
_ARM_PARTS = {0xd03: "cortex-a53", 0xd05: "cortex-a55", 0xd07: "cortex-a57", 0xd08: "cortex-a72",
              0xd0b: "cortex-a76", 0xd0c: "neoverse-n1", 0xd0d: "cortex-a77", 0xd40: "neoverse-v1",
              0xd41: "cortex-a78", 0xd44: "cortex-x1", 0xd46: "cortex-a510", 0xd47: "cortex-a710",
              0xd49: "neoverse-n2", 0xd4f: "neoverse-v2", 0xd80: "cortex-a520", 0xd81: "cortex-a720",
              0xd82: "cortex-x4", 0xd8e: "neoverse-n3"}
_A64FX = (0x46, 0x001)


def _zen_generation(family: int, model: int) -> str:
    if family == 25:  # 19h: Zen 3 (models 0x00-0x0f, 0x20-0x5f), Zen 4 (0x10-0x1f, 0x60-0x7f, 0xa0-0xaf)
        return "zen4" if (0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF) else "zen3"
    return _X86_UARCH.get(("AuthenticAMD", family, None), "unknown")


@dataclasses.dataclass(frozen=True)
class HostFacts:
    """What the running machine is (detected, nothing measured)."""

    arch: str  # x86_64 | aarch64 | ...
    vendor: str
    model_name: str
    family: int | None  # x86 family, or Arm implementer
    model: int | None  # x86 model, or Arm part
    stepping: int | None
    microarchitecture: str
    features: tuple[str, ...]  # deploytool IsaFeature values present
    flags: tuple[str, ...]  # the raw /proc/cpuinfo flags that matter to kernels
    logical_cores: int
    usable_cores: int
    cgroup_cpu_quota: float | None
    max_ghz: float | None
    ghz_source: str
    memory_bytes: int | None

    def key(self, onnxruntime_version: str) -> str:
        """Cache key: the same CPU, cores and onnxruntime give the same measured peaks."""
        text = json.dumps([self.arch, self.vendor, self.model_name, self.family, self.model, self.stepping,
                           self.flags, self.usable_cores, onnxruntime_version, MICROBENCH_VERSION])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["features"], d["flags"] = list(self.features), list(self.flags)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HostFacts:
        d = dict(d)
        d["features"], d["flags"] = tuple(d["features"]), tuple(d["flags"])
        return cls(**d)


_X86_KEEP = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "avx_vnni", "avx_vnni_int8", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16", "avx10")
_ARM_KEEP = ("asimd", "asimdhp", "fphp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme", "sme2")


def parse_cpuinfo(text: str, arch: str) -> dict[str, Any]:
    """Vendor, family/model/stepping (or implementer/part), model name, flags and MHz of the first CPU."""
    first: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if first.get("flags") or first.get("Features"):
                break
            continue
        k, _, v = line.partition(":")
        first.setdefault(k.strip(), v.strip())
    flags = set((first.get("flags") or first.get("Features") or "").split())
    # AVX10 shows up as avx10* flags on kernels that know it
    avx10 = any(f.startswith("avx10") for f in flags)

    def num(key: str, base: int = 10) -> int | None:
        try:
            return int(first[key], base)
        except (KeyError, ValueError):
            return None

    if arch in ("aarch64", "arm64"):
        impl, part = num("CPU implementer", 16), num("CPU part", 16)
        if impl == 0x41 and part in _ARM_PARTS:
            uarch = _ARM_PARTS[part]
        elif (impl, part) == _A64FX:
            uarch = "a64fx"
        else:
            uarch = "unknown"
        feats = []
        if "asimd" in flags:
            feats.append("neon")
        if "asimdhp" in flags or "fphp" in flags:
            feats.append("fp16")
        for f, name in (("asimddp", "dotprod"), ("i8mm", "i8mm"), ("bf16", "bf16"), ("sve", "sve"),
                        ("sve2", "sve2"), ("sme", "sme"), ("sme2", "sme2")):
            if f in flags:
                feats.append(name)
        keep = sorted(f for f in flags if f in _ARM_KEEP)
        vendor = {0x41: "Arm", 0x46: "Fujitsu", 0x48: "HiSilicon", 0x51: "Qualcomm", 0x61: "Apple"}.get(impl, "unknown")
        name = first.get("model name") or (f"{vendor} {uarch}" if uarch != "unknown" else f"Arm CPU part {part}")
        return {"vendor": vendor, "family": impl, "model": part, "stepping": num("CPU variant", 16),
                "model_name": name, "microarchitecture": uarch, "features": feats, "flags": keep, "mhz": None}
    vendor = first.get("vendor_id", "unknown")
    family, model, stepping = num("cpu family"), num("model"), num("stepping")
    if vendor == "AuthenticAMD" and family is not None and model is not None:
        uarch = _zen_generation(family, model)
    else:
        uarch = _X86_UARCH.get((vendor, family or -1, model), "unknown")
    feats = []
    if "avx2" in flags:
        feats.append("avx2")
    if "avx512f" in flags:
        feats.append("avx512")
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        feats.append("vnni")
    if "amx_int8" in flags or "amx_tile" in flags:
        feats.append("amx")
    if avx10:
        feats.append("avx10")
    keep = sorted({f for f in flags if f in _X86_KEEP} | {f for f in flags if f.startswith("avx10")})
    try:
        mhz = float(first["cpu MHz"])
    except (KeyError, ValueError):
        mhz = None
    return {"vendor": vendor, "family": family, "model": model, "stepping": stepping,
            "model_name": first.get("model name", "unknown"), "microarchitecture": uarch, "features": feats,
            "flags": keep, "mhz": mhz}


def _max_ghz(cpuinfo_mhz: float | None) -> tuple[float | None, str]:
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    if cpuinfo_mhz:
        return cpuinfo_mhz / 1e3, "/proc/cpuinfo cpu MHz (nominal as the VM reports it; boost unknown)"
    return None, "unknown"


def read_cpuinfo() -> str:
    """This machine's ``/proc/cpuinfo`` ("" where there is none)."""
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def detect_host(cpuinfo_text: str | None = None, arch: str | None = None) -> HostFacts:
    """The running machine (or, for tests, the given ``/proc/cpuinfo`` text and arch)."""
    from deploytool.runtime.machine import cgroup_cpu_quota, usable_cores

    arch = arch or platform.machine()
    if cpuinfo_text is None:
        cpuinfo_text = read_cpuinfo()
    c = parse_cpuinfo(cpuinfo_text, arch)
    ghz, src = _max_ghz(c["mhz"])
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return HostFacts(arch=arch, vendor=c["vendor"], model_name=c["model_name"], family=c["family"], model=c["model"],
                     stepping=c["stepping"], microarchitecture=c["microarchitecture"], features=tuple(c["features"]),
                     flags=tuple(c["flags"]), logical_cores=os.cpu_count() or 1, usable_cores=usable_cores(),
                     cgroup_cpu_quota=cgroup_cpu_quota(), max_ghz=ghz, ghz_source=src, memory_bytes=mem)


# ------------------------------------------------------------------------------ measurement
@dataclasses.dataclass(frozen=True)
class HostMeasurement:
    """What ONNX Runtime achieves on this host, per thread count (``rates[str(threads)]``).

    ``rates[t]`` holds: ``gemm`` {precision: [{m, k, n, flops, ms, gops, footprint}]}, ``attention``
    [{s, flops, ms, gops}], ``elementwise`` {op: [{elements, bytes, ms}]}, ``bandwidth_gbs``,
    ``op_overhead_us``; ``spread`` is the median (p90-p50)/p50 of the timed figures.
    """

    facts: HostFacts
    onnxruntime: str
    created_utc: str
    rates: Mapping[str, Any]
    load: Mapping[str, Any]
    wall_s: float
    version: int = MICROBENCH_VERSION

    def at(self, threads: int) -> Mapping[str, Any]:
        """The rates at ``threads`` (the nearest measured thread count at or below, else the lowest)."""
        have = sorted(int(t) for t in self.rates)
        below = [t for t in have if t <= threads]
        return self.rates[str(below[-1] if below else have[0])]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "deploytool.host_measurement", "version": self.version, "facts": self.facts.to_dict(),
                "onnxruntime": self.onnxruntime, "created_utc": self.created_utc, "rates": self.rates,
                "load": self.load, "wall_s": self.wall_s}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HostMeasurement:
        """A measurement from its JSON form; ValueError for anything else (another version, or a file of
        another shape: the cache is then measured again, never read into a crash later)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        if d.get("kind") != "deploytool.host_measurement" or d.get("version") != MICROBENCH_VERSION:
            raise ValueError("not a host measurement of this version")
        if not isinstance(d.get("facts"), Mapping) or not isinstance(d.get("load", {}), Mapping):
            raise ValueError("facts and load: expected JSON objects")
        if not all(isinstance(d.get(k), str) for k in ("onnxruntime", "created_utc")):
            raise ValueError("onnxruntime and created_utc: expected strings")
        _check_rates(d.get("rates"))
        return cls(facts=HostFacts.from_dict(d["facts"]), onnxruntime=d["onnxruntime"], created_utc=d["created_utc"],
                   rates=d["rates"], load=d.get("load", {}), wall_s=float(d.get("wall_s", 0)), version=d["version"])


# what each thread count's rates hold (the worker's output): the fields the cost model and the profile read
_ROW_FIELDS = {"gemm": ("m", "k", "n", "flops", "ms", "gops"), "attention": ("s", "flops", "ms", "gops"),
               "elementwise": ("elements", "bytes", "ms")}


def _check_rates(rates: Any) -> None:
    """ValueError unless ``rates`` has the shape :func:`_worker` writes: {threads: {gemm: {precision: [rows]},
    attention: [rows], elementwise: {op: [rows]} (Add among them), bandwidth_gbs, op_overhead_us, ...}}."""
    def number(x: Any) -> bool:
        try:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
        except OverflowError:  # an int too large for a float
            return False

    def rows(value: Any, fields: tuple[str, ...], where: str) -> None:
        if not isinstance(value, list) or not all(
                isinstance(x, Mapping) and all(number(x.get(f)) for f in fields) for x in value):
            raise ValueError(f"{where}: expected a list of {{{', '.join(fields)}}} with numbers")

    if not isinstance(rates, Mapping) or not rates:
        raise ValueError("rates: expected a non-empty JSON object of thread count -> rates")
    for t, r in rates.items():
        where = f"rates.{str(t)[:20]}"
        if not (isinstance(t, str) and t.isdigit() and int(t) >= 1 and isinstance(r, Mapping)):
            raise ValueError(f"{where}: expected a thread count with a JSON object of rates")
        for k in ("bandwidth_gbs", "op_overhead_us"):
            if not number(r.get(k)):
                raise ValueError(f"{where}.{k}: expected a number")
        for k in ("run_overhead_us", "spread"):
            if r.get(k) is not None and not number(r[k]):
                raise ValueError(f"{where}.{k}: expected a number")
        rows(r.get("attention"), _ROW_FIELDS["attention"], f"{where}.attention")
        for part in ("gemm", "elementwise"):
            if not isinstance(r.get(part), Mapping):
                raise ValueError(f"{where}.{part}: expected a JSON object")
            for name, value in r[part].items():
                rows(value, _ROW_FIELDS[part], f"{where}.{part}.{str(name)[:20]}")
        if not r["elementwise"].get("Add"):
            raise ValueError(f"{where}.elementwise.Add: expected the measured Add rows")


def _ort_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return "unknown"


def measure_host(facts: HostFacts | None = None, *, threads: tuple[int, ...] | None = None,
                 timeout_s: float = 600.0, quiet_wait_s: float = 60.0) -> HostMeasurement:
    """Run the microbenchmark in a clean worker process (see the module doc); about 20-60 s."""
    import datetime as _dt
    import time

    from deploytool.runtime.machine import sample_load, wait_for_free_cores

    facts = facts or detect_host()
    ts = threads or tuple(sorted({1, facts.usable_cores}))
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # a short wait for a quiet machine: peaks measured under contention would be cached for good
    before, waited = wait_for_free_cores(max(ts), timeout_s=quiet_wait_s)
    t0 = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-m", "deploytool.runtime.host", json.dumps({"threads": list(ts)})],
                             capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise DeployError(f"host microbenchmark exceeded {timeout_s:g} s") from None
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-3:])
        raise DeployError(f"host microbenchmark failed (exit {out.returncode}): {tail}")
    rates = json.loads(out.stdout.strip().splitlines()[-1])
    after = sample_load(samples=3, window_s=0.2)
    return HostMeasurement(facts=facts, onnxruntime=rates.pop("_onnxruntime"),
                           created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                           rates=rates, load={"before": before.to_dict(), "after": after.to_dict(),
                                                        "waited_for_free_cores_s": round(waited, 1),
                                                        "busy": (before.free_cores is not None
                                                                 and before.free_cores < max(ts))},
                           wall_s=round(time.monotonic() - t0, 2))


def host_measurement(cache_dir: str | os.PathLike | None = _DEFAULT_CACHE, *, measure: bool = True,
                     refresh: bool = False, facts: HostFacts | None = None, threads: tuple[int, ...] | None = None,
                     quiet_wait_s: float = 60.0) -> HostMeasurement | None:
    """This machine's measurement from ``cache_dir``; measured (and cached) when absent and ``measure``.

    ``cache_dir``: default :data:`DEFAULT_CACHE_DIR` as the environment says at this call; None never reads or
    writes a cache. Returns None when absent and ``measure`` is False.
    """
    if cache_dir is _DEFAULT_CACHE:
        from deploytool.settings import default_host_cache

        cache_dir = default_host_cache()
    facts = facts or detect_host()
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"host-{facts.key(_ort_version())}.json"
        if path.is_file() and not refresh:
            try:
                return HostMeasurement.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
                logger.warning("%s: unreadable host measurement (%s); measuring again", path, e)
    if not measure:
        return None
    if path is not None:  # a folder it cannot be was found only after the measurement (20 s to minutes)
        from deploytool.onnx_io import check_folder_path

        check_folder_path(path.parent, "host measurement cache, --host-cache")
    m = measure_host(facts, threads=threads, quiet_wait_s=quiet_wait_s)
    if path is not None:
        from deploytool.onnx_io import atomic_write

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as f:
                json.dump(m.to_dict(), f, indent=2)
        except OSError as e:
            raise ConfigError(f"{path.parent}: cannot write the host measurement cache ({e}); pass another "
                              "cache folder (--host-cache)") from None
    return m


# ---------------------------------------------------------------- the worker (clean process)
def _timeit(sess, feeds, *, min_runs: int = 20, min_s: float = 0.1, max_runs: int = 2000) -> tuple[float, float]:
    """10th-percentile ms per run and (p90-p50)/p50 of one session, after warm-up.

    The 10th percentile, not the median: on a shared machine a run preempted by another process is
    slow, and a short op's low percentiles are the runs nobody interrupted (on a quiet machine they
    sit within a few percent of the median)."""
    import time

    import numpy as np

    out = [o.name for o in sess.get_outputs()]
    for _ in range(3):
        sess.run(out, feeds)
    times: list[float] = []
    t_end = time.perf_counter() + min_s
    while (len(times) < min_runs or time.perf_counter() < t_end) and len(times) < max_runs:
        t0 = time.perf_counter_ns()
        sess.run(out, feeds)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    p10, p50, p90 = np.percentile(times, [10, 50, 90])
    return float(p10), float((p90 - p50) / p50) if p50 > 0 else 0.0


def _session(model, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def gemm_chain_model(prec: str, dims: list[tuple[int, int]], rng):
    """The microbenchmark's GEMM chain: ``x [m, K0]`` through one GEMM per ``(K, N)`` of ``dims``, each with a
    distinct random weight: ``DynamicQuantizeMatMul`` (int8 weights, per-channel scales, as deploytool's int8
    emits) for ``int8``, else ``MatMul`` in fp32 or fp16 (``benchmarks/gemm_rule.py`` times the same chains)."""
    import numpy as np
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    nodes, inits, x = [], [], "x"
    for i, (k, n) in enumerate(dims):
        y = "y" if i == len(dims) - 1 else f"y{i}"
        if prec == "int8":
            inits += [nh.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), f"w{i}"),
                      nh.from_array(np.full(n, 0.01, np.float32), f"s{i}")]  # per-channel scales, as our int8
            nodes.append(h.make_node("DynamicQuantizeMatMul", [x, f"w{i}", f"s{i}", "", ""], [y],
                                     domain="com.microsoft"))
        else:
            w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
            inits.append(nh.from_array(w.astype(np.float16) if prec == "fp16" else w, f"w{i}"))
            nodes.append(h.make_node("MatMul", [x, f"w{i}"], [y]))
        x = y
    dt = T.FLOAT16 if prec == "fp16" else T.FLOAT
    g = h.make_graph(nodes, "bench", [h.make_tensor_value_info("x", dt, ["m", dims[0][0]])],
                     [h.make_tensor_value_info("y", dt, None)], initializer=inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)], ir_version=9)


def _worker(threads: list[int]) -> dict[str, Any]:
    import numpy as np
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    import onnxruntime as ort

    rng = np.random.default_rng(0)
    ms_opset = [h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)]

    def model(nodes, inputs, outputs, inits=()):
        g = h.make_graph(nodes, "bench", inputs, outputs, initializer=list(inits))
        return h.make_model(g, opset_imports=ms_opset, ir_version=9)

    def vi(name, dtype, shape):
        return h.make_tensor_value_info(name, dtype, shape)

    ms = [8, 32, 128, 512]
    chain = 12  # ops per chain of the attention and element-wise classes
    result: dict[str, Any] = {"_onnxruntime": ort.__version__}

    def gemm_chain(prec: str, dims: list[tuple[int, int]]):
        return gemm_chain_model(prec, dims, rng)

    for t in threads:
        spreads: list[float] = []
        one = _session(model([h.make_node("Add", ["x", "c"], ["y"])], [vi("x", T.FLOAT, [16])],
                             [vi("y", T.FLOAT, None)], [nh.from_array(np.ones(16, np.float32), "c")]), t)
        run_ms, _ = _timeit(one, {"x": np.ones(16, np.float32)})
        gemm: dict[str, list[dict[str, Any]]] = {"fp32": [], "int8": [], "fp16": []}
        # GEMMs in chains of distinct weights (an FFN's 384->1536->384 pairs; attention's 384x384) whose
        # weights together take GEMM_FOOTPRINTS bytes: a model streams all its weights every run, and
        # whether they stay in cache between runs (a few MB) or come from memory (tens of MB) decides a
        # small-M GEMM's time more than its FLOPs do. The cost model interpolates by a model's footprint, and
        # between the shapes by a GEMM's weight size at its own M (cost_model.HostRates.gemm_ms).
        for level, footprint in enumerate(GEMM_FOOTPRINTS):
            for shape in ([(384, 1536), (1536, 384)], [(384, 384)], [(384, 192), (192, 384)],
                          [(768, 3072), (3072, 768)]):
                for prec in ("fp32", "int8", "fp16"):
                    per_weight = shape[0][0] * shape[0][1] * (1 if prec == "int8" else 2 if prec == "fp16" else 4)
                    if per_weight * len(shape) > 1.5 * footprint:
                        continue  # a model with weights this big has a larger footprint: measured at the larger levels
                    n_w = max(len(shape), round(footprint / per_weight / len(shape)) * len(shape))
                    dims = (shape * (n_w // len(shape)))[:n_w]
                    sess = _session(gemm_chain(prec, dims), t)
                    for m in (ms if level == 0 else [x for x in ms if x <= 128]):
                        x = rng.standard_normal((m, dims[0][0])).astype(np.float16 if prec == "fp16" else np.float32)
                        total, sp = _timeit(sess, {"x": x}, min_runs=10 if level else 20)
                        spreads.append(sp)
                        per_op = max(total - run_ms, 0.05 * total) / len(dims)  # net of the run's own overhead
                        k, n = dims[0]
                        flops = 2.0 * m * k * n
                        gemm[prec].append({"m": m, "k": k, "n": n, "flops": flops, "ms": round(per_op, 6), "net": True,
                                           "chain": len(dims), "footprint": per_weight * len(dims),
                                           "gops": round(flops / per_op / 1e6, 3)})
                    del sess
        # attention's batched MatMuls and the element-wise ops, each timed as a chain of `chain` ops on
        # the same activation shape: (chain - one run) / chain is the op's time inside a graph, executor
        # overhead included, with the run's own overhead cancelled
        att = []
        a_nodes, prev = [], "q"
        for i in range(chain // 2):
            out = "y" if i == chain // 2 - 1 else f"a{i}"
            a_nodes += [h.make_node("MatMul", [prev, "k"], [f"s{i}"]), h.make_node("MatMul", [f"s{i}", "v"], [out])]
            prev = out
        sess = _session(model(a_nodes, [vi("q", T.FLOAT, [12, "s", 32]), vi("k", T.FLOAT, [12, 32, "s"]),
                                        vi("v", T.FLOAT, [12, "s", 32])], [vi("y", T.FLOAT, None)]), t)
        for s_len in (8, 32, 128):
            feeds = {"q": rng.standard_normal((12, s_len, 32)).astype(np.float32) * 0.1,
                     "k": rng.standard_normal((12, 32, s_len)).astype(np.float32) * 0.1,
                     "v": rng.standard_normal((12, s_len, 32)).astype(np.float32) * 0.1}
            total, sp = _timeit(sess, feeds)
            spreads.append(sp)
            per_op = max(total - run_ms, 0.05 * total) / chain
            flops = 2.0 * 12 * s_len * s_len * 32
            att.append({"s": s_len, "flops": flops, "ms": round(per_op, 6), "net": True,
                        "gops": round(flops / per_op / 1e6, 3)})
        ew: dict[str, list[dict[str, Any]]] = {}
        sizes = [(1, 8, 384), (1, 128, 384), (1, 128, 1536), (12, 128, 128)]

        def ew_node(op: str, x: str, y: str):
            if op == "Add":
                return h.make_node("Add", [x, "c"], [y])
            if op == "LayerNormalization":
                return h.make_node("LayerNormalization", [x, "g", "b"], [y], axis=-1)
            if op == "Softmax":
                return h.make_node("Softmax", [x], [y], axis=-1)
            return h.make_node(op, [x], [y])

        for op in ("Add", "Erf", "Softmax", "LayerNormalization"):
            rows = []
            for shp in sizes:
                inits = [nh.from_array(np.ones(shp[-1], np.float32), "g"), nh.from_array(np.zeros(shp[-1], np.float32), "b"),
                         nh.from_array(np.full(shp[-1], 1e-3, np.float32), "c")]
                nodes = [ew_node(op, "x" if i == 0 else f"t{i - 1}", "y" if i == chain - 1 else f"t{i}")
                         for i in range(chain)]
                used = {x for n in nodes for x in n.input}
                sess = _session(model(nodes, [vi("x", T.FLOAT, ["b"] + list(shp[1:]))], [vi("y", T.FLOAT, None)],
                                      [i for i in inits if i.name in used]), t)
                x = (rng.standard_normal(shp) * 0.5).astype(np.float32)
                total, sp = _timeit(sess, {"x": x})
                spreads.append(sp)
                el = int(np.prod(shp))
                per_op = max(total - run_ms, 0.05 * total) / chain
                # bytes as deploytool.bench.cost_model counts them: every input and output once
                nbytes = el * 4 * 2 + (shp[-1] * 4 * (2 if op == "LayerNormalization" else 1 if op == "Add" else 0))
                rows.append({"elements": el, "bytes": nbytes, "ms": round(per_op, 6), "net": True})
            ew[op] = rows
        big = 8 * 1024 * 1024  # 32 MiB of fp32 per operand
        sess = _session(model([h.make_node("Add", ["a", "b"], ["y"])], [vi("a", T.FLOAT, [big]), vi("b", T.FLOAT, [big])],
                              [vi("y", T.FLOAT, None)]), t)
        a = rng.standard_normal(big).astype(np.float32)
        p50, sp = _timeit(sess, {"a": a, "b": a.copy()}, min_runs=5, min_s=0.3)
        spreads.append(sp)
        bw = 3 * big * 4 / (p50 / 1e3) / 1e9
        n_chain = 64
        nodes = [h.make_node("Add", ["x" if i == 0 else f"t{i - 1}", "c"], [f"t{i}" if i < n_chain - 1 else "y"])
                 for i in range(n_chain)]
        sess = _session(model(nodes, [vi("x", T.FLOAT, [16])], [vi("y", T.FLOAT, None)],
                              [nh.from_array(np.ones(16, np.float32), "c")]), t)
        # graph optimizations could fold a chain of constant adds: keep x a real input, the chain stays
        p50, sp = _timeit(sess, {"x": np.ones(16, np.float32)})
        p1 = run_ms
        overhead_us = max(0.0, (p50 - p1) / (n_chain - 1) * 1e3)
        result[str(t)] = {"gemm": gemm, "attention": att, "elementwise": ew, "bandwidth_gbs": round(bw, 3),
                          "op_overhead_us": round(overhead_us, 4), "run_overhead_us": round(p1 * 1e3, 3),
                          "spread": round(float(np.median(spreads)), 4)}
    return result


if __name__ == "__main__":  # python -m deploytool.runtime.host '{"threads": [1, 2]}'
    if "torch" in sys.modules:
        raise SystemExit("torch is loaded; the microbenchmark needs a clean process")
    req = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {"threads": [1]}
    ts = [int(x) for x in req.get("threads", [1])]
    if not ts or any(x < 1 for x in ts):
        raise SystemExit("threads: positive integers")
    print(json.dumps(_worker(ts)))
