"""``deploytool bench``: parse options -> BenchConfig -> deploytool.bench.run_benchmark -> print table/JSON."""

from __future__ import annotations

import click

from deploytool.cli._parse import number
from deploytool.cli.device_cmd import profiles_dir_option
from deploytool.cli.remote_opts import REMOTE_KEYS, bench_on_remote, remote_options


def _int(text: str | None, option: str) -> int | None:
    return number(text, option, int)


@click.command("bench")
@click.argument("models", nargs=-1, required=True)
@click.option("--seq-len", "seq_len", default="8,128", show_default=True, help="Comma-separated sequence lengths.")
@click.option("--batch", default="1", show_default=True, help="Batch size.")
@click.option("--threads", default=None, help="Intra-op threads [default: 1, or --profile's; given, it overrides the profile's].")
@click.option("--warmup", default="10", show_default=True, help="Warm-up runs per model and sequence length.")
@click.option("--runs", default="100", show_default=True, help="Timed runs per model and sequence length.")
@click.option("--seed", default="0", show_default=True, help="Seed of the synthetic inputs.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the results as JSON (schema deploytool.bench/1, written atomically).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--profile", "profile", default=None,
              help="Device profile: its EP preference list, EP options and threads (EPs missing from this "
                   "onnxruntime build fall back in order; the results record which ran and why).")
@profiles_dir_option
@click.option("--force", is_flag=True,
              help="Measure even when --threads exceeds the cores other processes leave free (the JSON says so).")
@click.option("--schedule", type=click.Choice(["interleaved", "blocks"]), default="interleaved", show_default=True,
              help="Several models: alternate run by run, or in blocks of --block-runs runs.")
@click.option("--block-runs", default="10", show_default=True, help="Runs per block with --schedule blocks.")
@click.option("--thread-pool", type=click.Choice(["shared", "session"]), default="shared", show_default=True,
              help="Several models: one process-wide ORT thread pool (no spinning idle pools), or one per session.")
@click.option("--wait-quiet", "wait_quiet", default="0", show_default=True,
              help="Seconds to wait for --threads free cores before measuring (other processes on the machine).")
@remote_options
def bench(models: tuple[str, ...], seq_len: str, batch: str, threads: str | None, warmup: str, runs: str, seed: str,
          json_path: str | None, quiet: bool, profile: str | None, profiles_dirs: tuple, force: bool, schedule: str,
          block_runs: str, thread_pool: str, wait_quiet: str, **remote) -> None:
    """Benchmark ONNX models with ONNX Runtime in a clean process (several models: interleaved, ratio to the first)."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.bench.progress import progress_bar
    from deploytool.bench.table import format_table
    from deploytool.onnx_io import check_output_path

    prof = None
    if profile is not None:
        from deploytool.profiles import load_profile

        prof = load_profile(profile, profiles_dirs)
    import os
    import shlex

    # under QEMU user-mode (deploytool on an emulated aarch64): how to start the worker's Python
    worker = tuple(shlex.split(os.environ.get("DEPLOYTOOL_BENCH_PYTHON", "")))
    config = BenchConfig(models=models, seq_lens=seq_len, batch=_int(batch, "--batch"),
                         threads=_int(threads, "--threads"), warmup=_int(warmup, "--warmup"),
                         runs=_int(runs, "--runs"), seed=_int(seed, "--seed"), profile=prof,
                         busy="warn" if force else "refuse", schedule=schedule,
                         block_runs=_int(block_runs, "--block-runs"), thread_pool=thread_pool,
                         wait_quiet_s=number(wait_quiet, "--wait-quiet", float), worker_python=worker)
    if remote["remote"]:  # on the devices over SSH (deploytool.remote), not here
        return bench_on_remote(config, {k: remote[k] for k in REMOTE_KEYS}, json_path)
    if json_path:
        check_output_path(json_path, inputs=config.models)
    with progress_bar(enabled=None if not quiet else False) as progress:
        report = run_benchmark(config, progress=progress)
    if json_path:
        write_json(report, json_path)
    click.echo(format_table(report))
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    if json_path:
        click.echo(f"wrote {json_path}")
