"""Independent PyTorch references for the structured ONNX passes (tests and benchmarks only).

- :func:`prune_heads_reference`: ``transformers``' own ``PreTrainedModel.prune_heads`` (4.57 has it).
- :func:`slice_reference`: a DynaBERT sub-network built on the PyTorch model: heads through
  ``prune_heads`` (keep the first ``round(H*w)``), FFN neurons by slicing the ``nn.Linear`` weights
  (keep the first ``round_to_nearest(F, w, H)``), layers by keeping DynaBERT's ``kept_layers_index``
  in the ``nn.ModuleList``. :func:`round_to_nearest` and :func:`dynabert_kept_layers` are copied
  from DynaBERT's public code (``DynaBERT/transformers/modeling_bert.py`` and its training loop);
  ``rounding="half-up"`` restates this project's earlier rule instead.
- :func:`ffn_reference`: FFN neuron removal on the PyTorch model.
- :func:`reorder_reference`` is not needed: reordering must leave the original model's outputs as is.

The rounding rules are re-stated here on purpose (not imported from the pass) so the reference stays
independent of the code under test.
"""

from __future__ import annotations

import copy
import math
from typing import Mapping, Sequence

import numpy as np
import torch


def _base(model):
    """The encoder module holding ``encoder.layer`` / ``transformer.layer``."""
    return getattr(model, model.base_model_prefix, model)


def layers_of(model) -> torch.nn.ModuleList:
    base = _base(model)
    if hasattr(base, "encoder"):
        return base.encoder.layer
    if hasattr(base, "transformer"):
        return base.transformer.layer
    raise TypeError(f"no encoder layers found in {type(model).__name__}")


def _ffn_linears(layer) -> tuple[torch.nn.Linear, torch.nn.Linear]:
    if hasattr(layer, "intermediate"):
        return layer.intermediate.dense, layer.output.dense
    return layer.ffn.lin1, layer.ffn.lin2


def _num_heads(layer) -> int:
    att = layer.attention
    return att.self.num_attention_heads if hasattr(att, "self") else att.n_heads


def _slice_linear(lin: torch.nn.Linear, idx: torch.Tensor, dim: int) -> torch.nn.Linear:
    w = lin.weight.detach().index_select(dim, idx).clone()
    b = lin.bias.detach().clone() if lin.bias is not None else None
    if dim == 0 and b is not None:
        b = b[idx].clone()
    new = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def _set_ffn(layer, keep: Sequence[int]) -> None:
    idx = torch.as_tensor(list(keep), dtype=torch.long)
    lin1, lin2 = _ffn_linears(layer)
    new1, new2 = _slice_linear(lin1, idx, 0), _slice_linear(lin2, idx, 1)
    if hasattr(layer, "intermediate"):
        layer.intermediate.dense, layer.output.dense = new1, new2
    else:
        layer.ffn.lin1, layer.ffn.lin2 = new1, new2


def prune_heads_reference(model, heads: Mapping[int, Sequence[int]]):
    """A copy of ``model`` with ``heads`` ({layer: [ids]}) removed by transformers' ``prune_heads``."""
    m = copy.deepcopy(model).eval()
    m.prune_heads({int(k): list(v) for k, v in heads.items() if len(v)})
    return m


def ffn_reference(model, keep: Mapping[int, Sequence[int]]):
    """A copy of ``model`` whose layer i keeps FFN neurons ``keep[i]``."""
    m = copy.deepcopy(model).eval()
    layers = layers_of(m)
    for i, idx in keep.items():
        _set_ffn(layers[int(i)], idx)
    return m


# --- DynaBERT's public code (huawei-noah/Pretrained-Language-Model, DynaBERT/transformers/modeling_bert.py)


def round_to_nearest(input_size, width_mult, num_heads, min_value=1):
    new_width_mult = round(num_heads * width_mult)*1.0/num_heads
    input_size = int(new_width_mult * input_size)
    new_input_size = max(min_value, input_size)
    return new_input_size


def dynabert_num_heads(orig_num_attention_heads, width_mult):
    # BertSelfAttention.forward:
    #     self.num_attention_heads = round(self.orig_num_attention_heads * self.query.width_mult)
    return round(orig_num_attention_heads * width_mult)


