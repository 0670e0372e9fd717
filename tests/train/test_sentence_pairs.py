"""Sentence-pair classifiers (GLUE's MRPC, RTE, QNLI, MNLI) through eval and train.

A pair file's second text never reached the model: eval and train read one text column. Now each example is
tokenized as a pair, ``[CLS] a [SEP] b [SEP]`` with token types 0 then 1, and an ONNX model's ``token_type_ids``
input is fed those types. The references are transformers' own tokenizer and model, called here on (a, b).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from deploytool.cli import main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory):
    from deploytool.export import ExportConfig, export
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_rows

    root = tmp_path_factory.mktemp("pairs")
    folder = tiny_classifier_folder(root / "tiny", layers=2)
    export(ExportConfig(model=str(folder), task="sequence-classification"), folder / "model.onnx")
    a, b = toy_rows(60, seed=1, length=(3, 9)), toy_rows(60, seed=2, length=(8, 20))
    rows = [(x[0], y[0], str(i % 2)) for i, (x, y) in enumerate(zip(a, b))]
    path = root / "mrpc.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence1", "sentence2", "label"])
        w.writerows(rows)
    return {"root": root, "folder": folder, "onnx": folder / "model.onnx", "csv": path, "rows": rows}


def _run(args, code=0):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == code, (res.output, res.stderr)
    return res


def _reference(folder, rows, max_length):
    """transformers' tokenizer on (a, b) and its model's argmax: the fed rows and predictions eval must give."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok([r[0] for r in rows], [r[1] for r in rows], truncation=True, max_length=max_length)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    preds = []
    with torch.no_grad():
        for ids, tt in zip(enc["input_ids"], enc["token_type_ids"]):
            preds.append(int(model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([tt])).logits.argmax()))
    return enc, preds


def test_onnx_eval_feeds_each_pair_and_its_token_types(pair_model, tmp_path, monkeypatch):
    import deploytool.runtime.infer as infer

    fed = []
    real = infer.make_session

    class Recording:
        def __init__(self, sess):
            self._s = sess

        def __getattr__(self, name):
            return getattr(self._s, name)

        def run(self, outputs, feeds, *a, **kw):
            fed.append({k: np.array(v) for k, v in feeds.items()})
            return self._s.run(outputs, feeds, *a, **kw)

    monkeypatch.setattr(infer, "make_session", lambda *a, **kw: Recording(real(*a, **kw)))
    out = tmp_path / "e.json"
    rows = pair_model["rows"]
    # --max-length 24 truncates the longer pairs (longest text first, as the tokenizer does)
    _run(["eval", str(pair_model["onnx"]), "--test-file", str(pair_model["csv"]), "--text-col", "sentence1",
          "--text-pair-col", "sentence2", "--max-length", "24", "--threads", "1", "-o", str(out)])
    assert fed and all("token_type_ids" in f for f in fed)
    got = []
    for f in fed:
        for ids, tt, m in zip(f["input_ids"], f["token_type_ids"], f["attention_mask"]):
            n = int(m.sum())
            assert not tt[n:].any()
            got.append((tuple(int(x) for x in ids[:n]), tuple(int(x) for x in tt[:n])))
    enc, preds = _reference(pair_model["folder"], rows, 24)
    want = [(tuple(i), tuple(t)) for i, t in zip(enc["input_ids"], enc["token_type_ids"])]
    assert sorted(got) == sorted(want)
    assert any(1 in t for _, t in got) and any(len(i) == 24 for i, _ in got)
    r = json.loads(out.read_text())
    assert r["n"] == len(rows) and r["truncated"] > 0
    assert r["predictions"]["pred"] == preds  # ids are the rows, in order
    assert r["n_correct"] == sum(p == int(row[2]) for p, row in zip(preds, rows))
    assert r["dataset"]["text_pair_col"] == "sentence2"


def test_pytorch_eval_of_a_pair_file_found_by_its_column_names(pair_model, tmp_path, caplog):
    out = tmp_path / "e.json"
    with caplog.at_level("WARNING"):
        res = _run(["eval", str(pair_model["folder"]), "--test-file", str(pair_model["csv"]), "--max-length", "24",
                    "--threads", "1", "-o", str(out)])
    assert "read as sentence pairs of its 'sentence1' and 'sentence2' columns" in caplog.text
    assert "(no split, sentence pairs 'sentence1' + 'sentence2')" in res.output, res.output
    _, preds = _reference(pair_model["folder"], pair_model["rows"], 24)
    assert json.loads(out.read_text())["predictions"]["pred"] == preds


