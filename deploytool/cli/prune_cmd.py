"""``deploytool slice | prune-heads | prune-ffn | reorder``: parse options, build one config, call one function."""

from __future__ import annotations

import click

from deploytool.cli._grammar import Choice, GrammarCommand
from deploytool.cli._verify import echo_gate, no_verify_option


@click.command("slice", cls=GrammarCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--width", type=float, default=1.0, show_default=True, metavar="FLOAT",
              help="Fraction of heads and FFN neurons each layer keeps (0 < w <= 1): round(w*H) heads and "
                   "int(round(w*H)/H*F) neurons (H heads, F neurons of the layer).")
@click.option("--depth", type=float, default=1.0, show_default=True, metavar="FLOAT",
              help="Fraction of layers kept (0 < d <= 1): layers floor(i/d) for i < round(d*L).")
@click.option("--rounding", type=Choice("deploytool.passes.slice_subnetwork:ROUNDINGS"), default="dynabert", show_default=True, metavar="dynabert|half-up",
              help="dynabert: Python's round (ties to even) as in DynaBERT's code, e.g. 6 layers at d=0.75 keep "
                   "[0,1,2,4]; half-up: the earlier rule floor(x+0.5) for heads, neurons (w*F) and layers "
                   "(6 layers at d=0.75 keep 5).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@no_verify_option
def slice_(model: str, width: float, depth: float, rounding: str, output: str, no_verify: bool) -> None:
    """DynaBERT width/depth slicing: keep the first heads/neurons of each layer and every 1/d-th layer.

    \b
    Counts as in DynaBERT's public code (modeling_bert.py), Python's round
    (ties to even), per layer of H heads and F FFN neurons, L layers:
      heads    round(w*H)
      neurons  int(round(w*H)/H*F)   (its round_to_nearest)
      layers   floor(i/d) for i < round(d*L)
    e.g. 6 layers at d=0.75 keep [0,1,2,4]; 6 heads at w=0.75 keep 4.

    A width or depth that keeps 0 heads or 0 layers is refused. Reorder by importance first so that
    "first" means "most important". --rounding half-up selects the earlier rule.
    """
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file

    echo_result(slice_file(model, output, SliceConfig(width=width, depth=depth, rounding=rounding),
                           verify=not no_verify), output)


@click.command("prune-heads", cls=GrammarCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--heads", "heads_spec", default=None, help="Heads to remove, 'LAYER:H,H;LAYER:H' (e.g. '0:1,3;2:0').")
@click.option("--ratio", type=float, default=None, metavar="FLOAT", help="Remove this fraction of each layer's least important heads.")
@click.option("--importance", type=click.Path(dir_okay=False), default=None,
              help="Importance JSON (deploytool-importance/1); default: weight-magnitude (data-free).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@no_verify_option
def prune_heads(model: str, heads_spec: str | None, ratio: float | None, importance: str | None, output: str,
                no_verify: bool) -> None:
    """Physically remove attention heads (explicit ids or a ratio by importance)."""
    from deploytool.passes.prune_heads import HeadPruneConfig, parse_heads_spec, prune_heads_file

    heads = parse_heads_spec(heads_spec) if heads_spec is not None else None
    echo_result(prune_heads_file(model, output, HeadPruneConfig(heads=heads, ratio=ratio, importance=importance),
                                 verify=not no_verify), output)


@click.command("prune-ffn", cls=GrammarCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--keep", type=float, default=None, metavar="FLOAT", help="Fraction of each layer's FFN neurons kept (most important).")
@click.option("--neurons", type=click.Path(dir_okay=False), default=None,
              help='JSON file {"LAYER": [neuron ids to remove]}.')
@click.option("--importance", type=click.Path(dir_okay=False), default=None,
              help="Importance JSON (deploytool-importance/1); default: weight-magnitude (data-free).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@no_verify_option
def prune_ffn(model: str, keep: float | None, neurons: str | None, importance: str | None, output: str,
              no_verify: bool) -> None:
    """Physically remove FFN neurons (a kept fraction by importance, or explicit ids)."""
    from deploytool.passes.prune_ffn import FFNPruneConfig, load_neurons_file, prune_ffn_file

    if neurons is not None:  # read before the pass: the output may not replace it
        from deploytool.onnx_io import check_output_path

        check_output_path(output, inputs=(model, neurons))
    ids = load_neurons_file(neurons) if neurons is not None else None
    echo_result(prune_ffn_file(model, output, FFNPruneConfig(keep=keep, neurons=ids, importance=importance),
                               verify=not no_verify), output)


@click.command("reorder", cls=GrammarCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--importance", type=click.Path(dir_okay=False), default=None,
              help="Importance JSON (deploytool-importance/1); default: weight-magnitude (data-free).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@no_verify_option
def reorder(model: str, importance: str | None, output: str, no_verify: bool) -> None:
    """Sort heads and FFN neurons by importance (most important first); outputs unchanged.

    Unless --no-verify, the output is run in ONNX Runtime and must give the input's outputs (within
    1e-4 of their scale) before it is written.
    """
    from deploytool.passes.reorder import ReorderConfig, reorder_file

    echo_result(reorder_file(model, output, ReorderConfig(importance=importance), verify=not no_verify), output,
                shrinks=False)


def echo_result(result, output: str, *, shrinks: bool = True) -> None:
    c, s = result.counts, result.stats
    click.echo(f"wrote {output}")
    click.echo(f"  layers  {c.layers_before} -> {c.layers_after}")
    click.echo(f"  heads   {c.heads_before} -> {c.heads_after}  per layer {c.heads_per_layer}")
    click.echo(f"  neurons {c.neurons_before} -> {c.neurons_after}  per layer {c.neurons_per_layer}")
    click.echo(f"  params  {c.params_before:,} -> {c.params_after:,}")
    if result.bytes_after is not None:
        click.echo(f"  bytes   {result.bytes_before:,} -> {result.bytes_after:,}")
    if "width_effective" in s:
        click.echo(f"  width {s['width']} applied to heads as {s['width_effective']} ({s['width_note']}); "
                   f"layers kept {s['layers_kept']}")
    if "rule" in s:
        click.echo(f"  rounding {s['rounding']}: {s['rule']}")
    if "importance" in s:
        click.echo(f"  importance: {s['importance']}")
    if "alibi_table_bytes_computed" in s:
        from deploytool.units import fmt_bytes

        click.echo(f"  ALiBi table ({fmt_bytes(s['alibi_table_bytes_computed'])}) written as the computation of its "
                   "values (the same float32 values at run time)")
    for skip in result.skipped:
        click.echo(f"  skipped {skip.node}: {skip.reason}")
    echo_gate(result.gate)
    if s.get("note"):
        click.echo(f"note: {s['note']}")
    if s.get("shared_weights_note"):
        click.echo(f"note: {s['shared_weights_note']}")
    if s.get("merged_constants_note"):
        click.echo(f"note: {s['merged_constants_note']}")
    # the counts, not the parameters: layers that share weights (ALBERT) leave the parameter count unchanged
    # when some of them are removed
    unchanged = ((c.layers_before, c.heads_before, c.neurons_before) == (c.layers_after, c.heads_after, c.neurons_after)
                 and c.params_after == c.params_before)
    if shrinks and unchanged:
        click.echo("note: nothing was removed (what was asked keeps every head, neuron and layer of this model: a "
                   "fraction that rounds to zero of them, or no ids); the output computes the same as the input")
