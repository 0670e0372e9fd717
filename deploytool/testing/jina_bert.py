"""JinaBERT v2 (jina-embeddings-v2's encoder) as a tiny PyTorch model, for the conformance matrix and tests.

transformers (4.x) has no JinaBERT: the hub's jina-embeddings-v2-small/base-en (and the de/es/zh/code models)
run Jina's own modeling code (``trust_remote_code``, ``jinaai/jina-bert-implementation``; its configuration says
``model_type: "bert"``), and users bring ONNX files exported from it. This module restates that architecture
from its public code, keeping the operations an exporter sees:

- embeddings: word + token type, then LayerNorm; no absolute positions (``position_embedding_type: "alibi"``);
- ALiBi: the encoder keeps one buffer ``alibi`` of ``[1, heads, N, N]`` made once for ``N =
  max_position_embeddings`` (``-slope_h * |i - j|``, the slopes of the ALiBi paper's code, its workaround for a
  head count that is not a power of two included), cut to ``[:, :, :S, :S]`` in each forward and passed to every
  layer; the padding mask is BERT's extended mask ``(1 - m) * finfo.min`` of ``[B, 1, 1, S]``;
- attention: BERT's separate query / key / value projections viewed ``[B, S, heads, head_size]``; with
  ``attn_implementation "torch"`` (the hub configuration's) ``scaled_dot_product_attention(q, k, v, mask +
  alibi)``, with "eager" ``softmax(q k^T / sqrt(d) + mask + alibi)`` (the mask added first, the bias inside the
  softmax's argument); then BERT's ``output.dense`` and post-LayerNorm;
- MLP (GeGLU, ``feed_forward_type "geglu"``; "reglu" with ReLU): ``gated_layers`` (no bias) to 2F, ``gated`` its
  first F features and ``non_gated`` the rest, ``wo(act(gated) * non_gated)``, post-LayerNorm inside the MLP
  (``layernorm(wo(..) + residual)``).

``qk_norm=True`` restates the ``jina-bert-v2-qk-post-norm`` variant (jina-embeddings-v2-base-code):
``layer_norm_q`` / ``layer_norm_k`` over each projection's whole output (all heads together) before the head
view, and an MLP of ``up_gated_layer`` (``up`` the first F features, ``up * act(gated)``) and ``down_layer``
with the layer's ``layer_norm_1`` / ``layer_norm_2`` around it. A LayerNorm over all heads makes each head's
values depend on the others: removing a head is not exact there.

The forward takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` and returns ``last_hidden_state`` (and
``pooler_output``: BERT's pooler, which ``JinaBertModel`` keeps). Used only by tests and benchmarks.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PretrainedConfig
from transformers.modeling_outputs import BaseModelOutputWithPooling

from deploytool.testing.nomic_bert import init_like_bert

__all__ = ["JinaBertConfig", "JinaBertModel", "alibi_slopes"]


class JinaBertConfig(PretrainedConfig):
    model_type = "jina_bert"  # the hub's configuration says "bert" (its auto_map points at Jina's code)

    def __init__(self, vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=40,
                 num_hidden_layers=2, type_vocab_size=2, layer_norm_eps=1e-12, max_position_embeddings=64,
                 feed_forward_type="geglu", attn="torch", qk_norm=False, **kw):
        super().__init__(**kw)
        self.vocab_size, self.hidden_size, self.num_attention_heads = vocab_size, hidden_size, num_attention_heads
        self.intermediate_size, self.num_hidden_layers, self.type_vocab_size = (intermediate_size, num_hidden_layers,
                                                                                type_vocab_size)
        self.layer_norm_eps, self.max_position_embeddings = layer_norm_eps, max_position_embeddings
        # attn: the hub configuration's own "attn_implementation" field ("torch" or eager), renamed here: transformers
        # reads that name as its own setting
        self.feed_forward_type, self.attn, self.qk_norm = feed_forward_type, attn, qk_norm


def alibi_slopes(n: int) -> list[float]:
    """The ALiBi paper's head slopes: ``2^(-8/n)`` to the powers 1..n for a power of two ``n``; otherwise those
    of the power of two below, then every other slope of the power of two above."""
    def power_of_2(m: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(m) - 3)))
        return [start * start ** i for i in range(m)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    p = 2 ** math.floor(math.log2(n))
    return power_of_2(p) + alibi_slopes(2 * p)[0::2][: n - p]


def _alibi(heads: int, size: int) -> torch.Tensor:
    pos = torch.arange(size)
    distance = torch.abs(pos[None, :] - pos[:, None]).unsqueeze(0).expand(heads, -1, -1)
    slopes = torch.tensor(alibi_slopes(heads)) * -1
    return (slopes[:, None, None] * distance).unsqueeze(0)  # [1, heads, size, size]


class _SelfAttention(nn.Module):
    def __init__(self, c: JinaBertConfig) -> None:
        super().__init__()
        self.num_attention_heads = c.num_attention_heads
        self.attention_head_size = c.hidden_size // c.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(c.hidden_size, self.all_head_size)
        self.key = nn.Linear(c.hidden_size, self.all_head_size)
        self.value = nn.Linear(c.hidden_size, self.all_head_size)
        if c.qk_norm:
            self.layer_norm_q = nn.LayerNorm(self.all_head_size, eps=c.layer_norm_eps)
            self.layer_norm_k = nn.LayerNorm(self.all_head_size, eps=c.layer_norm_eps)
        self.qk_norm, self.sdpa = c.qk_norm, c.attn != "eager"

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.size()[:-1] + (self.num_attention_heads, self.attention_head_size))
        return x.permute(0, 2, 1, 3)

    def forward(self, x, mask, bias):
        q, k = self.query(x), self.key(x)
        if self.qk_norm:
            q, k = self.layer_norm_q(q), self.layer_norm_k(k)
        q, k, v = self._heads(q), self._heads(k), self._heads(self.value(x))
        if self.sdpa:
            b, _, s, _ = q.shape
            ctx = F.scaled_dot_product_attention(q, k, v, mask + bias)
            return ctx.permute(0, 2, 1, 3).contiguous().view(b, s, self.all_head_size)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size) + mask
        ctx = torch.matmul(F.softmax(scores + bias, dim=-1), v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.size()[:-2] + (self.all_head_size,))


class _SelfOutput(nn.Module):
    def __init__(self, c: JinaBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, h, x):
        return self.LayerNorm(self.dense(h) + x)


class _Attention(nn.Module):
    def __init__(self, c: JinaBertConfig) -> None:
        super().__init__()
        self.self, self.output = _SelfAttention(c), _SelfOutput(c)

    def forward(self, x, mask, bias):
        return self.output(self.self(x, mask, bias), x)


class _GLUMLP(nn.Module):
    """jina-bert-implementation's JinaBertGLUMLP: ``layernorm(wo(act(gated) * non_gated) + x)``."""

    def __init__(self, c: JinaBertConfig) -> None:
        super().__init__()
        self.intermediate_size = c.intermediate_size
        self.gated_layers = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=False)
        self.act = nn.ReLU() if c.feed_forward_type == "reglu" else nn.GELU()
        self.wo = nn.Linear(c.intermediate_size, c.hidden_size)
        self.layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x):
        h = self.gated_layers(x)
        gated, non_gated = h[:, :, : self.intermediate_size], h[:, :, self.intermediate_size:]
        return self.layernorm(self.wo(self.act(gated) * non_gated) + x)


