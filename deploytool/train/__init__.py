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

# The verbs, one per module. A verb never shares its name with a module of this package: with
# ``finetune`` both a function here and the module ``deploytool.train.finetune``, the attribute was the
# function or the module depending on whether the module had been imported yet. So
# ``deploytool.train.finetune`` / ``.evaluate`` / ``.distill`` are always the modules (import the
# function from there: ``from deploytool.train.finetune import finetune``) and this package offers the
# verbs under names of their own.
__all__ = ["finetune_model", "compute_importance", "train_dynabert", "train_qat", "evaluate_model", "distill_model"]

_WHERE = {  # public name -> (module, function)
    "finetune_model": ("deploytool.train.finetune", "finetune"),
    "compute_importance": ("deploytool.train.importance", "compute_importance"),
    "train_dynabert": ("deploytool.train.dynabert", "train_dynabert"),
    "train_qat": ("deploytool.train.qat", "train_qat"),
    "evaluate_model": ("deploytool.train.evaluate", "evaluate"),
    "distill_model": ("deploytool.train.distill", "distill"),
}


def __getattr__(name: str):
    if name in _WHERE:
        module, attr = _WHERE[name]
        return getattr(importlib.import_module(module), attr)
    try:  # a submodule not imported yet is still the submodule, whatever was imported before
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
