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


def _ids_by_label(ds):
    # _data writes "text number {i} {label}": the label the row was written with, and the id it was given
    return [(t.rsplit(" ", 1)[1], y) for sp in (ds.train, ds.dev, ds.test) for t, y in zip(sp.texts, sp.labels)]


def test_a_name_two_ids_carry_is_refused_naming_the_name_and_the_ids(tmp_path):
    """id2label {0: neg, 1: pos, 2: pos}: every 'pos' example was given the last id (2), silently. Also a name two ids
    carry once case and spaces are ignored, for a data label that only matches so ('POS' for 'pos'/'Pos ')."""
    data = _data(tmp_path / "d.csv", ["neg", "pos"] * 30)
    with pytest.raises(InputFileError, match=r"label 'pos' matches the model's classes 1 and 2 alike \(\S+/t/config"
                                             r"\.json: id2label names 'pos' for ids 1 and 2\)"):
        load_teacher_data(DataConfig(data=str(data)), _teacher(tmp_path / "t", {"0": "neg", "1": "pos", "2": "pos"}))
    folded = _teacher(tmp_path / "f", {"0": "neg", "1": "pos", "2": "Pos "})
    upper = _data(tmp_path / "u.csv", ["neg", "POS"] * 30)
    with pytest.raises(InputFileError, match=r"label 'POS' matches the model's classes 1 and 2 alike .*id2label names "
                                             r"'Pos ' and 'pos' for ids 1 and 2"):
        load_teacher_data(DataConfig(data=str(upper)), folded)
    # the exact spelling is one class of the two
    ds = load_teacher_data(DataConfig(data=str(data)), folded)
    assert ds.num_labels == 3 and set(ds.train.labels) == {0, 1}


def test_labels_that_are_class_ids_need_no_names(tmp_path):
    """Labels 0/1 (or 0.0/1.0, a pandas column of ints with a missing value) for a teacher with names: no name is
    matched, so duplicate names do not matter; each example keeps its id (they were refused as unknown labels)."""
    teacher = _teacher(tmp_path / "t", {"0": "pos", "1": "pos"})
    for i, (a, b) in enumerate((("0", "1"), ("0.0", "1.0"))):
        data = _data(tmp_path / f"d{i}.csv", [a, b] * 30)
        ds = load_teacher_data(DataConfig(data=str(data)), teacher)
        got = _ids_by_label(ds)
        assert ds.num_labels == 2 and len(got) == 60 and all(y == int(float(name)) for name, y in got)


def test_numeric_names_match_numbers_written_as_floats(tmp_path):
    """A teacher whose names are numbers ({0: "1", 1: "0"}) and a file of 1.0/0.0: the labels matched no name and
    were read as class ids, so 0.0 became class 0, the one named "1"; 0.0 is the name "0" (class 1) now."""
    teacher = _teacher(tmp_path / "t", {"0": "1", "1": "0"})
    ds = load_teacher_data(DataConfig(data=str(_data(tmp_path / "d.csv", ["1.0", "0.0"] * 30))), teacher)
    got = _ids_by_label(ds)
    assert len(got) == 60 and all(y == {"1.0": 0, "0.0": 1}[name] for name, y in got)


@pytest.mark.parametrize("id2label, spellings, want", [
    ({"0": "neg", "1": "pos"}, ["0", "1", "1.0", "0.0"], {"0": 0, "1": 1, "1.0": 1, "0.0": 0}),  # ids written two ways
    ({"0": "neg", "1": "pos"}, ["neg", "pos", "Pos", "NEG"], {"neg": 0, "pos": 1, "Pos": 1, "NEG": 0}),  # case
    ({"0": "1", "1": "0"}, ["1", "1.0", "0"], {"1": 0, "1.0": 0, "0": 1}),  # numeric names, a float spelling
])
def test_two_spellings_of_one_teacher_class_are_that_class(tmp_path, id2label, spellings, want):
    """A teacher decides the classes, as in eval: a file mixing '1' and '1.0' (pandas after a float cast) or 'pos'
    and 'Pos' gives each row the teacher's id of its label (both were refused as two classes of the data)."""
    teacher = _teacher(tmp_path / "t", id2label)
    ds = load_teacher_data(DataConfig(data=str(_data(tmp_path / "d.csv", spellings * 20))), teacher)
    got = _ids_by_label(ds)
    assert ds.num_labels == 2 and len(got) == 20 * len(spellings)
    assert all(y == want[name] for name, y in got), sorted(set(got))


