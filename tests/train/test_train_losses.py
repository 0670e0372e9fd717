"""Distillation losses: layer mapping for DynaBERT depth sub-networks, padded positions (fast, no training)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from deploytool.testing.tiny import fixed_inputs, tiny_model  # noqa: E402
from deploytool.train.losses import attention_mse, distill_loss, hidden_mse, layer_maps  # noqa: E402
from deploytool.train.subnet import subnet_forward  # noqa: E402


def test_layer_maps_depth_subnetwork_follows_dynabert():
    # MiniLM-L6 at depth 0.5 keeps layers 0, 2, 4: their outputs learn the teacher's inputs of layers 2
    # and 4 and its final output (DynaBERT's kept_layers_index + [L]); attention learns the same layers
    assert layer_maps([0, 2, 4], list(range(6))) == ([2, 4, 6], [0, 2, 4])
    assert layer_maps([0, 1, 2, 4, 5], list(range(6))) == ([1, 2, 4, 5, 6], [0, 1, 2, 4, 5])
    # depth 0.75 of 6 under DynaBERT's rounding (round(4.5) = 4): layers 0, 1, 2, 4; the last learns the final output
    assert layer_maps([0, 1, 2, 4], list(range(6))) == ([1, 2, 4, 6], [0, 1, 2, 4])
    assert layer_maps(list(range(4)), list(range(4))) == ([1, 2, 3, 4], [0, 1, 2, 3])  # full depth: identity
    # a student whose layers are not among the teacher's: TinyBERT's uniform rule, last -> last
    assert layer_maps([0, 1], [10, 11, 12, 13]) == ([2, 4], [1, 3])


def test_depth_subnetwork_losses_compare_same_layers():
    """The depth-0.5 sub-network of a model, distilled from the full model: its first kept layer sees the
    same input as the teacher's, so that layer's attention term is exactly zero, and the last hidden
    state is compared with the teacher's last output (the classifier's input)."""
    torch.manual_seed(0)
    m = tiny_model("bert", task="sequence-classification", layers=4, hidden=32, heads=4, ffn=64).eval()
    x = {k: torch.from_numpy(v) for k, v in fixed_inputs().items()}
    args = (x["input_ids"], x["attention_mask"], x["token_type_ids"])
    mask = x["attention_mask"]
    with torch.no_grad():
        t = subnet_forward(m, *args, want_scores=True)
        s = subnet_forward(m, *args, depth=0.5, want_scores=True)
        assert s.layers == [0, 2]
        assert attention_mse(s.scores[0], t.scores[0], mask) == 0
        _, parts = distill_loss(s, t, mask, w_logits=1.0, w_hidden=1.0, w_attention=1.0)
        want_h = (hidden_mse(s.hidden[0], t.hidden[0], mask) + hidden_mse(s.hidden[1], t.hidden[2], mask)
                  + hidden_mse(s.hidden[2], t.hidden[4], mask)) / 3
        want_a = (attention_mse(s.scores[0], t.scores[0], mask) + attention_mse(s.scores[1], t.scores[2], mask)) / 2
    assert parts["hidden"] == pytest.approx(float(want_h), rel=1e-6)
    assert parts["attention"] == pytest.approx(float(want_a), rel=1e-6)


def test_attention_mse_ignores_padded_positions():
    """Scores at padded keys or queries (where a mask would put -inf/-10000) do not enter the loss."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 5, 5, generator=g), torch.randn(2, 4, 5, 5, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    base = attention_mse(s, t, mask)
    t2 = t.clone()
    t2[0, :, :, 3:] = -10000.0  # padded keys of example 0
    t2[0, :, 3:, :] = float("-inf")  # padded queries of example 0
    assert torch.isfinite(attention_mse(s, t2, mask))
    assert attention_mse(s, t2, mask) == base