def dynabert_kept_layers(depth_mult, num_layers):
    # BertEncoder.forward ("uniformly remove layers")
    depth = round(depth_mult * num_layers)
    kept_layers_index = []
    for i in range(depth):
        kept_layers_index.append(math.floor(i / depth_mult))
    return kept_layers_index


# --- this project's earlier rule (SliceConfig(rounding="half-up"))


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def half_up_counts(width: float, heads: int, ffn: int) -> tuple[int, int]:
    return _half_up(width * heads), max(1, _half_up(width * ffn))


def half_up_kept_layers(depth: float, num_layers: int) -> list[int]:
    n = _half_up(depth * num_layers)
    return [min(int(math.floor(i / depth + 1e-9)), num_layers - 1) for i in range(n)]


def slice_counts(width: float, heads: int, ffn: int, rounding: str = "dynabert") -> tuple[int, int]:
    """(heads kept, FFN neurons kept) of a layer with ``heads`` heads and ``ffn`` neurons."""
    if rounding == "dynabert":
        return dynabert_num_heads(heads, width), round_to_nearest(ffn, width, heads)
    if rounding == "half-up":
        return half_up_counts(width, heads, ffn)
    raise ValueError(rounding)


def slice_layers(depth: float, num_layers: int, rounding: str = "dynabert") -> list[int]:
    """Original indices of the layers kept at ``depth``."""
    if rounding == "dynabert":
        return dynabert_kept_layers(depth, num_layers)
    if rounding == "half-up":
        return half_up_kept_layers(depth, num_layers)
    raise ValueError(rounding)


def slice_reference(model, width: float, depth: float, rounding: str = "dynabert"):
    """A copy of ``model`` sliced the DynaBERT way (first heads/neurons, every 1/d-th layer).

    ``rounding``: ``"dynabert"`` (DynaBERT's public code, above) or ``"half-up"`` (the earlier rule).
    """
    m = copy.deepcopy(model).eval()
    layers = layers_of(m)
    n_layers = len(layers)
    heads = {}
    for i, layer in enumerate(layers):
        h = _num_heads(layer)
        f = _ffn_linears(layer)[0].out_features
        kh, kf = slice_counts(width, h, f, rounding)
        heads[i] = list(range(kh, h))
        _set_ffn(layer, list(range(kf)))
    m.prune_heads({k: v for k, v in heads.items() if v})
    keep = slice_layers(depth, n_layers, rounding)
    kept = torch.nn.ModuleList([layers[i] for i in keep])
    base = _base(m)
    if hasattr(base, "encoder"):
        base.encoder.layer = kept
    else:
        base.transformer.layer = kept
    if hasattr(m.config, "num_hidden_layers"):
        m.config.num_hidden_layers = len(keep)
    else:
        m.config.n_layers = len(keep)
    return m


def torch_outputs(model, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """The model's main output (logits or last_hidden_state) on numpy feeds it accepts."""
    import inspect

    params = inspect.signature(model.forward).parameters
    kw = {k: torch.as_tensor(v) for k, v in feeds.items() if k in params}
    with torch.no_grad():
        out = model(**kw)
    t = out.logits if hasattr(out, "logits") else out.last_hidden_state
    return t.numpy()


def num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def subnetwork_reference(model, heads_removed: Mapping[int, Sequence[int]] | None = None,
                         ffn_keep: Mapping[int, Sequence[int]] | None = None,
                         layers_keep: Sequence[int] | None = None):
    """A copy of ``model`` with heads removed (``prune_heads``), FFN neurons kept, layers kept.

    Layer indices refer to the original model throughout.
    """
    m = prune_heads_reference(model, heads_removed or {})
    layers = layers_of(m)
    for i, idx in (ffn_keep or {}).items():
        _set_ffn(layers[int(i)], idx)
    if layers_keep is not None:
        kept = torch.nn.ModuleList([layers[i] for i in layers_keep])
        base = _base(m)
        if hasattr(base, "encoder"):
            base.encoder.layer = kept
        else:
            base.transformer.layer = kept
    return m
