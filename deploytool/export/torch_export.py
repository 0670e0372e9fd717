"""Export a loaded transformers encoder with torch.onnx (TorchScript or dynamo exporter)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def _input_names(model) -> list[str]:
    names = ["input_ids", "attention_mask"]
    if getattr(model.config, "model_type", "") not in ("distilbert",) and getattr(
        model.config, "type_vocab_size", 0
    ) > 1:
        names.append("token_type_ids")
    return names


def export_model(model, path: str | os.PathLike, *, exporter: str = "torch", opset: int | None = None) -> Path:
    """Export ``model`` (a transformers encoder in eval mode) to ``path``; returns the path.

    exporter: "torch" (TorchScript, opset 17 default) or "dynamo" (torch.export, opset 20 default).
    """
    model = model.eval()
    names = _input_names(model)
    batch, seq = 2, 8
    dummy = {
        "input_ids": torch.randint(0, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0)),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        "token_type_ids": torch.zeros(batch, seq, dtype=torch.long),
    }
    args = tuple(dummy[n] for n in names)
    is_cls = hasattr(model, "classifier") or hasattr(model, "score")
    out_names = ["logits"] if is_cls else ["last_hidden_state"]

    class _Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *a):
            out = self.m(**dict(zip(names, a)))
            return out.logits if is_cls else out.last_hidden_state

    wrapped = _Wrap(model)
    dyn = {n: {0: "batch", 1: "sequence"} for n in names}
    dyn[out_names[0]] = {0: "batch"} if is_cls else {0: "batch", 1: "sequence"}
    path = Path(path)
    with torch.no_grad():
        if exporter == "torch":
            torch.onnx.export(wrapped, args, str(path), input_names=names, output_names=out_names,
                              dynamic_axes=dyn, opset_version=opset or 17, dynamo=False,
                              do_constant_folding=True)
        elif exporter == "dynamo":
            b = torch.export.Dim("batch", min=1, max=1024)
            s = torch.export.Dim("sequence", min=2, max=model.config.max_position_embeddings)
            shapes = tuple({0: b, 1: s} for _ in names)
            prog = torch.onnx.export(wrapped, args, input_names=names, output_names=out_names,
                                     dynamic_shapes=(shapes,), opset_version=opset or 20, dynamo=True,
                                     optimize=True, verbose=False)
            prog.save(str(path))
        else:
            raise ValueError(f"unknown exporter {exporter!r}")
    return path
