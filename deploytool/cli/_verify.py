"""``--no-verify`` of the pass commands and the lines they print about the verification gate."""

from __future__ import annotations

from typing import Any

import click

NO_VERIFY_HELP = ("Skip the verification gate: the output is then not run in ONNX Runtime before it is written "
                  "(by default it is loaded and run once on a small padded batch, and refused with nothing "
                  "written if it fails or gives non-finite outputs).")
NO_VERIFY_NOTE = "note: --no-verify: the output was not run in ONNX Runtime before it was written"
GATE_KEYS = ("verified", "verify_s", "verify_note")

no_verify_option = click.option("--no-verify", "no_verify", is_flag=True, help=NO_VERIFY_HELP)


def gate_line(stats: dict[str, Any]) -> str | None:
    """The one line a command prints about the gate: where it ran, how long it took, or the note."""
    if "verified" not in stats:
        return None
    if not stats["verified"]:
        return NO_VERIFY_NOTE
    if "verify_note" in stats:
        return f"  verified: {stats['verify_note']}"
    return f"  verified: ran in ONNX Runtime ({stats.get('verify_s', 0.0):.2f} s)"


def echo_gate(stats: dict[str, Any]) -> None:
    line = gate_line(stats)
    if line is not None:
        click.echo(line)
