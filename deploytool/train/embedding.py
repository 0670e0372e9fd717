"""Embedding (feature-extraction) models judged as embedding models: agreement with a reference.

A sentence encoder is deployed for search and retrieval, where "accurate" means "finds the same
neighbours as the full model". For a corpus of N texts (the review data by default):

- each text is embedded by the model and by the reference, mean-pooled over the attention mask
  (what all-MiniLM-L6-v2's sentence-transformers pooling does; cosine ignores its final
  normalisation);
- **cosine**: per text, cos(model(x), reference(x)); the mean and the worst are reported;
- **nearest-neighbour agreement**: each text is a query against the other N-1; recall@10 is the
  share of the reference's 10 nearest neighbours (cosine) that are among the model's 10 nearest.
  Its mean over the queries is the accuracy column of such models in reports and ``fit``, with a
  95% interval (mean ± 1.96 s/sqrt(N) over the queries); the per-query values are kept so that two
  variants on the same corpus can be compared with the exact sign test.

The reference is, by default, the fp32 original: the Hugging Face model recorded in the ONNX file's
metadata (``deploytool.source``) run in PyTorch; ``reference`` may name another ONNX file or folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from deploytool.accuracy import AccuracyRecord
from deploytool.errors import ConfigError, DeployError, InputFileError
from deploytool.quiet_logs import held_level
from deploytool.stats import mean_interval
from deploytool.train.config import EvalConfig

logger = logging.getLogger(__name__)

__all__ = ["evaluate_embedding", "embedding_agreement", "embed_onnx", "embed_torch", "corpus_texts", "K"]

K = 10


def corpus_texts(name: str | None, *, text_col: str = "text", limit: int = 1000, seed: int = 0) -> tuple[list[str], str]:
    """(texts, description): a built-in dataset's texts (every split, in its seeded shuffled order),
    a ``.txt`` file (one text a line) or a CSV/TSV/JSONL file's ``text_col``; the first ``limit``
    distinct non-empty texts."""
    from deploytool.data import BUILTIN, _decode, _lines, _read_user_file, dataset_name_hint, load_dataset

    name = name or "rotten-tomatoes"
    if name in BUILTIN:
        texts = list(load_dataset(name, seed=seed).split("all").texts)
        desc = f"{name} (seed {seed})"
    else:
        p = Path(name)
        if p.is_dir():
            raise InputFileError(f"{p}: is a directory, expected a corpus file (.txt, .csv, .tsv or .jsonl)")
        if not p.is_file():
            # a built-in name typed wrong ('rotten_tomatos') is read as a file's: suggested, as eval's --dataset is
            raise InputFileError(f"{p}: no such corpus file{dataset_name_hint(p)} (built-in: "
                                 f"{', '.join(sorted(BUILTIN))})")
        if p.suffix.lower() == ".txt":
            texts = _lines(_decode(p))  # as a CSV is read (utf-8 with errors="replace" made é U+FFFD); cut at
            # newlines only (splitlines cut a text at a U+2028 or form feed inside it)
        elif p.suffix.lower() in (".jsonl", ".json", ".ndjson", ".csv", ".tsv"):
            # the reader train and eval use: it read here with a reader of its own, which took a byte-order mark
            # for part of the first column's name, replaced latin-1 letters with U+FFFD, refused a JSON list of
            # records, gave a JSON object's Python repr as a text and let csv's errors out as tracebacks
            texts, _, _ = _read_user_file(p, text_col, None)
        else:
            raise InputFileError(f"{p}: unknown corpus format '{p.suffix}' (use .txt, .csv, .tsv or .jsonl)")
        desc = str(p)
    seen, out = set(), []
    for t in texts:
        t = t.strip()
        if t and t not in seen:
            seen.add(t)
            out.append(t)
        if len(out) >= limit:
            break
    if len(out) <= K + 1:
        raise InputFileError(f"{name}: corpus has {len(out)} distinct texts; need more than {K + 1} for recall@{K}")
    return out, desc


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden.astype(np.float64) * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def _batches(tok, texts: list[str], max_length: int, batch_size: int):
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        enc = tok([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                  return_tensors="np")
        yield idx, enc


def embed_onnx(path: Path, tok, texts: list[str], *, max_length: int = 128, batch_size: int = 64,
               threads: int = 2) -> np.ndarray:
    """Mean-pooled embeddings (N x hidden, float64) of an ONNX feature-extraction model."""
    from deploytool.runtime.infer import input_specs, make_session

    sess = make_session(path, threads=threads)
    specs = input_specs(sess)
    out_name = sess.get_outputs()[0].name
    out = None
    for idx, enc in _batches(tok, texts, max_length, batch_size):
        mask = enc["attention_mask"]
        feeds = {}
        for n, (dt, _) in specs.items():
            if n in enc:
                feeds[n] = enc[n].astype(dt)
            elif n == "token_type_ids":
                feeds[n] = np.zeros_like(enc["input_ids"]).astype(dt)
            else:
                raise InputFileError(f"{path}: model input '{n}' is not a token input")
        h = sess.run([out_name], feeds)[0]
        if h.ndim != 3:
            raise InputFileError(f"{path}: output '{out_name}' has shape {list(h.shape)}, expected "
                                 "[batch, seq, hidden] (a feature-extraction model)")
        e = _mean_pool(h, mask)
        if out is None:
            out = np.zeros((len(texts), e.shape[1]))
        out[idx] = e
    return out


def embed_torch(folder: Path, tok, texts: list[str], *, max_length: int = 128, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled embeddings of a Hugging Face encoder folder in PyTorch (fp32)."""
    import torch
    import transformers as tr

    from deploytool.train.checkpoint import resolve_folder

    from deploytool.export.hf import own_code

    folder = resolve_folder(folder)
    own_code(Path(folder), "AutoModel", False,
             remedy="its PyTorch reference would need that code, which deploytool does not run here")
    try:
        with held_level("transformers", logging.ERROR):  # the caller's transformers verbosity again after
            model = tr.AutoModel.from_pretrained(folder, trust_remote_code=False).eval()
    except (OSError, ValueError) as e:
        from deploytool.export.hf import weights_only_refusal

        refused = weights_only_refusal(folder, e)
        if refused is not None:
            raise refused from e
        raise InputFileError(f"{folder}: cannot load the reference model ({' '.join(str(e).split())[:160]})") from e
    from deploytool.train.batching import check_max_length, torch_max_length

    check_max_length(max_length, torch_max_length(model), f"the reference {folder}")
    out = None
    with torch.no_grad():
        for idx, enc in _batches(tok, texts, max_length, batch_size):
            names = set(model.forward.__code__.co_varnames)
            feeds = {k: torch.from_numpy(np.asarray(v)) for k, v in enc.items() if k in names}
            h = model(**feeds).last_hidden_state.numpy()
            e = _mean_pool(h, enc["attention_mask"])
            if out is None:
                out = np.zeros((len(texts), e.shape[1]))
            out[idx] = e
    return out


