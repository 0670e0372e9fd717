"""Device commands: ``profiles``, ``verify-arm64``, ``report``, ``fit``.

Each command parses options, builds one typed config, calls one library function and prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from deploytool.cli._grammar import GrammarCommand, json_flag, seq_len_option

#: the one place the profile search path comes from, the same for every command that takes --profile:
#: --profiles-dir (repeatable), else the DEPLOYTOOL_PROFILES_DIR environment variable (folders joined by
#: ':'), read here in the CLI layer only; the library takes the folders as arguments.
PROFILES_DIR_ENV = "DEPLOYTOOL_PROFILES_DIR"
_dir_option = click.option("--profiles-dir", "profiles_dirs", multiple=True, type=click.Path(path_type=Path),
                           envvar=PROFILES_DIR_ENV,
                           help="Extra folder of device profile YAML files, searched before the built-in ones "
                                f"(repeatable) [env {PROFILES_DIR_ENV}, ':'-separated].")
profiles_dir_option = _dir_option


# ----------------------------------------------------------------------------- profiles
@click.group("profiles", invoke_without_command=True)
@_dir_option
@json_flag("Print the profiles as JSON to stdout instead of a table.")
@click.pass_context
def profiles(ctx: click.Context, profiles_dirs: tuple[Path, ...], as_json: bool) -> None:
    """List the device profiles (``profiles show NAME`` prints one)."""
    ctx.ensure_object(dict)
    ctx.obj["profiles_dirs"] = profiles_dirs
    if ctx.invoked_subcommand is not None:
        return
    from deploytool.profiles import list_profiles
    from deploytool.profiles.render import profiles_table

    problems: list[tuple[Path, str]] = []
    profs = list_profiles(profiles_dirs, problems=problems)
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in profs], indent=2))
    else:
        click.echo(profiles_table(profs))
    if problems:  # the valid ones are listed; each invalid file named, then exit 2
        for _, reason in problems:
            click.echo(f"error: {reason}", err=True)
        ctx.exit(2)


host_cache_option = click.option(
    "--host-cache", "host_cache", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder of the cached host measurement [default: $XDG_CACHE_HOME/deploytool/host, else "
         "~/.cache/deploytool/host].")


@profiles.command("show", cls=GrammarCommand)
@click.argument("name")
@_dir_option
@json_flag("Print the profile as JSON to stdout instead of YAML.")
@host_cache_option
@click.option("--remeasure", is_flag=True, help="Host profiles: run the microbenchmark again (about 20 s).")
@click.pass_context
def profiles_show(ctx: click.Context, name: str, profiles_dirs: tuple[Path, ...], as_json: bool,
                  host_cache: Path | None, remeasure: bool) -> None:
    """Print one device profile (NAME or a path to a .yaml file), validated.

    ``host`` is this machine: detected, and measured once by an ONNX Runtime microbenchmark (cached).
    """
    from deploytool.profiles import HostOptions, load_profile
    from deploytool.profiles.render import profile_text

    dirs = tuple(profiles_dirs) + tuple((ctx.obj or {}).get("profiles_dirs", ()))
    prof = load_profile(name, dirs, host=HostOptions(cache_dir=host_cache, refresh=remeasure))
    if not prof.from_host and (remeasure or host_cache is not None):  # ignored in silence: nothing is measured
        from deploytool.errors import ConfigError

        opt = "--remeasure" if remeasure else "--host-cache"
        raise ConfigError(f"{opt}: only for a profile built from this machine (such as host); {prof.name} is a "
                          "written profile, with nothing measured")
    click.echo(json.dumps(prof.to_dict(), indent=2) if as_json else profile_text(prof))


# ------------------------------------------------------------------------- verify-arm64
@click.command("verify-arm64", cls=GrammarCommand, json_file=True)
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--profile", "profile_name", default=None, help="Device profile whose qemu_cpu (and EP list) to use "
              "[default for a bundle folder: the profile its manifest.json names].")
@click.option("--cpu", "cpus", multiple=True, help="QEMU aarch64 CPU model(s) instead of / besides the profile's "
              "(cortex-a72, neoverse-n1, a64fx, max, ...). Repeatable.")
@seq_len_option(default=16, single=True, help="Sequence length of the synthetic inputs.")
@click.option("--seed", default=0, show_default=True, type=int, metavar="INT", help="Seed of the synthetic inputs.")
@click.option("--emulator-dir", "emulator_home", type=click.Path(path_type=Path), default=None, envvar="DEPLOYTOOL_ARM64_HOME",
              help="Emulator folder [default: $XDG_CACHE_HOME/deploytool/arm64, else ~/.cache/deploytool/arm64; env "
                   "DEPLOYTOOL_ARM64_HOME].")
@click.option("--no-setup", is_flag=True, help="Fail instead of running scripts/setup_arm64.sh when it is missing.")
@click.option("-o", "--output", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the result as JSON (atomically).")
@json_flag("Print the result as JSON to stdout instead of the table.")
@_dir_option
def verify_arm64(models: tuple[Path, ...], profile_name: str | None, cpus: tuple[str, ...], seq_len: int, seed: int,
                 emulator_home: Path | None, no_setup: bool, json_out: Path | None, as_json: bool,
                 profiles_dirs: tuple[Path, ...]) -> None:
    """Run MODELS with ONNX Runtime's aarch64 wheel under QEMU and compare the outputs with the host's.

    MODELS: .onnx files, .ort files, or bundle folders (deploytool bundle -o), whose model.ort is checked as it
    ships, with the bundle's session settings."""
    from deploytool.arm64 import VerifyConfig, verify_arm64 as run
    from deploytool.cli._parse import refuse_stdout_dash
    from deploytool.onnx_io import atomic_write, check_output_path, check_writable
    from deploytool.profiles import load_profile

    profile = load_profile(profile_name, profiles_dirs) if profile_name is not None else None
    if json_out is not None:  # before the emulator runs: it ran every model, then failed writing
        refuse_stdout_dash(json_out, "verify-arm64")
        # a bundle folder's model.ort is an input too (-o bundle/model.ort wrote the JSON over the file it checked)
        check_output_path(json_out, inputs=(*models, *(m / "model.ort" for m in models if m.is_dir())))
        check_writable(json_out)
    if profile is not None and cpus and profile.qemu_cpu:
        cpus = (profile.qemu_cpu, *cpus)
    config = VerifyConfig(models=models, profile=profile, cpus=cpus, seq_len=seq_len, seed=seed,
                          emulator_home=emulator_home, setup=not no_setup, profiles_dirs=tuple(profiles_dirs))
    # said when the set-up starts, after the models were checked: printed before, it came ahead of a model's one-line
    # error ('--seq-len 500 is longer than the position table') with no set-up run at all
    setup_notice = {} if no_setup else {"on_setup": lambda: click.echo(
        "setting up the ARM64 emulator (scripts/setup_arm64.sh, one time, about a minute)", err=True)}
    result = run(config, **setup_notice)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.table())
    for c in {c.model: c for c in result.checks if c.format == "ort"}.values():  # once per file, not per CPU
        what = f"bundle {c.bundle}: its {Path(c.model).name} as it ships," if c.bundle else f"{c.model}"
        click.echo(f"checked {what} (ORT format, {c.file_bytes:,} bytes, sha256 {c.file_sha256[:16]}...); the host "
                   "reference ran the same file", err=as_json)
    twins = sorted({Path(c.model).name for c in result.checks if c.host_reference != "model"})
    if twins and not as_json:
        click.echo(f"note: this host's ONNX Runtime saturates uint8 x int8 GEMM pairs (x86 without VNNI): the host "
                   f"reference of {', '.join(twins)} is its uint8 twin (the same integers, exact U8U8 kernel)")
    if json_out is not None:
        with atomic_write(json_out) as f:
            json.dump(result.to_dict(), f, indent=2)
        click.echo(f"wrote {json_out}", err=as_json)  # as bench and qnn check say it: stdout stays JSON with --json
    bad = [c for c in result.checks if not c.ok]
    if bad:
        click.echo(f"verify-arm64: {len(bad)} of {len(result.checks)} checks FAILED", err=True)
        raise SystemExit(1)
    click.echo(f"verify-arm64: all {len(result.checks)} checks OK on {', '.join(result.cpus)} "
               f"(onnxruntime {result.onnxruntime} aarch64, {result.wall_s:.0f} s)", err=as_json)