def test_two_spellings_without_teacher_names_are_refused(tmp_path):
    """A teacher without label names and 'pos'/'Pos': nothing says which class they are."""
    teacher = _teacher(tmp_path / "t", {"0": "LABEL_0", "1": "LABEL_1"})
    with pytest.raises(InputFileError, match="pos"):
        load_teacher_data(DataConfig(data=str(_data(tmp_path / "d.csv", ["pos", "Pos", "neg"] * 20))), teacher)


def test_transformers_label_k_names_are_class_k(tmp_path):
    """A teacher of 12 classes named LABEL_0..LABEL_11 and a file labelled so: LABEL_10 was class 2 (sorted by name)."""
    teacher = _teacher(tmp_path / "t", {str(k): f"LABEL_{k}" for k in range(12)})
    data = _data(tmp_path / "d.csv", [f"LABEL_{k}" for k in range(12)] * 10)
    ds = load_teacher_data(DataConfig(data=str(data)), teacher)
    got = _ids_by_label(ds)
    assert len(got) == 120 and all(y == int(name.split("_")[1]) for name, y in got)


def test_label_k_names_at_other_ids_are_names(tmp_path):
    """A model trained on a file labelled LABEL_0..LABEL_11 names its classes in sorted order (class 2 is LABEL_10):
    those are its names, matched as such, not transformers' defaults read as LABEL_k = class k (LABEL_10 was 10)."""
    names = sorted(f"LABEL_{k}" for k in range(12))
    teacher = _teacher(tmp_path / "t", {str(i): n for i, n in enumerate(names)})
    ds = load_teacher_data(DataConfig(data=str(_data(tmp_path / "d.csv", [f"LABEL_{k}" for k in range(12)] * 10))),
                           teacher)
    got = _ids_by_label(ds)
    assert len(got) == 120 and all(y == names.index(name) for name, y in got)


def test_teacher_ids_with_a_gap_keep_every_class(tmp_path):
    """id2label {0: a, 2: c} of a 3-class head: the class count was the count of names (2), so class 2 was past the
    data's classes; it is up to the largest id, as eval counts it."""
    ds = load_teacher_data(DataConfig(data=str(_data(tmp_path / "d.csv", ["a", "c"] * 30))),
                           _teacher(tmp_path / "t", {"0": "a", "2": "c"}))
    assert ds.num_labels == 3 and ds.label_names == ("a", "LABEL_1", "c")
    assert all(y == {"a": 0, "c": 2}[name] for name, y in _ids_by_label(ds))


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


def test_qat_init_whose_labels_are_not_the_teachers_is_refused(tmp_path):
    """qat --tws --init M: M's head was trained against the teacher's class ids and saved with M's own id2label, so a
    model whose id2label is {0: pos, 1: neg} under a {0: neg, 1: pos} teacher came out with every class misnamed."""
    pytest.importorskip("torch")
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv
    from deploytool.train.config import QATConfig
    from deploytool.train.qat import train_qat

    folders = {}
    for name, i2l in (("teacher", {"0": "neg", "1": "pos"}), ("init", {"0": "pos", "1": "neg"})):
        folders[name] = tiny_classifier_folder(tmp_path / name, layers=1)
        cfg = json.loads((folders[name] / "config.json").read_text())
        (folders[name] / "config.json").write_text(json.dumps({**cfg, "id2label": i2l}))
    data = DataConfig(data=str(toy_csv(tmp_path / "toy.csv", n=60)), max_length=32)
    with pytest.raises(InputFileError, match=r"--init \S+/init: its label names \(id2label\) \{0: 'pos', 1: 'neg'\} "
                                             r"are not the teacher's \{0: 'neg', 1: 'pos'\}"):
        train_qat(QATConfig(teacher=str(folders["teacher"]), output=tmp_path / "out", data=data, mode="binary",
                            tws=True, init=str(folders["init"]), epochs=0.05, threads=1))
    assert not (tmp_path / "out").exists()
