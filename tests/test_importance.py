"""The data-free weight-magnitude importance against the PyTorch model's own weights (an independent
reference: per-head and per-neuron L2 norms written out from the state dict in float64)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from deploytool.graph import find_structure
from deploytool.importance import magnitude_importance

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=48, seed=8)


def _reference(model, layers: int, heads: int) -> tuple[list[list[float]], list[list[float]]]:
    sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    out_h, out_n = [], []
    for i in range(layers):
        p = f"encoder.layer.{i}."
        hs = sd[p + "attention.self.query.weight"].shape[0] // heads
        row = []
        for h in range(heads):
            cut = slice(h * hs, (h + 1) * hs)
            sq = sum((sd[p + f"attention.self.{m}.weight"][cut] ** 2).sum() + (sd[p + f"attention.self.{m}.bias"][cut] ** 2).sum()
                     for m in ("query", "key", "value"))
            sq += (sd[p + "attention.output.dense.weight"][:, cut] ** 2).sum()
            row.append(float(np.sqrt(sq)))
        out_h.append(row)
        w1, b1 = sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"]
        w2 = sd[p + "output.dense.weight"]
        out_n.append([float(np.sqrt((w1[j] ** 2).sum() + b1[j] ** 2 + (w2[:, j] ** 2).sum())) for j in range(w1.shape[0])])
    return out_h, out_n


@pytest.mark.parametrize("exporter", ["torch", "dynamo"])
def test_magnitude_importance_is_the_weights_norms(tiny_onnx, tiny_torch_model, exporter):
    src = tiny_onnx("bert", exporter=exporter, **SHAPE)
    imp = magnitude_importance(find_structure(ir.load(str(src))))
    want_h, want_n = _reference(tiny_torch_model("bert", **SHAPE), SHAPE["layers"], SHAPE["heads"])
    np.testing.assert_allclose(np.array(imp.heads), np.array(want_h), rtol=1e-6)
    np.testing.assert_allclose(np.array(imp.neurons), np.array(want_n), rtol=1e-6)
