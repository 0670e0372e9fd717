"""Verify that a model computes the same on ARM64 as on the host: ``deploytool verify-arm64``.

For each CPU model (the profile's ``qemu_cpu``, or ``--cpu``; with neither, a bundle's manifest names the
profile), the model runs with ONNX Runtime's
Linux aarch64 wheel under QEMU user-mode (:mod:`deploytool.arm64.emulator`) on seeded synthetic
inputs (:mod:`deploytool.runtime.inputs`), and every output is compared with the host's ONNX Runtime
output on the same inputs:

    pass  <=>  max |arm - host| <= atol + rtol * max |host|  and  cosine(arm, host) >= min_cosine

The tolerance depends on the model's precision (detected from the graph, :func:`model_precision`):

- fp32: ``rtol = atol = 1e-4``. Only the summation order differs between x86 (AVX-512) and Arm
  (NEON/SVE) kernels.
- fp16: ``rtol = 4 * sqrt(K) * 2^-11`` with K the longest reduction (largest MatMul inner dimension,
  or the sequence length). On cores with fp16 arithmetic (Armv8.2 FP16: A76, Neoverse-N1/V1,
  A64FX) MLAS's NEON fp16 GEMM *accumulates in fp16* (unit roundoff 2^-11), so its error grows
  like sqrt(K) rounding steps; the host (x86) computes fp16 models in fp32 through inserted casts.
  Measured: 2e-2 at K=384 for one MatMul of outputs up to ~4 (about 0.5 sqrt(K) u relative); on
  tiny BERTs and MiniLM the whole encoder stays within 2 sqrt(K) u (see tests/arm64/test_arm64.py).
- int8 (dynamic/static quantization) and ternary/binary packed weights that run on int8 kernels
  (``DynamicQuantizeMatMul``, ``MatMulNBits`` with accuracy_level 4): ``rtol = 0.1`` and cosine
  >= 0.98. Activations are quantized at run time, and not alike everywhere: on NEON, dot-product
  and SVE cores ORT's int8 kernels match the host's to 1e-6, but on SME (``-cpu max``) KleidiAI's
  kernels quantize activations per row instead of per tensor. That is *closer* to fp32 (MiniLM,
  seq 16: cosine to the fp32 model 0.997 against the host int8's 0.990) yet 0.26 (5% of the output
  range) away from the host's int8 output; with ``mlas.disable_kleidiai`` the two agree to 1e-6.
  A wrong kernel fails: QEMU 7.2's SME bug gave errors of ~3 on a unit-scale layer.
  On an x86 host without VNNI, ORT's u8 x s8 kernel clips pairs of products to int16
  (:mod:`deploytool.runtime.int8_kernel`), so the host's own int8 outputs are not what an ARM64 core computes;
  there the host reference of a model with int8 GEMM weights is its uint8 twin (the same integers through the
  exact U8U8 kernel; ``ModelCheck.host_reference``). Measured on an AMD EPYC (Zen 3, AVX2) host: the tiny BERT
  of tests/arm64 on NEON, dot-product and SVE cores within 1e-6 of the twin; MiniLM int8 at sequence 16 on
  cortex-a72 within 0.224 of the twin (cosine 0.9916) against 0.284 (0.9887) of the host's own output. Both
  sides compute every integer GEMM exactly; the 0.224 is activation codes: layer 0's GELU output differs by
  7.6e-6 between the aarch64 and x86 fp32 kernels, that flips one uint8 activation code of the FFN output
  projection (0.0093 on its output), and later layers carry it on. The same model with pair-safe codes happened
  to flip none on that batch (1.9e-6 from its twin on cortex-a76).

An ORT-format file (``.ort``) or a phone bundle's folder (``deploytool bundle``: its ``model.ort``) is checked as it
ships (:mod:`deploytool.arm64.ort_file`): the same file runs in the guest and, as the reference, on the host, both with
the session config entries of the bundle's manifest; its inputs are planned, and its precision and K read, from a
skeleton of the file's graph with the host session's inputs and outputs. The host's inserted fp16 casts are counted
by the guest's script run on the host (a file converted on x86 already carries x86's: both sides count them). A file
the host's ONNX Runtime cannot load, and a bundle that another onnxruntime release wrote than the host's or the
emulator's, are refused before QEMU runs.

A failure names the output, the error and the tolerance; a model the aarch64 runtime cannot load is a
failure with ONNX Runtime's message. Timings under emulation mean nothing and are not reported as
such (only the wall time of the check).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deploytool import scratch
from deploytool.arm64.emulator import Emulator, check_emulator_home, ensure_emulator
from deploytool.arm64.ort_file import OrtInput, check_written_by, ort_skeleton, read_ort_input
from deploytool.choices import config, first_repeat, match_name, one_or_many, same_file
from deploytool.errors import ConfigError, InputFileError, UnavailableError, not_a_file
from deploytool.profiles.schema import QEMU_CPUS, Profile
from deploytool.variant import model_precision
from deploytool.units import MAX_SEQ_LEN

logger = logging.getLogger(__name__)

__all__ = ["ModelCheck", "OutputCheck", "Tolerance", "VerifyConfig", "VerifyResult", "model_precision",
           "tolerance_for", "verify_arm64"]

GUEST = Path(__file__).with_name("guest.py")
FP16_UNIT_ROUNDOFF = 2.0 ** -11
FP16_SQRT_K_FACTOR = 4.0
INT8_RTOL = 0.1
INT8_MIN_COSINE = 0.98



@dataclasses.dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    why: str
    min_cosine: float = 0.0  # cosine similarity of the flattened outputs must reach this too

    def limit(self, scale: float) -> float:
        return self.atol + self.rtol * scale


def tolerance_for(precision: str, k: int) -> Tolerance:
    """The tolerance of :func:`verify_arm64` for a model of this precision (see the module doc)."""
    if precision == "fp32":
        return Tolerance(1e-4, 1e-4, "fp32: x86 and Arm kernels differ only in summation order", 0.99999)
    if precision == "fp16":
        k = max(k, 1)
        rtol = FP16_SQRT_K_FACTOR * math.sqrt(k) * FP16_UNIT_ROUNDOFF
        return Tolerance(1e-3, rtol, f"fp16: Arm fp16 GEMM accumulates in fp16, rtol = {FP16_SQRT_K_FACTOR:g}*sqrt(K={k})"
                                     f"*2^-11 = {rtol:.3g}", 0.999)
    if precision in ("int8", "ternary", "binary"):
        return Tolerance(1e-3, INT8_RTOL, f"{precision}: int8 kernels quantize activations at run time, and not "
                                     "alike on every core (KleidiAI's SME kernels quantize per row, x86 per tensor)",
                         INT8_MIN_COSINE)
    raise ConfigError(f"precision: expected fp32, fp16, int8, ternary or binary, got {precision!r}")


def _cpu_model(cpu: Any) -> str | None:
    """``cpu`` (``model[,prop=on|off...]``) with the model in its own spelling (any case, as a profile's qemu_cpu
    takes it: choices.match_name), or None when it names no model we know or a property is malformed."""
    if not isinstance(cpu, str):
        return None
    base, sep, props = cpu.partition(",")
    name = match_name(base, QEMU_CPUS)
    if name is None or not all(p.count("=") == 1 for p in props.split(",") if props):
        return None
    return name + sep + props


@config
@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    """What to verify. ``cpus`` defaults to the profile's ``qemu_cpu``; a profile also gives the EP
    preference list (the aarch64 wheel has the CPU EP only, so others fall back, recorded). With neither, the
    profile the bundles' manifests name (loaded from ``profiles_dirs``, then the built-in ones; ``profile_from``
    the bundle folder)."""

    models: tuple[Path, ...]  # .onnx files, .ort files, bundle folders (their model.ort)
    profile: Profile | None = dataclasses.field(default=None, hash=False)  # holds mappings: compared, not hashed
    cpus: tuple[str, ...] = ()
    seq_len: int = 16
    batch: int = 1
    seed: int = 0
    emulator_home: Path | None = None
    setup: bool = True  # run scripts/setup_arm64.sh when the emulator is missing
    jobs: int = 2  # emulated processes at once
    timeout_s: float = 900.0
    # what each model is run from, resolved once here: the file (a bundle folder's model.ort), and for an
    # ORT-format one what the check needs of it (None for an .onnx)
    files: tuple[Path, ...] = dataclasses.field(init=False, default=(), repr=False)
    ort_inputs: tuple[OrtInput | None, ...] = dataclasses.field(init=False, default=(), repr=False, compare=False)
    # the profiles folders searched (before the built-in one) for the profile a bundle's manifest names
    profiles_dirs: tuple[Path, ...] = ()
    # where the profile came from when neither it nor cpus was given: the bundle folder whose manifest names it
    profile_from: Path | None = dataclasses.field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        models = (self.models,) if isinstance(self.models, (str, os.PathLike)) else tuple(self.models)
        if not models:
            raise ConfigError("models: give at least one ONNX model, .ort file or bundle folder")
        models = tuple(Path(m) for m in models)
        from deploytool.onnx_io import check_external_data

        files, orts = [], []
        for m in models:
            o = read_ort_input(m)  # a bundle folder, an .ort file; None: not ORT format
            if o is None:
                if not m.is_file():
                    raise not_a_file(m, "ONNX model, .ort file or bundle folder")
                check_external_data(m)
            files.append(o.path if o is not None else m)
            orts.append(o)
        # run, and shown, once per file (as bench): a bundle and its model.ort are one file, named as given
        rep = first_repeat(zip(files, models), key=lambda fm: same_file(fm[0]))
        if rep is not None:
            _, (_, given), (_, earlier) = rep
            raise ConfigError(f"models: {given} given twice" + (f" (as {earlier})" if str(earlier) != str(given) else ""))
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "files", tuple(files))
        object.__setattr__(self, "ort_inputs", tuple(orts))
        if self.emulator_home is not None:
            check_emulator_home(self.emulator_home, "emulator_home")
        cpus = tuple(one_or_many(self.cpus))  # cpus="max" is one CPU model, not 'm', 'a', 'x'
        if not cpus:
            if self.profile is None:  # a bundle names the profile it was made for: that one
                object.__setattr__(self, "profile", self._bundles_profile())
            if self.profile is None:
                raise ConfigError("give a device profile (--profile) or QEMU CPU models (--cpu)")
            if self.profile.qemu_cpu is None:
                raise ConfigError(f"profile '{self.profile.name}' has no qemu_cpu ({self.profile.arch.value}); "
                                  f"verify-arm64 emulates aarch64 profiles only (or give --cpu)")
            cpus = (self.profile.qemu_cpu,)
        models_of = [_cpu_model(c) for c in cpus]
        for c, m in zip(cpus, models_of):
            if m is None:
                raise ConfigError(f"cpu: unknown QEMU aarch64 CPU model {c!r}; expected one of "
                                  f"{', '.join(sorted(QEMU_CPUS))} (optionally with ,prop=on|off)")
        object.__setattr__(self, "cpus", tuple(dict.fromkeys(models_of)))
        for name, lo, hi in (("seq_len", 1, MAX_SEQ_LEN), ("batch", 1, 64), ("jobs", 1, 16), ("seed", 0, 2**32 - 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{name}: must be an integer in [{lo}, {hi}], got {v!r}")
        if not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise ConfigError(f"timeout_s: must be a positive number of seconds, got {self.timeout_s!r}")


    def _bundles_profile(self) -> Profile | None:
        """The profile the bundles given name in their manifests (``profile.name``), loaded; None when no bundle
        names one. Bundles made for different profiles, or a profile not found: ConfigError."""
        from deploytool.arm64.ort_file import BUNDLE_MANIFEST

        named: dict[str, Path] = {}
        for o in self.ort_inputs:
            if o is None or o.bundle is None or not (o.bundle / BUNDLE_MANIFEST).is_file():
                continue
            try:  # read_ort_input read this manifest already (a damaged one was refused there)
                prof = json.loads((o.bundle / BUNDLE_MANIFEST).read_text(encoding="utf-8")).get("profile")
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            name = prof.get("name") if isinstance(prof, dict) else None
            if isinstance(name, str) and name.strip():
                named.setdefault(name, o.bundle)
        if not named:
            return None
        if len(named) > 1:
            made = ", ".join(f"{b} for '{n}'" for n, b in named.items())
            raise ConfigError(f"the bundles were made for different profiles ({made}); give a device profile "
                              "(--profile) or QEMU CPU models (--cpu)")
        (name, bundle), = named.items()
        from deploytool.profiles import load_profile

        try:
            profile = load_profile(name, self.profiles_dirs)
        except ConfigError as e:
            raise ConfigError(f"{bundle / BUNDLE_MANIFEST}: made for profile '{name}', which cannot be loaded here "
                              f"({e}); give a device profile (--profile) or QEMU CPU models (--cpu)") from None
        object.__setattr__(self, "profile_from", bundle)
        return profile


@dataclasses.dataclass
class OutputCheck:
    name: str
    max_abs: float
    scale: float  # max |host|
    limit: float  # atol + rtol * scale
    cosine: float
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ModelCheck:
    model: str
    cpu: str
    precision: str
    tolerance: Tolerance
    ok: bool
    outputs: list[OutputCheck] = dataclasses.field(default_factory=list)
    providers: list[str] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    hwcaps: list[str] = dataclasses.field(default_factory=list)
    inserted_casts: int | None = None  # InsertedPrecisionFreeCast nodes ORT added on this CPU
    host_inserted_casts: int | None = None  # ... and on the host (x86 runs fp16 through fp32)
    error: str | None = None
    # what the host ran as the reference: "model", or "uint8 twin" (the same integers through the exact U8U8
    # kernel) where the host's u8 x s8 kernel saturates (x86 without VNNI) and the model has int8 GEMM weights
    host_reference: str = "model"
    format: str = "onnx"  # or "ort": an ORT-format file, run as it is (bundle's model.ort)
    bundle: str | None = None  # the bundle folder whose model.ort this is
    file_bytes: int | None = None  # size and SHA-256 of the .ort checked: the file shipped
    file_sha256: str | None = None

    @property
    def shown(self) -> str:
        """The model as the table names it: a bundle's file with its folder (every bundle's is model.ort)."""
        p = Path(self.model)
        return f"{p.parent.name}/{p.name}" if self.bundle or (self.format == "ort" and p.name == "model.ort") else p.name

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=float("nan"))

    @property
    def fp16_native(self) -> bool | None:
        """For fp16 models: whether ORT ran some of the model in fp16 on this CPU model (fewer inserted
        fp32 casts than on the host, which has no fp16 GEMM); None for other precisions."""
        if self.precision != "fp16" or self.inserted_casts is None or self.host_inserted_casts is None:
            return None
        return self.inserted_casts < self.host_inserted_casts

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tolerance"] = dataclasses.asdict(self.tolerance)
        d["skipped"] = [{"provider": n, "reason": r} for n, r in self.skipped]
        d["fp16_native"] = self.fp16_native
        return d


@dataclasses.dataclass
class VerifyResult:
    checks: list[ModelCheck]
    cpus: tuple[str, ...]
    profile: str | None
    onnxruntime: str | None
    wall_s: float
    profile_from: str | None = None  # the bundle folder whose manifest named the profile (none given)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "deploytool.verify-arm64", "ok": self.ok, "profile": self.profile,
                "profile_from": self.profile_from, "cpus": list(self.cpus),
                "onnxruntime_aarch64": self.onnxruntime, "wall_s": round(self.wall_s, 2),
                "checks": [c.to_dict() for c in self.checks]}

    def table(self) -> str:
        rows = [("cpu", "model", "precision", "EP ran", "fp16", "max|arm-host|", "limit", "cosine", "result")]
        for c in self.checks:
            fp16 = "-" if c.fp16_native is None else \
                f"{'native' if c.fp16_native else 'fp32'} ({c.inserted_casts}/{c.host_inserted_casts} casts)"
            worst = max(c.outputs, key=lambda o: o.max_abs / max(o.limit, 1e-30), default=None)
            rows.append((c.cpu, c.shown, c.precision, (c.providers or ["-"])[0].replace("ExecutionProvider", ""),
                         fp16, f"{worst.max_abs:.3g}" if worst else "-", f"{worst.limit:.3g}" if worst else "-",
                         f"{worst.cosine:.6f}" if worst else "-",
                         "OK" if c.ok else f"FAIL{': ' + c.error if c.error else ''}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        head = [f"profile {self.profile}: the one bundle {self.profile_from} was made for (its manifest.json; "
                "--profile or --cpu to choose)"] if self.profile_from else []
        return "\n".join(head + ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows])


def _compare(host: Mapping[str, np.ndarray], arm: Mapping[str, np.ndarray], tol: Tolerance) -> list[OutputCheck]:
    out = []
    for name, h in host.items():
        a = arm.get(name)
        h64 = np.asarray(h, dtype=np.float64)
        if a is None or np.shape(a) != h64.shape:
            out.append(OutputCheck(name, float("inf"), float(np.abs(h64).max(initial=0)), 0.0, float("nan"), False))
            continue
        a64 = np.asarray(a, dtype=np.float64)
        if not np.all(np.isfinite(a64)):
            out.append(OutputCheck(name, float("inf"), float(np.abs(h64).max(initial=0)), 0.0, float("nan"), False))
            continue
        diff = float(np.abs(a64 - h64).max(initial=0))
        scale = float(np.abs(h64).max(initial=0))
        denom = float(np.linalg.norm(a64) * np.linalg.norm(h64))
        cos = float((a64.ravel() @ h64.ravel()) / denom) if denom > 0 else 1.0
        limit = tol.limit(scale)
        out.append(OutputCheck(name, diff, scale, limit, cos, diff <= limit and cos >= tol.min_cosine))
    return out


def _host_outputs(model: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from deploytool.runtime.infer import run_onnx

    return run_onnx(model, feeds, threads=1)


def _exact_host_outputs(model: Path, feeds: dict[str, np.ndarray], tmp: Path, i: int
                        ) -> tuple[dict[str, np.ndarray], str]:
    """The host's outputs of ``model``, from its uint8 twin where this host's u8 x s8 kernel saturates (x86
    without VNNI adds int16 pairs with clipping; ARM64 and VNNI x86 compute the product exactly, so the
    model's own host outputs would measure the host, not the ARM64 device)."""
    from deploytool import onnx_io
    from deploytool.runtime.int8_kernel import exact_twin, u8s8_exact

    if u8s8_exact() is False:
        twin = exact_twin(model)
        if twin is not None:
            path = onnx_io.save_proto(twin, tmp / f"twin{i}.onnx")
            del twin
            return _host_outputs(path, feeds), "uint8 twin"
    return _host_outputs(model, feeds), "model"


def _ort_precision(skeleton) -> tuple[str, int]:
    """:func:`model_precision` of an .ort's skeleton, K also found through a Cast in front of a MatMul's weight
    (an fp16 file converted on x86 carries ORT's fp32 casts there)."""
    precision, k = model_precision(skeleton)
    g = skeleton.graph
    inits = {t.name: t for t in g.initializer}
    cast_of = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Cast" and n.input and n.output}
    for n in g.node:
        if n.op_type in ("MatMul", "FusedMatMul", "Gemm") and len(n.input) > 1:
            t = inits.get(cast_of.get(n.input[1], n.input[1]))
            if t is not None and len(t.dims) == 2:
                trans_b = any(a.name == "transB" and a.i for a in n.attribute)
                k = max(k, int(t.dims[1] if trans_b else t.dims[0]))
    return precision, k


def _host_ort_version() -> str | None:
    """This host's onnxruntime release, from its installed package's metadata (no import of onnxruntime here)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return None


def _ort_signature(o: OrtInput) -> dict[str, Any]:
    """The .ort's inputs and outputs as this host's ONNX Runtime session sees them; a file it cannot load (its
    FlatBuffers verifier: truncated or damaged; a format version it does not know): InputFileError in one line."""
    from deploytool.runtime.mobile import signature

    try:
        return signature(o.path)
    except Exception as e:  # onnxruntime's own exception types
        msg = " ".join(str(e).split())
        if "ORT format model version" in msg:
            why = (f"its ORT format version {o.format_version} is not one ONNX Runtime {_host_ort_version()} loads "
                   "(a newer ONNX Runtime wrote it): convert it again with this onnxruntime")
        elif "verification failed" in msg:
            why = "a truncated or damaged ORT-format file (ONNX Runtime's FlatBuffers verifier rejects it)"
        else:
            why = f"ONNX Runtime cannot load it ({msg[msg.find(']') + 1:].strip()[:240] if ']' in msg else msg[:240]})"
        raise InputFileError(f"{o.path}: {why}") from None


def _host_ort_outputs(o: OrtInput, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from deploytool.runtime.mobile import run_ort

    return run_ort(o.path, feeds, config_entries=dict(o.config_entries), threads=1)


def _host_ort_casts(o: OrtInput, feeds_path: Path, tmp: Path, i: int) -> int | None:
    """The ``InsertedPrecisionFreeCast`` nodes in this host's session of the .ort, counted as the guest counts them
    on ARM64: :mod:`guest` (numpy and onnxruntime only) run by this Python. A file converted on x86 may already
    carry such casts (ORT saves the graph it partitioned): then both sides count them."""
    import subprocess
    import sys

    job = tmp / f"hostjob{i}.json"
    job.write_text(json.dumps({"threads": 1, "models": [
        {"model": str(o.path.resolve()), "feeds": str(feeds_path), "out": str(tmp / f"hostout{i}.npz"),
         "optimized_path": str(tmp / f"hostopt{i}.onnx"), "config_entries": dict(o.config_entries)}]}))
    proc = subprocess.run([sys.executable, str(GUEST), str(job)], capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        logger.info("counting the host's inserted casts of %s failed: %s", o.path, proc.stderr.strip()[-300:])
        return None
    return json.loads(lines[-1])["models"][0].get("inserted_casts")


def _host_casts(model: Path) -> list[str]:
    from deploytool.runtime.session import inserted_precision_casts

    return inserted_precision_casts(model)


def _run_cpu(emu: Emulator, cpu: str, job_path: Path, timeout_s: float) -> dict[str, Any]:
    proc = emu.run_python(cpu, [str(GUEST), str(job_path)], timeout_s=timeout_s)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Unknown CPU vendor" not in ln]
        why = err[-1].strip()[:300] if err else f"exit code {proc.returncode}"
        raise UnavailableError(f"ARM64 emulator cannot start on -cpu {cpu}: {why}")
    return json.loads(lines[-1])


def verify_arm64(config: VerifyConfig, *, on_setup: Callable[[], None] | None = None) -> VerifyResult:
    """Run ``config.models`` under the emulator on every CPU model and compare with the host (an .ort file or a
    bundle's model.ort: the same file on both sides, with the bundle's session config entries). ``on_setup``: called
    when the emulator is about to be set up (after the models were checked), as :func:`ensure_emulator` says."""
    from deploytool.choices import require_callback, require_config

    require_config(config, VerifyConfig, "verify_arm64")  # a path or a dict: ConfigError, not AttributeError
    require_callback(on_setup, "on_setup", "of no arguments")
    import onnx_ir as ir

    from deploytool.inspection import check_position_table
    from deploytool.onnx_io import load_proto
    from deploytool.runtime.inputs import make_feeds, plan_inputs_proto

    t0 = time.perf_counter()
    plans, ort_precisions = [], {}
    host_ort = _host_ort_version()
    for i, (m, o) in enumerate(zip(config.files, config.ort_inputs)):
        # before QEMU starts: a length the model cannot take is one line, not ORT's broadcast error
        if o is None:
            proto = load_proto(m, load_external_data=False)
        else:  # the .ort as this host's ONNX Runtime loads it (a damaged file is refused here), read as a skeleton
            check_written_by(o, host_ort or "", "on this host")
            proto = ort_skeleton(m, _ort_signature(o))
            ort_precisions[i] = _ort_precision(proto)
        plan = plan_inputs_proto(proto, m)
        plan.check(config.batch, (config.seq_len,), str(m))  # fixed input shapes, as bench checks them
        check_position_table(ir.serde.deserialize_model(proto), config.seq_len, str(m))
        plans.append(plan)
        del proto
    emu = ensure_emulator(config.emulator_home, setup=config.setup, on_setup=on_setup)
    for o in config.ort_inputs:  # a bundle made for another release than the emulator's: refused before it runs
        if o is not None:
            check_written_by(o, emu.onnxruntime_version or "", "in the ARM64 emulator")
    profile = config.profile
    providers = profile.ep_names() if profile else ["CPUExecutionProvider"]
    provider_options = [profile.provider_options(ep) for ep in profile.execution_providers] if profile else [{}]
    with scratch.temporary_directory("deploytool-arm64-") as tmp_s:
        tmp = Path(tmp_s)
        prepared = []
        for i, (m, o) in enumerate(zip(config.files, config.ort_inputs)):
            precision, k = ort_precisions[i] if o is not None else model_precision(m)
            feeds = make_feeds(plans[i], config.batch, config.seq_len, config.seed)
            if o is not None:  # the same .ort on this host, with the session entries the app sets
                host, host_ref = _host_ort_outputs(o, feeds), "model"
            elif precision in ("fp32", "fp16"):
                host, host_ref = _host_outputs(m, feeds), "model"
            else:
                host, host_ref = _exact_host_outputs(m, feeds, tmp, i)
            feeds_path = tmp / f"in{i}.npz"
            np.savez(feeds_path, **feeds)
            tol = tolerance_for(precision, max(k, config.seq_len))
            host_casts = None
            if precision == "fp16":  # an .ort: counted by the guest's own script run on this host (see _host_ort_casts)
                host_casts = len(_host_casts(m)) if o is None else _host_ort_casts(o, feeds_path, tmp, i)
            prepared.append((m, precision, tol, feeds_path, host, host_casts, host_ref))

        def job_for(ci: int) -> Path:
            job = {"threads": 1, "models": [
                {"model": str(m.resolve()), "feeds": str(fp), "out": str(tmp / f"out{ci}_{i}.npz"),
                 "optimized_path": str(tmp / f"opt{ci}_{i}.onnx"), "providers": providers,
                 "provider_options": provider_options,
                 **({"config_entries": dict(o.config_entries)} if o is not None else {})}
                for i, ((m, _, _, fp, _, _, _), o) in enumerate(zip(prepared, config.ort_inputs))]}
            p = tmp / f"job{ci}.json"
            p.write_text(json.dumps(job))
            return p

        jobs = {cpu: job_for(ci) for ci, cpu in enumerate(config.cpus)}
        summaries: dict[str, dict[str, Any]] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(config.jobs, len(jobs))) as pool:
            futs = {pool.submit(_run_cpu, emu, cpu, jp, config.timeout_s): cpu for cpu, jp in jobs.items()}
            for fut in concurrent.futures.as_completed(futs):
                summaries[futs[fut]] = fut.result()

        checks: list[ModelCheck] = []
        ort_version = None
        for ci, cpu in enumerate(config.cpus):
            s = summaries[cpu]
            ort_version = s.get("onnxruntime")
            for i, (m, precision, tol, _, host, host_casts, host_ref) in enumerate(prepared):
                r = s["models"][i]
                check = ModelCheck(model=str(m), cpu=cpu, precision=precision, tolerance=tol, ok=False,
                                   providers=list(r.get("providers") or []),
                                   skipped=[tuple(x) for x in r.get("skipped") or []], hwcaps=list(s.get("hwcaps", [])),
                                   inserted_casts=r.get("inserted_casts"), host_inserted_casts=host_casts,
                                   error=r.get("error"), host_reference=host_ref)
                o = config.ort_inputs[i]
                if o is not None:
                    check.format, check.file_bytes, check.file_sha256 = "ort", o.bytes, o.sha256
                    check.bundle = str(o.bundle) if o.bundle is not None else None
                if check.error is None:
                    with np.load(tmp / f"out{ci}_{i}.npz") as z:
                        arm = {k: z[k] for k in z.files}
                    check.outputs = _compare(host, arm, tol)
                    check.ok = all(o.ok for o in check.outputs)
                checks.append(check)
    return VerifyResult(checks=checks, cpus=config.cpus, profile=profile.name if profile else None,
                        onnxruntime=ort_version, wall_s=time.perf_counter() - t0,
                        profile_from=str(config.profile_from) if config.profile_from is not None else None)
