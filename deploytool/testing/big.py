"""Independent PyTorch references for the big-model benchmark (``benchmarks/big_models.py``) and its tests.

:mod:`deploytool.testing.conformance` holds the references of the tiny matrix; its prune-heads and
prune-ffn cells use fixed specs for 4 layers. These take the spec of the call instead:

- :func:`head_prune_reference`: transformers' own ``prune_heads`` with the given ``{layer: [heads]}``;
- :func:`ffn_keep_reference`: the data-free weight-magnitude rule of ``FFNPruneConfig(keep=...)``,
  restated in torch (neuron j of a layer scores ``sqrt(|W1[j, :]|^2 + b1[j]^2 + |W2[:, j]|^2)``, the
  ``floor(keep * F + 0.5)`` highest are kept, ties in index order), applied with ``nn.Linear`` surgery;
- :func:`slice_reference`: conformance's DynaBERT reference (``reference(case, "slice-W-D", model)``).
"""

from __future__ import annotations

import copy
import math

from deploytool.testing import conformance as C

__all__ = ["case_for", "ffn_keep_reference", "head_prune_reference", "slice_reference"]


def case_for(model) -> C.ModelCase:
    """The conformance ModelCase of a transformers encoder (family from its config)."""
    family = model.config.model_type
    return C.ModelCase(f"{family}-{model.config.num_hidden_layers}x{model.config.hidden_size}", family)


def slice_reference(model, width: float, depth: float):
    """DynaBERT's sub-network of ``model`` (a deep copy), from conformance's restatement of its code."""
    ref, _ = C.reference(case_for(model), f"slice-{width:g}-{depth:g}", model)
    return ref


def head_prune_reference(model, heads: dict[int, list[int]]):
    """``model`` (a deep copy) with ``heads`` removed by transformers' ``prune_heads``."""
    m = copy.deepcopy(model).eval()
    C._prune_heads(m, {int(k): list(v) for k, v in heads.items()})
    return m


def ffn_keep_reference(model, keep: float):
    """``model`` (a deep copy) keeping, per layer, the ``floor(keep * F + 0.5)`` FFN neurons of largest
    weight magnitude (the data-free rule of ``FFNPruneConfig(keep=...)``, restated in torch)."""
    import torch

    m = copy.deepcopy(model).eval()
    kept: dict[int, list[int]] = {}
    for i, (mod, a, b) in enumerate(C._ffn_pairs(m)):
        w1, w2 = C._get(mod, a), C._get(mod, b)  # [F, hidden], [hidden, F] (nn.Linear: [out, in])
        score = (w1.weight.double() ** 2).sum(1) + (w2.weight.double() ** 2).sum(0)
        if w1.bias is not None:
            score = score + w1.bias.double() ** 2
        score = score.sqrt()
        f = score.numel()
        k = max(1, int(math.floor(keep * f + 0.5)))
        order = torch.argsort(-score, stable=True)
        kept[i] = sorted(order[:k].tolist())
    C._keep_ffn(m, kept)
    return m


def _encoder_linears(model) -> list:
    """Q, K, V, O and both FFN linears of every layer (BERT / RoBERTa / XLM-R / ELECTRA): the weights the
    pack pass quantizes (the pooler stays fp32)."""
    return [m for la in C._layers(model) for m in (la.attention.self.query, la.attention.self.key,
                                                    la.attention.self.value, la.attention.output.dense,
                                                    la.intermediate.dense, la.output.dense)]


def ternary_threshold_ties(model):
    """Diagnostic for the pack reference (not independent): ``model`` (a deep copy) with deploytool's own
    ternary codes (``quant.quantizers.ternarize``: TWN with the threshold ``0.7 mean|W|`` summed block by
    block over the ONNX weight ``[in, out]``, as the packer does), and how many codes differ from TWN
    computed in float64 by torch (conformance's reference). ternarize compares with the float64 threshold
    exactly; only a weight within the two sums' float64 rounding of it could go either way."""
    import numpy as np
    import torch

    from deploytool.quant.quantizers import dequantize, ternarize

    m = copy.deepcopy(model).eval()
    differ = 0
    with torch.no_grad():
        for lin in _encoder_linears(m):
            w = lin.weight.detach()
            onnx_w = np.ascontiguousarray(w.numpy().T)  # the exported MatMul weight [in, out]
            codes, alpha = ternarize(onnx_w.T)  # what the packer computes (codes in the torch layout)
            wd = w.double()
            a = wd.abs()
            ref = (torch.sign(wd) * (a > 0.7 * a.mean())).numpy().astype(np.int8)
            differ += int((codes != ref).sum())
            lin.weight.copy_(torch.from_numpy(dequantize(codes, alpha).astype(np.float32)))
    return m, differ
