"""``deploytool export``: parse options -> ExportConfig -> deploytool.export.export -> print."""

from __future__ import annotations

import click

from deploytool.cli._grammar import Choice, GrammarCommand
from deploytool.errors import ConfigError
from deploytool.export.config import ExportConfig, Exporter, Task


@click.command("export", cls=GrammarCommand)
@click.option("--model", "model", required=True, help="minilm, or a local Hugging Face folder (config.json + weights).")
@click.option("--task", type=Choice([t.value for t in Task]), default=Task.FEATURE_EXTRACTION.value,
              show_default=True, help="feature-extraction outputs last_hidden_state; sequence-classification logits.")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Output .onnx file (written atomically).")
@click.option("--opset", type=int, default=None, metavar="INT",
              help="ONNX opset (default: torch 17, dynamo 20, optimum the architecture's default).")
@click.option("--exporter", type=Choice([e.value for e in Exporter]), default=Exporter.TORCH.value,
              show_default=True, help="torch (TorchScript) and optimum exports fuse in ORT's BERT optimizer; dynamo does not.")
@click.option("--validate/--no-validate", default=True, show_default=True,
              help="Compare with PyTorch on fixed inputs (lengths 8, 128 and a padded batch).")
@click.option("--atol", type=float, default=1e-4, show_default=True, metavar="FLOAT", help="Max abs difference allowed in validation.")
@click.option("--trust-remote-code", is_flag=True, default=False,
              help="Run the model folder's own modeling code (config.json auto_map: jina-embeddings-v2, "
                   "nomic-embed-text, gte-*-v1.5); it executes that code.")
def export(model: str, task: str, output: str, opset: int | None, exporter: str, validate: bool, atol: float,
           trust_remote_code: bool) -> None:
    """Export a PyTorch/Hugging Face encoder to ONNX, validated against PyTorch."""
    from deploytool.export import export as run_export
    from deploytool.units import fmt_mb

    source = click.get_current_context().get_parameter_source("atol")
    if not validate and source is not click.core.ParameterSource.DEFAULT:  # a tolerance nothing is compared with
        raise ConfigError("--atol: the tolerance of the validation, which --no-validate turns off; give one of them")
    config = ExportConfig(model=model, task=Task(task), exporter=Exporter(exporter),
                          opset=opset, validate=validate, atol=atol, trust_remote_code=trust_remote_code)
    result = run_export(config, output)
    for name, diff in result.max_abs_diff.items():
        click.echo(f"validation {name}: max abs diff {diff:.3g} (atol {result.atol:g})")
    if not result.validated:
        click.echo("validation skipped (--no-validate)")
    if result.alibi_table_bytes_computed:
        click.echo(f"ALiBi table ({result.alibi_table_bytes_computed / 1e6:.2f} MB of buffer) written as the "
                   "computation of its values (the same float32 values at any length)")
    click.echo(f"exported {result.metadata.get('family', '?')} ({result.task.value}, {result.exporter.value}, "
               f"opset {result.opset}, {fmt_mb(result.file_size / 1e6)} MB, {result.seconds:.1f} s) -> {result.path}")
    if result.checkpoint_dtype:
        click.echo(f"note: the checkpoint's weights are {result.checkpoint_dtype} (its config.json); exported and "
                   "validated in float32 (deploytool quantize --fp16 writes an fp16 file)")
