"""Tokenization, batching and the accelerate set-up shared by every training verb.

Texts longer than ``max_length`` tokens are truncated (first tokens kept) and counted; the count is
logged and returned with every result. Batches are padded to their longest row only.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploytool.data import Dataset, Split, load_dataset
from deploytool.errors import ConfigError, InputFileError
from deploytool.train.config import DataConfig

logger = logging.getLogger(__name__)

__all__ = ["Encoded", "encode", "sorted_by_length", "model_inputs", "batches", "load_data", "make_accelerator",
           "check_vocab"]


@dataclass
class Encoded:
    ids: list[list[int]]
    types: list[list[int]]
    labels: np.ndarray
    truncated: int

    def __len__(self) -> int:
        return len(self.ids)


def sorted_by_length(enc: Encoded) -> Encoded:
    """The same examples ordered by length (evaluation: batches with little padding)."""
    order = sorted(range(len(enc)), key=lambda i: len(enc.ids[i]))
    return Encoded(ids=[enc.ids[i] for i in order], types=[enc.types[i] for i in order],
                   labels=enc.labels[order], truncated=enc.truncated)


def load_data(cfg: DataConfig, *, whole: bool = False, matched: bool = False) -> Dataset:
    """``matched``: the labels are matched to a model's names afterwards (eval): see :func:`load_dataset`."""
    if cfg.data is None:
        raise ConfigError("data: a dataset name or file is required")
    return load_dataset(cfg.data, text_col=cfg.text_col, label_col=cfg.label_col, seed=cfg.seed, whole=whole,
                        text_pair_col=cfg.text_pair_col, matched=matched)


def encode(tokenizer, split: Split, max_length: int, *, limit: int | None = None, what: str = "") -> Encoded:
    """The split's examples tokenized: a sentence pair (``split.pairs``) as one input, ``[CLS] a [SEP] b [SEP]`` with
    token types 0 then 1, truncated longest text first (the tokenizer's ``longest_first``)."""
    split = split.head(limit)
    args = (list(split.texts),) if split.pairs is None else (list(split.texts), list(split.pairs))
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max is not None and model_max < 10**6 and max_length > model_max:
        raise ConfigError(f"max_length: {max_length} exceeds the model's maximum of {model_max} tokens")
    full = tokenizer(*args, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
    n_trunc = sum(len(x) > max_length for x in full)
    enc = tokenizer(*args, truncation=True, max_length=max_length, verbose=False)
    types = enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]]
    if n_trunc:
        logger.warning("%s: %d of %d texts are longer than %d tokens and were truncated",
                       what or "data", n_trunc, len(split), max_length)
    return Encoded(ids=enc["input_ids"], types=types, labels=split.label_array(), truncated=n_trunc)


def batches(enc: Encoded, batch_size: int, *, pad_id: int = 0, shuffle: bool = False, seed: int = 0,
            device=None, shard: tuple[int, int] = (0, 1)):
    """Yield dicts of torch tensors (input_ids, attention_mask, token_type_ids, labels)."""
    import torch

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(enc)) if shuffle else np.arange(len(enc))
    rank, world = shard  # data parallel under accelerate: each process takes every world-th example
    order = order[rank::world]
    groups = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    if shuffle:  # length buckets: sort within windows of 50 batches (less padding), then shuffle batches
        lengths = np.array([len(x) for x in enc.ids])
        win = batch_size * 50
        groups = []
        for w in range(0, len(order), win):
            chunk = order[w:w + win]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            groups += [chunk[s:s + batch_size] for s in range(0, len(chunk), batch_size)]
        groups = [groups[i] for i in rng.permutation(len(groups))]
    for idx in groups:
        seq = max(len(enc.ids[i]) for i in idx)
        ids = np.full((len(idx), seq), pad_id, dtype=np.int64)
        tt = np.zeros((len(idx), seq), dtype=np.int64)
        mask = np.zeros((len(idx), seq), dtype=np.int64)
        for r, i in enumerate(idx):
            n = len(enc.ids[i])
            ids[r, :n] = enc.ids[i]
            tt[r, :n] = enc.types[i]
            mask[r, :n] = 1
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
               "token_type_ids": torch.from_numpy(tt), "labels": torch.from_numpy(enc.labels[idx])}
        if device is not None:
            out = {k: v.to(device) for k, v in out.items()}
        yield out


