"""One sitting: re-run the benchmarks behind the README one after another on one quiet machine.

    .venv/bin/python benchmarks/sitting.py --classifier DIR --teacher DIR      # every README benchmark
    .venv/bin/python benchmarks/sitting.py --dry-run                           # the plan, with last walls
    .venv/bin/python benchmarks/sitting.py --only int8_bench,pack_bench --classifier DIR
    .venv/bin/python benchmarks/sitting.py --skip big_models,train_bench --classifier DIR --teacher DIR

Each benchmark runs in a fresh process (``--python``, default this interpreter), its output in
``--log-dir`` (default ``runs/sitting-<id>/<name>.log``), this runner's own lines on stderr. Before
each one the runner waits (up to ``--wait-s``) until the 1-minute load average is at most
``--max-load``; if the machine never gets that quiet it refuses to start (exit 2) or, between two
benchmarks, stops and records the rest as not run (exit 3). ``--force`` runs regardless. A benchmark
runs in its own process group: past ``--timeout-s``, or on Ctrl-C, it is stopped with its workers.

Every benchmark writes its results file where ``readme_figures.py`` reads it
(``benchmarks/results/``), with the ``run`` block of ``benchmarks/_stamp.py``; the runner passes the
sitting id through ``DEPLOYTOOL_SITTING`` so each block names its sitting. After the last one it runs
``readme_figures.py`` (the README re-rendered) and writes ``benchmarks/results/sitting.json``: the
id, the code, which benchmarks ran with their command, exit code, wall time, the load before and
after each (and how long it waited), whether each results file was rewritten with this sitting's
block, and for a benchmark that checks itself against the last committed run (``pass_speed``,
``big_models``: ``speed_check.py``) what that check found slower, bigger or failing (also logged). ``sitting.json`` is rewritten after every benchmark, so an interrupted sitting leaves a record.

``--classifier`` is the MiniLM classifier fine-tuned on Rotten Tomatoes that ``int8_bench`` and
``pack_bench`` evaluate (the README's figures used the quickstart's
``runs/quickstart-final/steps/train-finetune-01f78e9750dc/model``); ``--teacher`` the fine-tuned
classifier ``distill_bench`` distils (the same folder will do). A benchmark in the plan whose
folder is not given is an error naming it (or ``--skip`` it).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SITTING_ENV = "DEPLOYTOOL_SITTING"  # the variable _stamp.py reads
NEEDS_HELP = {
    "classifier": "--classifier DIR (a MiniLM classifier fine-tuned on rotten-tomatoes, e.g. "
                  "runs/quickstart-final/steps/train-finetune-01f78e9750dc/model)",
    "teacher": "--teacher DIR (a fine-tuned classifier to distil: deploytool train --model minilm --data rotten-tomatoes)",
}


@dataclasses.dataclass(frozen=True)
class Bench:
    """One benchmark of a sitting: its script, arguments and the results files it writes.

    ``args`` may hold ``{results}``, ``{classifier}`` and ``{teacher}``; ``outputs`` are relative to
    the results folder, the first one carries the ``run`` block. ``readme``: part of the default plan.
    """

    name: str
    script: str
    args: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    readme: bool = True

    def __post_init__(self):
        unknown = [n for n in self.needs if n not in NEEDS_HELP]
        if unknown:
            raise ValueError(f"Bench {self.name}: needs {unknown}; known: {sorted(NEEDS_HELP)}")
        if not self.outputs:
            raise ValueError(f"Bench {self.name}: outputs must name the results file(s) it writes")


# The README's benchmarks with the command lines its figures came from, cheapest first (a failure
# shows early); the last three write no README figure and run only when named with --only.
BENCHMARKS: tuple[Bench, ...] = (
    Bench("export_bench", "export_bench.py", ("-o", "{results}/export_bench.json"), ("export_bench.json",)),
    Bench("slice_bench", "slice_bench.py", ("-o", "{results}/slice_bench.json"), ("slice_bench.json",)),
    Bench("int8_bench", "int8_bench.py", ("--classifier", "{classifier}", "-o", "{results}/int8_bench.json"),
          ("int8_bench.json",), needs=("classifier",)),
    Bench("pack_bench", "pack_bench.py", ("--classifier", "{classifier}", "-o", "{results}/pack_bench.json"),
          ("pack_bench.json",), needs=("classifier",)),
    Bench("nbits_kernels", "nbits_kernels.py", ("-o", "{results}/nbits_kernels.json"), ("nbits_kernels.json",)),
    Bench("pass_speed", "pass_speed.py", ("-o", "{results}/pass_speed.json"), ("pass_speed.json",)),
    Bench("overwrite", "overwrite.py", ("-o", "{results}/overwrite.json"), ("overwrite.json",)),
    Bench("pack_load", "pack_load.py", ("-o", "{results}/pack_load.json"), ("pack_load.json",)),
    Bench("unpack_fold", "unpack_fold.py", ("-o", "{results}/unpack_fold.json"), ("unpack_fold.json",)),
    Bench("repack_bench", "repack_bench.py", ("-o", "{results}/repack_bench.json"), ("repack_bench.json",)),
    Bench("fused_attention_bench", "fused_attention_bench.py", ("-o", "{results}/fused_attention_bench.json"),
          ("fused_attention_bench.json",)),
    Bench("fused_attention_bench_split_binary", "fused_attention_bench.py",
          ("--weights", "split-binary", "-o", "{results}/fused_attention_bench_split_binary.json"),
          ("fused_attention_bench_split_binary.json",)),
    Bench("fused_attention_bench_int8_bias", "fused_attention_bench.py",
          ("--weights", "int8", "-o", "{results}/fused_attention_bench_int8_bias.json"),
          ("fused_attention_bench_int8_bias.json",)),
    Bench("int8_codes", "int8_codes.py", ("--classifier", "{classifier}", "-o", "{results}/int8_codes.json"),
          ("int8_codes.json",), needs=("classifier",)),
    Bench("embedding_quality", "embedding_quality.py", ("-o", "{results}/embedding_quality.json"),
          ("embedding_quality.json", "embedding_quality.md")),
    Bench("cost_model_error", "cost_model_error.py", ("--out", "{results}/cost_model_error.json"),
          ("cost_model_error.json",)),
    Bench("gemm_rule", "gemm_rule.py", ("--out", "{results}/gemm_rule.json"), ("gemm_rule.json",)),
    Bench("bench_hygiene", "bench_hygiene.py", ("--out", "{results}/bench_hygiene.json"), ("bench_hygiene.json",)),
    Bench("bench_cache", "bench_cache.py", ("--out", "{results}/bench_cache.json"), ("bench_cache.json",)),
    Bench("published_devices", "published_devices.py", ("-o", "{results}/published_devices.json"),
          ("published_devices.json",)),
    Bench("conformance", "conformance.py", ("-o", "{results}/conformance.json"), ("conformance.json", "conformance.md")),
    Bench("conformance_chains", "conformance.py", ("--chains", "-o", "{results}/conformance_chains.json"),
          ("conformance_chains.json", "conformance_chains.md")),
    Bench("conformance_int8_onnx", "conformance.py",
          ("--passes", "int8-onnx", "--exporters", "optimum,torchscript-11,torchscript-17,dynamo,dynamo-23",
           "--levels", "0,99", "-o", "{results}/conformance_int8_onnx.json"),
          ("conformance_int8_onnx.json", "conformance_int8_onnx.md")),
    # the export settings outside the matrix: four families at levels 0 and 99 with every pass the settings vary,
    # the others at level 0 with the structured passes, pack and int8; the torch fp16 export of every family at 0 and 99
    Bench("conformance_export_settings", "conformance.py",
          ("--exporters", "settings", "--models", "bert,roberta,mpnet,deberta-v2", "--levels", "0,99", "--passes",
           "slice-0.5-0.75,prune-heads,prune-ffn,reorder,int8,fp16,pack,pack-speed",
           "-o", "{results}/conformance_export_settings.json"),
          ("conformance_export_settings.json", "conformance_export_settings.md")),
    Bench("conformance_export_settings_families", "conformance.py",
          ("--exporters", "settings", "--skip-models", "bert,roberta,mpnet,deberta-v2", "--levels", "0", "--passes",
           "slice-0.5-0.75,prune-heads,prune-ffn,pack,int8", "-o", "{results}/conformance_export_settings_families.json"),
          ("conformance_export_settings_families.json", "conformance_export_settings_families.md")),
    Bench("conformance_fp16_families", "conformance.py",
          ("--exporters", "torchscript-17-fp16", "--levels", "0,99", "--passes",
           "slice-0.5-0.75,prune-heads,prune-ffn,reorder,pack,int8", "-o", "{results}/conformance_fp16_families.json"),
          ("conformance_fp16_families.json", "conformance_fp16_families.md")),
    Bench("conformance_ortfp16_families", "conformance.py",
          ("--exporters", "torchscript-17-ortfp16", "--levels", "0,99", "--passes",
           "slice-0.5-0.75,prune-heads,prune-ffn,reorder,pack,int8", "-o", "{results}/conformance_ortfp16_families.json"),
          ("conformance_ortfp16_families.json", "conformance_ortfp16_families.md")),
    Bench("arm64_verify", "arm64_verify.py", ("-o", "{results}/arm64_verify.json"), ("arm64_verify.json",)),
    Bench("qnn_bench", "qnn_bench.py", ("-o", "{results}/qnn_bench.json"), ("qnn_bench.json",)),
    Bench("distill_bench", "distill_bench.py", ("--teacher", "{teacher}", "-o", "{results}/distill_bench.json"),
          ("distill_bench.json",), needs=("teacher",)),
    Bench("quickstart", "quickstart_bench.py", ("-o", "{results}/quickstart"),
          ("quickstart/meta.json", "quickstart/run.json", "quickstart/report.json", "quickstart/report.md")),
    Bench("big_models", "big_models.py", ("-o", "{results}/big_models.json"), ("big_models.json",)),
    Bench("alibi_export", "alibi_export.py", ("-o", "{results}/alibi_export.json"), ("alibi_export.json",)),
    Bench("train_bench", "train_bench.py", ("--schedule", "standard", "-o", "{results}"),
          ("train_bench_standard.json", "train_bench_standard.md")),
    Bench("int8_layout", "int8_layout.py", ("-o", "{results}/int8_layout.json"), ("int8_layout.json",), readme=False),
    Bench("structure_bench", "structure_bench.py", ("-o", "{results}/structure_bench.json"),
          ("structure_bench.json",), readme=False),
    Bench("validation_choice", "validation_choice.py", ("--out", "{results}/validation_choice.json"),
          ("validation_choice.json",), readme=False),
)


class SittingError(Exception):
    """Bad input to the sitting (names, missing folders): one line, exit 2."""


@dataclasses.dataclass(frozen=True)
class SittingConfig:
    benches: tuple[Bench, ...]
    results: Path = RESULTS
    classifier: Path | None = None
    teacher: Path | None = None
    python: str = sys.executable
    max_load: float = 1.0
    wait_s: float = 600.0
    poll_s: float = 10.0
    force: bool = False
    timeout_s: float = 3 * 3600.0
    log_dir: Path | None = None
    sitting_id: str | None = None
    render: bool = True  # run readme_figures.py at the end (only when results is benchmarks/results)
    script_dir: Path = HERE

    def __post_init__(self):
        if self.max_load <= 0:
            raise SittingError(f"--max-load must be > 0, got {self.max_load}")
        if self.wait_s < 0 or self.poll_s <= 0 or self.timeout_s <= 0:
            raise SittingError("--wait-s must be >= 0 and --poll-s, --timeout-s > 0")
        if not self.benches:
            raise SittingError("nothing to run: the plan is empty after --only/--skip")

    def check_folders(self) -> None:
        """Every folder a benchmark of the plan needs is given and exists (one-line SittingError otherwise)."""
        for b in self.benches:
            for need in b.needs:
                folder = getattr(self, need)
                if folder is None:
                    raise SittingError(f"{b.name} needs {NEEDS_HELP[need]}; give it or --skip {b.name}")
                if not Path(folder).is_dir():
                    raise SittingError(f"{b.name}: --{need} {folder} is not a folder")


def select(only: str | None, skip: str | None, table: tuple[Bench, ...] = BENCHMARKS) -> tuple[Bench, ...]:
    """The plan: ``--only`` names (in the table's order), else every README benchmark; less ``--skip``."""
    names = {b.name for b in table}

    def parse(text: str | None, flag: str) -> list[str]:
        items = [x.strip() for x in (text or "").split(",") if x.strip()]
        bad = [x for x in items if x not in names]
        if bad:
            raise SittingError(f"{flag}: unknown benchmark(s) {', '.join(bad)}; known: {', '.join(b.name for b in table)}")
        return items

    wanted, dropped = parse(only, "--only"), set(parse(skip, "--skip"))
    plan = [b for b in table if (b.name in wanted if wanted else b.readme)]
    return tuple(b for b in plan if b.name not in dropped)


def command(b: Bench, cfg: SittingConfig) -> list[str]:
    subst = {"results": str(cfg.results), "classifier": str(cfg.classifier), "teacher": str(cfg.teacher)}
    return [cfg.python, str(cfg.script_dir / b.script), *(a.format(**subst) for a in b.args)]


def _utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _log(msg: str) -> None:
    print(f"[sitting {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def last_wall_s(b: Bench, results: Path) -> float | None:
    """How long the last recorded run of ``b`` took: its run block, else the keys older files used, else sitting.json."""
    try:
        d = json.loads((results / b.outputs[0]).read_text())
    except (OSError, ValueError):
        d = {}
    for v in ((d.get("run") or {}).get("wall_s"), d.get("wall_s"), d.get("total_s"), d.get("total_seconds")):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    if isinstance(d.get("started_utc"), str) and isinstance(d.get("created_utc"), str):
        try:
            return (_dt.datetime.fromisoformat(d["created_utc"]) - _dt.datetime.fromisoformat(d["started_utc"])).total_seconds()
        except ValueError:
            pass
    try:
        prev = json.loads((results / "sitting.json").read_text())
        return next(float(r["wall_s"]) for r in prev.get("benchmarks", []) if r.get("name") == b.name and r.get("exit_code") == 0)
    except (OSError, ValueError, StopIteration, KeyError, TypeError):
        return None


def plan_text(cfg: SittingConfig) -> str:
    lines, total, unknown = [], 0.0, 0
    for i, b in enumerate(cfg.benches, 1):
        w = last_wall_s(b, cfg.results)
        total += w or 0
        unknown += w is None
        subst = {"results": "RESULTS", "classifier": str(cfg.classifier or "<--classifier missing>"),
                 "teacher": str(cfg.teacher or "<--teacher missing>")}
        cmd = " ".join([Path(cfg.python).name, f"benchmarks/{b.script}", *(a.format(**subst) for a in b.args)])
        lines.append(f"{i:2d}. {b.name:18s} last wall {f'{w / 60:6.1f} min' if w is not None else '  not recorded'}   {cmd}")
    lines.append(f"RESULTS = {cfg.results}; {len(cfg.benches)} benchmarks, last walls add up to {total / 60:.0f} min"
                 + (f" ({unknown} not recorded)" if unknown else "") + f"; waits for load1 <= {cfg.max_load:g} before each"
                 + (" (--force: no wait)" if cfg.force else f" (up to {cfg.wait_s:.0f} s)"))
    return "\n".join(lines)


def _code() -> dict:
    def git(*a: str) -> str:
        p = subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results",
                ":(exclude)README.md")
    return {"commit": commit or None, "dirty": bool(dirty) if commit else None}


def wait_quiet(cfg: SittingConfig) -> tuple[bool, float, list[float]]:
    """(quiet enough, seconds waited, load when it stopped waiting)."""
    t0 = time.monotonic()
    load = _load()
    if cfg.force:
        return True, 0.0, load
    while load[0] > cfg.max_load:
        waited = time.monotonic() - t0
        if waited >= cfg.wait_s:
            return False, round(waited, 1), load
        _log(f"load {load[0]:.2f} > {cfg.max_load:g}: waiting ({waited:.0f}/{cfg.wait_s:.0f} s)")
        time.sleep(min(cfg.poll_s, max(cfg.wait_s - waited, 0.01)))
        load = _load()
    return True, round(time.monotonic() - t0, 1), load


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def _stamped(b: Bench, cfg: SittingConfig, sid: str, started: float) -> dict:
    """Whether each results file was rewritten during this benchmark, and the first one stamped with this sitting."""
    out = {}
    for name in b.outputs:
        p = cfg.results / name
        out[name] = p.exists() and p.stat().st_mtime >= started - 1
    try:
        first = json.loads((cfg.results / b.outputs[0]).read_text())
    except (OSError, ValueError):
        first = {}
    run = first.get("run") or {}
    row = {"rewritten": out, "run_block_of_this_sitting": run.get("sitting") == sid}
    check = first.get("regression_check") if out.get(b.outputs[0]) else None
    if check:  # speed_check.py's verdict against the last committed run (pass_speed, big_models)
        row["regression_check"] = {k: check.get(k) for k in ("comparable", "why_not", "regressed", "improved")}
    return row


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_sitting(cfg: SittingConfig) -> int:
    """Run the plan; write ``sitting.json`` into the results folder. 0: every benchmark ran and exited 0;
    1: some failed; 2: refused to start (the machine was busy); 3: stopped between two (busy)."""
    cfg.check_folders()
    sid = cfg.sitting_id or _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_dir = cfg.log_dir or ROOT / "runs" / f"sitting-{sid}"
    log_dir.mkdir(parents=True, exist_ok=True)
    record: dict = {"sitting": sid, "started_utc": _utc(), "finished_utc": None, "code": _code(),
                    "command": [Path(sys.executable).name, *sys.argv], "max_load": cfg.max_load, "force": cfg.force,
                    "plan": [b.name for b in cfg.benches], "log_dir": str(log_dir), "benchmarks": [], "readme": None}
    out_path = cfg.results / "sitting.json"
    env = {**os.environ, SITTING_ENV: sid, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    rc = 0
    _log(f"sitting {sid}: {len(cfg.benches)} benchmarks, logs in {log_dir}")
    for i, b in enumerate(cfg.benches):
        quiet, waited, load_before = wait_quiet(cfg)
        row: dict = {"name": b.name, "command": command(b, cfg), "waited_s": waited, "load_before": load_before}
        if not quiet:
            why = f"load {load_before[0]:.2f} stayed above {cfg.max_load:g} for {waited:.0f} s"
            rc = 2 if i == 0 else 3
            for rest in cfg.benches[i:]:
                record["benchmarks"].append({"name": rest.name, "exit_code": None, "not_run": why})
            _log(("refusing to start: " if i == 0 else f"stopping before {b.name}: ") + why + " (--force runs anyway)")
            break
        _log(f"{i + 1}/{len(cfg.benches)} {b.name}: start (load {load_before[0]:.2f}, waited {waited:.0f} s)")
        t0, wall0 = time.monotonic(), time.time()
        row["started_utc"] = _utc()
        log_path = log_dir / f"{b.name}.log"
        with open(log_path, "w") as log:
            # its own process group: a timeout or Ctrl-C ends the benchmark's worker processes too
            proc = subprocess.Popen(row["command"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                row["exit_code"] = proc.wait(timeout=cfg.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                row["exit_code"], row["timed_out"] = None, True
            except KeyboardInterrupt:
                _kill_group(proc)
                raise
        row["wall_s"] = round(time.monotonic() - t0, 1)
        row["load_after"] = _load()
        row["log"] = str(log_path)
        row.update(_stamped(b, cfg, sid, wall0))
        if row["exit_code"] != 0:
            rc = 1
        _log(f"{i + 1}/{len(cfg.benches)} {b.name}: exit {row['exit_code']} in {row['wall_s']:.0f} s "
             f"(load {row['load_after'][0]:.2f}); results {'stamped' if row['run_block_of_this_sitting'] else 'NOT stamped'}"
             + ("" if row["exit_code"] == 0 else f"; see {log_path}")
             + "".join(f"; REGRESSED {r}" for r in (row.get("regression_check") or {}).get("regressed") or []))
        record["benchmarks"].append(row)
        _write(out_path, record)
    if cfg.render and cfg.results.resolve() == RESULTS.resolve() and rc in (0, 1):
        p = subprocess.run([cfg.python, str(HERE / "readme_figures.py")], cwd=ROOT, capture_output=True, text=True)
        record["readme"] = {"exit_code": p.returncode, "output": (p.stdout + p.stderr).strip()[-2000:]}
        _log(f"readme_figures.py: exit {p.returncode} {p.stdout.strip()} {p.stderr.strip()[-300:]}")
        rc = rc or (1 if p.returncode else 0)
    elif cfg.render:
        record["readme"] = {"skipped": "results folder is not benchmarks/results" if rc in (0, 1) else "sitting stopped"}
    record["finished_utc"] = _utc()
    _write(out_path, record)
    _log(f"wrote {out_path} (exit {rc})")
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated benchmarks to run (any of the table), in the table's order")
    ap.add_argument("--skip", help="comma-separated benchmarks to leave out")
    ap.add_argument("--classifier", type=Path, help=NEEDS_HELP["classifier"])
    ap.add_argument("--teacher", type=Path, help=NEEDS_HELP["teacher"])
    ap.add_argument("--dry-run", action="store_true", help="print the plan with each benchmark's last wall time")
    ap.add_argument("--force", action="store_true", help="do not wait for a quiet machine")
    ap.add_argument("--max-load", type=float, default=1.0, help="1-minute load average to wait for (default 1.0)")
    ap.add_argument("--wait-s", type=float, default=600.0, help="longest wait for it before each benchmark (s)")
    ap.add_argument("--timeout-s", type=float, default=3 * 3600.0, help="longest run of one benchmark (s)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the benchmarks (default this one)")
    ap.add_argument("--log-dir", type=Path, help="benchmark logs (default runs/sitting-<id>/)")
    ap.add_argument("--id", dest="sitting_id", help="sitting id (default the UTC start time)")
    ap.add_argument("--no-render", action="store_true", help="do not run readme_figures.py at the end")
    args = ap.parse_args(argv)
    try:
        plan = select(args.only, args.skip)
        folders = {k: getattr(args, k) and getattr(args, k).absolute() for k in NEEDS_HELP}  # benchmarks run in ROOT
        cfg = SittingConfig(benches=plan, **folders, python=args.python,
                            max_load=args.max_load, wait_s=args.wait_s, timeout_s=args.timeout_s, force=args.force,
                            log_dir=args.log_dir, sitting_id=args.sitting_id, render=not args.no_render)
        if args.dry_run:  # the plan even when a folder is missing; the error follows it
            print(plan_text(cfg))
        cfg.check_folders()
    except SittingError as e:
        print(f"sitting: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    return run_sitting(cfg)


if __name__ == "__main__":
    sys.exit(main())