# ------------------------------------------------------------------------------- report
@click.command("report", cls=GrammarCommand)
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for report.json, report.md, report.html and the plots.")
@click.option("--profile", "profile_names", multiple=True,
              help="Device profile(s) to report against (repeatable) [default: host, this machine].")
@click.option("--accuracy", "accuracy", multiple=True, type=click.Path(path_type=Path),
              help="Accuracy JSON (deploytool eval output, {models: {name: acc}} or a list), keyed by model path, "
                   "file name or stem; one unit per file: \"unit\": \"percent\" or \"fraction\", else the "
                   "records' counts decide, else values all over 1 are percent (a value in (0, 1] without a unit "
                   "is ambiguous and refused). Repeatable.")
@click.option("--no-projection", is_flag=True, help="Do not project device latency with the cost model.")
@click.option("--calibrate", is_flag=True, help="Scale projections by measured/projected on the host (labelled).")
@click.option("--title", default="deploytool device report", show_default=True, help="Title of the report pages.")
@_dir_option
def report(results: tuple[Path, ...], out_dir: Path, profile_names: tuple[str, ...], accuracy: tuple[Path, ...],
           no_projection: bool, calibrate: bool, title: str, profiles_dirs: tuple[Path, ...]) -> None:
    """Per-device table and plots from bench JSON RESULTS (+ accuracy): JSON, Markdown, HTML."""
    from deploytool.cli._parse import refuse_stdout_dash
    from deploytool.report import ReportConfig, build_report

    # -o is a folder here: '-' made a folder named '-'; refused as bench and verify-arm64 refuse it
    refuse_stdout_dash(out_dir, "report", "its files (report.json, report.md, report.html, plots) into a folder",
                       "give a folder name")
    config = ReportConfig(results=results, out_dir=out_dir, accuracy=accuracy, profiles=profile_names,
                          profiles_dirs=profiles_dirs, project=not no_projection, calibrate=calibrate, title=title)
    result = build_report(config)
    unmatched = result.info.get("accuracy_unmatched") or []
    if unmatched:
        click.echo(f"warning: --accuracy: {len(unmatched)} model name(s) match no benchmarked model and are not "
                   f"shown: {', '.join(unmatched)}", err=True)
    if result.info.get("latency_budget_missing"):
        click.echo(f"warning: {result.info['latency_budget_missing']}", err=True)
    if result.info.get("qnn_emulated"):
        click.echo(f"warning: {result.info['qnn_emulated']}", err=True)
    if result.info.get("latency_missing"):
        click.echo(f"warning: {result.info['latency_missing']}", err=True)
    elif result.info.get("models_not_found"):
        gone = result.info["models_not_found"]
        click.echo(f"warning: {len(gone)} model file(s) named in the bench JSON not found ({', '.join(gone[:3])}"
                   f"{' ...' if len(gone) > 3 else ''}): their rows have no projection, precision or architecture",
                   err=True)
    click.echo(result.summary())


