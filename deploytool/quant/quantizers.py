"""Ternary (TWN, as in TernaryBERT) and binary (BWN, as in BinaryBERT) weight quantizers.

Weights are in the PyTorch layout ``[rows, cols]`` = ``[out_features, in_features]`` (embeddings:
``[vocab, hidden]``); "row" granularity means one scale per row (per output feature, per token).

Ternary (Li & Liu 2016, TWN; Zhang et al. 2020, TernaryBERT)::

    delta = 0.7 * mean(|W|)                       # over the whole matrix ("layer") or one row ("row")
    t     = sign(W) where |W| > delta, else 0     # t in {-1, 0, 1}
    alpha = mean(|W| over the entries with |W| > delta)   (0 where no entry exceeds delta)
    W_t   = alpha * t

Binary (Rastegari et al. 2016, BWN; Bai et al. 2021, BinaryBERT)::

    s     = sign(W) with sign(0) = +1             # s in {-1, 1}
    alpha = mean(|W|)                             # per matrix or per row
    W_b   = alpha * s

int8 rows (embeddings ``--embeddings int8``): symmetric, ``scale = max|row| / 127``,
``q = round(W / scale)`` clipped to [-127, 127].

Two binary planes (Bai et al. 2021, BinaryBERT's ternary weight splitting, TWS): a weight stored as
``W = alpha1 * s1 + alpha2 * s2`` with ``s1, s2`` in {-1, 1}. :func:`split_ternary` splits the latent
weights of a ternary model into two latent matrices whose binarizations sum to its ternarization
(the TWS operator); :func:`binarize_planes` recovers ``(s1, s2, alpha1, alpha2)`` from a matrix, exactly
when it already has the two-plane form (what a TWS-trained model holds), else by greedy residual
binarization (``s1 = sign(W)``, ``s2 = sign(W - alpha1 s1)``).

All functions return the integer codes (int8) and float32 scales; ``alpha`` has shape ``()`` for
"layer" and ``[rows]`` for "row". :func:`dequantize` gives ``alpha * codes`` (broadcast per row).
"""

from __future__ import annotations

import contextlib
import enum

import numpy as np

from deploytool.choices import parse_enum
from deploytool.errors import ConfigError, InputFileError


class NonFiniteWeightError(InputFileError):
    """A weight to quantize holds NaN or inf: no scale computed from it means anything (TWN's threshold of a
    NaN mean keeps no entry: the weight would silently become zeros)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(f"{'weight ' + repr(name) if name else 'a weight'} holds NaN or inf: its ternary/binary/"
                         "int8 codes would mean nothing (the input computes no numbers); nothing written")
        self.name = name


@contextlib.contextmanager
def naming_weight(name: str | None):
    """A NaN or inf found quantizing inside the block is reported with the weight's ``name``."""
    try:
        yield
    except NonFiniteWeightError as e:
        if e.name is not None or name is None:
            raise
        raise NonFiniteWeightError(name) from None


def _require_finite(*aggregates) -> None:
    """NonFiniteWeightError unless each aggregate of a weight's magnitudes (a sum, mean or max of ``|W|``: NaN
    or inf exactly when an entry is) is finite; checking them costs nothing beside computing them."""
    for a in aggregates:
        if not np.all(np.isfinite(a)):
            raise NonFiniteWeightError()


class Granularity(str, enum.Enum):
    """How many scales a weight matrix gets: one ("layer") or one per row ("row")."""

    LAYER = "layer"
    ROW = "row"


def _granularity(g: Granularity | str) -> Granularity:
    return parse_enum(Granularity, g, "granularity")


