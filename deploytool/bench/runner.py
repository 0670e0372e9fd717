"""Run a benchmark: validate the models, drive clean worker processes, assemble the report.

With one model, one worker measures everything. With several, each model first gets a fresh
worker of its own for session creation time and peak memory (short warm-up at every sequence
length, no timed runs), then a single worker times all models in turns (blocks of runs, each after
untimed runs of its model, by default; see :class:`~deploytool.bench.config.BenchConfig`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploytool import errors
from deploytool.bench.config import BenchConfig
from deploytool.runtime.inputs import InputPlan, plan_inputs
from deploytool.bench.stats import LatencyStats, paired_ratio, summarize
from deploytool.errors import DeployError, InputFileError, no_such

logger = logging.getLogger(__name__)

__all__ = ["SCHEMA", "QNN_EMULATED_NOTE", "BenchReport", "BenchResult", "ProgressEvent", "SegmentWorker", "load_report",
           "qnn_emulated", "run_benchmark",
           "write_json"]

SCHEMA = "deploytool.bench/1"
_MEMORY_WARMUP = 3  # runs per sequence length in a memory worker: enough to reach the peak arena


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    """Overall progress: ``completed`` of ``total`` session runs (all workers together)."""

    completed: int
    total: int
    phase: str  # memory | warmup | runs | done
    description: str


ProgressCallback = Callable[[ProgressEvent], None]


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """One row: one model at one sequence length."""

    model: str
    name: str
    model_index: int
    seq_len: int
    batch: int
    latency: LatencyStats
    throughput_seq_per_s: float
    ratio_to_first: float
    paired_ratio_to_first: float
    session_create_ms: float
    peak_rss_bytes: int
    baseline_rss_bytes: int | None
    model_bytes: int
    providers: tuple[str, ...]
    providers_skipped: tuple[tuple[str, str], ...]
    samples_ms: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "name": self.name,
            "model_index": self.model_index,
            "seq_len": self.seq_len,
            "batch": self.batch,
            "latency_ms": self.latency.to_dict(),
            "throughput_seq_per_s": round(self.throughput_seq_per_s, 3),
            "ratio_to_first": round(self.ratio_to_first, 6),
            "paired_ratio_to_first": round(self.paired_ratio_to_first, 6),
            "session_create_ms": round(self.session_create_ms, 3),
            "peak_rss_bytes": self.peak_rss_bytes,
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "model_bytes": self.model_bytes,
            "providers": list(self.providers),
            "providers_skipped": [{"provider": p, "reason": r} for p, r in self.providers_skipped],
            "samples_ms": [round(s, 5) for s in self.samples_ms],
        }


@dataclasses.dataclass(frozen=True)
class BenchReport:
    config: BenchConfig
    host: dict[str, Any]
    onnxruntime: str
    created_utc: str
    worker: dict[str, Any]
    models: tuple[dict[str, Any], ...]
    results: tuple[BenchResult, ...]
    machine: dict[str, Any] = dataclasses.field(default_factory=dict)  # load before/during, warnings

    @property
    def warnings(self) -> list[str]:
        return list(self.machine.get("warnings", []))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created_utc": self.created_utc,
            "onnxruntime": self.onnxruntime,
            "host": self.host,
            "config": self.config.to_dict(),
            "profile": self.config.to_dict()["profile"],
            "machine": self.machine,
            "worker": self.worker,
            "models": list(self.models),
            "results": [r.to_dict() for r in self.results],
        }

    def result(self, model_index: int, seq_len: int) -> BenchResult:
        for r in self.results:
            if r.model_index == model_index and r.seq_len == seq_len:
                return r
        raise KeyError((model_index, seq_len))


def write_json(report: BenchReport, path: str | os.PathLike) -> Path:
    """Write the report's JSON atomically (no partial file on failure)."""
    from deploytool.onnx_io import atomic_write

    with atomic_write(path) as f:
        json.dump(report.to_dict(), f, indent=2)
        f.write("\n")
    return Path(path)


