"""The data of a command that starts from a trained classifier (importance, dynabert, qat, distill): its labels
matched by name to the teacher's class ids, and by default the dataset recorded with the teacher."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from deploytool.data import (Dataset, Split, _fold, class_count, class_names, has_names, match_labels,
                             model_labels)
from deploytool.errors import InputFileError
from deploytool.train.batching import load_data
from deploytool.train.config import DataConfig
from deploytool.train.evaluate import _folder_classes, recorded_data

logger = logging.getLogger(__name__)

__all__ = ["load_teacher_data", "knows_labels", "with_model_ids", "check_same_labels"]


def load_teacher_data(cfg: DataConfig, folder) -> Dataset:
    """The dataset a command that starts from a trained classifier (importance, dynabert, qat, distill) reads,
    its labels as the teacher's class ids. ``cfg.data`` None: the dataset recorded with the teacher at training
    (as ``eval`` does; rotten-tomatoes where none is recorded). The data's labels are matched BY NAME with the
    teacher's ``id2label`` (:func:`~deploytool.data.match_labels`): a file whose labels are named or
    sorted otherwise gets the teacher's ids, and labels the teacher does not know are refused in one line (they
    were taken by their sorted index: a dev accuracy of 27.5 % for a 72.5 % teacher, training on swapped labels)."""
    folder = Path(folder)
    if cfg.data is None:
        cfg, where = recorded_data(cfg, folder)
        logger.warning("data: %s (%s; give --data for another)", cfg.data, where)
    # '1' and '1.0' (or 'pos' and 'Pos') kept apart, then each given the teacher's class by match_labels, as eval does
    return with_model_ids(load_data(cfg, matched=True), folder, str(cfg.data))


def knows_labels(folder, label_names: tuple[str, ...]) -> bool:
    """Whether ``folder`` has a classification head whose label names (besides transformers' LABEL_k) include every
    one of ``label_names`` (exactly, or with case and surrounding spaces ignored)."""
    id2label = model_labels(Path(folder))
    if _folder_classes(Path(folder)) is None or not has_names(id2label):
        return False
    known = set(id2label.values()) | {_fold(v) for v in id2label.values()}
    return all(n in known or _fold(n) in known for n in label_names)


def with_model_ids(ds: Dataset, folder, where: str) -> Dataset:
    """``ds`` with its labels as the class ids of the classifier in ``folder``, matched by name
    (:func:`~deploytool.data.match_labels`), and its label names the model's."""
    folder = Path(folder)
    id2label = model_labels(folder)  # as eval reads the model's labels and class count
    n = class_count(id2label) if id2label else _folder_classes(folder)
    ids, note = match_labels(ds.label_names, id2label, where, n, model=str(folder))
    if note:
        logger.warning("%s: %s", where, note)
    n = n or ds.num_labels
    if list(ids) == list(range(ds.num_labels)) and n == ds.num_labels:
        return ds
    names = tuple(class_names(id2label, ds.label_names, ids, n))

    def remap(sp: Split) -> Split:
        return Split(sp.texts, tuple(int(ids[y]) for y in sp.labels), sp.ids, sp.pairs)

    logger.info("%s: labels matched to the model's ids: %s", where,
                ", ".join(f"{a}->{int(b)}" for a, b in zip(ds.label_names, ids)))
    return dataclasses.replace(ds, label_names=names, train=remap(ds.train), dev=remap(ds.dev), test=remap(ds.test))


def check_same_labels(teacher, other, what: str) -> None:
    """A model trained from ``other`` against ``teacher``'s class ids: where both name their labels, the names must
    be the same ids' (a head whose rows are other classes would be trained, and saved, under the wrong names)."""
    a, b = model_labels(Path(teacher)), model_labels(Path(other))
    if not has_names(a) or not has_names(b):
        return
    if a != b:
        def show(d):
            return "{" + ", ".join(f"{k}: {d[k]!r}" for k in sorted(d)) + "}"
        raise InputFileError(f"{what} {other}: its label names (id2label) {show(b)} are not the teacher's {show(a)} "
                             f"({teacher}); its head's classes would be trained as the teacher's ids")
