"""``deploytool quantize | pack | repack``: parse options, build one config, call one library function, print.

Choices are plain strings validated by the typed configs, so a bad value is a one-line ``error:``
naming the field (exit 2), like every other bad input.
"""

from __future__ import annotations

import json

import click

from deploytool.cli._grammar import Choice, GrammarCommand, tokenizer_option
from deploytool.cli._verify import echo_gate, no_verify_option
from deploytool.errors import ConfigError


from deploytool.units import fmt_bytes as _fmt_bytes  # noqa: E402


def _echo(result, output: str, title: str) -> None:
    s = result.stats
    before, after = result.bytes_before, result.bytes_after
    size = ""
    if before and after:  # a graph of many small constants can grow (fp16's Casts outweigh its halved weights)
        ratio = (f"{before / after:.2f}x smaller" if before / after >= 1.005 else
                 f"{after / before:.2f}x larger" if after / before >= 1.005 else "about the same size")
        size = f" {_fmt_bytes(before)} -> {_fmt_bytes(after)} ({ratio})"
    click.echo(f"{title}: wrote {output}{size}")
    if result.variant is not None:
        click.echo(f"  variant: {result.variant}")
    for key, value in s.items():
        if key in ("note", "host_note", "arm_note", "by_role", "warning"):  # warning: the pass logged it (stderr)
            continue
        click.echo(f"  {key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    for role, r in s.get("by_role", {}).items():
        ratio = r["bytes_before"] / r["bytes_after"] if r["bytes_after"] else float("inf")
        click.echo(f"  {role}: {r['weights']} weights, {_fmt_bytes(r['bytes_before'])} -> "
                   f"{_fmt_bytes(r['bytes_after'])} ({ratio:.1f}x)")
    for skip in result.skipped:
        click.echo(f"  skipped {skip.node}: {skip.reason}")
    echo_gate(result.gate)
    for key in ("host_note", "arm_note", "note"):
        if key in s:
            click.echo(f"note: {s[key]}")


def _given(*params: str) -> list[str]:
    """The options among ``params`` that the user typed (not left at their default)."""
    ctx = click.get_current_context()
    names = {p.name: "/".join(p.opts[:1] + p.secondary_opts[:1]) for p in ctx.command.params}
    return [names[p] for p in params if ctx.get_parameter_source(p) is not click.core.ParameterSource.DEFAULT]


@click.command("quantize", cls=GrammarCommand,
               renamed={"--calib": "--calib-data", "--calib-samples": "--calib-size"})
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--int8", "int8", is_flag=True, help="int8 weights (dynamic by default: activations quantized at run time).")
@click.option("--fp16", "fp16", is_flag=True, help="fp16 weights and activations (inputs/outputs stay as they are).")
@click.option("--per-channel/--per-tensor", default=True, show_default=True, help="int8 weight scales per column.")
@click.option("--static", is_flag=True, help="Static int8: activation ranges from calibration data.")
@click.option("--calib-data", "calib_data", default=None,
              help="Calibration data for --static: a dataset name or CSV/JSONL file.")
@click.option("--calib-size", "calib_size", type=int, default=64, show_default=True, metavar="INT",
              help="Calibration texts used.")
@click.option("--calib-text-col", "calib_text_col", default="text", show_default=True,
              help="The --calib-data file's column of texts (a GLUE pair of columns is found by name).")
@click.option("--calib-text-pair-col", "calib_text_pair_col", default=None,
              help="The --calib-data file's column of a sentence pair's second texts.")
@tokenizer_option()
@click.option("--fusion", type=Choice("deploytool.passes.quantize_int8:Fusion"), default="attention", show_default=True,
              help="How attention is written: attention (QAttention, any ORT) | onnx (ONNX's Attention op, opset 23: "
                   "needs ONNX Runtime >= 1.23; measured 3-5% faster on x86) | mha | none (ORT's path).")
@click.option("--engine", type=Choice("deploytool.passes.quantize_int8:Engine"), default="native", show_default=True,
              help="Who writes the int8 graph: native (streamed, QAttention + DynamicQuantizeMatMul) | ort "
                   "(ORT's optimizer and quantize_dynamic). Options only ORT has (--static, --fusion mha|none) "
                   "use ort.")
@click.option("--weights", "weights", type=Choice("deploytool.passes.quantize_int8:WeightCodes"), default="int8", show_default=True,
              help="int8 GEMM weight codes: int8 (exact on VNNI x86 and ARM64) | pairsafe (scaled so that no "
                   "neighbouring pair of codes can saturate: exact everywhere, int8's speed) | uint8 (the int8 codes "
                   "+128, zero point 128: exact everywhere, slower on x86 without VNNI) | int7 (7-bit codes in [-63, 63]: cannot "
                   "saturate, half the resolution). "
                   "x86 without VNNI (AVX2 only) saturates int8 pairs (README: int8 on x86 without VNNI).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@no_verify_option
def quantize(model: str, int8: bool, fp16: bool, per_channel: bool, static: bool, calib_data: str | None,
             calib_size: int, calib_text_col: str, calib_text_pair_col: str | None, tokenizer: str | None,
             fusion: str, engine: str, weights: str, output: str, no_verify: bool) -> None:
    """int8 (dynamic or static) or fp16 quantization of an ONNX encoder."""
    if int8 == fp16:
        raise ConfigError("--int8/--fp16: give exactly one of them (int8 or fp16 quantization)")
    if fp16:
        given = _given("per_channel", "static", "calib_data", "calib_size", "calib_text_col",
                       "calib_text_pair_col", "tokenizer", "fusion", "engine", "weights")
        if given:
            raise ConfigError(f"{', '.join(given)}: int8 option(s), not used by --fp16")
        from deploytool.passes.fp16 import Fp16Config, convert_fp16_file

        _echo(convert_fp16_file(model, output, Fp16Config(), verify=not no_verify), output, "fp16")
        return
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    if not static and _given("calib_size"):  # its default (64) is no sign of it: the config cannot tell it was given
        raise ConfigError("calib_size: calibration texts are only used with static quantization (--static)")
    if engine == "native" and _given("engine") and (static or fusion not in ("attention", "onnx")):
        raise ConfigError(f"engine: the native writer does not do {'--static' if static else '--fusion ' + fusion}; "
                          "use --engine ort (or leave --engine out)")
    config = Int8Config(per_channel=per_channel, static=static, calib_data=calib_data, calib_size=calib_size,
                        calib_text_col=calib_text_col, calib_text_pair_col=calib_text_pair_col, tokenizer=tokenizer, fusion=fusion, engine=engine, weights=weights)
    _echo(quantize_int8_file(model, output, config, verify=not no_verify), output, "int8")


@click.command("pack", cls=GrammarCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--weights", type=Choice("deploytool.passes.pack_config:_LINEAR"), required=True,
              help="Linear weights: ternary | binary | split-binary (two binary planes: BinaryBERT's TWS, "
                   "`qat --mode binary --tws`).")
@click.option("--embeddings", type=Choice("deploytool.passes.pack_config:_TABLES"), default=None, help="Word embeddings: ternary | binary | split-binary | int8 | fp32 (default: as --weights).")
@click.option("--runtime", "runtime", type=Choice("deploytool.passes.pack_config:Runtime"), default="speed", show_default=True,
              help="speed (INT2 -> int8 kernels) | memory (MatMulNBits 2-bit) | densest (5 trits/byte).")
@click.option("--granularity", type=Choice("deploytool.passes.pack_config:Granularity"), default="layer", show_default=True, help="Scales per matrix (layer) or per row (row).")
@click.option("--accuracy-level", type=int, default=4, show_default=True, metavar="INT",
              help="MatMulNBits (runtime memory): 4 = int8 activations (fast), 0 = fp32 (exact).")
@click.option("--pack-head", is_flag=True,
              help="Pack the pooler/classifier weights too (default: they stay fp32, as in TernaryBERT).")
@click.option("--position-embeddings", type=Choice("deploytool.passes.pack_config:_TABLES"), default="fp32", show_default=True,
              help="Position and token-type tables: fp32 | int8 | ternary | binary | split-binary.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@no_verify_option
def pack(model: str, weights: str, embeddings: str | None, runtime: str, granularity: str, accuracy_level: int,
         pack_head: bool, position_embeddings: str, output: str, no_verify: bool) -> None:
    """Ternary/binary weights with real bit packing, runnable in stock ONNX Runtime."""
    if runtime != "memory" and _given("accuracy_level"):
        raise ConfigError(f"accuracy_level: only used by --runtime memory (MatMulNBits), not --runtime {runtime}")
    from deploytool.passes.pack_weights import PackConfig, pack_file

    config = PackConfig(weights=weights, embeddings=embeddings, runtime=runtime, granularity=granularity,
                        accuracy_level=accuracy_level, pack_head=pack_head, position_embeddings=position_embeddings)
    _echo(pack_file(model, output, config, verify=not no_verify), output, "pack")


@click.command("repack", cls=GrammarCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--runtime", "runtime", type=Choice("deploytool.passes.pack_config:Runtime"), required=True,
              help="speed (INT2 -> int8 kernels) | memory (MatMulNBits 2-bit: stays 2 bits in a bundle's .ort) | "
                   "densest (5 trits/byte).")
@click.option("--accuracy-level", type=int, default=4, show_default=True, metavar="INT",
              help="MatMulNBits (runtime memory): 4 = int8 activations (fast), 0 = fp32 (exact).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx path.")
@no_verify_option
def repack(model: str, runtime: str, accuracy_level: int, output: str, no_verify: bool) -> None:
    """A file `pack` wrote, moved to another runtime with the same codes and scales (no fp32 model needed)."""
    if runtime != "memory" and _given("accuracy_level"):
        raise ConfigError(f"accuracy_level: only used by --runtime memory (MatMulNBits), not --runtime {runtime}")
    from deploytool.passes.repack import RepackConfig, repack_file

    config = RepackConfig(runtime=runtime, accuracy_level=accuracy_level)
    _echo(repack_file(model, output, config, verify=not no_verify), output, "repack")
