"""``deploytool qnn``: Snapdragon NPU coverage check, QNN quantization and offline compile.

Each subcommand parses options -> a QnnTarget from the device profile + one config -> one library
call in :mod:`deploytool.qnn` -> prints. Where ``onnxruntime-qnn`` cannot be loaded every subcommand
fails with one line and exit 2 (the library raises UnavailableError before doing any work).
"""

from __future__ import annotations

import json
import os

import click

from deploytool.cli._grammar import Choice, GrammarCommand, json_flag, seq_len_option, tokenizer_option
from deploytool.cli.device_cmd import profiles_dir_option
from deploytool.errors import ConfigError


def _target(profile: str, fp16: bool, act: str | None, weights: str | None, profiles_dirs=()):
    from deploytool.qnn import load_target

    return load_target(profile, profiles_dirs, precision="fp16" if fp16 else None, activation_dtype=act,
                       weight_dtype=weights)


def _named(param: str) -> bool:
    """Whether the user typed the option (not its default)."""
    source = click.get_current_context().get_parameter_source(param)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _quant(target, quantize: bool, seq: int, mask: str, mask_value: float, embedding: str | None,
           calibration_data: str, calibration_size: int, tokenizer: str | None, seed: int,
           calibration_text_col: str = "text", calibration_text_pair_col: str | None = None):
    from deploytool.qnn import QnnQuantConfig

    if not quantize:
        if _named("calibration_data") and calibration_data != "none":
            raise ConfigError(f"--calib-data {calibration_data}: calibrates --quantize, which is not given; "
                              "pass --quantize or leave --calib-data out")
        # as --calib-data: the other quantization options did nothing without --quantize (exit 0, ignored)
        unused = [o for p, o in (("mask", "--mask"), ("mask_value", "--mask-value"), ("embedding_dtype", "--embedding"),
                                 ("calibration_size", "--calib-size"), ("calibration_text_col", "--calib-text-col"),
                                 ("calibration_text_pair_col", "--calib-text-pair-col")) if _named(p)]
        if unused:
            raise ConfigError(f"{', '.join(unused)}: {'options' if len(unused) > 1 else 'an option'} of --quantize, "
                              f"which is not given; pass --quantize or leave {' and '.join(unused)} out")
        return None
    # the default dataset falls back to seeded ids without a tokenizer (the output says so); a named one is refused
    return QnnQuantConfig(activation_dtype=target.activation_dtype, weight_dtype=target.weight_dtype, seq_len=seq,
                          mask=mask, mask_value=mask_value, embedding_dtype=embedding,
                          calibration_data=None if calibration_data == "none" else calibration_data,
                          calibration_size=calibration_size, calibration_fallback=not _named("calibration_data"),
                          calibration_text_col=calibration_text_col,
                          calibration_text_pair_col=calibration_text_pair_col,
                          tokenizer=tokenizer, seed=seed)


