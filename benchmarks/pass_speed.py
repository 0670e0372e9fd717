"""Passes at file speed: every pass on a BERT-base-shaped file against the time to copy that file.

The model: a random ``BertModel`` of BERT-base's shape (12 layers x 768, 12 heads, FFN 3072, vocab
30522, pooler; ~437.9 MB fp32), exported once by ``deploytool.export.export_loaded`` (TorchScript
exporter, validated against PyTorch), a self-contained .onnx file as an export leaves it.

Then, with the file in the page cache (as right after an export; it is read once first): the time to
copy it with ``cp`` (each in its own process, the copy deleted after each: 3 times, then once more at the start
of every further round), and each pass
(slice, prune-heads, prune-ffn, reorder, int8, fp16, pack ternary; pack densest, binary and split-binary) through the public file API
``deploytool.passes.transform`` in a fresh Python process (``_pass_worker.py``: it imports what a user's script for
that one pass imports, not this harness): the process's wall time as the driver
sees it (interpreter start and imports included), the pass's own time inside it, its peak resident
set (VmHWM: the whole process), and the verification gate: inputs over 50 MB run it in a process of
its own whose peak is reported beside the pass's (``gate_peak_rss_bytes``), never hidden. Last, a
chained ``slice`` then ``pack`` (two processes, the second on the first's output) against the sum of
the two single passes.

Every pass runs ``--repeats`` times (5 by default) in rounds: each round runs every pass once, in the same
order, so a slow spell of the shared machine falls on all of them and on the copy alike (on a 2-core VM the
same pass in a fresh process was seen to take 0.4-0.9 s from one run to the next). Each row is the run with
the median process wall; ``repeats`` beside it holds every run's wall, pass, gate and import seconds.

The ratio to the copy is paired: right before every pass and every command, one more cp of the file is timed
(its copy kept until the step has run), and ``time_over_copy`` is the median over the rounds of the step's
wall over that cp. This project's VMs have slow spells: cp of the same file took 0.11 s and 0.6-1.1 s
in one sitting, and passes that write from their own memory or allocate much of it (the gate's fp16 session)
slowed 1.5-3x in later rounds while cp stayed at 0.11 s; a median wall over a median cp taken at other moments
compares a pass in one state with the copy in another. ``time_over_median_copy`` keeps that older basis
beside it, and ``time_over_copy_best`` (the fastest run over the fastest cp of the sitting) shows the
quietest moments. Before
every timed step (a copy, a pass, a command) the driver runs ``sync``, untimed, so that no step pays for the
writeback of the files earlier steps wrote.

``cli``: each pass as a user runs it, the ``deploytool`` command with the same settings (fp16 with the
command's default, which also counts the casts ONNX Runtime inserts on this host), timed in the same rounds
right after the library row (``--no-cli`` skips them).

The gate's process starts with the pass (imports ONNX Runtime and, for reorder, int8, fp16 and pack, runs
the reference while the pass runs); ``gate_s`` is what is left once the output is written, and
``gate_reference_reused`` says whether the reference computed early was used. The output's session there runs
on every core (the pass's process only waits by then), and for fp16 and int8 the process has first touched the
memory ONNX Runtime allocates for the output's weights while it waited (``gate_warmed_bytes``); each run's
``stats.gate_timeline`` holds the steps of that process, in seconds from the moment the output was written. Two more sections measure
what the gate costs: ``gate_sessions``, an ONNX Runtime session of the input as the gate makes it (1
thread, one run on the gate's batch) under other session options, each 3 times in a fresh process (import,
creation, run, peak RSS, outputs equal to the default's); and ``imports``, ``python -X importtime`` of
what a pass process imports (the pass table; ``deploytool slice --help``), by top-level package.

``--passes int8-native,int8-ort`` adds rows for the int8 pass with each engine
(``Int8Config(engine=...)``: deploytool's streaming writer, ORT's optimizer + quantizer); they run only
when named.

Goals (issue #17 item 1): each pass's process wall <= 8x the copy, its peak RSS <= 1.5x the file, the
chain within the sum of its parts. The JSON says for each whether it holds and by how much.

Each run is also compared with the last committed results file (``speed_check.py``; ``--check-against REV``,
``none`` to skip): a pass whose ratio to the copy rose by more than 15% with every round above the base's
median, whose peak RSS rose, or that fails now is listed under ``regression_check.regressed`` and printed.

Usage: ``.venv/bin/python benchmarks/pass_speed.py [-o benchmarks/results/pass_speed.json]
[--work DIR] [--passes slice,pack,...] [--model PATH] [--no-chain] [--no-sessions] [--no-imports]
[--check-against REV]``.
``--model`` skips the export and uses that file. Each round ends with the passes' peers (``--no-peers``: skip
them): the same file loaded whole and saved again by ``onnx.load`` + ``onnx.save`` and by onnx_ir's ``load`` +
``save`` in a fresh process, each over a cp timed right before it (``peers``: wall, ratio, peak RSS). The machine is shared: the load average is recorded before and after every step.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _pass_worker import HEADS  # beside this script: the one-pass process the rows time
from _stamp import stamp  # beside this script: the results file's "run" block
import speed_check  # beside this script: each run against the last committed one

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results" / "pass_speed.json"

PASSES = ("slice", "prune-heads", "prune-ffn", "reorder", "int8", "fp16", "pack", "pack-densest", "pack-binary",
          "pack-split-binary")
# rows run only when named in --passes: the int8 pass with each engine (deploytool's streaming writer, ORT's)
OPTIONAL = ("int8-native", "int8-ort")
TIME_GOAL = 8.0  # process wall over the copy time
RSS_GOAL = 1.5  # peak RSS over the input file


CONFIG_TEXT = {
    "slice": "SliceConfig(width=0.5, depth=1.0)",
    "prune-heads": f"HeadPruneConfig(heads={HEADS})",
    "prune-ffn": "FFNPruneConfig(keep=0.5)",
    "reorder": "ReorderConfig()  # weight magnitude",
    "int8": "Int8Config()",
    "int8-native": "Int8Config(engine='native')",
    "int8-ort": "Int8Config(engine='ort')",
    "fp16": "Fp16Config(check_host=False)",
    "pack": "PackConfig(weights='ternary')  # runtime speed: INT2, opset 17 -> 25",
    "pack-densest": "PackConfig(weights='ternary', runtime='densest')  # 5 trits per byte, lookup unpack",
    "pack-binary": "PackConfig(weights='binary')  # 1 bit per weight, lookup unpack",
    "pack-split-binary": "PackConfig(weights='split-binary')  # two 1-bit planes (BinaryBERT TWS)",
}


# each pass as a user runs it: the `deploytool` command with the same settings as the library row (fp16 with the
# command's default, which also counts the casts ONNX Runtime inserts on this host: Fp16Config(check_host=True))
CLI = {
    "slice": ["slice", "{src}", "--width", "0.5", "--depth", "1", "-o", "{dst}"],
    "prune-heads": ["prune-heads", "{src}", "--heads", ";".join(f"{k}:{','.join(map(str, v))}" for k, v in HEADS.items()),
                    "-o", "{dst}"],
    "prune-ffn": ["prune-ffn", "{src}", "--keep", "0.5", "-o", "{dst}"],
    "reorder": ["reorder", "{src}", "-o", "{dst}"],
    "int8": ["quantize", "{src}", "--int8", "-o", "{dst}"],
    "fp16": ["quantize", "{src}", "--fp16", "-o", "{dst}"],
    "pack": ["pack", "{src}", "--weights", "ternary", "-o", "{dst}"],
    "pack-densest": ["pack", "{src}", "--weights", "ternary", "--runtime", "densest", "-o", "{dst}"],
    "pack-binary": ["pack", "{src}", "--weights", "binary", "-o", "{dst}"],
    "pack-split-binary": ["pack", "{src}", "--weights", "split-binary", "-o", "{dst}"],
}


# pass and command processes run with deploytool's bytecode cached, as after a pip install (pip compiles what it
# installs): an environment that sets PYTHONDONTWRITEBYTECODE (this project's machines do) would otherwise make
# every process recompile deploytool's sources, ~30 ms of each process here; main() compiles them once first
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _compile_bytecode() -> dict:
    """Compile deploytool's sources to bytecode once (``__pycache__``, ignored by git)."""
    import compileall

    t0 = time.perf_counter()
    ok = compileall.compile_dir(str(REPO / "deploytool"), quiet=1)
    return {"bytecode": "cached (compileall before the rounds)", "ok": bool(ok),
            "seconds": round(time.perf_counter() - t0, 2),
            "environment_had_PYTHONDONTWRITEBYTECODE": "PYTHONDONTWRITEBYTECODE" in os.environ}


