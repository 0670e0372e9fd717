"""Wilson interval, exact McNemar / sign test and the tie rule, against references computed another way.

References: the Wilson interval as the set of p whose score test does not reject (found by bisection
on the score statistic itself, not the closed form); McNemar's p-value as a brute-force sum of exact
binomial probabilities in rational arithmetic (fractions.Fraction, math.comb).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from deploytool.accuracy import AccuracyRecord, compare, load_accuracy_records, pick
from deploytool.stats import mcnemar_exact, mean_interval, sign_test, wilson_interval

Z = 1.959963984540054


def _score_bound(k: int, n: int, upper: bool) -> float:
    """Wilson bound by inverting the score test: |k/n - p| = z sqrt(p(1-p)/n), solved by bisection."""
    ph = k / n
    lo, hi = (ph, 1.0) if upper else (0.0, ph)
    if (upper and k == n) or (not upper and k == 0):
        return ph

    def inside(p):
        return abs(ph - p) <= Z * math.sqrt(p * (1 - p) / n)

    for _ in range(200):
        mid = (lo + hi) / 2
        if inside(mid) == upper:  # upper bound: move up while still inside
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (399, 500), (397, 500), (1, 1281), (1022, 1281)])
def test_wilson_matches_score_test_inversion(k, n):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(_score_bound(k, n, upper=False), abs=1e-9)
    assert hi == pytest.approx(_score_bound(k, n, upper=True), abs=1e-9)
    assert 0 <= lo <= k / n <= hi <= 1


def test_wilson_half_width_at_the_issues_n():
    # the issue: "about +-2.3 points at n = 1,281" (near 75%)
    lo, hi = wilson_interval(961, 1281)
    assert 0.022 < (hi - lo) / 2 < 0.025


def _mcnemar_reference(b: int, c: int) -> float:
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(Fraction(math.comb(n, i), 2 ** n) for i in range(min(b, c) + 1))
    return float(min(Fraction(1), 2 * tail))


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (1, 1), (2, 0), (0, 6), (3, 5), (10, 2), (40, 62), (7, 7),
                                 (150, 120), (1, 20)])
def test_mcnemar_matches_exact_binomial_sum(b, c):
    assert mcnemar_exact(b, c) == pytest.approx(_mcnemar_reference(b, c), rel=1e-9, abs=1e-15)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_sign_test_counts_discordant_pairs_only():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 500)
    b = a.copy()
    flip = rng.choice(500, 30, replace=False)
    b[flip] = 1 - b[flip]
    p, better, worse = sign_test(a, b)
    assert better + worse == 30
    assert better == int(((a == 1) & (b == 0)).sum())
    assert p == pytest.approx(_mcnemar_reference(better, worse))


def test_mean_interval_covers_and_clips():
    m, lo, hi = mean_interval([1.0] * 50)
    assert (m, lo, hi) == (1.0, 1.0, 1.0)
    x = np.random.default_rng(1).uniform(0, 1, 400)
    m, lo, hi = mean_interval(x)
    se = x.std(ddof=1) / math.sqrt(400)
    assert lo == pytest.approx(m - Z * se) and hi == pytest.approx(m + Z * se)


def _rec(correct, ids=None):
    return AccuracyRecord.from_correct(np.asarray(correct), ids if ids is not None else np.arange(len(correct)))


def test_pick_prefers_the_cheaper_of_a_tie_and_says_so():
    # the issue's case: 79.8% vs 79.4% on the same 500 reviews, 2 reviews apart
    rng = np.random.default_rng(2)
    full = (rng.uniform(size=500) < 0.794).astype(int)
    while full.sum() != 397:
        full = (rng.uniform(size=500) < 0.794).astype(int)
    small = full.copy()
    wrong = np.flatnonzero(full == 0)[:6]
    right = np.flatnonzero(full == 1)[:4]
    small[wrong] = 1
    small[right] = 0  # 399 right: +6 -4
    cands = [("full", 10.0, _rec(full)), ("small-int8", 3.0, _rec(small))]
    pk = pick(cands, record=lambda c: c[2], cost=lambda c: (c[1],), name=lambda c: c[0])
    assert pk.top[0] == "small-int8"  # highest accuracy
    assert pk.chosen[0] == "small-int8"  # also the cheapest
    # now make the full model the slightly better one: the cheaper small one still wins the tie
    cands = [("full", 10.0, _rec(small)), ("small-int8", 3.0, _rec(full))]
    pk = pick(cands, record=lambda c: c[2], cost=lambda c: (c[1],), name=lambda c: c[0])
    assert pk.top[0] == "full" and pk.chosen[0] == "small-int8"
    assert "not significant" in pk.note and "6 vs 4" in pk.note
    p_ref = _mcnemar_reference(6, 4)
    assert f"p = {p_ref:.2f}" in pk.note


def test_pick_keeps_a_significant_winner():
    full = np.ones(500, dtype=int)
    small = full.copy()
    small[:60] = 0
    cands = [("full", 10.0, _rec(full)), ("small", 1.0, _rec(small))]
    pk = pick(cands, record=lambda c: c[2], cost=lambda c: (c[1],), name=lambda c: c[0])
    assert pk.chosen[0] == "full" and "significantly worse" in pk.note


def test_no_pairing_across_different_examples():
    a = _rec(np.ones(100), np.arange(100))
    b = _rec(np.ones(100), np.arange(100) + 1000)
    assert compare(a, b).p is None


def test_records_roundtrip_through_files(tmp_path):
    import json

    full = np.r_[np.ones(80), np.zeros(20)].astype(int)
    r = _rec(full)
    items = [{"model": "a.onnx", **r.to_dict(with_scores=True)},
             {"model": "teacher", "role": "reference", "accuracy": 81.0, "n": 100}]
    f = tmp_path / "acc.json"
    f.write_text(json.dumps(items))
    s = load_accuracy_records([f])
    got = s.lookup(str(tmp_path / "a.onnx"), "a")
    assert got.value == 80.0 and got.n == 100 and np.array_equal(got.scores, r.scores)
    assert compare(got, r).p == 1.0
    assert s.reference.value == 81.0 and s.reference.low < 81 < s.reference.high


def test_printed_labels_carry_n_and_the_interval():
    from deploytool.train.evaluate import acc_label

    # a record with n only (DynaBERT's grid): the interval comes from the count right, 12 of 24
    lab = acc_label({"accuracy": 50.0, "n": 24})
    lo, hi = _score_bound(12, 24, upper=False), _score_bound(12, 24, upper=True)
    assert lab == f"50.00% [95% CI {100 * lo:.2f}-{100 * hi:.2f}] n=24"
    assert acc_label({"accuracy": 50.0}) == "50.00%"  # no n: no interval invented
    r = _rec([1] * 7 + [0] * 3)
    assert r.label() == f"70.0% [{100 * _score_bound(7, 10, False):.1f}-{100 * _score_bound(7, 10, True):.1f}] n=10"


def _paired_speed(samples):
    """same_speed for (name, p90, size, samples) candidates: the exact sign test of paired runs, restated here
    with scipy-free binomial sums (_mcnemar_reference), not deploytool's own test."""

    def same(a, b):
        slower = sum(x > y for x, y in zip(samples[a[0]], samples[b[0]]))
        faster = sum(x < y for x, y in zip(samples[a[0]], samples[b[0]]))
        p = _mcnemar_reference(slower, faster)
        return None if p < 0.05 else f"sign test p = {p:.2f}"

    return same