class _UpGatedMLP(nn.Module):
    """jina-bert-v2-qk-post-norm's MLP: ``down_layer(up * act(gated))``, ``up`` the first F features."""

    def __init__(self, c: JinaBertConfig) -> None:
        super().__init__()
        self.intermediate_size = c.intermediate_size
        self.up_gated_layer = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=False)
        self.act = nn.ReLU() if c.feed_forward_type == "reglu" else nn.GELU()
        self.down_layer = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x):
        h = self.up_gated_layer(x)
        up, gated = h[:, :, : self.intermediate_size], h[:, :, self.intermediate_size:]
        return self.down_layer(up * self.act(gated))


class _Layer(nn.Module):
    def __init__(self, c: JinaBertConfig) -> None:
        super().__init__()
        self.qk_norm = c.qk_norm
        self.attention = _Attention(c)
        if c.qk_norm:  # the post-norm variant: the attention's output LayerNorm, then its own two around the MLP
            self.layer_norm_1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
            self.layer_norm_2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
            self.mlp = _UpGatedMLP(c)
        else:
            self.mlp = _GLUMLP(c)

    def forward(self, x, mask, bias):
        h = self.attention(x, mask, bias)
        if not self.qk_norm:
            return self.mlp(h)
        r = self.layer_norm_1(x + h)
        return self.layer_norm_2(r + self.mlp(r))


class _Embeddings(nn.Module):
    def __init__(self, c: JinaBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        return self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))


class _Encoder(nn.Module):
    def __init__(self, c: JinaBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList([_Layer(c) for _ in range(c.num_hidden_layers)])
        self.register_buffer("alibi", _alibi(c.num_attention_heads, c.max_position_embeddings), persistent=False)

    def forward(self, x, mask):
        s = x.size(1)
        bias = self.alibi[:, :, :s, :s]
        for layer in self.layer:
            x = layer(x, mask, bias)
        return x


class _Pooler(nn.Module):
    def __init__(self, c: JinaBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


class JinaBertModel(nn.Module):
    base_model_prefix = ""

    def __init__(self, config: JinaBertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)
        self.pooler = _Pooler(config)
        init_like_bert(self)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, return_dict=True):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        x = self.encoder(x, mask)
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=self.pooler(x))
