"""``fit``: the ONE best sub-network and precision for a device profile's budget.

Candidates are every (width, depth, precision) of the grid: the model is sliced DynaBERT-style
(:mod:`deploytool.passes.slice_subnetwork`; reorder heads/neurons by importance first so that the
first heads are the most important) and then converted: fp32 (as is), fp16
(:mod:`deploytool.passes.fp16`), int8 (dynamic, per channel, :mod:`deploytool.passes.quantize_int8`)
or ternary/binary (:mod:`deploytool.passes.pack_weights`, post-training: loses accuracy without QAT).
Ternary/binary candidates are packed for the runtime measured fastest for the device and sequence
length (:func:`pack_runtime`): int8 kernels (``speed``) everywhere but one token on x86, where 2-bit
``MatMulNBits`` (``memory``) won; each candidate records the runtime and why. int8 candidates for an x86
device without VNNI (the host's ONNX Runtime probed, another profile's features read) get pair-safe weight
codes (:func:`int8_codes`): the default codes' pairs of products clip in int16 there, pair-safe ones cannot,
at the same speed (``benchmarks/results/int8_codes.json``).

Requested widths (or depths) that keep the same heads and neurons (or the same layers) of this model -- on 6
layers, depths 0.9 and 0.85 both keep layers 0-4 -- are one candidate, built and timed once under the larger
fraction's name; ``why`` and ``collapsed`` in the ``.fit.json`` say which (the slice pass's own resolution,
:func:`deploytool.passes.variants.slice_shape`, not a second statement of its rounding rule).

Each candidate is MEASURED on the host (``deploytool.bench``: clean worker process, runs in turns,
peak memory) and, unless the profile is the host, PROJECTED to the device with the cost model
(:mod:`deploytool.bench.cost_model`, as ``deploytool report`` projects: the graph ONNX Runtime runs, each op
class at the fraction of the device's peak that it reached of this host's in the host microbenchmark; the
roofline only where this machine has no host measurement; a projection has no run-to-run spread, so it is
compared with the p90 budget as it is, and labelled ``projected``). A candidate fits when

- its device p90 latency at ``seq_len`` <= the budget (``--budget-ms``, else the profile's
  ``budgets.p90_latency_ms`` for that length),
- its size <= ``budgets.model_size_mb`` (the file; on a profile with a mobile EP, the ``model.ort`` that
  ``deploytool bundle`` ships, converted here: ONNX Runtime's converter folds a packed file's speed/densest
  weights into int8, so a packed candidate whose .ort is over the budget is rebuilt with ``--runtime memory``,
  whose MatMulNBits weights stay 2 bits there) and its peak memory (measured on the host) <=
  ``budgets.peak_memory_mb``, where the profile sets them,
- its accuracy >= ``accuracy_floor`` (only with measured accuracies).

Among the fitting candidates the one with the largest accuracy wins, then the lowest latency --
except that a difference that is not significant is a tie: where the accuracies carry per-example
predictions (``deploytool eval -o`` records), candidates are compared with the top one by the exact
McNemar test, every one with p >= 0.05 ties with it, and of the tied ones the fastest (then the
smallest) is picked; ``why`` says which tied and the test (:func:`deploytool.accuracy.pick`). Speeds that
cannot be told apart are a tie too, and the smallest of those wins: on the host, runs the exact sign test of
the paired runs does not separate; on a projected device, projections within the cost model's resolution
(:class:`~deploytool.bench.cost_model.Resolution`: the spread of its errors on the candidates of the two
precisions measured on this host, doubled for another device).
Accuracy comes from ``accuracies`` (candidate name -> accuracy in percent or an
:class:`~deploytool.accuracy.AccuracyRecord`, e.g. from ``deploytool eval`` of each candidate; names
are the variant labels every tool uses, ``w0.75-d1-int8``, and a file made by deploytool's passes
carries its own in its metadata, see :mod:`deploytool.variant`). Without it, fit ranks by an accuracy PROXY and
says so: the kept-parameter fraction (each candidate's parameters over the input's, the model every candidate is
cut from; never over another candidate's), then precision (fp32 = fp16 > int8 > ternary > binary), which
orders sub-networks the way DynaBERT's accuracy curves do but is not an accuracy. Where a fitting candidate has no
proxy (its parameters, or the input's, could not be counted) the proxy ranks nothing: precision, then latency
decide, and ``why`` says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploytool import scratch
from deploytool.accuracy import AccuracyRecord, pick, same_accuracy
from deploytool.choices import OWN_CHECK, FrozenMap, as_path, config, show
from deploytool.errors import ConfigError, DeployError, OutputPathError, PassRefusedError, not_a_file
from deploytool.profiles import Profile
from deploytool.units import MAX_SEQ_LEN, MB, fmt_mb
from deploytool.variant import PRECISION_RANK, PRECISIONS

logger = logging.getLogger(__name__)

__all__ = ["Candidate", "FitConfig", "FitResult", "PRECISIONS", "fit", "int8_codes", "pack_runtime"]



def _fractions(name: str, values: Any) -> tuple[float, ...]:
    import numbers

    if isinstance(values, numbers.Real) and not isinstance(values, bool):  # one value (a numpy scalar too)
        values = (float(values),)
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, set, frozenset)):
        raise ConfigError(f"{name}: expected numbers in (0, 1], got {show(values)}")
    vals = tuple(float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else v for v in values)
    if not vals:
        raise ConfigError(f"{name}: give at least one value in (0, 1]")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= 1:
            raise ConfigError(f"{name}: {v!r} out of range; expected numbers in (0, 1]")
    return tuple(sorted(set(float(v) for v in vals), reverse=True))


@config
@dataclasses.dataclass(frozen=True)
class FitConfig:
    model: Path
    # a Profile, or its name or file as the CLI takes it; out of the hash (a profile holds mappings), still compared
    profile: Profile = dataclasses.field(metadata=OWN_CHECK, hash=False)
    output: Path
    budget_ms: float | None = None  # default: the profile's p90 budget at seq_len
    accuracy_floor: float | None = None  # percent; (0, 1] is refused as ambiguous (0.95 % or 95 %?)
    seq_len: int | None = None  # default: 128 if the profile budgets it, else its longest budgeted length
    # one number for a list of one, refused in its own words (numbers in (0, 1])
    widths: tuple[float, ...] = dataclasses.field(default=(1.0, 0.75, 0.5), metadata=OWN_CHECK)
    depths: tuple[float, ...] = dataclasses.field(default=(1.0, 0.5), metadata=OWN_CHECK)
    precisions: tuple[str, ...] = dataclasses.field(default=("fp32", "int8"), metadata=OWN_CHECK)
    accuracies: Mapping[str, float | AccuracyRecord] | None = None  # candidate name -> accuracy (percent)
    runs: int = 20
    warmup: int = 3
    threads: int | None = None  # host threads for the measurement (default: min(profile, host cores))
    workdir: Path | None = None  # keep the candidates here (default: a temporary folder)

    def __post_init__(self) -> None:
        for name in ("model", "output") + (("workdir",) if self.workdir is not None else ()):
            object.__setattr__(self, name, as_path(getattr(self, name), name))
        if isinstance(self.profile, (str, os.PathLike)):  # a profile's name or file, as the CLI takes it
            from deploytool.profiles import load_profile

            object.__setattr__(self, "profile", load_profile(self.profile))
        if not isinstance(self.profile, Profile):
            raise ConfigError(f"profile: expected a device profile (or its name), got {type(self.profile).__name__}")
        object.__setattr__(self, "model", Path(self.model))
        object.__setattr__(self, "output", Path(self.output))
        if not self.model.is_file():
            raise not_a_file(self.model, "ONNX model file")
        from deploytool.onnx_io import check_external_data

        check_external_data(self.model)
        if self.workdir is not None:
            w = Path(self.workdir)
            object.__setattr__(self, "workdir", w)
            out = self.output.resolve()
            if out == w.resolve() or out in w.resolve().parents:  # the folder was made, filled, then the output
                # could not be written (it found a folder where its file goes), after every candidate's work
                raise OutputPathError(f"workdir: {w} is the output {self.output} or a folder inside it: the "
                                      "candidates' folder and the chosen model's file cannot be one path; keep the "
                                      "candidates elsewhere")
            # the field's name leads the message: the CLI puts the option the user typed in its place
            near = next(p for p in (w, *w.parents) if p.exists())  # the candidates are written under it
            if not near.is_dir():
                what = "is a file, not a folder" if near.is_file() else "is not a folder (a device, FIFO or socket)"
                raise OutputPathError(f"workdir: {w} {what}" if near == w else
                                      f"workdir: {w} cannot be a folder: {near} {what}")
        if self.budget_ms is not None:
            b = self.budget_ms
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0:
                raise ConfigError(f"budget_ms: must be a positive number of milliseconds, got {b!r}")
        if self.accuracy_floor is not None:
            a = self.accuracy_floor
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 <= a <= 100:
                raise ConfigError(f"accuracy_floor: must be a number in [0, 100] (percent), got {a!r}")
            if 0 < a <= 1:  # as an accuracy file without a unit: never guessed from its size
                raise ConfigError(f"accuracy_floor: {a:g} is ambiguous, {a:g} % or {100 * a:g} %? "
                                  f"the floor is in percent: give {100 * a:g} for {100 * a:g} %")
            if not self.accuracies:
                raise ConfigError("accuracy_floor: needs measured accuracies of the candidates (--accuracy FILE); "
                                  "without them fit ranks by the kept-parameter proxy, which is not an accuracy")
        if self.accuracies is not None and not isinstance(self.accuracies, Mapping):
            raise ConfigError(f"accuracies: expected a mapping {{candidate name: accuracy}}, got "
                              f"{type(self.accuracies).__name__}")
        if self.accuracies:
            recs = {}
            for k, v in self.accuracies.items():
                if not isinstance(v, AccuracyRecord):
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                        raise ConfigError(f"accuracies: {k!r} must be a non-negative number (percent), got {v!r}")
                    v = AccuracyRecord(float(v))
                recs[str(k)] = v
            object.__setattr__(self, "accuracies", FrozenMap(recs))  # immutable and hashable: the config is a value
        object.__setattr__(self, "widths", _fractions("widths", self.widths))
        object.__setattr__(self, "depths", _fractions("depths", self.depths))
        raw = (self.precisions,) if isinstance(self.precisions, str) else self.precisions  # one precision
        if not isinstance(raw, (list, tuple, set, frozenset)):
            raise ConfigError(f"precisions: expected some of {', '.join(PRECISIONS)}, got {show(self.precisions)}")
        precs = tuple(dict.fromkeys(str(p).lower() for p in raw))
        bad = [p for p in precs if p not in PRECISIONS]
        if bad or not precs:
            raise ConfigError(f"precisions: unknown {bad[0]!r}; expected some of {', '.join(PRECISIONS)}" if bad
                              else "precisions: give at least one")
        object.__setattr__(self, "precisions", precs)
        if self.seq_len is None:
            lens = list(self.profile.budgets.p90_latency_ms)
            object.__setattr__(self, "seq_len", 128 if (128 in lens or not lens) else max(lens))
        if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int) or \
                not 1 <= self.seq_len <= MAX_SEQ_LEN:
            raise ConfigError(f"seq_len: must be an integer in [1, {MAX_SEQ_LEN}], got {self.seq_len!r}")
        for name in ("runs", "warmup"):
            v = getattr(self, name)
            low = 1 if name == "runs" else 0
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= 100000:
                raise ConfigError(f"{name}: must be an integer in [{low}, 100000], got {v!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or not 1 <= self.threads <= 1024):
            raise ConfigError(f"threads: must be an integer in [1, 1024], got {self.threads!r}")
        if self.budget is None:
            raise ConfigError(f"profile '{self.profile.name}' has no p90 latency budget for seq {self.seq_len}; "
                              "give --budget-ms")

    @property
    def budget(self) -> float | None:
        return self.budget_ms if self.budget_ms is not None else self.profile.budgets.latency_ms(self.seq_len)


@dataclasses.dataclass
class Candidate:
    name: str
    width: float
    depth: float
    precision: str
    path: str
    size_mb: float = 0.0  # what the size budget is compared with: the file, or on a phone the bundle's model.ort
    size_of: str = "file"  # "file" (the .onnx and its data) | "model.ort" (deploytool bundle's, for a phone), or why not
    file_mb: float = 0.0
    params: int | None = None
    param_fraction: float | None = None  # params / the input's (the accuracy proxy); None: proxy_unknown says why
    proxy_unknown: str | None = None
    accuracy: float | None = None
    accuracy_n: int | None = None
    accuracy_ci95: list[float] | None = None
    accuracy_metric: str = "accuracy"  # "recall@10" for embedding models (deploytool eval of such a model)
    host_p50_ms: float | None = None
    host_p90_ms: float | None = None
    # every timed run on the host, in the worker's order (run i of every candidate in the same round of turns):
    # the paired speed test among accuracy-tied candidates (_same_speed); not written to the JSON
    host_samples_ms: tuple[float, ...] = dataclasses.field(default=(), repr=False)
    peak_memory_mb: float | None = None
    projected_ms: float | None = None
    projection_method: str | None = None  # host-efficiencies (the report's) | roofline (no host measurement)
    # projected on this host / its p10 there (p50 without the runs) - 1: the input of the projections' resolution
    host_projection_error: float | None = None
    device_p90_ms: float | None = None
    latency_source: str = ""
    pack_runtime: str | None = None  # ternary/binary: the pack runtime used, and why
    pack_runtime_why: str | None = None
    int8_codes: str | None = None  # int8: the weight codes used (Int8Config.weights), and why
    int8_codes_why: str | None = None
    fits: bool = False
    reasons: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    # the requested candidates that are this one's model (fractions that round to its layers, heads and neurons):
    # built and timed once, under this name
    same_as: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("host_samples_ms")
        if d["accuracy_ci95"] is not None:
            d["accuracy_ci95"] = [round(float(x), 3) for x in d["accuracy_ci95"]]
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


@dataclasses.dataclass
class FitResult:
    chosen: Candidate
    candidates: list[Candidate]
    profile: str
    seq_len: int
    budget_ms: float
    ranking: str  # "accuracy", the proxy's description, or why the proxy ranks nothing (PROXY_UNRANKED...)
    output: Path
    why_path: Path
    accuracy_note: str = ""  # the tie rule's reason for the pick
    source_precision: str = "fp32"  # the input's weights (an fp16 input's "as is" candidates are fp16)
    # a projected device: the cost model's resolution there per precision (and "all"), from the candidates'
    # errors projected onto this host (Resolution.of_precisions, doubled): projections closer are equally fast
    projection_resolution: dict[str, float] = dataclasses.field(default_factory=dict)
    # requested widths/depths that cut the same model as another on this input (slice_shape): one candidate each
    collapsed: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def why(self) -> str:
        c = self.chosen
        acc = (f"{c.accuracy_metric} {_acc_text(c)}" if self.ranking == "accuracy"
               else f"accuracy PROXY {_proxy_text(c)} (kept-parameter fraction; no accuracy given)")
        fitting = [x for x in self.candidates if x.fits]
        unranked = self.ranking.startswith(PROXY_UNRANKED)
        rule = ("the largest accuracy wins, then the lowest latency" if self.ranking == "accuracy" else
                f"{self.ranking}: the highest precision (fp32 = fp16 > int8 > ternary > binary) wins, then the lowest "
                "latency" if unranked else
                "the largest proxy, then precision (fp32 = fp16 > int8 > ternary > binary), wins, then the lowest "
                "latency")
        lines = [f"picked {c.name} for {self.profile} at seq {self.seq_len}: {acc}, {c.latency_source} "
                 f"{c.device_p90_ms:.2f} ms <= {self.budget_ms:g} ms, {fmt_mb(c.size_mb)} MB"
                 f"{' (its bundle model.ort)' if c.size_of == 'model.ort' else ''}; "
                 f"{len(fitting)} of {len(self.candidates)} candidates fit; {rule}"
                 + (" (a difference the exact McNemar test does not find significant is a tie: the faster, then "
                    "smaller, of the tied wins; " + self._speed_rule() + ")" if self.ranking == "accuracy" else "")]
        if self.accuracy_note:
            lines.append(f"  {self.accuracy_note}")
        for x in self.collapsed:
            lines.append(f"  {x['message']}")
        if (c.width, c.depth) == (1.0, 1.0) and c.precision in ("fp32", self.source_precision):
            lines.append(f"  note: the pick is the input model itself (width 1, depth 1, {c.precision}): the output is a "
                         "plain copy of it; nothing smaller fits better")
        for x in self.candidates:
            if x is c:
                continue
            score = (f"{x.accuracy_metric} {_acc_text(x)}" if x.accuracy is not None else
                     f"proxy {_proxy_text(x)}" if self.ranking != "accuracy" else "")
            lat = f"{x.device_p90_ms:.2f} ms" if x.device_p90_ms is not None else "not measured"
            state = "fits, ranked lower" if x.fits else "rejected: " + "; ".join(x.reasons or [x.error or "?"])
            lines.append(f"  {x.name} ({lat}{f', {score}' if score else ''}): {state}")  # (not "(0.03 ms, )")
        return "\n".join(lines)

    def _speed_rule(self) -> str:
        if self.chosen.latency_source != "projected":
            return "equally fast, the smaller: not slower in significantly many paired runs (sign test)"
        if self.projection_resolution:
            return ("equally fast, the smaller: projections closer than the cost model's resolution, "
                    + ", ".join(f"{k} {v - 1:.0%}" for k, v in self.projection_resolution.items()))
        return "projections are ranked as they are (no spread of host errors to tell their resolution)"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "deploytool.fit/1", "profile": self.profile, "seq_len": self.seq_len,
                "budget_ms": self.budget_ms, "ranking": self.ranking, "chosen": self.chosen.name,
                "accuracy_note": self.accuracy_note, "projection_resolution": self.projection_resolution,
                "collapsed": [dict(x) for x in self.collapsed],
                "output": str(self.output), "why": self.why(), "candidates": [c.to_dict() for c in self.candidates]}


#: how ``ranking`` begins where no accuracy is given and a fitting candidate has no proxy
PROXY_UNRANKED = "no accuracy given and the kept-parameter proxy ranks nothing"


def _proxy_text(c: Candidate) -> str:
    return f"{c.param_fraction:.3f}" if c.param_fraction is not None else (c.proxy_unknown or "unknown")


def _acc_text(c: Candidate) -> str:
    if c.accuracy_ci95 is None or c.accuracy_n is None:
        return f"{c.accuracy:.2f}%"
    return f"{c.accuracy:.2f}% [95% CI {c.accuracy_ci95[0]:.2f}-{c.accuracy_ci95[1]:.2f}] n={c.accuracy_n}"


def _name(w: float, d: float, p: str) -> str:
    from deploytool.variant import variant_label

    return variant_label(w, d, p)


# fp16 candidates are built on any host: fit measures them here and projects them to the device
_OPTIONS = {"fp16": {"check_host": False}}

# MatMulNBits 2-bit (pack --runtime memory) against int8 kernels (pack --runtime speed), whole models at
# ONNX Runtime's default session options, 1 thread: 2-bit faster at 1 token, int8 faster at 8 and 128, on x86
# with AVX-512 VNNI + AMX (benchmarks/results/pack_bench.json: MiniLM and BERT-base, 0.54-0.67x at 1 token) and
# on AVX2 without VNNI (pack_bench_nbits_zen3.json: MiniLM, 0.74-0.77x). A single [384 x 1536] GEMM alone
# (nbits_kernels.json) has 2-bit ahead at 1 row only with the session option mlas.use_lut_gemm, which
# deploytool does not set: the whole-model runs are what this rule follows
NBITS_MAX_SEQ = 1


def pack_runtime(profile: Profile, seq_len: int) -> tuple[str, str]:
    """The pack runtime for ternary/binary candidates on ``profile`` at ``seq_len``, and why."""
    from deploytool.profiles.schema import Arch

    if profile.arch is Arch.AARCH64:
        return "speed", ("aarch64: MatMulNBits 2-bit is checked for correctness under QEMU only (no device timing); "
                         "int8 kernels (runtime speed) kept")
    if seq_len <= NBITS_MAX_SEQ:
        return "memory", f"x86: MatMulNBits 2-bit measured faster than int8 kernels at {seq_len} token(s)"
    return "speed", f"x86: int8 kernels measured faster than MatMulNBits 2-bit above {NBITS_MAX_SEQ} token(s)"


def int8_codes(profile: Profile) -> tuple[str, str]:
    """The int8 weight codes (``Int8Config.weights``) for int8 candidates on ``profile``, and why."""
    from deploytool.profiles.schema import Arch

    if profile.arch is Arch.AARCH64:
        return "int8", "aarch64: ONNX Runtime's u8 x s8 kernels are exact (default codes)"
    if profile.from_host:
        from deploytool.runtime.int8_kernel import u8s8_exact

        exact = u8s8_exact() is not False
        how = "this host's ONNX Runtime, probed"
    else:
        exact = profile.has("vnni")
        how = "the profile's ISA features"
    if exact:
        return "int8", f"x86 with VNNI ({how}): u8 x s8 products are exact (default codes)"
    return "pairsafe", (f"x86 without VNNI ({how}): u8 x s8 pairs clip in int16; pair-safe codes cannot, at the "
                        "default's speed (benchmarks/results/int8_codes.json)")


def _repack_for_the_ort(c: Candidate, work: Path, style: str, say) -> None:
    """``c`` (a packed candidate whose bundle .ort is over the size budget: its weights unpacked to int8 there)
    repacked for ``--runtime memory`` (:mod:`deploytool.passes.repack`: the same codes, no second quantization),
    whose MatMulNBits weights stay 2 bits in the .ort; kept when its .ort is smaller, with the reason in
    ``pack_runtime_why`` (its latency is then projected with MatMulNBits' int8 operations; on aarch64 the 2-bit
    kernel's speed is unmeasured). Anything that fails leaves ``c`` as it was."""
    from deploytool import bundle
    from deploytool.passes.repack import RepackConfig, repack_file

    say(f"fit: {c.name}: its .ort ({fmt_mb(c.size_mb)} MB) is over the size budget; trying repack --runtime memory")
    try:
        (work / "memory").mkdir(exist_ok=True)
        path = work / "memory" / Path(c.path).name
        path.unlink(missing_ok=True)
        repack_file(c.path, path, RepackConfig(runtime="memory"))
        ort_mb = bundle.ort_size_mb(path, style, work)
    except DeployError as e:
        c.pack_runtime_why = f"{c.pack_runtime_why}; repack --runtime memory for the .ort's size failed: {e}"
        return
    if ort_mb >= c.size_mb:
        return
    before = c.size_mb
    c.path, c.file_mb, c.size_mb = str(path), os.path.getsize(path) / MB, ort_mb
    c.pack_runtime = "memory"
    c.pack_runtime_why = (f"the speed runtime's bundle .ort was {before:.1f} MB, over the size budget (its weights "
                          f"unpacked to int8); repacked with the same codes as MatMulNBits 2-bit, which keeps them "
                          f"2 bits: {fmt_mb(ort_mb)} MB (latency "
                          "projected with its int8 operations; its aarch64 kernel's speed is not measured)")


def _build(src: Path, work: Path, w: float, d: float, precision: str, sliced: dict,
           options: dict | None = None, of: tuple[float, float] = (1.0, 1.0)) -> Path:
    """The candidate's file, made as recipe sweeps make variants (``passes.variants.build_variant``), named as its
    variant record names it."""
    from deploytool.passes.variants import build_variant

    opts = {**_OPTIONS.get(precision, {}), **(options or {})} or None
    return build_variant(src, work, w, d, precision, options=opts, sliced=sliced, of=of)


def fit(config: FitConfig, progress=None) -> FitResult:
    """Build, measure and project every candidate; write the best one to ``config.output``.

    ``progress``: an optional callable taking one line of text, called as each stage starts."""
    from deploytool.choices import require_callback, require_config

    require_config(config, FitConfig, "fit")  # a path or a dict: ConfigError, not AttributeError
    require_callback(progress, "progress", "taking one line of text")
    say = progress or (lambda _line: None)
    from deploytool.bench import BenchConfig, run_benchmark
    from deploytool.bench.cost_model import (OTHER_DEVICE_WIDENING, Resolution, op_costs, project_latency,
                                             resolution_error)
    from deploytool.onnx_io import atomic_write, check_output_path

    check_output_path(config.output, inputs=(config.model,))
    # the .fit.json beside it too, before any work: a folder there failed after the chosen model was written
    check_output_path(_why_path(config.output), inputs=(config.model,))
    prof = config.profile
    budget = float(config.budget)
    with scratch.temporary_directory("deploytool-fit-") as tmp_s:
        work = Path(config.workdir) if config.workdir is not None else Path(tmp_s)
        sliced: dict = {}
        cands: list[Candidate] = []
        # read once (a self-contained file is parsed whole): its stored precision and, when it is itself a variant,
        # its width and depth relative to the original model
        source_precision, (sw, sd), structure = _source_facts(config.model)
        if source_precision not in ("fp32", "fp16"):
            # its width-1 depth-1 "fp32" candidate would be this file as is, labelled fp32, and nothing else builds
            raise PassRefusedError(f"fit: {config.model} is already {source_precision}; fit builds its width, depth "
                                   "and precision variants from the fp32 (or fp16) model: give that one")
        grid = _grid_precisions(config.precisions, source_precision)
        widths, depths, collapsed = _distinct_fractions(config.widths, config.depths, structure, (sw, sd))
        for x in collapsed:
            say(f"fit: {x['message']}")
        n_cands = len(widths) * len(depths) * len(grid)
        # an input that is itself a variant (a slice of the export): the candidates are named as their files' records
        # name them, relative to the original model (a width 0.5 of a w0.5 input is w0.25), not to the input
        def label(w: float, d: float, p: str) -> str:
            return _name(sw * w, sd * d, p)

        _check_accuracy_names(config, [label(w, d, p) for w in config.widths for d in config.depths for p, _ in grid])
        # each candidate's other names: fractions that cut the same model of this input
        same_as = {label(w, d, p): [label(w2, d2, p) for w2 in [w, *widths[w]] for d2 in [d, *depths[d]]
                                    if (w2, d2) != (w, d)]
                   for w in widths for d in depths for p, _ in grid}
        _check_same_model_accuracies(config, same_as)
        if config.workdir is not None:
            # the files the candidates are built as there (each slice's fp32 file too): one that is the input was
            # written over by a candidate (its kept "w1-d1-fp32" then a copy of that candidate); one that is the
            # output was replaced by the pick's copy while the .fit.json named it as that candidate
            taken = {f"{label(w, d, p)}.onnx" for w in widths for d in depths for p in ("fp32", *(g for g, _ in grid))
                     if (w, d) != (1.0, 1.0) or p not in ("fp32", source_precision)}  # (that one is the input)
            here = work.resolve()
            if config.model.resolve().parent == here and config.model.name in taken:
                raise ConfigError(f"--keep-candidates: {work} would hold the candidate {config.model.stem} at "
                                  f"{config.model}, the input model; keep the candidates in another folder")
            if config.output.resolve().parent == here and config.output.name in taken:
                raise OutputPathError(f"{config.output}: is where --keep-candidates keeps the candidate "
                                      f"{config.output.stem}; write the chosen model elsewhere")
        work.mkdir(parents=True, exist_ok=True)
        for w in widths:
            for d in depths:
                for p, build_p in grid:
                    c = Candidate(label(w, d, p), w, d, p, "")
                    c.same_as = same_as[c.name]
                    say(f"fit: building {c.name} ({len(cands) + 1} of {n_cands})")
                    opts = None
                    if p in ("ternary", "binary"):
                        c.pack_runtime, c.pack_runtime_why = pack_runtime(prof, config.seq_len)
                        opts = {"runtime": c.pack_runtime}
                    elif p == "int8":
                        c.int8_codes, c.int8_codes_why = int8_codes(prof)
                        opts = {"weights": c.int8_codes} if c.int8_codes != "int8" else None
                    try:
                        try:
                            c.path = str(_build(config.model, work, w, d, build_p, sliced, opts, of=(sw, sd)))
                        except PassRefusedError as e:
                            if c.int8_codes != "pairsafe":
                                raise
                            # a file whose int8 weights cannot be re-coded pair-safe: uint8 codes are exact
                            # too, slower at long sequences
                            c.int8_codes = "uint8"
                            c.int8_codes_why += f"; uint8 instead: {e}"
                            c.path = str(_build(config.model, work, w, d, p, sliced, {"weights": "uint8"},
                                                of=(sw, sd)))
                        c.size_mb = c.file_mb = os.path.getsize(c.path) / MB
                    except DeployError as e:
                        c.error = f"cannot build: {e}"
                        c.reasons.append(c.error)
                    cands.append(c)
        built = [c for c in cands if c.error is None]
        if not built:
            raise DeployError(f"fit: no candidate could be built ({cands[0].error})")
        if config.workdir is not None:  # --keep-candidates keeps every one: the input's own candidate too
            for c in built:
                kept = work / f"{c.name}.onnx"
                if Path(c.path).resolve() == Path(config.model).resolve() and kept.resolve() != Path(c.path).resolve():
                    _write_pick(Path(c.path), kept, config.model)
                    c.path = str(kept)
        _params(built, config.model)
        from deploytool import bundle

        style = bundle.phone_bundle_style(prof)
        if style is not None:  # what ships to a phone is the bundle's .ort (packed weights folded into int8)
            say(f"fit: converting {len(built)} candidates to the ORT format of {prof.name}'s bundle")
            for c in built:
                c.size_mb, c.size_of = bundle.shipped_size(c.path, prof, c.file_mb, work)
            limit = prof.budgets.model_size_mb
            for c in built:  # a packed .ort over the size budget: MatMulNBits keeps its weights 2 bits there
                if limit is not None and c.size_of == "model.ort" and c.size_mb > limit \
                        and c.pack_runtime in ("speed", "densest"):
                    _repack_for_the_ort(c, work, style, say)
        host_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = config.threads or max(1, min(prof.threads, host_cores))
        say(f"fit: measuring {len(built)} candidates on this host ({threads} threads)")
        report = run_benchmark(BenchConfig(models=tuple(c.path for c in built), seq_lens=(config.seq_len,),
                                           threads=threads, runs=config.runs, warmup=config.warmup,
                                           spec=prof.session_spec(threads=threads)))
        from deploytool.profiles.match import match_profile

        is_host = match_profile(prof, report.host).matched  # measured on the profile's hardware, else projected
        host_prof, rates = (None, None) if is_host else _host_rates(prof, say)
        for i, c in enumerate(built):
            r = report.result(i, config.seq_len)
            c.host_p50_ms, c.host_p90_ms = r.latency.p50_ms, r.latency.p90_ms
            c.host_samples_ms = tuple(r.samples_ms) if report.worker.get("interleaved") else ()
            c.peak_memory_mb = r.peak_rss_bytes / MB
            if is_host:
                c.device_p90_ms, c.latency_source = c.host_p90_ms, "measured p90"
            else:
                # as the report projects it: the graph ONNX Runtime runs, the host's measured efficiencies on the
                # device's peaks; and onto this host, against what it measured, for the resolution below
                costs = op_costs(c.path, config.seq_len, optimized=rates is not None)
                proj = project_latency(costs, prof, seq_len=config.seq_len, host_rates=rates)
                c.projected_ms, c.projection_method = proj.latency_ms, proj.method
                c.device_p90_ms, c.latency_source = proj.latency_ms, "projected"
                if host_prof is not None and c.host_p50_ms:
                    on_host = project_latency(costs, host_prof, seq_len=config.seq_len, threads=threads)
                    c.host_projection_error = resolution_error(on_host.latency_ms, c.host_samples_ms, c.host_p50_ms)
        host_errors: dict[str, list[float]] = {}  # precision -> the candidates' errors projected onto this host
        for c in built:
            if c.host_projection_error is not None:
                host_errors.setdefault(c.precision, []).append(c.host_projection_error)
        accs = dict(config.accuracies or {})
        ranking = "accuracy" if accs else "proxy: kept-parameter fraction of the input model, then precision"
        def record(c):  # a collapsed candidate's accuracy may be keyed by a name it stands for
            return next((accs[n] for n in (c.name, *c.same_as) if n in accs), None)

        for c in built:
            rec = record(c)
            c.accuracy = rec.value if rec is not None else None
            c.accuracy_metric = rec.metric if rec is not None else "accuracy"
            if rec is not None and rec.n is not None and rec.low is not None:
                # kept as given (the text rounds them once, to 2 decimals; the JSON to 3)
                c.accuracy_n, c.accuracy_ci95 = rec.n, [rec.low, rec.high]
            if c.device_p90_ms > budget:
                c.reasons.append(f"{c.latency_source} {c.device_p90_ms:.2f} ms > {budget:g} ms")
            if prof.budgets.model_size_mb is not None and c.size_mb > prof.budgets.model_size_mb:
                hint = ""
                if c.size_of == "model.ort" and c.pack_runtime in ("speed", "densest") \
                        and c.size_mb > bundle.ORT_UNPACKED_RATIO * c.file_mb:
                    hint = (f" (the file is {fmt_mb(c.file_mb)} MB: the converter unpacks its weights to int8; "
                            "pack --runtime memory, or repack --runtime memory, keeps them 2 bits in the .ort)")
                c.reasons.append(f"size {fmt_mb(c.size_mb)} MB{' (model.ort)' if c.size_of == 'model.ort' else ''} > "
                                 f"{prof.budgets.model_size_mb:g} MB{hint}")
            if prof.budgets.peak_memory_mb is not None and c.peak_memory_mb > prof.budgets.peak_memory_mb:
                c.reasons.append(f"peak memory {c.peak_memory_mb:.0f} MB > {prof.budgets.peak_memory_mb:g} MB")
            if accs and c.accuracy is None:
                c.reasons.append("no accuracy given for this candidate")
            elif config.accuracy_floor is not None and c.accuracy is not None and c.accuracy < config.accuracy_floor:
                c.reasons.append(f"accuracy {c.accuracy:.2f} < floor {config.accuracy_floor:g}")
            c.fits = not c.reasons
        fitting = [c for c in built if c.fits]
        if not fitting:
            best = min(built, key=lambda c: c.device_p90_ms)
            why = f"fastest: {best.name}, {'; '.join(best.reasons)}"
            scored = [c for c in built if c.accuracy is not None]
            top = max(scored, key=lambda c: (c.accuracy, -c.device_p90_ms), default=None)
            if top is not None and top is not best:  # the fastest may fail only for want of an accuracy figure
                why += f"; most accurate: {top.name}, {'; '.join(top.reasons)}"
            named = {best.name} | ({top.name} if top is not None else set())
            b = prof.budgets
            # the fastest is not the nearest to a size or memory budget that every candidate misses
            for label, over, value in (("smallest", b.model_size_mb, lambda c: c.size_mb),
                                       ("least memory", b.peak_memory_mb, lambda c: c.peak_memory_mb or 0.0)):
                if over is not None and all(value(c) > over for c in built):
                    near = min(built, key=lambda c: (value(c), c.device_p90_ms))
                    if near.name not in named:
                        why += f"; {label}: {near.name}, {'; '.join(near.reasons)}"
                        named.add(near.name)
            floor = "" if config.accuracy_floor is None else f" and the accuracy floor ({config.accuracy_floor:g} %)"
            raise DeployError(f"fit: none of {len(cands)} candidates meets {prof.name}'s budget{floor} at seq "
                              f"{config.seq_len} ({why})")
        note = ""
        if accs:
            pk = pick(fitting, record=record, cost=lambda c: (c.device_p90_ms, c.size_mb),
                      name=lambda c: c.name, same_speed=lambda a, b: _same_speed(a, b, host_errors, config.seq_len),
                      then=lambda c: (c.size_mb, c.name), faster=_faster)
            chosen, note = pk.chosen, pk.note
        else:
            unknown = [c for c in fitting if c.param_fraction is None]
            if unknown and len(fitting) > 1:  # a missing proxy is no 0: nothing is ranked by it
                ranking = (f"{PROXY_UNRANKED}: {unknown[0].name} has none ({unknown[0].proxy_unknown})"
                           + (f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""))
            chosen = max(fitting, key=lambda c: (0 if unknown else round(c.param_fraction, 6),
                                                 PRECISION_RANK[c.precision], -c.device_p90_ms))
        _write_pick(chosen.path, config.output, config.model)
        why_path = _why_path(config.output)
        resolution = Resolution.table(host_errors, f"at seq {config.seq_len}", widen=OTHER_DEVICE_WIDENING)
        result = FitResult(chosen, cands, prof.name, config.seq_len, budget, ranking, config.output, why_path, note,
                           source_precision=source_precision, projection_resolution=resolution,
                           collapsed=collapsed)
        with atomic_write(why_path) as f:
            json.dump(result.to_dict(), f, indent=2)
        return result


def _why_path(output: Path) -> Path:
    return output.with_name(output.name + ".fit.json")


def _write_pick(src: Path, out: Path, model: Path) -> None:
    """The chosen candidate's file at ``out``, with its weights: a plain copy, or, for a file whose weights are
    in external-data files (an input exported that way, a candidate over 2 GB), a model file and a data file of
    its own beside ``out`` (a copy of the .onnx alone named data beside the input, or in fit's temporary
    folder: it loaded nowhere else, or not at all once the candidates were removed). A copy either way: the
    exporter metadata the candidate holds stays (a pass's output holds none; see :mod:`deploytool.onnx_io`)."""
    from deploytool.onnx_io import atomic_path, external_data_files, load_proto, save_proto

    data = external_data_files(src)
    if not data:
        with atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)
        return
    save_proto(load_proto(src), out, external=True, inputs=(model, src), data_files=tuple(data),
               keep_exporter_metadata=True)


