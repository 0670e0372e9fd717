"""``deploytool bench``: parse options -> BenchConfig -> deploytool.bench.run_benchmark -> print table/JSON."""

from __future__ import annotations

import click

from deploytool.cli._parse import number



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
def bench(models: tuple[str, ...], seq_len: str, batch: str, threads: str | None, warmup: str, runs: str, seed: str,
          json_path: str | None, quiet: bool, profile: str | None) -> None:
    """Benchmark ONNX models with ONNX Runtime in a clean process (several models: interleaved, ratio to the first)."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.bench.progress import progress_bar
    from deploytool.bench.table import format_table
    from deploytool.onnx_io import check_output_path

    spec = None
    if profile is not None:
        from deploytool.profiles import load_profile

        spec = load_profile(profile).session_spec()
    import os
    import shlex

    # under QEMU user-mode (deploytool on an emulated aarch64): how to start the worker's Python
    worker = tuple(shlex.split(os.environ.get("DEPLOYTOOL_BENCH_PYTHON", "")))
    config = BenchConfig(models=models, seq_lens=seq_len, batch=_int(batch, "--batch"),
                         threads=_int(threads, "--threads"), warmup=_int(warmup, "--warmup"),
                         runs=_int(runs, "--runs"), seed=_int(seed, "--seed"), spec=spec, worker_python=worker)
    if json_path:
        check_output_path(json_path, inputs=config.models)
    with progress_bar(enabled=None if not quiet else False) as progress:
        report = run_benchmark(config, progress=progress)
    if json_path:
        write_json(report, json_path)
    click.echo(format_table(report))
    if json_path:
        click.echo(f"wrote {json_path}")
