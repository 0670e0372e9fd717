"""NomicBERT (nomic-embed-text v1 / v1.5's encoder) as a tiny PyTorch model, for the conformance matrix and tests.

transformers has no NomicBERT: the hub's checkpoints run Nomic's own modeling code (``trust_remote_code``), and
users bring ONNX files exported from it. This module restates that architecture from its public description and
code (``contrastors``' ``modeling_hf_nomic_bert.py``), keeping the operations an exporter sees:

- embeddings: word + token type (no absolute positions), then ``emb_ln``;
- each block (post-LayerNorm, as BERT): ``norm1(attn(x) + x)``, then ``norm2(mlp(x) + x)``;
- attention: one fused ``Wqkv`` whose output is viewed ``[B, S, 3, heads, head_dim]`` ("(three h d)");
  rotary position embeddings (GPT-NeoX halves, ``base`` 1000 as v1.5's configuration) on the first
  ``rotary_emb_fraction * head_dim`` features of Q and K, computed on that view and stacked back with V
  (``torch.stack((q_rot, k_rot, v), dim=2)``), which the attention then takes apart again; scores divided by
  ``sqrt(head_dim)``; ``out_proj``; no biases by default (``qkv_proj_bias=False``);
- MLP (SwiGLU): ``fc2(fc11(x) * silu(fc12(x)))``, no biases by default.

The configuration's ``model_type`` is ``"nomic_bert"`` (the hub's); the forward takes ``input_ids``,
``attention_mask`` and ``token_type_ids`` and returns ``last_hidden_state`` (NomicBertModel has no pooler by
default). Used only by tests and benchmarks: deploytool itself never imports torch for a pass.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PretrainedConfig
from transformers.modeling_outputs import BaseModelOutput

__all__ = ["NomicBertConfig", "NomicBertModel", "init_like_bert"]


class NomicBertConfig(PretrainedConfig):
    model_type = "nomic_bert"

    def __init__(self, vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=40,
                 num_hidden_layers=2, type_vocab_size=2, rotary_emb_base=1000.0, rotary_emb_fraction=1.0,
                 layer_norm_epsilon=1e-12, qkv_proj_bias=False, mlp_bias=False, max_position_embeddings=64, **kw):
        super().__init__(**kw)
        self.vocab_size, self.hidden_size, self.num_attention_heads = vocab_size, hidden_size, num_attention_heads
        self.intermediate_size, self.num_hidden_layers, self.type_vocab_size = (intermediate_size, num_hidden_layers,
                                                                                type_vocab_size)
        self.rotary_emb_base, self.rotary_emb_fraction = rotary_emb_base, rotary_emb_fraction
        self.layer_norm_epsilon, self.qkv_proj_bias, self.mlp_bias = layer_norm_epsilon, qkv_proj_bias, mlp_bias
        self.max_position_embeddings = max_position_embeddings


def init_like_bert(model: nn.Module) -> None:
    """BERT's initialisation, as both restated models' code does it: weights of Linear and Embedding N(0, 0.02),
    Linear biases zero."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.zero_()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class _Rotary(nn.Module):
    """cos/sin of ``positions x inv_freq`` made at run time from the sequence length, applied to Q and K of the
    stacked ``[B, S, 3, heads, head_dim]`` view; the first ``dim`` features rotated, the rest passed on."""

    def __init__(self, dim: int, base: float) -> None:
        super().__init__()
        inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        t = torch.arange(qkv.shape[1], dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        cos = torch.cat([torch.cos(freqs), torch.cos(freqs)], dim=-1)[:, None, :]  # [S, 1, dim]
        sin = torch.cat([torch.sin(freqs), torch.sin(freqs)], dim=-1)[:, None, :]
        ro = cos.shape[-1]

        def rotate(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x[..., :ro] * cos + _rotate_half(x[..., :ro]) * sin, x[..., ro:]], dim=-1)

        return torch.stack((rotate(qkv[:, :, 0]), rotate(qkv[:, :, 1]), qkv[:, :, 2]), dim=2)


class _Attention(nn.Module):
    def __init__(self, c: NomicBertConfig) -> None:
        super().__init__()
        self.num_heads = c.num_attention_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        self.Wqkv = nn.Linear(c.hidden_size, 3 * c.hidden_size, bias=c.qkv_proj_bias)
        self.out_proj = nn.Linear(c.hidden_size, c.hidden_size, bias=c.qkv_proj_bias)
        self.rotary_emb = _Rotary(int(self.head_dim * c.rotary_emb_fraction), c.rotary_emb_base)
        self.register_buffer("norm_factor", torch.sqrt(torch.tensor(float(self.head_dim))), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, s = x.shape[0], x.shape[1]
        qkv = self.rotary_emb(self.Wqkv(x).reshape(b, s, 3, self.num_heads, self.head_dim))
        q, k, v = (qkv[:, :, i].permute(0, 2, 1, 3) for i in range(3))
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.norm_factor + mask
        ctx = torch.matmul(F.softmax(scores, dim=-1), v)
        return self.out_proj(ctx.permute(0, 2, 1, 3).reshape(b, s, self.num_heads * self.head_dim))


class _GatedMLP(nn.Module):
    def __init__(self, c: NomicBertConfig) -> None:
        super().__init__()
        self.fc11 = nn.Linear(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)
        self.fc12 = nn.Linear(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size, bias=c.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc11(x) * F.silu(self.fc12(x)))


class _Block(nn.Module):
    def __init__(self, c: NomicBertConfig) -> None:
        super().__init__()
        self.attn, self.mlp = _Attention(c), _GatedMLP(c)
        self.norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_epsilon)
        self.norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_epsilon)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(self.attn(x, mask) + x)
        return self.norm2(self.mlp(x) + x)


class NomicBertModel(nn.Module):
    base_model_prefix = ""

    def __init__(self, config: NomicBertConfig) -> None:
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.emb_ln = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.layers = nn.ModuleList([_Block(config) for _ in range(config.num_hidden_layers)])
        init_like_bert(self)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, return_dict=True):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.emb_ln(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, mask)
        return BaseModelOutput(last_hidden_state=x)