def _cli(name: str, src: Path, dst: Path) -> dict:
    """The pass's `deploytool` command in a fresh process: its wall time and exit status."""
    exe = Path(sys.executable).with_name("deploytool")
    argv = [str(exe) if exe.exists() else sys.executable] + ([] if exe.exists() else ["-m", "deploytool"])
    argv += [a.format(src=src, dst=dst) for a in CLI[name]]
    _quiet_disk()
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, cwd=str(REPO), env=_ENV)
    wall = time.perf_counter() - t0
    out = {"ok": p.returncode == 0, "process_wall_s": round(wall, 2), "exit": p.returncode}
    if p.returncode:
        out["error"] = " | ".join((p.stderr or p.stdout).strip().splitlines()[-2:])[:400]
    return out


def _peak_rss() -> int:
    from deploytool.runtime.procstat import peak_rss_bytes

    return peak_rss_bytes()


# ----------------------------------------------------------------------------------------- workers

def worker_export(spec: dict) -> dict:
    import torch
    import transformers as tr

    from deploytool.export import ExportConfig, export_loaded

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = tr.BertModel(tr.BertConfig(attn_implementation="eager")).eval()  # BERT-base shape, pooler
    with torch.no_grad():  # non-zero biases/LayerNorms like a trained model
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    t0 = time.perf_counter()
    res = export_loaded(model, spec["dst"], ExportConfig(model="random-bert-base", exporter="torch"))
    return {"export_s": round(time.perf_counter() - t0, 1), "bytes": Path(spec["dst"]).stat().st_size,
            "max_abs_diff_vs_pytorch": max(res.max_abs_diff.values()),
            "params": sum(p.numel() for p in model.parameters())}