def test_pick_among_equally_fast_tied_candidates_takes_the_smallest_whatever_the_noise():
    """Two variants tied in accuracy whose runs interleave with no consistent order: whichever has the lower
    p90 in a given run, the smaller file is picked (the quickstart's host pick followed timing noise)."""
    acc = _rec(np.r_[np.ones(400), np.zeros(100)].astype(int))
    rng = np.random.default_rng(5)
    picks = set()
    for trial in range(6):
        base = rng.normal(10.0, 0.5, size=20)
        # each faster in 10 of the 20 paired runs, by random amounts: the p90s differ, the order does not hold
        step = rng.uniform(0.05, 1.0, size=20) * np.where(np.arange(20) % 2 == 0, 1.0, -1.0)
        noisy, calm = ("w0.75-d0.5", "w0.5-d0.75") if trial % 2 else ("w0.5-d0.75", "w0.75-d0.5")
        samples = {noisy: base + step, calm: base}
        p90 = {k: float(np.percentile(v, 90)) for k, v in samples.items()}
        cands = [("w0.75-d0.5", p90["w0.75-d0.5"], 20.0, acc), ("w0.5-d0.75", p90["w0.5-d0.75"], 18.0, acc)]
        plain = pick(cands, record=lambda c: c[3], cost=lambda c: (c[1], c[2]), name=lambda c: c[0])
        picks.add(plain.chosen[0])
        pk = pick(cands, record=lambda c: c[3], cost=lambda c: (c[1], c[2]), name=lambda c: c[0],
                  same_speed=_paired_speed(samples), then=lambda c: (c[2], c[0]))
        assert pk.chosen[0] == "w0.5-d0.75" and "not measurably slower" in pk.note and "sign test" in pk.note
    assert picks == {"w0.75-d0.5", "w0.5-d0.75"}  # without the speed test, the p90s' noise decided


