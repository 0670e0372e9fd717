"""The typed, validated configuration of one benchmark call."""

from __future__ import annotations


import dataclasses
import enum
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deploytool.choices import config, parse_enum, refuse_repeats, same_file, show
from deploytool.errors import ConfigError
from deploytool.runtime.spec import SessionSpec
from deploytool.units import MAX_SEQ_LEN

__all__ = ["BenchConfig", "BusyPolicy", "Schedule", "ThreadPool", "parse_seq_lens"]


class Schedule(str, enum.Enum):
    """How several models' timed runs are ordered in the one timing worker."""

    INTERLEAVED = "interleaved"  # A, B, A, B, ... run by run
    BLOCKS = "blocks"  # A x n, B x n, A x n, ...


class ThreadPool(str, enum.Enum):
    """Whose intra-op threads a session runs on."""

    SESSION = "session"  # each session its own pool (ONNX Runtime's default)
    SHARED = "shared"  # one process-wide pool for every session of the worker


class BusyPolicy(str, enum.Enum):
    """What to do when ``threads`` exceeds the cores that other processes leave free."""

    WARN = "warn"  # measure, and say so in the report's warnings
    REFUSE = "refuse"  # raise BusyMachineError before measuring


_MAX_SEQ = MAX_SEQ_LEN
_MAX_BATCH = 4096
_MAX_RUNS = 10_000_000