def bert_feeds(sess, shape: tuple[int, int]) -> dict:
    """A fixed batch for a BERT-shaped session: random ids below BERT's vocabulary, mask 1, other inputs 0."""
    import numpy as np

    rng = np.random.default_rng(0)
    feeds = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = rng.integers(0, 30522, size=shape).astype(np.int64)
        else:
            feeds[i.name] = (np.ones if i.name == "attention_mask" else np.zeros)(shape, np.int64)
    return feeds


def worker_session(spec: dict) -> dict:
    """One ONNX Runtime session of ``spec["path"]`` in this fresh process, as the gate makes it (1 thread,
    then one run on the gate's batch) with the session options of ``spec``: import, creation, run, peak RSS."""
    t0 = time.perf_counter()
    import numpy as np
    import onnxruntime as ort

    t_import = time.perf_counter() - t0
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(spec.get("threads", 1))
    so.inter_op_num_threads = 1
    so.log_severity_level = 4
    for k, v in spec.get("config", {}).items():
        so.add_session_config_entry(k, v)
    if spec.get("opt_level"):
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, spec["opt_level"])
    t1 = time.perf_counter()
    model = Path(spec["path"]).read_bytes() if spec.get("from_bytes") else spec["path"]
    sess = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
    del model
    t_create = time.perf_counter() - t1
    feeds = bert_feeds(sess, (2, 8))
    t2 = time.perf_counter()
    outs = sess.run(None, feeds)
    t_run = time.perf_counter() - t2
    return {"ok": True, "import_s": round(t_import, 3), "create_s": round(t_create, 3), "run_s": round(t_run, 3),
            "peak_rss_bytes": _peak_rss(), "checksum": float(sum(float(np.abs(o).sum()) for o in outs))}

def worker_external(spec: dict) -> dict:
    """The model saved again with its weights in one external-data file (4 KiB aligned: ORT can map it)."""
    from deploytool import onnx_io

    onnx_io.save_streamed(onnx_io.load_model(spec["src"]), spec["dst"], external=True)
    return {"ok": True}


# A peer of the passes, in a lean fresh process (``python -c``: nothing of this harness imported, as the passes'
# own worker): the model loaded whole and saved again, as a script without deploytool would; prints the seconds
# from before the import and the peak RSS (VmHWM)
_PEER = """
import json, sys, time
spec = json.loads(sys.argv[1])
t0 = time.perf_counter()
if spec["peer"] == "onnx":
    import onnx
    onnx.save(onnx.load(spec["src"]), spec["dst"])
else:
    import onnx_ir as ir
    ir.save(ir.load(spec["src"]), spec["dst"])
hwm = next(int(ln.split()[1]) * 1024 for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print(json.dumps({"ok": True, "seconds": round(time.perf_counter() - t0, 2), "peak_rss_bytes": hwm}), flush=True)
"""

WORKERS = {"export": worker_export, "session": worker_session, "external": worker_external}
# what a user without deploytool would run on the same file (issue #17 item 5: each pass beside its peer)
PEERS = {"onnx.load+onnx.save": "onnx", "onnx_ir.load+onnx_ir.save": "onnx_ir"}


