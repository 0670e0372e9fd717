"""``deploytool inspect``: parse options -> InspectConfig -> deploytool.inspection.inspect_model -> print."""

from __future__ import annotations

import click

from deploytool.cli._grammar import GrammarCommand, json_flag, seq_len_option


@click.command("inspect", cls=GrammarCommand)
@click.argument("model", type=click.Path(dir_okay=True))
@json_flag("Print the report as JSON to stdout (machine output).")
@seq_len_option(default=128, single=True, help="Sequence length for the FLOPs count (batch 1).")
def inspect(model: str, as_json: bool, seq_len: int) -> None:
    """Show an ONNX encoder's structure, parameters by role, storage, ops and FLOPs."""
    from deploytool.inspection import InspectConfig, inspect_model

    config = InspectConfig(seq_len=seq_len)
    report = inspect_model(model, seq_len=config.seq_len)
    click.echo(report.to_json() if as_json else report.to_text())
