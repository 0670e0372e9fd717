"""GTE v1.5 / gte-multilingual ("NewModel", Alibaba's own code) as a tiny PyTorch model, for the conformance
matrix and tests.

transformers has no such model: the hub's gte-base-en-v1.5, gte-large-en-v1.5 and gte-multilingual-base run
Alibaba's ``modeling.py`` (``trust_remote_code``), and users bring ONNX files exported from it. This module
restates that architecture from its public code (``Alibaba-NLP/new-impl``), keeping what an exporter sees:

- embeddings: word (+ token type where ``type_vocab_size`` > 0), then LayerNorm; positions only through rotary
  embeddings, whose cos/sin are a cache made for ``max_position_embeddings`` positions, cut to the sequence length
  and gathered by the position ids (``position_ids[:S].expand(B, -1)``), then viewed ``[B, S, 1, head_size]``;
- attention: one ``qkv_proj`` (with bias) **split into three along its last axis first** and each part viewed
  ``[B, S, heads, head_size]`` (not one ``[.., 3, heads, head_size]`` view); rotary on Q and K in that layout;
  scaled dot-product attention (SDPA, the default, or the eager matmul/softmax); ``o_proj``;
- MLP (GLU): ``up_gate_proj`` (no bias) to 2F, split into ``up, gate``; ``down_proj(act(gate) * up)``;
- post-LayerNorm: ``attn_ln(x + attn(x))``, then ``mlp_ln(h + mlp(h))``.

The configuration's ``model_type`` is ``"new"`` (the hub's); the forward takes ``input_ids``, ``attention_mask``
(and ``token_type_ids`` where the model has token types) and returns ``last_hidden_state``. Used only by tests
and benchmarks.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PretrainedConfig
from transformers.modeling_outputs import BaseModelOutput

from deploytool.testing.nomic_bert import init_like_bert

__all__ = ["GteConfig", "GteModel"]


class GteConfig(PretrainedConfig):
    model_type = "new"

    def __init__(self, vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=40,
                 num_hidden_layers=2, type_vocab_size=0, rope_theta=10000.0, layer_norm_eps=1e-12,
                 max_position_embeddings=64, attn="sdpa", qkv_split="split", **kw):
        super().__init__(**kw)
        self.vocab_size, self.hidden_size, self.num_attention_heads = vocab_size, hidden_size, num_attention_heads
        self.intermediate_size, self.num_hidden_layers = intermediate_size, num_hidden_layers
        self.type_vocab_size, self.rope_theta, self.layer_norm_eps = type_vocab_size, rope_theta, layer_norm_eps
        self.max_position_embeddings, self.attn = max_position_embeddings, attn
        self.qkv_split = qkv_split  # "split" (the code's) | "slice": qkv[..., :A], [A:2A], [2A:] (a variant)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class _Attention(nn.Module):
    def __init__(self, c: GteConfig) -> None:
        super().__init__()
        self.num_heads = c.num_attention_heads
        self.head_size = c.hidden_size // c.num_attention_heads
        self.all_head_size = self.num_heads * self.head_size
        self.qkv_proj = nn.Linear(c.hidden_size, 3 * self.all_head_size, bias=True)
        self.o_proj = nn.Linear(self.all_head_size, c.hidden_size, bias=True)
        self.sdpa = c.attn != "eager"
        self.slices = c.qkv_split == "slice"

    def forward(self, x, bias, cos, sin):
        shape = (self.num_heads, self.head_size)
        qkv, a = self.qkv_proj(x), self.all_head_size
        parts = (qkv[..., :a], qkv[..., a:2 * a], qkv[..., 2 * a:]) if self.slices else qkv.split(a, dim=-1)
        q, k, v = (t.view(t.shape[:-1] + shape) for t in parts)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.sdpa:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size) + bias
            ctx = torch.matmul(F.softmax(scores, dim=-1), v)
        ctx = ctx.permute(0, 2, 1, 3).contiguous()
        return self.o_proj(ctx.view(ctx.size()[:-2] + (self.all_head_size,)))


class _GatedMLP(nn.Module):
    def __init__(self, c: GteConfig) -> None:
        super().__init__()
        self.intermediate_size = c.intermediate_size
        self.up_gate_proj = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=True)

    def forward(self, x):
        up, gate = torch.split(self.up_gate_proj(x), self.intermediate_size, dim=-1)
        return self.down_proj(F.gelu(gate) * up)


class _Layer(nn.Module):
    def __init__(self, c: GteConfig) -> None:
        super().__init__()
        self.attention, self.mlp = _Attention(c), _GatedMLP(c)
        self.attn_ln = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp_ln = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x, bias, cos, sin):
        h = self.attn_ln(x + self.attention(x, bias, cos, sin))
        return self.mlp_ln(h + self.mlp(h))


class GteModel(nn.Module):
    base_model_prefix = ""

    def __init__(self, config: GteConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size // config.num_attention_heads
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = (nn.Embedding(config.type_vocab_size, config.hidden_size)
                                      if config.type_vocab_size > 0 else None)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.register_buffer("position_ids", torch.arange(config.max_position_embeddings), persistent=False)
        inv = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2).float() / d))
        freqs = torch.einsum("i,j->ij", torch.arange(config.max_position_embeddings, dtype=torch.float32), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)
        self.layer = nn.ModuleList([_Layer(config) for _ in range(config.num_hidden_layers)])
        init_like_bert(self)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, return_dict=True):
        b, s = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        position_ids = self.position_ids[:s].expand(b, -1)
        x = self.word_embeddings(input_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = position_ids.mul(0)
            x = x + self.token_type_embeddings(token_type_ids)
        x = self.LayerNorm(x)
        cos = self.cos_cached[:s, ...][position_ids].unsqueeze(2)  # [B, S, 1, head_size]
        sin = self.sin_cached[:s, ...][position_ids].unsqueeze(2)
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layer:
            x = layer(x, bias, cos, sin)
        return BaseModelOutput(last_hidden_state=x)