# ----------------------------------------------------------------------------------------- driver

def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _quiet_disk() -> None:
    """Write back what earlier steps left dirty before the next timed step (not timed): 5 rounds of 14 passes
    write ~20 GB, and once the kernel's writeback of it started, `cp` of the same file went from 0.11 s to
    0.59 s and passes slowed alike; one user's one pass starts with none of it pending."""
    os.sync()


def bert_base_run(doc: str, results: Path, prefix: str):
    """The command line of a benchmark measured on the BERT-base file (``-o``, ``--model``, ``--work``,
    ``--repeats``), parsed, the run's start stamped, the scratch folder made and the model found or exported:
    returns ``(args, started, work, src, model_info)``. A missing ``--model`` is a one-line error (exit 2)."""
    import argparse

    from _stamp import stamp

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=results)
    ap.add_argument("--model", type=Path, help="a BERT-base-shaped .onnx (default: export one, as pass_speed.py does)")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.model is not None and not args.model.is_file():
        ap.error(f"--model {args.model}: no such file")
    started = stamp()
    work = args.work or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    src, info = bert_base_file(args.model, work)
    return args, started, work, src, info


def bert_base_file(model: Path | None, work: Path) -> tuple[Path, dict]:
    """``model``, or this benchmark's BERT-base-shaped export made in ``work`` (once: kept there), and what is
    known of it (the export's report, path and bytes): the model of the benchmarks that measure the same file."""
    info: dict = {}
    src = model
    if src is None:
        src = work / "bert-base.onnx"
        if not src.exists():
            info = _spawn("export", {"dst": str(src)})
            if not info.get("ok", True) or not src.exists():
                raise SystemExit(f"export failed: {info.get('error')}")
    info.update({"path": str(src), "bytes": src.stat().st_size})
    return src, info


def _spawn(kind: str, spec: dict) -> dict:
    _quiet_disk()
    t0 = time.perf_counter()
    # a pass runs in _pass_worker.py, which imports what a user's one-pass script does; other workers here
    argv = ([str(ROOT / "_pass_worker.py"), json.dumps(spec)] if kind == "pass"
            else ["-c", _PEER, json.dumps(spec)] if kind == "peer"
            else [str(Path(__file__).resolve()), "--_worker", kind, json.dumps(spec)])
    p = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=str(REPO), env=_ENV)
    wall = time.perf_counter() - t0
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith("{")), None)
    if p.returncode != 0 or line is None:
        tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])[:600]
        out = {"ok": False, "error": f"worker {kind} exited {p.returncode}: {tail}"}
    else:
        out = json.loads(line)
    out["process_wall_s"] = round(wall, 2)
    out["load_average_after"] = _load()
    return out


def _median_run(runs: list[dict]) -> dict:
    """The run with the median process wall (the slower of the middle two for an even count; a failure wins if
    any failed), with every run's times beside it under ``repeats``."""
    failed = [r for r in runs if not r.get("ok")]
    if failed:
        out = dict(failed[0])
    else:
        ordered = sorted(runs, key=lambda r: r["process_wall_s"])
        out = dict(ordered[len(ordered) // 2])  # an even count takes the slower middle run
    out["repeats"] = {"n": len(runs), "ok": len(runs) - len(failed),
                      "process_wall_s": [r.get("process_wall_s") for r in runs],
                      "pass_s": [r.get("pass_s") for r in runs],
                      "gate_s": [(r.get("stats") or {}).get("verify_s") for r in runs],
                      "imports_s": [r.get("imports_s") for r in runs]}
    return out


def _read_through(path: Path) -> None:
    """Read the whole file once so it sits in the page cache (as right after an export)."""
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def _timed_cp(src: Path, dst: Path) -> float:
    """Seconds of one ``cp src dst`` in its own process, ``sync`` first (untimed)."""
    _quiet_disk()
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    return time.perf_counter() - t0


def _copy_time(src: Path, work: Path, n: int = 3) -> dict:
    times = []
    for i in range(n):
        dst = work / f"copy{i}.onnx"
        times.append(_timed_cp(src, dst))
        dst.unlink()
    return {"cp_s": [round(t, 3) for t in times], "cp_median_s": round(statistics.median(times), 3)}


def _paired_copy(src: Path, work: Path) -> float:
    """One cp of ``src`` timed right before a pass or command (``sync`` first, untimed), its copy left in place
    until that step has run (deleting it first would hand the step the pages it just freed): the pass's
    wall over this cp is a ratio of two times measured in the same state of the machine."""
    return round(_timed_cp(src, work / "paired-copy.onnx"), 3)


def _paired_ratio(runs: list[dict]) -> tuple[float | None, list[float | None]]:
    """The median over the runs of wall / the cp timed just before it, and every run's ratio."""
    ratios = [round(r["process_wall_s"] / r["cp_paired_s"], 2) if r.get("ok", True) and r.get("cp_paired_s") else None
              for r in runs]
    good = [x for x in ratios if x is not None]
    return (round(statistics.median(good), 1) if good else None), ratios


def _outputs_bytes(dst: Path) -> int:
    """The output file plus the external-data files it names (parsed without the data)."""
    from deploytool.passes.base import file_size

    return file_size(dst)


def _host() -> dict:
    cpu = ""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    family = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("cpu family")), None)
    import ml_dtypes
    import numpy
    import onnx
    import onnx_ir
    import onnxruntime

    return {"cpu_model": cpu, "cpu_family": family, "arch": platform.machine(), "logical_cores": os.cpu_count(),
            "avx512_vnni": "avx512_vnni" in flags, "amx_int8": "amx_int8" in flags,
            "mem_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "versions": {"onnx": onnx.__version__, "onnx-ir": onnx_ir.__version__,
                         "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__,
                         "ml_dtypes": ml_dtypes.__version__}}


