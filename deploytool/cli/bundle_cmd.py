"""``deploytool bundle``: parse options -> BundleConfig -> deploytool.bundle.make_bundle -> print the result."""

from __future__ import annotations

import json

import click

from deploytool.cli._parse import number
from deploytool.cli.device_cmd import profiles_dir_option


@click.command("bundle")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--profile", required=True, help="Device profile with a mobile EP (XNNPACK, NNAPI, CoreML, QNN).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Bundle folder to write (new or empty; written complete or not at all).")
@click.option("--seq-len", "seq_len", default="16", show_default=True,
              help="Sequence length of the fixed input whose host-verified outputs the manifest records "
                   "(and of the QNN context binary).")
@click.option("--seed", default="0", show_default=True, help="Seed of the fixed input's token ids.")
@click.option("--tokenizer", default=None, type=click.Path(file_okay=False),
              help="Folder with the tokenizer files [default: the model's folder].")
@click.option("--no-qnn", "no_qnn", is_flag=True, help="Do not compile the QNN context binary (NPU profiles).")
@click.option("--qnn-seq-len", "qnn_seq_len", default="128", show_default=True,
              help="The one sequence length the QNN context binary is compiled for (static shapes).")
@click.option("--qnn-calib-data", "qnn_calib", default=None,
              help="Dataset whose texts calibrate the QNN quantization [default: seeded token ids, said in the manifest].")
@click.option("--qnn-calib-size", "qnn_calib_size", default="8", show_default=True, help="Calibration inputs.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
@profiles_dir_option
def bundle(model: str, profile: str, output: str, seq_len: str, seed: str, tokenizer: str | None, no_qnn: bool,
           qnn_seq_len: str, qnn_calib: str | None, qnn_calib_size: str, as_json: bool, profiles_dirs: tuple) -> None:
    """What an Android/iOS app needs: .ort model, required_operators.config, EP settings, tokenizer, manifest."""
    from deploytool.bundle import BundleConfig, make_bundle
    from deploytool.profiles import load_profile

    cfg = BundleConfig(profile=load_profile(profile, profiles_dirs), seq_len=number(seq_len, "--seq-len", int),
                       seed=number(seed, "--seed", int), tokenizer=tokenizer, qnn=not no_qnn,
                       qnn_seq_len=number(qnn_seq_len, "--qnn-seq-len", int), qnn_calibration=qnn_calib,
                       qnn_calibration_size=number(qnn_calib_size, "--qnn-calib-size", int))
    result = make_bundle(model, output, cfg)
    if as_json:
        click.echo(json.dumps(result.manifest, indent=1))
    else:
        click.echo("\n".join(result.lines()))