def _as_matrix(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ConfigError(f"weight: expected a 2-D matrix, got shape {list(w.shape)}")
    return w


# TWN/BWN in compiled loops (the numpy code's numbers bit for bit, in fewer passes); None where the package was
# installed without a C compiler, and then the numpy code below runs
from deploytool.quant._compiled import kernels as _kernels  # noqa: E402

# elements of a weight handled at once by the ternarizer: each step's temporaries stay in a core's L2 cache
# instead of whole-matrix copies (a 94 MB word-embedding table needed ~140 MB of them); BERT-base's 74 linear
# weights take ~0.15 s as before (2^17 and 2^18 were slower: 0.15, 0.18 s)
_BLOCK = 1 << 16


def _threshold(delta: np.ndarray | float) -> np.ndarray:
    """The largest float32 at most ``delta`` (float64): for any float32 ``x``, ``x > t`` exactly when
    ``x > delta``, so the codes are TWN's with its threshold in float64, not moved by rounding it."""
    d64 = np.asarray(delta, dtype=np.float64)
    d = d64.astype(np.float32)
    return np.where(d.astype(np.float64) > d64, np.nextafter(d, np.float32(-np.inf)), d).astype(np.float32)


def _ternary_block(x: np.ndarray, delta, codes: np.ndarray, fbuf: np.ndarray) -> tuple[int, float]:
    """Codes of the 1-D block ``x`` (``|x| > delta`` -> sign, else 0) into ``codes``; returns how many are
    kept and the sum of their ``|x|``, which is ``x * codes`` summed: by numpy's own pairwise sum in float64,
    not a BLAS dot, whose order of summation differs between x86 and aarch64 builds (the packed bytes must
    not depend on the machine), and not in float32, which loses the exact sum of an already ternary weight's
    equal magnitudes (its scale must come back bit for bit: packing a QAT model is lossless)."""
    k = x.size
    m1 = np.greater(x, delta)
    m2 = np.less(x, -delta)  # |x| > delta <=> x > delta or x < -delta (NaN and signed zeros: neither)
    np.subtract(m1.view(np.int8), m2.view(np.int8), out=codes)
    a = fbuf[:k]
    np.copyto(a, codes, casting="unsafe")
    np.multiply(a, x, out=a)  # |x| where kept, else 0
    return int(np.count_nonzero(codes)), float(a.sum(dtype=np.float64))


def _storage_order(w: np.ndarray) -> tuple[np.ndarray, str]:
    """``w``'s values as a 1-D array in the order they lie in memory (a C- or F-ordered matrix is read where it
    lies; anything else is copied into C order first) and that order."""
    if w.flags.c_contiguous:
        return w.reshape(-1), "C"
    if w.flags.f_contiguous:  # e.g. the W.T view of an [in, out] weight
        return w.T.reshape(-1), "F"
    return np.ascontiguousarray(w).reshape(-1), "C"


def _in_shape(codes: np.ndarray, shape: tuple[int, ...], order: str) -> np.ndarray:
    return codes.reshape(shape) if order == "C" else codes.reshape(shape[::-1]).T


def _ternarize_layer(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One scale for the whole matrix, in the compiled kernels where they were built (the numpy code's very
    numbers: :mod:`deploytool.quant._kernels`), else :func:`_ternarize_layer_numpy`."""
    if _kernels is None:
        return _ternarize_layer_numpy(w)
    flat, order = _storage_order(w)
    n = flat.size
    total_abs = _kernels.layer_abs_sum(flat)
    _require_finite(total_abs)
    delta = _threshold(0.7 * total_abs / n if n else 0.0)
    codes = np.empty(n, np.int8)
    count, total = _kernels.layer_codes(flat, float(delta), codes)
    alpha = np.float32(total / count if count else 0.0)
    return _in_shape(codes, w.shape, order), np.asarray(alpha, dtype=np.float32)


def _ternarize_layer_numpy(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One scale for the whole matrix, computed block by block over its memory in storage order (a C- or
    F-ordered matrix is read where it lies; the codes come back in the same order)."""
    flat, order = _storage_order(w)
    shape = w.shape
    n = flat.size
    fbuf = np.empty(max(1, min(_BLOCK, n)), np.float32)
    total_abs = 0.0
    for i in range(0, n, _BLOCK):
        blk = flat[i:i + _BLOCK]
        a = fbuf[:blk.size]
        np.abs(blk, out=a)
        total_abs += float(a.sum(dtype=np.float64))
    _require_finite(total_abs)
    delta = _threshold(0.7 * total_abs / n if n else 0.0)
    codes = np.empty(n, np.int8)
    count, total = 0, 0.0
    for i in range(0, n, _BLOCK):
        c, t = _ternary_block(flat[i:i + _BLOCK], delta, codes[i:i + _BLOCK], fbuf)
        count += c
        total += t
    alpha = np.float32(total / count if count else 0.0)
    return _in_shape(codes, shape, order), np.asarray(alpha, dtype=np.float32)


def _ternarize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One scale per row, in the compiled kernels where they were built (the numpy code's very numbers), else
    :func:`_ternarize_rows_numpy`."""
    if _kernels is None or w.shape[1] == 0:
        return _ternarize_rows_numpy(w)
    rows, k = w.shape
    x = np.ascontiguousarray(w)
    codes = np.empty((rows, k), np.int8)
    alpha = np.empty(rows, np.float32)
    if not _kernels.ternarize_rows(x.reshape(-1), k, codes.reshape(-1), alpha):
        raise NonFiniteWeightError()
    return codes, alpha


def _ternarize_rows_numpy(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One scale per row, a few rows at a time (a row's sums are those of the whole-matrix rule)."""
    rows, k = w.shape
    step = max(1, _BLOCK // max(k, 1))
    codes = np.empty((rows, k), np.int8)
    alpha = np.empty(rows, np.float32)
    for r in range(0, rows, step):
        part = np.ascontiguousarray(w[r:r + step])
        a = np.abs(part)
        mean = a.mean(axis=1, keepdims=True, dtype=np.float64)
        _require_finite(mean)
        mask = a > _threshold(0.7 * mean)
        count = np.count_nonzero(mask, axis=1)
        np.multiply(a, mask, out=a)  # |W| where kept, else 0: the entries the scale averages
        total = a.sum(axis=1, dtype=np.float64)
        t = mask.view(np.int8)
        np.subtract(t, 2 * (t & np.signbit(part).view(np.int8)), out=codes[r:r + step])
        alpha[r:r + step] = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return codes, alpha


def ternarize(w: np.ndarray, granularity: Granularity | str = "layer") -> tuple[np.ndarray, np.ndarray]:
    """TWN ternary quantization: returns ``(t in {-1,0,1} as int8, alpha float32)``."""
    g = _granularity(granularity)
    w = _as_matrix(w)
    return _ternarize_layer(w) if g is Granularity.LAYER else _ternarize_rows(w)


def _signs(w: np.ndarray) -> np.ndarray:
    """int8 ``1 where w >= 0 else -1`` (NaN and -0.0: -1 and 1, as ``np.where(w >= 0, 1, -1)``), made in
    int8 directly: no int64 array eight times the codes' size on the way (BERT-base: ~0.5 s less)."""
    w = np.asarray(w)
    # in ``w``'s own memory order (an F-ordered W.T view gets F-ordered signs, as numpy's own ufunc output
    # would be): a C-ordered array filled from it is a transposing walk (BERT-large binary: 3.3 -> 6 s)
    s = np.empty_like(w, dtype=np.int8, subok=False)
    _signs_into(w, s)
    return s


def binarize(w: np.ndarray, granularity: Granularity | str = "layer") -> tuple[np.ndarray, np.ndarray]:
    """BWN binary quantization: returns ``(s in {-1,1} as int8, alpha float32)``."""
    g = _granularity(granularity)
    w = _as_matrix(w)
    # (rows of an F-ordered matrix stay with numpy, whose signs keep that order: a C-ordered copy would be a
    # transposing walk)
    if _kernels is not None and w.size and (w.flags.c_contiguous or (w.flags.f_contiguous and g is Granularity.LAYER)):
        return _binarize_kernels(w, g)
    return _binarize_numpy(w, g)


def _binarize_kernels(w: np.ndarray, g: Granularity) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_binarize_numpy`'s numbers in the compiled loops: signs and sums in one pass, a buffer at a time
    (a contiguous matrix in its storage order, as numpy's whole-array mean reads it; rows of a C-ordered one)."""
    if g is Granularity.LAYER:
        flat, order = _storage_order(w)
        s = np.empty(flat.size, np.int8)
        alpha = np.asarray(_kernels.binarize_layer(flat, s) / flat.size, dtype=np.float32)
        s = _in_shape(s, w.shape, order)
    else:
        s = np.empty(w.shape, np.int8)
        alpha = np.empty(w.shape[0], np.float32)
        _kernels.binarize_rows(w.reshape(-1), w.shape[1], s.reshape(-1), alpha)
    _require_finite(alpha)
    return s, alpha


def _binarize_numpy(w: np.ndarray, g: Granularity) -> tuple[np.ndarray, np.ndarray]:
    s = _signs(w)
    if g is Granularity.LAYER:
        alpha = np.asarray(np.abs(w).mean(dtype=np.float64), dtype=np.float32)
    else:
        alpha = np.abs(w).mean(axis=1, dtype=np.float64).astype(np.float32)
    _require_finite(alpha)
    return s, alpha


def quantize_int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: returns ``(q int8 in [-127,127], scale float32 [rows])``."""
    w = _as_matrix(w)
    scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    _require_finite(scale)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale


def dequantize(codes: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * codes`` as float32 (alpha a scalar or one value per row)."""
    alpha = np.asarray(alpha, dtype=np.float32)
    # one pass: the codes are cast to float32 inside the multiply (the same products as casting them first)
    return np.multiply(codes, alpha if alpha.ndim == 0 else alpha[:, None], dtype=np.float32)


def _units(w: np.ndarray, g: Granularity) -> np.ndarray:
    """The quantization units as rows of a 2-D array: the whole matrix ("layer") or each row ("row")."""
    return w.reshape(1, -1) if g is Granularity.LAYER else w


def split_ternary(w: np.ndarray, granularity: Granularity | str = "layer") -> tuple[np.ndarray, np.ndarray]:
    """BinaryBERT's ternary weight splitting: latent ``w`` -> latent ``(w1, w2)``, ``w1 + w2 = w``.

    With ``t, alpha = ternarize(w)`` (computed in float64 here), per unit (matrix or row) of ``n``
    entries of which ``x`` are ternarized to 0::

        c  = (alpha * n - sum|w|) / (2 x)
        where t != 0:  w1 = m w,                       w2 = (1 - m) w
        where t == 0:  w1 = w + c if w > 0 else c,     w2 = w - c if w < 0 else -c
        m  = (sum|a11| + sum|a22| - sum|a12|) / (2 sum|a11|)

    (``a11`` = ``w`` where ``t != 0``; ``a12``/``a22`` = the ``t == 0`` parts of ``w1``/``w2``), so that
    ``binarize(w1) + binarize(w2) == ternarize(w)``: both planes get ``alpha / 2`` and agree in sign
    where ``t != 0``, disagree where ``t == 0``.
    """
    g = _granularity(granularity)
    w = _as_matrix(w)
    u = _units(w, g).astype(np.float64)
    a = np.abs(u)
    n = u.shape[1]
    delta = 0.7 * a.mean(axis=1, keepdims=True)
    nz = a > delta
    cnt = nz.sum(axis=1, keepdims=True)
    alpha = np.where(cnt > 0, (a * nz).sum(axis=1, keepdims=True) / np.maximum(cnt, 1), 0.0)
    x = (~nz).sum(axis=1, keepdims=True)
    c = np.where(x > 0, (alpha * n - a.sum(axis=1, keepdims=True)) / (2.0 * np.maximum(x, 1)), 0.0)
    z1 = np.where(u > 0, u + c, c)
    z2 = np.where(u < 0, u - c, -c)
    s11 = np.where(nz, a, 0.0).sum(axis=1, keepdims=True)
    s12 = np.where(nz, 0.0, np.abs(z1)).sum(axis=1, keepdims=True)
    s22 = np.where(nz, 0.0, np.abs(z2)).sum(axis=1, keepdims=True)
    m = np.where(s11 > 0, (s11 + s22 - s12) / (2.0 * np.where(s11 > 0, s11, 1.0)), 0.5)
    w1 = np.where(nz, m * u, z1)
    w2 = np.where(nz, (1.0 - m) * u, z2)
    return w1.reshape(w.shape).astype(np.float32), w2.reshape(w.shape).astype(np.float32)


def binarize_planes(w: np.ndarray, granularity: Granularity | str = "layer"
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """``W ~ alpha1 * s1 + alpha2 * s2``: returns ``(s1, s2, alpha1, alpha2, exact)``.

    A unit (matrix or row) whose entries take at most two absolute values ``hi >= lo`` already has the
    two-plane form: ``alpha1 = (hi + lo) / 2``, ``alpha2 = (hi - lo) / 2``, ``s1 = sign(W)``,
    ``s2 = s1`` where ``|W| = hi`` and ``-s1`` where ``|W| = lo``: exact. Any other unit is binarized
    greedily (``s1 = sign(W)``, ``alpha1 = mean|W|``, then the residual the same way). ``exact`` is
    true when every unit was exact. Signs of 0 are +1, as in :func:`binarize`.
    """
    g = _granularity(granularity)
    w = _as_matrix(w)
    if g is Granularity.LAYER and w.flags.f_contiguous and not w.flags.c_contiguous:
        # e.g. the W.T view of an [in, out] weight: one unit, read where it lies (as binarize's mean reads
        # it) instead of copied into C order first; the codes come back in the same order
        s1, s2, a1, a2, exact = binarize_planes(w.T, g)
        return s1.T, s2.T, a1, a2, exact
    u = _units(w, g)
    if _surely_greedy(u):  # no unit can have the two-plane form: the greedy planes, block by block
        s1, s2, a1, a2 = _greedy_planes(np.ascontiguousarray(u))
        _require_finite(a1)
        if g is Granularity.LAYER:
            a1, a2 = np.asarray(a1[0], np.float32), np.asarray(a2[0], np.float32)
        return s1.reshape(w.shape), s2.reshape(w.shape), a1, a2, False
    a = np.abs(u)
    hi = a.max(axis=1, keepdims=True) if u.size else np.zeros((u.shape[0], 1), np.float32)
    lo = a.min(axis=1, keepdims=True) if u.size else hi
    eq_hi = a == hi
    two = (eq_hi | (a == lo)).all(axis=1)
    s1 = _signs(u)
    s2 = np.empty_like(s1)
    a1 = np.empty((u.shape[0], 1), np.float64)
    a2 = np.empty((u.shape[0], 1), np.float64)
    # each unit is computed only the way it is resolved (the arrays of the other way are never made), in
    # int8 and float32 rather than int64/float64 temporaries of the matrix's size; the same numbers
    for rows, exact in ((two, True), (~two, False)):
        if not rows.any():
            continue
        sel = slice(None) if rows.all() else rows
        if exact:  # two magnitudes hi >= lo: alpha1 = (hi + lo) / 2, alpha2 = (hi - lo) / 2, s2 = s1 where |W| = hi
            a1[sel] = (hi[sel].astype(np.float64) + lo[sel]) / 2.0
            a2[sel] = (hi[sel].astype(np.float64) - lo[sel]) / 2.0
            flip = eq_hi[sel].view(np.int8) * np.int8(2)  # 2 where |W| = hi, else 0
            np.subtract(flip, 1, out=flip)
            s2[sel] = np.multiply(s1[sel], flip, out=flip)
        else:  # greedy: alpha1 = mean|W|, then the residual W - alpha1 s1 binarized the same way
            mean = a[sel].mean(axis=1, keepdims=True, dtype=np.float64)
            a1[sel] = mean
            # (alpha1 * s1) in float32 is +-float32(alpha1) exactly: the residual is one float32 subtraction
            r = s1[sel].astype(np.float32)  # +-1 (a plain cast: int8 times float32 in one call is a slow mixed loop)
            np.multiply(r, mean.astype(np.float32), out=r)
            np.subtract(u[sel], r, out=r)
            s2[sel] = _signs(r)
            np.abs(r, out=r)
            a2[sel] = r.mean(axis=1, keepdims=True, dtype=np.float64)
    _require_finite(a1)
    a1 = a1.astype(np.float32).reshape(-1)
    a2 = a2.astype(np.float32).reshape(-1)
    if g is Granularity.LAYER:
        a1, a2 = np.asarray(a1[0], np.float32), np.asarray(a2[0], np.float32)
    return s1.reshape(w.shape), s2.reshape(w.shape), a1, a2, bool(two.all())


# numpy sums float32 into float64 (``sum(dtype=np.float64)``, ``mean``) in buffers of this many values, each
# summed pairwise and added to the running total in turn; :func:`_add64` reproduces that association exactly
_NUMPY_BUFSIZE = 8192


def _add64(total: float, x: np.ndarray) -> float:
    """``total`` plus the float64 sum of the 1-D float32 block ``x`` that starts a multiple of
    :data:`_NUMPY_BUFSIZE` values into its array, added as ``array.sum(dtype=np.float64)`` adds it: the
    same float64 number, block by block, as that one call over the whole array (a QAT model's equal
    magnitudes are summed exactly either way)."""
    m = x.size - x.size % _NUMPY_BUFSIZE
    if m:
        for part in x[:m].reshape(-1, _NUMPY_BUFSIZE).sum(axis=1, dtype=np.float64).tolist():
            total += part
    if m < x.size:
        total += float(x[m:].sum(dtype=np.float64))
    return total


def _signs_into(x: np.ndarray, out: np.ndarray) -> None:
    """:func:`_signs` of ``x`` written into the int8 array ``out`` (no temporary): 1 / 0 as bools, then 2b - 1."""
    np.greater_equal(x, 0, out=out.view(np.bool_))
    np.multiply(out, 2, out=out)
    np.subtract(out, 1, out=out)


def _surely_greedy(u: np.ndarray, prefix: int = 16) -> bool:
    """True when no unit (row of ``u``) can have the two-plane form: among the first ``prefix`` entries of
    each there is a magnitude equal to neither of their largest and smallest (or a NaN), so the unit has
    more than two magnitudes. False decides nothing (:func:`binarize_planes` then checks every entry)."""
    if u.size == 0 or u.shape[1] < 3:
        return False
    p = np.abs(u[:, :prefix])
    hi = p.max(axis=1, keepdims=True)
    lo = p.min(axis=1, keepdims=True)
    return bool(((p != hi) & (p != lo)).any(axis=1).all())


def _greedy_planes(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_greedy_planes_numpy`'s numbers, in the compiled loops where they were built."""
    if _kernels is None or u.shape[1] == 0:
        return _greedy_planes_numpy(u)
    rows, n = u.shape
    s1 = np.empty((rows, n), np.int8)
    s2 = np.empty((rows, n), np.int8)
    a1 = np.empty(rows, np.float32)
    a2 = np.empty(rows, np.float32)
    _kernels.greedy_planes(u.reshape(-1), n, s1.reshape(-1), s2.reshape(-1), a1, a2)
    return s1, s2, a1, a2


def _greedy_planes_numpy(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`binarize_planes`'s greedy rule on every unit (row) of the C-contiguous float32 ``u``:
    ``s1 = sign(W)``, ``alpha1 = mean|W|`` (float64), the residual ``W - float32(alpha1) s1`` binarized the
    same way. The same numbers as computing each step over the whole matrix (sums of float64 in numpy's own
    order, :func:`_add64`), a block of :data:`_BLOCK` values at a time: each step's temporaries stay in a
    core's cache instead of matrix-sized int8/float32 copies (BERT-base's 74 weights and word table: ~2x
    faster). Returns ``(s1, s2, alpha1, alpha2)``, the scales float32 of shape ``[units]``."""
    rows, n = u.shape
    s1 = np.empty((rows, n), np.int8)
    s2 = np.empty((rows, n), np.int8)
    a1 = np.empty(rows, np.float64)
    a2 = np.empty(rows, np.float64)
    if rows == 1:  # one unit (a whole matrix): two passes over its blocks
        flat, c1, c2 = u.reshape(-1), s1.reshape(-1), s2.reshape(-1)
        buf = np.empty(min(_BLOCK, n), np.float32)
        total = 0.0
        for i in range(0, n, _BLOCK):
            a = buf[:min(_BLOCK, n - i)]
            np.abs(flat[i:i + _BLOCK], out=a)
            total = _add64(total, a)
        a1[0] = total / n
        m32 = np.float32(a1[0])
        total = 0.0
        for i in range(0, n, _BLOCK):
            x, r = flat[i:i + _BLOCK], buf[:min(_BLOCK, n - i)]
            _signs_into(x, c1[i:i + _BLOCK])
            np.copyto(r, c1[i:i + _BLOCK], casting="unsafe")  # +-1: times float32(alpha1) is +-alpha1 exactly
            np.multiply(r, m32, out=r)
            np.subtract(x, r, out=r)
            _signs_into(r, c2[i:i + _BLOCK])
            np.abs(r, out=r)
            total = _add64(total, r)
        a2[0] = total / n
    else:  # rows: a few at a time, each row's sums along it (as the whole-array reduction sums a row)
        step = max(1, _BLOCK // n)
        buf = np.empty((min(step, rows), n), np.float32)
        for r0 in range(0, rows, step):
            x = u[r0:r0 + step]
            r = buf[:len(x)]
            np.abs(x, out=r)
            mean = r.sum(axis=1, dtype=np.float64) / n
            a1[r0:r0 + step] = mean
            _signs_into(x, s1[r0:r0 + step])
            np.copyto(r, s1[r0:r0 + step], casting="unsafe")
            np.multiply(r, mean.astype(np.float32)[:, None], out=r)
            np.subtract(x, r, out=r)
            _signs_into(r, s2[r0:r0 + step])
            np.abs(r, out=r)
            a2[r0:r0 + step] = r.sum(axis=1, dtype=np.float64) / n
    return s1, s2, a1.astype(np.float32), a2.astype(np.float32)