#: what a reader says of a result that timed QNN on an x86 host (a bench JSON from before bench left QNN out there)
QNN_EMULATED_NOTE = ("QNN ran on Qualcomm's x86 HTP emulator (a bench from before bench left QNN out on x86): its "
                     "timings are the emulator's, not the device's nor this CPU's")


def qnn_emulated(result: dict[str, Any], host: dict[str, Any]) -> bool:
    """Whether a bench JSON ``result`` timed QNN's x86 HTP emulator: QNN ran (its first provider) on a host whose
    recorded arch is x86 (:func:`deploytool.runtime.session.qnn_htp_emulated`, the one rule). Bench no longer times
    it; older files did and said 'QNN'."""
    from deploytool.runtime.session import qnn_htp_emulated

    ran = (result.get("providers") or [None])[0]
    arch = host.get("arch") or (host.get("cpu") or {}).get("arch")
    return ran == "QNNExecutionProvider" and arch is not None and qnn_htp_emulated(str(arch))


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read a bench JSON file and check its schema version (for report generators)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        if not p.exists():  # missing, or a link that loops
            raise InputFileError(f"{p}: {no_such(p)}") from None
        raise InputFileError(f"{p}: not a readable bench JSON file ({e})") from None
    except ValueError as e:
        raise InputFileError(f"{p}: not a readable bench JSON file ({e})") from None
    if not isinstance(data, dict):  # a list or a number has no schema to name
        from deploytool.choices import kind_of

        raise InputFileError(f"{p}: expected a JSON object (a deploytool bench result, schema {SCHEMA}), got "
                             f"{kind_of(data)}")
    if "schema" not in data:
        raise InputFileError(f"{p}: no 'schema' key; not a deploytool bench result (schema {SCHEMA})")
    if data["schema"] != SCHEMA:
        raise InputFileError(f"{p}: schema {data['schema']!r} is not {SCHEMA!r}; not a deploytool bench result")
    _check_report(p, data)
    return data


