"""``deploytool train | importance | dynabert | qat | eval``: parse options, build a config, call the library."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from deploytool.cli._grammar import Choice, GrammarCommand, json_flag

from deploytool.train.config import (DataConfig, DynaBertConfig, EvalConfig, ImportanceConfig, QATConfig,
                                     TrainConfig, parse_float_list)


def _data_options(f, *, default_data: str | None = "rotten-tomatoes"):
    @click.option("--data", "data", default=default_data, show_default=default_data is not None,
                  help="Built-in dataset (rotten-tomatoes, movie-snippets, sms-spam, trec) or a CSV/JSONL file."
                  + ("" if default_data else " Default: the dataset recorded with the model at training time "
                     "(rotten-tomatoes if none)."))
    @click.option("--text-col", default="text", show_default=True, help="Text column of a user file.")
    @click.option("--text-pair-col", default=None,
                  help="Second text column of a user file: each example a sentence pair (GLUE's sentence2, "
                  "hypothesis), tokenized as one input. Default: none, or a file's sentence1/sentence2, "
                  "question/sentence, premise/hypothesis, question1/question2 or text_a/text_b where it has no "
                  "'text' column.")
    @click.option("--label-col", default="label", show_default=True, help="Label column of a user file.")
    @click.option("--seed", default=0, show_default=True, type=int, metavar="INT", help="Split and shuffle seed.")
    @click.option("--max-length", default=64, show_default=True, type=int, metavar="INT", help="Tokens per text (longer: truncated).")
    @click.option("--max-train", default=None, type=int, metavar="INT", help="Use only the first N (shuffled) training examples.")
    @click.option("--max-eval", default=None, type=int, metavar="INT", help="Evaluate on only the first N examples of the split.")
    @functools.wraps(f)
    def wrapper(*a, data, text_col, text_pair_col, label_col, seed, max_length, max_train, max_eval, **kw):
        kw["data_cfg"] = DataConfig(data=data, text_col=text_col, text_pair_col=text_pair_col, label_col=label_col,
                                    seed=seed, max_length=max_length, max_train=max_train, max_eval=max_eval)
        return f(*a, **kw)
    return wrapper


def _optim_options(lr_default: float, epochs_default: float | None = 1.0):
    def deco(f):
        if epochs_default is not None:
            f = click.option("--epochs", default=epochs_default, show_default=True, type=float, metavar="FLOAT",
                             help="Training epochs (fractions allowed).")(f)

        @click.option("--lr", default=lr_default, show_default=True, type=float, metavar="FLOAT",
                      help="Peak learning rate (AdamW).")
        @click.option("--batch-size", default=32, show_default=True, type=int, metavar="INT",
                      help="Training batch size.")
        @click.option("--threads", default=2, show_default=True, type=int, metavar="INT", help="torch CPU threads.")
        @click.option("--cpu", is_flag=True, help="Stay on the CPU even when a GPU is visible.")
        @functools.wraps(f)
        def wrapper(*a, **kw):
            return f(*a, **kw)
        return wrapper
    return deco


def _echo(result: dict, as_json: bool, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        for line in lines:
            click.echo(line)


def _trunc(n: int) -> str:
    return f" ({n} texts truncated)" if n else ""


def _acc(r: dict) -> str:
    from deploytool.train.evaluate import acc_label

    return acc_label(r)


def _q(path) -> str:
    import shlex

    return shlex.quote(str(path))


def _export(folder) -> str:
    """The command that exports a trained classifier folder (what every training command's result is for)."""
    return f"deploytool export --model {_q(folder)} --task sequence-classification -o {_q(f'{folder}.onnx')}"


def _pack(folder, weights: str, granularity: str, embeddings: bool, act_bits: int) -> str:
    """The pack command for a QAT folder exported by :func:`_export`: the settings it was trained with (fp32
    activations: the memory runtime at accuracy level 0 computes them; speed, the default, int8 as trained)."""
    opts = ((f" --granularity {granularity}" if granularity != "layer" else "")
            + ("" if embeddings else " --embeddings fp32")
            + (" --runtime memory --accuracy-level 0" if act_bits == 0 else ""))
    return (f"deploytool pack {_q(f'{folder}.onnx')} --weights {weights}{opts} "
            f"-o {_q(f'{folder}-{weights}.onnx')}")


def _split_line(r: dict) -> list[str]:
    from deploytool.data import SplitInfo

    d = r.get("dataset")
    if not isinstance(d, dict):
        return []
    try:
        return [f"data {SplitInfo(**d).describe()}"]
    except TypeError:
        return []


@click.command("train", cls=GrammarCommand)
@click.option("--model", default="minilm", show_default=True, help="Model name (minilm) or a HF folder.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output HF folder.")
@_data_options
@_optim_options(5e-5, 1.0)
@json_flag("Print the result record as JSON to stdout.")
def train(model, output, data_cfg, epochs, lr, batch_size, threads, cpu, as_json):
    """Fine-tune a teacher classifier and save a HF folder (safetensors, config, tokenizer)."""
    from deploytool.train.finetune import finetune

    cfg = TrainConfig(model=model, output=output, data=data_cfg, epochs=epochs, lr=lr, batch_size=batch_size,
                      threads=threads, cpu=cpu)
    r = finetune(cfg)
    _echo(r, as_json, _split_line(r) + [
        f"trained {r['training']['steps']} steps in {r['seconds']:.1f} s on "
        f"{r['train_examples']} examples{_trunc(r['truncated_train'])}",
        f"dev accuracy {_acc(r['dev'])}  F1 {r['dev']['f1_macro']:.2f}",
        f"saved {output}"] + ([f"process {r['process_index'] + 1}/{r['processes']}: weights sha256 "
                              f"{r['weights_sha256']}"] if r.get("processes", 1) > 1 else []) + [
        f"next: {_export(output)} (to make it smaller first: deploytool dynabert, qat or distill --teacher "
        f"{_q(output)} -o FOLDER)"])


@click.command("importance", cls=GrammarCommand)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Importance JSON file.")
@click.option("--reorder", "reorder_output", type=click.Path(path_type=Path), default=None,
              help="Also write the model with heads and neurons reordered by importance to this folder.")
@click.option("--max-examples", default=512, show_default=True, type=int, metavar="INT",
              help="Training examples the importance is computed on.")
@click.option("--batch-size", default=32, show_default=True, type=int, metavar="INT", help="Batch size.")
@click.option("--threads", default=2, show_default=True, type=int, metavar="INT", help="torch CPU threads.")
@functools.partial(_data_options, default_data=None)
@json_flag("Print the result record as JSON to stdout.")
def importance(model, output, reorder_output, max_examples, batch_size, threads, data_cfg, as_json):
    """Head importance (|dL/d head_mask|, Michel et al.) and FFN neuron importance (DynaBERT) of MODEL, a
    fine-tuned Hugging Face classifier folder (not an ONNX file: an ONNX model exported from it is sorted by
    'deploytool reorder M.onnx --importance FILE', FILE what this command writes)."""
    from deploytool.train.importance import compute_importance

    cfg = ImportanceConfig(model=model, output=output, reorder_output=reorder_output, data=data_cfg,
                           max_examples=max_examples, batch_size=batch_size, threads=threads)
    r = compute_importance(cfg)
    lines = _split_line(r) + [f"importance of {r['layers']} layers x {r['heads']} heads / {r['ffn']} neurons from "
             f"{r['examples']} examples{_trunc(r['truncated'])} -> {output}"]
    if reorder_output:
        lines.append(f"reordered model -> {reorder_output} (max logit change {r['reorder_max_diff']:.2e})")
    lines.append(f"next: deploytool dynabert --teacher {_q(model)} --importance {_q(output)} -o FOLDER, or "
                 f"deploytool reorder M.onnx --importance {_q(output)} -o M-reordered.onnx (M.onnx: {_q(model)} "
                 "exported)")
    _echo(r, as_json, lines)


@click.command("dynabert", cls=GrammarCommand)
@click.option("--teacher", required=True, type=click.Path(path_type=Path), help="Fine-tuned teacher folder.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output HF folder.")
@click.option("--widths", default="0.25,0.5,0.75,1.0", show_default=True, metavar="F[,F...]", help="Width multipliers in (0, 1].")
@click.option("--depths", default="0.5,0.75,1.0", show_default=True, metavar="F[,F...]", help="Depth multipliers in (0, 1].")
@click.option("--width-epochs", default=1.0, show_default=True, type=float, metavar="FLOAT", help="Stage 1 (width-adaptive).")
@click.option("--depth-epochs", default=1.0, show_default=True, type=float, metavar="FLOAT", help="Stage 2 (width+depth).")
@click.option("--subnets-per-step", default=0, show_default=True, type=int, metavar="INT",
              help="0: every sub-network each step; k >= 2: the width stage trains the largest, the smallest and "
                   "k-2 random widths, the depth stage every depth at widths rotating over the steps (more random "
                   "pairs up to k).")
@click.option("--importance", "importance_file", type=click.Path(path_type=Path), default=None,
              help="Teacher importance file (default: computed first).")
@functools.partial(_data_options, default_data=None)
@_optim_options(2e-5, None)
@json_flag("Print the result record as JSON to stdout.")
def dynabert(teacher, output, widths, depths, width_epochs, depth_epochs, subnets_per_step, importance_file,
             data_cfg, lr, batch_size, threads, cpu, as_json):
    """DynaBERT: rewire by importance, width-adaptive then width+depth-adaptive distillation."""
    from deploytool.train.dynabert import train_dynabert

    cfg = DynaBertConfig(teacher=teacher, output=output, data=data_cfg, widths=parse_float_list(widths, "widths"),
                         depths=parse_float_list(depths, "depths"), width_epochs=width_epochs,
                         depth_epochs=depth_epochs, subnets_per_step=subnets_per_step, importance=importance_file,
                         lr=lr, batch_size=batch_size, threads=threads, cpu=cpu)
    r = train_dynabert(cfg)
    lines = _split_line(r) + [f"DynaBERT trained in {r['seconds']:.1f} s on {r['train_examples']} examples"
                              f"{_trunc(r['truncated_train'])}; dev accuracy (width, depth):"]
    for row in r["dev"]:
        lines.append(f"  w={row['width']:<5g} d={row['depth']:<5g} {_acc(row)}")
    lines.append(f"saved {output}")
    lines.append(f"next: {_export(output)}, then deploytool slice {_q(f'{output}.onnx')} --width W --depth D "
                 f"-o {_q(f'{output}-W-D.onnx')} (W, D: a pair above)")
    _echo(r, as_json, lines)


@click.command("qat", cls=GrammarCommand)
@click.option("--teacher", required=True, type=click.Path(path_type=Path), help="Full-precision teacher folder.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output HF folder.")
@click.option("--mode", type=Choice(["ternary", "binary"]), default="ternary", show_default=True,
              help="Weight quantization: ternary (TernaryBERT) or binary (BinaryBERT).")
@click.option("--granularity", type=Choice(["layer", "row"]), default="layer", show_default=True,
              help="One scale per matrix or per output feature (use the same with `deploytool pack`).")
@click.option("--clip", default=3.0, show_default=True, type=float, metavar="FLOAT",
              help="STE passes gradients where |w| <= clip * alpha (0: everywhere).")
@click.option("--embeddings/--no-embeddings", "quantize_embeddings", default=True, show_default=True,
              help="Also quantize the word embeddings (row-wise), as `pack` does by default.")
@click.option("--act-bits", type=Choice(["8", "0"]), default="8", show_default=True,
              help="8: train with the Linear inputs quantized to int8 as the packed 'speed' runtime runs them "
                   "(TernaryBERT's 2-2-8); 0: fp32 activations.")
@click.option("--tws", is_flag=True,
              help="BinaryBERT's ternary weight splitting (--mode binary): train a half-width ternary model, split "
                   "it into an equivalent two-plane binary one, train that; pack with --weights split-binary.")
@click.option("--tws-width", type=float, default=0.5, show_default=True, metavar="FLOAT",
              help="Width of the ternary model that is split (DynaBERT's rule).")
@click.option("--tws-ternary-share", type=float, default=0.5, show_default=True, metavar="FLOAT",
              help="Share of --epochs trained ternary before the split; the rest trains binary.")
@click.option("--init", type=click.Path(path_type=Path), default=None,
              help="With --tws: the model the student is cut from (default: the teacher; a DynaBERT folder is "
                   "importance-ordered, so its first heads and neurons are the ones worth keeping).")
@functools.partial(_data_options, default_data=None)
@_optim_options(5e-5, 1.0)
@json_flag("Print the result record as JSON to stdout.")
def qat(teacher, output, mode, granularity, clip, quantize_embeddings, act_bits, tws, tws_width, tws_ternary_share,
        init, data_cfg, epochs, lr, batch_size, threads, cpu, as_json):
    """TernaryBERT/BinaryBERT quantization-aware distillation; saves the quantized weights."""
    from deploytool.train.qat import train_qat

    cfg = QATConfig(teacher=teacher, output=output, data=data_cfg, mode=mode, granularity=granularity, clip=clip,
                    quantize_embeddings=quantize_embeddings, act_bits=int(act_bits), tws=tws, tws_width=tws_width,
                    tws_ternary_share=tws_ternary_share, init=init, epochs=epochs, lr=lr,
                    batch_size=batch_size, threads=threads, cpu=cpu)
    r = train_qat(cfg)
    lines = _split_line(r) + [f"{mode} QAT: {r['training']['steps']} steps in {r['seconds']:.1f} s"
                              f"{_trunc(r['truncated_train'])}"]
    if r.get("tws"):
        t = r["tws"]
        lines.append(f"ternary weight splitting: width {t['width']:g} ({t['heads_per_layer'][0]} heads, FFN "
                     f"{t['ffn_size']}); dev ternary {_acc(t['ternary_dev'])}, right after the split "
                     f"{_acc(t['split_dev'])}")
    lines += [f"dev accuracy {_acc(r['dev'])} (teacher {_acc(r['teacher_dev'])})", f"saved {output}"]
    weights = "split-binary" if r.get("tws") else mode
    lines.append(f"next: {_export(output)}, then {_pack(output, weights, granularity, quantize_embeddings, int(act_bits))}")
    _echo(r, as_json, lines)


@click.command("eval", cls=GrammarCommand)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--split", type=Choice(["train", "dev", "test", "all"]), default="test", show_default=True,
              help="Which split of the data; 'all': every example of it (no split).")