def test_pick_keeps_the_faster_when_it_is_faster_in_every_run():
    acc = _rec(np.r_[np.ones(400), np.zeros(100)].astype(int))
    rng = np.random.default_rng(6)
    base = rng.normal(10.0, 0.5, size=20)
    samples = {"big-fast": base, "small-slow": base * 1.03}  # 3% slower in each of the 20 paired runs
    cands = [("big-fast", float(np.percentile(base, 90)), 20.0, acc),
             ("small-slow", float(np.percentile(base * 1.03, 90)), 18.0, acc)]
    pk = pick(cands, record=lambda c: c[3], cost=lambda c: (c[1], c[2]), name=lambda c: c[0],
              same_speed=_paired_speed(samples), then=lambda c: (c[2], c[0]))
    assert pk.chosen[0] == "big-fast" and "not measurably slower" not in pk.note


def _binom_p(slower: int, faster: int) -> float:
    """The paired runs' two-sided sign-test p by scipy's exact binomial test (ties dropped), not deploytool's."""
    from scipy.stats import binomtest

    return float(binomtest(slower, slower + faster, 0.5, alternative="two-sided").pvalue)


@pytest.mark.parametrize("a,b", [
    ([1.0] * 19 + [9.0], [1.1] * 20),  # the report: faster in 19 of 20, one outlier
    ([1.0] * 18 + [9.0] * 2, [1.1] * 20),  # faster in 18 of 20, the higher p90
    ([1.1] * 20, [1.0] * 18 + [9.0] * 2),  # the other way round: slower in 18 of 20
    ([1.0] * 14 + [1.2] * 6, [1.1] * 20),  # 14 of 20: p = 0.115, no evidence either way
    ([1.0] * 15 + [1.2] * 5, [1.1] * 20),  # 15 of 20: p = 0.041
    ([1.0, 1.1] * 10 + [1.1] * 3, [1.1] * 20),  # a tie in half the pairs, and runs that do not pair
])
def test_speed_tests_follow_the_exact_binomial_test_of_the_paired_runs(a, b):
    """speed_tie (not measurably slower) and speed_lead (measurably faster) against scipy's binomtest: exactly one
    of them speaks, or neither where the runs are significant the other way; the direction is the runs'."""
    from deploytool.accuracy import speed_lead, speed_tie

    n = min(len(a), len(b))
    slower = sum(x > y for x, y in zip(a[:n], b[:n]))
    faster = sum(x < y for x, y in zip(a[:n], b[:n]))
    p = _binom_p(slower, faster)
    tie, lead = speed_tie("a", a, b), speed_lead("a", a, b)
    if p >= 0.05:
        assert tie == f"a slower in {slower} of {n} paired runs, sign test p = {p:.2f}" and lead is None
    elif faster > slower:
        assert tie is None and lead is not None and f"a faster in {faster} of {n} paired runs" in lead
        assert f"{p:.1g}" in lead if p < 0.01 else f"{p:.2f}" in lead
    else:
        assert tie is None and lead is None
    assert speed_lead("a", a[:5], b[:5]) is None  # 5 runs cannot reach p < 0.05