def _int_field(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name}: must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def parse_seq_lens(text: str | Iterable[int]) -> tuple[int, ...]:
    """``"8,128"`` (or an iterable of ints) -> ``(8, 128)``; anything else is a ConfigError."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise ConfigError(f"seq_lens: expected comma-separated positive integers like 8,128, got {text!r}")
        values: list[Any] = []
        for p in parts:
            try:
                values.append(int(p))
            except ValueError:
                raise ConfigError(f"seq_lens: {p!r} is not an integer (expected e.g. 8,128)") from None
    else:
        try:
            values = list(text)
        except TypeError:
            raise ConfigError(f"seq_lens: expected a list of positive integers, got {text!r}") from None
    if not values:
        raise ConfigError("seq_lens: give at least one sequence length")
    out: list[int] = []
    for v in values:
        v = _int_field("seq_lens", v, 1, _MAX_SEQ)
        if v not in out:
            out.append(v)
    return tuple(out)


@config
@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What to benchmark and how.

    models: ONNX files; with several, runs are interleaved (A, B, A, B, ...) in one worker and the
      first model is the reference of the latency ratios.
    threads: intra-op threads; ``None`` keeps the spec's (1 without a spec). Given together with a
      spec (e.g. a device profile's), it overrides the spec's thread count.
    spec: the session to build (execution providers, options, ...); ``None`` = CPU defaults.
      A device profile maps onto this one field: ``BenchConfig(models, spec=profile_spec)``.
    timeout_s: kill a worker that takes longer (None: no limit).
    schedule / block_runs / prime_runs / thread_pool: how several models share the timing worker. The
      defaults (shared pool; blocks of 10 runs per model, each after 3 untimed runs of that model) keep
      each model at its figure alone whatever else is measured with it: its own weights are in the
      caches when it is timed. Per-session pools were up to 2x slow because idle sessions' threads spin
      (benchmarks/bench_hygiene.py); with many models, runs interleaved one by one found the other
      models' weights in the caches: the quickstart's 27 MiniLM variants took about 1.7x their latency
      alone at 8 tokens that way (benchmarks/bench_cache.py, which measures each schedule against each
      model alone). ``prime_runs``: the untimed runs before each timed stretch (each run when
      interleaved, each block), only with several models.
    profile: the device profile the run is for (recorded in the report); its session spec is used
      when ``spec`` is None.
    busy: refuse or only warn when ``threads`` exceeds the free cores (other runnable tasks
      sampled before the run); ``spread_warn`` is the (p90-p50)/p50 above which a row counts as noisy.
    wait_quiet_s: before measuring, wait up to this long for ``threads`` free cores (0: do not wait).
    worker_python: the command that starts the worker's Python (default: this interpreter). Under QEMU
      user-mode without binfmt_misc an aarch64 Python cannot exec another one: give
      ``("qemu-aarch64", "-L", ROOTFS, PYTHON)``; the bench JSON then says the timings are emulated.
    """

    models: tuple[Path, ...]
    seq_lens: tuple[int, ...] = (8, 128)
    batch: int = 1
    threads: int | None = None
    warmup: int = 10
    runs: int = 100
    seed: int = 0
    spec: SessionSpec | None = None
    timeout_s: float | None = None
    schedule: Schedule = Schedule.BLOCKS
    block_runs: int = 10
    prime_runs: int = 3
    thread_pool: ThreadPool = ThreadPool.SHARED
    # deploytool.profiles.Profile | None; out of the hash (a profile holds mappings), still compared by ==
    profile: Any = dataclasses.field(default=None, hash=False)
    busy: BusyPolicy = BusyPolicy.WARN
    spread_warn: float = 0.15
    wait_quiet_s: float = 0.0
    worker_python: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        models = self.models
        if isinstance(models, (str, os.PathLike)):
            models = (models,)
        try:
            models = tuple(Path(m) for m in models)
        except TypeError:
            raise ConfigError(f"models: expected a list of ONNX file paths, got {self.models!r}") from None
        if not models:
            raise ConfigError("models: give at least one ONNX model")
        # the same file twice: two rows of one name, each timed against itself
        refuse_repeats(models, "models", key=same_file)  # a symlink or a hard link too
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "seq_lens", parse_seq_lens(self.seq_lens))
        _int_field("batch", self.batch, 1, _MAX_BATCH)
        if self.threads is not None:
            _int_field("threads", self.threads, 1, 1024)
        _int_field("warmup", self.warmup, 0, _MAX_RUNS)
        _int_field("runs", self.runs, 1, _MAX_RUNS)
        _int_field("seed", self.seed, 0, 2**32 - 1)
        if self.spec is not None and not isinstance(self.spec, SessionSpec):
            raise ConfigError(f"spec: expected a SessionSpec, got {type(self.spec).__name__}")
        if self.profile is not None:
            from deploytool.profiles.schema import Profile

            if not isinstance(self.profile, Profile):
                raise ConfigError(f"profile: expected a device Profile, got {type(self.profile).__name__}")
        object.__setattr__(self, "schedule", parse_enum(Schedule, self.schedule, "schedule"))
        object.__setattr__(self, "thread_pool", parse_enum(ThreadPool, self.thread_pool, "thread_pool"))
        object.__setattr__(self, "busy", parse_enum(BusyPolicy, self.busy, "busy"))
        _int_field("block_runs", self.block_runs, 1, _MAX_RUNS)
        _int_field("prime_runs", self.prime_runs, 0, _MAX_RUNS)
        wq = self.wait_quiet_s
        if isinstance(wq, bool) or not isinstance(wq, (int, float)) or not 0 <= wq <= 86400:
            raise ConfigError(f"wait_quiet_s: must be a number of seconds in [0, 86400], got {wq!r}")
        sw = self.spread_warn
        if isinstance(sw, bool) or not isinstance(sw, (int, float)) or not 0 < sw < 10:
            raise ConfigError(f"spread_warn: must be a number in (0, 10), got {sw!r}")
        if self.timeout_s is not None and (isinstance(self.timeout_s, bool)
                                           or not isinstance(self.timeout_s, (int, float))
                                           or not 0 < self.timeout_s <= 10 ** 7):  # nan was accepted, then failed
            raise ConfigError(f"timeout_s: must be a positive number of seconds (at most 1e7) or None, got "
                              f"{show(self.timeout_s)}")
        wp = self.worker_python
        if isinstance(wp, (str, os.PathLike)) or not all(isinstance(x, (str, os.PathLike)) for x in wp):
            raise ConfigError(f"worker_python: expected a command as a list of strings, got {wp!r}")
        object.__setattr__(self, "worker_python", tuple(str(x) for x in wp))

    @property
    def primed_runs(self) -> int:
        """The primer runs the worker makes before each timed stretch: ``prime_runs`` with several models, 0 with one
        (its runs follow each other)."""
        return self.prime_runs if len(self.models) > 1 else 0

    @property
    def session_spec(self) -> SessionSpec:
        """The spec the worker builds sessions from (``threads`` applied)."""
        spec = self.spec
        if spec is None:
            spec = self.profile.session_spec() if self.profile is not None else SessionSpec()
        spec = spec.with_threads(self.threads) if self.threads is not None else spec
        shared = self.thread_pool is ThreadPool.SHARED and len(self.models) > 1
        return dataclasses.replace(spec, shared_thread_pool=shared) if shared != spec.shared_thread_pool else spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": [str(m) for m in self.models],
            "seq_lens": list(self.seq_lens),
            "batch": self.batch,
            "threads": self.session_spec.intra_op_threads,
            "warmup": self.warmup,
            "runs": self.runs,
            "seed": self.seed,
            "session": self.session_spec.to_dict(),
            "schedule": self.schedule.value,
            "block_runs": self.block_runs if self.schedule is Schedule.BLOCKS else None,
            "prime_runs": self.primed_runs,
            "thread_pool": self.thread_pool.value,
            "busy": self.busy.value,
            "profile": None if self.profile is None else {
                "name": self.profile.name, "path": self.profile.path, "soc": self.profile.soc,
                "threads": self.profile.threads},
        }
