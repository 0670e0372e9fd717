"""``deploytool bundle``: parse options -> BundleConfig -> deploytool.bundle.make_bundle -> print the result."""

from __future__ import annotations

import json

import click

from deploytool.cli._grammar import GrammarCommand, json_flag, seq_len_option, tokenizer_option
from deploytool.cli.device_cmd import profiles_dir_option


# GrammarCommand: a BundleConfig error names the option typed (qnn_calibration -> --qnn-calib-data)
@click.command("bundle", cls=GrammarCommand, folder_through_links=True)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--profile", required=True, help="Device profile with a mobile EP (XNNPACK, NNAPI, CoreML, QNN).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Bundle folder to write (new or empty; written complete or not at all).")
@seq_len_option(default=16, single=True, help="Sequence length of the fixed input whose outputs the manifest holds.")
@click.option("--seed", type=int, default=0, show_default=True, metavar="INT", help="Seed of the fixed input's token ids.")
@tokenizer_option()
@click.option("--no-qnn", "no_qnn", is_flag=True, help="Do not compile the QNN context binary (NPU profiles).")
# the QNN options default to None (BundleConfig's defaults): one given where no binary is compiled is refused
@click.option("--qnn-seq-len", "qnn_seq_len", type=click.IntRange(min=1), default=None, metavar="INT",
              help="The one sequence length the QNN context binary is compiled for (static shapes) [default: 128].")
@click.option("--qnn-calib-data", "qnn_calibration", default=None,
              help="Dataset whose texts calibrate the QNN quantization (needs a tokenizer) [default: seeded token "
                   "ids, said in the manifest].")
@click.option("--qnn-calib-size", "qnn_calibration_size", type=click.IntRange(min=1), default=None,
              metavar="INT", help="Calibration inputs [default: 8].")
@click.option("--qnn-calib-text-col", "qnn_calibration_text_col", default=None,
              help="The --qnn-calib-data file's column of texts [default: text, or a GLUE pair of columns].")
@click.option("--qnn-calib-text-pair-col", "qnn_calibration_text_pair_col", default=None,
              help="The --qnn-calib-data file's column of a sentence pair's second texts.")
@click.option("--repack-memory", "repack_memory", is_flag=True,
              help="A packed model: move its linear weights to MatMulNBits 2-bit first (deploytool repack --runtime "
                   "memory; same codes), so model.ort keeps them 2 bits instead of int8.")
@json_flag("Print the manifest as JSON on stdout.")
@profiles_dir_option
def bundle(model: str, profile: str, output: str, seq_len: int, seed: int, tokenizer: str | None, no_qnn: bool,
           qnn_seq_len: int | None, qnn_calibration: str | None, qnn_calibration_size: int | None,
           qnn_calibration_text_col: str | None, qnn_calibration_text_pair_col: str | None, repack_memory: bool, as_json: bool,
           profiles_dirs: tuple) -> None:
    """What an Android/iOS app needs: .ort model, required_operators.config, EP settings, tokenizer, manifest."""
    from deploytool.bundle import BundleConfig, make_bundle
    from deploytool.profiles import load_profile

    cfg = BundleConfig(profile=load_profile(profile, profiles_dirs), seq_len=seq_len,
                       seed=seed, tokenizer=tokenizer, qnn=not no_qnn,
                       qnn_seq_len=qnn_seq_len, qnn_calibration=qnn_calibration,
                       qnn_calibration_size=qnn_calibration_size, qnn_calibration_text_col=qnn_calibration_text_col,
                       qnn_calibration_text_pair_col=qnn_calibration_text_pair_col, repack_memory=repack_memory)
    result = make_bundle(model, output, cfg)
    if as_json:
        click.echo(json.dumps(result.manifest, indent=1))
    else:
        click.echo("\n".join(result.lines()))