@click.option("--test-file", type=click.Path(path_type=Path), default=None,
              help="Evaluate every example of this CSV/JSONL file (no split; one label is enough where the model "
                   "has label names (id2label) or the labels are class ids 0, 1, ...).")
@click.option("--tokenizer", type=click.Path(path_type=Path), default=None,
              help="An ONNX model's tokenizer: a folder (its config.json's label names are read too), or a "
                   "tokenizer file in one (default: beside the model, else in the model folder the export "
                   "recorded).")
@click.option("--width", default=1.0, show_default=True, type=float, metavar="FLOAT", help="PyTorch DynaBERT sub-network width.")
@click.option("--depth", default=1.0, show_default=True, type=float, metavar="FLOAT", help="PyTorch DynaBERT sub-network depth.")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Embedding models: the reference (ONNX file or HF folder; default: the fp32 original "
                   "recorded in the file).")
@click.option("--corpus", default=None,
              help="Embedding models: corpus (dataset name, .txt one text a line, or CSV/JSONL --text-col; "
                   "default: the review data).")
@click.option("--max-queries", default=1000, show_default=True, type=int, metavar="INT",
              help="Embedding models: corpus texts used (each is a query against the others).")
@click.option("--batch-size", default=64, show_default=True, type=int, metavar="INT", help="Evaluation batch size.")
@click.option("--threads", default=2, show_default=True, type=int, metavar="INT", help="torch / ONNX Runtime CPU threads.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write the result (with per-example predictions) as JSON.")
@functools.partial(_data_options, default_data=None)
@json_flag("Print the result record as JSON to stdout.")
def eval_(model, split, test_file, tokenizer, width, depth, reference, corpus, max_queries, batch_size, threads,
          output, data_cfg, as_json):
    """Accuracy (95% interval, n, macro F1) of a classifier, or neighbour agreement of an embedding model."""
    from deploytool.train.evaluate import evaluate

    cfg = EvalConfig(model=model, data=data_cfg, split=split, test_file=test_file, tokenizer=tokenizer, width=width,
                     depth=depth, reference=reference, corpus=corpus, max_queries=max_queries,
                     batch_size=batch_size, threads=threads, output=output)
    r = evaluate(cfg)
    if r.get("metric", "accuracy") != "accuracy":
        from deploytool.accuracy import fmt_accuracy

        ci = r.get("ci95") or [None, None]
        cos = ("" if r.get("cosine_mean") is None else
               f"; cosine to the reference mean {r['cosine_mean']:.4f}, worst {r['cosine_min']:.4f}")
        _echo(r, as_json, [f"{r['kind']} {model} vs {r['reference']} ({r['reference_kind']}) on {r['corpus']}: "
                           f"{r['metric']} {fmt_accuracy(r['accuracy'], r['n'], ci[0], ci[1], 2)}{cos}"])
        return
    f1 = f"  F1 {r['f1_macro']:.2f}" + (" (imbalanced labels: read F1)" if r["imbalanced"] else "")
    trunc = f", {r['truncated']} truncated" if r["truncated"] else ""
    lines = [f"{r['kind']} {model} on {r['dataset']['dataset']}/{r['split']}{trunc}: accuracy {_acc(r)}{f1}",
             f"data ({r['data_origin']}) {r['split_description']}"]
    if r.get("tokenizer_folder"):
        lines.append(f"tokenizer and label names from {r['tokenizer_folder']}")
    if r.get("label_note"):
        lines.append(f"note: {r['label_note']}")
    _echo(r, as_json, lines)
