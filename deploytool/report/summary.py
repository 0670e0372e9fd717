"""The report's structure: rows grouped per device and per model variant, and the per-device verdict.

A variant (one model file) FITS a device when each of its rows on that device that has a budget is
within it (p90 latency at that sequence length, peak memory, model size): a model shipped to a phone
meets short and long inputs alike. Among the variants that fit, the best has the largest accuracy,
then the lowest device latency at the longest measured length (the rule of ``deploytool fit``) --
except that a difference the paired test does not find significant (exact McNemar on the kept
per-example predictions, p >= 0.05) is a tie, and of tied variants the faster, then smaller, one is
the best (:func:`deploytool.accuracy.pick`); the verdict says so.
Without any accuracy figure the ranking uses the same PROXY as ``fit`` (kept-parameter fraction of the model's
own source, then precision) and says so. The proxy compares variants of one source only: where a fitting variant
has none (no variant record, its source not in the report) or the fitting variants come from different source
models, it ranks nothing, the pick is by precision, then latency, and the verdict says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from deploytool.accuracy import AccuracyRecord, pick
from deploytool.report.rows import ReportRow, resolution_errors
from deploytool.variant import PRECISION_RANK, PRECISIONS

__all__ = ["DeviceSummary", "ModelOnDevice", "PRECISION_ORDER", "group_variants", "summarize"]

PRECISION_ORDER = PRECISIONS
_FAILED_WORD = {"latency": "p90 latency", "memory": "peak memory", "size": "model size"}


@dataclasses.dataclass
class ModelOnDevice:
    """One model on one device: its rows by sequence length."""

    device: str
    model: str
    model_path: str
    by_seq: dict[int, ReportRow]

    @property
    def first(self) -> ReportRow:
        return self.by_seq[min(self.by_seq)]

    @property
    def longest(self) -> ReportRow:
        return self.by_seq[max(self.by_seq)]

    @property
    def budgeted(self) -> list[ReportRow]:
        return [r for r in self.by_seq.values() if r.budget_pass is not None]

    @property
    def unjudged(self) -> bool:
        """A row has a latency budget but no device latency (neither measured nor projected)."""
        return any(getattr(r, "latency_unjudged", False) for r in self.by_seq.values())

    @property
    def fits(self) -> bool | None:
        """True/False over the budgeted rows; None where no row has a budget, or where a row's latency
        budget could not be judged (no latency) and no budget failed: never a fit without a latency."""
        b = self.budgeted
        if any(r.budget_pass is False for r in b):
            return False
        if self.unjudged:
            return None
        return all(r.budget_pass for r in b) if b else None

    def failures(self) -> list[tuple[int, str]]:
        """(seq_len, budget kind) of each broken budget."""
        return [(s, k) for s, r in sorted(self.by_seq.items()) if r.budget_pass is False
                for k in (r.budget_failed or ["budget"])]

    def sort_key(self) -> tuple:
        r = self.first
        prec = PRECISION_ORDER.index(r.precision) if r.precision in PRECISION_ORDER else len(PRECISION_ORDER)
        return (prec, -(r.width or 0), -(r.depth or 0), r.model)


@dataclasses.dataclass
class DeviceSummary:
    device: str
    variants: list[ModelOnDevice]  # sorted: precision, then width, then depth (largest first)
    best: ModelOnDevice | None
    proxy: bool  # ranked by the accuracy proxy (no accuracy figures)
    verdict: str  # one line: the pick, or "none fits" and why
    seq_lens: list[int]
    accuracy_note: str = ""  # why the pick among the fitting ones (ties by the paired test)
    tied: list[str] = dataclasses.field(default_factory=list)  # variants tied with the highest accuracy
    # no accuracy and the proxy cannot rank the fitting variants: why (picked by precision, then latency)
    proxy_unranked: str = ""

    @property
    def fitting(self) -> list[ModelOnDevice]:
        return [v for v in self.variants if v.fits]


def group_variants(rows: Sequence[ReportRow]) -> dict[str, list[ModelOnDevice]]:
    """device -> its variants (one per model file and EP), in report order (precision, width, depth)."""
    out: dict[str, dict[tuple[str, str], ModelOnDevice]] = {}
    for r in rows:
        dev = out.setdefault(r.device, {})
        # the same file run by another EP (e.g. QNN rows beside the CPU ones) is another deployment
        # one variant per bench file where two benches give the model at one length (rows._split_by_bench)
        v = dev.setdefault((r.model_path, r.ep_ran, r.bench_split),
                           ModelOnDevice(r.device, r.model, r.model_path, {}))
        v.by_seq.setdefault(r.seq_len, r)
    return {d: sorted(vs.values(), key=ModelOnDevice.sort_key) for d, vs in out.items()}


def _rank(v: ModelOnDevice, proxy: bool, by_fraction: bool = True) -> tuple:
    r = v.longest
    lat = r.device_latency_ms if r.device_latency_ms is not None else float("inf")
    if proxy:
        return (-(r.param_fraction or 0) if by_fraction else 0, -PRECISION_RANK.get(r.precision, 0), lat)
    return (-(r.accuracy if r.accuracy is not None else float("-inf")), lat)


def _proxy_unranked(fitting: Sequence[ModelOnDevice]) -> str:
    """Why the kept-parameter proxy cannot rank these variants, or "" where it can: each has one, all of one
    source model (a fraction of one model's parameters says nothing against a fraction of another's)."""
    if len(fitting) < 2:
        return ""
    unknown = [v for v in fitting if v.longest.param_fraction is None]
    if unknown:
        names = ", ".join(f"{v.model}: {v.longest.proxy_basis or 'proxy unknown'}" for v in unknown[:3])
        return f"{len(unknown)} of them without one ({names}{', ...' if len(unknown) > 3 else ''})"
    sources = sorted({v.longest.proxy_source for v in fitting})
    if len(sources) > 1:
        return f"they come from {len(sources)} different source models ({'; '.join(sources)})"
    return ""


def _why_none(variants: Sequence[ModelOnDevice]) -> str:
    budgeted = [v for v in variants if v.fits is not None]
    unjudged = [v for v in variants if v.fits is None and v.unjudged]
    not_judged = (f"{len(unjudged)} of {len(variants)} variant(s) not judged: no device latency (neither measured "
                  "nor projected) for the latency budget")
    if not budgeted:
        if unjudged:
            return f"none judged: {not_judged}; no best fit"
        # a budget the rows could not be judged on (no peak memory recorded, no latency budget this long)
        why = list(dict.fromkeys(r.budget_why.split(" (")[0] for v in variants for r in v.by_seq.values()
                                 if r.budget_why.startswith("no ") and "not judged" in r.budget_why.split(" (")[0]))
        return f"none judged: {'; '.join(why)}; no best fit" if why else "no budget for the measured sequence lengths"
    kinds: dict[tuple[int, str], int] = {}
    for v in budgeted:
        # the size of a file does not depend on the sequence length: count it once
        for key in dict.fromkeys((0 if k == "size" else s, k) for s, k in v.failures()):
            kinds[key] = kinds.get(key, 0) + 1
    parts = [f"{n} of {len(budgeted)} over the {_FAILED_WORD.get(k, k)} budget" + (f" at seq {s}" if s else "")
             for (s, k), n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))]
    # the closest miss: the variant with the fewest broken budgets, then the lowest latency
    near = min(budgeted, key=lambda v: (len(v.failures()), v.longest.device_latency_ms or float("inf")))
    miss = "; ".join(f"seq {s}: {c}" for s, r in sorted(near.by_seq.items()) if r.budget_pass is False
                     for c in r.budget_why.split("; ") if " > " in c)
    return (f"none fits: {', '.join(parts[:3])} (closest: {near.model}: {miss})"
            + (f"; {not_judged}" if unjudged else ""))


def summarize(rows: Sequence[ReportRow]) -> list[DeviceSummary]:
    """One summary per device, in the order the devices first appear in ``rows``."""
    out = []
    errs = resolution_errors(rows)  # the cost model's errors on the host rows: the projections' resolution
    for dev, variants in group_variants(rows).items():
        proxy = not any(r.accuracy is not None for v in variants for r in v.by_seq.values())
        fitting = [v for v in variants if v.fits]
        note, tied, unranked = "", [], ""
        # a classifier's accuracy and an embedding model's recall@10 are different measures: neither ranks the other
        metrics = sorted({rec.metric for v in fitting if (rec := _record(v)) is not None})
        if fitting and not proxy and len(metrics) > 1:
            best = min(fitting, key=lambda v: _rank(v, True, False))
            note = (f"their figures are different measures ({', '.join(metrics)}), which do not rank one model "
                    "against another")
        elif fitting and not proxy:
            pk = pick(fitting, record=_record, cost=_cost, name=lambda v: v.model,
                      same_speed=lambda a, b: _same_speed(a, b, errs),
                      then=lambda v: (v.longest.size_mb or 0.0, v.model), faster=_faster)
            best, note, tied = pk.chosen, pk.note, [v.model for v in pk.tied]
        else:
            unranked = _proxy_unranked(fitting) if proxy else ""
            best = min(fitting, key=lambda v: _rank(v, proxy, not unranked)) if fitting else None
        seqs = sorted({s for v in variants for s in v.by_seq})
        if best is None:
            verdict = _why_none(variants)
        else:
            verdict = (f"{best.model}: {len(fitting)} of {len(variants)} variants fit; best by "
                       + (f"precision (fp32 = fp16 > int8 > ternary > binary), then latency: no accuracy given, and "
                          f"the kept-parameter PROXY does not rank them: {unranked}" if unranked else
                          f"precision (fp32 = fp16 > int8 > ternary > binary), then latency: {note}"
                          if len(metrics) > 1 else
                          "accuracy PROXY (kept parameters of its own source, then precision)" if proxy else
                          f"accuracy (ties by exact McNemar, p >= 0.05: the faster, then smaller; equally fast by a paired sign "
                          f"test of runs measured together, or projected within the cost model's resolution: the "
                          f"smaller): {note}"))
        out.append(DeviceSummary(dev, variants, best, proxy, verdict, seqs, note, tied, unranked))
    return out


def _record(v: ModelOnDevice):
    r = v.longest
    if r.accuracy is None:
        return None
    return r.accuracy_record if r.accuracy_record is not None else AccuracyRecord(r.accuracy)


def _same_speed(a: ModelOnDevice, b: ModelOnDevice, host_errors: dict[tuple[int, str], list[float]] | None = None
                ) -> str | None:
    """Why ``a`` is not measurably slower than ``b`` where both were measured on this device in one
    bench run (the exact sign test of their paired runs at the longest sequence, p >= 0.05), or where both are
    projected there within the cost model's resolution for their precisions (``host_errors``: (seq, precision)
    -> the cost model's errors on the rows measured on this host,
    :func:`~deploytool.report.rows.resolution_errors`), else None."""
    from deploytool.accuracy import speed_tie

    ra, rb = a.longest, b.longest
    if ra.device_latency_source == "projected" and rb.device_latency_source == "projected":
        if not host_errors or ra.seq_len != rb.seq_len:
            return None
        from deploytool.bench.cost_model import device_speed_tie

        seq = ra.seq_len
        return device_speed_tie(a.model, ra.device_latency_ms, rb.device_latency_ms, (ra.precision, rb.precision),
                                {p: e for (s, p), e in host_errors.items() if s == seq},
                                f"measured on this host at seq {seq}", seq_len=seq)
    if ra.samples_run is None or ra.samples_run != rb.samples_run or not ra.samples_ms or not rb.samples_ms:
        return None
    return speed_tie(a.model, ra.samples_ms, rb.samples_ms)


def _faster(a: ModelOnDevice, b: ModelOnDevice) -> str | None:
    """Why ``a`` is measurably faster than ``b`` where both were measured on this device in one bench run (faster in
    significantly many of their paired runs at the longest sequence, exact sign test p < 0.05), whatever their
    p90s; else None."""
    from deploytool.accuracy import speed_lead

    ra, rb = a.longest, b.longest
    if "projected" in (ra.device_latency_source, rb.device_latency_source):
        return None
    if ra.samples_run is None or ra.samples_run != rb.samples_run or not ra.samples_ms or not rb.samples_ms:
        return None
    return speed_lead(a.model, ra.samples_ms, rb.samples_ms)


def _cost(v: ModelOnDevice) -> tuple:
    r = v.longest
    return (r.device_latency_ms if r.device_latency_ms is not None else float("inf"), r.size_mb or 0.0)
