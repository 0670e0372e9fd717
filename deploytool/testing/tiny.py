"""Tiny random encoders of several families, built in the test (nothing downloads)."""

from __future__ import annotations

import numpy as np

FAMILIES = ("bert", "roberta", "distilbert", "electra")


def tiny_config(family: str = "bert", *, layers: int = 2, hidden: int = 32, heads: int = 4, ffn: int = 64,
                vocab: int = 100, max_pos: int = 160, num_labels: int = 2):
    """A transformers config of ``family`` with eager attention (fusable by ORT's optimizer)."""
    import transformers as tr

    common = dict(vocab_size=vocab, num_labels=num_labels, attn_implementation="eager")
    if family == "distilbert":
        return tr.DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=ffn,
                                   max_position_embeddings=max_pos, **common)
    cls = {"bert": tr.BertConfig, "roberta": tr.RobertaConfig, "electra": tr.ElectraConfig}[family]
    kw = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ffn,
              max_position_embeddings=max_pos + (2 if family == "roberta" else 0), **common)
    if family == "electra":
        kw["embedding_size"] = hidden
    return cls(**kw)


def tiny_model(family: str = "bert", *, task: str = "feature-extraction", seed: int = 0, weight_scale: float = 1.0,
               **kw):
    """A random tiny model in eval mode. task: feature-extraction | sequence-classification.

    ``weight_scale`` multiplies every ``nn.Linear`` weight: at the initializer's std 0.02 attention is
    nearly uniform, so a head mix-up between Q and K moves outputs by less than a 1e-4 tolerance; 10
    makes it show."""
    import torch
    import transformers as tr

    cfg = tiny_config(family, **kw)
    torch.manual_seed(seed)
    auto = tr.AutoModel if task == "feature-extraction" else tr.AutoModelForSequenceClassification
    model = auto.from_config(cfg, attn_implementation="eager")
    # random LayerNorm/bias values so that a wrong row or column shows up numerically
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
        if weight_scale != 1.0:
            for m in model.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.mul_(weight_scale)
    return model.eval()


def fixed_inputs(vocab: int = 100, lengths: tuple[int, ...] = (8, 5), seed: int = 0,
                 token_type_ids: bool = True) -> dict[str, np.ndarray]:
    """A padded batch: one row per length, padded to max(lengths), int64 ids and mask."""
    rng = np.random.default_rng(seed)
    seq = max(lengths)
    ids = rng.integers(3, vocab, size=(len(lengths), seq), dtype=np.int64)
    mask = np.zeros((len(lengths), seq), dtype=np.int64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if token_type_ids:
        out["token_type_ids"] = np.zeros_like(ids)
    return out


def exact_int8_codes() -> str:
    """The int8 weight codes (``Int8Config.weights``) this machine's ONNX Runtime multiplies exactly: the
    default ``int8`` where its u8 x s8 kernel does not saturate (VNNI x86, ARM64), else ``uint8`` (the same
    integers through the U8U8 kernel). Tests that check an int8 graph's wiring against fp32 with a tight
    bound use it, so that on x86 without VNNI they measure the graph, not the kernel's int16 clipping
    (:mod:`deploytool.runtime.int8_kernel`)."""
    from deploytool.runtime.int8_kernel import u8s8_exact

    return "int8" if u8s8_exact() is not False else "uint8"
