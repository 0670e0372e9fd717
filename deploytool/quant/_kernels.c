/*
 * deploytool.quant._kernels: TWN ternarization and BWN binarization of float32 weights in compiled loops.
 *
 * The numpy code in quantizers.py is the rule and stays the fallback; these functions give the very same
 * numbers, bit for bit (tests/quant/test_kernels.py compares them on every shape and edge value), in fewer
 * passes over memory: numpy's float64 sums of float32 values are restated here in numpy's own association
 * (buffers of NUMPY_BUFSIZE values, each summed pairwise with 8 accumulators below PW_BLOCKSIZE and halved above
 * it, added to the running total in turn), so the threshold and the scale do not move by an ulp between a
 * machine that built this module and one that did not.
 *
 * Only the buffer protocol is used (no numpy headers): callers pass C-contiguous arrays.
 * Build flags: -ffp-contract=off (no fused multiply-add may change a rounding); no -ffast-math.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* the loops below are compiled for AVX-512 and AVX2 too where the compiler can, the CPU's best chosen when the
   module loads (wider vectors, the same lanes: each of the 8 accumulators stays one lane, the same numbers) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WIDE
#endif

#define NUMPY_BUFSIZE 8192
#define PW_BLOCKSIZE 128
#define BLOCK 65536 /* quantizers._BLOCK: the numpy code sums a block of this many values per call */

/* numpy's DOUBLE pairwise sum of n values v(i) (i < n), v(i) a double made from a[i] by MAP */
#define DEFINE_PAIRWISE(NAME, MAP)                                                                    \
    WIDE static double NAME(const float *a, Py_ssize_t n, float t)                                         \
    {                                                                                                 \
        (void)t;                                                                                      \
        if (n < 8) {                                                                                  \
            double res = 0.;                                                                          \
            for (Py_ssize_t i = 0; i < n; i++) res += MAP(a[i], t);                                   \
            return res;                                                                               \
        }                                                                                             \
        if (n <= PW_BLOCKSIZE) {                                                                      \
            double r[8];                                                                              \
            for (int j = 0; j < 8; j++) r[j] = MAP(a[j], t);                                          \
            Py_ssize_t i;                                                                             \
            for (i = 8; i < n - (n % 8); i += 8)                                                      \
                for (int j = 0; j < 8; j++) r[j] += MAP(a[i + j], t);                                 \
            double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));          \
            for (; i < n; i++) res += MAP(a[i], t);                                                   \
            return res;                                                                               \
        }                                                                                             \
        Py_ssize_t n2 = n / 2;                                                                        \
        n2 -= n2 % 8;                                                                                 \
        return NAME(a, n2, t) + NAME(a + n2, n - n2, t);                                              \
    }

/* |x| as numpy's abs gives it, widened to double */
#define ABS_OF(x, t) ((double)fabsf(x))
/* |x| where |x| > t, else 0: the values the numpy code sums for the scale (it sums ``code * x``, whose zeros
   may be -0.0: a sum of them differs from this one only in the sign of a zero, when nothing is kept and the
   scale is 0 whatever the sum). Branch-free (a compare and a mask): the kept entries are random */
#define KEPT_OF(x, t) kept_of(x, t)

static inline double kept_of(float x, float t)
{
    float ax = fabsf(x);
    uint32_t u;
    memcpy(&u, &ax, 4);
    u &= (uint32_t)0 - (uint32_t)(ax > t); /* all ones where kept, else 0 (+0.0f) */
    memcpy(&ax, &u, 4);
    return (double)ax;
}

DEFINE_PAIRWISE(pw_abs, ABS_OF)
DEFINE_PAIRWISE(pw_kept, KEPT_OF)

/* the float64 sum numpy's ``a.sum(dtype=np.float64)`` gives for one call over n values: the running total
   (starting at 0) plus each buffer's pairwise sum in turn */
static double one_call(double (*pw)(const float *, Py_ssize_t, float), const float *a, Py_ssize_t n, float t)
{
    double total = 0.;
    for (Py_ssize_t i = 0; i < n; i += NUMPY_BUFSIZE)
        total += pw(a + i, n - i < NUMPY_BUFSIZE ? n - i : NUMPY_BUFSIZE, t);
    return total;
}