def test_a_missing_second_column_is_one_line(pair_model):
    for model in (pair_model["onnx"], pair_model["folder"]):
        res = _run(["eval", str(model), "--test-file", str(pair_model["csv"]), "--text-col", "sentence1",
                    "--text-pair-col", "hypothesis", "--threads", "1"], code=2)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "no column 'hypothesis' (--text-pair-col); columns are: label, sentence1, " \
            "sentence2" in lines[0], res.stderr
    res = _run(["eval", str(pair_model["folder"]), "--text-pair-col", "b"], code=2)
    assert "--text-pair-col: only with --data or --test-file" in res.stderr


def test_training_encodes_pairs_and_eval_reads_the_recorded_columns(pair_model, tmp_path):
    from transformers import AutoTokenizer

    from deploytool.data import load_dataset
    from deploytool.train.batching import encode

    tok = AutoTokenizer.from_pretrained(pair_model["folder"])
    train = load_dataset(pair_model["csv"]).train
    enc = encode(tok, train, 24)
    ref = tok(list(train.texts), list(train.pairs), truncation=True, max_length=24)
    assert enc.ids == ref["input_ids"] and enc.types == ref["token_type_ids"]
    assert any(1 in t for t in enc.types)

    out = tmp_path / "ft"
    res = _run(["train", "--model", str(pair_model["folder"]), "--data", str(pair_model["csv"]), "-o", str(out),
                "--threads", "1", "--max-length", "24", "--epochs", "1"])
    assert "sentence pairs 'sentence1' + 'sentence2'" in res.output, res.output
    e = tmp_path / "e.json"
    res = _run(["eval", str(out), "--threads", "1", "-o", str(e)])
    r = json.loads(e.read_text())
    assert r["data_origin"] == "recorded at training time" and r["dataset"]["text_pair_col"] == "sentence2"
    assert r["n"] == 6


def test_labels_matched_to_a_teachers_ids_keep_the_pairs(pair_model, tmp_path):
    """distill/dynabert/qat remap the data's labels to the teacher's class ids: the remapped splits lost their
    second texts (the students were trained on the first sentences alone)."""
    import shutil

    from deploytool.data import load_dataset
    from deploytool.train.teacher_data import with_model_ids

    folder = tmp_path / "named"
    shutil.copytree(pair_model["folder"], folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(id2label={"0": "1", "1": "0"}, label2id={"1": 0, "0": 1})  # the file's labels in the other order
    (folder / "config.json").write_text(json.dumps(cfg))
    ds = load_dataset(pair_model["csv"])
    mapped = with_model_ids(ds, folder, "mrpc.csv")
    assert mapped is not ds
    for a, b in ((ds.train, mapped.train), (ds.dev, mapped.dev), (ds.test, mapped.test)):
        assert b.pairs == a.pairs and b.labels == tuple(1 - y for y in a.labels)


def test_an_embedding_models_corpus_is_not_read_as_pairs(tiny_onnx, pair_model):
    """A sentence encoder's corpus is one text a row: --text-pair-col was accepted and ignored."""
    emb = tiny_onnx("bert", layers=1)
    res = _run(["eval", str(emb), "--corpus", str(pair_model["csv"]), "--text-col", "sentence1",
                "--text-pair-col", "sentence2"], code=2)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--text-pair-col: classifiers only" in lines[0] and "embedding model" in lines[0]


def test_distillation_trains_on_the_pairs(pair_model, tmp_path, monkeypatch):
    """distill reads the teacher's data as pairs: what it trains and evaluates the student on is tokenizer(a, b)."""
    from transformers import AutoTokenizer

    import deploytool.train.batching as batching

    seen = []
    real = batching.encode
    monkeypatch.setattr(batching, "encode", lambda tok, split, *a, **kw: seen.append((split, real(tok, split, *a,
                                                                                                   **kw))) or seen[-1][1])
    _run(["distill", "--teacher", str(pair_model["folder"]), "-o", str(tmp_path / "s"), "--layers", "1", "--hidden",
          "16", "--heads", "2", "--ffn", "16", "--epochs", "0.25", "--importance-examples", "0", "--threads", "1",
          "--data", str(pair_model["csv"]), "--max-length", "24"])
    tok = AutoTokenizer.from_pretrained(pair_model["folder"])
    assert seen
    for split, enc in seen:
        ref = tok(list(split.texts), list(split.pairs), truncation=True, max_length=24)
        assert enc.ids == ref["input_ids"] and enc.types == ref["token_type_ids"]
        assert any(1 in t for t in enc.types)
