"""``--no-verify`` of the pass commands and the lines they print about the verification gate."""

from __future__ import annotations

import click

NO_VERIFY_HELP = ("Skip the verification gate: the output is then not run in ONNX Runtime before it is written "
                  "(by default it is loaded and run once on a small padded batch, and refused with nothing "
                  "written if it fails or gives non-finite outputs).")
NO_VERIFY_NOTE = "note: --no-verify: the output was not run in ONNX Runtime before it was written"

no_verify_option = click.option("--no-verify", "no_verify", is_flag=True, help=NO_VERIFY_HELP)


def gate_line(gate) -> str | None:
    """The one line a command prints about the gate (a result's :class:`~deploytool.passes.base.GateStats`,
    None when no file was written): where it ran, how long it took, or the note."""
    if gate is None:
        return None
    if not gate.verified:
        return NO_VERIFY_NOTE
    if gate.note is not None:
        return f"  verified: {gate.note}"
    line = f"  verified: ran in ONNX Runtime ({gate.seconds:.2f} s)"
    if gate.input_note:
        line += f"\n  note: {gate.input_note}"
    return line


def echo_gate(gate) -> None:
    line = gate_line(gate)
    if line is not None:
        click.echo(line)
