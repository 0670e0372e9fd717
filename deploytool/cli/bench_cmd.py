"""``deploytool bench``: parse options -> BenchConfig -> deploytool.bench.run_benchmark -> print table/JSON."""

from __future__ import annotations

import click

from deploytool.cli._grammar import Choice, GrammarCommand, json_flag, seq_len_option
from deploytool.cli.device_cmd import profiles_dir_option
from deploytool.cli.remote_opts import REMOTE_KEYS, bench_on_remote, refuse_without_remote, remote_options


@click.command("bench", cls=GrammarCommand, json_file=True, renamed={"--batch": "--batch-size"})
@click.argument("models", nargs=-1, required=True)
@seq_len_option(default=(8, 128), help="Sequence lengths to measure.")
@click.option("--batch-size", "batch", type=int, default=1, show_default=True, metavar="INT",
              help="Batch size of the synthetic inputs.")
@click.option("--threads", type=int, default=None, metavar="INT",
              help="Intra-op threads [default: 1, or --profile's; given, it overrides the profile's].")
@click.option("--warmup", type=int, default=10, show_default=True, metavar="INT",
              help="Warm-up runs per model and sequence length.")
@click.option("--runs", type=int, default=100, show_default=True, metavar="INT",
              help="Timed runs per model and sequence length.")
@click.option("--seed", type=int, default=0, show_default=True, metavar="INT", help="Seed of the synthetic inputs.")
@click.option("-o", "--output", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Write the results as JSON (schema deploytool.bench/1, written atomically).")
@json_flag("Print the results as JSON (schema deploytool.bench/1) to stdout instead of the table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--profile", "profile", default=None,
              help="Device profile: its EP preference list, EP options and threads (EPs missing from this "
                   "onnxruntime build fall back in order; the results record which ran and why).")
@profiles_dir_option
@click.option("--force", is_flag=True,
              help="Measure even when --threads exceeds the cores other processes leave free (the JSON says so).")
@click.option("--schedule", type=Choice(["interleaved", "blocks"]), default="blocks", show_default=True,
              help="Several models: in blocks of --block-runs runs each (A x n, B x n, A x n, ...), or alternating "
                   "run by run.")
@click.option("--block-runs", type=int, default=10, show_default=True, metavar="INT",
              help="Runs per block with --schedule blocks.")
@click.option("--prime-runs", type=int, default=3, show_default=True, metavar="INT",
              help="Several models: untimed runs of a model right before each of its timed runs (each block with "
                   "--schedule blocks), so that it is timed with its own weights in the caches, not the other "
                   "models'; 0: the runs timed as they come.")
@click.option("--thread-pool", type=Choice(["shared", "session"]), default="shared", show_default=True,
              help="Several models: one process-wide ORT thread pool (no spinning idle pools), or one per session.")
@click.option("--wait-quiet", "wait_quiet_s", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Seconds to wait for --threads free cores before measuring (other processes on the machine).")
@remote_options
def bench(models: tuple[str, ...], seq_len: tuple[int, ...], batch: int, threads: int | None, warmup: int, runs: int,
          seed: int, json_path: str | None, as_json: bool, quiet: bool, profile: str | None, profiles_dirs: tuple,
          force: bool, schedule: str, block_runs: int, prime_runs: int, thread_pool: str, wait_quiet_s: float, **remote) -> None:
    """Benchmark ONNX models with ONNX Runtime in a clean process (several models: in turns, ratio to the first)."""
    import json

    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.bench.progress import progress_bar
    from deploytool.bench.table import format_table
    from deploytool.onnx_io import check_output_path, check_writable

    refuse_without_remote(remote)
    if schedule == "interleaved" and click.get_current_context().get_parameter_source("block_runs") \
            is not click.core.ParameterSource.DEFAULT:  # there are no blocks to size: it was ignored without a word
        from deploytool.errors import ConfigError

        raise ConfigError("block_runs: sizes the blocks of --schedule blocks; --schedule interleaved alternates run "
                          "by run")
    from deploytool.cli._parse import refuse_stdout_dash

    refuse_stdout_dash(json_path, "bench")
    prof = None
    if profile is not None:
        from deploytool.profiles import load_profile

        prof = load_profile(profile, profiles_dirs)
    elif profiles_dirs:  # no profile to look up, but a folder that does not exist is still a mistake
        from deploytool.profiles import profile_names

        profile_names(profiles_dirs)
    import os
    import shlex

    # under QEMU user-mode (deploytool on an emulated aarch64): how to start the worker's Python
    try:
        worker = tuple(shlex.split(os.environ.get("DEPLOYTOOL_BENCH_PYTHON", "")))
    except ValueError as e:  # it said 'internal error ValueError: No closing quotation'
        from deploytool.errors import ConfigError

        raise ConfigError(f"DEPLOYTOOL_BENCH_PYTHON: not a command line ({e}): "
                          f"{os.environ['DEPLOYTOOL_BENCH_PYTHON']!r}") from None
    config = BenchConfig(models=models, seq_lens=seq_len, batch=batch, threads=threads, warmup=warmup, runs=runs,
                         seed=seed, profile=prof, busy="warn" if force else "refuse", schedule=schedule,
                         block_runs=block_runs, prime_runs=prime_runs, thread_pool=thread_pool, wait_quiet_s=wait_quiet_s,
                         worker_python=worker)
    if remote["remote"]:  # on the devices over SSH (deploytool.remote), not here
        return bench_on_remote(config, {k: remote[k] for k in REMOTE_KEYS}, json_path, as_json)
    if json_path:  # before measuring: never an input, and a folder that can really be written (as report checks)
        check_output_path(json_path, inputs=config.models)
        check_writable(json_path)
    with progress_bar(enabled=None if not (quiet or as_json) else False) as progress:
        report = run_benchmark(config, progress=progress)
    if json_path:
        write_json(report, json_path)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_table(report))
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    if json_path:
        click.echo(f"wrote {json_path}", err=as_json)
