"""The thin PyTorch training module: fine-tuning, importance, DynaBERT, ternary/binary QAT, evaluation.

Each verb is one function taking one typed config (``deploytool.train.config``) and returning a result
record (a dict, JSON-ready); the CLI (``deploytool.cli.train_cmd``) only builds the config and prints.
Modules are imported lazily so ``import deploytool.train`` stays cheap.
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
