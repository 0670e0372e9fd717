"""``deploytool export`` on the task heads and checkpoint forms users bring, checked against transformers itself.

Each folder is saved by transformers (``save_pretrained``) from a tiny random BERT; the reference is transformers'
own model of that folder run on fixed inputs, the export is run in ONNX Runtime directly. A checkpoint of another
task's head (question answering, token classification, multiple choice) asked for as a sequence classifier is
refused in one line: a token classifier's ``classifier`` has the sequence classifier's shape and was exported as one
(exit 0, meaningless logits), a question-answering head was swapped for a random classifier, a multiple-choice one
failed with transformers' size mismatch.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from deploytool.cli import main

FE, SC = "feature-extraction", "sequence-classification"


def _bert(auto_name: str, dtype: str | None = None, **config):
    import torch
    import transformers as tr

    cfg = tr.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=160, **config)
    torch.manual_seed(0)
    model = getattr(tr, auto_name).from_config(cfg, attn_implementation="eager")
    with torch.no_grad():  # random biases and LayerNorms, so that a wrong weight shows in the numbers
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape) * 0.1)
    return model.eval() if dtype is None else model.to(getattr(torch, dtype)).eval()


# name -> (transformers class saved, its config, how it is saved)
_FOLDERS = {
    "qa": ("AutoModelForQuestionAnswering", {}, {}),
    "token": ("AutoModelForTokenClassification", {"num_labels": 7}, {}),
    "choice": ("AutoModelForMultipleChoice", {}, {}),
    "regression": ("AutoModelForSequenceClassification", {"num_labels": 1, "problem_type": "regression"}, {}),
    "multilabel": ("AutoModelForSequenceClassification",
                   {"num_labels": 5, "problem_type": "multi_label_classification"}, {}),
    "plain": ("AutoModel", {}, {}),
    "sharded": ("AutoModelForSequenceClassification", {"num_labels": 3}, {"max_shard_size": "20KB"}),
    "float16": ("AutoModelForSequenceClassification", {"num_labels": 3}, {"dtype": "float16"}),
    "bfloat16": ("AutoModelForSequenceClassification", {"num_labels": 3}, {"dtype": "bfloat16"}),
    "bin": ("AutoModelForSequenceClassification", {"num_labels": 3}, {"safe_serialization": False}),
    "id2label only": ("AutoModelForSequenceClassification", {"num_labels": 3}, {"id2label_only": True}),
    "dir with spaces ünïcødé 名前": ("AutoModelForSequenceClassification", {"num_labels": 3}, {}),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("heads")
    made = {}

    def make(name: str):
        if name not in made:
            auto, config, how = _FOLDERS[name]
            how = dict(how)
            folder = root / name
            id2label_only = how.pop("id2label_only", False)
            _bert(auto, how.pop("dtype", None), **config).save_pretrained(folder, **how)
            if id2label_only:  # names of the labels, no label2id (hand-written configs)
                path = folder / "config.json"
                c = json.loads(path.read_text())
                c["id2label"] = {"0": "neg", "1": "neu", "2": "pos"}
                c.pop("label2id", None)
                path.write_text(json.dumps(c))
            made[name] = folder
        return made[name]

    return make


def _reference(folder, task: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import torch
    import transformers as tr

    auto = tr.AutoModel if task == FE else tr.AutoModelForSequenceClassification
    model = auto.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    return (out.last_hidden_state if task == FE else out.logits).numpy()


@pytest.mark.parametrize("name, task, shape", [
    ("qa", FE, (3, 20, 32)), ("token", FE, (3, 20, 32)), ("plain", FE, (3, 20, 32)),
    ("regression", SC, (3, 1)), ("multilabel", SC, (3, 5)), ("sharded", SC, (3, 3)), ("float16", SC, (3, 3)),
    ("bfloat16", SC, (3, 3)), ("bin", SC, (3, 3)), ("id2label only", SC, (3, 3)),
    ("dir with spaces ünïcødé 名前", SC, (3, 3)),
])
def test_export_equals_transformers(folders, tmp_path, caplog, name, task, shape):
    import onnxruntime as ort

    folder = folders(name)
    out = tmp_path / f"{name} ü.onnx"
    with caplog.at_level(logging.INFO):
        r = CliRunner().invoke(main, ["export", "--model", str(folder), "--task", task, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "Loading checkpoint shards" not in r.output  # transformers' bar for a sharded checkpoint
    # a half-precision checkpoint is exported in float32, and the output says so (it said nothing)
    note = [ln for ln in r.output.splitlines() if ln.startswith("note: the checkpoint's weights are")]
    assert note == ([f"note: the checkpoint's weights are {name} (its config.json); exported and validated in "
                     "float32 (deploytool quantize --fp16 writes an fp16 file)"]
                    if name in ("float16", "bfloat16") else []), r.output
    # QA and token-classification checkpoints have no pooler, which last_hidden_state does not read
    assert not [x for x in caplog.records if x.levelno >= logging.WARNING], caplog.text
    rng = np.random.default_rng(5)
    ids = rng.integers(3, 100, size=(3, 20))
    mask = np.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
    assert len(got) == 1 and got[0].shape == shape
    np.testing.assert_allclose(got[0], _reference(folder, task, feeds), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name, cls, what", [
    ("qa", "BertForQuestionAnswering", "question answering"),
    ("token", "BertForTokenClassification", "token classification"),
    ("choice", "BertForMultipleChoice", "multiple choice"),
])
def test_another_tasks_head_is_refused_as_a_sequence_classifier(folders, tmp_path, name, cls, what):
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", "--model", str(folders(name)), "--task", SC, "-o", str(out)])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert cls in line and what in line and "--task feature-extraction" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("names", [["neg", "pos"], ["a", "b", "c", "d"]])
def test_labels_that_do_not_match_the_classifier_are_named_as_such(folders, tmp_path, names):
    """config.json's id2label edited to another label count than the classifier's 3 outputs: refused in one line
    naming both counts and config.json (transformers' words were "size mismatch for bias ... Linear")."""
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(folders("sharded"), folder)
    path = folder / "config.json"
    c = json.loads(path.read_text())
    c["id2label"] = {str(i): n for i, n in enumerate(names)}
    c["label2id"] = {n: i for i, n in enumerate(names)}
    path.write_text(json.dumps(c))
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(main, ["export", "--model", str(folder), "--task", SC, "-o", str(out)])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == (f"error: {folder}: its config.json names {len(names)} labels (id2label / num_labels) "
                                "but its classifier has 3 outputs; make config.json's labels those the head was "
                                "trained with"), r.output
    assert not out.exists()
