"""``deploytool bench --remote``: the options (a decorator, so ``bench_cmd`` stays as it is) and the call
into :func:`deploytool.remote.bench_remote`."""

from __future__ import annotations

from typing import Any

import click

from deploytool.cli._grammar import FiniteFloatRange
from deploytool.errors import ConfigError

REMOTE_KEYS = ("remote", "ssh_options", "ssh_config", "remote_python", "remote_setup", "remote_parallel",
               "connect_timeout", "remote_timeout")


def remote_options(f):
    opts = [
        click.option("--remote", "remote", multiple=True, metavar="[USER@]HOST",
                     help="Run the benchmark on this device over SSH (repeatable: one after another, or "
                          "--remote-parallel); the JSON comes back to the output path (several hosts: "
                          "<stem>-<host>.json)."),
        click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE",
                     help="Passed to ssh and scp as -o KEY=VALUE (e.g. Port=2222, UserKnownHostsFile=FILE)."),
        click.option("--ssh-config", "ssh_config", default=None, type=click.Path(dir_okay=False),
                     help="ssh config file (ssh -F) [default: yours]."),
        click.option("--remote-python", "remote_python", default=None,
                     help="The device's Python that has deploytool [default: ~/.cache/deploytool/remote/venv]."),
        click.option("--remote-setup", "remote_setup", is_flag=True,
                     help="On first use, install deploytool (this checkout's wheel) in a private venv on the device."),
        click.option("--remote-parallel", "remote_parallel", is_flag=True, help="Several --remote hosts at once."),
        click.option("--connect-timeout", "connect_timeout", type=click.IntRange(min=1), default=10,
                     show_default=True, metavar="SECONDS",
                     help="Seconds to wait for a device to answer (ssh ConnectTimeout)."),
        click.option("--remote-timeout", "remote_timeout", type=FiniteFloatRange(min=0, min_open=True),
                     default=3600.0, show_default=True, metavar="SECONDS",
                     help="Time limit for the whole bench on one device; past it the bench there is stopped and "
                          "its work folder removed."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def refuse_without_remote(options: dict[str, Any]) -> None:
    """The options that say how to reach a device are refused without --remote (they were ignored)."""
    if options["remote"]:
        return
    ctx = click.get_current_context()
    given = [p.opts[-1] for p in ctx.command.params if p.name in REMOTE_KEYS and p.name != "remote"
             and ctx.get_parameter_source(p.name) not in (None, click.core.ParameterSource.DEFAULT)]
    if given:
        raise ConfigError(f"{', '.join(given)}: only used with --remote [USER@]HOST (the device to benchmark on "
                          "over SSH); give --remote or leave " + ("them" if len(given) > 1 else "it") + " out")


def bench_on_remote(config, options: dict[str, Any], output: str | None, as_json: bool = False) -> None:
    """Parse the remote options into a RemoteConfig, run, print where each JSON went (``as_json``: stdout is the
    device's bench JSON, a list of them for several hosts, and the summary goes to stderr, as a local --json -o)."""
    import json

    from deploytool.remote import RemoteConfig, bench_remote

    if not output:
        raise ConfigError("--remote needs -o/--output: the path for the device's bench JSON")
    remote = RemoteConfig(hosts=tuple(options["remote"]), ssh_options=tuple(options["ssh_options"]),
                          ssh_config=options["ssh_config"], remote_python=options["remote_python"],
                          setup=bool(options["remote_setup"]), parallel=bool(options["remote_parallel"]),
                          connect_timeout_s=int(options["connect_timeout"]),
                          timeout_s=float(options["remote_timeout"]))
    runs = bench_remote(config, remote, output)
    for run in runs:
        host = run.report.get("host", {})
        click.echo(f"{run.host}: {host.get('cpu_model', '?')} ({host.get('arch', '?')}, "
                   f"{'+'.join((host.get('cpu') or {}).get('core_types') or ['?'])})", err=as_json)
        for r in run.report.get("results", []):
            lat = r["latency_ms"]
            click.echo(f"  {r['name']} seq {r['seq_len']}: p50 {lat['p50_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms",
                       err=as_json)
        click.echo(f"wrote {run.output}", err=as_json)
    if as_json:
        reports = [run.report for run in runs]
        click.echo(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