# the gate's session of the input model under other options (issue #17 item 2): name -> worker spec
SESSION_CONFIGS = {
    "default": {},
    "disable_prepacking": {"config": {"session.disable_prepacking": "1"}},
    "no_device_allocator_for_initializers": {"config": {"session.use_device_allocator_for_initializers": "0"}},
    "use_env_allocators": {"config": {"session.use_env_allocators": "1"}},
    "from_bytes": {"from_bytes": True},
    "prepack_parallel_2_threads": {"config": {"session.prepack.enable_parallel": "1"}, "threads": 2},
    "graph_optimization_basic": {"opt_level": "ORT_ENABLE_BASIC"},
    "external_data": {"external": True},
    "external_data+disable_prepacking": {"external": True, "config": {"session.disable_prepacking": "1"}},
}


def _sessions(src: Path, work: Path, log, repeats: int = 3) -> dict:
    """Each of :data:`SESSION_CONFIGS` ``repeats`` times, round robin, each in a fresh process."""
    ext = work / "external.onnx"
    r = _spawn("external", {"src": str(src), "dst": str(ext)})
    if not r.get("ok"):
        return {"error": r.get("error")}
    runs: dict[str, list[dict]] = {name: [] for name in SESSION_CONFIGS}
    for i in range(repeats):
        for name, spec in SESSION_CONFIGS.items():
            path = ext if spec.get("external") else src
            _read_through(path)
            runs[name].append(_spawn("session", {**spec, "path": str(path)}))
        log(f"  sessions round {i + 1}/{repeats}")
    for f in work.glob("external.onnx*"):
        f.unlink()
    out = {}
    for name, rs in runs.items():
        ok = [x for x in rs if x.get("ok")]
        if not ok:
            out[name] = {"error": rs[0].get("error")}
            continue
        med = {k: round(statistics.median(x[k] for x in ok), 3) for k in ("import_s", "create_s", "run_s")}
        out[name] = {**SESSION_CONFIGS[name], **med, "create_s_all": [x["create_s"] for x in ok],
                     "peak_rss_bytes": int(statistics.median(x["peak_rss_bytes"] for x in ok)),
                     "peak_rss_over_file": round(statistics.median(x["peak_rss_bytes"] for x in ok)
                                                 / src.stat().st_size, 2),
                     "same_outputs_as_default": None}
    base = out.get("default", {})
    base_sum = next((x["checksum"] for x in runs["default"] if x.get("ok")), None)
    for name, rs in runs.items():
        sums = [x["checksum"] for x in rs if x.get("ok")]
        if sums and base_sum is not None:
            out[name]["same_outputs_as_default"] = all(abs(s - base_sum) <= 1e-4 * max(1.0, abs(base_sum)) for s in sums)
        if "create_s" in out[name] and base.get("create_s"):
            out[name]["create_over_default"] = round(out[name]["create_s"] / base["create_s"], 2)
    return out


