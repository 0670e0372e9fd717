"""``deploytool distill``: parse options, build a DistillConfig, call ``deploytool.train.distill.distill``."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from deploytool.cli._grammar import Choice, GrammarCommand, json_flag
from deploytool.cli.train_cmd import _data_options, _echo, _export, _optim_options, _q, _split_line, _trunc
from deploytool.train.distill import DistillConfig, DistillInit


@click.command("distill", cls=GrammarCommand)
@click.option("--teacher", required=True, type=click.Path(path_type=Path), help="Fine-tuned teacher folder.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Student HF folder.")
@click.option("--layers", default=4, show_default=True, type=int, metavar="INT", help="Student layers (<= the teacher's).")
@click.option("--hidden", default=312, show_default=True, type=int, metavar="INT", help="Student hidden size.")
@click.option("--heads", default=12, show_default=True, type=int, metavar="INT", help="Student attention heads (divide hidden).")
@click.option("--ffn", default=1200, show_default=True, type=int, metavar="INT", help="Student FFN (intermediate) size.")
@click.option("--init", type=Choice([i.value for i in DistillInit]), default="teacher-slice",
              show_default=True, help="Truncated teacher layers (uniform layer map) or a random student.")
@click.option("--importance-examples", default=256, show_default=True, type=int, metavar="INT",
              help="teacher-slice: reorder heads/neurons by importance on N examples first (0: don't).")
@click.option("--intermediate-epochs", default=0.0, show_default=True, type=float, metavar="FLOAT",
              help="TinyBERT step 1: epochs on hidden + attention losses only, before --epochs on all.")
@click.option("--temperature", default=1.0, show_default=True, type=float, metavar="FLOAT",
              help="Softmax temperature of the soft cross-entropy.")
@click.option("--w-logits", default=1.0, show_default=True, type=float, metavar="FLOAT", help="Soft cross-entropy weight.")
@click.option("--w-hidden", default=1.0, show_default=True, type=float, metavar="FLOAT", help="Hidden-state MSE weight (via W_h).")
@click.option("--w-attention", default=1.0, show_default=True, type=float, metavar="FLOAT", help="Attention-score MSE weight.")
@click.option("--w-labels", default=0.0, show_default=True, type=float, metavar="FLOAT", help="Hard-label cross-entropy weight.")
@functools.partial(_data_options, default_data=None)
@_optim_options(1e-4, 1.0)
@json_flag("Print the result record as JSON to stdout.")
def distill(teacher, output, layers, hidden, heads, ffn, init, importance_examples, intermediate_epochs, temperature,
            w_logits, w_hidden, w_attention, w_labels, data_cfg, epochs, lr, batch_size, threads, cpu, as_json):
    """TinyBERT-style task distillation of a teacher into a smaller student shape."""
    from deploytool.train.distill import distill as run

    cfg = DistillConfig(teacher=teacher, output=output, data=data_cfg, layers=layers, hidden=hidden, heads=heads,
                        ffn=ffn, init=init, importance_examples=importance_examples,
                        intermediate_epochs=intermediate_epochs, temperature=temperature, w_logits=w_logits,
                        w_hidden=w_hidden, w_attention=w_attention, w_labels=w_labels, epochs=epochs, lr=lr,
                        batch_size=batch_size, threads=threads, cpu=cpu)
    r = run(cfg)
    from deploytool.train.evaluate import acc_label

    s, p = r["student_shape"], r["parameters"]
    lines = _split_line(r) + [f"distilled {r['teacher_shape']['layers']}x{r['teacher_shape']['hidden']} -> "
             f"{s['layers']}x{s['hidden']} ({s['heads']} heads, FFN {s['ffn']}; layer map {r['layer_map']}) "
             f"in {r['seconds']:.1f} s on {r['train_examples']} examples{_trunc(r['truncated_train'])}",
             f"parameters {p['student']:,} ({100 * p['ratio']:.1f}% of the teacher's {p['teacher']:,})",
             f"dev accuracy {acc_label(r['dev'])} (teacher {acc_label(r['teacher_dev'])})"]
    lines += [f"note: {n}" for n in r["notes"]]
    lines.append(f"saved {output}")
    lines.append(f"next: {_export(output)} (to quantize it first: deploytool qat --teacher {_q(output)} -o FOLDER)")
    _echo(r, as_json, lines)
