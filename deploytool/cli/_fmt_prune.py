"""Printing the result of a structured pass (shared by the prune/slice commands)."""

from __future__ import annotations

import click


def echo_result(result, output: str) -> None:
    s = result.stats
    click.echo(f"wrote {output}")
    click.echo(f"  layers  {s['layers_before']} -> {s['layers_after']}")
    click.echo(f"  heads   {s['heads_before']} -> {s['heads_after']}  per layer {s['heads_per_layer']}")
    click.echo(f"  neurons {s['neurons_before']} -> {s['neurons_after']}  per layer {s['neurons_per_layer']}")
    click.echo(f"  params  {s['params_before']:,} -> {s['params_after']:,}")
    if "bytes_after" in s:
        click.echo(f"  bytes   {s['bytes_before']:,} -> {s['bytes_after']:,}")
    if "width_effective" in s:
        click.echo(f"  width {s['width']} applied as {s['width_effective']} ({s['width_note']}); "
                   f"layers kept {s['layers_kept']}")
    if "importance" in s:
        click.echo(f"  importance: {s['importance']}")
    for skip in result.skipped:
        click.echo(f"  skipped {skip.node}: {skip.reason}")
