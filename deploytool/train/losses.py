"""Distillation losses (TinyBERT / DynaBERT / TernaryBERT style).

- logits: soft cross-entropy ``-sum softmax(t/T) * log_softmax(s/T)`` (times ``T^2``), mean over the batch;
- hidden states: MSE between the student's embedding output and kept-layer outputs and the teacher's,
  padded tokens excluded;
- attention: MSE between pre-softmax attention scores of the student's heads and the teacher's same
  heads (the first ``k``), padded key/query positions excluded.

Layer mapping. A DynaBERT depth sub-network runs a subset ``s.layers`` of the teacher's own layers
(same weights). As in DynaBERT's code (``kept_layers_index`` + ``[L]``), the output of its ``j``-th
kept layer learns the teacher's hidden state that the NEXT kept layer reads (the teacher's input to
layer ``s.layers[j+1]``; the teacher's last output for the last kept layer, the classifier's input),
and each kept layer's attention scores learn the teacher's scores at the SAME layer (the same
weights; matching layer 2's scores to the teacher's layer 3, say, compares unrelated heads and gave
attention MSEs of 7-19, drowning the logits term). Students whose layers are not a subset of the
teacher's run layers fall back to TinyBERT's uniform rule: the ``j``-th of ``n`` layers learns from
the teacher's ``ceil((j+1) * L / n) - 1``. At full depth both are the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy", "hidden_mse", "attention_mse", "distill_loss", "teacher_layer_map", "layer_maps"]


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
    # where, not a product: a -inf score at a padded position (a mask already added) would give inf * 0 = nan
    sq = torch.where(mm > 0, (student - t) ** 2, torch.zeros((), dtype=student.dtype, device=student.device))
    return sq.sum() / mm.sum().clamp_min(1)


def teacher_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Position (in the teacher's run layers) that the student's j-th layer learns from."""
    return [math.ceil((j + 1) * n_teacher / n_student) - 1 for j in range(n_student)]


def layer_maps(student_layers: list[int], teacher_layers: list[int]) -> tuple[list[int], list[int]]:
    """(index into the teacher's ``hidden``, index into its ``scores``) for each of the student's layers.

    ``hidden[i]`` is the input of the ``i``-th layer run (``hidden[0]`` the embeddings), ``scores[i]``
    that layer's attention scores.
    """
    pos = {layer: i for i, layer in enumerate(teacher_layers)}
    if len(pos) == len(teacher_layers) and all(layer in pos for layer in student_layers):
        nxt = [pos[layer] for layer in student_layers[1:]] + [len(teacher_layers)]
        return nxt, [pos[layer] for layer in student_layers]
    tl = teacher_layer_map(len(student_layers), len(teacher_layers))
    return [i + 1 for i in tl], tl


def distill_loss(s, t, mask, *, temperature=1.0, w_logits=1.0, w_hidden=1.0, w_attention=1.0):
    """``s``/``t`` are SubnetOutputs; the teacher's hidden/scores are indexed by the student's layers.

    Returns (total, parts dict of floats).
    """
    parts = {}
    total = w_logits * soft_cross_entropy(s.logits, t.logits, temperature)
    parts["logits"] = float(total.detach())
    h_map, a_map = layer_maps(list(s.layers), list(t.layers))
    if w_hidden:
        # hidden[0] is the embedding output, hidden[1 + j] the output of the j-th layer run
        hl = hidden_mse(s.hidden[0], t.hidden[0], mask)
        for j in range(len(s.layers)):
            hl = hl + hidden_mse(s.hidden[j + 1], t.hidden[h_map[j]], mask)
        hl = hl / (len(s.layers) + 1)
        total = total + w_hidden * hl
        parts["hidden"] = float(hl.detach())
    if w_attention and s.scores:
        al = sum(attention_mse(s.scores[j], t.scores[a_map[j]], mask) for j in range(len(s.layers)))
        al = al / len(s.layers)
        total = total + w_attention * al
        parts["attention"] = float(al.detach())
    return total, parts
