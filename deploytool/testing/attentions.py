"""Tiny encoders exported with some layers' attention probabilities as graph outputs (``output_attentions``).

transformers returns every layer's probabilities with ``output_attentions=True``; a user who keeps only some of
them (one layer's heads for a visualisation, say) exports a graph in which just those layers' ``Softmax`` outputs
are graph outputs, named ``attentions_<layer>``, beside ``last_hidden_state``. Built with the TorchScript exporter
as deploytool's own export does (dynamic batch and sequence, a padded row traced), without its validation, which
compares one output only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

__all__ = ["export_exposing_attentions"]


def export_exposing_attentions(model, path: str | os.PathLike, layers: list[int], *, opset: int = 17) -> Path:
    """Export the transformers encoder ``model`` (eager attention, a feature extractor) to ``path`` with outputs
    ``last_hidden_state`` then ``attentions_<i>`` for each ``i`` of ``layers`` (``[batch, heads, S, S]``)."""
    import torch

    names = ["input_ids", "attention_mask", "token_type_ids"]

    class _Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                         output_attentions=True, return_dict=True)
            return (out.last_hidden_state, *[out.attentions[i] for i in layers])

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, int(model.config.vocab_size), (2, 8), generator=g)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0
    outputs = ["last_hidden_state"] + [f"attentions_{i}" for i in layers]
    dyn = {n: {0: "batch", 1: "sequence"} for n in names + ["last_hidden_state"]}
    dyn.update({o: {0: "batch", 2: "sequence", 3: "sequence"} for o in outputs[1:]})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about transformers' mask constants
        torch.onnx.export(_Wrap().eval(), (ids, mask, torch.zeros_like(ids)), str(path), input_names=names,
                          output_names=outputs, dynamic_axes=dyn, opset_version=opset, dynamo=False,
                          do_constant_folding=True)
    return Path(path)