# ---------------------------------------------------------------------------------- fit
def _floats(text: str, option: str) -> tuple[float, ...]:
    from deploytool.cli._parse import numbers

    return numbers(text, option, float)


def _names(text: str, option: str) -> tuple[str, ...]:
    from deploytool.cli._parse import items

    return items(text, option)


@click.command("fit", cls=GrammarCommand)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--profile", "profile_name", required=True, help="Device profile whose budget to meet.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Where to write the chosen model.")
@click.option("--budget-ms", type=float, default=None, metavar="MS",
              help="p90 latency budget in milliseconds [default: the profile's at --seq-len].")
@click.option("--accuracy-floor", type=float, default=None, metavar="PERCENT",
              help="Minimum accuracy in percent (85 = 85 %; a value in (0, 1] is ambiguous and refused: "
                   "give 95, not 0.95); needs --accuracy.")
@click.option("--accuracy", "accuracy", default=None, type=click.Path(path_type=Path),
              help="Accuracy JSON of the candidates (as report --accuracy reads it), keyed by candidate name "
                   "w{width}-d{depth}-{precision}, e.g. w0.75-d1-int8.")
@seq_len_option(default=None, single=True, help="Sequence length to fit [default: 128, or the profile's longest].")
@click.option("--widths", default="1,0.75,0.5", show_default=True, metavar="F[,F...]",
              help="DynaBERT widths to try (fractions in (0, 1]).")
@click.option("--depths", default="1,0.5", show_default=True, metavar="F[,F...]",
              help="DynaBERT depths to try (fractions in (0, 1]).")
@click.option("--precisions", default="fp32,int8", show_default=True, metavar="P[,P...]",
              help="Precisions to try: fp32, fp16, int8, ternary, binary.")
@click.option("--runs", default=20, show_default=True, type=int, metavar="INT",
              help="Timed runs per candidate on the host.")
@click.option("--keep-candidates", "workdir", type=click.Path(path_type=Path), default=None,
              help="Keep every candidate model in this folder.")
@_dir_option
def fit(model: Path, profile_name: str, output: Path, budget_ms: float | None, accuracy_floor: float | None,
        accuracy: Path | None, seq_len: int | None, widths: str, depths: str, precisions: str, runs: int,
        workdir: Path | None, profiles_dirs: tuple[Path, ...]) -> None:
    """Pick the ONE best width/depth/precision of MODEL that meets a device profile's budget."""
    from deploytool.fit import FitConfig, fit as run
    from deploytool.profiles import load_profile
    from deploytool.accuracy import load_accuracy_records

    if accuracy is not None:  # the chosen model or its .fit.json written over the accuracy file it was ranked by
        from deploytool.onnx_io import check_output_path

        for out in (output, output.with_name(output.name + ".fit.json")):
            check_output_path(out, inputs=(accuracy,))
    config = FitConfig(model=model, profile=load_profile(profile_name, profiles_dirs), output=output,
                       budget_ms=budget_ms, accuracy_floor=accuracy_floor, seq_len=seq_len,
                       widths=_floats(widths, "--widths"), depths=_floats(depths, "--depths"),
                       precisions=_names(precisions, "--precisions"),
                       accuracies=load_accuracy_records([accuracy]).records if accuracy else None, runs=runs,
                       workdir=workdir)
    # progress on a terminal only: piped or captured stderr keeps the one-line error contract
    tty = sys.stderr.isatty()
    result = run(config, progress=(lambda line: click.echo(line, err=True)) if tty else None)
    click.echo(result.why())
    click.echo(f"wrote {result.output} and {result.why_path}")