/* the numpy code's association: a Python float running total plus each block's one-call sum */
static double blocks(double (*pw)(const float *, Py_ssize_t, float), const float *a, Py_ssize_t n, float t)
{
    double total = 0.;
    for (Py_ssize_t i = 0; i < n; i += BLOCK) total += one_call(pw, a + i, n - i < BLOCK ? n - i : BLOCK, t);
    return total;
}

/* codes of n values (n <= NUMPY_BUFSIZE): sign(x) where |x| > t, else 0 (NaN: 0); returns how many are not 0,
   counted in the same loop (a code is not 0 exactly where one compare holds and not the other) in an int: one
   vectorized loop, ~2x faster than the codes and then a 64-bit count of them (restrict: int8_t may alias) */
WIDE static Py_ssize_t codes_of(const float *restrict a, Py_ssize_t n, float t, int8_t *restrict out)
{
    int count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int p = a[i] > t, m = a[i] < -t;
        out[i] = (int8_t)(p - m);
        count += p ^ m;
    }
    return count;
}

/* codes of n values (codes_of) and the sum of the kept |x| in the numpy code's association (a running total
   plus each block's one-call sum; block: BLOCK for a whole matrix, the row's length for rows), a buffer of
   values at a time: each is read from memory once, its codes and its sum made while it is in cache */
static Py_ssize_t codes_and_kept(const float *a, Py_ssize_t n, float t, int8_t *out, Py_ssize_t block,
                                 double *kept)
{
    Py_ssize_t count = 0;
    double total = 0.;
    for (Py_ssize_t b = 0; b < n; b += block) {
        Py_ssize_t bn = n - b < block ? n - b : block;
        double bs = 0.;
        for (Py_ssize_t i = 0; i < bn; i += NUMPY_BUFSIZE) {
            Py_ssize_t m = bn - i < NUMPY_BUFSIZE ? bn - i : NUMPY_BUFSIZE;
            count += codes_of(a + b + i, m, t, out + b + i);
            bs += pw_kept(a + b + i, m, t);
        }
        total += bs;
    }
    *kept = total;
    return count;
}

/* quantizers._threshold: the largest float32 at most d (a double) */
static float threshold32(double d)
{
    float f = (float)d;
    if ((double)f > d) f = nextafterf(f, -INFINITY);
    return f;
}

/* signs of n values: 1 where x >= 0 (-0.0 included), else -1 (NaN included) */
WIDE static void signs_of(const float *a, Py_ssize_t n, int8_t *out)
{
    for (Py_ssize_t i = 0; i < n; i++) out[i] = (int8_t)(2 * (a[i] >= 0.f) - 1);
}

/* the float32 residual x - s * m of n values (s = +-1: s * m is +-m exactly, one float32 subtraction) */
WIDE static void residual_of(const float *a, const int8_t *s, float m, Py_ssize_t n, float *r)
{
    for (Py_ssize_t i = 0; i < n; i++) r[i] = a[i] - (float)s[i] * m;
}

/* one unit (a whole matrix or a row) of n values: BinaryBERT's greedy two planes as the numpy code makes them:
   s1 = sign(x), a1 = mean|x| (float64, numpy's one-call sum), the float32 residual x - float32(a1) s1, s2 its
   signs and a2 its mean magnitude; a buffer at a time (the residual lives only in ``r``) */
static void greedy_unit(const float *a, Py_ssize_t n, int8_t *s1, int8_t *s2, float *a1, float *a2, float *r)
{
    double total = 0.;
    for (Py_ssize_t i = 0; i < n; i += NUMPY_BUFSIZE) {
        Py_ssize_t m = n - i < NUMPY_BUFSIZE ? n - i : NUMPY_BUFSIZE;
        signs_of(a + i, m, s1 + i);
        total += pw_abs(a + i, m, 0.f);
    }
    double mean = total / (double)n;
    float m32 = (float)mean;
    total = 0.;
    for (Py_ssize_t i = 0; i < n; i += NUMPY_BUFSIZE) {
        Py_ssize_t m = n - i < NUMPY_BUFSIZE ? n - i : NUMPY_BUFSIZE;
        residual_of(a + i, s1 + i, m32, m, r);
        signs_of(r, m, s2 + i);
        total += pw_abs(r, m, 0.f);
    }
    *a1 = m32;
    *a2 = (float)(total / (double)n);
}

