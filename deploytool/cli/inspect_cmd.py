"""``deploytool inspect``: parse options -> InspectConfig -> deploytool.inspect.inspect_model -> print."""

from __future__ import annotations

import click

from deploytool.errors import ConfigError


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (machine output).")
@click.option("--seq-len", "seq_len", default="128", show_default=True,
              help="Sequence length for the FLOPs count (batch 1).")
def inspect(model: str, as_json: bool, seq_len: str) -> None:
    """Show an ONNX encoder's structure, parameters by role, storage, ops and FLOPs."""
    from deploytool.inspection import InspectConfig, inspect_model

    try:
        n = int(seq_len)
    except ValueError:
        raise ConfigError(f"--seq-len {seq_len!r} is not an integer") from None
    config = InspectConfig(seq_len=n)
    report = inspect_model(model, seq_len=config.seq_len)
    click.echo(report.to_json() if as_json else report.to_text())
