"""Distillation losses (TinyBERT / DynaBERT / TernaryBERT style).

- logits: soft cross-entropy ``-sum softmax(t/T) * log_softmax(s/T)`` (times ``T^2``), mean over the batch;
- hidden states: MSE between the student's embedding output and kept-layer outputs and the teacher's,
  padded tokens excluded;
- attention: MSE between pre-softmax attention scores of the student's heads and the teacher's same
  heads (the first ``k``), padded key/query positions excluded.

Layer mapping (TinyBERT's uniform rule): the student's ``j``-th of ``n`` layers learns from the
teacher's layer ``ceil((j+1) * L / n) - 1`` of its ``L`` layers, so the student's last layer always
matches the teacher's last layer (the classifier's input). At full depth this is the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy", "hidden_mse", "attention_mse", "distill_loss", "teacher_layer_map"]


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


def teacher_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Position (in the teacher's run layers) that the student's j-th layer learns from."""
    return [math.ceil((j + 1) * n_teacher / n_student) - 1 for j in range(n_student)]


def distill_loss(s, t, mask, *, temperature=1.0, w_logits=1.0, w_hidden=1.0, w_attention=1.0):
    """``s``/``t`` are SubnetOutputs; the teacher's hidden/scores are indexed by the student's layers.

    Returns (total, parts dict of floats).
    """
    parts = {}
    total = w_logits * soft_cross_entropy(s.logits, t.logits, temperature)
    parts["logits"] = float(total.detach())
    tl = teacher_layer_map(len(s.layers), len(t.layers))
    if w_hidden:
        # hidden[0] is the embedding output, hidden[1 + j] the output of the j-th layer run
        hl = hidden_mse(s.hidden[0], t.hidden[0], mask)
        for j in range(len(s.layers)):
            hl = hl + hidden_mse(s.hidden[j + 1], t.hidden[tl[j] + 1], mask)
        hl = hl / (len(s.layers) + 1)
        total = total + w_hidden * hl
        parts["hidden"] = float(hl.detach())
    if w_attention and s.scores:
        al = sum(attention_mse(s.scores[j], t.scores[tl[j]], mask) for j in range(len(s.layers)))
        al = al / len(s.layers)
        total = total + w_attention * al
        parts["attention"] = float(al.detach())
    return total, parts
