"""Projected device latency: a per-op roofline over the ONNX graph and a device profile's peaks.

This is a PROJECTION, never a measurement; every number it produces is labelled ``projected``.

1. Costs per op (:func:`op_costs`). The model runs once on the host (ONNX Runtime, optimizations
   off, every intermediate value exposed as an output) on the benchmark's synthetic inputs
   (batch 1, ``seq_len`` tokens), which gives the real shape and dtype of every tensor. Nodes
   computed only from constants (e.g. the unpacking subgraph of a packed ternary weight) are folded
   by ONNX Runtime at session creation and cost nothing at run time; their results count as the
   weights the consumer reads (so a ternary weight stored in 2 bits and cast to int8 is read as int8).
   Per op:

   - FLOPs: MatMul/Gemm ``2*M*K*N`` (batched), in the precision of its inputs (fp32/fp16); int8 ops
     (DynamicQuantizeMatMul, MatMulInteger, QLinearMatMul, ...) ``2*M*K*N`` int8 ops; MatMulNBits
     ``2*M*K*N`` int8 ops at accuracy_level 4, else fp32; LayerNormalization 8, Softmax 5, Erf/Gelu 8,
     other element-wise ops 1 per output element; data movement (Transpose, Gather, Concat, ...) 0.
   - Bytes: every input (activations and weights, at the dtype ONNX Runtime holds them) plus every
     output, read or written once.
   - Shape-only ops (all outputs integer tensors of < 16 elements) are free (ORT folds or fuses most).

2. Time per op on a device (:func:`project_latency`)::

       t_op = max(FLOPs / (peak[precision] * compute_efficiency),
                  bytes / (bandwidth * memory_efficiency)) + op_overhead

   ``peak`` and ``bandwidth`` come from the profile (``compute.peak_gops``, which holds for the
   profile's ``threads`` cores; other thread counts scale it linearly); a precision the profile
   does not list runs at its fp32 peak. fp16 on a core without fp16 arithmetic (no ``fp16`` feature)
   is computed in fp32 behind inserted casts: its ops move fp32 operands (twice the bytes) and pay
   the overhead twice (the op and its casts). The defaults (``compute_efficiency`` 0.5, ``memory_efficiency`` 0.7,
   ``op_overhead_us`` 2) are round numbers, not fitted per device.

3. Its own error. Where the device is the host, the projection is compared with the measured
   latency (:func:`model_error`): the report prints projected beside measured for the ``x86-host``
   profile, and ``calibration`` factors (measured / projected on the host, per precision) can be
   applied to other devices as an explicit, labelled assumption (``calibrated=True``): that a
   device reaches the same fraction of its roofline as the host does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploytool import scratch
from deploytool.errors import ConfigError
from deploytool.profiles.schema import Precision, Profile

logger = logging.getLogger(__name__)

__all__ = ["CostModel", "ErrorBand", "HostRates", "OpCost", "Projection", "model_error", "op_costs",
           "project_latency"]

_MATMUL = {"MatMul", "Gemm", "FusedMatMul"}
_INT8_MATMUL = {"DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QLinearMatMul", "QGemm"}
_FREE = {"Shape", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Constant", "ConstantOfShape", "Size",
         "Dropout"}
_MOVE = {"Transpose", "Gather", "Concat", "Slice", "Split", "Expand", "Where", "Cast", "Tile", "Pad"}
_FLOPS_PER_ELEMENT = {"LayerNormalization": 8, "SkipLayerNormalization": 9, "SimplifiedLayerNormalization": 6,
                      "RMSNormalization": 6,
                      "Softmax": 5, "Erf": 8, "Gelu": 8, "FastGelu": 8, "BiasGelu": 9, "Tanh": 4, "Sqrt": 1,
                      "Pow": 1, "ReduceMean": 1, "DynamicQuantizeLinear": 3, "QuantizeLinear": 2,
                      "DequantizeLinear": 2}


@dataclasses.dataclass(frozen=True)
class OpCost:
    name: str
    op_type: str
    precision: str  # fp32 | fp16 | int8 (of its arithmetic)
    flops: float
    bytes: float
    free: bool = False  # shape-only: no run-time cost
    kind: str = ""  # gemm (activation x weight) | attention (activation x activation) | "" (element-wise, moves)
    footprint: float = 0.0  # gemm: bytes of all the model's GEMM weights, streamed every run (0: unknown)
    weights: float = 0.0  # gemm: elements of its own weight, K x N (0: unknown; its rows M are flops / 2 / weights)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CostModel:
    """The roofline's knobs (see the module doc)."""

    compute_efficiency: float = 0.5
    memory_efficiency: float = 0.7
    op_overhead_us: float = 2.0

    def __post_init__(self) -> None:
        for f in ("compute_efficiency", "memory_efficiency"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ConfigError(f"{f}: must be a number in (0, 1], got {v!r}")
        v = self.op_overhead_us
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1e4:
            raise ConfigError(f"op_overhead_us: must be a number in [0, 10000] microseconds, got {v!r}")


@dataclasses.dataclass
class Projection:
    """A PROJECTED latency of one model on one device profile (never a measurement)."""

    device: str
    seq_len: int
    threads: int
    latency_ms: float
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    flops: dict[str, float]  # precision -> FLOPs (or int8 ops)
    bytes: float
    ops: int  # ops that cost time
    memory_bound_ops: int
    calibration: float | None = None  # measured/projected factor applied (host-calibrated), if any
    label: str = "projected"
    assumptions: str = ""
    method: str = "roofline"  # roofline | host-rates (op-class times measured on this host)
    band_low_ms: float | None = None  # where the measured latency is expected, from the model's measured error
    band_high_ms: float | None = None
    band_source: str = ""

    def with_band(self, band: ErrorBand | None) -> Projection:
        """A copy carrying ``band`` applied to its latency (None: no band)."""
        if band is None:
            return dataclasses.replace(self, band_low_ms=None, band_high_ms=None, band_source="")
        lo, hi = band.apply(self.latency_ms)
        return dataclasses.replace(self, band_low_ms=lo, band_high_ms=hi, band_source=band.source)

    def text(self) -> str:
        """``~15.0 ms (10.2-22.1)``, or ``~15.0 ms`` without a band."""
        if self.band_low_ms is None or self.band_high_ms is None:
            return f"~{self.latency_ms:.3g} ms"
        return f"~{self.latency_ms:.3g} ms ({self.band_low_ms:.3g}-{self.band_high_ms:.3g})"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("latency_ms", "compute_ms", "memory_ms", "overhead_ms", "band_low_ms", "band_high_ms"):
            if d[k] is not None:
                d[k] = round(d[k], 4)
        return d


@dataclasses.dataclass(frozen=True)
class ErrorBand:
    """The cost model's error where it could be measured: ``(projected - measured) / measured`` lay in
    ``[low, high]``. Applied to a projection p, the measured latency is expected in
    ``[p / (1 + high), p / (1 + low)]``."""

    low: float
    high: float
    source: str

    def __post_init__(self) -> None:
        for f in ("low", "high"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1 < v < 100:
                raise ConfigError(f"error band {f}: must be a relative error in (-1, 100), got {v!r}")
        if self.low > self.high:
            raise ConfigError(f"error band: low {self.low} > high {self.high}")

    @classmethod
    def from_errors(cls, errors: Sequence[float], source: str) -> ErrorBand:
        """The band spanning ``errors`` (and 0: a projection is never outside its own band)."""
        errs = [e for e in errors if math.isfinite(e)]
        if not errs:
            raise ConfigError("error band: no finite errors to derive it from")
        # an error past the band's limits (projected 100x the measured, or 1% of it) is as wide as a band gets: it
        # widens the band to its limit instead of refusing the report that measured it
        return cls(low=max(min(0.0, min(errs)), -0.99), high=min(max(0.0, max(errs)), 99.0), source=source)

    def widened(self, factor: float, why: str) -> ErrorBand:
        """The band ``factor`` times as wide in log space (an explicit, stated assumption)."""
        lo = math.expm1(math.log1p(self.low) * factor)
        hi = math.expm1(math.log1p(self.high) * factor)
        return ErrorBand(low=max(lo, -0.99), high=min(hi, 99.0), source=f"{self.source}; {why}")

    def apply(self, ms: float) -> tuple[float, float]:
        return ms / (1 + self.high), ms / (1 + self.low)

    def to_dict(self) -> dict[str, Any]:
        return {"low": round(self.low, 4), "high": round(self.high, 4), "source": self.source}


#: another device is projected with this host's efficiencies (an assumption): its band and its resolution are this
#: many times as wide in log scale as measured on the host
OTHER_DEVICE_WIDENING = 2.0


def resolution_error(projected_ms: float, samples_ms: Sequence[float] | None, p50_ms: float) -> float:
    """A host row's error for the projections' :class:`Resolution`: ``projected_ms`` over the 10th percentile of its
    runs ``samples_ms`` where they were kept (the statistic the host microbenchmark's figures are: a run slowed by
    another process moves a row's p50 and would read as the model's error), else over its p50; minus 1."""
    low = float(np.percentile(np.asarray(samples_ms, dtype=float), 10)) if samples_ms else float(p50_ms)
    return projected_ms / low - 1


@dataclasses.dataclass(frozen=True)
class Resolution:
    """How far apart two projections must be for the cost model to rank them: its errors on rows measured on
    the host, ``(projected - measured) / measured``, spread over ``ratio`` = max(1 + e) / min(1 + e). An error
    that every row shares cancels when two projections are compared; the spread does not. Two projections
    within ``ratio`` of each other (the larger at most ``ratio`` times the smaller) cannot be told apart: which
    is faster follows the model's error, not the models (the quickstart's Kirin 990 and Pi 4 picks moved
    between two variants projected within 1% of each other, which the host measured 25% apart;
    :func:`deploytool.accuracy.projection_tie` applies it)."""

    ratio: float
    source: str

    def __post_init__(self) -> None:
        v = self.ratio
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1.0 <= v < 100:
            raise ConfigError(f"projection resolution: must be a ratio in [1, 100), got {v!r}")

    @classmethod
    def from_errors(cls, errors: Sequence[float], source: str) -> Resolution | None:
        """The spread of ``errors`` (relative errors); None without at least two finite ones (one row says
        nothing about how errors differ between models)."""
        ones = [1.0 + e for e in errors if math.isfinite(e) and e > -1]
        if len(ones) < 2:
            return None
        # a spread of 100x or more is capped as :meth:`widened` caps it (it was a ConfigError from a report whose one
        # row ran 140x slower than projected: a loaded machine, an op the microbenchmark does not time)
        return cls(ratio=min(max(ones) / min(ones), 99.0), source=source)

    @classmethod
    def of_precisions(cls, errors: Mapping[str, Sequence[float]], precisions: Sequence[str], where: str,
                      widen: float | None = None) -> Resolution | None:
        """The spread of the errors of the rows of ``precisions`` (precision -> errors, ``where`` they were
        measured): projections of one precision share much of their error (its kernels' efficiency), so two int8
        variants are compared within the int8 rows' spread, an fp32 and an int8 one within both sets' (their
        offset included). ``widen``: :meth:`widened` by that factor, for another device."""
        ps = sorted(set(precisions))
        errs = [e for p in ps for e in errors.get(p, ())]
        r = cls.from_errors(errs, f"the spread of its errors on {len(errs)} {'/'.join(ps)} rows {where}")
        return r.widened(widen, "doubled for another device") if r is not None and widen else r

    @classmethod
    def table(cls, errors: Mapping[str, Sequence[float]], where: str, widen: float | None = None) -> dict[str, float]:
        """precision -> the resolution ratio of two variants of that precision, and ``"all"`` (any two, where
        ``errors`` has several precisions), rounded for a report; precisions without a spread are left out."""
        keys = [(p, (p,)) for p in sorted(errors)] + ([("all", tuple(errors))] if len(errors) > 1 else [])
        out = {}
        for key, precs in keys:
            r = cls.of_precisions(errors, precs, where, widen=widen)
            if r is not None:
                out[key] = round(r.ratio, 4)
        return out

    def widened(self, factor: float, why: str) -> Resolution:
        """``factor`` times as wide in log space (another device: the same stated assumption as
        :meth:`ErrorBand.widened`)."""
        return Resolution(ratio=min(math.exp(math.log(self.ratio) * factor), 99.0), source=f"{self.source}, {why}")


def device_speed_tie(name: str, a_ms: float | None, b_ms: float | None, precisions: Sequence[str],
                     errors: Mapping[str, Sequence[float]], where: str, *, seq_len: int | None = None) -> str | None:
    """Why ``name`` (projected ``a_ms`` on another device) cannot be ranked against the other (``b_ms``): the two
    are within the resolution of ``precisions``' host ``errors`` (measured ``where``), widened for another
    device (:data:`OTHER_DEVICE_WIDENING`); else None, and None where those errors have no spread."""
    from deploytool.accuracy import projection_tie

    res = Resolution.of_precisions(errors, precisions, where, widen=OTHER_DEVICE_WIDENING)
    return None if res is None else projection_tie(name, a_ms, b_ms, res.ratio, res.source, seq_len=seq_len)


# element-wise classes of the host microbenchmark and the ops timed like each
_EW_CLASS = {"LayerNormalization": "LayerNormalization", "SkipLayerNormalization": "LayerNormalization",
             "SimplifiedLayerNormalization": "LayerNormalization", "SkipSimplifiedLayerNormalization": "LayerNormalization",
             "RMSNormalization": "LayerNormalization",
             "Softmax": "Softmax", "Erf": "Erf", "Gelu": "Erf", "BiasGelu": "Erf", "FastGelu": "Erf", "Tanh": "Erf",
             "EmbedLayerNormalization": "LayerNormalization", "QEmbedLayerNormalization": "LayerNormalization"}
# ORT's fused attention: the QKV projection (a GEMM against a [H, 3H] weight) and the attention itself
_FUSED_ATTENTION = {"Attention": "fp32", "QAttention": "int8"}
# ops that gather rows of a table (embeddings): they read the rows they gather, not the whole table
_GATHERING = {"Gather", "EmbedLayerNormalization", "QEmbedLayerNormalization"}


def _loglog(points: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear interpolation of y(x) in log-log; beyond the ends y scales with x (constant rate)."""
    if x <= 0:
        return 0.0
    if x <= points[0][0]:
        return points[0][1] * x / points[0][0]
    if x >= points[-1][0]:
        return points[-1][1] * x / points[-1][0]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            if x1 == x0:
                return y0
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
    return points[-1][1] * x / points[-1][0]


def _by_weights(points: Sequence[tuple[float, float]], w: float) -> float:
    """A GEMM's time at one M for a weight of ``w`` elements, from the measured ``(K*N, ms)`` at that M:
    linear between them; below the smallest, from the per-call cost (the line through the two smallest,
    at zero weights; held in [0, the smallest's time]) to the smallest; beyond the largest, along the last
    segment's slope. One measured size: proportional to ``w``."""
    pts = sorted(points)
    if w <= 0:
        return 0.0
    if len(pts) == 1 or pts[1][0] <= pts[0][0]:
        return pts[0][1] * w / pts[0][0]
    (w0, t0), (w1, t1) = pts[0], pts[1]
    if w <= w0:
        slope = (t1 - t0) / (w1 - w0)
        call = min(max(t0 - slope * w0, 0.0), t0)
        return call + (t0 - call) * w / w0
    for (wa, ta), (wb, tb) in zip(pts, pts[1:]):
        if wa <= w <= wb:
            return ta + (tb - ta) * (w - wa) / (wb - wa) if wb > wa else ta
    (wa, ta), (wb, tb) = pts[-2], pts[-1]
    slope = (tb - ta) / (wb - wa) if wb > wa else 0.0
    return tb + slope * (w - wb) if slope > 0 else tb * w / wb


def _by_rows(points: Sequence[tuple[float, float]], m: float) -> float:
    """A GEMM's time at ``m`` rows from its times at the measured M: log-log between them; below the
    smallest, along the first segment's log-log slope (held in [0, 1]: a small-M GEMM streams its weight
    whatever M is, so its time does not fall in proportion); beyond the largest, in proportion to M."""
    pts = sorted(points)
    if m <= 0 or not pts:
        return 0.0
    if m < pts[0][0] and len(pts) > 1 and pts[0][1] > 0 and pts[1][1] > 0 and pts[1][0] > pts[0][0]:
        s = math.log(pts[1][1] / pts[0][1]) / math.log(pts[1][0] / pts[0][0])
        return pts[0][1] * (m / pts[0][0]) ** min(max(s, 0.0), 1.0)
    return _loglog(pts, m)


def _gemm_grid(rows: Sequence[Mapping[str, Any]], run_overhead_ms: float):
    """The measured GEMM rows of one precision as ``((level footprint, ((M, ((K*N, net ms), ...)), ...)), ...)``:
    the chains of one footprint level (their footprints within 1.5x of each other: the 384 x 384 and the
    384 x 1536 chains of "4 MiB" hold 3.9 and 4.5 MiB) together, the level at their geometric mean footprint;
    equal (M, K*N) merged (median). Empty when the rows lack M, K or N."""
    if not rows or not all(all(k in x for k in ("m", "k", "n")) for x in rows):
        return ()
    levels: list[list[Mapping[str, Any]]] = []
    for x in sorted(rows, key=lambda x: float(x.get("footprint", 0.0))):
        fp = float(x.get("footprint", 0.0))
        if levels and fp <= 1.5 * float(levels[-1][0].get("footprint", 0.0)):
            levels[-1].append(x)
        else:
            levels.append([x])
    out = []
    for xs in levels:
        fps = [float(x.get("footprint", 0.0)) for x in xs]
        level = math.exp(sum(math.log(f) for f in fps) / len(fps)) if min(fps) > 0 else 0.0
        by_m: dict[float, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for x in xs:
            ms = float(x["ms"]) if x.get("net") else max(float(x["ms"]) - run_overhead_ms, 0.05 * float(x["ms"]))
            by_m[float(x["m"])][float(x["k"]) * float(x["n"])].append(ms)
        out.append((level, tuple((m, tuple((w, float(np.median(v))) for w, v in sorted(ws.items())))
                                 for m, ws in sorted(by_m.items()))))
    return tuple(out)


def _curve(pairs: Sequence[tuple[float, float] | tuple[float, float, bool]],
           run_overhead_ms: float) -> tuple[tuple[float, float], ...]:
    """Sorted (x, net ms) with equal x merged (median); net = measured single-op run minus the run
    overhead (points marked net, timed in chains, are already)."""
    by_x: dict[float, list[float]] = defaultdict(list)
    for x, ms, *net in pairs:
        by_x[float(x)].append(ms if (net and net[0]) else max(ms - run_overhead_ms, 0.05 * ms))
    return tuple((x, float(np.median(v))) for x, v in sorted(by_x.items()))


@dataclasses.dataclass(frozen=True)
class HostRates:
    """Op-class time curves fitted on a host from its ONNX Runtime microbenchmark at ``threads``.

    GEMM time per precision as a function of its rows M, its weight's size K x N and the model's weight
    footprint (chains of 4/16/64 MiB of weights: cache-resident to streamed; :meth:`gemm_ms`), attention time
    of FLOPs, element-wise time per class
    (Add-like, Erf/GELU-like, Softmax, LayerNorm) as functions of bytes moved, each interpolated in
    log-log between the measured points; plus the per-op overhead inside a graph and the per-run
    overhead of ``InferenceSession.run``. Nothing here is fitted to the models it projects.

    Against the host's nominal peaks (``peak_gops``, ``bandwidth_gbs``) the same curves are
    efficiencies: on another device an op is assumed to reach the same fraction of that device's
    peak (:meth:`scale_to`), an assumption the projection states and its band widens for.
    """

    host: str
    threads: int
    gemm: Mapping[str, tuple[tuple[float, tuple[tuple[float, float], ...]], ...]]  # prec -> ((footprint, curve), ...)
    attention: tuple[tuple[float, float], ...]
    elementwise: Mapping[str, tuple[tuple[float, float], ...]]
    op_overhead_ms: float
    run_overhead_ms: float
    peak_gops: Mapping[str, float]  # the host's nominal peaks at ``threads``
    bandwidth_gbs: float
    source: str = ""
    # prec -> ((level footprint, ((M, ((K*N, net ms), ...)), ...)), ...): every measured shape of one footprint
    # level together (:meth:`gemm_ms`); empty for a measurement without the shapes (before version 5)
    gemm_grid: Mapping[str, tuple[tuple[float, tuple[tuple[float, tuple[tuple[float, float], ...]], ...]], ...]] = \
        dataclasses.field(default_factory=dict)

    @classmethod
    def from_profile(cls, profile: Profile, threads: int | None = None) -> HostRates | None:
        """The rates of a measured host profile at ``threads`` (the nearest measured count at or below)."""
        rates = profile.measured_rates
        if not rates:
            return None
        t = profile.threads if threads is None else threads
        have = sorted(int(k) for k in rates)
        below = [k for k in have if k <= t]
        key = below[-1] if below else have[0]
        r = rates[str(key)]
        run_ms = float(r.get("run_overhead_us", 0.0)) / 1e3
        gemm = {}
        for p, rows in r["gemm"].items():
            if not rows:
                continue
            by_fp: dict[float, list[Mapping[str, Any]]] = defaultdict(list)
            for x in rows:  # one curve per weight footprint of the chains (older measurements: one)
                by_fp[float(x.get("footprint", 0.0))].append(x)
            gemm[p] = tuple((fp, _curve([(x["flops"], x["ms"], bool(x.get("net"))) for x in xs], run_ms))
                            for fp, xs in sorted(by_fp.items()))
        grid = {p: g for p, rows in r["gemm"].items() if (g := _gemm_grid(rows, run_ms))}
        att = _curve([(x["flops"], x["ms"], bool(x.get("net"))) for x in r["attention"]], run_ms)
        ew = {op: _curve([(x["bytes"], x["ms"], bool(x.get("net"))) for x in rows], run_ms)
              for op, rows in r["elementwise"].items()}
        m = (profile.host or {}).get("measurement") or {}
        scale = key / profile.threads
        peaks = {p.value: v * scale for p, v in profile.compute.peak_gops.items()}
        return cls(host=profile.name, threads=key, gemm=gemm, attention=att, elementwise=ew,
                    op_overhead_ms=float(r["op_overhead_us"]) / 1e3, run_overhead_ms=run_ms, peak_gops=peaks,
                    bandwidth_gbs=float(r["bandwidth_gbs"]), gemm_grid=grid,
                    source=f"{profile.name} microbenchmark {m.get('created_utc', '?')}, {key} thread(s)")

    def op_ms(self, c: OpCost) -> tuple[float, str]:
        """(net ms on the host, class) of one op."""
        if c.flops > 0 and (c.kind in ("gemm", "attention") or c.op_type in _MATMUL | _INT8_MATMUL):
            if c.kind == "attention" and self.attention:
                return _loglog(self.attention, c.flops), "attention"
            prec = c.precision if c.precision in self.gemm else "fp32"
            return self.gemm_ms(prec, c.flops, c.footprint, c.weights), f"gemm-{prec}"
        cls_ = _EW_CLASS.get(c.op_type, "Add")
        curve = self.elementwise.get(cls_) or self.elementwise["Add"]
        return _loglog(curve, c.bytes), cls_

    def gemm_ms(self, precision: str, flops: float, footprint: float, weights: float = 0.0) -> float:
        """A GEMM's time at each measured footprint level, then log-linear in the model's weight footprint
        between the levels (held at the ends: no extrapolation).

        At one level, with the GEMM's weight size ``weights`` (K x N) known and the measurement holding
        its shapes (``gemm_grid``): at each measured M, the time of a weight of K x N elements from the
        shapes measured at that M (:func:`_by_weights`: a per-call cost plus a per-weight cost, linear between
        the measured sizes), then log-log in M between the measured M (:func:`_by_rows`). A GEMM with a
        smaller weight than any measured one (a sliced model's) keeps its per-call cost, and a GEMM is
        timed on chains of its own weight size: FLOPs alone do not tell them apart (a 384 x 1536 GEMM at
        M = 8 and a 384 x 384 one at M = 32 do the same FLOPs; in fp32 on a Xeon the first took twice as
        long, streaming 4x the weight).
        Otherwise (older measurements, unknown weights): by FLOPs on each level's curve."""
        grid = self.gemm_grid.get(precision) if weights > 0 else None
        if grid:
            rows = flops / (2.0 * weights)
            times = [(fp, _by_rows([(m, _by_weights(pts, weights)) for m, pts in by_m], rows))
                     for fp, by_m in grid]
        else:
            times = [(fp, _loglog(curve, flops)) for fp, curve in self.gemm[precision]]
        if len(times) == 1 or footprint <= times[0][0]:
            return times[0][1]
        if footprint >= times[-1][0]:
            return times[-1][1]
        for (f0, t0), (f1, t1) in zip(times, times[1:]):
            if f0 <= footprint <= f1:
                if t0 <= 0 or t1 <= 0:
                    return t0
                u = (math.log(footprint) - math.log(f0)) / (math.log(f1) - math.log(f0))
                return math.exp(math.log(t0) + u * (math.log(t1) - math.log(t0)))
        return times[-1][1]

    def host_peak(self, precision: str) -> float:
        return self.peak_gops.get(precision, self.peak_gops["fp32"])


def _precision_of(dtypes: Sequence[np.dtype]) -> str:
    kinds = {np.dtype(d) for d in dtypes if d is not None}
    if np.dtype(np.float16) in kinds:
        return "fp16"
    if kinds & {np.dtype(np.int8), np.dtype(np.uint8)}:
        return "int8"
    return "fp32"


def _constant_nodes(graph) -> set[int]:
    """Indices of nodes whose inputs are all initializers/constants (ORT folds them at creation)."""
    const = {t.name for t in graph.initializer}
    out: set[int] = set()
    for i, n in enumerate(graph.node):
        if n.op_type in ("Shape", "Size"):  # depends on the input's shape, not folded with dynamic dims
            continue
        if all((not x) or x in const for x in n.input):
            out.add(i)
            const.update(o for o in n.output if o)
    return out


def op_costs(model_path: str | os.PathLike, seq_len: int, *, batch: int = 1, seed: int = 0,
             optimized: bool = False) -> list[OpCost]:
    """FLOPs and bytes of every op of ``model_path`` at ``batch`` x ``seq_len`` (see the module doc).

    ``optimized``: count the graph ONNX Runtime really runs (its fusions applied first: BiasGelu,
    FusedMatMul, SkipLayerNormalization, ...), which is what the host-calibrated model times.
    """
    from onnx import helper, numpy_helper

    from deploytool.runtime.inputs import make_feeds, plan_inputs
    from deploytool.onnx_io import load_proto
    from deploytool.runtime.session import build_session, optimize_model
    from deploytool.runtime.spec import SessionSpec

    model = None
    if optimized:
        from deploytool.runtime.session import CAST_PREFIX

        with scratch.temporary_directory("deploytool-opt-") as tmp:
            opt = optimize_model(model_path, Path(tmp) / "optimized.onnx")
            model = load_proto(opt)
        if any(n.name.startswith(CAST_PREFIX) for n in model.graph.node):
            # this host computes some fp16 ops in fp32 behind inserted casts; a device with fp16
            # arithmetic would not: count the graph as written (the fp16 rates already include casts)
            logger.info("%s: host-specific fp16 casts in the optimized graph; costing the unoptimized one", model_path)
            model = None
    if model is None:
        model = load_proto(model_path)
    graph = model.graph
    folded = _constant_nodes(graph)
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer
             if t.data_type not in (25, 26)}  # (U)INT2: no numpy type; sizes come from the consumer below
    low_bit = {t.name: t for t in graph.initializer if t.data_type in (25, 26)}
    exposed = [o for i, n in enumerate(graph.node) if i not in folded for o in n.output if o]
    have = {o.name for o in graph.output}
    for o in exposed:
        if o not in have:
            graph.output.append(helper.make_empty_tensor_value_info(o))
    # the results of folded nodes are constants of the run: expose them too (their shapes/dtypes)
    for i in folded:
        for o in graph.node[i].output:
            if o and o not in have:
                graph.output.append(helper.make_empty_tensor_value_info(o))
    consts = set(inits) | set(low_bit) | {o for i in folded for o in graph.node[i].output if o}
    feeds = make_feeds(plan_inputs(model_path), batch, seq_len, seed)
    values: dict[str, np.ndarray] = dict(feeds)
    with scratch.temporary_directory("deploytool-cost-") as tmp:
        exposed_path = Path(tmp) / "exposed.onnx"
        exposed_path.write_bytes(model.SerializeToString())
        sess, _ = build_session(exposed_path, SessionSpec(graph_optimization="disable"))
        declared = {i.name for i in sess.get_inputs()}
        names = [o.name for o in sess.get_outputs()]
        run_feeds = {k: v for k, v in feeds.items() if k in declared}
        values.update(zip(names, sess.run(None, run_feeds)))
        del sess
    values.update({k: v for k, v in inits.items() if k not in values})

    def nbytes(name: str) -> float:
        if name in values:
            return float(np.asarray(values[name]).nbytes)
        if name in low_bit:
            return float(np.prod(low_bit[name].dims)) / 4.0
        return 0.0

    def shape(name: str) -> tuple[int, ...]:
        return tuple(np.shape(values[name])) if name in values else ()

    costs: list[OpCost] = []
    weights: dict[str, float] = {}

    def inside_attention(name: str, op: str, scores: float, moved: float) -> None:
        """What a fused attention op computes besides its MatMuls: the softmax over its ``scores`` (B x heads x
        S x S_kv, fp32, read and written) and, ``moved`` bytes > 0, the moves of Q, K, V into heads and of the
        output back (a graph without the fusion has them as Softmax and Transpose nodes of their own)."""
        if scores > 0:
            costs.append(OpCost(f"{name}:softmax", "Softmax", "fp32", _FLOPS_PER_ELEMENT["Softmax"] * scores,
                                8.0 * scores))
        if moved > 0:
            costs.append(OpCost(f"{name}:heads", "Transpose", "fp32", 0.0, moved))

    for i, n in enumerate(graph.node):
        if i in folded:
            continue
        outs = [o for o in n.output if o]
        ins = [x for x in n.input if x]
        in_dtypes = [np.asarray(values[x]).dtype for x in ins if x in values]
        b = sum(nbytes(x) for x in ins) + sum(nbytes(o) for o in outs)
        if n.op_type == "Gather" and len(ins) >= 2:  # reads the gathered rows, not the whole table
            b = nbytes(ins[1]) + 2 * sum(nbytes(o) for o in outs)
        elif n.op_type in _GATHERING:  # fused embeddings: each table read for as many rows as are written
            out_b = sum(nbytes(o) for o in outs[:1])
            b = sum(min(nbytes(x), out_b) if x in consts else nbytes(x) for x in ins) + sum(nbytes(o) for o in outs)
        out_elems = sum(float(np.prod(shape(o))) for o in outs)
        free = n.op_type in _FREE or all(
            o in values and np.asarray(values[o]).dtype.kind in "iub" and np.asarray(values[o]).size < 16 for o in outs)
        flops = weights_kn = 0.0
        kind = ""
        precision = _precision_of(in_dtypes[:1] or [np.float32])
        if n.op_type in _MATMUL | _INT8_MATMUL and len(ins) >= 2:
            a, w = shape(ins[0]), shape(ins[1])
            if n.op_type == "Gemm":
                trans_b = any(x.name == "transB" and x.i for x in n.attribute)
                k, nn = (w[1], w[0]) if trans_b else (w[0], w[1]) if len(w) == 2 else (0, 0)
                m = a[0] if a else 0
            else:
                attrs = {x.name: x.i for x in n.attribute}
                k = (a[-2] if attrs.get("transA") else a[-1]) if a else 0
                nn = (w[-2] if attrs.get("transB") and len(w) >= 2 else w[-1]) if w else 0
                m = float(np.prod(a[:-1])) if a else 0
                if len(w) > 2:  # batched (attention): batch dims come from the output
                    out = shape(outs[0])
                    m = float(np.prod(out[:-1])) if out else m
            flops = 2.0 * m * k * nn
            precision = "int8" if n.op_type in _INT8_MATMUL else _precision_of(in_dtypes)
            kind = "gemm" if ins[1] in consts else "attention"
            weights_kn = float(k) * float(nn) if kind == "gemm" else 0.0
        elif n.op_type == "MatMulNBits":
            attrs = {x.name: x.i for x in n.attribute}
            a = shape(ins[0])
            flops = 2.0 * float(np.prod(a[:-1])) * attrs.get("K", 0) * attrs.get("N", 0)
            weights_kn = float(attrs.get("K", 0)) * float(attrs.get("N", 0))
            precision = "int8" if attrs.get("accuracy_level", 0) == 4 else "fp32"
            kind = "gemm"
        elif n.op_type == "Attention" and n.domain in ("", "ai.onnx") and len(ins) >= 3:
            # ONNX's own Attention (opset 23): the attention alone, Q K^T and P V over Q [B, S, A] (3-D) or
            # [B, heads, S, head_size] (4-D) against keys of K's length
            q, key = shape(ins[0]), shape(ins[1])
            kv = float(key[-2]) if len(key) >= 2 else 0.0
            flops = 4.0 * float(np.prod(q)) * kv if len(q) in (3, 4) else 0.0
            precision, kind = "fp32", "attention"
            attrs = {x.name: x.i for x in n.attribute}
            heads = float(q[1]) if len(q) == 4 else float(attrs.get("q_num_heads", 0))
            s_q = float(q[-2]) if len(q) in (3, 4) else 0.0
            batch = float(q[0]) if q else 0.0
            # 3-D inputs: the op splits Q, K, V into heads and merges its output back itself
            moved = 8.0 * (2.0 * float(np.prod(q)) + 2.0 * float(np.prod(key))) if len(q) == 3 else 0.0
            inside_attention(n.name or f"{n.op_type}_{i}", n.op_type, batch * heads * s_q * kv, moved)
        elif n.op_type in _FUSED_ATTENTION and len(ins) >= 2 and len(shape(ins[1])) == 2:
            # the QKV projection [B*S, H] x [H, 3H] (a GEMM in the op's precision) ...
            a, w = shape(ins[0]), shape(ins[1])
            m = float(np.prod(a[:-1])) if a else 0.0
            flops = 2.0 * m * w[0] * w[1]
            weights_kn = float(w[0]) * float(w[1])
            precision, kind = _FUSED_ATTENTION[n.op_type], "gemm"
            # ... and the attention over it: Q K^T and P V, 2 * 2 * B * S * S * H (fp32), timed as attention
            s_len = float(a[-2]) if len(a) >= 2 else 0.0
            att = 4.0 * float(np.prod(a[:-2]) if len(a) > 2 else 1) * s_len * s_len * (w[1] / 3)
            w_b = nbytes(ins[1])
            costs.append(OpCost((n.name or f"{n.op_type}_{i}") + ":attention", n.op_type, "fp32", att,
                                b - w_b, False, "attention"))
            # ... and its softmax over [B, heads, S, S] and the head split of QKV [B, S, 3A] and merge of [B, S, A]
            heads = float(next((x.i for x in n.attribute if x.name == "num_heads"), 0))
            bsz = float(np.prod(a[:-2])) if len(a) > 2 else 1.0
            inside_attention(n.name or f"{n.op_type}_{i}", n.op_type, bsz * heads * s_len * s_len,
                             2.0 * 4.0 * bsz * s_len * (w[1] + w[1] / 3))
            b = w_b + nbytes(ins[0]) + sum(nbytes(o) for o in outs)
        elif n.op_type == "MultiHeadAttention" and ins and len(shape(ins[0])) == 3:
            # the attention alone (its projections are GEMMs of their own): Q K^T and P V over query [B, S, A]
            a = shape(ins[0])
            kv = float(shape(ins[1])[1]) if len(ins) > 1 and len(shape(ins[1])) == 3 else float(a[1])
            flops = 4.0 * float(a[0]) * float(a[1]) * kv * float(a[2])
            precision, kind = "fp32", "attention"
            heads = float(next((x.i for x in n.attribute if x.name == "num_heads"), 0))
            inside_attention(n.name or f"{n.op_type}_{i}", n.op_type, float(a[0]) * heads * float(a[1]) * kv,
                             2.0 * 4.0 * float(a[0]) * (2.0 * float(a[1]) + 2.0 * kv) * float(a[2]))
        elif n.op_type in _MOVE or free:
            flops = 0.0
        else:
            flops = _FLOPS_PER_ELEMENT.get(n.op_type, 1) * out_elems
        costs.append(OpCost(n.name or f"{n.op_type}_{i}", n.op_type, precision, flops, b, free, kind,
                            weights=weights_kn))
        if kind == "gemm":
            weights.update((x, nbytes(x)) for x in ins[1:] if x in consts and nbytes(x) > 4096)
    # every GEMM streams the model's whole set of weights each run: the footprint that decides whether
    # they stay in cache between runs
    footprint = float(sum(weights.values()))
    return [dataclasses.replace(c, footprint=footprint) if c.kind == "gemm" else c for c in costs]


def project_latency(costs: Sequence[OpCost], profile: Profile, *, seq_len: int, threads: int | None = None,
                    model: CostModel | None = None, calibration: Mapping[str, float] | None = None,
                    band: ErrorBand | None = None, use_host_rates: bool = True,
                    host_rates: HostRates | None = None) -> Projection:
    """The projected latency (ms) of ``costs`` on ``profile`` (see the module doc).

    A measured host profile (``deploytool profiles show host``) is projected from its own op-class
    times (:class:`HostRates`, ``method="host-rates"``); another profile, given ``host_rates``, from
    the host's op-class efficiencies applied to its own peaks (``method="host-efficiencies"``);
    otherwise (or ``use_host_rates=False``) by the roofline with ``model``'s round efficiencies.
    ``threads`` (default the profile's) scales the profile's peak linearly; ``calibration``
    (precision -> measured/projected on the host) multiplies the result, labelled ``host-calibrated``;
    ``band`` (the model's measured error) gives the projection its range.
    """
    cm = model or CostModel()
    t = profile.threads if threads is None else threads
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ConfigError(f"threads: must be a positive integer, got {t!r}")
    if use_host_rates:
        own = HostRates.from_profile(profile, t)
        if own is not None:  # the host itself: its own measured times
            return _project_rates(costs, profile, own, seq_len=seq_len, threads=t).with_band(band)
        if host_rates is not None:  # another device: the host's efficiencies on this device's peaks
            proj = _project_rates(costs, profile, host_rates, seq_len=seq_len, threads=t)
            return _calibrated(proj, calibration).with_band(band)
    scale = min(t, profile.total_cores) / profile.threads
    bw = profile.compute.memory_bandwidth_gbs * 1e9 * cm.memory_efficiency
    compute_s = memory_s = overhead_s = total_s = 0.0
    flops: dict[str, float] = defaultdict(float)
    moved_total = 0.0
    ops = mem_bound = 0
    emulated_fp16 = not profile.fp16_arithmetic
    for c in costs:
        if c.free:
            continue
        peak = profile.compute.peak(Precision(c.precision)) * 1e9 * scale * cm.compute_efficiency
        tc = c.flops / peak if peak > 0 else 0.0
        moved = c.bytes
        overhead = cm.op_overhead_us * 1e-6
        if emulated_fp16 and c.precision == "fp16" and c.flops > 0:
            # no fp16 arithmetic: ORT inserts casts around the op and computes it in fp32, so it moves
            # fp32 operands and pays for the cast ops too
            moved *= 2
            overhead *= 2
        tm = moved / bw
        compute_s += tc
        memory_s += tm
        overhead_s += overhead
        total_s += max(tc, tm) + overhead
        flops[c.precision] += c.flops
        moved_total += moved
        ops += 1
        mem_bound += tm > tc
    factor = None
    if calibration:
        dominant = max(flops, key=flops.get) if flops else "fp32"
        factor = calibration.get(dominant)
        if factor is not None and math.isfinite(factor) and factor > 0:
            total_s *= factor
        else:
            factor = None
    return Projection(
        device=profile.name, seq_len=seq_len, threads=t, latency_ms=total_s * 1e3, compute_ms=compute_s * 1e3,
        band_low_ms=None, band_high_ms=None,
        memory_ms=memory_s * 1e3, overhead_ms=overhead_s * 1e3, flops=dict(flops), bytes=moved_total, ops=ops,
        memory_bound_ops=mem_bound, calibration=factor,
        label="projected (host-calibrated)" if factor else "projected",
        assumptions=(f"roofline: peak {dict((p.value, v) for p, v in profile.compute.peak_gops.items())} G(FL)OP/s "
                     f"for {profile.threads} threads, {profile.compute.memory_bandwidth_gbs:g} GB/s; efficiency "
                     f"compute {cm.compute_efficiency:g}, memory {cm.memory_efficiency:g}; {cm.op_overhead_us:g} us/op"),
    ).with_band(band)


def _calibrated(proj: Projection, calibration: Mapping[str, float] | None) -> Projection:
    """``proj`` times the host's measured/projected factor of its dominant precision (by FLOPs), labelled
    host-calibrated; unchanged without a usable factor. (``report --calibrate`` was ignored on every projection
    made from the host's efficiencies, while its notes said the projections were calibrated.)"""
    if not calibration:
        return proj
    dominant = max(proj.flops, key=proj.flops.get) if proj.flops else "fp32"
    factor = calibration.get(dominant)
    if factor is None or not math.isfinite(factor) or factor <= 0:
        return proj
    return dataclasses.replace(proj, latency_ms=proj.latency_ms * factor, calibration=factor,
                               label=proj.label[:-1] + ", host-calibrated)")


def _project_rates(costs: Sequence[OpCost], profile: Profile, rates: HostRates, *, seq_len: int,
                   threads: int) -> Projection:
    """Sum of the host's measured op-class times (+ per-op and per-run overhead), scaled by the ratio of
    the host's nominal peak (bandwidth) to ``profile``'s where ``profile`` is another device."""
    same = profile.from_host and profile.name == rates.host
    scale = min(threads, profile.total_cores) / profile.threads
    emulated_fp16 = not profile.fp16_arithmetic
    compute_ms = memory_ms = 0.0
    flops: dict[str, float] = defaultdict(float)
    moved = 0.0
    ops = mem_ops = 0
    free_ops = 0
    for c in costs:
        if c.free:  # shape arithmetic still runs in ORT: it pays the per-op overhead
            free_ops += 1
            continue
        ms, cls_ = rates.op_ms(c)
        compute = cls_.startswith("gemm") or cls_ == "attention"
        if not same:
            if compute:
                prec = "fp32" if cls_ == "attention" else cls_[5:]
                if prec == "fp16" and emulated_fp16:
                    prec = "fp32"
                dev = profile.compute.peak(Precision(prec)) * scale
                ms *= rates.host_peak(prec) / dev
            else:
                ms *= rates.bandwidth_gbs / profile.compute.memory_bandwidth_gbs
        if compute:
            compute_ms += ms
        else:
            memory_ms += ms
            mem_ops += 1
        flops[c.precision] += c.flops
        moved += c.bytes
        ops += 1
    overhead_ms = rates.run_overhead_ms + free_ops * rates.op_overhead_ms
    if same:
        label, method = "projected (host rates)", "host-rates"
        assumptions = (f"op-class times measured on this host by ONNX Runtime ({rates.source}): GEMM per precision "
                       "by its rows and weight size, attention by FLOPs, element-wise by bytes, each timed in chains "
                       "(executor overhead "
                       f"included), interpolated log-log; {rates.op_overhead_ms * 1e3:.2g} us per shape-only op, "
                       f"{rates.run_overhead_ms * 1e3:.3g} us per run")
    else:
        label, method = "projected (host efficiencies)", "host-efficiencies"
        assumptions = (f"ASSUMPTION: {profile.name} reaches the same fraction of its peaks "
                       f"({dict((p.value, v) for p, v in profile.compute.peak_gops.items())} G(FL)OP/s for "
                       f"{profile.threads} threads, {profile.compute.memory_bandwidth_gbs:g} GB/s) per op class and "
                       f"size as ONNX Runtime reached of {rates.host}'s nominal peaks ({rates.source}); per-op and "
                       "per-run overhead as on the host")
    return Projection(
        device=profile.name, seq_len=seq_len, threads=threads,
        latency_ms=compute_ms + memory_ms + overhead_ms, compute_ms=compute_ms, memory_ms=memory_ms,
        overhead_ms=overhead_ms, flops=dict(flops), bytes=moved, ops=ops, memory_bound_ops=mem_ops,
        label=label, method=method, assumptions=assumptions)


def model_error(projected_ms: float, measured_ms: float) -> float:
    """Relative error of a projection against a measurement: (projected - measured) / measured."""
    if measured_ms <= 0:
        raise ConfigError(f"measured latency must be positive, got {measured_ms!r}")
    return (projected_ms - measured_ms) / measured_ms