def _speed_cands(samples, sizes):
    acc = _rec(np.r_[np.ones(400), np.zeros(100)].astype(int))  # every candidate: the same examples right
    return [(k, float(np.percentile(v, 90)), sizes[k], acc) for k, v in samples.items()]


def _pick_by_runs(cands, samples):
    from deploytool.accuracy import speed_lead, speed_tie

    return pick(cands, record=lambda c: c[3], cost=lambda c: (c[1], c[2]), name=lambda c: c[0],
                same_speed=lambda x, y: speed_tie(x[0], samples[x[0]], samples[y[0]]),
                then=lambda c: (c[2], c[0]), faster=lambda x, y: speed_lead(x[0], samples[x[0]], samples[y[0]]))


def test_pick_takes_the_candidate_faster_in_the_paired_runs_whatever_its_p90():
    """The report's case: "a" is faster in 18 of 20 paired runs (binomtest p = 0.0004) but two slow runs give it
    the higher p90; it is the faster, and with accuracy tied it is picked, whichever file is smaller."""
    samples = {"a": [1.0] * 18 + [9.0] * 2, "b": [1.1] * 20}
    cands = _speed_cands(samples, {"a": 20.0, "b": 18.0})
    assert cands[0][1] > cands[1][1]  # a's p90 is the higher
    assert _binom_p(2, 18) < 0.05
    pk = _pick_by_runs(cands, samples)
    assert pk.chosen[0] == "a", pk.note
    assert "a is faster than b, whose latency figure is lower (a faster in 18 of 20 paired runs" in pk.note
    assert "not measurably slower" not in pk.note
    # the other way round (b faster in 18 of 20): b, already the lower p90, stays the pick
    samples = {"a": [1.1] * 20, "b": [1.0] * 18 + [1.05] * 2}
    pk = _pick_by_runs(_speed_cands(samples, {"a": 18.0, "b": 20.0}), samples)
    assert pk.chosen[0] == "b" and "faster than" not in pk.note
    # a third candidate as fast as the new fastest (a tie in its paired runs against "a") and smaller: it wins
    samples = {"a": [1.0] * 18 + [9.0] * 2, "b": [1.1] * 20, "c": [1.0, 0.99] * 10}
    samples["c"][-2:] = [9.5, 9.5]  # the highest p90 of the three
    pk = _pick_by_runs(_speed_cands(samples, {"a": 20.0, "b": 19.0, "c": 10.0}), samples)
    assert pk.chosen[0] == "c", pk.note
    assert "c is not measurably slower than the fastest, a" in pk.note


def test_a_stated_unit_is_not_guessed(tmp_path):
    """deploytool's own records say "unit": "percent": a broken model's 0.8 % stays 0.8 %, not 80 %; a file may
    state "fraction" instead; one unit per file, and a unit that is not one is refused by name."""
    import json

    from deploytool.errors import InputFileError

    r = AccuracyRecord.from_correct(np.r_[np.ones(8), np.zeros(992)].astype(bool))
    assert r.to_dict()["unit"] == "percent" and r.value == 0.8
    f = tmp_path / "acc.json"
    f.write_text(json.dumps([{"model": "broken.onnx", **r.to_dict()}, {"model": "other.onnx", "accuracy": 0.9}]))
    s = load_accuracy_records([f])
    assert s.lookup(str(tmp_path / "broken.onnx"), "broken").value == 0.8
    assert s.lookup(str(tmp_path / "other.onnx"), "other").value == 0.9  # the file's unit: percent
    f.write_text(json.dumps({"unit": "fraction", "models": {"a": 0.5, "b": 1.0}}))
    s = load_accuracy_records([f])
    assert (s.lookup(str(tmp_path / "a"), "a").value, s.lookup(str(tmp_path / "b"), "b").value) == (50.0, 100.0)
    for data, why in [({"unit": "fraction", "models": {"a": 77.0}}, "over 1 for unit 'fraction'"),
                      ({"unit": "%", "models": {"a": 77.0}}, "unit '%' is not one of percent, fraction"),
                      ([{"model": "a", "accuracy": 0.5, "unit": "fraction"},
                        {"model": "b", "accuracy": 50, "unit": "percent"}], "states units fraction and percent")]:
        f.write_text(json.dumps(data))
        with pytest.raises(InputFileError, match=why):
            load_accuracy_records([f])


