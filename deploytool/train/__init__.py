"""The thin PyTorch training module: fine-tuning, importance, DynaBERT, ternary/binary QAT, evaluation.

Each verb is one function taking one typed config (``deploytool.train.config``) and returning a result
record (a dict, JSON-ready); the CLI (``deploytool.cli.train_cmd``) only builds the config and prints.
Modules are imported lazily so ``import deploytool.train`` stays cheap.

The pipeline on the command line (every folder is a Hugging Face folder with safetensors, config,
tokenizer and a ``deploytool.json`` recording the split, schedule and dev metrics)::

    deploytool train --model minilm --data rotten-tomatoes -o teacher
    deploytool importance teacher -o teacher_importance.json [--reorder teacher_reordered]
    deploytool dynabert --teacher teacher -o dyn --widths 0.25,0.5,0.75,1.0 --depths 0.5,0.75,1.0
    deploytool export --model dyn --task sequence-classification -o dyn.onnx
    deploytool slice dyn.onnx --width 0.5 --depth 0.75 -o dyn_s.onnx
    deploytool eval dyn_s.onnx --tokenizer dyn          # or: deploytool eval dyn --width 0.5 --depth 0.75
    deploytool qat --teacher teacher --mode ternary -o tern
    deploytool export --model tern --task sequence-classification -o tern.onnx
    deploytool pack tern.onnx --weights ternary -o tern_packed.onnx   # same granularity as qat
    deploytool eval tern_packed.onnx --tokenizer tern

On a GPU or several nodes, run the same commands under ``accelerate launch`` (``--cpu`` forces CPU).
"""

from __future__ import annotations

import importlib

__all__ = ["finetune", "compute_importance", "train_dynabert", "train_qat", "evaluate", "distill"]

_WHERE = {
    "finetune": "deploytool.train.finetune",
    "compute_importance": "deploytool.train.importance",
    "train_dynabert": "deploytool.train.dynabert",
    "train_qat": "deploytool.train.qat",
    "evaluate": "deploytool.train.evaluate",
    "distill": "deploytool.train.distill",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
