"""Accuracy and F1 of a PyTorch folder (optionally a DynaBERT sub-network) or an ONNX model.

Every accuracy comes with n, the number right and its 95% Wilson interval
(:mod:`deploytool.stats`), and with the per-example predictions sorted by example id plus a hash of
the ids, so that two models evaluated on the same examples can be compared pairwise (exact
McNemar, :mod:`deploytool.accuracy`).

The data's labels are matched to the model's ``id2label`` BY NAME (:func:`match_labels`); without
``--data`` the dataset recorded in the model folder's ``deploytool.json`` at training time is used
(:func:`resolve_data`); ``split="all"`` or a test file evaluates every example of a file.

F1 is macro-averaged over labels; it is the headline number beside accuracy when the dataset is
imbalanced (rarest label well under its uniform share), e.g. sms-spam.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from deploytool.accuracy import examples_key
from deploytool.data import (Dataset, class_count, class_names, labels_folder,  # noqa: F401 - re-exported
                             match_labels, model_labels)
from deploytool.errors import ConfigError, InputFileError, not_a_file
from deploytool.models import tokenizer_folder
from deploytool.stats import wilson_interval
from deploytool.train.batching import (batches, check_max_length, check_onnx_vocab, check_vocab, encode, load_data, model_inputs, onnx_max_length,
                                       sorted_by_length, torch_max_length, torch_threads)
from deploytool.train.config import DataConfig, EvalConfig
from deploytool.variant import TRAINED_META_FILE as META_FILE

logger = logging.getLogger(__name__)

__all__ = ["evaluate", "evaluate_torch", "evaluate_onnx", "metrics", "acc_label", "match_labels", "model_labels",
           "class_count", "class_names", "labels_folder", "recorded_dataset", "resolve_data"]


def metrics(pred: np.ndarray, labels: np.ndarray, num_labels: int, ids=None, examples: str | None = None) -> dict:
    """Accuracy (percent) with n, the number right and its 95% Wilson interval; macro F1.

    ``ids`` (the examples' source ids, parallel to ``pred``): the per-example predictions are kept,
    sorted by id, so that two models evaluated on the same examples can be compared pairwise.
    ``examples``: the examples' identity (:func:`~deploytool.accuracy.examples_key` of their contents); default
    the ids' alone.
    """
    pred, labels = np.asarray(pred), np.asarray(labels)
    n = int(len(labels))
    k = int((pred == labels).sum())
    lo, hi = wilson_interval(k, n) if n else (float("nan"), float("nan"))
    f1s = []
    for c in range(num_labels):
        tp = int(((pred == c) & (labels == c)).sum())
        fp = int(((pred == c) & (labels != c)).sum())
        fn = int(((pred != c) & (labels == c)).sum())
        if tp + fp + fn:  # a class neither in the labels nor predicted has no F1 (it was counted as 0)
            f1s.append(2 * tp / (2 * tp + fp + fn))
    f1s = f1s or [0.0]
    out = {"accuracy": round(100 * k / n, 3) if n else float("nan"), "n_correct": k, "n": n,
           "ci95": [round(100 * lo, 3), round(100 * hi, 3)],
           "f1_macro": round(100 * float(np.mean(f1s)), 3)}
    if ids is not None:
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        out["examples"] = examples or examples_key(ids)
        out["predictions"] = {"ids": ids[order].tolist(), "pred": pred[order].astype(int).tolist(),
                              "label": labels[order].astype(int).tolist()}
    return out


def acc_label(r: dict, nd: int = 2) -> str:
    """'79.80% [76.07-83.10] n=500' from a metrics record."""
    ci, n = r.get("ci95"), r.get("n")
    if not n:
        return f"{r['accuracy']:.{nd}f}%"
    if not ci:  # a record with n only (e.g. DynaBERT's grid): the interval from the count right
        k = min(n, max(0, int(round(r["accuracy"] * n / 100))))
        ci = [100 * x for x in wilson_interval(k, n)]
    return f"{r['accuracy']:.{nd}f}% [95% CI {ci[0]:.{nd}f}-{ci[1]:.{nd}f}] n={r['n']}"


def _length_order(enc) -> list[int]:
    # the order sorted_by_length uses (stable by length), to put predictions back in split order
    return sorted(range(len(enc)), key=lambda i: len(enc.ids[i]))


def _unsort(pred_sorted: np.ndarray, order: list[int]) -> np.ndarray:
    pred = np.empty_like(pred_sorted)
    pred[np.asarray(order, dtype=np.int64)] = pred_sorted
    return pred


def _predict_torch(model, tok, enc, batch_size, device, width=1.0, depth=1.0, act_bits=0, name=None):
    import torch

    from deploytool.train.subnet import subnet_forward

    act_fn = None
    if act_bits:
        from deploytool.train.actquant import act_fn_for

        act_fn = act_fn_for(act_bits)
    model.eval()
    preds = []
    with torch.no_grad():
        for b in batches(enc, batch_size, pad_id=tok.pad_token_id or 0, device=device):
            if width < 1.0 or depth < 1.0 or act_fn is not None:
                logits = subnet_forward(model, b["input_ids"], b["attention_mask"], b["token_type_ids"],
                                        width=width, depth=depth, act_fn=act_fn).logits
            else:
                logits = model(**model_inputs(model, b)).logits
            if name is not None and not bool(torch.isfinite(logits).all()):  # their argmax is class 0: garbage
                raise InputFileError(f"{name}: non-finite logits (NaN or inf); the model's outputs cannot be scored")
            preds.append(logits.argmax(-1).cpu().numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def _encoded(tok, ds: Dataset, split: str, data: DataConfig, label_map: np.ndarray | None):
    """(encoded examples sorted by length, their order, their ids, labels in the model's ids, the examples'
    identity: their ids, texts and labels, so that another file's rows 0..n-1 are not taken for these)."""
    sp = ds.split(split).head(data.max_eval)
    enc = encode(tok, sp, data.max_length, what=split)
    labels = enc.labels if label_map is None else label_map[enc.labels]
    enc.labels = labels
    order = _length_order(enc)
    key = examples_key(sp.ids, sp.examples(), [ds.label_names[y] for y in sp.labels])
    return sorted_by_length(enc), order, np.asarray(sp.ids, dtype=np.int64), labels, key


def evaluate_torch(model, tok, ds: Dataset, split: str, data: DataConfig, *, device=None, width=1.0, depth=1.0,
                   batch_size: int = 64, label_map: np.ndarray | None = None, act_bits: int = 0,
                   name: str | None = None) -> dict:
    """``label_map``: dataset label index -> the model's label id (default: the same index).
    ``act_bits`` 8: Linear inputs quantized as QAT trained them (``deploytool.train.qat.fake_quant_act``).
    ``name`` (the eval command's model): non-finite logits are an error naming it (training's dev evaluations,
    without it, are not stopped here)."""
    enc, order, ids, labels, key = _encoded(tok, ds, split, data, label_map)
    pred = _unsort(_predict_torch(model, tok, enc, batch_size, device, width, depth, act_bits, name), order)
    num = max(ds.num_labels, int(getattr(getattr(model, "config", None), "num_labels", 0) or 0))
    out = metrics(pred, labels, num, ids, key)
    out.update(split=split, truncated=enc.truncated, imbalanced=ds.imbalanced_as(label_map))
    return out


def evaluate_onnx(path: Path, tok, ds: Dataset, split: str, data: DataConfig, *, batch_size: int = 64,
                  threads: int = 2, label_map: np.ndarray | None = None, num_labels: int | None = None) -> dict:
    from deploytool.runtime.infer import input_specs, make_session

    enc, order, ids, labels, key = _encoded(tok, ds, split, data, label_map)
    n_out = num_labels or ds.num_labels
    n_why = ("its label names (id2label), or its declared output where it has none" if num_labels
             else f"the data's {ds.num_labels} labels")
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
        if logits.ndim != 2:
            raise InputFileError(f"{path}: output '{out_name}' has shape {list(logits.shape)}, expected "
                                 f"[batch, classes] logits (export a classifier model)")
        if logits.shape[1] < 2:  # an undeclared output width: the argmax of one output is always class 0
            raise InputFileError(f"{path}: output '{out_name}' has shape {list(logits.shape)}, one value per text (a "
                                 "regression head), not a classifier: accuracy needs a classifier of 2 or more classes")
        if logits.shape[1] != n_out:
            raise InputFileError(f"{path}: the model classifies {logits.shape[1]} (output '{out_name}' "
                                 f"{list(logits.shape)}), but {n_out} classes are expected here ({n_why})")
        if not np.isfinite(logits).all():  # argmax of NaN logits is class 0: an accuracy of garbage
            raise InputFileError(f"{path}: non-finite logits (NaN or inf) for "
                                 f"{int((~np.isfinite(logits).all(axis=1)).sum())} text(s) of a batch; the model's "
                                 "outputs cannot be scored")
        preds.append(logits.argmax(-1))
    pred = _unsort(np.concatenate(preds), order)
    out = metrics(pred, labels, n_out, ids, key)
    out.update(split=split, truncated=enc.truncated, imbalanced=ds.imbalanced_as(label_map))
    return out


# --------------------------------------------------------------------------- the user's labels
def _architectures(folder: Path) -> list[str]:
    try:
        return list(json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("architectures") or [])
    except (OSError, ValueError, AttributeError):
        return []


# ------------------------------------------------------------------ the dataset recorded at training
def recorded_dataset(meta) -> dict | None:
    """The SplitInfo record a training command left in ``deploytool.json`` (searched depth-first)."""
    if isinstance(meta, dict):
        d = meta.get("dataset")
        if isinstance(d, dict) and "source" in d and "seed" in d:
            return d
        for v in meta.values():
            r = recorded_dataset(v)
            if r is not None:
                return r
    return None


def resolve_data(cfg: EvalConfig, meta_folder: Path | None) -> tuple[DataConfig, bool, str]:
    """(data config, whole file?, where the data came from) for an eval."""
    if cfg.test_file is not None:
        return dataclasses.replace(cfg.data, data=str(cfg.test_file)), True, "the whole test file"
    whole = cfg.split == "all"
    if cfg.data.data is not None:
        return cfg.data, whole, "--data"
    given = [f"--{f.replace('_', '-')}" for f, default in (("seed", 0), ("text_col", "text"),
                                                           ("text_pair_col", None), ("label_col", "label"))
             if getattr(cfg.data, f) != default]
    if given:  # they were replaced by the recorded ones without a word
        raise ConfigError(f"{', '.join(given)}: only with --data or --test-file (the dataset recorded with the "
                          "model, or rotten-tomatoes, is read with its own split seed and columns)")
    dc, where = recorded_data(cfg.data, meta_folder)
    return dc, whole, where


def recorded_data(data: DataConfig, meta_folder: Path | None) -> tuple[DataConfig, str]:
    """``data`` naming the dataset recorded with the model in ``meta_folder`` at training (its file, columns
    and seed), or rotten-tomatoes where none is recorded; and where it came from."""
    from deploytool.data import BUILTIN
    from deploytool.train.checkpoint import read_meta

    rec = recorded_dataset(read_meta(meta_folder)) if meta_folder is not None else None
    if rec is None:
        return dataclasses.replace(data, data="rotten-tomatoes"), "default: no dataset recorded with the model"
    name = str(rec.get("dataset"))
    path = name if name in BUILTIN else str(rec["source"])
    if name not in BUILTIN and not Path(path).is_file():
        raise InputFileError(f"{path}: the dataset recorded when the model was trained is gone; give --data")
    dc = dataclasses.replace(data, data=path, text_col=rec.get("text_col", data.text_col),
                             text_pair_col=rec.get("text_pair_col", data.text_pair_col),
                             label_col=rec.get("label_col", data.label_col), seed=int(rec.get("seed", 0)))
    return dc, "recorded at training time"


def _onnx_classes(path: Path) -> int | None:
    """The number of classes a classifier's logits output declares ([batch, classes]), or None."""
    from deploytool.onnx_io import load_proto

    dims = load_proto(path, load_external_data=False).graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value > 0:
        return int(dims[1].dim_value)
    return None


def _folder_classes(folder: Path) -> int | None:
    """The number of classes of a HF folder's classification head (its config), or None without a head."""
    if not any("SequenceClassification" in a for a in _architectures(folder)):
        return None
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(cfg.get("id2label"), dict) and cfg["id2label"]:
        return len(cfg["id2label"])
    n = cfg.get("num_labels")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 2  # transformers' default


def _refuse_non_classifier(model: Path, folder: Path | None, n_classes: int | None) -> None:
    """A head of one output (transformers' num_labels=1: regression) or a regression / multi-label head (config
    ``problem_type``) is no single-label classifier: the argmax of one output is always class 0, so a file of
    label 0 scored 100%. Refused in one line."""
    cfg: dict = {}
    if folder is not None and (Path(folder) / "config.json").is_file():
        try:
            cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}
    problem = cfg.get("problem_type")
    if n_classes == 1 or problem == "regression":
        raise InputFileError(f"{model}: a regression head (one output{', problem_type regression' if problem else ''}"
                             "), not a classifier: accuracy needs a classifier of 2 or more classes")
    if problem == "multi_label_classification":
        raise InputFileError(f"{model}: a multi-label classifier (problem_type multi_label_classification): eval "
                             "scores single-label classifiers (one label per text, the argmax)")


def _is_embedding_onnx(path: Path) -> bool:
    """True for a feature-extraction model: its first output is [batch, seq, hidden], not logits."""
    from deploytool.onnx_io import load_proto

    proto = load_proto(path, load_external_data=False)
    meta = {m.key: m.value for m in proto.metadata_props}
    if meta.get("deploytool.task"):
        return meta["deploytool.task"] == "feature-extraction"
    out = proto.graph.output[0]
    return len(out.type.tensor_type.shape.dim) == 3


# what an eval may read in a model, tokenizer or reference folder (``-o`` must not overwrite any of them)
_FOLDER_FILES = ("config.json", META_FILE, "model.safetensors", "pytorch_model.bin", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json",
                 "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


def _read_files(cfg: EvalConfig) -> tuple[Path, ...]:
    """The files an eval of ``cfg`` reads: the model (an .onnx file, whose external data
    :func:`~deploytool.onnx_io.check_output_path` adds, or a folder's files), the data or test file, the corpus,
    the reference model and the tokenizer folder (by default the folder holding an .onnx model)."""
    from deploytool.data import BUILTIN

    p = Path(cfg.model)
    files: list[Path] = []
    # an .onnx model's tokenizer, labels and training record: --tokenizer, beside it, or found elsewhere
    meta = p if p.is_dir() else (tokenizer_folder(p, cfg.tokenizer)[0] if p.is_file() else None) or p.parent
    folders: list[Path] = [meta] + ([Path(cfg.tokenizer)] if cfg.tokenizer else [])
    for m in (p, Path(cfg.reference) if cfg.reference is not None else None):
        if m is None:
            continue
        if m.is_dir():
            folders.append(m)
        elif m.is_file():
            files.append(m)
            folders.append(m.parent)  # its labels (read beside it too)
    recorded = None
    if cfg.test_file is None and cfg.data.data is None:  # the dataset recorded with the model at training time
        from deploytool.train.checkpoint import read_meta

        rec = recorded_dataset(read_meta(meta))
        recorded = rec.get("source") if rec else None
    for d in (cfg.test_file, cfg.data.data, cfg.corpus, recorded):
        if isinstance(d, (str, Path)) and d and str(d) not in BUILTIN:
            files.append(Path(d))
    for folder in folders:
        files += [folder / n for n in _FOLDER_FILES if (folder / n).is_file()]
    return tuple(dict.fromkeys(files))


def _refuse_embedding_options(cfg: EvalConfig) -> None:
    """A classifier is judged on labelled data: the embedding options were accepted and ignored (a --corpus file
    that does not exist was not even noticed)."""
    given = [o for o, v in (("--reference", cfg.reference is not None), ("--corpus", cfg.corpus is not None),
                            ("--max-queries", cfg.max_queries != 1000)) if v]
    if given:
        raise ConfigError(f"{', '.join(given)}: embedding models only; {cfg.model} is a classifier (judged on "
                          "labelled data: --data, --split, --test-file)")


def _refuse_classifier_options(cfg: EvalConfig, p: Path) -> None:
    """An embedding model is judged against a reference over a corpus: the labelled-data options were accepted and
    ignored (``--test-file nonexistent.csv`` scored the review data without a word)."""
    given = [o for o, v in (("--test-file", cfg.test_file is not None), ("--split", cfg.split != "test"),
                            ("--label-col", cfg.data.label_col != "label"),
                            ("--max-eval", cfg.data.max_eval is not None)) if v]
    if given:
        raise ConfigError(f"{', '.join(given)}: classifiers only; {p} is an embedding model (judged against "
                          "--reference over --corpus; --max-queries limits its texts)")


def evaluate(cfg: EvalConfig) -> dict:
    """Evaluate ``cfg.model`` (HF folder or .onnx file); optionally write JSON.

    A classifier: accuracy on ``cfg.split`` of the data (or the whole ``cfg.test_file``), labels matched
    to the model's ``id2label`` by name, per-example predictions kept. A feature-extraction ONNX model:
    embedding agreement with a reference model (:func:`deploytool.train.embedding.evaluate_embedding`).
    torch's thread count is ``cfg.threads`` while it runs, the caller's again after.
    """
    from deploytool.choices import require_config

    require_config(cfg, EvalConfig, "evaluate")  # a path or a dict: ConfigError, not AttributeError
    with contextlib.ExitStack() as held:
        return _evaluate(cfg, held)


def _evaluate(cfg: EvalConfig, held: contextlib.ExitStack) -> dict:
    from deploytool.train.checkpoint import load_classifier, load_tokenizer, resolve_folder

    if cfg.output is not None:  # before any work (torch included); never onto a file the eval reads
        from deploytool.onnx_io import check_output_path
        check_output_path(cfg.output, inputs=_read_files(cfg))
    if cfg.data.max_train is not None:  # options no eval reads were accepted and ignored
        raise ConfigError("--max-train: not used by eval (--max-eval limits the examples evaluated)")
    if cfg.test_file is not None and cfg.split != "test":
        raise ConfigError(f"--split {cfg.split}: not used with --test-file (the whole file is evaluated)")
    import torch  # noqa: F401 - loaded before the clock starts

    t0 = time.perf_counter()
    held.enter_context(torch_threads(cfg.threads))
    p = Path(cfg.model)
    is_onnx = p.suffix == ".onnx" or p.is_file()
    if is_onnx:
        if not p.is_file():
            raise not_a_file(p, "ONNX model file")
        from deploytool.onnx_io import check_external_data

        check_external_data(p)
        if cfg.width < 1 or cfg.depth < 1:
            raise InputFileError("width/depth select a PyTorch sub-network; slice the ONNX model with "
                                 "`deploytool slice` instead")
        if _is_embedding_onnx(p):
            from deploytool.train.embedding import evaluate_embedding

            if cfg.data.text_pair_col is not None:  # a sentence encoder embeds one text; a pair is no corpus text
                raise ConfigError(f"--text-pair-col: classifiers only; {p} is an embedding model (its corpus is one "
                                  "text a row)")
            _refuse_classifier_options(cfg, p)

            res = evaluate_embedding(cfg)
            res["seconds"] = round(time.perf_counter() - t0, 2)
            _write(cfg, res)
            return res
        _refuse_embedding_options(cfg)
        meta_folder, looked = tokenizer_folder(p, cfg.tokenizer)
        if meta_folder is None:
            from deploytool.models import TOKENIZER_HINT

            raise InputFileError(f"{p}: evaluating it needs the model's tokenizer and none was found: {looked}; "
                                 f"{TOKENIZER_HINT}")
        folder = None
    else:
        _refuse_embedding_options(cfg)
        folder = resolve_folder(p)
        meta_folder = folder
        archs = _architectures(folder)
        if archs and not any("SequenceClassification" in a for a in archs):
            # a random head would give a meaningless accuracy: say what to do instead
            raise InputFileError(f"{p}: {', '.join(archs)} has no classification head (a feature-extraction "
                                 "model); fine-tune it (`deploytool train`), or export it and eval the .onnx "
                                 "file for its embedding agreement with the original")
    names_from = labels_folder(p, meta_folder) if is_onnx else meta_folder
    id2label = model_labels(names_from)
    dc, whole, origin = resolve_data(cfg, meta_folder)
    ds = load_data(dc, whole=whole, matched=True)  # '1' and '1.0' (or 'pos', 'Pos'): match_labels decides
    split = "all" if whole else cfg.split
    n_classes = _onnx_classes(p) if is_onnx else _folder_classes(folder)  # None: not declared
    _refuse_non_classifier(p, meta_folder, n_classes)
    label_map, label_note = match_labels(ds.label_names, id2label, str(dc.data), n_classes, model=str(names_from))
    # label ids with a gap (0 and 2 of a 3-class head) name classes up to the largest
    n_model = max(len(id2label), max(id2label) + 1) if id2label else (n_classes or ds.num_labels)
    if is_onnx:
        check_max_length(dc.max_length, onnx_max_length(p), str(p))
        tok = load_tokenizer(meta_folder)
        check_onnx_vocab(tok, p, tokenizer_from=cfg.tokenizer)
        res = evaluate_onnx(p, tok, ds, split, dc, batch_size=cfg.batch_size, threads=cfg.threads,
                            label_map=label_map, num_labels=n_model)
        kind = "onnx"
    else:
        tok = load_tokenizer(cfg.tokenizer or folder)
        model = load_classifier(folder, num_labels=n_model)
        check_max_length(dc.max_length, torch_max_length(model), str(p))
        check_vocab(tok, model, str(p), tokenizer_from=cfg.tokenizer)
        from deploytool.train.checkpoint import read_meta

        # a QAT folder is evaluated with the activations it was trained with (int8 for the speed runtime)
        act_bits = int((read_meta(folder).get("qat") or {}).get("act_bits") or 0)
        if cfg.width < 1 or cfg.depth < 1 or act_bits:
            from deploytool.train.subnet import check_sizes, check_supported
            check_supported(model)
            try:  # a sub-network that keeps no head or layer (slice and dynabert refuse it too)
                check_sizes(model, (cfg.width,), (cfg.depth,))
            except ConfigError as e:
                raise ConfigError(str(e).replace("widths: ", "width: ", 1).replace("depths: ", "depth: ", 1)) from None
        res = evaluate_torch(model, tok, ds, split, dc, width=cfg.width, depth=cfg.depth,
                             batch_size=cfg.batch_size, label_map=label_map, act_bits=act_bits, name=str(p))
        res["act_bits"] = act_bits
        kind = "pytorch"
    names = class_names(id2label, ds.label_names, label_map, n_model)  # indexed by the predictions' class ids
    res.update(command="eval", model=str(p), kind=kind, metric="accuracy", unit="percent", width=cfg.width,
               depth=cfg.depth,
               dataset=ds.info.to_dict(), data_origin=origin, split_description=ds.info.describe(),
               label_names=names, data_labels=list(ds.label_names), label_note=label_note,
               # an ONNX model's tokenizer (and labels, training record) folder, where not the one holding it
               tokenizer_folder=str(meta_folder) if is_onnx and meta_folder.resolve() != p.parent.resolve() else None,
               seconds=round(time.perf_counter() - t0, 2))
    _write(cfg, res)
    return res


def _write(cfg: EvalConfig, res: dict) -> None:
    if cfg.output is not None:
        from deploytool.onnx_io import atomic_write
        with atomic_write(cfg.output) as f:
            json.dump(res, f, indent=2)