def _quant_options(f):
    opts = [
        click.option("--profile", required=True, help="Device profile with an npu section (snapdragon-sm8650, ...)."),
        seq_len_option(default=None, single=True,
                       help="Fixed sequence length to compile (batch is 1) [default: 128, or the length a QDQ "
                            "model's inputs are fixed at; another length than that is refused]."),
        # names of closed sets (Choice): any case; a bad value is the configs' one-line error, not click's usage block
        click.option("--act", "activation_dtype", type=Choice("deploytool.qnn.target:_ACTIVATION_DTYPES"), default=None, help="Activation type: uint16 | uint8 [default: the profile's]."),
        click.option("--weights", "weight_dtype", type=Choice("deploytool.qnn.target:_WEIGHT_DTYPES"), default=None, help="Weight type: uint8 | int8 [default: the profile's]."),
        click.option("--mask", type=Choice("deploytool.qnn.quantize:MaskHandling"), default="bound", show_default=True,
                     help="bound: set the attention mask's -3.4e38/-10000 constant to --mask-value before "
                          "quantizing; keep: leave it."),
        click.option("--mask-value", type=float, default=-30.0, show_default=True, metavar="FLOAT",
                     help="The bounded mask bias."),
        click.option("--embedding", "embedding_dtype", type=Choice("deploytool.qnn.target:_ACTIVATION_DTYPES"), default=None,
                     help="Word-embedding table type: uint8 | uint16 [default: the activation type]."),
        click.option("--calib-data", "calibration_data", default="rotten-tomatoes", show_default=True,
                     help="Dataset whose train texts calibrate the quantization ('none': seeded token ids). "
                          "Needs a tokenizer; without one the default falls back to seeded token ids (said in "
                          "the output) and a named dataset is refused."),
        click.option("--calib-size", "calibration_size", type=int, default=128, show_default=True, metavar="INT",
                     help="Calibration texts."),
        click.option("--calib-text-col", "calibration_text_col", default="text", show_default=True,
                     help="Text column of a --calib-data file."),
        click.option("--calib-text-pair-col", "calibration_text_pair_col", default=None,
                     help="Second text column of a --calib-data file: each text a sentence pair. Default: none, or "
                          "a file's sentence1/sentence2 (and the other GLUE pairs) where it has no 'text' column."),
        tokenizer_option(),
        click.option("--seed", type=int, default=0, show_default=True, metavar="INT",
                     help="Seed of the calibration sample and the synthetic inputs."),
    ]
    for o in reversed(opts):
        f = o(f)
    return profiles_dir_option(f)


@click.group("qnn")
def qnn() -> None:
    """Snapdragon NPU (Hexagon HTP) through ONNX Runtime's QNN EP: check, quantize, compile.

    On x86 the HTP is Qualcomm's emulator: results are coverage and numerics (labelled EMULATED),
    never device latency.
    """


@qnn.command("check", cls=GrammarCommand, json_file=True, renamed={"--eval-size": "--max-eval"})
@click.argument("model", type=click.Path(dir_okay=False))
@_quant_options
@click.option("--quantize", is_flag=True, help="Quantize a float model for QNN first (QDQ, the profile's types).")
@click.option("--fp16", is_flag=True, help="Run a float model on the HTP in fp16 (enable_htp_fp16_precision).")
@click.option("--reference", default=None, type=click.Path(dir_okay=False),
              help="The float model a QDQ MODEL came from (accuracy vs fp32).")
@click.option("--data", default=None, help="Dataset for task accuracy (test split; needs a classifier).")
@click.option("--max-eval", "eval_size", type=int, default=100, show_default=True, metavar="INT",
              help="Test examples for task accuracy.")