def model_inputs(model, b: dict) -> dict:
    """The batch's token inputs that ``model.forward`` accepts (DistilBERT takes no token_type_ids)."""
    import inspect

    names = inspect.signature(model.forward).parameters
    return {k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in names}


@contextlib.contextmanager
def torch_threads(threads: int):
    """torch's intra-op thread count at ``threads`` while the block runs, the caller's again after (a program
    that evaluates a model keeps its own setting)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def keeps_torch_threads(fn):
    """``fn`` (a training function, which sets torch's thread count through :func:`make_accelerator`) leaves the
    caller's thread count as it found it, also when it raises."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        before = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


def make_accelerator(threads: int, cpu: bool = False, seed: int = 0):
    """An ``accelerate.Accelerator`` (GPU/multi-node when launched so; CPU here) with torch threads set (for good:
    the training functions calling it are :func:`keeps_torch_threads`)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    torch.set_num_threads(int(threads))
    acc = Accelerator(cpu=cpu)
    set_seed(seed)
    return acc


def onnx_max_length(path: Path) -> int | None:
    """The longest input (tokens) an ONNX encoder takes: its absolute position table's usable rows
    (:func:`deploytool.inspection.model_position_rows`: less a RoBERTa-style offset); None where it has no such
    table (relative or rotary positions) or the structure finder does not read it."""
    from deploytool.inspection import model_position_rows
    from deploytool.onnx_io import load_model

    return model_position_rows(load_model(path))


def torch_max_length(model) -> int | None:
    """:func:`onnx_max_length` of a transformers model: None without an absolute position table."""
    import torch

    from deploytool.export.hf import max_sequence_length

    if not any(isinstance(getattr(m, "position_embeddings", None), torch.nn.Embedding) for m in model.modules()):
        return None
    return max_sequence_length(model)


def check_max_length(max_length: int, limit: int | None, name: str) -> None:
    """A ConfigError before any text is run when ``max_length`` is longer than ``name``'s position table
    (``limit``): its first text of more tokens failed in the embeddings with an internal error (torch's size
    mismatch, ONNX Runtime's broadcast error)."""
    if limit is not None and max_length > limit:
        raise ConfigError(f"--max-length {max_length}: longer than the position table of {name} ({limit} positions); "
                          f"use --max-length {limit} or less")


def check_onnx_vocab(tok, path: Path, tokenizer_from=None) -> None:
    """:func:`check_vocab` of an ONNX model, its word embedding table found in the graph (nothing checked where it
    is not found): a tokenizer of another model failed in ONNX Runtime's Gather, an internal error (exit 1)."""
    from deploytool.runtime.inputs import plan_inputs

    past = plan_inputs(path).tokenizer_past_table(tok)
    if past is not None:
        src = f"the tokenizer {tokenizer_from}" if tokenizer_from is not None else "its tokenizer"
        raise InputFileError(f"{path}: {src} {past}; use the one the model was exported from")


def check_vocab(tok, model, name: str, tokenizer_from=None) -> None:
    """An InputFileError before any text is run when the tokenizer makes ids past ``name``'s embedding table (a
    tokenizer of another model): the first text holding such a token failed in the embeddings with an internal error
    (IndexError: index out of range in self), after whatever training came before it. ``tokenizer_from``: where the
    tokenizer was read, when not ``name``'s folder."""
    rows = getattr(model.get_input_embeddings(), "num_embeddings", None)
    vocab = tok.get_vocab() if hasattr(tok, "get_vocab") else {}
    top = max(vocab.values(), default=-1)
    if rows is not None and top >= rows:
        src = f"the tokenizer {tokenizer_from}" if tokenizer_from is not None else "its tokenizer"
        raise InputFileError(f"{name}: {src} has token ids up to {top}, past the model's embedding table of {rows} "
                             "rows (config.json vocab_size): it is another model's tokenizer; use the one the model "
                             "was trained with")
