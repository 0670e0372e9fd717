"""Fine-tune a teacher: a pretrained encoder plus a fresh classifier head, cross-entropy on ``data``."""

from __future__ import annotations

import logging
import time

import torch.nn.functional as F

from deploytool.train.batching import (check_max_length, check_vocab, encode, load_data, make_accelerator, model_inputs,
                                       torch_max_length)
from deploytool.train.checkpoint import check_output_folder, data_file, load_classifier, load_tokenizer, resolve_folder, \
    save_folder, weights_digest
from deploytool.train.batching import keeps_torch_threads
from deploytool.train.config import TrainConfig
from deploytool.train.evaluate import evaluate_torch
from deploytool.train.loop import run_loop
from deploytool.train.teacher_data import knows_labels, with_model_ids

logger = logging.getLogger(__name__)

__all__ = ["finetune"]


@keeps_torch_threads
def finetune(cfg: TrainConfig) -> dict:
    """Train, evaluate on dev, save the HF folder atomically; returns the result record."""
    from deploytool.choices import require_config

    require_config(cfg, TrainConfig, "finetune")  # a path or a dict: ConfigError, not AttributeError
    t0 = time.perf_counter()
    src = resolve_folder(cfg.model)
    check_output_folder(cfg.output, inputs=(src, data_file(cfg.data)))
    ds = load_data(cfg.data)
    if knows_labels(src, ds.label_names):  # a trained head: its rows keep their classes (they were renamed by the
        ds = with_model_ids(ds, src, str(cfg.data.data))  # data's sorted labels: pos/neg of {0: pos, 1: neg} swapped)
    acc = make_accelerator(cfg.threads, cfg.cpu, cfg.data.seed)
    tok = load_tokenizer(src)
    model = load_classifier(src, num_labels=ds.num_labels, label_names=ds.label_names)
    check_max_length(cfg.data.max_length, torch_max_length(model), str(src))  # before any training
    check_vocab(tok, model, str(src))
    enc = encode(tok, ds.train, cfg.data.max_length, limit=cfg.data.max_train, what="train")

    def step(m, b):
        logits = m(**model_inputs(m, b)).logits
        return F.cross_entropy(logits, b["labels"]), {}

    on_epoch = None
    if cfg.dev_each_epoch:
        def on_epoch(epoch, step):
            r = evaluate_torch(model, tok, ds, "dev", cfg.data, device=acc.device)
            logger.info("epoch %d (step %d): dev accuracy %.2f%% (n=%d)", epoch + 1, step, r["accuracy"], r["n"])
            return {"epoch": epoch + 1, "step": step, "dev_accuracy": r["accuracy"], "n": r["n"]}

    hist = run_loop(acc, model, enc, step, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                    weight_decay=cfg.weight_decay, warmup_frac=cfg.warmup_frac, seed=cfg.data.seed,
                    pad_id=tok.pad_token_id or 0, what="train", on_epoch=on_epoch)
    dev = evaluate_torch(model, tok, ds, "dev", cfg.data, device=acc.device)
    result = {"command": "train", "model": str(cfg.model), "source": str(src), "output": str(cfg.output),
              "dataset": ds.info.to_dict(), "train_examples": len(enc), "truncated_train": enc.truncated,
              "max_length": cfg.data.max_length, "epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size,
              "training": hist, "dev": dev, "seconds": None,
              "processes": acc.num_processes, "process_index": acc.process_index,
              "weights_sha256": weights_digest(model)}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if acc.is_main_process:
        save_folder(model, tok, cfg.output, meta=result)
    return result