def _check_report(p: Path, data: dict[str, Any]) -> None:
    """The fields a report reads, checked once on load: a corrupt file fails here in one line naming the
    field, not deep inside the report."""
    import math

    def bad(field: str, want: str, got: Any = ...) -> InputFileError:
        return InputFileError(f"{p}: corrupt bench result: {field} " + (f"must be {want}" if got is ... else
                                                                         f"must be {want}, got {got!r}"))

    def count(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def positive(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0

    if "host" in data and not isinstance(data["host"], dict):  # (a report reads rep.get("host", {}))
        raise bad("host", "an object", data["host"])
    if data.get("worker") is not None and not isinstance(data["worker"], dict):
        raise bad("worker", "an object", data["worker"])
    host = data.get("host") or {}
    for key in ("cpu", "isa"):
        if host.get(key) is not None and not isinstance(host[key], dict):
            raise bad(f"host.{key}", "an object", host[key])
    if not isinstance(host.get("available_providers", []), list):
        raise bad("host.available_providers", "a list", host["available_providers"])
    config = data.get("config")
    if not isinstance(config, dict):
        raise bad("config", "an object", config)
    threads = config.get("threads")
    if threads is not None and not (count(threads) and threads >= 1):
        raise bad("config.threads", "an integer >= 1", threads)
    models = data.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise bad("models", "a non-empty list of objects") if "models" in data else bad("models", "present")
    for i, m in enumerate(models):
        variant = m.get("variant")  # what the passes recorded in the file (deploytool.variant), or null
        if variant is None:
            continue
        if not isinstance(variant, dict):
            raise bad(f"models[{i}].variant", "an object or null", variant)
        for key in ("width", "depth"):
            v = variant.get(key)
            if not (positive(v) and v <= 1):
                raise bad(f"models[{i}].variant.{key}", "a number in (0, 1]", v)
    results = data.get("results")
    if not isinstance(results, list) or not results:
        raise bad("results", "a non-empty list", results)
    for i, res in enumerate(results):
        where = f"results[{i}]"
        if not isinstance(res, dict):
            raise bad(where, "an object", res)
        for key in ("model", "name"):
            if not isinstance(res.get(key), str) or not res[key]:
                raise bad(f"{where}.{key}", "a non-empty string", res.get(key))
        idx = res.get("model_index")
        if not (count(idx) and 0 <= idx < len(models)):
            raise bad(f"{where}.model_index", f"an index into models (0..{len(models) - 1})", idx)
        if not (count(res.get("seq_len")) and res["seq_len"] >= 1):
            raise bad(f"{where}.seq_len", "an integer >= 1", res.get("seq_len"))
        lat = res.get("latency_ms")
        if not isinstance(lat, dict):
            raise bad(f"{where}.latency_ms", "an object", lat) if "latency_ms" in res else bad(
                f"{where}.latency_ms", "present")
        for key in ("p50_ms", "p90_ms"):
            if not positive(lat.get(key)):
                raise bad(f"{where}.latency_ms.{key}", "a finite number > 0", lat.get(key))
        if lat["p90_ms"] < lat["p50_ms"]:  # a percentile below a lower one: not a measurement
            raise bad(f"{where}.latency_ms.p90_ms", f"at least p50_ms ({lat['p50_ms']!r})", lat["p90_ms"])
        for key in ("peak_rss_bytes", "model_bytes"):
            v = res.get(key)
            if v is not None and not (positive(v) or v == 0):
                raise bad(f"{where}.{key}", "a finite number >= 0", v)
        for key in ("providers", "providers_skipped", "samples_ms"):
            if res.get(key) is not None and not isinstance(res[key], list):
                raise bad(f"{where}.{key}", "a list", res[key])
        for j, name in enumerate(res.get("providers") or []):
            if not isinstance(name, str) or not name:
                raise bad(f"{where}.providers[{j}]", "a provider name (a non-empty string)", name)
        if not all(isinstance(s, dict) and {"provider", "reason"} <= set(s)
                   and all(isinstance(s[k], str) for k in ("provider", "reason"))
                   for s in res.get("providers_skipped") or []):
            raise bad(f"{where}.providers_skipped", "a list of {provider, reason} strings")
        for j, v in enumerate(res.get("samples_ms") or []):
            if not (positive(v) or v == 0):
                raise bad(f"{where}.samples_ms[{j}]", "a finite number of milliseconds >= 0", v)


def plan_model(path: str | os.PathLike, batch: int, seq_lens: tuple[int, ...]) -> InputPlan:
    """``path``'s input plan, after refusing (ConfigError naming the file) a batch or length it cannot take before
    any worker starts: its fixed input shapes (:meth:`InputPlan.check`), and a length longer than its position
    table (:func:`deploytool.inspection.check_position_table`, the check verify-arm64 and bundle make): ONNX
    Runtime would fail in the embeddings' Add with a broadcast error. Missing, non-ONNX, truncated, no input_ids:
    InputFileError."""
    from deploytool.inspection import check_position_table
    from deploytool.onnx_io import load_model

    plan = plan_inputs(path)
    plan.check(batch, seq_lens, str(path))
    check_position_table(load_model(path), seq_lens, str(path))  # its weights mapped, not read
    return plan


# -- workers ----------------------------------------------------------------------------------

def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # so the worker imports this same deploytool
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def _emulated(command: tuple[str, ...]) -> bool:
    """True when the worker's Python runs under a QEMU user-mode emulator."""
    return bool(command) and Path(command[0]).name.startswith("qemu-")


def _run_worker(request: dict[str, Any], *, on_progress: Callable[[int, str, int], None],
                timeout_s: float | None, pids: list[int] | None = None,
                python: tuple[str, ...] = ()) -> dict[str, Any]:
    with tempfile.TemporaryFile(mode="w+") as err:
        try:
            proc = subprocess.Popen([*(python or (sys.executable,)), "-m", "deploytool.bench.worker"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                    env=_worker_env())
        except OSError as e:  # e.g. an emulated aarch64 Python that cannot exec another one (ENOEXEC)
            raise DeployError(f"cannot start the benchmark worker ({e.strerror}: {e.filename}); under QEMU "
                              "user-mode give the emulator command (BenchConfig.worker_python, "
                              "DEPLOYTOOL_BENCH_PYTHON for the CLI)") from None
        if pids is not None:
            pids.append(proc.pid)
        timer = threading.Timer(timeout_s, proc.kill) if timeout_s else None
        if timer:
            timer.start()
        final: dict[str, Any] | None = None
        try:
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request))
                proc.stdin.close()
            except BrokenPipeError:  # the worker exited before reading it: said below, with its exit code
                pass
            for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    logger.debug("worker: %s", line.rstrip())
                    continue
                if msg.get("event") == "progress":
                    on_progress(int(msg["done"]), str(msg["phase"]), int(msg["seq_len"]))
                elif msg.get("event") in ("result", "error"):
                    final = msg
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if timer:
                timer.cancel()
        err.seek(0)
        stderr_tail = err.read()[-2000:]
    if final is None:
        if timer and rc in (-9, 137):
            raise DeployError(f"benchmark worker exceeded the {timeout_s:g} s timeout and was stopped")
        tail = " | ".join(stderr_tail.strip().splitlines()[-3:])
        if python:  # the user's command (QEMU user-mode), not deploytool's own worker: theirs to fix, one line
            import shlex

            raise DeployError(f"benchmark worker ({shlex.join(python)} -m deploytool.bench.worker) exited with code "
                              f"{rc} without a result{': ' + tail if tail else ''}")
        raise RuntimeError(f"benchmark worker exited with code {rc} without a result: {tail}")
    if final["event"] == "error":
        cls = getattr(errors, final.get("type", ""), None)
        if final.get("deploy_error") and isinstance(cls, type) and issubclass(cls, DeployError):
            raise cls(final["message"])
        raise RuntimeError(f"benchmark worker failed: {final.get('type')}: {final['message']}\n"
                           f"{final.get('traceback', '')}")
    if final.get("torch_loaded"):
        raise RuntimeError("torch was loaded in the benchmark worker; timings are not clean")
    return final


class SegmentWorker:
    """A benchmark worker kept alive between short timed segments (the worker's serve mode).

    ``config`` says what it holds: its models (validated as :func:`run_benchmark` does), session spec,
    thread pool and schedule. :meth:`segment` times ``runs`` runs per model at one sequence length and
    returns the samples; between segments the worker blocks on its input and uses no CPU, so several
    SegmentWorkers can take turns on the same cores: each model alone, then together, then alone
    again, and every segment can be compared with the ones next to it in time. Use as a context
    manager (or call :meth:`close`).
    """

    def __init__(self, config: BenchConfig) -> None:
        if not isinstance(config, BenchConfig):
            raise TypeError(f"SegmentWorker needs a BenchConfig, got {type(config).__name__}")
        plans = []
        for path in config.models:
            plans.append(plan_model(path, config.batch, config.seq_lens))
        self.config = config
        request = {"serve": True, "batch": config.batch, "seed": config.seed,
                   "spec": config.session_spec.to_dict(), "schedule": config.schedule.value,
                   "block_runs": config.block_runs, "prime_runs": config.primed_runs, "seq_lens": list(config.seq_lens),
                   "models": [{"path": str(p.resolve()), "plan": plan.to_dict()}
                              for p, plan in zip(config.models, plans)]}
        self._err = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen([*(config.worker_python or (sys.executable,)), "-m", "deploytool.bench.worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True,
                                      env=_worker_env())
        self.pid = self._proc.pid
        self.result: dict[str, Any] | None = None
        self.last_segment: dict[str, Any] = {}
        self._send(request)
        self.sessions = self._receive("ready")["sessions"]

    def _send(self, obj: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(obj) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:  # the worker is gone: its exit code and stderr, not the CLI's silent 'reader left' 141
            self._err.seek(0)
            tail = " | ".join(self._err.read().strip().splitlines()[-3:])
            raise RuntimeError(f"benchmark worker exited (code {self._proc.wait()}) before its request: {tail}") from None

    def _receive(self, event: str) -> dict[str, Any]:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("event") == event:
                return msg
            if msg.get("event") == "error":
                self._proc.kill()
                cls = getattr(errors, msg.get("type", ""), None)
                if msg.get("deploy_error") and isinstance(cls, type) and issubclass(cls, DeployError):
                    raise cls(msg["message"])
                raise RuntimeError(f"benchmark worker failed: {msg.get('type')}: {msg['message']}")
        self._err.seek(0)
        tail = " | ".join(self._err.read().strip().splitlines()[-3:])
        raise RuntimeError(f"benchmark worker exited (code {self._proc.wait()}) without {event!r}: {tail}")

    def segment(self, seq_len: int, runs: int, warmup: int = 2, *, schedule: str | None = None,
                block_runs: int | None = None, prime_runs: int | None = None) -> list[list[float]]:
        """``runs`` timed runs per model at ``seq_len`` after ``warmup`` untimed rounds: ms per model.
        ``schedule`` / ``block_runs`` / ``prime_runs``: this segment's, in place of the config's (one worker, one
        set of sessions, measured in several schedules one after another)."""
        from deploytool.errors import ConfigError

        if seq_len not in self.config.seq_lens:
            raise ConfigError(f"seq_len: {seq_len} is not one of this worker's {list(self.config.seq_lens)}")
        cmd: dict[str, Any] = {"cmd": "segment", "seq_len": int(seq_len), "runs": int(runs), "warmup": int(warmup)}
        if schedule is not None or block_runs is not None or prime_runs is not None:
            # the config's own validation, for this segment's fields
            c = dataclasses.replace(self.config, schedule=schedule or self.config.schedule,
                                    block_runs=self.config.block_runs if block_runs is None else block_runs,
                                    prime_runs=self.config.prime_runs if prime_runs is None else prime_runs)
            cmd.update(schedule=c.schedule.value, block_runs=c.block_runs, prime_runs=c.primed_runs)
        self._send(cmd)
        self.last_segment = self._receive("segment")  # with each run's start (started_ms) and the wall time
        return self.last_segment["latencies_ms"]

    def close(self) -> dict[str, Any] | None:
        """Stop the worker; its final record (sessions, memory), or None when it had already failed."""
        if self._proc.poll() is None:
            try:
                self._send({"cmd": "stop"})
                assert self._proc.stdin is not None
                self._proc.stdin.close()
                self.result = self._receive("result")
            except (OSError, RuntimeError, ValueError):
                self._proc.kill()
            self._proc.wait()
        self._err.close()
        return self.result

    def __enter__(self) -> SegmentWorker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _label(paths: tuple[Path, ...]) -> list[str]:
    stems = [p.stem for p in paths]
    return [s if stems.count(s) == 1 else str(p) for s, p in zip(stems, paths)]


def run_benchmark(config: BenchConfig, progress: ProgressCallback | None = None) -> BenchReport:
    """Benchmark ``config.models`` with ONNX Runtime in clean worker processes (see module doc)."""
    from deploytool.bench.config import BusyPolicy
    from deploytool.runtime import machine
    from deploytool.runtime.machine import BusyThresholds, LoadMonitor, busy_warnings, sample_load
    from deploytool.errors import ConfigError
    from deploytool.choices import require_callback
    from deploytool.passes.base import file_size
    from deploytool.onnx_io import check_external_data
    from deploytool.runtime.host_facts import host_info

    if not isinstance(config, BenchConfig):  # a DeployError like every other bad input, not a TypeError
        raise ConfigError(f"run_benchmark: config must be a BenchConfig, got {type(config).__name__}")
    require_callback(progress, "progress", "taking a ProgressEvent")
    plans: list[InputPlan] = []
    for path in config.models:
        plan = plan_model(path, config.batch, config.seq_lens)  # missing, non-ONNX, truncated, ... -> InputFileError
        check_external_data(path)  # one line, not ONNX Runtime's "External data path validation failed..."
        plans.append(plan)
    sizes = [file_size(p) for p in config.models]
    spec = config.session_spec
    threads = spec.intra_op_threads or 1
    waited = 0.0
    usable = machine.usable_cores()
    # before any wait: free cores never exceed the usable ones (--wait-quiet 600 waited 600 s for them, then refused)
    if config.busy is BusyPolicy.REFUSE and threads > usable:
        whose = f" (device profile {config.profile.name}'s)" if config.threads is None and config.profile else ""
        raise ConfigError(f"threads: {threads} intra-op threads{whose} but this process may use {usable} core(s) "
                          "(affinity/cgroup quota); the measurement would time contention, not the model (use "
                          f"--threads {usable}, or force the run: bench --force)")
    if config.wait_quiet_s > 0:
        before, waited = machine.wait_for_free_cores(min(threads, usable), timeout_s=config.wait_quiet_s)
    else:
        before = sample_load()
    if config.busy is BusyPolicy.REFUSE and before.free_cores is not None and threads > max(1, before.free_cores):
        la = f", load average {before.loadavg[0]:.2f}" if before.loadavg else ""
        after = f" after waiting {waited:.0f} s (--wait-quiet)" if waited > 0 else ""
        raise ConfigError(f"threads: {threads} thread(s) but only {before.free_cores} of {before.usable_cores} core(s) "
                          f"are free{after} ({before.other_runnable_mean:.1f} other runnable task(s){la}); wait for a "
                          "quiet machine, use fewer threads, or force the run (bench --force)")
    base = {"seq_lens": list(config.seq_lens), "batch": config.batch, "seed": config.seed,
            "spec": spec.to_dict(), "progress_interval_s": 0.1}
    entries = [{"path": str(p.resolve()), "plan": plan.to_dict()} for p, plan in zip(config.models, plans)]
    n_models, n_seq = len(entries), len(config.seq_lens)
    mem_warmup = max(1, min(config.warmup, _MEMORY_WARMUP))
    interleaved = n_models > 1
    total = n_seq * (config.warmup + config.runs) * n_models + (n_seq * mem_warmup * n_models if interleaved else 0)
    labels = _label(config.models)
    offset = 0

    def make_cb(desc: str) -> Callable[[int, str, int], None]:
        def cb(done: int, phase: str, seq: int) -> None:
            if progress is not None:
                progress(ProgressEvent(offset + done, total, "memory" if desc.startswith("memory") else phase,
                                       f"{desc} seq {seq}"))
        return cb

    if progress is not None:
        progress(ProgressEvent(0, total, "start", "starting worker"))
    memory: list[dict[str, Any]] = []
    if interleaved:
        for i, entry in enumerate(entries):
            req = dict(base, models=[entry], warmup=mem_warmup, runs=0)
            res = _run_worker(req, on_progress=make_cb(f"memory {labels[i]}"), timeout_s=config.timeout_s,
                              python=config.worker_python)
            memory.append(res)
            offset += n_seq * mem_warmup
    req = dict(base, models=entries, warmup=config.warmup, runs=config.runs, schedule=config.schedule.value,
               block_runs=config.block_runs, prime_runs=config.primed_runs)
    worker_pids: list[int] = []
    with LoadMonitor(exclude_pids=lambda: tuple(worker_pids)) as monitor:
        timing = _run_worker(req, on_progress=make_cb("timing" if interleaved else labels[0]),
                             timeout_s=config.timeout_s, pids=worker_pids,
                             python=config.worker_python)
    during = monitor.result()
    if progress is not None:
        progress(ProgressEvent(total, total, "done", "done"))
    if not interleaved:
        memory = [timing]

    models_info = []
    for i, path in enumerate(config.models):
        mem = memory[i]
        sess = mem["sessions"][0]
        models_info.append({
            "index": i,
            "path": str(path),
            "name": labels[i],
            "bytes": sizes[i],
            "vocab": plans[i].vocab,
            "vocab_source": plans[i].vocab_source,
            "inputs": [s.to_dict() for s in plans[i].inputs],
            "session": sess,
            "memory": mem["memory"],
            "memory_measured_alone": True,
            "variant": _variant_record(path),
        })
    results = []
    for seq in config.seq_lens:
        per_model = timing["latencies_ms"][str(seq)]
        ref = summarize(per_model[0])
        for i, samples in enumerate(per_model):
            st = summarize(samples)
            info = models_info[i]
            results.append(BenchResult(
                model=str(config.models[i]), name=labels[i], model_index=i, seq_len=seq, batch=config.batch,
                latency=st,
                throughput_seq_per_s=config.batch * 1000.0 / st.mean_ms if st.mean_ms > 0 else float("inf"),
                ratio_to_first=st.p50_ms / ref.p50_ms if ref.p50_ms > 0 else float("nan"),
                paired_ratio_to_first=paired_ratio(samples, per_model[0]),
                session_create_ms=float(info["session"]["create_ms"]),
                peak_rss_bytes=int(info["memory"]["peak_rss_bytes"]),
                baseline_rss_bytes=info["memory"]["baseline_rss_bytes"],
                model_bytes=sizes[i],
                providers=tuple(timing["sessions"][i]["providers"]),
                providers_skipped=tuple((s["provider"], s["reason"]) for s in timing["sessions"][i]["skipped"]),
                samples_ms=tuple(samples),
            ))
    worker = {
        "protocol": timing["protocol"],
        "python": timing["python"],
        "torch_loaded": bool(timing["torch_loaded"]) or any(m["torch_loaded"] for m in memory),
        "interleaved": interleaved,
        "processes": len(memory) + (1 if interleaved else 0),
        "memory_source": timing["memory"]["source"],
    }
    spreads = [(r.name, r.seq_len, (r.latency.p90_ms - r.latency.p50_ms) / r.latency.p50_ms)
               for r in results if r.latency.p50_ms > 0]
    warnings = busy_warnings(threads, before, during, spreads, BusyThresholds(spread=config.spread_warn))
    for w in warnings:  # the report carries them; the command prints them once, as "warning:" lines
        logger.info("%s", w)
    machine = {"before": before.to_dict(), "during": during.to_dict(),
               "spread_p90_over_p50": {f"{n}@{q}": round(v, 4) for n, q, v in spreads},
               "warnings": warnings, "busy": bool(warnings), "waited_for_free_cores_s": round(waited, 1)}
    host = dict(host_info())
    # timings of an emulated CPU are not device figures: the report and readers must be able to tell
    host["emulated"] = _emulated(config.worker_python)
    if host["emulated"]:  # the int8 kernel probe ran on this machine, not under the emulator
        host["int8_u8s8_exact"] = None
    return BenchReport(
        config=config, host=host, onnxruntime=timing["onnxruntime"],
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        worker=worker, models=tuple(models_info), results=tuple(results), machine=machine,
    )


def _variant_record(path) -> dict[str, Any] | None:
    """What the model is (source, width, depth, precision, pass chain), as its passes recorded it."""
    from deploytool.variant import file_variant

    v = file_variant(path)
    return v.to_dict() if v is not None else None