def _topk(e: np.ndarray, k: int) -> np.ndarray:
    u = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    s = u @ u.T
    np.fill_diagonal(s, -np.inf)
    part = np.argpartition(-s, k, axis=1)[:, :k]
    return part


def embedding_agreement(model: np.ndarray, reference: np.ndarray, k: int = K) -> dict:
    """Cosine (mean, worst) and recall@k of the reference's neighbours, per query and overall."""
    if model.shape[0] != reference.shape[0]:
        raise ValueError("model and reference embeddings must cover the same texts")
    if model.shape[1] != reference.shape[1]:
        # a width-sliced encoder keeps the hidden size; another size cannot be compared text by text
        cos = None
    else:
        a = model / np.maximum(np.linalg.norm(model, axis=1, keepdims=True), 1e-12)
        b = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
        cos = (a * b).sum(1)
    tm, tr_ = _topk(model, k), _topk(reference, k)
    recall = np.array([len(set(x) & set(y)) / k for x, y in zip(tm, tr_)])
    m, lo, hi = mean_interval(recall)
    return {"cosine_mean": None if cos is None else float(cos.mean()),
            "cosine_min": None if cos is None else float(cos.min()),
            "recall_at_k": m, "recall_ci95": [lo, hi], "k": k, "per_query_recall": recall}


