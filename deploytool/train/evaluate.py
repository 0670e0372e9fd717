"""Accuracy and F1 of a PyTorch folder (optionally a DynaBERT sub-network) or an ONNX model.

F1 is macro-averaged over labels; it is the headline number beside accuracy when the dataset is
imbalanced (rarest label well under its uniform share), e.g. sms-spam.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from deploytool.data import Dataset
from deploytool.errors import InputFileError
from deploytool.train.batching import batches, encode, load_data, model_inputs, sorted_by_length
from deploytool.train.config import DataConfig, EvalConfig

logger = logging.getLogger(__name__)

__all__ = ["evaluate", "evaluate_torch", "evaluate_onnx", "metrics"]


def metrics(pred: np.ndarray, labels: np.ndarray, num_labels: int) -> dict:
    acc = float((pred == labels).mean()) if len(labels) else float("nan")
    f1s = []
    for c in range(num_labels):
        tp = int(((pred == c) & (labels == c)).sum())
        fp = int(((pred == c) & (labels != c)).sum())
        fn = int(((pred != c) & (labels == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"accuracy": round(100 * acc, 3), "f1_macro": round(100 * float(np.mean(f1s)), 3), "n": int(len(labels))}


def _predict_torch(model, tok, enc, batch_size, device, width=1.0, depth=1.0):
    import torch

    from deploytool.train.subnet import subnet_forward

    model.eval()
    preds = []
    with torch.no_grad():
        for b in batches(enc, batch_size, pad_id=tok.pad_token_id or 0, device=device):
            if width < 1.0 or depth < 1.0:
                logits = subnet_forward(model, b["input_ids"], b["attention_mask"], b["token_type_ids"],
                                        width=width, depth=depth).logits
            else:
                logits = model(**model_inputs(model, b)).logits
            preds.append(logits.argmax(-1).cpu().numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def evaluate_torch(model, tok, ds: Dataset, split: str, data: DataConfig, *, device=None, width=1.0, depth=1.0,
                   batch_size: int = 64) -> dict:
    enc = sorted_by_length(encode(tok, ds.split(split), data.max_length, limit=data.max_eval, what=split))
    pred = _predict_torch(model, tok, enc, batch_size, device, width, depth)
    out = metrics(pred, enc.labels, ds.num_labels)
    out.update(split=split, truncated=enc.truncated, imbalanced=ds.imbalanced)
    return out


def evaluate_onnx(path: Path, tok, ds: Dataset, split: str, data: DataConfig, *, batch_size: int = 64,
                  threads: int = 2) -> dict:
    from deploytool.runtime.infer import input_specs, make_session

    enc = sorted_by_length(encode(tok, ds.split(split), data.max_length, limit=data.max_eval, what=split))
    sess = make_session(path, threads=threads)
    specs = input_specs(sess)
    out_name = sess.get_outputs()[0].name
    preds = []
    for b in batches(enc, batch_size, pad_id=tok.pad_token_id or 0):
        feeds = {n: b[n].numpy().astype(specs[n][0]) for n in specs if n in b}
        missing = [n for n in specs if n not in feeds]
        if missing:
            raise InputFileError(f"{path}: model input(s) {', '.join(missing)} are not token inputs")
        logits = sess.run([out_name], feeds)[0]
        if logits.ndim != 2 or logits.shape[1] != ds.num_labels:
            raise InputFileError(f"{path}: output '{out_name}' has shape {list(logits.shape)}, expected "
                                 f"[batch, {ds.num_labels}] logits (export a classifier model)")
        preds.append(logits.argmax(-1))
    pred = np.concatenate(preds)
    out = metrics(pred, enc.labels, ds.num_labels)
    out.update(split=split, truncated=enc.truncated, imbalanced=ds.imbalanced)
    return out


def evaluate(cfg: EvalConfig) -> dict:
    """Evaluate ``cfg.model`` (HF folder or .onnx file) on ``cfg.split``; optionally write JSON."""
    import torch

    from deploytool.train.checkpoint import load_classifier, load_tokenizer, resolve_folder

    t0 = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    ds = load_data(cfg.data)
    p = Path(cfg.model)
    if cfg.output is not None:
        from deploytool.onnx_io import check_output_path
        check_output_path(cfg.output)
    if p.suffix == ".onnx" or p.is_file():
        if not p.is_file():
            raise InputFileError(f"{p}: no such file")
        tok_dir = Path(cfg.tokenizer) if cfg.tokenizer else p.parent
        tok = load_tokenizer(tok_dir)
        if cfg.width < 1 or cfg.depth < 1:
            raise InputFileError("width/depth select a PyTorch sub-network; slice the ONNX model with "
                                 "`deploytool slice` instead")
        res = evaluate_onnx(p, tok, ds, cfg.split, cfg.data, batch_size=cfg.batch_size, threads=cfg.threads)
        kind = "onnx"
    else:
        folder = resolve_folder(p)
        tok = load_tokenizer(cfg.tokenizer or folder)
        model = load_classifier(folder, num_labels=ds.num_labels)
        if cfg.width < 1 or cfg.depth < 1:
            from deploytool.train.subnet import check_supported
            check_supported(model)
        res = evaluate_torch(model, tok, ds, cfg.split, cfg.data, width=cfg.width, depth=cfg.depth,
                             batch_size=cfg.batch_size)
        kind = "pytorch"
    res.update(command="eval", model=str(p), kind=kind, width=cfg.width, depth=cfg.depth,
               dataset=ds.info.to_dict(), label_names=list(ds.label_names),
               seconds=round(time.perf_counter() - t0, 2))
    if cfg.output is not None:
        import json

        from deploytool.onnx_io import atomic_write
        with atomic_write(cfg.output) as f:
            json.dump(res, f, indent=2)
    return res