def _check_accuracy_names(config: FitConfig, names: list[str]) -> None:
    """ConfigError before any work when accuracies are given but none is keyed by a candidate's name (a file
    keyed w0.75_d1_int8 instead of w0.75-d1-int8: every candidate would lack an accuracy, and the error would
    blame the budget)."""
    accs = config.accuracies
    if not accs or any(n in accs for n in names):
        return
    names_given = [k for k in accs if not Path(k).is_absolute()]  # (not the resolved paths, nor a name's stem)
    keys = [k for k in dict.fromkeys(names_given) if not any(o.startswith(k + ".") for o in names_given)]
    raise ConfigError(f"--accuracy: none of its names ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}) is a "
                      f"candidate's; candidates are named w{{width}}-d{{depth}}-{{precision}}: "
                      f"{', '.join(names[:4])}{', ...' if len(names) > 4 else ''}")


def _check_same_model_accuracies(config: FitConfig, same_as: dict[str, list[str]]) -> None:
    """ConfigError before any work when the accuracies give one candidate two different figures under names that
    cut the same model of this input (w0.5-d0.75-int8 80 and w0.5-d0.7-int8 90 on 4 layers): the lookup would take
    the first in silence (as the report refuses two accuracies of one model)."""
    accs = config.accuracies
    if not accs:
        return
    for name, others in same_as.items():
        given = [(n, accs[n]) for n in (name, *others) if n in accs]
        if not same_accuracy([r for _, r in given]):  # one figure as the file states it, or from its counts
            shown = ", ".join(f"{n} {r.value if r.stated is None else r.stated:g}" for n, r in given)
            raise ConfigError(f"--accuracy: {shown}: the same model on this input (one candidate, {name}) with "
                              "different accuracies; keep one")


