"""Accuracy records that carry their own uncertainty, and the rule that ranks variants by them.

An :class:`AccuracyRecord` is one figure (percent) with n, its 95% interval and, where the
measurement kept them, the per-example scores in a canonical order (sorted by example id) plus the
identity of the examples (a hash of their ids, texts and labels). Two records on the same examples can be compared with
a paired test (:func:`compare`: exact McNemar on 0/1 correctness, the exact sign test on per-query
recall@10); records of different examples, or without per-example scores, cannot.

:func:`pick` is the ranking used by ``fit`` and the report's per-device verdict: the candidate with
the highest accuracy is the top; every candidate whose difference from the top is not significant
(p >= 0.05) ties with it; among the tied ones the cheapest (lowest latency, then size, as the
caller's ``cost`` says) is picked, and the note says so.

Files read by :func:`load_accuracy_records` (any of): a ``deploytool eval --output`` record,
``{"models": {name: accuracy}}``, or a list of ``{"model": ..., "accuracy": ...}`` records (what
``deploytool run`` writes as ``accuracy.json``; an entry with ``"role": "reference"`` is the teacher
the variants came from, shown as the reference row). A file's unit is the ``"unit"`` it states, else the one
its records' own counts show (``n_correct`` of ``n``, per-example results), else percent where every value is
over 1; a value in (0, 1] with none of these (0.8 % or 80 %?) is refused, never guessed from its size. A
record that contradicts its own counts (n, n_correct, per-example results, ``ci95``) is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from deploytool.errors import InputFileError, not_a_file
from deploytool.stats import ALPHA, mean_interval, sign_test, wilson_interval

__all__ = ["AccuracyRecord", "AccuracySet", "Comparison", "Pick", "compare", "examples_key", "fmt_accuracy",
           "load_accuracy_records", "pick", "same_accuracy"]

T = TypeVar("T")


def examples_key(ids: Sequence[int] | np.ndarray, texts: Sequence[str] | None = None,
                 labels: Sequence[str] | None = None) -> str:
    """The identity of a set of examples: SHA-256 (16 hex) of the sorted ids, or, given the examples' ``texts`` and
    ``labels`` (parallel to ``ids``), of each one's id, text and label in id order. Ids are row numbers: two test
    files of as many rows have the same ids, and only their contents tell them apart (a paired test of models
    evaluated on different examples is no test)."""
    if texts is None:
        s = ",".join(str(int(i)) for i in sorted(int(x) for x in ids))
        return hashlib.sha256(s.encode()).hexdigest()[:16]
    rows = sorted(zip((int(x) for x in ids), texts, labels if labels is not None else [""] * len(texts)),
                  key=lambda r: r[0])
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class AccuracyRecord:
    """One accuracy-like figure in percent, with n and its 95% interval (percent)."""

    value: float
    n: int | None = None
    low: float | None = None
    high: float | None = None
    metric: str = "accuracy"  # or "recall@10" (embedding models: agreement with the reference's neighbours)
    examples: str | None = None  # examples_key of the evaluated examples
    scores: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    #: the file's figure (percent) where ``value`` is the exact share of its counts that figure was rounded from
    stated: float | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_correct(cls, correct, ids=None, *, examples: str | None = None) -> AccuracyRecord:
        """From 0/1 correctness per example (ids: their example ids, used to order and identify them)."""
        c = np.asarray(correct, dtype=bool)
        if ids is not None:
            order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
            c = c[order]
            examples = examples_key(ids)
        k, n = int(c.sum()), int(c.size)
        lo, hi = wilson_interval(k, n)
        return cls(100.0 * k / n if n else float("nan"), n, 100 * lo, 100 * hi, "accuracy", examples,
                   c.astype(np.float64))

    @classmethod
    def from_scores(cls, scores, *, metric: str, examples: str | None) -> AccuracyRecord:
        """From per-example scores in [0, 1] (e.g. per-query recall@10), mean with its interval."""
        s = np.asarray(scores, dtype=np.float64)
        m, lo, hi = mean_interval(s)
        return cls(100 * m, int(s.size), 100 * lo, 100 * hi, metric, examples, s)

    @property
    def binary(self) -> bool:
        return self.scores is not None and bool(np.all((self.scores == 0) | (self.scores == 1)))

    def label(self, nd: int = 1) -> str:
        """'79.8% [76.1-83.1] n=500' (or just '79.8%' without n)."""
        if self.n is None or self.low is None or self.high is None:
            return f"{self.value:.{nd}f}%"
        return f"{self.value:.{nd}f}% [{self.low:.{nd}f}-{self.high:.{nd}f}] n={self.n}"

    def to_dict(self, *, with_scores: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"accuracy": round(self.value, 3), "unit": "percent", "metric": self.metric, "n": self.n,
                             "ci95": None if self.low is None else [round(self.low, 3), round(self.high, 3)],
                             "examples": self.examples}
        if with_scores and self.scores is not None:
            if self.metric == "accuracy" and self.binary:
                d["correct"] = "".join("1" if v else "0" for v in self.scores)
            else:
                d["scores"] = [round(float(v), 4) for v in self.scores]
        return d


def same_accuracy(records: Sequence[AccuracyRecord]) -> bool:
    """Whether the records give one figure: one metric, and one value as their files state it or one exact value
    from their counts (a file's 12.15 and another's 13 of 107 right, 12.1495...%, are one accuracy)."""
    if len({r.metric for r in records}) > 1:
        return False
    return len({r.value for r in records}) <= 1 or len({r.value if r.stated is None else r.stated
                                                       for r in records}) <= 1


def fmt_accuracy(value: float | None, n: int | None = None, low: float | None = None, high: float | None = None,
                 nd: int = 1) -> str:
    if value is None:
        return "-"
    return AccuracyRecord(value, n, low, high).label(nd)


@dataclasses.dataclass(frozen=True)
class Comparison:
    p: float | None  # None: no paired test possible (different examples, or no per-example scores)
    a_better: int  # examples where A scored higher
    b_better: int
    n: int
    test: str  # "McNemar (exact)" | "sign test (exact)" | why none


def compare(a: AccuracyRecord, b: AccuracyRecord) -> Comparison:
    """The paired test of two records on the same examples."""
    if a.scores is None or b.scores is None:
        return Comparison(None, 0, 0, 0, "no per-example predictions")
    if a.examples is None or a.examples != b.examples or a.scores.shape != b.scores.shape:
        return Comparison(None, 0, 0, 0, "evaluated on different examples")
    p, better, worse = sign_test(a.scores, b.scores)
    return Comparison(p, better, worse, int(a.scores.size),
                      "McNemar (exact)" if a.metric == "accuracy" and a.binary and b.binary else "sign test (exact)")


def _paired_runs(a_ms: Sequence[float], b_ms: Sequence[float]) -> tuple[int, float, int, int] | None:
    """(n, p, runs a was slower, runs a was faster) of the exact sign test of the paired runs (run i of each in the
    same interleaved round), or None where fewer than 6 runs pair (they could not reach p < 0.05)."""
    n = min(len(a_ms), len(b_ms))
    if n < 6:
        return None
    p, slower, faster = sign_test(a_ms[:n], b_ms[:n])
    return n, p, slower, faster


def _p(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1g}"


def speed_tie(name: str, a_ms: Sequence[float], b_ms: Sequence[float]) -> str | None:
    """Why ``name`` (runs ``a_ms``) is not measurably slower than the other (``b_ms``, run i of each in the same
    interleaved round): the exact sign test of the paired runs gives p >= 0.05; else None: measurably slower, or
    measurably faster (:func:`speed_lead` says so), or fewer than 6 runs pair (no evidence either way, the p90s
    decide)."""
    t = _paired_runs(a_ms, b_ms)
    if t is None:
        return None
    n, p, slower, _ = t
    return None if p < ALPHA else f"{name} slower in {slower} of {n} paired runs, sign test p = {p:.2f}"


def speed_lead(name: str, a_ms: Sequence[float], b_ms: Sequence[float]) -> str | None:
    """Why ``name`` (runs ``a_ms``) is measurably faster than the other (``b_ms``, paired as for :func:`speed_tie`):
    faster in significantly many of their paired runs (exact sign test, p < 0.05), whatever their p90s (one slow
    outlier moves a p90, not the runs' order); else None."""
    t = _paired_runs(a_ms, b_ms)
    if t is None:
        return None
    n, p, slower, faster = t
    if p >= ALPHA or faster <= slower:
        return None
    return f"{name} faster in {faster} of {n} paired runs, sign test p = {_p(p)}"


def projection_tie(name: str, a_ms: float | None, b_ms: float | None, ratio: float, source: str = "", *,
                   seq_len: int | None = None) -> str | None:
    """Why ``name`` (projected ``a_ms``) cannot be ranked against the other (projected ``b_ms``) on a device: the
    larger is at most ``ratio`` times the smaller, the cost model's resolution (its errors where it could be
    measured spread that far, ``source``); else None."""
    if a_ms is None or b_ms is None or not (a_ms > 0 and b_ms > 0) or ratio < 1:
        return None
    lo, hi = sorted((float(a_ms), float(b_ms)))
    if hi / lo > ratio:
        return None
    at = f" at seq {seq_len}" if seq_len is not None else ""
    return (f"{name} projected {a_ms:.3g} ms against {b_ms:.3g} ms{at}, {hi / lo - 1:.0%} apart{_WITHIN}there "
            f"({ratio - 1:.0%}" + (f": {source}" if source else "") + ")")


# :func:`projection_tie`'s words before the resolution: :func:`_join_reasons` says a shared resolution once
_WITHIN = ", within the cost model's resolution "


def _join_reasons(reasons: Sequence[str]) -> str:
    """``reasons`` joined by "; ", the resolution that several :func:`projection_tie` reasons share said once, after
    the last of them ("a projected 16 ms against 15.9 ms, 1% apart; b projected 17.3 ms against 15.9 ms, 9% apart,
    both within the cost model's resolution there (27%: ...)")."""
    groups: dict[tuple[str, str], list[str]] = {}  # (what they share, or another reason whole) -> heads
    for r in reasons:
        head, sep, tail = r.partition(_WITHIN)
        groups.setdefault(("within", tail) if sep else ("other", r), []).append(head)
    parts = []
    for (kind, tail), heads in groups.items():
        if kind == "other" or len(heads) == 1:
            parts.append(heads[0] + (_WITHIN + tail if kind == "within" else ""))
        else:
            parts.append("; ".join(heads) + f", {'both' if len(heads) == 2 else 'all'} {_WITHIN[2:]}{tail}")
    return "; ".join(parts)


def _fastest_by_runs(ordered: Sequence[T], faster: Callable[[T, T], str | None], name: Callable[[T], str]
                     ) -> tuple[T, str]:
    """The fastest of ``ordered`` (by their latency figures, lowest first): the first one, unless another is
    measurably faster than it by ``faster`` (then that one, and so on; each candidate leads at most once, so the
    walk ends even where paired tests do not order three candidates consistently), and the note saying why."""
    fastest, seen, notes = ordered[0], {id(ordered[0])}, []
    while True:
        ahead = next(((c, why) for c in ordered if id(c) not in seen for why in (faster(c, fastest),) if why), None)
        if ahead is None:
            break
        notes.append(f"{name(ahead[0])} is faster than {name(fastest)}, whose latency figure is lower ({ahead[1]})")
        fastest = ahead[0]
        seen.add(id(fastest))
    return fastest, "".join(f"; {x}" for x in notes)


@dataclasses.dataclass
class Pick(Generic[T]):
    chosen: T
    top: T  # the highest accuracy
    tied: list[T]  # candidates not significantly worse than the top (the top included)
    note: str  # one sentence: why the chosen one


def pick(cands: Sequence[T], record: Callable[[T], AccuracyRecord | None], cost: Callable[[T], tuple],
         name: Callable[[T], str], same_speed: Callable[[T, T], str | None] | None = None,
         then: Callable[[T], tuple] | None = None, faster: Callable[[T, T], str | None] | None = None) -> Pick[T]:
    """The highest accuracy, except that a cheaper candidate whose difference is not significant wins.

    Candidates without a record rank last. ``cost``: smaller is better (latency, then size).
    ``same_speed(a, b)``: where latencies were measured run by run, why ``a`` is not measurably slower than the
    fastest tied candidate ``b`` (a paired test's one line), else None; those tie with the fastest on speed too,
    and ``then`` (smaller is better: size, then name) picks among them, so that the pick does not follow timing
    noise between two equally fast variants.
    ``faster(a, b)``: where latencies were measured run by run, why ``a`` is measurably faster than ``b`` (a paired
    test's one line), else None: a tied candidate measurably faster than the one with the lowest ``cost`` is the
    fastest, whatever its latency figure (a p90 moved by one slow run does not make it slower).
    """
    if not cands:
        raise ValueError("pick: no candidates")

    def acc(c):
        r = record(c)
        return r.value if r is not None else float("-inf")

    top = min(cands, key=lambda c: (-acc(c), cost(c)))
    rt = record(top)
    if rt is None:
        return Pick(top, top, [top], "no accuracy figure")
    tied, tests = [top], {}
    for c in cands:
        if c is top or record(c) is None:
            continue
        cmp = compare(rt, record(c))
        if cmp.p is not None and cmp.p >= ALPHA:
            tied.append(c)
            tests[id(c)] = cmp
    chosen = min(tied, key=cost)
    lead_note = tie_note = ""
    if faster is not None and len(tied) > 1:
        chosen, lead_note = _fastest_by_runs(sorted(tied, key=cost), faster, name)
    if same_speed is not None and then is not None and len(tied) > 1:
        fastest = chosen
        level = {id(c): same_speed(c, fastest) for c in tied if c is not fastest}
        level = {k: v for k, v in level.items() if v is not None}
        if level:
            even = [c for c in tied if c is fastest or id(c) in level]
            chosen = min(even, key=then)
            tie_note = (f"; {', '.join(name(c) for c in even if c is not fastest)} "
                        f"{'is' if len(even) == 2 else 'are'} not measurably slower than the fastest, {name(fastest)} "
                        f"({_join_reasons([level[id(c)] for c in even if c is not fastest])}), so the smallest of those "
                        f"{len(even)} is picked")
    speed_note = lead_note + tie_note
    if chosen is top:
        if len(tied) == 1:
            # claim a significant difference only where the paired test ran, for every other candidate
            others = [c for c in cands if c is not top]
            missing = [name(c) for c in others if record(c) is None]
            untested = [c for c in others if record(c) is not None and compare(rt, record(c)).p is None]
            worse = [c for c in others if record(c) is not None and c not in untested]
            parts = []
            if worse:
                parts.append("every other candidate is significantly worse (exact paired test, p < 0.05)"
                             if len(worse) == len(others) else
                             f"{', '.join(name(c) for c in worse)} significantly worse (exact paired test, p < 0.05)")
            why_untested: dict[str, list[str]] = {}  # no per-example predictions, or evaluated on other examples
            for c in untested:
                why_untested.setdefault(compare(rt, record(c)).test, []).append(name(c))
            for why, names in why_untested.items():
                parts.append(f"differences with {', '.join(names)} not tested ({why})")
            if missing:
                parts.append(f"no {rt.metric} for {', '.join(missing)}: not compared")
            note = f"{name(top)} has the highest {rt.metric} ({rt.label()})" + "".join(f"; {x}" for x in parts)
        else:
            note = (f"{name(top)} has the highest {rt.metric} ({rt.label()}) and is also the "
                    f"{'smallest of the fastest' if tie_note else 'fastest' if lead_note else 'cheapest'} of the "
                    f"{len(tied)} that tie with it (paired test p >= {ALPHA:g}){speed_note}")
        return Pick(top, top, tied, note)
    rc, cmp = record(chosen), tests[id(chosen)]
    diff = abs(cmp.a_better - cmp.b_better)
    note = (f"{name(chosen)} ({rc.label()}) ties with the highest, {name(top)} ({rt.label()}): they differ on "
            f"{cmp.a_better + cmp.b_better} of {cmp.n} examples, {cmp.a_better} vs {cmp.b_better} (net {diff}), "
            f"{cmp.test} p = {cmp.p:.2f} >= {ALPHA:g}, not significant; of the {len(tied)} tied, the "
            f"cheapest (faster, then smaller) is picked{speed_note}")
    return Pick(chosen, top, tied, note)


# ------------------------------------------------------------------------------------------ files
@dataclasses.dataclass
class AccuracySet:
    """key (resolved path, file name, stem) -> record; plus the reference (teacher) record, if any."""

    records: dict[str, AccuracyRecord]
    reference: AccuracyRecord | None = None
    reference_name: str | None = None
    names: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # each model as named in a file -> keys
    #: every record as (name, file, record), in file order (one name may come from two files)
    named: list[tuple[str, str, AccuracyRecord]] = dataclasses.field(default_factory=list)

    @staticmethod
    def keys_of(model_path: str, name: str) -> tuple[str, ...]:
        """The keys a benchmarked model is looked up by, in order: resolved path, file name, stem, its name."""
        p = Path(model_path)
        return str(p.resolve()), p.name, p.stem, name

    def lookup(self, model_path: str, name: str) -> AccuracyRecord | None:
        for key in self.keys_of(model_path, name):
            if key in self.records:
                return self.records[key]
        return None

    def values(self) -> dict[str, float]:
        return {k: r.value for k, r in self.records.items()}


def _keys(name: str, base: Path) -> list[str]:
    p = Path(name)
    return [str((base / p).resolve()) if not p.is_absolute() else str(p.resolve()), p.name, p.stem]


def _num(p: Path, name: str, v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise InputFileError(f"{p}: {what} of {name!r} must be a non-negative number, got {v!r}")
    return float(v)


def _scores(p: Path, name: str, item: dict) -> tuple[np.ndarray | None, str | None]:
    """The record's per-example scores (sorted by example id) and its examples' identity, checked."""
    examples = item.get("examples")
    scores = None
    if isinstance(item.get("correct"), str):
        bits = item["correct"]
        if not bits or set(bits) - {"0", "1"}:
            raise InputFileError(f"{p}: 'correct' of {name!r} must be a non-empty string of 0 and 1")
        scores = np.frombuffer(bits.encode(), dtype=np.uint8).astype(np.float64) - ord("0")
    elif isinstance(item.get("predictions"), dict):
        pr = item["predictions"]
        try:
            ids = np.asarray(pr["ids"], dtype=np.int64)
            ok = np.asarray(pr["pred"]) == np.asarray(pr["label"])
        except (KeyError, ValueError, TypeError):
            raise InputFileError(f"{p}: 'predictions' of {name!r} needs equal-length ids, pred and label") from None
        if ok.shape != ids.shape or ids.ndim != 1 or not ids.size:
            raise InputFileError(f"{p}: 'predictions' of {name!r} needs equal-length, non-empty ids, pred and label")
        scores = ok[np.argsort(ids, kind="stable")].astype(np.float64)
        # the record's own identity of its examples (eval's names their contents), else one from the ids
        examples = examples if isinstance(examples, str) and examples else examples_key(ids)
    elif isinstance(item.get("scores"), list):
        scores = np.asarray([_num(p, name, s, "score") for s in item["scores"]], dtype=np.float64)
        if not scores.size or scores.max() > 1:
            raise InputFileError(f"{p}: 'scores' of {name!r} must be a non-empty list of per-example scores in [0, 1]")
    return scores, (str(examples) if examples else None)


def _count(p: Path, name: str, item: dict, key: str) -> int | None:
    v = item.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "n" else 0):
        raise InputFileError(f"{p}: {key!r} of {name!r} must be {'a positive' if key == 'n' else 'a non-negative'} "
                             f"integer, got {v!r}")
    return v


def _counted(p: Path, name: str, item: dict, scores: np.ndarray | None) -> tuple[int | None, float | None]:
    """(n, the share right that the record's own counts give: its per-example scores, or n_correct of n)."""
    n, k = _count(p, name, item, "n"), _count(p, name, item, "n_correct")
    if scores is not None:
        if n is not None and n != scores.size:
            raise InputFileError(f"{p}: {name!r} says n = {n} but carries {scores.size} per-example results")
        n = int(scores.size)
    if k is not None:
        if n is None or k > n:
            raise InputFileError(f"{p}: 'n_correct' of {name!r} ({k}) needs n >= it, got n = {n!r}")
        if scores is not None and k != int(round(scores.sum())):
            raise InputFileError(f"{p}: {name!r} says n_correct = {k} but its per-example results have "
                                 f"{int(round(scores.sum()))} right")
        return n, k / n
    return n, (float(scores.mean()) if scores is not None else None)


# how far a stated figure may lie from its own counts (a figure rounded to whole percent still matches)
_PERCENT_SLACK = 0.5


def _implied_unit(v: float, share: float | None) -> str | None:
    """The unit in which ``v`` equals the counted ``share``: "percent", "fraction", None (no counts, or both read
    alike: near 0), or "" (neither: the figure contradicts its own counts)."""
    if share is None:
        return None
    pct, frac = abs(v - 100 * share) <= _PERCENT_SLACK, abs(v - share) <= _PERCENT_SLACK / 100
    if pct and frac:
        return None
    return "percent" if pct else "fraction" if frac else ""


#: how far (percentage points) a file's ci95 may lie from the Wilson interval of its own counts and still be that
#: interval rounded: eval writes 3 decimals; an interval made another way (Clopper-Pearson) lies further off. The
#: same for its accuracy and the share right of those counts
_CI_ROUNDED = 0.0005 + 1e-9


def _right_of_counts(item: dict, scores: np.ndarray | None, n: int | None) -> int | None:
    """How many of n the record's own counts say are right (n_correct, or its 0/1 per-example results), or None."""
    k = item.get("n_correct")
    if not isinstance(k, int) or isinstance(k, bool):
        k = int(scores.sum()) if scores is not None and bool(np.all((scores == 0) | (scores == 1))) else None
    return k if k is not None and n is not None and 0 <= k <= n else None


def _record(p: Path, name: str, item: dict, scale: float, scores: np.ndarray | None, examples: str | None,
            n: int | None) -> AccuracyRecord:
    v = _num(p, name, item.get("accuracy", item.get("value")), "accuracy") * scale
    metric = str(item.get("metric") or "accuracy")
    k, stated = (_right_of_counts(item, scores, n) if metric == "accuracy" else None), None
    if k is not None and abs(v - 100 * k / n) <= _CI_ROUNDED:
        v, stated = 100 * k / n, v  # the file's is this share rounded (eval: 3 decimals): shown rounded once, from it
    ci = item.get("ci95")
    if ci is not None:
        if not (isinstance(ci, list) and len(ci) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in ci)):
            raise InputFileError(f"{p}: 'ci95' of {name!r} must be [low, high], two finite numbers, got {ci!r}")
        low, high = float(ci[0]) * scale, float(ci[1]) * scale
        slack = _PERCENT_SLACK
        if not (0 <= low <= high <= 100) or not (low - slack <= v <= high + slack):
            raise InputFileError(f"{p}: 'ci95' of {name!r} ({ci[0]!r}, {ci[1]!r}) must be low <= high in the file's "
                                 f"unit and hold its accuracy ({item.get('accuracy', item.get('value'))!r})")
        exact = None if k is None else tuple(100 * x for x in wilson_interval(k, n))  # of the record's own counts
        if exact is not None and abs(low - exact[0]) <= _CI_ROUNDED and abs(high - exact[1]) <= _CI_ROUNDED:
            low, high = exact  # the file's is this interval rounded (eval: 3 decimals): shown rounded once, from it
    elif scores is not None:
        r = (AccuracyRecord.from_correct(scores.astype(bool)) if metric == "accuracy"
             else AccuracyRecord.from_scores(scores, metric=metric, examples=None))
        low, high = r.low, r.high
    elif n is not None and metric == "accuracy":
        k = int(round(v / 100 * n))
        lo, hi = wilson_interval(min(max(k, 0), n), n)
        low, high = 100 * lo, 100 * hi
    else:
        low = high = None
    return AccuracyRecord(v, n, low, high, metric, examples, scores, stated)