/* ---- the functions Python calls: arguments are C-contiguous buffers (numpy arrays) of the types named ---- */

typedef struct {
    const char *fmt; /* struct format: "f" float32, "b" int8, "B" uint8 */
    Py_ssize_t itemsize;
    int writable;
    const char *what; /* the argument's name in errors */
} Arg;

static const Arg X = {"f", 4, 0, "x"}, CODES = {"b", 1, 1, "codes"}, CODES_IN = {"b", 1, 0, "codes"},
                 PACKED = {"B", 1, 1, "out"}, SCALES = {"f", 4, 1, "alpha"};

/* the buffers of objs[0..n), each checked against its Arg; -1 (an exception set, none held) on failure */
static int get_buffers(PyObject *const *objs, const Arg *const *args, Py_buffer *views, int n)
{
    for (int i = 0; i < n; i++) {
        Py_buffer *v = &views[i];
        const Arg *a = args[i];
        if (PyObject_GetBuffer(objs[i], v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (a->writable ? PyBUF_WRITABLE : 0)) <
            0) {
            while (i--) PyBuffer_Release(&views[i]);
            return -1;
        }
        const char *f = v->format ? v->format : "B";
        if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
        if (v->itemsize != a->itemsize || strcmp(f, a->fmt) != 0) {
            PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous buffer of format '%s', got '%s'", a->what,
                         a->fmt, v->format ? v->format : "B");
            for (; i >= 0; i--) PyBuffer_Release(&views[i]);
            return -1;
        }
    }
    return 0;
}

/* releases the n buffers and returns ``result`` (NULL with ``error`` set as a ValueError when given) */
static PyObject *done(Py_buffer *views, int n, PyObject *result, const char *error)
{
    for (int i = 0; i < n; i++) PyBuffer_Release(&views[i]);
    if (error != NULL) PyErr_SetString(PyExc_ValueError, error);
    return result;
}

#define LEN(v, size) ((v).len / (size))

/* layer_abs_sum(x: float32) -> float: the numpy code's float64 sum of |x| (blocks of BLOCK) */
static PyObject *layer_abs_sum(PyObject *self, PyObject *args)
{
    PyObject *o[1];
    Py_buffer v[1];
    if (!PyArg_ParseTuple(args, "O", &o[0]) || get_buffers(o, (const Arg *[]){&X}, v, 1) < 0) return NULL;
    double s;
    Py_BEGIN_ALLOW_THREADS
    s = blocks(pw_abs, (const float *)v[0].buf, LEN(v[0], 4), 0.f);
    Py_END_ALLOW_THREADS
    return done(v, 1, PyFloat_FromDouble(s), NULL);
}

/* layer_codes(x: float32, t: float (a float32 value), codes: int8 out) -> (count, kept sum):
   codes = sign(x) where |x| > t else 0; count of them; the numpy code's float64 sum of the kept |x| */
static PyObject *layer_codes(PyObject *self, PyObject *args)
{
    PyObject *o[2];
    Py_buffer v[2];
    double td;
    if (!PyArg_ParseTuple(args, "OdO", &o[0], &td, &o[1]) || get_buffers(o, (const Arg *[]){&X, &CODES}, v, 2) < 0)
        return NULL;
    Py_ssize_t n = LEN(v[0], 4), count;
    if (LEN(v[1], 1) != n) return done(v, 2, NULL, "codes: not as long as x");
    double kept;
    Py_BEGIN_ALLOW_THREADS
    count = codes_and_kept((const float *)v[0].buf, n, (float)td, (int8_t *)v[1].buf, BLOCK, &kept);
    Py_END_ALLOW_THREADS
    return done(v, 2, Py_BuildValue("nd", count, kept), NULL);
}