def test_a_file_without_a_unit_is_read_by_its_counts_or_refused(tmp_path):
    """No unit stated: the record's own counts decide (1 of 100 right at "accuracy": 1.0 is 1 %, not 100 %; 8 of
    10 at 0.8 is a fraction); bare values all over 1 are percent; a bare value in (0, 1] is ambiguous (0.8 % or
    80 %?) and refused in one line, never guessed from its size."""
    import json

    from deploytool.errors import InputFileError

    f = tmp_path / "acc.json"

    def load(data):
        f.write_text(json.dumps(data))
        return load_accuracy_records([f])

    s = load({"model": "m.onnx", "accuracy": 1.0, "n_correct": 1, "n": 100, "ci95": [0.177, 5.449]})
    r = s.lookup(str(tmp_path / "m.onnx"), "m")
    assert (r.value, r.n) == (1.0, 100) and r.high < 6
    assert load([{"model": "a", "accuracy": 0.8, "n": 10, "n_correct": 8}]).lookup("a", "a").value == 80.0
    assert load([{"model": "a", "accuracy": 0.75, "correct": "1110"}]).lookup("a", "a").value == 75.0
    assert load({"models": {"a": 90, "b": 85.5}}).lookup("b", "b").value == 85.5
    assert load({"unit": "fraction", "models": {"a": 0.8}}).lookup("a", "a").value == 80.0
    with pytest.raises(InputFileError, match=r"accuracy of 'a' is 0\.8 with no unit: 0\.8 % or 80 %\?"):
        load({"models": {"a": 0.8, "b": 0.75}})


@pytest.mark.parametrize("item, why", [
    ({"accuracy": 85, "correct": "0000"}, "accuracy of 'fe' (85 %) contradicts its own counts (0 of 4 right)"),
    ({"accuracy": 85, "n_correct": 1, "n": 4}, "contradicts its own counts (1 of 4 right)"),
    ({"accuracy": 85, "unit": "percent", "correct": "1000"}, "contradicts its own counts (1 of 4 right)"),
    ({"accuracy": 85, "correct": ""}, "'correct' of 'fe' must be a non-empty string of 0 and 1"),
    ({"accuracy": 85, "scores": []}, "'scores' of 'fe' must be a non-empty list"),
    ({"accuracy": 85, "predictions": {"ids": [], "pred": [], "label": []}}, "non-empty ids, pred and label"),
    ({"accuracy": 85, "n": -3}, "'n' of 'fe' must be a positive integer, got -3"),
    ({"accuracy": 85, "n": "many"}, "'n' of 'fe' must be a positive integer, got 'many'"),
    ({"accuracy": 85, "n": 5, "correct": "1111"}, "'fe' says n = 5 but carries 4 per-example results"),
    ({"accuracy": 85, "n_correct": 9, "n": 4}, "'n_correct' of 'fe' (9) needs n >= it"),
    ({"accuracy": 85, "ci95": [99, 10]}, "'ci95' of 'fe' (99, 10) must be low <= high"),
    ({"accuracy": 85, "ci95": [float("nan"), float("inf")]}, "'ci95' of 'fe' must be [low, high], two finite"),
])
def test_an_accuracy_record_that_contradicts_itself_is_refused(tmp_path, item, why):
    """A record whose figure lies outside its own counts or interval (85 % with 0 of 4 right showed as
    "85.0% [0.0-49.0] n=4"), empty per-example results ("[nan-nan] n=0"), or an n that is no count."""
    import json
    import re

    from deploytool.errors import InputFileError

    f = tmp_path / "acc.json"
    f.write_text(json.dumps([{"model": "fe", **item}]))
    with pytest.raises(InputFileError, match=re.escape(why)):
        load_accuracy_records([f])