UNITS = ("percent", "fraction")


def _unit(p: Path, data: Any, items: list[tuple[str, dict]]) -> str | None:
    """The file's stated unit (``"unit"`` at its top level or on any entry; one per file, which entries that
    state none share), or None (then taken from the records' own counts, or from values over 1)."""
    stated = {str(it["unit"]) for _, it in items if "unit" in it}
    if isinstance(data, dict) and "unit" in data:
        stated.add(str(data["unit"]))
    bad = sorted(stated - set(UNITS))
    if bad:
        raise InputFileError(f"{p}: unit {bad[0]!r} is not one of {', '.join(UNITS)}")
    if len(stated) > 1:
        raise InputFileError(f"{p}: states units {' and '.join(sorted(stated))}; give every accuracy in one unit")
    return stated.pop() if stated else None


def _file_unit(p: Path, data: Any, items: list[tuple[str, dict]], vals: list[float],
               implied: list[str | None]) -> str:
    """The unit of the file's figures: the stated one; else the one its records' own counts show (n_correct of
    n, per-example results); else percent where every figure is over 1. A figure in (0, 1] with neither is
    ambiguous (0.8 % or 80 %?) and refused, never guessed from its size."""
    unit = _unit(p, data, items)
    for (name, it), v, u in zip(items, vals, implied):
        if u == "" or (unit is not None and u is not None and u != unit):
            shown = f"{v:g}{' %' if (unit or 'percent') == 'percent' else ''}"
            raise InputFileError(f"{p}: accuracy of {name!r} ({shown}) contradicts its own counts "
                                 f"({_counts_text(it)})")
    if unit is None:
        by_counts = {u for u in implied if u}
        if len(by_counts) > 1:
            raise InputFileError(f"{p}: its records' counts show percents and fractions; give every accuracy in "
                                 "one unit (or say which: \"unit\": \"percent\" or \"fraction\")")
        if by_counts:
            unit = by_counts.pop()
    if unit is not None:
        top = 1.0 if unit == "fraction" else 100.0
        for (name, _), v in zip(items, vals):
            if v > top:
                raise InputFileError(f"{p}: accuracy of {name!r} is {v!r}, over {top:g} for unit {unit!r}")
        return unit
    fractions = [name for (name, _), v in zip(items, vals) if 0 < v <= 1]
    percents = [name for (name, _), v in zip(items, vals) if v > 1]
    if fractions and percents:
        raise InputFileError(f"{p}: mixes fractions (<= 1: {', '.join(fractions[:3])}) and percents "
                             f"(> 1: {', '.join(percents[:3])}); give every accuracy in one unit "
                             "(or say which: \"unit\": \"percent\" or \"fraction\")")
    if fractions:
        v = next(v for v in vals if 0 < v <= 1)
        raise InputFileError(f"{p}: accuracy of {fractions[0]!r} is {v:g} with no unit: {v:g} % or {100 * v:g} %? "
                             "say which (\"unit\": \"percent\" or \"fraction\")")
    for (name, _), v in zip(items, vals):
        if v > 100:
            raise InputFileError(f"{p}: accuracy of {name!r} must be a percent in [0, 100] (or a fraction with "
                                 f"\"unit\": \"fraction\"), got {v!r}")
    return "percent"