/* v[0] is [rows * k] float32, v[1..outs] as many int8 and v[outs + 1] [rows] float32 (rows set here) */
static int rows_agree(Py_buffer *v, Py_ssize_t k, int outs, Py_ssize_t *rows)
{
    Py_ssize_t n = LEN(v[0], 4);
    *rows = LEN(v[outs + 1], 4);
    if (k <= 0 || *rows * k != n) return 0;
    for (int i = 1; i <= outs; i++)
        if (LEN(v[i], 1) != n) return 0;
    return 1;
}

/* ternarize_rows(x: float32 [rows * k], k, codes: int8 out, alpha: float32 out [rows]) -> bool (all finite):
   quantizers._ternarize_rows row by row: delta = 0.7 * mean|row| (float64, numpy's sum of one row), codes
   sign(x) where |x| > the float32 threshold, alpha = mean of the kept |x| (float64, then float32) or 0.
   binarize_rows(the same) -> True: the signs, and each row's mean |x| (numpy's sum of one row, over k, in
   float64, then float32) */
static PyObject *quantize_rows(PyObject *args, int binary)
{
    PyObject *o[3];
    Py_buffer v[3];
    Py_ssize_t k, rows;
    if (!PyArg_ParseTuple(args, "OnOO", &o[0], &k, &o[1], &o[2]) ||
        get_buffers(o, (const Arg *[]){&X, &CODES, &SCALES}, v, 3) < 0)
        return NULL;
    if (!rows_agree(v, k, 1, &rows)) return done(v, 3, NULL, "quantize_rows: shapes disagree");
    const float *a = (const float *)v[0].buf;
    int8_t *out = (int8_t *)v[1].buf;
    float *alpha = (float *)v[2].buf;
    int finite = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows; r++) {
        const float *row = a + r * k;
        double mean = one_call(pw_abs, row, k, 0.f) / (double)k;
        if (binary) {
            signs_of(row, k, out + r * k);
            alpha[r] = (float)mean;
            continue;
        }
        if (!isfinite(mean)) {
            finite = 0;
            break;
        }
        float t = threshold32(0.7 * mean);
        double kept;
        Py_ssize_t count = codes_and_kept(row, k, t, out + r * k, k, &kept);
        alpha[r] = count > 0 ? (float)(kept / (double)count) : 0.0f;
    }
    Py_END_ALLOW_THREADS
    return done(v, 3, PyBool_FromLong(finite), NULL);
}

static PyObject *ternarize_rows(PyObject *self, PyObject *args) { return quantize_rows(args, 0); }

static PyObject *binarize_rows(PyObject *self, PyObject *args) { return quantize_rows(args, 1); }

/* binarize_layer(x: float32, signs: int8 out) -> float: the signs, and the float64 sum of |x| as numpy's one
   call ``np.abs(w).mean(dtype=np.float64)`` sums a contiguous array (buffers in turn), a buffer at a time */
static PyObject *binarize_layer(PyObject *self, PyObject *args)
{
    PyObject *o[2];
    Py_buffer v[2];
    if (!PyArg_ParseTuple(args, "OO", &o[0], &o[1]) || get_buffers(o, (const Arg *[]){&X, &CODES}, v, 2) < 0)
        return NULL;
    Py_ssize_t n = LEN(v[0], 4);
    if (LEN(v[1], 1) != n) return done(v, 2, NULL, "signs: not as long as x");
    const float *a = (const float *)v[0].buf;
    int8_t *out = (int8_t *)v[1].buf;
    double total = 0.;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i += NUMPY_BUFSIZE) {
        Py_ssize_t m = n - i < NUMPY_BUFSIZE ? n - i : NUMPY_BUFSIZE;
        signs_of(a + i, m, out + i);
        total += pw_abs(a + i, m, 0.f);
    }
    Py_END_ALLOW_THREADS
    return done(v, 2, PyFloat_FromDouble(total), NULL);
}

