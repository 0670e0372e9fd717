"""The data a command starting from a trained classifier reads (importance, dynabert, qat, distill): its labels are
the teacher's class ids by name, and without --data it is the dataset recorded with the teacher."""

from __future__ import annotations

import json

import pytest

from deploytool.errors import InputFileError
from deploytool.train.teacher_data import load_teacher_data
from deploytool.train.config import DataConfig


def _teacher(folder, id2label):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "id2label": id2label,
                                                   "architectures": ["BertForSequenceClassification"]}))
    return folder


def _data(path, labels):
    path.write_text("text,label\n" + "".join(f"text number {i} {lab},{lab}\n" for i, lab in enumerate(labels)))
    return path


def test_labels_become_the_teachers_ids_by_name(tmp_path):
    """A teacher with id2label {0: pos, 1: neg} and a file labelled neg/pos (sorted: neg=0, pos=1): each example
    gets the teacher's id of its label name, not its sorted index (a 72.5 % teacher read 27.5 % on dev)."""
    teacher = _teacher(tmp_path / "t", {"0": "pos", "1": "neg"})
    data = _data(tmp_path / "d.csv", ["pos", "neg"] * 30)
    ds = load_teacher_data(DataConfig(data=str(data)), teacher)
    assert ds.label_names == ("pos", "neg")
    for split in (ds.train, ds.dev, ds.test):
        for text, y in zip(split.texts, split.labels):
            assert y == (0 if text.endswith("pos") else 1), (text, y)


def test_labels_the_teacher_does_not_know_are_refused(tmp_path):
    teacher = _teacher(tmp_path / "t", {"0": "neg", "1": "pos"})
    data = _data(tmp_path / "d.csv", ["fresh", "rotten"] * 30)
    with pytest.raises(InputFileError, match="label\\(s\\) 'fresh', 'rotten' unknown to the model; model labels "
                                             "\\(id2label\\): 'neg', 'pos'"):
        load_teacher_data(DataConfig(data=str(data)), teacher)


def test_fewer_labels_than_the_teachers_classes_keep_its_class_count(tmp_path):
    teacher = _teacher(tmp_path / "t", {"0": "a", "1": "b", "2": "c"})
    data = _data(tmp_path / "d.csv", ["c", "a"] * 30)
    ds = load_teacher_data(DataConfig(data=str(data)), teacher)
    assert ds.label_names == ("a", "b", "c") and ds.num_labels == 3
    assert {y for y in ds.train.labels} == {0, 2}


def test_without_data_the_teachers_recorded_dataset_is_read(tmp_path):
    teacher = _teacher(tmp_path / "t", {"0": "neg", "1": "pos"})
    data = _data(tmp_path / "d.csv", ["neg", "pos"] * 30)
    (teacher / "deploytool.json").write_text(json.dumps({"dataset": {
        "dataset": "d.csv", "source": str(data.resolve()), "seed": 3, "text_col": "text", "label_col": "label"}}))
    ds = load_teacher_data(DataConfig(data=None, max_length=32), teacher)
    assert ds.info.source == str(data.resolve()) and ds.info.seed == 3


def test_macro_f1_averages_the_classes_that_occur():
    """A 3-class model evaluated on a file of 2 of its classes: the absent class counted as F1 0 (22.2 instead of
    33.3 for predictions all 'pos')."""
    import numpy as np

    from deploytool.train.evaluate import metrics

    labels = np.array([0, 1] * 200)
    pred = np.ones_like(labels)
    m = metrics(pred, labels, num_labels=3)
    assert m["f1_macro"] == round(100 * (0 + 2 * 200 / (2 * 200 + 200)) / 2, 3)  # (F1 of 0, F1 of 1) / 2


def test_a_non_finite_loss_stops_training_and_saves_nothing(tmp_path):
    """distill --w-logits inf trained on an infinite loss and saved a NaN model with exit 0 and a dev accuracy."""
    from deploytool.errors import ConfigError
    from deploytool.train.distill import DistillConfig

    for k, v in (("w_logits", float("inf")), ("temperature", float("inf"))):
        with pytest.raises(ConfigError, match=f"{k}: (must be|expected) a finite number"):
            DistillConfig(teacher="minilm", output=tmp_path / "o", **{k: v})

    # and a loss that becomes NaN or inf stops the loop with one line (a learning rate too large does that too)
    import numpy as np
    import torch

    from deploytool.errors import DeployError
    from deploytool.train.batching import Encoded, make_accelerator
    from deploytool.train.loop import run_loop

    model = torch.nn.Linear(2, 2)
    enc = Encoded(ids=[[1, 2, 3]] * 8, types=[[0, 0, 0]] * 8, labels=np.zeros(8, dtype=np.int64), truncated=0)
    steps = []

    def step(m, batch):
        steps.append(1)
        out = m.weight.abs().sum() * (float("inf") if len(steps) == 3 else 1.0)
        return out, {}

    with pytest.raises(DeployError, match="the loss is inf at step 3 of"):
        run_loop(make_accelerator(1, True, 0), model, enc, step, epochs=2, lr=1e-3, batch_size=2)