@click.option("--strict", is_flag=True, help="Fail (exit 2) unless every node runs on the HTP.")
@click.option("-o", "--output", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Write the report as JSON (deploytool.qnn.check/1, atomically).")
@json_flag("Print the report as JSON (deploytool.qnn.check/1) to stdout instead of the text lines.")
@click.option("--rows", "rows_path", default=None, type=click.Path(dir_okay=False),
              help="Write a device-report row (deploytool.device_rows/1).")
def check(model, profile, seq_len, activation_dtype, weight_dtype, mask, mask_value, embedding_dtype,
          calibration_data, calibration_size, calibration_text_col, calibration_text_pair_col, tokenizer, seed,
          profiles_dirs, quantize, fp16,
          reference, data, eval_size, strict, json_path, as_json, rows_path) -> None:
    """Op coverage on the HTP, strict-mode pass/fail and accuracy vs fp32 for one Snapdragon SoC."""
    from deploytool.onnx_io import atomic_write, check_output_path
    from deploytool.qnn import QnnCheckConfig, check_model
    from deploytool.qnn.rows import check_row, write_rows

    if quantize and fp16:
        raise ConfigError("--quantize and --fp16 exclude each other")
    seq = seq_len
    target = _target(profile, fp16, activation_dtype, weight_dtype, profiles_dirs)
    quant = _quant(target, quantize, seq, mask, mask_value, embedding_dtype, calibration_data, calibration_size,
                   tokenizer, seed, calibration_text_col, calibration_text_pair_col)
    cfg = QnnCheckConfig(target=target, quant=quant,
                         seq_len=seq, reference=reference, eval_data=data, eval_size=eval_size,
                         tokenizer=tokenizer, strict=strict, seed=seed)
    for p in (json_path, rows_path):
        if p:
            check_output_path(p, inputs=(model,))
    if json_path and rows_path and os.path.abspath(json_path) == os.path.abspath(rows_path):  # the row replaced the
        # report (or the report the row) in one file, with exit 0
        raise ConfigError(f"--rows: {rows_path} is the -o/--output file too; give each its own path")
    report = check_model(model, cfg)
    d = report.to_dict()
    if json_path:
        with atomic_write(json_path) as f:
            json.dump(d, f, indent=2)
            f.write("\n")
    if rows_path:
        write_rows(rows_path, [check_row(d)])
    click.echo(json.dumps(d, indent=2) if as_json else "\n".join(report.lines()))
    for p in (json_path, rows_path):
        if p:
            click.echo(f"wrote {p}", err=as_json)


@qnn.command("quantize", cls=GrammarCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The QDQ model to write.")
@_quant_options
def quantize_(model, output, profile, seq_len, activation_dtype, weight_dtype, mask, mask_value, embedding_dtype,
              calibration_data, calibration_size, calibration_text_col, calibration_text_pair_col, tokenizer, seed,
              profiles_dirs) -> None:
    """Quantize a float encoder the way QNN wants it (QDQ, static shapes, bounded mask)."""
    from deploytool.qnn.quantize import quantize_file

    target = _target(profile, False, activation_dtype, weight_dtype, profiles_dirs)
    cfg = _quant(target, True, seq_len, mask, mask_value, embedding_dtype, calibration_data, calibration_size,
                 tokenizer, seed, calibration_text_col, calibration_text_pair_col)
    stats = quantize_file(model, output, cfg)
    click.echo(f"{model} -> {output}: QDQ {cfg.dtypes} for {target.label}, seq {stats['seq_len']}, "
               f"{stats['bytes'] / 1e6:.2f} MB, mask bounded: {stats.get('mask_bounded', 0)}")
    click.echo(f"  calibration: {stats['calibration']}")


@qnn.command("compile", cls=GrammarCommand, folder_through_links=True)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Output folder (new or empty): EPContext model, .bin, qnn_compile.json.")
@_quant_options
@click.option("--quantize", is_flag=True, help="Quantize a float model for QNN first (QDQ, the profile's types).")
@click.option("--fp16", is_flag=True, help="Compile a float model for fp16 on the HTP.")
@click.option("--embed", is_flag=True, help="Embed the context binary in the .onnx (ep.context_embed_mode=1).")
@click.option("--rows", "rows_path", default=None, type=click.Path(dir_okay=False),
              help="Write a device-report row (deploytool.device_rows/1).")
def compile_(model, output, profile, seq_len, activation_dtype, weight_dtype, mask, mask_value, embedding_dtype,
             calibration_data, calibration_size, calibration_text_col, calibration_text_pair_col, tokenizer, seed,
             profiles_dirs, quantize,
             fp16, embed, rows_path) -> None:
    """Offline QNN context binary for one Snapdragon SoC (EPContext model + .bin + JSON report)."""
    from deploytool.onnx_io import check_output_path
    from deploytool.qnn import QnnCompileConfig, compile_model
    from deploytool.qnn.rows import compile_row, write_rows

    if quantize and fp16:
        raise ConfigError("--quantize and --fp16 exclude each other")
    seq = seq_len
    target = _target(profile, fp16, activation_dtype, weight_dtype, profiles_dirs)
    quant = _quant(target, quantize, seq, mask, mask_value, embedding_dtype, calibration_data, calibration_size,
                   tokenizer, seed, calibration_text_col, calibration_text_pair_col)
    cfg = QnnCompileConfig(target=target, quant=quant,
                           seq_len=seq, embed=embed, tokenizer=tokenizer)
    if rows_path:
        check_output_path(rows_path, inputs=(model,))
    result = compile_model(model, output, cfg)
    if rows_path:
        write_rows(rows_path, [compile_row(result.report)])
    click.echo("\n".join(result.lines()))
