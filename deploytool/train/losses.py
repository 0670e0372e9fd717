"""Distillation losses (TinyBERT / DynaBERT / TernaryBERT style).

- logits: soft cross-entropy ``-sum softmax(t/T) * log_softmax(s/T)`` (times ``T^2``), mean over the batch;
- hidden states: MSE between the student's embedding output and kept-layer outputs and the teacher's
  at the same layer positions, padded tokens excluded;
- attention: MSE between pre-softmax attention scores of the student's heads and the teacher's same
  heads (the first ``k``), padded key/query positions excluded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy", "hidden_mse", "attention_mse", "distill_loss"]


def soft_cross_entropy(student_logits, teacher_logits, temperature: float = 1.0):
    t = temperature
    return -(F.softmax(teacher_logits / t, -1) * F.log_softmax(student_logits / t, -1)).sum(-1).mean() * t * t


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor):
    m = mask.to(student.dtype)[..., None]
    return ((student - teacher) ** 2 * m).sum() / (m.sum() * student.shape[-1]).clamp_min(1)


def attention_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor):
    k = student.shape[1]
    t = teacher[:, :k]
    m = mask.to(student.dtype)
    mm = (m[:, None, :, None] * m[:, None, None, :]).expand_as(student)
    return ((student - t) ** 2 * mm).sum() / mm.sum().clamp_min(1)


def distill_loss(s, t, mask, *, temperature=1.0, w_logits=1.0, w_hidden=1.0, w_attention=1.0):
    """``s``/``t`` are SubnetOutputs; the teacher's hidden/scores are indexed by the student's layers.

    Returns (total, parts dict of floats).
    """
    parts = {}
    total = w_logits * soft_cross_entropy(s.logits, t.logits, temperature)
    parts["logits"] = float(total.detach())
    if w_hidden:
        # teacher hidden[0] is the embedding output, hidden[1 + l] the output of its layer l
        pos = {layer: j + 1 for j, layer in enumerate(t.layers)}
        hl = hidden_mse(s.hidden[0], t.hidden[0], mask)
        for j, layer in enumerate(s.layers):
            hl = hl + hidden_mse(s.hidden[j + 1], t.hidden[pos[layer]], mask)
        hl = hl / (len(s.layers) + 1)
        total = total + w_hidden * hl
        parts["hidden"] = float(hl.detach())
    if w_attention and s.scores:
        pos = {layer: j for j, layer in enumerate(t.layers)}
        al = sum(attention_mse(s.scores[j], t.scores[pos[layer]], mask) for j, layer in enumerate(s.layers))
        al = al / len(s.layers)
        total = total + w_attention * al
        parts["attention"] = float(al.detach())
    return total, parts
