"""Latency and memory benchmarks of ONNX models with ONNX Runtime, in clean worker processes.

Python API::

    from deploytool.bench import BenchConfig, run_benchmark, write_json
    report = run_benchmark(BenchConfig(models=["a.onnx", "b.onnx"], seq_lens=(8, 128), runs=100))
    write_json(report, "bench.json")

Each measurement runs in ``python -m deploytool.bench.worker`` (torch is never imported there; the
worker checks and the report records ``worker.torch_loaded: false``). Several models are timed
in turns (blocks of runs, each after untimed runs of its model; or run by run) in one worker, on
one shared ONNX Runtime thread pool, and compared with the first one; each model's session
creation time and peak memory come from a fresh worker of its own. A device profile plugs in as
``BenchConfig(..., spec=<SessionSpec>)``.

JSON schema ``deploytool.bench/1`` (what ``-o/--output`` writes and ``--json`` prints; ``load_report`` checks the version)::

    {
      "schema": "deploytool.bench/1",
      "created_utc": "2026-11-25T17:30:00+00:00",
      "onnxruntime": "1.32.0",                  # version the worker ran
      "host": {                                 # deploytool.runtime.host_facts.host_info()
        "cpu_model": str, "arch": "x86_64"|"aarch64"|..., "isa": {flag: bool, ...},
        "logical_cores": int, "usable_cores": int, "mem_total_bytes": int|null,
        "os": str, "python": str, "onnxruntime": str, "available_providers": [str],
        "cpu": {"arch", "vendor", "family", "model", "model_name",   # runtime.hardware.machine_identity():
                "core_types": [str]},            # every processor's core (Arm "CPU part"), for profile matching
        "emulated": bool                         # the worker ran under QEMU: never a device measurement
      },
      "remote": {"host", "work_dir", "python", "fetched_utc"},   # only from bench --remote (deploytool.remote)
      "config": {
        "models": [path], "seq_lens": [int], "batch": int, "threads": int (effective intra-op),
        "warmup": int, "runs": int, "seed": int, "schedule": "interleaved"|"blocks", "block_runs": int|null,
        "thread_pool": "shared"|"session", "busy": "warn"|"refuse", "profile": {...}|null,
        "session": SessionSpec.to_dict()         # providers [{name, options}], intra_op_threads,
      },                                         # inter_op_threads, graph_optimization, execution_mode,
                                                 # config_entries, strict, log_severity_level
      "profile": {"name", "path", "soc", "threads"} | null,   # the device profile the run was for
      "machine": {                              # deploytool.runtime.machine: was the machine busy?
        "before": LoadSample, "during": LoadSample,   # loadavg, other_runnable_mean/max, usable/free cores
        "spread_p90_over_p50": {"name@seq": float}, "warnings": [str], "busy": bool,
        "waited_for_free_cores_s": float
      },
      "worker": {"protocol": 1, "python": str, "torch_loaded": false, "interleaved": bool,
                 "processes": int, "memory_source": "VmHWM"|"ru_maxrss"},
      "models": [{                               # one per model, in the order given
        "index": int, "path": str, "name": str (file stem, or path if stems clash), "bytes": int,
        "vocab": int, "vocab_source": initializer name | "default",
        "inputs": [{"name", "dtype", "shape", "kind": ids|ones|zeros|normal, "high"}],
        "session": {"model", "requested": [EP], "providers": [EP that ran, ORT order],
                    "skipped": [{"provider", "reason"}], "create_ms": float, "spec": {...},
                    "notes": [str]},
        "memory": {"baseline_rss_bytes": int|null (RSS before the session), "peak_rss_bytes": int,
                   "source": "VmHWM"|"ru_maxrss"},
        "memory_measured_alone": true,
        "variant": {"source", "width", "depth", "precision", "chain", "label"}|null  # deploytool.variant
      }],
      "results": [{                              # one per (seq_len, model), seq_lens outer
        "model": str, "name": str, "model_index": int, "seq_len": int, "batch": int,
        "latency_ms": {"n", "mean_ms", "std_ms" (ddof 1), "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"},
        "throughput_seq_per_s": float,           # batch / mean latency
        "ratio_to_first": float,                 # p50 / p50 of model 0 at this seq_len (1.0 for model 0)
        "paired_ratio_to_first": float,          # median of run-by-run ratios to model 0
        "session_create_ms": float, "peak_rss_bytes": int, "baseline_rss_bytes": int|null,
        "model_bytes": int,                      # file plus external data
        "providers": [EP that ran], "providers_skipped": [{"provider", "reason"}],
        "samples_ms": [float]                    # every timed run, in order
      }]
    }

Fields are only ever added within one schema version; a rename or removal bumps it.
"""

from deploytool.bench.config import BenchConfig, parse_seq_lens
from deploytool.bench.runner import (
    SCHEMA,
    BenchReport,
    BenchResult,
    ProgressEvent,
    load_report,
    run_benchmark,
    write_json,
)
from deploytool.bench.stats import LatencyStats, summarize

__all__ = [
    "SCHEMA",
    "BenchConfig",
    "BenchReport",
    "BenchResult",
    "LatencyStats",
    "ProgressEvent",
    "load_report",
    "parse_seq_lens",
    "run_benchmark",
    "summarize",
    "write_json",
]
