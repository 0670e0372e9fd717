"""Export a loaded transformers encoder with torch.onnx (TorchScript or dynamo exporter).

Both exporters trace a thin wrapper whose forward takes the named inputs and returns the single
output tensor (``last_hidden_state`` or ``logits``), with dynamic batch and sequence axes.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path

import torch

from deploytool.export.config import DEFAULT_OPSET, Exporter, Task
from deploytool.export.hf import input_names, max_sequence_length, trace_length

logger = logging.getLogger(__name__)

__all__ = ["export_torch", "export_model", "model_task"]


def model_task(model) -> Task:
    """Sequence classification when the model has a classifier head, else feature extraction."""
    return Task.SEQUENCE_CLASSIFICATION if hasattr(model, "classifier") or hasattr(model, "score") \
        else Task.FEATURE_EXTRACTION


class _Wrap(torch.nn.Module):
    """forward(input_ids, attention_mask[, token_type_ids]) -> one tensor."""

    def __init__(self, model, names: list[str], task: Task):
        super().__init__()
        self.m = model
        self.names = names
        self.task = task

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.names:
            kw["token_type_ids"] = token_type_ids
        out = self.m(**kw, return_dict=True)
        return out.logits if self.task is Task.SEQUENCE_CLASSIFICATION else out.last_hidden_state


def _dummy(model, names: list[str], batch: int = 2, seq: int = 8) -> tuple:
    # a position table shorter than 8 traces at its own length (it failed with the exporter's size mismatch); ids
    # from 3 skip the special tokens unless the vocabulary has no more
    seq = trace_length(model, seq)
    vocab = int(model.config.vocab_size)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3 if vocab > 3 else 0, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, seq - 2:] = 0  # a padded row, so the mask path is traced with real values
    tt = torch.zeros(batch, seq, dtype=torch.long)
    return tuple({"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}[n] for n in names)


#: one export at a time in a process (held by the caller's thread, which may take it again): torch's TorchScript
#: exporter keeps its state in module globals, and two threads' exports failed ("GLOBALS.in_onnx_export must be True")
EXPORT_LOCK = threading.RLock()


def export_torch(model, path: str | os.PathLike, *, task: Task, exporter: Exporter = Exporter.TORCH,
                 opset: int | None = None) -> int:
    """Write ``model`` to ``path`` with the TorchScript or dynamo exporter; returns the opset used. Exports in
    several threads run one after another."""
    with EXPORT_LOCK:
        return _export_torch(model, path, task=task, exporter=exporter, opset=opset)


def _export_torch(model, path: str | os.PathLike, *, task: Task, exporter: Exporter, opset: int | None) -> int:
    exporter = Exporter(exporter)
    names = input_names(model)
    out_name = task.output_name
    wrapped = _Wrap(model.eval(), names, task).eval()  # export restores the wrapper's mode onto model
    args = _dummy(model, names)
    opset = opset or DEFAULT_OPSET[exporter]
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        # TracerWarnings about constant tensors in transformers' masks are expected and harmless here
        warnings.simplefilter("ignore")
        if exporter is Exporter.TORCH:
            dyn = {n: {0: "batch", 1: "sequence"} for n in names}
            dyn[out_name] = {0: "batch"} if task is Task.SEQUENCE_CLASSIFICATION else {0: "batch", 1: "sequence"}
            torch.onnx.export(wrapped, args, str(path), input_names=names, output_names=[out_name],
                              dynamic_axes=dyn, opset_version=opset, dynamo=False, do_constant_folding=True)
        elif exporter is Exporter.DYNAMO:
            b = torch.export.Dim("batch", min=1, max=1024)
            s = torch.export.Dim("sequence", min=2, max=max_sequence_length(model))
            shapes = {n: {0: b, 1: s} for n in names}
            prog = torch.onnx.export(wrapped, args, input_names=names, output_names=[out_name],
                                     dynamic_shapes=shapes, opset_version=opset, dynamo=True,
                                     optimize=True, verbose=False, report=False)
            prog.save(str(path))
        else:
            raise ValueError(f"export_torch does not handle exporter {exporter.value!r}")
    return opset


def export_model(model, path: str | os.PathLike, *, exporter: str = "torch", opset: int | None = None) -> Path:
    """Low-level: export a loaded model to ``path`` without validation or metadata; returns the path.

    Prefer :func:`deploytool.export.export` (typed config, validation, metadata, atomic save).
    """
    export_torch(model, path, task=model_task(model), exporter=Exporter(exporter), opset=opset)
    return Path(path)