def _source_facts(model: Path):
    """The input's stored precision, its (width, depth) relative to its original model (its variant record;
    1, 1 for an export) and its encoder structure (None where the structure finder cannot read it), from one read
    of the file without its weights."""
    from deploytool.onnx_io import load_proto
    from deploytool.variant import model_precision, read_variant

    try:
        proto = load_proto(model, load_external_data=False)
        precision = model_precision(proto)[0]
    except Exception:  # noqa: BLE001 - an unreadable input fails where the candidates are built, with its reason
        return "fp32", (1.0, 1.0), None
    v = read_variant({p.key: p.value for p in proto.metadata_props})
    structure = None
    try:
        import onnx_ir as ir

        from deploytool.graph.structure import find_structure

        structure = find_structure(ir.serde.deserialize_model(proto))
    except Exception as e:  # noqa: BLE001 - the slice pass refuses such a model itself, with its reason
        logger.info("fit: the structure finder cannot read %s (%s): every requested width and depth is built", model, e)
    return precision, ((v.width, v.depth) if v is not None else (1.0, 1.0)), structure


def _distinct_fractions(widths: tuple[float, ...], depths: tuple[float, ...], structure, of: tuple[float, float]):
    """({width: the widths that cut the same model}, the same for depths, what collapsed): the requested
    fractions that keep the same heads and neurons (widths) or the same layers (depths) of this model as a larger
    one requested (the slice pass's own resolution, :func:`deploytool.passes.variants.slice_shape`) stand with it:
    one file built and timed, not two alike under two labels. ``of``: the input's own (width, depth), for the
    labels. Without a structure (the finder cannot read the model) every fraction stands alone."""
    from deploytool.variant import variant_label

    if structure is None or not structure.layers:
        return {w: [] for w in widths}, {d: [] for d in depths}, []
    from deploytool.passes.variants import slice_shape

    collapsed: list[dict[str, str]] = []

    def group(values, kind):
        firsts: dict = {}  # shape key -> the first (largest) fraction requested with it
        out: dict[float, list[float]] = {}
        for v in values:  # largest first (FitConfig sorts them)
            shape = slice_shape(structure, v, 1.0) if kind == "width" else slice_shape(structure, 1.0, v)
            key = shape.width_key if kind == "width" else shape.layers_kept
            if key not in firsts:
                firsts[key] = v
                out[v] = []
                continue
            first = firsts[key]
            out[first].append(v)

            def name(x: float) -> str:
                return variant_label(of[0] * x, 1.0, "p").split("-")[0] if kind == "width" else \
                    variant_label(1.0, of[1] * x, "p").split("-")[1]

            model = f"{structure.num_layers}-layer model" if kind == "depth" else "model"
            keeps = shape.describe_depth() if kind == "depth" else shape.describe_width()
            collapsed.append({"kind": kind, "requested": name(v), "same_as": name(first), "keeps": keeps,
                              "message": f"{name(v)} is the same model as {name(first)} on this {model}: {keeps} "
                                         f"(built and timed once, as {name(first)})"})
        return out

    return group(widths, "width"), group(depths, "depth"), collapsed