def _import_profile() -> dict:
    """``python -X importtime`` of what a pass process imports (the pass table, the CLI's ``slice --help``):
    the total and the ten top-level packages with the most import time of their own."""
    out = {}
    for what, args in (("passes", ["-c", "import deploytool.passes as p; p.pass_table()"]),
                       ("cli_slice_help", ["-m", "deploytool", "slice", "--help"])):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                               cwd=str(REPO))
            times.append((time.perf_counter() - t0, p))
        wall, p = sorted(times, key=lambda t: t[0])[1]  # the median run
        per: dict[str, int] = {}
        for line in p.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            try:
                self_us, _cum, name = (x.strip() for x in line[len("import time:"):].split("|"))
                per[name.strip().split(".")[0]] = per.get(name.strip().split(".")[0], 0) + int(self_us)
            except ValueError:
                continue
        top = sorted(per.items(), key=lambda kv: -kv[1])[:10]
        out[what] = {"process_wall_s": round(wall, 2), "exit": p.returncode,
                     "imports_s": round(sum(per.values()) / 1e6, 2),
                     "top_packages_s": {k: round(v / 1e6, 3) for k, v in top}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(RESULTS))
    ap.add_argument("--work", default=None)
    ap.add_argument("--passes", default=",".join(PASSES))
    ap.add_argument("--model", default=None, help="an existing BERT-base-shaped .onnx (skips the export)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="rounds: each pass runs this many times (each in a fresh process, passes interleaved); "
                         "the row reported is the run with the median process wall, every run's times beside it")
    ap.add_argument("--no-chain", action="store_true")
    ap.add_argument("--no-cli", action="store_true", help="skip the `deploytool` command rows")
    ap.add_argument("--no-sessions", action="store_true", help="skip the gate session options section")
    ap.add_argument("--no-imports", action="store_true", help="skip the import profile section")
    ap.add_argument("--no-peers", action="store_true",
                    help="skip the peer rows (onnx.load + onnx.save, onnx_ir.load + onnx_ir.save, once a round)")
    ap.add_argument("--check-against", default="HEAD", metavar="REV",
                    help="compare each pass with this git revision's results file (speed_check.py; 'none': "
                         "skip) [default: HEAD, the last committed run]")
    ap.add_argument("--_worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        kind, spec = args._worker
        print(json.dumps(WORKERS[kind](json.loads(spec))), flush=True)
        return
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be 1 or more; got {args.repeats}")
    run = stamp()
    # read before this run can overwrite it
    baseline = None if args.check_against == "none" else speed_check.committed(args.check_against)
    passes = [p for p in args.passes.split(",") if p]
    unknown = [p for p in passes if p not in PASSES + OPTIONAL]
    if unknown:
        raise SystemExit(f"unknown pass(es) {unknown}; choose from {', '.join(PASSES + OPTIONAL)}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="pass_speed-"))
    work.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    result: dict = {"created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "host": _host(), "load_average_start": _load()}
    if args.model:
        src = Path(args.model)
        result["model"] = {"path": "given", "bytes": src.stat().st_size}
    else:
        src = work / "bert-base.onnx"
        log("export")
        result["model"] = _spawn("export", {"dst": str(src)})
    in_bytes = src.stat().st_size
    result["model"]["bytes"] = in_bytes
    result["bytecode"] = _compile_bytecode()
    _read_through(src)
    log("copy")
    copy = _copy_time(src, work)
    result["copy"] = copy
    result["rounds"] = args.repeats
    cp = copy["cp_median_s"]
    mtime = src.stat().st_mtime_ns
    rows = {}
    runs: dict[str, list[dict]] = {name: [] for name in passes}
    cli_runs: dict[str, list[dict]] = {name: [] for name in passes if name in CLI}
    peer_runs: dict[str, list[dict]] = {} if args.no_peers else {name: [] for name in PEERS}
    cp_times = list(copy["cp_s"])
    # rounds: every pass once per round, in the same order, each round starting with one more cp of the
    # file, so that a slow spell of this shared VM falls on every pass and on the copy alike
    for rnd in range(args.repeats):
        _read_through(src)
        if rnd:
            cp_times += _copy_time(src, work, n=1)["cp_s"]
        for name in passes:
            dst = work / f"{name}.onnx"
            _read_through(src)
            log(f"pass {name} (round {rnd + 1} of {args.repeats})")
            paired = _paired_copy(src, work)
            r = _spawn("pass", {"pass": name, "src": str(src), "dst": str(dst)})
            r["cp_paired_s"] = paired
            (work / "paired-copy.onnx").unlink()
            if r.get("ok"):
                r["output_bytes"] = _outputs_bytes(dst)
            runs[name].append(r)
            log(f"  {name}: {r.get('process_wall_s')} s, peak {r.get('peak_rss_bytes', 0) / 1e9:.2f} GB "
                f"{'' if r.get('ok') else 'FAILED ' + r.get('error', '')}")
            keep_slice = name == "slice" and not args.no_chain and rnd == args.repeats - 1
            if not keep_slice:
                for f in work.glob(f"{name}.onnx*"):
                    f.unlink()
            if not args.no_cli and name in CLI:
                _read_through(src)
                paired = _paired_copy(src, work)
                c = _cli(name, src, work / f"cli-{name}.onnx")
                c["cp_paired_s"] = paired
                (work / "paired-copy.onnx").unlink()
                cli_runs[name].append(c)
                log(f"  deploytool {CLI[name][0]}: {c['process_wall_s']} s{'' if c['ok'] else ' FAILED ' + c['error']}")
                for f in work.glob(f"cli-{name}.onnx*"):
                    f.unlink()
        for name in peer_runs:  # after the round's passes, with a cp timed right before each, as they are
            _read_through(src)
            paired = _paired_copy(src, work)
            r = _spawn("peer", {"peer": PEERS[name], "src": str(src), "dst": str(work / "peer.onnx")})
            r["cp_paired_s"] = paired
            (work / "paired-copy.onnx").unlink()
            peer_runs[name].append(r)
            log(f"  peer {name}: {r.get('process_wall_s')} s, peak {r.get('peak_rss_bytes', 0) / 1e9:.2f} GB"
                f"{'' if r.get('ok') else ' FAILED ' + r.get('error', '')}")
            for f in work.glob("peer.onnx*"):
                f.unlink()
    cp = round(statistics.median(cp_times), 3)
    paired_cps = [r["cp_paired_s"] for rs in list(runs.values()) + list(cli_runs.values()) for r in rs]
    copy.update(cp_s=cp_times, cp_median_s=cp, repeats=len(cp_times), paired_cp_s=paired_cps,
                paired_cp_median_s=round(statistics.median(paired_cps), 3) if paired_cps else None)
    for name in passes:
        r = _median_run(runs[name])
        r["config"] = CONFIG_TEXT[name]
        if r.get("ok"):
            r["time_over_copy"], r["repeats"]["over_paired_copy"] = _paired_ratio(runs[name])
            r["repeats"]["cp_paired_s"] = [x.get("cp_paired_s") for x in runs[name]]
            r["time_over_median_copy"] = round(r["process_wall_s"] / cp, 1)
            # the quietest moments of the sitting: the fastest run over the fastest cp (any round)
            r["best_wall_s"] = min(x["process_wall_s"] for x in runs[name] if x.get("ok"))
            r["time_over_copy_best"] = round(r["best_wall_s"] / min(cp_times + paired_cps), 1)
            r["pass_time_over_copy"] = round(r["pass_s"] / cp, 1)
            # load + transform + write (+ checker), without the gate's ONNX Runtime sessions
            r["without_gate_s"] = round(r["pass_s"] - r["stats"].get("verify_s", 0.0), 2)
            r["without_gate_over_copy"] = round(r["without_gate_s"] / cp, 1)
            r["peak_rss_over_file"] = round(r["peak_rss_bytes"] / in_bytes, 2)
            g = r["stats"].get("gate_peak_rss_bytes")
            r["gate_peak_rss_over_file"] = round(g / in_bytes, 2) if g else None
            r["goal_time_met"] = r["time_over_copy"] <= TIME_GOAL
            r["goal_rss_met"] = r["peak_rss_over_file"] <= RSS_GOAL
        rows[name] = r
    result["passes"] = rows
    if not args.no_cli:
        cli = {}
        for name, cr in cli_runs.items():
            if not cr:
                continue
            mid = _median_run(cr)
            x, ratios = _paired_ratio(cr)
            cli[name] = {"argv": ["deploytool"] + CLI[name], "ok": mid["repeats"]["ok"] == len(cr),
                         "process_wall_s": mid["process_wall_s"], "time_over_copy": x,
                         "time_over_median_copy": round(mid["process_wall_s"] / cp, 1),
                         "goal_time_met": x is not None and x <= TIME_GOAL,
                         "runs_s": mid["repeats"]["process_wall_s"], "cp_paired_s": [c.get("cp_paired_s") for c in cr],
                         "over_paired_copy": ratios,
                         "errors": [c["error"] for c in cr if not c["ok"]]}
        result["cli"] = cli
    if peer_runs:
        peers = {}
        for name, pr in peer_runs.items():
            mid = _median_run(pr)
            x, ratios = _paired_ratio(pr)
            peers[name] = {"ok": all(r.get("ok") for r in pr), "process_wall_s": mid["process_wall_s"],
                           "time_over_copy": x, "over_paired_copy": ratios,
                           "runs_s": [r.get("process_wall_s") for r in pr],
                           "peak_rss_bytes": mid.get("peak_rss_bytes"),
                           "peak_rss_over_file": round(mid.get("peak_rss_bytes", 0) / in_bytes, 2),
                           "errors": [r["error"] for r in pr if not r.get("ok")]}
        result["peers"] = peers
    result["input_unchanged"] = src.stat().st_mtime_ns == mtime
    if not args.no_chain and "slice" in rows and "pack" in rows and rows["slice"].get("ok"):
        log("chain: pack of the slice")
        sliced = work / "slice.onnx"
        _read_through(sliced)
        chain_runs = []
        for _ in range(args.repeats):
            _read_through(sliced)
            chain_runs.append(_spawn("pass", {"pass": "pack", "src": str(sliced), "dst": str(work / "chain.onnx")}))
            for f in work.glob("chain.onnx*"):
                f.unlink()
        r = _median_run(chain_runs)
        total = rows["slice"]["process_wall_s"] + r["process_wall_s"]
        parts = rows["slice"]["process_wall_s"] + rows["pack"]["process_wall_s"]
        result["chain"] = {"steps": ["slice", "pack"], "pack_of_slice": r, "chain_wall_s": round(total, 2),
                           "sum_of_single_passes_s": round(parts, 2), "goal_within_sum_met": total <= parts,
                           "peak_rss_over_file": round(max(rows["slice"]["peak_rss_bytes"],
                                                           r.get("peak_rss_bytes", 0)) / in_bytes, 2)}
        for f in work.glob("chain.onnx*"):
            f.unlink()
        for f in work.glob("slice.onnx*"):
            f.unlink()
    if not args.no_sessions:
        log("gate sessions under other options")
        result["gate_sessions"] = _sessions(src, work, log)
    if not args.no_imports:
        log("import profile")
        result["imports"] = _import_profile()
    result["load_average_end"] = _load()
    result["goals"] = {"time_over_copy_max": TIME_GOAL, "peak_rss_over_file_max": RSS_GOAL,
                       "time_basis": "process wall (a fresh Python process: interpreter start, imports, load, "
                                     "pass, write, gate) over the cp of the same file from the page cache timed right "
                                     "before it (paired), the median of the rounds' ratios; time_over_median_copy: "
                                     "the median wall over the median of the round-start cps (the basis before "
                                     "2026-12-02's second sitting); imports_s, gate_s and without_gate_s (load + "
                                     "transform + write + checker) split the wall",
                       "rss_basis": "the pass process's VmHWM; the gate of an input over 50 MB runs in its own "
                                    "process, reported apart as gate_peak_rss_bytes"}
    result["summary"] = [{"pass": n, "wall_s": r.get("process_wall_s"), "imports_s": r.get("imports_s"),
                          "pass_s": r.get("pass_s"), "pass_x_copy": r.get("pass_time_over_copy"),
                          "gate_s": (r.get("stats") or {}).get("verify_s"),
                          "gate_reference_reused": (r.get("stats") or {}).get("gate_reference_reused"),
                          "without_gate_s": r.get("without_gate_s"), "x_copy": r.get("time_over_copy"),
                          "x_median_copy": r.get("time_over_median_copy"), "best_wall_s": r.get("best_wall_s"),
                          "x_copy_best": r.get("time_over_copy_best"),
                          "without_gate_x_copy": r.get("without_gate_over_copy"), "peak_rss_mb": round(r.get("peak_rss_bytes", 0) / 1e6),
                          "rss_x_file": r.get("peak_rss_over_file"),
                          "gate_rss_x_file": r.get("gate_peak_rss_over_file"), "ok": r.get("ok"),
                          "wall_s_runs": (r.get("repeats") or {}).get("process_wall_s"),
                          "goal_time_met": r.get("goal_time_met"), "goal_rss_met": r.get("goal_rss_met")}
                         for n, r in rows.items()]
    result["run"] = stamp(run)
    if baseline is not None:
        result["regression_check"] = speed_check.check(result, baseline)
        for line in speed_check.summary_lines(result["regression_check"]):
            log(line)
    elif args.check_against != "none":
        log(f"speed check: no {speed_check.RESULTS_PATH} committed at {args.check_against}; nothing compared")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