def _reference_folder(path: Path) -> str:
    from deploytool.onnx_io import load_proto

    meta = {m.key: m.value for m in load_proto(path, load_external_data=False).metadata_props}
    src = meta.get("deploytool.source")
    if not src:
        raise ConfigError(f"{path}: no reference model recorded in the file (deploytool.source); give --reference")
    return src.split(" -> ")[0].split(": ")[-1] if ": " in src else src


def evaluate_embedding(cfg: EvalConfig) -> dict:
    """Agreement of the ONNX feature-extraction model ``cfg.model`` with ``cfg.reference`` (default:
    the fp32 original recorded in its metadata, in PyTorch) over ``cfg.corpus``."""
    from deploytool.choices import require_config

    require_config(cfg, EvalConfig, "evaluate_embedding")  # a path or a dict: ConfigError, not AttributeError
    import hashlib

    from deploytool.train.checkpoint import load_tokenizer, resolve_folder

    p = Path(cfg.model)
    ref = cfg.reference
    ref_is_onnx = ref is not None and (Path(ref).suffix == ".onnx" or Path(ref).is_file())
    ref_name = str(ref) if ref is not None else _reference_folder(p)
    ref_folder = None
    if not ref_is_onnx:
        try:
            ref_folder = resolve_folder(ref_name)
        except DeployError as e:
            raise ConfigError(f"reference {ref_name}: {e}; give --reference") from None
    from deploytool.models import tokenizer_folder

    # --tokenizer, beside the model, the model folder the export recorded; else the reference's
    tok_dir = tokenizer_folder(p, cfg.tokenizer)[0] or ref_folder or Path(ref).parent
    tok = load_tokenizer(tok_dir)
    texts, desc = corpus_texts(cfg.corpus or (cfg.data.data if cfg.data.data else None),
                               text_col=cfg.data.text_col, limit=cfg.max_queries, seed=cfg.data.seed)
    ml = cfg.data.max_length
    from deploytool.train.batching import check_max_length, onnx_max_length

    check_max_length(ml, onnx_max_length(p), str(p))  # before any text is embedded
    if ref_is_onnx:
        check_max_length(ml, onnx_max_length(Path(ref)), f"the reference {ref}")
    e_model = embed_onnx(p, tok, texts, max_length=ml, batch_size=cfg.batch_size, threads=cfg.threads)
    if ref_is_onnx:
        e_ref = embed_onnx(Path(ref), tok, texts, max_length=ml, batch_size=cfg.batch_size, threads=cfg.threads)
        ref_kind = "onnx"
    else:
        e_ref = embed_torch(ref_folder, tok, texts, max_length=ml, batch_size=cfg.batch_size)
        ref_kind = "pytorch fp32"
    for e, who in ((e_model, str(p)), (e_ref, f"the reference {ref_name}")):
        bad = int((~np.isfinite(e).all(axis=1)).sum())
        if bad:  # NaN/inf ranks nothing: a recall@10 figure and a cosine of nan were reported (and NaN in the JSON)
            raise InputFileError(f"{who}: non-finite embeddings (NaN or inf) for {bad} of {len(texts)} texts; the "
                                 "model's outputs cannot be compared")
    ag = embedding_agreement(e_model, e_ref)
    corpus_key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    rec = AccuracyRecord.from_scores(ag["per_query_recall"], metric=f"recall@{K}", examples=corpus_key)
    out = {"command": "eval", "model": str(p), "kind": "onnx", "metric": f"recall@{K}",
           **rec.to_dict(with_scores=True), "reference": ref_name, "reference_kind": ref_kind,
           "corpus": desc, "corpus_sha256": corpus_key, "max_length": ml,
           "cosine_mean": None if ag["cosine_mean"] is None else round(ag["cosine_mean"], 5),
           "cosine_min": None if ag["cosine_min"] is None else round(ag["cosine_min"], 5)}
    return out