def _grid_precisions(precisions: tuple[str, ...], source_precision: str) -> list[tuple[str, str]]:
    """(label, what to build) for each precision of the grid. On an fp16 input, "fp32" and "fp16" both mean the
    input's weights as they are: one candidate, labelled fp16 (an fp32 label would misname an fp16 file, and the
    fp16 pass refuses a model already fp16); int8 and packed candidates upcast it first (exact)."""
    if source_precision != "fp16":
        return [(p, p) for p in precisions]
    out: list[tuple[str, str]] = []
    for p in precisions:
        label, build = ("fp16", "fp32") if p in ("fp32", "fp16") else (p, p)
        if (label, build) not in out:
            out.append((label, build))
    return out


def _same_speed(a: Candidate, b: Candidate, host_errors: dict[str, list[float]] | None = None,
                seq_len: int | None = None) -> str | None:
    """Why ``a`` is not measurably slower than ``b``, else None. Measured on this host: the exact sign test of
    their paired runs (p >= 0.05): a pair of variants of the same cost whose p90s differ by the host's noise (the
    quickstart's host pick moved between w0.5-d0.75-int8 and w0.75-d0.5-int8 from one run to the next). Projected:
    within the cost model's resolution for their precisions (``host_errors``: precision -> the candidates' errors
    projected onto this host against what it measured; the spread of those of both precisions, doubled for
    another device: :meth:`~deploytool.bench.cost_model.Resolution.of_precisions`), as the report ranks them."""
    from deploytool.accuracy import speed_tie

    if a.latency_source == "projected" and b.latency_source == "projected":
        from deploytool.bench.cost_model import device_speed_tie

        at = f" at seq {seq_len}" if seq_len is not None else ""
        return device_speed_tie(a.name, a.device_p90_ms, b.device_p90_ms, (a.precision, b.precision), host_errors or {},
                                f"of these candidates measured on this host{at}")
    return speed_tie(a.name, a.host_samples_ms, b.host_samples_ms)


