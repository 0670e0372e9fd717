"""The one ``"run"`` block every benchmark writes into its results JSON: when, on what, under what load, by which code.

A benchmark calls :func:`stamp` twice::

    from _stamp import stamp          # beside the benchmark scripts
    run = stamp()                     # first thing in main(): start time, load, machine, code
    ...                               # the measurements
    report["run"] = stamp(run)        # just before writing: end time, wall, load at the end

The block (``STAMP_VERSION`` 1)::

    started_utc, finished_utc, wall_s
    cpu: model_name, vendor, family, model, stepping, microarchitecture (the core type), features, arch
    cores: logical, usable (affinity and cgroup quota)      memory_bytes: total, available_at_start
    load_average_start, load_average_end: [1 min, 5 min, 15 min]
    versions: python and the installed numpy/onnx/onnxruntime/torch/... (package metadata, nothing imported);
              imported: which of those this process had imported by the end (others ran in subprocesses)
    code: git commit, dirty (tracked files changed outside benchmarks/results and README.md), dirty_paths
    command: the command line;  sitting: the sitting id (``benchmarks/sitting.py`` sets DEPLOYTOOL_SITTING)

The machine is read through ``deploytool.runtime.host.detect_host`` (no onnxruntime import); where
deploytool cannot be imported the block says so and keeps what ``platform`` knows. Nothing here
reads the network or changes any file.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP_VERSION = 1
SITTING_ENV = "DEPLOYTOOL_SITTING"
PACKAGES = ("numpy", "onnx", "onnxruntime", "torch", "transformers", "onnx-ir", "onnxscript", "optimum",
            "optimum-onnx", "onnxruntime-qnn", "deploytool")
# the paths a sitting itself rewrites: changes there do not make the measured code "dirty"
_NOT_CODE = ("benchmarks/results", "README.md")


def _utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


PAGE_REPORTING = Path("/sys/module/page_reporting/parameters")


def _page_reporting(folder: Path | None = None) -> dict | None:
    """The guest kernel's free page reporting (a VM handing freed memory back to its host, which faults it in
    again, slowly, when the guest next touches it): its parameters as the kernel shows them (numbers as
    ints, Y/N as booleans), ``reported_kib`` the total handed back since boot; None where there is none."""
    folder = PAGE_REPORTING if folder is None else folder
    if not folder.is_dir():
        return None
    out: dict = {}
    for f in sorted(folder.iterdir()):
        try:
            text = f.read_text().strip()
        except OSError:
            continue
        out[f.name] = True if text == "Y" else False if text == "N" else int(text) if text.lstrip("-").isdigit() else text
    return out


def _machine() -> dict:
    try:
        from deploytool.runtime.host import detect_host

        h = detect_host()
    except Exception as e:  # a stamp never stops a benchmark; it says what it could not read
        return {"cpu": {"model_name": platform.processor() or "not recorded", "arch": platform.machine(),
                        "error": f"{type(e).__name__}: {e}"},
                "cores": {"logical": os.cpu_count(), "usable": len(os.sched_getaffinity(0))},
                "memory_bytes": {"total": None, "available_at_start": _mem_available()}}
    return {"cpu": {"model_name": h.model_name, "vendor": h.vendor, "family": h.family, "model": h.model,
                    "stepping": h.stepping, "microarchitecture": h.microarchitecture, "features": list(h.features),
                    "arch": h.arch, "max_ghz": h.max_ghz},
            "cores": {"logical": h.logical_cores, "usable": h.usable_cores, "cgroup_quota": h.cgroup_cpu_quota},
            "memory_bytes": {"total": h.memory_bytes, "available_at_start": _mem_available()}}


def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def _code() -> dict:
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "note": "not a git checkout (or git missing)"}
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                  *(f":(exclude){p}" for p in _NOT_CODE)) or ""
    paths = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit.strip(), "dirty": bool(paths), "dirty_paths": paths[:20]}


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def stamp(started: dict | None = None, *, argv: list[str] | None = None) -> dict:
    """The ``run`` block: call with nothing at the start, with what it returned at the end.

    At the start it records the time, the load, the machine, the code and the command line; at the
    end it returns a new dict with ``finished_utc``, ``wall_s``, ``load_average_end`` and the versions
    added (the start block is not modified).
    """
    if started is None:
        return {"stamp_version": STAMP_VERSION, "started_utc": _utc(), "_t0": time.monotonic(),
                "load_average_start": _load(), **_machine(), "page_reporting": _page_reporting(), "code": _code(),
                "command": [Path(sys.executable).name, *(sys.argv if argv is None else argv)],
                "sitting": os.environ.get(SITTING_ENV) or None}
    if "_t0" not in started:
        raise ValueError("stamp(started): pass the block stamp() returned at the start (it has no start time)")
    out = {k: v for k, v in started.items() if k != "_t0"}
    out["finished_utc"] = _utc()
    out["wall_s"] = round(time.monotonic() - started["_t0"], 1)
    out["load_average_end"] = _load()
    reporting = _page_reporting()
    if reporting is not None and isinstance((started.get("page_reporting") or {}).get("reported_kib"), int) \
            and isinstance(reporting.get("reported_kib"), int):
        # memory this VM handed back to its host while the benchmark ran: touched again, it faults in slowly
        out["page_reporting_kib_during_run"] = reporting["reported_kib"] - started["page_reporting"]["reported_kib"]
    out["versions"] = _versions()
    out["versions"]["imported"] = sorted(m for m in ("numpy", "onnx", "onnxruntime", "torch", "transformers", "onnx_ir")
                                         if m in sys.modules)
    order = ["stamp_version", "sitting", "started_utc", "finished_utc", "wall_s", "load_average_start",
             "load_average_end", "cpu", "cores", "memory_bytes", "versions", "code", "command"]
    return {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}


def write_results(path: Path, report: dict, started: dict) -> None:
    """``report`` with its ``run`` block (:func:`stamp` of ``started``) written as JSON to ``path``, and said."""
    import json

    report["run"] = stamp(started)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")