/* greedy_planes(x: float32 [units * k], k, s1, s2: int8 out, a1, a2: float32 out [units]) */
static PyObject *greedy_planes(PyObject *self, PyObject *args)
{
    PyObject *o[5];
    Py_buffer v[5];
    Py_ssize_t k, units;
    if (!PyArg_ParseTuple(args, "OnOOOO", &o[0], &k, &o[1], &o[2], &o[3], &o[4]) ||
        get_buffers(o, (const Arg *[]){&X, &CODES, &CODES, &SCALES, &SCALES}, v, 5) < 0)
        return NULL;
    if (!rows_agree(v, k, 2, &units) || LEN(v[4], 4) != units) return done(v, 5, NULL, "greedy_planes: shapes disagree");
    float *r = (float *)PyMem_RawMalloc(NUMPY_BUFSIZE * sizeof(float));
    if (r == NULL) return done(v, 5, PyErr_NoMemory(), NULL);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t u = 0; u < units; u++)
        greedy_unit((const float *)v[0].buf + u * k, k, (int8_t *)v[1].buf + u * k, (int8_t *)v[2].buf + u * k,
                    (float *)v[3].buf + u, (float *)v[4].buf + u, r);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(r);
    return done(v, 5, Py_NewRef(Py_None), NULL);
}

/* pack_rows(codes: int8 [rows * k], k, out: uint8 [rows * ceil(k / per)], per) -> bool: each row's codes
   {-1, 0, 1} packed ``per`` to a byte, low first, the last byte padded with the code 0: per = 5 (trits,
   byte = sum (c_i + 1) 3^i) or 4 (byte = sum (c_i + 2) << 2i, MatMulNBits' zero point 2). False (nothing
   promised about ``out``) when a code is not -1, 0 or 1 */
static PyObject *pack_rows(PyObject *self, PyObject *args)
{
    PyObject *o[2];
    Py_buffer v[2];
    Py_ssize_t k;
    int per;
    if (!PyArg_ParseTuple(args, "OnOi", &o[0], &k, &o[1], &per)) return NULL;
    if (per != 4 && per != 5) {
        PyErr_SetString(PyExc_ValueError, "pack_rows: per must be 4 or 5");
        return NULL;
    }
    if (get_buffers(o, (const Arg *[]){&CODES_IN, &PACKED}, v, 2) < 0) return NULL;
    Py_ssize_t n = v[0].len, nb = k > 0 ? (k + per - 1) / per : 0, rows = k > 0 ? n / k : 0;
    if (k <= 0 || rows * k != n || v[1].len != rows * nb) return done(v, 2, NULL, "pack_rows: shapes disagree");
    const int8_t *in = (const int8_t *)v[0].buf;
    uint8_t *out = (uint8_t *)v[1].buf;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows; r++) {
        const int8_t *row = in + r * k;
        uint8_t *dst = out + r * nb;
        for (Py_ssize_t b = 0; b < nb; b++) {
            unsigned val = 0, mul = 1;
            for (int j = 0; j < per; j++) {
                Py_ssize_t i = b * per + j;
                int code = i < k ? row[i] : 0;
                bad |= code < -1 || code > 1;
                if (per == 5) {
                    val += (unsigned)(code + 1) * mul;
                    mul *= 3;
                } else {
                    val |= (unsigned)(code + 2) << (2 * j);
                }
            }
            dst[b] = (uint8_t)val;
        }
    }
    Py_END_ALLOW_THREADS
    return done(v, 2, PyBool_FromLong(!bad), NULL);
}

static PyMethodDef methods[] = {
    {"layer_abs_sum", layer_abs_sum, METH_VARARGS, "float64 sum of |x| in the numpy code's association"},
    {"layer_codes", layer_codes, METH_VARARGS, "TWN codes above a float32 threshold, their count and kept sum"},
    {"ternarize_rows", ternarize_rows, METH_VARARGS, "TWN with one scale per row"},
    {"binarize_layer", binarize_layer, METH_VARARGS, "BWN signs and numpy's one-call float64 sum of |x|"},
    {"binarize_rows", binarize_rows, METH_VARARGS, "BWN signs and one float32 scale per row"},
    {"greedy_planes", greedy_planes, METH_VARARGS, "BinaryBERT's greedy two binary planes per unit"},
    {"pack_rows", pack_rows, METH_VARARGS, "ternary codes packed 5 (trits) or 4 (2-bit) to a byte per row"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