def _faster(a: Candidate, b: Candidate) -> str | None:
    """Why ``a`` is measurably faster than ``b`` though ranked by their p90s it may not be: both measured on this host
    and ``a`` faster in significantly many of their paired runs (exact sign test, p < 0.05); else None (projections
    are ranked by their values, as their resolution says)."""
    from deploytool.accuracy import speed_lead

    if a.latency_source == "projected" or b.latency_source == "projected":
        return None
    return speed_lead(a.name, a.host_samples_ms, b.host_samples_ms)


def _host_rates(prof: Profile, say):
    """(this machine's measured host profile, its rates at ``prof``'s threads), as the report projects other
    devices with; (None, None) where it has none (the roofline then, with its round efficiencies)."""
    from deploytool.bench.cost_model import HostRates
    from deploytool.profiles import load_profile

    say("fit: reading this host's microbenchmark (measured on first use, about a minute; then cached)")
    try:
        host = load_profile("x86-host")
    except DeployError as e:
        logger.info("fit: no host profile (%s): projecting by the roofline", e)
        return None, None
    rates = HostRates.from_profile(host, min(prof.threads, host.threads))
    return (host, rates) if rates is not None else (None, None)


def _params(cands: list[Candidate], source: Path) -> None:
    """Parameters of each candidate and their fraction of the input's, the model each is cut from (the accuracy
    proxy). Where the input's cannot be counted no candidate has one: the largest candidate is not the input (a
    grid without width 1 and depth 1), and a fraction of it is none of the input's."""
    from deploytool.inspection import inspect_model

    try:
        top, why = inspect_model(source, seq_len=8).params_each_read, ""
    except DeployError as e:
        top, why = None, f"proxy unknown (the input's parameters could not be counted: {e})"
    for c in cands:
        try:
            c.params = inspect_model(c.path, seq_len=8).params_each_read
        except DeployError as e:
            logger.info("inspect %s: %s", c.path, e)
            c.proxy_unknown = f"proxy unknown (its parameters could not be counted: {e})"
    for c in cands:
        c.param_fraction = (c.params / top) if (c.params and top) else None
        if c.param_fraction is None and c.proxy_unknown is None:
            c.proxy_unknown = why or "proxy unknown (no parameters counted)"