def _counts_text(item: dict) -> str:
    if isinstance(item.get("correct"), str):
        c = item["correct"]
        return f"{c.count('1')} of {len(c)} right"
    if isinstance(item.get("n_correct"), int) and isinstance(item.get("n"), int):
        return f"{item['n_correct']} of {item['n']} right"
    return "its per-example results"


def load_accuracy_records(paths: Sequence[Path]) -> AccuracySet:
    out = AccuracySet({})
    for p in paths:
        p = Path(p)
        if not p.is_file():  # missing, a folder, or a device (/dev/zero was read until memory ran out)
            raise not_a_file(p, "accuracy file")
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise InputFileError(f"{p}: not a readable accuracy JSON file ({type(e).__name__})") from None
        items: list[tuple[str, dict]] = []
        if isinstance(data, dict) and "model" in data and any(k in data for k in ("accuracy", "value")):
            items.append((str(data["model"]), data))
        elif isinstance(data, dict) and isinstance(data.get("models"), dict):
            items.extend((str(k), {"accuracy": v}) for k, v in data["models"].items())
        elif isinstance(data, list):
            for i, item in enumerate(data):
                if not isinstance(item, dict) or "model" not in item:
                    raise InputFileError(f"{p}: entry {i}: expected {{'model': ..., 'accuracy': ...}}")
                items.append((str(item["model"]), item))
        else:
            raise InputFileError(f"{p}: expected a deploytool eval record, {{'models': {{name: accuracy}}}} "
                                 "or a list of {'model', 'accuracy'}")
        if not items:  # nothing would be shown, silently
            raise InputFileError(f"{p}: holds no accuracy record")
        vals = [_num(p, name, it.get("accuracy", it.get("value")), "accuracy") for name, it in items]
        parsed = [_scores(p, name, it) for name, it in items]
        counted = [_counted(p, name, it, sc) for (name, it), (sc, _) in zip(items, parsed)]
        implied = [_implied_unit(v, share) for v, (_, share) in zip(vals, counted)]
        unit = _file_unit(p, data, items, vals, implied)  # stated, shown by the counts, or unambiguous
        scale = 100.0 if unit == "fraction" else 1.0  # fractions -> percent
        for (name, it), (sc, examples), (n, _) in zip(items, parsed, counted):
            rec = _record(p, name, it, scale, sc, examples, n)
            if it.get("role") == "reference":
                if out.reference is None:
                    out.reference, out.reference_name = rec, str(it.get("label") or name)
                continue
            keys = _keys(name, p.parent) + ([str(it["label"])] if it.get("label") else [])
            out.names.setdefault(name, keys)
            out.named.append((name, p.name, rec))
            for key in keys:
                out.records.setdefault(key, rec)
    return out
