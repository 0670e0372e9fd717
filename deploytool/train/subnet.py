"""A BERT-family encoder run as a DynaBERT sub-network, with optional weight quantization.

``subnet_forward`` re-implements the forward pass of ``BertForSequenceClassification`` (and the
RoBERTa/ELECTRA classifiers, which share the layer modules) on the model's own parameters, so that

- width ``w`` keeps, in every layer, the first ``k = round(w * heads)`` heads (rows ``[0, k*head_dim)``
  of Q, K and V and the same columns of the attention output projection) and the first
  ``int(k / heads * ffn)`` FFN neurons (rows of the intermediate projection, columns of the output
  one): DynaBERT's ``round_to_nearest(ffn, w, heads)``;
- depth ``d`` keeps layers ``floor(i / d)`` for ``i < round(d * L)``;
- ``round`` is Python's (ties to even), as in DynaBERT's public code (``modeling_bert.py``);
- ``weight_fn(module_name, linear)`` may replace each encoder Linear weight (QAT's quantized weight);
- ``act_fn(x)`` may replace the input of each encoder Linear (QAT's 8-bit activations: Q, K and V read
  one quantized copy of the layer input, as the packed model's three MatMuls quantize the same tensor).

These are the ONNX slice pass's rules (its default ``rounding="dynabert"``; the counts come from
``deploytool.passes.slice_subnetwork``), so an exported model sliced to ``(w, d)`` computes
what this function computes. Only the kept slices are multiplied: a narrow sub-network is cheap. At
width 1, depth 1 and no ``weight_fn`` the result equals the transformers forward (tested).

Heads and FFN neurons are read per layer from the modules, so a model already cut to a width by
:func:`prune_to_width` (transformers' own ``prune_heads`` plus FFN Linear surgery; what BinaryBERT's
half-sized ternary model is) runs here at its own width 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deploytool.errors import DeployError
from deploytool.passes.slice_subnetwork import depth_keep, ffn_keep, width_keep

__all__ = ["SubnetOutput", "subnet_forward", "kept_heads", "kept_neurons", "kept_layers", "encoder_of",
           "encoder_linears", "check_supported", "prune_to_width"]

SUPPORTED = ("bert", "roberta", "electra")


def kept_heads(heads: int, width: float) -> int:
    """Heads kept at ``width``: ``round(heads * width)`` (DynaBERT, the slice pass's rule), at least one.

    (The slice pass refuses a width that keeps 0 heads; training keeps one head there instead.)
    """
    return max(1, min(heads, width_keep(width, heads)))


def kept_neurons(ffn: int, heads: int, width: float) -> int:
    """FFN neurons kept at ``width``: DynaBERT's ``round_to_nearest(ffn, width, heads)``, i.e.
    ``int(round(heads * width) / heads * ffn)`` (the slice pass's rule), at least one."""
    return max(1, min(ffn, ffn_keep(width, heads, ffn)))


def kept_layers(num_layers: int, depth: float) -> list[int]:
    """DynaBERT: layers ``floor(i / d)`` for ``i`` in ``range(round(d * L))`` (the slice pass's rule)."""
    if depth >= 1.0:
        return list(range(num_layers))
    return depth_keep(depth, num_layers) or [0]


def check_sizes(model, widths, depths) -> None:
    """ConfigError for a width that keeps no head or a depth that keeps no layer of ``model`` (the slice pass
    refuses the same sub-network: it could never be cut from the export)."""
    from deploytool.errors import ConfigError

    heads, layers = int(model.config.num_attention_heads), int(model.config.num_hidden_layers)
    for w in widths:
        if width_keep(w, heads) < 1:
            raise ConfigError(f"widths: {w:g} keeps round({w:g} * {heads}) = 0 of {heads} heads; use a width >= "
                              f"{0.5 / heads:.3g}")
    for d in depths:
        if d < 1.0 and not depth_keep(d, layers):
            raise ConfigError(f"depths: {d:g} keeps round({d:g} * {layers}) = 0 of {layers} layers; use a depth >= "
                              f"{0.5 / layers:.3g}")


def check_supported(model) -> None:
    mt = getattr(model.config, "model_type", "?")
    if mt not in SUPPORTED:
        raise DeployError(f"DynaBERT/QAT training supports {', '.join(SUPPORTED)} encoders, not '{mt}'")


def encoder_of(model):
    return model.base_model


def encoder_linears(model) -> dict[str, torch.nn.Linear]:
    """name -> Linear of every layer's Q, K, V, O, FFN-in and FFN-out (what QAT quantizes)."""
    out = {}
    for i, layer in enumerate(encoder_of(model).encoder.layer):
        out[f"layer.{i}.query"] = layer.attention.self.query
        out[f"layer.{i}.key"] = layer.attention.self.key
        out[f"layer.{i}.value"] = layer.attention.self.value
        out[f"layer.{i}.attn_out"] = layer.attention.output.dense
        out[f"layer.{i}.ffn_in"] = layer.intermediate.dense
        out[f"layer.{i}.ffn_out"] = layer.output.dense
    return out


@dataclass
class SubnetOutput:
    logits: torch.Tensor
    hidden: list[torch.Tensor]  # embeddings output, then one per kept layer
    scores: list[torch.Tensor]  # pre-softmax attention scores per kept layer [B, k, S, S]
    layers: list[int]  # original indices of the kept layers


def _w(weight_fn, name, lin):
    return lin.weight if weight_fn is None else weight_fn(name, lin)


def subnet_forward(model, input_ids, attention_mask, token_type_ids=None, *, width: float = 1.0,
                   depth: float = 1.0, weight_fn=None, act_fn=None, want_scores: bool = False) -> SubnetOutput:
    cfg = model.config
    base = encoder_of(model)
    training = model.training
    p_hidden = cfg.hidden_dropout_prob if training else 0.0
    p_attn = cfg.attention_probs_dropout_prob if training else 0.0
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    h = base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    if hasattr(base, "embeddings_project"):  # ELECTRA with embedding_size != hidden
        h = base.embeddings_project(h)
    ext = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
    B, S, _ = h.shape
    hidden, scores = [h], []
    layers = kept_layers(len(base.encoder.layer), depth)
    for li in layers:
        layer = base.encoder.layer[li]
        sa, ao = layer.attention.self, layer.attention.output
        pre = f"layer.{li}."
        heads, hd = sa.num_attention_heads, sa.attention_head_size
        k_heads = kept_heads(heads, width)
        k = k_heads * hd
        m = kept_neurons(layer.intermediate.dense.out_features, heads, width)

        hq = h if act_fn is None else act_fn(h)

        def proj(lin, name):
            return F.linear(hq, _w(weight_fn, pre + name, lin)[:k], lin.bias[:k]).view(B, S, k_heads, hd).transpose(1, 2)

        q, kk, v = proj(sa.query, "query"), proj(sa.key, "key"), proj(sa.value, "value")
        sc = q @ kk.transpose(-1, -2) / math.sqrt(hd)
        if want_scores:
            scores.append(sc)
        probs = F.dropout(torch.softmax(sc + ext, dim=-1), p_attn, training)
        ctx = (probs @ v).transpose(1, 2).reshape(B, S, k)
        if act_fn is not None:
            ctx = act_fn(ctx)
        a = F.linear(ctx, _w(weight_fn, pre + "attn_out", ao.dense)[:, :k], ao.dense.bias)
        h1 = ao.LayerNorm(F.dropout(a, p_hidden, training) + h)
        inter = layer.intermediate
        z = inter.intermediate_act_fn(F.linear(h1 if act_fn is None else act_fn(h1),
                                               _w(weight_fn, pre + "ffn_in", inter.dense)[:m], inter.dense.bias[:m]))
        if act_fn is not None:
            z = act_fn(z)
        o = F.linear(z, _w(weight_fn, pre + "ffn_out", layer.output.dense)[:, :m], layer.output.dense.bias)
        h = layer.output.LayerNorm(F.dropout(o, p_hidden, training) + h1)
        hidden.append(h)
    mt = cfg.model_type
    if mt == "bert":
        pooled = base.pooler(h) if base.pooler is not None else h[:, 0]
        logits = model.classifier(model.dropout(pooled))
    else:  # roberta / electra heads take the sequence output
        logits = model.classifier(h)
    return SubnetOutput(logits=logits, hidden=hidden, scores=scores, layers=layers)


def prune_to_width(model, width: float):
    """Cut ``model`` in place to the DynaBERT sub-network of ``width`` (depth 1): in every layer the
    first ``kept_heads`` heads (transformers' ``prune_heads``, recorded in ``config.pruned_heads`` so
    the saved folder loads again) and the first ``kept_neurons`` FFN neurons (rows of the
    intermediate projection, columns of the output one; ``config.intermediate_size``). The model must
    be importance-ordered (a DynaBERT folder is) for "the first" to be the ones worth keeping."""
    check_supported(model)
    layers = encoder_of(model).encoder.layer
    sizes = set()
    for li, layer in enumerate(layers):
        heads = layer.attention.self.num_attention_heads
        k = kept_heads(heads, width)
        ffn = layer.intermediate.dense.out_features
        m = kept_neurons(ffn, heads, width)
        if k < heads:
            model.prune_heads({li: list(range(k, heads))})
        if m < ffn:
            inter, out = layer.intermediate.dense, layer.output.dense
            new_in = torch.nn.Linear(inter.in_features, m, bias=inter.bias is not None).to(inter.weight)
            new_out = torch.nn.Linear(m, out.out_features, bias=out.bias is not None).to(out.weight)
            with torch.no_grad():
                new_in.weight.copy_(inter.weight[:m])
                if inter.bias is not None:
                    new_in.bias.copy_(inter.bias[:m])
                new_out.weight.copy_(out.weight[:, :m])
                if out.bias is not None:
                    new_out.bias.copy_(out.bias)
            layer.intermediate.dense, layer.output.dense = new_in, new_out
        sizes.add(layer.intermediate.dense.out_features)
    if len(sizes) == 1:
        model.config.intermediate_size = sizes.pop()
    else:  # a config holds one FFN size: a folder with mixed sizes would not load again
        raise DeployError(f"prune_to_width: layers ended with different FFN sizes {sorted(sizes)}")
    return model
